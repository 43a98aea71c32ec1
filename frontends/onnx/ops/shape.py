"""Shape and data-movement ONNX ops: Slice, Split, Pad, Tile, Trilu, EyeLike, BitCast,
and the indexing ops (GatherElements, GatherND, Scatter*, TensorScatter, OneHot,
NonZero, Compress, Unique, ReverseSequence).

The small shape ops every exported graph has (Reshape, Squeeze, Concat, Gather,
Expand, Range...) are in core.py. Inputs that are configuration (Slice's bounds,
Pad's pads, Tile's repeats, Split's sizes, OneHot's depth, Trilu's k) become
Ember attributes, read at build time with `ctx.dims` (sizes, maybe symbolic) or
`ctx.static` (plain integers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.frontends.onnx.tensors import element_type
from ember.ir.core import Value


def _ints(ctx: NodeContext, i: int, what: str) -> tuple[int, ...] | None:
    """An optional integer input as a tuple, needed at build time (None when absent)."""
    if not ctx.has(i):
        return None
    return ctx.static_ints(i, what)


def _scalar(ctx: NodeContext, i: int, what: str) -> Any:
    value = np.asarray(ctx.static(i, what))
    if value.size != 1:
        raise ctx.fail(f"{what} must hold one value, got shape {list(value.shape)}")
    return value.ravel()[0]


# -- slice, split, pad, tile ------------------------------------------------------------------------
@converter("Slice", since=1)
def slice_v1(ctx: NodeContext) -> Any:
    axes = ctx.attr("axes")
    return ctx.op("ember.slice", ctx.input(0), starts=tuple(ctx.attr("starts")), ends=tuple(ctx.attr("ends")),
                  axes=tuple(axes) if axes is not None else None)


@converter("Slice", since=10)
def slice_(ctx: NodeContext) -> Any:
    starts, ends = ctx.dims(1, "starts"), ctx.dims(2, "ends")
    axes, steps = _ints(ctx, 3, "axes"), _ints(ctx, 4, "steps")
    if steps is not None and all(s == 1 for s in steps):
        steps = None
    return ctx.op("ember.slice", ctx.input(0), starts=starts, ends=ends, axes=axes, steps=steps)


def _split(ctx: NodeContext, sizes: Any) -> Any:
    axis = ctx.attr("axis", 0)
    n = ctx.n_outputs
    if sizes is not None and len(sizes):
        if len(sizes) != n:
            raise ctx.fail(f"split has {len(sizes)} sizes for {n} outputs")
        outs = ctx.op("ember.split", ctx.input(0), axis=axis, sizes=tuple(sizes))
    else:
        num = ctx.attr("num_outputs", None) if ctx.opset >= 18 else None
        if num is not None and num != n:
            raise ctx.fail(f"num_outputs is {num}, but the node has {n} outputs")
        outs = ctx.op("ember.split", ctx.input(0), axis=axis, num_outputs=n)
    return list(outs)


@converter("Split", since=1)
def split_v1(ctx: NodeContext) -> Any:
    if ctx.has(1):
        return _split(ctx, ctx.dims(1, "split"))
    return _split(ctx, ctx.attr("split"))


@converter("Split", since=2)
def split_v2(ctx: NodeContext) -> Any:
    return _split(ctx, ctx.attr("split"))


@converter("Split", since=13)
def split_v13(ctx: NodeContext) -> Any:
    return _split(ctx, ctx.dims(1, "split") if ctx.has(1) else None)


def _pad(ctx: NodeContext, pads: Any, mode: str, value: Value | None, axes: Any = None) -> Any:
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.unsupported(f"pad mode {mode!r} is not one of constant, reflect, edge, wrap")
    if mode != "constant":
        value = None
    return ctx.op("ember.pad", ctx.input(0), value, pads=tuple(pads), mode=mode, axes=axes)


def _attr_value(ctx: NodeContext, value: float) -> Value | None:
    if value == 0:
        return None
    return ctx.constant(np.array(value).astype(ctx.tensor_type(0).dtype.np_dtype))


@converter("Pad", since=1)
def pad_v1(ctx: NodeContext) -> Any:
    return _pad(ctx, ctx.attr("paddings"), ctx.attr("mode", "constant"), _attr_value(ctx, ctx.attr("value", 0.0)))


@converter("Pad", since=2)
def pad_v2(ctx: NodeContext) -> Any:
    return _pad(ctx, ctx.attr("pads"), ctx.attr("mode", "constant"), _attr_value(ctx, ctx.attr("value", 0.0)))


@converter("Pad", since=11)
def pad(ctx: NodeContext) -> Any:
    value = ctx.input(2) if ctx.has(2) else None
    axes = _ints(ctx, 3, "axes") if ctx.opset >= 18 else None
    return _pad(ctx, ctx.dims(1, "pads"), ctx.attr("mode", "constant"), value, axes)


@converter("Tile", since=1)
def tile_v1(ctx: NodeContext) -> Any:
    rank = ctx.tensor_type(0).rank
    tiles, axis = int(_scalar(ctx, 1, "tiles")), int(_scalar(ctx, 2, "axis"))
    if not -rank <= axis < rank:
        raise ctx.fail(f"axis {axis} is out of range for rank {rank}")
    repeats = [1] * rank
    repeats[axis % rank] = tiles
    return ctx.op("ember.tile", ctx.input(0), repeats=tuple(repeats))


@converter("Tile", since=6)
def tile(ctx: NodeContext) -> Any:
    return ctx.op("ember.tile", ctx.input(0), repeats=ctx.dims(1, "repeats"))


@converter("Trilu", since=14)
def trilu(ctx: NodeContext) -> Any:
    k = int(_scalar(ctx, 1, "k")) if ctx.has(1) else 0
    return ctx.op("ember.trilu", ctx.input(0), upper=bool(ctx.attr("upper", 1)), k=k)


# -- gathers and scatters -----------------------------------------------------------------------------
@converter("GatherElements", since=11)
def gather_elements(ctx: NodeContext) -> Any:
    return ctx.op("ember.gather_elements", ctx.input(0), ctx.input(1), axis=ctx.attr("axis", 0))


@converter("GatherND", since=11)
def gather_nd(ctx: NodeContext) -> Any:
    return ctx.op("ember.gather_nd", ctx.input(0), ctx.input(1), batch_dims=ctx.attr("batch_dims", 0))


@converter("Scatter", since=9)
@converter("ScatterElements", since=11)
def scatter_elements(ctx: NodeContext) -> Any:
    return ctx.op("ember.scatter_elements", ctx.input(0), ctx.input(1), ctx.input(2), axis=ctx.attr("axis", 0),
                  reduction=ctx.attr("reduction", "none"))


@converter("ScatterND", since=11)
def scatter_nd(ctx: NodeContext) -> Any:
    return ctx.op("ember.scatter_nd", ctx.input(0), ctx.input(1), ctx.input(2),
                  reduction=ctx.attr("reduction", "none"))


@converter("OneHot", since=9)
def one_hot(ctx: NodeContext) -> Any:
    depth = _scalar(ctx, 1, "depth")
    if np.asarray(depth).dtype.kind == "f" and not np.isfinite(depth):
        raise ctx.fail(f"depth {depth} is not finite")
    return ctx.op("ember.one_hot", ctx.input(0), ctx.input(2), depth=int(depth), axis=ctx.attr("axis", -1))


# -- data-dependent sizes --------------------------------------------------------------------------------
@converter("NonZero", since=9)
def nonzero(ctx: NodeContext) -> Any:
    return ctx.op("ember.nonzero", ctx.input(0))


@converter("Compress", since=9)
def compress(ctx: NodeContext) -> Any:
    """gather(x, nonzero(condition)) along axis, or on the flattened x without one."""
    x = ctx.input(0)
    axis = ctx.attr("axis")
    if axis is None:
        x = ctx.op("ember.reshape", x, shape=(-1,))
        axis = 0
    cond = ctx.const(1)
    if cond is not None:
        idx = ctx.constant(np.flatnonzero(np.asarray(cond).ravel()).astype(np.int64))
    else:
        if ctx.tensor_type(1).rank != 1:
            raise ctx.fail(f"condition must be 1-D, got {ctx.tensor_type(1)}")
        idx = ctx.op("ember.squeeze", ctx.op("ember.nonzero", ctx.input(1)), axes=(0,))
    return ctx.op("ember.gather", x, idx, axis=axis)


@converter("Unique", since=11)
def unique(ctx: NodeContext) -> Any:
    outs = ctx.op("ember.unique", ctx.input(0), sorted=bool(ctx.attr("sorted", 1)), axis=ctx.attr("axis"))
    return list(outs)


# -- sequences and caches ------------------------------------------------------------------------------
@converter("ReverseSequence", since=10)
def reverse_sequence(ctx: NodeContext) -> Any:
    return ctx.op("ember.reverse_sequence", ctx.input(0), ctx.input(1), batch_axis=ctx.attr("batch_axis", 1),
                  time_axis=ctx.attr("time_axis", 0))


@converter("TensorScatter", since=24)
def tensor_scatter(ctx: NodeContext) -> Any:
    return ctx.op("ember.tensor_scatter", ctx.input(0), ctx.input(1), ctx.input(2) if ctx.has(2) else None,
                  axis=ctx.attr("axis", -2), mode=ctx.attr("mode", "linear"))


# -- generated and reinterpreted -------------------------------------------------------------------------
@converter("EyeLike", since=9)
def eye_like(ctx: NodeContext) -> Any:
    code = ctx.attr("dtype")
    dtype = element_type(code, f"{ctx.name}: attribute 'dtype'") if code is not None else None
    return ctx.op("ember.eye_like", ctx.input(0), k=ctx.attr("k", 0), dtype=dtype)


@converter("BitCast", since=26)
def bitcast(ctx: NodeContext) -> Any:
    to = element_type(ctx.attr("to"), f"{ctx.name}: attribute 'to'")
    return ctx.op("ember.bitcast", ctx.input(0), to=to)
