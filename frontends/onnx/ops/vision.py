"""Vision ONNX ops: DeformConv, GridSample, AffineGrid, RoiAlign, NonMaxSuppression, Col2Im.

Thresholds, limits and shapes that ONNX passes as inputs (NonMaxSuppression's
max_output_boxes_per_class and thresholds, Col2Im's image and block shapes,
AffineGrid's size) are build-time values and become Ember attributes.
CenterCropPad has no converter: its ONNX function body (Shape, Slice, Pad) imports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if value is not None else ()


@converter("DeformConv", since=19)
def deform_conv(ctx: NodeContext) -> Any:
    bias = ctx.input(3) if ctx.has(3) else None
    mask = ctx.input(4) if ctx.has(4) else None
    return ctx.op("ember.deform_conv", ctx.input(0), ctx.input(1), ctx.input(2), bias, mask,
                  kernel_shape=_ints(ctx.attr("kernel_shape")), strides=_ints(ctx.attr("strides")),
                  pads=_ints(ctx.attr("pads")), dilations=_ints(ctx.attr("dilations")),
                  group=int(ctx.attr("group", 1)), offset_group=int(ctx.attr("offset_group", 1)))


GRID_MODES = {"bilinear": "linear", "bicubic": "cubic", "linear": "linear", "cubic": "cubic", "nearest": "nearest"}


def _grid_sample(ctx: NodeContext, default_mode: str) -> Any:
    mode = ctx.attr("mode", default_mode)
    if mode not in GRID_MODES:
        raise ctx.fail(f"mode {mode!r} must be one of {', '.join(GRID_MODES)}")
    x = ctx.tensor_type(0)
    if ctx.opset < 20 and x.shape is not None and x.rank != 4:
        raise ctx.fail(f"GridSample before opset 20 takes 4-D inputs; X is {x}")
    return ctx.op("ember.grid_sample", ctx.input(0), ctx.input(1), mode=GRID_MODES[mode],
                  padding_mode=ctx.attr("padding_mode", "zeros"), align_corners=bool(ctx.attr("align_corners", 0)))


@converter("GridSample", since=16)
def grid_sample_16(ctx: NodeContext) -> Any:
    return _grid_sample(ctx, "bilinear")


@converter("GridSample", since=20)
def grid_sample(ctx: NodeContext) -> Any:
    return _grid_sample(ctx, "linear")


@converter("AffineGrid", since=20)
def affine_grid(ctx: NodeContext) -> Any:
    """grid[n, spatial...] = theta[n] @ (base coordinates..., 1): the base coordinates
    are a build-time constant (the spatial sizes must be static; the batch may not be),
    so the grid is one ember.matmul of that constant with theta transposed. (The ONNX
    function body branches with If on the rank; this needs no control flow.)"""
    size = ctx.dims(1, "size")
    theta = ctx.tensor_type(0)
    r = len(size) - 2
    if r not in (2, 3):
        raise ctx.fail(f"size {list(size)} must have 4 or 5 entries (2-D or 3-D grids)")
    spatial = size[2:]
    if not all(isinstance(d, int) for d in spatial):
        raise ctx.unsupported(f"the spatial sizes {list(spatial)} must be known at build time")
    if theta.shape is not None and (theta.rank != 3 or theta.shape[1:] != (r, r + 1)):
        raise ctx.fail(f"theta {theta} must be (N, {r}, {r + 1}) for size {list(size)}")
    align = bool(ctx.attr("align_corners", 0))
    axes = []
    for n in spatial:
        i = np.arange(n, dtype=np.float64)
        if align:
            axes.append(i * 2 / (n - 1) - 1 if n > 1 else np.zeros(1))
        else:
            axes.append((2 * i + 1) / n - 1)
    mesh = np.meshgrid(*axes, indexing="ij")  # spatial axis order: D, H, W
    coords = [m.ravel() for m in reversed(mesh)]  # grid order: x (W) first
    base = np.stack(coords + [np.ones(coords[0].shape)], axis=1).astype(theta.dtype.np_dtype)  # (prod, r+1)
    theta_t = ctx.op("ember.transpose", ctx.input(0), perm=(0, 2, 1))
    grid = ctx.op("ember.matmul", _const(ctx, base), theta_t)
    batch = theta.shape[0] if theta.shape is not None else size[0]  # equal by ONNX's contract
    return ctx.op("ember.reshape", grid, shape=(batch, *spatial, r))


def _const(ctx: NodeContext, array: np.ndarray) -> Any:
    """A build-time array: inline when small, else in the weight store."""
    return ctx.constant(array) if array.size <= 64 else ctx.importer.weight(f"{ctx.name}/base_grid", array)


@converter("RoiAlign", since=10)
def roi_align_10(ctx: NodeContext) -> Any:
    return _roi_align(ctx, "output_half_pixel")


@converter("RoiAlign", since=16)
def roi_align(ctx: NodeContext) -> Any:
    return _roi_align(ctx, ctx.attr("coordinate_transformation_mode", "half_pixel"))


def _roi_align(ctx: NodeContext, ctm: str) -> Any:
    return ctx.op("ember.roi_align", ctx.input(0), ctx.input(1), ctx.input(2), mode=ctx.attr("mode", "avg"),
                  output_height=int(ctx.attr("output_height", 1)), output_width=int(ctx.attr("output_width", 1)),
                  sampling_ratio=int(ctx.attr("sampling_ratio", 0)),
                  spatial_scale=float(ctx.attr("spatial_scale", 1.0)), coordinate_transformation_mode=ctm)


def _scalar(ctx: NodeContext, i: int, what: str) -> Any:
    """An optional scalar input (absent or empty: None)."""
    if not ctx.has(i):
        return None
    value = np.asarray(ctx.static(i, what))
    if value.size == 0:
        return None
    if value.size != 1:
        raise ctx.fail(f"{what} must be a scalar, got shape {value.shape}")
    return value.reshape(()).item()


@converter("NonMaxSuppression", since=10)
def non_max_suppression(ctx: NodeContext) -> Any:
    limit = _scalar(ctx, 2, "max_output_boxes_per_class")
    iou = _scalar(ctx, 3, "iou_threshold")
    score = _scalar(ctx, 4, "score_threshold")
    return ctx.op("ember.nms", ctx.input(0), ctx.input(1), max_output_boxes_per_class=max(int(limit or 0), 0),
                  iou_threshold=float(iou) if iou is not None else 0.0,
                  score_threshold=float(score) if score is not None else None,
                  center_point_box=bool(ctx.attr("center_point_box", 0)))


@converter("Col2Im", since=18)
def col2im(ctx: NodeContext) -> Any:
    return ctx.op("ember.col2im", ctx.input(0), image_shape=tuple(ctx.dims(1, "image_shape")),
                  block_shape=_ints(ctx.static(2, "block_shape")), strides=_ints(ctx.attr("strides")),
                  pads=_ints(ctx.attr("pads")), dilations=_ints(ctx.attr("dilations")))
