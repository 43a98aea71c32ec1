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

Rules come from users too (`ember opt --load my_rules.py`), so the driver
guards against theirs as against its own: rules that undo each other or keep
growing the graph stop at a limit proportional to the graph (10 rewrites per
op, at least 1,000) with a `PassError` naming the rules that fired most, and a
rule whose pattern or build raises becomes a `PassError` naming the rule, its
rule set, the op and where the build is defined. One rewrite costs what its
match and the ops it touches cost, not the size of the graph.
"""

from __future__ import annotations

import inspect
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NoReturn, Sequence

import numpy as np

from ember.errors import PassError, UsageError, VerifyError
from ember.ir.builder import Builder
from ember.ir.core import Block, Function, Location, Module, Operation, Value
from ember.ir.opdef import Commutative, Op, Pure, static_value
from ember.ir.types import TensorType, Type, refines


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


def static_dims(v: Value | None) -> tuple[int, ...] | None:
    """The shape of `v` when every dim is a number (None for a symbolic, unknown or non-tensor one)."""
    t = v.type if v is not None else None
    if not isinstance(t, TensorType) or not t.is_static:
        return None
    return tuple(int(d) for d in t.shape)  # type: ignore[union-attr]


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
            raise UsageError(f"rule {self.name}: the pattern's root must be an op pattern")


class RuleSet:
    """Named rules, indexed by the op their pattern roots at; `+` joins sets."""

    def __init__(self, name: str, rules: Iterable[Rule]) -> None:
        self.name = name
        self.rules = list(rules)
        names = [r.name for r in self.rules]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise VerifyError(f"rule set {name}: rules named twice: {sorted(dup)}")
        self.by_root: dict[str, list[Rule]] = {}
        for r in sorted(self.rules, key=lambda r: -r.benefit):
            for root in r.pattern.names:
                self.by_root.setdefault(root, []).append(r)

    def __add__(self, other: "RuleSet") -> "RuleSet":
        return RuleSet(f"{self.name}+{other.name}", self.rules + other.rules)

    def __iter__(self) -> Any:
        return iter(self.rules)


# -- the driver ------------------------------------------------------------------------------------
REWRITES_PER_OP = 10
MIN_REWRITE_LIMIT = 1_000


def rewrite_limit(n_ops: int) -> int:
    """The default cap on rewrites for a graph of `n_ops` ops: a rule set that needs more is
    almost surely looping (rules undoing each other) or growing the graph without end."""
    return max(MIN_REWRITE_LIMIT, REWRITES_PER_OP * n_ops)


def _blocks(block: Block) -> Iterable[Block]:
    stack = [block]
    while stack:
        b = stack.pop()
        yield b
        for op in reversed(b.ops):
            stack.extend(reversed(op.regions))


def erase_if_dead(op: Operation) -> list[Operation]:
    """Erase `op` if it is pure and unused, then whatever that leaves dead; returns the
    operands' defining ops that may have become dead too (iterative: a dead chain of any
    length is fine)."""
    out: list[Operation] = []
    if not _dead(op):
        return out
    stack = [op]
    while stack:
        top = stack.pop()
        if not _dead(top):
            continue
        producers = [v.defining_op for v in top.operands if v is not None and v.defining_op is not None]
        top.erase()
        for p in reversed(producers):
            if p.parent is not None and not any(r.has_uses for r in p.results):
                out.append(p)
                stack.append(p)
    return out


def _dead(op: Operation) -> bool:
    return (op.parent is not None and isinstance(op, Op) and Pure in op.traits
            and not any(r.has_uses for r in op.results))


def replace_op(op: Operation, values: Sequence[Value]) -> None:
    """Replace `op`'s results by `values` (types must agree) and erase what is left dead."""
    if len(values) != len(op.results):
        raise PassError(f"{op.name}: {len(values)} replacement values for {len(op.results)} results")
    for old, new in zip(op.results, values):
        if new is not old:
            old.replace_all_uses_with(new)
    erase_if_dead(op)


def apply_counted(module: Module, rules: RuleSet, ctx: Any, pass_name: str, *,
                  max_rewrites: int | None = None) -> Counter:
    """`apply_rules`, each rule's count reported to the pass context (`ctx.count`) under `pass_name`."""
    fired = apply_rules(module, rules, max_rewrites=max_rewrites)
    for rule, n in fired.items():
        ctx.count(pass_name, rule, n)
    return fired


def apply_rules(target: Module | Block, rules: RuleSet, *, max_rewrites: int | None = None) -> Counter:
    """Apply `rules` greedily until none fires; returns how often each fired.

    `max_rewrites`: the most rewrites before giving up with a PassError; None (the
    default) is `rewrite_limit` of the target's op count (10 per op, at least 1,000)."""
    if max_rewrites is not None and (isinstance(max_rewrites, bool) or not isinstance(max_rewrites, int)
                                     or max_rewrites < 0):
        raise PassError(f"apply_rules({rules.name}): max_rewrites must be a non-negative integer or None, "
                        f"got {max_rewrites!r}")
    blocks = [fn.body for fn in target.functions.values()] if isinstance(target, Module) else [target]
    module = target if isinstance(target, Module) else _module_of_block(target)
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
    n_ops = len(worklist)
    limit = rewrite_limit(n_ops) if max_rewrites is None else max_rewrites
    total = 0
    while worklist:
        op = worklist.popleft()
        queued.discard(id(op))
        if op.parent is None:
            continue  # erased since it was queued
        for rule in rules.by_root.get(op.name, ()):
            m = Match(op)
            try:
                if not rule.pattern.match_op(op, m):
                    continue
            except Exception as err:
                _rule_failed(rule, rules, op, "matching", err)
            b = Builder(module=module, block=op.parent, before=op, loc=m.loc)
            try:
                result = rule.build(m, b)
                values = None if result is None else _replacement(result)
            except Exception as err:
                _discard(b.created)
                _rule_failed(rule, rules, op, "building", err)
            if values is None or not _types_fit(op, values):
                _discard(b.created)
                continue
            users = [u for r in op.results for u in r.users]
            matched = [o for o in m.ops if o is not op]
            replace_op(op, values)
            for other in matched:
                erase_if_dead(other)
            fired[rule.name] += 1
            total += 1
            if total > limit:
                _runaway(rules, fired, limit, n_ops, max_rewrites is None)
            for made in b.created:
                push(made)
            for u in users:
                push(u)
            for v in values:
                if v.defining_op is not None:
                    push(v.defining_op)
            break
    return fired


def _replacement(result: Any) -> list[Value]:
    """What a build returned, as a list (a Value, or a sequence of Values)."""
    if isinstance(result, Value):
        return [result]
    if isinstance(result, (str, bytes)) or not hasattr(result, "__iter__"):
        raise UsageError(f"build returned {type(result).__name__}, not a Value, a sequence of Values or None")
    values = list(result)
    for i, v in enumerate(values):
        if not isinstance(v, Value):
            raise UsageError(f"build returned a {type(v).__name__} as replacement {i}, not a Value")
    return values


def _discard(created: Sequence[Operation]) -> None:
    """Remove what a rule built and then did not use."""
    for made in reversed(created):
        erase_if_dead(made)


def _runaway(rules: RuleSet, fired: Counter, limit: int, n_ops: int, proportional: bool) -> NoReturn:
    top = fired.most_common()
    why = (f"the limit for {n_ops} ops: {REWRITES_PER_OP} per op, at least {MIN_REWRITE_LIMIT:,}" if proportional
           else "max_rewrites")
    shown = ", ".join(f"{name} {n:,}" for name, n in top[:3])
    lines = [f"rule set {rules.name!r} did not settle within {limit:,} rewrites ({why}); most fired: {shown}",
             "  rules that undo each other, or a rule whose result it matches again, never reach a fixed point;",
             "  rewrites by rule:"]
    lines += [f"    {name}: {n:,}" for name, n in top[:10]]
    if len(top) > 10:
        lines.append(f"    ... and {len(top) - 10} more rules")
    raise PassError("\n".join(lines))


def _rule_failed(rule: Rule, rules: RuleSet, op: Operation, stage: str, err: Exception) -> NoReturn:
    """A PassError naming the rule, its set, the op and where the rule is defined, from `err`."""
    what = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    first, _, rest = what.partition("\n")
    where = f"at {op.loc}" if op.loc else "(no location)"
    raised = _raised_at(err)
    message = (f"rule {rule.name!r} of rule set {rules.name!r} (build defined at {defined_at(rule.build)}) "
               f"failed {stage} {op.name} {where}: {first}" + (f" (raised at {raised})" if raised else ""))
    raise PassError(message + ("\n" + rest if rest else "")) from err


def defined_at(fn: Any) -> str:
    """`file:line` where a rule's function is defined (lambdas and callables too), or its repr."""
    target = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(target, "__code__", None)
    if code is None:
        code = getattr(getattr(target, "func", None), "__code__", None)  # functools.partial
    if code is None:
        code = getattr(getattr(type(target), "__call__", None), "__code__", None)
    if code is None:
        return repr(fn)
    return f"{code.co_filename}:{code.co_firstlineno}"


def _raised_at(err: BaseException) -> str | None:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    return f"{last.filename}:{last.lineno}"


def _types_fit(op: Operation, values: Sequence[Value]) -> bool:
    if len(values) != len(op.results):
        return False
    return all(isinstance(v, Value) and _fits(v.type, r.type) for v, r in zip(values, op.results))


def _fits(new: Type, old: Type) -> bool:
    return new == old or refines(new, old)


def _module_of_block(block: Block) -> Module | None:
    """The module a block belongs to (through the ops and function that hold it), if any."""
    while True:
        parent = block.parent
        if isinstance(parent, Operation):
            if parent.parent is None:
                return None
            block = parent.parent
            continue
        return parent.module if isinstance(parent, Function) else None


__all__ = ["P", "Pattern", "Var", "Const", "OpPat", "Match", "Rule", "RuleSet", "apply_rules", "replace_op",
           "static_dims", "erase_if_dead", "known_value", "rewrite_limit", "defined_at"]
