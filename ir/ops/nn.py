"""Convolution (float and integer), pooling, unpooling and depth/space rearrangement.

Every op here carries a `layout` attribute for its activations (None: channels
first, N C spatial...; "NHWC" and the other channels-last spellings of
`ember.ir.layout`), so TensorFlow's NHWC models import without transposes.
Convolutions also carry a `weight_layout` for the filter. The meaning of an op
does not depend on its layouts: running it on transposed operands with the
matching layouts gives the transposed result, which is what lets the layout
pass move layouts around freely.

Windows follow ONNX. Per spatial axis, a window of `kernel` taps `dilation`
apart (effective size (kernel-1)*dilation+1) moves `stride` at a time over the
input padded with `pads` (ONNX order: every axis's begin, then every axis's
end; empty means none). `auto_pad` (NOTSET, VALID, SAME_UPPER, SAME_LOWER) is
ONNX's, kept so that frontends can pass it through and symbolic sizes still
give symbolic results: SAME pads so that the output has ceil(size/stride)
elements, the odd one at the end (UPPER) or the beginning (LOWER); VALID pads
nothing. Explicit pads must be absent or zero when auto_pad is set. Strides and
dilations default to ones (empty).

Numerics (see rules.py): f16/bf16/fp8 compute and accumulate in f32 and round
once; f64 in f64. NaN propagates through every op, max pooling included.
"""

from __future__ import annotations

from itertools import product
from typing import Any, Sequence

import numpy as np

from ember.errors import ShapeError
from ember.ir import attrs as A
from ember.ir import layout as L
from ember.ir.dims import Dim, Unknown, dmin
from ember.ir.opdef import (AnyTensor, Attr, DataMovement, FloatTensor, Heavy, IntTensor, LayoutSensitive,
                            NumericTensor, Op, Operand, Pure, Quantization, Reduction, Result, TypeConstraint,
                            register_op)
from ember.ir.ops import rules
from ember.ir.types import TensorType, Type, i32, i64

AUTO_PAD = A.OneOf("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
RealTensor = TypeConstraint("float or integer tensor", frozenset({"float", "int", "uint"}))


# -- window geometry (shared by type rules and references) --------------------------------
def _fail(op: Op | None, message: str) -> ShapeError:
    return op.error(message) if op is not None else ShapeError(message)


def _window_attrs(op: Op | None, n: int, kernel: Sequence[Dim], strides: Sequence[int],
                  dilations: Sequence[int], pads: Sequence[int], auto_pad: str
                  ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Check the window attributes of an op with `n` spatial dims and fill their defaults.
    Returns strides, dilations, pads at the beginnings, pads at the ends."""
    for name, value, want in (("kernel_shape", kernel, n), ("strides", strides, n),
                              ("dilations", dilations, n), ("pads", pads, 2 * n)):
        if value and len(value) != want:
            raise _fail(op, f"{name} {list(value)} has {len(value)} entries; expected {want} "
                            f"({'begin and end of ' if name == 'pads' else 'one per '}each of the {n} spatial dims)")
    if any(isinstance(k, int) and k < 1 for k in kernel):
        raise _fail(op, f"kernel_shape {list(kernel)} must be positive")
    strides = tuple(strides) or (1,) * n
    dilations = tuple(dilations) or (1,) * n
    pads = tuple(pads) or (0,) * (2 * n)
    if any(s < 1 for s in strides):
        raise _fail(op, f"strides {list(strides)} must be positive")
    if any(d < 1 for d in dilations):
        raise _fail(op, f"dilations {list(dilations)} must be positive")
    if any(p < 0 for p in pads):
        raise _fail(op, f"pads {list(pads)} must not be negative")
    if auto_pad != "NOTSET" and any(pads):
        raise _fail(op, f"pads {list(pads)} and auto_pad={auto_pad} exclude each other; give one of them")
    return strides, dilations, pads[:n], pads[n:]


def _effective(k: Dim, d: int) -> Dim:
    return (k - 1) * d + 1


def _window_out(op: Op | None, axis: int, size: Dim, k: Dim, s: int, d: int, pb: int, pe: int,
                auto_pad: str, ceil_mode: bool = False) -> Dim:
    """Output size of one windowed spatial axis (ONNX's rules; ceil_mode as PyTorch,
    whose last window must start inside the input or its beginning pad)."""
    if isinstance(size, Unknown) or isinstance(k, Unknown):
        return Unknown()
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return (size + s - 1) // s  # ceil(size / s)
    if auto_pad == "VALID":
        pb = pe = 0
        ceil_mode = False  # ONNX: VALID gives floor((size - eff) / s) + 1 either way
    span = size + pb + pe - _effective(k, d)
    if isinstance(span, int) and span < 0:
        raise _fail(op, f"spatial dim {axis} of size {size} padded by {pb}+{pe} is smaller than the window "
                        f"({k} taps, dilation {d})")
    if not ceil_mode:
        return span // s + 1
    out = (span + s - 1) // s + 1
    eff = _effective(k, d)
    if isinstance(eff, int) and pe + s <= eff:
        return out  # the last window always starts inside: no correction (keeps symbolic dims simple)
    last = (size + pb - 1) // s + 1  # windows that start before the end pad
    diff = out - last
    if isinstance(diff, int):
        return out if diff <= 0 else last
    return dmin(out, last)


def _same_pads(size: int, k: int, s: int, d: int, auto_pad: str) -> tuple[int, int]:
    out = (size + s - 1) // s
    total = max(0, (out - 1) * s + _effective(k, d) - size)
    small, big = total // 2, total - total // 2
    return (small, big) if auto_pad == "SAME_UPPER" else (big, small)


def _resolved_pads(sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                   dilations: Sequence[int], begin: Sequence[int], end: Sequence[int],
                   auto_pad: str) -> tuple[list[int], list[int]]:
    """Concrete pads at the beginning and end of each spatial axis (auto_pad resolved)."""
    if auto_pad == "VALID":
        return [0] * len(sizes), [0] * len(sizes)
    if auto_pad == "NOTSET":
        return list(begin), list(end)
    pairs = [_same_pads(n, k, s, d, auto_pad) for n, k, s, d in zip(sizes, kernel, strides, dilations)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _taps(outs: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
          begin: Sequence[int]) -> Any:
    """For each kernel tap (row-major over the kernel): the tap's index and, per axis,
    the input position each output element reads (negative or past the end in padding)."""
    for tap in product(*(range(k) for k in kernel)):
        yield tap, [np.arange(o) * s - b + t * d for t, o, s, d, b in zip(tap, outs, strides, dilations, begin)]


def _inside(positions: Sequence[np.ndarray], sizes: Sequence[int]) -> list[np.ndarray]:
    return [(p >= 0) & (p < n) for p, n in zip(positions, sizes)]


def _clipped(positions: Sequence[np.ndarray], sizes: Sequence[int]) -> list[np.ndarray]:
    """Positions outside the input replaced by `size`, one past the end (see `_padded_by_one`)."""
    return [np.where((p >= 0) & (p < n), p, n) for p, n in zip(positions, sizes)]


def _padded_by_one(x: np.ndarray) -> np.ndarray:
    """x (N, C, spatial...) with a zero appended to every spatial axis, where taps outside
    the input read."""
    return np.pad(x, [(0, 0), (0, 0)] + [(0, 1)] * (x.ndim - 2))


def _gather(xp: np.ndarray, positions: Sequence[np.ndarray]) -> np.ndarray:
    """xp[:, :, positions...] as an outer product of the per-axis positions: (N, C, outs...)."""
    return xp[(slice(None), slice(None)) + np.ix_(*positions)]


def _outer_and(masks: Sequence[np.ndarray]) -> np.ndarray:
    out = np.ones((), bool)
    for m in masks:
        out = np.logical_and.outer(out, m)
    return out


def _spatial(op: Op, x: Type, what: str = "x") -> tuple[TensorType, L.Layout]:
    """x as a ranked tensor with at least one spatial dim, and its validated layout."""
    x = rules.ranked(op, x, what)
    if x.rank < 3:
        raise op.error(f"{what} {x} needs rank >= 3 (batch, channels and at least one spatial dim)")
    return x, L.activation(op, op.layout, x.rank)


def _to_layout(shape_cf: Sequence[Dim], lay: L.Layout) -> tuple[Dim, ...]:
    """A channels-first shape (N, C, spatial...) put in `lay`'s order."""
    return tuple(shape_cf[i] for i in lay.from_channels_first)


def _channels_first(x: np.ndarray, layout: str | None) -> tuple[np.ndarray, L.Layout]:
    lay = L.resolve(layout, x.ndim)
    return np.transpose(x, lay.to_channels_first), lay


def _static(*dims: Dim) -> bool:
    return all(isinstance(d, int) for d in dims)


# -- convolution ----------------------------------------------------------------------------
class _ConvBase(Op):
    """Shared checks of conv and conv_transpose."""

    def _conv_kernel(self, w: TensorType, wl: L.WeightLayout, spatial: str) -> tuple[Dim, ...]:
        kernel = tuple(w.shape[a] for a in wl.spatial_axes(spatial))
        given = self.kernel_shape
        if given:
            if len(given) != len(kernel):
                raise self.error(f"kernel_shape {list(given)} has {len(given)} entries; expected {len(kernel)}")
            if any(isinstance(k, int) and k != g for k, g in zip(kernel, given)):
                raise self.error(f"kernel_shape {list(given)} does not match the filter's spatial dims "
                                 f"{list(kernel)} ({w}, weight_layout {wl})")
            kernel = tuple(k if isinstance(k, int) else g for k, g in zip(kernel, given))
        return kernel

    def _conv_operands(self, x: Type, w: Type, bias: Type | None
                       ) -> tuple[TensorType, TensorType, L.Layout, L.WeightLayout]:
        x, lay = _spatial(self, x)
        w = rules.ranked(self, w, "w")
        rules.same_dtype(self, x, w, bias)
        if w.rank != x.rank:
            raise self.error(f"filter w {w} must have rank {x.rank}, as x {x} has")
        wl = L.weight(self, self.weight_layout, lay.spatial, default=self._weight_default)
        if self.groups < 1:
            raise self.error(f"group {self.groups} must be positive")
        return x, w, lay, wl

    def _forward_shape(self, x: TensorType, w: TensorType, lay: L.Layout, wl: L.WeightLayout) -> tuple[Dim, ...]:
        """The output shape of a forward convolution (ember.conv, ember.conv_integer)."""
        n = x.rank - 2
        kernel = self._conv_kernel(w, wl, lay.spatial)
        strides, dilations, begin, end = _window_attrs(self, n, kernel, self.strides, self.dilations, self.pads,
                                                       self.auto_pad)
        c_in, c_out, w_in = x.shape[lay.channel_axis], w.shape[wl.out_axis], w.shape[wl.in_axis]
        g = self.groups
        if _static(c_in, w_in) and c_in != w_in * g:
            raise self.error(f"x has {c_in} input channels but the filter {w} takes {w_in} per group "
                             f"x {g} groups = {w_in * g}")
        if isinstance(c_out, int) and c_out % g:
            raise self.error(f"the filter's {c_out} output channels do not split into {g} groups")
        sizes = [x.shape[a] for a in lay.spatial_axes]
        outs = [_window_out(self, i, *args, self.auto_pad)
                for i, args in enumerate(zip(sizes, kernel, strides, dilations, begin, end))]
        return _to_layout((x.shape[lay.axis("N")], c_out, *outs), lay)

    def _conv_bias(self, bias: Type | None, channels: Dim) -> None:
        if bias is None:
            return
        bias = rules.ranked(self, bias, "bias")
        if bias.rank != 1 or (_static(bias.shape[0], channels) and bias.shape[0] != channels):
            raise self.error(f"bias {bias} must be a vector of the {channels} output channels")


@register_op("ember.conv", traits={Pure, Heavy, LayoutSensitive})
class Conv(_ConvBase):
    """N-d convolution (cross-correlation, as ONNX Conv and every framework), with
    groups, strides, dilations, pads or auto_pad, and an optional bias of one value per
    output channel. x is (N, C_in, spatial...) in `layout`; the filter w is (C_out,
    C_in/group, kernel...) in `weight_layout` (default "OI" + the spatial letters; OHWI
    and TensorFlow's HWIO are other orders of the same letters). Output channel o of
    group g = o // (C_out/group) sees input channels g*C_in/group onwards.
    Floats only: integer convolution is the quantization family's (QLinearConv,
    ConvInteger). f16/bf16/fp8 accumulate in f32 (with the bias) and round once.
    %y = ember.conv %x, %w, %b {strides = [2, 2], pads = [1, 1, 1, 1]} : f32[1,16,112,112]"""

    x = Operand(FloatTensor)
    w = Operand(FloatTensor)
    bias = Operand(FloatTensor, optional=True)
    kernel_shape = Attr(A.Ints, default=())
    strides = Attr(A.Ints, default=())
    pads = Attr(A.Ints, default=())
    dilations = Attr(A.Ints, default=())
    groups = Attr(A.Int, default=1, key="group")
    auto_pad = Attr(AUTO_PAD, default="NOTSET")
    layout = Attr(A.Optional(A.Str), default=None)
    weight_layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    _weight_default = "OI"

    def infer(self, x: Type, w: Type, bias: Type | None) -> TensorType:
        x, w, lay, wl = self._conv_operands(x, w, bias)
        shape = self._forward_shape(x, w, lay, wl)
        self._conv_bias(bias, w.shape[wl.out_axis])
        return x.with_shape(shape)

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, kernel_shape: tuple[int, ...],
                  strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...], group: int,
                  auto_pad: str, layout: str | None, weight_layout: str | None) -> np.ndarray:
        acc = rules.accumulate_dtype(x.dtype)
        xc, lay = _channels_first(x.astype(acc), layout)
        wl = L.resolve_weight(weight_layout, lay.spatial, "OI")
        wc = np.transpose(w.astype(acc), wl.perm("OI", lay.spatial))
        n_batch, c_in, *sizes = xc.shape
        c_out, c_group, *kernel = wc.shape
        n = len(sizes)
        strides, dilations, begin, end = _window_attrs(None, n, kernel, strides, dilations, pads, auto_pad)
        begin, end = _resolved_pads(sizes, kernel, strides, dilations, begin, end, auto_pad)
        outs = [_window_out(None, i, *a, "NOTSET")
                for i, a in enumerate(zip(sizes, kernel, strides, dilations, begin, end))]
        xp = _padded_by_one(xc).reshape(n_batch, group, c_group, *(s + 1 for s in sizes))
        wg = wc.reshape(group, c_out // group, c_group, *kernel)
        y = np.zeros((n_batch, group, c_out // group, int(np.prod(outs))), acc)
        for tap, positions in _taps(outs, kernel, strides, dilations, begin):
            patch = xp[(slice(None),) * 3 + np.ix_(*_clipped(positions, sizes))]
            patch = patch.reshape(n_batch, group, c_group, y.shape[-1])
            y += np.einsum("goc,ngcp->ngop", wg[(slice(None),) * 3 + tap], patch)
        y = y.reshape(n_batch, c_out, *outs)
        if bias is not None:
            y += bias.astype(acc).reshape((c_out,) + (1,) * n)
        return np.transpose(y, lay.from_channels_first).astype(x.dtype)


@register_op("ember.conv_transpose", traits={Pure, Heavy, LayoutSensitive})
class ConvTranspose(_ConvBase):
    """Transposed convolution (ONNX ConvTranspose): each input element scatters its
    product with the filter into a window of the output, windows `strides` apart, taps
    `dilations` apart. The full result of an axis has (size-1)*stride + (kernel-1)*dilation
    + 1 + output_padding elements (output_padding adds never-written ones at the end);
    `pads` then crop it at each end. w is (C_in, C_out/group, kernel...) in
    `weight_layout` (default "IO" + the spatial letters, ONNX's order).

    `output_shape` (spatial sizes, may be symbolic; then `pads` must be absent) instead
    chooses the output size and derives the pads by ONNX's equations: total = full -
    output_shape, begin = total//2 and end = total - total//2 for SAME_UPPER, the other
    way round for any other auto_pad (floor division, so a negative total, an output
    larger than the full result, pads it with zeros plus bias). Without output_shape,
    SAME_UPPER/SAME_LOWER make the output size*stride the same way, and VALID crops
    nothing. Floats only; f16/bf16/fp8 accumulate in f32.
    %y = ember.conv_transpose %x, %w {strides = [2, 2], output_padding = [1, 1]} : f32[1,8,18,18]"""

    x = Operand(FloatTensor)
    w = Operand(FloatTensor)
    bias = Operand(FloatTensor, optional=True)
    kernel_shape = Attr(A.Ints, default=())
    strides = Attr(A.Ints, default=())
    pads = Attr(A.Ints, default=())
    dilations = Attr(A.Ints, default=())
    groups = Attr(A.Int, default=1, key="group")
    auto_pad = Attr(AUTO_PAD, default="NOTSET")
    output_padding = Attr(A.Ints, default=())
    output_shape = Attr(A.Optional(A.Dims), default=None)
    layout = Attr(A.Optional(A.Str), default=None)
    weight_layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    _weight_default = "IO"

    def infer(self, x: Type, w: Type, bias: Type | None) -> TensorType:
        x, w, lay, wl = self._conv_operands(x, w, bias)
        n = x.rank - 2
        kernel = self._conv_kernel(w, wl, lay.spatial)
        strides, dilations, begin, end = _window_attrs(self, n, kernel, self.strides, self.dilations, self.pads,
                                                       self.auto_pad)
        adjust = _output_padding(self, self.output_padding, strides, dilations)
        c_in, w_in, w_out = x.shape[lay.channel_axis], w.shape[wl.in_axis], w.shape[wl.out_axis]
        g = self.groups
        if _static(c_in, w_in) and c_in != w_in:
            raise self.error(f"x has {c_in} input channels but the filter {w} takes {w_in}")
        if isinstance(c_in, int) and c_in % g:
            raise self.error(f"x's {c_in} input channels do not split into {g} groups")
        c_out = w_out * g if not isinstance(w_out, Unknown) else Unknown()
        self._conv_bias(bias, c_out)
        if self.output_shape is not None:
            if any(self.pads):
                raise self.error(f"pads {list(self.pads)} would be ignored: output_shape derives the pads; "
                                 f"give one of them")
            if len(self.output_shape) != n:
                raise self.error(f"output_shape {list(self.output_shape)} has {len(self.output_shape)} entries; "
                                 f"expected {n} (the spatial dims only)")
            outs = list(self.output_shape)
        else:
            outs = []
            for i, (size, k, s, d, b, e, a) in enumerate(zip((x.shape[j] for j in lay.spatial_axes), kernel,
                                                             strides, dilations, begin, end, adjust)):
                if isinstance(size, Unknown) or isinstance(k, Unknown):
                    outs.append(Unknown())
                elif size == 0:
                    raise self.error(f"spatial dim {i} of x {x} is empty; nothing to scatter")
                elif self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                    outs.append(size * s)
                else:
                    out = (size - 1) * s + _effective(k, d) + a - b - e
                    if isinstance(out, int) and out < 1:
                        raise self.error(f"pads crop spatial dim {i} to {out} elements")
                    outs.append(out)
        if any(isinstance(o, int) and o < 0 for o in outs):
            raise self.error(f"output_shape {list(outs)} must not be negative")
        return x.with_shape(_to_layout((x.shape[lay.axis("N")], c_out, *outs), lay))

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, kernel_shape: tuple[int, ...],
                  strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...], group: int,
                  auto_pad: str, output_padding: tuple[int, ...], output_shape: tuple[int, ...] | None,
                  layout: str | None, weight_layout: str | None) -> np.ndarray:
        acc = rules.accumulate_dtype(x.dtype)
        xc, lay = _channels_first(x.astype(acc), layout)
        wl = L.resolve_weight(weight_layout, lay.spatial, "IO")
        wc = np.transpose(w.astype(acc), wl.perm("IO", lay.spatial))
        n_batch, c_in, *sizes = xc.shape
        _, o_group, *kernel = wc.shape
        n = len(sizes)
        strides, dilations, begin, end = _window_attrs(None, n, kernel, strides, dilations, pads, auto_pad)
        adjust = list(output_padding) or [0] * n
        full = [(size - 1) * s + _effective(k, d) + a
                for size, k, s, d, a in zip(sizes, kernel, strides, dilations, adjust)]
        if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            wanted = output_shape if output_shape is not None else [size * s for size, s in zip(sizes, strides)]
            begin, end = [], []
            for f, o in zip(full, wanted):
                total = f - o
                small, big = total // 2, total - total // 2
                begin.append(small if auto_pad == "SAME_UPPER" else big)
                end.append(big if auto_pad == "SAME_UPPER" else small)
        elif auto_pad == "VALID":
            begin, end = [0] * n, [0] * n
        c_group = c_in // group
        xg = xc.reshape(n_batch, group, c_group, int(np.prod(sizes)))
        wg = wc.reshape(group, c_group, o_group, *kernel)
        y = np.zeros((n_batch, group, o_group, *full), acc)
        for tap in product(*(range(k) for k in kernel)):
            part = np.einsum("gco,ngcp->ngop", wg[(slice(None),) * 3 + tap], xg)
            window = tuple(slice(t * d, t * d + (size - 1) * s + 1, s)
                           for t, d, size, s in zip(tap, dilations, sizes, strides))
            y[(slice(None),) * 3 + window] += part.reshape(n_batch, group, o_group, *sizes)
        y = y.reshape(n_batch, group * o_group, *full)
        y = np.pad(y, [(0, 0), (0, 0)] + [(max(0, -b), max(0, -e)) for b, e in zip(begin, end)])
        y = y[(slice(None), slice(None)) + tuple(slice(max(0, b), y.shape[2 + i] - max(0, e))
                                                 for i, (b, e) in enumerate(zip(begin, end)))]
        if bias is not None:
            y = y + bias.astype(acc).reshape((-1,) + (1,) * n)
        return np.transpose(y, lay.from_channels_first).astype(x.dtype)


@register_op("ember.conv_integer", traits={Pure, Heavy, LayoutSensitive, Quantization})
class ConvInteger(_ConvBase):
    """Integer convolution with zero points and an exact i32 result (ONNX ConvInteger,
    and the core of QLinearConv): y = sum over the window of (x - x_zero_point) *
    (w - w_zero_point). Same windows, groups, layouts and shape rule as ember.conv.
    x and w are 8-bit integers (each i8 or u8, independently); x_zero_point is a
    scalar (or one element) of x's type; w_zero_point a scalar of w's type or a vector
    of one per output channel. Absent zero points are 0. Taps in the padding add
    nothing (they read x_zero_point, as onnxruntime pads). The sum is exact in i32
    (an overflow, beyond 2^31, wraps; no 8-bit model comes near it).
    A separate op rather than an integer ember.conv: its operands differ (zero points,
    mixed signedness), its result type is not its operands', and it is what int8
    kernels (IMMA, dp4a) implement; QLinearConv is this op followed by the
    requantizing elementwise ops and ember.quantize.
    %y = ember.conv_integer %x, %w, %xz, %wz {pads = [1, 1, 1, 1]} : i32[1,16,28,28]"""

    x = Operand(IntTensor)
    w = Operand(IntTensor)
    x_zero_point = Operand(IntTensor, optional=True)
    w_zero_point = Operand(IntTensor, optional=True)
    kernel_shape = Attr(A.Ints, default=())
    strides = Attr(A.Ints, default=())
    pads = Attr(A.Ints, default=())
    dilations = Attr(A.Ints, default=())
    groups = Attr(A.Int, default=1, key="group")
    auto_pad = Attr(AUTO_PAD, default="NOTSET")
    layout = Attr(A.Optional(A.Str), default=None)
    weight_layout = Attr(A.Optional(A.Str), default=None)
    out = Result(TypeConstraint("i32 tensor", frozenset({"int"})))

    _weight_default = "OI"

    def infer(self, x: Type, w: Type, x_zero_point: Type | None, w_zero_point: Type | None) -> TensorType:
        x, lay = _spatial(self, x)
        w = rules.ranked(self, w, "w")
        for what, t in (("x", x), ("w", w)):
            if t.dtype.name not in ("i8", "u8"):
                raise self.error(f"{what} {t} must be i8 or u8")
        if w.rank != x.rank:
            raise self.error(f"filter w {w} must have rank {x.rank}, as x {x} has")
        wl = L.weight(self, self.weight_layout, lay.spatial, default="OI")
        if self.groups < 1:
            raise self.error(f"group {self.groups} must be positive")
        shape = self._forward_shape(x, w, lay, wl)
        c_out = w.shape[wl.out_axis]
        for what, zp, like, per_channel in (("x_zero_point", x_zero_point, x, False),
                                            ("w_zero_point", w_zero_point, w, True)):
            if zp is None:
                continue
            zp = rules.ranked(self, zp, what)
            if zp.dtype != like.dtype:
                raise self.error(f"{what} {zp} must have the element type of {like}")
            scalar = zp.rank == 0 or zp.shape == (1,)
            channel = per_channel and zp.rank == 1 and (not _static(zp.shape[0], c_out) or zp.shape[0] == c_out)
            if not (scalar or channel):
                want = f"a scalar or one value per output channel ({c_out})" if per_channel else "a scalar"
                raise self.error(f"{what} {zp} must be {want}")
        return TensorType(i32, shape)

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, x_zero_point: np.ndarray | None, w_zero_point: np.ndarray | None,
                  *, kernel_shape: tuple[int, ...], strides: tuple[int, ...], pads: tuple[int, ...],
                  dilations: tuple[int, ...], group: int, auto_pad: str, layout: str | None,
                  weight_layout: str | None) -> np.ndarray:
        xs = x.astype(np.int64)
        ws = w.astype(np.int64)
        if x_zero_point is not None:
            xs = xs - x_zero_point.astype(np.int64).reshape(())
        if w_zero_point is not None:
            zp = w_zero_point.astype(np.int64)
            if zp.size == 1:
                ws = ws - zp.reshape(())
            else:
                spatial = L.resolve(layout, x.ndim).spatial
                axis = L.resolve_weight(weight_layout, spatial, "OI").out_axis
                ws = ws - zp.reshape([-1 if i == axis else 1 for i in range(w.ndim)])
        y = Conv.reference(xs, ws, None, kernel_shape=kernel_shape, strides=strides, pads=pads,
                           dilations=dilations, group=group, auto_pad=auto_pad, layout=layout,
                           weight_layout=weight_layout)
        return y.astype(np.int32)


def _output_padding(op: Op, value: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
                    ) -> tuple[int, ...]:
    n = len(strides)
    if value and len(value) != n:
        raise op.error(f"output_padding {list(value)} has {len(value)} entries; expected {n}")
    value = tuple(value) or (0,) * n
    for a, s, d in zip(value, strides, dilations):
        if not 0 <= a < max(s, d):
            raise op.error(f"output_padding {list(value)} must be >= 0 and less than the stride or the "
                           f"dilation of its axis (strides {list(strides)}, dilations {list(dilations)})")
    return value


# -- windowed pooling ----------------------------------------------------------------------
class _Pool(Op):
    """A window slides over the spatial dims of each channel, as in conv, but reduces
    the taps of one channel. Taps in the padding are not values: they are skipped (avg
    pooling counts them only with count_include_pad)."""

    x = Operand(FloatTensor)
    kernel_shape = Attr(A.Ints)
    strides = Attr(A.Ints, default=())
    pads = Attr(A.Ints, default=())
    dilations = Attr(A.Ints, default=())
    ceil_mode = Attr(A.Bool, default=False)
    auto_pad = Attr(AUTO_PAD, default="NOTSET")
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    def _pool_type(self, x: Type) -> TensorType:
        x, lay = _spatial(self, x)
        n = x.rank - 2
        if len(self.kernel_shape) != n:
            raise self.error(f"kernel_shape {list(self.kernel_shape)} has {len(self.kernel_shape)} entries; "
                             f"expected {n} (one per spatial dim of {x})")
        strides, dilations, begin, end = _window_attrs(self, n, self.kernel_shape, self.strides, self.dilations,
                                                       self.pads, self.auto_pad)
        sizes = [x.shape[a] for a in lay.spatial_axes]
        outs = [_window_out(self, i, *args, self.auto_pad, self.ceil_mode)
                for i, args in enumerate(zip(sizes, self.kernel_shape, strides, dilations, begin, end))]
        return x.with_shape(_to_layout((x.shape[lay.axis("N")], x.shape[lay.channel_axis], *outs), lay))

    def infer(self, x: Type) -> TensorType:
        return self._pool_type(x)


def _pool_windows(x: np.ndarray, kernel_shape: Sequence[int], strides: Sequence[int], pads: Sequence[int],
                  dilations: Sequence[int], ceil_mode: bool, auto_pad: str, layout: str | None
                  ) -> tuple[np.ndarray, L.Layout, list[int], list[int], list[int], Any]:
    """x in channels-first order, its layout, spatial sizes, output sizes, pads at the ends
    (resolved), and the taps (see `_taps`)."""
    xc, lay = _channels_first(x, layout)
    sizes = list(xc.shape[2:])
    n = len(sizes)
    strides, dilations, begin, end = _window_attrs(None, n, kernel_shape, strides, dilations, pads, auto_pad)
    outs = [_window_out(None, i, *a, auto_pad, ceil_mode)
            for i, a in enumerate(zip(sizes, kernel_shape, strides, dilations, begin, end))]
    begin, end = _resolved_pads(sizes, kernel_shape, strides, dilations, begin, end, auto_pad)
    taps = _taps(outs, kernel_shape, strides, dilations, begin)
    return xc, lay, sizes, outs, end, taps


def _max_with_index(x: np.ndarray, kernel_shape: Sequence[int], strides: Sequence[int], pads: Sequence[int],
                    dilations: Sequence[int], ceil_mode: bool, auto_pad: str, layout: str | None,
                    storage_order: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The max of every window and, unless storage_order is None, where it is (channels-first
    flat index; see MaxPoolWithIndices)."""
    wide = rules.compute_dtype(x.dtype)
    xc, lay, sizes, outs, _, taps = _pool_windows(x.astype(wide), kernel_shape, strides, pads, dilations,
                                                  ceil_mode, auto_pad, layout)
    is_float = wide.kind == "f"
    lowest = -np.inf if is_float else np.iinfo(wide).min
    xp = _padded_by_one(xc)
    n_batch, channels = xc.shape[:2]
    shape = (n_batch, channels, *outs)
    best = np.full(shape, lowest, wide)
    where = np.full(shape, -1, np.int64)
    seen = np.zeros(shape, bool)
    plane = int(np.prod(sizes))
    base = (np.arange(n_batch * channels, dtype=np.int64) * plane).reshape((n_batch, channels) + (1,) * len(sizes))
    order = "F" if storage_order == 1 else "C"
    for _, positions in taps:
        vals = _gather(xp, _clipped(positions, sizes))
        ok = np.broadcast_to(_outer_and(_inside(positions, sizes)), shape)
        better = ~seen | (vals > best)
        if is_float:
            better = (better | np.isnan(vals)) & ~np.isnan(best)
        better &= ok
        best = np.where(better, vals, best)
        seen |= ok
        if storage_order is not None and plane:
            flat = np.ravel_multi_index(np.ix_(*(np.clip(p, 0, n - 1) for p, n in zip(positions, sizes))), sizes,
                                        order=order)
            where = np.where(better, base + flat, where)
    back = lay.from_channels_first
    return np.transpose(best, back).astype(x.dtype), np.transpose(where, back)


@register_op("ember.max_pool", traits={Pure, LayoutSensitive})
class MaxPool(_Pool):
    """Max of each window (ONNX MaxPool's first output). NaN propagates: a window
    holding a NaN gives NaN. A window with no input element (all padding) gives -inf
    (the lowest value for integers). Integers are accepted (ONNX takes int8/uint8).
    %y = ember.max_pool %x {kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]} : f32[1,64,56,56]"""

    x = Operand(RealTensor)
    out = Result(RealTensor)

    @staticmethod
    def reference(x: np.ndarray, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                  pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: bool, auto_pad: str,
                  layout: str | None) -> np.ndarray:
        return _max_with_index(x, kernel_shape, strides, pads, dilations, ceil_mode, auto_pad, layout, None)[0]


@register_op("ember.max_pool_with_indices", traits={Pure, LayoutSensitive})
class MaxPoolWithIndices(_Pool):
    """Max pooling that also says where each max came from: ONNX MaxPool with its
    optional Indices output. A separate op rather than a second result of
    ember.max_pool, because Ember has no optional results and almost no graph reads
    the indices (MaxUnpool does): an always-present i64 result would be a dead buffer
    that every max_pool kernel must still write and that dead-code elimination
    (which removes ops, not results) could never drop. The frontend picks this op only
    when Indices is used.

    indices are flat positions in x read channels first, whatever `layout` says:
    (n*C + c) * prod(spatial) + the position inside the spatial dims, row-major for
    storage_order=0 and column-major for storage_order=1 (ONNX's rule). So a layout
    change only transposes the results. Ties keep the first tap in row-major kernel
    order; a NaN wins over numbers (first NaN); a window of padding only gives -inf
    and index -1.
    %y, %i = ember.max_pool_with_indices %x {kernel_shape = [2, 2], strides = [2, 2]} : f32[1,3,4,4], i64[1,3,4,4]"""

    x = Operand(RealTensor)
    storage_order = Attr(A.Int, default=0)
    out = Result(RealTensor)
    indices = Result(TypeConstraint("i64 tensor", frozenset({"int"})))

    def infer(self, x: Type) -> tuple[TensorType, TensorType]:
        if self.storage_order not in (0, 1):
            raise self.error(f"storage_order {self.storage_order} must be 0 (row-major) or 1 (column-major)")
        out = self._pool_type(x)
        return out, out.with_dtype(i64)

    @staticmethod
    def reference(x: np.ndarray, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                  pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: bool, auto_pad: str,
                  layout: str | None, storage_order: int) -> tuple[np.ndarray, np.ndarray]:
        return _max_with_index(x, kernel_shape, strides, pads, dilations, ceil_mode, auto_pad, layout,
                               storage_order)


@register_op("ember.avg_pool", traits={Pure, LayoutSensitive})
class AvgPool(_Pool):
    """Mean of each window (ONNX AveragePool). The divisor counts the taps inside the
    input, or with count_include_pad also those in the padding (explicit or auto_pad's);
    taps past the end pad, which ceil_mode's last window may have, never count. A window
    with nothing to count gives NaN (0/0). Sums in f32 for f16/bf16/fp8. NaN propagates.
    %y = ember.avg_pool %x {kernel_shape = [3, 3], pads = [1, 1, 1, 1], count_include_pad = true} : f32[1,8,7,7]"""

    count_include_pad = Attr(A.Bool, default=False)

    @staticmethod
    def reference(x: np.ndarray, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                  pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: bool, auto_pad: str,
                  layout: str | None, count_include_pad: bool) -> np.ndarray:
        acc = rules.accumulate_dtype(x.dtype)
        xc, lay, sizes, outs, end, taps = _pool_windows(x.astype(acc), kernel_shape, strides, pads, dilations,
                                                        ceil_mode, auto_pad, layout)
        xp = _padded_by_one(xc)
        total = np.zeros(xc.shape[:2] + tuple(outs), acc)
        count = np.zeros(tuple(outs), acc)
        for _, positions in taps:
            total += _gather(xp, _clipped(positions, sizes))  # taps outside the input read the appended 0
            if count_include_pad:  # positions never fall before the beginning pad; not past the end pad
                count += _outer_and([p < n + e for p, n, e in zip(positions, sizes, end)])
            else:
                count += _outer_and(_inside(positions, sizes))
        with np.errstate(divide="ignore", invalid="ignore"):
            y = total / count
        return np.transpose(y, lay.from_channels_first).astype(x.dtype)


@register_op("ember.lp_pool", traits={Pure, LayoutSensitive})
class LpPool(_Pool):
    """The p-norm of each window, (sum |x|^p)^(1/p) over the taps inside the input
    (ONNX LpPool; padding adds nothing). Computed in f32 for f16/bf16/fp8.
    %y = ember.lp_pool %x {kernel_shape = [2, 2], p = 3} : f32[1,8,6,6]"""

    p = Attr(A.Int, default=2)

    def infer(self, x: Type) -> TensorType:
        if self.p < 1:
            raise self.error(f"p {self.p} must be a positive integer")
        return self._pool_type(x)

    @staticmethod
    def reference(x: np.ndarray, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                  pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: bool, auto_pad: str,
                  layout: str | None, p: int) -> np.ndarray:
        acc = rules.accumulate_dtype(x.dtype)
        xc, lay, sizes, outs, _, taps = _pool_windows(np.abs(x.astype(acc)) ** p, kernel_shape, strides, pads,
                                                      dilations, ceil_mode, auto_pad, layout)
        xp = _padded_by_one(xc)
        total = np.zeros(xc.shape[:2] + tuple(outs), acc)
        for _, positions in taps:
            total += _gather(xp, _clipped(positions, sizes))
        y = total ** (1.0 / p)
        return np.transpose(y, lay.from_channels_first).astype(x.dtype)


# -- global pooling ------------------------------------------------------------------------
class _GlobalPool(Op):
    """Reduce all spatial dims of each channel; they stay, as size 1 (ONNX's shape)."""

    x = Operand(FloatTensor)
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type) -> TensorType:
        x, lay = _spatial(self, x)
        spatial = set(lay.spatial_axes)
        return x.with_shape(1 if i in spatial else d for i, d in enumerate(x.shape))


def _spatial_axes(x: np.ndarray, layout: str | None) -> tuple[int, ...]:
    return L.resolve(layout, x.ndim).spatial_axes


@register_op("ember.global_avg_pool", traits={Pure, LayoutSensitive, Reduction})
class GlobalAvgPool(_GlobalPool):
    """Mean over the spatial dims (ONNX GlobalAveragePool); sums in f32 for
    f16/bf16/fp8; NaN propagates; empty spatial dims give NaN.
    %y = ember.global_avg_pool %x : f32[1,512,1,1]"""

    @staticmethod
    def reference(x: np.ndarray, *, layout: str | None) -> np.ndarray:
        acc = rules.accumulate_dtype(x.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.mean(x.astype(acc), axis=_spatial_axes(x, layout), keepdims=True)
        return y.astype(x.dtype)


@register_op("ember.global_max_pool", traits={Pure, LayoutSensitive, Reduction})
class GlobalMaxPool(_GlobalPool):
    """Max over the spatial dims (ONNX GlobalMaxPool); NaN propagates; empty spatial
    dims give -inf (the lowest value for integers), as a window of padding does in
    ember.max_pool. Integers are accepted.
    %y = ember.global_max_pool %x {layout = "NHWC"} : f32[1,1,1,512]"""

    x = Operand(RealTensor)
    out = Result(RealTensor)

    @staticmethod
    def reference(x: np.ndarray, *, layout: str | None) -> np.ndarray:
        wide = rules.compute_dtype(x.dtype)
        lowest = -np.inf if wide.kind == "f" else np.iinfo(wide).min
        y = np.max(x.astype(wide), axis=_spatial_axes(x, layout), keepdims=True, initial=lowest)
        return y.astype(x.dtype)


@register_op("ember.global_lp_pool", traits={Pure, LayoutSensitive, Reduction})
class GlobalLpPool(_GlobalPool):
    """The p-norm over the spatial dims, (sum |x|^p)^(1/p) (ONNX GlobalLpPool);
    computed in f32 for f16/bf16/fp8.
    %y = ember.global_lp_pool %x {p = 1} : f32[1,64,1,1]"""

    p = Attr(A.Int, default=2)

    def infer(self, x: Type) -> TensorType:
        if self.p < 1:
            raise self.error(f"p {self.p} must be a positive integer")
        return super().infer(x)

    @staticmethod
    def reference(x: np.ndarray, *, layout: str | None, p: int) -> np.ndarray:
        acc = rules.accumulate_dtype(x.dtype)
        total = np.sum(np.abs(x.astype(acc)) ** p, axis=_spatial_axes(x, layout), keepdims=True)
        return (total ** (1.0 / p)).astype(x.dtype)


# -- unpooling ------------------------------------------------------------------------------
@register_op("ember.max_unpool", traits={Pure, LayoutSensitive, DataMovement})
class MaxUnpool(Op):
    """Scatter pooled maxima back to where they came from (ONNX MaxUnpool), the
    inverse of ember.max_pool_with_indices: y is zeros except y[indices[e]] = x[e]
    for every element e. indices are flat positions in y read channels first
    ((n*C + c) * prod(out spatial) + row-major spatial position), whatever `layout`
    says, as max_pool_with_indices gives them; x and indices share a shape.

    The spatial output size is (in-1)*stride + kernel - pad_begin - pad_end per axis
    (the pooled input's size when pooling dropped nothing), or `output_shape` (the
    spatial dims only, may be symbolic): the indices then address that shape. When
    two elements name the same position, the later one in channels-first row-major
    order of x wins (onnxruntime's sequential loop). An index outside y is an error
    in the interpreter and undefined in kernels.
    %y = ember.max_unpool %x, %i {kernel_shape = [2, 2], strides = [2, 2]} : f32[1,3,8,8]"""

    x = Operand(NumericTensor)
    indices = Operand(TypeConstraint("i64 tensor", frozenset({"int"})))
    kernel_shape = Attr(A.Ints)
    strides = Attr(A.Ints, default=())
    pads = Attr(A.Ints, default=())
    output_shape = Attr(A.Optional(A.Dims), default=None)
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(NumericTensor)

    def infer(self, x: Type, indices: Type) -> TensorType:
        x, lay = _spatial(self, x)
        indices = rules.ranked(self, indices, "indices")
        if indices.dtype != i64:
            raise self.error(f"indices {indices} must be i64")
        if indices.rank != x.rank or not all(_may_equal(a, b) for a, b in zip(indices.shape, x.shape)):
            raise self.error(f"indices {indices} must have the shape of x {x}")
        n = x.rank - 2
        if len(self.kernel_shape) != n:
            raise self.error(f"kernel_shape {list(self.kernel_shape)} has {len(self.kernel_shape)} entries; "
                             f"expected {n} (one per spatial dim of {x})")
        strides, _, begin, end = _window_attrs(self, n, self.kernel_shape, self.strides, (), self.pads, "NOTSET")
        if self.output_shape is not None:
            if len(self.output_shape) != n:
                raise self.error(f"output_shape {list(self.output_shape)} has {len(self.output_shape)} entries; "
                                 f"expected {n} (the spatial dims only)")
            if any(isinstance(d, int) and d < 0 for d in self.output_shape):
                raise self.error(f"output_shape {list(self.output_shape)} must not be negative")
            outs = list(self.output_shape)
        else:
            outs = []
            for i, a in enumerate(lay.spatial_axes):
                size = x.shape[a]
                if isinstance(size, Unknown):
                    outs.append(Unknown())
                    continue
                out = (size - 1) * strides[i] + self.kernel_shape[i] - begin[i] - end[i]
                if isinstance(out, int) and out < 0:
                    raise self.error(f"pads crop spatial dim {i} to {out} elements")
                outs.append(out)
        return x.with_shape(_to_layout((x.shape[lay.axis("N")], x.shape[lay.channel_axis], *outs), lay))

    @staticmethod
    def reference(x: np.ndarray, indices: np.ndarray, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                  pads: tuple[int, ...], output_shape: tuple[int, ...] | None, layout: str | None) -> np.ndarray:
        xc, lay = _channels_first(x, layout)
        ic = np.transpose(indices, lay.to_channels_first)
        n = xc.ndim - 2
        strides, _, begin, end = _window_attrs(None, n, kernel_shape, strides, (), pads, "NOTSET")
        if output_shape is not None:
            outs = [int(d) for d in output_shape]
        else:
            outs = [(size - 1) * s + k - b - e for size, s, k, b, e in zip(xc.shape[2:], strides, kernel_shape,
                                                                             begin, end)]
        y = np.zeros(xc.shape[:2] + tuple(outs), x.dtype)
        flat = ic.ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= y.size):
            raise ValueError(f"max_unpool: indices range over [{flat.min()}, {flat.max()}]; the output has "
                             f"{y.size} elements")
        y.reshape(-1)[flat] = xc.ravel()
        return np.transpose(y, lay.from_channels_first)


def _may_equal(a: Dim, b: Dim) -> bool:
    return a == b or not _static(a, b)


# -- depth and space ------------------------------------------------------------------------
class _BlockMove(Op):
    """Shared checks of depth_to_space and space_to_depth: a rank-4 x in `layout`."""

    x = Operand(AnyTensor)
    blocksize = Attr(A.Int)
    mode = Attr(A.OneOf("DCR", "CRD"), default="DCR")
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(AnyTensor)

    def _block_input(self, x: Type) -> tuple[TensorType, L.Layout, Dim, Dim, Dim, Dim]:
        x = rules.ranked(self, x, "x")
        if x.rank != 4:
            raise self.error(f"x {x} must have rank 4 (batch, channels, height, width)")
        lay = L.activation(self, self.layout, 4)
        if self.blocksize < 1:
            raise self.error(f"blocksize {self.blocksize} must be positive")
        n, c, h, w = (x.shape[i] for i in lay.to_channels_first)
        return x, lay, n, c, h, w


def _blocks(dim: Dim, b: int, what: str, op: Op) -> Dim:
    if isinstance(dim, Unknown):
        return Unknown()
    if isinstance(dim, int) and dim % b:
        raise op.error(f"{what} {dim} is not a multiple of {b}")
    return dim // b


@register_op("ember.depth_to_space", traits={Pure, LayoutSensitive, DataMovement})
class DepthToSpace(_BlockMove):
    """Move channels into blocksize x blocksize spatial blocks (ONNX DepthToSpace).
    Channels-first, output[n, c, h*b + i, w*b + j] reads input channel
    (i*b + j)*C' + c in DCR mode (TensorFlow's order) and c*b*b + i*b + j in CRD mode
    (PyTorch's PixelShuffle), with C' = C/(b*b). Other layouts move the same elements.
    %y = ember.depth_to_space %x {blocksize = 2, mode = "CRD"} : f32[1,3,8,8]"""

    def infer(self, x: Type) -> TensorType:
        x, lay, n, c, h, w = self._block_input(x)
        b = self.blocksize
        c_out = _blocks(c, b * b, "channels", self)
        h_out, w_out = (d if isinstance(d, Unknown) else d * b for d in (h, w))
        return x.with_shape(_to_layout((n, c_out, h_out, w_out), lay))

    @staticmethod
    def reference(x: np.ndarray, *, blocksize: int, mode: str, layout: str | None) -> np.ndarray:
        xc, lay = _channels_first(x, layout)
        n, c, h, w = xc.shape
        b, c_out = blocksize, c // (blocksize * blocksize)
        if mode == "DCR":
            y = xc.reshape(n, b, b, c_out, h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            y = xc.reshape(n, c_out, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        return np.transpose(y.reshape(n, c_out, h * b, w * b), lay.from_channels_first)


@register_op("ember.space_to_depth", traits={Pure, LayoutSensitive, DataMovement})
class SpaceToDepth(_BlockMove):
    """Move blocksize x blocksize spatial blocks into channels (ONNX SpaceToDepth), the
    inverse of depth_to_space of the same mode: channels-first, output channel
    (i*b + j)*C + c (DCR) or c*b*b + i*b + j (CRD) at [h, w] reads input
    [c, h*b + i, w*b + j]. Other layouts move the same elements.
    %y = ember.space_to_depth %x {blocksize = 2, layout = "NHWC"} : f32[1,4,4,12]"""

    def infer(self, x: Type) -> TensorType:
        x, lay, n, c, h, w = self._block_input(x)
        b = self.blocksize
        h_out, w_out = _blocks(h, b, "height", self), _blocks(w, b, "width", self)
        c_out = c if isinstance(c, Unknown) else c * (b * b)
        return x.with_shape(_to_layout((n, c_out, h_out, w_out), lay))

    @staticmethod
    def reference(x: np.ndarray, *, blocksize: int, mode: str, layout: str | None) -> np.ndarray:
        xc, lay = _channels_first(x, layout)
        n, c, h, w = xc.shape
        b = blocksize
        t = xc.reshape(n, c, h // b, b, w // b, b)
        t = t.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
        return np.transpose(t.reshape(n, c * b * b, h // b, w // b), lay.from_channels_first)
