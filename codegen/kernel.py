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
from dataclasses import dataclass, field
from typing import Any

from ember.codegen.symbolic import expr_of
from ember.ir.program import expr_json

PARAM_KINDS = ("ptr", "i64", "i32", "f32")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str          # ptr | i64 | i32 | f32
    ctype: str = ""    # the C type it has in the kernel (for ptr: the element type)
    role: str = "in"   # in | out | meta | scratch | scalar

    def __post_init__(self) -> None:
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"param {self.name}: kind {self.kind!r} is not one of {PARAM_KINDS}")


@dataclass(frozen=True)
class Kernel:
    """One __global__ function: its translation unit, entry point and parameters."""

    source: str
    entry_hint: str
    params: tuple[Param, ...]
    ops: tuple[str, ...] = ()  # "ember.conv @ conv1" for the map from kernels to source ops

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """The entry symbol; the source names it `ENTRY`, replaced by this at render time."""
        return f"{self.entry_hint}_{self.digest}"

    @property
    def rendered(self) -> str:
        return self.source.replace("ENTRY", self.name)


@dataclass(frozen=True)
class Arg:
    kind: str                 # value | scratch | meta | i64 | i32 | f32
    value: Any = None         # value id, scratch bytes, meta tuple, or the scalar

    def to_json(self) -> dict[str, Any]:
        if self.kind == "f32":
            return {self.kind: self.value}
        if isinstance(self.value, tuple):
            return {self.kind: [_size(x) for x in self.value]}
        return {self.kind: _size(self.value)}


def _size(x: Any) -> int | str:
    """An integer argument as JSON: an int, or the text of the shape expression a SymInt carries."""
    return expr_json(expr_of(x))


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
