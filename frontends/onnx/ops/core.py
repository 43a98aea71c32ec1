"""Constants, identity, casts, and the small shape ops every exported graph has."""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.frontends.onnx.tensors import element_type
from ember.ir.shape_values import range_length
from ember.ir.sizes import SizeError, numel


@converter("Constant")
def constant(ctx: NodeContext) -> Any:
    for name in ("value", "sparse_value"):
        if ctx.has_attr(name):
            if name == "sparse_value":
                raise ctx.unsupported("sparse constants are not supported")
            return np.asarray(ctx.attr(name))
    for name, dt in (("value_float", np.float32), ("value_int", np.int64), ("value_string", object)):
        if ctx.has_attr(name):
            return np.array(ctx.attr(name), dtype=dt)
    for name, dt in (("value_floats", np.float32), ("value_ints", np.int64), ("value_strings", object)):
        if ctx.has_attr(name):
            return np.array(list(ctx.attr(name)), dtype=dt)
    raise ctx.fail("a Constant needs a value attribute")


@converter("Identity")
def identity(ctx: NodeContext) -> Any:
    return ctx.input(0)


@converter("Cast")
def cast(ctx: NodeContext) -> Any:
    to = element_type(ctx.attr("to"), f"{ctx.name}: attribute 'to'")
    kwargs: dict[str, Any] = {"to": to, "saturate": bool(ctx.attr("saturate", 1))}
    if ctx.has_attr("round_mode"):
        kwargs["round_mode"] = ctx.attr("round_mode")
    return ctx.op("ember.cast", ctx.input(0), **kwargs)


@converter("CastLike")
def cast_like(ctx: NodeContext) -> Any:
    kwargs: dict[str, Any] = {"to": ctx.tensor_type(1).dtype, "saturate": bool(ctx.attr("saturate", 1))}
    if ctx.has_attr("round_mode"):
        kwargs["round_mode"] = ctx.attr("round_mode")
    return ctx.op("ember.cast", ctx.input(0), **kwargs)


@converter("Shape")
def shape(ctx: NodeContext) -> Any:
    kwargs: dict[str, Any] = {}
    if ctx.opset >= 15:
        kwargs = {"start": ctx.attr("start", 0), "end": ctx.attr("end", None)}
    return ctx.op("ember.shape", ctx.input(0), **kwargs)


@converter("Size")
def size(ctx: NodeContext) -> Any:
    return ctx.op("ember.size", ctx.input(0))


@converter("Reshape", since=1)
def reshape_attr(ctx: NodeContext) -> Any:
    shape = ctx.attr("shape")
    if shape is None:
        raise ctx.fail("Reshape before opset 5 takes its target shape as the attribute 'shape', and it has none")
    return ctx.op("ember.reshape", ctx.input(0), shape=tuple(shape))


@converter("Reshape", since=5)
def reshape(ctx: NodeContext) -> Any:
    dims = ctx.dims(1, "the target shape")
    return ctx.op("ember.reshape", ctx.input(0), shape=dims, allowzero=bool(ctx.attr("allowzero", 0)))


@converter("Flatten")
def flatten(ctx: NodeContext) -> Any:
    return ctx.op("ember.flatten", ctx.input(0), axis=ctx.attr("axis", 1))


@converter("Squeeze", since=1)
def squeeze_attr(ctx: NodeContext) -> Any:
    axes = ctx.attr("axes")
    return ctx.op("ember.squeeze", ctx.input(0), axes=tuple(axes) if axes is not None else None)


@converter("Squeeze", since=13)
def squeeze(ctx: NodeContext) -> Any:
    axes = ctx.static_ints(1, "axes") if ctx.has(1) else None
    return ctx.op("ember.squeeze", ctx.input(0), axes=axes)


@converter("Unsqueeze", since=1)
def unsqueeze_attr(ctx: NodeContext) -> Any:
    return ctx.op("ember.unsqueeze", ctx.input(0), axes=tuple(ctx.attr("axes")))


@converter("Unsqueeze", since=13)
def unsqueeze(ctx: NodeContext) -> Any:
    return ctx.op("ember.unsqueeze", ctx.input(0), axes=ctx.static_ints(1, "axes"))


@converter("Concat")
def concat(ctx: NodeContext) -> Any:
    axis = ctx.attr("axis", 1 if ctx.opset < 4 else None)  # opsets 1-3: default 1; from 4 on: required
    if axis is None:
        raise ctx.fail("attribute 'axis' is required")
    return ctx.op("ember.concat", *[v for v in ctx.inputs() if v is not None], axis=axis)


@converter("Transpose")
def transpose(ctx: NodeContext) -> Any:
    perm = ctx.attr("perm")
    return ctx.op("ember.transpose", ctx.input(0), perm=tuple(perm) if perm is not None else None)


@converter("Gather")
def gather(ctx: NodeContext) -> Any:
    return ctx.op("ember.gather", ctx.input(0), ctx.input(1), axis=ctx.attr("axis", 0))


@converter("ConstantOfShape")
def constant_of_shape(ctx: NodeContext) -> Any:
    value = ctx.attr("value")
    if value is not None and np.asarray(value).size != 1:
        raise ctx.fail(f"the fill value must have one element, it has {np.asarray(value).size}")
    fill = np.asarray(value).reshape(()) if value is not None else np.array(0.0, np.float32)
    known = ctx.shape_value(0)
    if known is None:  # a data-dependent shape (after NonZero, NMS): the shape stays an operand
        return ctx.op("ember.constant_of_shape", ctx.input(0), value=fill)
    dims = known.elements
    if all(isinstance(d, int) for d in dims):
        try:
            count = numel(dims, "the shape")
        except SizeError as err:
            raise ctx.fail(str(err)) from None
        if count <= 1 << 16:
            return np.full(tuple(int(d) for d in dims), fill, dtype=fill.dtype)
    scalar = ctx.constant(fill)
    return ctx.op("ember.expand", scalar, shape=dims)


@converter("Expand")
def expand(ctx: NodeContext) -> Any:
    return ctx.op("ember.expand", ctx.input(0), shape=ctx.dims(1, "the shape"))


@converter("Range")
def range_(ctx: NodeContext) -> Any:
    """The length is data unless the bounds are known; with symbolic bounds (range(0, S, 1)
    from a Shape) and a static step it is ceil((limit - start) / delta), kept as a dim."""
    length = range_length(*(ctx.shape_value(i) for i in range(3)))
    kwargs = {"length": length} if length is not None else {}
    return ctx.op("ember.range", *(_scalar_operand(ctx, i) for i in range(3)), **kwargs)


def _scalar_operand(ctx: NodeContext, i: int) -> Any:
    """Range's operand i as a scalar: ONNX says scalars; exporters (AffineGrid's own body
    among them) pass one-element tensors, which onnxruntime accepts too."""
    t = ctx.tensor_type(i)
    if t.shape is not None and len(t.shape) == 1 and t.shape[0] == 1:
        return ctx.op("ember.reshape", ctx.input(i), shape=())
    return ctx.input(i)
