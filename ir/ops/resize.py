"""Resize: nearest, n-linear and n-cubic resampling over every axis (ONNX Resize, opset 19+).

One op covers upsampling and downsampling of any rank. The output size comes
from `sizes` (given, may be symbolic) or else from `scales` (out = floor(in *
scale) per axis), always one entry per axis. With both, `sizes` fixes the output
and `scales` the sample positions (ONNX's keep_aspect_ratio_policy rounds the
size but positions by the scale; PyTorch's interpolate without
recompute_scale_factor does the same). ONNX's `axes` subset and
`keep_aspect_ratio_policy` are frontend conveniences that the ONNX importer
turns into full-rank `sizes` (and `scales`). Everything per axis (`scales`, `sizes`,
`roi`) is indexed by axis, so Resize is layout-agnostic: the layout pass only
permutes those lists.

Interpolation is separable: each axis is resampled in turn, with the source
coordinate of output index y given by `coordinate_transformation_mode`, and
the taps chosen and weighted by `mode` (see `Resize` for every formula).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ember.ir import attrs as A
from ember.ir.dims import Dim, Unknown, floordiv, mul
from ember.ir.opdef import AnyTensor, Attr, Op, Operand, Pure, Result, register_op
from ember.ir.ops import rules
from ember.ir.types import TensorType, Type

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_crop_and_resize", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")

# A symbolic dim times a scale has an exact dim expression when the scale is p/q
# with a small q ((d*p)//q); floats are dyadic, so 0.5, 1.5, 0.25 qualify, 1/3 does not.
_MAX_SYMBOLIC_DENOMINATOR = 1 << 10


def scaled_dim(d: Dim, scale: float) -> Dim:
    """floor(d * scale) as a dim: exact for ints, (d*p)//q for a symbolic d and a
    dyadic scale p/q, unknown otherwise (a scale such as 1/3 on a symbolic dim)."""
    if isinstance(d, int):
        return math.floor(d * scale)
    if isinstance(d, Unknown):
        return Unknown()
    frac = Fraction(scale)
    if frac.denominator > _MAX_SYMBOLIC_DENOMINATOR:
        return Unknown()
    return floordiv(mul(d, frac.numerator), frac.denominator)


@register_op("ember.resize", traits={Pure})
class Resize(Op):
    """Resample every axis by nearest, n-linear or n-cubic interpolation (ONNX Resize).

    Output dims: `sizes` as given, or else floor(in * scale) with `scales` (a
    symbolic dim gets an exact expression for dyadic scales such as 2.0 -> 2*H,
    0.5 -> H//2, 1.5 -> (3*H)//2, and `?` otherwise). The per-axis scale s used
    below is the given `scales` entry, or out/in when only `sizes` is given.

    Source coordinate x of output index y on an axis (in, out: lengths; s: scale;
    L: the unrounded output length in*s with `scales`, out with `sizes` only):
      half_pixel            (y + 0.5) / s - 0.5
      half_pixel_symmetric  in/2 * (1 - out/(s*in)) + (y + 0.5) / s - 0.5
      pytorch_half_pixel    (y + 0.5) / s - 0.5, or 0 when out == 1
      align_corners         y * (in - 1) / (L - 1), or 0 when L == 1
      asymmetric            y / s
      tf_half_pixel_for_nn  (y + 0.5) / s  (ONNX opset 11's mode for TensorFlow's nearest)
      tf_crop_and_resize    start*(in-1) + y * (end-start) * (in-1) / (L-1), or
                            (start+end)/2 * (in-1) when L == 1; roi = [starts..., ends...];
                            an output whose x on any axis lies outside [0, in-1] is
                            `extrapolation_value`.
    L follows ONNX's reference and backend tests: downsampling 4 elements by 0.6
    with align_corners reads x = 3/1.4 for y = 1, where onnxruntime and PyTorch
    divide by out - 1 = 1 (a frontend wanting that passes `sizes` alone).
    Coordinates are computed in f64.

    Taps and weights:
      nearest  one tap, x rounded by `nearest_mode` (round_prefer_floor rounds
               halves down, round_prefer_ceil up; floor; ceil), clamped into [0, in-1].
      linear   taps floor(x) and floor(x)+1, weights 1 - |j - x|.
      cubic    taps floor(x)-1 .. floor(x)+2, Keys' kernel with a = cubic_coeff_a.
      antialias (linear and cubic): when s < 1 the kernel is stretched by 1/s
               (weight K((j - x) * s), every tap within the support) and the
               weights are normalized to sum 1.
    Taps outside [0, in-1] read the edge element, unless `exclude_outside`:
    then their weight is 0 and the rest are renormalized to sum 1.

    Numerics: floats compute in f32 (f64 for f64; low-precision floats widen to
    f32 and round once). Integers compute in f64, round half to even and
    saturate to their range, as ONNX. NaN/inf propagate through taps with a
    nonzero weight; a zero-weight tap is skipped (so a NaN neighbour does not
    leak into an output that does not depend on it). Nearest is a pure gather
    and takes any element type; linear and cubic take numeric types.

    Layout-agnostic: scales, sizes and roi are per axis; the layout pass
    permutes them with the data.
    %y = ember.resize %x {scales = [1.0, 1.0, 2.0, 2.0], mode = "linear"} : f32[1,3,64,64]"""

    x = Operand(AnyTensor)
    scales = Attr(A.Optional(A.Floats), default=None, doc="one per axis, > 0")
    sizes = Attr(A.Optional(A.Dims), default=None, doc="one per axis, may be symbolic; wins over scales")
    mode = Attr(A.OneOf(*MODES), default="nearest")
    coordinate_transformation_mode = Attr(A.OneOf(*COORDINATE_MODES), default="half_pixel")
    nearest_mode = Attr(A.OneOf(*NEAREST_MODES), default="round_prefer_floor", doc="mode=nearest only")
    cubic_coeff_a = Attr(A.Float, default=-0.75, doc="mode=cubic only")
    exclude_outside = Attr(A.Bool, default=False)
    extrapolation_value = Attr(A.Float, default=0.0, doc="tf_crop_and_resize only")
    antialias = Attr(A.Bool, default=False, doc="linear and cubic only")
    roi = Attr(A.Optional(A.Floats), default=None, doc="tf_crop_and_resize only: [starts..., ends...]")
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        x = rules.ranked(self, x, "x")
        rank = x.rank
        if self.scales is None and self.sizes is None:
            raise self.error("give scales or sizes (or both)")
        if self.mode != "nearest" and x.dtype.kind not in ("float", "int", "uint"):
            raise self.error(f"mode {self.mode!r} interpolates numbers; x is {x}")
        if self.antialias and self.mode == "nearest":
            raise self.error("antialias applies to linear and cubic modes only, not nearest")
        cropping = self.coordinate_transformation_mode == "tf_crop_and_resize"
        if cropping:
            if self.roi is None:
                raise self.error("coordinate_transformation_mode tf_crop_and_resize needs roi")
            if len(self.roi) != 2 * rank:
                raise self.error(f"roi has {len(self.roi)} values; x of rank {rank} needs {2 * rank} "
                                 "(starts, then ends)")
            if x.dtype.kind not in ("float", "int", "uint"):
                raise self.error(f"tf_crop_and_resize extrapolates with a number; x is {x}")
        elif self.roi is not None:
            raise self.error("roi is used by coordinate_transformation_mode tf_crop_and_resize only")
        if self.scales is not None:
            if len(self.scales) != rank:
                raise self.error(f"scales has {len(self.scales)} values; x has rank {rank}")
            bad = [s for s in self.scales if not (math.isfinite(s) and s > 0)]
            if bad:
                raise self.error(f"scales must be finite and > 0, got {list(self.scales)}")
        if self.sizes is None:
            return x.with_shape(scaled_dim(d, s) for d, s in zip(x.shape, self.scales))  # type: ignore[union-attr]
        if len(self.sizes) != rank:
            raise self.error(f"sizes has {len(self.sizes)} values; x has rank {rank}")
        for axis, (d, size) in enumerate(zip(x.shape, self.sizes)):  # type: ignore[union-attr]
            if isinstance(size, int) and size < 0:
                raise self.error(f"sizes must be >= 0, got {list(self.sizes)}")
            if d == 0 and size != 0:
                raise self.error(f"axis {axis} of x is empty and cannot be resized to {size}")
        return x.with_shape(self.sizes)

    @staticmethod
    def reference(x: np.ndarray, *, scales: tuple[float, ...] | None, sizes: tuple[int, ...] | None,
                  mode: str, coordinate_transformation_mode: str, nearest_mode: str, cubic_coeff_a: float,
                  exclude_outside: bool, extrapolation_value: float, antialias: bool,
                  roi: tuple[float, ...] | None) -> np.ndarray:
        rank = x.ndim
        if sizes is not None:
            outs = [int(s) for s in sizes]
            for d, o in zip(x.shape, outs):
                if d == 0 and o != 0:
                    raise ValueError(f"cannot resize an empty axis to {o}")
            factors = [float(s) for s in scales] if scales is not None else \
                [o / d if d else 1.0 for o, d in zip(outs, x.shape)]
        else:
            assert scales is not None
            factors = [float(s) for s in scales]
            outs = [math.floor(d * s) for d, s in zip(x.shape, factors)]
        numeric = mode != "nearest"
        work_dtype = _work_dtype(x.dtype) if numeric else x.dtype
        data = x.astype(work_dtype) if numeric else x
        outside: np.ndarray | None = None
        for axis in range(rank):
            n_in, n_out, scale = x.shape[axis], outs[axis], factors[axis]
            length = n_in * scale if scales is not None else float(n_out)
            pair = (roi[axis], roi[axis + rank]) if roi is not None else None
            coords = _source_coords(coordinate_transformation_mode, n_in, n_out, scale, length, pair)
            if pair is not None:
                mask = ((coords < 0) | (coords > n_in - 1)).reshape((-1,) + (1,) * (rank - axis - 1))
                outside = mask if outside is None else (outside | mask)
            if mode == "nearest":
                data = np.take(data, _nearest_index(coords, nearest_mode, n_in), axis=axis)
            else:
                data = _interpolate_axis(data, axis, coords, n_in, scale, mode, cubic_coeff_a, antialias,
                                         exclude_outside)
        out = _to_dtype(data, x.dtype) if numeric else data
        if outside is not None and outside.any():
            fill = _to_dtype(np.array(extrapolation_value, dtype=np.float64), x.dtype)
            out = np.where(np.broadcast_to(outside, out.shape), fill, out)
        return out.astype(x.dtype, copy=False)


def _work_dtype(dt: np.dtype) -> np.dtype:
    """Where interpolation computes: f32 (f64 for f64) for floats, f64 for integers."""
    if dt.kind in "iu":
        return np.dtype(np.float64)
    return rules.compute_dtype(dt)


def _to_dtype(values: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Round once to the element type: integers round half to even and saturate."""
    if np.dtype(dt).kind in "iu":
        info = np.iinfo(dt)
        return np.clip(np.round(values), info.min, info.max).astype(dt)
    return values.astype(dt)


def _source_coords(ctm: str, n_in: int, n_out: int, scale: float, length: float,
                   roi: tuple[float, float] | None) -> np.ndarray:
    """The source coordinate of every output index along one axis (f64); `length` is L."""
    y = np.arange(n_out, dtype=np.float64)
    if ctm == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if ctm == "half_pixel_symmetric":
        adjustment = n_out / (scale * n_in) if n_in else 1.0
        offset = n_in / 2 * (1 - adjustment)
        return offset + (y + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    if ctm == "align_corners":
        return y * (n_in - 1) / (length - 1) if length != 1 else np.zeros(n_out)
    if ctm == "asymmetric":
        return y / scale
    if ctm == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    assert ctm == "tf_crop_and_resize" and roi is not None
    start, end = roi
    if length != 1:
        return y * (end - start) * (n_in - 1) / (length - 1) + start * (n_in - 1)
    return np.full(n_out, (start + end) / 2 * (n_in - 1))


def _nearest_index(x: np.ndarray, nearest_mode: str, n_in: int) -> np.ndarray:
    lo = np.floor(x)
    frac = x - lo
    if nearest_mode == "round_prefer_floor":
        idx = np.where(frac > 0.5, lo + 1, lo)
    elif nearest_mode == "round_prefer_ceil":
        idx = np.where(frac >= 0.5, lo + 1, lo)
    elif nearest_mode == "floor":
        idx = lo
    else:
        idx = np.ceil(x)
    return np.clip(idx, 0, max(n_in - 1, 0)).astype(np.intp)


def _kernel(t: np.ndarray, mode: str, a: float) -> np.ndarray:
    """The interpolation kernel at distance t (in kernel units)."""
    t = np.abs(t)
    if mode == "linear":
        return np.clip(1 - t, 0, 1)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _interpolate_axis(data: np.ndarray, axis: int, x: np.ndarray, n_in: int, scale: float, mode: str,
                      a: float, antialias: bool, exclude_outside: bool) -> np.ndarray:
    """Resample `data` along `axis` at source coordinates `x` (linear or cubic)."""
    support = 1.0 if mode == "linear" else 2.0
    stretch = min(scale, 1.0) if antialias else 1.0
    radius = math.ceil(support / stretch)
    # Every integer j with |j - x| < support/stretch lies in floor(x)-radius+1 .. floor(x)+radius.
    taps = np.floor(x).astype(np.int64)[:, None] + np.arange(1 - radius, radius + 1)[None, :]
    weights = _kernel((taps - x[:, None]) * stretch, mode, a)
    normalize = antialias
    if exclude_outside:
        weights = np.where((taps < 0) | (taps >= n_in), 0.0, weights)
        normalize = True
    if normalize:
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    clamped = np.clip(taps, 0, max(n_in - 1, 0))
    out_shape = list(data.shape)
    out_shape[axis] = len(x)
    out = np.zeros(out_shape, dtype=data.dtype)
    if len(x) == 0 or n_in == 0:
        return out
    w_shape = (-1,) + (1,) * (data.ndim - axis - 1)
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(taps.shape[1]):
            w = weights[:, k]
            if not w.any():
                continue
            picked = np.take(data, clamped[:, k], axis=axis)
            wk = w.astype(data.dtype).reshape(w_shape)
            out += np.where(wk != 0, picked * wk, 0)
    return out


__all__ = ["Resize", "scaled_dim", "MODES", "COORDINATE_MODES", "NEAREST_MODES"]
