"""Attribute kinds: what an op's attribute may hold, and its one canonical form.

An op declares `Attr(kind, default)` fields; the kind normalizes whatever a
builder, frontend or the parser hands it (lists become tuples, numpy scalars
become Python ones, a dtype name becomes a DType), so two ops with equal
attributes compare equal however they were made, and printing then parsing
gives back the same values. Values are immutable.

Attribute values in their canonical form are: int, float, bool, str, DType,
Type, Dense (a small inline tensor), DimExpr, and tuples of those.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ember.ir.dims import DimExpr, Unknown, as_dim
from ember.ir.types import DType, TensorType, Type, dtype, dtype_of, string


class AttrError(TypeError):
    """A value that the attribute kind cannot hold (the op turns it into a VerifyError)."""


class Dense:
    """A small tensor inline in an attribute. Equality and hashing are bit for bit.

    Large tensors belong in the module's weight store, not here.
    """

    __slots__ = ("array",)

    def __init__(self, array: Any, dt: DType | None = None) -> None:
        if dt is not None and dt is string:
            arr = np.array(array, dtype=object)
        elif dt is not None:
            arr = np.asarray(array).astype(dt.np_dtype)
        else:
            arr = np.asarray(array)
            if arr.dtype.kind in "US":
                arr = arr.astype(object)
        arr = np.array(arr, order="C", copy=True)  # (ascontiguousarray would make 0-d arrays 1-d)
        arr.flags.writeable = False
        dtype_of(arr)  # raises for dtypes Ember has no name for
        self.array = arr

    @property
    def dtype(self) -> DType:
        return dtype_of(self.array)

    @property
    def type(self) -> TensorType:
        return TensorType(self.dtype, tuple(int(d) for d in self.array.shape))

    def _key(self) -> tuple:
        data = tuple(self.array.ravel().tolist()) if self.dtype is string else self.array.tobytes()
        return (self.dtype.name, self.array.shape, data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dense) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Dense({self.type}, {self.array.tolist()!r})"


class AttrKind:
    """How to check and canonicalize one attribute's value."""

    name = "any"

    def normalize(self, value: Any) -> Any:
        return normalize_any(value)

    def __repr__(self) -> str:
        return self.name


def _int(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise AttrError(f"expected an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    raise AttrError(f"expected an integer, got {value!r}")


def _float(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise AttrError(f"expected a float, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise AttrError(f"expected a float, got {value!r}")


def _seq(value: Any) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise AttrError(f"expected a list, got {value!r}")
    return tuple(value)


class _Int(AttrKind):
    name = "int"

    def normalize(self, value: Any) -> int:
        return _int(value)


class _Float(AttrKind):
    name = "float"

    def normalize(self, value: Any) -> float:
        return _float(value)


class _Bool(AttrKind):
    name = "bool"

    def normalize(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
            return bool(value)
        raise AttrError(f"expected a bool, got {value!r}")


class _Str(AttrKind):
    name = "str"

    def normalize(self, value: Any) -> str:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str):
            raise AttrError(f"expected a string, got {value!r}")
        return value


class _Ints(AttrKind):
    name = "ints"

    def normalize(self, value: Any) -> tuple[int, ...]:
        return tuple(_int(v) for v in _seq(value))


class _Floats(AttrKind):
    name = "floats"

    def normalize(self, value: Any) -> tuple[float, ...]:
        return tuple(_float(v) for v in _seq(value))


class _Strs(AttrKind):
    name = "strs"

    def normalize(self, value: Any) -> tuple[str, ...]:
        return tuple(Str.normalize(v) for v in _seq(value))


class _Dims(AttrKind):
    """A list of dims: integers or symbolic expressions (no unknowns)."""

    name = "dims"

    def normalize(self, value: Any) -> tuple:
        out = []
        for v in _seq(value):
            if isinstance(v, (bool, np.bool_)):
                raise AttrError(f"expected a dim, got {v!r}")
            try:
                d = as_dim(v)
            except (TypeError, ValueError) as err:
                raise AttrError(f"expected a dim, got {v!r}") from err
            if isinstance(d, Unknown):
                raise AttrError("an attribute dim cannot be unknown")
            out.append(d)
        return tuple(out)


class _Dim(AttrKind):
    """One dim: an integer or a symbolic expression (a size such as topk's k)."""

    name = "dim"

    def normalize(self, value: Any) -> Any:
        return Dims.normalize((value,))[0]


class _DTypeKind(AttrKind):
    name = "dtype"

    def normalize(self, value: Any) -> DType:
        if isinstance(value, DType):
            return value
        if isinstance(value, str):
            try:
                return dtype(value)
            except ValueError as err:
                raise AttrError(str(err)) from None
        raise AttrError(f"expected an element type, got {value!r}")


class _TypeKind(AttrKind):
    name = "type"

    def normalize(self, value: Any) -> Type:
        if not isinstance(value, Type):
            raise AttrError(f"expected a type, got {value!r}")
        return value


class _TensorKind(AttrKind):
    name = "tensor"

    def normalize(self, value: Any) -> Dense:
        if isinstance(value, Dense):
            return value
        if isinstance(value, (np.ndarray, np.generic)):
            return Dense(value)
        raise AttrError(f"expected a tensor (Dense or numpy array), got {type(value).__name__}")


class OneOf(AttrKind):
    """A string from a fixed set of choices."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.name = "one of " + "|".join(choices)

    def normalize(self, value: Any) -> str:
        value = Str.normalize(value)
        if value not in self.choices:
            raise AttrError(f"expected one of {', '.join(map(repr, self.choices))}, got {value!r}")
        return value


class Optional(AttrKind):
    """`kind`, or None for absent (used with default=None)."""

    def __init__(self, kind: AttrKind) -> None:
        self.kind = kind
        self.name = f"{kind.name}?"

    def normalize(self, value: Any) -> Any:
        return None if value is None else self.kind.normalize(value)


Int, Float, Bool, Str = _Int(), _Float(), _Bool(), _Str()
Ints, Floats, Strs, Dims, Dim = _Ints(), _Floats(), _Strs(), _Dims(), _Dim()
DTypeAttr, TypeAttr, TensorAttr, AnyAttr = _DTypeKind(), _TypeKind(), _TensorKind(), AttrKind()


def normalize_any(value: Any) -> Any:
    """Canonical form for an attribute of unknown kind (plugins, generic ops)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (str, DType, Type, Dense, DimExpr)):
        return value
    if isinstance(value, np.ndarray):
        return Dense(value)
    if isinstance(value, (list, tuple)):
        return tuple(normalize_any(v) for v in value)
    raise AttrError(f"{type(value).__name__} cannot be an attribute value: {value!r}")


def attr_equal(a: Any, b: Any) -> bool:
    """Equality that tells -0.0 from 0.0 and treats NaN as equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(attr_equal(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    return a == b
