"""ONNX element types and tensors as Ember types and numpy arrays.

Initializers stored outside the model (external data, the way models over
2 GB are saved) are mapped from their files instead of read, so a large
model's weights cost no copy until they are used.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from onnx import TensorProto, numpy_helper

from ember.errors import EmberError
from ember.ir import sizes
from ember.ir import types as T
from ember.ir.types import DType

ELEMENT_TYPES: dict[int, DType] = {
    TensorProto.FLOAT: T.f32, TensorProto.UINT8: T.u8, TensorProto.INT8: T.i8, TensorProto.UINT16: T.u16,
    TensorProto.INT16: T.i16, TensorProto.INT32: T.i32, TensorProto.INT64: T.i64, TensorProto.STRING: T.string,
    TensorProto.BOOL: T.boolean, TensorProto.FLOAT16: T.f16, TensorProto.DOUBLE: T.f64, TensorProto.UINT32: T.u32,
    TensorProto.UINT64: T.u64, TensorProto.COMPLEX64: T.c64, TensorProto.COMPLEX128: T.c128,
    TensorProto.BFLOAT16: T.bf16, TensorProto.FLOAT8E4M3FN: T.f8e4m3fn, TensorProto.FLOAT8E4M3FNUZ: T.f8e4m3fnuz,
    TensorProto.FLOAT8E5M2: T.f8e5m2, TensorProto.FLOAT8E5M2FNUZ: T.f8e5m2fnuz, TensorProto.UINT4: T.u4,
    TensorProto.INT4: T.i4, TensorProto.FLOAT4E2M1: T.f4e2m1, TensorProto.FLOAT8E8M0: T.f8e8m0,
    TensorProto.UINT2: T.u2, TensorProto.INT2: T.i2, TensorProto.FLOAT6E2M3: T.f6e2m3,
    TensorProto.FLOAT6E3M2: T.f6e3m2,
}
ONNX_TYPES: dict[str, int] = {dt.name: code for code, dt in ELEMENT_TYPES.items()}
# Types ONNX stores packed, several elements a byte.
_PACKED = {TensorProto.UINT4, TensorProto.INT4, TensorProto.FLOAT4E2M1, TensorProto.UINT2, TensorProto.INT2,
           TensorProto.FLOAT6E2M3, TensorProto.FLOAT6E3M2}


class TensorError(EmberError, ValueError):
    """A tensor whose data does not match its declared type or shape."""


def element_type(code: int, where: str) -> DType:
    try:
        return ELEMENT_TYPES[code]
    except KeyError:
        name = TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)
        raise TensorError(f"{where}: element type {name} has no Ember equivalent") from None


def onnx_type_code(dt: DType) -> int:
    return ONNX_TYPES[dt.name]


def to_array(t: TensorProto, base_dir: str | os.PathLike | None, where: str) -> np.ndarray:
    """The numpy value of a TensorProto, external data included (mapped, not read)."""
    dt = element_type(t.data_type, where)
    shape = tuple(int(d) for d in t.dims)
    count = sizes.numel(shape, where)
    if t.data_location == TensorProto.EXTERNAL:
        return _external(t, dt, shape, count, base_dir, where)
    try:
        arr = numpy_helper.to_array(t)
    except (ValueError, TypeError) as err:
        raise TensorError(f"{where}: data does not match its shape {list(shape)}: {err}") from None
    if arr.size != count:
        raise TensorError(f"{where}: data has {arr.size} elements, its shape {list(shape)} needs {count}")
    if dt is T.string:
        return np.array([x.decode("utf-8", errors="replace") if isinstance(x, bytes) else x
                         for x in arr.ravel()], dtype=object).reshape(shape)
    return arr.astype(dt.np_dtype, copy=False).reshape(shape)


def external_file(base_dir: str | os.PathLike | None, location: str, where: str) -> Path:
    """The file an external-data `location` names, only if it lies inside the model's folder.

    A model is untrusted input: its locations must be relative, must not climb out with
    `..`, and must not reach out through a symlink (the file, resolved, must still lie
    under the folder, resolved). ONNX's own checker applies the same rule."""
    if base_dir is None:
        raise TensorError(f"{where}: its data is in an external file {location!r}, and the model was not read "
                          "from a folder (pass base_dir)")
    if not location or "\0" in location:
        raise TensorError(f"{where}: external data location {location!r} is empty or not a file name")
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or \
            PureWindowsPath(location).drive:
        raise TensorError(f"{where}: external data location {location!r} is an absolute path; it must be "
                          "relative to the model's folder")
    normal = posixpath.normpath(location.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        raise TensorError(f"{where}: external data location {location!r} points outside the model's folder")
    folder = Path(base_dir).resolve()
    path = folder / normal
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise TensorError(f"{where}: its external data file {path} does not exist") from None
    except (OSError, RuntimeError) as err:
        raise TensorError(f"{where}: cannot read its external data file {path}: {err}") from None
    if real != folder and folder not in real.parents:
        raise TensorError(f"{where}: external data location {location!r} leads outside the model's folder "
                          f"through a symlink (to {real})")
    if not real.is_file():
        raise TensorError(f"{where}: external data location {location!r} is not a regular file")
    return real


def _external_int(info: dict[str, str], key: str, default: int, where: str) -> int:
    text = info.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise TensorError(f"{where}: external data {key} {text!r} is not an integer") from None
    if value < 0:
        raise TensorError(f"{where}: external data {key} {value} is negative")
    return value


def _external(t: TensorProto, dt: DType, shape: tuple[int, ...], count: int, base_dir: str | os.PathLike | None,
              where: str) -> np.ndarray:
    info = {e.key: e.value for e in t.external_data}
    if "location" not in info:
        raise TensorError(f"{where}: external data without a location")
    path = external_file(base_dir, info["location"], where)
    offset = _external_int(info, "offset", 0, where)
    packed = t.data_type in _PACKED or dt is T.string
    nbytes = sizes.nbytes(shape, dt.itemsize if not packed else 1, where) if dt is not T.string else None
    length = _external_int(info, "length", -1, where)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as err:
        raise TensorError(f"{where}: cannot read its external data file {path}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if packed:
            # Packed sub-byte and string tensors: read their bytes and let ONNX unpack them.
            if length < 0:
                length = size - offset
            sizes.check_range(offset, length, size, f"{where}: external data file {path}")
            f.seek(offset)
            proto = TensorProto()
            proto.CopyFrom(t)
            del proto.external_data[:]
            proto.data_location = TensorProto.DEFAULT
            proto.raw_data = f.read(length)
            return to_array(proto, None, where)
        if length >= 0 and length != nbytes:
            raise TensorError(f"{where}: external data holds {length} bytes, {dt}{list(shape)} needs {nbytes}")
        if offset + nbytes > size:
            raise TensorError(f"{where}: external data file {path} is truncated ({size} bytes, needs "
                              f"{offset + nbytes})")
        if nbytes == 0:
            return np.zeros(shape, dt.np_dtype)
        return np.memmap(f, dtype=dt.np_dtype.newbyteorder("<"), mode="r", offset=offset, shape=shape)


def from_array(array: np.ndarray, name: str = "") -> TensorProto:
    """A TensorProto of a numpy array (for export)."""
    arr = np.asarray(array)
    if arr.dtype == object:
        return numpy_helper.from_array(np.array([str(x).encode() for x in arr.ravel()], dtype=object)
                                       .reshape(arr.shape), name)
    return numpy_helper.from_array(arr, name)
