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
    kind = {".onnx": "onnx", ".ir": "ir", ".mlir": "ir"}.get(p.suffix) or sniff(p)
    if kind == "onnx":
        from ember.frontends.onnx import load as load_onnx
        return load_onnx(p, **options)  # type: ignore[arg-type]
    if kind == "ir":
        from ember.ir.files import load_module
        return load_module(p, **options)  # type: ignore[arg-type]
    if kind == "engine":
        raise ModelFormatError(f"{p}: an Ember engine, not a model (run it with `ember run`, `ember.Engine.load`; "
                               "`ember inspect` shows it)")
    what = f"suffix {p.suffix!r}" if p.suffix else "no suffix"
    raise ModelFormatError(f"{p}: unknown model format ({what}, and its content is neither Ember IR text nor ONNX; "
                           "expected .ir, .onnx or a SavedModel folder)")


def sniff(p: Path) -> str | None:
    """What a file is by its first bytes, whatever its name: an engine (its magic), Ember IR text
    (comments, `module`, `func`), or ONNX (a ModelProto starts with field 1, ir_version, a varint)."""
    try:
        with open(p, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    from ember.runtime.engine_format import MAGIC
    if head.startswith(MAGIC):
        return "engine"
    text = head.lstrip()
    if text.startswith((b"//", b"module", b"func", b"#")) or (not head and not p.suffix):
        return "ir"
    if head[:1] == b"\x08" and len(head) > 1 and head[1] < 0x80:
        return "onnx"
    return None
