"""Declarative rewrite rules and the greedy driver that applies them.

A rule pairs a pattern (a tree of ops rooted at the op it rewrites) with a
function that builds the replacement through the same Builder every other IR
producer uses:

    x, c = P.var("x"), P.var("c")
    ALGEBRA = RuleSet("algebra", [
        Rule("add-zero", P.op("ember.add", x, P.splat(0)), lambda m, b: m.x),          # x + 0 -> x
        Rule("transpose-pair",
             P.op("ember.transpose", P.op("ember.transpose", x, name="inner"), name="outer"),
             cancel_transposes),
    ])

Patterns: `P.var(name, where=...)` binds any value (the same name twice must be
the same value); `P.op(op_name_or_names, *operands, name=, attrs={}, where=,
single_use=)` matches an op (commutative ops also with their operands swapped);
`P.const(name, where=...)` and `P.splat(v)` match values known at build time
(ember.constant, weights with data). `m.<name>` reads a binding: a Value for
vars, an Op for named op patterns, a numpy array for constants.

The driver (`apply_rules`) runs a worklist over every op, tries the rules
rooted at its op name in benefit order, and replaces the root's results with
what `build` returns (None: the rule does not apply). A replacement must have
the type of what it replaces (or refine it), so a rule can never change a
type by accident. Ops left without uses are erased. It stops at a fixed point
and reports how often each rule fired.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ember.errors import PassError
from ember.ir.builder import Builder
from ember.ir.core import Block, Location, Module, Operation, Value
from ember.ir.opdef import Commutative, Op, Pure, static_value
from ember.ir.types import Type, refines


# -- matching -----------------------------------------------------------------------------------
class Match:
    """The bindings of one successful match: `m.x` is whatever pattern `x` bound."""

    def __init__(self, root: Operation) -> None:
        self.root = root
        self.bindings: dict[str, Any] = {}
        self.ops: list[Operation] = []

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["bindings"][name]
        except KeyError:
            raise AttributeError(f"the pattern binds no {name!r}") from None

    def copy(self) -> "Match":
        other = Match(self.root)
        other.bindings = dict(self.bindings)
        other.ops = list(self.ops)
        return other

    @property
    def loc(self) -> Location:
        """All the matched ops' locations: a fused op remembers what it replaced."""
        return Location.fused([op.loc for op in self.ops])


class Pattern:
    def match(self, value: Value | None, m: Match) -> bool:
        raise NotImplementedError


@dataclass
class Var(Pattern):
    name: str
    where: Callable[[Value], bool] | None = None

    def match(self, value: Value | None, m: Match) -> bool:
        if value is None:
            return False
        if self.name in m.bindings:
            return m.bindings[self.name] is value
        if self.where is not None and not self.where(value):
            return False
        m.bindings[self.name] = value
        return True


def known_value(v: Value | None) -> np.ndarray | None:
    """The build-time value of `v`: an inline constant, or a weight with data (type rules
    see only the first, `static_value`, so a module's types never depend on its weights)."""
    array = static_value(v)
    if array is not None or v is None or v.defining_op is None:
        return array
    op = v.defining_op
    if op.name == "ember.weight":
        fn = op.function
        w = fn.module.weights.get(op.attributes["name"]) if fn is not None and fn.module is not None else None
        return None if w is None else w.data
    return None


@dataclass
class Const(Pattern):
    """A value known at build time; binds its array under `name` (and the Value under
    `name + "_value"`)."""

    name: str | None = None
    where: Callable[[np.ndarray], bool] | None = None

    def match(self, value: Value | None, m: Match) -> bool:
        array = known_value(value)
        if array is None:
            return False
        if self.where is not None:
            with np.errstate(all="ignore"):
                if not self.where(array):
                    return False
        if self.name:
            m.bindings[self.name] = array
            m.bindings[self.name + "_value"] = value
        return True


@dataclass
class OpPat(Pattern):
    names: tuple[str, ...]
    operands: tuple[Pattern, ...] | None = None  # None: any operands
    name: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    where: Callable[[Operation], bool] | None = None
    single_use: bool = False

    def match(self, value: Value | None, m: Match) -> bool:
        if value is None or value.defining_op is None:
            return False
        op = value.defining_op
        if self.single_use and len(value.uses) != 1:
            return False
        return self.match_op(op, m)

    def match_op(self, op: Operation, m: Match) -> bool:
        if op.name not in self.names:
            return False
        for key, want in self.attrs.items():
            got = op.attributes.get(key)
            if not (want(got) if callable(want) else got == want):
                return False
        if self.operands is not None:
            operands = list(op.operands)
            if len(operands) != len(self.operands) or not self._operands(op, operands, m):
                return False
        if self.where is not None and not self.where(op):
            return False
        if self.name:
            m.bindings[self.name] = op
        m.ops.append(op)
        return True

    def _operands(self, op: Operation, operands: list[Value | None], m: Match) -> bool:
        orders = [operands]
        if isinstance(op, Op) and Commutative in op.traits and len(operands) == 2:
            orders.append(operands[::-1])
        for order in orders:
            trial = m.copy()
            if all(p.match(v, trial) for p, v in zip(self.operands, order)):  # type: ignore[arg-type]
                m.bindings, m.ops = trial.bindings, trial.ops
                return True
        return False


class P:
    """Pattern constructors."""

    @staticmethod
    def var(name: str, where: Callable[[Value], bool] | None = None) -> Var:
        return Var(name, where)

    @staticmethod
    def op(names: str | Sequence[str], *operands: Pattern, name: str | None = None,
           attrs: dict[str, Any] | None = None, where: Callable[[Operation], bool] | None = None,
           single_use: bool = False, any_operands: bool = False) -> OpPat:
        names = (names,) if isinstance(names, str) else tuple(names)
        return OpPat(names, None if any_operands else tuple(operands), name, dict(attrs or {}), where, single_use)

    @staticmethod
    def const(name: str | None = None, where: Callable[[np.ndarray], bool] | None = None) -> Const:
        return Const(name, where)

    @staticmethod
    def splat(value: float, name: str | None = None) -> Const:
        """A constant whose every element equals `value` (NaN never does)."""
        return Const(name, lambda a: a.size > 0 and bool(np.all(a.astype(np.float64) == value)))


# -- rules ------------------------------------------------------------------------------------------
Build = Callable[[Match, Builder], "Value | Sequence[Value] | None"]


@dataclass
class Rule:
    """`pattern` rooted at the op to rewrite; `build` returns its replacement, or None."""

    name: str
    pattern: OpPat
    build: Build
    benefit: int = 1
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, OpPat):
            raise TypeError(f"rule {self.name}: the pattern's root must be an op pattern")


class RuleSet:
    """Named rules, indexed by the op their pattern roots at; `+` joins sets."""

    def __init__(self, name: str, rules: Iterable[Rule]) -> None:
        self.name = name
        self.rules = list(rules)
        names = [r.name for r in self.rules]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"rule set {name}: rules named twice: {sorted(dup)}")
        self.by_root: dict[str, list[Rule]] = {}
        for r in sorted(self.rules, key=lambda r: -r.benefit):
            for root in r.pattern.names:
                self.by_root.setdefault(root, []).append(r)

    def __add__(self, other: "RuleSet") -> "RuleSet":
        return RuleSet(f"{self.name}+{other.name}", self.rules + other.rules)

    def __iter__(self) -> Any:
        return iter(self.rules)


# -- the driver ------------------------------------------------------------------------------------
def _blocks(block: Block) -> Iterable[Block]:
    yield block
    for op in block.ops:
        for region in op.regions:
            yield from _blocks(region)


def erase_if_dead(op: Operation) -> list[Operation]:
    """Erase `op` if it is pure and unused, then whatever that leaves dead; returns the
    operands' defining ops that may have become dead too."""
    if op.parent is None or not isinstance(op, Op) or Pure not in op.traits or any(r.has_uses for r in op.results):
        return []
    producers = [v.defining_op for v in op.operands if v is not None and v.defining_op is not None]
    op.erase()
    out: list[Operation] = []
    for p in producers:
        if p.parent is not None and not any(r.has_uses for r in p.results):
            out.append(p)
            out.extend(erase_if_dead(p))
    return out


def replace_op(op: Operation, values: Sequence[Value]) -> None:
    """Replace `op`'s results by `values` (types must agree) and erase what is left dead."""
    if len(values) != len(op.results):
        raise PassError(f"{op.name}: {len(values)} replacement values for {len(op.results)} results")
    for old, new in zip(op.results, values):
        if new is not old:
            old.replace_all_uses_with(new)
    erase_if_dead(op)


def apply_rules(target: Module | Block, rules: RuleSet, *, max_rewrites: int = 1_000_000) -> Counter:
    """Apply `rules` greedily until none fires; returns how often each fired."""
    blocks = [fn.body for fn in target.functions.values()] if isinstance(target, Module) else [target]
    fired: Counter = Counter()
    worklist: deque[Operation] = deque()
    queued: set[int] = set()

    def push(op: Operation) -> None:
        if id(op) not in queued and op.parent is not None:
            queued.add(id(op))
            worklist.append(op)

    for top in blocks:
        for block in _blocks(top):
            for op in block.ops:
                push(op)
    total = 0
    while worklist:
        op = worklist.popleft()
        queued.discard(id(op))
        if op.parent is None:
            continue  # erased since it was queued
        for rule in rules.by_root.get(op.name, ()):
            m = Match(op)
            if not rule.pattern.match_op(op, m):
                continue
            b = Builder(module=_module_of(op), block=op.parent, before=op, loc=m.loc)
            result = rule.build(m, b)
            if result is None:
                for made in reversed(b.created):
                    erase_if_dead(made)
                continue
            values = [result] if isinstance(result, Value) else list(result)
            if not _types_fit(op, values):
                for made in reversed(b.created):
                    erase_if_dead(made)
                continue
            users = [u for r in op.results for u in r.users]
            matched = [o for o in m.ops if o is not op]
            replace_op(op, values)
            for other in matched:
                erase_if_dead(other)
            fired[rule.name] += 1
            total += 1
            if total > max_rewrites:
                raise PassError(f"rules {rules.name} did not settle after {max_rewrites} rewrites "
                                f"(most fired: {fired.most_common(3)})")
            for made in b.created:
                push(made)
            for u in users:
                push(u)
            for v in values:
                if v.defining_op is not None:
                    push(v.defining_op)
            break
    return fired


def _types_fit(op: Operation, values: Sequence[Value]) -> bool:
    if len(values) != len(op.results):
        return False
    return all(isinstance(v, Value) and _fits(v.type, r.type) for v, r in zip(values, op.results))


def _fits(new: Type, old: Type) -> bool:
    return new == old or refines(new, old)


def _module_of(op: Operation) -> Module | None:
    fn = op.function
    return fn.module if fn is not None else None


__all__ = ["P", "Pattern", "Var", "Const", "OpPat", "Match", "Rule", "RuleSet", "apply_rules", "replace_op",
           "erase_if_dead", "known_value"]
