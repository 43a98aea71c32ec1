"""fold-qdq-fp8: fp8 quantize/dequantize pairs around conv, matmul and gemm as fp8 ops.

NVIDIA's ModelOpt writes an fp8 model as QuantizeLinear to FLOAT8E4M3FN (zero point +0.0) and
DequantizeLinear around each quantized heavy op's inputs, the weights as fp8 initializers with
a DequantizeLinear or as float weights with their own pair; quantize-fp8 writes the same from
a calibration. Where such pairs feed a heavy op whose weight is constant fp8, the op is fp8
arithmetic with float scales: ember.fp8_conv / ember.fp8_matmul (ir/ops/fp8.py defines what
they compute). The rules, each rooted at the op it replaces:

- fp8-conv:   conv(dq(xq, sx), dq(wq, sw), b) -> fp8_conv(xq, wq, sx, sw, b)
- fp8-matmul: matmul(dq(xq, sx), dq(wq [K, N], sw)) -> fp8_matmul(xq, wq^T, sx, sw)
- fp8-gemm:   gemm(dq(xq, sx), dq(wq, sw), c) -> fp8_matmul(xq, wq as [N, K], sx, sw, c)
- fp8-bias:   fp8 op + c, c one f32 per output channel (and no bias, no relu yet) -> the op's bias
- fp8-relu:   relu(fp8 op) -> the op with relu = true
- fp8-cast:   cast(fp8 op: f32, to f16 or bf16) -> the op with that result type

What each rule needs, or it leaves the graph as it is (near misses stay float): xq and wq
f8e4m3fn or f8e5m2 (each its own); activations per tensor (a scalar f32 scale, the zero point
absent or known +0.0); weights known at build time (an fp8 weight or constant, or the quantize
of a float weight, evaluated here), zero points absent or all +0.0, scales f32 per tensor or per
output channel (the conv's O axis, matmul's N); dequantize results f32; gemm without trans_a,
alpha = beta = 1 and c per column; an fp8 op's result folds into a relu, an add or a cast only
when that op is its one use. Matmul weights are stored transposed, [N, K] (a new weight
`<name>/nk`, or `<name>/fp8` for a quantized float weight).

The pass runs after fold-qdq in `default` (which takes the int8 pairs; the fp8 ones it leaves)
and before fold-constants (which would fold a weight's dequantize into a float weight), so
layout-nhwc later puts fp8 convolutions channels-last with OHWI filters, and
lower-quantization writes each activation's quantize (a division and a saturating cast to
fp8) as an elementwise kernel. Every rewrite keeps the interpreter's result up to the f32
rounding of the float graph's sums (tests/passes/test_fold_qdq_fp8.py). The conv, matmul, gemm,
bias and relu rules are fold-qdq's (passes/fold_qdq.py `QuantizedOps`), for the fp8 ops and
this module's `activation` and `weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.ir.builder import Builder
from ember.ir.core import Module, Value
from ember.ir.ops.fp8 import FP8_TYPES
from ember.passes.dce import dead_code
from ember.passes.fold_qdq import (QuantizedOps, Weights, _evaluated, _is, _operand, _per_tensor, _plain, _producer,
                                   _ranked)
from ember.passes.manager import Pass, PassContext, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_counted, known_value


def _zero(z: Value | None) -> bool:
    """No zero point, or one known to be all +0.0 (an fp8 zero point shifts the values: not folded)."""
    if z is None:
        return True
    data = known_value(z)
    return data is not None and not np.asarray(data, np.float32).any() and not np.signbit(
        np.asarray(data, np.float32)).any()


@dataclass(frozen=True)
class Activation:
    q: Value
    scale: Value


def activation(v: Value | None) -> Activation | None:
    """v = dequantize(q: fp8, s: f32 scalar, zero point absent or +0.0) to f32."""
    dq = _producer(v, "ember.dequantize")
    if dq is None or not _plain(dq) or not _is(v, "f32"):
        return None
    q, s, z = dq.operands[0], dq.operands[1], _operand(dq, 2)
    if not _is(q, *FP8_TYPES) or not _is(s, "f32") or not _per_tensor(s) or not _zero(z):
        return None
    return Activation(q, s)


def weights(b: Builder, v: Value | None, out_axis: int) -> Weights | None:
    """v = dequantize(wq, sw) to f32 with wq fp8 known at build time (a weight, a constant, or
    the quantize of a float weight), sw f32 per tensor or per output channel (`out_axis`)."""
    dq = _producer(v, "ember.dequantize")
    if dq is None or not _plain(dq) or not _is(v, "f32"):
        return None
    wq, s, z = dq.operands[0], dq.operands[1], _operand(dq, 2)
    t, ts = _ranked(wq), _ranked(s)
    if t is None or ts is None or t.dtype.name not in FP8_TYPES or ts.dtype.name != "f32" or not _zero(z):
        return None
    if not _per_tensor(s) and (ts.rank != 1 or dq.attributes.get("axis", 1) % t.rank != out_axis % t.rank):
        return None
    data = known_value(wq)
    if data is not None:
        return Weights(np.asarray(data), wq, False, s)
    q = _producer(wq, "ember.quantize")
    src = q.operands[0] if q is not None else None
    if q is None or not _plain(q) or src is None or src.defining_op is None \
            or src.defining_op.name not in ("ember.weight", "ember.constant") or b.module is None:
        return None
    data = _evaluated(b.module, q)
    return None if data is None else Weights(data, src, True, s)


FP8 = QuantizedOps("fp8", activation, weights, width=5, zero_point=False)


def fold_cast(m: Match, b: Builder) -> Value | None:
    """cast(fp8 op: f32, to f16 or bf16) = the op with that result type (the epilogue's f32 value
    rounded once to it, as the cast rounds it)."""
    cast = m.cast
    op = FP8.heavy_of(cast.operands[0])
    to = cast.attributes.get("to")
    if op is None or to is None or to.name not in ("f16", "bf16"):
        return None
    return FP8.with_(b, op, {}, dtype=to)


RULES = RuleSet("fold-qdq-fp8", [
    Rule("fp8-conv", P.op("ember.conv", name="conv", any_operands=True), FP8.fold_conv,
         doc="conv(dq(xq), dq(wq), b) = fp8_conv(xq, wq, sx, sw, b)"),
    Rule("fp8-matmul", P.op("ember.matmul", name="matmul", any_operands=True), FP8.fold_matmul,
         doc="matmul(dq(xq), dq(wq)) = fp8_matmul(xq, wq^T, sx, sw)"),
    Rule("fp8-gemm", P.op("ember.gemm", name="gemm", any_operands=True), FP8.fold_gemm,
         doc="gemm(dq(xq), dq(wq), c) = fp8_matmul(xq, wq as [N, K], sx, sw, c)"),
    Rule("fp8-relu", P.op("ember.relu", name="relu", any_operands=True), FP8.fold_relu,
         doc="relu(fp8 op) = fp8 op with relu"),
    Rule("fp8-bias", P.op("ember.add", name="add", any_operands=True), FP8.fold_bias,
         doc="fp8 op + c[channel] = fp8 op with bias c"),
    Rule("fp8-cast", P.op("ember.cast", name="cast", any_operands=True), fold_cast,
         doc="cast(fp8 op, f16|bf16) = fp8 op with that result type"),
])


@register_pass("fold-qdq-fp8")
@dataclass(frozen=True)
class FoldQdqFp8(Pass):
    """fp8 quantize/dequantize pairs around conv, matmul and gemm with constant fp8 weights as
    fp8 ops (see the module docstring)."""

    def run(self, module: Module, ctx: PassContext) -> bool:
        fired = apply_counted(module, RULES, ctx, self.name)
        if fired:
            dead_code(module)
        return bool(fired)


__all__ = ["FP8", "FoldQdqFp8", "RULES", "activation", "weights"]
