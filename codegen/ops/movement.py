"""Data movement: one kernel per op (a launch per piece for concat and split; with
CONCAT_ONE_LAUNCH, a concat of up to 8 pieces is one launch), from the templates in
include/ember_movement.cuh.

Most movement is one strided copy: transpose, slice (any steps), concat, split, expand, tile,
depth_to_space and space_to_depth all read their input at `base + sum(k_d * stride_d)` over
the output's (merged) dims, so the planner only computes dims and strides, and
`strided_copy` moves the raw bits. A transpose that swaps the last two axes of a batch of
matrices (after merging axes, NCHW <-> NHWC is one) uses a shared-memory tiled kernel. Pad,
gathers, scatters, resize, trilu, range, one_hot and the shape queries have kernels of their
own. Shapes and strides travel in the launch's `meta` array and sizes as kernel parameters;
only ranks, element types and attributes shape the kernel source.

Every kernel of this module and of `reduce` is assembled with codegen/kernel_builder.py's
`KernelBuilder`: parameters and their launch arguments, the meta array, helper structs (a
fused region's prologue), and the grid-stride wrapper that calls a device template.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Sequence

import numpy as np

from ember.codegen.cuda_render import compute_ctype, ctype, index_type
from ember.codegen.kernel_builder import BLOCK, KernelBuilder, f64_bits
from ember.codegen.lower import LowerContext, lowering
from ember.codegen.ops.elementwise import broadcast_strides
from ember.codegen.symbolic import contiguous_strides, numel, smax, smin, value_of
from ember.errors import UnsupportedOpError
from ember.ir import layout as L
from ember.ir.core import Operation, Value
from ember.ir.ops.shape import clamp_index, slice_length
from ember.ir.types import DType

NONZERO_BLOCK = 1024  # threads of the one block that compacts NonZero's coordinates
BITS = {1: "unsigned char", 2: "unsigned short", 4: "unsigned int", 8: "unsigned long long"}
MAX_SCAN = 1 << 16  # scatter: updates that may collide are found by scanning this many at most


# -- sizes and strides ------------------------------------------------------------------------------
def simplify(dims: Sequence[int], *stride_lists: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 dims and merge neighbours that every stride list walks as one dim."""
    out_dims: list[int] = []
    out_strides: list[list[int]] = [[] for _ in stride_lists]
    for d, size in enumerate(dims):
        if size == 1:
            continue
        if out_dims and all(s[-1] == lst[d] * size for s, lst in zip(out_strides, stride_lists)):
            out_dims[-1] *= size
            for s, lst in zip(out_strides, stride_lists):
                s[-1] = lst[d]
            continue
        out_dims.append(size)
        for s, lst in zip(out_strides, stride_lists):
            s.append(lst[d])
    return out_dims, out_strides


def index_for(*counts: int) -> str:
    """The C index type for tensors of these element counts (headroom for the grid-stride step)."""
    largest = counts[0] if counts else 0
    for c in counts[1:]:
        largest = smax(largest, c)  # one guard on the largest, not one per comparison of two counts
    return index_type(largest + (1 << 28))


def bits_ctype(dt: DType) -> str:
    """The unsigned integer type of an element's width: what copies move."""
    size = dt.np_dtype.itemsize
    if dt.kind == "string" or size not in BITS:
        raise UnsupportedOpError(f"element type {dt} has no CUDA kernel support yet")
    return BITS[size]


def dims_of(ctx: LowerContext, values: Sequence[Any]) -> list[int]:
    """Dims attributes (ints or symbolic) with the program's symbols bound."""
    return [ctx.evaluate(d) for d in values]


def value_bits(x: np.ndarray) -> int:
    """One element's bits as a (signed) int64."""
    raw = np.ascontiguousarray(x).reshape(-1)[:1].view(np.dtype(f"u{x.dtype.itemsize}"))
    return struct.unpack("<q", struct.pack("<Q", int(raw[0])))[0]


# -- strided copies -------------------------------------------------------------------------------------
def launch_copy(ctx: LowerContext, hint: str, out: Value, src: Value, dims: Sequence[int],
                in_strides: Sequence[int], in_base: int = 0, out_strides: Sequence[int] | None = None,
                out_base: int = 0, largest: int = 0) -> None:
    """out[out_base + k.out_strides] = src[in_base + k.in_strides] over `dims` (out contiguous
    over them when out_strides is None)."""
    contiguous = out_strides is None
    if contiguous:
        dims, (in_strides,) = simplify(dims, in_strides)
        out_strides = [0] * len(dims)
    else:
        dims, (in_strides, out_strides) = simplify(dims, in_strides, out_strides)  # type: ignore[arg-type]
    n = numel(dims)
    t = bits_ctype(ctx.dtype(src))
    kb = KernelBuilder(ctx, hint, index_for(n, largest, numel(ctx.shape(src)), numel(ctx.shape(out))))
    o, i = kb.out(out, t), kb.inp(src, t)
    kb.put([*dims, *in_strides, *out_strides, in_base, out_base])
    kb.launch(f"ember::strided_copy<{t}, {kb.index}, {len(dims)}, {'true' if contiguous else 'false'}>"
              f"({o}, {i}, meta, {kb.n})", n, BLOCK)


@lowering("ember.transpose")
def transpose(ctx: LowerContext, op: Operation) -> None:
    x, y = op.operands[0], op.results[0]
    shape = ctx.shape(x)
    perm = op.attributes["perm"]
    perm = tuple(reversed(range(len(shape)))) if perm is None else tuple(perm)
    strides = contiguous_strides(shape)
    dims, (s,) = simplify([shape[p] for p in perm], [strides[p] for p in perm])
    # After merging, [batch][cols][rows] reading a [batch][rows][cols] input: tiles.
    if len(dims) in (2, 3) and s[-2] == 1 and s[-1] == dims[-2] and (len(dims) == 2 or s[0] == dims[1] * dims[2]):
        rows, cols = dims[-1], dims[-2]
        batch = dims[0] if len(dims) == 3 else 1
        t = bits_ctype(ctx.dtype(x))
        kb = KernelBuilder(ctx, "transpose", index_for(numel(shape)))
        o, i = kb.out(y, t), kb.inp(x, t)
        tiles = batch * (-(-rows // 32)) * (-(-cols // 32))
        kb.launch(f"ember::transpose_tiled<{t}, {kb.index}>({o}, {i}, {kb.size(rows)}, {kb.size(cols)}, {kb.n})",
                  tiles, 1, (32, 8))
        return
    launch_copy(ctx, "transpose", y, x, [shape[p] for p in perm], [strides[p] for p in perm])


# A concat of up to CONCAT_PIECES non-empty inputs in one launch (`concat_pieces`) rather than a copy
# per input. Off until its GPU test (tests/codegen/test_movement.py, -m gpu) has passed on a device.
CONCAT_ONE_LAUNCH = False
CONCAT_PIECES = 8


@lowering("ember.concat")
def concat(ctx: LowerContext, op: Operation) -> None:
    y = op.results[0]
    out_shape = ctx.shape(y)
    axis = op.attributes["axis"] % len(out_shape)
    outer, inner = numel(out_shape[:axis]), numel(out_shape[axis + 1:])
    total = out_shape[axis]
    pieces = list(op.operands)  # an empty one has no columns: the scan passes over it
    if CONCAT_ONE_LAUNCH and 1 < len(pieces) <= CONCAT_PIECES and ctx.dtype(y).kind != "string" \
            and ctx.dtype(y).np_dtype.itemsize in BITS:
        t = bits_ctype(ctx.dtype(y))
        n = outer * total * inner
        kb = KernelBuilder(ctx, "concat", index_for(n))
        o = kb.out(y, t)
        names = [kb.inp(v, t) for v in pieces]
        starts, at = [0], 0
        for v in pieces:
            at = at + ctx.shape(v)[axis] * inner
            starts.append(at)
        kb.put([total * inner, *starts])
        kb.launch(f"ember::concat_pieces<{t}, {kb.index}, {len(pieces)}>({o}, {{{', '.join(names)}}}, meta, {kb.n})",
                  n, BLOCK)
        return
    offset = 0
    for v in op.operands:
        length = ctx.shape(v)[axis]
        if length:
            launch_copy(ctx, "concat", y, v, [outer, length * inner], [length * inner, 1], 0,
                        [total * inner, 1], offset * inner)
        offset += length


@lowering("ember.split")
def split(ctx: LowerContext, op: Operation) -> None:
    x = op.operands[0]
    shape = ctx.shape(x)
    axis = op.attributes["axis"] % len(shape)
    outer, inner, total = numel(shape[:axis]), numel(shape[axis + 1:]), shape[axis]
    offset = 0
    for r in op.results:
        length = ctx.shape(r)[axis]
        launch_copy(ctx, "split", r, x, [outer, length * inner], [total * inner, 1], offset * inner)
        offset += length


def _clamp(v: int, d: int, step: int, is_start: bool) -> int:
    """clamp_index over a symbolic dim, with min and max in the expression (no guard on the dim)."""
    if v < 0:
        v = v + d
    if step > 0:
        return smin(smax(v, 0), d)
    return smin(smax(v, 0 if is_start else -1), d - 1)


@lowering("ember.slice")
def slice_(ctx: LowerContext, op: Operation) -> None:
    x, y = op.operands[0], op.results[0]
    shape = ctx.shape(x)
    starts, ends = dims_of(ctx, op.attributes["starts"]), dims_of(ctx, op.attributes["ends"])
    axes = op.attributes["axes"]
    axes = [a % len(shape) for a in axes] if axes is not None else list(range(len(starts)))
    steps = op.attributes["steps"] or [1] * len(starts)
    strides = contiguous_strides(shape)
    dims, in_strides, base = list(shape), list(strides), 0
    for ax, start, end, step in zip(axes, starts, ends, steps):
        d = shape[ax]
        if ctx.lowerer.is_runtime(d):  # a size known only at run time: clamp it in the expression, not by a guard
            s, e = _clamp(start, d, step, True), _clamp(end, d, step, False)
            dims[ax] = smax(0, -((s - e) // step))
        else:
            s, e = clamp_index(start, d, step, True), clamp_index(end, d, step, False)
            dims[ax] = slice_length(s, e, step)
        in_strides[ax] = strides[ax] * step
        if dims[ax]:
            base += s * strides[ax]
    if tuple(dims) != ctx.shape(y):
        raise UnsupportedOpError(f"slice bounds give {dims}, the result type says {list(ctx.shape(y))}")
    launch_copy(ctx, "slice", y, x, dims, in_strides, base)


@lowering("ember.head")
def head(ctx: LowerContext, op: Operation) -> None:
    """The first `count` entries along the axis: a copy; the count was read back by a size step."""
    x, y = op.operands[0], op.results[0]
    launch_copy(ctx, "head", y, x, list(ctx.shape(y)), contiguous_strides(ctx.shape(x)))


@lowering("ember.expand")
def expand(ctx: LowerContext, op: Operation) -> None:
    x, y = op.operands[0], op.results[0]
    out_shape = ctx.shape(y)
    launch_copy(ctx, "expand", y, x, list(out_shape), broadcast_strides(ctx.shape(x), out_shape))


@lowering("ember.tile")
def tile(ctx: LowerContext, op: Operation) -> None:
    x, y = op.operands[0], op.results[0]
    shape = ctx.shape(x)
    repeats = dims_of(ctx, op.attributes["repeats"])
    strides = contiguous_strides(shape)
    dims, in_strides = [], []
    for d, r, s in zip(shape, repeats, strides):  # out axis d is (repeat, element): np.tile's order
        dims += [r, d]
        in_strides += [0, s]
    launch_copy(ctx, "tile", y, x, dims, in_strides)


def _block_move(ctx: LowerContext, op: Operation) -> tuple[list[int], list[int]]:
    """Output dims (in storage order, split into blocks) and the input strides of each."""
    x = op.operands[0]
    shape = ctx.shape(x)
    lay = L.resolve(op.attributes["layout"], 4)
    strides = contiguous_strides(shape)
    cf = lay.to_channels_first
    sn, sc, sh, sw = (strides[a] for a in cf)
    n, c, h, w = (shape[a] for a in cf)
    b = op.attributes["blocksize"]
    dcr = op.attributes["mode"] == "DCR"
    last = lay.channels_last
    if op.name == "ember.depth_to_space":
        cc = c // (b * b)
        axes = {"n": (n, sn), "c": (cc, sc * (1 if dcr else b * b)), "h": (h, sh), "i": (b, sc * (b * cc if dcr else b)),
                "w": (w, sw), "j": (b, sc * (cc if dcr else 1))}
        order = "nhiwjc" if last else "nchiwj"
    else:
        axes = {"n": (n, sn), "c": (c, sc), "i": (b, sh), "j": (b, sw), "h": (h // b, sh * b), "w": (w // b, sw * b)}
        channel = "ijc" if dcr else "cij"
        order = "nhw" + channel if last else "n" + channel + "hw"
    return [axes[a][0] for a in order], [axes[a][1] for a in order]


@lowering("ember.depth_to_space", "ember.space_to_depth")
def depth_space(ctx: LowerContext, op: Operation) -> None:
    dims, strides = _block_move(ctx, op)
    launch_copy(ctx, op.name.split(".")[1], op.results[0], op.operands[0], dims, strides)


# -- pad --------------------------------------------------------------------------------------------------
PAD_MODES = {"constant": 0, "reflect": 1, "edge": 2, "wrap": 3}


@lowering("ember.pad")
def pad(ctx: LowerContext, op: Operation) -> None:
    x, value, y = op.x, op.value, op.results[0]
    shape = list(ctx.shape(x))
    rank = len(shape)
    axes = op.attributes["axes"]
    axes = [a % rank for a in axes] if axes is not None else list(range(rank))
    pads = dims_of(ctx, op.attributes["pads"])
    strides = contiguous_strides(shape)
    dims, begins, base = list(shape), [0] * rank, 0
    for i, ax in enumerate(axes):
        begin, end = pads[i], pads[len(axes) + i]
        crop_begin, crop_end = max(-begin, 0), max(-end, 0)
        dims[ax] = max(shape[ax] - crop_begin - crop_end, 0)
        base += crop_begin * strides[ax] if dims[ax] else 0
        begins[ax] = max(begin, 0)
    out_shape = ctx.shape(y)
    mode = PAD_MODES[op.attributes["mode"]]
    if mode and any(d == 0 for d in dims) and numel(out_shape):
        raise UnsupportedOpError(f"mode {op.attributes['mode']} cannot pad an empty axis")
    t = bits_ctype(ctx.dtype(x))
    kb = KernelBuilder(ctx, "pad", index_for(numel(shape), numel(out_shape)))
    o, i = kb.out(y, t), kb.inp(x, t)
    fill = kb.inp(value, t) if value is not None else "nullptr"
    kb.put([*out_shape, *dims, *strides, *begins, base])
    kb.launch(f"ember::pad<{t}, {kb.index}, {rank}, {mode}>({o}, {i}, {fill}, meta, {kb.n})", numel(out_shape), BLOCK)


# -- gathers and scatters ---------------------------------------------------------------------------------
def _index_ctype(ctx: LowerContext, v: Value) -> str:
    dt = ctx.dtype(v)
    if not dt.is_int:
        raise UnsupportedOpError(f"indices of {dt} have no kernel")
    return ctype(dt)


@lowering("ember.gather")
def gather(ctx: LowerContext, op: Operation) -> None:
    data, indices, y = op.operands[0], op.operands[1], op.results[0]
    ds = ctx.shape(data)
    axis = op.attributes["axis"] % len(ds)
    outer, inner, count = numel(ds[:axis]), numel(ds[axis + 1:]), numel(ctx.shape(indices))
    n = outer * count * inner
    t, it = bits_ctype(ctx.dtype(data)), _index_ctype(ctx, indices)
    kb = KernelBuilder(ctx, "gather", index_for(n, numel(ds)))
    o, d, i = kb.out(y, t), kb.inp(data, t), kb.inp(indices, it)
    kb.launch(f"ember::gather<{t}, {it}, {kb.index}>({o}, {d}, {i}, {kb.n}, {kb.size(count)}, {kb.size(inner)}, "
              f"{kb.size(ds[axis])})", n, BLOCK)


@lowering("ember.gather_elements")
def gather_elements(ctx: LowerContext, op: Operation) -> None:
    data, indices, y = op.operands[0], op.operands[1], op.results[0]
    ds, ix = ctx.shape(data), ctx.shape(indices)
    axis = op.attributes["axis"] % len(ds)
    t, it = bits_ctype(ctx.dtype(data)), _index_ctype(ctx, indices)
    kb = KernelBuilder(ctx, "gather_elements", index_for(numel(ix), numel(ds)))
    o, d, i = kb.out(y, t), kb.inp(data, t), kb.inp(indices, it)
    kb.put([*ix, *contiguous_strides(ds), ds[axis]])
    kb.launch(f"ember::gather_elements<{t}, {it}, {kb.index}, {len(ix)}, {axis}>({o}, {d}, {i}, meta, {kb.n})",
              numel(ix), BLOCK)


@lowering("ember.gather_nd")
def gather_nd(ctx: LowerContext, op: Operation) -> None:
    data, indices, y = op.operands[0], op.operands[1], op.results[0]
    ds, ix = ctx.shape(data), ctx.shape(indices)
    b, m = op.attributes["batch_dims"], ix[-1]
    count, inner = numel(ix[b:-1]), numel(ds[b + m:])
    n = numel(ix[:-1]) * inner
    t, it = bits_ctype(ctx.dtype(data)), _index_ctype(ctx, indices)
    kb = KernelBuilder(ctx, "gather_nd", index_for(n, numel(ds), numel(ix)))
    o, d, i = kb.out(y, t), kb.inp(data, t), kb.inp(indices, it)
    kb.put([*ds[b:b + m], *(numel(ds[b + j + 1:]) for j in range(m))])
    kb.launch(f"ember::gather_nd<{t}, {it}, {kb.index}, {m}>({o}, {d}, {i}, meta, {kb.n}, {kb.size(smax(count, 1))}, "
              f"{kb.size(inner)}, {kb.size(numel(ds[b:]))})", n, BLOCK)


SCATTER_REDUCTIONS = {"none": 0, "add": 1, "mul": 2, "max": 3, "min": 4}


def _scatter_types(ctx: LowerContext, op: Operation) -> tuple[int, str, str]:
    """The reduction's code, and the element's storage and compute types for the kernel."""
    red = SCATTER_REDUCTIONS[op.attributes["reduction"]]
    dt = ctx.dtype(op.operands[0])
    if red == 0:
        t = bits_ctype(dt)
        return red, t, t
    if dt.kind not in ("float", "int", "uint"):
        raise UnsupportedOpError(f"reduction {op.attributes['reduction']} on {dt} has no kernel")
    return red, ctype(dt), compute_ctype(dt)


@lowering("ember.scatter_elements")
def scatter_elements(ctx: LowerContext, op: Operation) -> None:
    data, indices, updates = op.operands
    y = op.results[0]
    ds, ix = ctx.shape(data), ctx.shape(indices)
    axis = op.attributes["axis"] % len(ds)
    if ix[axis] > MAX_SCAN:
        raise UnsupportedOpError(f"{ix[axis]} updates along the axis: more than the kernel scans ({MAX_SCAN})")
    red, t, c = _scatter_types(ctx, op)
    it = _index_ctype(ctx, indices)
    launch_copy(ctx, "scatter_copy", y, data, [numel(ds)], [1])
    kb = KernelBuilder(ctx, "scatter_elements", index_for(numel(ds), numel(ix)))
    o, u, i = kb.out(y, t), kb.inp(updates, t), kb.inp(indices, it)
    kb.put([*ix, *contiguous_strides(ds), ds[axis], contiguous_strides(ix)[axis]])
    kb.launch(f"ember::scatter_elements<{t}, {c}, {it}, {kb.index}, {len(ix)}, {axis}, {red}>({o}, {u}, {i}, meta, "
              f"{kb.n})", numel(ix), BLOCK)


@lowering("ember.scatter_nd")
def scatter_nd(ctx: LowerContext, op: Operation) -> None:
    data, indices, updates = op.operands
    y = op.results[0]
    ds, ix = ctx.shape(data), ctx.shape(indices)
    k = ix[-1]
    rows, inner = numel(ix[:-1]), numel(ds[k:])
    if rows > MAX_SCAN:
        raise UnsupportedOpError(f"{rows} index tuples: more than the kernel scans ({MAX_SCAN})")
    red, t, c = _scatter_types(ctx, op)
    it = _index_ctype(ctx, indices)
    launch_copy(ctx, "scatter_copy", y, data, [numel(ds)], [1])
    kb = KernelBuilder(ctx, "scatter_nd", index_for(numel(ds), rows * inner, numel(ix)))
    o, u, i = kb.out(y, t), kb.inp(updates, t), kb.inp(indices, it)
    kb.put(ds[:k])
    kb.launch(f"ember::scatter_nd<{t}, {c}, {it}, {kb.index}, {k}, {red}>({o}, {u}, {i}, meta, {kb.n}, "
              f"{kb.size(rows)}, {kb.size(inner)})", rows * inner, BLOCK)


# -- generators -------------------------------------------------------------------------------------------
@lowering("ember.trilu")
def trilu(ctx: LowerContext, op: Operation) -> None:
    x, y = op.operands[0], op.results[0]
    shape = ctx.shape(x)
    rows, cols = shape[-2], shape[-1]
    k = min(max(op.attributes["k"], -rows - 1), cols + 1)
    t = bits_ctype(ctx.dtype(x))
    kb = KernelBuilder(ctx, "trilu", index_for(numel(shape)))
    o, i = kb.out(y, t), kb.inp(x, t)
    upper = "true" if op.attributes["upper"] else "false"
    kb.launch(f"ember::trilu<{t}, {kb.index}, {upper}>({o}, {i}, {kb.n}, {kb.size(rows)}, {kb.size(cols)}, "
              f"{kb.size(k)})", numel(shape), BLOCK)


@lowering("ember.range")
def range_(ctx: LowerContext, op: Operation) -> None:
    start, _, delta = op.operands
    y = op.results[0]
    dt = ctx.dtype(y)
    t = ctype(dt)
    n = numel(ctx.shape(y))
    kb = KernelBuilder(ctx, "range", index_for(n))
    o, s, d = kb.out(y, t), kb.inp(start, t), kb.inp(delta, t)
    integer = "true" if dt.is_int else "false"
    kb.launch(f"ember::range<{t}, {kb.index}, {integer}>({o}, {s}, {d}, {kb.n})", n, BLOCK)


@lowering("ember.constant_of_shape")
def constant_of_shape(ctx: LowerContext, op: Operation) -> None:
    """A fill with the value's bits; its sizes are bound by a size step (the shape read back)."""
    y = op.results[0]
    dt = ctx.dtype(y)
    t = bits_ctype(dt)
    bits = int(np.asarray(op.attributes["value"].array).reshape(()).view(f"u{dt.np_dtype.itemsize}"))
    n = numel(ctx.shape(y))
    kb = KernelBuilder(ctx, "fill", index_for(n))
    o = kb.out(y, t)
    kb.launch(f"ember::fill<{t}, {kb.index}>({o}, ({t}){bits:#x}ull, {kb.n})", n, BLOCK)


@lowering("ember.nonzero")
def nonzero(ctx: LowerContext, op: Operation) -> None:
    """One block compacts the coordinates in order (ember_movement.cuh `nonzero`); its count was
    bound by a size step from the same input."""
    x, y = op.operands[0], op.results[0]
    shape = ctx.shape(x)
    rank, total = len(shape), numel(shape)
    count = ctx.shape(y)[1]
    if rank == 0:
        return  # i64[0, n]: nothing to write
    kb = KernelBuilder(ctx, "nonzero", index_for(total, rank * total))
    o, i = kb.out(y, "long long"), kb.inp(x, ctype(ctx.dtype(x)))
    off = kb.put(shape)
    kb.launch(f"ember::nonzero<{ctype(ctx.dtype(x))}, {kb.index}, {rank}>({o}, {i}, meta + {off}, {kb.size(total)}, "
              f"{kb.size(count)})", 1, 1, (NONZERO_BLOCK,))


@lowering("ember.nonzero_padded")
def nonzero_padded(ctx: LowerContext, op: Operation) -> None:
    """One block compacts the coordinates at their bound, pads with -1 and writes the count: the
    8 bytes a size step reads back for the ember.head after it (passes/bound_data_sizes.py)."""
    x = op.operands[0]
    columns, count = op.results
    shape = ctx.shape(x)
    rank, total = len(shape), numel(shape)
    kb = KernelBuilder(ctx, "nonzero_padded", index_for(total, rank * total))
    o, n, i = kb.out(columns, "long long"), kb.out(count, "long long"), kb.inp(x, ctype(ctx.dtype(x)))
    off = kb.put(shape)
    kb.launch(f"ember::nonzero_padded<{ctype(ctx.dtype(x))}, {kb.index}, {rank}>({o}, {n}, {i}, meta + {off}, "
              f"{kb.size(total)})", 1, 1, (NONZERO_BLOCK,))


@lowering("ember.one_hot")
def one_hot(ctx: LowerContext, op: Operation) -> None:
    indices, values = op.operands
    y = op.results[0]
    ix = ctx.shape(indices)
    axis = op.attributes["axis"] % (len(ix) + 1)
    depth = op.attributes["depth"]
    outer, inner = numel(ix[:axis]), numel(ix[axis:])
    idt = ctx.dtype(indices)
    it, t = ctype(idt), bits_ctype(ctx.dtype(values))
    n = outer * depth * inner
    kb = KernelBuilder(ctx, "one_hot", index_for(n))
    o, i, v = kb.out(y, t), kb.inp(indices, it), kb.inp(values, t)
    float_index = "true" if idt.kind == "float" else "false"
    kb.launch(f"ember::one_hot<{it}, {t}, {kb.index}, {float_index}>({o}, {i}, {v}, {kb.n}, {kb.size(depth)}, "
              f"{kb.size(inner)})", n, BLOCK)


@lowering("ember.shape", "ember.size")
def shape_query(ctx: LowerContext, op: Operation) -> None:
    shape = ctx.shape(op.operands[0])
    if op.name == "ember.size":
        values = [numel(shape)]
    else:
        values = list(shape[op.attributes["start"]:op.attributes["end"]])
    kb = KernelBuilder(ctx, op.name.split(".")[1], "int")
    o = kb.out(op.results[0], "long long")
    kb.put(values)
    kb.launch(f"ember::fill_from_meta<int>({o}, meta, {kb.n})", len(values), BLOCK)


# -- resize ------------------------------------------------------------------------------------------------
CTM = {"half_pixel": "CTM_HALF_PIXEL", "half_pixel_symmetric": "CTM_HALF_PIXEL_SYMMETRIC",
       "pytorch_half_pixel": "CTM_PYTORCH_HALF_PIXEL", "align_corners": "CTM_ALIGN_CORNERS",
       "asymmetric": "CTM_ASYMMETRIC", "tf_crop_and_resize": "CTM_TF_CROP_AND_RESIZE",
       "tf_half_pixel_for_nn": "CTM_TF_HALF_PIXEL_FOR_NN"}
NEAREST = {"round_prefer_floor": "NEAREST_ROUND_PREFER_FLOOR", "round_prefer_ceil": "NEAREST_ROUND_PREFER_CEIL",
           "floor": "NEAREST_FLOOR", "ceil": "NEAREST_CEIL"}
MAX_TAPS = 32


def _resize_fill(value: float, dt: DType) -> np.ndarray:
    """The extrapolation value in the element type, as the reference converts it."""
    if dt.kind in ("int", "uint"):
        info = np.iinfo(dt.np_dtype)
        return np.array(min(max(np.round(value), info.min), info.max)).astype(dt.np_dtype)
    return np.array(value).astype(dt.np_dtype)


@lowering("ember.resize")
def resize(ctx: LowerContext, op: Operation) -> None:
    x, y = op.operands[0], op.results[0]
    shape, out_shape = ctx.shape(x), ctx.shape(y)
    a = op.attributes
    rank = len(shape)
    scales = a["scales"]
    from_sizes = scales is None  # scale = out / in, computed by the kernel from the dims (shapes may vary)
    if from_sizes:
        factors = [value_of(o) / value_of(d) if value_of(d) else 1.0 for o, d in zip(out_shape, shape)]
        if a["antialias"] and a["mode"] != "nearest":  # the tap count depends on the ratio itself
            factors = [o / d if d else 1.0 for o, d in zip(out_shape, shape)]
    else:
        factors = [float(s) for s in scales]
    dt = ctx.dtype(x)
    mode = a["mode"]
    strides = contiguous_strides(shape)
    roi = a["roi"]
    cropping = a["coordinate_transformation_mode"] == "tf_crop_and_resize"
    meta: list[int] = []
    for axis in range(rank):
        start, end = (roi[axis], roi[axis + rank]) if roi is not None else (0.0, 0.0)
        if from_sizes:
            scale_bits = length_bits = f64_bits(math.nan)
        else:
            scale_bits, length_bits = f64_bits(factors[axis]), f64_bits(shape[axis] * factors[axis])
        meta += [shape[axis], out_shape[axis], strides[axis], scale_bits, length_bits, f64_bits(start), f64_bits(end)]
    integer = dt.kind in ("int", "uint")
    bounds = (float(np.iinfo(dt.np_dtype).min), float(np.iinfo(dt.np_dtype).max)) if integer else (0.0, 0.0)
    fill = value_bits(_resize_fill(a["extrapolation_value"], dt)) if cropping else 0
    meta += [f64_bits(a["cubic_coeff_a"]), fill, f64_bits(bounds[0]), f64_bits(bounds[1])]
    n = numel(out_shape)
    kb = KernelBuilder(ctx, "resize", index_for(n, numel(shape)))
    ctm = "ember::" + CTM[a["coordinate_transformation_mode"]]
    if mode == "nearest":
        t = bits_ctype(dt)
        o, i = kb.out(y, t), kb.inp(x, t)
        kb.put(meta)
        kb.launch(f"ember::resize_nearest<{t}, {kb.index}, {rank}, {ctm}, ember::{NEAREST[a['nearest_mode']]}>"
                  f"({o}, {i}, meta, {kb.n})", n, BLOCK)
        return
    support = 1.0 if mode == "linear" else 2.0
    taps = max([2 * math.ceil(support / (min(f, 1.0) if a["antialias"] else 1.0)) for f in factors] or [2])
    if taps > MAX_TAPS:
        raise UnsupportedOpError(f"antialiased resize with {taps} taps per axis (the kernel takes {MAX_TAPS})")
    t = ctype(dt)
    w = "double" if integer or dt.name == "f64" else "float"
    o, i = kb.out(y, t), kb.inp(x, t)
    kb.put(meta)
    flag = lambda b: "true" if b else "false"  # noqa: E731
    kb.launch(f"ember::resize_interpolate<{t}, {w}, {kb.index}, {rank}, ember::RESIZE_{mode.upper()}, {ctm}, {taps}, "
              f"{flag(a['antialias'])}, {flag(a['exclude_outside'])}, {flag(integer)}>({o}, {i}, meta, {kb.n})",
              n, BLOCK)


__all__ = ["launch_copy", "simplify", "index_for", "bits_ctype", "dims_of", "value_bits"]
