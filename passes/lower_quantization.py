"""lower-quantization: quantize and dequantize written as the elementwise ops they are.

ember.quantize and ember.dequantize have no kernel of their own; as ops they would run on the
host (a Q/DQ model's every pair a host fallback). Their common forms are elementwise maps,
so they are rewritten into ops that have kernels and that fuse with their neighbours:

    quantize(x, s, zp) -> cast<q>(clip(where(isnan(r), zp, r), lo, hi)), r = round(x / s) + zp
    dequantize(q, s, zp) -> cast<out>((cast<acc>(q) - zp) * s)

with s and zp reshaped to broadcast along `axis` (per-axis) or as scalars (per tensor),
division in the quantize's division type, round half to even, and the integer type's range
[lo, hi] (see ir/ops/quant.py: these are the reference semantics, step by step). fp8 (f8e4m3fn,
f8e5m2) results and inputs, per tensor or per axis, the zero point absent or known +0.0:

    quantize(x, s) to fp8 -> cast<fp8, saturate>(x / s)      (the division in f32)
    dequantize(q: fp8, s) -> cast<out>(cast<f32>(q) * s)

(an fp8 activation's quantize, what fold-qdq-fp8 leaves before each fp8 op). Left as they are:
fp6/fp4 types, fp8 zero points that are not +0.0, blocked scales, an explicit `precision`, and
integer inputs to quantize. The pass runs late in `default`, after anything that matches
quantize/dequantize pairs as such (fold-qdq, which makes the pairs around conv, matmul and gemm int8 ops).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.ir.builder import Builder
from ember.ir.core import Module, Value
from ember.ir.ops.quant import QUANT_INT_RANGES, division_type
from ember.ir.types import TensorType, dtype_of
from ember.passes.dce import dead_code
from ember.passes.manager import Pass, PassContext, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_counted, known_value

FP8 = frozenset({"f8e4m3fn", "f8e5m2"})


def _ranked(v: Value | None) -> TensorType | None:
    t = v.type if v is not None else None
    return t if isinstance(t, TensorType) and t.shape is not None else None


def _broadcast(b: Builder, param: Value, x: TensorType, axis: int) -> Value | None:
    """A scale or zero point shaped to broadcast against x: a scalar, or [.., C, ..] along axis."""
    t = _ranked(param)
    if t is None:
        return None
    if t.rank == 0:
        return param
    if t.shape == (1,):
        return b.op("ember.reshape", param, shape=())
    if t.rank != 1 or x.rank == 0:
        return None
    axis = axis % x.rank
    shape = [1] * x.rank
    shape[axis] = -1
    return b.op("ember.reshape", param, shape=tuple(shape))


def _scalar(b: Builder, value: float, dt) -> Value:
    return b.constant(np.array(value, dtype=dt.np_dtype), dt)


def lower_quantize(m: Match, b: Builder) -> Value | None:
    op = m.q
    x, scale = op.operands[0], op.operands[1]
    zp = op.operands[2] if len(op.operands) > 2 else None
    tx, ts, out = _ranked(x), _ranked(scale), _ranked(op.results[0])
    if tx is None or ts is None or out is None or not tx.dtype.is_float:
        return None
    if out.dtype.name not in QUANT_INT_RANGES or op.attributes.get("block_size", 0) != 0:
        return None
    if op.attributes.get("precision") is not None:
        return None
    axis = int(op.attributes.get("axis", 1))
    rounded = dtype_of(division_type(tx.dtype.np_dtype, ts.dtype.np_dtype, None))
    if rounded.np_dtype != np.float32 and rounded.np_dtype != np.float64:
        return None  # f16/bf16 divisions round through f32 first: not one elementwise division
    s = _broadcast(b, scale, tx, axis)
    if s is None:
        return None
    xs = x if tx.dtype == rounded else b.op("ember.cast", x, to=rounded)
    ss = s if ts.dtype == rounded else b.op("ember.cast", s, to=rounded)
    r = b.op("ember.round", b.op("ember.div", xs, ss))
    lo, hi = QUANT_INT_RANGES[out.dtype.name]
    if zp is not None:
        z = _broadcast(b, zp, tx, axis)
        if z is None:
            return None
        zf = b.op("ember.cast", z, to=rounded)
        r = b.op("ember.add", r, zf)
        r = b.op("ember.where", b.op("ember.isnan", r), zf, r)
    else:
        r = b.op("ember.where", b.op("ember.isnan", r), _scalar(b, 0.0, rounded), r)
    r = b.op("ember.clip", r, _scalar(b, lo, rounded), _scalar(b, hi, rounded))
    return b.op("ember.cast", r, to=out.dtype)


def _zero(z: Value | None) -> bool:
    """An fp8 zero point that shifts nothing: absent, or known all +0.0."""
    if z is None:
        return True
    data = known_value(z)
    return data is not None and not np.asarray(data, np.float32).any() and \
        not np.signbit(np.asarray(data, np.float32)).any()


def lower_quantize_fp8(m: Match, b: Builder) -> Value | None:
    """quantize(x, s) to fp8 = cast(x / s, fp8, saturate) with the division in f32."""
    op = m.q
    x, scale = op.operands[0], op.operands[1]
    zp = op.operands[2] if len(op.operands) > 2 else None
    tx, ts, out = _ranked(x), _ranked(scale), _ranked(op.results[0])
    if tx is None or ts is None or out is None or not tx.dtype.is_float or out.dtype.name not in FP8:
        return None
    if op.attributes.get("block_size", 0) != 0 or op.attributes.get("precision") is not None or not _zero(zp):
        return None
    rounded = dtype_of(division_type(tx.dtype.np_dtype, ts.dtype.np_dtype, None))
    if rounded.np_dtype != np.float32:
        return None  # f64 divisions round twice; f16/bf16 ones through f32 first
    s = _broadcast(b, scale, tx, int(op.attributes.get("axis", 1)))
    if s is None:
        return None
    xs = x if tx.dtype == rounded else b.op("ember.cast", x, to=rounded)
    ss = s if ts.dtype == rounded else b.op("ember.cast", s, to=rounded)
    r = b.op("ember.div", xs, ss)
    if zp is not None:  # +0.0, added as the reference adds it (-0.0 + 0.0 is +0.0)
        z = _broadcast(b, zp, tx, int(op.attributes.get("axis", 1)))
        if z is None:
            return None
        r = b.op("ember.add", r, b.op("ember.cast", z, to=rounded))
    return b.op("ember.cast", r, to=out.dtype, saturate=bool(op.attributes.get("saturate", True)))


def lower_dequantize(m: Match, b: Builder) -> Value | None:
    op = m.dq
    x, scale = op.operands[0], op.operands[1]
    zp = op.operands[2] if len(op.operands) > 2 else None
    tx, ts, out = _ranked(x), _ranked(scale), _ranked(op.results[0])
    if tx is None or ts is None or out is None or tx.dtype.name not in QUANT_INT_RANGES.keys() | FP8:
        return None
    if tx.dtype.name in FP8 and not _zero(zp):
        return None
    if op.attributes.get("block_size", 0) != 0 or out.dtype.name not in ("f32", "f64", "f16", "bf16"):
        return None
    axis = int(op.attributes.get("axis", 1))
    acc = dtype_of(np.float64 if out.dtype.np_dtype == np.float64 else np.float32)
    s = _broadcast(b, scale, tx, axis)
    if s is None:
        return None
    v = b.op("ember.cast", x, to=acc)
    if zp is not None and tx.dtype.name not in FP8:
        z = _broadcast(b, zp, tx, axis)
        if z is None:
            return None
        v = b.op("ember.sub", v, b.op("ember.cast", z, to=acc))
    y = b.op("ember.mul", v, s if ts.dtype == acc else b.op("ember.cast", s, to=acc))
    return y if out.dtype == acc else b.op("ember.cast", y, to=out.dtype)


RULES = RuleSet("lower-quantization", [
    Rule("quantize-to-elementwise", P.op("ember.quantize", name="q", any_operands=True), lower_quantize,
         doc="quantize(x, s, zp) = cast(clip(round(x / s) + zp)), NaN to zp"),
    Rule("quantize-fp8-to-elementwise", P.op("ember.quantize", name="q", any_operands=True), lower_quantize_fp8,
         doc="quantize(x, s) to fp8 = cast(x / s, fp8, saturate)"),
    Rule("dequantize-to-elementwise", P.op("ember.dequantize", name="dq", any_operands=True), lower_dequantize,
         doc="dequantize(q, s, zp) = (q - zp) * s"),
])


@register_pass("lower-quantization")
@dataclass(frozen=True)
class LowerQuantization(Pass):
    """Rewrite integer and fp8 quantize and dequantize ops (per tensor or per axis) as elementwise ops."""

    def run(self, module: Module, ctx: PassContext) -> bool:
        fired = apply_counted(module, RULES, ctx, self.name)
        if fired:
            dead_code(module)
        return bool(fired)
