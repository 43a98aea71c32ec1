"""The TensorFlow SavedModel frontend: a SavedModel folder in, a verified Ember module out,
with no TensorFlow needed (protobufs and the checkpoint are read directly).

    module = ember.frontends.savedmodel.load("saved_model_dir", signature="serving_default")

Imports `ember.ir` only (and the protobuf runtime).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from ember.errors import UsageError
from ember.frontends.savedmodel.checkpoint import CheckpointError
from ember.frontends.savedmodel.importer import SavedModelImportError, import_saved_model
from ember.frontends.savedmodel.reader import SavedModelDir, SavedModelError
from ember.ir.core import Module


def load(path: str | os.PathLike, *, signature: str = "serving_default", tags: Sequence[str] = ("serve",),
         shared_batch: bool = True, **options: Any) -> Module:
    """Import one signature of the SavedModel in folder `path` (the MetaGraphDef with `tags`).
    Unknown leading dims of the inputs are one symbol, `batch`, as TensorFlow Serving batches
    them; `shared_batch=False` names each input's own (`<input>_0`)."""
    if options:
        raise UsageError(f"unknown options for SavedModel import: {', '.join(options)}")
    return import_saved_model(path, signature=signature, tags=tags, shared_batch=shared_batch)


def signatures(path: str | os.PathLike, tags: Sequence[str] = ("serve",)) -> list[str]:
    """The signature keys a SavedModel serves."""
    return sorted(SavedModelDir(path, tuple(tags)).signatures)


__all__ = ["load", "signatures", "SavedModelError", "SavedModelImportError", "CheckpointError"]
