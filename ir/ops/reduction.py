"""Reductions over axes, arg-reductions, running sums and products, and top-k.

Reductions take `axes` as an attribute (ONNX 18+ passes it as an input; the
frontend folds it): None reduces every axis; an empty tuple reduces over no axis
(each element alone, so reduce_sum_square squares and reduce_log_sum takes the
log, as ONNX's noop_with_empty_axes=1 does). ONNX's `noop_with_empty_axes` itself
is the frontend's to resolve. `keepdims` keeps reduced axes as size 1.

Numeric conventions (see rules.py), shared by every reduction:
- f16/bf16/fp8 accumulate in f32 and round once; f64 accumulates in f64.
- Integer sums, products and squares wrap around in the input's own type
  (two's complement), as a C kernel accumulating in that type would.
- NaN propagates: reduce_max and reduce_min of a slice holding a NaN give NaN.
- An empty reduction (an axis of size 0) gives the identity (ONNX 18+): 0 for
  sum, l1, l2 and sum_square, 1 for prod, -inf (floats) or the type's minimum for
  max, +inf or the maximum for min, -inf for log_sum and log_sum_exp. ONNX leaves
  reduce_mean of nothing undefined; Ember gives NaN (0/0) for floats, 0 for integers.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ember.errors import ShapeError
from ember.ir import attrs as A
from ember.ir.dims import Dim, Unknown
from ember.ir.opdef import (AnyTensor, Attr, IntTensor, NumericTensor, Op, Operand, Pure, Reduction, Result,
                            register_op)
from ember.ir.ops import rules
from ember.ir.types import TensorType, Type, i64

REDUCE = {Pure, Reduction}
Reference = Callable[..., np.ndarray]


def _reduced_shape(shape: Sequence[Dim], axes: Sequence[int], keepdims: bool) -> tuple[Dim, ...]:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _ref_axes(axes: Sequence[int] | None, rank: int) -> tuple[int, ...]:
    return tuple(range(rank)) if axes is None else tuple(a % rank for a in axes)


# -- reduce_* --------------------------------------------------------------------------------------
class _Reduce(Op):
    """One tensor reduced over `axes` (None: all); the result keeps the element type.
    Subclasses give `kinds` (the element kinds they take) and a reference made by
    `_reducer` from a kernel that reduces a widened array with keepdims."""

    x = Operand(NumericTensor)
    axes = Attr(A.Optional(A.Ints), default=None)
    keepdims = Attr(A.Bool, default=True)
    out = Result(NumericTensor)

    kinds: tuple[str, ...] = ("float", "int", "uint")

    def infer(self, x: Type) -> TensorType:
        t = rules.ranked(self, x, "x")
        rules.dtype_in(self, t, self.kinds, "x")
        axes = tuple(range(t.rank)) if self.axes is None else rules.axes(self, self.axes, t.rank)
        return t.with_shape(_reduced_shape(t.shape, axes, self.keepdims))  # type: ignore[arg-type]


def _reducer(kernel: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]) -> Reference:
    """A reduction's reference from `kernel(wide_x, axes)`, which reduces with keepdims=True
    in the accumulation type (f32 for low-precision floats, else x's own type)."""

    def reference(x: np.ndarray, *, axes: Sequence[int] | None, keepdims: bool) -> np.ndarray:
        ax = _ref_axes(axes, x.ndim)
        wide = x.astype(rules.accumulate_dtype(x.dtype), copy=False)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = np.asarray(kernel(wide, ax))
        if not keepdims:
            r = r.reshape(_reduced_shape(x.shape, ax, False))
        return r.astype(x.dtype)

    return staticmethod(reference)  # type: ignore[return-value]


def _sum(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.sum(x, axis=axes, keepdims=True, dtype=x.dtype)


def _extreme(x: np.ndarray, largest: bool) -> Any:
    """The identity of max (largest=True) or min over x's dtype."""
    if x.dtype == np.bool_:
        return not largest
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return info.min if largest else info.max
    return -np.inf if largest else np.inf


def _mean(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    s = _sum(x, axes)
    if x.dtype.kind not in "iu":
        return s / x.dtype.type(n) if n else np.full_like(s, np.nan)
    if n == 0:
        return np.zeros_like(s)
    q, r = np.floor_divide(s, n), np.remainder(s, n)
    return q + ((r != 0) & (s < 0))  # truncate towards zero, as integer division does


def _log_sum_exp(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    m = np.maximum.reduce(x, axis=axes, keepdims=True, initial=-np.inf)
    shift = np.where(np.isfinite(m), m, 0).astype(x.dtype)  # +-inf and NaN come through exp/log
    return np.log(np.sum(np.exp(x - shift), axis=axes, keepdims=True)) + shift


@register_op("ember.reduce_sum", traits=REDUCE)
class ReduceSum(_Reduce):
    """Sum over axes; integers wrap in their own type; 0 over nothing.
    %y = ember.reduce_sum %x {axes = [1], keepdims = false} : f32[2,4]"""
    reference = _reducer(_sum)


@register_op("ember.reduce_mean", traits=REDUCE)
class ReduceMean(_Reduce):
    """Mean over axes: the (wrapping) sum divided by the count; integers truncate towards
    zero; NaN (floats) or 0 (integers) over nothing.
    %y = ember.reduce_mean %x {axes = [1], keepdims = false} : f32[2,4]"""
    reference = _reducer(_mean)


@register_op("ember.reduce_max", traits=REDUCE)
class ReduceMax(_Reduce):
    """Largest element; NaN if the slice holds one; -inf (or the type's minimum, or false)
    over nothing. Bools reduce as `any`.
    %y = ember.reduce_max %x {axes = [-1]} : f32[2,3,1]"""
    x = Operand(AnyTensor)
    out = Result(AnyTensor)
    kinds = ("float", "int", "uint", "bool")
    reference = _reducer(lambda x, ax: np.maximum.reduce(x, axis=ax, keepdims=True, initial=_extreme(x, True)))


@register_op("ember.reduce_min", traits=REDUCE)
class ReduceMin(_Reduce):
    """Smallest element; NaN if the slice holds one; +inf (or the type's maximum, or true)
    over nothing. Bools reduce as `all`.
    %y = ember.reduce_min %x {axes = [-1]} : f32[2,3,1]"""
    x = Operand(AnyTensor)
    out = Result(AnyTensor)
    kinds = ("float", "int", "uint", "bool")
    reference = _reducer(lambda x, ax: np.minimum.reduce(x, axis=ax, keepdims=True, initial=_extreme(x, False)))


@register_op("ember.reduce_prod", traits=REDUCE)
class ReduceProd(_Reduce):
    """Product; integers wrap in their own type; 1 over nothing.
    %y = ember.reduce_prod %x {axes = [0]} : f32[1,4]"""
    reference = _reducer(lambda x, ax: np.prod(x, axis=ax, keepdims=True, dtype=x.dtype))


@register_op("ember.reduce_l1", traits=REDUCE)
class ReduceL1(_Reduce):
    """Sum of absolute values (integers wrap; |min int| stays min int); 0 over nothing.
    %y = ember.reduce_l1 %x {axes = [1]} : f32[2,1]"""
    reference = _reducer(lambda x, ax: _sum(np.abs(x), ax))


@register_op("ember.reduce_l2", traits=REDUCE)
class ReduceL2(_Reduce):
    """sqrt(sum of squares); 0 over nothing. Floats only: an integer L2 norm is not an
    integer (the frontend casts ONNX's integer ReduceL2).
    %y = ember.reduce_l2 %x {axes = [1]} : f32[2,1]"""
    kinds = ("float",)
    reference = _reducer(lambda x, ax: np.sqrt(_sum(x * x, ax)))


@register_op("ember.reduce_sum_square", traits=REDUCE)
class ReduceSumSquare(_Reduce):
    """Sum of squares (integers wrap); 0 over nothing.
    %y = ember.reduce_sum_square %x {axes = [1]} : f32[2,1]"""
    reference = _reducer(lambda x, ax: _sum(x * x, ax))


@register_op("ember.reduce_log_sum", traits=REDUCE)
class ReduceLogSum(_Reduce):
    """log(sum); -inf over nothing. Floats only (ONNX drops integers here in opset 28).
    %y = ember.reduce_log_sum %x {axes = [1]} : f32[2,1]"""
    kinds = ("float",)
    reference = _reducer(lambda x, ax: np.log(_sum(x, ax)))


@register_op("ember.reduce_log_sum_exp", traits=REDUCE)
class ReduceLogSumExp(_Reduce):
    """log(sum(exp(x))), shifted by the slice's finite maximum so it does not overflow;
    -inf over nothing or over all -inf, +inf if the slice holds +inf, NaN if it holds NaN.
    Floats only (ONNX drops integers here in opset 28).
    %y = ember.reduce_log_sum_exp %x {axes = [1]} : f32[2,1]"""
    kinds = ("float",)
    reference = _reducer(_log_sum_exp)


# -- argmax, argmin --------------------------------------------------------------------------------
class _ArgReduce(Op):
    """Index (i64) of the extreme element along one axis."""

    x = Operand(NumericTensor)
    axis = Attr(A.Int, default=0)
    keepdims = Attr(A.Bool, default=True)
    select_last_index = Attr(A.Bool, default=False)
    out = Result(NumericTensor)

    def infer(self, x: Type) -> TensorType:
        t = rules.ranked(self, x, "x")
        rules.dtype_in(self, t, ("float", "int", "uint"), "x")
        ax = rules.axis(self, self.axis, t.rank)
        if t.shape[ax] == 0:  # type: ignore[index]
            raise self.error(f"axis {self.axis} of {t} is empty: there is no index to return")
        return TensorType(i64, _reduced_shape(t.shape, (ax,), self.keepdims))  # type: ignore[arg-type]


def _arg_reference(find: Callable[..., np.ndarray]) -> Reference:
    def reference(x: np.ndarray, *, axis: int, keepdims: bool, select_last_index: bool) -> np.ndarray:
        if x.shape[axis] == 0:
            raise ShapeError(f"axis {axis} of shape {list(x.shape)} is empty: there is no index to return")
        w = x.astype(rules.compute_dtype(x.dtype), copy=False)  # exact; numpy orders NaN for it
        if select_last_index:
            idx = x.shape[axis] - 1 - find(np.flip(w, axis), axis=axis, keepdims=keepdims)
        else:
            idx = find(w, axis=axis, keepdims=keepdims)
        return np.asarray(idx).astype(np.int64)

    return staticmethod(reference)  # type: ignore[return-value]


@register_op("ember.argmax", traits=REDUCE)
class ArgMax(_ArgReduce):
    """Index of the largest element along `axis`; ties give the first index, or the last
    with select_last_index. A NaN counts as larger than everything (reduce_max gives NaN,
    and argmax points at it): the first (or last) NaN wins.
    %i = ember.argmax %x {axis = 1, keepdims = false} : i64[4]"""
    reference = _arg_reference(np.argmax)


@register_op("ember.argmin", traits=REDUCE)
class ArgMin(_ArgReduce):
    """Index of the smallest element along `axis`; ties give the first index, or the last
    with select_last_index. A NaN counts as smaller than everything (reduce_min gives NaN,
    and argmin points at it): the first (or last) NaN wins.
    %i = ember.argmin %x {axis = 1, keepdims = false} : i64[4]"""
    reference = _arg_reference(np.argmin)


# -- cumsum, cumprod -------------------------------------------------------------------------------
class _Cumulative(Op):
    """A running reduction along `axis` (an attribute: ONNX's axis input is a constant in
    practice). exclusive: element i combines the elements before i (the first is the
    identity); reverse: run from the end. Low-precision floats accumulate in f32 and round
    each output once; integers wrap in their own type."""

    x = Operand(NumericTensor)
    axis = Attr(A.Int)
    exclusive = Attr(A.Bool, default=False)
    reverse = Attr(A.Bool, default=False)
    out = Result(NumericTensor)

    def infer(self, x: Type) -> TensorType:
        t = rules.ranked(self, x, "x")
        rules.dtype_in(self, t, ("float", "int", "uint"), "x")
        rules.axis(self, self.axis, t.rank)
        return t


def _cumulative(scan: Callable[..., np.ndarray], identity: int) -> Reference:
    """A running reduction's reference from a numpy scan (np.cumsum, np.cumprod)."""

    def reference(x: np.ndarray, *, axis: int, exclusive: bool, reverse: bool) -> np.ndarray:
        w = x.astype(rules.accumulate_dtype(x.dtype), copy=False)
        if reverse:
            w = np.flip(w, axis)
        with np.errstate(over="ignore", invalid="ignore"):
            s = scan(w, axis=axis, dtype=w.dtype)
        if exclusive:  # shift by one along the axis, the identity first
            s = np.moveaxis(s, axis, 0)
            s = np.moveaxis(np.concatenate([np.full_like(s[:1], identity), s[:-1]]), 0, axis)
        if reverse:
            s = np.flip(s, axis)
        return s.astype(x.dtype)

    return staticmethod(reference)  # type: ignore[return-value]


@register_op("ember.cumsum", traits={Pure})
class CumSum(_Cumulative):
    """Running sum along `axis` (ONNX CumSum); exclusive starts from 0.
    %y = ember.cumsum %x {axis = 1, reverse = true} : f32[2,8]"""
    reference = _cumulative(np.cumsum, 0)


@register_op("ember.cumprod", traits={Pure})
class CumProd(_Cumulative):
    """Running product along `axis` (ONNX CumProd, opset 26); exclusive starts from 1.
    %y = ember.cumprod %x {axis = 0, exclusive = true} : f64[5]"""
    reference = _cumulative(np.cumprod, 1)


# -- topk ------------------------------------------------------------------------------------------
@register_op("ember.topk", traits={Pure})
class TopK(Op):
    """The k largest (or smallest) elements along `axis` and their i64 indices.

    `k` is an attribute (ONNX's K input is a constant or shape arithmetic in practice)
    holding one dim, because k is a size that may be symbolic (k = min(N, 100) in
    detection heads, k = S in argsort-style uses) and becomes the result's dim on `axis`.
    Ties go to the lower index (as ONNX says). NaN counts as larger than every number:
    largest=true returns NaNs first, largest=false last.
    sorted=false only permits any order; the reference always returns sorted results.
    Where k is data (a detector's min(candidates, boxes over a threshold)), it comes as
    the optional scalar operand `k_value` instead, and the axis's size is unknown,
    bounded by the input's.
    %v, %i = ember.topk %x {k = 5} : f32[2,5], i64[2,5]"""

    x = Operand(NumericTensor)
    k_value = Operand(IntTensor, optional=True, doc="k computed at run time; exclusive with `k`")
    k = Attr(A.Optional(A.Dim), default=None)
    axis = Attr(A.Int, default=-1)
    largest = Attr(A.Bool, default=True)
    sorted = Attr(A.Bool, default=True)
    values = Result(NumericTensor)
    indices = Result(NumericTensor)

    def infer(self, x: Type, k_value: Type | None) -> tuple[TensorType, TensorType]:
        t = rules.ranked(self, x, "x")
        rules.dtype_in(self, t, ("float", "int", "uint"), "x")
        ax = rules.axis(self, self.axis, t.rank)
        if (k_value is None) == (self.k is None):
            raise self.error("give k either as the attribute k or as the operand k_value, not both or neither")
        if k_value is not None and rules.tensor(self, k_value).shape not in ((), (1,)):
            raise self.error(f"k_value must be a scalar, got {k_value}")
        n = t.shape[ax]  # type: ignore[index]
        k = self.k if self.k is not None else Unknown(None if isinstance(n, Unknown) else n)
        if isinstance(k, int) and k < 0:
            raise self.error(f"k must be >= 0, got {k}")
        if isinstance(k, int) and isinstance(n, int) and k > n:
            raise self.error(f"k = {k} exceeds the {n} elements on axis {self.axis} of {t}")
        shape = list(t.shape)  # type: ignore[arg-type]
        shape[ax] = k
        return t.with_shape(shape), TensorType(i64, tuple(shape))

    run_time_size_reads = ("k_value",)  # a size step reads k back, not x

    @staticmethod
    def symbolic_sizes(x: Any, k_value: Any, *, axis: int, **_: Any) -> tuple[tuple[Any, ...], ...] | None:
        if k_value is None or len(k_value.elements) != 1:
            return None
        ax = axis % len(x.shape)
        shape = tuple(k_value.elements[0] if i == ax else d for i, d in enumerate(x.shape))
        return shape, shape

    @staticmethod
    def run_time_sizes(x: Any, k_value: np.ndarray | None, *, k: int | None, axis: int,
                       **_: Any) -> tuple[tuple[int, ...], ...]:
        count = int(k) if k is not None else int(np.asarray(k_value).reshape(()))
        axis = axis % len(x.shape)
        if not 0 <= count <= x.shape[axis]:
            raise ShapeError(f"k = {count} is out of range for {x.shape[axis]} elements on axis {axis}")
        shape = tuple(count if i == axis else d for i, d in enumerate(x.shape))
        return shape, shape

    @staticmethod
    def reference(x: np.ndarray, k_value: np.ndarray | None, *, k: int | None, axis: int, largest: bool,
                  sorted: bool) -> tuple[np.ndarray, np.ndarray]:
        count = int(k) if k is not None else int(np.asarray(k_value).reshape(()))
        axis = axis % x.ndim
        n = x.shape[axis]
        if not 0 <= count <= n:
            raise ShapeError(f"k = {count} is out of range for {n} elements on axis {axis}")
        w = x.astype(rules.compute_dtype(x.dtype), copy=False)  # exact; numpy sorts NaN last
        if largest:
            # Stable ascending sort of the reversed axis, read backwards: descending, and
            # equal values keep increasing original indices.
            order = np.argsort(np.flip(w, axis), axis=axis, kind="stable")
            idx = np.flip(n - 1 - order, axis)
        else:
            idx = np.argsort(w, axis=axis, kind="stable")
        idx = np.take(idx, np.arange(count), axis=axis).astype(np.int64)
        return np.take_along_axis(x, idx, axis=axis), idx


__all__ = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin", "CumSum", "CumProd", "TopK"]
