"""Optimization profiles, guards and specializations: how one engine serves a range of shapes.

An engine serves the shapes of its optimization profiles (TensorRT's term): per
input, a MIN, OPT and MAX shape; the symbols of the model's input dims then range
over boxes. Codegen lowers the model for each profile into one or more
*specializations*: a program whose sizes, grids and kernel arguments are shape
expressions over the symbols (ir/dims.py text: `N*S*768`, `(H-1)//2+1`), valid
wherever its *guards* hold (the decisions the lowering took: `S <= 1024`). The
runtime picks the specialization for the input shapes, evaluates the expressions
(`Program.bind`, ir/program.py) and runs the concrete program it gets; no kernel
is compiled after the build.

This module lives in `ir/` because both codegen (which writes these) and the
runtime (which reads them from the engine file) use it, and they import nothing
of each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ember.errors import EmberError, ShapeError
from ember.ir import dims as D
from ember.ir import sizes
from ember.ir.program import Guard, Program, evaluate_array


class ProfileError(EmberError, ValueError):
    """Profiles that do not fit the model, or a shape that fits no profile."""


@dataclass(frozen=True)
class InputRange:
    """One input's shapes in a profile: MIN, OPT and MAX, dim by dim."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ProfileError(f"input {self.name!r}: MIN {list(self.min)}, OPT {list(self.opt)} and MAX "
                               f"{list(self.max)} have different ranks")
        for axis, (lo, mid, hi) in enumerate(zip(self.min, self.opt, self.max)):
            for d in (lo, mid, hi):
                sizes.check_dim(d, f"profile of input {self.name!r}")
            if not lo <= mid <= hi:
                raise ProfileError(f"input {self.name!r}: dim {axis} must satisfy MIN <= OPT <= MAX, got "
                                   f"{lo}, {mid}, {hi}")

    def __str__(self) -> str:
        return f"{self.name}:{_x(self.min)}:{_x(self.opt)}:{_x(self.max)}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "InputRange":
        return cls(str(x["name"]), _dims(x["min"]), _dims(x["opt"]), _dims(x["max"]))


def _x(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def _dims(x: Any) -> tuple[int, ...]:
    if not isinstance(x, list) or any(isinstance(d, bool) or not isinstance(d, int) for d in x):
        raise ProfileError(f"a profile shape is a list of integers, not {x!r}")
    return tuple(x)


@dataclass(frozen=True)
class Profile:
    """An optimization profile: input ranges, and the ranges of the symbols they bind."""

    inputs: tuple[InputRange, ...]
    symbols: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)  # name -> (min, opt, max)

    def env(self, which: str) -> dict[str, int]:
        """The symbols at the profile's MIN, OPT or MAX."""
        k = ("min", "opt", "max").index(which)
        return {s: r[k] for s, r in self.symbols.items()}

    def contains(self, env: Mapping[str, int]) -> bool:
        return all(s in env and lo <= env[s] <= hi for s, (lo, _, hi) in self.symbols.items())

    @property
    def points(self) -> int:
        n = 1
        for lo, _, hi in self.symbols.values():
            n *= hi - lo + 1
        return n

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.inputs)

    def to_json(self) -> dict[str, Any]:
        return {"inputs": [r.to_json() for r in self.inputs],
                "symbols": {s: list(r) for s, r in sorted(self.symbols.items())}}

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "Profile":
        symbols = {}
        for s, r in dict(x.get("symbols") or {}).items():
            lo, mid, hi = _dims(r)
            if not 0 <= lo <= mid <= hi:
                raise ProfileError(f"symbol {s}: range {r} is not MIN <= OPT <= MAX")
            symbols[str(s)] = (lo, mid, hi)
        return cls(tuple(InputRange.from_json(r) for r in x["inputs"]), symbols)


def symbol_ranges(inputs: Sequence[tuple[str, Sequence[D.Dim]]], profile_inputs: Sequence[InputRange]
                  ) -> dict[str, tuple[int, int, int]]:
    """The symbols' (MIN, OPT, MAX) from a profile's input ranges: each bare-symbol dim binds its
    symbol; static dims must match; a symbol two inputs bind must agree."""
    given = {r.name: r for r in profile_inputs}
    names = [n for n, _ in inputs]
    unknown = [n for n in given if n not in names]
    if unknown:
        raise ProfileError(f"the profile names no input of the model: {', '.join(unknown)} "
                           f"(inputs: {', '.join(names)})")
    out: dict[str, tuple[int, int, int]] = {}
    for name, shape in inputs:
        r = given.get(name)
        if r is None:
            continue
        if len(r.min) != len(shape):
            raise ProfileError(f"input {name!r}: the profile's shapes have rank {len(r.min)}; the model's "
                               f"[{','.join(map(str, shape))}] has rank {len(shape)}")
        for axis, want in enumerate(shape):
            got = (r.min[axis], r.opt[axis], r.max[axis])
            if isinstance(want, int):
                if any(g != want for g in got):
                    raise ProfileError(f"input {name!r}: dim {axis} is {want} in the model; the profile gives "
                                       f"{'/'.join(map(str, got))}")
                continue
            sym = D.as_symbol(want)
            if sym is None:
                continue  # an expression of symbols: checked when the symbols are bound
            if sym in out and out[sym] != got:
                raise ProfileError(f"symbol {sym}: {'/'.join(map(str, out[sym]))} from one input and "
                                   f"{'/'.join(map(str, got))} from {name!r}")
            out[sym] = got
    return out


@dataclass(frozen=True)
class Specialization:
    """One lowering of a profile: its program (shape-symbolic), the guards it needs, and a
    point of the profile where they hold (the shape it was traced at)."""

    profile: int
    program: Program
    guards: tuple[Guard, ...] = ()
    witness: Mapping[str, int] = field(default_factory=dict)

    def holds(self, env: Mapping[str, int]) -> bool:
        return all(g.holds(env) for g in self.guards)

    def failing(self, env: Mapping[str, int]) -> list[Guard]:
        return [g for g in self.guards if not g.holds(env)]

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "guards": [g.to_json() for g in self.guards],
                "witness": dict(sorted(self.witness.items())), "program": self.program.to_json()}

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "Specialization":
        witness = {str(k): v for k, v in dict(x.get("witness") or {}).items()}
        if any(isinstance(v, bool) or not isinstance(v, int) for v in witness.values()):
            raise ShapeError(f"a witness binds symbols to integers, not {witness!r}")
        guards = tuple(Guard.from_json(g) for g in x.get("guards", ()))
        return cls(int(x["profile"]), Program.from_json(x["program"]), guards, witness)


def grid_points(profile: Profile, limit: int, seed: int = 0) -> tuple[dict[str, np.ndarray], bool]:
    """Points of the profile's symbol box: all of them when there are at most `limit`, else the
    corners, MIN, OPT, MAX and a random sample; the flag says whether the set is exhaustive."""
    names = sorted(profile.symbols)
    if not names:
        return {}, True
    if profile.points <= limit:
        axes = [np.arange(lo, hi + 1, dtype=np.int64) for lo, _, hi in (profile.symbols[n] for n in names)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return {n: m.reshape(-1) for n, m in zip(names, mesh)}, True
    rng = np.random.default_rng(seed)
    cols = []
    for n in names:
        lo, mid, hi = profile.symbols[n]
        cols.append(rng.integers(lo, hi + 1, size=limit, dtype=np.int64))
    special = [[profile.symbols[n][k] for n in names] for k in range(3)]
    corners = [[profile.symbols[n][0 if (i >> j) & 1 == 0 else 2] for j, n in enumerate(names)]
               for i in range(min(1 << len(names), 256))]
    extra = np.array(special + corners, dtype=np.int64).T
    return {n: np.concatenate([extra[j], cols[j]]) for j, n in enumerate(names)}, False


def satisfied(points: Mapping[str, np.ndarray], guards: Iterable[Guard]) -> np.ndarray:
    """Which points satisfy all `guards` (a boolean mask)."""
    n = len(next(iter(points.values()))) if points else 1
    mask = np.ones(n, dtype=bool)
    for g in guards:
        mask &= np.broadcast_to(g.holds_at(points), mask.shape)
    return mask


__all__ = ["ProfileError", "Guard", "InputRange", "Profile", "Specialization", "evaluate_array", "symbol_ranges",
           "grid_points", "satisfied"]
