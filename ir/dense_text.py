"""The elements of a dense literal, as an array.

The parser hands the numbers of a literal to `read_numbers` as one token (the grammar's
DENSE_BODY): numpy reads them in one call, with no Python object per element, once the
brackets are checked against the shape. Anything else (strings, comments inside, spaced
minus signs, a wrong shape, integers at int64's ends) is read element by element by the
grammar's `dense_value` rule and checked by `from_elements`.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from ember.ir.types import DType, TensorType, string


class OutOfRange(Exception):
    """An integer literal outside its dtype's range (the parser places the message)."""


def read_numbers(body: str, t: TensorType, count: int) -> np.ndarray | None:
    """The common case read whole: a nested list of plain numbers (or of true/false for
    bool) with exactly the brackets `t`'s shape needs, as a flat array of `count`
    elements; None for anything else. Raises OutOfRange for integers `t` cannot hold."""
    dt = t.dtype
    if dt is string or dt.kind not in ("float", "int", "uint", "bool"):
        return None
    shape = t.static_shape
    if _skeleton_length(shape) > len(body):  # (and the skeleton is not built: f32[99999999999]: [1.0])
        return None
    if body.translate(_SKELETON) != _skeleton(shape):
        return None
    flat = body.translate(_NO_BRACKETS)
    if dt.kind == "bool":
        if not _BOOL_ELEMENTS.fullmatch(flat):
            return None
        arr = _from_text(flat.replace("true", "1").replace("false", "0"), np.uint8, count)
        return None if arr is None else arr.astype(bool)
    if dt.kind == "float":
        if not _FLOAT_ELEMENTS.fullmatch(flat):
            return None
        arr = _from_text(flat, np.float64, count)
        if arr is not None and int(np.isinf(arr).sum()) != flat.count("inf"):
            return None  # a literal past float64's range: the element-by-element reading decides
        return None if arr is None else arr.astype(dt.np_dtype)
    if not _INT_ELEMENTS.fullmatch(flat):
        return None
    arr = _from_text(flat, np.int64, count)
    if arr is None or (arr.size and (arr.max() == _I64.max or arr.min() == _I64.min)):
        return None  # at or past int64's ends (numpy saturates): read one by one, exactly
    if arr.size:
        lo, hi = int_range(dt)
        if int(arr.min()) < lo or int(arr.max()) > hi:
            raise OutOfRange(f"integer out of range for {dt}")
    return arr.astype(dt.np_dtype)


def from_elements(flat: list, t: TensorType, count: int, error: Callable[[str], Exception]) -> np.ndarray:
    """The elements read one by one (ints, floats, strings, bools), checked against `t`."""
    if len(flat) != count:
        raise error(f"dense data has {len(flat)} elements; {t} needs {count}")
    if t.dtype is string:
        if not all(isinstance(x, str) for x in flat):
            raise error("a str tensor needs string elements")
        arr = np.empty(count, dtype=object)
        arr[:] = flat
        return arr
    if any(isinstance(x, str) for x in flat):
        raise error(f"string elements in a {t.dtype} tensor")
    if t.dtype.is_int and any(isinstance(x, float) for x in flat):
        raise error(f"float elements in an integer tensor {t}")
    if t.dtype.is_int:
        lo, hi = int_range(t.dtype)
        if any(not (lo <= int(x) <= hi) for x in flat):
            raise error(f"integer out of range for {t.dtype}")
    try:
        values = np.array(flat, dtype=object)
        return values.astype(np.float64 if t.dtype.is_float else object).astype(t.dtype.np_dtype)
    except (TypeError, ValueError, OverflowError) as err:
        raise error(f"bad dense data for {t}: {err}") from None


def int_range(dt: DType) -> tuple[int, int]:
    if dt.bits >= 8:
        info = np.iinfo(dt.np_dtype)
        return int(info.min), int(info.max)
    if dt.kind == "int":
        return -(1 << (dt.bits - 1)), (1 << (dt.bits - 1)) - 1
    return 0, (1 << dt.bits) - 1


_SPACE = "[ \t\f\r\n]*+"
_NUMBER = r"-?(?:\d++(?:\.\d*+)?+(?:[eE][+-]?\d++)?+|inf)|nan"  # INT, FLOAT, -x, inf, -inf, nan


def _elements(item: str) -> re.Pattern[str]:
    """Comma-separated `item`s (or nothing), with any whitespace around them (possessive:
    there is nothing to backtrack into, and it is three times faster)."""
    one = f"{_SPACE}(?>{item}){_SPACE}"
    return re.compile(f"(?:{one}(?:,{one})*+)?+{_SPACE}")


_FLOAT_ELEMENTS = _elements(_NUMBER)
_INT_ELEMENTS = _elements(r"-?\d++")
_BOOL_ELEMENTS = _elements("true|false")
_I64 = np.iinfo(np.int64)
_SKELETON = str.maketrans("", "", "0123456789.eE+-abcdefghijklmnopqrstuvwxyz \t\f\r\n")
_NO_BRACKETS = str.maketrans("", "", "[]")


def _skeleton(shape: tuple[int, ...]) -> str:
    """The brackets and commas of a nested list of `shape`: (2, 3) gives `[[,,],[,,]]`."""
    shape = _to_first_zero(shape)
    text = "[" + "," * (shape[-1] - 1) + "]" if shape and shape[-1] > 0 else "[]"
    for d in reversed(shape[:-1]):
        text = "[" + ",".join([text] * d) + "]"
    return text


def _skeleton_length(shape: tuple[int, ...]) -> int:
    """len(_skeleton(shape)), worked out without building it."""
    shape = _to_first_zero(shape)
    n = 2 + shape[-1] - 1 if shape and shape[-1] > 0 else 2
    for d in reversed(shape[:-1]):
        n = 2 + d * n + d - 1
    return n


def _to_first_zero(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape with a 0 has nothing inside that dim: `[[],[]]` for (2, 0, 5)."""
    return shape[:shape.index(0) + 1] if 0 in shape else shape


def _from_text(flat: str, dtype: type, count: int) -> np.ndarray | None:
    if count == 0:
        return np.zeros(0, dtype) if not flat.strip() else None
    try:
        arr = np.fromstring(flat, dtype=dtype, sep=",")
    except (ValueError, DeprecationWarning):
        return None
    return arr if arr.size == count else None
