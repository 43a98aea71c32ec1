"""`ember.load(path)`: any model file Ember reads, as a verified Module.

This is one of the few modules allowed to wire layers: it picks the frontend
by what the path is.
"""

from __future__ import annotations

import os
from pathlib import Path

from ember.errors import ModelFormatError, ModelNotFoundError
from ember.ir.core import Module


def load(path: str | os.PathLike, **options: object) -> Module:
    """Read `path`: a `.ir` file (its weights beside it), an `.onnx` file, or a SavedModel folder."""
    p = Path(path)
    if not p.exists():
        raise ModelNotFoundError(f"no such model: {p}")
    if p.is_dir():
        from ember.frontends.savedmodel import load as load_saved_model
        return load_saved_model(p, **options)  # type: ignore[arg-type]
    if "signature" in options:
        raise ModelFormatError(f"{p}: a signature is chosen only for SavedModel folders, and this is a file")
    if p.suffix == ".onnx":
        from ember.frontends.onnx import load as load_onnx
        return load_onnx(p, **options)  # type: ignore[arg-type]
    if p.suffix in (".ir", ".mlir", ".txt") or not p.suffix:
        from ember.ir.files import load_module
        return load_module(p, **options)  # type: ignore[arg-type]
    raise ModelFormatError(f"{p}: unknown model format {p.suffix!r} (expected .ir, .onnx or a SavedModel folder)")
