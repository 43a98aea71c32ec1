"""Kernel specs: what a heavy op's planner proposes and cuda_render turns into CUDA C.

A planner (codegen/ops/heavy.py) works out the problem's geometry, the kernel's
parameters and its epilogue, and gives one `KernelSpec` per candidate implementation
(tactic): the device template it calls, the template arguments (a GEMM `Tile`, layout
flags, types), the call's arguments, the block size. The lowering context chooses one
(`ctx.choose`), and `cuda_render.render_spec` writes the chosen one: the include, the
epilogue functor `Epi`, and the `extern "C"` wrapper that calls the template. Specs hold
no C text beyond names and type names; sizes that vary with the shape stay launch
arguments, so a spec describes the kernel's source only.
"""

from __future__ import annotations

from dataclasses import dataclass
from ember.codegen.kernel import Param
from ember.ir.core import Operation, Value
from ember.ir.types import DType


@dataclass(frozen=True)
class Tile:
    """A tile of the GEMM core (ember_gemm.cuh): BM x BN outputs per block, BK deep per step,
    TM x TN outputs per thread."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int


@dataclass(frozen=True)
class MmaTile:
    """A tile of the tensor-core core (ember_gemm.cuh `MmaTile`): BM x BN outputs per block, BK
    deep per step, WM x WN per warp in mma.sync m16n8k16 pieces, on operands of storage type
    `element` (__half or __nv_bfloat16); `fallback` is the SIMT tile the same kernel runs on
    architectures before sm_80. `va` (`vb`): A (B) is read 16 bytes at a time along its
    contiguous direction (the planner has checked strides and extents)."""

    bm: int
    bn: int
    bk: int
    wm: int
    wn: int
    element: str
    fallback: Tile
    va: bool = False
    vb: bool = False
    pipelined: bool = False   # cp.async multistage (with va and vb: heavy.MMA_PIPELINED)
    stages: int = 0           # pipelined stages in dynamic shared memory (0: as many as 44 KB static hold)

    def needed(self, acc_bytes: int = 4) -> int:
        """The shared memory the tile uses, static or dynamic (ember_gemm.cuh `MmaTile::needed`)."""
        side = lambda r: max(r * (self.bk + 8), self.bk * (r + 8))  # noqa: E731
        stage = side(self.bm) + side(self.bn)
        pipelined = self.pipelined and self.va and self.vb
        if not pipelined:
            stages = 2
        elif self.stages:
            stages = self.stages
        else:
            stages = min(4, max(2, 45056 // (stage * 2)))
        f = self.fallback
        return max(stages * stage * 2, 2 * f.bk * (f.bm + 4 + f.bn + 4) * acc_bytes)

    def dynamic_bytes(self, acc_bytes: int = 4) -> int:
        """The dynamic shared memory the kernel asks for (ember_gemm.cuh `MmaTile::dynamic_bytes`)."""
        if not (self.stages and self.pipelined and self.va and self.vb):
            return 0
        return self.needed(acc_bytes)


@dataclass(frozen=True)
class WgmmaTile:
    """A tile of the Hopper core (ember_gemm.cuh `WgmmaTile`): BM x BN outputs per block of BM / 64
    warpgroups, BK (64) deep per slab through `stages` stages of dynamic shared memory, in wgmma
    m64nBNk16 instructions on sm_90a; `fallback` is the mma.sync tile the same kernel runs on
    other architectures and on unaligned operands. Both operands are read 16 bytes at a time."""

    bm: int
    bn: int
    bk: int
    element: str
    fallback: MmaTile
    stages: int
    persistent: bool = False   # warp-specialized: a producer warpgroup, one block per multiprocessor
    tma: bool = False          # (persistent) the producer loads by TMA from tensor-map parameters

    @property
    def threads(self) -> int:
        """ember_gemm.cuh `WgmmaTile::THREADS`: a warpgroup per 64 rows, and the producer's."""
        return (self.bm // 64 + (1 if self.persistent else 0)) * 128

    def dynamic_bytes(self, acc_bytes: int = 4) -> int:
        """ember_gemm.cuh `WgmmaTile::dynamic_bytes`: the stages, 1 KB to align them, or the
        fallback's (or sm_90a's unaligned pieces') shared memory if more."""
        pieces = MmaTile(64, 64, 32, 32, 16, self.element, Tile(64, 64, 16, 4, 4))
        return max(self.stages * (self.bm + self.bn) * self.bk * 2 + 1024, self.fallback.needed(acc_bytes),
                   pieces.needed(acc_bytes))


@dataclass(frozen=True)
class BroadcastAt:
    """An element offset from the flat index `idx` of the result (a general broadcast read, or
    a store through a layout): `rank` dims from `em + dims_at` (the result's, by default), and
    strides from `em + strides_at`."""

    rank: int
    strides_at: int
    dims_at: int = 1
    magic_at: int | None = None   # per dim (multiplier, shift) from em + magic_at: divisions as
                                  # multiply-high and shift (32-bit indices, static dims)
    static: tuple[tuple[int, int], ...] = ()   # (dim, stride) per dim, outermost first, where all are
                                               # known at build time: the offset as constant arithmetic


def division_magic(d: int) -> tuple[int, int]:
    """(m, l) with q = (umulhi(n, m) + n) >> l == n // d for 0 <= n < 2^31 in 32-bit unsigned
    arithmetic (the round-up method: l = ceil(log2 d), m = floor(2^32 (2^l - d) / d) + 1)."""
    if d < 1:
        raise ValueError(f"division by {d}")
    shift = (d - 1).bit_length()
    return (1 << 32) * ((1 << shift) - d) // d + 1, shift


Offset = str | BroadcastAt   # "idx" (the element), "col" (its column), "0" (a scalar), or BroadcastAt


@dataclass(frozen=True)
class HeavyValue:
    """How the functor gets the heavy op's result from the accumulator `acc`, in the result's
    compute type: `round` rounds it to `dtype`; `bias` adds the per-column operand first
    (conv's bias, if any); `gemm` scales by alpha and adds beta times c (if any). `read` is
    the C name of the operand it reads (x0), or None."""

    op: str
    dtype: DType
    form: str = "round"     # round | bias | gemm
    read: str | None = None
    alpha: float = 1.0
    beta: float = 1.0


@dataclass(frozen=True)
class EpilogueSpec:
    """The functor a heavy template calls once per output element (index, column, accumulator):
    it computes the heavy op's value, runs the fused elementwise `ops` on it and on the
    operands it reads (`reads`: storage and compute type and offset of each, as e0, e1...),
    and stores `result`. `names` gives the C names of the body's values before the ops run
    (the heavy value `h`, the operands `x<k>`). A layout tail among the ops (reshape, transpose)
    moves no value, only where it is stored; the ops after it read their operands under
    `stored_names` (loaded at the store offset)."""

    out: str                                    # the output's C storage type
    reads: tuple[tuple[str, str, Offset], ...]
    index: str                                  # the index type
    acc: str                                    # the accumulator's C type
    heavy: HeavyValue
    ops: tuple[Operation, ...]
    names: tuple[tuple[Value, str], ...]
    result: Value
    store_at: Offset = "idx"                     # where the element goes in `out`
    stored_names: tuple[tuple[Value, str], ...] = ()   # names of the operands ops after a layout tail read


GemmTile = Tile | MmaTile | WgmmaTile
TemplateArg = Tile | MmaTile | WgmmaTile | bool | int | str


@dataclass(frozen=True)
class KernelSpec:
    """One candidate kernel of a heavy op: `template<targs>(call)` from `header`, in a wrapper of
    `params` launched with `threads` threads per block. With an epilogue, the wrapper builds
    `epi` from the output, the epilogue's operands and `meta + meta_offset` first."""

    header: str
    hint: str
    template: str
    targs: tuple[TemplateArg, ...]
    call: tuple[str, ...]
    threads: int
    params: tuple[Param, ...]
    comment: str                  # the source's first comment: the ops and where they come from
    ops: tuple[str, ...]          # the kernel's ops, for the map from kernels to source ops
    epilogue: EpilogueSpec | None = None
    meta_offset: int = 0
    defines: tuple[tuple[str, str], ...] = ()   # macros the header reads, defined before it (static sizes)

    @property
    def tile(self) -> GemmTile | None:
        return next((t for t in self.targs if isinstance(t, (Tile, MmaTile, WgmmaTile))), None)


__all__ = ["BroadcastAt", "division_magic", "EpilogueSpec", "GemmTile", "HeavyValue", "KernelSpec", "MmaTile", "Offset", "TemplateArg",
           "Tile", "WgmmaTile"]
