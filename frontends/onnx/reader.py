"""Read an .onnx file: clear errors for files that are missing, truncated or not ONNX.

External data stays on disk: tensors.py maps it when the importer reads each
initializer, so models over 2 GB load without holding their weights in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError
from onnx import ModelProto

from ember.errors import EmberError, ModelNotFoundError
from ember.ir.regular_files import read_regular


class OnnxFileError(EmberError, ValueError):
    """A file that is not a readable ONNX model."""


def read_model(path: str | os.PathLike) -> ModelProto:
    p = Path(path)
    if not os.path.lexists(p):
        raise ModelNotFoundError(f"no such model: {p}")
    return parse_model(read_regular(p, "the ONNX model", OnnxFileError), str(p))


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
    _check_text(model, source)
    return model


def _check_text(model: ModelProto, source: str) -> None:
    """Every string field is UTF-8 text. Protobuf does not check proto2 strings when it parses;
    one that is not comes back as bytes, and names are compared, joined and printed as text."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(model, ())]
    while stack:
        msg, path = stack.pop()
        for fd, value in msg.ListFields():
            repeated = _repeated(fd)
            if fd.type == fd.TYPE_STRING:
                for i, x in enumerate(value if repeated else [value]):
                    if isinstance(x, bytes):
                        where = ".".join(path + (f"{fd.name}[{i}]" if repeated else fd.name,))
                        raise OnnxFileError(f"{source}: {where}: {x[:40]!r} is not UTF-8 text")
            elif fd.type == fd.TYPE_MESSAGE:
                if repeated:
                    stack.extend((x, path + (f"{fd.name}[{i}]",)) for i, x in enumerate(value))
                else:
                    stack.append((value, path + (fd.name,)))


def _repeated(fd: Any) -> bool:
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == fd.LABEL_REPEATED


__all__ = ["read_model", "parse_model", "OnnxFileError", "onnx"]
