"""TensorFlow's element types, shapes and TensorProtos as numpy.

DataType numbers are TensorFlow's (types.proto); `_REF` variants (number + 100,
TF1 reference variables) mean the same element type. A TensorProto holds its
elements either as raw little-endian `tensor_content` or in a typed repeated
field; a typed field with fewer values than elements repeats its last value
(how TensorFlow writes splat constants), and half/bfloat16 values are stored
as their 16-bit patterns in `half_val`.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from ember.errors import EmberError
from ember.ir.sizes import SizeError, nbytes, numel

DT_RESOURCE = 20
DT_VARIANT = 21
NUMPY: dict[int, Any] = {
    1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 7: object,
    8: np.complex64, 9: np.int64, 10: np.bool_, 14: ml_dtypes.bfloat16, 17: np.uint16, 18: np.complex128,
    19: np.float16, 22: np.uint32, 23: np.uint64, 24: ml_dtypes.float8_e5m2, 25: ml_dtypes.float8_e4m3fn,
}
NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
         8: "complex64", 9: "int64", 10: "bool", 11: "qint8", 12: "quint8", 13: "qint32", 14: "bfloat16",
         15: "qint16", 16: "quint16", 17: "uint16", 18: "complex128", 19: "float16", 20: "resource",
         21: "variant", 22: "uint32", 23: "uint64", 24: "float8_e5m2", 25: "float8_e4m3fn", 29: "int4",
         30: "uint4"}


MAX_EXPANDED_BYTES = 1 << 30
"""The largest constant expanded from fewer values than elements (TensorFlow writes a splat as one
value): a GraphDef holds at most 2 GB, so a larger constant is a splat no model needs."""


class TensorError(EmberError, ValueError):
    """A tensor TensorFlow wrote that Ember cannot read (an unknown type, inconsistent data)."""


def type_name(code: int) -> str:
    return NAMES.get(code % 100 if code > 100 else code, f"DataType {code}")


def numpy_dtype(code: int, where: str) -> np.dtype:
    base = code - 100 if code > 100 else code
    if base not in NUMPY:
        raise TensorError(f"{where}: element type {type_name(code)} is not supported")
    return np.dtype(NUMPY[base])


def shape_of(proto: Any) -> tuple[int, ...]:
    """A fully known TensorShapeProto as a tuple (for constants and checkpoint entries)."""
    return tuple(int(d.size) for d in proto.dim)


def to_array(t: Any, where: str) -> np.ndarray:
    dtype = numpy_dtype(t.dtype, where)
    shape = shape_of(t.tensor_shape)
    if any(d < 0 for d in shape):
        raise TensorError(f"{where}: a constant with unknown dims {list(shape)}")
    try:
        count = numel(shape, where)
        size = nbytes(shape, dtype.itemsize, where)
    except SizeError as err:
        raise TensorError(str(err)) from None
    if size > MAX_EXPANDED_BYTES and len(t.tensor_content) != size:
        raise TensorError(f"{where}: a constant of {count} elements ({size} bytes) given by a few values; Ember "
                          f"expands such constants when it imports them, up to {MAX_EXPANDED_BYTES} bytes")
    if dtype == np.dtype(object):
        values = list(t.string_val)
        if len(values) > count:
            raise TensorError(f"{where}: {len(values)} strings for a tensor of {count} elements")
        arr = np.array(values + [values[-1]] * (count - len(values)) if values else [b""] * count, dtype=object)
        return arr.reshape(shape)
    if t.tensor_content:
        if len(t.tensor_content) != count * dtype.itemsize:
            raise TensorError(f"{where}: {len(t.tensor_content)} bytes of tensor_content for {count} elements "
                              f"of {dtype}")
        return np.frombuffer(t.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    base = t.dtype - 100 if t.dtype > 100 else t.dtype
    if base in (19, 14):
        values = np.array(list(t.half_val), dtype=np.uint16).view(dtype)
    elif base in (24, 25):
        values = np.frombuffer(t.float8_val, dtype=np.uint8).view(dtype)
    elif base in (8, 18):
        flat = np.array(list(t.scomplex_val if base == 8 else t.dcomplex_val))
        values = (flat[0::2] + 1j * flat[1::2]).astype(dtype)
    else:
        field = {1: "float_val", 2: "double_val", 9: "int64_val", 10: "bool_val", 22: "uint32_val",
                 23: "uint64_val"}.get(base, "int_val")
        values = np.array(list(getattr(t, field)), dtype=dtype)
    if values.size == 0:
        return np.zeros(shape, dtype=dtype)
    if values.size > count:
        raise TensorError(f"{where}: {values.size} values for a tensor of {count} elements")
    if values.size < count:
        values = np.concatenate([values, np.full(count - values.size, values[-1], dtype=dtype)])
    return values.reshape(shape)
