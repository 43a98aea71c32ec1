"""Vision ops that sample at computed positions: deformable convolution, grid
sampling, RoI align, non-max suppression, and col2im (the inverse of im2col).

Activations carry a `layout` attribute (None: channels first, N C spatial...;
or a channels-last spelling of `ember.ir.layout`), as the ops of nn.py do: the
layout pass edits it instead of adding transposes. Coordinates that these ops
read from data (grid_sample's grid, roi_align's boxes, nms's boxes) are not
activations and keep one fixed order. Window attributes (kernel, strides, pads,
dilations) follow nn.py's rules.

Numerics: floats compute in f32 (f64 for f64; f16/bf16 widen to f32 and round
once at the end, rules.py). Positions are computed in the same type, as
onnxruntime computes them in float.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Sequence

import numpy as np

from ember.ir import attrs as A
from ember.ir import layout as L
from ember.ir.dims import Dim, Unknown, dmin, mul
from ember.ir.opdef import (Attr, FloatTensor, Heavy, IntTensor, LayoutSensitive, NumericTensor, Op, Operand, Pure,
                            Result, TypeConstraint, register_op)
from ember.ir.ops import rules
from ember.ir.ops.nn import (_channels_first, _clipped, _spatial, _static, _taps, _to_layout, _window_attrs,
                             _window_out)
from ember.ir.types import TensorType, Type, i64

I64Tensor = TypeConstraint("i64 tensor", frozenset({"int"}))


def _may_equal(a: Dim, b: Dim) -> bool:
    """False only when two dims are provably different."""
    return a == b or not _static(a, b)


def _position_dtype(*arrays: np.ndarray) -> np.dtype:
    """Where sample positions and weights are computed: f64 if any input is f64, else f32."""
    return np.dtype(np.float64) if any(a.dtype == np.float64 for a in arrays) else np.dtype(np.float32)


# -- deformable convolution -------------------------------------------------------------------
@register_op("ember.deform_conv", traits={Pure, Heavy, LayoutSensitive})
class DeformConv(Op):
    """Deformable convolution (ONNX DeformConv, torchvision's deform_conv2d, any
    number of spatial dims): ember.conv whose every tap reads x at its regular
    position plus a learned offset, by n-linear interpolation, scaled by an optional
    mask. For output position o and kernel tap k of offset group g, the tap samples
    x at o*stride - pad_begin + k*dilation + offset[n, g, k, :, o], where `offset`
    (N, offset_group * prod(kernel) * r, outs...) holds, per group and tap (row-major
    over the kernel), the r displacements in spatial-axis order; `mask` (N,
    offset_group * prod(kernel), outs...) multiplies each sample. Input channels split
    into offset_group consecutive groups. A sample reads the 2^r integer neighbours of
    its position with weights prod(1 - |p - q|); neighbours outside x read 0.
    w, bias, group and weight_layout are ember.conv's. x, offset, mask and the result
    are in `layout`. There is no auto_pad (ONNX has none). Floats; f16/bf16
    accumulate in f32; positions are computed in f32 (f64 for f64).
    %y = ember.deform_conv %x, %w, %off {pads = [1, 1, 1, 1]} : f32[1,8,16,16]"""

    x = Operand(FloatTensor)
    w = Operand(FloatTensor)
    offset = Operand(FloatTensor)
    bias = Operand(FloatTensor, optional=True)
    mask = Operand(FloatTensor, optional=True)
    kernel_shape = Attr(A.Ints, default=())
    strides = Attr(A.Ints, default=())
    pads = Attr(A.Ints, default=())
    dilations = Attr(A.Ints, default=())
    groups = Attr(A.Int, default=1, key="group")
    offset_group = Attr(A.Int, default=1)
    layout = Attr(A.Optional(A.Str), default=None)
    weight_layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type, w: Type, offset: Type, bias: Type | None, mask: Type | None) -> TensorType:
        x, lay = _spatial(self, x)
        w = rules.ranked(self, w, "w")
        offset = rules.ranked(self, offset, "offset")
        rules.same_dtype(self, x, w, offset, bias, mask)
        if w.rank != x.rank:
            raise self.error(f"filter w {w} must have rank {x.rank}, as x {x} has")
        wl = L.weight(self, self.weight_layout, lay.spatial, default="OI")
        n = x.rank - 2
        kernel = tuple(w.shape[a] for a in wl.spatial_axes(lay.spatial))
        if self.kernel_shape:
            if len(self.kernel_shape) != n or any(_static(k) and k != g for k, g in zip(kernel, self.kernel_shape)):
                raise self.error(f"kernel_shape {list(self.kernel_shape)} does not match the filter's spatial dims "
                                 f"{list(kernel)} ({w})")
            kernel = tuple(self.kernel_shape)
        strides, dilations, begin, end = _window_attrs(self, n, kernel, self.strides, self.dilations, self.pads,
                                                       "NOTSET")
        g, og = self.groups, self.offset_group
        if g < 1 or og < 1:
            raise self.error(f"group {g} and offset_group {og} must be positive")
        c_in, c_out, w_in = x.shape[lay.channel_axis], w.shape[wl.out_axis], w.shape[wl.in_axis]
        if _static(c_in, w_in) and c_in != w_in * g:
            raise self.error(f"x has {c_in} input channels but the filter {w} takes {w_in} per group "
                             f"x {g} groups = {w_in * g}")
        if _static(c_out) and c_out % g:
            raise self.error(f"the filter's {c_out} output channels do not split into {g} groups")
        if _static(c_in) and c_in % og:
            raise self.error(f"x's {c_in} input channels do not split into {og} offset groups")
        if bias is not None:
            bias = rules.ranked(self, bias, "bias")
            if bias.rank != 1 or not _may_equal(bias.shape[0], c_out):
                raise self.error(f"bias {bias} must be a vector of the {c_out} output channels")
        sizes = [x.shape[a] for a in lay.spatial_axes]
        outs = [_window_out(self, i, *args, "NOTSET")
                for i, args in enumerate(zip(sizes, kernel, strides, dilations, begin, end))]
        taps = math.prod(kernel) if _static(*kernel) else None
        batch = x.shape[lay.axis("N")]
        for what, t, per_tap in (("offset", offset, n), ("mask", mask, 1)):
            if t is None:
                continue
            t = rules.ranked(self, t, what)
            want = (batch, og * taps * per_tap if taps is not None else Unknown(), *outs)
            got = tuple(t.shape[i] for i in lay.to_channels_first) if t.rank == x.rank else None
            if got is None or not all(_may_equal(a, b) for a, b in zip(got, want)):
                raise self.error(f"{what} {t} must have shape {list(_to_layout(want, lay))} in layout {lay} "
                                 f"(batch, offset_group * kernel taps{' * spatial dims' if per_tap > 1 else ''}, "
                                 "output positions)")
        return x.with_shape(_to_layout((batch, c_out, *outs), lay))

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, offset: np.ndarray, bias: np.ndarray | None,
                  mask: np.ndarray | None, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                  pads: tuple[int, ...], dilations: tuple[int, ...], group: int, offset_group: int,
                  layout: str | None, weight_layout: str | None) -> np.ndarray:
        acc = rules.accumulate_dtype(x.dtype)
        pos = _position_dtype(x)
        xc, lay = _channels_first(x.astype(acc), layout)
        oc = np.transpose(offset, lay.to_channels_first).astype(pos)
        wl = L.resolve_weight(weight_layout, lay.spatial, "OI")
        wc = np.transpose(w.astype(acc), wl.perm("OI", lay.spatial))
        n_batch, c_in, *sizes = xc.shape
        c_out, c_group, *kernel = wc.shape
        r = len(sizes)
        outs = list(oc.shape[2:])
        strides, dilations, begin, _ = _window_attrs(None, r, kernel, strides, dilations, pads, "NOTSET")
        og = offset_group
        k_taps = math.prod(kernel)
        oc = oc.reshape(n_batch, og, k_taps, r, *outs)
        mc = None
        if mask is not None:
            mc = np.transpose(mask, lay.to_channels_first).astype(acc).reshape(n_batch, og, k_taps, *outs)
        xg = xc.reshape(n_batch, og, c_in // og, *sizes)
        wg = wc.reshape(group, c_out // group, c_group, k_taps)
        y = np.zeros((n_batch, c_out, *outs), acc)
        grid = np.meshgrid(*(np.arange(o) for o in outs), indexing="ij")
        for k, tap in enumerate(product(*(range(kk) for kk in kernel))):
            positions = [(grid[a] * strides[a] - begin[a] + tap[a] * dilations[a]).astype(pos) + oc[:, :, k, a]
                         for a in range(r)]  # each (N, og, outs...)
            sampled = _nlinear_zeros(xg, positions)  # (N, og, C/og, outs...)
            if mc is not None:
                sampled = sampled * mc[:, :, k][:, :, None]
            sampled = sampled.reshape(n_batch, group, c_group, -1)
            y += np.einsum("goc,ngcp->ngop", wg[..., k], sampled).reshape(y.shape)
        if bias is not None:
            y += bias.astype(acc).reshape((c_out,) + (1,) * r)
        return np.transpose(y, lay.from_channels_first).astype(x.dtype)


def _nlinear_zeros(xg: np.ndarray, positions: Sequence[np.ndarray]) -> np.ndarray:
    """Sample xg (N, G, Cg, spatial...) at float positions (each (N, G, outs...)) by
    n-linear interpolation, neighbours outside reading 0: (N, G, Cg, outs...)."""
    n_batch, groups, cg, *sizes = xg.shape
    outs = positions[0].shape[2:]
    lows = [np.floor(p) for p in positions]
    total = np.zeros((n_batch, groups, *outs, cg), xg.dtype)
    n_idx = np.arange(n_batch).reshape((n_batch, 1) + (1,) * len(outs))
    g_idx = np.arange(groups).reshape((1, groups) + (1,) * len(outs))
    for corner in product((0, 1), repeat=len(sizes)):
        weight = np.ones(positions[0].shape, xg.dtype)
        valid = np.ones(positions[0].shape, bool)
        index = []
        for p, lo, c, size in zip(positions, lows, corner, sizes):
            q = lo + c
            weight = weight * (1 - np.abs(p - q)).astype(xg.dtype)
            valid &= (q >= 0) & (q < size)
            index.append(np.clip(q, 0, size - 1).astype(np.intp))
        values = xg[(n_idx, g_idx, slice(None), *index)]  # (N, G, outs..., Cg)
        total += np.where(valid[..., None], weight[..., None] * values, 0)
    return np.moveaxis(total, -1, 2)


# -- grid sampling ------------------------------------------------------------------------------
GRID_MODES = ("linear", "nearest", "cubic")
GRID_PADDING = ("zeros", "border", "reflection")


@register_op("ember.grid_sample", traits={Pure, LayoutSensitive})
class GridSample(Op):
    """Sample x at the normalized positions of a grid (ONNX GridSample, opset 20: any
    number of spatial dims; PyTorch's grid_sample). x is (N, C, D1..Dr) in `layout`;
    grid is (N, O1..Or, r) whatever the layout, its last axis holding coordinates in
    [-1, 1] in reverse axis order (x for the last spatial axis first, as PyTorch);
    the result is (N, C, O1..Or) in `layout`.

    Per axis of length n, a normalized g maps to the pixel position
    p = (g + 1) / 2 * (n - 1) with align_corners, ((g + 1) * n - 1) / 2 without.
    nearest first rounds p half to even. For nearest and linear, a position outside
    [lo, hi] ([0, n-1] with align_corners, [-0.5, n-0.5] without) is then clamped to
    [0, n-1] (border) or reflected about lo and hi until inside (reflection); cubic
    keeps its position. Taps: nearest p itself; linear floor(p) and floor(p)+1,
    weights 1 - |p - tap|; cubic floor(p)-1 .. floor(p)+2 with Keys' kernel
    (a = -0.75). A tap outside the input reads 0 (zeros), the nearest edge (border)
    or its reflection (reflection, truncated to an index). Interpolation is
    separable over the axes. These are PyTorch's and onnxruntime's rules; ONNX's
    reference also moves cubic's position, which differs under border padding.
    NaN propagates from every tap read.
    %y = ember.grid_sample %x, %grid {mode = "linear", align_corners = true} : f32[1,3,8,8]"""

    x = Operand(FloatTensor)
    grid = Operand(FloatTensor)
    mode = Attr(A.OneOf(*GRID_MODES), default="linear")
    padding_mode = Attr(A.OneOf(*GRID_PADDING), default="zeros")
    align_corners = Attr(A.Bool, default=False)
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type, grid: Type) -> TensorType:
        x, lay = _spatial(self, x)
        grid = rules.ranked(self, grid, "grid")
        r = x.rank - 2
        if grid.rank != x.rank or not _may_equal(grid.shape[-1], r):
            raise self.error(f"grid {grid} must be (N, the {r} output sizes, {r}) for x {x}")
        batch = x.shape[lay.axis("N")]
        if not _may_equal(grid.shape[0], batch):
            raise self.error(f"grid {grid} has batch {grid.shape[0]}; x {x} has {batch}")
        return x.with_shape(_to_layout((batch, x.shape[lay.channel_axis], *grid.shape[1:-1]), lay))

    @staticmethod
    def reference(x: np.ndarray, grid: np.ndarray, *, mode: str, padding_mode: str, align_corners: bool,
                  layout: str | None) -> np.ndarray:
        wide = rules.compute_dtype(x.dtype)
        pos = _position_dtype(x, grid)
        xc, lay = _channels_first(x.astype(wide), layout)
        n_batch, channels, *sizes = xc.shape
        r = len(sizes)
        outs = grid.shape[1:-1]
        g = grid.astype(pos)
        per_axis = []
        for axis, size in enumerate(sizes):
            per_axis.append(_grid_taps(g[..., r - 1 - axis], size, mode, padding_mode, align_corners, pos))
        total = np.zeros((n_batch, *outs, channels), wide)
        n_idx = np.arange(n_batch).reshape((n_batch,) + (1,) * len(outs))
        for combo in product(*per_axis):
            weight = np.ones(g.shape[:-1], pos)
            valid = np.ones(g.shape[:-1], bool)
            index = []
            for tap_index, tap_weight, tap_valid in combo:
                weight = weight * tap_weight
                valid = valid & tap_valid
                index.append(tap_index)
            values = xc[(n_idx, slice(None), *index)]  # (N, outs..., C)
            total += np.where(valid[..., None], weight.astype(wide)[..., None] * values, 0)
        y = np.moveaxis(total, -1, 1)
        return np.transpose(y, lay.from_channels_first).astype(x.dtype)


def _reflect(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect positions outside [lo, hi] about the nearer bound until inside."""
    span = hi - lo
    if span <= 0:
        return np.full_like(p, lo)
    below = p < lo
    above = p > hi
    dist = np.where(below, lo - p, np.where(above, p - hi, 0))
    flips = np.floor(dist / span)
    rest = dist - flips * span
    even = flips % 2 == 0
    from_below = np.where(even, lo + rest, hi - rest)
    from_above = np.where(even, hi - rest, lo + rest)
    return np.where(below, from_below, np.where(above, from_above, p)).astype(p.dtype)


def _keys(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0)).astype(t.dtype)


def _grid_taps(g: np.ndarray, size: int, mode: str, padding_mode: str, align_corners: bool,
               pos: np.dtype) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The taps of one spatial axis: (index, weight, valid) arrays of g's shape."""
    if align_corners:
        p = (g + 1) / 2 * (size - 1)
        lo, hi = 0.0, float(size - 1)
    else:
        p = ((g + 1) * size - 1) / 2
        lo, hi = -0.5, size - 0.5
    p = p.astype(pos)
    if mode == "nearest":
        p = np.rint(p)
    outside = (p < lo) | (p > hi)
    if mode == "cubic":
        pass  # PyTorch and onnxruntime pad cubic's taps, not its position
    elif padding_mode == "border":
        p = np.where(outside, np.clip(p, 0, size - 1), p).astype(pos)
    elif padding_mode == "reflection":
        p = np.where(outside, _reflect(p, lo, hi), p).astype(pos)
    if mode == "nearest":
        starts, weights = [np.trunc(p)], [np.ones_like(p)]
    else:
        base = np.floor(p)
        t = (p - base).astype(pos)
        if mode == "linear":
            starts, weights = [base, base + 1], [1 - t, t]
        else:
            starts = [base - 1, base, base + 1, base + 2]
            weights = [_keys(t + 1), _keys(t), _keys(1 - t), _keys(2 - t)]
    taps = []
    for q, w in zip(starts, weights):
        if padding_mode == "zeros":
            valid = (q >= 0) & (q < size)
        else:
            valid = np.ones(q.shape, bool)
            if padding_mode == "reflection":
                q = np.trunc(_reflect(q, lo, hi))
        taps.append((np.clip(q, 0, size - 1).astype(np.intp), w.astype(pos), valid))
    return taps


# -- RoI align --------------------------------------------------------------------------------
@register_op("ember.roi_align", traits={Pure, LayoutSensitive})
class RoiAlign(Op):
    """Pool each region of interest into an output_height x output_width grid by
    bilinear sampling (ONNX RoiAlign, Mask R-CNN). rois (R, 4) holds [x1, y1, x2, y2]
    in input coordinates times 1/spatial_scale; batch_indices (R,) names each RoI's
    image. x is (N, C, H, W) in `layout`, the result (R, C, output_height, output_width)
    in `layout`.

    A RoI starts at x1*spatial_scale - o (o = 0.5 for half_pixel, 0 for
    output_half_pixel, opset 10's behaviour, which also stretches RoIs to at least 1
    wide and high). Each output bin averages (avg) or takes the max (max) of a
    sampling_ratio x sampling_ratio grid of samples (0: ceil(roi size / output size)
    per axis, per RoI) at the centers of equal sub-bins. A sample outside [-1, H] x
    [-1, W] counts as 0; inside, it is clamped at 0, and a low index at the last row
    or column reads that row or column only. avg divides the sum by the number of
    samples; max takes, per sample, the largest of the four weighted corner values
    w_i * x_i (onnxruntime's rule, not the max of the interpolated values). onnxruntime's
    and ONNX's reference's rules exactly. A batch index outside [0, N) is an error in
    the interpreter and undefined in kernels.
    %y = ember.roi_align %x, %rois, %idx {output_height = 7, output_width = 7, spatial_scale = 0.25} : f32[8,256,7,7]"""

    x = Operand(FloatTensor)
    rois = Operand(FloatTensor)
    batch_indices = Operand(IntTensor)
    mode = Attr(A.OneOf("avg", "max"), default="avg")
    output_height = Attr(A.Int, default=1)
    output_width = Attr(A.Int, default=1)
    sampling_ratio = Attr(A.Int, default=0)
    spatial_scale = Attr(A.Float, default=1.0)
    coordinate_transformation_mode = Attr(A.OneOf("half_pixel", "output_half_pixel"), default="half_pixel")
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type, rois: Type, batch_indices: Type) -> TensorType:
        x, lay = _spatial(self, x)
        if x.rank != 4:
            raise self.error(f"x {x} must have rank 4 (batch, channels, height, width)")
        rois = rules.ranked(self, rois, "rois")
        idx = rules.ranked(self, batch_indices, "batch_indices")
        rules.same_dtype(self, x, rois)
        if rois.rank != 2 or not _may_equal(rois.shape[1], 4):
            raise self.error(f"rois {rois} must be (num_rois, 4)")
        if idx.rank != 1 or not _may_equal(idx.shape[0], rois.shape[0]):
            raise self.error(f"batch_indices {idx} must be a vector of one index per RoI ({rois.shape[0]})")
        if self.output_height < 1 or self.output_width < 1:
            raise self.error(f"output size {self.output_height}x{self.output_width} must be positive")
        if self.sampling_ratio < 0:
            raise self.error(f"sampling_ratio {self.sampling_ratio} must be >= 0 (0: adaptive)")
        return x.with_shape(_to_layout((rois.shape[0], x.shape[lay.channel_axis], self.output_height,
                                        self.output_width), lay))

    @staticmethod
    def reference(x: np.ndarray, rois: np.ndarray, batch_indices: np.ndarray, *, mode: str, output_height: int,
                  output_width: int, sampling_ratio: int, spatial_scale: float, coordinate_transformation_mode: str,
                  layout: str | None) -> np.ndarray:
        wide = rules.compute_dtype(x.dtype)
        pos = _position_dtype(x)
        xc, lay = _channels_first(x.astype(wide), layout)
        n_batch, channels, height, width = xc.shape
        half = coordinate_transformation_mode == "half_pixel"
        out = np.zeros((rois.shape[0], channels, output_height, output_width), wide)
        scale = pos.type(spatial_scale)
        for r, (box, b) in enumerate(zip(rois.astype(pos), batch_indices)):
            if not 0 <= b < n_batch:
                raise ValueError(f"roi_align: batch index {b} is outside [0, {n_batch})")
            start_w, start_h, end_w, end_h = box * scale - pos.type(0.5 if half else 0.0)
            roi_w, roi_h = end_w - start_w, end_h - start_h
            if not half:
                roi_w, roi_h = max(roi_w, pos.type(1)), max(roi_h, pos.type(1))
            bin_h, bin_w = pos.type(roi_h / output_height), pos.type(roi_w / output_width)
            grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / output_height)
            grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / output_width)
            if grid_h <= 0 or grid_w <= 0:
                continue  # no samples: the bins stay 0
            ys = _roi_samples(start_h, bin_h, output_height, grid_h, height, pos)
            xs = _roi_samples(start_w, bin_w, output_width, grid_w, width, pos)
            out[r] = _roi_pool(xc[b], ys, xs, mode, max(grid_h * grid_w, 1))
        return np.transpose(out, lay.from_channels_first).astype(x.dtype)


def _roi_samples(start: float, bin_size: float, bins: int, grid: int, size: int, pos: np.dtype
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis, for every (bin, sample): low index, high index, low weight, high
    weight, and whether the sample is inside [-1, size]. Arrays of shape (bins, grid)."""
    b = np.arange(bins, dtype=pos)[:, None]
    i = np.arange(grid, dtype=pos)[None, :]
    c = (start + b * bin_size + (i + pos.type(0.5)) * bin_size / pos.type(grid)).astype(pos)
    inside = (c >= -1.0) & (c <= size)
    c = np.maximum(c, 0)
    low = np.floor(c).astype(np.int64)
    last = low >= size - 1
    low = np.where(last, size - 1, low)
    high = np.where(last, size - 1, low + 1)
    c = np.where(last, low.astype(pos), c)
    frac = (c - low).astype(pos)
    return low, high, (1 - frac).astype(pos), frac, inside


def _roi_pool(image: np.ndarray, ys: tuple, xs: tuple, mode: str, count: int) -> np.ndarray:
    """One RoI's bins from image (C, H, W): (C, bins_h, bins_w)."""
    y_lo, y_hi, wy_lo, wy_hi, y_in = ys
    x_lo, x_hi, wx_lo, wx_hi, x_in = xs
    inside = y_in[:, :, None, None] & x_in[None, None, :, :]  # (bh, gh, bw, gw)
    corners = []
    for yi, wy in ((y_lo, wy_lo), (y_hi, wy_hi)):
        for xi, wx in ((x_lo, wx_lo), (x_hi, wx_hi)):
            weight = (wy[:, :, None, None] * wx[None, None, :, :]).astype(image.dtype)
            values = image[:, yi[:, :, None, None], xi[None, None, :, :]]  # (C, bh, gh, bw, gw)
            corners.append(np.where(inside, weight * values, 0))
    if mode == "avg":
        total = corners[0] + corners[1] + corners[2] + corners[3]
        return total.sum(axis=(2, 4)) / image.dtype.type(count)
    best = np.maximum(np.maximum(corners[0], corners[1]), np.maximum(corners[2], corners[3]))
    return best.max(axis=(2, 4))


# -- non-max suppression ------------------------------------------------------------------------
class _Suppression(Op):
    """The operands and attributes of ember.nms and ember.nms_padded (see ember.nms)."""

    boxes = Operand(FloatTensor)
    scores = Operand(FloatTensor)
    max_output_boxes_per_class = Attr(A.Int, default=0)
    iou_threshold = Attr(A.Float, default=0.0)
    score_threshold = Attr(A.Optional(A.Float), default=None)
    center_point_box = Attr(A.Bool, default=False)


@register_op("ember.nms", traits={Pure})
class NonMaxSuppression(_Suppression):
    """Greedy non-max suppression per image and class (ONNX NonMaxSuppression).
    boxes (B, M, 4): [y1, x1, y2, x2] corners (either diagonal), or [x_center,
    y_center, width, height] with center_point_box. scores (B, C, M). For each image b
    and class c, boxes whose score is > score_threshold (all when absent) are visited
    by decreasing score (ties: lower box index first); a box is kept unless its IoU
    with a box already kept for that class is > iou_threshold, until
    max_output_boxes_per_class are kept (0 keeps none). Boxes with no positive area
    never suppress. IoU and the comparisons are computed in f32 (f64 for f64).

    The result lists the kept boxes as rows [b, c, box index], by image, then class,
    then order of selection: (K, 3) i64 with K known only at run time, at most
    B * C * min(M, max_output_boxes_per_class). The limits are attributes: they size
    the result, and graphs give them as constants (TensorRT's NMS takes them so too).
    %sel = ember.nms %boxes, %scores {max_output_boxes_per_class = 10, iou_threshold = 0.5} : i64[?<=30,3]"""

    out = Result(I64Tensor)

    def infer(self, boxes: Type, scores: Type) -> TensorType:
        bound = _nms_bound(self, boxes, scores)
        if bound == 0:
            return TensorType(i64, (0, 3))
        return TensorType(i64, (Unknown(None if isinstance(bound, Unknown) else bound), 3))

    @staticmethod
    def reference(boxes: np.ndarray, scores: np.ndarray, *, max_output_boxes_per_class: int,
                  iou_threshold: float, score_threshold: float | None, center_point_box: bool) -> np.ndarray:
        pos = _position_dtype(boxes, scores)
        iou_limit = pos.type(iou_threshold)
        score_limit = None if score_threshold is None else pos.type(score_threshold)
        kept: list[tuple[int, int, int]] = []
        for b in range(boxes.shape[0]):
            overlaps = _suppresses(boxes[b].astype(pos), center_point_box, iou_limit)
            for c in range(scores.shape[1]):
                s = scores[b, c].astype(pos)
                candidates = np.arange(s.shape[0]) if score_limit is None else np.nonzero(s > score_limit)[0]
                order = candidates[np.argsort(-s[candidates], kind="stable")]
                chosen: list[int] = []
                for i in order:
                    if len(chosen) >= max_output_boxes_per_class:
                        break
                    if not any(overlaps[i, j] for j in chosen):
                        chosen.append(int(i))
                        kept.append((b, c, int(i)))
        return np.array(kept, dtype=np.int64).reshape(-1, 3)


@register_op("ember.nms_padded", traits={Pure})
class NonMaxSuppressionPadded(_Suppression):
    """ember.nms with a fixed-size result and a count (TensorRT's EfficientNMS keeps
    shapes static so): `selected` holds ember.nms's rows first and -1 rows after them,
    (B * C * min(M, max_output_boxes_per_class), 3) i64 in all; `count` (i64 scalar)
    says how many rows are real. A GPU computes the count with the rows, so the size of
    ember.nms's result costs one 8-byte read back (ember.head of the pair), not the boxes.
    %sel, %n = ember.nms_padded %boxes, %scores {max_output_boxes_per_class = 10} : i64[30,3], i64[]"""

    selected = Result(I64Tensor)
    count = Result(I64Tensor)

    def infer(self, boxes: Type, scores: Type) -> tuple[TensorType, TensorType]:
        return TensorType(i64, (_nms_bound(self, boxes, scores), 3)), TensorType(i64, ())

    @staticmethod
    def reference(boxes: np.ndarray, scores: np.ndarray, *, max_output_boxes_per_class: int,
                  iou_threshold: float, score_threshold: float | None,
                  center_point_box: bool) -> tuple[np.ndarray, np.ndarray]:
        rows = NonMaxSuppression.reference(boxes, scores, max_output_boxes_per_class=max_output_boxes_per_class,
                                           iou_threshold=iou_threshold, score_threshold=score_threshold,
                                           center_point_box=center_point_box)
        k = max_output_boxes_per_class
        bound = 0 if k == 0 else boxes.shape[0] * scores.shape[1] * min(boxes.shape[1], k)
        out = np.full((bound, 3), -1, np.int64)
        out[:len(rows)] = rows
        return out, np.array(len(rows), np.int64)


def _nms_bound(op: Op, boxes: Type, scores: Type) -> Dim:
    """The most rows NMS can keep, B * C * min(M, max_output_boxes_per_class), after checking
    the operands' shapes and the attributes."""
    boxes = rules.ranked(op, boxes, "boxes")
    scores = rules.ranked(op, scores, "scores")
    if boxes.rank != 3 or not _may_equal(boxes.shape[2], 4):
        raise op.error(f"boxes {boxes} must be (batch, boxes, 4)")
    if scores.rank != 3:
        raise op.error(f"scores {scores} must be (batch, classes, boxes)")
    if not (_may_equal(boxes.shape[0], scores.shape[0]) and _may_equal(boxes.shape[1], scores.shape[2])):
        raise op.error(f"scores {scores} must be (batch, classes, boxes) for boxes {boxes}")
    k = op.max_output_boxes_per_class  # type: ignore[attr-defined]
    if k < 0:
        raise op.error(f"max_output_boxes_per_class {k} must be >= 0")
    if not 0.0 <= op.iou_threshold <= 1.0:  # type: ignore[attr-defined]
        raise op.error(f"iou_threshold {op.iou_threshold} must be in [0, 1]")  # type: ignore[attr-defined]
    return 0 if k == 0 else mul(mul(boxes.shape[0], scores.shape[1]), dmin(boxes.shape[1], k))


def _suppresses(boxes: np.ndarray, center: bool, limit: np.floating) -> np.ndarray:
    """(M, M) bool: box i's IoU with box j is > limit (both with a positive area)."""
    if center:
        xc, yc, w, h = boxes.T
        x1, x2, y1, y2 = xc - w / 2, xc + w / 2, yc - h / 2, yc + h / 2
    else:
        y1, x1, y2, x2 = np.minimum(boxes[:, 0], boxes[:, 2]), np.minimum(boxes[:, 1], boxes[:, 3]), \
            np.maximum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 1], boxes[:, 3])
    ix = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
    iy = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])
    inter = ix * iy
    area = (x2 - x1) * (y2 - y1)
    union = area[:, None] + area[None, :] - inter
    positive = (ix > 0) & (iy > 0) & (area[:, None] > 0) & (area[None, :] > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return positive & (iou > limit)


# -- col2im -------------------------------------------------------------------------------------
@register_op("ember.col2im", traits={Pure, LayoutSensitive})
class Col2Im(Op):
    """Sum sliding blocks back into an image (ONNX Col2Im, PyTorch's fold), the
    inverse of im2col. x is (N, C * prod(block_shape), L): column l holds block l of
    the grid of blocks (row-major), its rows channel c's taps (row-major over the
    block). The block grid is the windows of a convolution over `image_shape` with
    `strides`, `pads` and `dilations`: L = prod((size + pads - (block-1)*dilation - 1)
    // stride + 1). Each tap adds into its image position; taps in the padding are
    dropped. The result is (N, C, image_shape...) in `layout`. Floats sum in f32 for
    f16/bf16; integers wrap.
    %y = ember.col2im %x {image_shape = [5, 5], block_shape = [2, 2]} : f32[1,1,5,5]"""

    x = Operand(NumericTensor)
    image_shape = Attr(A.Dims)
    block_shape = Attr(A.Ints)
    strides = Attr(A.Ints, default=())
    pads = Attr(A.Ints, default=())
    dilations = Attr(A.Ints, default=())
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(NumericTensor)

    def infer(self, x: Type) -> TensorType:
        x = rules.ranked(self, x, "x")
        if x.rank != 3:
            raise self.error(f"x {x} must have rank 3 (batch, channels * block size, blocks)")
        n = len(self.image_shape)
        if n < 1 or len(self.block_shape) != n:
            raise self.error(f"block_shape {list(self.block_shape)} and image_shape {list(self.image_shape)} "
                             "must have one entry per spatial dim")
        lay = L.activation(self, self.layout, n + 2)
        strides, dilations, begin, end = _window_attrs(self, n, self.block_shape, self.strides, self.dilations,
                                                       self.pads, "NOTSET")
        taps = math.prod(self.block_shape)
        rows = x.shape[1]
        if _static(rows) and rows % taps:
            raise self.error(f"x {x} has {rows} rows, not a multiple of the block's {taps} taps")
        channels = rows // taps if not isinstance(rows, Unknown) else Unknown()
        blocks = 1
        for i, args in enumerate(zip(self.image_shape, self.block_shape, strides, dilations, begin, end)):
            count = _window_out(self, i, *args, "NOTSET")
            if _static(count) and count < 1:
                raise self.error(f"image axis {i} holds no block")
            blocks = mul(blocks, count)
        if not _may_equal(x.shape[2], blocks):
            raise self.error(f"x {x} has {x.shape[2]} columns; image_shape {list(self.image_shape)} with these "
                             f"windows has {blocks} blocks")
        return x.with_shape(_to_layout((x.shape[0], channels, *self.image_shape), lay))

    @staticmethod
    def reference(x: np.ndarray, *, image_shape: tuple[int, ...], block_shape: tuple[int, ...],
                  strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...],
                  layout: str | None) -> np.ndarray:
        acc = rules.accumulate_dtype(x.dtype)
        n = len(image_shape)
        sizes = [int(s) for s in image_shape]
        strides, dilations, begin, end = _window_attrs(None, n, block_shape, strides, dilations, pads, "NOTSET")
        blocks = [_window_out(None, i, *a, "NOTSET")
                  for i, a in enumerate(zip(sizes, block_shape, strides, dilations, begin, end))]
        n_batch = x.shape[0]
        k = math.prod(block_shape)
        channels = x.shape[1] // k
        cols = x.astype(acc).reshape(n_batch, channels, k, *blocks)
        y = np.zeros((n_batch, channels, *(s + 1 for s in sizes)), acc)  # one spare slot per axis for padding
        for t, (_, positions) in enumerate(_taps(blocks, block_shape, strides, dilations, begin)):
            y[(slice(None), slice(None)) + np.ix_(*_clipped(positions, sizes))] += cols[:, :, t]
        y = y[(slice(None), slice(None)) + tuple(slice(0, s) for s in sizes)]
        return np.transpose(y, L.resolve(layout, n + 2).from_channels_first).astype(x.dtype)


__all__ = ["DeformConv", "GridSample", "RoiAlign", "NonMaxSuppression", "NonMaxSuppressionPadded", "Col2Im"]
