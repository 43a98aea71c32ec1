"""Heavy ops: matmul, gemm, einsum, conv, conv_transpose and attention, alone or as the
first op of an "epilogue" fusion (the heavy op, then elementwise ops on its result).

Each heavy op has a planner that turns it into one kernel (attention with a scores
result: two) from the device templates in include/: ember_gemm.cuh (the tiled
shared-memory GEMM core, for matmul, gemm and einsum as strided batched products),
ember_conv.cuh (convolution as an implicit GEMM on that core, direct kernels for thin
groups and for the transposed convolution) and ember_attention.cuh (an online-softmax
attention kernel). A planner works out the problem (a `Product`'s geometry, a
convolution's), the kernel's parameters with their launch arguments (KernelBuilder) and
its epilogue, and proposes one `KernelSpec` (codegen/kernel_spec.py) per candidate
implementation; `ctx.choose` picks one by name, and cuda_render.render_spec writes it:
the wrapper that calls the template, and the epilogue functor that the template calls
once per output element with its index in the output, its column (the output channel /
last axis) and the f32 (f64, wrapping integer) accumulator. The functor rounds the heavy
op's result as the interpreter does, then runs the fused elementwise ops (cuda_render's
table) on it and on the fused op's other operands, each read at its broadcast offset: the
element itself for operands of the output's shape, the column for a vector along the
column axis (a bias), element 0 for scalars, and the general broadcast offset (dims and
strides in `meta`) otherwise.

Sizes travel as kernel parameters or in `meta`; tile shapes and layout flags are
template arguments of the generated wrapper. Forms with no kernel (complex or f64
attention, einsum with diagonals or one- and three-operand equations, convolutions with
more than 3 spatial dims) raise UnsupportedOpError and run on the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from ember.codegen.cuda_render import C_EXPR, accumulator, compute_ctype, ctype, index_type, render_spec
from ember.codegen.kernel_builder import KernelBuilder
from ember.codegen.kernel_spec import (BroadcastAt, EpilogueSpec, GemmTile, HeavyValue, KernelSpec, MmaTile, Offset,
                                       Tile, WgmmaTile, division_magic)
from ember.codegen.lower import LowerContext, lowering
from ember.codegen.symbolic import broadcast_shapes, contiguous_strides, numel
from ember.codegen.ops.elementwise import broadcast_strides
from ember.errors import UnsupportedOpError
from ember.ir import layout as L
from ember.ir.core import Operation, Value
from ember.ir.types import TensorType

GEMM_THREADS = 256
DIRECT_THREADS = 256
ATTENTION_THREADS = 128
SHARED_LIMIT = 48 * 1024     # static + dynamic shared memory without an opt-in
MAX_GRID_Y = 65535
MAX_GRID_Z = 65535

# Streaming multiprocessors of a GPU of each architecture (A100, A40, RTX 4090, H100, B200):
# they only steer the choice of tile.
SM_COUNTS = {"sm_80": 108, "sm_86": 84, "sm_89": 128, "sm_90": 132, "sm_100": 148}
DEFAULT_SMS = 132            # sm_90 (H100), when the lowering names no target


def sm_count(ctx: LowerContext) -> int:
    """The SM count of the build's target (`ctx.target`, such as "sm_90" or "sm_90a", where the
    lowerer passes one), else an H100's."""
    target = getattr(ctx, "target", None) or ""
    return SM_COUNTS.get(target.rstrip("af"), DEFAULT_SMS)


# -- epilogues --------------------------------------------------------------------------------
def _expr_ok(op: Operation) -> bool:
    return op.name in ("ember.constant", "ember.cast") or op.name in C_EXPR


@dataclass
class Epilogue:
    """A heavy op and what follows it: the elementwise ops of its fused region (none for a
    lone op), the value they yield (`result`) and the outside value the kernel writes (`out`).
    `outer` maps the fused body's arguments to the fused op's operands."""

    heavy: Operation
    ops: list[Operation]
    result: Value
    out: Value
    outer: dict[Value, Value]
    where: str
    tail: list[Operation] = field(default_factory=list)    # fuse-epilogue's layout tail: [reshape,] transpose
    after: list[Operation] = field(default_factory=list)   # elementwise ops on the stored layout's grid

    @property
    def layout(self) -> Operation | None:
        """The transpose the store goes through, if any."""
        return self.tail[-1] if self.tail else None

    @classmethod
    def alone(cls, ctx: LowerContext, op: Operation) -> "Epilogue":
        return cls(op, [], op.results[0], op.results[0], {}, ctx.loc())

    @classmethod
    def fused(cls, ctx: LowerContext, op: Operation) -> "Epilogue":
        body = op.regions[0]
        if not body.ops or len(op.results) != 1 or len(body.outputs) != 1:
            raise UnsupportedOpError("an epilogue fusion must hold one heavy op first and yield one value")
        heavy, rest = body.ops[0], list(body.ops[1:])
        cut = next((i for i, e in enumerate(rest) if e.name == "ember.transpose"), len(rest))
        start = cut - 1 if cut > 0 and cut < len(rest) and rest[cut - 1].name == "ember.reshape" else cut
        pre, layout, after = rest[:start], rest[start:cut + 1], rest[cut + 1:]
        for e in pre + after:
            if not _expr_ok(e):
                raise UnsupportedOpError(f"{e.name} in an epilogue has no elementwise CUDA form")
            if e.name == "ember.constant" and e.attributes["value"].array.size != 1:
                raise UnsupportedOpError("a non-scalar constant inside an epilogue")
        if layout and any(len(e.operands) != 1 for e in layout):
            raise UnsupportedOpError("an epilogue's layout tail must be one transpose, after at most one reshape")
        result = layout[0].operands[0] if layout else body.outputs[0]
        outer = dict(zip(body.args, op.operands))
        return cls(heavy, pre, result, op.results[0], outer, ctx.loc(), layout, after)

    def value(self, v: Value | None) -> Value | None:
        """The outside value that an operand of the heavy op stands for."""
        return None if v is None else self.outer.get(v, v)

    def reads(self, ops: Sequence[Operation] | None = None) -> list[Value]:
        """Body arguments the elementwise ops (`ops`: all of them) read, in first-read order."""
        out: list[Value] = []
        for e in self.ops + self.after if ops is None else ops:
            for v in e.operands:
                if v is not None and v in self.outer and v not in out:
                    out.append(v)
        return out

    def comment(self) -> str:
        names = [self.heavy.name] + [e.name for e in self.ops] + ([self.layout.name] if self.layout else []) + \
            [e.name for e in self.after]
        return f"{' -> '.join(names)} @ {self.where}"


@dataclass
class Store:
    """How a planner's kernel finishes: the heavy op's value from the accumulator, then the epilogue.

    `value` is how the heavy op's result comes from the accumulator (its `read` is filled in
    by the epilogue's plan: the first of `reads`, operands of the heavy op read per output
    element, such as gemm's c or conv's bias)."""

    acc: str                                 # the accumulator's C type
    value: HeavyValue
    reads: list[Value] = field(default_factory=list)   # outside values the heavy value reads
    col_axis: int | None = None              # the output axis that `col` indexes
    per_column: bool = False                 # `reads` hold one value per column (conv's bias), not broadcast


# Offsets through general broadcasts and layout tails (BERT's heads-first Q/K/V store: five
# divisions an element) over dims and strides known at build time, written as constant arithmetic
# (cuda_render.static_offset: no meta loads, divisions by constants); elementwise kernels' general
# reads too, and convolutions' geometry (EMBER_CONV_GEOM). Off until the GPU tests of
# tests/codegen/test_fast_division.py (static form) and test_static_offsets.py pass (EMBER_FLAGS
# --static-offsets).
STATIC_OFFSETS = False


def is_static(x: Any) -> bool:
    """A size known when the kernel is built: a plain int (a SymInt, an int subclass, varies with
    the shape the program runs at)."""
    return type(x) is int or isinstance(x, np.integer)


def static_sizes(ctx: LowerContext, sizes: Sequence[Any]) -> tuple[int, ...] | None:
    """`sizes` as ints for a kernel to hold as constants, or None where the switch is off or the
    program serves a range of shapes (a kernel then reads its sizes at run time)."""
    if not STATIC_OFFSETS or not ctx.lowerer.fixed_shape or not all(is_static(x) for x in sizes):
        return None
    return tuple(int(x) for x in sizes)


def static_pairs(ctx: LowerContext, dims: Sequence[Any], strides: Sequence[Any]) -> tuple[tuple[int, int], ...]:
    """(dim, stride) pairs for a static offset, or () (static_sizes)."""
    fixed = static_sizes(ctx, [*dims, *strides])
    return tuple(zip(fixed[:len(dims)], fixed[len(dims):])) if fixed is not None else ()


# The same offsets with run-time dims read from meta, as multiply-high and shift where the index
# is 32-bit and the dims static (ember_prelude.cuh fast_offset): for builds with the static form off.
# Off until the GPU tests of tests/codegen/test_fast_division.py pass (EMBER_FLAGS --fast-division).
FAST_DIVISION = False


class EpiloguePlan:
    """The epilogue of a kernel: its spec, the outside values it reads (parameters e0, e1...,
    after `out`) and its meta (the result's rank and dims, then the strides of each operand
    read at a general broadcast offset)."""

    def __init__(self, ctx: LowerContext, epi: Epilogue, store: Store, index: str) -> None:
        self.ctx, self.epi = ctx, epi
        out_shape = ctx.shape(epi.result)   # the heavy op's grid (before a layout tail)
        # Outside values read per element, in parameter order: the heavy op's (`store.reads`), then the
        # epilogue's. Kept apart: a per-column read (conv's bias) is not a broadcast of the same value.
        heavy_reads = list(dict.fromkeys(store.reads))
        self.extras: list[Value] = list(heavy_reads)
        for v in dict.fromkeys(epi.outer[a] for a in epi.reads(epi.ops)):
            if store.per_column or v not in self.extras:
                self.extras.append(v)
        # Read where the element is stored: the operands of ops after the layout tail (the stored
        # grid's shape, or one element), each its own parameter.
        stored = [epi.outer[a] for a in epi.reads(epi.after)]
        first_stored = len(self.extras)
        self.extras += stored
        self.meta: list[int] = [len(out_shape), *out_shape]
        offsets: list[Offset] = []
        general = 0
        for k, v in enumerate(self.extras):
            if store.per_column and k < len(heavy_reads):
                offsets.append("col")
                continue
            if k >= first_stored:  # placed once the store's offset is known, below
                offsets.append("0" if numel(ctx.shape(v)) == 1 else "store")
                continue
            shape = ctx.shape(v)
            strides = broadcast_strides(shape, out_shape) if len(shape) <= len(out_shape) else None
            if strides is None:
                raise UnsupportedOpError(f"{v.type} does not broadcast to the result {list(out_shape)}")
            ax = store.col_axis
            if tuple(shape) == tuple(out_shape):
                offsets.append("idx")
            elif not any(strides):
                offsets.append("0")
            elif ax is not None and all(s == 0 for a, s in enumerate(strides) if a != ax) and strides[ax] == 1:
                offsets.append("col")
            else:
                rank = len(out_shape)
                offsets.append(BroadcastAt(rank, 1 + rank * (1 + general), static=static_pairs(ctx, out_shape, strides)))
                self.meta += strides
                general += 1
        store_at: Offset = "idx"
        if epi.layout is not None:
            # The element at flat index idx of the grid, viewed as the transpose's operand (a
            # reshape of the grid), goes where the transpose puts it in the output.
            pre = ctx.shape(epi.layout.operands[0])
            perm = list(epi.layout.attributes["perm"])
            out_strides = contiguous_strides(ctx.shape(epi.out))
            strides = [out_strides[perm.index(d)] for d in range(len(pre))]
            store_at = BroadcastAt(len(pre), len(self.meta) + len(pre), len(self.meta), static=static_pairs(ctx, pre, strides))
            self.meta += [*pre, *strides]
        # 32-bit indices over static dims divide by multiply-high and shift (kernel_spec.division_magic):
        # the magic numbers of each dim follow the meta, once per set of dims.
        if index == "int" and FAST_DIVISION and ctx.lowerer.fixed_shape:
            magic_of: dict[int, int] = {}
            for k, at in enumerate([*offsets, store_at]):
                if not isinstance(at, BroadcastAt) or at.static:
                    continue
                dims = self.meta[at.dims_at:at.dims_at + at.rank]
                if not all(is_static(d) and d >= 1 for d in dims):
                    continue
                if at.dims_at not in magic_of:
                    magic_of[at.dims_at] = len(self.meta)
                    self.meta += [x for d in dims for x in division_magic(d)]
                with_magic = replace(at, magic_at=magic_of[at.dims_at])
                if k < len(offsets):
                    offsets[k] = with_magic
                else:
                    store_at = with_magic
        for k, v in enumerate(self.extras[first_stored:], first_stored):
            if offsets[k] == "store":
                if tuple(ctx.shape(v)) != tuple(ctx.shape(epi.out)):
                    raise UnsupportedOpError(f"{v.type} read after the layout tail is not the stored grid "
                                             f"{list(ctx.shape(epi.out))} nor one element")
                offsets[k] = store_at
        out_t = epi.out.type
        assert isinstance(out_t, TensorType)
        self.out_dtype = out_t.dtype
        loaded = {v: f"x{k}" for k, v in enumerate(self.extras[:first_stored])
                  if k >= len(heavy_reads) or not store.per_column}
        names: dict[Value, str] = {epi.heavy.results[0]: "h"}
        for arg, outside in epi.outer.items():
            if outside in loaded:
                names[arg] = loaded[outside]
        # the ops after the layout tail read their operands as stored (x<k> from first_stored on); a
        # body argument both ops read is loaded twice, once at each offset
        after_names = {arg: f"x{first_stored + stored.index(epi.outer[arg])}" for arg in epi.reads(epi.after)}
        reads = tuple((ctype(ctx.dtype(v)), compute_ctype(ctx.dtype(v)), at) for v, at in zip(self.extras, offsets))
        ops = tuple(epi.ops) + tuple(epi.tail) + tuple(epi.after)
        final = epi.after[-1].results[0] if epi.after else epi.result
        self.spec = EpilogueSpec(ctype(self.out_dtype), reads, index, store.acc,
                                 replace(store.value, read="x0" if heavy_reads else None),
                                 ops, tuple(names.items()), final, store_at, tuple(after_names.items()))

    def declare(self, kb: KernelBuilder) -> None:
        """Add the output and the per-element operands to the kernel's parameters."""
        kb.ptr("out", ctype(self.out_dtype), "out", self.ctx.arg(self.epi.out))
        for k, v in enumerate(self.extras):
            kb.ptr(f"e{k}", ctype(self.ctx.dtype(v)), "in", self.ctx.arg(v))


def max_elements(ctx: LowerContext, values: Sequence[Value | None]) -> int:
    return max([1] + [numel(ctx.shape(v)) for v in values if v is not None])


def heavy_spec(epi: Epilogue, plan: EpiloguePlan, kb: KernelBuilder, header: str, hint: str, template: str,
               targs: Sequence[object], call: Sequence[str], threads: int, meta_offset: int,
               defines: tuple[tuple[str, str], ...] = ()) -> KernelSpec:
    """A candidate kernel of a heavy op with its epilogue."""
    return KernelSpec(header, hint, template, tuple(targs), tuple(call), threads,  # type: ignore[arg-type]
                      tuple(kb.params), epi.comment(), (epi.comment(),), plan.spec, meta_offset, defines)


# -- strided batched products (matmul, gemm, einsum) ------------------------------------------
@dataclass(frozen=True)
class Product:
    """C[z][m, n] = sum_k A[z][m, k] B[z][k, n] over batch index z, all by strides (elements)."""

    M: int
    N: int
    K: int
    batch: tuple[int, ...]
    a_batch: tuple[int, ...]
    b_batch: tuple[int, ...]
    c_batch: tuple[int, ...]
    sam: int
    sak: int
    sbk: int
    sbn: int
    scm: int
    scn: int

    def meta(self) -> list[int]:
        return [len(self.batch), *self.batch, *self.a_batch, *self.b_batch, *self.c_batch,
                self.sam, self.sak, self.sbk, self.sbn, self.scm, self.scn]

    @property
    def batches(self) -> int:
        return numel(self.batch)


# Tactics: the candidate implementations of a heavy op, by name. A lowering asks
# `ctx.choose(candidates)` for one: the first (the heuristic's pick) unless the build
# names another for this op (`ember.compile(..., tactics={op: name})`); order 6 times them.
TILES = {"tile128x128x8/8x8": Tile(128, 128, 8, 8, 8), "tile64x64x16/4x4": Tile(64, 64, 16, 4, 4),
         "tile128x256x8/8x16": Tile(128, 256, 8, 8, 16)}   # (only under the Hopper 128x256 tile)
# Tensor-core tiles (mma.sync m16n8k16, f32 accumulation) for f16 and bf16 operands: block tile and
# warp tile, and the SIMT tile of the same block size that runs before sm_80.
MMA_TILES = {"mma128x128x32/64x32": (128, 128, 32, 64, 32, "tile128x128x8/8x8"),
             "mma64x64x32/32x16": (64, 64, 32, 32, 16, "tile64x64x16/4x4")}
MMA_ELEMENTS = {"f16": "__half", "bf16": "__nv_bfloat16"}


def mma_element(*dtypes: object) -> str | None:
    """The storage type the tensor-core tiles multiply, when every operand is f16 (or every one
    bf16); else None."""
    names = {str(d) for d in dtypes}
    return MMA_ELEMENTS.get(names.pop()) if len(names) == 1 else None


# The tensor-core tiles' cp.async multistage form where both operands take 16-byte reads (its GPU
# test, tests/codegen/test_mma.py, passed on an H100 on 2026-12-07); False keeps register staging.
MMA_PIPELINED = True
# Pipelined tiles whose stage is too large for three in 44 KB of static shared memory (128 x 128:
# 20 KB a stage, so two, and no slab in flight during the math) take this many stages of dynamic
# shared memory instead (80 KB for 128 x 128); 0 keeps them static. Off until the GPU tests of
# tests/codegen/test_mma.py (test_dynamic_stages_match_the_interpreter_on_the_gpu) have passed.
MMA_DYNAMIC_STAGES = 0


# The Hopper tiles (wgmma, ember_gemm.cuh `WgmmaTile`): block, slab, stages, and the mma.sync tile
# the same kernel runs on other architectures. Offered for f16/bf16 products whose operands both
# take 16-byte reads, in builds whose newest target is sm_90a (`--target sm_90a`: its cubins run
# only on sm_90, so an engine keeps sm_80/sm_90 cubins of the same kernel for other GPUs). On since
# tests/codegen/test_wgmma.py's 35 GPU tests passed on an H100 (2026-12-08); EMBER_FLAGS
# --wgmma=off turns it off for a build.
WGMMA = True
WGMMA_TILES = {"wgmma128x256x64": (128, 256, 64, 4, "mma128x256x32/64x64"),
               "wgmma128x128x64": (128, 128, 64, 4, "mma128x128x32/64x32")}
# The persistent, warp-specialized Hopper tiles (ember_gemm.cuh `WgmmaTile` with PERSISTENT: a
# producer warpgroup filling the stages through cp.async, two consumer warpgroups, mbarriers between,
# one block per multiprocessor walking the tiles): block, slab, stages, the fallback tile that runs
# each tile in pieces elsewhere (a small one: the 384-thread block leaves 168 registers a thread). Off until their GPU tests (tests/codegen/test_wgmma.py)
# pass on an H100/H200 (EMBER_FLAGS --wgmma-persistent turns them on for a build).
WGMMA_PERSISTENT = False
PERSISTENT_TILES = {"wgmma128x256x64/ws": (128, 256, 64, 4, "mma64x64x32/32x16"),
                    "wgmma128x128x64/ws": (128, 128, 64, 6, "mma64x64x32/32x16")}
# The persistent tiles with a TMA producer (`WgmmaTile` with TMA; ember_gemm.cuh strided_tma): one
# thread moves each slab as 64 x 64 boxes from tensor maps the runtime encodes for the operands'
# buffers (ir/program.py `tensormap`). Offered for strided products whose operands are plain
# matrices (one batch dim at most, 16-byte strides). Off until their GPU tests pass
# (EMBER_FLAGS --wgmma-tma).
WGMMA_TMA = False
TMA_TILES = {"wgmma128x256x64/tma": (128, 256, 64, 4, "mma64x64x32/32x16"),
             "wgmma128x192x64/tma": (128, 192, 64, 5, "mma64x64x32/32x16"),
             "wgmma128x128x64/tma": (128, 128, 64, 6, "mma64x64x32/32x16")}
TMA_BOX = (64, 64, 1)
HOPPER_TILES = {**WGMMA_TILES, **PERSISTENT_TILES, **TMA_TILES}
# The fallbacks of Hopper tiles that no product is offered on its own (the 128x256 mma.sync
# tile's 30 KB stages fit only the Hopper tile's dynamic shared memory).
FALLBACK_TILES = {"mma128x256x32/64x64": (128, 256, 32, 64, 64, "tile128x256x8/8x16")}


def wgmma_target(ctx: LowerContext) -> bool:
    """Whether the build's newest target is sm_90a and the Hopper tiles are on."""
    return WGMMA and ctx.target == "sm_90a"


def tile_of(name: str, element: str | None, va: bool = False, vb: bool = False) -> GemmTile:
    """The tile a tactic names; tensor-core tiles on `element`, reading A (`va`) or B (`vb`)
    16 bytes at a time (through the cp.async pipeline with both, where MMA_PIPELINED)."""
    if name in HOPPER_TILES:
        bm, bn, bk, stages, fallback = HOPPER_TILES[name]
        assert element is not None and va and vb, "the Hopper tiles read both operands 16 bytes at a time"
        mma = tile_of(fallback, element, va, vb)
        assert isinstance(mma, MmaTile)
        return WgmmaTile(bm, bn, bk, element, mma, stages, name in PERSISTENT_TILES or name in TMA_TILES,
                         name in TMA_TILES)
    if name in MMA_TILES or name in FALLBACK_TILES:
        bm, bn, bk, wm, wn, fallback = MMA_TILES.get(name) or FALLBACK_TILES[name]
        assert element is not None
        pipelined = MMA_PIPELINED and va and vb
        stage = 2 * (max(bm * (bk + 8), bk * (bm + 8)) + max(bn * (bk + 8), bk * (bn + 8)))
        stages = MMA_DYNAMIC_STAGES if pipelined and MMA_DYNAMIC_STAGES and 45056 // stage < 3 else 0
        return MmaTile(bm, bn, bk, wm, wn, element, TILES[fallback], va, vb, pipelined, stages)
    return TILES[name]


def tile_threads(tile: GemmTile) -> int:
    """The block of a GEMM-core kernel: a persistent Hopper tile's warpgroups, else GEMM_THREADS."""
    return tile.threads if isinstance(tile, WgmmaTile) else GEMM_THREADS


def tile_grid(tile: GemmTile, M: int, N: int, batches: int, sms: int, splits: int = 1) -> tuple[int, int, int]:
    """The launch grid of a GEMM-core kernel: a block per tile (batches, or split parts, along z),
    or for a persistent tile a block per multiprocessor, at most one per tile."""
    tiles_m, tiles_n = -(-M // tile.bm), -(-N // tile.bn)
    if isinstance(tile, WgmmaTile) and tile.persistent:
        return (max(1, min(tiles_m * tiles_n * batches, sms)), 1, 1)
    return (tiles_m, tiles_n, splits if splits > 1 else min(batches, MAX_GRID_Z))


def tile_shared(tile: GemmTile) -> int:
    """The dynamic shared memory a GEMM-core kernel's launch gives (a tile with dynamic stages)."""
    return tile.dynamic_bytes() if isinstance(tile, (MmaTile, WgmmaTile)) else 0


def vector_reads(kmajor: bool, along_k: int, along_rows: int, k: int, rows: int, others: Sequence[int]) -> bool:
    """Whether an operand can be read 8 elements at a time: along k (k-major: k stride 1, K and
    the row stride multiples of 8) or along its rows (row stride 1, rows and the k stride
    multiples of 8); every other stride (`others`: batch, group) a multiple of 8."""
    if any(s % 8 for s in others):
        return False
    if kmajor:
        return along_k == 1 and k % 8 == 0 and (rows == 1 or along_rows % 8 == 0)
    return along_rows == 1 and rows % 8 == 0 and along_k % 8 == 0


def wave_fill(M: int, N: int, batches: int, bm: int, bn: int, sms: int) -> float:
    """The share of the output the tiles cover that is the product's (the tails of the last row
    and column of tiles are waste) times the share of the last wave of blocks that has work."""
    tiles = -(-M // bm) * -(-N // bn) * batches
    covered = (M * N * batches) / (tiles * bm * bn)
    return covered * tiles / (-(-tiles // sms) * sms)


def tile_candidates(M: int, N: int, batches: int, acc: str, sms: int = DEFAULT_SMS, mma: bool = False,
                    wgmma: bool = False, tma: bool = False) -> list[str]:
    """The GEMM-core tiles that can run this product, the heuristic's pick first. With `mma`
    (f16 or bf16 operands, f32 accumulation) the tensor-core tiles come first: 128x128 when the
    product fills every multiprocessor (`sms`) with those, else 64x64; with `wgmma` too (sm_90a,
    16-byte reads of both operands), the Hopper tile in front of (or right after) the mma.sync
    128x128. Then the SIMT tiles: 128x128 of 8x8 per thread when a large product fills the GPU
    twice over, else 64x64 of 4x4 (the big SIMT tile only has an f32 and u32 accumulator path)."""
    if acc not in ("float", "unsigned int"):
        return ["tile64x64x16/4x4"]
    big = -(-M // 128) * -(-N // 128) * batches
    if M >= 128 and N >= 128 and big >= 2 * sms:
        simt = ["tile128x128x8/8x8", "tile64x64x16/4x4"]
    else:
        simt = ["tile64x64x16/4x4", "tile128x128x8/8x8"]
    if not mma or acc != "float":
        return simt
    hopper = ["wgmma128x128x64", "wgmma128x256x64"] if wgmma else []
    if wgmma and N >= 256 and -(-M // 128) * -(-N // 256) * batches >= sms:
        hopper.reverse()    # 128x256 blocks fill the GPU too: the wider one first
    plain = list(hopper)
    if wgmma and WGMMA_PERSISTENT:
        hopper = [f"{h}/ws" for h in plain] + hopper   # the warp-specialized forms ahead of the plain ones
    if wgmma and tma and WGMMA_TMA:
        # and the TMA forms ahead of those, the one whose tiles fill the last wave best first (BERT's
        # and ViT's 768, 2304 and 3072 columns are whole 192-column tiles)
        by_fill = sorted(TMA_TILES, key=lambda t: -wave_fill(M, N, batches, TMA_TILES[t][0], TMA_TILES[t][1], sms))
        hopper = by_fill + hopper
    if M >= 128 and N >= 128 and big >= sms:
        return [*hopper, "mma128x128x32/64x32", "mma64x64x32/32x16", *simt]
    return ["mma64x64x32/32x16", *hopper, "mma128x128x32/64x32", *simt]


# -- split-K --------------------------------------------------------------------------------------
# Tactics that split a product of one batch along k (ember_gemm.cuh `split_block`), for products
# whose 64 x 64 tensor-core tiles leave most multiprocessors idle (BERT's [128, 768] layers at
# batch 1; ResNet-50's last convolutions, 49 pixels by 512 channels over K = 4608). Off until their
# GPU tests (tests/codegen/test_split_k.py) have passed on a device.
SPLIT_K = False
SPLIT_TILE = "mma64x64x32/32x16"
MAX_SPLITS = 16
MIN_SLABS = 4      # BK slabs of k per part at the least


def split_name(name: str) -> tuple[str, int]:
    """`mma64x64x32/32x16/split4` -> (`mma64x64x32/32x16`, 4); a tactic that does not split: 1."""
    base, _, last = name.rpartition("/")
    if base and last.startswith("split") and last[5:].isdigit():
        return base, int(last[5:])
    return name, 1


def split_candidates(M: int, N: int, K: int, batches: int, sms: int) -> tuple[int, list[int]]:
    """(the heuristic's split, the splits worth timing) of a one-batch product on SPLIT_TILE:
    the heuristic doubles the parts while the blocks stay within 1.5 waves of the GPU and each
    part keeps MIN_SLABS slabs; (1, []) where splitting does not apply."""
    bm, bn, bk = MMA_TILES[SPLIT_TILE][:3]
    tiles = -(-M // bm) * -(-N // bn)
    slabs = -(-K // bk)
    if not SPLIT_K or batches != 1 or tiles * 2 > sms or slabs < 2 * MIN_SLABS:
        return 1, []
    options = [s for s in (2, 4, 8, 16) if s <= MAX_SPLITS and slabs >= MIN_SLABS * s]
    pick = 1
    while 2 * pick in options and tiles * 2 * pick <= 1.5 * sms:
        pick *= 2
    return pick, options


def with_splits(names: list[str], M: int, N: int, K: int, batches: int, sms: int, prefix: str = "") -> list[str]:
    """`names` with the split tactics of the product: the heuristic's first where it splits, the
    others after every tile that does not."""
    pick, options = split_candidates(M, N, K, batches, sms)
    if not options or f"{prefix}{SPLIT_TILE}" not in names:
        return names
    splits = [f"{prefix}{SPLIT_TILE}/split{s}" for s in options]
    first = [f"{prefix}{SPLIT_TILE}/split{pick}"] if pick > 1 else []
    return first + names + [n for n in splits if n not in first]


def split_scratch(kb: KernelBuilder, ctx: LowerContext) -> tuple[int, int]:
    """Declare split-K's two scratch parameters (work, counters); their indices in kb.args, whose
    sizes `size_split_scratch` sets once a tactic is chosen."""
    kb.ptr("work", "float", "scratch", ctx.scratch(0))
    kb.ptr("counters", "unsigned int", "scratch", ctx.scratch(0))
    return len(kb.args) - 2, len(kb.args) - 1


def size_split_scratch(args: list, at: tuple[int, int], ctx: LowerContext, tile: Any, grid: tuple[int, int, int],
                       splits: int) -> None:
    tiles = grid[0] * grid[1]
    args[at[0]] = ctx.scratch(4 * splits * tiles * tile.bm * tile.bn if splits > 1 else 0)
    args[at[1]] = ctx.scratch(4 * tiles if splits > 1 else 0)


# Depthwise convolutions channels last with 8 | channels in f16 or bf16 run `depthwise8` (8
# channels a thread, 16-byte reads of x; ember_conv.cuh), the heuristic's pick, with `direct`
# still offered. Off until tests/codegen/test_depthwise.py's GPU tests pass (EMBER_FLAGS
# --depthwise-vector turns it on for a build).
DEPTHWISE_VECTOR = False


def depthwise_vector(channels_last: bool, cg: int, kg: int, c_out: int, xdt: Any, wdt: Any,
                     x_strides: Sequence[int]) -> bool:
    return (DEPTHWISE_VECTOR and channels_last and cg == 1 and kg == 1 and c_out % 8 == 0 and x_strides[1] == 1
            and xdt.name in ("f16", "bf16") and wdt.name == xdt.name)


def launch_product(ctx: LowerContext, epi: Epilogue, store: Store, prob: Product, a: Value, b: Value) -> None:
    if prob.M == 0 or prob.N == 0 or prob.batches == 0:
        return
    if prob.M >= 2**31 or prob.N >= 2**31 or prob.K >= 2**31:
        raise UnsupportedOpError("a matrix dim past 2^31")
    index = index_type(max_elements(ctx, [a, b, epi.out, *store.reads]))
    plan = EpiloguePlan(ctx, epi, store, index)
    kb = KernelBuilder(ctx)
    plan.declare(kb)
    kb.ptr("a", ctype(ctx.dtype(a)), "in", ctx.arg(a))
    kb.ptr("b", ctype(ctx.dtype(b)), "in", ctx.arg(b))
    meta = prob.meta()
    kb.ptr("meta", "long long", "meta", ctx.meta(meta + plan.meta))
    kb.scalar("M", "i32", ctx.i32(prob.M))
    kb.scalar("N", "i32", ctx.i32(prob.N))
    kb.scalar("K", "i32", ctx.i32(prob.K))
    kb.scalar("batches", "i64", ctx.i64(prob.batches))
    element = mma_element(ctx.dtype(a), ctx.dtype(b))
    a_kmajor = prob.sak == 1 or prob.M == 1
    b_kmajor = prob.sbk == 1 and prob.sbn != 1
    va = vector_reads(a_kmajor, prob.sak, prob.sam, prob.K, prob.M, prob.a_batch)
    vb = vector_reads(b_kmajor, prob.sbk, prob.sbn, prob.K, prob.N, prob.b_batch)
    maps = tensor_maps(prob, a_kmajor, b_kmajor)
    names = tile_candidates(prob.M, prob.N, prob.batches, store.acc, sm_count(ctx), mma=element is not None,
                            wgmma=element is not None and va and vb and wgmma_target(ctx), tma=maps is not None)
    names = with_splits(names, prob.M, prob.N, prob.K, prob.batches, sm_count(ctx))
    scratch = split_scratch(kb, ctx) if any(split_name(n)[1] > 1 for n in names) else None
    call = ("a", "b", "meta", "M", "N", "K", "batches", "epi") + (("work", "counters") if scratch else ())
    with_maps = None
    if maps is not None and any(n in TMA_TILES for n in names):
        with_maps = kb.fork()
        with_maps.tensormap("ta", a, *maps[0], TMA_BOX)
        with_maps.tensormap("tb", b, *maps[1], TMA_BOX)

    def spec_of(name: str) -> KernelSpec:
        base, splits = split_name(name)
        targs = (tile_of(base, element, va, vb), a_kmajor, b_kmajor, store.acc, index) + ((splits,) if scratch else ())
        if name in TMA_TILES:
            assert with_maps is not None
            return heavy_spec(epi, plan, with_maps, "ember_gemm.cuh", "gemm", "ember::gemm::strided_tma", targs,
                              ("ta", "tb", "a", "b", "meta", "M", "N", "K", "batches", "epi"),
                              tile_threads(targs[0]), len(meta))
        return heavy_spec(epi, plan, kb, "ember_gemm.cuh", "gemm", "ember::gemm::strided", targs, call,
                          tile_threads(targs[0]), len(meta))

    chosen = ctx.choose(names)
    spec = spec_of(chosen)
    tile = spec.tile
    assert tile is not None
    kernel = render_spec(spec)
    splits = split_name(chosen)[1]
    grid = tile_grid(tile, prob.M, prob.N, prob.batches, sm_count(ctx), splits)
    if grid[1] > MAX_GRID_Y:
        raise UnsupportedOpError(f"N = {prob.N} needs more than {MAX_GRID_Y} column tiles")
    args = list((with_maps if chosen in TMA_TILES else kb).args)  # type: ignore[union-attr]
    if scratch:
        size_split_scratch(args, scratch, ctx, tile, grid, splits)
    ctx.launch(kernel, grid, (tile_threads(tile),), args, shared=tile_shared(tile))


def tensor_maps(prob: Product, a_kmajor: bool, b_kmajor: bool
                ) -> tuple[tuple[list[Any], list[Any]], tuple[list[Any], list[Any]]] | None:
    """The (dims innermost first, byte strides of dims 1..) of A's and B's tensor maps, 3-D with the
    batch last, or None where TMA cannot read the operands: more than one batch dim, a broadcast
    batch, an inner stride other than 1, or a stride that is not a multiple of 16 bytes."""
    if len(prob.batch) > 1 or prob.K == 0:
        return None
    batches = prob.batch[0] if prob.batch else 1
    a_batch = prob.a_batch[0] if prob.batch else prob.M * prob.K
    b_batch = prob.b_batch[0] if prob.batch else prob.K * prob.N
    if a_kmajor:
        a_map = ([prob.K, prob.M, batches], [prob.sam * 2, a_batch * 2]) if prob.sak == 1 else None
    else:
        a_map = ([prob.M, prob.K, batches], [prob.sak * 2, a_batch * 2]) if prob.sam == 1 else None
    if b_kmajor:
        b_map = ([prob.K, prob.N, batches], [prob.sbn * 2, b_batch * 2]) if prob.sbk == 1 else None
    else:
        b_map = ([prob.N, prob.K, batches], [prob.sbk * 2, b_batch * 2]) if prob.sbn == 1 else None
    if a_map is None or b_map is None:
        return None
    for _, strides in (a_map, b_map):
        if any(not is_static(x) or x <= 0 or x % 16 or x >= 2**40 for x in strides):
            return None
    return a_map, b_map


def _batch_strides(shape: Sequence[int], batch: Sequence[int], inner: int) -> tuple[int, ...]:
    """Strides along the broadcast batch dims of a contiguous operand whose matrices hold `inner` elements."""
    mine = list(shape)
    full = contiguous_strides(list(mine) + [inner])[:-1] if mine else []
    out = []
    for j in range(len(batch)):
        i = j - (len(batch) - len(mine))
        out.append(full[i] if i >= 0 and mine[i] != 1 else 0)
    return tuple(out)


def plan_matmul(ctx: LowerContext, epi: Epilogue) -> None:
    op = epi.heavy
    a, b = epi.value(op.operands[0]), epi.value(op.operands[1])
    assert a is not None and b is not None
    sa, sb = ctx.shape(a), ctx.shape(b)
    a2 = (1,) + tuple(sa) if len(sa) == 1 else tuple(sa)
    b2 = tuple(sb) + (1,) if len(sb) == 1 else tuple(sb)
    M, K, N = a2[-2], a2[-1], b2[-1]
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    a_b = _batch_strides(a2[:-2], batch, M * K)
    b_b = _batch_strides(b2[:-2], batch, K * N)
    c_b = tuple(contiguous_strides(list(batch) + [M * N])[:-1])
    if batch and not any(b_b) and tuple(a2[:-2]) == batch:
        M, batch, a_b, b_b, c_b = M * numel(batch), (), (), (), ()  # a linear layer: one tall product
    prob = Product(M, N, K, batch, a_b, b_b, c_b, K, 1, N, 1, N, 1)
    rdt = op.results[0].type.dtype
    acc = accumulator(rdt)
    col = len(ctx.shape(op.results[0])) - 1 if len(sb) > 1 else None
    launch_product(ctx, epi, Store(acc, HeavyValue(op.name, rdt), [], col), prob, a, b)


def plan_gemm(ctx: LowerContext, epi: Epilogue) -> None:
    op = epi.heavy
    a, b, c = epi.value(op.a), epi.value(op.b), epi.value(op.c)
    assert a is not None and b is not None
    (ra, ca), (rb, cb) = ctx.shape(a), ctx.shape(b)
    M, K = (ca, ra) if op.trans_a else (ra, ca)
    N = rb if op.trans_b else cb
    sam, sak = (1, M) if op.trans_a else (K, 1)
    sbk, sbn = (1, K) if op.trans_b else (N, 1)
    prob = Product(M, N, K, (), (), (), (), sam, sak, sbk, sbn, N, 1)
    rdt = op.results[0].type.dtype
    acc = accumulator(rdt)
    reads = [c] if c is not None else []
    value = HeavyValue(op.name, rdt, "gemm", alpha=float(op.alpha), beta=float(op.beta))
    launch_product(ctx, epi, Store(acc, value, reads, 1), prob, a, b)


def plan_einsum(ctx: LowerContext, epi: Epilogue) -> None:
    """Two-operand equations without ellipses or diagonals whose label groups (batch, rows,
    columns, contraction) each lie contiguously in order: a strided batched product."""
    from ember.ir.ops.linalg import parse_equation

    op = epi.heavy
    if len(op.operands) != 2:
        raise UnsupportedOpError(f"einsum of {len(op.operands)} operands has no kernel (two only)")
    a, b = epi.value(op.operands[0]), epi.value(op.operands[1])
    assert a is not None and b is not None
    terms, out = parse_equation(op, op.equation, 2)
    ta, tb = terms
    if any("..." in t for t in (ta, tb)) or (out is not None and "..." in out):
        raise UnsupportedOpError("einsum with an ellipsis has no kernel")
    if len(set(ta)) != len(ta) or len(set(tb)) != len(tb):
        raise UnsupportedOpError("einsum with a diagonal (a label repeated in one term) has no kernel")
    if out is None:
        counts: dict[str, int] = {}
        for label in ta + tb:
            counts[label] = counts.get(label, 0) + 1
        out = sorted(x for x, n in counts.items() if n == 1)
    sa, sb, so = ctx.shape(a), ctx.shape(b), ctx.shape(op.results[0])
    size = {**dict(zip(ta, sa)), **dict(zip(tb, sb))}
    st_a = dict(zip(ta, contiguous_strides(sa)))
    st_b = dict(zip(tb, contiguous_strides(sb)))
    st_o = dict(zip(out, contiguous_strides(so)))
    for label in set(ta) | set(tb):
        if label not in out and not (label in ta and label in tb):
            raise UnsupportedOpError(f"einsum label {label!r} is summed within one operand; no kernel")
    live = lambda labels: [x for x in labels if size[x] != 1]  # noqa: E731
    batch = live([x for x in out if x in ta and x in tb])
    rows = live([x for x in out if x in ta and x not in tb])
    cols = live([x for x in out if x in tb and x not in ta])
    red = live([x for x in ta if x in tb and x not in out])

    def merged(labels: list[str], strides: dict[str, int]) -> int:
        if not labels:
            return 0
        for x, y in zip(labels, labels[1:]):
            if strides[x] != size[y] * strides[y]:
                raise UnsupportedOpError(f"einsum {op.equation!r}: labels {''.join(labels)} do not lie together")
        return strides[labels[-1]]

    M = numel([size[x] for x in rows])
    N = numel([size[x] for x in cols])
    K = numel([size[x] for x in red])
    prob = Product(M, N, K, tuple(size[x] for x in batch), tuple(st_a[x] for x in batch),
                   tuple(st_b[x] for x in batch), tuple(st_o[x] for x in batch),
                   merged(rows, st_a), merged(red, st_a), merged(red, st_b), merged(cols, st_b),
                   merged(rows, st_o), merged(cols, st_o))
    rdt = op.results[0].type.dtype
    acc = accumulator(rdt)
    col = out.index(cols[0]) if len(cols) == 1 else None
    launch_product(ctx, epi, Store(acc, HeavyValue(op.name, rdt), [], col), prob, a, b)


# -- convolution ------------------------------------------------------------------------------
def _layout_strides(shape: Sequence[int], axes: Sequence[int]) -> list[int]:
    st = contiguous_strides(shape)
    return [st[a] for a in axes]


def _pad3(values: Sequence[int], fill: int) -> list[int]:
    return [fill] * (3 - len(values)) + list(values)


def _conv_geometry(ctx: LowerContext, op: Operation, x: Value, w: Value, transposed: bool) -> tuple[list[int], bool]:
    """Geom (ember_conv.cuh) of a conv or conv_transpose, and whether the output is channels last."""
    from ember.ir.ops import nn

    xs, ws, ys = ctx.shape(x), ctx.shape(w), ctx.shape(op.results[0])
    rank = len(xs)
    if rank - 2 > 3:
        raise UnsupportedOpError(f"convolution with {rank - 2} spatial dims has no kernel (up to 3)")
    lay = L.resolve(op.layout, rank)
    wl = L.resolve_weight(op.weight_layout, lay.spatial, "IO" if transposed else "OI")
    sizes = [xs[a] for a in lay.spatial_axes]
    outs = [ys[a] for a in lay.spatial_axes]
    kernel = [ws[a] for a in wl.spatial_axes(lay.spatial)]
    n = len(sizes)
    strides, dilations, begin, end = nn._window_attrs(None, n, kernel, op.strides, op.dilations, op.pads, op.auto_pad)
    if not transposed:
        begin, _ = nn._resolved_pads(sizes, kernel, strides, dilations, begin, end, op.auto_pad)
    else:
        adjust = list(op.output_padding) or [0] * n
        full = [(s - 1) * st + (k - 1) * d + 1 + a for s, k, st, d, a in zip(sizes, kernel, strides, dilations, adjust)]
        if op.output_shape is not None or op.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            wanted = ([ctx.evaluate(o) for o in op.output_shape] if op.output_shape is not None
                      else [s * st for s, st in zip(sizes, strides)])
            begin = []
            for f, o in zip(full, wanted):
                total = f - o
                small, big = total // 2, total - total // 2
                begin.append(small if op.auto_pad == "SAME_UPPER" else big)
        elif op.auto_pad == "VALID":
            begin = [0] * n
    n_batch, c_in, c_out = xs[lay.axis("N")], xs[lay.channel_axis], ys[lay.channel_axis]
    x_st = _layout_strides(xs, lay.to_channels_first)
    y_st = _layout_strides(ys, lay.to_channels_first)
    w_axes = wl.perm("OI", lay.spatial)
    w_st = _layout_strides(ws, w_axes)
    geom = [n_batch, c_in, *_pad3(sizes, 1), c_out, *_pad3(outs, 1), *_pad3(kernel, 1),
            *_pad3(strides, 1), *_pad3(dilations, 1), *_pad3(begin, 0), op.groups,
            x_st[0], x_st[1], *_pad3(x_st[2:], 0), w_st[0], w_st[1], *_pad3(w_st[2:], 0),
            y_st[0], y_st[1], *_pad3(y_st[2:], 0)]
    return geom, lay.channels_last


def plan_conv(ctx: LowerContext, epi: Epilogue, transposed: bool = False) -> None:
    op = epi.heavy
    x, w, bias = epi.value(op.x), epi.value(op.w), epi.value(op.bias)
    assert x is not None and w is not None
    geom, channels_last = _conv_geometry(ctx, op, x, w, transposed)
    ys = ctx.shape(op.results[0])
    total = numel(ys)
    if total == 0:
        return
    rdt = op.results[0].type.dtype
    acc = accumulator(rdt)
    if acc not in ("float", "double"):
        raise UnsupportedOpError(f"convolution of {rdt} has no kernel")
    lay = L.resolve(op.layout, len(ys))
    store = Store(acc, HeavyValue(op.name, rdt, "bias"), [bias] if bias is not None else [], lay.channel_axis,
                  per_column=True)
    index = index_type(max_elements(ctx, [x, w, epi.out, bias]))
    plan = EpiloguePlan(ctx, epi, store, index)
    kb = KernelBuilder(ctx)
    plan.declare(kb)
    kb.ptr("x", ctype(ctx.dtype(x)), "in", ctx.arg(x))
    kb.ptr("w", ctype(ctx.dtype(w)), "in", ctx.arg(w))
    kb.ptr("meta", "long long", "meta", ctx.meta(geom + plan.meta))
    n_batch, c_in, groups, c_out = geom[0], geom[1], geom[21], geom[5]
    P = numel(geom[6:9])
    kg, cg = c_out // groups, c_in // groups
    M, N = n_batch * P, kg
    if transposed:
        names = ["direct"]
    else:
        element = mma_element(ctx.dtype(x), ctx.dtype(w))
        # Channels last with 8 | channels per group: 8 channels of one tap at a time.
        xs_, ws_ = geom[22:27], geom[27:32]
        va = channels_last and cg % 8 == 0 and xs_[1] == 1 and all(xs_[i] % 8 == 0 for i in (0, 2, 3, 4))
        vb = channels_last and cg % 8 == 0 and ws_[1] == 1 and all(ws_[i] % 8 == 0 for i in (0, 2, 3, 4))
        tiles = [f"implicit-gemm/{t}" for t in tile_candidates(M, N, groups, acc, sm_count(ctx), mma=element is not None,
                                                               wgmma=element is not None and va and vb
                                                               and wgmma_target(ctx))]
        if M >= 2**31 or cg * numel(geom[9:12]) >= 2**31:
            tiles = []  # rows past 32 bits: only the direct kernel
        names = ["direct", *tiles] if kg < 16 or not tiles else [*tiles, "direct"]
        if tiles and kg >= 16:
            names = with_splits(names, M, N, cg * numel(geom[9:12]), groups, sm_count(ctx), prefix="implicit-gemm/")
        if depthwise_vector(channels_last, cg, kg, c_out, ctx.dtype(x), ctx.dtype(w), xs_):
            names = ["depthwise8", *names]
    # A build for one shape writes the geometry into the kernel (ember_conv.cuh Geom::load).
    fixed = static_sizes(ctx, geom[:37])
    defines = (("EMBER_CONV_GEOM", ", ".join(map(str, fixed))),) if fixed is not None else ()
    plain = kb.fork()  # the direct kernel's parameters: without split-K's scratch
    scratch = split_scratch(kb, ctx) if any(split_name(n)[1] > 1 for n in names) else None
    candidates: dict[str, KernelSpec] = {}
    builders: dict[str, KernelBuilder] = {}
    for name in names:
        if name == "depthwise8":
            builders[name] = vec = plain.fork()
            vec.scalar("total", "i64", ctx.i64(total))
            candidates[name] = heavy_spec(epi, plan, vec, "ember_conv.cuh", "conv_dw", "ember::conv::depthwise8",
                                          (acc, index), ("x", "w", "meta", f"static_cast<{index}>(total)", "epi"),
                                          DIRECT_THREADS, len(geom), defines)
        elif name == "direct":
            builders[name] = direct = plain.fork()
            direct.scalar("total", "i64", ctx.i64(total))
            candidates[name] = heavy_spec(
                epi, plan, direct, "ember_conv.cuh", "conv_t" if transposed else "conv_direct",
                f"ember::conv::{'transposed' if transposed else 'direct'}", (channels_last, acc, index),
                ("x", "w", "meta", f"static_cast<{index}>(total)", "epi"), DIRECT_THREADS, len(geom), defines)
        else:
            base, splits = split_name(name.split("/", 1)[1])
            builders[name] = kb
            extra = ((splits,), ("work", "counters")) if scratch else ((), ())
            gemm_tile = tile_of(base, element, va, vb)
            candidates[name] = heavy_spec(epi, plan, kb, "ember_conv.cuh", "conv", "ember::conv::implicit_gemm",
                                          (gemm_tile, channels_last, acc, index, *extra[0]),
                                          ("x", "w", "meta", "epi", *extra[1]), tile_threads(gemm_tile), len(geom), defines)
    chosen = ctx.choose(list(candidates))
    spec, args = candidates[chosen], list(builders[chosen].args)
    kernel = render_spec(spec)
    tile = spec.tile
    if tile is None:
        work = total // 8 if chosen == "depthwise8" else total
        blocks = max(1, min(-(-work // DIRECT_THREADS), 65535 * 16))
        ctx.launch(kernel, (blocks,), (DIRECT_THREADS,), args)
        return
    splits = split_name(chosen)[1]
    grid = tile_grid(tile, M, N, groups, sm_count(ctx), splits)
    if grid[1] > MAX_GRID_Y:
        raise UnsupportedOpError(f"{N} output channels per group need more than {MAX_GRID_Y} tiles")
    if scratch:
        size_split_scratch(args, scratch, ctx, tile, grid, splits)
    ctx.launch(kernel, grid, (tile_threads(tile),), args, shared=tile_shared(tile))


# -- attention --------------------------------------------------------------------------------
STAGES = {"raw": 0, "softcap": 1, "biased": 2, "probs": 3}
# The tensor-core attention kernel (ember_attention.cuh `flash_mma`; its GPU tests against the
# interpreter passed on an H100 on 2026-12-07); False keeps the SIMT kernel for every attention.
ATTENTION_MMA = True
ATTENTION_MMA_KV = 64        # keys per tile of flash_mma


def attention_mma_warps(ctx: LowerContext, dt: Any, D: int, Dv: int, blocks_at_64: Any) -> int:
    """The warps per block of the tensor-core kernel (16 query rows each), or 0 where it does not
    apply: f16/bf16, D == Dv a multiple of 16 up to 128, a target of sm_80 or newer. Two warps
    where four would leave SMs idle."""
    target = getattr(ctx, "target", None) or "sm_90"
    if not ATTENTION_MMA or dt.name not in ("f16", "bf16") or D != Dv or D % 16 or D > 128:
        return 0
    if int(target[3:].rstrip("af")) < 80:
        return 0
    return 2 if blocks_at_64 < sm_count(ctx) else 4


def attention_tiles(D: int, Dv: int) -> tuple[int, int, int, int]:
    """BQ, BKV, DVPT and the dynamic shared bytes of the first tile shape that fits."""
    for bq, bkv in ((32, 64), (16, 64), (16, 32), (8, 32), (8, 16), (4, 32)):
        tpr = ATTENTION_THREADS // bq
        shared = 4 * (bq * (D + 1) + bkv * (D + 1) + bkv * Dv + bq * bkv)
        dvpt = -(-Dv // tpr)
        if shared <= SHARED_LIMIT and dvpt <= 32:
            return bq, bkv, max(dvpt, 1), shared
    raise UnsupportedOpError(f"attention with head sizes {D}/{Dv} does not fit the kernel's shared memory")


def plan_attention(ctx: LowerContext, epi: Epilogue) -> None:
    op = epi.heavy
    q, k, v = epi.value(op.q), epi.value(op.k), epi.value(op.v)
    mask, lens = epi.value(op.mask), epi.value(op.kv_lens)
    assert q is not None and k is not None and v is not None
    dt = ctx.dtype(q)
    if compute_ctype(dt) != "float":
        raise UnsupportedOpError(f"attention on {dt} has no kernel (f32, f16, bf16, fp8)")
    B, Hq, Sq, D = ctx.shape(q)
    _, Hkv, Skv, _ = ctx.shape(k)
    Dv = ctx.shape(v)[3]
    if Hkv == 0 or Hq % Hkv:
        raise UnsupportedOpError("attention heads do not group")
    if B > MAX_GRID_Z or Hq > MAX_GRID_Y:
        raise UnsupportedOpError("attention batch or heads past the grid's limits")
    kind, mask_c, mask_strides = 0, "float", [0, 0, 0, 0]
    if mask is not None:
        mdt = ctx.dtype(mask)
        kind = 1 if mdt.kind == "bool" else 2
        mask_c = ctype(mdt)
        ms = ctx.shape(mask)
        mask_strides = broadcast_strides(ms, (B, Hq, Sq, Skv))
    lens_c = ctype(ctx.dtype(lens)) if lens is not None else "int"
    q_offset = ctx.evaluate(op.q_offset)
    window = list(op.window)
    meta = [B, Hq, Hkv, Sq, Skv, D, Dv, int(op.causal), window[0], window[1], int(op.align == "bottom_right"),
            q_offset, *mask_strides]
    scale = float(np.float32(1.0 / math.sqrt(D) if op.scale is None else op.scale))
    softcap = float(op.softcap)
    if B == 0 or Hq == 0 or Sq == 0 or Dv == 0:
        return
    warps = attention_mma_warps(ctx, dt, D, Dv, B * Hq * (-(-Sq // 64)))
    if warps:
        bq, threads, shared = 16 * warps, 32 * warps, 2 * ATTENTION_MMA_KV * (D + 8) * 2
    else:
        bq, bkv, dvpt, shared = attention_tiles(D, Dv)
        threads = ATTENTION_THREADS
    # 32-bit offsets where every tensor fits: the output's store through a layout tail (BERT's
    # heads-back transpose) divides per element, and a 64-bit division is a long subroutine.
    index = index_type(max_elements(ctx, [q, k, v, mask, lens, epi.out, *(epi.outer[a] for a in epi.reads())]))
    store = Store("float", HeavyValue(op.name, op.results[0].type.dtype), [], 3)
    plan = EpiloguePlan(ctx, epi, store, index)

    def operands(kb: KernelBuilder) -> tuple[str, str]:
        kb.ptr("q", ctype(dt), "in", ctx.arg(q))
        kb.ptr("k", ctype(dt), "in", ctx.arg(k))
        kb.ptr("v", ctype(dt), "in", ctx.arg(v))
        m_name = kb.ptr("mask", mask_c, "in", ctx.arg(mask)) if mask is not None else f"({mask_c}*)nullptr"
        l_name = kb.ptr("kv_lens", lens_c, "in", ctx.arg(lens)) if lens is not None else f"({lens_c}*)nullptr"
        kb.ptr("meta", "long long", "meta", ctx.meta(meta + plan.meta))
        kb.scalar("scale", "f32", ctx.f32(scale))
        kb.scalar("softcap", "f32", ctx.f32(softcap))
        return m_name, l_name

    kb = KernelBuilder(ctx)
    plan.declare(kb)
    m_name, l_name = operands(kb)
    args = ("q", "k", "v", m_name, l_name, "meta", "scale", "softcap", "epi")
    if warps:
        spec = heavy_spec(epi, plan, kb, "ember_attention.cuh", "attention", "ember::attention::flash_mma",
                          (warps, D, kind), args, threads, len(meta))
    else:
        spec = heavy_spec(epi, plan, kb, "ember_attention.cuh", "attention", "ember::attention::flash",
                          (bq, bkv, ATTENTION_THREADS, dvpt, kind), args, ATTENTION_THREADS, len(meta))
    ctx.launch(render_spec(spec), (-(-Sq // bq), Hq, B), (threads,), kb.args, shared=shared)
    if op.scores == "none" or Skv == 0:
        return
    scores = op.results[1]
    kb = KernelBuilder(ctx)
    kb.ptr("out", ctype(ctx.dtype(scores)), "out", ctx.arg(scores))
    m_name, l_name = operands(kb)
    spec = KernelSpec("ember_attention.cuh", "attention_scores", "ember::attention::scores",
                      (ATTENTION_THREADS, STAGES[op.scores], kind),
                      ("out", "q", "k", m_name, l_name, "meta", "scale", "softcap"), ATTENTION_THREADS,
                      tuple(kb.params), f"ember.attention scores ({op.scores}) @ {epi.where}",
                      (f"ember.attention scores @ {epi.where}",))
    ctx.launch(render_spec(spec), (Sq, Hq, B), (ATTENTION_THREADS,), kb.args, shared=4 * (D + ATTENTION_THREADS))


# -- registration -----------------------------------------------------------------------------
PLANNERS: dict[str, Callable[[LowerContext, Epilogue], None]] = {
    "ember.matmul": plan_matmul,
    "ember.gemm": plan_gemm,
    "ember.einsum": plan_einsum,
    "ember.conv": plan_conv,
    "ember.conv_transpose": lambda ctx, epi: plan_conv(ctx, epi, transposed=True),
    "ember.attention": plan_attention,
}


@lowering(*PLANNERS)
def heavy_op(ctx: LowerContext, op: Operation) -> None:
    PLANNERS[op.name](ctx, Epilogue.alone(ctx, op))


@lowering(fused_kind="epilogue")
def epilogue_fusion(ctx: LowerContext, op: Operation) -> None:
    epi = Epilogue.fused(ctx, op)
    planner = PLANNERS.get(epi.heavy.name)
    if planner is None:
        raise UnsupportedOpError(f"an epilogue of {epi.heavy.name} has no kernel")
    planner(ctx, epi)


__all__ = ["PLANNERS", "SM_COUNTS", "Epilogue", "EpiloguePlan", "Product", "Store", "launch_product", "sm_count",
           "tile_candidates"]
