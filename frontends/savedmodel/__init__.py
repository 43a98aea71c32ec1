"""The TensorFlow SavedModel frontend: a SavedModel folder in, a verified Ember module out,
with no TensorFlow needed (protobufs and the checkpoint are read directly).

    module = ember.frontends.savedmodel.load("saved_model_dir", signature="serving_default")

Imports `ember.ir` only (and the protobuf runtime).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from ember.frontends.savedmodel.checkpoint import CheckpointError
from ember.frontends.savedmodel.importer import SavedModelImportError, import_saved_model
from ember.frontends.savedmodel.reader import SavedModelDir, SavedModelError
from ember.ir.core import Module


def load(path: str | os.PathLike, *, signature: str = "serving_default", tags: Sequence[str] = ("serve",),
         **options: Any) -> Module:
    """Import one signature of the SavedModel in folder `path`."""
    if options:
        raise TypeError(f"unknown options for SavedModel import: {', '.join(options)}")
    return import_saved_model(path, signature=signature, tags=tags)


def signatures(path: str | os.PathLike, tags: Sequence[str] = ("serve",)) -> list[str]:
    """The signature keys a SavedModel serves."""
    return sorted(SavedModelDir(path, tuple(tags)).signatures)


__all__ = ["load", "signatures", "SavedModelError", "SavedModelImportError", "CheckpointError"]
