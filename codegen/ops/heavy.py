"""Heavy ops: matmul, gemm, einsum, conv, conv_transpose and attention, alone or as the
first op of an "epilogue" fusion (the heavy op, then elementwise ops on its result).

Each heavy op has a planner that turns it into one kernel (attention with a scores
result: two) from the device templates in include/: ember_gemm.cuh (the tiled
shared-memory GEMM core, for matmul, gemm and einsum as strided batched products),
ember_conv.cuh (convolution as an implicit GEMM on that core, direct kernels for thin
groups and for the transposed convolution) and ember_attention.cuh (an online-softmax
attention kernel). Only the wrapper is generated here: the kernel's signature, the call
of the template, and the epilogue functor that the template calls once per output
element with its index in the output, its column (the output channel / last axis) and
the f32 (f64, wrapping integer) accumulator. The functor rounds the heavy op's result
as the interpreter does, then runs the fused elementwise ops (cuda_render's table, one
line per op, as `render_body`) on it and on the fused op's other operands, each read at
its broadcast offset: the element itself for operands of the output's shape, the column
for a vector along the column axis (a bias), element 0 for scalars, and the general
broadcast offset (dims and strides in `meta`) otherwise.

Sizes travel as kernel parameters or in `meta`; tile shapes and layout flags are
template arguments of the generated wrapper. Forms with no kernel (complex or f64
attention, einsum with diagonals or one- and three-operand equations, convolutions with
more than 3 spatial dims) raise UnsupportedOpError and run on the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ember.codegen.cuda_render import C_EXPR, LOW, compute_ctype, ctype, index_type, literal, render_op
from ember.codegen.cwriter import CWriter
from ember.codegen.kernel import Arg, Kernel, Param
from ember.codegen.lower import LowerContext, lowering
from ember.codegen.symbolic import broadcast_shapes, contiguous_strides, numel
from ember.codegen.ops.elementwise import broadcast_strides
from ember.errors import UnsupportedOpError
from ember.ir import layout as L
from ember.ir.core import Operation, Value
from ember.ir.types import DType, TensorType

GEMM_THREADS = 256
DIRECT_THREADS = 256
ATTENTION_THREADS = 128
SHARED_LIMIT = 48 * 1024     # static + dynamic shared memory without an opt-in
MAX_GRID_Y = 65535
MAX_GRID_Z = 65535
SMS = 132                    # H100; only steers the choice of tile


# -- kernel signatures ------------------------------------------------------------------------
@dataclass
class Signature:
    """Kernel parameters, their C declarations and the launch's arguments, in order."""

    params: list[Param] = field(default_factory=list)
    decls: list[str] = field(default_factory=list)
    args: list[Arg] = field(default_factory=list)

    def ptr(self, name: str, c: str, role: str, arg: Arg) -> str:
        self.params.append(Param(name, "ptr", c, role))
        self.decls.append(f"{'' if role == 'out' else 'const '}{c}* __restrict__ {name}")
        self.args.append(arg)
        return name

    def scalar(self, name: str, kind: str, arg: Arg) -> str:
        c = {"i32": "int", "i64": "long long", "f32": "float"}[kind]
        self.params.append(Param(name, kind, c, "scalar"))
        self.decls.append(f"{c} {name}")
        self.args.append(arg)
        return name


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

    @classmethod
    def alone(cls, ctx: LowerContext, op: Operation) -> "Epilogue":
        return cls(op, [], op.results[0], op.results[0], {}, ctx.loc())

    @classmethod
    def fused(cls, ctx: LowerContext, op: Operation) -> "Epilogue":
        body = op.regions[0]
        if not body.ops or len(op.results) != 1 or len(body.outputs) != 1:
            raise UnsupportedOpError("an epilogue fusion must hold one heavy op first and yield one value")
        heavy, rest = body.ops[0], list(body.ops[1:])
        for e in rest:
            if not _expr_ok(e):
                raise UnsupportedOpError(f"{e.name} in an epilogue has no elementwise CUDA form")
            if e.name == "ember.constant" and e.attributes["value"].array.size != 1:
                raise UnsupportedOpError("a non-scalar constant inside an epilogue")
        outer = dict(zip(body.args, op.operands))
        return cls(heavy, rest, body.outputs[0], op.results[0], outer, ctx.loc())

    def value(self, v: Value | None) -> Value | None:
        """The outside value that an operand of the heavy op stands for."""
        return None if v is None else self.outer.get(v, v)

    def reads(self) -> list[Value]:
        """Body arguments the elementwise ops read, in first-read order."""
        out: list[Value] = []
        for e in self.ops:
            for v in e.operands:
                if v is not None and v in self.outer and v not in out:
                    out.append(v)
        return out

    def comment(self) -> str:
        names = [self.heavy.name] + [e.name for e in self.ops]
        return f"{' -> '.join(names)} @ {self.where}"


@dataclass
class Store:
    """How a planner's kernel finishes: the heavy op's value from the accumulator, then the epilogue.

    `heavy(acc, loaded)` gives the C expression of the heavy op's result in its compute type
    (rounded to its element type), where `loaded` maps the values in `reads` (operands of the
    heavy op read per output element, such as gemm's c or conv's bias) to their C names."""

    acc: str                                 # the accumulator's C type
    heavy: Callable[[str, dict[Value, str]], str]
    reads: list[Value] = field(default_factory=list)   # outside values the heavy expression reads
    col_axis: int | None = None              # the output axis that `col` indexes
    per_column: bool = False                 # `reads` hold one value per column (conv's bias), not broadcast


def round_result(expr: str, dt: DType) -> str:
    """The accumulator `expr` as the heavy op's result of type `dt`, in `dt`'s compute type."""
    c = compute_ctype(dt)
    if dt.name in LOW:
        return f"ember::round_to<{ctype(dt)}, float>({expr})"
    return f"static_cast<{c}>({expr})"


def accumulator(dt: DType) -> str:
    """The accumulator type for results of `dt`: floats compute in f32 (f64), integers wrap unsigned."""
    if dt.kind == "float":
        return compute_ctype(dt)
    if dt.is_int:
        return "unsigned long long" if dt.bits > 32 else "unsigned int"
    raise UnsupportedOpError(f"{dt} has no matrix kernel")


class EpilogueWriter:
    """Renders the epilogue functor `Epi` and collects its kernel parameters and meta."""

    def __init__(self, ctx: LowerContext, epi: Epilogue, store: Store, index: str) -> None:
        self.ctx, self.epi, self.store, self.index = ctx, epi, store, index
        self.out_shape = ctx.shape(epi.out)
        out_t = epi.out.type
        assert isinstance(out_t, TensorType)
        self.out_dtype = out_t.dtype
        # Outside values read per element, in parameter order: the heavy op's (`store.reads`), then the
        # epilogue's. Kept apart: a per-column read (conv's bias) is not a broadcast of the same value.
        self.heavy_reads = list(dict.fromkeys(store.reads))
        self.extras: list[Value] = list(self.heavy_reads)
        for v in dict.fromkeys(epi.outer[a] for a in epi.reads()):
            if store.per_column or v not in self.extras:
                self.extras.append(v)
        self.meta: list[int] = [len(self.out_shape), *self.out_shape]
        self.offsets: list[str] = []
        general = 0
        for k, v in enumerate(self.extras):
            if store.per_column and k < len(self.heavy_reads):
                self.offsets.append("col")
                continue
            shape = ctx.shape(v)
            strides = broadcast_strides(shape, self.out_shape) if len(shape) <= len(self.out_shape) else None
            if strides is None:
                raise UnsupportedOpError(f"{v.type} does not broadcast to the result {list(self.out_shape)}")
            ax = store.col_axis
            if tuple(shape) == tuple(self.out_shape):
                self.offsets.append("idx")
            elif not any(strides):
                self.offsets.append("0")
            elif ax is not None and all(s == 0 for a, s in enumerate(strides) if a != ax) and strides[ax] == 1:
                self.offsets.append("col")
            else:
                rank = len(self.out_shape)
                self.offsets.append(f"ember::broadcast_offset<{index}>(idx, {rank}, em + 1, em + {1 + rank * (1 + general)})")
                self.meta += strides
                general += 1

    def declare(self, sig: Signature) -> None:
        """Add the output and the per-element operands to the kernel's parameters."""
        sig.ptr("out", ctype(self.out_dtype), "out", self.ctx.arg(self.epi.out))
        for k, v in enumerate(self.extras):
            sig.ptr(f"e{k}", ctype(self.ctx.dtype(v)), "in", self.ctx.arg(v))

    def construct(self, meta_offset: int) -> str:
        fields = ["out"] + [f"e{k}" for k in range(len(self.extras))] + [f"meta + {meta_offset}"]
        return f"const Epi epi{{{', '.join(fields)}}};"

    def render(self, w: CWriter) -> None:
        heavy_result = self.epi.heavy.results[0]
        with w.block("struct Epi", "};"):
            w.line(f"{ctype(self.out_dtype)}* __restrict__ out;")
            for k, v in enumerate(self.extras):
                w.line(f"const {ctype(self.ctx.dtype(v))}* __restrict__ e{k};")
            w.line("const long long* __restrict__ em;  // result rank, dims, broadcast strides")
            with w.block(f"__device__ __forceinline__ void operator()({self.index} idx, int col, {self.store.acc} acc) "
                         "const"):
                w.line("(void)col;")
                for k, (v, at) in enumerate(zip(self.extras, self.offsets)):
                    w.line(f"const {compute_ctype(self.ctx.dtype(v))} x{k} = ember::to_compute(e{k}[{at}]);")
                n_heavy = len(self.heavy_reads)
                heavy_loaded = {v: f"x{k}" for k, v in enumerate(self.extras[:n_heavy])}
                epi_loaded = {v: f"x{k}" for k, v in enumerate(self.extras)
                              if k >= n_heavy or not self.store.per_column}
                heavy_dt = heavy_result.type.dtype  # type: ignore[union-attr]
                w.line(f"const {compute_ctype(heavy_dt)} h = {self.store.heavy('acc', heavy_loaded)};  "
                       f"// {self.epi.heavy.name}")
                names: dict[Value, str] = {heavy_result: "h"}
                for arg, outside in self.epi.outer.items():
                    if outside in epi_loaded:
                        names[arg] = epi_loaded[outside]
                counter = iter(range(1_000_000))
                fresh = lambda: f"t{next(counter)}"  # noqa: E731
                for e in self.epi.ops:
                    if e.name == "ember.constant":
                        value = e.attributes["value"]
                        name = fresh()
                        names[e.results[0]] = name
                        w.line(f"const {compute_ctype(value.dtype)} {name} = "
                               f"{literal(value.array.reshape(()).item(), value.dtype)};")
                        continue
                    render_op(w, e, names, fresh)
                w.line(f"out[idx] = ember::store<{ctype(self.out_dtype)}>({names[self.epi.result]});")


def max_elements(ctx: LowerContext, values: Sequence[Value | None]) -> int:
    return max([1] + [numel(ctx.shape(v)) for v in values if v is not None])


def build_kernel(ctx: LowerContext, epi: Epilogue, writer: EpilogueWriter, header: str, hint: str,
                 sig: Signature, threads: int, call: Sequence[str], meta_offset: int) -> Kernel:
    w = CWriter()
    w.line(f'#include "{header}"')
    w.comment(epi.comment())
    w.line()
    writer.render(w)
    w.line()
    with w.block(f'extern "C" __global__ void __launch_bounds__({threads}) ENTRY({", ".join(sig.decls)})'):
        w.line(writer.construct(meta_offset))
        for line in call:
            w.line(line)
    return Kernel(w.text(), hint, tuple(sig.params), (epi.comment(),))


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
TILES = {"tile128x128x8/8x8": (128, 128, 8, 8, 8), "tile64x64x16/4x4": (64, 64, 16, 4, 4)}


def tile_candidates(M: int, N: int, batches: int, acc: str) -> list[str]:
    """The GEMM-core tiles that can run this product, the heuristic's pick first: 128x128
    tiles of 8x8 per thread when a large product fills the GPU twice over, else 64x64 of 4x4.
    The big tile only has an f32 and u32 accumulator path."""
    if acc not in ("float", "unsigned int"):
        return ["tile64x64x16/4x4"]
    big = -(-M // 128) * -(-N // 128) * batches
    if M >= 128 and N >= 128 and big >= 2 * SMS:
        return ["tile128x128x8/8x8", "tile64x64x16/4x4"]
    return ["tile64x64x16/4x4", "tile128x128x8/8x8"]


def launch_product(ctx: LowerContext, epi: Epilogue, store: Store, prob: Product, a: Value, b: Value) -> None:
    if prob.M == 0 or prob.N == 0 or prob.batches == 0:
        return
    if prob.M >= 2**31 or prob.N >= 2**31 or prob.K >= 2**31:
        raise UnsupportedOpError("a matrix dim past 2^31")
    index = index_type(max_elements(ctx, [a, b, epi.out, *store.reads]))
    writer = EpilogueWriter(ctx, epi, store, index)
    sig = Signature()
    writer.declare(sig)
    sig.ptr("a", ctype(ctx.dtype(a)), "in", ctx.arg(a))
    sig.ptr("b", ctype(ctx.dtype(b)), "in", ctx.arg(b))
    meta = prob.meta()
    sig.ptr("meta", "long long", "meta", ctx.meta(meta + writer.meta))
    sig.scalar("M", "i32", ctx.i32(prob.M))
    sig.scalar("N", "i32", ctx.i32(prob.N))
    sig.scalar("K", "i32", ctx.i32(prob.K))
    sig.scalar("batches", "i64", ctx.i64(prob.batches))
    bm, bn, bk, tm, tn = TILES[ctx.choose(tile_candidates(prob.M, prob.N, prob.batches, store.acc))]
    a_kmajor = prob.sak == 1 or prob.M == 1
    b_kmajor = prob.sbk == 1 and prob.sbn != 1
    tile = f"ember::gemm::Tile<{bm}, {bn}, {bk}, {tm}, {tn}>"
    call = [(f"ember::gemm::strided<{tile}, {str(a_kmajor).lower()}, {str(b_kmajor).lower()}, {store.acc}, {index}>"
             f"(a, b, meta, M, N, K, batches, epi);")]
    kernel = build_kernel(ctx, epi, writer, "ember_gemm.cuh", "gemm", sig, GEMM_THREADS, call, len(meta))
    grid = (-(-prob.M // bm), -(-prob.N // bn), min(prob.batches, MAX_GRID_Z))
    if grid[1] > MAX_GRID_Y:
        raise UnsupportedOpError(f"N = {prob.N} needs more than {MAX_GRID_Y} column tiles")
    ctx.launch(kernel, grid, (GEMM_THREADS,), sig.args)


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
    launch_product(ctx, epi, Store(acc, lambda x, _: round_result(x, rdt), [], col), prob, a, b)


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
    alpha, beta = float(op.alpha), float(op.beta)
    reads = [c] if c is not None else []

    def heavy(x: str, loaded: dict[Value, str]) -> str:
        cv = loaded.get(c) if c is not None else None
        if rdt.kind == "float":
            expr = f"({literal(alpha, rdt)} * {x})"
            if cv is not None:
                expr = f"({expr} + {literal(beta, rdt)} * {cv})"
            return round_result(expr, rdt)
        t = compute_ctype(rdt)
        if alpha == 1.0 and (cv is None or beta == 1.0):
            return f"static_cast<{t}>({x}{f' + static_cast<{acc}>({cv})' if cv is not None else ''})"
        total = f"{alpha!r} * static_cast<double>(static_cast<{t}>({x}))"
        if cv is not None:
            total += f" + {beta!r} * static_cast<double>({cv})"
        return f"static_cast<{t}>(static_cast<long long>(trunc({total})))"

    launch_product(ctx, epi, Store(acc, heavy, reads, 1), prob, a, b)


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
    launch_product(ctx, epi, Store(acc, lambda x, _: round_result(x, rdt), [], col), prob, a, b)


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

    def heavy(v: str, loaded: dict[Value, str]) -> str:
        return round_result(f"({v} + {loaded[bias]})" if bias is not None else v, rdt)

    store = Store(acc, heavy, [bias] if bias is not None else [], lay.channel_axis, per_column=True)
    index = index_type(max_elements(ctx, [x, w, epi.out, bias]))
    writer = EpilogueWriter(ctx, epi, store, index)
    sig = Signature()
    writer.declare(sig)
    sig.ptr("x", ctype(ctx.dtype(x)), "in", ctx.arg(x))
    sig.ptr("w", ctype(ctx.dtype(w)), "in", ctx.arg(w))
    sig.ptr("meta", "long long", "meta", ctx.meta(geom + writer.meta))
    n_batch, c_in, groups, c_out = geom[0], geom[1], geom[21], geom[5]
    P = numel(geom[6:9])
    kg, cg = c_out // groups, c_in // groups
    cl = str(channels_last).lower()
    M, N = n_batch * P, kg
    if transposed:
        choice = ctx.choose(["direct"])
    else:
        tiles = [f"implicit-gemm/{t}" for t in tile_candidates(M, N, groups, acc)]
        if M >= 2**31 or cg * numel(geom[9:12]) >= 2**31:
            tiles = []  # rows past 32 bits: only the direct kernel
        choice = ctx.choose(["direct", *tiles] if kg < 16 or not tiles else [*tiles, "direct"])
    if choice == "direct":
        sig.scalar("total", "i64", ctx.i64(total))
        fn = "transposed" if transposed else "direct"
        call = [f"ember::conv::{fn}<{cl}, {acc}, {index}>(x, w, meta, static_cast<{index}>(total), epi);"]
        kernel = build_kernel(ctx, epi, writer, "ember_conv.cuh", "conv_t" if transposed else "conv_direct", sig,
                              DIRECT_THREADS, call, len(geom))
        blocks = max(1, min(-(-total // DIRECT_THREADS), 65535 * 16))
        ctx.launch(kernel, (blocks,), (DIRECT_THREADS,), sig.args)
        return
    bm, bn, bk, tm, tn = TILES[choice.split("/", 1)[1]]
    tile = f"ember::gemm::Tile<{bm}, {bn}, {bk}, {tm}, {tn}>"
    call = [f"ember::conv::implicit_gemm<{tile}, {cl}, {acc}, {index}>(x, w, meta, epi);"]
    kernel = build_kernel(ctx, epi, writer, "ember_conv.cuh", "conv", sig, GEMM_THREADS, call, len(geom))
    grid = (-(-M // bm), -(-N // bn), min(groups, MAX_GRID_Z))
    if grid[1] > MAX_GRID_Y:
        raise UnsupportedOpError(f"{N} output channels per group need more than {MAX_GRID_Y} tiles")
    ctx.launch(kernel, grid, (GEMM_THREADS,), sig.args)


# -- attention --------------------------------------------------------------------------------
STAGES = {"raw": 0, "softcap": 1, "biased": 2, "probs": 3}


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
    bq, bkv, dvpt, shared = attention_tiles(D, Dv)
    index = "long long"
    store = Store("float", lambda x, _: round_result(x, op.results[0].type.dtype), [], 3)
    writer = EpilogueWriter(ctx, epi, store, index)

    def operands(sig: Signature) -> tuple[str, str]:
        sig.ptr("q", ctype(dt), "in", ctx.arg(q))
        sig.ptr("k", ctype(dt), "in", ctx.arg(k))
        sig.ptr("v", ctype(dt), "in", ctx.arg(v))
        m_name = sig.ptr("mask", mask_c, "in", ctx.arg(mask)) if mask is not None else f"({mask_c}*)nullptr"
        l_name = sig.ptr("kv_lens", lens_c, "in", ctx.arg(lens)) if lens is not None else f"({lens_c}*)nullptr"
        sig.ptr("meta", "long long", "meta", ctx.meta(meta + writer.meta))
        sig.scalar("scale", "f32", ctx.f32(scale))
        sig.scalar("softcap", "f32", ctx.f32(softcap))
        return m_name, l_name

    sig = Signature()
    writer.declare(sig)
    m_name, l_name = operands(sig)
    call = [(f"ember::attention::flash<{bq}, {bkv}, {ATTENTION_THREADS}, {dvpt}, {kind}>"
             f"(q, k, v, {m_name}, {l_name}, meta, scale, softcap, epi);")]
    kernel = build_kernel(ctx, epi, writer, "ember_attention.cuh", "attention", sig, ATTENTION_THREADS, call, len(meta))
    ctx.launch(kernel, (-(-Sq // bq), Hq, B), (ATTENTION_THREADS,), sig.args, shared=shared)
    if op.scores == "none" or Skv == 0:
        return
    scores = op.results[1]
    sig = Signature()
    out_c = ctype(ctx.dtype(scores))
    sig.ptr("out", out_c, "out", ctx.arg(scores))
    m_name, l_name = operands(sig)
    w = CWriter()
    w.line('#include "ember_attention.cuh"')
    w.comment(f"ember.attention scores ({op.scores}) @ {epi.where}")
    with w.block(f'extern "C" __global__ void __launch_bounds__({ATTENTION_THREADS}) ENTRY({", ".join(sig.decls)})'):
        w.line(f"ember::attention::scores<{ATTENTION_THREADS}, {STAGES[op.scores]}, {kind}>"
               f"(out, q, k, {m_name}, {l_name}, meta, scale, softcap);")
    kernel = Kernel(w.text(), "attention_scores", tuple(sig.params), (f"ember.attention scores @ {epi.where}",))
    ctx.launch(kernel, (Sq, Hq, B), (ATTENTION_THREADS,), sig.args, shared=4 * (D + ATTENTION_THREADS))


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


__all__ = ["PLANNERS", "Epilogue", "Product", "Store", "accumulator", "launch_product", "round_result"]
