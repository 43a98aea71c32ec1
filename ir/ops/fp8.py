"""FP8 heavy ops: fp8 convolution and fp8 matmul with a dequantize epilogue.

What fold-qdq-fp8 (passes/fold_qdq_fp8.py) makes of `quantize -> dequantize -> conv/matmul/gemm`
with fp8 (f8e4m3fn or f8e5m2) pairs, what precision="fp8" builds, and what the fp8 kernels
(codegen/ops/fp8.py, include/ember_fp8.cuh) compute. Both ops share one meaning, in two steps.

1. The accumulator: x (f8e4m3fn or f8e5m2) and w (either type, not necessarily x's) are
   decoded exactly, every product x * w is exact, and

       acc[.., c] = f32( sum over the reduction of x * w )

   the exact sum rounded once to f32 (summed in f64 here: exact for e4m3 operands, whose
   products are multiples of 2^-18 below 2^18, up to 2^17 terms; for e5m2 within f64's
   rounding, far inside the tolerance below). For the convolution the sum runs over the
   window, and taps in the padding add nothing (they read +0.0). For the matmul, x is
   [.., M, K] and w is [N, K] (one row per output channel, as a linear layer's weight):
   acc[.., m, n] = sum_k x[.., m, k] * w[n, k]. A NaN or an infinity among the operands
   of an output makes it NaN or infinite as IEEE arithmetic does.

   Kernels add the same exact products in f32 in another order (tensor cores round or
   truncate their partial sums per 32-term step), so a kernel's result is the reference's
   within the fp8 accumulation tolerance of tolerance.py (`FP8_ACCUMULATION`: max |diff| <=
   rtol * max |ref| + atol, per output, by result type).

2. The epilogue (`fp8_epilogue`), per element of output channel c, every step an f32
   operation rounded to nearest even (no fused multiply-add), as the int8 ops' dequantizing
   epilogue (ir/ops/int8.py):

       scale = sx * sw[c]              (sx per tensor; sw per channel, or one scalar)
       v     = acc * scale  [+ bias[c]]
       v     = v < 0 ? 0 : v           (relu = true only)
       result: v converted to `dtype` (f32, f16 or bf16; f32 when not given)

So the result equals conv(dequantize(x), dequantize(w)) + bias of the float graph up to the
f32 rounding of the sums: fp8 quantization with per-tensor activation scales and per-tensor
or per-channel weight scales, and an f16/bf16 (or f32) result. Every scale and the bias are
f32.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ember.ir import attrs as A
from ember.ir import layout as L
from ember.ir.dims import Dim
from ember.ir.opdef import (Attr, FloatTensor, Heavy, LayoutSensitive, Op, Operand, Pure, Quantization, Result,
                            register_op)
from ember.ir.ops import rules
from ember.ir.ops.int8 import _QuantizedConv, _scalar, _vector, scaled
from ember.ir.ops.linalg import _same_dim
from ember.ir.ops.nn import Conv
from ember.ir.types import DType, TensorType, Type, f32

FP8_TYPES = frozenset({"f8e4m3fn", "f8e5m2"})
FP8_OUT_TYPES = frozenset({"f32", "f16", "bf16"})
FP8_MAX = {"f8e4m3fn": 448.0, "f8e5m2": 57344.0}   # the largest finite value: a calibrated scale is amax / this


def fp8_epilogue(acc: np.ndarray, axis: int, x_scale: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
                 *, relu: bool, dtype: DType | None) -> np.ndarray:
    """The f32 accumulators `acc` (output channels along `axis`) as the op's result: the
    epilogue of the module docstring, step by step in f32 (the int8 ops' without requantizing)."""
    return scaled(acc, axis, x_scale, w_scale, bias, relu=relu, dtype=dtype)


def fp8_matmul_acc(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_k x[.., m, k] * w[n, k] of the decoded fp8 values, summed in f64, rounded once to f32."""
    with np.errstate(all="ignore"):
        return np.matmul(x.astype(np.float64), w.astype(np.float64).T).astype(np.float32)


def fp8_conv_acc(x: np.ndarray, w: np.ndarray, **window: object) -> np.ndarray:
    """The convolution's sums of the decoded fp8 values, in f64, rounded once to f32."""
    with np.errstate(all="ignore"):
        acc = Conv.reference(x.astype(np.float64), w.astype(np.float64), None, **window)  # type: ignore[arg-type]
    return acc.astype(np.float32)


def _common(op: Op, x: TensorType, w: TensorType, x_scale: Type, w_scale: Type, bias: Type | None,
            channels: Dim) -> DType:
    for what, t in (("x", x), ("w", w)):
        if t.dtype.name not in FP8_TYPES:
            raise op.error(f"{what} {t} must be f8e4m3fn or f8e5m2")
    _scalar(op, x_scale, "x_scale", "f32")
    _vector(op, w_scale, "w_scale", channels, scalar_ok=True)
    _vector(op, bias, "bias", channels, scalar_ok=False)
    out = op.out_dtype if op.out_dtype is not None else f32
    if out.name not in FP8_OUT_TYPES:
        raise op.error(f"dtype = {out}: an fp8 op's result is f32, f16 or bf16")
    return out


# -- fp8 convolution --------------------------------------------------------------------------
@register_op("ember.fp8_conv", traits={Pure, Heavy, LayoutSensitive, Quantization})
class Fp8Conv(_QuantizedConv):
    """Convolution of fp8 activations and fp8 weights (f8e4m3fn or f8e5m2, each its own),
    summed exactly and rounded to f32, then the fp8 epilogue (module docstring) to f32, f16
    or bf16. Windows, groups, layouts and the shape rule are ember.conv's; x_scale is a
    scalar, w_scale one value per output channel (or one), bias one f32 per output channel.
    %y = ember.fp8_conv %x, %w, %sx, %sw, %b {pads = [1, 1, 1, 1], relu = true, dtype = f16} : f16[1,16,28,28]"""

    x = Operand(FloatTensor)
    w = Operand(FloatTensor)
    x_scale = Operand(FloatTensor)
    w_scale = Operand(FloatTensor)
    bias = Operand(FloatTensor, optional=True)
    out = Result(FloatTensor)

    def infer(self, x: Type, w: Type, x_scale: Type, w_scale: Type, bias: Type | None) -> TensorType:
        x, w, lay, wl = self._quantized_operands(x, w)
        dt = _common(self, x, w, x_scale, w_scale, bias, w.shape[wl.out_axis])
        return TensorType(dt, self._forward_shape(x, w, lay, wl))

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
                  *, kernel_shape: tuple[int, ...], strides: tuple[int, ...], pads: tuple[int, ...],
                  dilations: tuple[int, ...], group: int, auto_pad: str, layout: str | None,
                  weight_layout: str | None, relu: bool, dtype: DType | None) -> np.ndarray:
        acc = fp8_conv_acc(x, w, kernel_shape=kernel_shape, strides=strides, pads=pads, dilations=dilations,
                           group=group, auto_pad=auto_pad, layout=layout, weight_layout=weight_layout)
        axis = L.resolve(layout, x.ndim).channel_axis
        return fp8_epilogue(acc, axis, x_scale, w_scale, bias, relu=relu, dtype=dtype)


# -- fp8 matmul -------------------------------------------------------------------------------
@register_op("ember.fp8_matmul", traits={Pure, Heavy, Quantization})
class Fp8MatMul(Op):
    """x [.., M, K] (fp8, any batch dims) times the transpose of w [N, K] (fp8, one row per
    output channel: a linear layer's weight), summed exactly and rounded to f32, then the fp8
    epilogue (module docstring) with the output channels along the last axis. What
    fold-qdq-fp8 makes of fp8-quantized matmul and gemm (w is stored [N, K]).
    %y = ember.fp8_matmul %x, %w, %sx, %sw, %b {dtype = f16} : f16[N,128,768]"""

    x = Operand(FloatTensor)
    w = Operand(FloatTensor)
    x_scale = Operand(FloatTensor)
    w_scale = Operand(FloatTensor)
    bias = Operand(FloatTensor, optional=True)
    relu = Attr(A.Bool, default=False)
    out_dtype = Attr(A.Optional(A.DTypeAttr), default=None, key="dtype")
    out = Result(FloatTensor)

    def infer(self, x: Type, w: Type, x_scale: Type, w_scale: Type, bias: Type | None) -> TensorType:
        x, w = rules.ranked(self, x, "x"), rules.ranked(self, w, "w")
        if x.rank < 2:
            raise self.error(f"x {x} must have rank >= 2 ([.., M, K])")
        if w.rank != 2:
            raise self.error(f"w {w} must be a matrix [N, K]")
        _same_dim(self, x.shape[-1], w.shape[1], f"contraction dims of x {x} and w {w} (its second dim) differ")
        dt = _common(self, x, w, x_scale, w_scale, bias, w.shape[0])
        return TensorType(dt, tuple(x.shape[:-1]) + (w.shape[0],))

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
                  *, relu: bool, dtype: DType | None) -> np.ndarray:
        return fp8_epilogue(fp8_matmul_acc(x, w), -1, x_scale, w_scale, bias, relu=relu, dtype=dtype)


def accumulators(op: Op, arrays: Sequence[np.ndarray | None], env: dict | None = None) -> np.ndarray:
    """The f32 accumulators of an fp8 op on given operand arrays (the GPU tests compare kernels
    with these before the epilogue)."""
    g = op.group(list(arrays), like=list(arrays))
    if op.name == "ember.fp8_matmul":
        return fp8_matmul_acc(g["x"], g["w"])
    a = op.evaluated_attributes(env or {})
    return fp8_conv_acc(g["x"], g["w"], **{k: a[k] for k in ("kernel_shape", "strides", "pads", "dilations", "group",
                                                              "auto_pad", "layout", "weight_layout")})


__all__ = ["FP8_MAX", "FP8_OUT_TYPES", "FP8_TYPES", "Fp8Conv", "Fp8MatMul", "accumulators", "fp8_conv_acc",
           "fp8_epilogue", "fp8_matmul_acc"]
