"""layout-nhwc: run every layout-sensitive op channels-last, transposes only at the edges.

Contract. Afterwards every LayoutSensitive op (ember.ir.layout) whose activations
have rank 3 to 5 carries the channels-last `layout` (NWC, NHWC, NDHWC); constant
convolution filters are stored channels-last too ("OHWI": a new weight named
`<orig>/ohwi`; "IHWO" for conv_transpose, whose I axis is the grouped one, as the
data gradient of a conv with an OIHW filter), so kernels read them in the order
they walk the channels; a filter computed at run time keeps its `weight_layout`.
The graph computes exactly what it did: the pass only permutes data.

How. Three rule sets, each applied to a fixed point:

1. CHANNELS_LAST: op(x) -> transpose(op'(transpose(x, to_last)), to_first), where op'
   is op with the channels-last layout (the meaning of a layout-sensitive op does not
   depend on its layout: transposed operands give the transposed result).
2. SINK (with canonicalize's transpose-pair and identity-transpose rules): a
   transpose moves below the ops it feeds when they commute with it:
   elementwise ops (constant operands are transposed at build time, a rank-lower
   broadcast operand such as a per-channel bias [C,1,1] is first given the full rank,
   operands of all-ones shape stay as they are), pad/slice/concat/reductions/softmax
   with their axes remapped. A transpose that meets the one a following
   channels-last op put at its input cancels with it. Transposes only ever move
   down, so this terminates; what is left sits where channels-first data enters or
   leaves: at the graph's inputs and outputs, and at ops that cannot take a
   transposed operand (matmul, reshape, gather...).
3. EDGES: a transpose that moves only static size-1 dims is a reshape (the
   global pool's [N,1,1,C] before a flatten), which canonicalize merges with the view
   that follows.

Ops that only have channels-first letters (rank 2, ranks above 5) and ops already
channels-last are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ember.ir import layout as L
from ember.ir.builder import Builder
from ember.ir.core import Module, Operation, Value
from ember.ir.dims import Dim, Unknown, mul
from ember.ir.opdef import REGISTRY, Broadcasting, Elementwise, lookup
from ember.ir.types import TensorType
from ember.passes.canonicalize import DATA_MOVEMENT, VIEWS
from ember.passes.dce import dead_code
from ember.passes.manager import Pass, PassContext, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_rules, known_value

x = P.var("x")


# -- what each layout-sensitive op keeps in its layout ----------------------------------------------
@dataclass(frozen=True)
class LayoutSpec:
    """Which operands (by field name) are activations in the op's `layout`; whether its
    results are (all of them); for convolutions, the filter's default letters and the
    letters it gets channels-last ("O", spatial, "I" or "I", spatial, "O")."""

    activations: tuple[str, ...] = ("x",)
    results: bool = True
    filter_default: str | None = None
    filter_last: tuple[str, str] | None = None

    def filter_letters(self, spatial: str) -> str:
        assert self.filter_last is not None
        return self.filter_last[0] + spatial + self.filter_last[1]


CONV = LayoutSpec(filter_default="OI", filter_last=("O", "I"))
SPECS: dict[str, LayoutSpec] = {
    "ember.conv": CONV,
    "ember.conv_integer": CONV,
    "ember.int8_conv": CONV,
    "ember.fp8_conv": CONV,
    "ember.deform_conv": LayoutSpec(activations=("x", "offset", "mask"), filter_default="OI", filter_last=("O", "I")),
    "ember.conv_transpose": LayoutSpec(filter_default="IO", filter_last=("I", "O")),
    "ember.max_pool": LayoutSpec(),
    "ember.max_pool_with_indices": LayoutSpec(),  # indices are channels-first positions whatever the layout
    "ember.avg_pool": LayoutSpec(),
    "ember.lp_pool": LayoutSpec(),
    "ember.global_avg_pool": LayoutSpec(),
    "ember.global_max_pool": LayoutSpec(),
    "ember.global_lp_pool": LayoutSpec(),
    "ember.int8_avg_pool": LayoutSpec(),  # the scales and zero points are scalars
    "ember.int8_global_avg_pool": LayoutSpec(),
    "ember.max_unpool": LayoutSpec(activations=("x", "indices")),
    "ember.batch_norm": LayoutSpec(),
    "ember.instance_norm": LayoutSpec(),
    "ember.group_norm": LayoutSpec(),
    "ember.lrn": LayoutSpec(),
    "ember.depth_to_space": LayoutSpec(),
    "ember.space_to_depth": LayoutSpec(),
    "ember.grid_sample": LayoutSpec(),  # grid holds coordinates, not channels
    "ember.roi_align": LayoutSpec(),  # rois and batch_indices are not activations
    "ember.col2im": LayoutSpec(activations=()),  # x is (N, C*taps, L); only the image is in layout
}

CONV_OPS = ("ember.conv", "ember.conv_integer", "ember.int8_conv", "ember.fp8_conv", "ember.deform_conv",
            "ember.conv_transpose")
POOL_OPS = ("ember.max_pool", "ember.max_pool_with_indices", "ember.avg_pool", "ember.lp_pool",
            "ember.global_avg_pool", "ember.global_max_pool", "ember.global_lp_pool", "ember.max_unpool",
            "ember.int8_avg_pool", "ember.int8_global_avg_pool")
NORM_OPS = ("ember.batch_norm", "ember.instance_norm", "ember.group_norm", "ember.lrn")
BLOCK_OPS = ("ember.depth_to_space", "ember.space_to_depth")
SAMPLER_OPS = ("ember.grid_sample", "ember.roi_align", "ember.col2im")


def _ranked(v: Value | None) -> TensorType | None:
    return v.type if v is not None and isinstance(v.type, TensorType) and v.type.shape is not None else None


def _operand(op: Operation, field: str) -> Value | None:
    """The operand of field `field` (these ops have no variadic operands)."""
    names = [f.name for f in op.operand_fields]  # type: ignore[attr-defined]
    i = names.index(field)
    return op.operands[i] if i < len(op.operands) else None


def _layout_rank(op: Operation) -> int | None:
    """The rank of the tensors the op's `layout` describes."""
    spec = SPECS[op.name]
    t = _ranked(_operand(op, spec.activations[0])) if spec.activations else _ranked(op.results[0])
    return t.rank if t is not None else None


def channels_first_op(op: Operation) -> bool:
    """The op is channels-first at a rank that has a channels-last layout (3 to 5)."""
    rank = _layout_rank(op)
    if rank is None or not 3 <= rank <= 5:
        return False
    layout = op.attributes.get("layout")
    return layout is None or layout == L.channels_first(rank)


def materialize(b: Builder, source: Value, array: np.ndarray, suffix: str) -> Value:
    """`array`, derived at build time from the constant `source`: inline if the source
    was inline, else a weight named `<source name><suffix>` (reused when it already
    holds these values, as for a filter two convs share)."""
    op = source.defining_op
    assert op is not None
    if op.name == "ember.constant":
        return b.constant(array)
    base = op.attributes["name"] + suffix
    name, k = base, 1
    while name in b.module.weights:
        w = b.module.weights[name]
        if w.data is not None and w.data.dtype == array.dtype and w.data.shape == array.shape \
                and np.array_equal(w.data, array):
            return b.weight(name, w.data)
        k += 1
        name = f"{base}{k}"
    return b.weight(name, np.ascontiguousarray(array))


def to_channels_last(m: Match, b: Builder) -> Sequence[Value] | None:
    """op(x) = transpose(op'(transpose(x, to_last)), to_first) with op' channels-last: a
    layout-sensitive op means the same in every layout up to a transpose of its activations."""
    op = m.op
    spec = SPECS[op.name]
    rank = _layout_rank(op)
    assert rank is not None
    last = L.Layout(L.channels_last(rank))
    to_last, to_first = last.from_channels_first, last.to_channels_first
    names = [f.name for f in op.operand_fields]
    operands = list(op.operands)
    for field in spec.activations:
        i = names.index(field)
        if i < len(operands) and operands[i] is not None:
            operands[i] = b.transpose(operands[i], perm=to_last)
    attrs = dict(op.attributes)
    attrs["layout"] = last.letters
    if spec.filter_last is not None:
        w = operands[names.index("w")]
        data = known_value(w)
        if data is not None:
            spatial = last.spatial
            src = L.resolve_weight(op.attributes.get("weight_layout"), spatial, spec.filter_default or "OI").letters
            dst = spec.filter_letters(spatial)
            if src != dst:
                operands[names.index("w")] = materialize(b, w, np.transpose(data, L.permutation(src, dst)),
                                                         "/" + dst.lower())
            attrs["weight_layout"] = dst
    made = b.op(op.name, *operands, **attrs)
    results = [made] if isinstance(made, Value) else list(made)
    if not spec.results:
        return results
    return [b.transpose(r, perm=to_first) for r in results]


def _converts(names: Sequence[str]) -> P:
    return P.op(names, name="op", any_operands=True, where=channels_first_op)


CHANNELS_LAST = RuleSet("channels-last", [
    Rule("conv-channels-last", _converts(CONV_OPS), to_channels_last,
         doc="conv(x, w) = T(conv_nhwc(T(x), w_ohwi)); constant filters are transposed at build time"),
    Rule("pool-channels-last", _converts(POOL_OPS), to_channels_last,
         doc="pool(x) = T(pool_nhwc(T(x))), global pools and max_unpool (its indices too) alike"),
    Rule("norm-channels-last", _converts(NORM_OPS), to_channels_last,
         doc="norm(x) = T(norm_nhwc(T(x))); per-channel parameters are vectors and stay"),
    Rule("block-channels-last", _converts(BLOCK_OPS), to_channels_last,
         doc="depth_to_space/space_to_depth(x) = T(op_nhwc(T(x)))"),
    Rule("sampler-channels-last", _converts(SAMPLER_OPS), to_channels_last,
         doc="grid_sample/roi_align/col2im: only the activations (not grids, boxes, columns) are transposed"),
])


# -- sinking transposes ------------------------------------------------------------------------------
def transpose_perm(v: Value | None) -> tuple[int, ...] | None:
    """The perm of the transpose that defines `v`, if one does."""
    if v is None or v.defining_op is None or v.defining_op.name != "ember.transpose":
        return None
    t = _ranked(v)
    if t is None:
        return None
    perm = v.defining_op.attributes["perm"]
    return tuple(perm) if perm is not None else tuple(reversed(range(t.rank)))


def _all_ones(v: Value, rank: int) -> bool:
    t = _ranked(v)
    return t is not None and t.rank <= rank and all(d == 1 for d in t.shape)  # type: ignore[union-attr]


def _pretransposed(b: Builder, v: Value, perm: tuple[int, ...]) -> Value | None:
    """For a constant c that broadcasts against transpose(x, perm): c' with
    transpose(c', perm) broadcasting as c does (c first given the full rank; leading
    ones dropped again), so op(T(x), c) = T(op(x, c'))."""
    data = known_value(v)
    if data is None or data.ndim > len(perm):
        return None
    full = data.reshape((1,) * (len(perm) - data.ndim) + data.shape)
    moved = np.transpose(full, L.inverse(perm))
    lead = 0
    while lead < moved.ndim - data.ndim and moved.shape[lead] == 1:
        lead += 1
    moved = moved.reshape(moved.shape[lead:])
    if moved.shape == data.shape and np.array_equal(moved, data):
        return v
    return materialize(b, v, moved, "/transpose")


def sink_elementwise(m: Match, b: Builder) -> Value | None:
    """op(T(a, p), T(b, p), c...) = T(op(a, b, c'...), p) for elementwise ops: every operand is
    a transpose by the same p, a constant (transposed at build time), or all ones in shape."""
    op = m.op
    out = _ranked(op.results[0]) if len(op.results) == 1 else None
    if out is None:
        return None
    rank = out.rank
    perm = next((p for p in map(transpose_perm, op.operands) if p is not None and len(p) == rank), None)
    if perm is None:
        return None
    operands: list[Value | None] = []
    for v in op.operands:
        if v is None:
            operands.append(None)
        elif transpose_perm(v) == perm:
            operands.append(v.defining_op.operands[0])  # type: ignore[union-attr]
        elif _all_ones(v, rank):
            operands.append(v)
        else:
            moved = _pretransposed(b, v, perm)
            if moved is None:
                return None
            operands.append(moved)
    return b.transpose(b.op(op.name, *operands, **op.attributes), perm=perm)


def _source(op: Operation) -> tuple[Value, tuple[int, ...]]:
    """x and p of the transpose T(x, p) that `op` reads as its first operand."""
    t = op.operands[0]
    perm = transpose_perm(t)
    assert t is not None and t.defining_op is not None and perm is not None
    return t.defining_op.operands[0], perm  # type: ignore[return-value]


def _norm_axes(axes: Sequence[int] | None, rank: int, default: Sequence[int]) -> list[int]:
    return [a % rank for a in (default if axes is None else axes)]


def sink_pad(m: Match, b: Builder) -> Value | None:
    """pad(T(x, p), pads on axes A) = T(pad(x, the same pads on axes p[A]), p)."""
    op, (src, perm) = m.op, _source(m.op)
    rank = len(perm)
    pads, axes_attr = op.attributes["pads"], op.attributes["axes"]
    axes = _norm_axes(axes_attr, rank, range(rank))
    n = len(axes)
    attrs = dict(op.attributes)
    if axes_attr is None:
        begin, end = [0] * rank, [0] * rank
        for i, a in enumerate(axes):
            begin[perm[a]], end[perm[a]] = pads[i], pads[n + i]
        attrs["pads"] = tuple(begin + end)
    else:
        attrs["axes"] = tuple(perm[a] for a in axes)
    return b.transpose(b.op("ember.pad", src, *op.operands[1:], **attrs), perm=perm)


def sink_slice(m: Match, b: Builder) -> Value | None:
    """slice(T(x, p), axes A) = T(slice(x, axes p[A]), p)."""
    op, (src, perm) = m.op, _source(m.op)
    attrs = dict(op.attributes)
    attrs["axes"] = tuple(perm[a] for a in _norm_axes(attrs["axes"], len(perm), range(len(attrs["starts"]))))
    return b.transpose(b.op("ember.slice", src, **attrs), perm=perm)


def sink_concat(m: Match, b: Builder) -> Value | None:
    """concat(T(a, p), T(b, p), c..., axis k) = T(concat(a, b, c'..., axis p[k]), p), constants c
    transposed at build time."""
    op = m.op
    out = _ranked(op.results[0])
    if out is None:
        return None
    perm = next((p for p in map(transpose_perm, op.operands) if p is not None and len(p) == out.rank), None)
    if perm is None:
        return None
    inputs = []
    for v in op.operands:
        if transpose_perm(v) == perm:
            inputs.append(v.defining_op.operands[0])  # type: ignore[union-attr]
            continue
        data = known_value(v)
        if data is None:
            return None
        inputs.append(materialize(b, v, np.transpose(data, L.inverse(perm)), "/transpose"))
    axis = perm[op.attributes["axis"] % out.rank]
    return b.transpose(b.concat(*inputs, axis=axis), perm=perm)


def _kept_perm(perm: tuple[int, ...], reduced: set[int]) -> tuple[int, ...]:
    """The perm from reduce(x)'s kept axes to reduce(T(x, perm))'s (keepdims false)."""
    kept = sorted(perm[a] for a in range(len(perm)) if a not in reduced)
    return tuple(kept.index(perm[a]) for a in range(len(perm)) if a not in reduced)


def sink_reduction(m: Match, b: Builder) -> Value | None:
    """reduce(T(x, p), axes A) = T'(reduce(x, axes p[A])): T' = T with keepdims, else p
    restricted to the kept axes (no transpose when they keep their order)."""
    op, (src, perm) = m.op, _source(m.op)
    rank = len(perm)
    attrs = dict(op.attributes)
    if "axes" in attrs:
        reduced = _norm_axes(attrs["axes"], rank, range(rank))
        if attrs["axes"] is not None:
            attrs["axes"] = tuple(perm[a] for a in reduced)
    else:
        reduced = [attrs["axis"] % rank]
        attrs["axis"] = perm[reduced[0]]
    y = b.op(op.name, src, **attrs)
    out = perm if attrs["keepdims"] else _kept_perm(perm, set(reduced))
    return y if out == tuple(range(len(out))) else b.transpose(y, perm=out)


def sink_softmax(m: Match, b: Builder) -> Value | None:
    """softmax(T(x, p), axis k) = T(softmax(x, axis p[k]), p); log_softmax and hardmax alike."""
    op, (src, perm) = m.op, _source(m.op)
    attrs = dict(op.attributes)
    attrs["axis"] = perm[attrs["axis"] % len(perm)]
    return b.transpose(b.op(op.name, src, **attrs), perm=perm)


def _accumulate(dims: Sequence[Dim], start: int, target: Dim) -> int | None:
    """The end k > start + 1 with prod(dims[start:k]) == target, if there is one."""
    prod = dims[start]
    for k in range(start + 1, len(dims)):
        prod = mul(prod, dims[k])
        if prod == target:
            return k + 1
        if isinstance(prod, int) and isinstance(target, int) and prod > target:
            return None
    return None


def _view_groups(src: Sequence[Dim], dst: Sequence[Dim]) -> list[tuple[list[int], list[int]]] | None:
    """Split two shapes (no 1s) into aligned runs of equal product where one side has a
    single dim: a reshape that only merges or splits dims. None if it does more."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) and j < len(dst):
        if src[i] == dst[j]:
            groups.append(([i], [j]))
            i, j = i + 1, j + 1
        elif (k := _accumulate(src, i, dst[j])) is not None:
            groups.append((list(range(i, k)), [j]))
            i, j = k, j + 1
        elif (k := _accumulate(dst, j, src[i])) is not None:
            groups.append(([i], list(range(j, k))))
            i, j = i + 1, k
        else:
            return None
    return groups if i == len(src) and j == len(dst) else None


def sink_view(m: Match, b: Builder) -> Value | None:
    """view(T(x, p)) = T(reshape(x, s), q) when the view only merges runs of dims that are
    adjacent and in order in x too, and splits dims (static 1s go anywhere): the same data
    in another grouping."""
    op, (src, perm) = m.op, _source(m.op)
    xt, yt, ot = _ranked(src), _ranked(op.operands[0]), _ranked(op.results[0])
    if xt is None or yt is None or ot is None:
        return None
    shapes = (xt.shape, yt.shape, ot.shape)
    if any(isinstance(d, Unknown) for s in shapes for d in s):  # type: ignore[union-attr]
        return None
    xs, ys, out = shapes
    y_axes = [a for a, d in enumerate(ys) if d != 1]  # type: ignore[arg-type]
    x_axes = [a for a, d in enumerate(xs) if d != 1]  # type: ignore[arg-type]
    out_axes = [a for a, d in enumerate(out) if d != 1]  # type: ignore[arg-type]
    groups = _view_groups([ys[a] for a in y_axes], [out[a] for a in out_axes])  # type: ignore[index]
    if groups is None:
        return None
    placed = []  # (where the run starts among x's dims, the output dims it becomes)
    for run, dims in groups:
        at = [x_axes.index(perm[y_axes[i]]) for i in run]
        if at != list(range(at[0], at[0] + len(at))):
            return None  # merging dims that are apart in x: a real data movement
        placed.append((at[0], dims))
    order = [j for _, dims in sorted(placed) for j in dims]
    ones = [a for a, d in enumerate(out) if d == 1]  # type: ignore[arg-type]
    shape = [out[out_axes[j]] for j in order] + [1] * len(ones)  # type: ignore[index]
    where = {j: k for k, j in enumerate(order)}
    extra = iter(range(len(order), len(shape)))
    q = tuple(next(extra) if d == 1 else where[out_axes.index(a)] for a, d in enumerate(out))  # type: ignore[arg-type]
    y = src if tuple(shape) == tuple(xs) else b.reshape(src, shape=tuple(shape))  # type: ignore[arg-type]
    return y if q == tuple(range(len(q))) else b.transpose(y, perm=q)


def per_tensor_quantization(op: Operation) -> bool:
    """A quantize or dequantize with one scale (and zero point) for the whole tensor: elementwise."""
    if op.attributes.get("block_size", 0) != 0:
        return False
    params = [_ranked(v) for v in op.operands[1:] if v is not None]
    return all(t is not None and (t.rank == 0 or t.shape == (1,)) for t in params)


def _reads_transpose(op: Operation) -> bool:
    return bool(op.operands) and transpose_perm(op.operands[0]) is not None


def _op_names(*traits: object, exclude: object = None) -> tuple[str, ...]:
    lookup("ember.add")  # fills the registry (imports ember.ir.ops) if nothing has yet
    return tuple(sorted(n for n, c in REGISTRY.items()
                        if all(t in c.traits for t in traits) and (exclude is None or exclude not in c.traits)))


UNARY_OPS = _op_names(Elementwise, exclude=Broadcasting)
BROADCAST_OPS = _op_names(Elementwise, Broadcasting)
REDUCE_OPS = tuple(sorted(n for n in REGISTRY if n.startswith("ember.reduce_"))) + ("ember.argmax", "ember.argmin")
SOFTMAX_OPS = ("ember.softmax", "ember.log_softmax", "ember.hardmax")
transposed = P.op("ember.transpose", x, name="t")

SINK = RuleSet("sink-transposes", [
    Rule("sink-through-unary", P.op(UNARY_OPS, name="op", any_operands=True), sink_elementwise,
         doc="f(T(x, p)) = T(f(x), p) for elementwise f (scalar operands such as clip's bounds stay)"),
    Rule("sink-through-broadcast", P.op(BROADCAST_OPS, name="op", any_operands=True), sink_elementwise,
         doc="f(T(a, p), c) = T(f(a, c'), p): transposed operands by the same p, constants transposed "
             "(a rank-lower one given the full rank first), all-ones operands kept"),
    Rule("sink-through-quantization", P.op(("ember.quantize", "ember.dequantize"), name="op", any_operands=True,
                                            where=per_tensor_quantization), sink_elementwise,
         doc="q(T(x, p), s, z) = T(q(x, s, z), p) for a scale and zero point per tensor (so int8 "
             "convolutions' channels-last results meet across quantized adds)"),
    Rule("sink-through-pad", P.op("ember.pad", name="op", any_operands=True, where=_reads_transpose), sink_pad,
         doc="pad(T(x, p), axes A) = T(pad(x, axes p[A]), p)"),
    Rule("sink-through-slice", P.op("ember.slice", transposed, name="op"), sink_slice,
         doc="slice(T(x, p), axes A) = T(slice(x, axes p[A]), p)"),
    Rule("sink-through-concat", P.op("ember.concat", name="op", any_operands=True), sink_concat,
         doc="concat(T(a, p), T(b, p), axis k) = T(concat(a, b, axis p[k]), p)"),
    Rule("sink-through-reduction", P.op(REDUCE_OPS, transposed, name="op"), sink_reduction,
         doc="reduce(T(x, p), axes A) = T'(reduce(x, axes p[A])), T' restricted to the kept axes"),
    Rule("sink-through-view", P.op(VIEWS, transposed, name="op"), sink_view,
         doc="view(T(x, p)) = T(reshape(x), q) when the view merges dims adjacent in x or splits dims"),
    Rule("sink-through-softmax", P.op(SOFTMAX_OPS, transposed, name="op"), sink_softmax,
         doc="softmax(T(x, p), axis k) = T(softmax(x, axis p[k]), p)"),
])


CANCEL = RuleSet("cancel", [r for r in DATA_MOVEMENT if r.name in ("transpose-pair", "identity-transpose")])
assert len(CANCEL.rules) == 2, "canonicalize's transpose rules were renamed"


# -- edges ---------------------------------------------------------------------------------------------
def unit_transpose(m: Match, b: Builder) -> Value | None:
    """A transpose that keeps the order of every dim that is not a static 1 moves no data:
    a reshape to its result's shape."""
    src, out = _ranked(m.x), _ranked(m.t.results[0])
    perm = transpose_perm(m.t.results[0])
    if src is None or out is None or perm is None or perm == tuple(range(len(perm))):
        return None
    if any(isinstance(d, Unknown) for d in out.shape):  # type: ignore[union-attr]
        return None
    moving = [a for a in perm if src.shape[a] != 1]  # type: ignore[index]
    if moving != sorted(moving):
        return None
    return b.reshape(m.x, shape=out.shape)


EDGES = RuleSet("edges", [
    Rule("unit-transpose-reshape", P.op("ember.transpose", x, name="t"), unit_transpose,
         doc="a transpose moving only size-1 dims, [N,1,1,C] -> [N,C,1,1], is a reshape"),
])


@register_pass("layout-nhwc")
@dataclass(frozen=True)
class LayoutNhwc(Pass):
    """Layout-sensitive ops channels-last, constant filters OHWI, transposes pushed to the
    graph's edges (see the module docstring for the contract)."""

    def run(self, module: Module, ctx: PassContext) -> bool:
        changed = False
        for rules in (CHANNELS_LAST, SINK + CANCEL, EDGES):
            fired = apply_rules(module, rules)
            for rule, n in fired.items():
                ctx.count(self.name, rule, n)
            changed |= bool(fired)
        if changed:
            dead_code(module)  # the channels-first filters nobody reads any more
        return changed
