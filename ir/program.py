"""What codegen hands the runtime for a range of shapes: profiles, guards, shape-symbolic programs.

An engine serves the shapes of its optimization profiles (TensorRT's term): per
input, a MIN, OPT and MAX shape; the symbols of the model's input dims then range
over boxes. Codegen lowers the model for each profile into one or more
*specializations*: a program whose sizes, grids and kernel arguments are shape
expressions over the symbols (ir/dims.py text: `N*S*768`, `(H-1)//2+1`), valid
wherever its *guards* hold (the decisions the lowering took: `S <= 1024`). The
runtime picks the specialization for the input shapes, evaluates the expressions
(`bind_program`) and runs the concrete program it gets; no kernel is compiled
after the build.

This module lives in `ir/` because both codegen (which writes these) and the
runtime (which reads them from the engine file) use it, and they import nothing
of each other.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ember.errors import EmberError, ShapeError
from ember.ir import dims as D
from ember.ir import sizes
from ember.ir.types import DTYPES


class ProfileError(EmberError, ValueError):
    """Profiles that do not fit the model, or a shape that fits no profile."""


_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge}


@functools.lru_cache(maxsize=65536)
def parse_expr(text: str) -> D.Dim:
    """A shape expression from its text (an engine file holds them as text)."""
    from ember.ir.parser import parse_dim
    try:
        d = parse_dim(text)
    except EmberError as err:
        raise ShapeError(f"shape expression {text!r}: {str(err).splitlines()[0]}") from None
    if isinstance(d, D.Unknown):
        raise ShapeError(f"shape expression {text!r} is a data-dependent size")
    return d


def expr_json(d: D.Dim) -> int | str:
    """A dim as JSON: an int, or the expression's text."""
    if isinstance(d, int):
        return int(d)
    return str(d)


def eval_json(x: Any, env: Mapping[str, int]) -> int:
    """The value of a JSON dim (an int or an expression's text) with the symbols of `env`."""
    if isinstance(x, bool):
        raise ShapeError(f"{x!r} is not a size")
    if isinstance(x, int):
        return x
    if isinstance(x, str):
        return D.evaluate(parse_expr(x), env)
    raise ShapeError(f"{x!r} is not a size or a shape expression")


def evaluate_array(d: D.Dim, env: Mapping[str, np.ndarray]) -> np.ndarray | int:
    """`d` at many points at once: each symbol bound to an int64 array (one entry a point)."""
    if isinstance(d, int):
        return d
    if isinstance(d, D.Unknown):
        raise ShapeError("an unknown dim has no value before run time")
    total: Any = 0
    for mono, coeff in d.terms:
        value: Any = coeff
        for atom, power in mono:
            value = value * _atom_array(atom, env) ** power
        total = total + value
    return total


def _atom_array(atom: D.Atom, env: Mapping[str, np.ndarray]) -> Any:
    if isinstance(atom, D.Sym):
        if atom.name not in env:
            raise ShapeError(f"symbol {atom.name} has no value here")
        return env[atom.name]
    lhs, rhs = evaluate_array(atom.lhs, env), evaluate_array(atom.rhs, env)  # type: ignore[attr-defined]
    if isinstance(atom, (D.FloorDiv, D.Mod)):
        safe = np.where(np.asarray(rhs) == 0, 1, rhs)
        return np.floor_divide(lhs, safe) if isinstance(atom, D.FloorDiv) else np.mod(lhs, safe)
    if isinstance(atom, D.Max):
        return np.maximum(lhs, rhs)
    if isinstance(atom, D.Min):
        return np.minimum(lhs, rhs)
    raise ShapeError(f"cannot evaluate {atom}")


@dataclass(frozen=True)
class Guard:
    """A decision a lowering took: `lhs op rhs` held where it was traced (`S <= 1024`)."""

    lhs: D.Dim
    op: str
    rhs: D.Dim
    origin: str = ""  # the op whose lowering decided it

    def holds(self, env: Mapping[str, int]) -> bool:
        return bool(_OPS[self.op](D.evaluate(self.lhs, env), D.evaluate(self.rhs, env)))

    def holds_at(self, env: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(_OPS[self.op](evaluate_array(self.lhs, env), evaluate_array(self.rhs, env)))

    def __str__(self) -> str:
        return f"{self.lhs} {self.op} {self.rhs}"

    def to_json(self) -> list[Any]:
        return [expr_json(self.lhs), self.op, expr_json(self.rhs), self.origin]

    @classmethod
    def from_json(cls, x: Any) -> "Guard":
        if not isinstance(x, list) or len(x) != 4 or x[1] not in _OPS or not isinstance(x[3], str):
            raise ShapeError(f"a guard is [lhs, op, rhs, origin], not {x!r}")
        lhs = x[0] if isinstance(x[0], int) and not isinstance(x[0], bool) else parse_expr(str(x[0]))
        rhs = x[2] if isinstance(x[2], int) and not isinstance(x[2], bool) else parse_expr(str(x[2]))
        return cls(lhs, x[1], rhs, x[3])


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


# -- binding a program's expressions -----------------------------------------------------------------
_SIZED_ARGS = ("i64", "i32", "scratch")


def runtime_symbols(program: Mapping[str, Any]) -> set[str]:
    """The symbols a program's steps bind when they run (`binds` of host and size steps: sizes
    known only from data, such as NonZero's count), as opposed to the input shapes' symbols."""
    out: set[str] = set()
    for s in program.get("steps", ()):
        if not isinstance(s, Mapping):
            continue
        for b in s.get("binds", ()) or ():
            if isinstance(b, (list, tuple)) and b and isinstance(b[0], str):
                out.add(b[0])
    return out


def bind_size(x: Any, env: Mapping[str, int], later: Iterable[str] = ()) -> int | str:
    """A JSON size at `env`: an int, or, when it names symbols of `later` (bound only at run
    time) that `env` lacks, the text of the expression left over them."""
    if isinstance(x, str) and later:
        d = parse_expr(x)
        free = D.free_symbols(d) - set(env)
        if free and free <= set(later):
            return expr_json(D.substitute(d, env))
    return eval_json(x, env)


def bind_value(v: Mapping[str, Any], env: Mapping[str, int], later: Iterable[str] = ()) -> dict[str, Any]:
    """A value of a program with its shape and byte size at `env` (sizes over run-time symbols
    not in `env` left as text)."""
    out = dict(v)
    if v.get("kind") == "host":
        return out
    what = f"value {v.get('name')}"
    shape = [_dim(bind_size(x, env, later), env, what) for x in v["shape"]]
    out["shape"] = shape
    if all(isinstance(d, int) for d in shape):
        if v.get("dtype") in DTYPES:
            out["nbytes"] = sizes.nbytes(shape, DTYPES[v["dtype"]].itemsize, f"{what} at {format_env(env)}")
        elif "nbytes" in v:
            out["nbytes"] = eval_json(v["nbytes"], env)
    else:
        out["nbytes"] = bind_size(v["nbytes"], env, later)
    return out


def bind_step(s: Mapping[str, Any], env: Mapping[str, int], later: Iterable[str] = ()) -> dict[str, Any]:
    """A launch step with its grid, block, shared bytes, sized arguments and run-time guards at
    `env` (see `bind_value` for `later`); other steps as they are."""
    if s.get("kind") != "launch":
        return dict(s)
    out = dict(s)
    out["grid"] = [bind_size(x, env, later) for x in s["grid"]]
    out["block"] = [bind_size(x, env, later) for x in s["block"]]
    out["shared"] = bind_size(s.get("shared", 0), env, later)
    args = []
    for a in s["args"]:
        (kind, x), = a.items()
        if kind in _SIZED_ARGS:
            args.append({kind: bind_size(x, env, later)})
        elif kind == "meta":
            args.append({"meta": [bind_size(m, env, later) for m in x]})
        else:
            args.append(a)
    out["args"] = args
    if "guards" in s:
        out["guards"] = [[bind_size(g[0], env, later), g[1], bind_size(g[2], env, later), g[3]]
                         for g in s["guards"]]
    return out


def is_bound(step: Mapping[str, Any]) -> bool:
    """Whether every size of a launch step is an int (no run-time symbol left) and it has no
    run-time guard to check."""
    if step.get("kind") != "launch":
        return True
    if step.get("guards"):
        return False
    sized = [*step["grid"], *step["block"], step.get("shared", 0)]
    for a in step["args"]:
        (kind, x), = a.items()
        if kind in _SIZED_ARGS:
            sized.append(x)
        elif kind == "meta":
            sized.extend(x)
    return not any(isinstance(x, str) for x in sized)


def guards_hold(step: Mapping[str, Any]) -> bool:
    """Whether the run-time guards of a bound launch step hold (the lowering's decisions on sizes
    known only at run time; where one fails, the step's op runs on the host instead)."""
    for lhs, op, rhs, _ in step.get("guards", ()):
        if op not in _OPS or isinstance(lhs, str) or isinstance(rhs, str):
            raise ShapeError(f"guard {lhs} {op} {rhs} cannot be decided here")
        if not _OPS[op](lhs, rhs):
            return False
    return True


def bind_program(program: Mapping[str, Any], env: Mapping[str, int]) -> dict[str, Any]:
    """The concrete program (every size an int) of a shape-symbolic one at the symbols `env`.

    A program's JSON keeps each size either as an int or as an expression's text: value
    shapes, launch grids, blocks, shared bytes and the sized arguments (`i64`, `i32`,
    `scratch` and the entries of `meta`). Value sizes are checked (ir/sizes.py). Sizes over
    the program's run-time symbols (`runtime_symbols`) stay expressions over them, with the
    input symbols substituted: the runtime binds them when the steps that find them have run."""
    later = runtime_symbols(program) - set(env)
    values = [bind_value(v, env, later) for v in program["values"]]
    steps = [bind_step(s, env, later) for s in program["steps"]]
    bound = dict(program)
    bound["values"], bound["steps"] = values, steps
    return bound


def _dim(x: Any, env: Mapping[str, int], what: str) -> int | str:
    d = x if isinstance(x, str) else eval_json(x, env)
    if isinstance(d, int) and d < 0:
        raise ShapeError(f"{what}: dim {x} is {d} at {format_env(env)}, a negative size")
    return d


def format_env(env: Mapping[str, int]) -> str:
    return ", ".join(f"{s}={v}" for s, v in sorted(env.items())) or "no symbols"


@dataclass(frozen=True)
class Specialization:
    """One lowering of a profile: its program (shape-symbolic), the guards it needs, and a
    point of the profile where they hold (the shape it was traced at)."""

    profile: int
    program: Mapping[str, Any]
    guards: tuple[Guard, ...] = ()
    witness: Mapping[str, int] = field(default_factory=dict)

    def holds(self, env: Mapping[str, int]) -> bool:
        return all(g.holds(env) for g in self.guards)

    def failing(self, env: Mapping[str, int]) -> list[Guard]:
        return [g for g in self.guards if not g.holds(env)]

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "guards": [g.to_json() for g in self.guards],
                "witness": dict(sorted(self.witness.items())), "program": self.program}

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "Specialization":
        witness = {str(k): v for k, v in dict(x.get("witness") or {}).items()}
        if any(isinstance(v, bool) or not isinstance(v, int) for v in witness.values()):
            raise ShapeError(f"a witness binds symbols to integers, not {witness!r}")
        return cls(int(x["profile"]), x["program"], tuple(Guard.from_json(g) for g in x.get("guards", ())),
                   witness)


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


__all__ = ["ProfileError", "Guard", "InputRange", "Profile", "Specialization", "bind_program", "parse_expr",
           "runtime_symbols", "bind_size", "bind_value", "bind_step", "is_bound", "guards_hold",
           "expr_json", "eval_json", "evaluate_array", "symbol_ranges", "grid_points", "format_env",
           "satisfied"]
