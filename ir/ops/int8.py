"""Integer heavy ops: int8 convolution and int8 matmul with a dequantize or requantize epilogue.

What passes/fold_qdq.py makes of `quantize -> dequantize -> conv/matmul/gemm [-> relu]
[-> quantize]`, and what the int8 kernels (codegen/ops/int8.py, include/ember_int8.cuh)
compute. Both ops share one meaning, in two steps.

1. The accumulator, exact in i32: s8 activations x (zero point zx, a scalar, 0 when
   absent) and s8 weights w (symmetric: no weight zero point),

       acc[.., c] = sum over the reduction of (x - zx) * w        (i32; wraps past 2^31)

   For the convolution the sum runs over the window, and taps in the padding add nothing
   (they read zx, as ONNX's ConvInteger and onnxruntime pad): exactly `ember.conv_integer`.
   For the matmul, x is [.., M, K] and w is [N, K] (one row per output channel, as a
   linear layer's weight): acc[.., m, n] = sum_k (x[.., m, k] - zx) * w[n, k].

2. The epilogue (`int8_epilogue`), per element of output channel c, every step an f32
   operation rounded to nearest even (no fused multiply-add):

       scale = sx * sw[c]                  (sx per tensor; sw per channel, or one scalar)
       v     = f32(acc) * scale  [+ bias[c]]
       v     = v < 0 ? 0 : v               (relu = true only)
       dequantize (no y_scale): the result is v converted to `dtype` (f32, f16 or bf16;
                                f32 when not given)
       requantize (y_scale sy, zero point zy, 0 when absent): the result is i8,
                                q = rint(v / sy) + zy (rint: half to even; a NaN gives zy),
                                clipped to [-128, 127]

   The requantize step is `ember.quantize(v, sy, zy)` to i8, element for element.

So dequantize(q) of the requantized result equals quantize's of the float graph's value up to
the f32 rounding of the float graph's own sums, and the dequantized result equals
conv(dequantize(x), dequantize(w)) + bias up to that rounding. Every scale is f32;
zero points are i8 scalars. A u8 model is the same model shifted by 128 (fold-qdq rewrites
it), so the ops take s8 only.

Between the heavy ops, tensors stay i8 through the ops below (fold-qdq makes them of
`dequantize -> add/pool/concat -> quantize`). Their operands follow onnxruntime's QLinear ops
(each tensor, then its scale and zero point; the result's scale and zero point last), and
they share the two steps above, every one an f32 operation rounded to nearest even:

    dequantized(q, s, z) = f32(q - z) * s        (q - z exact; ember.dequantize's value)
    requantize(v, sy, zy) = clip(rint(v / sy) + zy, -128, 127), NaN -> zy
                                                 (ember.quantize's value to i8)

- ember.int8_requantize: requantize(dequantized(x, sx, zx), sy, zy): exactly
  quantize(dequantize(x)), the pair with the two scales (a concat input whose scale is not
  the concat's).
- ember.int8_add: requantize([relu](dequantized(a) + dequantized(b)), sy, zy), broadcasting
  as ember.add (onnxruntime's QLinearAdd): exactly the float graph's quantize(add(dq, dq)).
- ember.int8_avg_pool / ember.int8_global_avg_pool: the window's (the spatial dims') exact
  i32 sum acc of (x - zx) over the taps inside x (padding adds nothing: it is the float
  graph's 0), and `count` the taps ember.avg_pool's divisor counts (H x W for the global
  pool); then `int8_mean`:
        v = f32(acc) * sx;  v = v / f32(count);  y = requantize(v, sy, zy)
  (a window with nothing to count gives NaN, so zy). The float graph sums f32 values in its
  own order, so the result is within one quantization step of quantize(avg_pool(dq)).

Max pooling and concatenation need no op of their own: dequantize is monotone (a positive
scale), so max_pool and concat of the i8 tensor are exact, with an int8_requantize where the
scales differ.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ember.ir import attrs as A
from ember.ir import layout as L
from ember.ir.dims import Dim
from ember.ir.opdef import (Attr, Broadcasting, Elementwise, FloatTensor, Heavy, IntTensor, LayoutSensitive,
                            NumericTensor, Op, Operand, Pure, Quantization, Result, register_op)
from ember.ir.ops import rules
from ember.ir.ops.linalg import _same_dim
from ember.ir.ops.nn import (AUTO_PAD, ConvInteger, _ConvBase, _gather, _clipped, _GlobalPool, _inside, _outer_and,
                             _padded_by_one, _Pool, _pool_windows, _spatial, _spatial_axes, _static)
from ember.ir.types import DType, TensorType, Type, f32, i8

DEQUANTIZED = frozenset({"f32", "f16", "bf16"})


def dequantized(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None) -> np.ndarray:
    """f32(q - z) * s: ember.dequantize's value of an i8 tensor per tensor, one f32 product."""
    one = np.float32
    v = np.asarray(q).astype(one)
    if zero_point is not None:
        v = v - np.asarray(zero_point).astype(one).reshape(())
    with np.errstate(all="ignore"):
        return v * np.asarray(scale).astype(one).reshape(())


def requantize(v: np.ndarray, y_scale: np.ndarray, y_zero_point: np.ndarray | None) -> np.ndarray:
    """The f32 values v as i8: rint(v / sy) + zy (half to even; NaN gives zy), clipped to
    [-128, 127]; ember.quantize's value, element for element."""
    one = np.float32
    zp = one(0) if y_zero_point is None else np.asarray(y_zero_point).astype(one).reshape(())
    with np.errstate(all="ignore"):
        q = np.rint(np.asarray(v, one) / np.asarray(y_scale).astype(one).reshape(())) + zp
    q = np.where(np.isnan(q), zp, q)
    return np.clip(q, -128, 127).astype(np.int8)


def int8_mean(acc: np.ndarray, count: np.ndarray, x_scale: np.ndarray, y_scale: np.ndarray,
              y_zero_point: np.ndarray | None) -> np.ndarray:
    """The int8 average of the module docstring: (f32(acc) * sx) / f32(count), requantized."""
    one = np.float32
    with np.errstate(all="ignore"):
        v = np.asarray(acc).astype(np.int32).astype(one) * np.asarray(x_scale).astype(one).reshape(())
        v = v / np.asarray(count).astype(one)
    return requantize(v, y_scale, y_zero_point)


def scaled(acc: np.ndarray, axis: int, x_scale: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None, *,
           relu: bool, dtype: DType | None, y_scale: np.ndarray | None = None,
           y_zero_point: np.ndarray | None = None) -> np.ndarray:
    """The accumulators `acc` (output channels along `axis`, as f32) as a quantized op's result,
    step by step in f32: acc * (x_scale * w_scale[c]) [+ bias[c]] [relu], then as `dtype`, or
    requantized with y_scale. The int8 ops' epilogue and the fp8 ops' (ir/ops/fp8.py)."""
    one = np.float32
    shape = [1] * acc.ndim
    shape[axis % acc.ndim] = -1

    def per_channel(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p).astype(one)
        return p.reshape(()) if p.size == 1 else p.reshape(shape)

    scale = np.asarray(x_scale).astype(one).reshape(()) * per_channel(w_scale)
    with np.errstate(all="ignore"):
        v = acc.astype(one) * scale
        if bias is not None:
            v = v + per_channel(bias)
        if relu:
            v = np.where(v < 0, one(0), v)
        if y_scale is None:
            return v.astype((dtype or f32).np_dtype)
    return requantize(v, y_scale, y_zero_point)


def int8_epilogue(acc: np.ndarray, axis: int, x_scale: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
                  y_scale: np.ndarray | None, y_zero_point: np.ndarray | None, *, relu: bool,
                  dtype: DType | None) -> np.ndarray:
    """The i32 accumulators `acc` (output channels along `axis`) as the op's result: the
    epilogue of the module docstring, step by step in f32."""
    return scaled(acc.astype(np.int32), axis, x_scale, w_scale, bias, relu=relu, dtype=dtype, y_scale=y_scale,
                  y_zero_point=y_zero_point)


def _scalar(op: Op, t: Type | None, what: str, kind: str) -> None:
    """A per-tensor parameter: rank 0 or one element, of the stated type."""
    if t is None:
        return
    t = rules.ranked(op, t, what)
    if t.dtype.name != kind:
        raise op.error(f"{what} {t} must be {kind}")
    if not (t.rank == 0 or t.shape == (1,)):
        raise op.error(f"{what} {t} must be a scalar (per tensor)")


def _vector(op: Op, t: Type | None, what: str, channels: Dim, scalar_ok: bool) -> None:
    """A per-channel parameter: f32, one value per output channel (or, `scalar_ok`, one value)."""
    if t is None:
        return
    t = rules.ranked(op, t, what)
    if t.dtype != f32:
        raise op.error(f"{what} {t} must be f32")
    if scalar_ok and (t.rank == 0 or t.shape == (1,)):
        return
    if t.rank != 1 or (_static(t.shape[0], channels) and t.shape[0] != channels):
        want = "a scalar or " if scalar_ok else ""
        raise op.error(f"{what} {t} must be {want}a vector of the {channels} output channels")


def _result_dtype(op: Op, y_scale: Type | None, y_zero_point: Type | None) -> DType:
    """i8 when requantizing (y_scale given), else `dtype` (f32, f16 or bf16; f32 by default)."""
    given = op.out_dtype
    if y_zero_point is not None and y_scale is None:
        raise op.error("y_zero_point needs y_scale (it requantizes)")
    if y_scale is not None:
        if given is not None and given != i8:
            raise op.error(f"dtype = {given}: a requantized result (y_scale given) is i8")
        return i8
    out = given if given is not None else f32
    if out.name not in DEQUANTIZED:
        raise op.error(f"dtype = {out}: a dequantized result is f32, f16 or bf16 (give y_scale to requantize)")
    return out


def _common(op: Op, x: TensorType, w: TensorType, x_scale: Type, w_scale: Type, bias: Type | None,
            x_zero_point: Type | None, y_scale: Type | None, y_zero_point: Type | None, channels: Dim) -> DType:
    for what, t in (("x", x), ("w", w)):
        if t.dtype.name != "i8":
            raise op.error(f"{what} {t} must be i8 (a u8 tensor is an i8 one shifted by 128)")
    _scalar(op, x_scale, "x_scale", "f32")
    _vector(op, w_scale, "w_scale", channels, scalar_ok=True)
    _vector(op, bias, "bias", channels, scalar_ok=False)
    _scalar(op, x_zero_point, "x_zero_point", "i8")
    _scalar(op, y_scale, "y_scale", "f32")
    _scalar(op, y_zero_point, "y_zero_point", "i8")
    return _result_dtype(op, y_scale, y_zero_point)


# -- int8 convolution -------------------------------------------------------------------------
class _QuantizedConv(_ConvBase):
    """What ember.int8_conv and ember.fp8_conv share: ember.conv's windows, groups, layouts and
    shape rule, a fused relu and the result type; the subclasses declare the operands."""

    kernel_shape = Attr(A.Ints, default=())
    strides = Attr(A.Ints, default=())
    pads = Attr(A.Ints, default=())
    dilations = Attr(A.Ints, default=())
    groups = Attr(A.Int, default=1, key="group")
    auto_pad = Attr(AUTO_PAD, default="NOTSET")
    layout = Attr(A.Optional(A.Str), default=None)
    weight_layout = Attr(A.Optional(A.Str), default=None)
    relu = Attr(A.Bool, default=False)
    out_dtype = Attr(A.Optional(A.DTypeAttr), default=None, key="dtype")

    _weight_default = "OI"

    def _quantized_operands(self, x: Type, w: Type) -> tuple[TensorType, TensorType, L.Layout, L.WeightLayout]:
        """x and w ranked, x's layout and w's (the element types are the subclass's to check)."""
        x, lay = _spatial(self, x)
        w = rules.ranked(self, w, "w")
        if w.rank != x.rank:
            raise self.error(f"filter w {w} must have rank {x.rank}, as x {x} has")
        wl = L.weight(self, self.weight_layout, lay.spatial, default="OI")
        if self.groups < 1:
            raise self.error(f"group {self.groups} must be positive")
        return x, w, lay, wl


@register_op("ember.int8_conv", traits={Pure, Heavy, LayoutSensitive, Quantization})
class Int8Conv(_QuantizedConv):
    """Convolution of s8 activations and s8 weights, exact in i32, then the int8 epilogue
    (module docstring): dequantized to f32/f16/bf16, or requantized to i8 with y_scale.
    Windows, groups, layouts and the shape rule are ember.conv's; x_scale, x_zero_point,
    y_scale and y_zero_point are scalars, w_scale one value per output channel (or one),
    bias one f32 per output channel.
    %y = ember.int8_conv %x, %w, %sx, %sw, %b, %zx, %sy, %zy {pads = [1, 1, 1, 1], relu = true} : i8[1,16,28,28]"""

    x = Operand(IntTensor)
    w = Operand(IntTensor)
    x_scale = Operand(FloatTensor)
    w_scale = Operand(FloatTensor)
    bias = Operand(FloatTensor, optional=True)
    x_zero_point = Operand(IntTensor, optional=True)
    y_scale = Operand(FloatTensor, optional=True)
    y_zero_point = Operand(IntTensor, optional=True)
    out = Result(NumericTensor)

    def infer(self, x: Type, w: Type, x_scale: Type, w_scale: Type, bias: Type | None, x_zero_point: Type | None,
              y_scale: Type | None, y_zero_point: Type | None) -> TensorType:
        x, w, lay, wl = self._quantized_operands(x, w)
        channels = w.shape[wl.out_axis]
        dt = _common(self, x, w, x_scale, w_scale, bias, x_zero_point, y_scale, y_zero_point, channels)
        return TensorType(dt, self._forward_shape(x, w, lay, wl))

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
                  x_zero_point: np.ndarray | None, y_scale: np.ndarray | None, y_zero_point: np.ndarray | None, *,
                  kernel_shape: tuple[int, ...], strides: tuple[int, ...], pads: tuple[int, ...],
                  dilations: tuple[int, ...], group: int, auto_pad: str, layout: str | None,
                  weight_layout: str | None, relu: bool, dtype: DType | None) -> np.ndarray:
        acc = ConvInteger.reference(x, w, x_zero_point, None, kernel_shape=kernel_shape, strides=strides, pads=pads,
                                    dilations=dilations, group=group, auto_pad=auto_pad, layout=layout,
                                    weight_layout=weight_layout)
        axis = L.resolve(layout, x.ndim).channel_axis
        return int8_epilogue(acc, axis, x_scale, w_scale, bias, y_scale, y_zero_point, relu=relu, dtype=dtype)


# -- int8 matmul ------------------------------------------------------------------------------
def int8_matmul_acc(x: np.ndarray, w: np.ndarray, x_zero_point: np.ndarray | None) -> np.ndarray:
    """sum_k (x[.., m, k] - zx) * w[n, k], exact, as i32 (wrapping)."""
    xs = x.astype(np.int64)
    if x_zero_point is not None:
        xs = xs - np.asarray(x_zero_point).astype(np.int64).reshape(())
    return np.matmul(xs, w.astype(np.int64).T).astype(np.int32)


@register_op("ember.int8_matmul", traits={Pure, Heavy, Quantization})
class Int8MatMul(Op):
    """x [.., M, K] (s8, any batch dims) times the transpose of w [N, K] (s8, one row per
    output channel: a linear layer's weight), exact in i32, then the int8 epilogue (module
    docstring) with the output channels along the last axis. What fold-qdq makes of
    quantized matmul and gemm (trans_b or not: w is stored [N, K]).
    %y = ember.int8_matmul %x, %w, %sx, %sw, %b : f32[N,128,768]"""

    x = Operand(IntTensor)
    w = Operand(IntTensor)
    x_scale = Operand(FloatTensor)
    w_scale = Operand(FloatTensor)
    bias = Operand(FloatTensor, optional=True)
    x_zero_point = Operand(IntTensor, optional=True)
    y_scale = Operand(FloatTensor, optional=True)
    y_zero_point = Operand(IntTensor, optional=True)
    relu = Attr(A.Bool, default=False)
    out_dtype = Attr(A.Optional(A.DTypeAttr), default=None, key="dtype")
    out = Result(NumericTensor)

    def infer(self, x: Type, w: Type, x_scale: Type, w_scale: Type, bias: Type | None, x_zero_point: Type | None,
              y_scale: Type | None, y_zero_point: Type | None) -> TensorType:
        x, w = rules.ranked(self, x, "x"), rules.ranked(self, w, "w")
        if x.rank < 2:
            raise self.error(f"x {x} must have rank >= 2 ([.., M, K])")
        if w.rank != 2:
            raise self.error(f"w {w} must be a matrix [N, K]")
        _same_dim(self, x.shape[-1], w.shape[1], f"contraction dims of x {x} and w {w} (its second dim) differ")
        dt = _common(self, x, w, x_scale, w_scale, bias, x_zero_point, y_scale, y_zero_point, w.shape[0])
        return TensorType(dt, tuple(x.shape[:-1]) + (w.shape[0],))

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
                  x_zero_point: np.ndarray | None, y_scale: np.ndarray | None, y_zero_point: np.ndarray | None, *,
                  relu: bool, dtype: DType | None) -> np.ndarray:
        acc = int8_matmul_acc(x, w, x_zero_point)
        return int8_epilogue(acc, -1, x_scale, w_scale, bias, y_scale, y_zero_point, relu=relu, dtype=dtype)


# -- between the heavy ops: requantize, add, average pools ------------------------------------
def _i8(op: Op, t: Type, what: str) -> TensorType:
    t = rules.ranked(op, t, what)
    if t.dtype != i8:
        raise op.error(f"{what} {t} must be i8 (a u8 tensor is an i8 one shifted by 128)")
    return t


def _quantization(op: Op, scale: Type, zero_point: Type | None, what: str) -> None:
    """A per-tensor pair: an f32 scalar scale and an i8 scalar zero point (or none)."""
    _scalar(op, scale, f"{what}_scale", "f32")
    _scalar(op, zero_point, f"{what}_zero_point", "i8")


@register_op("ember.int8_requantize", traits={Pure, Elementwise, Quantization})
class Int8Requantize(Op):
    """x (i8, scale sx, zero point zx) in another scale: requantize(dequantized(x, sx, zx), sy, zy)
    (module docstring), exactly ember.quantize(ember.dequantize(x, sx, zx), sy, zy) per tensor.
    %y = ember.int8_requantize %x, %sx, %zx, %sy, %zy : i8[1,16,28,28]"""

    x = Operand(IntTensor)
    x_scale = Operand(FloatTensor)
    x_zero_point = Operand(IntTensor, optional=True)
    y_scale = Operand(FloatTensor)
    y_zero_point = Operand(IntTensor, optional=True)
    out = Result(IntTensor)

    def infer(self, x: Type, x_scale: Type, x_zero_point: Type | None, y_scale: Type,
              y_zero_point: Type | None) -> TensorType:
        x = _i8(self, x, "x")
        _quantization(self, x_scale, x_zero_point, "x")
        _quantization(self, y_scale, y_zero_point, "y")
        return x

    @staticmethod
    def reference(x: np.ndarray, x_scale: np.ndarray, x_zero_point: np.ndarray | None, y_scale: np.ndarray,
                  y_zero_point: np.ndarray | None) -> np.ndarray:
        return requantize(dequantized(x, x_scale, x_zero_point), y_scale, y_zero_point)


@register_op("ember.int8_add", traits={Pure, Elementwise, Broadcasting, Quantization})
class Int8Add(Op):
    """a + b of two i8 tensors in their own scales, requantized (onnxruntime's QLinearAdd):
    requantize([relu](dequantized(a, sa, za) + dequantized(b, sb, zb)), sy, zy), broadcasting
    as ember.add; exactly quantize([relu](add(dequantize(a), dequantize(b)))) per tensor.
    %y = ember.int8_add %a, %sa, %za, %b, %sb, %zb, %sy, %zy {relu = true} : i8[1,8,6,6]"""

    a = Operand(IntTensor)
    a_scale = Operand(FloatTensor)
    a_zero_point = Operand(IntTensor, optional=True)
    b = Operand(IntTensor)
    b_scale = Operand(FloatTensor)
    b_zero_point = Operand(IntTensor, optional=True)
    y_scale = Operand(FloatTensor)
    y_zero_point = Operand(IntTensor, optional=True)
    relu = Attr(A.Bool, default=False)
    out = Result(IntTensor)

    def infer(self, a: Type, a_scale: Type, a_zero_point: Type | None, b: Type, b_scale: Type,
              b_zero_point: Type | None, y_scale: Type, y_zero_point: Type | None) -> TensorType:
        a, b = _i8(self, a, "a"), _i8(self, b, "b")
        for what, s, z in (("a", a_scale, a_zero_point), ("b", b_scale, b_zero_point), ("y", y_scale, y_zero_point)):
            _quantization(self, s, z, what)
        return TensorType(i8, rules.broadcast(self, a, b))

    @staticmethod
    def reference(a: np.ndarray, a_scale: np.ndarray, a_zero_point: np.ndarray | None, b: np.ndarray,
                  b_scale: np.ndarray, b_zero_point: np.ndarray | None, y_scale: np.ndarray,
                  y_zero_point: np.ndarray | None, *, relu: bool) -> np.ndarray:
        v = dequantized(a, a_scale, a_zero_point) + dequantized(b, b_scale, b_zero_point)
        if relu:
            v = np.where(v < 0, np.float32(0), v)
        return requantize(v, y_scale, y_zero_point)


def _shifted(x: np.ndarray, zero_point: np.ndarray | None) -> np.ndarray:
    """x - zx, exactly, in i64."""
    d = np.asarray(x).astype(np.int64)
    return d if zero_point is None else d - np.asarray(zero_point).astype(np.int64).reshape(())


@register_op("ember.int8_avg_pool", traits={Pure, LayoutSensitive, Quantization})
class Int8AvgPool(_Pool):
    """Average pooling of an i8 tensor, requantized (onnxruntime's QLinearAveragePool): the exact
    i32 sum of (x - zx) over each window's taps inside x, divided by ember.avg_pool's count
    (count_include_pad counts the padding's taps, which add nothing), as `int8_mean` (module
    docstring). Windows, layouts and the shape rule are ember.avg_pool's.
    %y = ember.int8_avg_pool %x, %sx, %zx, %sy, %zy {kernel_shape = [3, 3], pads = [1, 1, 1, 1]} : i8[1,8,7,7]"""

    x = Operand(IntTensor)
    x_scale = Operand(FloatTensor)
    x_zero_point = Operand(IntTensor, optional=True)
    y_scale = Operand(FloatTensor)
    y_zero_point = Operand(IntTensor, optional=True)
    count_include_pad = Attr(A.Bool, default=False)
    out = Result(IntTensor)

    def infer(self, x: Type, x_scale: Type, x_zero_point: Type | None, y_scale: Type,  # type: ignore[override]
              y_zero_point: Type | None) -> TensorType:
        _i8(self, x, "x")
        _quantization(self, x_scale, x_zero_point, "x")
        _quantization(self, y_scale, y_zero_point, "y")
        return self._pool_type(x)

    @staticmethod
    def reference(x: np.ndarray, x_scale: np.ndarray, x_zero_point: np.ndarray | None, y_scale: np.ndarray,
                  y_zero_point: np.ndarray | None, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                  pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: bool, auto_pad: str,
                  layout: str | None, count_include_pad: bool) -> np.ndarray:
        xc, lay, sizes, outs, end, taps = _pool_windows(_shifted(x, x_zero_point), kernel_shape, strides, pads,
                                                        dilations, ceil_mode, auto_pad, layout)
        xp = _padded_by_one(xc)
        acc = np.zeros(xc.shape[:2] + tuple(outs), np.int64)
        count = np.zeros(tuple(outs), np.int64)
        for _, positions in taps:
            acc += _gather(xp, _clipped(positions, sizes))  # taps outside x read the appended 0
            if count_include_pad:  # as ember.avg_pool: the padding's taps count, not those past the end pad
                count += _outer_and([p < n + e for p, n, e in zip(positions, sizes, end)])
            else:
                count += _outer_and(_inside(positions, sizes))
        y = int8_mean(acc.astype(np.int32), count, x_scale, y_scale, y_zero_point)
        return np.transpose(y, lay.from_channels_first)


@register_op("ember.int8_global_avg_pool", traits={Pure, LayoutSensitive, Quantization})
class Int8GlobalAvgPool(_GlobalPool):
    """The mean over the spatial dims of an i8 tensor, requantized (onnxruntime's
    QLinearGlobalAveragePool): the exact i32 sum of (x - zx) over them and count = their number
    of elements, as `int8_mean` (module docstring). The shape rule is ember.global_avg_pool's.
    %y = ember.int8_global_avg_pool %x, %sx, %zx, %sy, %zy : i8[1,512,1,1]"""

    x = Operand(IntTensor)
    x_scale = Operand(FloatTensor)
    x_zero_point = Operand(IntTensor, optional=True)
    y_scale = Operand(FloatTensor)
    y_zero_point = Operand(IntTensor, optional=True)
    out = Result(IntTensor)

    def infer(self, x: Type, x_scale: Type, x_zero_point: Type | None, y_scale: Type,  # type: ignore[override]
              y_zero_point: Type | None) -> TensorType:
        _i8(self, x, "x")
        _quantization(self, x_scale, x_zero_point, "x")
        _quantization(self, y_scale, y_zero_point, "y")
        return super().infer(x)

    @staticmethod
    def reference(x: np.ndarray, x_scale: np.ndarray, x_zero_point: np.ndarray | None, y_scale: np.ndarray,
                  y_zero_point: np.ndarray | None, *, layout: str | None) -> np.ndarray:
        axes = _spatial_axes(x, layout)
        acc = np.sum(_shifted(x, x_zero_point), axis=axes, keepdims=True)
        count = np.int64(np.prod([x.shape[a] for a in axes]))
        return int8_mean(acc.astype(np.int32), count, x_scale, y_scale, y_zero_point)


INT8_BETWEEN = ("ember.int8_requantize", "ember.int8_add", "ember.int8_avg_pool", "ember.int8_global_avg_pool")


def accumulators(op: Op, arrays: Sequence[np.ndarray | None], env: dict | None = None) -> np.ndarray:
    """The i32 accumulators of an int8 op on given operand arrays (the GPU tests compare
    kernels with these before the epilogue)."""
    g = op.group(list(arrays), like=list(arrays))
    if op.name == "ember.int8_matmul":
        return int8_matmul_acc(g["x"], g["w"], g["x_zero_point"])
    a = op.evaluated_attributes(env or {})
    return ConvInteger.reference(g["x"], g["w"], g["x_zero_point"], None,
                                 **{k: a[k] for k in ("kernel_shape", "strides", "pads", "dilations", "group",
                                                      "auto_pad", "layout", "weight_layout")})


__all__ = ["DEQUANTIZED", "INT8_BETWEEN", "Int8Add", "Int8AvgPool", "Int8Conv", "Int8GlobalAvgPool", "Int8MatMul",
           "Int8Requantize", "accumulators", "dequantized", "int8_epilogue", "int8_matmul_acc", "int8_mean",
           "requantize", "scaled"]
