"""Lower an optimized module to a program: values, kernels and the steps that run them.

Each top-level op of the entry function becomes: nothing (weights and constants
are data; views such as reshape alias their input's buffer), one or more kernel
launches (from `LOWERINGS`, by op name or fused kind), or a host step that the
runtime runs on the reference interpreter (an op with no kernel yet, region ops,
sequences). The program is a plain, JSON-serializable description that the
engine stores and the runtime executes (docs/engine-format.md); codegen and the
runtime share nothing but it.

A lowering is a function of a `LowerContext` and the op:

    @lowering("ember.softmax")
    def softmax(ctx, op):
        ctx.launch(kernel, grid, block, [ctx.arg(op.operands[0]), ctx.out(op.results[0]), ...])

It raises UnsupportedOpError for cases it does not cover; the op then runs on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import operator

import numpy as np

from ember.codegen import symbolic
from ember.codegen.kernel import Arg, Kernel, Launch
from ember.errors import EmberError, UnsupportedOpError
from ember.ir.core import Function, Module, Operation, Value
from ember.ir import sizes
from ember.ir import dims as D
from ember.ir.dims import Unknown, evaluate
from ember.ir import shape_values
from ember.ir.opdef import ShapeOnly, ViewLike
from ember.ir.shape_values import ShapeValue
from ember.ir import program as P
from ember.ir.program import Guard
from ember.ir.types import DTYPES, TensorType, Type

Lowering = Callable[["LowerContext", Operation], None]
LOWERINGS: dict[str, Lowering] = {}
FUSED_LOWERINGS: dict[str, Lowering] = {}  # ember.fused, by its `kind`
ALIASING_VIEWS = {"ember.reshape", "ember.squeeze", "ember.unsqueeze", "ember.flatten", "ember.identity",
                  "ember.bitcast"}


def _constant_ints(v: Value | None) -> np.ndarray | None:
    op = v.defining_op if v is not None else None
    if op is None or op.name != "ember.constant":
        return None
    arr = np.asarray(op.attributes["value"].array)
    return arr.astype(np.int64) if arr.dtype.kind in "iu" else None


def _ones(dims: Sequence[int]) -> bool:
    """Whether every dim is the constant 1 (its expression, so no guard is recorded)."""
    return all(symbolic.expr_of(d) == 1 for d in dims)


def _gather_window(lower: "Lowerer", op: Operation) -> list[int] | None:
    """ember.gather of one constant index along an axis with only 1s before it."""
    xs = lower.shape(op.operands[0])
    index = _constant_ints(op.operands[1])
    axis = int(op.attributes.get("axis", 0))
    axis = axis + len(xs) if axis < 0 else axis
    if index is None or index.size != 1 or not 0 <= axis < len(xs) or not _ones(xs[:axis]):
        return None
    d, i = symbolic.expr_of(xs[axis]), int(index.reshape(-1)[0])
    if not isinstance(d, int) or not -d <= i < d:
        return None
    return [(i % d) * symbolic.numel(xs[axis + 1:])]


def _slice_window(lower: "Lowerer", op: Operation) -> list[int] | None:
    """ember.slice with step 1 along one axis (others whole) with only 1s before it."""
    from ember.ir.ops.shape import clamp_index
    xs = lower.shape(op.operands[0])
    plan = op._plan(len(xs))
    ys = lower.shape(op.results[0])
    if any(step != 1 for *_, step in plan):
        return None
    cut = [(ax, start, step) for ax, start, _, step in plan
           if symbolic.expr_of(ys[ax]) != symbolic.expr_of(xs[ax])]
    if len(cut) > 1:
        return None
    if not cut:
        return [0]
    ax, start, _ = cut[0]
    d = symbolic.expr_of(xs[ax])
    if not isinstance(d, int) or not isinstance(start, int) or not _ones(xs[:ax]):
        return None
    return [clamp_index(start, d, 1, True) * symbolic.numel(xs[ax + 1:])]


def _split_window(lower: "Lowerer", op: Operation) -> list[int] | None:
    """ember.split along an axis with only 1s before it: each piece starts where the last ended."""
    xs = lower.shape(op.operands[0])
    axis = int(op.attributes.get("axis", 0))
    axis = axis + len(xs) if axis < 0 else axis
    if not 0 <= axis < len(xs) or not _ones(xs[:axis]):
        return None
    inner = symbolic.numel(xs[axis + 1:])
    starts, at = [], 0
    for r in op.results:
        starts.append(at * inner)
        at = at + lower.shape(r)[axis]
    return starts


WINDOW_OPS: dict[str, Callable[["Lowerer", Operation], list[int] | None]] = {
    "ember.gather": _gather_window, "ember.slice": _slice_window, "ember.split": _split_window}


def _aliases(op: Any) -> bool:
    """A view that reads its source's buffer as it is. A bitcast does when both types are whole
    bytes and not bool (reading a byte as bool means byte != 0); sub-byte types keep their bits in
    the low bits of a byte, where the signed ones sign-extend, so they do not."""
    if op.name != "ember.bitcast":
        return op.name in ALIASING_VIEWS
    src, dst = op.operands[0].type.dtype, op.results[0].type.dtype
    return all(d.bits % 8 == 0 and d.kind not in ("bool", "string") for d in (src, dst))


def lowering(*op_names: str, fused_kind: str | None = None) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        for name in op_names:
            LOWERINGS[name] = fn
        if fused_kind is not None:
            FUSED_LOWERINGS[fused_kind] = fn
        return fn
    return register


@dataclass
class ValueInfo:
    id: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    kind: str                    # input | weight | const | activation | view | host
    weight: str | None = None    # weight store name (weights), or const:<id> for constants
    alias: int | None = None     # views: the value whose buffer they read
    offset: int | None = None    # windows: where they start in it, bytes

    @property
    def nbytes(self) -> int:
        """Bytes of the value (an expression when lowering for a range of shapes; checked against
        the size limits where the value is added, and again when a shape is bound)."""
        from ember.ir.types import DTYPES
        if self.kind == "host" or self.dtype not in DTYPES:
            return 0  # kept on the host (sequences, optionals, data-dependent sizes): no buffer
        itemsize = DTYPES[self.dtype].itemsize
        n = symbolic.numel(self.shape)
        return n * int(itemsize) if itemsize >= 1 else (n * int(itemsize * 8) + 7) // 8

    def spec(self) -> P.ValueSpec:
        return P.ValueSpec(self.id, self.name, self.dtype, tuple(symbolic.expr_of(d) for d in self.shape), self.kind,
                           symbolic.expr_of(self.nbytes), self.weight, self.alias,
                           None if self.offset is None else symbolic.expr_of(self.offset))


@dataclass
class Program:
    """What lowering gives: the program's parts as they are built, the kernels' sources, the
    constants' data and the reasons ops stay on the host. `spec()` is the program itself."""

    values: list[ValueInfo] = field(default_factory=list)
    steps: list[P.Step] = field(default_factory=list)
    kernels: dict[str, Kernel] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[P.Port] = field(default_factory=list)
    outputs: list[P.Port] = field(default_factory=list)
    host_ops: list[str] = field(default_factory=list)

    def spec(self) -> P.Program:
        return P.Program(tuple(v.spec() for v in self.values), tuple(self.inputs), tuple(self.outputs),
                         tuple(k.spec() for k in self.kernels.values()), tuple(self.steps))


class LowerContext:
    """What a lowering sees: concrete shapes, value ids, and where to put its launches."""

    def __init__(self, lowerer: "Lowerer", op: Operation, index: int) -> None:
        self.lowerer, self.op, self.index = lowerer, op, index
        self.target = lowerer.target  # the GPU architecture tiles are chosen for ("sm_90"), or None
        self.launches: list[Launch] = []
        self.tactic: str | None = None
        self.candidates: tuple[str, ...] = ()

    def choose(self, candidates: Sequence[str]) -> str:
        """One of the op's candidate implementations (tactics, in TensorRT's word), by name:
        the one the build asked for this op (`tactics=`, keyed by op index or location),
        else the first, which is the lowering's heuristic pick."""
        if not candidates:
            raise UnsupportedOpError(f"{self.loc()}: no implementation fits")
        self.candidates = tuple(candidates)
        asked = self.lowerer.tactic_for(self.index, self.op)
        preferred = self.lowerer.preferred.get(self.index)
        if asked is None and preferred in candidates:
            self.tactic = preferred  # the tactic chosen at the profile's OPT shape
        elif asked is None:
            self.tactic = candidates[0]
        elif asked in candidates:
            self.tactic = asked
        else:
            raise EmberError(f"tactic {asked!r} for {self.loc()}: this op's candidates are "
                             f"{', '.join(candidates)}")
        return self.tactic

    def shape(self, v: Value) -> tuple[int, ...]:
        return self.lowerer.shape(v)

    def dtype(self, v: Value) -> Any:
        t = v.type
        if not isinstance(t, TensorType):
            raise UnsupportedOpError(f"{t} values have no kernels")
        return t.dtype

    def arg(self, v: Value) -> Arg:
        return Arg("value", self.lowerer.ids[v])

    def meta(self, values: Sequence[int]) -> Arg:
        return Arg("meta", tuple(_integer(x) for x in values))

    def scratch(self, nbytes: int) -> Arg:
        """Temporary device memory for one op, zeroed before the op's first launch. The j-th
        scratch argument of every launch of the op names the same buffer (sized for the
        largest request), so a two-launch op (a split reduction, a counter) passes its
        partial results from one launch to the next through it (runtime/memory_plan.py)."""
        return Arg("scratch", _integer(nbytes))

    def i64(self, x: int) -> Arg:
        return Arg("i64", _integer(x))

    def i32(self, x: int) -> Arg:
        return Arg("i32", _integer(x))

    def f32(self, x: float) -> Arg:
        return Arg("f32", float(x))

    def launch(self, kernel: Kernel, grid: Sequence[int], block: Sequence[int], args: Sequence[Arg],
               shared: int = 0) -> None:
        g = tuple(_integer(x) for x in grid) + (1,) * (3 - len(grid))
        bl = tuple(_integer(x) for x in block) + (1,) * (3 - len(block))
        if any(x <= 0 for x in g + bl):  # (over a run-time size: a guard, decided when the program runs)
            raise UnsupportedOpError(f"{self.op.name}: empty launch grid {g} x {bl}")
        self.launches.append(Launch(kernel, g, bl, tuple(args), _integer(shared), (self.index,)))

    def loc(self) -> str:
        return f"{self.op.name} @ {self.op.loc}" if self.op.loc else self.op.name

    def evaluate(self, d: Any) -> int:
        """A dim of an attribute (a reshape's target, an offset) at the shapes being lowered."""
        return self.lowerer.value(d)


class Lowerer:
    def __init__(self, module: Module, env: Mapping[str, int],
                 tactics: Mapping[int | str, str] | None = None, symbolic: bool = False,
                 preferred: Mapping[int, str] | None = None, target: str | None = None,
                 fixed_shape: bool | None = None) -> None:
        self.module = module
        self.target = target
        self.tactics = dict(tactics or {})
        self.preferred = dict(preferred or {})
        self.symbolic = symbolic
        self.fixed_shape = not symbolic if fixed_shape is None else fixed_shape   # the program serves one shape
        self.fn: Function = module.main
        self.env = dict(env)
        self.ids: dict[Value, int] = {}
        self.program = Program()
        self.table: list[Operation] = list(self.fn.body.ops)  # ops by step index (ir/program.py op_table)
        self.types: dict[Value, Type] = {}   # result types re-inferred over run-time symbols
        self.shape_values: dict[Value, ShapeValue | None] = {}  # small integer values known as dims
        self.by_shapes: set[Operation] = set()  # ops whose result sizes their type rule gives from operand shapes
        self.runtime: set[str] = set()       # the run-time symbols bound so far
        # more leading underscores than any symbol of the model has: no run-time symbol can clash with one
        underscores = max((len(s) - len(s.lstrip("_")) for s in self.env), default=0)
        self.prefix = "_" * max(0, underscores) + RUNTIME_PREFIX

    def type_of(self, v: Value) -> Any:
        return self.types.get(v, v.type)

    def is_runtime(self, x: Any) -> bool:
        """Whether a size depends on a run-time symbol."""
        return bool(D.free_symbols(symbolic.expr_of(x)) & self.runtime) if isinstance(x, int) else False

    def shape(self, v: Value) -> tuple[int, ...]:
        t = self.type_of(v)
        if not isinstance(t, TensorType) or t.shape is None:
            raise UnsupportedOpError(f"{t} has no static shape")
        out = []
        for d in t.shape:
            if isinstance(d, Unknown):
                raise UnsupportedOpError(f"{t} has a data-dependent dim")
            try:
                out.append(self.value(d))
            except EmberError as err:
                raise UnsupportedOpError(f"{t}: {err} (give the input shapes)") from None
        return tuple(out)

    def value(self, d: Any) -> int:
        """A dim's value at the bound symbols; when lowering for a range of shapes, a SymInt
        that also carries the dim's expression (codegen/symbolic.py)."""
        value = evaluate(d, self.env)
        runtime = bool(D.free_symbols(d) & self.runtime)
        return symbolic.make(value, d) if self.symbolic or runtime else value

    def _describe(self, v: Value, t: TensorType) -> str:
        """How a size error names a value: what defines it, where, its type and the symbols bound."""
        op = v.defining_op
        if op is None:
            what = f"input %{v.name}" if v.name else "a function input"
        else:
            what = f"{op.loc}: {op.name}" if op.loc else op.name
        bound = ", ".join(f"{s}={self.env[s]}" for s in sorted(t.symbols()) if s in self.env)
        return f"{what} ({t}{' with ' + bound if bound else ''})"

    def _add_value(self, v: Value, kind: str, **extra: Any) -> int:
        vid = len(self.program.values)
        self.ids[v] = vid
        t = self.type_of(v)
        if isinstance(t, TensorType):
            try:
                shape = self.shape(v)
            except (UnsupportedOpError, EmberError):
                shape, kind = (), "host"
            else:
                sizes.nbytes([symbolic.value_of(d) for d in shape], t.dtype.itemsize, self._describe(v, t))
                if kind == "activation" and any(self.is_runtime(d) for d in shape):
                    kind = "dynamic"  # sized when the program runs: allocated per run, outside the arena
            dt = t.dtype.name
        else:
            shape, dt, kind = (), str(t), "host"
        self.program.values.append(ValueInfo(vid, v.name or f"v{vid}", dt, shape, kind, **extra))
        return vid

    def run(self) -> Program:
        for name, v in zip(self.fn.input_names, self.fn.inputs):
            vid = self._add_value(v, "input")
            self.program.inputs.append(P.Port(name, vid))
        for index, op in enumerate(self.fn.body.ops):
            self._lower_at(index, op)
        for name, v in zip(self.fn.output_names, self.fn.outputs):
            self.program.outputs.append(P.Port(name, self.ids[v]))
        return self.program

    def _lower_at(self, index: int, op: Operation) -> None:
        with symbolic.origin(f"{op.name} @ {op.loc}" if op.loc else op.name):
            self.lower_op(index, op)

    def lower_op(self, index: int, op: Operation) -> None:
        self._retype(op)
        self._size_from_shape_values(op)
        if op.name == "ember.if" and self._branches_on_device(op):
            self._lower_branches(index, op)
            return
        if op.name == "ember.weight":
            self._add_value(op.results[0], "weight", weight=op.attributes["name"])
            return
        if op.name == "ember.constant":
            vid = self._add_value(op.results[0], "const", weight=f"const:{len(self.program.values)}")
            info = self.program.values[vid]
            self.program.constants[info.weight] = np.asarray(op.attributes["value"].array)  # type: ignore[index]
            return
        if self._add_windows(op):
            return  # slices of a buffer that are contiguous in it: read in place, no kernel
        if _aliases(op) and ViewLike in getattr(op, "traits", ()) and self._is_tensor(op):
            source = self.program.values[self.ids[op.operands[0]]]  # type: ignore[index]
            window = source.offset if source.kind == "view" else None   # a view of a window is one
            if source.kind != "host" and (window is None or source.dtype == self.type_of(op.results[0]).dtype.name):
                root = source.alias if source.kind == "view" else source.id
                self._add_value(op.results[0], "view", alias=root, offset=window)
                if self.program.values[-1].kind == "view":
                    return  # a view costs no kernel: it reads its source's buffer
        for r in op.results:
            if r not in self.ids:
                self._add_value(r, "activation")
        fn = FUSED_LOWERINGS.get(op.attributes.get("kind", "")) if op.name == "ember.fused" else LOWERINGS.get(op.name)
        reason = "no kernel for this op yet"
        if _aliases(op):
            reason = "a view of a value the host computes"
        elif op.regions:
            reason = "control flow runs from the host"
        unsized = [r for r in op.results if self.program.values[self.ids[r]].kind == "host"]
        size_step: P.SizeStep | None = None
        if fn is not None and unsized and op in self.by_shapes and self._all_tensors(op):
            size_step = P.SizeStep((index,), (), tuple(self._bind_unknown(op)), "shapes")
            self.program.steps.append(size_step)
            unsized = []
        elif fn is not None and unsized and self._sized_at_run_time(op):
            reads = tuple(sorted({self.ids[v] for v in op.size_reads() if v in self.ids}))
            size_step = P.SizeStep((index,), reads, tuple(self._bind_unknown(op)))
            self.program.steps.append(size_step)
            unsized = []
        if fn is not None and unsized:
            reason = f"its result {unsized[0].type} {self._why_unsized(unsized[0])}"
        if fn is not None and not unsized:
            ctx = LowerContext(self, op, index)
            try:
                guards = self._lower_traced(fn, ctx, op)
                for launch in ctx.launches:
                    self._add_kernel(launch.kernel)
                    # which candidate runs for a heavy op, and the others; decisions on run-time sizes
                    self.program.steps.append(launch.spec(ctx.tactic, ctx.candidates, tuple(guards)))
                return
            except UnsupportedOpError as err:
                reason = str(err)
        if size_step is not None:  # no kernel after all: the op runs on the host, which binds its sizes
            self.program.steps.remove(size_step)
            writes = tuple(self.ids[r] for r in op.results)
            self.program.steps.append(P.HostStep((index,), tuple(self._reads(op)), writes, reason, size_step.binds))
            self.program.host_ops.append(f"{op.name} @ {op.loc or '?'}: {reason}")
            return
        self._host_step(index, op, reason)

    def _branches_on_device(self, op: Operation) -> bool:
        """Whether an ember.if runs as branch steps: its condition has a device buffer (one
        element, read back at the boundary) and its results are tensors kernels can hold."""
        cond = op.operands[0]
        if cond not in self.ids or self.program.values[self.ids[cond]].kind == "host":
            return False
        return all(isinstance(self.type_of(r), TensorType) and self.type_of(r).shape is not None
                   and self.type_of(r).dtype.name in DTYPES and self.type_of(r).dtype.name != "str"
                   for r in op.results)

    def _lower_branches(self, index: int, op: Operation) -> None:
        """An ember.if as a branch step, the steps of its then block and a yield, those of its
        else block and a yield: the runtime reads the condition back and runs one of the two.
        The blocks' ops are numbered after the entry function's (ir/program.py `op_table`)."""
        for r in op.results:
            self._add_value(r, "activation")
        binds = tuple(self._bind_unknown(op))  # results whose size depends on the branch taken
        writes = tuple(self.ids[r] for r in op.results)
        steps = self.program.steps
        branch_at = len(steps)
        steps.append(P.BranchStep((index,), (self.ids[op.operands[0]],), -1))  # (else_at set below)
        then_yield = -1
        for k, block in enumerate(op.regions):
            for inner in block.ops:
                self.table.append(inner)
                self._lower_at(len(self.table) - 1, inner)
            reads = tuple(self.ids[v] for v in block.outputs)
            if k == 0:
                then_yield = len(steps)
                steps.append(P.YieldStep((index,), reads, writes, -1, binds))  # (next set below)
                steps[branch_at] = P.BranchStep((index,), (self.ids[op.operands[0]],), len(steps))
            else:
                steps.append(P.YieldStep((index,), reads, writes, len(steps) + 1, binds))
        then = steps[then_yield]
        steps[then_yield] = P.YieldStep(then.ops, then.reads, then.writes, len(steps), binds)

    def _lower_traced(self, fn: Lowering, ctx: "LowerContext", op: Operation) -> list[Guard]:
        """Run a lowering; the guards it records over run-time symbols come back (the runtime
        checks them when the sizes are known, and runs the op on the host where one fails), the
        others go to the enclosing trace (decided over the profile at build time)."""
        local = symbolic.Trace()
        outer = symbolic.active()
        local.origin = outer.origin if outer is not None else ""
        with symbolic.tracing(local):
            fn(ctx, op)
        at_run_time = []
        for g in local.guards.values():
            if (D.free_symbols(g.lhs) | D.free_symbols(g.rhs)) & self.runtime:
                at_run_time.append(g)
            elif outer is not None:
                outer.record(g.lhs, g.op, g.rhs, True)
        return at_run_time

    def _add_kernel(self, kernel: Kernel) -> None:
        """One kernel per code: a layer whose kernel equals another's but for comments adds its
        source ops to that kernel's."""
        known = self.program.kernels.get(kernel.name)
        if known is None:
            self.program.kernels[kernel.name] = kernel
        elif any(o not in known.ops for o in kernel.ops):
            self.program.kernels[kernel.name] = replace(
                known, ops=known.ops + tuple(o for o in kernel.ops if o not in known.ops))

    def _sized_at_run_time(self, op: Operation) -> bool:
        """Whether a size step can find the op's result sizes (ember.range from its scalars) so
        a kernel computes its values: the op says how, and its operands have device buffers."""
        if getattr(type(op), "run_time_sizes", None) is None or not self._all_tensors(op):
            return False
        return all(self.program.values[self.ids[v]].kind != "host" for v in op.size_reads())

    def _all_tensors(self, op: Operation) -> bool:
        for v in [*op.operands, *op.results]:
            if v is None or not isinstance(self.type_of(v), TensorType):
                return False
            if self.type_of(v).dtype.name not in DTYPES or self.type_of(v).dtype.name == "str":
                return False
        return True

    def _retype(self, op: Operation) -> None:
        """Re-run the op's type rule where the IR's types say less than the lowerer knows: an
        operand sized by a run-time symbol, or a data-dependent result dim that the rule can
        now decide (a range whose bounds were folded to constants after it was typed).

        A type rule may assume what holds for the model's input symbols (a symbolic slice
        bound in range, a symbol broadcasting against k being k), so a result typed over
        run-time symbols is kept only where the rule gives the same shapes as with the symbols
        replaced by numbers, at several values (`_exact`); otherwise the result stays
        data-dependent and its op runs on the host, which binds its size."""
        operands = [v for v in op.operands if v is not None]
        changed = any(v in self.types for v in operands)
        unknown = any(_has_unknown(r.type) for r in op.results)
        if not (changed or unknown) or op.regions and op.name != "ember.fused":
            return
        rule = self._rule(op)
        types = [self.type_of(v) if v is not None else None for v in op.operands]
        try:
            out = rule(types)
        except (EmberError, TypeError, ValueError, KeyError, IndexError, AttributeError):
            return
        if len(out) != len(op.results):
            return
        if changed and not self._exact(rule, types, out):
            if op.name != "ember.fused" and self._static_at_samples(rule, types):
                self.by_shapes.add(op)  # a size step can run the rule on the shapes when the program runs
            return
        for r, t in zip(op.results, out):
            old = r.type
            if not (isinstance(t, TensorType) and isinstance(old, TensorType)) or t.dtype != old.dtype \
                    or t == old or t.shape is None or old.shape is None or len(t.shape) != len(old.shape):
                continue
            if any(isinstance(n, Unknown) and not isinstance(o, Unknown) for n, o in zip(t.shape, old.shape)):
                continue  # the rule knows less here than the IR said: keep the IR's type
            self.types[r] = t

    def _shape_value(self, v: Value) -> ShapeValue | None:
        """What a small integer value is, as dims over the symbols (run-time ones included):
        shape arithmetic on values sized when the program runs (ir/shape_values.py)."""
        if v in self.shape_values:
            return self.shape_values[v]
        out = None
        op = v.defining_op
        if op is not None and op.name == "ember.constant":
            out = ShapeValue.of(np.asarray(op.attributes["value"].array))
        elif op is not None and not op.regions and len(op.results) == 1:
            args = [self._shape_value(a) if a is not None else None for a in op.operands]
            out = shape_values.evaluate(op, args, type_of=self.type_of)
        self.shape_values[v] = out
        return out

    def _size_from_shape_values(self, op: Operation) -> None:
        """Size a result whose size is data from what that data is known to be (the op's
        `symbolic_sizes`): a top-k whose k is min(300, a NonZero's count) is sized by that
        count's symbol, and the ops after it lower over one symbol instead of several."""
        rule = getattr(type(op), "symbolic_sizes", None)
        if rule is None or not any(_has_unknown(self.type_of(r)) for r in op.results) or not self._all_tensors(op):
            return
        reads = op.size_reads()
        known = {v: self._shape_value(v) for v in reads}
        if any(x is None for x in known.values()):
            return
        args = [None if v is None else known[v] if any(v is r for r in reads)
                else ShapeOnly(tuple(self.type_of(v).shape), self.type_of(v).dtype) for v in op.operands]
        try:
            shapes = rule(*op.group(args, like=op.operands).values(), **op.attributes)
        except (EmberError, TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError):
            return
        if shapes is None or len(shapes) != len(op.results):
            return
        for r, shape in zip(op.results, shapes):
            t = self.type_of(r)
            if len(shape) != len(t.shape) or any(isinstance(d, Unknown) for d in shape):
                return
        for r, shape in zip(op.results, shapes):
            self.types[r] = self.type_of(r).with_shape(tuple(shape))

    def _rule(self, op: Operation) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        """The op's type rule over given operand types; a fused elementwise region's is its
        operands' broadcast (what fusion relies on: its own rule checks the region's types)."""
        if op.name == "ember.fused" and op.attributes.get("kind") == "elementwise":
            def broadcast(types: Sequence[Any]) -> tuple[Any, ...]:
                if any(not isinstance(t, TensorType) or t.shape is None for t in types):
                    raise TypeError("not a tensor")
                shape = D.broadcast_shapes(*(tuple(t.shape) for t in types))
                return tuple(r.type.with_shape(shape) for r in op.results)
            return broadcast
        return lambda types: op.infer_types(types)  # type: ignore[attr-defined]

    def _static_at_samples(self, rule: Callable[[Sequence[Any]], tuple[Any, ...]], types: Sequence[Any]) -> bool:
        """Whether the rule gives static result shapes once the run-time symbols are numbers (at
        the samples of `_exact`): then the sizes follow from the operands' shapes alone."""
        for env in self._sample_envs(types):
            try:
                out = rule([_substituted(t, env) for t in types])
            except (EmberError, TypeError, ValueError, KeyError, IndexError, AttributeError):
                return False
            if not all(isinstance(t, TensorType) and t.shape is not None and all(isinstance(d, int) for d in t.shape)
                       for t in out):
                return False
        return True

    def _sample_envs(self, types: Sequence[Any]) -> list[dict[str, int]]:
        names = sorted({s for t in types if isinstance(t, TensorType) and t.shape is not None
                        for d in t.shape for s in D.free_symbols(d)} & self.runtime)
        envs = [{n: x for n in names} for x in EXACT_SAMPLES]
        return envs + [{n: x + 3 * k for k, n in enumerate(names)} for x in EXACT_SAMPLES[2:]]

    def _exact(self, rule: Callable[[Sequence[Any]], tuple[Any, ...]], types: Sequence[Any],
               out: Sequence[Any]) -> bool:
        """Whether `out`, the rule's result over run-time symbols, is what the rule gives with
        the symbols replaced by numbers (all equal, and all different), wherever it is asked."""
        for env in self._sample_envs(types):
            try:
                concrete = [_substituted(t, env) for t in types]
                want = rule(concrete)
                got = [_substituted(t, env) for t in out]
            except (EmberError, TypeError, ValueError, KeyError, IndexError, AttributeError):
                return False
            if list(want) != got:
                return False
        return True

    def _bind_unknown(self, op: Operation) -> list[P.Bind]:
        """Give each data-dependent dim of the op's results a fresh run-time symbol: the value
        becomes one sized when the program runs, and ops after it lower over the symbol. Returns
        the step's `binds`: [symbol, value id, axis], read from the results' shapes at run time."""
        binds: list[P.Bind] = []
        same = self._shared_unknowns(op)
        named: dict[int, str] = {}  # one symbol per unknown the type rule shares between results
        for i, r in enumerate(op.results):
            t = self.type_of(r)
            if not isinstance(t, TensorType) or t.shape is None or t.dtype.name not in DTYPES \
                    or t.dtype.name == "str" or not _has_unknown(t):
                continue
            vid = self.ids[r]
            dims = []
            for axis, d in enumerate(t.shape):
                if not isinstance(d, Unknown):
                    dims.append(d)
                    continue
                key = same.get((i, axis))
                if key is not None and key in named:
                    dims.append(D.sym(named[key]))
                    continue
                name = f"{self.prefix}{len(self.runtime)}"
                self.runtime.add(name)
                if key is not None:
                    named[key] = name
                bound = d.bound if isinstance(d.bound, int) else None
                self.env[name] = RUNTIME_SAMPLE if bound is None else min(RUNTIME_SAMPLE, bound)
                dims.append(D.sym(name))
                binds.append(P.Bind(name, vid, axis))
            self.types[r] = t.with_shape(tuple(dims))
            info = self.program.values[vid]
            info.shape = self.shape(r)
            info.kind, info.alias, info.offset = "dynamic", None, None
        return binds

    def _add_windows(self, op: Operation) -> bool:
        """Results of a gather, slice or split that are one contiguous run of their source's
        activation buffer become windows of it (views with an offset): the consumers read them
        in place, as TensorRT elides such slices. Whether they do when the program runs with
        other sizes is fixed here: the leading dims must be the constant 1."""
        if op.name not in WINDOW_OPS or not self._is_tensor(op) or op.operands[0] not in self.ids:
            return False
        source = self.program.values[self.ids[op.operands[0]]]
        root = source.alias if source.kind == "view" else source.id
        if root is None or self.program.values[root].kind != "activation" or source.kind not in ("view",
                                                                                                   "activation"):
            return False
        try:
            starts = WINDOW_OPS[op.name](self, op)
            shapes = [self.shape(r) for r in op.results]
        except (UnsupportedOpError, EmberError):
            return False
        if starts is None or any(self.is_runtime(d) for shape in shapes for d in shape):
            return False
        itemsize = self.type_of(op.operands[0]).dtype.itemsize
        if itemsize < 1:
            return False
        base = source.offset or 0
        for r, start in zip(op.results, starts):
            self._add_value(r, "view", alias=root, offset=base + start * int(itemsize))
        return True

    def _shared_unknowns(self, op: Operation) -> dict[tuple[int, int], int]:
        """(result, axis) -> a key shared by the unknown dims that the op's type rule gives as one
        (a top-k's values and indices: the same k), which the IR's text cannot say."""
        if op.regions or len(op.results) < 2:
            return {}
        try:
            types = op.infer_types([self.type_of(v) if v is not None else None for v in op.operands])
        except (EmberError, TypeError, ValueError, KeyError, IndexError, AttributeError):
            return {}
        return {(i, axis): id(d) for i, t in enumerate(types) if isinstance(t, TensorType) and t.shape is not None
                for axis, d in enumerate(t.shape) if isinstance(d, Unknown)}

    def _reads(self, op: Operation) -> list[int]:
        return sorted({self.ids[v] for v in op.reads() if v in self.ids})

    def tactic_for(self, index: int, op: Operation) -> str | None:
        if index in self.tactics:
            return self.tactics[index]
        return next((self.tactics[n] for n in op.loc.names if n in self.tactics), None)

    def _why_unsized(self, v: Value) -> str:
        try:
            self.shape(v)
        except UnsupportedOpError as err:
            text = str(err)
            return "has a data-dependent dim (known only when the model runs)" if "data-dependent" in text \
                else text.split(": ", 1)[-1]
        return "is not a tensor a kernel can write"

    def _is_tensor(self, op: Operation) -> bool:
        return all(isinstance(v.type, TensorType) for v in [*op.operands, *op.results] if v is not None)

    def _host_step(self, index: int, op: Operation, reason: str) -> None:
        for r in op.results:
            info = self.program.values[self.ids[r]]
            if info.kind == "view":  # a view whose source has no buffer: computed on the host instead
                info.kind, info.alias, info.offset = "activation", None, None
        reads = self._reads(op)
        writes = [self.ids[r] for r in op.results]
        binds = tuple(self._bind_unknown(op))
        self.program.steps.append(P.HostStep((index,), tuple(reads), tuple(writes), reason, binds))
        self.program.host_ops.append(f"{op.name} @ {op.loc or '?'}: {reason}")


RUNTIME_PREFIX = "_rt"  # run-time symbols: _rt0, _rt1, ... (more leading underscores if the model's symbols have some)
RUNTIME_SAMPLE = 7      # the value a run-time symbol has while lowering (decisions on it are run-time guards)


EXACT_SAMPLES = (0, 1, 2, 3, 7, 64, 1000)  # where `Lowerer._exact` checks a type rule over run-time symbols


def _substituted(t: Any, env: Mapping[str, int]) -> Any:
    if not isinstance(t, TensorType) or t.shape is None:
        return t
    return t.with_shape(tuple(D.substitute(d, env) for d in t.shape))


def _has_unknown(t: Any) -> bool:
    return isinstance(t, TensorType) and t.shape is not None and any(isinstance(d, Unknown) for d in t.shape)


def _integer(x: Any) -> int:
    """An integer argument, keeping a SymInt's expression (int() would pin it to one value)."""
    if isinstance(x, int) and not isinstance(x, bool):
        return x
    return operator.index(x)


def lower(module: Module, env: Mapping[str, int] | None = None,
          tactics: Mapping[int | str, str] | None = None, *, symbolic: bool = False,
          preferred: Mapping[int, str] | None = None, target: str | None = None,
          fixed_shape: bool | None = None) -> Program:
    """The program for `module`'s entry function, with symbols bound by `env`; `tactics`
    picks a candidate implementation for heavy ops (by op index or location).

    With `symbolic`, sizes are SymInts (codegen/symbolic.py) while lowering and shape
    expressions in the program; run it inside `symbolic.tracing` to collect the guards under
    which it holds. `preferred` names, by op index, tactics to take when they are among
    the candidates (those chosen at a profile's OPT shape). `target` ("sm_90") is the GPU
    whose SM count steers the choice of tiles (codegen/ops/heavy.py). `fixed_shape` (by default:
    not `symbolic`) says that the program serves this one shape, so kernels may hold its sizes as
    constants (heavy.static_pairs); a concrete lowering that checks a symbolic one passes False."""
    import ember.codegen.ops  # noqa: F401  (registers the lowerings)
    lowerer = Lowerer(module, env or {}, tactics, symbolic=symbolic, preferred=preferred, target=target,
                      fixed_shape=fixed_shape)
    program = lowerer.run()
    unused = [k for k in lowerer.tactics if not any(
        isinstance(s, P.LaunchStep) and s.tactic is not None and (k in s.ops or k in _locs(lowerer.table, s.ops))
        for s in program.steps)]
    if unused:
        raise EmberError(f"tactics name no heavy op of the model: {', '.join(map(str, unused))}")
    return program


def _locs(ops: Sequence[Operation], indices: Sequence[int]) -> set[str]:
    return {n for i in indices for n in ops[i].loc.names}


__all__ = ["lower", "lowering", "LowerContext", "Program", "ValueInfo", "LOWERINGS", "FUSED_LOWERINGS"]

