"""The ONNX frontend: `.onnx` files in, verified Ember modules out, and back.

    module = ember.frontends.onnx.load("model.onnx")
    proto = ember.frontends.onnx.export(module)          # after passes, for Netron or onnxruntime

`ember.frontends.onnx.backend` runs the ONNX backend test suite on Ember.
Imports `ember.ir` only (and the onnx package).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import UsageError
# Imported here, before `export` below is defined: importing the submodule `export` sets the
# package's attribute `export` to the module, which must not happen after the function exists
# (`from ember.frontends.onnx import export` then gave the module on a second call).
from ember.frontends.onnx.export import export_module
from ember.frontends.onnx.importer import (OnnxImportError, StaticInputsRequired, import_model,
                                           sanitize_symbol)
from ember.frontends.onnx.reader import OnnxFileError, parse_model, read_model
from ember.ir.core import Module


def load(path: str | os.PathLike, *, frozen_inputs: dict[str, np.ndarray] | None = None,
         **options: Any) -> Module:
    """Import an .onnx file (external data is read from beside it)."""
    if options:
        raise UsageError(f"unknown options for ONNX import: {', '.join(options)}")
    p = Path(path)
    model = read_model(p)
    return import_model(model, source=str(p), base_dir=str(p.parent), frozen_inputs=frozen_inputs)


def export(module: Module, **options: Any) -> Any:
    """The module as an ONNX ModelProto (every op that has an ONNX form)."""
    return export_module(module, **options)


__all__ = ["load", "export", "import_model", "read_model", "parse_model", "OnnxFileError", "OnnxImportError",
           "StaticInputsRequired", "sanitize_symbol"]
