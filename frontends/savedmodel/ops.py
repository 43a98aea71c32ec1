"""TensorFlow ops as Ember ops, each in TensorFlow's own layout.

NHWC stays NHWC: convolutions and pooling carry `layout="NHWC"` and filters
`weight_layout="HWIO"`, so a Keras CNN imports with no transposes (the layout
pass has nothing to do). Window padding: TensorFlow's SAME puts the odd pad at
the end, which is Ember's SAME_UPPER; EXPLICIT gives per-dim (before, after)
pairs. Configuration inputs (axes, shapes, paddings, slice bounds) must be
known at build time; shapes may hold symbolic dims.

Element types follow TensorFlow: Div and FloorDiv on integers floor (Ember's
div truncates, so they are composed from mod); Shape gives int32 unless
out_type says int64; ArgMax gives output_type.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.savedmodel import atrous
from ember.frontends.savedmodel.importer import NodeContext, converter
from ember.ir.dims import Dim, add, floordiv, mul
from ember.ir.shape_values import range_length
from ember.ir.types import dtype_of
from ember.ir.sizes import SizeError, numel

BIG = 1 << 62  # an open slice bound


def _dt(np_dtype: Any) -> Any:
    return dtype_of(np.zeros(0, np_dtype))


def _like(ctx: NodeContext, i: int, value: float) -> Any:
    return ctx.constant(np.asarray(value, dtype=ctx.type(i).dtype.np_dtype))


# -- elementwise ------------------------------------------------------------------------------
UNARY = {
    "Neg": "ember.neg", "Abs": "ember.abs", "Exp": "ember.exp", "Log": "ember.log", "Sqrt": "ember.sqrt",
    "Rsqrt": "ember.rsqrt", "Reciprocal": "ember.reciprocal", "Inv": "ember.reciprocal", "Floor": "ember.floor",
    "Ceil": "ember.ceil", "Round": "ember.round", "Rint": "ember.round", "Sign": "ember.sign", "Sin": "ember.sin",
    "Cos": "ember.cos", "Tan": "ember.tan", "Asin": "ember.asin", "Acos": "ember.acos", "Atan": "ember.atan",
    "Sinh": "ember.sinh", "Cosh": "ember.cosh", "Asinh": "ember.asinh", "Acosh": "ember.acosh",
    "Atanh": "ember.atanh", "Erf": "ember.erf", "Sigmoid": "ember.sigmoid", "Tanh": "ember.tanh",
    "Softplus": "ember.softplus", "Softsign": "ember.softsign", "Relu": "ember.relu", "Elu": "ember.elu",
    "LogicalNot": "ember.not", "IsNan": "ember.isnan", "Mish": "ember.mish",
}
BINARY = {
    "Add": "ember.add", "AddV2": "ember.add", "Sub": "ember.sub", "Mul": "ember.mul", "RealDiv": "ember.div",
    "Maximum": "ember.max", "Minimum": "ember.min", "Pow": "ember.pow", "Equal": "ember.equal",
    "Less": "ember.less", "LessEqual": "ember.less_equal", "Greater": "ember.greater",
    "GreaterEqual": "ember.greater_equal", "LogicalAnd": "ember.and", "LogicalOr": "ember.or",
}


@converter(*UNARY)
def unary(ctx: NodeContext) -> Any:
    return ctx.op(UNARY[ctx.op_type], ctx.input(0))


@converter(*BINARY)
def binary(ctx: NodeContext) -> Any:
    return ctx.op(BINARY[ctx.op_type], ctx.input(0), ctx.input(1))


@converter("NotEqual")
def not_equal(ctx: NodeContext) -> Any:
    return ctx.op("ember.not", ctx.op("ember.equal", ctx.input(0), ctx.input(1)))


def _floordiv(ctx: NodeContext, x: Any, y: Any) -> Any:
    if ctx.type(0).dtype.is_float:
        return ctx.op("ember.floor", ctx.op("ember.div", x, y))
    # (x - floormod(x, y)) is a multiple of y, so truncating division of it floors
    return ctx.op("ember.div", ctx.op("ember.sub", x, ctx.op("ember.mod", x, y)), y)


@converter("Div", "FloorDiv")
def div(ctx: NodeContext) -> Any:
    x, y = ctx.input(0), ctx.input(1)
    if ctx.op_type == "Div" and ctx.type(0).dtype.is_float:
        return ctx.op("ember.div", x, y)
    return _floordiv(ctx, x, y)


@converter("FloorMod")
def floor_mod(ctx: NodeContext) -> Any:
    return ctx.op("ember.mod", ctx.input(0), ctx.input(1), fmod=False)


@converter("DivNoNan")
def div_no_nan(ctx: NodeContext) -> Any:
    y = ctx.input(1)
    zero = _like(ctx, 1, 0)
    safe = ctx.op("ember.where", ctx.op("ember.equal", y, zero), _like(ctx, 1, 1), y)
    return ctx.op("ember.where", ctx.op("ember.equal", y, zero), zero, ctx.op("ember.div", ctx.input(0), safe))


@converter("Square")
def square(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    return ctx.op("ember.mul", x, x)


@converter("SquaredDifference")
def squared_difference(ctx: NodeContext) -> Any:
    d = ctx.op("ember.sub", ctx.input(0), ctx.input(1))
    return ctx.op("ember.mul", d, d)


@converter("Erfc")
def erfc(ctx: NodeContext) -> Any:
    return ctx.op("ember.sub", _like(ctx, 0, 1), ctx.op("ember.erf", ctx.input(0)))


@converter("Log1p")
def log1p(ctx: NodeContext) -> Any:
    return ctx.op("ember.log", ctx.op("ember.add", ctx.input(0), _like(ctx, 0, 1)))


@converter("Expm1")
def expm1(ctx: NodeContext) -> Any:
    return ctx.op("ember.sub", ctx.op("ember.exp", ctx.input(0)), _like(ctx, 0, 1))


@converter("Relu6")
def relu6(ctx: NodeContext) -> Any:
    return ctx.op("ember.clip", ctx.input(0), _like(ctx, 0, 0), _like(ctx, 0, 6))


@converter("ClipByValue")
def clip_by_value(ctx: NodeContext) -> Any:
    return ctx.op("ember.min", ctx.op("ember.max", ctx.input(0), ctx.input(1)), ctx.input(2))


@converter("LeakyRelu")
def leaky_relu(ctx: NodeContext) -> Any:
    return ctx.op("ember.leaky_relu", ctx.input(0), alpha=float(ctx.attr("alpha", 0.2)))


@converter("Selu")
def selu(ctx: NodeContext) -> Any:
    return ctx.op("ember.selu", ctx.input(0), alpha=1.6732632423543772848170429916717,
                  gamma=1.0507009873554804934193349852946)


@converter("AddN")
def add_n(ctx: NodeContext) -> Any:
    values = ctx.inputs()
    if not values:
        raise ctx.fail("AddN of no inputs")
    total = values[0]
    for v in values[1:]:
        total = ctx.op("ember.add", total, v)
    return total


@converter("Select", "SelectV2")
def select(ctx: NodeContext) -> Any:
    cond = ctx.input(0)
    if ctx.op_type == "Select" and ctx.rank(0) == 1 and ctx.rank(1) > 1:
        # TF1 Select: a vector condition picks whole rows
        cond = ctx.op("ember.unsqueeze", cond, axes=tuple(range(1, ctx.rank(1))))
    return ctx.op("ember.where", cond, ctx.input(1), ctx.input(2))


@converter("Cast")
def cast(ctx: NodeContext) -> Any:
    return ctx.op("ember.cast", ctx.input(0), to=_dt(ctx.dtype("DstT")))


@converter("BiasAdd", "BiasAddV1")
def bias_add(ctx: NodeContext) -> Any:
    x, b = ctx.input(0), ctx.input(1)
    if ctx.attr("data_format", "NHWC") == "NCHW" and ctx.rank(0) > 2:
        b = ctx.op("ember.unsqueeze", b, axes=tuple(range(1, ctx.rank(0) - 1)))
    return ctx.op("ember.add", x, b)


# -- softmax, matmul, einsum ---------------------------------------------------------------------------
@converter("Softmax")
def softmax(ctx: NodeContext) -> Any:
    return ctx.op("ember.softmax", ctx.input(0), axis=-1)


@converter("LogSoftmax")
def log_softmax(ctx: NodeContext) -> Any:
    return ctx.op("ember.log_softmax", ctx.input(0), axis=-1)


def _swap_last(ctx: NodeContext, x: Any, rank: int) -> Any:
    perm = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    return ctx.op("ember.transpose", x, perm=perm)


@converter("MatMul")
def matmul(ctx: NodeContext) -> Any:
    a, b = ctx.input(0), ctx.input(1)
    if ctx.attr("transpose_a", False):
        a = _swap_last(ctx, a, 2)
    if ctx.attr("transpose_b", False):
        b = _swap_last(ctx, b, 2)
    return ctx.op("ember.matmul", a, b)


@converter("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def batch_matmul(ctx: NodeContext) -> Any:
    a, b = ctx.input(0), ctx.input(1)
    if ctx.attr("adj_x", False):
        a = _swap_last(ctx, a, ctx.rank(0))
    if ctx.attr("adj_y", False):
        b = _swap_last(ctx, b, ctx.rank(1))
    out = ctx.op("ember.matmul", a, b)
    if ctx.op_type == "BatchMatMulV3" and ctx.attr("Tout") is not None:
        want = _dt(ctx.dtype("Tout"))
        if out.type.dtype != want:
            out = ctx.op("ember.cast", out, to=want)
    return out


@converter("Einsum")
def einsum(ctx: NodeContext) -> Any:
    return ctx.op("ember.einsum", *ctx.inputs(), equation=ctx.required("equation"))


# -- convolution and pooling -------------------------------------------------------------------------
def _format(ctx: NodeContext, n: int) -> tuple[str | None, slice]:
    """The Ember activation layout and where the spatial entries sit in TF's 4/5-entry lists."""
    fmt = ctx.attr("data_format", "NHWC" if n == 2 else "NDHWC")
    if fmt in ("NHWC", "NDHWC", "NWC"):
        return fmt, slice(1, 1 + n)
    if fmt in ("NCHW", "NCDHW", "NCW"):
        return None, slice(2, 2 + n)
    raise ctx.unsupported(f"data_format {fmt!r}")


def _padding(ctx: NodeContext, n: int, spatial: slice) -> dict[str, Any]:
    padding = ctx.attr("padding", "VALID")
    if padding == "SAME":
        return {"auto_pad": "SAME_UPPER", "pads": ()}
    if padding == "VALID":
        return {"auto_pad": "VALID", "pads": ()}
    if padding == "EXPLICIT":
        flat = [int(p) for p in ctx.attr("explicit_paddings", [])]
        pairs = [flat[2 * i:2 * i + 2] for i in range(len(flat) // 2)][spatial]
        if len(pairs) != n:
            raise ctx.fail(f"explicit_paddings {flat} do not give {n} spatial pairs")
        return {"auto_pad": "NOTSET", "pads": tuple(p[0] for p in pairs) + tuple(p[1] for p in pairs)}
    raise ctx.unsupported(f"padding {padding!r}")


def _window(ctx: NodeContext, n: int) -> tuple[dict[str, Any], str | None]:
    layout, spatial = _format(ctx, n)
    strides = [int(s) for s in ctx.attr("strides", [1] * (n + 2))][spatial]
    attrs = {"strides": tuple(strides), **_padding(ctx, n, spatial)}
    dil = ctx.attr("dilations")
    if dil is not None:
        attrs["dilations"] = tuple(int(d) for d in dil[spatial])
    return attrs, layout


@converter("Conv2D", "Conv3D")
def conv(ctx: NodeContext) -> Any:
    n = 2 if ctx.op_type == "Conv2D" else 3
    attrs, layout = _window(ctx, n)
    x, w = ctx.type(0), ctx.type(1)
    channels = x.shape[-1] if layout else x.shape[1]
    per_group = w.shape[-2]
    group = 1
    if isinstance(channels, int) and isinstance(per_group, int) and per_group and channels != per_group:
        group = channels // per_group
    return _conv(ctx, ctx.input(1), group, layout, "HWIO" if n == 2 else "DHWIO", attrs)


@converter("DepthwiseConv2dNative")
def depthwise_conv(ctx: NodeContext) -> Any:
    attrs, layout = _window(ctx, 2)
    kh, kw, c, m = ctx.type(1).shape
    w = ctx.const(1)
    if w is not None:
        weight = ctx.importer.constant(np.ascontiguousarray(w.reshape(kh, kw, 1, c * m))) \
            if w.size <= 64 else ctx.importer.weight(f"{ctx.name}/filter", w.reshape(kh, kw, 1, c * m))
    else:  # output channel c*m + j reads input channel c: the filter's [C, M] axes flatten in order
        weight = ctx.op("ember.reshape", ctx.input(1), shape=(kh, kw, 1, c * m))
    return _conv(ctx, weight, c, layout, "HWIO", attrs)


def _conv(ctx: NodeContext, weight: Any, group: Any, layout: str | None, weight_layout: str,
          attrs: dict[str, Any]) -> Any:
    x = ctx.input(0)
    out = ctx.op("ember.conv", x, weight, None, group=group, layout=layout, weight_layout=weight_layout, **attrs)
    n = len(attrs["strides"])
    spatial = tuple(range(1, 1 + n)) if layout else tuple(range(2, 2 + n))
    if attrs["auto_pad"] == "VALID" and all(st == 1 for st in attrs["strides"]) \
            and all(d == 1 for d in attrs.get("dilations") or (1,) * n):
        def redo(v: Any, dilations: dict[int, int], pads: dict[int, tuple[int, int]]) -> Any:
            return ctx.op("ember.conv", v, weight, None, group=group, layout=layout, weight_layout=weight_layout,
                          strides=(1,) * n, dilations=tuple(dilations.get(a, 1) for a in spatial),
                          pads=tuple(pads.get(a, (0, 0))[0] for a in spatial) +
                          tuple(pads.get(a, (0, 0))[1] for a in spatial), auto_pad="NOTSET")
        atrous.conv(ctx.importer.atrous, out, x, spatial, redo)
    return out


@converter("Conv2DBackpropInput")
def conv_transpose(ctx: NodeContext) -> Any:
    attrs, layout = _window(ctx, 2)
    sizes = ctx.dims(0, "input_sizes")
    spatial = list(sizes[1:3] if layout else sizes[2:4])
    kh, kw = ctx.type(1).shape[:2]
    x = ctx.type(2)
    ins = list(x.shape[1:3] if layout else x.shape[2:4])
    strides = attrs["strides"]
    dil = attrs.get("dilations") or (1, 1)
    if not all(isinstance(d, int) for d in spatial + ins):
        raise ctx.unsupported("a transposed convolution needs static spatial sizes")
    pads_begin, pads_end, out_pad = [], [], []
    for axis, (out, inp, k, s, d) in enumerate(zip(spatial, ins, (kh, kw), strides, dil)):
        eff = (k - 1) * d + 1
        if attrs["auto_pad"] == "SAME_UPPER":
            total = max((inp - 1) * s + eff - out, 0)
            begin = total // 2
        elif attrs["auto_pad"] == "VALID":
            begin, total = 0, 0
        else:
            begin, total = attrs["pads"][axis], attrs["pads"][axis] + attrs["pads"][axis + 2]
        end = total - begin
        natural = s * (inp - 1) + eff - begin - end
        extra = out - natural
        if extra < 0 or extra >= max(s, d):
            raise ctx.fail(f"input_sizes {list(sizes)} do not fit a stride-{s} transpose of size {inp}")
        if extra:  # the extra rows come at the end, as the forward convolution's padding puts them
            end -= extra
            if end < 0:
                out_pad.append(-end)
                end = 0
            else:
                out_pad.append(0)
        else:
            out_pad.append(0)
        pads_begin.append(begin)
        pads_end.append(end)
    return ctx.op("ember.conv_transpose", ctx.input(2), ctx.input(1), None, strides=strides, dilations=tuple(dil),
                  pads=tuple(pads_begin + pads_end), output_padding=tuple(out_pad), auto_pad="NOTSET",
                  layout=layout, weight_layout="HWOI")


def _pool(ctx: NodeContext, name: str, **extra: Any) -> Any:
    n = ctx.rank(0) - 2
    layout, spatial = _format(ctx, n)
    ksize = [int(k) for k in ctx.required("ksize")][spatial]
    strides = [int(s) for s in ctx.required("strides")][spatial]
    return ctx.op(name, ctx.input(0), kernel_shape=tuple(ksize), strides=tuple(strides), layout=layout,
                  **_padding(ctx, n, spatial), **extra)


@converter("MaxPool", "MaxPool3D")
def max_pool(ctx: NodeContext) -> Any:
    return _pool(ctx, "ember.max_pool")


@converter("AvgPool", "AvgPool3D")
def avg_pool(ctx: NodeContext) -> Any:
    return _pool(ctx, "ember.avg_pool", count_include_pad=False)  # TF averages over the valid taps


@converter("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def fused_batch_norm(ctx: NodeContext) -> Any:
    layout, _ = _format(ctx, ctx.rank(0) - 2)
    x = ctx.input(0)
    scale, offset, mean, var = (ctx.input(i) for i in range(1, 5))
    xt = ctx.type(0)
    eps = float(ctx.attr("epsilon", 1e-4))
    if xt.dtype != ctx.type(1).dtype:  # f16 activations, f32 statistics
        x = ctx.op("ember.cast", x, to=ctx.type(1).dtype)
    if ctx.attr("is_training", True):
        y, mean, var = _batch_statistics_norm(ctx, x, scale, offset, eps, channel=xt.rank - 1 if layout else 1)
    else:
        y = ctx.op("ember.batch_norm", x, scale, offset, mean, var, epsilon=eps, layout=layout)
    if xt.dtype != ctx.type(1).dtype:
        y = ctx.op("ember.cast", y, to=xt.dtype)
    n = 6 if ctx.op_type == "FusedBatchNormV3" else 5
    return [y, mean, var, mean, var, mean][:n]


def _batch_statistics_norm(ctx: NodeContext, x: Any, scale: Any, offset: Any, eps: float, channel: int
                           ) -> tuple[Any, Any, Any]:
    """is_training=True: normalize by the moments over every axis but the channels (biased
    variance), as tf.keras' LayerNormalization does on its input reshaped to [1, rows, D, 1].
    Axes of size 1 drop out of the reduction, so that form reduces over trailing axes and
    recognize-patterns sees a LayerNorm."""
    shape = x.type.shape
    axes = tuple(a for a in range(len(shape)) if a != channel and (a > channel or shape[a] != 1))
    mean = ctx.op("ember.reduce_mean", x, axes=axes, keepdims=True)
    d = ctx.op("ember.sub", x, mean)
    var = ctx.op("ember.reduce_mean", ctx.op("ember.mul", d, d), axes=axes, keepdims=True)
    eps_c = ctx.constant(np.asarray(eps, dtype=x.type.dtype.np_dtype))
    y = ctx.op("ember.mul", d, ctx.op("ember.rsqrt", ctx.op("ember.add", var, eps_c)))
    trailing = len(shape) - 1 - channel
    for param, unit, combine in ((scale, 1.0, "ember.mul"), (offset, 0.0, "ember.add")):
        if _splat(ctx, param) == unit:  # tf.keras passes ones and zeros (made by Fill)
            continue
        if trailing:  # [C] against the channel axis
            param = ctx.op("ember.unsqueeze", param, axes=tuple(range(1, trailing + 1)))
        y = ctx.op(combine, y, param)
    flat_mean = ctx.op("ember.reshape", mean, shape=(shape[channel],))
    flat_var = ctx.op("ember.reshape", var, shape=(shape[channel],))
    return y, flat_mean, flat_var


def _splat(ctx: NodeContext, v: Any) -> float | None:
    """The one value every element of `v` has, when the import knows it (a constant, or a
    constant expanded to a shape that may be symbolic); None otherwise."""
    known = ctx.importer.known.get(v)
    if known is None and getattr(v.owner, "name", None) == "ember.expand":
        known = ctx.importer.known.get(v.owner.operands[0])
    if known is None or known.size == 0:
        return None
    first = known.reshape(-1)[0]
    return float(first) if np.all(known == first) else None


# -- reductions -----------------------------------------------------------------------------------------
REDUCE = {"Mean": "ember.reduce_mean", "Sum": "ember.reduce_sum", "Max": "ember.reduce_max",
          "Min": "ember.reduce_min", "Prod": "ember.reduce_prod"}


@converter(*REDUCE)
def reduce(ctx: NodeContext) -> Any:
    axes = ctx.ints(1, "reduction axes")
    if not axes:
        return ctx.op("ember.identity", ctx.input(0))
    return ctx.op(REDUCE[ctx.op_type], ctx.input(0), axes=tuple(axes), keepdims=bool(ctx.attr("keep_dims", False)))


@converter("All", "Any")
def all_any(ctx: NodeContext) -> Any:
    axes = ctx.ints(1, "reduction axes")
    x = ctx.op("ember.cast", ctx.input(0), to=_dt(np.int32))
    r = ctx.op("ember.reduce_min" if ctx.op_type == "All" else "ember.reduce_max", x, axes=tuple(axes),
               keepdims=bool(ctx.attr("keep_dims", False))) if axes else x
    return ctx.op("ember.cast", r, to=_dt(np.bool_))


@converter("ArgMax", "ArgMin")
def arg_max(ctx: NodeContext) -> Any:
    axis = _one(ctx, ctx.ints(1, "dimension"), "dimension")
    out = ctx.op("ember.argmax" if ctx.op_type == "ArgMax" else "ember.argmin", ctx.input(0), axis=axis,
                 keepdims=False)
    want = _dt(ctx.dtype("output_type")) if ctx.attr("output_type") is not None else _dt(np.int64)
    return out if out.type.dtype == want else ctx.op("ember.cast", out, to=want)


# -- shapes and data movement ---------------------------------------------------------------------------
@converter("Shape")
def shape(ctx: NodeContext) -> Any:
    out = ctx.op("ember.shape", ctx.input(0))
    want = _dt(ctx.dtype("out_type")) if ctx.attr("out_type") is not None else _dt(np.int32)
    return out if out.type.dtype == want else ctx.op("ember.cast", out, to=want)


@converter("Size")
def size(ctx: NodeContext) -> Any:
    out = ctx.op("ember.size", ctx.input(0))
    want = _dt(ctx.dtype("out_type")) if ctx.attr("out_type") is not None else _dt(np.int32)
    return out if out.type.dtype == want else ctx.op("ember.cast", out, to=want)


@converter("Rank")
def rank(ctx: NodeContext) -> Any:
    return np.array(ctx.rank(0), dtype=np.int32)


@converter("Reshape")
def reshape(ctx: NodeContext) -> Any:
    return ctx.op("ember.reshape", ctx.input(0), shape=tuple(ctx.dims(1, "the target shape")), allowzero=True)


@converter("Transpose")
def transpose(ctx: NodeContext) -> Any:
    return ctx.op("ember.transpose", ctx.input(0), perm=tuple(ctx.ints(1, "perm")))


@converter("ConcatV2")
def concat_v2(ctx: NodeContext) -> Any:
    axis = _one(ctx, ctx.ints(ctx.n_inputs - 1, "axis"), "axis")
    return ctx.op("ember.concat", *(ctx.input(i) for i in range(ctx.n_inputs - 1)), axis=axis)


@converter("Concat")
def concat_v1(ctx: NodeContext) -> Any:
    axis = _one(ctx, ctx.ints(0, "axis"), "axis")
    return ctx.op("ember.concat", *(ctx.input(i) for i in range(1, ctx.n_inputs)), axis=axis)


@converter("Pack")
def pack(ctx: NodeContext) -> Any:
    axis = int(ctx.attr("axis", 0))
    parts = [ctx.op("ember.unsqueeze", ctx.input(i), axes=(axis,)) for i in range(ctx.n_inputs)]
    return parts[0] if len(parts) == 1 else ctx.op("ember.concat", *parts, axis=axis)


MAX_PARTS = 1 << 16  # the most results a split may have when the size of the split axis is symbolic


def _one(ctx: NodeContext, values: list[int], what: str) -> int:
    if len(values) != 1:
        raise ctx.fail(f"{what} must be one value; it has {len(values)}")
    return values[0]


def _parts(ctx: NodeContext, num: int, i: int, axis: int) -> int:
    """A split's part count: positive, and no more than input `i` has along `axis` when that is known."""
    t = ctx.type(i)
    dim = t.shape[axis] if t.shape is not None and -len(t.shape) <= axis < len(t.shape) else None
    if num < 1 or num > MAX_PARTS or (isinstance(dim, int) and num > max(dim, 1)):
        raise ctx.fail(f"cannot split {t} into {num} parts along axis {axis}")
    return num


@converter("Unpack")
def unpack(ctx: NodeContext) -> Any:
    axis = int(ctx.attr("axis", 0))
    num = _parts(ctx, int(ctx.required("num")), 0, axis)
    parts = ctx.op("ember.split", ctx.input(0), axis=axis, num_outputs=num) if num > 1 else [ctx.input(0)]
    return [ctx.op("ember.squeeze", p, axes=(axis,)) for p in parts]


@converter("Split")
def split(ctx: NodeContext) -> Any:
    axis = _one(ctx, ctx.ints(0, "split_dim"), "split_dim")
    num = _parts(ctx, int(ctx.required("num_split")), 1, axis)
    return list(ctx.op("ember.split", ctx.input(1), axis=axis, num_outputs=num)) if num > 1 else [ctx.input(1)]


@converter("SplitV")
def split_v(ctx: NodeContext) -> Any:
    axis = _one(ctx, ctx.ints(2, "split_dim"), "split_dim")
    sizes: list[Dim] = list(ctx.dims(1, "size_splits"))
    if -1 in sizes:
        dim = ctx.type(0).shape[axis]
        rest: Dim = dim
        for s in sizes:
            if s != -1:
                rest = add(rest, -s) if not isinstance(s, int) or not isinstance(rest, int) else rest - s
        sizes[sizes.index(-1)] = rest
    if len(sizes) == 1:
        return [ctx.input(0)]
    return list(ctx.op("ember.split", ctx.input(0), axis=axis, sizes=tuple(sizes)))


@converter("Squeeze")
def squeeze(ctx: NodeContext) -> Any:
    axes = ctx.attr("squeeze_dims", [])
    x = ctx.input(0)
    out = ctx.op("ember.squeeze", x, axes=tuple(int(a) for a in axes) if axes else None)
    if axes:
        rank = ctx.rank(0)
        gone = sorted({int(a) % rank for a in axes})

        def moved(tracked: tuple[int, ...]) -> tuple[int, ...] | None:
            if set(tracked) & set(gone):
                return None
            return tuple(a - sum(g < a for g in gone) for a in tracked)
        t = ctx.importer.atrous.get(x)
        atrous.view(ctx.importer.atrous, out, x, moved(t.axes) if t else None,
                    lambda v: ctx.op("ember.squeeze", v, axes=tuple(gone)))
    return out


@converter("ExpandDims")
def expand_dims(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    axis = _one(ctx, ctx.ints(1, "axis"), "axis") % (ctx.rank(0) + 1)
    out = ctx.op("ember.unsqueeze", x, axes=(axis,))
    t = ctx.importer.atrous.get(x)
    atrous.view(ctx.importer.atrous, out, x, tuple(a + (a >= axis) for a in t.axes) if t else None,
                lambda v: ctx.op("ember.unsqueeze", v, axes=(axis,)))
    return out


@converter("GatherV2", "Gather")
def gather(ctx: NodeContext) -> Any:
    if int(ctx.attr("batch_dims", 0)) != 0:
        raise ctx.unsupported(f"batch_dims={ctx.attr('batch_dims')}")
    axis = _one(ctx, ctx.ints(2, "axis"), "axis") if ctx.op_type == "GatherV2" else 0
    return ctx.op("ember.gather", ctx.input(0), ctx.input(1), axis=axis)


@converter("ResourceGather")
def resource_gather(ctx: NodeContext) -> Any:
    if int(ctx.attr("batch_dims", 0)) != 0:
        raise ctx.unsupported(f"batch_dims={ctx.attr('batch_dims')}")
    return ctx.op("ember.gather", ctx.variable(0), ctx.input(1), axis=0)


@converter("GatherNd")
def gather_nd(ctx: NodeContext) -> Any:
    idx = ctx.input(1)
    if idx.type.dtype != _dt(np.int64):
        idx = ctx.op("ember.cast", idx, to=_dt(np.int64))
    return ctx.op("ember.gather_nd", ctx.input(0), idx, batch_dims=0)


@converter("Tile")
def tile(ctx: NodeContext) -> Any:
    return ctx.op("ember.tile", ctx.input(0), repeats=tuple(ctx.dims(1, "multiples")))


@converter("BroadcastTo")
def broadcast_to(ctx: NodeContext) -> Any:
    return ctx.op("ember.expand", ctx.input(0), shape=tuple(ctx.dims(1, "shape")))


def _count(ctx: NodeContext, dims: Any) -> int:
    """The element count of concrete dims, checked (ember.ir.sizes) before anything is allocated."""
    try:
        return numel([int(d) for d in dims], "the shape")
    except SizeError as err:
        raise ctx.fail(str(err)) from None


@converter("Fill")
def fill(ctx: NodeContext) -> Any:
    dims = ctx.dims(0, "dims")
    value = ctx.const(1)
    if value is not None and value.size != 1:
        raise ctx.fail(f"the fill value must be one value; it has {value.size}")
    if value is not None and all(isinstance(d, int) for d in dims) and _count(ctx, dims) <= 1 << 16:
        return np.full(tuple(int(d) for d in dims), value.reshape(()), dtype=value.dtype)
    return ctx.op("ember.expand", ctx.input(1), shape=tuple(dims))


@converter("ZerosLike", "OnesLike")
def zeros_like(ctx: NodeContext) -> Any:
    t = ctx.type(0)
    scalar = _like(ctx, 0, 0 if ctx.op_type == "ZerosLike" else 1)
    return ctx.op("ember.expand", scalar, shape=tuple(t.shape))


@converter("Range")
def range_(ctx: NodeContext) -> Any:
    values = [ctx.const(i) for i in range(3)]
    if all(v is not None for v in values):
        if any(v.size != 1 for v in values):  # type: ignore[union-attr]
            raise ctx.fail("start, limit and delta must be one value each")
        start, limit, delta = (v.reshape(()).item() for v in values)  # type: ignore[union-attr]
        if delta == 0 or not all(np.isfinite([start, limit, delta])):
            raise ctx.fail(f"a range from {start} to {limit} by {delta} has no length")
        _count(ctx, [max(0, int(np.ceil((limit - start) / delta)))])
        return np.arange(start, limit, delta, dtype=_range_dtype(ctx))
    length = range_length(*(ctx.shape_value(i) for i in range(3)))
    return ctx.op("ember.range", ctx.input(0), ctx.input(1), ctx.input(2),
                  **({"length": length} if length is not None else {}))


def _range_dtype(ctx: NodeContext) -> Any:
    t = ctx.attr("Tidx")
    return ctx.dtype("Tidx") if t is not None else ctx.type(0).dtype.np_dtype


@converter("Pad", "PadV2", "MirrorPad")
def pad(ctx: NodeContext) -> Any:
    paddings = np.asarray(ctx.static(1, "paddings")).reshape(-1, 2)
    pads = tuple(int(p) for p in paddings[:, 0]) + tuple(int(p) for p in paddings[:, 1])
    if ctx.op_type == "MirrorPad":
        mode = ctx.attr("mode", "REFLECT")
        if mode == "SYMMETRIC":
            return _symmetric_pad(ctx, paddings)
        return ctx.op("ember.pad", ctx.input(0), None, pads=pads, mode="reflect")
    value = ctx.input(2) if ctx.op_type == "PadV2" else None
    return ctx.op("ember.pad", ctx.input(0), value, pads=pads, mode="constant")


def _symmetric_pad(ctx: NodeContext, paddings: np.ndarray) -> Any:
    """Mirror padding that repeats the edge element: per axis, the first `before` elements
    reversed, the tensor, the last `after` reversed."""
    x = ctx.input(0)
    for axis, (before, after) in enumerate(paddings.tolist()):
        parts = []
        if before:
            head = ctx.op("ember.slice", x, starts=(0,), ends=(int(before),), axes=(axis,))
            parts.append(ctx.op("ember.slice", head, starts=(before - 1,), ends=(-before - 1,), axes=(axis,),
                                steps=(-1,)))
        parts.append(x)
        if after:
            tail = ctx.op("ember.slice", x, starts=(-int(after),), ends=(BIG,), axes=(axis,))
            parts.append(ctx.op("ember.slice", tail, starts=(after - 1,), ends=(-after - 1,), axes=(axis,),
                                steps=(-1,)))
        if len(parts) > 1:
            x = ctx.op("ember.concat", *parts, axis=axis)
    return x


@converter("ReverseV2")
def reverse(ctx: NodeContext) -> Any:
    rank = ctx.rank(0)
    axes = sorted({a % rank for a in ctx.ints(1, "axis")})
    if not axes:
        return ctx.op("ember.identity", ctx.input(0))
    return ctx.op("ember.slice", ctx.input(0), starts=(-1,) * len(axes), ends=(-BIG,) * len(axes),
                  axes=tuple(axes), steps=(-1,) * len(axes))


@converter("Slice")
def slice_(ctx: NodeContext) -> Any:
    begin = list(ctx.dims(1, "begin"))
    size = list(ctx.dims(2, "size"))
    shape = ctx.type(0).shape
    starts, ends, axes = [], [], []
    for axis, (b, s) in enumerate(zip(begin, size)):
        if b == 0 and (s == -1 or s == shape[axis]):
            continue
        starts.append(b)
        ends.append(shape[axis] if s == -1 else add(b, s))
        axes.append(axis)
    if not axes:
        return ctx.op("ember.identity", ctx.input(0))
    return ctx.op("ember.slice", ctx.input(0), starts=tuple(starts), ends=tuple(ends), axes=tuple(axes))


@converter("StridedSlice")
def strided_slice(ctx: NodeContext) -> Any:
    """TensorFlow's sparse slice spec (masks for begin/end/ellipsis/new axes/shrinking) made
    dense over the input's axes: one ember.slice, a squeeze for shrunk axes, an unsqueeze
    for new ones."""
    x = ctx.type(0)
    rank = ctx.rank(0)
    begin, end = list(ctx.dims(1, "begin")), list(ctx.dims(2, "end"))
    strides = ctx.ints(3, "strides")
    masks = {m: int(ctx.attr(m, 0)) for m in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
                                              "shrink_axis_mask")}
    n = len(begin)
    real = sum(1 for i in range(n) if not (masks["new_axis_mask"] >> i) & 1 and not (masks["ellipsis_mask"] >> i) & 1)
    starts, ends, steps, axes, shrink, new_axes = [], [], [], [], [], []
    axis, out_axis = 0, 0
    seen_ellipsis = False
    for i in range(n):
        if (masks["ellipsis_mask"] >> i) & 1:
            if seen_ellipsis:
                raise ctx.fail("more than one ellipsis")
            seen_ellipsis = True
            span = rank - real
            axis += span
            out_axis += span
            continue
        if (masks["new_axis_mask"] >> i) & 1:
            new_axes.append(out_axis)
            out_axis += 1
            continue
        if axis >= rank:
            raise ctx.fail(f"the slice spec indexes {axis + 1} axes of a rank-{rank} input")
        dim = x.shape[axis]
        stride = strides[i]
        b, e = begin[i], end[i]
        if (masks["shrink_axis_mask"] >> i) & 1:
            if isinstance(b, int) and b < 0:
                b = add(dim, b) if not isinstance(dim, int) else dim + b
            starts.append(b)
            ends.append(add(b, 1) if not isinstance(b, int) else b + 1)
            steps.append(1)
            axes.append(axis)
            shrink.append(axis)
            axis += 1
            continue
        full_begin = (masks["begin_mask"] >> i) & 1
        full_end = (masks["end_mask"] >> i) & 1
        if stride > 0:
            b = 0 if full_begin else b
            e = dim if full_end else e
            if b == 0 and e == dim and stride == 1:
                axis += 1
                out_axis += 1
                continue
        else:
            b = BIG if full_begin else b
            e = -BIG if full_end else e
        starts.append(b)
        ends.append(e)
        steps.append(stride)
        axes.append(axis)
        axis += 1
        out_axis += 1
    out = ctx.input(0)
    if axes:
        out = ctx.op("ember.slice", out, starts=tuple(starts), ends=tuple(ends), axes=tuple(axes),
                     steps=tuple(steps) if any(s != 1 for s in steps) else None)
    if shrink:
        out = ctx.op("ember.squeeze", out, axes=tuple(shrink))
    if new_axes:
        out = ctx.op("ember.unsqueeze", out, axes=tuple(new_axes))
    if not axes and not shrink and not new_axes:
        out = ctx.op("ember.identity", out)
    return out


# -- resampling -----------------------------------------------------------------------------------------
@converter("ResizeBilinear", "ResizeNearestNeighbor")
def resize(ctx: NodeContext) -> Any:
    size = ctx.dims(1, "size")
    x = ctx.type(0)
    sizes = (x.shape[0], size[0], size[1], x.shape[3])
    align = bool(ctx.attr("align_corners", False))
    half = bool(ctx.attr("half_pixel_centers", False))
    if ctx.op_type == "ResizeBilinear":
        ctm = "align_corners" if align else "half_pixel" if half else "asymmetric"
        return ctx.op("ember.resize", ctx.input(0), sizes=sizes, mode="linear", coordinate_transformation_mode=ctm)
    if align:
        ctm, nearest = "align_corners", "round_prefer_ceil"
    elif half:
        ctm, nearest = "tf_half_pixel_for_nn", "floor"
    else:
        ctm, nearest = "asymmetric", "floor"
    return ctx.op("ember.resize", ctx.input(0), sizes=sizes, mode="nearest", coordinate_transformation_mode=ctm,
                  nearest_mode=nearest)


# -- space/batch rearrangement (TensorFlow's dilated convolutions) ------------------------------
def _block_geometry(ctx: NodeContext, what: str) -> tuple[list[int], list[list[int]]]:
    block = ctx.ints(1, "block_shape")
    pairs = np.asarray(ctx.static(2, what)).reshape(-1, 2).tolist()
    if len(pairs) != len(block) or any(b < 1 for b in block):
        raise ctx.fail(f"block_shape {block} and {what} {pairs} do not match")
    return block, [[int(a), int(b)] for a, b in pairs]


@converter("SpaceToBatchND")
def space_to_batch(ctx: NodeContext) -> Any:
    """Pad the M spatial dims, cut each into (size/b, b), move the b's in front of the batch:
    [B, s1..sM, rest] -> [b1*..*bM*B, s1/b1.., rest] (how TF dilates a convolution)."""
    block, pads = _block_geometry(ctx, "paddings")
    m = len(block)
    x = ctx.input(0)
    shape = list(x.type.shape)
    rest = shape[1 + m:]
    if any(p for pair in pads for p in pair):
        x = ctx.op("ember.pad", x, None, mode="constant",
                   pads=(0,) + tuple(p[0] for p in pads) + (0,) * len(rest) +
                   (0,) + tuple(p[1] for p in pads) + (0,) * len(rest))
    padded = list(x.type.shape)
    split: list[Dim] = [padded[0]]
    for i, b in enumerate(block):
        split += [floordiv(padded[1 + i], b), b]
    x = ctx.op("ember.reshape", x, shape=tuple(split + rest), allowzero=True)
    perm = [2 + 2 * i for i in range(m)] + [0] + [1 + 2 * i for i in range(m)] + \
        [1 + 2 * m + i for i in range(len(rest))]
    x = ctx.op("ember.transpose", x, perm=tuple(perm))
    total = int(np.prod(block))
    out = [mul(padded[0], total)] + [split[1 + 2 * i] for i in range(m)] + rest
    result = ctx.op("ember.reshape", x, shape=tuple(out), allowzero=True)
    atrous.start(ctx.importer.atrous, result, ctx.input(0), block, pads)
    return result


@converter("BatchToSpaceND")
def batch_to_space(ctx: NodeContext) -> Any:
    """The inverse: [b1*..*bM*B, d1..dM, rest] -> [B, d1*b1.., rest], then the crops."""
    block, crops = _block_geometry(ctx, "crops")
    m = len(block)
    x = ctx.input(0)
    dilated = atrous.finish(ctx.importer.atrous, x, block, crops)
    if dilated is not None:  # SpaceToBatchND -> convolution -> BatchToSpaceND: one dilated convolution
        y, left = dilated
        axes = [a for a, (b, e) in sorted(left.items()) if b or e]
        if not axes:
            return y
        return ctx.op("ember.slice", y, starts=tuple(left[a][0] for a in axes),
                      ends=tuple(add(y.type.shape[a], -left[a][1]) for a in axes), axes=tuple(axes))
    shape = list(x.type.shape)
    rest = shape[1 + m:]
    batch = floordiv(shape[0], int(np.prod(block)))
    x = ctx.op("ember.reshape", x, shape=tuple(block) + (batch,) + tuple(shape[1:]), allowzero=True)
    perm = [m]
    for i in range(m):
        perm += [m + 1 + i, i]
    perm += [2 * m + 1 + i for i in range(len(rest))]
    x = ctx.op("ember.transpose", x, perm=tuple(perm))
    merged = [batch] + [mul(shape[1 + i], block[i]) for i in range(m)] + rest
    x = ctx.op("ember.reshape", x, shape=tuple(merged), allowzero=True)
    axes = [1 + i for i in range(m) if crops[i][0] or crops[i][1]]
    if not axes:
        return x
    return ctx.op("ember.slice", x, starts=tuple(crops[a - 1][0] for a in axes),
                  ends=tuple(add(merged[a], -crops[a - 1][1]) for a in axes), axes=tuple(axes))


# -- indexing, sorting, scans -------------------------------------------------------------------
@converter("OneHot")
def one_hot(ctx: NodeContext) -> Any:
    depth = _one(ctx, ctx.ints(1, "depth"), "depth")
    values = ctx.op("ember.concat", ctx.op("ember.unsqueeze", ctx.input(3), axes=(0,)),
                    ctx.op("ember.unsqueeze", ctx.input(2), axes=(0,)), axis=0)  # [off, on]
    return ctx.op("ember.one_hot", ctx.input(0), values, depth=depth, axis=int(ctx.attr("axis", -1)))


@converter("TopKV2")
def top_k(ctx: NodeContext) -> Any:
    ks = ctx.dims(1, "k")
    if len(ks) != 1:
        raise ctx.fail(f"k must be one value; it has {len(ks)}")
    k = ks[0]
    values, indices = ctx.op("ember.topk", ctx.input(0), None, k=k, axis=-1, largest=True,
                             sorted=bool(ctx.attr("sorted", True)))
    want = _dt(ctx.dtype("index_type")) if ctx.attr("index_type") is not None else _dt(np.int32)
    return [values, indices if indices.type.dtype == want else ctx.op("ember.cast", indices, to=want)]


@converter("Cumsum", "Cumprod")
def cumulative(ctx: NodeContext) -> Any:
    return ctx.op("ember.cumsum" if ctx.op_type == "Cumsum" else "ember.cumprod", ctx.input(0),
                  axis=_one(ctx, ctx.ints(1, "axis"), "axis"), exclusive=bool(ctx.attr("exclusive", False)),
                  reverse=bool(ctx.attr("reverse", False)))


@converter("MatrixBandPart")
def band_part(ctx: NodeContext) -> Any:
    """Keep -lower <= j - i <= upper (a negative bound keeps that whole side): tf.linalg.band_part,
    how causal masks are made."""
    lower = _one(ctx, ctx.ints(1, "num_lower"), "num_lower")
    upper = _one(ctx, ctx.ints(2, "num_upper"), "num_upper")
    x = ctx.input(0)
    if upper >= 0:
        x = ctx.op("ember.trilu", x, upper=False, k=upper)
    if lower >= 0:
        x = ctx.op("ember.trilu", x, upper=True, k=-lower)
    return x if (upper >= 0 or lower >= 0) else ctx.op("ember.identity", x)


@converter("Where")
def where_coordinates(ctx: NodeContext) -> Any:
    """tf.where(cond) with one input: the coordinates of the true elements, [n, rank] int64."""
    return ctx.op("ember.transpose", ctx.op("ember.nonzero", ctx.input(0)), perm=(1, 0))
