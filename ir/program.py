"""The program: what codegen hands the runtime, typed, and the one schema of its JSON.

A program is values (inputs, weights, constants, activations, views, host-kept
values), the kernels it launches (name and parameters; their CUDA C travels in the
engine's kernel section), and steps run in order: a `LaunchStep` launches a kernel
on a grid with arguments, a `HostStep` runs IR ops on the reference interpreter.
Sizes (value shapes, grids, blocks, shared bytes, sized kernel arguments) are ints
or shape expressions over the model's symbols (ir/dims.py): a program lowered for
a range of shapes is *shape-symbolic*, and `Program.bind(env)` evaluates it into
the concrete program of one shape, which the runtime plans memory for and runs.

This module lives in `ir/` because codegen (which writes programs) and the runtime
(which runs them) both use it and import nothing of each other. The engine file
keeps a program as JSON (`to_json` / `from_json`, docs/engine-format.md); the
runtime checks that JSON (runtime/validate.py) before it becomes a `Program`.
Everything past that check works on these classes, never on the JSON's dicts.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Iterable, Mapping, Sequence, Union

import numpy as np

from ember.errors import EmberError, ShapeError
from ember.ir import dims as D
from ember.ir import sizes
from ember.ir.types import DTYPES

Size = Union[int, D.DimExpr]
"""A size: an int, or a shape expression over the model's symbols."""

VALUE_KINDS = ("input", "weight", "const", "activation", "view", "host", "dynamic")
ARENA_KINDS = ("input", "activation")
PARAM_KINDS = ("ptr", "i64", "i32", "f32", "tensormap")
ARG_PARAM = {"value": "ptr", "scratch": "ptr", "meta": "ptr", "i64": "i64", "i32": "i32", "f32": "f32",
             "tensormap": "tensormap"}
# A `tensormap` argument: a TMA descriptor (CUtensorMap, 128 bytes, passed by value) of a value's
# buffer, encoded by the runtime once the buffer's address is known: (value id, element code,
# rank, the dims innermost first, the byte strides of dims 1.., the box dims). Elements: 16-bit
# floats (TENSORMAP_ELEMENTS); 128-byte swizzle, out-of-bounds reads as zeros.
TENSORMAP_ELEMENTS = {0: "f16", 1: "bf16"}


# -- sizes ------------------------------------------------------------------------------------------
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


def size_of_json(x: Any) -> Size:
    """A size from its JSON (an int or an expression's text)."""
    if isinstance(x, bool):
        raise ShapeError(f"{x!r} is not a size")
    if isinstance(x, int):
        return x
    if isinstance(x, str):
        return parse_expr(x)  # type: ignore[return-value]
    raise ShapeError(f"{x!r} is not a size or a shape expression")


def eval_size(x: Size, env: Mapping[str, int]) -> int:
    """The value of a size with the symbols of `env`."""
    return x if isinstance(x, int) else D.evaluate(x, env)


def bind_size(x: Size, env: Mapping[str, int], later: Iterable[str] = ()) -> Size:
    """A size at `env`: an int, or, when it names run-time symbols (`later`: sizes found only when
    the program runs, such as NonZero's count) that `env` lacks, the expression left over them."""
    if isinstance(x, int):
        return x
    later = frozenset(later)
    if later:
        free = D.free_symbols(x) - set(env)
        if free and free <= later:
            return D.substitute(x, env)
    return D.evaluate(x, env)


def format_env(env: Mapping[str, int]) -> str:
    return ", ".join(f"{s}={v}" for s, v in sorted(env.items())) or "no symbols"


_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge}


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


def _ints(xs: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in xs)


# -- values -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ValueSpec:
    """One value of the program. `kind`: input | weight | const | activation | view | host.

    A view reads its source's buffer: the whole of it (reshape and friends: `offset` None, the
    same bytes), or, with `offset`, the window of its own size that starts `offset` bytes in (a
    slice, gather or split piece that is contiguous in its source: codegen/lower.py `_window`).
    Windows read activations only, never a buffer sized at run time."""

    id: int
    name: str
    dtype: str
    shape: tuple[Size, ...]
    kind: str
    nbytes: Size
    weight: str | None = None    # weights: the store's name; constants: "const:<id>"
    alias: int | None = None     # views: the value whose buffer they read
    offset: Size | None = None   # windows: where they start in it, bytes

    @property
    def in_arena(self) -> bool:
        """Whether the value (not a view) gets an arena slot."""
        return self.kind in ARENA_KINDS and self.dtype != "str"

    @property
    def is_data(self) -> bool:
        """A weight or a constant: stored in the engine, uploaded once."""
        return self.kind in ("weight", "const")

    @property
    def is_bound(self) -> bool:
        """Whether its shape and byte size are ints (not expressions over run-time symbols)."""
        return isinstance(self.nbytes, int) and all(isinstance(d, int) for d in self.shape)

    def bind(self, env: Mapping[str, int], later: Iterable[str] = ()) -> "ValueSpec":
        """Shape and byte size at `env` (checked); sizes over the run-time symbols `later` stay
        expressions over them (see `bind_size`)."""
        if self.kind == "host":
            return self
        what = f"value {self.name}"
        shape: list[Size] = []
        for x in self.shape:
            d = bind_size(x, env, later)
            if isinstance(d, int) and d < 0:
                raise ShapeError(f"{what}: dim {x} is {d} at {format_env(env)}, a negative size")
            shape.append(d)
        if not all(isinstance(d, int) for d in shape):
            nbytes = bind_size(self.nbytes, env, later)
        elif self.dtype in DTYPES:
            nbytes = sizes.nbytes(shape, DTYPES[self.dtype].itemsize, f"{what} at {format_env(env)}")
        else:
            nbytes = eval_size(self.nbytes, env)
        offset = None if self.offset is None else bind_size(self.offset, env, later)
        if isinstance(offset, int) and offset < 0:
            raise ShapeError(f"{what}: window offset {self.offset} is {offset} at {format_env(env)}")
        return replace(self, shape=tuple(shape), nbytes=nbytes, offset=offset)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "dtype": self.dtype,
                               "shape": [expr_json(d) for d in self.shape], "kind": self.kind,
                               "nbytes": expr_json(self.nbytes)}
        if self.weight is not None:
            out["weight"] = self.weight
        if self.alias is not None:
            out["alias"] = self.alias
        if self.offset is not None:
            out["offset"] = expr_json(self.offset)
        return out

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "ValueSpec":
        alias, offset = x.get("alias"), x.get("offset")
        return cls(int(x["id"]), str(x["name"]), str(x["dtype"]), tuple(size_of_json(d) for d in x["shape"]),
                   str(x["kind"]), size_of_json(x["nbytes"]), x.get("weight"), None if alias is None else int(alias),
                   None if offset is None else size_of_json(offset))


# -- kernels and their arguments ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Param:
    """A kernel parameter: `kind` is how it is passed (ptr | i64 | i32 | f32), `ctype` its C type
    in the kernel (for ptr: the element type), `role` what it is (in | out | meta | scratch | scalar)."""

    name: str
    kind: str
    ctype: str = ""
    role: str = "in"

    def __post_init__(self) -> None:
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"param {self.name}: kind {self.kind!r} is not one of {PARAM_KINDS}")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "ctype": self.ctype, "role": self.role}

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "Param":
        return cls(str(x["name"]), str(x["kind"]), str(x.get("ctype", "")), str(x.get("role", "in")))


@dataclass(frozen=True, slots=True)
class KernelDecl:
    """A kernel the program launches, declared: its entry symbol, parameters and the IR ops it
    computes (its source travels in the engine's kernel section; codegen/kernel_spec.py is how
    codegen plans one)."""

    name: str
    params: tuple[Param, ...]
    ops: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": [p.to_json() for p in self.params], "ops": list(self.ops)}

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "KernelDecl":
        return cls(str(x["name"]), tuple(Param.from_json(p) for p in x["params"]), tuple(x.get("ops", ())))


@dataclass(frozen=True, slots=True)
class Arg:
    """A launch argument: a value's buffer (`value`, its id), scratch bytes the planner places
    (`scratch`), int64 metadata uploaded once per shape (`meta`: shapes, strides), or a scalar
    (`i64`, `i32`, `f32`). Sized arguments are ints or shape expressions."""

    kind: str      # value | scratch | meta | i64 | i32 | f32 | tensormap
    value: Any     # value id; Size for scratch, i64, i32; tuple[Size, ...] for meta; float for f32;
                   # (value id, element, rank, Size...) for tensormap

    def bind(self, env: Mapping[str, int], later: Iterable[str] = ()) -> "Arg":
        if self.kind in ("scratch", "i64", "i32"):
            return Arg(self.kind, bind_size(self.value, env, later))
        if self.kind == "meta":
            return Arg("meta", tuple(bind_size(x, env, later) for x in self.value))
        if self.kind == "tensormap":
            return Arg("tensormap", tuple(self.value[:3]) + tuple(bind_size(x, env, later) for x in self.value[3:]))
        return self

    @property
    def sizes(self) -> tuple[Size, ...]:
        if self.kind in ("scratch", "i64", "i32"):
            return (self.value,)
        if self.kind == "tensormap":
            return tuple(self.value[3:])
        return tuple(self.value) if self.kind == "meta" else ()

    def to_json(self) -> dict[str, Any]:
        if self.kind == "f32":
            return {"f32": self.value}
        if self.kind == "meta":
            return {"meta": [expr_json(x) for x in self.value]}
        if self.kind == "tensormap":
            return {"tensormap": [int(x) for x in self.value[:3]] + [expr_json(x) for x in self.value[3:]]}
        return {self.kind: expr_json(self.value)}

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "Arg":
        (kind, v), = x.items()
        if kind == "f32":
            return cls(kind, float(v))
        if kind == "value":
            return cls(kind, int(v))
        if kind == "meta":
            return cls(kind, tuple(size_of_json(m) for m in v))
        if kind == "tensormap":
            if not isinstance(v, list) or len(v) < 3:
                raise ShapeError(f"a tensormap argument is a list (value, element, rank, sizes...), got {v!r}")
            return cls(kind, tuple(int(x) for x in v[:3]) + tuple(size_of_json(m) for m in v[3:]))
        if kind not in ARG_PARAM:
            raise ShapeError(f"argument kind {kind!r} is not one of {', '.join(ARG_PARAM)}")
        return cls(kind, size_of_json(v))


def tensormap_layout(value: Sequence[Any]) -> tuple[int, int, str, list[Any], list[Any], list[Any]]:
    """A tensormap argument's parts: (value id, rank, element, dims innermost first, byte strides
    of dims 1.., box dims); ShapeError where the tuple does not add up."""
    if len(value) < 3:
        raise ShapeError("a tensormap argument needs (value, element, rank, sizes...)")
    vid, element, rank = (int(x) for x in value[:3])
    if element not in TENSORMAP_ELEMENTS:
        raise ShapeError(f"tensormap element code {element} is not one of {sorted(TENSORMAP_ELEMENTS)}")
    if not 1 <= rank <= 5 or len(value) != 3 + rank + (rank - 1) + rank:
        raise ShapeError(f"a tensormap of rank {rank} needs {3 + 3 * rank - 1} entries, got {len(value)}")
    sizes = list(value[3:])
    return vid, rank, TENSORMAP_ELEMENTS[element], sizes[:rank], sizes[rank:2 * rank - 1], sizes[2 * rank - 1:]


# -- steps ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LaunchStep:
    """Launch `kernel` on `grid` x `block` with `args`; computes the IR ops `ops` (by index)."""

    kind: ClassVar[str] = "launch"
    kernel: str
    grid: tuple[Size, Size, Size]
    block: tuple[Size, Size, Size]
    args: tuple[Arg, ...]
    ops: tuple[int, ...]
    reads: tuple[int, ...] = ()
    writes: tuple[int, ...] = ()
    shared: Size = 0
    tactic: str | None = None           # the candidate chosen for a heavy op, and all of them
    candidates: tuple[str, ...] = ()
    guards: tuple[Guard, ...] = ()      # decisions over run-time symbols, checked when they are bound

    def bind(self, env: Mapping[str, int], later: Iterable[str] = ()) -> "LaunchStep":
        later = frozenset(later)
        return replace(self, grid=tuple(bind_size(x, env, later) for x in self.grid),  # type: ignore[arg-type]
                       block=tuple(bind_size(x, env, later) for x in self.block),  # type: ignore[arg-type]
                       shared=bind_size(self.shared, env, later), args=tuple(a.bind(env, later) for a in self.args),
                       guards=tuple(Guard(bind_size(g.lhs, env, later), g.op, bind_size(g.rhs, env, later), g.origin)
                                    for g in self.guards))

    @property
    def is_bound(self) -> bool:
        """Every size an int and no run-time guard left to decide."""
        sized = [*self.grid, *self.block, self.shared, *(x for a in self.args for x in a.sizes)]
        return not self.guards and all(isinstance(x, int) for x in sized)

    def guards_hold(self) -> bool:
        """Whether the run-time guards of a bound step hold (where one fails, its op runs on the
        host instead)."""
        for g in self.guards:
            if not isinstance(g.lhs, int) or not isinstance(g.rhs, int):
                raise ShapeError(f"guard {g} cannot be decided before its symbols are bound")
            if not _OPS[g.op](g.lhs, g.rhs):
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "launch", "kernel": self.kernel, "grid": [expr_json(x) for x in self.grid],
                               "block": [expr_json(x) for x in self.block], "shared": expr_json(self.shared),
                               "args": [a.to_json() for a in self.args], "ops": list(self.ops),
                               "reads": list(self.reads), "writes": list(self.writes)}
        if self.tactic is not None:
            out["tactic"], out["candidates"] = self.tactic, list(self.candidates)
        if self.guards:
            out["guards"] = [g.to_json() for g in self.guards]
        return out

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "LaunchStep":
        return cls(str(x["kernel"]), tuple(size_of_json(g) for g in x["grid"]),  # type: ignore[arg-type]
                   tuple(size_of_json(b) for b in x["block"]),  # type: ignore[arg-type]
                   tuple(Arg.from_json(a) for a in x["args"]), _ints(x["ops"]), _ints(x.get("reads", ())),
                   _ints(x.get("writes", ())), size_of_json(x.get("shared", 0)), x.get("tactic"),
                   tuple(x.get("candidates", ())), tuple(Guard.from_json(g) for g in x.get("guards", ())))


@dataclass(frozen=True, slots=True)
class Bind:
    """A run-time symbol a step binds: dim `axis` of value `value` once the step has run."""

    symbol: str
    value: int
    axis: int

    def to_json(self) -> list[Any]:
        return [self.symbol, self.value, self.axis]

    @classmethod
    def from_json(cls, x: Sequence[Any]) -> "Bind":
        symbol, value, axis = x
        return cls(str(symbol), int(value), int(axis))


@dataclass(frozen=True, slots=True)
class HostStep:
    """Run the IR ops `ops` (by index) on the reference interpreter, on the host; `reason` says
    why they have no kernel. A data-dependent result (NonZero's) binds run-time symbols."""

    kind: ClassVar[str] = "host"
    ops: tuple[int, ...]
    reads: tuple[int, ...] = ()
    writes: tuple[int, ...] = ()
    reason: str = ""
    binds: tuple[Bind, ...] = ()

    def bind(self, env: Mapping[str, int], later: Iterable[str] = ()) -> "HostStep":
        return self

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "host", "ops": list(self.ops), "reads": list(self.reads),
                               "writes": list(self.writes), "reason": self.reason}
        if self.binds:
            out["binds"] = [b.to_json() for b in self.binds]
        return out

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "HostStep":
        return cls(_ints(x["ops"]), _ints(x.get("reads", ())), _ints(x.get("writes", ())), str(x.get("reason", "")),
                   tuple(Bind.from_json(b) for b in x.get("binds", ())))


@dataclass(frozen=True, slots=True)
class SizeStep:
    """Find the result sizes of IR op `ops[0]` when the program runs and bind them (`binds`);
    its kernels follow. `source` "data": from its operands' values (a range's bounds, read
    back), "shapes": from its operands' shapes by its type rule (a slice of a run-time size)."""

    kind: ClassVar[str] = "size"
    ops: tuple[int, ...]
    reads: tuple[int, ...] = ()
    binds: tuple[Bind, ...] = ()
    source: str = "data"
    writes: tuple[int, ...] = ()

    def bind(self, env: Mapping[str, int], later: Iterable[str] = ()) -> "SizeStep":
        return self

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "size", "ops": list(self.ops), "reads": list(self.reads),
                               "writes": list(self.writes), "binds": [b.to_json() for b in self.binds]}
        if self.source != "data":
            out["from"] = self.source
        return out

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "SizeStep":
        return cls(_ints(x["ops"]), _ints(x.get("reads", ())), tuple(Bind.from_json(b) for b in x.get("binds", ())),
                   str(x.get("from", "data")), _ints(x.get("writes", ())))


@dataclass(frozen=True, slots=True)
class BranchStep:
    """Begin IR op `ops[0]`, an ember.if run on the device: read its condition (`reads[0]`,
    one element) back, then run the steps after this one (its then branch) or go to step
    `else_at` (its else branch). Each branch's steps end in a YieldStep; the ops of both are
    lowered like any other, numbered after the entry function's (`op_table`)."""

    kind: ClassVar[str] = "branch"
    ops: tuple[int, ...]
    reads: tuple[int, ...]
    else_at: int
    writes: tuple[int, ...] = ()
    binds: tuple[Bind, ...] = ()

    def bind(self, env: Mapping[str, int], later: Iterable[str] = ()) -> "BranchStep":
        return self

    def to_json(self) -> dict[str, Any]:
        return {"kind": "branch", "ops": list(self.ops), "reads": list(self.reads), "else_at": self.else_at}

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "BranchStep":
        return cls(_ints(x["ops"]), _ints(x["reads"]), int(x["else_at"]))


@dataclass(frozen=True, slots=True)
class YieldStep:
    """End a branch of IR op `ops[0]` (an ember.if): its results `writes` take the values the
    branch yields, `reads` (copied on the device; the results' run-time sizes, `binds`, are
    the yielded values'), and the run goes on at step `next` (past the else branch, for the
    then branch's yield)."""

    kind: ClassVar[str] = "yield"
    ops: tuple[int, ...]
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    next: int
    binds: tuple[Bind, ...] = ()

    def bind(self, env: Mapping[str, int], later: Iterable[str] = ()) -> "YieldStep":
        return self

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "yield", "ops": list(self.ops), "reads": list(self.reads),
                               "writes": list(self.writes), "next": self.next}
        if self.binds:
            out["binds"] = [b.to_json() for b in self.binds]
        return out

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "YieldStep":
        return cls(_ints(x["ops"]), _ints(x["reads"]), _ints(x["writes"]), int(x["next"]),
                   tuple(Bind.from_json(b) for b in x.get("binds", ())))


Step = Union[LaunchStep, HostStep, SizeStep, BranchStep, YieldStep]
STEP_KINDS: dict[str, Any] = {"launch": LaunchStep, "host": HostStep, "size": SizeStep, "branch": BranchStep,
                              "yield": YieldStep}


def op_table(fn: Any, branched: Iterable[int] = ()) -> list[Any]:
    """The IR ops that steps name by index: the entry function's, then the ops of the
    branches of each ember.if that the program runs as branch steps (`branched`: their
    indices in this table), both of its blocks in order, nested ones expanded where they
    appear (depth first), as the lowerer meets them."""
    branched = set(branched)
    table = list(fn.body.ops)

    def expand(op: Any) -> None:
        for block in op.regions:
            for inner in block.ops:
                table.append(inner)
                if len(table) - 1 in branched:
                    expand(inner)

    for index in range(len(fn.body.ops)):
        if index in branched:
            expand(table[index])
    return table


def value_table(fn: Any, branched: Iterable[int] = ()) -> list[Any]:
    """The IR values that program values are, by id: the entry function's inputs, then each
    op's results, those of a branched ember.if followed by the results of its blocks' ops
    (the lowerer's order; ops numbered as `op_table` numbers them)."""
    branched = set(branched)
    values = list(fn.inputs)
    top = list(fn.body.ops)
    next_index = len(top)

    def walk(op: Any, index: int) -> None:
        nonlocal next_index
        values.extend(op.results)
        if index in branched:
            for block in op.regions:
                for inner in block.ops:
                    next_index += 1
                    walk(inner, next_index - 1)

    for index, op in enumerate(top):
        walk(op, index)
    return values


def branched_ops(steps: Iterable[Any]) -> frozenset[int]:
    """The op indices of the ember.if ops that a program's steps run as branches."""
    return frozenset(s.ops[0] for s in steps if isinstance(s, BranchStep) and s.ops)


def step_tables(fn: Any, steps: Sequence[Any]) -> tuple[list[Any], dict[Any, int]]:
    """What a program's steps refer to in its IR: the ops by index (`op_table`) and the
    program value id of each IR value (`value_table`)."""
    branched = branched_ops(steps)
    return op_table(fn, branched), {v: i for i, v in enumerate(value_table(fn, branched))}


@dataclass(frozen=True, slots=True)
class Port:
    """A model input or output: its name and the program value it is."""

    name: str
    value: int


# -- the program ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Program:
    values: tuple[ValueSpec, ...]
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    kernels: tuple[KernelDecl, ...]
    steps: tuple[Step, ...]

    def root(self, vid: int) -> int:
        """The value whose buffer `vid` reads (itself unless it is a view)."""
        return root_of(self.values, vid)

    def offset(self, vid: int) -> Size:
        """Where `vid` starts in its root's buffer, bytes (0 but for windows)."""
        v = self.values[vid]
        return 0 if v.kind != "view" or v.offset is None else v.offset

    @functools.cached_property
    def kernel_params(self) -> dict[str, tuple[Param, ...]]:
        return {k.name: k.params for k in self.kernels}

    @property
    def launches(self) -> list[LaunchStep]:
        return [s for s in self.steps if isinstance(s, LaunchStep)]

    @functools.cached_property
    def runtime_symbols(self) -> frozenset[str]:
        """The symbols its steps bind when they run (sizes found from data: NonZero's count, a
        range's length), as opposed to the input shapes' symbols."""
        return frozenset(b.symbol for s in self.steps if not isinstance(s, LaunchStep) for b in s.binds)

    def bind(self, env: Mapping[str, int]) -> "Program":
        """The program at the symbols `env` (value sizes checked, ir/sizes.py): concrete (every
        size an int) but for sizes over its run-time symbols, which stay expressions over them
        with the input symbols substituted; the runtime evaluates those as the steps that find
        them run."""
        later = self.runtime_symbols - set(env)
        return Program(tuple(v.bind(env, later) for v in self.values), self.inputs, self.outputs, self.kernels,
                       tuple(s.bind(env, later) for s in self.steps))

    def to_json(self) -> dict[str, Any]:
        return {"values": [v.to_json() for v in self.values],
                "inputs": [{"name": p.name, "value": p.value} for p in self.inputs],
                "outputs": [{"name": p.name, "value": p.value} for p in self.outputs],
                "kernels": [k.to_json() for k in self.kernels],
                "steps": [s.to_json() for s in self.steps]}

    @classmethod
    def from_json(cls, x: Mapping[str, Any]) -> "Program":
        """A program from its JSON. Untrusted JSON is checked first (runtime/validate.py); here a
        malformed one raises ShapeError, KeyError, TypeError or ValueError."""
        steps = []
        for s in x["steps"]:
            kind = STEP_KINDS.get(s.get("kind"))
            if kind is None:
                raise ShapeError(f"step kind {s.get('kind')!r} is not one of {', '.join(STEP_KINDS)}")
            steps.append(kind.from_json(s))
        return cls(tuple(ValueSpec.from_json(v) for v in x["values"]),
                   tuple(Port(str(p["name"]), int(p["value"])) for p in x["inputs"]),
                   tuple(Port(str(p["name"]), int(p["value"])) for p in x["outputs"]),
                   tuple(KernelDecl.from_json(k) for k in x["kernels"]), tuple(steps))


def root_of(values: Sequence[ValueSpec], vid: int) -> int:
    """The value whose buffer `vid` reads (itself unless it is a view)."""
    seen = 0
    while values[vid].kind == "view" and values[vid].alias is not None:
        vid = int(values[vid].alias)  # type: ignore[arg-type]
        seen += 1
        if seen > len(values):
            raise ValueError(f"value {vid}: views alias each other in a cycle")
    return vid


def op_groups(steps: Sequence[Step]) -> list[tuple[int, int]]:
    """(first, last) step of each run of consecutive launch steps computing the same ops."""
    groups: list[tuple[int, int]] = []
    for i, s in enumerate(steps):
        if not isinstance(s, LaunchStep):
            continue
        if groups and groups[-1][1] == i - 1 and steps[groups[-1][0]].ops == s.ops:
            groups[-1] = (groups[-1][0], i)
        else:
            groups.append((i, i))
    return groups


__all__ = ["Size", "ValueSpec", "Param", "KernelDecl", "Arg", "LaunchStep", "HostStep", "SizeStep", "BranchStep", "YieldStep", "Bind", "Step",
           "op_table", "value_table", "branched_ops", "step_tables",
           "Port", "Program", "Guard", "parse_expr", "expr_json", "size_of_json", "eval_size", "bind_size",
           "evaluate_array", "format_env", "root_of", "op_groups",
           "VALUE_KINDS", "ARENA_KINDS", "PARAM_KINDS", "ARG_PARAM",
           "TENSORMAP_ELEMENTS", "tensormap_layout"]
