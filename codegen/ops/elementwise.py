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

from typing import Sequence


from ember.codegen.cuda_render import C_EXPR, compute_ctype, elementwise_ctype, entry, index_type, render_body, render_op
from ember.codegen.cwriter import CWriter
from ember.codegen.kernel import Kernel, Param
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


def elementwise_kernel(name: str, inputs: Sequence[tuple[str, bool]], outputs: Sequence[str],
                       body: Block | Operation, in_dtypes: Sequence, out_dtypes: Sequence, max_elements: int,
                       comment: str) -> Kernel:
    """Render the kernel: `inputs` are (C storage type, broadcast?) pairs."""
    index = index_type(max_elements)
    w = CWriter()
    w.line('#include "ember_prelude.cuh"')
    w.comment(comment)
    params = [Param(f"out{k}", "ptr", c, "out") for k, c in enumerate(outputs)]
    params += [Param(f"in{k}", "ptr", c, "in") for k, (c, _) in enumerate(inputs)]
    params += [Param("meta", "ptr", "long long", "meta"), Param("n", "i64", "long long", "scalar")]
    with entry(w, BLOCK, params):
        if any(b for _, b in inputs):
            w.line("const int rank = (int)meta[0];")
            w.line("const long long* dims = meta + 1;")
        with w.block(f"for ({index} i = blockIdx.x * ({index})blockDim.x + threadIdx.x; i < ({index})n; "
                     f"i += ({index})gridDim.x * blockDim.x)"):
            names = []
            for k, (c, bcast) in enumerate(inputs):
                at = f"ember::broadcast_offset<{index}>(i, rank, dims, meta + 1 + rank * {k + 1})" if bcast else "i"
                names.append(f"a{k}")
                w.line(f"const {compute_ctype(in_dtypes[k])} a{k} = ember::to_compute_exact(in{k}[{at}]);")
            counter = iter(range(1_000_000))
            fresh = lambda: f"t{next(counter)}"  # noqa: E731
            if isinstance(body, Block):
                results = render_body(w, body, names, fresh)
            else:
                table = {v: n for v, n in zip([o for o in body.operands if o is not None], names)}
                render_op(w, body, table, fresh)
                results = [table[body.results[0]]]
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
    for v in operands:
        shape = ctx.shape(v)
        bcast = tuple(shape) != tuple(out_shape)
        inputs.append((elementwise_ctype(ctx.dtype(v)), bcast))
        meta += broadcast_strides(shape, out_shape) if bcast else [0] * rank  # (read at the output's index)
    kernel = elementwise_kernel(
        "ew", inputs, [elementwise_ctype(ctx.dtype(r)) for r in outs], body, [ctx.dtype(v) for v in operands],
        [ctx.dtype(r) for r in outs], _largest([n, *(numel(ctx.shape(v)) for v in operands), 1]),
        ctx.loc())
    blocks = smax(1, smin((n + BLOCK - 1) // BLOCK, 65535 * 8))
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
