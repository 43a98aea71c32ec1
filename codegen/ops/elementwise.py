"""Elementwise ops and fused elementwise regions: one generated kernel each.

A grid-stride loop over the output's elements; each input is read at the
output's index when it has the output's shape, else at its broadcast offset
(output dims and the input's strides, zero along broadcast axes, arrive in the
`meta` array: sizes stay kernel parameters). The body is the region's ops (or
the one op) as straight-line C from cuda_render's table. Tensors of the narrow
types (sub-byte integers, fnuz fp8, e8m0, fp6, fp4: one byte per element) are
read and written here, and only ember.cast computes with them.
"""

from __future__ import annotations

from typing import Callable, Sequence


from ember.codegen.cuda_render import (C_EXPR, NARROW, compute_ctype, elementwise_ctype, entry, index_type, render_body,
                                      render_op, static_offset)
from ember.codegen.cwriter import CWriter
from ember.codegen.kernel import Kernel, Param
from ember.codegen.kernel_spec import division_magic
from ember.codegen.lower import LowerContext, lowering
from ember.codegen.symbolic import numel, smax, smin
from ember.errors import UnsupportedOpError
from ember.ir.core import Block, Operation, Value
from ember.ir.opdef import Elementwise

BLOCK = 256


def broadcast_strides(shape: Sequence[int], out: Sequence[int]) -> list[int]:
    """Strides of a contiguous tensor of `shape` read as `out` (right-aligned, 0 on broadcast axes)."""
    rank = len(out)
    padded = [1] * (rank - len(shape)) + list(shape)
    strides = [0] * rank
    step = 1
    for d in range(rank - 1, -1, -1):
        strides[d] = step if padded[d] != 1 or out[d] == 1 else 0
        if padded[d] == 1:
            strides[d] = 0
        step *= padded[d]
    return strides


# How an input is read at output element i: at i (its shape is the output's), at i % inner (it
# is the output's trailing dims: a bias, a per-column scale), or through broadcast_offset.
DIRECT, SUFFIX, GENERAL = "direct", "suffix", "general"


def read_kind(shape: Sequence[int], out: Sequence[int]) -> str:
    if tuple(shape) == tuple(out):
        return DIRECT
    dims = list(shape)
    while dims and dims[0] == 1:
        dims.pop(0)
    if dims and len(dims) <= len(out) and tuple(dims) == tuple(out[len(out) - len(dims):]):
        return SUFFIX
    return GENERAL


# The 16-byte form of elementwise kernels; on since tests/codegen/test_elementwise_packs.py's 14 GPU
# tests passed on an H100 (2026-12-08); EMBER_FLAGS --elementwise-packs=off turns it off for a build.
PACKED = True


def vector_width(sizes: Sequence[int]) -> int:
    """Elements per thread and step of the 16-byte form: 16 bytes of the widest operand (4 of
    f32, 8 of f16); 1 (no vector form) where PACKED is off or an operand has no plain storage size."""
    if not PACKED or not sizes or any(z not in (1, 2, 4, 8) for z in sizes):
        return 1
    return 16 // max(sizes)


def elementwise_kernel(name: str, inputs: Sequence[tuple[str, str]], outputs: Sequence[str],
                       body: Block | Operation, in_dtypes: Sequence, out_dtypes: Sequence, max_elements: int,
                       comment: str, vec: int = 1, fast_rank: int = 0,
                       static: Sequence[tuple[tuple[int, int], ...]] = ()) -> Kernel:
    """Render the kernel: `inputs` are (C storage type, read kind) pairs. With `vec` > 1 the kernel
    first tries its vector form: `vec` consecutive elements a step, direct and suffix inputs and
    the outputs moved as one aligned pack each (16 bytes of the widest), when n and every suffix's
    inner count are multiples of `vec` and every such pointer is aligned to its pack; otherwise
    (a window at an odd offset, a tail) the scalar loop runs. With `fast_rank` (32-bit indices,
    static dims: the output's rank) general reads divide by the dims' magic numbers, which follow
    the suffix counts in meta (ember_prelude.cuh fast_offset); with `static` ((dim, stride) pairs
    per input, () where not known at build time) a general read's offset is constant arithmetic."""
    index = index_type(max_elements)
    fast_rank = fast_rank if index == "int" else 0
    w = CWriter()
    w.line('#include "ember_prelude.cuh"')
    w.comment(comment)
    params = [Param(f"out{k}", "ptr", c, "out") for k, c in enumerate(outputs)]
    params += [Param(f"in{k}", "ptr", c, "in") for k, (c, _) in enumerate(inputs)]
    params += [Param("meta", "ptr", "long long", "meta"), Param("n", "i64", "long long", "scalar")]
    counter = iter(range(1_000_000))
    fresh = lambda: f"t{next(counter)}"  # noqa: E731

    def inner(k: int) -> str:
        return f"static_cast<{index}>(meta[1 + rank * {len(inputs) + 1} + {k}])"

    def compute(read: Callable[[int], str]) -> list[str]:
        names = []
        for k in range(len(inputs)):
            names.append(f"a{k}")
            w.line(f"const {compute_ctype(in_dtypes[k])} a{k} = ember::to_compute_exact({read(k)});")
        if isinstance(body, Block):
            return render_body(w, body, names, fresh)
        table = {v: n for v, n in zip([o for o in body.operands if o is not None], names)}
        render_op(w, body, table, fresh)
        return [table[body.results[0]]]

    def scalar_at(k: int, i: str) -> str:
        kind = inputs[k][1]
        if kind == DIRECT:
            return f"in{k}[{i}]"
        if kind == SUFFIX:
            return f"in{k}[{i} % {inner(k)}]"
        if static and static[k]:
            return f"in{k}[{static_offset(i, index, static[k])}]"
        if fast_rank:
            magic = 1 + fast_rank * (len(inputs) + 1) + len(inputs)
            return (f"in{k}[ember::fast_offset<{fast_rank}>({i}, dims, meta + {magic}, "
                    f"meta + {1 + fast_rank * (k + 1)})]")
        return f"in{k}[ember::broadcast_offset<{index}>({i}, rank, dims, meta + 1 + rank * {k + 1})]"

    with entry(w, BLOCK, params):
        dynamic = [k for k, (_, kind) in enumerate(inputs) if kind == GENERAL and not (static and static[k])]
        if any(kind == SUFFIX for _, kind in inputs) or (dynamic and not fast_rank):
            w.line("const int rank = (int)meta[0];")
        if dynamic:
            w.line("const long long* dims = meta + 1;")
        if vec > 1:
            packed = [k for k, (_, kind) in enumerate(inputs) if kind != GENERAL]
            checks = [f"({index})n % {vec} == 0"]
            checks += [f"ember::aligned_to<{vec}>(out{k})" for k in range(len(outputs))]
            checks += [f"ember::aligned_to<{vec}>(in{k})" for k in packed]
            checks += [f"{inner(k)} % {vec} == 0" for k in packed if inputs[k][1] == SUFFIX]
            w.line(f"const bool packed = {' && '.join(checks)};")
            with w.block("if (packed)"):
                with w.block(f"for ({index} base = (blockIdx.x * ({index})blockDim.x + threadIdx.x) * {vec}; "
                             f"base < ({index})n; base += ({index})gridDim.x * blockDim.x * {vec})"):
                    for k in packed:
                        at = "base" if inputs[k][1] == DIRECT else f"base % {inner(k)}"
                        w.line(f"const ember::Pack<{inputs[k][0]}, {vec}> p{k} = "
                               f"ember::load_pack<{vec}>(in{k} + {at});")
                    for k, c in enumerate(outputs):
                        w.line(f"ember::Pack<{c}, {vec}> q{k};")
                    w.line("#pragma unroll")
                    with w.block(f"for (int v = 0; v < {vec}; ++v)"):
                        w.line(f"const {index} i = base + v;")
                        w.line("(void)i;")
                        results = compute(lambda k: f"p{k}.v[v]" if k in packed else scalar_at(k, "i"))
                        for k, r in enumerate(results):
                            w.line(f"q{k}.v[v] = ember::store<{outputs[k]}>({r});")
                    for k in range(len(outputs)):
                        w.line(f"ember::store_pack(out{k} + base, q{k});")
                w.line("return;")
        with w.block(f"for ({index} i = blockIdx.x * ({index})blockDim.x + threadIdx.x; i < ({index})n; "
                     f"i += ({index})gridDim.x * blockDim.x)"):
            results = compute(lambda k: scalar_at(k, "i"))
            for k, r in enumerate(results):
                w.line(f"out{k}[i] = ember::store<{outputs[k]}>({r});")
    return Kernel(w.text(), name, tuple(params), (comment,))


def _launch(ctx: LowerContext, op: Operation, operands: Sequence[Value], body: Block | Operation) -> None:
    outs = list(op.results)
    out_shape = ctx.shape(outs[0])
    if any(ctx.shape(r) != out_shape for r in outs):
        raise UnsupportedOpError("elementwise results of different shapes")
    n = numel(out_shape)
    rank = len(out_shape)
    meta = [rank, *out_shape]
    inputs = []
    inners = []
    for v in operands:
        shape = ctx.shape(v)
        kind = read_kind(shape, out_shape)
        inputs.append((elementwise_ctype(ctx.dtype(v)), kind))
        meta += broadcast_strides(shape, out_shape) if kind != DIRECT else [0] * rank  # (read at the output's index)
        inners.append(numel(shape))
    meta += inners
    # General broadcasts over sizes known at build time: constant arithmetic (heavy.STATIC_OFFSETS),
    # or else, with 32-bit indices, each division as multiply-high and shift by magic numbers after
    # the suffix counts (heavy.FAST_DIVISION); the epilogues' switches.
    from ember.codegen.ops import heavy
    static = [heavy.static_pairs(ctx, out_shape, meta[1 + rank * (k + 1):1 + rank * (k + 2)]) if kind == GENERAL else ()
              for k, (_, kind) in enumerate(inputs)]
    fast_rank = 0
    if heavy.FAST_DIVISION and ctx.lowerer.fixed_shape and any(kind == GENERAL and not st for (_, kind), st in zip(inputs, static)) and \
            all(heavy.is_static(d) and d >= 1 for d in out_shape):
        fast_rank = rank
        meta += [x for d in out_shape for x in division_magic(d)]
    typed = [ctx.dtype(v) for v in operands] + [ctx.dtype(r) for r in outs]
    vec = 1 if any(d.name in NARROW for d in typed) else vector_width([d.itemsize for d in typed])
    kernel = elementwise_kernel(
        "ew", inputs, [elementwise_ctype(ctx.dtype(r)) for r in outs], body, [ctx.dtype(v) for v in operands],
        [ctx.dtype(r) for r in outs], _largest([n, *(numel(ctx.shape(v)) for v in operands), 1]),
        ctx.loc(), vec, fast_rank, static)
    blocks = smax(1, smin((n + BLOCK * vec - 1) // (BLOCK * vec), 65535 * 8))
    args = [ctx.arg(r) for r in outs] + [ctx.arg(v) for v in operands] + [ctx.meta(meta), ctx.i64(n)]
    if n == 0:
        return
    ctx.launch(kernel, (blocks,), (BLOCK,), args)


def _largest(counts: Sequence[int]) -> int:
    """The largest count, kept symbolic (one guard where the index type is chosen, not one per pair)."""
    out = counts[0]
    for c in counts[1:]:
        out = smax(out, c)
    return out


def _check_body(block: Block) -> None:
    for op in block.ops:
        if op.name == "ember.constant":
            continue
        if op.name not in C_EXPR and op.name != "ember.cast":
            raise UnsupportedOpError(f"{op.name} inside a fused region has no elementwise CUDA form")


@lowering(*[name for name in C_EXPR if name != "ember.identity"], "ember.cast")
def elementwise(ctx: LowerContext, op: Operation) -> None:
    if Elementwise not in op.traits and op.name not in ("ember.clip", "ember.where"):
        raise UnsupportedOpError(f"{op.name} is not elementwise")
    _launch(ctx, op, [v for v in op.operands if v is not None], op)


@lowering(fused_kind="elementwise")
def fused_elementwise(ctx: LowerContext, op: Operation) -> None:
    body = op.regions[0]
    _check_body(body)
    _launch(ctx, op, list(op.operands), body)  # type: ignore[arg-type]
