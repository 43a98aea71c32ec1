"""canonicalize: algebraic identities, view chains, no-op data movement, static shapes.

Every rule states its identity; the driver checks that the replacement has the
type of what it replaces, so `x + 0 -> x` never fires where the zero would
have broadcast x to a larger shape. Later passes rely on the forms this
leaves: no identity ops or casts, one reshape where a chain of views was,
transposes composed, shape queries of static dims as constants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.ir.builder import Builder
from ember.ir.core import Module, Value
from ember.ir import shape_values
from ember.ir.dims import Unknown
from ember.ir.shape_values import ShapeValue
from ember.ir.types import TensorType
from ember.passes.dce import dead_code
from ember.passes.manager import Pass, PassContext, option, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_rules, known_value

x = P.var("x")


def _same(m: Match, b: Builder) -> Value:
    return m.x


def _tensor(v: Value) -> TensorType | None:
    return v.type if isinstance(v.type, TensorType) and v.type.shape is not None else None


# -- transposes -----------------------------------------------------------------------------------
def _perm(op: object, rank: int) -> tuple[int, ...]:
    perm = op.attributes["perm"]  # type: ignore[attr-defined]
    return tuple(perm) if perm is not None else tuple(reversed(range(rank)))


def compose_transposes(m: Match, b: Builder) -> Value | None:
    """transpose(transpose(x, p), q) = transpose(x, p[q]); the identity perm gives x."""
    t = _tensor(m.x)
    if t is None:
        return None
    inner, outer = _perm(m.inner, t.rank), _perm(m.outer, t.rank)
    perm = tuple(inner[i] for i in outer)
    return m.x if perm == tuple(range(t.rank)) else b.transpose(m.x, perm=perm)


def identity_transpose(m: Match, b: Builder) -> Value | None:
    t = _tensor(m.x)
    if t is None or _perm(m.t, t.rank) != tuple(range(t.rank)):
        return None
    return m.x


# -- views ---------------------------------------------------------------------------------------------
VIEWS = ("ember.reshape", "ember.squeeze", "ember.unsqueeze", "ember.flatten")


def view_chain(m: Match, b: Builder) -> Value | None:
    """view(view(x)) = reshape(x) to the outer view's type, when that type has no unknown dims."""
    out = m.outer.results[0].type
    if not isinstance(out, TensorType) or out.shape is None or any(isinstance(d, Unknown) for d in out.shape):
        return None
    if out == m.x.type:
        return m.x
    return b.reshape(m.x, shape=out.shape)


def same_type_view(m: Match, b: Builder) -> Value | None:
    """A view whose result has its input's type (no unknown dims) is the input."""
    out = m.v.results[0].type
    if out != m.x.type or not isinstance(out, TensorType) or out.shape is None \
            or any(isinstance(d, Unknown) for d in out.shape):
        return None
    return m.x


def explicit_reshape(m: Match, b: Builder) -> Value | None:
    """reshape's -1 and 0 spelled out from its (fully known) result type."""
    shape = m.r.attributes["shape"]
    out = m.r.results[0].type
    if not any(isinstance(d, int) and d in (-1, 0) for d in shape) or not isinstance(out, TensorType) \
            or out.shape is None or any(isinstance(d, Unknown) for d in out.shape):
        return None
    if m.r.attributes["allowzero"] and any(d == 0 for d in shape):
        return None
    return b.reshape(m.x, shape=out.shape)


# -- no-op data movement ----------------------------------------------------------------------------------
def _known_same_type(a: Value, b: Value) -> bool:
    """Equal types with no unknown dims: `?` against `?` says nothing about the sizes."""
    t = a.type
    return a.type == b.type and isinstance(t, TensorType) and t.shape is not None \
        and not any(isinstance(d, Unknown) for d in t.shape)


def noop_slice(m: Match, b: Builder) -> Value | None:
    """A slice from 0 with steps of 1 whose result has its input's (known) type selects everything."""
    a = m.s.attributes
    steps = a["steps"] or (1,) * len(a["starts"])
    if not _known_same_type(m.s.results[0], m.x) or any(s != 1 for s in steps) or any(s != 0 for s in a["starts"]):
        return None
    return m.x


def noop_pad(m: Match, b: Builder) -> Value | None:
    return m.p.operands[0] if all(p == 0 for p in m.p.attributes["pads"]) else None


def noop_repeat(m: Match, b: Builder) -> Value | None:
    """expand or tile that leaves the (known) type as it is copies nothing."""
    return m.x if _known_same_type(m.e.results[0], m.x) else None


def single_concat(m: Match, b: Builder) -> Value | None:
    return m.c.operands[0] if len(m.c.operands) == 1 else None


# -- static shapes ------------------------------------------------------------------------------------------
def static_shape(m: Match, b: Builder) -> Value | None:
    """shape(x) over static dims is a constant (ember.shape's start/end select the dims)."""
    t = _tensor(m.x)
    if t is None:
        return None
    rank, a = t.rank, m.s.attributes
    start = a["start"] + rank if a["start"] < 0 else a["start"]
    end = rank if a["end"] is None else (a["end"] + rank if a["end"] < 0 else a["end"])
    dims = t.shape[max(0, start):max(0, min(rank, end))]
    if not all(isinstance(d, int) for d in dims):
        return None
    return b.constant(np.array(dims, np.int64))


def static_size(m: Match, b: Builder) -> Value | None:
    t = _tensor(m.x)
    if t is None or not t.is_static:
        return None
    return b.constant(np.array(int(np.prod(t.static_shape, dtype=np.int64)), np.int64))


def _shape_value(v: Value | None, depth: int = 0) -> ShapeValue | None:
    """What a small integer value is, as dims, from the shape arithmetic that computes it."""
    if v is None or depth > 64:
        return None
    array = known_value(v)
    if array is not None:
        return ShapeValue.of(array)
    op = v.defining_op
    if op is None or op.name not in shape_values.RULES:
        return None
    return shape_values.evaluate(op, [_shape_value(o, depth + 1) for o in op.operands if o is not None])


def static_shape_arithmetic(m: Match, b: Builder) -> Value | None:
    """Shape/Gather/Concat/arithmetic chains over static dims are constants."""
    result = m.s.results[0]
    sv = _shape_value(result)
    if sv is None or not sv.is_static:
        return None
    return b.constant(sv.to_array(result.type.dtype.np_dtype))  # type: ignore[union-attr]


SHAPE_ARITHMETIC = tuple(n for n in shape_values.RULES if n not in ("ember.shape", "ember.size", "ember.identity"))

ALGEBRA = RuleSet("algebra", [
    Rule("add-zero", P.op("ember.add", x, P.splat(0)), _same, doc="x + 0 = x"),
    Rule("sub-zero", P.op("ember.sub", x, P.splat(0)), _same, doc="x - 0 = x"),
    Rule("mul-one", P.op("ember.mul", x, P.splat(1)), _same, doc="x * 1 = x"),
    Rule("div-one", P.op("ember.div", x, P.splat(1)), _same, doc="x / 1 = x"),
    Rule("pow-one", P.op("ember.pow", x, P.splat(1)), _same, doc="x ** 1 = x"),
    Rule("identity", P.op("ember.identity", x), _same, doc="identity(x) = x"),
    Rule("identity-cast", P.op("ember.cast", x, where=lambda op: op.operands[0].type == op.results[0].type),
         _same, doc="a cast to x's own type is x"),
    Rule("double-negation", P.op("ember.neg", P.op("ember.neg", x)), _same, doc="-(-x) = x"),
    Rule("double-not", P.op("ember.not", P.op("ember.not", x)), _same, doc="not(not(x)) = x"),
])

DATA_MOVEMENT = RuleSet("data-movement", [
    Rule("transpose-pair", P.op("ember.transpose", P.op("ember.transpose", x, name="inner"), name="outer"),
         compose_transposes, benefit=2, doc="transpose(transpose(x, p), q) = transpose(x, p[q])"),
    Rule("identity-transpose", P.op("ember.transpose", x, name="t"), identity_transpose,
         doc="transpose by the identity perm is x"),
    Rule("view-chain", P.op(VIEWS, P.op(VIEWS, x, any_operands=False), name="outer"), view_chain, benefit=2,
         doc="a chain of reshapes/squeezes/unsqueezes/flattens is one reshape"),
    Rule("same-type-view", P.op(VIEWS, x, name="v"), same_type_view, doc="a view to x's own type is x"),
    Rule("explicit-reshape", P.op("ember.reshape", x, name="r"), explicit_reshape,
         doc="reshape's -1 and 0 written out from its result type"),
    Rule("noop-slice", P.op("ember.slice", x, name="s"), noop_slice, doc="x[0:n:1] over all of x is x"),
    Rule("noop-pad", P.op("ember.pad", x, name="p", any_operands=True), noop_pad, doc="padding by 0 is x"),
    Rule("noop-expand", P.op(("ember.expand", "ember.tile"), x, name="e"), noop_repeat,
         doc="expand/tile to x's own shape is x"),
    Rule("single-concat", P.op("ember.concat", name="c", any_operands=True), single_concat,
         doc="concat of one tensor is that tensor"),
    Rule("static-shape", P.op("ember.shape", x, name="s"), static_shape, doc="shape of static dims is constant"),
    Rule("static-size", P.op("ember.size", x, name="s"), static_size, doc="size of a static shape is constant"),
    Rule("static-shape-arithmetic", P.op(SHAPE_ARITHMETIC, name="s", any_operands=True), static_shape_arithmetic,
         doc="integer arithmetic on shapes whose dims are static is a constant"),
])

CANONICAL = ALGEBRA + DATA_MOVEMENT


@register_pass("canonicalize")
@dataclass(frozen=True)
class Canonicalize(Pass):
    """Simplify to a fixed point with the algebra and data-movement rules, then drop dead code."""

    max_rewrites: int = option(0, min=0)  # 0: the driver's limit, proportional to the module

    def run(self, module: Module, ctx: PassContext) -> bool:
        fired = apply_rules(module, CANONICAL, max_rewrites=self.max_rewrites or None)
        for rule, n in fired.items():
            ctx.count(self.name, rule, n)
        removed = dead_code(module)
        if removed:
            ctx.count(self.name, "dead ops", removed)
        return bool(fired) or bool(removed)
