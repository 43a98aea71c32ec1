"""An engine's program at one shape: the specialization that covers it, bound, with its memory plan.

An engine holds, per optimization profile, one or more shape-symbolic programs
(ir/program.py). Running it at a shape means: bind the symbols from the input
shapes, find the profile whose ranges hold them and the specialization whose
guards hold, evaluate its expressions into a concrete program (launch grids,
kernel arguments, value sizes), check that program as the loader checks a stored
one (runtime/validate.py), and lay out its arena. All of it is plain Python over
the program; no kernel is compiled. `Bindings` keeps the most recent ones.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ember.errors import EmberError
from ember.ir import sizes
from ember.ir.dims import evaluate, free_symbols
from ember.ir.profiles import Profile, Specialization
from ember.ir.program import LaunchStep, Program, Step, ValueSpec, format_env, parse_expr
from ember.runtime.memory_plan import MemoryPlan, op_groups, plan_memory


@dataclass
class Binding:
    """The concrete program, memory plan and launch groups of one shape."""

    env: dict[str, int]
    specialization: int           # index into the engine's specializations (-1: the stored program)
    program: Program              # concrete: every size an int
    plan: MemoryPlan

    def __post_init__(self) -> None:
        self.groups = op_groups(self.program.steps)
        self.runtime = self.program.runtime_symbols - set(self.env)
        self.params = self.program.kernel_params

    @property
    def values(self) -> tuple[ValueSpec, ...]:
        return self.program.values

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.program.steps

    @property
    def key(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self.env.items()))

    def root(self, vid: int) -> int:
        return self.program.root(vid)

    def offset(self, vid: int) -> int:
        """Where `vid` starts in its root's buffer, bytes (a window's offset; 0 otherwise)."""
        return int(self.program.offset(vid))


class RunSizes:
    """The sizes of one run of a binding whose program has run-time symbols (sizes found from
    data: NonZero's count, a range's length). Host and size steps bind them (`bind`) from the
    shapes they produce; values and launch steps sized over them are evaluated when they are
    reached (`value`, `step`), each launch checked as the loader checks a stored one
    (`check(step, t)`) and its run-time guards evaluated (`runs_on_device`). Shared by the
    host arena and the CUDA context, so the host tests cover the logic the GPU runs."""

    def __init__(self, b: Binding, check: Callable[[LaunchStep, int], None], error: type[EmberError]) -> None:
        self.b, self.check, self.error = b, check, error
        self.env = dict(b.env)
        self._values: dict[int, ValueSpec] = {}
        self._steps: dict[int, LaunchStep] = {}
        self._on_device: dict[int, bool] = {}

    def bind(self, t: int, shapes: Mapping[int, Sequence[int]]) -> None:
        """Bind the run-time symbols of step `t` from the shapes of the values it produced."""
        for bound in getattr(self.b.steps[t], "binds", ()):
            sym, vid, axis = bound.symbol, bound.value, bound.axis
            shape = shapes.get(vid)
            if shape is None or not 0 <= axis < len(shape):
                raise self.error(f"step {t} binds {sym} to dim {axis} of value {vid}, which it did not produce "
                                 f"with that rank (got {None if shape is None else list(shape)})")
            got = int(shape[axis])
            if self.env.get(sym, got) != got:
                raise self.error(f"step {t}: {sym} is {got} here, but {self.env[sym]} from an earlier step")
            self.env[sym] = got

    def value(self, vid: int) -> ValueSpec:
        """Value `vid` with its shape and byte size as ints (views checked against their source)."""
        info = self.b.values[vid]
        root = self.b.root(vid)
        if info.kind == "host" or (info.is_bound and self.b.values[root].kind != "dynamic"):
            return info
        if vid not in self._values:
            try:
                out = info.bind(self.env)
            except (EmberError, ValueError, ZeroDivisionError) as err:
                raise self.error(f"value {info.name} at {format_env(self.env)}: "
                                 f"{str(err).splitlines()[0]}") from None
            if root != vid and not _fits(out, self.value(root)):
                raise self.error(f"value {info.name} {list(out.shape)} is a view of "
                                 f"{self.b.values[root].name} {list(self.value(root).shape)}, which has other "
                                 f"bytes here ({format_env(self.env)})")
            self._values[vid] = out
        return self._values[vid]

    def step(self, t: int) -> LaunchStep:
        """Launch step `t` with every size an int (checked), its guards decided."""
        s = self.b.steps[t]
        assert isinstance(s, LaunchStep)
        if s.is_bound:
            return s
        if t not in self._steps:
            try:
                out = s.bind(self.env)
                on_device = out.guards_hold()
            except (EmberError, ValueError, ZeroDivisionError) as err:
                raise self.error(f"step {t} at {format_env(self.env)}: {str(err).splitlines()[0]}") from None
            if on_device:
                self.check(out, t)
            self._steps[t], self._on_device[t] = out, on_device
        return self._steps[t]

    def runs_on_device(self, t: int) -> bool:
        """Whether launch step `t` launches (its run-time guards hold); else its op runs on the host."""
        self.step(t)
        return self._on_device.get(t, True)


def symbols_of(inputs: Sequence[Any], shapes: Mapping[str, tuple[int, ...]], error: type[EmberError]
               ) -> dict[str, int]:
    """The symbols' values from the input shapes (each input's declared dims, `TensorSpec.dims`):
    static dims must match, a symbol bound twice must agree, expressions must come out right."""
    env: dict[str, int] = {}
    later: list[tuple[str, int, Any, int]] = []
    for spec in inputs:
        if spec.name not in shapes or not spec.dims:
            continue
        shape = tuple(shapes[spec.name])
        if len(shape) != len(spec.dims):
            raise error(f"input {spec.name!r}: rank {len(shape)} (shape {list(shape)}); the engine's input is "
                        f"[{','.join(spec.dims)}], rank {len(spec.dims)}")
        for axis, (text, got) in enumerate(zip(spec.dims, shape)):
            if text.lstrip("-").isdigit():
                if int(text) != got:
                    raise error(f"input {spec.name!r}: dim {axis} is {got}; the engine's input is "
                                f"[{','.join(spec.dims)}] (shape given {list(shape)})")
                continue
            if text.isidentifier():
                if env.get(text, got) != got:
                    raise error(f"input {spec.name!r}: dim {axis} ({text}) is {got}, but another input gives "
                                f"{text}={env[text]}")
                env[text] = got
            elif not text.startswith("?"):
                later.append((spec.name, axis, parse_expr(text), got))
    for name, axis, d, got in later:
        if free_symbols(d) <= set(env) and evaluate(d, env) != got:
            raise error(f"input {name!r}: dim {axis} must be {d} = {evaluate(d, env)} with {format_env(env)}, "
                        f"got {got}")
    return env


def choose(profiles: Sequence[Profile], specializations: Sequence[Specialization], env: Mapping[str, int],
           shapes: Mapping[str, tuple[int, ...]], error: type[EmberError]) -> int:
    """The specialization for `env`: in the first profile that holds it, the first whose guards hold."""
    for p, profile in enumerate(profiles):
        if not profile.contains(env):
            continue
        for i, spec in enumerate(specializations):
            if spec.profile == p and spec.holds(env):
                return i
        raise error(f"no kernel variant of profile {p} covers {format_env(env)}; the engine was built from a "
                    "sample of the profile's shapes: rebuild with this shape in the profile's OPT")
    given = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
    listed = "; ".join(f"{p}: {prof}" for p, prof in enumerate(profiles)) or "none"
    raise error(f"input shapes {given} ({format_env(env)}) are outside every optimization profile of the engine "
                f"(profiles, as name:MIN:OPT:MAX: {listed})")


class Bindings:
    """Bound programs by shape, the most recently used kept (at most `capacity`)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._cache: OrderedDict[tuple[tuple[str, int], ...], Binding] = OrderedDict()

    def get(self, env: dict[str, int], make: Callable[[], Binding]) -> Binding:
        key = tuple(sorted(env.items()))
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        binding = make()
        self._cache[key] = binding
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return binding

    def put(self, binding: Binding) -> None:
        self._cache[binding.key] = binding


def bind(spec_index: int, spec: Specialization, env: dict[str, int],
         check: Callable[[Program], Mapping[int, Sequence[int]]], error: type[EmberError]) -> Binding:
    """Evaluate `spec` at `env`, check it (`check` returns what the steps' ops read beyond their
    kernels, for the planner) and plan its memory."""
    try:
        program = spec.program.bind(env)
    except (EmberError, ValueError, ZeroDivisionError) as err:
        raise error(f"at {format_env(env)}: {str(err).splitlines()[0]}") from None
    extra_reads = check(program)
    _check_views(spec.program, program, env, error)
    plan = plan_memory(program, extra_reads=extra_reads)
    sizes.check_bytes(plan.arena_bytes, f"the activation arena at {format_env(env)}")
    return Binding(dict(env), spec_index, program, plan)


def _fits(view: ValueSpec, root: ValueSpec) -> bool:
    """A whole view has its root's bytes; a window lies inside them (sizes bound to ints)."""
    if view.offset is None:
        return view.nbytes == root.nbytes
    return isinstance(view.offset, int) and 0 <= view.offset and view.offset + view.nbytes <= root.nbytes


def _check_views(symbolic: Program, program: Program, env: Mapping[str, int], error: type[EmberError]) -> None:
    """A view (reshape and friends) reads its source's buffer, so at every shape it must hold as many
    bytes: a reshape whose target does not divide at this shape breaks the model's own constraint."""
    values = program.values
    for v, declared in zip(values, symbolic.values):
        if v.kind != "view" or v.alias is None:
            continue
        root = values[program.root(v.id)]
        if not isinstance(v.nbytes, int) or not isinstance(root.nbytes, int):
            continue  # sized at run time: checked then (RunSizes.value)
        if not _fits(v, root):
            src = symbolic.values[root.id]
            raise error(f"the input shapes ({format_env(env)}) break a constraint of the model: "
                        f"{v.name} [{','.join(map(str, declared.shape))}] is a view of {root.name} "
                        f"[{','.join(map(str, src.shape))}], {list(v.shape)} against {list(root.shape)} here "
                        f"({v.nbytes} and {root.nbytes} bytes"
                        f"{'' if v.offset is None else f', the window starting at byte {v.offset}'})")


__all__ = ["Binding", "Bindings", "RunSizes", "bind", "choose", "symbols_of"]
