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
               pair meets a heavy op or one of the ops below: a u8 tensor is the i8 tensor shifted
               by 128, exactly (clip(r + z, 0, 255) - 128 = clip(r + z - 128, -128, 127)), so
               onnxruntime's default QUInt8 activations take the s8 kernels too.

Between the heavy ops, the tensors stay i8 (each rule rooted at the quantize of the float op's
result, q(.., sy, zy) to i8 per tensor, whether an int8 op or a dequantize of anything made the
i8 input; ir/ops/int8.py defines the ops):

- int8-max-pool: q(max_pool(dq(x, sx, zx))) -> max_pool(x) on i8 (global_max_pool likewise):
               with the output's own pair exact, (x - z) * s / s rounds back to x - z; with
               another pair, max_pool(x) int8_requantize'd, exact since a positive scale keeps
               the order (known sx > 0, and no window of padding alone).
- int8-avg-pool: q(avg_pool(dq(x, sx, zx)), sy, zy) -> int8_avg_pool(x, sx, zx, sy, zy) (and
               global_avg_pool -> int8_global_avg_pool): the exact integer sum, then f32 steps.
- int8-add:    q([relu](dq(a) + dq(b))) -> int8_add(a, sa, za, b, sb, zb, sy, zy, relu): the
               same f32 operations (onnxruntime's QLinearAdd).
- int8-concat: q(concat(dq(x_i, s_i, z_i)...)) -> concat(x_i...) on i8, each input
               int8_requantize'd unless its pair is the output's.

onnxruntime's quantize_static gives a max pool its input's pair (the plain form) and a concat
its own (each input requantized); a TensorRT-style placement (ModelOpt's: symmetric i8, the
pair before each quantized consumer, relu between add and quantize) may give a pool another
pair, which takes the requantizing form.

What each rule needs, or it leaves the graph as it is (near misses fall back to float):
activations per tensor (a scalar f32 scale, a scalar i8 zero point or none: any zero point is
exact, the ops subtract it); weights known at build time (a weight, a constant, or the
quantize of a float weight that quantize-int8 writes), i8 with zero points all 0 (symmetric),
scales f32 per tensor or per output channel; dequantize results f32; gemm without trans_a
and with alpha = beta = 1 and c per column; an int8 op's float result folds into a relu, an
add or a quantize only when that op is its one use (else the float value is needed too). Between
the int8 ops: every input a per-tensor f32 dequantize of an i8 tensor (per-axis scales and
float inputs stay float), the result quantized per tensor to i8; a max pool or a concat input
passes as it is only where its scale and zero point are known and equal to the output's.
Per-output-channel weight scales ride along the conv's O axis (its weight_layout) and
matmul's N (axis 1 of [K, N], or 0 of gemm's transposed [N, K] b). Matmul weights are stored
transposed, [N, K] (a new weight `<name>/nk`, or `<name>/int8` for a quantized float weight).

The pass runs first in `default` (before fold-constants, which would fold a weight's
dequantize into a float weight), so layout-nhwc later puts int8 convolutions channels-last with
OHWI filters like any conv (and the int8 pools channels-last with them), and lower-quantization
writes the pairs left over (the model's inputs and outputs, float consumers) as elementwise ops.
Every rewrite keeps the interpreter's result within the f32 rounding of the float graph's sums:
a requantized result within one quantization step of the float graph's; the max pool, add and
concat rules exactly (tests/passes/test_fold_qdq.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ember.ir import layout as L
from ember.ir.builder import Builder
from ember.ir.core import Location, Module, Operation, Value
from ember.ir.opdef import EvalContext
from ember.ir.ops.nn import _resolved_pads, _window_attrs
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


def _is(v: Value | None, *dtypes: str) -> bool:
    t = _ranked(v)
    return t is not None and t.dtype.name in dtypes


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


def _operand(op: Operation, i: int) -> Value | None:
    return op.operands[i] if i < len(op.operands) else None


def _plain(op: Operation) -> bool:
    """A quantize/dequantize of the forms the int8 and fp8 ops take: unblocked, no explicit precision."""
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
    """dq(wq, sw) with wq known at build time: its data (s8 or fp8), where it comes from, and the scales."""

    data: np.ndarray
    source: Value          # the quantized value itself (reused as it is), or the float weight quantized
    quantized: bool        # source is a float weight that a quantize op quantizes
    scale: Value


def _no_regions(*_: object) -> tuple:
    raise AssertionError("a quantize has no regions")


def _evaluated(module: Module, op: Operation) -> np.ndarray | None:
    """The value of a quantize op whose operands are all known (quantize-int8's and quantize-fp8's
    weight pairs)."""
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


def _as_is(b: Builder, w: Weights, kind: str) -> Value:
    """The quantized weight value as the `kind` op reads it, unchanged."""
    return materialize(b, w.source, w.data, f"/{kind}") if w.quantized else w.source


def _as_rows(b: Builder, w: Weights, trans: bool, kind: str) -> Value:
    """The quantized weight as [N, K]: transposed (a new weight) unless it is [N, K] already."""
    if not trans:
        return _as_is(b, w, kind)
    return materialize(b, w.source, np.ascontiguousarray(w.data.T), f"/{kind}/nk" if w.quantized else "/nk")


def _column_bias(b: Builder, c: Value | None, n: object) -> Value | None | bool:
    """c as a bias vector [N] (None when absent), or False when it is not one f32 per column."""
    if c is None:
        return None
    t = _ranked(c)
    if t is None or t.dtype.name != "f32" or t.rank == 0 or t.shape[-1] != n or any(d != 1 for d in t.shape[:-1]):
        return False
    return c if t.rank == 1 else b.op("ember.reshape", c, shape=(n,))


@dataclass(frozen=True)
class QuantizedOps:
    """The heavy-op and epilogue rules fold-qdq (int8) and fold-qdq-fp8 share, and what they
    differ in: the ops (ember.<kind>_conv, ember.<kind>_matmul, with `width` operands: x, w,
    x_scale, w_scale, bias, then the int8 ops' zero points and output pair), what an activation
    and a weight pair must be, and whether the op takes the activation's zero point after the
    bias. Each `fold_*` method is a rule's build."""

    kind: str
    activation: Callable[[Value | None], Any]   # dq(q, s, ...) per tensor -> its .q, .scale (.zero_point), or None
    weights: Callable[[Builder, Value | None, int], Weights | None]
    width: int
    zero_point: bool

    @property
    def conv(self) -> str:
        return f"ember.{self.kind}_conv"

    @property
    def matmul(self) -> str:
        return f"ember.{self.kind}_matmul"

    def _tail(self, act: Any) -> tuple[Value | None, ...]:
        return (act.zero_point,) if self.zero_point else ()

    def fold_conv(self, m: Match, b: Builder) -> Value | None:
        """conv(dq(xq), dq(wq), bias) = <kind>_conv(xq, wq, sx, sw, bias[, zx]) (f32)."""
        op = m.conv
        x, w, bias = op.operands[0], op.operands[1], _operand(op, 2)
        act, t = self.activation(x), _ranked(w)
        if act is None or t is None or not _is(op.results[0], "f32"):
            return None
        lay = L.resolve(op.attributes.get("layout"), t.rank)
        out_axis = L.resolve_weight(op.attributes.get("weight_layout"), lay.spatial, "OI").out_axis
        wt = self.weights(b, w, out_axis)
        if wt is None:
            return None
        return b.op(self.conv, act.q, _as_is(b, wt, self.kind), act.scale, wt.scale, bias, *self._tail(act),
                    **op.attributes)

    def fold_matmul(self, m: Match, b: Builder) -> Value | None:
        """matmul(dq(xq), dq(wq [K, N])) = <kind>_matmul(xq, wq^T, sx, sw[, zx])."""
        op = m.matmul
        act, tx, tw = self.activation(op.operands[0]), _ranked(op.operands[0]), _ranked(op.operands[1])
        if act is None or tx is None or tx.rank < 2 or tw is None or tw.rank != 2 or not _is(op.results[0], "f32"):
            return None
        wt = self.weights(b, op.operands[1], 1)
        if wt is None:
            return None
        return b.op(self.matmul, act.q, _as_rows(b, wt, True, self.kind), act.scale, wt.scale, None,
                    *self._tail(act))

    def fold_gemm(self, m: Match, b: Builder) -> Value | None:
        """gemm(dq(xq), dq(wq), c) (alpha = beta = 1, no trans_a, c per column) =
        <kind>_matmul(xq, wq as [N, K], sx, sw, c[, zx])."""
        op = m.gemm
        a = op.attributes
        if a.get("trans_a") or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            return None
        act, out = self.activation(op.operands[0]), _ranked(op.results[0])
        if act is None or out is None or out.dtype.name != "f32":
            return None
        trans_b = bool(a.get("trans_b"))
        wt = self.weights(b, op.operands[1], 0 if trans_b else 1)
        if wt is None:
            return None
        bias = _column_bias(b, _operand(op, 2), out.shape[1])
        if bias is False:
            return None
        return b.op(self.matmul, act.q, _as_rows(b, wt, not trans_b, self.kind), act.scale, wt.scale, bias,
                    *self._tail(act))

    def heavy_of(self, v: Value | None) -> Operation | None:
        """The op that makes v with an f32 (dequantized, not requantized) result used by nothing else."""
        op = v.defining_op if v is not None else None
        if op is None or op.name not in (self.conv, self.matmul) or len(v.uses) != 1:  # type: ignore[union-attr]
            return None
        if _operand(op, 6) is not None or not _is(v, "f32"):
            return None
        return op

    def with_(self, b: Builder, op: Operation, replace: dict[int, Value | None], **attrs: object) -> Value:
        """`op` again with operands `replace`d (by index) and attributes updated."""
        operands = [_operand(op, i) for i in range(self.width)]
        for i, v in replace.items():
            operands[i] = v
        return b.op(op.name, *operands, **{**op.attributes, **attrs})

    def _channel_axis(self, op: Operation) -> int:
        t = _ranked(op.results[0])
        assert t is not None
        if op.name == self.conv:
            return L.resolve(op.attributes.get("layout"), t.rank).channel_axis
        return t.rank - 1

    def fold_relu(self, m: Match, b: Builder) -> Value | None:
        """relu(<kind> op) = the op with relu = true."""
        op = self.heavy_of(m.relu.operands[0])
        if op is None or op.attributes.get("relu"):
            return None
        return self.with_(b, op, {}, relu=True)

    def fold_bias(self, m: Match, b: Builder) -> Value | None:
        """<kind> op + c, c one f32 per output channel (broadcast along the channel axis only) and
        no bias yet, no relu = the op with bias c."""
        add = m.add
        for mine, other in (add.operands, add.operands[::-1]):
            op = self.heavy_of(mine)
            if op is None or op.attributes.get("relu") or _operand(op, 4) is not None:
                continue
            out, tc = _ranked(op.results[0]), _ranked(other)
            if out is None or tc is None or tc.dtype.name != "f32" or tc.rank > out.rank \
                    or _ranked(add.results[0]) != out:
                continue
            axis = self._channel_axis(op)
            full = (1,) * (out.rank - tc.rank) + tuple(tc.shape)
            channels = out.shape[axis]
            if full[axis] != channels or any(d != 1 for i, d in enumerate(full) if i != axis):
                continue
            bias = other if tc.rank == 1 else b.op("ember.reshape", other, shape=(channels,))
            return self.with_(b, op, {4: bias})
        return None


INT8 = QuantizedOps("int8", activation, weights, width=8, zero_point=True)


@dataclass(frozen=True)
class Output:
    """quantize(v: f32, sy, zy) to i8 per tensor: the scale and zero point a result is requantized with."""

    scale: Value
    zero_point: Value | None


def output(q: Operation) -> Output | None:
    """The quantize q's per-tensor i8 pair (an f32 scalar scale, an i8 scalar zero point or none)."""
    if not _plain(q) or not _is(q.results[0], "i8") or not _is(q.operands[0], "f32"):
        return None
    _, s, z = _parts(q)
    if not _is(s, "f32") or not _per_tensor(s) or (z is not None and not (_is(z, "i8") and _per_tensor(z))):
        return None
    return Output(s, z)


def fold_requantize(m: Match, b: Builder) -> Value | None:
    """quantize(int8 op, sy, zy) to i8 (per tensor) = the op requantizing with sy and zy."""
    q = m.q
    op = INT8.heavy_of(q.operands[0])
    out = output(q)
    if op is None or out is None:
        return None
    return INT8.with_(b, op, {6: out.scale, 7: out.zero_point}, dtype=None)


# -- between the int8 ops: pools, add, concat -------------------------------------------------------
MAX_POOLS = ("ember.max_pool", "ember.global_max_pool")
AVG_POOLS = {"ember.avg_pool": "ember.int8_avg_pool", "ember.global_avg_pool": "ember.int8_global_avg_pool"}
BETWEEN = (*MAX_POOLS, *AVG_POOLS, "ember.add", "ember.concat")
EXACT_SCALES = (2.0 ** -100, 2.0 ** 100)


def _scalar_value(v: Value | None) -> float | None:
    """A per-tensor parameter's value where known at build time (an absent zero point is 0)."""
    if v is None:
        return 0.0
    data = known_value(v)
    return None if data is None or data.size != 1 else float(np.asarray(data).reshape(()))


def same_quantization(act: Activation, out: Output) -> bool:
    """quantize(dequantize(q, sx, zx), sy, zy) = q for every i8 q: the same known scale (within
    2^-100..2^100, so (q - z) * s / s rounds back to q - z, with no overflow or subnormal on the way)
    and the same zero point."""
    sx, sy = _scalar_value(act.scale), _scalar_value(out.scale)
    zx, zy = _scalar_value(act.zero_point), _scalar_value(out.zero_point)
    if sx is None or sy is None or zx is None or zy is None:
        return False
    return sx == sy and EXACT_SCALES[0] <= sx <= EXACT_SCALES[1] and zx == zy


def _located(b: Builder, *ops: Operation | None) -> None:
    """The new ops carry the locations of the float ops they replace (the match holds the quantize)."""
    b.default_loc = Location.fused([op.loc for op in ops if op is not None])


def _in_scale(b: Builder, act: Activation, out: Output) -> Value:
    """The i8 tensor act.q (in act's scale) in out's: itself where the pair is the identity, else
    requantized (int8_requantize is quantize(dequantize(..)) exactly)."""
    if same_quantization(act, out):
        return act.q
    return b.op("ember.int8_requantize", act.q, act.scale, act.zero_point, out.scale, out.zero_point)


def _windows_hit_input(pool: Operation) -> bool:
    """Every window of the max pool holds an element of x (none lies in the padding alone, where
    the float pool gives -inf and the i8 pool -128): checked per axis for static sizes."""
    t = _ranked(pool.operands[0])
    if t is None:
        return False
    axes = L.resolve(pool.attributes.get("layout"), t.rank).spatial_axes
    sizes = [t.shape[a] for a in axes]
    if not all(isinstance(n, int) and n > 0 for n in sizes):
        return False
    if pool.name == "ember.global_max_pool":
        return True
    a = pool.attributes
    kernel = list(a["kernel_shape"])
    strides, dilations, begin, end = _window_attrs(None, len(sizes), kernel, a["strides"], a["dilations"],
                                                   a["pads"], a["auto_pad"])
    begin, _ = _resolved_pads(sizes, kernel, strides, dilations, begin, end, a["auto_pad"])
    outs = [_ranked(pool.results[0]).shape[ax] for ax in axes]  # type: ignore[union-attr]
    for n, k, s, d, p, o in zip(sizes, kernel, strides, dilations, begin, outs):
        for j in range(o):  # window j reads j*s - p + t*d, t < k
            if not any(0 <= j * s - p + t * d < n for t in range(k)):
                return False
    return True


def fold_max_pool(m: Match, b: Builder) -> Value | None:
    """quantize(max_pool(dq(q, sx, zx)), sy, zy) = max_pool(q) in (sy, zy): dequantize is monotone
    (sx > 0, each product rounded monotonically), so the max of the floats is the float of the
    max; the same pair needs nothing more, another an int8_requantize (and windows that all hit x)."""
    out = output(m.q)
    pool = m.q.operands[0].defining_op
    act = activation(pool.operands[0]) if pool is not None and pool.name in MAX_POOLS else None
    if out is None or act is None or not _is(pool.results[0], "f32"):  # type: ignore[union-attr]
        return None
    if not same_quantization(act, out):
        sx = _scalar_value(act.scale)
        if sx is None or not 0 < sx < float("inf") or not _windows_hit_input(pool):  # type: ignore[arg-type]
            return None
    _located(b, pool, m.q)
    y = b.op(pool.name, act.q, **pool.attributes)  # type: ignore[union-attr]
    return _in_scale(b, Activation(y, act.scale, act.zero_point), out)


def fold_avg_pool(m: Match, b: Builder) -> Value | None:
    """quantize(avg_pool(dq(q, sx, zx)), sy, zy) = int8_avg_pool(q, sx, zx, sy, zy) (and the global
    pools): the exact integer sum, scaled and divided in f32: within one step of the float graph's."""
    out = output(m.q)
    pool = m.q.operands[0].defining_op
    act = activation(pool.operands[0]) if pool is not None and pool.name in AVG_POOLS else None
    if out is None or act is None or not _is(pool.results[0], "f32"):  # type: ignore[union-attr]
        return None
    _located(b, pool, m.q)
    return b.op(AVG_POOLS[pool.name], act.q, act.scale, act.zero_point, out.scale,  # type: ignore[union-attr]
                out.zero_point, **pool.attributes)  # type: ignore[union-attr]


def _add_of(v: Value | None) -> tuple[Operation | None, bool]:
    """The add that makes v, through a relu (then True)."""
    relu = _producer(v, "ember.relu")
    if relu is not None:
        return _producer(relu.operands[0], "ember.add"), True
    return _producer(v, "ember.add"), False


def fold_add(m: Match, b: Builder) -> Value | None:
    """quantize([relu](dq(a, sa, za) + dq(c, sc, zc)), sy, zy) = int8_add(a, sa, za, c, sc, zc, sy,
    zy, relu): the very same f32 operations (onnxruntime's QLinearAdd)."""
    out = output(m.q)
    add, relu = _add_of(m.q.operands[0])
    if out is None or add is None or not _is(add.results[0], "f32"):
        return None
    x, y = activation(add.operands[0]), activation(add.operands[1])
    if x is None or y is None:
        return None
    _located(b, add, m.q.operands[0].defining_op, m.q)
    return b.op("ember.int8_add", x.q, x.scale, x.zero_point, y.q, y.scale, y.zero_point, out.scale,
                out.zero_point, relu=relu)


def fold_concat(m: Match, b: Builder) -> Value | None:
    """quantize(concat(dq(q_i, s_i, z_i)...), sy, zy) = concat(q_i in (sy, zy)...): each input as it
    is where its pair is the output's, else int8_requantize'd (concat moves values, exactly)."""
    out = output(m.q)
    cat = _producer(m.q.operands[0], "ember.concat")
    if out is None or cat is None or not _is(cat.results[0], "f32"):
        return None
    acts = [activation(v) for v in cat.operands]
    if not acts or any(a is None for a in acts):
        return None
    _located(b, cat, m.q)
    return b.op("ember.concat", *(_in_scale(b, a, out) for a in acts), **cat.attributes)  # type: ignore[arg-type]


# -- u8 activations ---------------------------------------------------------------------------------
def _between(op: Operation | None) -> Operation | None:
    """op itself when it is a pool, add or concat whose result (an add's through a relu) a quantize reads."""
    if op is None or op.name not in BETWEEN:
        return None
    users = list(op.results[0].users)
    if op.name == "ember.add":
        users += [w for u in users if u.name == "ember.relu" for w in u.results[0].users]
    return op if any(u.name == "ember.quantize" for u in users) else None


def _meets_int8(dq: Operation, q: Operation) -> bool:
    """The pair feeds a heavy op or a requantized pool, add or concat, or quantizes the result of a
    heavy op or of a pool, add or concat that reads a dequantize: where fold-qdq makes int8 ops."""
    if any(u.name in HEAVY or _between(u) is not None for u in dq.results[0].users):
        return True
    src = q.operands[0].defining_op if q.operands[0] is not None else None
    if src is not None and src.name == "ember.relu":
        src = _producer(src.operands[0], "ember.add")
    if src is None:
        return False
    return src.name in HEAVY + INT8_OPS or (
        src.name in BETWEEN and any(_producer(v, "ember.dequantize") is not None for v in src.operands))


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
    if q is None or not (_plain(dq) and _plain(q) and _is(q.results[0], "u8") and _meets_int8(dq, q)):
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
    Rule("int8-conv", P.op("ember.conv", name="conv", any_operands=True), INT8.fold_conv,
         doc="conv(dq(xq), dq(wq), b) = int8_conv(xq, wq, sx, sw, b, zx)"),
    Rule("int8-matmul", P.op("ember.matmul", name="matmul", any_operands=True), INT8.fold_matmul,
         doc="matmul(dq(xq), dq(wq)) = int8_matmul(xq, wq^T, sx, sw, zx)"),
    Rule("int8-gemm", P.op("ember.gemm", name="gemm", any_operands=True), INT8.fold_gemm,
         doc="gemm(dq(xq), dq(wq), c) = int8_matmul(xq, wq as [N, K], sx, sw, c, zx)"),
    Rule("int8-relu", P.op("ember.relu", name="relu", any_operands=True), INT8.fold_relu,
         doc="relu(int8 op) = int8 op with relu"),
    Rule("int8-bias", P.op("ember.add", name="add", any_operands=True), INT8.fold_bias,
         doc="int8 op + c[channel] = int8 op with bias c"),
    Rule("int8-requantize", P.op("ember.quantize", name="q", any_operands=True), fold_requantize,
         doc="quantize(int8 op, sy, zy) = int8 op requantizing to i8"),
    Rule("int8-max-pool", P.op("ember.quantize", name="q", any_operands=True), fold_max_pool,
         doc="quantize(max_pool(dq(q))) = max_pool(q) [int8_requantize'd where the pairs differ]"),
    Rule("int8-avg-pool", P.op("ember.quantize", name="q", any_operands=True), fold_avg_pool,
         doc="quantize(avg_pool(dq(q))) = int8_avg_pool(q); global_avg_pool likewise"),
    Rule("int8-add", P.op("ember.quantize", name="q", any_operands=True), fold_add,
         doc="quantize([relu](dq(a) + dq(b))) = int8_add(a, b)"),
    Rule("int8-concat", P.op("ember.quantize", name="q", any_operands=True), fold_concat,
         doc="quantize(concat(dq(q_i))) = concat(q_i [int8_requantize'd where the pairs differ])"),
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


__all__ = ["INT8", "FoldQdq", "QuantizedOps", "RULES", "activation", "output", "same_quantization", "weights"]
