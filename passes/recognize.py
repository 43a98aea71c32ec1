"""recognize-patterns: the decomposed forms exporters emit, as Ember's single ops.

Exporters spell GELU, LayerNorm, RMSNorm, softmax, SiLU, HardSwish and scaled
dot-product attention as chains of elementwise ops and reductions. This pass
finds those chains and puts the one op in their place, so later passes and the
code generator see `ember.gelu`, `ember.layer_norm`, `ember.attention`...

Contract. Afterwards, every chain listed below whose intermediate values have
no other users is one op (a chain whose pieces are used elsewhere stays, since
the replacement would have to keep them). Each rewrite preserves what the graph
computes up to float rounding; the constants must be the form's own (to the
precision of their element type), reductions must run over the axes the op
normalizes, and shapes must not broadcast beyond what the op takes.

The forms (x is any float value, c constants):
- GELU: 0.5 * x * (1 + erf(x / sqrt 2)) (or x * 0.7071...), and the tanh form
  0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), with the product
  associated any way -> ember.gelu{approximate}.
- LayerNorm: d = x - mean(x); d / sqrt(mean(d^2) + eps) (or d * rsqrt(...)) over
  trailing axes -> ember.layer_norm(x, 1); then `* scale` and `+ bias` fold in.
- RMSNorm: x * rsqrt(mean(x^2) + eps) (or x / sqrt(...)) -> ember.rms_norm(x, 1);
  then `* scale` folds in.
- softmax: exp(x - max(x)) / sum(...) and exp(x) / sum(exp(x)) over one axis.
  (The unshifted form overflows to NaN for large x where ember.softmax does not.)
- SiLU: x * sigmoid(x). HardSwish: x * relu6(x + 3) / 6 (relu6 as clip, min/relu
  or min/max; /6 or *1/6 inside or outside the product) and x * hard_sigmoid(x)
  with alpha 1/6, beta 1/2.
- attention: softmax(scale * (Q @ K^T) + mask) @ V over rank-4 [B, H, S, D]
  operands, K^T made by a transpose, the scale any product of scalar constants
  on Q, on K^T (before or after its transpose) or on the scores, the mask
  optional -> ember.attention. A float mask `where(c, 0, -inf)` becomes the bool
  mask c; a term of it admitting key j <= query i (positions made by
  ember.range(0, n, 1) or a constant lower triangle; GPT-2's causal mask) becomes
  causal = true, as does a constant 0/-inf upper-triangle float mask.
  The softmax may be guarded as torch's SDPA export does, where(isnan(p), 0, p):
  ember.attention gives zero rows where every key is masked, which is what the
  guard computes. Without the guard those rows are NaN in the decomposed graph,
  so a mask is accepted only when no row can be fully masked: its values are
  provably finite, or it is a constant admitting a key in every row. The
  reshapes and transposes that split and merge the heads stay outside.
  Keras' MultiHeadAttention computes the scores and the weighted values with einsums in
  [B, T, N, H] (BTNH,BSNH->BNTS and BNTS,BSNH->BTNH); in that attention form (the q.k einsum
  feeding the softmax through scalings and an added mask, the softmax feeding the second
  einsum) they are first rewritten as transposes around matmuls, which the rule then reads.

recognize-recurrent (this module's second pass) makes recurrent cells unrolled over a sequence
one ember.lstm/gru/rnn each (passes/unrolled_recurrent.py states that rule's contract), then
merges a forward recurrent op and one on the reversed sequence into a bidirectional one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ember.ir.builder import Builder
from ember.ir.core import Location, Module, Operation, Value
from ember.ir.dims import Dim, DimExpr, mul
from ember.ir.opdef import EvalContext, Op, Pure
from ember.ir.shape_values import ShapeValue
from ember.ir.shape_values import evaluate as evaluate_shape
from ember.ir.types import TensorType
from ember.passes.manager import Pass, PassContext, option, register_pass
from ember.passes.rewrite import (
    Match,
    P,
    Pattern,
    Rule,
    RuleSet,
    apply_rules,
    known_value,
)
from ember.passes.unrolled_recurrent import UNROLLED


# -- pattern helpers ----------------------------------------------------------------------------------
@dataclass
class Capture(Pattern):
    """Match `pattern` and bind the matched value under `name`; a later `P.var(name)`
    then requires that very value (a value the chain reads twice, as exp in softmax)."""

    name: str
    pattern: Pattern

    def match(self, value: Value | None, m: Match) -> bool:
        if value is None:
            return False
        if self.name in m.bindings:
            return m.bindings[self.name] is value
        trial = m.copy()
        if not self.pattern.match(value, trial):
            return False
        m.bindings, m.ops = trial.bindings, trial.ops
        m.bindings[self.name] = value
        return True


@dataclass
class AnyOf(Pattern):
    """The first of `patterns` that matches."""

    patterns: tuple[Pattern, ...]

    def match(self, value: Value | None, m: Match) -> bool:
        for p in self.patterns:
            trial = m.copy()
            if p.match(value, trial):
                m.bindings, m.ops = trial.bindings, trial.ops
                return True
        return False


def either(*patterns: Pattern) -> AnyOf:
    return AnyOf(tuple(patterns))


def _rtol(dtype: np.dtype) -> float:
    """How far a constant may sit from the form's exact value: a few units of its type's rounding."""
    return max(1e-6, 4 * float(np.finfo(dtype).eps)) if dtype.kind == "f" else 0.0


def near(value: float, name: str | None = None) -> Pattern:
    """A float constant whose every element is `value` up to its type's rounding."""
    def ok(a: np.ndarray) -> bool:
        if a.size == 0 or a.dtype.kind != "f":
            return False
        return bool(np.all(np.abs(a.astype(np.float64) - value) <= _rtol(a.dtype) * abs(value)))
    return P.const(name, ok)


F32 = np.dtype(np.float32)


def _is_near(x: float, value: float, dtype: np.dtype = F32) -> bool:
    return abs(x - value) <= _rtol(dtype) * abs(value)


def scalar(name: str) -> Pattern:
    """A constant holding one element (a scalar of any rank)."""
    return P.const(name, lambda a: a.size == 1 and a.dtype.kind == "f" and bool(np.isfinite(a).all()))


def _tensor(v: Value) -> TensorType | None:
    t = v.type
    return t if isinstance(t, TensorType) and t.shape is not None else None


def _float(v: Value) -> bool:
    t = _tensor(v)
    return t is not None and t.dtype.is_float


def _users_within(v: Value, ops: Sequence[Operation]) -> bool:
    """Every use of `v` is by one of `ops` (not a function output or another op)."""
    return all(isinstance(u.user, Operation) and any(u.user is o for o in ops) for u in v.uses)


def _trailing_axes(axes: Sequence[int] | None, rank: int) -> int | None:
    """The first axis if `axes` are exactly the trailing axes first..rank-1, else None."""
    if axes is None or not axes:
        return None
    norm = sorted(a % rank for a in axes)
    if len(set(norm)) != len(norm) or norm != list(range(norm[0], rank)):
        return None
    return norm[0]


def _broadcasts_into(shape: Sequence[Dim], target: Sequence[Dim]) -> bool:
    """numpy's one-way broadcast of `shape` to `target`, decided exactly (no symbol guessing)."""
    return len(shape) <= len(target) and all(s == 1 or s == t for s, t in zip(reversed(shape), reversed(target)))


def _fused_loc(ops: Sequence[Operation]) -> Location:
    return Location.fused([o.loc for o in ops])


# -- values known at build time ----------------------------------------------------------------------
def _no_regions(block: object, args: object) -> tuple:
    raise RuntimeError("ops with regions are not evaluated here")


def _shape_value(v: Value | None, depth: int) -> ShapeValue | None:
    """`v` as a small integer tensor of dims (symbolic ones included), when shape code made it."""
    if v is None:
        return None
    known = known_value(v)
    if known is not None:
        return ShapeValue.of(known)
    op = v.defining_op
    if not isinstance(op, Op) or depth <= 0:
        return None
    return evaluate_shape(op, [_shape_value(o, depth - 1) for o in op.operands])


def static_value(v: Value | None, depth: int = 12) -> np.ndarray | None:
    """`v`'s value if it is computable now: a constant or weight, static dims read from a
    shape (`shape(q)[-1]` of a q whose other dims are symbolic), or a small pure op over
    such values (ViT's attention scale is sqrt(1 / sqrt(float(shape(q)[-1]))))."""
    if v is None:
        return None
    known = known_value(v)
    if known is not None or depth <= 0:
        return known
    op = v.defining_op
    t = _tensor(v)
    if not isinstance(op, Op) or Pure not in op.traits or op.regions or len(op.results) != 1 or t is None \
            or not t.is_static or int(np.prod(t.static_shape, dtype=np.int64)) > 64:
        return None
    if (t.dtype.is_int or t.dtype.kind == "bool") and t.rank <= 1:
        sv = _shape_value(v, depth)
        if sv is not None and sv.is_static:
            return sv.to_array(t.dtype.np_dtype)
    inputs = [static_value(o, depth - 1) if o is not None else None for o in op.operands]
    if any(a is None and o is not None for a, o in zip(inputs, op.operands)):
        return None
    fn = op.function
    ctx = EvalContext(env={}, module=fn.module if fn is not None else None, run_block=_no_regions)
    try:
        with np.errstate(all="ignore"):
            return np.asarray(op.evaluate(inputs, ctx)[0])
    except Exception:  # noqa: BLE001  (an op that fails on these values is left to fail at run time)
        return None


VIEWS = {"ember.reshape", "ember.squeeze", "ember.unsqueeze", "ember.flatten", "ember.expand", "ember.transpose",
         "ember.slice", "ember.identity", "ember.tile"}


def value_bounds(v: Value | None, depth: int = 16) -> tuple[float, float] | None:
    """Bounds [lo, hi] on every element of `v`, when its producers show them (constants,
    casts of bools and small integers, where, views, add/sub/mul/neg); None if unknown."""
    if v is None or depth <= 0:
        return None
    known = known_value(v)
    if known is not None:
        a = known.astype(np.float64)
        if a.size == 0 or not np.isfinite(a).all():
            return None
        return float(a.min()), float(a.max())
    op = v.defining_op
    if op is None:
        return None
    ins = op.operands
    if op.name == "ember.cast" and ins[0] is not None:
        src = _tensor(ins[0])
        if src is not None and src.dtype.kind == "bool":
            return 0.0, 1.0
        if src is not None and src.dtype.is_int and src.dtype.np_dtype.itemsize <= 4:
            info = np.iinfo(src.dtype.np_dtype)
            return float(info.min), float(info.max)
        return value_bounds(ins[0], depth - 1)
    if op.name in VIEWS:
        return value_bounds(ins[0], depth - 1)
    if op.name == "ember.where":
        a, b = value_bounds(ins[1], depth - 1), value_bounds(ins[2], depth - 1)
        return None if a is None or b is None else (min(a[0], b[0]), max(a[1], b[1]))
    if op.name == "ember.neg":
        a = value_bounds(ins[0], depth - 1)
        return None if a is None else (-a[1], -a[0])
    if op.name in ("ember.add", "ember.sub", "ember.mul"):
        a, b = value_bounds(ins[0], depth - 1), value_bounds(ins[1], depth - 1)
        if a is None or b is None:
            return None
        if op.name == "ember.add":
            return a[0] + b[0], a[1] + b[1]
        if op.name == "ember.sub":
            return a[0] - b[1], a[1] - b[0]
        products = [x * y for x in a for y in b]
        return min(products), max(products)
    return None


def provably_finite(v: Value) -> bool:
    """Every element of `v` is finite in its own type (bounds inside its range)."""
    t = _tensor(v)
    bounds = value_bounds(v)
    if t is None or bounds is None or not t.dtype.is_float:
        return False
    top = float(np.finfo(t.dtype.np_dtype).max) if t.dtype.np_dtype.kind == "f" else math.inf
    return -top < bounds[0] and bounds[1] < top


# -- GELU ---------------------------------------------------------------------------------------------
x = P.var("x")
HALF = near(0.5)
ONE = near(1.0)
ERF_ONE_PLUS = P.op("ember.add", P.op("ember.erf", either(
    P.op("ember.div", x, near(math.sqrt(2.0)), single_use=True),
    P.op("ember.mul", x, near(1.0 / math.sqrt(2.0)), single_use=True)), name="erf", single_use=True),
    ONE, single_use=True)
CUBE = either(P.op("ember.pow", x, P.splat(3), single_use=True),
              P.op("ember.mul", P.op("ember.mul", x, x, single_use=True), x, single_use=True))
TANH_ONE_PLUS = P.op("ember.add", P.op("ember.tanh", P.op(
    "ember.mul", P.op("ember.add", x, P.op("ember.mul", CUBE, near(0.044715), single_use=True), single_use=True),
    near(math.sqrt(2.0 / math.pi)), single_use=True), name="tanh", single_use=True), ONE, single_use=True)
ERFC_NEG = P.op("ember.sub", ONE, P.op("ember.erf", either(
    P.op("ember.mul", P.op("ember.neg", x, single_use=True), near(1.0 / math.sqrt(2.0)), single_use=True),
    P.op("ember.mul", x, near(-1.0 / math.sqrt(2.0)), single_use=True)), name="erf", single_use=True),
    single_use=True)  # erfc(-x / sqrt 2) = 1 + erf(x / sqrt 2), TensorFlow's tf.nn.gelu (Keras 3)
PHI = either(ERF_ONE_PLUS, TANH_ONE_PLUS, ERFC_NEG)  # 2 * Phi(x), exactly or by the tanh approximation


def gelu(m: Match, b: Builder) -> Value | None:
    """0.5 * x * (1 + erf(x / sqrt 2)) = gelu(x); the tanh form is gelu{approximate = tanh}."""
    if not _float(m.x):
        return None
    return b.gelu(m.x, approximate="tanh" if "tanh" in m.bindings else "none")


GELU = RuleSet("gelu", [
    Rule("gelu", P.op("ember.mul", P.op("ember.mul", x, PHI, single_use=True), HALF), gelu,
         doc="(x * (1 + erf(x/sqrt2))) * 0.5 = gelu(x); also the tanh form"),
    Rule("gelu-half-x", P.op("ember.mul", P.op("ember.mul", x, HALF, single_use=True), PHI), gelu,
         doc="(0.5 * x) * (1 + erf(x/sqrt2)) = gelu(x); also the tanh form"),
    Rule("gelu-half-phi", P.op("ember.mul", x, P.op("ember.mul", HALF, PHI, single_use=True)), gelu,
         doc="x * (0.5 * (1 + erf(x/sqrt2))) = gelu(x); also the tanh form"),
])


# -- SiLU, HardSwish ------------------------------------------------------------------------------------
def silu(m: Match, b: Builder) -> Value | None:
    return b.silu(m.x) if _float(m.x) else None


ADD3 = P.op("ember.add", x, P.splat(3), single_use=True)
RELU6 = either(
    P.op("ember.clip", ADD3, P.splat(0), P.splat(6), single_use=True),
    P.op("ember.min", P.op("ember.relu", ADD3, single_use=True), P.splat(6), single_use=True),
    P.op("ember.min", P.op("ember.max", ADD3, P.splat(0), single_use=True), P.splat(6), single_use=True))
SIXTH = either(P.op("ember.div", RELU6, P.splat(6), single_use=True),
               P.op("ember.mul", RELU6, near(1.0 / 6.0), single_use=True))


def hardswish(m: Match, b: Builder) -> Value | None:
    return b.hardswish(m.x) if _float(m.x) else None


def hardswish_outer(m: Match, b: Builder) -> Value | None:
    """(x * relu6(x + 3)) / 6, or * 1/6."""
    c = float(m.c.reshape(-1)[0])
    want = 6.0 if m.root.name == "ember.div" else 1.0 / 6.0
    if not _is_near(c, want, m.c.dtype) or not bool(np.all(m.c == m.c.reshape(-1)[0])):
        return None
    return hardswish(m, b)


def hardswish_hard_sigmoid(m: Match, b: Builder) -> Value | None:
    """x * hard_sigmoid(x; 1/6, 1/2) = hardswish(x)."""
    a = m.hs.attributes
    if not (_is_near(a["alpha"], 1.0 / 6.0) and a["beta"] == 0.5):
        return None
    return hardswish(m, b)


ACTIVATIONS = RuleSet("activations", [
    Rule("silu", P.op("ember.mul", x, P.op("ember.sigmoid", x, single_use=True)), silu, doc="x * sigmoid(x) = silu(x)"),
    Rule("hardswish", P.op("ember.mul", x, SIXTH), hardswish, doc="x * (relu6(x + 3) / 6) = hardswish(x)"),
    Rule("hardswish-outer-scale", P.op(("ember.div", "ember.mul"), P.op("ember.mul", x, RELU6, single_use=True),
                                       P.const("c", lambda a: a.size > 0 and a.dtype.kind == "f")),
         hardswish_outer, doc="(x * relu6(x + 3)) / 6 = hardswish(x)"),
    Rule("hardswish-hard-sigmoid", P.op("ember.mul", x, P.op("ember.hard_sigmoid", x, name="hs", single_use=True)),
         hardswish_hard_sigmoid, doc="x * hard_sigmoid(x; 1/6, 1/2) = hardswish(x)"),
])


# -- softmax ----------------------------------------------------------------------------------------------
def _one_axis(op: Operation, rank: int) -> int | None:
    axes = op.attributes["axes"]
    if axes is None or len(axes) != 1 or not op.attributes["keepdims"]:
        return None
    return axes[0] % rank


def softmax(m: Match, b: Builder) -> Value | None:
    """exp(x - max(x)) / sum(exp(...)) = softmax(x), all over one axis (also unshifted)."""
    t = _tensor(m.x)
    if t is None or not t.dtype.is_float or not _users_within(m.e, [m.root, m.sum]):
        return None
    axis = _one_axis(m.sum, t.rank)
    if axis is None or ("max" in m.bindings and _one_axis(m.max, t.rank) != axis):
        return None
    return b.softmax(m.x, axis=axis - t.rank)


EXP_SUM = P.op("ember.reduce_sum", P.var("e"), name="sum", single_use=True)
SOFTMAX = RuleSet("softmax", [
    Rule("softmax", P.op("ember.div", Capture("e", P.op("ember.exp", P.op(
        "ember.sub", x, P.op("ember.reduce_max", x, name="max", single_use=True), single_use=True))), EXP_SUM),
        softmax, benefit=2, doc="exp(x - max(x)) / sum(exp(x - max(x))) = softmax(x)"),
    Rule("softmax-unshifted", P.op("ember.div", Capture("e", P.op("ember.exp", x)), EXP_SUM), softmax,
         doc="exp(x) / sum(exp(x)) = softmax(x)"),
])


# -- LayerNorm, RMSNorm --------------------------------------------------------------------------------------
def _square(name: str) -> Pattern:
    v = P.var(name)
    return either(P.op("ember.pow", v, P.splat(2), name="sq"), P.op("ember.mul", v, v, name="sq"))


def _inv_sqrt(denom: Pattern) -> Pattern:
    """1 / sqrt(denom), as rsqrt or reciprocal(sqrt)."""
    return either(P.op("ember.rsqrt", denom, single_use=True),
                  P.op("ember.reciprocal", P.op("ember.sqrt", denom, single_use=True), single_use=True))


def _ones(dtype: np.dtype, b: Builder) -> Value:
    return b.constant(np.ones((1,), dtype))


def _norm_params(m: Match, stat: Operation) -> tuple[int, float] | None:
    """(axis, epsilon) when the statistic is a keepdims mean over trailing axes and eps a scalar >= 0."""
    t = _tensor(m.x)
    if t is None or not t.dtype.is_float or not stat.attributes["keepdims"]:
        return None
    first = _trailing_axes(stat.attributes["axes"], t.rank)
    eps = float(str(m.eps.reshape(-1)[0]))  # the shortest decimal of the constant's own type
    if first is None or not eps >= 0:
        return None
    return first - t.rank, eps


def layer_norm(m: Match, b: Builder) -> Value | None:
    """(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) = layer_norm(x, 1), over trailing axes."""
    params = _norm_params(m, m.var)
    if params is None or m.mean.attributes["axes"] is None or m.var.attributes["axes"] is None:
        return None
    t = _tensor(m.x)
    assert t is not None  # _norm_params checked it

    def axes(op: Operation) -> list[int]:
        return sorted(a % t.rank for a in op.attributes["axes"])

    if axes(m.mean) != axes(m.var) or not m.mean.attributes["keepdims"] or not _users_within(m.d, [m.sq, m.root]):
        return None
    axis, eps = params
    return b.layer_norm(m.x, _ones(t.dtype.np_dtype, b), None, axis=axis, epsilon=eps)


def rms_norm(m: Match, b: Builder) -> Value | None:
    """x / sqrt(mean(x^2) + eps) = rms_norm(x, 1), over trailing axes."""
    params = _norm_params(m, m.var)
    if params is None:
        return None
    axis, eps = params
    return b.rms_norm(m.x, _ones(m.x.type.dtype.np_dtype, b), axis=axis, epsilon=eps)


def _affine_operand(v: Value, op: Operation, b: Builder) -> Value | None:
    """`v` shaped to broadcast one way into `op`'s normalized shape (leading 1s dropped), or None."""
    t, xt = _tensor(v), _tensor(op.x)  # type: ignore[attr-defined]
    if t is None or xt is None or t.dtype != xt.dtype:
        return None
    normalized = xt.shape[op.attributes["axis"] % xt.rank:]
    shape = t.shape
    if len(shape) > len(normalized):
        extra = len(shape) - len(normalized)
        if any(d != 1 for d in shape[:extra]):
            return None
        shape = shape[extra:]
        if not _broadcasts_into(shape, normalized):
            return None
        return b.reshape(v, shape=shape)
    return v if _broadcasts_into(shape, normalized) else None


def _unit_scale(op: Operation) -> bool:
    scale = known_value(op.scale)  # type: ignore[attr-defined]
    return scale is not None and scale.size > 0 and bool(np.all(scale == 1))


def fold_norm_scale(m: Match, b: Builder) -> Value | None:
    """norm(x, 1) * w = norm(x, w) for w over the normalized axes."""
    n = m.norm
    if not _unit_scale(n) or (n.name == "ember.layer_norm" and n.bias is not None):
        return None
    w = _affine_operand(m.w, n, b)
    if w is None:
        return None
    attrs = dict(n.attributes)
    if n.name == "ember.layer_norm":
        return b.layer_norm(n.x, w, None, **attrs)
    return b.rms_norm(n.x, w, **attrs)


def fold_norm_bias(m: Match, b: Builder) -> Value | None:
    """layer_norm(x, s) + c = layer_norm(x, s, c) for c over the normalized axes."""
    n = m.norm
    if n.bias is not None:
        return None
    c = _affine_operand(m.c, n, b)
    if c is None:
        return None
    return b.layer_norm(n.x, n.scale, c, **n.attributes)


MEAN = P.op("ember.reduce_mean", x, name="mean", single_use=True)
CENTERED = Capture("d", P.op("ember.sub", x, MEAN))
LN_DENOM = P.op("ember.add", P.op("ember.reduce_mean", _square("d"), name="var", single_use=True), scalar("eps"),
                single_use=True)
RMS_DENOM = P.op("ember.add", P.op("ember.reduce_mean", _square("x"), name="var", single_use=True), scalar("eps"),
                 single_use=True)

def layer_norm_affine(m: Match, b: Builder) -> Value | None:
    """x * inv + (beta - mean * inv), inv = rsqrt(var + eps) [* gamma]: Keras' LayerNormalization
    (and batch-norm-style moments) = layer_norm(x, 1) [* gamma] + beta, which norm-scale and
    layer-norm-bias then fold in."""
    params = _norm_params(m, m.var)
    if params is None or m.mean.attributes["axes"] is None or m.var.attributes["axes"] is None:
        return None
    t = _tensor(m.x)
    assert t is not None
    if sorted(a % t.rank for a in m.mean.attributes["axes"]) != sorted(a % t.rank for a in m.var.attributes["axes"]):
        return None
    if not all(_users_within(m.bindings[k], m.ops) for k in ("mu", "d", "inv")):
        return None
    axis, eps = params
    y = b.layer_norm(m.x, _ones(t.dtype.np_dtype, b), None, axis=axis, epsilon=eps)
    if "gamma" in m.bindings:
        y = b.mul(y, m.gamma)
    return b.add(y, m.beta)


MU = Capture("mu", P.op("ember.reduce_mean", x, name="mean"))
MOMENT_D = Capture("d", P.op("ember.sub", x, MU))
MOMENT_DENOM = P.op("ember.add", P.op("ember.reduce_mean", either(
    P.op("ember.mul", MOMENT_D, MOMENT_D, name="sq"), P.op("ember.pow", MOMENT_D, P.splat(2), name="sq")),
    name="var", single_use=True), scalar("eps"), single_use=True)
INV_STD = Capture("inv", either(P.op("ember.mul", _inv_sqrt(MOMENT_DENOM), P.var("gamma")), _inv_sqrt(MOMENT_DENOM)))
SHIFT = either(P.op("ember.add", P.op("ember.mul", P.op("ember.neg", MU, single_use=True), INV_STD, single_use=True),
                    P.var("beta"), single_use=True),
               P.op("ember.sub", P.var("beta"), P.op("ember.mul", MU, INV_STD, single_use=True), single_use=True))

NORMS = RuleSet("norms", [
    Rule("layer-norm-affine", P.op("ember.add", P.op("ember.mul", x, INV_STD, single_use=True), SHIFT),
         layer_norm_affine, benefit=3,
         doc="x * inv + (beta - mean * inv), inv = rsqrt(var + eps) * gamma = layer_norm(x, gamma, beta)"),
    Rule("layer-norm", P.op("ember.div", CENTERED, P.op("ember.sqrt", LN_DENOM, single_use=True)), layer_norm,
         benefit=2, doc="(x - mean) / sqrt(var + eps) = layer_norm(x, 1)"),
    Rule("layer-norm-rsqrt", P.op("ember.mul", CENTERED, _inv_sqrt(LN_DENOM)), layer_norm, benefit=2,
         doc="(x - mean) * rsqrt(var + eps) = layer_norm(x, 1)"),
    Rule("rms-norm", P.op("ember.mul", x, _inv_sqrt(RMS_DENOM)), rms_norm,
         doc="x * rsqrt(mean(x^2) + eps) = rms_norm(x, 1)"),
    Rule("rms-norm-div", P.op("ember.div", x, P.op("ember.sqrt", RMS_DENOM, single_use=True)), rms_norm,
         doc="x / sqrt(mean(x^2) + eps) = rms_norm(x, 1)"),
    Rule("norm-scale", P.op("ember.mul", P.op(("ember.layer_norm", "ember.rms_norm"), name="norm", single_use=True,
                                              any_operands=True), P.var("w")), fold_norm_scale,
         doc="norm(x, 1) * w = norm(x, w)"),
    Rule("layer-norm-bias", P.op("ember.add", P.op("ember.layer_norm", name="norm", single_use=True,
                                                   any_operands=True), P.var("c")), fold_norm_bias,
         doc="layer_norm(x, s) + c = layer_norm(x, s, c)"),
])


# -- attention ------------------------------------------------------------------------------------------------
def _scalar_factor(v: Value | None) -> float | None:
    a = static_value(v)
    if a is None or a.size != 1 or a.dtype.kind != "f" or not np.isfinite(a).all():
        return None
    return float(a.reshape(-1)[0])


def _peel_scale(v: Value, single_use: bool) -> tuple[Value, float, list[Operation]]:
    """v = base * f through muls and divisions by scalar constants that do not broadcast v."""
    factor, ops = 1.0, []
    while True:
        op = v.defining_op
        if op is None or op.name not in ("ember.mul", "ember.div") or (single_use and len(v.uses) != 1):
            return v, factor, ops
        a, c = op.operands
        orders = [(a, c), (c, a)] if op.name == "ember.mul" else [(a, c)]
        for base, const in orders:
            f = _scalar_factor(const)
            if f is not None and base is not None and base.type == v.type and (op.name == "ember.mul" or f != 0):
                factor = factor * f if op.name == "ember.mul" else factor / f
                ops.append(op)
                v = base
                break
        else:
            return v, factor, ops


@dataclass
class Scores:
    """scale * q @ k^T + mask, with k in [B, H, S, D] (the transpose undone)."""

    q: Value
    kt: Value  # the transposed key, k^T
    perm: tuple[int, ...]  # of the transpose that made it, from kt's source
    k_source: Value
    scale: float
    mask: Value | None
    ops: list[Operation]


def _split_mask(s: Value) -> tuple[Value, Value | None, list[Operation]]:
    op = s.defining_op
    if op is None or op.name != "ember.add" or len(s.uses) != 1:
        return s, None, []
    for scores, mask in (op.operands, op.operands[::-1]):
        base = _peel_scale(scores, single_use=True)[0]  # type: ignore[arg-type]
        if base.defining_op is not None and base.defining_op.name == "ember.matmul":
            return scores, mask, [op]  # type: ignore[return-value]
    return s, None, []


def _scores(s: Value) -> Scores | None:
    s, mask, ops = _split_mask(s)
    mm, post, post_ops = _peel_scale(s, single_use=True)
    op = mm.defining_op
    if op is None or op.name != "ember.matmul" or len(mm.uses) != 1:
        return None
    q, q_factor, q_ops = _peel_scale(op.operands[0], single_use=False)  # type: ignore[arg-type]
    kt, k_factor, k_ops = _peel_scale(op.operands[1], single_use=False)  # type: ignore[arg-type]
    tr = kt.defining_op
    if tr is None or tr.name != "ember.transpose":
        return None
    source = tr.operands[0]
    st = _tensor(source)  # type: ignore[arg-type]
    if st is None or st.rank != 4:
        return None
    perm = tuple(tr.attributes["perm"] or (3, 2, 1, 0))
    source, src_factor, src_ops = _peel_scale(source, single_use=False)  # type: ignore[arg-type]
    scale = post * q_factor * k_factor * src_factor
    return Scores(q, kt, perm, source, scale, mask,
                  ops + post_ops + [op] + q_ops + k_ops + [tr] + src_ops)


def _bool_mask(mask: Value) -> Value | None:
    """c for where(c, 0, -inf): the keys it admits."""
    op = mask.defining_op
    if op is None or op.name != "ember.where":
        return None
    zero, ninf = known_value(op.operands[1]), known_value(op.operands[2])
    if zero is None or ninf is None or zero.size == 0 or ninf.size == 0:
        return None
    if not (np.all(zero == 0) and np.all(np.isneginf(ninf.astype(np.float64)))):
        return None
    return op.operands[0]


def _unguarded_ok(mask: Value) -> bool:
    """No row of softmax(scores + mask) can be all -inf: the mask is finite, or a constant
    admitting a key in each row (a causal -inf mask admits key 0)."""
    if provably_finite(mask):
        return True
    a = known_value(mask)
    if a is None or a.dtype.kind != "f" or a.ndim == 0:
        return False
    a = a.astype(np.float64)
    return not np.isnan(a).any() and not np.isposinf(a).any() and bool(np.isfinite(a).any(axis=-1).all())


def _conjuncts(v: Value) -> list[Value]:
    """The terms of an and-tree of bools, without constant trues."""
    op = v.defining_op
    if op is not None and op.name == "ember.and":
        return [t for operand in op.operands for t in _conjuncts(operand)]  # type: ignore[arg-type]
    a = known_value(v)
    return [] if a is not None and a.size > 0 and a.dtype == np.bool_ and bool(a.all()) else [v]


def _position(v: Value) -> tuple[int, Dim] | None:
    """(axis, n) when `v` is 0, 1, ..., n-1 laid along one axis (counted from the end) of
    size-1 axes: ember.range(0, n, 1) or such a constant, through reshapes and unsqueezes."""
    t = _tensor(v)
    src = v
    while src.defining_op is not None and src.defining_op.name in ("ember.reshape", "ember.unsqueeze"):
        src = src.defining_op.operands[0]  # type: ignore[assignment]
    st = _tensor(src)
    if t is None or st is None or st.rank != 1 or st.shape[0] == 1:
        return None
    n = st.shape[0]
    placed = [i for i, d in enumerate(t.shape) if d != 1]
    if len(placed) != 1 or t.shape[placed[0]] != n:
        return None
    a = known_value(src)
    if a is not None:
        ok = a.dtype.kind in "iu" and np.array_equal(a, np.arange(a.size))
    else:
        op = src.defining_op
        ok = op is not None and op.name == "ember.range" and isinstance(n, (int, DimExpr)) \
            and all(_equals(static_value(op.operands[i]), want) for i, want in ((0, 0), (2, 1)))
    return (placed[0] - t.rank, n) if ok else None


def _equals(a: np.ndarray | None, value: float) -> bool:
    return a is not None and a.size == 1 and float(a.reshape(-1)[0]) == value


def _is_causal(term: Value, sq: Dim, skv: Dim) -> bool:
    """`term` admits exactly the keys j <= i of query i (ember.attention's causal, top-left):
    a constant lower triangle, or positions compared, j <= i or i >= j."""
    a = known_value(term)
    if a is not None:
        if a.dtype != np.bool_ or a.ndim < 2 or any(d != 1 for d in a.shape[:-2]) or a.shape[-2:] != (sq, skv):
            return False
        return bool(np.array_equal(a.reshape(a.shape[-2:]), np.tri(sq, skv, dtype=bool)))  # type: ignore[arg-type]
    op = term.defining_op
    if op is None or op.name not in ("ember.less_equal", "ember.greater_equal"):
        return False
    keys, queries = op.operands if op.name == "ember.less_equal" else op.operands[::-1]
    return _position(keys) == (-1, skv) and _position(queries) == (-2, sq)  # type: ignore[arg-type]


def _causal_float(mask: Value, sq: Dim, skv: Dim) -> bool:
    """A constant float mask of 0 where j <= i and -inf elsewhere."""
    a = known_value(mask)
    if a is None or a.dtype.kind != "f" or a.ndim < 2 or any(d != 1 for d in a.shape[:-2]) \
            or a.shape[-2:] != (sq, skv):
        return False
    tri = np.tri(sq, skv, dtype=bool)  # type: ignore[arg-type]
    a = a.reshape(a.shape[-2:]).astype(np.float64)
    return bool(np.all(a[tri] == 0) and np.all(np.isneginf(a[~tri])))


def _split_causal(mask: Value, sq: Dim, skv: Dim, b: Builder) -> tuple[Value | None, bool]:
    """The mask less its causal part, and whether there was one."""
    if mask.type.dtype.kind != "bool":  # type: ignore[attr-defined]
        return (None, True) if _causal_float(mask, sq, skv) else (mask, False)
    terms = _conjuncts(mask)
    rest = [t for t in terms if not _is_causal(t, sq, skv)]
    if len(rest) == len(terms):
        return mask, False
    if not rest:
        return None, True
    out = rest[0]
    for t in rest[1:]:
        out = b.op("ember.and", out, t)
    return out, True


def attention(m: Match, b: Builder) -> Value | None:
    """softmax(scale * q @ k^T + mask) @ v = attention(q, k, v, mask){scale}."""
    guarded = "p" in m.bindings
    sm = m.sm
    if guarded and not _users_within(m.p, [m.nan.defining_op, m.guard]):  # the softmax feeds only the guard
        return None
    if sm.attributes["axis"] not in (-1, 3):
        return None
    sc = _scores(sm.operands[0])
    if sc is None:
        return None
    qt, ktt, vt = _tensor(sc.q), _tensor(sc.kt), _tensor(m.v)
    if qt is None or ktt is None or vt is None or not qt.dtype.is_float or any(
            t.rank != 4 or t.dtype != qt.dtype for t in (qt, ktt, vt)):
        return None
    k_shape = (ktt.shape[0], ktt.shape[1], ktt.shape[3], ktt.shape[2])
    heads_ok = qt.shape[1] == k_shape[1] or (k_shape[1] == 1 and vt.shape[1] == 1)
    if not (qt.shape[0] == k_shape[0] == vt.shape[0] and heads_ok and k_shape[1] == vt.shape[1]
            and k_shape[2] == vt.shape[2] and qt.shape[3] == k_shape[3]):
        return None
    mask, extra = sc.mask, []
    if mask is not None:
        if not guarded and not _unguarded_ok(mask):
            return None  # a row masked out entirely: NaN here, zeros from ember.attention
        bool_mask = _bool_mask(mask)
        if bool_mask is not None:
            extra.append(mask.defining_op)
            mask = bool_mask
        mt = _tensor(mask)
        scores_shape = (qt.shape[0], qt.shape[1], qt.shape[2], k_shape[2])
        if mt is None or not (mt.dtype.kind == "bool" or mt.dtype == qt.dtype) \
                or not _broadcasts_into(mt.shape, scores_shape):
            return None
    causal = False
    if mask is not None:
        mask, causal = _split_causal(mask, qt.shape[2], k_shape[2], b)
    p = sc.perm
    k_perm = (p[0], p[1], p[3], p[2])
    key = sc.k_source if k_perm == (0, 1, 2, 3) else b.transpose(sc.k_source, perm=k_perm)
    matched = [m.root, sm, *([m.nan.defining_op, m.guard] if guarded else []), *sc.ops, *extra]
    loc = _fused_loc(matched)
    return b.attention(sc.q, key, m.v, mask, None, scale=sc.scale, causal=causal, loc=loc)[0]


def _einsum_product(op: Operation) -> tuple[list[int], list[int], list[int]] | None:
    """For a two-operand einsum that is a batched matrix product (no ellipsis, no repeated
    label, exactly one label kept from each operand alone and one summed): the transposes
    that put a in [batch..., m, k] and b in [batch..., k, n] (batch labels in output order),
    and the one from [batch..., m, n] to the output. None for any other einsum."""
    eq = op.attributes["equation"].replace(" ", "")
    if "..." in eq or "->" not in eq or len(op.operands) != 2:
        return None
    ins, out = eq.split("->")
    terms = ins.split(",")
    if len(terms) != 2:
        return None
    a, c = terms
    if any(len(set(t)) != len(t) for t in (a, c, out)):
        return None
    batch = [x for x in out if x in a and x in c]
    free_a = [x for x in out if x in a and x not in c]
    free_b = [x for x in out if x in c and x not in a]
    summed = [x for x in a if x in c and x not in out]
    if len(free_a) != 1 or len(free_b) != 1 or len(summed) != 1 or \
            set(a) != set(batch + free_a + summed) or set(c) != set(batch + free_b + summed):
        return None
    perm_a = [a.index(x) for x in batch + free_a + summed]
    perm_b = [c.index(x) for x in batch + summed + free_b]
    product = batch + free_a + free_b
    perm_out = [product.index(x) for x in out]
    return perm_a, perm_b, perm_out


def _as_matmul(op: Operation, b: Builder) -> Value | None:
    """The einsum as transposes around one ember.matmul (the form the attention rule reads)."""
    perms = _einsum_product(op)
    if perms is None:
        return None
    perm_a, perm_b, perm_out = perms
    x, y = op.operands
    if perm_a != sorted(perm_a):
        x = b.transpose(x, perm=tuple(perm_a))
    if perm_b != sorted(perm_b):
        y = b.transpose(y, perm=tuple(perm_b))
    out = b.matmul(x, y)
    return out if perm_out == sorted(perm_out) else b.transpose(out, perm=tuple(perm_out))


def _feeds_softmax(op: Operation) -> bool:
    """Does the einsum's result reach a softmax over its last axis through single uses of
    scalings and an added mask (the attention scores)?"""
    v = op.results[0]
    for _ in range(4):
        if len(v.uses) != 1 or not isinstance(v.uses[0].user, Operation):
            return False
        user = v.uses[0].user
        if user.name == "ember.softmax":
            return user.attributes["axis"] in (-1, v.type.rank - 1)  # type: ignore[attr-defined]
        if user.name not in ("ember.mul", "ember.div", "ember.add"):
            return False
        v = user.results[0]
    return False


def einsum_scores(m: Match, b: Builder) -> Value | None:
    """q . k einsum feeding a softmax (Keras' MultiHeadAttention: BTNH,BSNH->BNTS) as
    transpose(q) @ transpose(k), so that the attention rule sees its form."""
    if not _feeds_softmax(m.root) or _tensor(m.root.results[0]) is None or m.root.results[0].type.rank != 4:
        return None
    return _as_matmul(m.root, b)


def _scores_product(v: Value, depth: int = 4) -> bool:
    """Is `v` a q.k product (matmul or einsum), possibly scaled and with a mask added, as the
    attention rule reads scores? (A where-masked softmax, say, is not.)"""
    op = v.defining_op
    if op is None or depth == 0:
        return False
    if op.name in ("ember.matmul", "ember.einsum"):
        return True
    if op.name in ("ember.mul", "ember.div", "ember.add"):
        return any(_scores_product(x, depth - 1) for x in op.operands if x is not None)
    return False


def einsum_values(m: Match, b: Builder) -> Value | None:
    """softmax(scores) . v einsum (BNTS,BSNH->BTNH) as transpose(softmax @ transpose(v)),
    when the scores are of the attention rule's form."""
    perms = _einsum_product(m.root)
    if perms is None or perms[0] != [0, 1, 2, 3] or _tensor(m.root.results[0]) is None \
            or m.root.results[0].type.rank != 4 or not _scores_product(m.sm.operands[0]):
        return None
    return _as_matmul(m.root, b)


SOFTMAX_OF_SCORES = P.op("ember.softmax", P.var("s"), name="sm")
ATTENTION = RuleSet("attention", [
    Rule("attention-einsum-scores", P.op("ember.einsum", any_operands=True), einsum_scores,
         doc="an einsum batched product feeding a softmax = transposes and a matmul (for the attention rule)"),
    Rule("attention-einsum-values", P.op("ember.einsum", P.op("ember.softmax", any_operands=True, name="sm",
                                                              single_use=True), P.var("v")), einsum_values,
         doc="an einsum of softmax(scores) with values = a matmul with transposes (for the attention rule)"),
    Rule("attention", P.op("ember.matmul", P.op("ember.softmax", P.var("s"), name="sm", single_use=True),
                           P.var("v")), attention,
         doc="softmax(scale * q @ k^T + mask) @ v = attention(q, k, v, mask)"),
    Rule("attention-nan-guarded", P.op("ember.matmul", P.op(
        "ember.where", Capture("nan", P.op("ember.isnan", Capture("p", SOFTMAX_OF_SCORES), single_use=True)),
        P.splat(0), P.var("p"), name="guard", single_use=True), P.var("v")), attention,
        doc="where(isnan(p), 0, p) @ v with p = softmax(scores): attention, whose fully masked rows are 0"),
])

# -- bidirectional recurrent layers -------------------------------------------------------------------
RECURRENT_OPS = ("ember.rnn", "ember.gru", "ember.lstm")
_PAIRED = {"ember.rnn": ("b", "initial_h"), "ember.gru": ("b", "initial_h"),
           "ember.lstm": ("b", "initial_h", "initial_c", "p")}  # optional operands stacked per direction


def _time_reversal(op: Operation | None) -> Value | None:
    """The input of a slice that reverses axis 0 entirely (x[::-1]), else None."""
    if op is None or op.name != "ember.slice":
        return None
    a = op.attributes
    if list(a["axes"] or [0]) != [0] or list(a["steps"] or []) != [-1] or list(a["starts"]) != [-1]:
        return None
    end, size = a["ends"][0], _tensor(op.operands[0]).shape[0]  # type: ignore[union-attr]
    if not isinstance(end, int) or not (end <= -(2 ** 31) or isinstance(size, int) and end <= -(size + 1)):
        return None
    return op.operands[0]


def bidirectional(m: Match, b: Builder) -> Value | None:
    fwd, bwd = m.fwd, m.bwd
    if fwd.name != bwd.name or fwd is bwd or m.cat.attributes["axis"] not in (2, -1):
        return None
    if m.fwd_seq.operands[0] is not fwd.results[0] or m.bwd_seq.operands[0] is not bwd.results[0]:
        return None  # (the squeezes read the final states, not the sequences)
    if any(list(q.attributes["axes"]) != [1] for q in (m.fwd_seq, m.bwd_seq)):
        return None
    attrs = {k: v for k, v in fwd.attributes.items() if k != "direction"}
    if attrs != {k: v for k, v in bwd.attributes.items() if k != "direction"} or attrs.get("batch_first") \
            or fwd.attributes["direction"] != "forward" or bwd.attributes["direction"] != "forward":
        return None
    if _time_reversal(bwd.operands[0].defining_op) is not fwd.operands[0] or _time_reversal(m.rev) is None:
        return None
    if fwd.sequence_lens is not None or bwd.sequence_lens is not None \
            or any(r.has_uses for op in (fwd, bwd) for r in op.results[1:]):
        return None
    stacked = {}
    for name in ("w", "r", *_PAIRED[fwd.name]):
        a, c = getattr(fwd, name), getattr(bwd, name)
        if (a is None) != (c is None) or a is not None and _tensor(a) != _tensor(c):
            return None
        stacked[name] = None if a is None else b.op("ember.concat", a, c, axis=0)
    operands = [fwd.operands[0], stacked["w"], stacked["r"], stacked["b"], None,
                *(stacked[n] for n in _PAIRED[fwd.name][1:])]
    results = b.op(fwd.name, *operands, direction="bidirectional", **attrs)
    y = results[0]  # (S, 2, N, H)
    seq, _, batch, hidden = _tensor(y).shape  # type: ignore[union-attr,misc]
    both = b.op("ember.transpose", y, perm=(0, 2, 1, 3))
    return b.op("ember.reshape", both, shape=(seq, batch, mul(2, hidden)))


RECURRENT = RuleSet("recurrent", [
    Rule("bidirectional-recurrent", P.op("ember.concat", P.op("ember.squeeze", P.op(
        RECURRENT_OPS, name="fwd", any_operands=True), name="fwd_seq", single_use=True), P.op(
        "ember.slice", P.op("ember.squeeze", P.op(RECURRENT_OPS, name="bwd", any_operands=True), name="bwd_seq",
                            single_use=True), name="rev", single_use=True), name="cat"), bidirectional,
         doc="concat(rnn(x), reverse(rnn(reverse(x)))) = one bidirectional rnn (Keras' Bidirectional)"),
])

RECOGNIZE = GELU + ACTIVATIONS + SOFTMAX + NORMS + ATTENTION


@register_pass("recognize-patterns")
@dataclass(frozen=True)
class RecognizePatterns(Pass):
    """Replace the decomposed GELU, LayerNorm, RMSNorm, softmax, SiLU, HardSwish and
    attention forms by their single ops (see the module docstring for the forms)."""

    max_rewrites: int = option(0, min=0)  # 0: the driver's limit, proportional to the module

    def run(self, module: Module, ctx: PassContext) -> bool:
        fired = apply_rules(module, RECOGNIZE, max_rewrites=self.max_rewrites or None)
        for rule, n in fired.items():
            ctx.count(self.name, rule, n)
        return bool(fired)


@register_pass("recognize-recurrent")
@dataclass(frozen=True)
class RecognizeRecurrent(Pass):
    """Replace recurrent cells unrolled over a sequence by one recurrent op each (UNROLLED, see
    passes/unrolled_recurrent.py), then merge a forward recurrent op and one run on the reversed
    sequence, concatenated, into one bidirectional op. It runs after layout-nhwc and
    canonicalize, which cancel the transposes that Keras' time-major loops put between the two."""

    def run(self, module: Module, ctx: PassContext) -> bool:
        fired = apply_rules(module, UNROLLED) + apply_rules(module, RECURRENT)
        for rule, n in fired.items():
            ctx.count(self.name, rule, n)
        return bool(fired)


__all__ = [
    "ACTIVATIONS",
    "ATTENTION",
    "GELU",
    "NORMS",
    "RECOGNIZE",
    "RECURRENT",
    "SOFTMAX",
    "RecognizePatterns",
    "RecognizeRecurrent",
    "provably_finite",
    "static_value",
    "value_bounds",
]
