"""Read an .onnx file: clear errors for files that are missing, truncated or not ONNX.

External data stays on disk: tensors.py maps it when the importer reads each
initializer, so models over 2 GB load without holding their weights in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import ModelProto

from ember.errors import EmberError, ModelNotFoundError


class OnnxFileError(EmberError, ValueError):
    """A file that is not a readable ONNX model."""


def read_model(path: str | os.PathLike) -> ModelProto:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelNotFoundError(f"no such model: {p}") from None
    except OSError as err:
        raise OnnxFileError(f"{p}: cannot read: {err.strerror}") from None
    return parse_model(data, str(p))


def parse_model(data: bytes, source: str = "<bytes>") -> ModelProto:
    if not data:
        raise OnnxFileError(f"{source}: empty file, not an ONNX model")
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise OnnxFileError(f"{source}: not an ONNX model, or a truncated one (protobuf decoding failed: "
                            f"{str(err) or type(err).__name__})") from None
    if not model.HasField("graph") or not model.opset_import:
        if not model.HasField("graph") and not model.opset_import:
            raise OnnxFileError(f"{source}: not an ONNX model (no graph and no opset imports)")
        missing = "graph" if not model.HasField("graph") else "opset_import"
        raise OnnxFileError(f"{source}: not a complete ONNX model (no {missing}); truncated?")
    return model


__all__ = ["read_model", "parse_model", "OnnxFileError", "onnx"]
