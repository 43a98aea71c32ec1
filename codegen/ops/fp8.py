"""The fp8 ops' kernels: ember.fp8_matmul and ember.fp8_conv (ir/ops/fp8.py), alone or as the heavy op
of an epilogue fusion (fuse-epilogue puts the elementwise ops after them, such as the cast of an
f32 result to f16 and a residual add, into their kernel).

Each planner proposes tactics, the heuristic's pick first (codegen/ops/heavy.py's way):
- `mma<BM>x<BN>x<BK>/<WM>x<WN>`: the tensor-core tiles of include/ember_fp8.cuh, for operands
  the tiles read 16 bytes at a time: a matmul whose K is a multiple of 16; a convolution
  channels-last with an OHWI filter, one group and C_in a multiple of 16 (the int8 tiles' rule:
  `int8.conv_tiles_fit`). The same kernel multiplies on fp8 tensor cores (m16n8k32 e4m3/e5m2)
  where it runs on sm_89 or newer, widens the fp8 fragments to f16 for m16n8k16 on sm_80 .. sm_88,
  and runs a SIMT loop over the tile before sm_80: the fp8 instructions are compiled only into
  the cubins of the targets that have them, and an engine for sm_80 and sm_90 is valid on both.
  A deep-k tile (BK 64, two stages) first where the product fills every multiprocessor with
  128 x 128 tiles, else 64 x 64.
- `direct`: one thread per output element, any shape, layout and group count: the fallback for
  what the tiles do not take (K or C_in not a multiple of 16, grouped and depthwise
  convolutions, channels-first layouts).

Either way the epilogue runs in registers (the template's `Rescale`: scales, bias, relu) and
hands the op's f32 value to the functor that cuda_render.render_epilogue writes (the value as
the op's result type, then any fused elementwise ops, then the store); a tile with nothing fused
after its op and its channels adjacent in the output stores through `ember::int8::Store`,
two channels with one store where aligned.
"""

from __future__ import annotations

from typing import Any

from ember.codegen.cuda_render import ctype, index_type, render_spec
from ember.codegen.kernel_builder import KernelBuilder
from ember.codegen.kernel_spec import HeavyValue, KernelSpec
from ember.codegen.lower import LowerContext, lowering
from ember.codegen.ops import heavy
from ember.codegen.ops.heavy import (DIRECT_THREADS, MAX_GRID_Y, Epilogue, EpiloguePlan, Store, _conv_geometry,
                                     heavy_spec, max_elements, sm_count)
from ember.codegen.ops.int8 import conv_tiles_fit
from ember.codegen.symbolic import numel
from ember.errors import UnsupportedOpError
from ember.ir import layout as L
from ember.ir.core import Operation, Value

THREADS = 256
# tactic -> (BM, BN, BK, WM, WN) of ember::fp8::Mma; every tile runs 256 threads
MMA_TILES = {"mma128x128x64/64x32": (128, 128, 64, 64, 32), "mma128x128x32/64x32": (128, 128, 32, 64, 32),
             "mma64x64x64/32x16": (64, 64, 64, 32, 16)}
OPERANDS = ("x", "w", "x_scale", "w_scale", "bias")
FP8_C_TYPES = {"f8e4m3fn": "__nv_fp8_e4m3", "f8e5m2": "__nv_fp8_e5m2"}


def tile_candidates(M: int, N: int, sms: int, mma: bool) -> list[str]:
    """The tactics for an M x N product, the heuristic's pick first."""
    if not mma:
        return ["direct"]
    big = -(-M // 128) * -(-N // 128)
    if M >= 128 and N >= 128 and big >= sms:
        return ["mma128x128x64/64x32", "mma128x128x32/64x32", "mma64x64x64/32x16", "direct"]
    return ["mma64x64x64/32x16", "mma128x128x64/64x32", "mma128x128x32/64x32", "direct"]


def tile_arg(name: str) -> str:
    bm, bn, bk, wm, wn = MMA_TILES[name]
    return f"ember::fp8::Mma<{bm}, {bn}, {bk}, {wm}, {wn}>"


class Fp8Kernel:
    """What both planners share: the op's operands (outside values), its epilogue plan, and the
    kernel's parameters: the functor's, then the operands the template reads."""

    def __init__(self, ctx: LowerContext, epi: Epilogue, col_axis: int) -> None:
        op = epi.heavy
        self.ctx, self.epi, self.op = ctx, epi, op
        self.values: dict[str, Value | None] = {
            f: epi.value(op.operands[i]) if i < len(op.operands) else None for i, f in enumerate(OPERANDS)}
        store = Store("float", HeavyValue(op.name, op.results[0].type.dtype), [], col_axis)
        shown = [v for v in self.values.values() if v is not None] + [epi.out]
        self.index = index_type(max_elements(ctx, shown))
        self.plan = EpiloguePlan(ctx, epi, store, self.index)
        self.kb = KernelBuilder(ctx)
        self.plan.declare(self.kb)
        self.pointers: list[str] = []
        for f in OPERANDS:
            v = self.values[f]
            if v is None:
                self.pointers.append("(const float*)nullptr")
                continue
            want = FP8_C_TYPES.get(ctx.dtype(v).name) if f in ("x", "w") else "float"
            if want is None or ctype(ctx.dtype(v)) != want:
                raise UnsupportedOpError(f"{op.name}: {f} {v.type} has no kernel")
            self.pointers.append(self.kb.ptr(f, want, "in", ctx.arg(v)))
        w_scale = self.values["w_scale"]
        assert w_scale is not None
        self.per_channel = numel(ctx.shape(w_scale)) > 1

    def flags(self) -> tuple[bool, bool]:
        return bool(self.op.attributes.get("relu")), self.per_channel

    @property
    def alone(self) -> bool:
        """No elementwise ops fused after the op: the tiles store through ember::int8::Store."""
        return not (self.epi.ops or self.epi.tail or self.epi.after)

    def spec(self, kb: KernelBuilder, hint: str, template: str, targs: tuple[Any, ...], call: tuple[str, ...],
             meta_offset: int) -> KernelSpec:
        return heavy_spec(self.epi, self.plan, kb, "ember_fp8.cuh", hint, template, targs, call, THREADS,
                          meta_offset)

    def tile_spec(self, hint: str, template: str, name: str, pair: bool, call: tuple[str, ...],
                  meta_offset: int) -> KernelSpec:
        """A tensor-core tile's kernel; `pair` (channels adjacent in the output, nothing fused
        after the op): stored through ember::int8::Store, two channels at a time where aligned."""
        targs = (tile_arg(name), *self.flags(), pair, self.index)
        if not pair:
            return self.spec(self.kb, hint, template, targs, call, meta_offset)
        store = f"ember::int8::Store<{ctype(self.epi.out.type.dtype)}>{{out}}"  # type: ignore[union-attr]
        return KernelSpec("ember_fp8.cuh", hint, template, targs, (*call[:-1], store), THREADS,
                          tuple(self.kb.params), self.epi.comment(), (self.epi.comment(),))


def _launch(ctx: LowerContext, spec: KernelSpec, args: Any, grid: tuple[int, ...]) -> None:
    if len(grid) > 1 and grid[1] > MAX_GRID_Y:
        raise UnsupportedOpError(f"{grid[1]} column tiles are more than the grid's {MAX_GRID_Y}")
    ctx.launch(render_spec(spec), grid, (THREADS,), args)


def _direct_blocks(total: int) -> int:
    return max(1, min(-(-total // DIRECT_THREADS), 65535 * 16))


# -- ember.fp8_matmul -----------------------------------------------------------------------------
def plan_fp8_matmul(ctx: LowerContext, epi: Epilogue) -> None:
    op = epi.heavy
    out = ctx.shape(op.results[0])
    k8 = Fp8Kernel(ctx, epi, len(out) - 1)
    x, w = k8.values["x"], k8.values["w"]
    assert x is not None and w is not None
    N, K = ctx.shape(w)
    M = numel(ctx.shape(x)[:-1])
    if M == 0 or N == 0:
        return
    if M >= 2**31 or N >= 2**31 or K >= 2**31:
        raise UnsupportedOpError(f"{op.name}: a matrix dim past 2^31")
    kb = k8.kb
    kb.ptr("meta", "long long", "meta", ctx.meta(k8.plan.meta))
    kb.scalar("M", "i32", ctx.i32(M))
    kb.scalar("N", "i32", ctx.i32(N))
    kb.scalar("K", "i32", ctx.i32(K))
    names = tile_candidates(M, N, sm_count(ctx), mma=K % 16 == 0 and K > 0)
    specs: dict[str, tuple[KernelSpec, Any, tuple[int, ...]]] = {}
    for name in names:
        if name == "direct":
            direct = kb.fork()
            direct.scalar("total", "i64", ctx.i64(M * N))
            call = (*k8.pointers, "N", "K", f"static_cast<{k8.index}>(total)", "epi")
            spec = k8.spec(direct, "fp8_matmul", "ember::fp8::matmul_direct", (*k8.flags(), k8.index), call, 0)
            specs[name] = (spec, direct.args, (_direct_blocks(M * N),))
        else:
            bm, bn = MMA_TILES[name][:2]
            call = (*k8.pointers, "M", "N", "K", "epi")
            spec = k8.tile_spec("fp8_matmul", "ember::fp8::matmul", name, k8.alone, call, 0)
            specs[name] = (spec, kb.args, (-(-M // bm), -(-N // bn)))
    spec, args, grid = specs[ctx.choose(list(specs))]
    _launch(ctx, spec, args, grid)


# -- ember.fp8_conv -------------------------------------------------------------------------------
def plan_fp8_conv(ctx: LowerContext, epi: Epilogue) -> None:
    op = epi.heavy
    ys = ctx.shape(op.results[0])
    lay = L.resolve(op.attributes.get("layout"), len(ys))
    k8 = Fp8Kernel(ctx, epi, lay.channel_axis)
    x, w = k8.values["x"], k8.values["w"]
    assert x is not None and w is not None
    geom, channels_last = _conv_geometry(ctx, op, x, w, False)
    total = numel(ys)
    if total == 0:
        return
    M, N, K = geom[0] * numel(geom[6:9]), geom[5], geom[1] * numel(geom[9:12])
    if M >= 2**31 or K >= 2**31:
        raise UnsupportedOpError(f"{op.name}: an implicit GEMM dim past 2^31")
    kb = k8.kb
    kb.ptr("meta", "long long", "meta", ctx.meta(geom + k8.plan.meta))
    names = tile_candidates(M, N, sm_count(ctx), mma=conv_tiles_fit(geom, channels_last))
    specs: dict[str, tuple[KernelSpec, Any, tuple[int, ...]]] = {}
    for name in names:
        if name == "direct":
            direct = kb.fork()
            direct.scalar("total", "i64", ctx.i64(total))
            call = (*k8.pointers, "meta", f"static_cast<{k8.index}>(total)", "epi")
            spec = k8.spec(direct, "fp8_conv", "ember::fp8::conv_direct", (channels_last, *k8.flags(), k8.index),
                           call, len(geom))
            specs[name] = (spec, direct.args, (_direct_blocks(total),))
        else:
            bm, bn = MMA_TILES[name][:2]
            call = (*k8.pointers, "meta", "epi")
            pair = k8.alone and geom[33] == 1  # y's channel stride: channels last
            spec = k8.tile_spec("fp8_conv", "ember::fp8::conv", name, pair, call, len(geom))
            specs[name] = (spec, kb.args, (-(-M // bm), -(-N // bn)))
    spec, args, grid = specs[ctx.choose(list(specs))]
    _launch(ctx, spec, args, grid)


# -- registration ---------------------------------------------------------------------------------
PLANNERS = {"ember.fp8_conv": plan_fp8_conv, "ember.fp8_matmul": plan_fp8_matmul}
heavy.PLANNERS.update(PLANNERS)  # the planners of epilogue fusions (heavy.epilogue_fusion) whose heavy op is fp8


@lowering(*PLANNERS)
def fp8_op(ctx: LowerContext, op: Operation) -> None:
    PLANNERS[op.name](ctx, Epilogue.alone(ctx, op))


__all__ = ["MMA_TILES", "PLANNERS", "tile_candidates"]
