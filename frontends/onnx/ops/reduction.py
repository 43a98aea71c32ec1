"""Reductions, arg-reductions, running sums and products, and top-k.

ONNX moved reduction axes from an attribute to an input (ReduceSum at opset 13, the
others at 18); either way Ember takes them as an attribute, read at build time. Absent
or empty axes reduce everything, unless `noop_with_empty_axes` asks for no reduction
(`axes = ()` in Ember, which still applies the non-reducing part: ReduceSumSquare
squares, ReduceLogSum takes the log).
"""

from __future__ import annotations

from typing import Any

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.ir.types import f64

REDUCTIONS = {
    "ReduceSum": "ember.reduce_sum", "ReduceMean": "ember.reduce_mean", "ReduceMax": "ember.reduce_max",
    "ReduceMin": "ember.reduce_min", "ReduceProd": "ember.reduce_prod", "ReduceL1": "ember.reduce_l1",
    "ReduceL2": "ember.reduce_l2", "ReduceLogSum": "ember.reduce_log_sum",
    "ReduceLogSumExp": "ember.reduce_log_sum_exp", "ReduceSumSquare": "ember.reduce_sum_square",
}
# Ember's op takes floats only; ONNX (before opset 28 for the log ones) also integers, which
# compute in f64 and truncate toward zero back to the integer type.
FLOAT_ONLY = {"ReduceL2", "ReduceLogSum", "ReduceLogSumExp"}
# The opset where the axes attribute became an input.
AXES_INPUT_SINCE = {name: 18 for name in REDUCTIONS} | {"ReduceSum": 13}


def reduction_axes(ctx: NodeContext, axes_input: bool) -> tuple[int, ...] | None:
    """The Ember `axes` of a reduce node: None for all axes, () for none."""
    if axes_input:
        axes = ctx.static_ints(1, "axes") if ctx.has(1) else ()
    else:
        axes = tuple(int(a) for a in ctx.attr("axes", ()))
    if axes:
        return axes
    return () if ctx.attr("noop_with_empty_axes", 0) else None


def _reduce(onnx_name: str, ember_name: str, axes_input: bool):  # noqa: ANN202
    def convert(ctx: NodeContext) -> Any:
        x = ctx.input(0)
        t = ctx.tensor_type(0)
        kwargs = {"axes": reduction_axes(ctx, axes_input), "keepdims": bool(ctx.attr("keepdims", 1))}
        if onnx_name in FLOAT_ONLY and t.dtype.kind in ("int", "uint"):
            y = ctx.op(ember_name, ctx.op("ember.cast", x, to=f64), **kwargs)
            return ctx.op("ember.cast", y, to=t.dtype)
        return ctx.op(ember_name, x, **kwargs)
    return convert


for _onnx, _ember in REDUCTIONS.items():
    converter(_onnx, since=1)(_reduce(_onnx, _ember, False))
    converter(_onnx, since=AXES_INPUT_SINCE[_onnx])(_reduce(_onnx, _ember, True))


def _arg(ember_name: str):  # noqa: ANN202
    def convert(ctx: NodeContext) -> Any:
        return ctx.op(ember_name, ctx.input(0), axis=ctx.attr("axis", 0), keepdims=bool(ctx.attr("keepdims", 1)),
                      select_last_index=bool(ctx.attr("select_last_index", 0)))
    return convert


converter("ArgMax")(_arg("ember.argmax"))
converter("ArgMin")(_arg("ember.argmin"))


def _cumulative(ember_name: str):  # noqa: ANN202
    def convert(ctx: NodeContext) -> Any:
        (axis,) = ctx.static_ints(1, "the axis", count=1)
        return ctx.op(ember_name, ctx.input(0), axis=axis, exclusive=bool(ctx.attr("exclusive", 0)),
                      reverse=bool(ctx.attr("reverse", 0)))
    return convert


converter("CumSum", since=11)(_cumulative("ember.cumsum"))
converter("CumProd", since=26)(_cumulative("ember.cumprod"))


@converter("TopK", since=1)
def topk_attr(ctx: NodeContext) -> Any:
    k = ctx.attr("k")
    if k is None:
        raise ctx.fail("TopK before opset 10 needs the attribute k")
    return list(ctx.op("ember.topk", ctx.input(0), k=int(k), axis=ctx.attr("axis", -1)))


@converter("TopK", since=10)
def topk(ctx: NodeContext) -> Any:
    options = dict(axis=ctx.attr("axis", -1), largest=bool(ctx.attr("largest", 1)), sorted=bool(ctx.attr("sorted", 1)))
    k = ctx.shape_value(1)
    if k is None:  # computed from the data (a detector's candidate count): k as an operand
        return list(ctx.op("ember.topk", ctx.input(0), ctx.input(1), **options))
    if len(k.elements) != 1:
        raise ctx.fail(f"K must hold one value, got {len(k.elements)}")
    return list(ctx.op("ember.topk", ctx.input(0), k=k.elements[0], **options))
