"""Lower a module for optimization profiles: as few traced lowerings as cover every shape.

For each profile, the module is lowered at its OPT shape with SymInts
(codegen/symbolic.py), which gives a shape-symbolic program and the guards under
which it holds. The guards are evaluated over the profile's points (every point of
the symbols' box when it has at most `EXHAUSTIVE_POINTS`, else its corners and a
large random sample); while some point is not covered, the module is lowered again
there (the tactics chosen at OPT kept where they fit), giving another
specialization. A lowering that needs more than `MAX_SPECIALIZATIONS` is refused,
naming the guards that split it.

Each specialization is then checked by lowering again, with plain integers, at
other points it claims to cover and comparing with its expressions evaluated
there: a size a lowering computed without keeping its expression (through numpy,
say) cannot pass for symbolic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ember.codegen import symbolic
from ember.codegen.kernel import Kernel
from ember.codegen.lower import Program, lower
from ember.errors import EmberError
from ember.ir.core import Module
from ember.ir.profiles import Guard, Profile, Specialization, grid_points, satisfied
from ember.ir.program import LaunchStep, Program as ProgramSpec, format_env

EXHAUSTIVE_POINTS = 1 << 21
MAX_SPECIALIZATIONS = 64
CHECK_POINTS = 3


class SpecializationError(EmberError, RuntimeError):
    """A lowering that cannot serve a profile's range of shapes."""


@dataclass
class Lowered:
    """What lowering for profiles gives the builder."""

    specializations: list[Specialization]
    kernels: dict[str, Kernel]
    constants: dict[str, np.ndarray]
    host_ops: list[str]
    exhaustive: list[bool]
    lowerings: int = 0
    target: str | None = None  # the GPU the tiles are chosen for


def lower_profiles(module: Module, profiles: Sequence[Profile],
                   tactics: Mapping[int | str, str] | None = None, target: str | None = None,
                   prefer: Mapping[int, str] | None = None) -> Lowered:
    """`prefer` (op index -> tactic: the timed picks) is taken wherever the op offers it;
    `tactics` (the user's) must be offered."""
    out = Lowered([], {}, {}, [], [], target=target)
    for p, profile in enumerate(profiles):
        specs, exhaustive = _cover(module, p, profile, tactics, out, prefer)
        out.specializations.extend(specs)
        out.exhaustive.append(exhaustive)
    return out


def _trace(module: Module, env: Mapping[str, int], tactics: Any, preferred: Mapping[int, str] | None,
           out: Lowered, symbolic_sizes: bool = True, fixed_shape: bool | None = None
           ) -> tuple[Program, ProgramSpec, tuple[Guard, ...]]:
    trace = symbolic.Trace()
    with symbolic.tracing(trace):
        program = lower(module, env, tactics, symbolic=symbolic_sizes, preferred=preferred, target=out.target,
                        fixed_shape=fixed_shape)
        spec = program.spec()
    out.lowerings += 1
    return program, spec, tuple(trace.guards.values())


def _chosen_tactics(program: ProgramSpec) -> dict[int, str]:
    chosen: dict[int, str] = {}
    for s in program.launches:
        if s.tactic is not None:
            for index in s.ops:
                chosen[index] = s.tactic
    return chosen


def _cover(module: Module, p: int, profile: Profile, tactics: Any, out: Lowered,
           prefer: Mapping[int, str] | None = None) -> tuple[list[Specialization], bool]:
    if profile.points == 1:  # one shape: no expressions, nothing to guard
        program, spec, _ = _trace(module, profile.env("opt"), tactics, prefer, out, symbolic_sizes=False)
        _collect(out, program)
        return [Specialization(p, spec, (), profile.env("opt"))], True
    points, exhaustive = grid_points(profile, EXHAUSTIVE_POINTS)
    names = sorted(profile.symbols)
    n = len(points[names[0]])
    covered = np.zeros(n, dtype=bool)
    env = profile.env("opt")
    preferred: dict[int, str] | None = None
    specs: list[tuple[Specialization, np.ndarray]] = []
    while True:
        program, traced, guards = _trace(module, env, tactics, preferred if preferred is not None else prefer, out)
        if preferred is None:
            preferred = _chosen_tactics(traced)
        mask = satisfied(points, guards)
        if exhaustive:  # a guard true at every point of the box says nothing
            guards = tuple(g for g in guards if not np.all(g.holds_at(points)))
        spec = Specialization(p, traced, guards, dict(env))
        if not spec.holds(env):
            raise SpecializationError(f"profile {p}: the lowering at {format_env(env)} does not hold there "
                                      "(a guard it recorded is false at its own shape)")
        _collect(out, program)
        specs.append((spec, mask))
        covered |= mask
        if covered.all():
            break
        if len(specs) >= MAX_SPECIALIZATIONS:
            raise SpecializationError(_too_many(p, profile, [s for s, _ in specs]))
        left = np.flatnonzero(~covered)
        env = {name: int(points[name][left[0]]) for name in names}
    for spec, mask in specs:
        _check(module, spec, points, mask, tactics, preferred, out)
    return [s for s, _ in specs], exhaustive


def _collect(out: Lowered, program: Program) -> None:
    out.kernels.update(program.kernels)
    out.constants.update(program.constants)
    for h in program.host_ops:
        if h not in out.host_ops:
            out.host_ops.append(h)


def _too_many(p: int, profile: Profile, specs: Sequence[Specialization]) -> str:
    counts: dict[str, int] = {}
    for s in specs:
        for g in s.guards:
            key = f"{g} ({g.origin})" if g.origin else str(g)
            counts[key] = counts.get(key, 0) + 1
    split = sorted(counts, key=lambda k: -counts[k])[:5]
    return (f"profile {p} ({profile}): the kernels would need more than {MAX_SPECIALIZATIONS} variants to cover "
            f"its shapes; the lowering decides on {'; '.join(split)}. Narrow the profile or split it in several")


def _check(module: Module, spec: Specialization, points: Mapping[str, np.ndarray], mask: np.ndarray, tactics: Any,
           preferred: Mapping[int, str] | None, out: Lowered) -> None:
    """Lower at other points the specialization covers and compare with its expressions there."""
    where = np.flatnonzero(mask)
    names = sorted(points)
    picks = {int(where[0]), int(where[-1]), int(where[len(where) // 2])}
    for i in sorted(picks)[:CHECK_POINTS]:
        env = {name: int(points[name][i]) for name in names}
        if env == dict(spec.witness):
            continue
        _, concrete, _ = _trace(module, env, tactics, preferred, out, symbolic_sizes=False, fixed_shape=False)
        bound = spec.program.bind(env)
        problem = _difference(bound, concrete)
        if problem:
            raise SpecializationError(
                f"the lowering traced at {format_env(spec.witness)} does not hold at {format_env(env)}: {problem} "
                "(a size computed without its shape expression; build a fixed-shape engine with shapes=)")


def _difference(bound: ProgramSpec, concrete: ProgramSpec) -> str:
    if len(bound.steps) != len(concrete.steps):
        return f"{len(concrete.steps)} steps there, {len(bound.steps)} in the trace"
    for v, w in zip(bound.values, concrete.values):
        if v.kind != w.kind or (v.kind != "host" and v.shape != w.shape):
            return f"value {w.name}: {w.kind} {list(w.shape)} there, {v.kind} {list(v.shape)} in the trace"
    for t, (s, c) in enumerate(zip(bound.steps, concrete.steps)):
        if type(s) is not type(c):
            return f"step {t}: a {c.kind} step there, a {s.kind} step in the trace"
        keys = ("kernel", "grid", "block", "shared", "args", "ops", "reads", "writes") \
            if isinstance(c, LaunchStep) else ("ops", "reads", "writes")
        for key in keys:
            if getattr(s, key) != getattr(c, key):
                what = c.kernel if isinstance(c, LaunchStep) else c.kind
                return f"step {t} ({what}): {key} {getattr(c, key)} there, {getattr(s, key)} traced"
    return ""


__all__ = ["lower_profiles", "Lowered", "SpecializationError", "EXHAUSTIVE_POINTS", "MAX_SPECIALIZATIONS"]
