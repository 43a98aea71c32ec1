"""Convolution, pooling, unpooling, depth/space and resampling ONNX ops.

ONNX is channels first, so every layout-carrying Ember op is emitted with its
default (None) layout; the layout pass later edits only those attributes.

Window attributes map one to one (ONNX's `group` is ember.conv's `group`).
The spec forbids explicit pads next to an `auto_pad` other than NOTSET
(onnxruntime rejects such a node); some exporters write zero pads there, so the
pads are dropped and auto_pad decides.

Resize and Upsample take their scales, sizes and roi as build-time inputs and
turn them into Ember attributes: `axes` and `keep_aspect_ratio_policy` are
resolved here into full-rank sizes (and, for keep_aspect_ratio_policy, the one
scale that positions the samples), opset 10's Resize and Upsample 7/9 into the
asymmetric coordinates they use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.ir.types import TensorType, f32, i32

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if value is not None else ()


def _auto_pad(ctx: NodeContext) -> str:
    value = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    if value not in AUTO_PADS:
        raise ctx.fail(f"auto_pad {value!r} is not one of {', '.join(AUTO_PADS)}")
    return value


def _window(ctx: NodeContext, *, dilations: bool = True) -> dict[str, Any]:
    """kernel_shape, strides, pads, dilations and auto_pad as Ember attributes."""
    auto_pad = _auto_pad(ctx)
    pads = _ints(ctx.attr("pads"))
    if auto_pad != "NOTSET":
        pads = ()  # auto_pad decides (see the module docstring)
    attrs = {"kernel_shape": _ints(ctx.attr("kernel_shape")), "strides": _ints(ctx.attr("strides")),
             "pads": pads, "auto_pad": auto_pad}
    if dilations:
        attrs["dilations"] = _ints(ctx.attr("dilations"))
    return attrs


def _ranked(ctx: NodeContext, i: int, what: str) -> TensorType:
    t = ctx.tensor_type(i)
    if t.shape is None:
        raise ctx.unsupported(f"{what} needs a known rank (got {t})")
    return t


# -- convolution ----------------------------------------------------------------------------
@converter("Conv")
def conv(ctx: NodeContext) -> Any:
    bias = ctx.input(2) if ctx.has(2) else None
    return ctx.op("ember.conv", ctx.input(0), ctx.input(1), bias, group=int(ctx.attr("group", 1)), **_window(ctx))


@converter("ConvTranspose")
def conv_transpose(ctx: NodeContext) -> Any:
    x = _ranked(ctx, 0, "X")
    n = x.rank - 2
    attrs = _window(ctx)
    attrs["output_padding"] = _ints(ctx.attr("output_padding"))
    shape = ctx.attr("output_shape")
    if shape is not None:
        shape = _ints(shape)
        if len(shape) == n + 2:  # some exporters give the whole shape; the spatial dims are what counts
            shape = shape[2:]
        attrs["output_shape"] = shape
        attrs["pads"] = ()  # output_shape derives the pads (the spec's rule; onnxruntime ignores given ones)
    bias = ctx.input(2) if ctx.has(2) else None
    return ctx.op("ember.conv_transpose", ctx.input(0), ctx.input(1), bias, group=int(ctx.attr("group", 1)),
                  **attrs)


def _zero_point(ctx: NodeContext, i: int, like: TensorType, what: str) -> Any:
    """An optional zero-point input, or None when absent (ONNX's default 0)."""
    if not ctx.has(i):
        return None
    zp = ctx.tensor_type(i)
    if zp.dtype != like.dtype:
        raise ctx.fail(f"{what} zero point {zp} must have the type of its tensor {like}")
    return ctx.input(i)


@converter("ConvInteger", since=10)
def conv_integer(ctx: NodeContext) -> Any:
    x, w = ctx.tensor_type(0), ctx.tensor_type(1)
    x_zp, w_zp = _zero_point(ctx, 2, x, "x"), _zero_point(ctx, 3, w, "w")
    return ctx.op("ember.conv_integer", ctx.input(0), ctx.input(1), x_zp, w_zp, group=int(ctx.attr("group", 1)),
                  **_window(ctx))


@converter("QLinearConv", since=10)
def qlinear_conv(ctx: NodeContext) -> Any:
    """The integer convolution, the i32 bias, then requantization as onnxruntime does it:
    y = saturate(round_half_even(acc * (x_scale * w_scale / y_scale)) + y_zero_point),
    the multiplier per output channel when w_scale is. Emitted as ember.conv_integer,
    ember.add, a cast to f32, a multiply and ember.quantize by 1 (whose rounding and
    saturation are ONNX's), so the int8 passes see the pieces."""
    x, w = ctx.tensor_type(0), ctx.tensor_type(3)
    y_zp_type = ctx.tensor_type(7) if ctx.has(7) else None
    acc = ctx.op("ember.conv_integer", ctx.input(0), ctx.input(3), ctx.input(2), ctx.input(5),
                 group=int(ctx.attr("group", 1)), **_window(ctx))
    out_rank = acc.type.rank
    if ctx.has(8):
        bias_t = ctx.tensor_type(8)
        if bias_t.dtype != i32:
            raise ctx.fail(f"bias {bias_t} must be i32")
        bias = ctx.op("ember.reshape", ctx.input(8), shape=(-1,) + (1,) * (out_rank - 2))
        acc = ctx.op("ember.add", acc, bias)
    x_scale, w_scale, y_scale = (_scale(ctx, i) for i in (1, 4, 6))
    multiplier = ctx.op("ember.div", ctx.op("ember.mul", x_scale, w_scale), y_scale)
    if ctx.tensor_type(4).shape not in ((), (1,), None):  # per output channel
        multiplier = ctx.op("ember.reshape", multiplier, shape=(-1,) + (1,) * (out_rank - 2))
    scaled = ctx.op("ember.mul", ctx.op("ember.cast", acc, to=f32), multiplier)
    out_dtype = y_zp_type.dtype if y_zp_type is not None else x.dtype
    del w
    one = ctx.constant(np.array(1.0, np.float32))
    y_zp = ctx.input(7) if ctx.has(7) else None
    if y_zp is not None and y_zp_type is not None and y_zp_type.shape not in ((), (1,)):
        raise ctx.unsupported(f"a per-channel output zero point {y_zp_type} is not supported")
    if y_zp is not None and y_zp_type is not None and y_zp_type.shape == (1,):
        y_zp = ctx.op("ember.reshape", y_zp, shape=())
    return ctx.op("ember.quantize", scaled, one, y_zp, dtype=out_dtype)


def _scale(ctx: NodeContext, i: int) -> Any:
    t = ctx.tensor_type(i)
    v = ctx.input(i)
    if t.dtype != f32:
        v = ctx.op("ember.cast", v, to=f32)
    if t.shape == (1,):
        v = ctx.op("ember.reshape", v, shape=())
    return v


# -- pooling --------------------------------------------------------------------------------
def _pool_attrs(ctx: NodeContext, *, dilations: bool, ceil: bool) -> dict[str, Any]:
    attrs = _window(ctx, dilations=dilations)
    if not attrs["kernel_shape"]:
        raise ctx.fail("kernel_shape is required")
    if ceil:
        attrs["ceil_mode"] = bool(ctx.attr("ceil_mode", 0))
    return attrs


@converter("MaxPool", since=1)
def max_pool(ctx: NodeContext) -> Any:
    attrs = _pool_attrs(ctx, dilations=ctx.opset >= 10, ceil=ctx.opset >= 10)
    if ctx.has_output(1):
        return list(ctx.op("ember.max_pool_with_indices", ctx.input(0),
                           storage_order=int(ctx.attr("storage_order", 0)), **attrs))
    return ctx.op("ember.max_pool", ctx.input(0), **attrs)


@converter("AveragePool", since=1)
def average_pool(ctx: NodeContext) -> Any:
    attrs = _pool_attrs(ctx, dilations=ctx.opset >= 19, ceil=ctx.opset >= 10)
    return ctx.op("ember.avg_pool", ctx.input(0), count_include_pad=bool(ctx.attr("count_include_pad", 0)),
                  **attrs)


def _p(ctx: NodeContext) -> int:
    p = ctx.attr("p", 2)
    if float(p) != int(p) or int(p) < 1:
        raise ctx.unsupported(f"p = {p}: only positive integer norms are supported")
    return int(p)


@converter("LpPool", since=1)
def lp_pool(ctx: NodeContext) -> Any:
    attrs = _pool_attrs(ctx, dilations=ctx.opset >= 18, ceil=ctx.opset >= 18)
    return ctx.op("ember.lp_pool", ctx.input(0), p=_p(ctx), **attrs)


@converter("GlobalAveragePool")
def global_average_pool(ctx: NodeContext) -> Any:
    return ctx.op("ember.global_avg_pool", ctx.input(0))


@converter("GlobalMaxPool")
def global_max_pool(ctx: NodeContext) -> Any:
    return ctx.op("ember.global_max_pool", ctx.input(0))


@converter("GlobalLpPool")
def global_lp_pool(ctx: NodeContext) -> Any:
    return ctx.op("ember.global_lp_pool", ctx.input(0), p=_p(ctx))


@converter("MaxUnpool", since=9)
def max_unpool(ctx: NodeContext) -> Any:
    """ONNX's reference and backend tests read the indices in the shape the attributes
    give, then pad (or crop) that result at the ends to output_shape: so ember.max_unpool
    without output_shape, then ember.pad. (onnxruntime instead reads the indices in
    output_shape, which is ember.max_unpool's output_shape attribute.)"""
    attrs = _window(ctx, dilations=False)
    del attrs["auto_pad"]
    y = ctx.op("ember.max_unpool", ctx.input(0), ctx.input(1), **attrs)
    if not ctx.has(2):
        return y
    shape = ctx.dims(2, "output_shape")
    rank = y.type.rank
    if len(shape) != rank:
        raise ctx.fail(f"output_shape {list(shape)} must have one entry per dim of X {ctx.type(0)}")
    ends = tuple(want - have for want, have in zip(shape[2:], y.type.shape[2:]))
    if all(isinstance(e, int) and e == 0 for e in ends):
        return y
    return ctx.op("ember.pad", y, pads=(0,) * (rank + 2) + ends)


# -- depth and space ------------------------------------------------------------------------
@converter("DepthToSpace")
def depth_to_space(ctx: NodeContext) -> Any:
    return ctx.op("ember.depth_to_space", ctx.input(0), blocksize=int(ctx.attr("blocksize")),
                  mode=ctx.attr("mode", "DCR"))


@converter("SpaceToDepth")
def space_to_depth(ctx: NodeContext) -> Any:
    return ctx.op("ember.space_to_depth", ctx.input(0), blocksize=int(ctx.attr("blocksize")),
                  mode=ctx.attr("mode", "DCR"))


# -- resampling -----------------------------------------------------------------------------
def _floats(array: np.ndarray | None) -> tuple[float, ...] | None:
    if array is None or array.size == 0:
        return None
    return tuple(float(v) for v in np.asarray(array, dtype=np.float64).ravel())


def _legacy_resize(ctx: NodeContext, scales: tuple[float, ...], mode: str) -> Any:
    """Upsample 7/9 and Resize 10: asymmetric coordinates (x = y / scale); nearest
    takes floor(x) when upsampling and ceil(x) when downsampling (onnxruntime's rule
    for these opsets). Axes that shrink and axes that grow are resized by two ops."""
    x = _ranked(ctx, 0, "X")
    if len(scales) != x.rank:
        raise ctx.fail(f"scales {list(scales)} must have one entry per dim of X {x}")
    mode = {"bilinear": "linear", "trilinear": "linear"}.get(mode, mode)
    if mode not in ("nearest", "linear"):
        raise ctx.fail(f"mode {mode!r} must be nearest or linear")
    if mode == "linear":
        return ctx.op("ember.resize", ctx.input(0), scales=scales, mode="linear",
                      coordinate_transformation_mode="asymmetric")
    value = ctx.input(0)
    down = tuple(s if s < 1 else 1.0 for s in scales)
    up = tuple(s if s >= 1 else 1.0 for s in scales)
    if any(s != 1.0 for s in down):
        value = ctx.op("ember.resize", value, scales=down, mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="ceil")
    if any(s != 1.0 for s in up) or value is ctx.input(0):
        value = ctx.op("ember.resize", value, scales=up, mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return value


def _scaled(ctx: NodeContext, given: Any) -> Any:
    scales = _floats(given)
    if scales is None:
        raise ctx.fail("scales is required")
    return _legacy_resize(ctx, scales, ctx.attr("mode", "nearest"))


@converter("Upsample", since=7)
def upsample_7(ctx: NodeContext) -> Any:
    return _scaled(ctx, np.asarray(ctx.attr("scales", []), dtype=np.float64))


@converter("Upsample", since=9)
@converter("Resize", since=10)
def upsample_9(ctx: NodeContext) -> Any:
    return _scaled(ctx, ctx.static(1, "scales"))


@converter("Resize", since=11)
def resize(ctx: NodeContext) -> Any:
    x = _ranked(ctx, 0, "X")
    rank = x.rank
    axes = tuple(range(rank))
    if ctx.has_attr("axes"):
        axes = tuple(a % rank if -rank <= a < rank else a for a in _ints(ctx.attr("axes")))
        if any(not 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
            raise ctx.fail(f"axes {list(ctx.attr('axes'))} must be distinct axes of X {x}")
    ctm = ctx.attr("coordinate_transformation_mode", "half_pixel")
    mode = ctx.attr("mode", "nearest")
    scales = _floats(ctx.static(2, "scales")) if ctx.has(2) else None
    sizes = None
    if ctx.has(3):
        sizes_t = ctx.tensor_type(3)
        if sizes_t.shape is None or sizes_t.shape != (0,):
            sizes = tuple(ctx.dims(3, "sizes"))
    if (scales is None) == (sizes is None):
        raise ctx.fail("exactly one of scales and sizes must be given (and not empty)")
    n = len(axes)
    given = scales if scales is not None else sizes
    if len(given) != n:  # type: ignore[arg-type]
        raise ctx.fail(f"{'scales' if scales is not None else 'sizes'} {list(given)} must have {n} entries "
                       f"(one per axis resized)")
    full_scales: tuple[float, ...] | None = None
    full_sizes: tuple[Any, ...] | None = None
    if scales is not None:
        per_axis = dict(zip(axes, scales))
        full_scales = tuple(per_axis.get(i, 1.0) for i in range(rank))
    else:
        per_axis_size = dict(zip(axes, sizes))  # type: ignore[arg-type]
        full_sizes = tuple(per_axis_size.get(i, x.shape[i]) for i in range(rank))
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy not in ("stretch", "not_larger", "not_smaller"):
            raise ctx.fail(f"keep_aspect_ratio_policy {policy!r} must be stretch, not_larger or not_smaller")
        if policy != "stretch":
            dims = [x.shape[a] for a in axes]
            wanted = [per_axis_size[a] for a in axes]
            if not all(isinstance(d, int) and d > 0 for d in dims + wanted):
                raise ctx.unsupported(f"keep_aspect_ratio_policy={policy} needs static sizes and input dims; "
                                      f"got sizes {wanted} for dims {dims}")
            ratios = [w / d for w, d in zip(wanted, dims)]
            scale = min(ratios) if policy == "not_larger" else max(ratios)
            full_scales = tuple(scale if i in axes else 1.0 for i in range(rank))
            full_sizes = tuple(int(scale * x.shape[i] + 0.5) if i in axes else x.shape[i] for i in range(rank))
    attrs: dict[str, Any] = {
        "scales": full_scales, "sizes": full_sizes, "mode": mode, "coordinate_transformation_mode": ctm,
        "cubic_coeff_a": float(ctx.attr("cubic_coeff_a", -0.75)),
        "exclude_outside": bool(ctx.attr("exclude_outside", 0)),
        "antialias": bool(ctx.attr("antialias", 0)) and mode != "nearest",
    }
    if mode == "nearest":
        attrs["nearest_mode"] = ctx.attr("nearest_mode", "round_prefer_floor")
    if ctm == "tf_crop_and_resize":
        roi = _floats(ctx.static(1, "roi")) if ctx.has(1) else None
        if roi is None or len(roi) != 2 * n:
            raise ctx.fail(f"tf_crop_and_resize needs roi with {2 * n} values (starts, then ends of the resized "
                           f"axes), got {list(roi) if roi is not None else None}")
        starts, ends = dict(zip(axes, roi[:n])), dict(zip(axes, roi[n:]))
        attrs["roi"] = tuple(starts.get(i, 0.0) for i in range(rank)) + tuple(ends.get(i, 1.0) for i in range(rank))
        attrs["extrapolation_value"] = float(ctx.attr("extrapolation_value", 0.0))
    return ctx.op("ember.resize", ctx.input(0), **attrs)


__all__ = ["conv", "conv_transpose", "max_pool", "average_pool", "resize"]
