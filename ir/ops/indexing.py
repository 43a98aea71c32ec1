"""Indexing ops, the second half of the shape family (imported by ember.ir.ops.shape):
gather, gather_elements, gather_nd, scatter_elements, scatter_nd, tensor_scatter,
reverse_sequence, nonzero (and nonzero_padded), head, one_hot, unique.

Indices are data (operands of i32/i64, any integer type accepted). Conventions
for every op here, where ONNX leaves room:
- A negative index i counts from the end (i + d); an index outside [-d, d-1]
  is an error in the reference (kernels may treat it as undefined behaviour).
- Scatter with reduction "none" and duplicate indices: the update that comes
  last in row-major order of the indices wins (ONNX leaves it undefined).
  Reductions apply the updates in that order; f16/bf16/fp8 data accumulate in
  f32 and round once at the end; max/min propagate NaN; integers wrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.ir import attrs as A
from ember.ir.dims import Dim, Unknown, dmax, dmin
from ember.ir.opdef import AnyTensor, Attr, IntTensor, NumericTensor, Op, Operand, Pure, Result, register_op
from ember.ir.ops import rules
from ember.ir.ops.shape import MOVE, merge_dims, product, shape_of
from ember.ir.types import TensorType, Type, i64


def wrap_indices(indices: np.ndarray, d: int, what: str = "index") -> np.ndarray:
    """Indices in [-d, d-1] as int64 in [0, d-1]; anything outside raises IndexError."""
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + d, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= d):
        bad = indices.ravel()[np.flatnonzero((idx < 0) | (idx >= d))[0]]
        raise IndexError(f"{what} {bad} is out of range [-{d}, {d - 1}]")
    return idx


def _merge_shape(op: Op, a: tuple[Dim, ...], b: tuple[Dim, ...], what: str) -> tuple[Dim, ...]:
    if len(a) != len(b):
        raise op.error(f"{what}: shapes of rank {len(a)} and {len(b)} must be equal")
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        m = merge_dims(x, y)
        if m is None:
            raise op.error(f"{what}: dim {i} is {x} and {y}; they must be equal")
        out.append(m)
    return tuple(out)


def _last_dim(op: Op, t: Type, what: str = "indices") -> int:
    s = shape_of(op, t, what)
    if not s:
        raise op.error(f"{what} needs rank >= 1, got {t}")
    if not isinstance(s[-1], int):
        raise op.error(f"the last dim of {what} {t} must be static (it is the index depth)")
    return s[-1]


_UFUNC = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter_rows(out: np.ndarray, rows: np.ndarray, updates: np.ndarray, reduction: str) -> None:
    """out[rows[i]] (op)= updates[i] along out's first axis, in order; in place."""
    if reduction == "none":
        _, last_rev = np.unique(rows[::-1], return_index=True)
        keep = rows.size - 1 - last_rev  # the last occurrence of each row
        out[rows[keep]] = updates[keep]
    else:
        with np.errstate(invalid="ignore", over="ignore"):  # NaN propagates; integers wrap
            _UFUNC[reduction].at(out, rows, updates)


def _check_non_axis_dims(op: Op, indices: tuple[Dim, ...], data: tuple[Dim, ...], axis: int) -> None:
    for i, (a, b) in enumerate(zip(indices, data)):
        if i != axis and isinstance(a, int) and isinstance(b, int) and a > b:
            raise op.error(f"indices dim {i} is {a}, larger than the data's {b}; off the axis it must be <=")


# -- gathers ---------------------------------------------------------------------------------------------
@register_op("ember.gather", traits=MOVE)
class Gather(Op):
    """Pick slices of `data` along `axis` at `indices` (np.take): the result shape is
    data.shape[:axis] + indices.shape + data.shape[axis+1:].
    %y = ember.gather %table, %ids {axis = 0} : f32[N,S,512]"""

    data = Operand(AnyTensor)
    indices = Operand(IntTensor)
    axis = Attr(A.Int, default=0)
    out = Result(AnyTensor)

    def infer(self, data: Type, indices: Type) -> TensorType:
        ds, ix = shape_of(self, data, "data"), shape_of(self, indices, "indices")
        if not ds:
            raise self.error(f"data needs rank >= 1, got {data}")
        ax = rules.axis(self, self.axis, len(ds))
        return rules.tensor(self, data).with_shape(ds[:ax] + ix + ds[ax + 1:])

    @staticmethod
    def reference(data: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
        return np.take(data, wrap_indices(indices, data.shape[axis]), axis=axis)


@register_op("ember.gather_elements", traits=MOVE)
class GatherElements(Op):
    """out[i][j][k] = data[indices[i][j][k]][j][k] for axis 0 (likewise for others):
    indices has data's rank, the result its shape; off the axis its dims are <= data's.
    %y = ember.gather_elements %x, %idx {axis = 1} : f32[N,4]"""

    data = Operand(AnyTensor)
    indices = Operand(IntTensor)
    axis = Attr(A.Int, default=0)
    out = Result(AnyTensor)

    def infer(self, data: Type, indices: Type) -> TensorType:
        ds, ix = shape_of(self, data, "data"), shape_of(self, indices, "indices")
        if len(ds) != len(ix) or not ds:
            raise self.error(f"data {data} and indices {indices} need one rank >= 1")
        ax = rules.axis(self, self.axis, len(ds))
        _check_non_axis_dims(self, ix, ds, ax)
        return rules.tensor(self, data).with_shape(ix)

    @staticmethod
    def reference(data: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
        axis %= data.ndim
        grid = list(np.indices(indices.shape, sparse=True))
        grid[axis] = wrap_indices(indices, data.shape[axis])
        return data[tuple(grid)]


@register_op("ember.gather_nd", traits=MOVE)
class GatherND(Op):
    """Index the leading dims of `data` with tuples: indices [..., m] picks
    data[b..., i0, ..., i(m-1)] for each tuple, after `batch_dims` leading dims
    shared by data and indices. Result: indices.shape[:-1] + data.shape[batch_dims+m:].
    %y = ember.gather_nd %x, %idx {batch_dims = 1} : f32[N,K,8]"""

    data = Operand(AnyTensor)
    indices = Operand(IntTensor)
    batch_dims = Attr(A.Int, default=0)
    out = Result(AnyTensor)

    def infer(self, data: Type, indices: Type) -> TensorType:
        ds, ix = shape_of(self, data, "data"), shape_of(self, indices, "indices")
        m, b = _last_dim(self, indices), self.batch_dims
        if not 0 <= b < min(len(ds), len(ix)):
            raise self.error(f"batch_dims {b} must be in [0, {min(len(ds), len(ix)) - 1}] for data {data} "
                             f"and indices {indices}")
        if not 1 <= m <= len(ds) - b:
            raise self.error(f"index tuples of length {m} (last dim of {indices}) must be in [1, {len(ds) - b}]")
        batch = _merge_shape(self, ds[:b], ix[:b], "batch dims of data and indices")
        return rules.tensor(self, data).with_shape(batch + ix[b:-1] + ds[b + m:])

    @staticmethod
    def reference(data: np.ndarray, indices: np.ndarray, *, batch_dims: int) -> np.ndarray:
        b, m = batch_dims, indices.shape[-1]
        if data.shape[:b] != indices.shape[:b]:
            raise ValueError(f"batch dims differ: data {data.shape}, indices {indices.shape}")
        count = int(np.prod(indices.shape[:b], dtype=np.int64))
        flat_data = data.reshape((count,) + data.shape[b:])
        flat_idx = indices.reshape((count,) + indices.shape[b:])
        cols = tuple(wrap_indices(flat_idx[..., j], flat_data.shape[1 + j]) for j in range(m))
        batch = np.arange(count).reshape((count,) + (1,) * (flat_idx.ndim - 2))
        out = flat_data[(batch,) + cols]
        return out.reshape(indices.shape[:-1] + data.shape[b + m:])


# -- scatters ---------------------------------------------------------------------------------------------
class _Scatter(Op):
    data = Operand(AnyTensor)
    indices = Operand(IntTensor)
    updates = Operand(AnyTensor)

    def _common(self, data: Type, updates: Type) -> TensorType:
        rules.same_dtype(self, data, updates)
        if self.reduction != "none" and rules.tensor(self, data).dtype.kind == "string":
            raise self.error(f"reduction {self.reduction} needs numeric data, got {data}")
        return rules.tensor(self, data)


@register_op("ember.scatter_elements", traits={Pure})
class ScatterElements(_Scatter):
    """A copy of data with out[indices[i][j]][j] (op)= updates[i][j] for axis 0 (likewise
    for others); op is `reduction`: none (assign), add, mul, max, min. See the module
    docstring for duplicates and accumulation. Not DataMovement: reductions compute.
    %y = ember.scatter_elements %x, %idx, %upd {axis = 0, reduction = "add"} : f32[4,3]"""

    axis = Attr(A.Int, default=0)
    reduction = Attr(A.OneOf("none", "add", "mul", "max", "min"), default="none")
    out = Result(AnyTensor)

    def infer(self, data: Type, indices: Type, updates: Type) -> TensorType:
        t = self._common(data, updates)
        ds, ix = shape_of(self, data, "data"), shape_of(self, indices, "indices")
        _merge_shape(self, ix, shape_of(self, updates, "updates"), "indices and updates")
        if len(ds) != len(ix) or not ds:
            raise self.error(f"data {data} and indices {indices} need one rank >= 1")
        _check_non_axis_dims(self, ix, ds, rules.axis(self, self.axis, len(ds)))
        return t

    @staticmethod
    def reference(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, axis: int,
                  reduction: str) -> np.ndarray:
        axis %= data.ndim
        grid = list(np.indices(indices.shape, sparse=True))
        grid[axis] = wrap_indices(indices, data.shape[axis])
        rows = np.ravel_multi_index(tuple(np.broadcast_arrays(*grid)), data.shape).ravel()
        work = data.astype(rules.accumulate_dtype(data.dtype)).ravel()  # a fresh copy
        _scatter_rows(work, rows, updates.astype(work.dtype).ravel(), reduction)
        return work.astype(data.dtype).reshape(data.shape)


@register_op("ember.scatter_nd", traits={Pure})
class ScatterND(_Scatter):
    """A copy of data where each index tuple indices[..., :k] addresses a slice
    data[i0, ..., i(k-1)] that is assigned (or reduced with) the matching slice of
    updates, whose shape is indices.shape[:-1] + data.shape[k:].
    %y = ember.scatter_nd %x, %idx, %upd {reduction = "none"} : f32[8,4]"""

    reduction = Attr(A.OneOf("none", "add", "mul", "max", "min"), default="none")
    out = Result(AnyTensor)

    def infer(self, data: Type, indices: Type, updates: Type) -> TensorType:
        t = self._common(data, updates)
        ds, ix = shape_of(self, data, "data"), shape_of(self, indices, "indices")
        k = _last_dim(self, indices)
        if k > len(ds):
            raise self.error(f"index tuples of length {k} (last dim of {indices}) exceed the rank of {data}")
        _merge_shape(self, shape_of(self, updates, "updates"), ix[:-1] + ds[k:],
                     "updates and indices.shape[:-1] + data.shape[k:]")
        return t

    @staticmethod
    def reference(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, reduction: str) -> np.ndarray:
        k = indices.shape[-1]
        lead, rest = data.shape[:k], data.shape[k:]
        cols = tuple(wrap_indices(indices[..., j], lead[j]) for j in range(k))
        rows = (np.ravel_multi_index(cols, lead) if k else np.zeros(indices.shape[:-1], np.int64)).ravel()
        work = data.astype(rules.accumulate_dtype(data.dtype)).reshape((int(np.prod(lead, dtype=np.int64)),) + rest)
        _scatter_rows(work, rows, updates.astype(work.dtype).reshape((rows.size,) + rest), reduction)
        return work.astype(data.dtype).reshape(data.shape)


@register_op("ember.tensor_scatter", traits=MOVE)
class TensorScatter(Op):
    """A KV-cache write: a copy of `cache` where, for each batch row b (dim 0) and every
    index of the dims before `axis`, update's positions 0..S-1 along `axis` land at
    write_indices[b] + 0..S-1 (mod the cache's length there with mode=circular).
    cache and update differ only at `axis` (update's S <= the cache's length);
    write_indices is [batch], zeros when absent. With mode=linear a write past the
    end is an error in the reference (ONNX TensorScatter, opset 24).
    %y = ember.tensor_scatter %cache, %update, %pos {axis = -2, mode = "linear"} : f32[B,H,L,D]"""

    cache = Operand(AnyTensor)
    update = Operand(AnyTensor)
    write_indices = Operand(IntTensor, optional=True)
    axis = Attr(A.Int, default=-2)
    mode = Attr(A.OneOf("linear", "circular"), default="linear")
    out = Result(AnyTensor)

    def infer(self, cache: Type, update: Type, write_indices: Type | None) -> TensorType:
        cs, us = shape_of(self, cache, "cache"), shape_of(self, update, "update")
        rules.same_dtype(self, cache, update)
        if len(cs) != len(us) or len(cs) < 2:
            raise self.error(f"cache {cache} and update {update} need one rank >= 2")
        ax = rules.axis(self, self.axis, len(cs))
        if ax == 0:
            raise self.error("axis 0 is the batch axis; the sequence axis must come after it")
        out = list(cs)
        for i, (c, u) in enumerate(zip(cs, us)):
            if i == ax:
                if isinstance(c, int) and isinstance(u, int) and u > c:
                    raise self.error(f"update has {u} positions along axis {ax}, more than the cache's {c}")
                continue
            m = merge_dims(c, u)
            if m is None:
                raise self.error(f"cache {cache} and update {update} differ at dim {i}; only axis {ax} may")
            out[i] = m
        if write_indices is not None:
            ws = shape_of(self, write_indices, "write_indices")
            if len(ws) != 1 or merge_dims(ws[0], out[0]) is None:
                raise self.error(f"write_indices must be [batch] = [{out[0]}], got {write_indices}")
        return rules.tensor(self, cache).with_shape(out)

    @staticmethod
    def reference(cache: np.ndarray, update: np.ndarray, write_indices: np.ndarray | None, *, axis: int,
                  mode: str) -> np.ndarray:
        axis %= cache.ndim
        batch, length, steps = cache.shape[0], cache.shape[axis], update.shape[axis]
        start = np.zeros(batch, np.int64) if write_indices is None else write_indices.astype(np.int64)
        pos = start[:, None] + np.arange(steps, dtype=np.int64)[None, :]  # [batch, steps]
        if mode == "circular":
            pos %= max(length, 1)
        elif pos.size and (pos.min() < 0 or pos.max() >= length):
            raise IndexError(f"tensor_scatter writes positions {int(pos.min())}..{int(pos.max())} into a cache "
                             f"of length {length} (mode linear)")
        shape = [1] * cache.ndim
        shape[0], shape[axis] = batch, steps
        index = np.broadcast_to(pos.reshape(shape), update.shape)
        out = cache.copy()
        np.put_along_axis(out, index, update, axis=axis)
        return out


@register_op("ember.reverse_sequence", traits=MOVE)
class ReverseSequence(Op):
    """For each index b along `batch_axis`, reverse the first lengths[b] elements along
    `time_axis` and keep the rest in place (ONNX ReverseSequence, where the two axes
    are 0 and 1; any two distinct axes here). Lengths must be in [0, time dim].
    %y = ember.reverse_sequence %x, %lens {batch_axis = 1, time_axis = 0} : f32[T,B,8]"""

    x = Operand(AnyTensor)
    lengths = Operand(IntTensor)
    batch_axis = Attr(A.Int, default=1)
    time_axis = Attr(A.Int, default=0)
    out = Result(AnyTensor)

    def infer(self, x: Type, lengths: Type) -> TensorType:
        xs, ls = shape_of(self, x), shape_of(self, lengths, "lengths")
        if len(xs) < 2:
            raise self.error(f"needs rank >= 2, got {x}")
        b = rules.axis(self, self.batch_axis, len(xs), "batch_axis")
        t = rules.axis(self, self.time_axis, len(xs), "time_axis")
        if b == t:
            raise self.error(f"batch_axis and time_axis are both axis {b}; they must differ")
        if len(ls) != 1 or merge_dims(ls[0], xs[b]) is None:
            raise self.error(f"lengths must be [{xs[b]}] (the batch dim of {x}), got {lengths}")
        return rules.tensor(self, x)

    @staticmethod
    def reference(x: np.ndarray, lengths: np.ndarray, *, batch_axis: int, time_axis: int) -> np.ndarray:
        b, t = batch_axis % x.ndim, time_axis % x.ndim
        steps = x.shape[t]
        lens = lengths.astype(np.int64)
        if lens.size and (lens.min() < 0 or lens.max() > steps):
            raise IndexError(f"sequence lengths {lens.tolist()} must be in [0, {steps}]")
        shape = [1] * x.ndim
        shape[t] = steps
        time = np.arange(steps, dtype=np.int64).reshape(shape)
        shape = [1] * x.ndim
        shape[b] = lens.size
        lens = lens.reshape(shape)
        source = np.where(time < lens, lens - 1 - time, time)
        return np.take_along_axis(x, np.broadcast_to(source, x.shape), axis=t)


# -- data-dependent and generated ---------------------------------------------------------------------
@register_op("ember.nonzero", traits={Pure})
class NonZero(Op):
    """Coordinates of the nonzero elements, one column each in row-major order:
    i64[rank, n] with n unknown before run time but at most numel (a scalar gives
    i64[0, ?<=1]).
    %i = ember.nonzero %x : i64[2,?<=N*4]"""

    x = Operand(AnyTensor)
    out = Result(IntTensor)

    def infer(self, x: Type) -> TensorType:
        xs = shape_of(self, x)
        numel = product(xs)
        return TensorType(i64, (len(xs), Unknown(None if isinstance(numel, Unknown) else numel)))

    @staticmethod
    def run_time_sizes(x: np.ndarray) -> tuple[tuple[int, ...], ...]:
        return ((x.ndim, int(np.count_nonzero(x))),)  # (a size step reads x back: a detector's mask)

    @staticmethod
    def reference(x: np.ndarray) -> np.ndarray:
        if x.ndim == 0:
            return np.zeros((0, int(np.count_nonzero(x))), np.int64)
        return np.stack(np.nonzero(x)).astype(np.int64).reshape(x.ndim, -1)


@register_op("ember.nonzero_padded", traits={Pure})
class NonZeroPadded(Op):
    """ember.nonzero at its bound with a count: `selected` is i64[rank, numel] holding
    ember.nonzero's columns first and -1 columns after them, `count` (i64 scalar) how
    many columns are real. A GPU counts while it compacts, so the size of ember.nonzero's
    result costs one 8-byte read back (ember.head of the pair on axis 1), not the input.
    %i, %n = ember.nonzero_padded %x : i64[2,12], i64[]"""

    x = Operand(AnyTensor)
    selected = Result(IntTensor)
    count = Result(IntTensor)

    def infer(self, x: Type) -> tuple[TensorType, TensorType]:
        xs = shape_of(self, x)
        if not xs:
            raise self.error(f"x must have rank >= 1, got {x}")
        return TensorType(i64, (len(xs), product(xs))), TensorType(i64, ())

    @staticmethod
    def reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        columns = NonZero.reference(x)
        out = np.full((x.ndim, x.size), -1, np.int64)
        out[:, :columns.shape[1]] = columns
        return out, np.array(columns.shape[1], np.int64)



@register_op("ember.head", traits=MOVE)
class Head(Op):
    """The first `count` entries of x along `axis` (count an i64 scalar, clamped to [0,
    the axis' size]): what is real of a fixed-size padded result, such as
    ember.nms_padded's rows. The size is data, known only at run time, but a size step
    reads back just the count (8 bytes) and a copy keeps the rest on the device.
    %y = ember.head %rows, %n : i64[?<=30,3]"""

    x = Operand(AnyTensor)
    count = Operand(IntTensor)
    axis = Attr(A.Int, default=0)
    out = Result(AnyTensor)

    def infer(self, x: Type, count: Type) -> TensorType:
        t = rules.ranked(self, x, "x")
        n = rules.ranked(self, count, "count")
        if n.rank != 0:
            raise self.error(f"count must be a scalar, got {count}")
        ax = rules.axis(self, self.axis, t.rank)
        shape = list(t.shape)  # type: ignore[arg-type]
        d = shape[ax]
        shape[ax] = Unknown(None if isinstance(d, Unknown) else d)
        return t.with_shape(tuple(shape))

    run_time_size_reads = ("count",)  # a size step reads the count back, not x

    @staticmethod
    def symbolic_sizes(x: Any, count: Any, *, axis: int) -> tuple[tuple[Dim, ...], ...] | None:
        ax = axis % len(x.shape)
        n = dmin(dmax(count.elements[0], 0), x.shape[ax])
        return (tuple(n if i == ax else d for i, d in enumerate(x.shape)),)

    @staticmethod
    def run_time_sizes(x: Any, count: np.ndarray, *, axis: int) -> tuple[tuple[int, ...], ...]:
        ax = axis % len(x.shape)
        n = min(max(int(np.asarray(count).reshape(())), 0), x.shape[ax])
        return (tuple(n if i == ax else d for i, d in enumerate(x.shape)),)

    @staticmethod
    def reference(x: np.ndarray, count: np.ndarray, *, axis: int) -> np.ndarray:
        ax = axis % x.ndim
        n = min(max(int(np.asarray(count).reshape(())), 0), x.shape[ax])
        return np.array(np.take(x, np.arange(n), axis=ax))


@register_op("ember.one_hot", traits={Pure})
class OneHot(Op):
    """values[1] where the index equals the position along the new `axis` (of size
    `depth`), values[0] elsewhere. Negative indices in [-depth, -1] count from the end,
    others out of range give all values[0]; float indices truncate towards zero.
    `depth` is an attribute (ONNX: an input), as it sizes the result.
    %y = ember.one_hot %ids, %values {depth = 10, axis = -1} : f32[N,10]"""

    indices = Operand(NumericTensor)
    values = Operand(AnyTensor, doc="[off, on]")
    depth = Attr(A.Int)
    axis = Attr(A.Int, default=-1)
    out = Result(AnyTensor)

    def infer(self, indices: Type, values: Type) -> TensorType:
        ix = shape_of(self, indices, "indices")
        if shape_of(self, values, "values") != (2,):
            raise self.error(f"values must be [off, on] of shape [2], got {values}")
        if self.depth < 1:
            raise self.error(f"depth {self.depth} must be >= 1")
        ax = rules.axis(self, self.axis, len(ix) + 1)
        return rules.tensor(self, values).with_shape(ix[:ax] + (self.depth,) + ix[ax:])

    @staticmethod
    def reference(indices: np.ndarray, values: np.ndarray, *, depth: int, axis: int) -> np.ndarray:
        ax = axis % (indices.ndim + 1)
        idx = indices.astype(np.int64) if indices.dtype.kind in "iu" else np.trunc(indices.astype(np.float64))
        idx = np.where(idx < 0, idx + depth, idx)
        positions = np.arange(depth).reshape((depth,) + (1,) * (indices.ndim - ax))
        hot = np.expand_dims(idx, ax) == positions
        return np.where(hot, values[1], values[0]).astype(values.dtype)


@register_op("ember.unique", traits={Pure})
class Unique(Op):
    """The distinct elements of x (flattened), or its distinct slices along `axis`;
    sorted ascending, or with sorted=false in the order they first occur. Results:
    the unique values, the index of each one's first occurrence in x, for each element
    (slice) of x the index of its value in the result (`inverse`), and each value's
    count. All counts are data: the result length is an unknown dim bounded by numel
    (or by the axis dim). NaNs are one value; -0.0 and 0.0 are one value (numpy's
    np.unique); f16/bf16/fp8 compare exactly as f32 (ONNX Unique).
    %u, %first, %inverse, %counts = ember.unique %x {sorted = true} : f32[?<=N*4], i64[?<=N*4], i64[N*4], i64[?<=N*4]"""

    x = Operand(AnyTensor)
    sorted = Attr(A.Bool, default=True)
    axis = Attr(A.Optional(A.Int), default=None)
    values = Result(AnyTensor)
    first = Result(IntTensor)
    inverse = Result(IntTensor)
    counts = Result(IntTensor)

    def infer(self, x: Type) -> tuple[TensorType, ...]:
        xs = shape_of(self, x)
        t = rules.tensor(self, x)
        if self.axis is None:
            total = product(xs)
            n = Unknown(None if isinstance(total, Unknown) else total)
            values = t.with_shape((n,))
        else:
            ax = rules.axis(self, self.axis, len(xs))
            total = xs[ax]
            n = Unknown(None if isinstance(total, Unknown) else total)
            values = t.with_shape(xs[:ax] + (n,) + xs[ax + 1:])
        return values, TensorType(i64, (n,)), TensorType(i64, (total,)), TensorType(i64, (n,))

    @staticmethod
    def reference(x: np.ndarray, *, sorted: bool, axis: int | None) -> tuple[np.ndarray, ...]:
        work = x.astype(rules.compute_dtype(x.dtype), copy=False)  # f16/bf16/fp8 exactly as f32
        if axis is None:
            work, ax = work.reshape(-1), 0
        else:
            ax = axis % x.ndim
        values, first, inverse, counts = np.unique(work, return_index=True, return_inverse=True,
                                                   return_counts=True, axis=None if axis is None else ax)
        inverse = inverse.reshape(-1)
        if not sorted:
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            values, first, counts, inverse = np.take(values, order, axis=ax), first[order], counts[order], \
                rank[inverse]
        return (values.astype(x.dtype), first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64))


__all__ = ["Gather", "GatherElements", "GatherND", "ScatterElements", "ScatterND", "TensorScatter", "ReverseSequence",
           "NonZero", "Head", "OneHot", "Unique", "wrap_indices"]
