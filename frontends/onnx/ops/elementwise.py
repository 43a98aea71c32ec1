"""Elementwise ONNX ops: unary math, activations, binary arithmetic, logic, comparison."""

from __future__ import annotations

from functools import reduce
from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter

UNARY = {
    "Abs": "ember.abs", "Neg": "ember.neg", "Exp": "ember.exp", "Log": "ember.log", "Sqrt": "ember.sqrt",
    "Reciprocal": "ember.reciprocal", "Sin": "ember.sin", "Cos": "ember.cos", "Tan": "ember.tan",
    "Asin": "ember.asin", "Acos": "ember.acos", "Atan": "ember.atan", "Sinh": "ember.sinh", "Cosh": "ember.cosh",
    "Tanh": "ember.tanh", "Asinh": "ember.asinh", "Acosh": "ember.acosh", "Atanh": "ember.atanh",
    "Erf": "ember.erf", "Sigmoid": "ember.sigmoid", "Softplus": "ember.softplus", "Softsign": "ember.softsign",
    "Floor": "ember.floor", "Ceil": "ember.ceil", "Round": "ember.round", "Relu": "ember.relu",
    "Sign": "ember.sign", "Not": "ember.not", "IsNaN": "ember.isnan", "BitwiseNot": "ember.bitwise_not",
    "Mish": "ember.mish", "HardSwish": "ember.hardswish",
}
BINARY = {
    "Add": "ember.add", "Sub": "ember.sub", "Mul": "ember.mul", "Div": "ember.div", "Pow": "ember.pow",
    "And": "ember.and", "Or": "ember.or", "Xor": "ember.xor", "Equal": "ember.equal", "Less": "ember.less",
    "LessOrEqual": "ember.less_equal", "Greater": "ember.greater", "GreaterOrEqual": "ember.greater_equal",
    "BitwiseAnd": "ember.bitwise_and", "BitwiseOr": "ember.bitwise_or", "BitwiseXor": "ember.bitwise_xor",
}
# Activation attributes: ONNX name -> (Ember name, default), per op.
WITH_ATTRS: dict[str, tuple[str, dict[str, tuple[str, Any]]]] = {
    "LeakyRelu": ("ember.leaky_relu", {"alpha": ("alpha", 0.01)}),
    "Elu": ("ember.elu", {"alpha": ("alpha", 1.0)}),
    "Selu": ("ember.selu", {"alpha": ("alpha", 1.67326319217681884765625),
                            "gamma": ("gamma", 1.05070102214813232421875)}),
    "Celu": ("ember.celu", {"alpha": ("alpha", 1.0)}),
    "HardSigmoid": ("ember.hard_sigmoid", {"alpha": ("alpha", 0.2), "beta": ("beta", 0.5)}),
    "ThresholdedRelu": ("ember.thresholded_relu", {"alpha": ("alpha", 1.0)}),
    "Shrink": ("ember.shrink", {"bias": ("bias", 0.0), "lambd": ("lambd", 0.5)}),
    "Gelu": ("ember.gelu", {"approximate": ("approximate", "none")}),
    "IsInf": ("ember.isinf", {"detect_negative": ("detect_negative", 1), "detect_positive": ("detect_positive", 1)}),
}


def _unary(name: str):  # noqa: ANN202
    return lambda ctx: ctx.op(name, ctx.input(0))


def _binary(name: str):  # noqa: ANN202
    return lambda ctx: ctx.op(name, ctx.input(0), ctx.input(1))


def _with_attrs(name: str, attrs: dict[str, tuple[str, Any]]):  # noqa: ANN202
    def convert(ctx: NodeContext) -> Any:
        values = {ember: ctx.attr(onnx_name, default) for onnx_name, (ember, default) in attrs.items()}
        return ctx.op(name, ctx.input(0), **values)
    return convert


for _onnx, _ember in UNARY.items():
    converter(_onnx)(_unary(_ember))
for _onnx, _ember in BINARY.items():
    converter(_onnx)(_binary(_ember))
for _onnx, (_ember, _attrs) in WITH_ATTRS.items():
    converter(_onnx)(_with_attrs(_ember, _attrs))


@converter("PRelu", since=1)
def prelu_channels(ctx: NodeContext) -> Any:
    """Before opset 7 a slope vector holds one value per channel (axis 1), as in Caffe2 and
    PyTorch's exports; it is reshaped to [C, 1, ..., 1] to broadcast that way."""
    x, slope = ctx.input(0), ctx.input(1)
    xt, st = ctx.tensor_type(0), ctx.tensor_type(1)
    if xt.rank is not None and xt.rank > 2 and st.shape is not None and st.rank == 1 and st.shape != (1,):
        slope = ctx.op("ember.unsqueeze", slope, axes=tuple(range(1, xt.rank - 1)))
    return ctx.op("ember.prelu", x, slope)


@converter("PRelu", since=7)
def prelu(ctx: NodeContext) -> Any:
    return ctx.op("ember.prelu", ctx.input(0), ctx.input(1))


@converter("Mod")
def mod(ctx: NodeContext) -> Any:
    return ctx.op("ember.mod", ctx.input(0), ctx.input(1), fmod=bool(ctx.attr("fmod", 0)))


@converter("BitShift")
def bit_shift(ctx: NodeContext) -> Any:
    direction = ctx.attr("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise ctx.fail(f"direction must be LEFT or RIGHT, got {direction!r}")
    return ctx.op("ember.bit_shift", ctx.input(0), ctx.input(1), direction=direction.lower())


def _fold(ctx: NodeContext, name: str) -> Any:
    values = [v for v in ctx.inputs() if v is not None]
    if not values:
        raise ctx.fail("needs at least one input")
    return reduce(lambda a, b: ctx.op(name, a, b), values)


@converter("Max")
def max_(ctx: NodeContext) -> Any:
    return _fold(ctx, "ember.max")


@converter("Min")
def min_(ctx: NodeContext) -> Any:
    return _fold(ctx, "ember.min")


@converter("Sum")
def sum_(ctx: NodeContext) -> Any:
    return _fold(ctx, "ember.add")


@converter("Mean")
def mean(ctx: NodeContext) -> Any:
    total = _fold(ctx, "ember.add")
    n = sum(1 for i in range(ctx.n_inputs) if ctx.has(i))
    if n == 1:
        return total
    return ctx.op("ember.div", total, ctx.constant(np.array(n, dtype=total.type.dtype.np_dtype)))


@converter("Clip", since=1)
def clip_attrs(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    dt = x.type.dtype.np_dtype
    lo = ctx.constant(np.array(ctx.attr("min", -3.4028234663852886e38), dtype=dt))
    hi = ctx.constant(np.array(ctx.attr("max", 3.4028234663852886e38), dtype=dt))
    return ctx.op("ember.clip", x, lo, hi)


@converter("Clip", since=11)
def clip(ctx: NodeContext) -> Any:
    return ctx.op("ember.clip", ctx.input(0), ctx.input(1), ctx.input(2))


@converter("Where")
def where(ctx: NodeContext) -> Any:
    return ctx.op("ember.where", ctx.input(0), ctx.input(1), ctx.input(2))
