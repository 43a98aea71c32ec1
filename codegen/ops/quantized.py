"""The planners the quantized heavy ops share: <kind>_matmul and <kind>_conv for int8 (int8.py,
include/ember_int8.cuh) and fp8 (fp8.py, include/ember_fp8.cuh).

Both families propose the same tactics from the same rules: the header's tensor-core tiles
(`ember::<kind>::Mma`) where the operands are read 16 bytes at a time (a matmul whose K is a
multiple of 16; a convolution `conv_tiles_fit` takes), the largest tiles first where the product
fills every multiprocessor with 128 x 128 tiles, else the smallest first; and the `direct`
kernel, one thread per output element, everywhere. A `TileKernel` subclass says what tells a
family apart: its header and namespace (`kind`), its tiles, its operands and their C types, and
the template's flags.
"""

from __future__ import annotations

from typing import Any, Callable

from ember.codegen.cuda_render import ctype, index_type, render_spec
from ember.codegen.kernel_builder import KernelBuilder
from ember.codegen.kernel_spec import HeavyValue, KernelSpec
from ember.codegen.lower import LowerContext, lowering
from ember.codegen.ops import heavy
from ember.codegen.ops.heavy import (DIRECT_THREADS, MAX_GRID_Y, Epilogue, EpiloguePlan, Store, _conv_geometry,
                                     heavy_spec, max_elements, sm_count)
from ember.codegen.symbolic import numel
from ember.errors import UnsupportedOpError
from ember.ir import layout as L
from ember.ir.core import Operation, Value

THREADS = 256  # every tile and the direct kernels


def conv_tiles_fit(geom: list[int], channels_last: bool) -> bool:
    """Whether the tensor-core tiles read this convolution: channels-last x with channels adjacent,
    one group, C_in a multiple of 16, and an OHWI filter whose rows are contiguous."""
    c, kernel, groups = geom[1], geom[9:12], geom[21]
    xs, ws = geom[22:27], geom[27:32]
    if not channels_last or groups != 1 or c % 16 or xs[1] != 1 or any(s % 16 for s in (xs[0], *xs[2:])):
        return False
    inner = c  # each filter row (kd, kh, kw, c) contiguous, c fastest; taps of size 1 have any stride
    for size, stride in zip(reversed(kernel), reversed(ws[2:])):
        if size > 1 and stride != inner:
            return False
        inner *= size
    return ws[1] == 1 and ws[0] % 16 == 0


class TileKernel:
    """What both planners share: the op's operands (outside values), its epilogue plan, and the
    kernel's parameters: the functor's, then the operands the template reads.

    A family sets `kind` (the header ember_<kind>.cuh, the namespace ember::<kind>, the ops
    ember.<kind>_matmul and ember.<kind>_conv), `MMA_TILES` (tactic -> BM, BN, BK, WM, WN of
    ember::<kind>::Mma, largest first) and `OPERANDS` (the op's, in order), and overrides
    `c_type`, `store_kind` and the flag methods where its templates differ."""

    kind: str
    MMA_TILES: dict[str, tuple[int, int, int, int, int]]
    OPERANDS: tuple[str, ...]

    def __init__(self, ctx: LowerContext, epi: Epilogue, col_axis: int) -> None:
        op = epi.heavy
        self.ctx, self.epi, self.op = ctx, epi, op
        self.values: dict[str, Value | None] = {
            f: epi.value(op.operands[i]) if i < len(op.operands) else None for i, f in enumerate(self.OPERANDS)}
        store = Store(self.store_kind(), HeavyValue(op.name, op.results[0].type.dtype), [], col_axis)
        shown = [v for v in self.values.values() if v is not None] + [epi.out]
        self.index = index_type(max_elements(ctx, shown))
        self.plan = EpiloguePlan(ctx, epi, store, self.index)
        self.kb = KernelBuilder(ctx)
        self.plan.declare(self.kb)
        self.pointers: list[str] = []
        for f in self.OPERANDS:
            v = self.values[f]
            want = self.c_type(f, v)
            if v is None:
                self.pointers.append(f"(const {want}*)nullptr")
                continue
            if want is None or ctype(ctx.dtype(v)) != want:
                raise UnsupportedOpError(f"{op.name}: {f} {v.type} has no kernel")
            self.pointers.append(self.kb.ptr(f, want, "in", ctx.arg(v)))
        w_scale = self.values["w_scale"]
        assert w_scale is not None
        self.per_channel = numel(ctx.shape(w_scale)) > 1

    @property
    def header(self) -> str:
        return f"ember_{self.kind}.cuh"

    def c_type(self, operand: str, v: Value | None) -> str | None:
        """The C element type the template reads `operand` as (v: its value, None where absent);
        None: no kernel for v's type."""
        raise NotImplementedError

    def store_kind(self) -> str:
        """The type of the value the template hands the epilogue functor."""
        return "float"

    def flags(self) -> tuple[bool, ...]:
        """The template flags after the tile (or the direct kernel's layout flag)."""
        return bool(self.op.attributes.get("relu")), self.per_channel

    def tile_flags(self) -> tuple[bool, ...]:
        """The tile templates' flags, before the paired-store flag."""
        return self.flags()

    @classmethod
    def tile_candidates(cls, M: int, N: int, sms: int, mma: bool) -> list[str]:
        """The tactics for an M x N product, the heuristic's pick first: the largest tiles where
        128 x 128 tiles fill every multiprocessor, else the smallest; the direct kernel last."""
        if not mma:
            return ["direct"]
        big = -(-M // 128) * -(-N // 128)
        if M >= 128 and N >= 128 and big >= sms:
            return [*cls.MMA_TILES, "direct"]
        return [*sorted(cls.MMA_TILES, key=lambda name: cls.MMA_TILES[name][0]), "direct"]

    def tile_arg(self, name: str) -> str:
        bm, bn, bk, wm, wn = self.MMA_TILES[name]
        return f"ember::{self.kind}::Mma<{bm}, {bn}, {bk}, {wm}, {wn}>"

    @property
    def alone(self) -> bool:
        """No elementwise ops fused after the op: the tiles store through ember::int8::Store."""
        return not (self.epi.ops or self.epi.tail or self.epi.after)

    def spec(self, kb: KernelBuilder, hint: str, template: str, targs: tuple[Any, ...], call: tuple[str, ...],
             meta_offset: int) -> KernelSpec:
        return heavy_spec(self.epi, self.plan, kb, self.header, hint, template, targs, call, THREADS, meta_offset)

    def tile_spec(self, hint: str, template: str, name: str, pair: bool, call: tuple[str, ...],
                  meta_offset: int) -> KernelSpec:
        """A tensor-core tile's kernel; `pair` (channels adjacent in the output, nothing fused
        after the op): stored through ember::int8::Store, two channels at a time where aligned."""
        targs = (self.tile_arg(name), *self.tile_flags(), pair, self.index)
        if not pair:
            return self.spec(self.kb, hint, template, targs, call, meta_offset)
        store = f"ember::int8::Store<{ctype(self.epi.out.type.dtype)}>{{out}}"  # type: ignore[union-attr]
        return KernelSpec(self.header, hint, template, targs, (*call[:-1], store), THREADS,
                          tuple(self.kb.params), self.epi.comment(), (self.epi.comment(),))


def _launch(ctx: LowerContext, spec: KernelSpec, args: Any, grid: tuple[int, ...]) -> None:
    if len(grid) > 1 and grid[1] > MAX_GRID_Y:
        raise UnsupportedOpError(f"{grid[1]} column tiles are more than the grid's {MAX_GRID_Y}")
    ctx.launch(render_spec(spec), grid, (THREADS,), args)


def _direct_blocks(total: int) -> int:
    return max(1, min(-(-total // DIRECT_THREADS), 65535 * 16))


def plan_matmul(family: type[TileKernel], ctx: LowerContext, epi: Epilogue) -> None:
    """ember.<kind>_matmul: x [..., K] times w [N, K]."""
    op = epi.heavy
    out = ctx.shape(op.results[0])
    k8 = family(ctx, epi, len(out) - 1)
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
    hint, template = f"{k8.kind}_matmul", f"ember::{k8.kind}::matmul"
    names = family.tile_candidates(M, N, sm_count(ctx), mma=K % 16 == 0 and K > 0)
    specs: dict[str, tuple[KernelSpec, Any, tuple[int, ...]]] = {}
    for name in names:
        if name == "direct":
            direct = kb.fork()
            direct.scalar("total", "i64", ctx.i64(M * N))
            call = (*k8.pointers, "N", "K", f"static_cast<{k8.index}>(total)", "epi")
            spec = k8.spec(direct, hint, f"{template}_direct", (*k8.flags(), k8.index), call, 0)
            specs[name] = (spec, direct.args, (_direct_blocks(M * N),))
        else:
            bm, bn = family.MMA_TILES[name][:2]
            call = (*k8.pointers, "M", "N", "K", "epi")
            spec = k8.tile_spec(hint, template, name, k8.alone, call, 0)
            specs[name] = (spec, kb.args, (-(-M // bm), -(-N // bn)))
    spec, args, grid = specs[ctx.choose(list(specs))]
    _launch(ctx, spec, args, grid)


def plan_conv(family: type[TileKernel], ctx: LowerContext, epi: Epilogue) -> None:
    """ember.<kind>_conv, as an implicit GEMM: M output positions, N output channels, K taps."""
    op = epi.heavy
    ys = ctx.shape(op.results[0])
    lay = L.resolve(op.attributes.get("layout"), len(ys))
    k8 = family(ctx, epi, lay.channel_axis)
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
    hint, template = f"{k8.kind}_conv", f"ember::{k8.kind}::conv"
    names = family.tile_candidates(M, N, sm_count(ctx), mma=conv_tiles_fit(geom, channels_last))
    specs: dict[str, tuple[KernelSpec, Any, tuple[int, ...]]] = {}
    for name in names:
        if name == "direct":
            direct = kb.fork()
            direct.scalar("total", "i64", ctx.i64(total))
            call = (*k8.pointers, "meta", f"static_cast<{k8.index}>(total)", "epi")
            spec = k8.spec(direct, hint, f"{template}_direct", (channels_last, *k8.flags(), k8.index), call,
                           len(geom))
            specs[name] = (spec, direct.args, (_direct_blocks(total),))
        else:
            bm, bn = family.MMA_TILES[name][:2]
            call = (*k8.pointers, "meta", "epi")
            pair = k8.alone and geom[33] == 1  # y's channel stride: channels last
            spec = k8.tile_spec(hint, template, name, pair, call, len(geom))
            specs[name] = (spec, kb.args, (-(-M // bm), -(-N // bn)))
    spec, args, grid = specs[ctx.choose(list(specs))]
    _launch(ctx, spec, args, grid)


Planner = Callable[[LowerContext, Epilogue], None]


def register(family: type[TileKernel]) -> dict[str, Planner]:
    """The family's planners by op name, registered as the lowerings of its ops alone and as the
    planners of epilogue fusions (heavy.epilogue_fusion) whose heavy op is one of them."""
    planners: dict[str, Planner] = {
        f"ember.{family.kind}_conv": lambda ctx, epi: plan_conv(family, ctx, epi),
        f"ember.{family.kind}_matmul": lambda ctx, epi: plan_matmul(family, ctx, epi)}
    heavy.PLANNERS.update(planners)

    @lowering(*planners)
    def lower_alone(ctx: LowerContext, op: Operation) -> None:
        planners[op.name](ctx, Epilogue.alone(ctx, op))

    return planners


__all__ = ["THREADS", "TileKernel", "conv_tiles_fit", "plan_conv", "plan_matmul", "register"]
