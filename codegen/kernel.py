"""What codegen hands on: kernels (CUDA C and their parameters) and launches (a kernel
bound to buffers and sizes). Frozen and hashable: a kernel's name is the hash of its
source, so equal kernels are one kernel and a rebuild finds them in the cache.

A launch's arguments are `Arg`s: a value of the program (`value`, by its id), a
scratch buffer (`scratch`, bytes the memory planner places), a small read-only
array of int64 metadata (`meta`: shapes and strides, which stay kernel
parameters rather than constants, so later dynamic shapes only rewrite them),
or a scalar (`i64`, `f32`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ember.codegen.symbolic import expr_of
from ember.ir import program as P
from ember.ir.program import Param


_COMMENT = re.compile(r"//[^\n]*")


def strip_comments(source: str) -> str:
    """A kernel's source without its comments, which name the source ops and locations."""
    return _COMMENT.sub("", source)


@dataclass(frozen=True)
class Kernel:
    """One __global__ function: its translation unit, entry point and parameters."""

    source: str
    entry_hint: str
    params: tuple[Param, ...]
    ops: tuple[str, ...] = ()  # "ember.conv @ conv1" for the map from kernels to source ops

    @cached_property
    def code(self) -> str:
        """The source without its comments: layers that differ only there are one kernel (one
        NVRTC build, one cache entry)."""
        return strip_comments(self.source)

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.code.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """The entry symbol; the source names it `ENTRY`, replaced by this at render time."""
        return f"{self.entry_hint}_{self.digest}"

    @property
    def rendered(self) -> str:
        return self.source.replace("ENTRY", self.name)

    def spec(self) -> P.KernelDecl:
        return P.KernelDecl(self.name, self.params, self.ops)


@dataclass(frozen=True)
class Arg:
    kind: str                 # value | scratch | meta | i64 | i32 | f32 | tensormap
    value: Any = None         # value id, scratch bytes, meta tuple, the scalar (sizes may be SymInts),
                              # or a tensormap's (value id, element, rank, dims, strides, box)

    def spec(self) -> P.Arg:
        """The program's argument: SymInts become their shape expressions."""
        if self.kind == "f32":
            return P.Arg("f32", float(self.value))
        if self.kind == "value":
            return P.Arg("value", int(self.value))
        if self.kind == "tensormap":
            return P.Arg("tensormap", tuple(int(x) for x in self.value[:3]) + tuple(expr_of(x) for x in self.value[3:]))
        if isinstance(self.value, tuple):
            return P.Arg(self.kind, tuple(expr_of(x) for x in self.value))
        return P.Arg(self.kind, expr_of(self.value))


@dataclass(frozen=True)
class Launch:
    kernel: Kernel
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: tuple[Arg, ...]
    shared: int = 0
    ops: tuple[int, ...] = field(default=())  # indices of the IR ops this launch computes

    def __post_init__(self) -> None:
        if len(self.args) != len(self.kernel.params):
            raise ValueError(f"{self.kernel.entry_hint}: {len(self.args)} arguments for "
                             f"{len(self.kernel.params)} parameters")

    def spec(self, tactic: str | None = None, candidates: tuple[str, ...] = (),
             guards: tuple[P.Guard, ...] = ()) -> P.LaunchStep:
        """The program's launch step (sizes as shape expressions); reads and writes from the
        value arguments, by the parameters' roles."""
        reads, writes = [], []
        for p, a in zip(self.kernel.params, self.args):
            if a.kind == "value":
                (writes if p.role == "out" else reads).append(int(a.value))
            elif a.kind == "tensormap" and int(a.value[0]) not in reads:
                reads.append(int(a.value[0]))
        return P.LaunchStep(self.kernel.name, tuple(expr_of(x) for x in self.grid),  # type: ignore[arg-type]
                            tuple(expr_of(x) for x in self.block),  # type: ignore[arg-type]
                            tuple(a.spec() for a in self.args), tuple(self.ops), tuple(reads), tuple(writes),
                            expr_of(self.shared), tactic, tuple(candidates) if tactic is not None else (),
                            guards)
