"""KernelBuilder: what every generated kernel is assembled with.

A kernel's parameters (codegen/kernel.py `Param`: role in/out/meta/scratch/scalar) are
collected in order, each with the launch `Arg` that binds it, so the two never drift
apart. Parameters are named by the caller (`ptr`, `scalar`: the heavy ops' and the
recurrent layers' fixed signatures) or numbered here (`out`, `inp`, `size`: the many
operands of movement and reduction kernels, an input read twice passed once). Grid-stride
kernels (movement, reduce) also collect their `meta` array (`put`) and helper structs,
and `launch` appends the `meta` and `n` parameters, renders the kernel
(cuda_render.grid_stride_kernel) and launches it. The C text of every declaration and
wrapper is cuda_render's.
"""

from __future__ import annotations

import operator
import struct
from typing import Any, Iterable, Sequence

from ember.codegen.cuda_render import declaration, grid_stride_kernel
from ember.codegen.cwriter import CWriter
from ember.codegen.kernel import Arg, Kernel, Param
from ember.codegen.lower import LowerContext
from ember.codegen.symbolic import smax, smin
from ember.ir.core import Value

BLOCK = 256
GRID_CAP = 1 << 18  # blocks; grid-stride loops cover the rest
SCALARS = {"i32": "int", "i64": "long long", "f32": "float"}


def blocks_for(items: int, per_block: int) -> int:
    return smax(1, smin(-(-items // per_block), GRID_CAP))


def f64_bits(x: float) -> int:
    """A double as the int64 with its bits (device: __longlong_as_double)."""
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


class KernelBuilder:
    """One kernel's parameters with their launch arguments, and (grid-stride kernels) its meta
    array and helper structs.

    `ptr`/`scalar` add a named parameter bound to an argument; `out`/`inp` add pointer
    parameters bound to program values and `size` an int64 parameter (a size), numbered
    out0, in1, s2...; `put` appends ints to the launch's meta array and returns their offset
    (the offset is a compile-time constant of the kernel; the values are not). `hint`,
    `index` and `header` are those of a grid-stride kernel (`launch`).
    """

    def __init__(self, ctx: LowerContext, hint: str = "", index: str = "int",
                 header: str = "ember_movement.cuh") -> None:
        self.ctx, self.hint, self.index, self.header = ctx, hint, index, header
        self.params: list[Param] = []
        self.args: list[Arg] = []
        self.meta: list[int] = []
        self.structs = CWriter()
        self._inputs: dict[tuple[int, str], str] = {}
        self._count = 0

    # -- parameters ---------------------------------------------------------------------------
    def ptr(self, name: str, c: str, role: str, arg: Arg) -> str:
        """A pointer parameter to elements of C type `c`; returns its name."""
        self.params.append(Param(name, "ptr", c, role))
        self.args.append(arg)
        return name

    def tensormap(self, name: str, value: Value, dims: Sequence[Any], strides: Sequence[Any],
                  box: Sequence[int]) -> str:
        """A TMA descriptor parameter (ir/program.py `tensormap`) of a 16-bit float value: `dims`
        innermost first (elements), `strides` the byte strides of dims 1.., `box` the tile a
        copy moves; returns its name."""
        from ember.ir.program import TENSORMAP_ELEMENTS
        element = {v: k for k, v in TENSORMAP_ELEMENTS.items()}[self.ctx.dtype(value).name]
        vid = int(self.ctx.arg(value).value)
        self.params.append(Param(name, "tensormap", "ember::TensorMap", "in"))
        self.args.append(Arg("tensormap", (vid, element, len(dims), *dims, *strides, *box)))
        return name

    def scalar(self, name: str, kind: str, arg: Arg) -> str:
        """A scalar parameter of kind i32, i64 or f32; returns its name."""
        self.params.append(Param(name, kind, SCALARS[kind], "scalar"))
        self.args.append(arg)
        return name

    def fork(self) -> KernelBuilder:
        """A copy to add a candidate kernel's own parameters to (conv's direct kernel takes `total`)."""
        other = KernelBuilder(self.ctx, self.hint, self.index, self.header)
        other.params, other.args, other.meta = list(self.params), list(self.args), list(self.meta)
        other._inputs, other._count = dict(self._inputs), self._count
        return other

    @property
    def decls(self) -> list[str]:
        return [declaration(p) for p in self.params]

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count - 1}"

    def out(self, v: Value, c: str) -> str:
        return self.ptr(self._name("out"), c, "out", self.ctx.arg(v))

    def inp(self, v: Value, c: str) -> str:
        key = (id(v), c)
        if key not in self._inputs:
            self._inputs[key] = self.ptr(self._name("in"), c, "in", self.ctx.arg(v))
        return self._inputs[key]

    def size(self, x: int) -> str:
        """An int64 size parameter, read as the kernel's index type."""
        return f"({self.index}){self.scalar(self._name('s'), 'i64', self.ctx.i64(x))}"

    # -- grid-stride kernels ------------------------------------------------------------------
    def put(self, values: Iterable[int]) -> int:
        offset = len(self.meta)
        self.meta.extend(operator.index(v) if not isinstance(v, int) else v for v in values)
        return offset

    def put_f64(self, x: float) -> int:
        return self.put([f64_bits(x)])

    @property
    def n(self) -> str:
        return f"({self.index})n"

    def source(self, call: str, threads: int, per_block: int) -> Kernel:
        params = tuple(self.params) + (Param("meta", "ptr", "long long", "meta"), Param("n", "i64", "long long",
                                                                                       "scalar"))
        return grid_stride_kernel(self.header, self.hint, self.ctx.loc(), per_block, self.structs.lines, params,
                                  threads, call)

    def launch(self, call: str, items: int, per_block: int, block: Sequence[int] = (BLOCK,),
               shared: int = 0) -> None:
        """Launch `call` over `items` work items (none: no launch), `per_block` per block."""
        if items <= 0:
            return
        threads = 1
        for b in block:
            threads *= int(b)
        kernel = self.source(call, threads, per_block)
        args = self.args + [self.ctx.meta(self.meta or [0]), self.ctx.i64(items)]
        self.ctx.launch(kernel, (blocks_for(items, per_block),), block, args, shared=shared)


__all__ = ["BLOCK", "GRID_CAP", "KernelBuilder", "blocks_for", "f64_bits"]
