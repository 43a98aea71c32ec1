"""Linear quantization: quantize, dequantize, dynamic_quantize (ONNX's
QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear).

The scale and the optional zero point share one shape, which picks the
granularity (ONNX opset 23+):
- per tensor: the scale is a scalar (or has one element); so is the zero
  point (a scalar with a [1] partner is accepted, as ONNX's test data has it);
- per axis: the scale is 1-d with x.shape[axis] elements (block_size 0);
- blocked: block_size > 0, the scale has x's rank and x's shape except along
  `axis`, where it has ceil(x.shape[axis] / block_size) entries; each scale
  covers block_size consecutive elements (the last block may be shorter).
`axis` is only read for per-axis and blocked scales.

Rounding is to nearest, ties to even; integer results saturate to the
type's range. The quantization ops are written so that
dequantize(quantize(x)) is the fake-quant pair the int8/fp8 passes match.
"""

from __future__ import annotations

import numpy as np

from ember.ir import attrs as A
from ember.ir.dims import Dim, ceildiv
from ember.ir.opdef import (AnyTensor, Attr, FloatTensor, NumericTensor, Op, Operand, Pure, Quantization,
                            Result, register_op)
from ember.ir.ops import rules
from ember.ir.ops.core import cast_array
from ember.ir.types import DType, TensorType, Type, dtype, dtype_of, f32, u8

QUANT_INT_RANGES: dict[str, tuple[int, int]] = {
    "u8": (0, 255), "i8": (-128, 127), "u16": (0, 65535), "i16": (-32768, 32767),
    "u4": (0, 15), "i4": (-8, 7), "u2": (0, 3), "i2": (-2, 1),
}
QUANT_FLOATS = frozenset({"f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz", "f4e2m1", "f6e2m3", "f6e3m2"})
QUANT_TYPES = frozenset(QUANT_INT_RANGES) | QUANT_FLOATS
SCALE_TYPES = frozenset({"f32", "f16", "bf16", "f8e8m0", "f64"})
DEQUANT_OUT_TYPES = frozenset({"f32", "f16", "bf16", "f64"})


def _check_scale(op: Op, x: TensorType, scale: TensorType, zero_point: TensorType | None,
                 axis: int, block_size: int) -> None:
    """Validate the scale's (and zero point's) shape against x's, per the granularity rules."""
    if scale.shape is None:
        raise op.error(f"scale needs a known rank, got {scale}")
    if zero_point is not None:
        zero_point = rules.ranked(op, zero_point, "zero_point")
        if zero_point.shape != scale.shape and not (block_size == 0 and _one(scale) and _one(zero_point)):
            raise op.error(f"zero_point {zero_point} must have the scale's shape, got scale {scale}")
    if block_size < 0:
        raise op.error(f"block_size must be >= 0, got {block_size}")
    if block_size == 0:
        if scale.rank == 0 or scale.shape == (1,):
            return
        if scale.rank != 1:
            raise op.error(f"scale {scale} must be a scalar (per tensor) or 1-d (per axis) when "
                           "block_size is 0")
        ax = rules.axis(op, axis, x.rank)
        if not _may_equal(scale.shape[0], x.shape[ax]):
            raise op.error(f"per-axis scale {scale} needs {x.shape[ax]} entries (x {x} along axis {axis})")
        return
    if scale.rank != x.rank:
        raise op.error(f"blocked scale {scale} must have x's rank {x.rank} (x {x})")
    ax = rules.axis(op, axis, x.rank)
    for i, (s, d) in enumerate(zip(scale.shape, x.shape)):
        want = ceildiv(d, block_size) if i == ax else d
        if not _may_equal(s, want):
            raise op.error(f"blocked scale {scale} does not fit x {x} with block_size {block_size} "
                           f"along axis {axis}: axis {i} should have {want} entries")


def _one(t: TensorType) -> bool:
    """A per-tensor parameter: a scalar or a one-element vector."""
    return t.rank == 0 or t.shape == (1,)


def _may_equal(a: Dim, b: Dim) -> bool:
    """False only when two dims are provably different (two different integers)."""
    return a == b or not (isinstance(a, int) and isinstance(b, int))


def _expand(param: np.ndarray, shape: tuple[int, ...], axis: int, block_size: int) -> np.ndarray:
    """Scale or zero point, broadcastable against x of `shape`."""
    if param.ndim == 0 or (block_size == 0 and param.size == 1):
        return param.reshape(())
    axis = axis % len(shape)
    if block_size == 0:
        dims = [1] * len(shape)
        dims[axis] = param.size
        return param.reshape(dims)
    return np.repeat(param, block_size, axis=axis).take(np.arange(shape[axis]), axis=axis)


def division_type(x: np.dtype, scale: np.dtype, precision: DType | None) -> np.dtype:
    """The type x / scale is rounded to: `precision` when given, else the wider of
    x's and the scale's float types (f32 for i32 x, and where f16 meets bf16;
    an f8e8m0 scale, a power of two, never narrows it)."""
    if precision is not None:
        return precision.np_dtype
    kinds = [np.dtype(np.float32) if x.kind in "iu" else np.dtype(x)]
    if np.dtype(scale) != _E8M0:
        kinds.append(np.dtype(scale))
    widest = max(kinds, key=lambda d: d.itemsize)
    if any(d.itemsize == widest.itemsize and d != widest for d in kinds):
        return np.dtype(np.float32)
    return widest


_E8M0 = dtype("f8e8m0").np_dtype


# -- quantize ---------------------------------------------------------------------------------
@register_op("ember.quantize", traits={Pure, Quantization})
class Quantize(Op):
    """y = saturate(round(x / scale) + zero_point) (ONNX QuantizeLinear, opset 23+).

    x is a float (or i32) tensor; scale a float tensor (f32, f16, bf16, f8e8m0).
    x / scale is an IEEE division in the `precision` type when given (both
    operands are converted to it first), else in the wider of x's and the
    scale's types (numpy's promotion, as ONNX's reference; the spec words it as
    "the scale's type"); low-precision types divide in f32 and round once.
    The quotient is then rounded to an integer, half to even. The result type
    is `dtype` when given, else the zero point's type, else u8 (ONNX's
    output_dtype rule, so infer knows it); when both are given they must agree.
    Integer results (i8, u8, i16, u16, i4, u4, i2, u2) saturate to the type's
    range; a NaN quotient quantizes to the zero point. Float results (fp8, fp6,
    f4e2m1) add the zero point and convert as ember.cast does, with `saturate`
    (fp8 only: fp6/fp4 have no infinity and always saturate).
    %q = ember.quantize %x, %s, %zp {axis = 0} : i8[64,256]"""

    x = Operand(NumericTensor)
    scale = Operand(FloatTensor)
    zero_point = Operand(AnyTensor, optional=True)
    axis = Attr(A.Int, default=1)
    block_size = Attr(A.Int, default=0)
    out_dtype = Attr(A.Optional(A.DTypeAttr), default=None, key="dtype")
    saturate = Attr(A.Bool, default=True)
    precision = Attr(A.Optional(A.DTypeAttr), default=None)
    out = Result(AnyTensor)

    def result_dtype(self, zero_point: TensorType | None) -> DType:
        given = self.out_dtype
        if zero_point is not None and given is not None and zero_point.dtype != given:
            raise self.error(f"dtype = {given} does not match the zero point's type {zero_point.dtype}")
        dt = zero_point.dtype if zero_point is not None else given if given is not None else u8
        if dt.name not in QUANT_TYPES:
            raise self.error(f"cannot quantize to {dt}; expected one of {', '.join(sorted(QUANT_TYPES))}")
        return dt

    def infer(self, x: Type, scale: Type, zero_point: Type | None) -> TensorType:
        x = rules.ranked(self, x, "x")
        scale = rules.tensor(self, scale, "scale")
        zp = rules.tensor(self, zero_point, "zero_point") if zero_point is not None else None
        if not (x.dtype.is_float or x.dtype.name == "i32"):
            raise self.error(f"x must be a float or i32 tensor, got {x}")
        if scale.dtype.name not in SCALE_TYPES:
            raise self.error(f"scale must be f32, f16, bf16, f8e8m0 or f64, got {scale}")
        if self.precision is not None and self.precision.name not in SCALE_TYPES - {"f8e8m0"}:
            raise self.error(f"precision must be f32, f16, bf16 or f64, got {self.precision}")
        dt = self.result_dtype(zp)
        _check_scale(self, x, scale, zp, self.axis, self.block_size)
        return x.with_dtype(dt)

    @staticmethod
    def reference(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, *, axis: int,
                  block_size: int, dtype: DType | None, saturate: bool,
                  precision: DType | None) -> np.ndarray:
        to = dtype_of(zero_point) if zero_point is not None else dtype or u8
        rounded = division_type(x.dtype, scale.dtype, precision)
        acc = rules.compute_dtype(rounded)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            s = _expand(scale, x.shape, axis, block_size)
            v = x.astype(rounded).astype(acc) / s.astype(rounded).astype(acc)
            v = v.astype(rounded).astype(acc)
        zp = None if zero_point is None else _expand(zero_point, x.shape, axis, block_size)
        if to.name in QUANT_INT_RANGES:
            lo, hi = QUANT_INT_RANGES[to.name]
            q = np.rint(v.astype(np.float64))
            if zp is not None:
                q = q + zp.astype(np.float64)
            q = np.where(np.isnan(q), 0.0 if zp is None else zp.astype(np.float64), q)
            return np.clip(q, lo, hi).astype(np.int64).astype(to.np_dtype)
        wide = v.astype(np.float32)
        if zp is not None:
            wide = wide + zp.astype(np.float32)
        return cast_array(wide, to, saturate or to.bits < 8)


# -- dequantize -------------------------------------------------------------------------------
@register_op("ember.dequantize", traits={Pure, Quantization})
class Dequantize(Op):
    """y = (x - zero_point) * scale (ONNX DequantizeLinear, opset 23+).

    x is a quantized tensor (i8, u8, i16, u16, i32, i4, u4, i2, u2, fp8, fp6,
    f4e2m1); the zero point, when given, has x's type and the scale's shape.
    The result type is `dtype` when given (f32, f16, bf16, f64), else the
    scale's type (an f8e8m0 scale needs `dtype`). Computed in f32 (f64 for an
    f64 result) and rounded once; i32 values past 2^24 lose precision there,
    as in ONNX's reference.
    %y = ember.dequantize %q, %s, %zp {axis = 0} : f32[64,256]"""

    x = Operand(AnyTensor)
    scale = Operand(FloatTensor)
    zero_point = Operand(AnyTensor, optional=True)
    axis = Attr(A.Int, default=1)
    block_size = Attr(A.Int, default=0)
    out_dtype = Attr(A.Optional(A.DTypeAttr), default=None, key="dtype")
    out = Result(FloatTensor)

    def infer(self, x: Type, scale: Type, zero_point: Type | None) -> TensorType:
        x = rules.ranked(self, x, "x")
        scale = rules.tensor(self, scale, "scale")
        zp = rules.tensor(self, zero_point, "zero_point") if zero_point is not None else None
        if x.dtype.name not in QUANT_TYPES | {"i32"}:
            raise self.error(f"x must be a quantized type ({', '.join(sorted(QUANT_TYPES | {'i32'}))}), got {x}")
        if zp is not None and zp.dtype != x.dtype:
            raise self.error(f"zero_point {zp} must have x's element type {x.dtype}")
        if scale.dtype.name not in SCALE_TYPES:
            raise self.error(f"scale must be f32, f16, bf16, f8e8m0 or f64, got {scale}")
        given = self.out_dtype
        out = given if given is not None else scale.dtype
        if out.name not in DEQUANT_OUT_TYPES:
            hint = " (give dtype for an f8e8m0 scale)" if given is None else ""
            raise self.error(f"result type must be f32, f16, bf16 or f64, got {out}{hint}")
        _check_scale(self, x, scale, zp, self.axis, self.block_size)
        return x.with_dtype(out)

    @staticmethod
    def reference(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, *, axis: int,
                  block_size: int, dtype: DType | None) -> np.ndarray:
        out = dtype.np_dtype if dtype is not None else scale.dtype
        acc = np.float64 if out == np.float64 else np.float32
        v = x.astype(acc)
        if zero_point is not None:
            v = v - _expand(zero_point, x.shape, axis, block_size).astype(acc)
        return (v * _expand(scale, x.shape, axis, block_size).astype(acc)).astype(out)


# -- dynamic quantize -------------------------------------------------------------------------
@register_op("ember.dynamic_quantize", traits={Pure, Quantization})
class DynamicQuantize(Op):
    """u8 quantization with a scale and zero point computed from x's range
    (ONNX DynamicQuantizeLinear). The range is widened to include 0:
    scale = (max(0, max x) - min(0, min x)) / 255 (1 when that range is empty,
    as for an all-zero or empty x), zero_point = round(clip(-min(0, min x) / scale,
    0, 255)), y = clip(round(x / scale) + zero_point, 0, 255); rounding half to even,
    all in f32. Results: y (u8, x's shape), scale (f32 scalar), zero point (u8 scalar).
    %y, %s, %zp = ember.dynamic_quantize %x : u8[N,512], f32[], u8[]"""

    x = Operand(FloatTensor)
    y = Result(AnyTensor)
    y_scale = Result(FloatTensor)
    y_zero_point = Result(AnyTensor)

    def infer(self, x: Type) -> tuple[TensorType, TensorType, TensorType]:
        x = rules.tensor(self, x, "x")
        return x.with_dtype(u8), TensorType(f32, ()), TensorType(u8, ())

    @staticmethod
    def reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = x.astype(np.float32)
        hi = np.float32(max(0.0, float(v.max()))) if v.size else np.float32(0)
        lo = np.float32(min(0.0, float(v.min()))) if v.size else np.float32(0)
        scale = np.float32(1.0) if hi == lo else np.float32(hi - lo) / np.float32(255)
        zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
        y = np.clip(np.rint(v / scale) + zp, 0, 255)
        return y.astype(np.uint8), np.array(scale, np.float32), np.array(zp, np.uint8)


__all__ = ["Quantize", "Dequantize", "DynamicQuantize", "QUANT_TYPES", "QUANT_INT_RANGES"]
