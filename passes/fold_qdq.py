"""fold-qdq: quantize/dequantize pairs around conv, matmul and gemm as int8 ops.

A Q/DQ model (onnxruntime's quantize_static in QDQ format, NVIDIA's ModelOpt, or the pairs
quantize-int8 writes from a calibration) says which tensors are int8 by wrapping them in
`dequantize(quantize(x))`. Where such a pair feeds a heavy op whose weights are constant
int8, the heavy op is integer arithmetic with float scales: ember.int8_conv / ember.int8_matmul
(ir/ops/int8.py, which defines what they compute). The rules, each rooted at the op it
replaces:

- int8-conv:   conv(dq(xq, sx, zx), dq(wq, sw), b) -> int8_conv(xq, wq, sx, sw, b, zx)
- int8-matmul: matmul(dq(xq, sx, zx), dq(wq, sw)) -> int8_matmul(xq, wq^T, sx, sw, zx)
- int8-gemm:   gemm(dq(xq, sx, zx), dq(wq, sw), c) -> int8_matmul(xq, wq' as [N, K], sx, sw, c, zx)
- int8-bias:   int8 op (dequantized) + c, c one value per output channel -> the op's bias
- int8-relu:   relu(int8 op (dequantized)) -> the op with relu = true
- int8-requantize: quantize(int8 op (dequantized), sy, zy) to i8 -> the op requantizing
- u8-to-i8:    dq(q(x, s, z: u8), s', z': u8) -> dq(q(x, s, z - 128: i8), s', z' - 128) where the
               pair meets a heavy op: a u8 tensor is the i8 tensor shifted by 128, exactly
               (clip(r + z, 0, 255) - 128 = clip(r + z - 128, -128, 127)), so onnxruntime's
               default QUInt8 activations take the s8 kernels too.

What each rule needs, or it leaves the graph as it is (near misses fall back to float):
activations per tensor (a scalar f32 scale, a scalar i8 zero point or none: any zero point is
exact, the ops subtract it); weights known at build time (a weight, a constant, or the
quantize of a float weight that quantize-int8 writes), i8 with zero points all 0 (symmetric),
scales f32 per tensor or per output channel; dequantize results f32; gemm without trans_a
and with alpha = beta = 1 and c per column; an int8 op's float result folds into a relu, an
add or a quantize only when that op is its one use (else the float value is needed too).
Per-output-channel weight scales ride along the conv's O axis (its weight_layout) and
matmul's N (axis 1 of [K, N], or 0 of gemm's transposed [N, K] b). Matmul weights are stored
transposed, [N, K] (a new weight `<name>/nk`, or `<name>/int8` for a quantized float weight).

The pass runs first in `default` (before fold-constants, which would fold a weight's
dequantize into a float weight), so layout-nhwc later puts int8 convolutions channels-last with
OHWI filters like any conv, and lower-quantization writes the pairs left over (those around
adds, pools, outputs) as elementwise ops. Every rewrite keeps the interpreter's result within
the f32 rounding of the float graph's sums: a requantized result within one quantization
step of the float graph's (tests/passes/test_fold_qdq.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.ir import layout as L
from ember.ir.builder import Builder
from ember.ir.core import Module, Operation, Value
from ember.ir.opdef import EvalContext
from ember.ir.types import TensorType
from ember.passes.dce import dead_code
from ember.passes.layout_nhwc import materialize
from ember.passes.manager import Pass, PassContext, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_counted, known_value

INT8_OPS = ("ember.int8_conv", "ember.int8_matmul")
HEAVY = ("ember.conv", "ember.matmul", "ember.gemm")


# -- what the operands are ------------------------------------------------------------------------
def _ranked(v: Value | None) -> TensorType | None:
    t = v.type if v is not None else None
    return t if isinstance(t, TensorType) and t.shape is not None else None


def _is(v: Value | None, dtype: str) -> bool:
    t = _ranked(v)
    return t is not None and t.dtype.name == dtype


def _per_tensor(v: Value | None) -> bool:
    t = _ranked(v)
    return t is not None and (t.rank == 0 or t.shape == (1,))


def _producer(v: Value | None, name: str) -> Operation | None:
    op = v.defining_op if v is not None else None
    return op if op is not None and op.name == name else None


def _parts(op: Operation) -> tuple[Value, Value, Value | None]:
    """x, scale and zero point (or None) of a quantize or dequantize."""
    zp = op.operands[2] if len(op.operands) > 2 else None
    return op.operands[0], op.operands[1], zp  # type: ignore[return-value]


def _plain(op: Operation) -> bool:
    """A quantize/dequantize of the forms the int8 ops take: unblocked, no explicit precision."""
    return op.attributes.get("block_size", 0) == 0 and op.attributes.get("precision") is None


@dataclass(frozen=True)
class Activation:
    """dq(q, s, z) of an s8 tensor per tensor: what the int8 op reads instead of the floats."""

    q: Value
    scale: Value
    zero_point: Value | None


def activation(v: Value | None) -> Activation | None:
    """v = dequantize(q: i8, s: f32 scalar, z: i8 scalar or none) to f32; a zero point known to
    be 0 is dropped."""
    dq = _producer(v, "ember.dequantize")
    if dq is None or not _plain(dq) or not _is(v, "f32"):
        return None
    q, s, z = _parts(dq)
    if not _is(q, "i8") or not _is(s, "f32") or not _per_tensor(s):
        return None
    if z is not None:
        if not _is(z, "i8") or not _per_tensor(z):
            return None
        known = known_value(z)
        if known is not None and not known.any():
            z = None
    return Activation(q, s, z)


@dataclass(frozen=True)
class Weights:
    """dq(wq, sw) with wq known at build time: its s8 data, where it comes from, and the scales."""

    data: np.ndarray
    source: Value          # the i8 value itself (reused as it is), or the float weight quantized
    quantized: bool        # source is a float weight that a quantize op quantizes
    scale: Value


def _no_regions(*_: object) -> tuple:
    raise AssertionError("a quantize has no regions")


def _evaluated(module: Module, op: Operation) -> np.ndarray | None:
    """The value of a quantize op whose operands are all known (quantize-int8's weight pairs)."""
    inputs = [known_value(v) if v is not None else None for v in op.operands]
    if any(a is None and v is not None for a, v in zip(inputs, op.operands)):
        return None
    with np.errstate(all="ignore"):
        return np.asarray(op.evaluate(inputs, EvalContext(env={}, module=module, run_block=_no_regions))[0])


def weights(b: Builder, v: Value | None, out_axis: int) -> Weights | None:
    """v = dequantize(wq, sw, zw) to f32 with wq i8 known at build time, zw all 0 (or none), sw f32
    per tensor or per output channel (`out_axis` of wq)."""
    dq = _producer(v, "ember.dequantize")
    if dq is None or not _plain(dq) or not _is(v, "f32"):
        return None
    wq, s, z = _parts(dq)
    t, ts = _ranked(wq), _ranked(s)
    if t is None or ts is None or t.dtype.name != "i8" or ts.dtype.name != "f32":
        return None
    if z is not None:
        zero = known_value(z)
        if zero is None or zero.any():
            return None  # asymmetric weights: left to the float path
    if not _per_tensor(s):
        if ts.rank != 1 or dq.attributes.get("axis", 1) % t.rank != out_axis % t.rank:
            return None
    data = known_value(wq)
    source, quantized = wq, False
    if data is None:
        q = _producer(wq, "ember.quantize")
        if q is None or known_value(q.operands[0]) is None or q.operands[0].defining_op is None \
                or q.operands[0].defining_op.name not in ("ember.weight", "ember.constant"):
            return None
        data = _evaluated(b.module, q) if b.module is not None else None
        if data is None:
            return None
        source, quantized = q.operands[0], True
    return Weights(np.asarray(data, np.int8), source, quantized, s)


def _as_is(b: Builder, w: Weights) -> Value:
    """The i8 weight value as the int8 op reads it, unchanged."""
    return materialize(b, w.source, w.data, "/int8") if w.quantized else w.source


def _as_rows(b: Builder, w: Weights, trans: bool) -> Value:
    """The i8 weight as [N, K]: transposed (a new weight) unless it is [N, K] already."""
    if not trans:
        return _as_is(b, w)
    return materialize(b, w.source, np.ascontiguousarray(w.data.T), "/int8/nk" if w.quantized else "/nk")


# -- the heavy ops ----------------------------------------------------------------------------------
def fold_conv(m: Match, b: Builder) -> Value | None:
    """conv(dq(xq), dq(wq), bias) = int8_conv(xq, wq, sx, sw, bias, zx) (dequantized, f32)."""
    op = m.conv
    x, w = op.operands[0], op.operands[1]
    bias = op.operands[2] if len(op.operands) > 2 else None
    act = activation(x)
    t = _ranked(w)
    if act is None or t is None or not _is(op.results[0], "f32"):
        return None
    lay = L.resolve(op.attributes.get("layout"), t.rank)
    out_axis = L.resolve_weight(op.attributes.get("weight_layout"), lay.spatial, "OI").out_axis
    wt = weights(b, w, out_axis)
    if wt is None:
        return None
    return b.op("ember.int8_conv", act.q, _as_is(b, wt), act.scale, wt.scale, bias, act.zero_point,
                **op.attributes)


def fold_matmul(m: Match, b: Builder) -> Value | None:
    """matmul(dq(xq), dq(wq [K, N])) = int8_matmul(xq, wq^T, sx, sw, zx)."""
    op = m.matmul
    act, tx = activation(op.operands[0]), _ranked(op.operands[0])
    if act is None or tx is None or tx.rank < 2 or _ranked(op.operands[1]) is None \
            or _ranked(op.operands[1]).rank != 2 or not _is(op.results[0], "f32"):  # type: ignore[union-attr]
        return None
    wt = weights(b, op.operands[1], 1)
    if wt is None:
        return None
    return b.op("ember.int8_matmul", act.q, _as_rows(b, wt, True), act.scale, wt.scale, None, act.zero_point)


def _column_bias(b: Builder, c: Value | None, n: object) -> Value | None | bool:
    """c as a bias vector [N] (None when absent), or False when it is not one value per column."""
    if c is None:
        return None
    t = _ranked(c)
    if t is None or t.dtype.name != "f32" or t.rank == 0 or t.shape[-1] != n or any(d != 1 for d in t.shape[:-1]):
        return False
    return c if t.rank == 1 else b.op("ember.reshape", c, shape=(n,))


def fold_gemm(m: Match, b: Builder) -> Value | None:
    """gemm(dq(xq), dq(wq), c) (alpha = beta = 1, no trans_a, c per column) =
    int8_matmul(xq, wq as [N, K], sx, sw, c, zx)."""
    op = m.gemm
    a = op.attributes
    if a.get("trans_a") or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        return None
    act = activation(op.operands[0])
    out = _ranked(op.results[0])
    if act is None or out is None or out.dtype.name != "f32":
        return None
    trans_b = bool(a.get("trans_b"))
    wt = weights(b, op.operands[1], 0 if trans_b else 1)
    if wt is None:
        return None
    bias = _column_bias(b, op.operands[2] if len(op.operands) > 2 else None, out.shape[1])
    if bias is False:
        return None
    return b.op("ember.int8_matmul", act.q, _as_rows(b, wt, not trans_b), act.scale, wt.scale, bias,
                act.zero_point)


# -- epilogues ------------------------------------------------------------------------------------
def _int8_op(v: Value | None) -> Operation | None:
    """The int8 op that makes v with a dequantized f32 result used by nothing else."""
    op = v.defining_op if v is not None else None
    if op is None or op.name not in INT8_OPS or len(v.uses) != 1:  # type: ignore[union-attr]
        return None
    if _operand(op, 6) is not None or not _is(v, "f32"):
        return None
    return op


def _operand(op: Operation, i: int) -> Value | None:
    return op.operands[i] if i < len(op.operands) else None


def _with(b: Builder, op: Operation, replace: dict[int, Value | None], **attrs: object) -> Value:
    """`op` again with operands `replace`d (by index) and attributes updated."""
    operands = [_operand(op, i) for i in range(8)]
    for i, v in replace.items():
        operands[i] = v
    return b.op(op.name, *operands, **{**op.attributes, **attrs})


def _channel_axis(op: Operation) -> int:
    t = _ranked(op.results[0])
    assert t is not None
    if op.name == "ember.int8_conv":
        return L.resolve(op.attributes.get("layout"), t.rank).channel_axis
    return t.rank - 1


def fold_relu(m: Match, b: Builder) -> Value | None:
    """relu(int8 op) = the op with relu = true."""
    op = _int8_op(m.relu.operands[0])
    if op is None or op.attributes.get("relu"):
        return None
    return _with(b, op, {}, relu=True)


def fold_bias(m: Match, b: Builder) -> Value | None:
    """int8 op + c, c one f32 per output channel (broadcast along the channel axis only) and no
    bias yet, no relu = the op with bias c."""
    add = m.add
    for mine, other in (add.operands, add.operands[::-1]):
        op = _int8_op(mine)
        if op is None or op.attributes.get("relu") or _operand(op, 4) is not None:
            continue
        out, tc = _ranked(op.results[0]), _ranked(other)
        if out is None or tc is None or tc.dtype.name != "f32" or tc.rank > out.rank \
                or _ranked(add.results[0]) != out:
            continue
        axis = _channel_axis(op)
        full = (1,) * (out.rank - tc.rank) + tuple(tc.shape)
        channels = out.shape[axis]
        if full[axis] != channels or any(d != 1 for i, d in enumerate(full) if i != axis):
            continue
        bias = other if tc.rank == 1 else b.op("ember.reshape", other, shape=(channels,))
        return _with(b, op, {4: bias})
    return None


def fold_requantize(m: Match, b: Builder) -> Value | None:
    """quantize(int8 op, sy, zy) to i8 (per tensor) = the op requantizing with sy and zy."""
    q = m.q
    op = _int8_op(q.operands[0])
    if op is None or not _plain(q) or not _is(q.results[0], "i8"):
        return None
    _, s, z = _parts(q)
    if not _is(s, "f32") or not _per_tensor(s) or (z is not None and not (_is(z, "i8") and _per_tensor(z))):
        return None
    return _with(b, op, {6: s, 7: z}, dtype=None)


# -- u8 activations ---------------------------------------------------------------------------------
def _meets_heavy(dq: Operation, q: Operation) -> bool:
    """The pair feeds a heavy op, or quantizes a heavy op's result."""
    src = q.operands[0].defining_op if q.operands[0] is not None else None
    return any(u.name in HEAVY for u in dq.results[0].users) or (src is not None and src.name in HEAVY + INT8_OPS)


def _shifted(b: Builder, z: Value | None) -> Value | None:
    """A u8 zero point (absent: 0) as the i8 one of the same tensor shifted by 128."""
    if z is None:
        return b.constant(np.int8(-128))
    data = known_value(z)
    if data is None or not _per_tensor(z):
        return None
    return b.constant((data.astype(np.int16) - 128).astype(np.int8).reshape(np.shape(data)))


def u8_to_i8(m: Match, b: Builder) -> Value | None:
    """dq(q(x, s, z: u8), s', z') = dq(q(x, s, z - 128: i8), s', z' - 128), exactly."""
    dq = m.dq
    q = _producer(dq.operands[0], "ember.quantize")
    if q is None or not (_plain(dq) and _plain(q) and _is(q.results[0], "u8") and _meets_heavy(dq, q)):
        return None
    x, s, z = _parts(q)
    _, s2, z2 = _parts(dq)
    if not (_per_tensor(s) and _per_tensor(s2)):
        return None
    zi = _shifted(b, z)
    zi2 = zi if z2 is z else _shifted(b, z2)
    if zi is None or zi2 is None:
        return None
    attrs = {**q.attributes, "dtype": None}
    qi = b.op("ember.quantize", x, s, zi, **attrs)
    return b.op("ember.dequantize", qi, s2, zi2, **dq.attributes)


RULES = RuleSet("fold-qdq", [
    Rule("u8-to-i8", P.op("ember.dequantize", name="dq", any_operands=True), u8_to_i8, benefit=2,
         doc="dq(q(x, s, z: u8), s, z) = dq(q(x, s, z - 128: i8), s, z - 128)"),
    Rule("int8-conv", P.op("ember.conv", name="conv", any_operands=True), fold_conv,
         doc="conv(dq(xq), dq(wq), b) = int8_conv(xq, wq, sx, sw, b, zx)"),
    Rule("int8-matmul", P.op("ember.matmul", name="matmul", any_operands=True), fold_matmul,
         doc="matmul(dq(xq), dq(wq)) = int8_matmul(xq, wq^T, sx, sw, zx)"),
    Rule("int8-gemm", P.op("ember.gemm", name="gemm", any_operands=True), fold_gemm,
         doc="gemm(dq(xq), dq(wq), c) = int8_matmul(xq, wq as [N, K], sx, sw, c, zx)"),
    Rule("int8-relu", P.op("ember.relu", name="relu", any_operands=True), fold_relu,
         doc="relu(int8 op) = int8 op with relu"),
    Rule("int8-bias", P.op("ember.add", name="add", any_operands=True), fold_bias,
         doc="int8 op + c[channel] = int8 op with bias c"),
    Rule("int8-requantize", P.op("ember.quantize", name="q", any_operands=True), fold_requantize,
         doc="quantize(int8 op, sy, zy) = int8 op requantizing to i8"),
])


@register_pass("fold-qdq")
@dataclass(frozen=True)
class FoldQdq(Pass):
    """Quantize/dequantize pairs around conv, matmul and gemm with constant int8 weights as
    int8 ops with dequantize or requantize epilogues (see the module docstring)."""

    def run(self, module: Module, ctx: PassContext) -> bool:
        fired = apply_counted(module, RULES, ctx, self.name)
        if fired:
            dead_code(module)
        return bool(fired)


__all__ = ["FoldQdq", "RULES", "activation", "weights"]
