"""Element types and value types.

Every numeric type that ONNX defines has a `DType`, backed by a numpy dtype
(through ml_dtypes where numpy lacks one: bf16, the fp8 and fp6 families, fp4,
int4/uint4, int2/uint2). Sub-byte types take one byte per element on the host,
as ml_dtypes stores them. `str` holds Python strings (numpy object arrays).

Value types: `TensorType` (dtype and shape; a shape of None is unranked),
`SequenceType` and `OptionalType` for ONNX's sequence and optional values,
which live on the host only.

A DType indexes into a tensor type: `f32["N", 3, 224, 224]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import ml_dtypes
import numpy as np

from ember.errors import ShapeError, VerifyError
from ember.ir.dims import Dim, DimExpr, Unknown, as_dim, format_shape, free_symbols


@dataclass(frozen=True)
class DType:
    """An element type; `kind` is one of float, int, uint, bool, complex, string."""

    name: str
    np_dtype: np.dtype
    kind: str
    bits: int

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"ember.ir.{self.name}" if self.name != "bool" else "ember.ir.boolean"

    def __getitem__(self, shape: object) -> "TensorType":
        if not isinstance(shape, tuple):
            shape = (shape,)
        if shape == ((),):
            shape = ()
        return TensorType(self, tuple(as_dim(d) for d in shape))

    def __reduce__(self) -> tuple:
        return (dtype, (self.name,))

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        """Signed or unsigned integer (bool is not an integer)."""
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind in ("int", "float", "complex")

    @property
    def is_numeric(self) -> bool:
        return self.kind in ("float", "int", "uint", "complex")

    @property
    def itemsize(self) -> int:
        """Bytes per element on the host (sub-byte types take a whole byte)."""
        return self.np_dtype.itemsize


def _make(name: str, np_type: object, kind: str, bits: int) -> DType:
    return DType(name, np.dtype(np_type), kind, bits)


f64 = _make("f64", np.float64, "float", 64)
f32 = _make("f32", np.float32, "float", 32)
f16 = _make("f16", np.float16, "float", 16)
bf16 = _make("bf16", ml_dtypes.bfloat16, "float", 16)
f8e4m3fn = _make("f8e4m3fn", ml_dtypes.float8_e4m3fn, "float", 8)
f8e4m3fnuz = _make("f8e4m3fnuz", ml_dtypes.float8_e4m3fnuz, "float", 8)
f8e5m2 = _make("f8e5m2", ml_dtypes.float8_e5m2, "float", 8)
f8e5m2fnuz = _make("f8e5m2fnuz", ml_dtypes.float8_e5m2fnuz, "float", 8)
f8e8m0 = _make("f8e8m0", ml_dtypes.float8_e8m0fnu, "float", 8)
f6e2m3 = _make("f6e2m3", ml_dtypes.float6_e2m3fn, "float", 6)
f6e3m2 = _make("f6e3m2", ml_dtypes.float6_e3m2fn, "float", 6)
f4e2m1 = _make("f4e2m1", ml_dtypes.float4_e2m1fn, "float", 4)
i64 = _make("i64", np.int64, "int", 64)
i32 = _make("i32", np.int32, "int", 32)
i16 = _make("i16", np.int16, "int", 16)
i8 = _make("i8", np.int8, "int", 8)
i4 = _make("i4", ml_dtypes.int4, "int", 4)
i2 = _make("i2", ml_dtypes.int2, "int", 2)
u64 = _make("u64", np.uint64, "uint", 64)
u32 = _make("u32", np.uint32, "uint", 32)
u16 = _make("u16", np.uint16, "uint", 16)
u8 = _make("u8", np.uint8, "uint", 8)
u4 = _make("u4", ml_dtypes.uint4, "uint", 4)
u2 = _make("u2", ml_dtypes.uint2, "uint", 2)
boolean = _make("bool", np.bool_, "bool", 8)
c64 = _make("c64", np.complex64, "complex", 64)
c128 = _make("c128", np.complex128, "complex", 128)
string = _make("str", np.object_, "string", 0)

DTYPES: dict[str, DType] = {d.name: d for d in (
    f64, f32, f16, bf16, f8e4m3fn, f8e4m3fnuz, f8e5m2, f8e5m2fnuz, f8e8m0, f6e2m3, f6e3m2,
    f4e2m1, i64, i32, i16, i8, i4, i2, u64, u32, u16, u8, u4, u2, boolean, c64, c128, string)}
FLOAT_DTYPES = tuple(d for d in DTYPES.values() if d.kind == "float")
INT_DTYPES = tuple(d for d in DTYPES.values() if d.kind in ("int", "uint"))
_BY_NUMPY: dict[np.dtype, DType] = {}
for _d in DTYPES.values():
    _BY_NUMPY.setdefault(_d.np_dtype, _d)


def dtype(name: str) -> DType:
    try:
        return DTYPES[name]
    except KeyError:
        raise VerifyError(f"unknown element type {name!r}; known: {', '.join(DTYPES)}") from None


def dtype_of(array: np.ndarray | np.dtype) -> DType:
    """The DType of a numpy array or dtype (str arrays of kind U/S map to `str`)."""
    dt = np.dtype(array.dtype if isinstance(array, np.ndarray) else array)
    if dt.kind in "USO":
        return string
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        raise VerifyError(f"numpy dtype {dt} has no Ember element type") from None


class Type:
    """Base of value types."""

    def symbols(self) -> set[str]:
        return set()


@dataclass(frozen=True)
class TensorType(Type):
    dtype: DType
    shape: tuple[Dim, ...] | None  # None: rank unknown

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[*]"
        return f"{self.dtype}{format_shape(self.shape)}"

    @property
    def rank(self) -> int:
        if self.shape is None:
            raise ShapeError(f"{self} has no known rank")
        return len(self.shape)

    @property
    def is_ranked(self) -> bool:
        return self.shape is not None

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def static_shape(self) -> tuple[int, ...]:
        if not self.is_static:
            raise ShapeError(f"{self} has no static shape")
        return self.shape  # type: ignore[return-value]

    @property
    def numel(self) -> Dim:
        from ember.ir.dims import mul
        total: Dim = 1
        for d in self.shape if self.shape is not None else (Unknown(),):
            if isinstance(d, Unknown):
                return Unknown()
            total = mul(total, d)
        return total

    def with_shape(self, shape: Iterable[object]) -> "TensorType":
        return TensorType(self.dtype, tuple(as_dim(d) for d in shape))

    def with_dtype(self, dt: DType) -> "TensorType":
        return TensorType(dt, self.shape)

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for d in self.shape or ():
            out |= free_symbols(d)
        return out


@dataclass(frozen=True)
class SequenceType(Type):
    """An ONNX sequence: any number of tensors of one element type (host only)."""

    element: Type

    def __str__(self) -> str:
        return f"seq<{self.element}>"

    def symbols(self) -> set[str]:
        return self.element.symbols()


@dataclass(frozen=True)
class OptionalType(Type):
    """An ONNX optional: a value of `element` type, or none (host only)."""

    element: Type

    def __str__(self) -> str:
        return f"opt<{self.element}>"

    def symbols(self) -> set[str]:
        return self.element.symbols()


def tensor(dt: DType | str, shape: Iterable[object] | None) -> TensorType:
    dt = dtype(dt) if isinstance(dt, str) else dt
    return TensorType(dt, None if shape is None else tuple(as_dim(d) for d in shape))


def type_of_array(array: np.ndarray) -> TensorType:
    return TensorType(dtype_of(array), tuple(int(d) for d in array.shape))


def is_symbolic(d: Dim) -> bool:
    return isinstance(d, DimExpr)


def refines(declared: Type, inferred: Type) -> bool:
    """True when `declared` says the same as `inferred`, or more where it left dims unknown."""
    if isinstance(declared, TensorType) and isinstance(inferred, TensorType):
        if declared.dtype != inferred.dtype:
            return False
        if inferred.shape is None:
            return True
        if declared.shape is None or len(declared.shape) != len(inferred.shape):
            return False
        return all(d == i or isinstance(i, Unknown) for d, i in zip(declared.shape, inferred.shape))
    if isinstance(declared, (SequenceType, OptionalType)) and type(declared) is type(inferred):
        return refines(declared.element, inferred.element)  # type: ignore[attr-defined]
    return declared == inferred


def compatible(declared: Type, inferred: Type) -> bool:
    """True when the two could describe the same values: each refines the other where
    the other is unknown. A declared type that knows less than its rule (left as `?` when
    a pass later folded an operand to a constant) stays valid, if less useful."""
    return refines(declared, inferred) or refines(inferred, declared) or _dims_compatible(declared, inferred)


def _dims_compatible(a: Type, b: Type) -> bool:
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        if a.dtype != b.dtype:
            return False
        if a.shape is None or b.shape is None:
            return True
        return len(a.shape) == len(b.shape) and all(
            x == y or isinstance(x, Unknown) or isinstance(y, Unknown) for x, y in zip(a.shape, b.shape))
    if isinstance(a, (SequenceType, OptionalType)) and type(a) is type(b):
        return compatible(a.element, b.element)  # type: ignore[attr-defined]
    return a == b
