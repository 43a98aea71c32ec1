"""convert-precision{to=f16|bf16, keep=[...]}: compute in half precision, keep f32 where it matters.

Contract. Afterwards every float op that computed in f32 computes in the low type
`to` (f16 or bf16), except those that stay f32 (below); the function's inputs and
outputs keep their declared types: an f32 input is cast to the low type where the
graph starts reading it (one cast, at the entry), an output is cast back to its
declared f32. Constant operands are converted at build time: an f32 weight read in
low precision becomes a new weight `<name>/f16` (`/bf16`), an inline constant is
converted inline; weights read only by f32 ops stay as they are.

Stay f32, their float operands cast up and results cast down:
- reductions and normalizations (Reduction, Normalization traits: reduce_*, global
  pools, argmax, batch/layer/group/instance/rms norm, lrn, softmax, log_softmax),
  where sums over many elements lose most in 16 bits;
- selections whose integer results a rounding would change (ember.nms, ember.topk),
  quantization ops (their scales are f32 by definition), shape-only and host ops;
- ops the user keeps: `keep=[ember.softmax,/head/fc/Gemm]` names op types
  (`ember.gemm` or `gemm`) or locations (an ONNX node name).
Ops with regions stay as they are; the ops inside their bodies convert as any other.

How. Three rules, each an exact identity on the values it sees:
- compute-in-low: op(x: f32) = cast(op'(cast(x, low)), f32), op' the op on low
  operands (and with f32 attributes, such as cast's `to` or constant_of_shape's
  value, lowered). This is where the precision changes, and the only place.
- cast-round-trip: cast(cast(x: low, f32), low) = x (f32 holds every low value), which
  removes the casts between two low-precision ops;
- fold-constant-cast: cast(c, low) of a known c is a converted constant.
Then the casts of one value that remain are merged, the input casts put first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ember.errors import EmberError
from ember.ir.attrs import Dense
from ember.ir.builder import Builder
from ember.ir.core import Block, Module, Operation, Value
from ember.ir.opdef import REGISTRY, HostOnly, Normalization, Op, Pure, Quantization, Reduction, ShapeOnly
from ember.ir.ops.core import cast_array  # importing ember.ir.ops fills the registry
from ember.ir.types import DType, TensorType, bf16, f16, f32, f64
from ember.passes.dce import dead_code
from ember.passes.layout_nhwc import materialize
from ember.passes.manager import Pass, PassContext, option, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_rules

x = P.var("x")
LOW_TYPES = {"f16": f16, "bf16": bf16}
ALWAYS_F32 = frozenset({"ember.nms", "ember.topk"})
F32_TRAITS = (Reduction, Normalization, Quantization, ShapeOnly, HostOnly)
EXACT_WIDENING = {(f16, f32), (bf16, f32), (f16, f64), (bf16, f64), (f32, f64)}


def _dtype(v: Value | None) -> DType | None:
    return v.type.dtype if v is not None and isinstance(v.type, TensorType) else None


def named_by(op: Operation, names: frozenset[str]) -> bool:
    """Whether a user's list of ops names this one: by op type (`ember.gemm` or `gemm`) or by
    location (an ONNX node name). convert-precision's and quantize-int8's `keep` both read it."""
    short = op.name.split(".", 1)[-1]
    return op.name in names or short in names or any(n in names for n in op.loc.names)


@dataclass(frozen=True)
class Precision:
    """The low type and what the user keeps in f32 (op names, short op names, locations)."""

    low: DType
    keep: frozenset[str] = frozenset()

    def kept(self, op: Operation) -> bool:
        return named_by(op, self.keep)

    def converts(self, op: Operation) -> bool:
        """The op computes in f32 now and is to compute in the low type."""
        if not isinstance(op, Op) or Pure not in op.traits or op.regions or op.name in ALWAYS_F32:
            return False
        if any(t in op.traits for t in F32_TRAITS) or op.name in ("ember.constant", "ember.weight") or self.kept(op):
            return False
        values = [v for v in op.operands if v is not None] + list(op.results)
        if not all(isinstance(v.type, TensorType) for v in values):
            return False
        if op.name == "ember.cast":  # only int/bool -> f32; the casts this pass makes are its own
            src = _dtype(op.operands[0])
            return src is not None and not src.is_float and op.attributes["to"] == f32
        return any(_dtype(v) == f32 for v in values)

    def lower_attr(self, value: Any) -> Any:
        if isinstance(value, DType) and value == f32:
            return self.low
        if isinstance(value, Dense) and value.dtype == f32:
            return Dense(value.array, self.low)
        return value


def compute_in_low(p: Precision, m: Match, b: Builder) -> list[Value] | None:
    """op(x: f32) = cast(op'(cast(x, low)), f32): the op on low-precision operands."""
    op = m.op
    try:
        operands = [b.cast(v, to=p.low) if _dtype(v) == f32 else v for v in op.operands]
        made = b.op(op.name, *operands, **{k: p.lower_attr(v) for k, v in op.attributes.items()})
    except EmberError:
        return None  # the op does not take low-precision operands: it stays f32
    results = [made] if isinstance(made, Value) else list(made)
    out = []
    for old, new in zip(op.results, results):
        want = old.type.with_dtype(p.low) if _dtype(old) == f32 else old.type  # type: ignore[union-attr]
        if new.type != want:
            return None
        out.append(b.cast(new, to=f32) if _dtype(old) == f32 else new)
    return out


def cast_round_trip(m: Match, b: Builder) -> Value | None:
    """cast(cast(x: a, b), a) = x when b holds every value of a (f16/bf16 in f32)."""
    a, wide = _dtype(m.x), m.up.attributes["to"]
    if m.down.attributes["to"] != a or (a, wide) not in EXACT_WIDENING:
        return None
    return m.x


def fold_constant_cast(m: Match, b: Builder) -> Value | None:
    """cast(c, low) of a constant c is c converted at build time (weights: `<name>/f16`)."""
    a = m.cast.attributes
    src, to = _dtype(m.c_value), a["to"]
    if src is None or not (src.is_float and to.is_float and to.bits < src.bits):
        return None
    return materialize(b, m.c_value, cast_array(m.c, to, a["saturate"], a["round_mode"]), "/" + to.name)


def precision_rules(p: Precision) -> RuleSet:
    """The rules for one low type and keep list."""
    return RuleSet("precision", [
        Rule("compute-in-low", P.op(tuple(REGISTRY), name="op", any_operands=True, where=p.converts),
             lambda m, b: compute_in_low(p, m, b), doc="op(x) = cast(op'(cast(x, low)), f32)"),
        Rule("cast-round-trip", P.op("ember.cast", P.op("ember.cast", x, name="up"), name="down"),
             cast_round_trip, benefit=2, doc="cast(cast(x: f16, f32), f16) = x"),
        Rule("fold-constant-cast", P.op("ember.cast", P.const("c"), name="cast"), fold_constant_cast,
             benefit=2, doc="cast(c, f16) of a constant is a converted constant"),
    ])


PRECISION = precision_rules(Precision(f16))  # the rules as data (convert-precision{to=f16})


# -- merging casts -------------------------------------------------------------------------------
def _cast_key(op: Operation) -> tuple:
    return (op.attributes["to"], op.attributes["saturate"], op.attributes["round_mode"])


def merge_casts(block: Block) -> int:
    """One cast per value and target type in `block` (the first; for the block's
    arguments, moved to the top). Returns how many casts were merged away."""
    merged = 0
    values = list(block.args) + [r for op in block.ops for r in op.results]
    for v in values:
        groups: dict[tuple, list[Operation]] = {}
        for user in v.users:
            if user.name == "ember.cast" and user.parent is block:
                groups.setdefault(_cast_key(user), []).append(user)
        for casts in groups.values():
            casts.sort(key=block.ops.index)
            first = casts[0]
            if v.owner is block and block.ops[0] is not first:
                block.ops.remove(first)
                block.ops.insert(0, first)
            for other in casts[1:]:
                other.results[0].replace_all_uses_with(first.results[0])
                other.erase()
                merged += 1
    for op in block.ops:
        for region in op.regions:
            merged += merge_casts(region)
    return merged


@register_pass("convert-precision")
@dataclass(frozen=True)
class ConvertPrecision(Pass):
    """Run float ops in f16 or bf16, reductions, normalizations and `keep` in f32; inputs
    and outputs keep their types (see the module docstring for the contract)."""

    to: str = option("f16", choices=tuple(LOW_TYPES))
    keep: tuple[str, ...] = ()

    def run(self, module: Module, ctx: PassContext) -> bool:
        fired = apply_rules(module, precision_rules(Precision(LOW_TYPES[self.to], frozenset(self.keep))))
        for rule, n in fired.items():
            ctx.count(self.name, rule, n)
        merged = sum(merge_casts(fn.body) for fn in module.functions.values())
        if merged:
            ctx.count(self.name, "casts merged", merged)
        removed = dead_code(module) if fired else 0
        return bool(fired) or bool(merged) or bool(removed)
