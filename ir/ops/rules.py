"""Pieces of type rules and reference semantics that many ops share.

Type-rule helpers take the op first so their errors name it and its location.
The numeric conventions every reference follows are stated here, once:

- Low-precision floats (f16, bf16, fp8, fp6, fp4) compute in f32 and round once
  to the result type: `in_f32`. Matmul, conv and reductions accumulate in f32
  for them (and in f64 for f64).
- NaN propagates through max, min, relu, clip and comparisons-by-value
  (np.maximum semantics, not np.fmax).
- Integer arithmetic wraps (two's complement); integer division truncates
  towards zero, as C does; division by zero of integers is undefined.
- Casts: float to int truncates towards zero (out of range is undefined);
  float to a narrower float rounds to nearest even; to fp8 saturates to the
  largest finite value unless `saturate=false`; to bool is `x != 0`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ember.errors import ShapeError
from ember.ir.dims import Dim, broadcast_shapes
from ember.ir.opdef import Op
from ember.ir.types import DType, TensorType, Type, f32, f64

LOW_PRECISION = frozenset({"f16", "bf16", "f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz", "f8e8m0",
                           "f6e2m3", "f6e3m2", "f4e2m1"})


# -- type rules -----------------------------------------------------------------------
def tensor(op: Op, t: Type | None, what: str = "operand") -> TensorType:
    if not isinstance(t, TensorType):
        raise op.error(f"{what} must be a tensor, got {t}")
    return t


def ranked(op: Op, t: Type | None, what: str = "operand") -> TensorType:
    t = tensor(op, t, what)
    if t.shape is None:
        raise op.error(f"{what} needs a known rank, got {t}")
    return t


def same_dtype(op: Op, *types: Type | None) -> DType:
    present = [tensor(op, t) for t in types if t is not None]
    dts = {t.dtype for t in present}
    if len(dts) > 1:
        raise op.error("operands must share an element type, got " + ", ".join(str(t) for t in present))
    return present[0].dtype


def broadcast(op: Op, *types: Type | None) -> tuple[Dim, ...] | None:
    """The broadcast shape of the operands (None when one is unranked)."""
    present = [tensor(op, t) for t in types if t is not None]
    if any(t.shape is None for t in present):
        return None
    try:
        return broadcast_shapes(*(t.shape for t in present))  # type: ignore[misc]
    except ShapeError as err:
        raise op.error(str(err)) from None


def axis(op: Op, value: int, rank: int, what: str = "axis") -> int:
    """Normalize a possibly negative axis into 0..rank-1."""
    if not -rank <= value < rank:
        raise op.error(f"{what} {value} is out of range for rank {rank}")
    return value % rank


def axes(op: Op, values: Sequence[int], rank: int, what: str = "axes") -> tuple[int, ...]:
    out = tuple(axis(op, v, rank, what) for v in values)
    if len(set(out)) != len(out):
        raise op.error(f"{what} {tuple(values)} repeat an axis")
    return out


def dtype_in(op: Op, t: TensorType, kinds: str | Sequence[str], what: str = "operand") -> None:
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if t.dtype.kind not in kinds:
        raise op.error(f"{what} must be {' or '.join(kinds)}, got {t}")


# -- reference helpers ----------------------------------------------------------------
def compute_dtype(dt: np.dtype) -> np.dtype:
    """Where a value of `dt` is computed: f32 for low-precision floats, else itself."""
    return np.dtype(np.float32) if _is_low(dt) else np.dtype(dt)


def accumulate_dtype(dt: np.dtype) -> np.dtype:
    """Accumulator of matmul/conv/reductions: f32 for low-precision floats, else itself."""
    return compute_dtype(dt)


def _is_low(dt: np.dtype) -> bool:
    from ember.ir.types import dtype_of
    try:
        return dtype_of(dt).name in LOW_PRECISION
    except ValueError:
        return False


def in_f32(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Run `fn` on low-precision floats widened to f32, and round the result back."""

    def run(*arrays: Any, **kwargs: Any) -> np.ndarray:
        first = next(a for a in arrays if isinstance(a, np.ndarray) or np.isscalar(a))
        dt = np.asarray(first).dtype
        if _is_low(dt):
            widened = [np.asarray(a).astype(np.float32) if isinstance(a, (np.ndarray, np.generic)) else a
                       for a in arrays]
            return np.asarray(fn(*widened, **kwargs)).astype(dt)
        return np.asarray(fn(*arrays, **kwargs))

    run.__name__ = getattr(fn, "__name__", "run")
    run.__doc__ = fn.__doc__
    return run


def keep_dtype(result: Any, like: np.ndarray) -> np.ndarray:
    """numpy promotes scalars and mixed types; the IR does not."""
    return np.asarray(result).astype(like.dtype, copy=False)


__all__ = ["tensor", "ranked", "same_dtype", "broadcast", "axis", "axes", "dtype_in", "compute_dtype",
           "accumulate_dtype", "in_f32", "keep_dtype", "f32", "f64"]
