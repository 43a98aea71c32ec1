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
rounding of the float graph's sums (tests/passes/test_fold_qdq_fp8.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.ir import layout as L
from ember.ir.builder import Builder
from ember.ir.core import Module, Operation, Value
from ember.ir.opdef import EvalContext
from ember.ir.ops.fp8 import FP8_TYPES
from ember.ir.types import TensorType
from ember.passes.dce import dead_code
from ember.passes.layout_nhwc import materialize
from ember.passes.manager import Pass, PassContext, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_counted, known_value

FP8_OPS = ("ember.fp8_conv", "ember.fp8_matmul")


def _ranked(v: Value | None) -> TensorType | None:
    t = v.type if v is not None else None
    return t if isinstance(t, TensorType) and t.shape is not None else None


def _is(v: Value | None, *names: str) -> bool:
    t = _ranked(v)
    return t is not None and t.dtype.name in names


def _per_tensor(v: Value | None) -> bool:
    t = _ranked(v)
    return t is not None and (t.rank == 0 or t.shape == (1,))


def _producer(v: Value | None, name: str) -> Operation | None:
    op = v.defining_op if v is not None else None
    return op if op is not None and op.name == name else None


def _operand(op: Operation, i: int) -> Value | None:
    return op.operands[i] if i < len(op.operands) else None


def _plain(op: Operation) -> bool:
    """A quantize/dequantize of the form the fp8 ops take: unblocked, no explicit precision."""
    return op.attributes.get("block_size", 0) == 0 and op.attributes.get("precision") is None


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


@dataclass(frozen=True)
class Weights:
    """dq(wq, sw) with wq fp8 known at build time: its data, where it comes from, and the scales."""

    data: np.ndarray
    source: Value          # the fp8 value itself (reused as it is), or the float weight quantized
    quantized: bool        # source is a float weight that a quantize op quantizes
    scale: Value


def _no_regions(*_: object) -> tuple:
    raise AssertionError("a quantize has no regions")


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
    inputs = [known_value(x) if x is not None else None for x in q.operands]
    if any(a is None and x is not None for a, x in zip(inputs, q.operands)):
        return None
    with np.errstate(all="ignore"):
        data = np.asarray(q.evaluate(inputs, EvalContext(env={}, module=b.module, run_block=_no_regions))[0])
    return Weights(data, src, True, s)


def _as_is(b: Builder, w: Weights) -> Value:
    return materialize(b, w.source, w.data, "/fp8") if w.quantized else w.source


def _as_rows(b: Builder, w: Weights, trans: bool) -> Value:
    """The fp8 weight as [N, K]: transposed (a new weight) unless it is [N, K] already."""
    if not trans:
        return _as_is(b, w)
    return materialize(b, w.source, np.ascontiguousarray(w.data.T), "/fp8/nk" if w.quantized else "/nk")


# -- the heavy ops ----------------------------------------------------------------------------------
def fold_conv(m: Match, b: Builder) -> Value | None:
    """conv(dq(xq), dq(wq), bias) = fp8_conv(xq, wq, sx, sw, bias) (f32)."""
    op = m.conv
    x, w, bias = op.operands[0], op.operands[1], _operand(op, 2)
    act, t = activation(x), _ranked(w)
    if act is None or t is None or not _is(op.results[0], "f32"):
        return None
    lay = L.resolve(op.attributes.get("layout"), t.rank)
    out_axis = L.resolve_weight(op.attributes.get("weight_layout"), lay.spatial, "OI").out_axis
    wt = weights(b, w, out_axis)
    if wt is None:
        return None
    return b.op("ember.fp8_conv", act.q, _as_is(b, wt), act.scale, wt.scale, bias, **op.attributes)


def fold_matmul(m: Match, b: Builder) -> Value | None:
    """matmul(dq(xq), dq(wq [K, N])) = fp8_matmul(xq, wq^T, sx, sw)."""
    op = m.matmul
    act, tx, tw = activation(op.operands[0]), _ranked(op.operands[0]), _ranked(op.operands[1])
    if act is None or tx is None or tx.rank < 2 or tw is None or tw.rank != 2 or not _is(op.results[0], "f32"):
        return None
    wt = weights(b, op.operands[1], 1)
    if wt is None:
        return None
    return b.op("ember.fp8_matmul", act.q, _as_rows(b, wt, True), act.scale, wt.scale, None)


def _column_bias(b: Builder, c: Value | None, n: object) -> Value | None | bool:
    """c as a bias vector [N] (None when absent), or False when it is not one f32 per column."""
    if c is None:
        return None
    t = _ranked(c)
    if t is None or t.dtype.name != "f32" or t.rank == 0 or t.shape[-1] != n or any(d != 1 for d in t.shape[:-1]):
        return False
    return c if t.rank == 1 else b.op("ember.reshape", c, shape=(n,))


def fold_gemm(m: Match, b: Builder) -> Value | None:
    """gemm(dq(xq), dq(wq), c) (alpha = beta = 1, no trans_a, c per column) =
    fp8_matmul(xq, wq as [N, K], sx, sw, c)."""
    op = m.gemm
    a = op.attributes
    if a.get("trans_a") or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        return None
    act, out = activation(op.operands[0]), _ranked(op.results[0])
    if act is None or out is None or out.dtype.name != "f32":
        return None
    trans_b = bool(a.get("trans_b"))
    wt = weights(b, op.operands[1], 0 if trans_b else 1)
    if wt is None:
        return None
    bias = _column_bias(b, _operand(op, 2), out.shape[1])
    if bias is False:
        return None
    return b.op("ember.fp8_matmul", act.q, _as_rows(b, wt, not trans_b), act.scale, wt.scale, bias)


# -- epilogues --------------------------------------------------------------------------------------
def _fp8_op(v: Value | None) -> Operation | None:
    """The fp8 op that makes v, an f32 result used by nothing else."""
    op = v.defining_op if v is not None else None
    if op is None or op.name not in FP8_OPS or len(v.uses) != 1 or not _is(v, "f32"):  # type: ignore[union-attr]
        return None
    return op


def _with(b: Builder, op: Operation, replace: dict[int, Value | None], **attrs: object) -> Value:
    """`op` again with operands `replace`d (by index) and attributes updated."""
    operands = [_operand(op, i) for i in range(5)]
    for i, v in replace.items():
        operands[i] = v
    return b.op(op.name, *operands, **{**op.attributes, **attrs})


def fold_relu(m: Match, b: Builder) -> Value | None:
    """relu(fp8 op) = the op with relu = true."""
    op = _fp8_op(m.relu.operands[0])
    if op is None or op.attributes.get("relu"):
        return None
    return _with(b, op, {}, relu=True)


def fold_bias(m: Match, b: Builder) -> Value | None:
    """fp8 op + c, c one f32 per output channel (broadcast along the channel axis only), the op
    with no bias and no relu yet = the op with bias c."""
    add = m.add
    for mine, other in (add.operands, add.operands[::-1]):
        op = _fp8_op(mine)
        if op is None or op.attributes.get("relu") or _operand(op, 4) is not None:
            continue
        out, tc = _ranked(op.results[0]), _ranked(other)
        if out is None or tc is None or tc.dtype.name != "f32" or tc.rank > out.rank \
                or _ranked(add.results[0]) != out:
            continue
        axis = L.resolve(op.attributes.get("layout"), out.rank).channel_axis if op.name == "ember.fp8_conv" \
            else out.rank - 1
        full = (1,) * (out.rank - tc.rank) + tuple(tc.shape)
        channels = out.shape[axis]
        if full[axis] != channels or any(d != 1 for i, d in enumerate(full) if i != axis):
            continue
        bias = other if tc.rank == 1 else b.op("ember.reshape", other, shape=(channels,))
        return _with(b, op, {4: bias})
    return None


def fold_cast(m: Match, b: Builder) -> Value | None:
    """cast(fp8 op: f32, to f16 or bf16) = the op with that result type (the epilogue's f32 value
    rounded once to it, as the cast rounds it)."""
    cast = m.cast
    op = _fp8_op(cast.operands[0])
    to = cast.attributes.get("to")
    if op is None or to is None or to.name not in ("f16", "bf16"):
        return None
    return _with(b, op, {}, dtype=to)


RULES = RuleSet("fold-qdq-fp8", [
    Rule("fp8-conv", P.op("ember.conv", name="conv", any_operands=True), fold_conv,
         doc="conv(dq(xq), dq(wq), b) = fp8_conv(xq, wq, sx, sw, b)"),
    Rule("fp8-matmul", P.op("ember.matmul", name="matmul", any_operands=True), fold_matmul,
         doc="matmul(dq(xq), dq(wq)) = fp8_matmul(xq, wq^T, sx, sw)"),
    Rule("fp8-gemm", P.op("ember.gemm", name="gemm", any_operands=True), fold_gemm,
         doc="gemm(dq(xq), dq(wq), c) = fp8_matmul(xq, wq as [N, K], sx, sw, c)"),
    Rule("fp8-relu", P.op("ember.relu", name="relu", any_operands=True), fold_relu,
         doc="relu(fp8 op) = fp8 op with relu"),
    Rule("fp8-bias", P.op("ember.add", name="add", any_operands=True), fold_bias,
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


__all__ = ["FoldQdqFp8", "RULES", "activation", "weights"]
