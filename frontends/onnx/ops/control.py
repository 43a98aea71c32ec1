"""Control flow: If, Loop and Scan, onto ember.if and ember.loop.

Subgraphs become regions; they read outer values directly (Ember's if/loop
regions are not isolated). A loop-carried value has one type for every
iteration, so a body whose carried values change shape is imported again with
the joined (wider) types until they settle.

Ember takes shapes and slice bounds as attributes, known at build time. When
a body needs such a value and graph inputs give it, the backend freezes those
inputs, as for a top-level Reshape's shape. When the value comes from the
iteration number instead (ONNX's loop tests slice `x[:i+1]`), the body cannot
be a region: the loop is unrolled, which needs its trip count and condition
at build time (frozen in turn when graph inputs give them); an If in that
situation imports just the branch its known condition takes. An If with a
known condition is always inlined, and so is one whose branches yield
different ranks when graph inputs give its condition: its result would be
unranked, which Ember's ops (as TensorRT's) cannot take.

Scan is lowered, not given an op of its own: each scan input is moved to put
its scan axis first (transpose) and reversed for a reverse direction (slice
with step -1), an ember.loop over its length gathers element i of each input,
runs the body and stacks the scan outputs; these are reversed and moved to
their output axes afterwards. An ember.scan would repeat ember.loop's region
semantics, type rule and (later) lowering for nothing the loop cannot say.
Opset 8's batched Scan is one more loop, over the batch axis, around that.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from onnx import GraphProto, ValueInfoProto

from ember.errors import VerifyError
from ember.frontends.onnx.importer import NodeContext, NodeError
from ember.frontends.onnx.registry import converter
from ember.ir.builder import Builder
from ember.ir.core import Block, Value
from ember.ir.dims import Dim
from ember.ir.ops.control import join_types
from ember.ir.types import OptionalType, TensorType, Type, boolean, i64, refines

# The most iterations a loop is unrolled for (each one is a copy of the body).
MAX_UNROLL = 1024
# Rounds of widening the carried types before giving up (each round loses a dim or a rank).
MAX_WIDENING = 4
BUILD_TIME = "must be known at build time"
# What ctx.import_subgraph says when its graph failed (the real errors are listed before it).
CONSEQUENCE = "could not be imported (see the errors above)"


def op_in(ctx: NodeContext, b: Builder, name: str, *operands: Value | None, **attrs: Any) -> Any:
    """ctx.op into another builder (a region's)."""
    try:
        return b.op(name, *operands, loc=ctx.loc, **attrs)
    except VerifyError as err:
        raise NodeError(str(err).split("\n")[0], unsupported=False) from None


def _discard(block: Block) -> None:
    """Forget a region that will not be used (its ops' uses of outer values)."""
    block.drop_outputs()
    for op in block.ops:
        op.drop_all_references()


def import_graph(ctx: NodeContext, graph: GraphProto, b: Builder, args: Sequence[Value]) -> list[Value]:
    """ctx.import_subgraph, with one change: when the subgraph fails only because
    values must be known at build time, its errors become one error of this node
    that names the graph inputs those values come from (so the backend can
    freeze them, as for a top-level Reshape's shape)."""
    imp = ctx.importer
    n_errors, n_needs = len(imp.errors), len(imp.needs_static)
    n_static = getattr(imp, "static_failures", None)
    try:
        return ctx.import_subgraph(graph, b, args)
    except NodeError:
        new = imp.errors[n_errors:]
        if not any(BUILD_TIME in e for e in new) or not all(BUILD_TIME in e or CONSEQUENCE in e for e in new):
            raise
        needs = list(dict.fromkeys(imp.needs_static[n_needs:]))
        first = next(e for e in new if BUILD_TIME in e).split("\n")[0]
        del imp.errors[n_errors:]
        del imp.needs_static[n_needs:]
        if n_static is not None:
            imp.static_failures = n_static
        raise NodeError(f"in its subgraph {graph.name!r}: {first}", needs=needs) from None


def _attempt(build: Callable[[], Any]) -> tuple[Any, bool]:
    """Run `build`; when it fails only because a body needs values at build time
    that no graph input gives (they come from a loop's iteration number, say),
    return (None, True) so the caller can resolve the control flow at build time.
    Values computed from graph inputs are left to the backend to freeze: with them
    known, the region imports."""
    try:
        return build(), False
    except NodeError as err:
        if BUILD_TIME not in str(err) or err.needs:
            raise
        return None, True


def _declared_rank(vi: ValueInfoProto) -> int | None:
    t = vi.type
    if t.WhichOneof("value") != "tensor_type" or not t.tensor_type.HasField("shape"):
        return None
    return len(t.tensor_type.shape.dim)


def _flag(value: np.ndarray) -> bool:
    flat = np.asarray(value).reshape(-1)
    if flat.size != 1:
        raise NodeError(f"a condition must be one value, got {flat.size}", unsupported=False)
    return bool(flat[0])


# -- If --------------------------------------------------------------------------------------------
@converter("If", since=1)
def if_(ctx: NodeContext) -> Any:
    then_g, else_g = ctx.subgraph("then_branch"), ctx.subgraph("else_branch")
    known = ctx.const(0)
    if known is not None:
        return import_graph(ctx, then_g if _flag(known) else else_g, ctx.b, [])

    def build() -> Any:
        blocks: list[Block] = []
        try:
            for g in (then_g, else_g):
                blocks.append(_branch(ctx, g))
        except NodeError:
            for block in blocks:
                _discard(block)
            raise
        outs = list(ctx.op("ember.if", ctx.input(0), then_branch=blocks[0], else_branch=blocks[1]))
        if _ranks_differ(*blocks):
            _resolve_if_possible(ctx)
        return outs

    outs, needs_build_time = _attempt(build)
    if not needs_build_time:
        return outs
    known = ctx.static(0, "the condition (a branch needs values known at build time, so only the taken "
                          "branch is imported)")
    return import_graph(ctx, then_g if _flag(known) else else_g, ctx.b, [])


def _ranks_differ(then_b: Block, else_b: Block) -> bool:
    return any(isinstance(a, TensorType) and isinstance(b, TensorType) and a.shape is not None
               and b.shape is not None and len(a.shape) != len(b.shape)
               for a, b in zip(then_b.output_types, else_b.output_types))


def _resolve_if_possible(ctx: NodeContext) -> None:
    """Branches that yield different ranks give an unranked result, which Ember's ops
    (as TensorRT's) cannot take. Ask for the condition at build time when graph inputs
    give it (the backend freezes them); otherwise keep the unranked result."""
    try:
        ctx.static(0, "the condition (the branches yield results of different ranks, so the If is "
                      "resolved at build time)")
    except NodeError as err:
        if err.needs:
            raise


def _branch(ctx: NodeContext, graph: GraphProto) -> Block:
    block = Block()
    rb = Builder(module=ctx.b.module, block=block)
    try:
        outs = import_graph(ctx, graph, rb, [])
    except NodeError:
        _discard(block)
        raise
    block.set_outputs(outs)
    return block


# -- Loop ------------------------------------------------------------------------------------------
@converter("Loop", since=1)
def loop(ctx: NodeContext) -> Any:
    body = ctx.subgraph("body")
    n = ctx.n_inputs - 2
    if n < 0:
        raise ctx.fail("Loop takes a trip count and a condition (either may be empty), then the carried values")
    if len(body.input) != 2 + n:
        raise ctx.fail(f"the body takes {len(body.input)} inputs; with {n} carried values it must take {2 + n}")
    if len(body.output) < 1 + n:
        raise ctx.fail(f"the body yields {len(body.output)} values; it must yield the condition and {n} "
                       "carried values, then any scan outputs")
    if not ctx.has(0) and not ctx.has(1):
        raise ctx.unsupported("a Loop with neither a trip count nor a condition never ends")
    carried = [ctx.input(2 + k) for k in range(n)]
    if any(v is None for v in carried):
        raise ctx.fail("carried values cannot be empty")
    outs, needs_build_time = _attempt(lambda: _loop_region(ctx, body, carried))
    if not needs_build_time:
        return outs
    return _unrolled_loop(ctx, body, carried)


def _loop_region(ctx: NodeContext, body: GraphProto, carried: list[Value]) -> list[Value]:
    n = len(carried)

    def bind(rb: Builder, args: Sequence[Value]) -> list[Value]:
        it, cond = args[0], args[1]
        if _declared_rank(body.input[0]) == 1:
            it = op_in(ctx, rb, "ember.reshape", it, shape=(1,))
        if _declared_rank(body.input[1]) == 1:
            cond = op_in(ctx, rb, "ember.reshape", cond, shape=(1,))
        return [it, cond, *args[2:]]

    block = carried_body(ctx, body, [v.type for v in carried], bind, lead=[i64[()], boolean[()]],
                         finish=lambda rb, args, outs: (outs[:1], outs[1:1 + n], outs[1 + n:]))
    trip = ctx.input(0) if ctx.has(0) else None
    cond = ctx.input(1) if ctx.has(1) else None
    results = list(ctx.op("ember.loop", trip, cond, *carried, body=block))
    assert len(results) == len(block.outputs) - 1 and n <= len(results)
    return results


Finish = Callable[[Builder, Sequence[Value], list[Value]], tuple[list[Value], list[Value], list[Value]]]


def carried_body(ctx: NodeContext, body: GraphProto, init_types: list[Type],
                 bind: Callable[[Builder, Sequence[Value]], list[Value]], *, lead: list[Type],
                 finish: Finish) -> Block:
    """Import `body` as a region taking `lead` arguments, then the carried values.
    `bind` maps the region's arguments to the ONNX body's inputs; `finish` maps the
    region's arguments and the ONNX body's outputs to what the region yields:
    (leading values, carried values, the rest). Carried argument types widen until
    what the body yields fits them."""
    arg_types = list(init_types)
    for _ in range(MAX_WIDENING):
        block = Block([*lead, *arg_types])
        rb = Builder(module=ctx.b.module, block=block)
        try:
            outs = import_graph(ctx, body, rb, bind(rb, block.args))
            head, yields, rest = finish(rb, block.args, outs)
        except NodeError:
            _discard(block)
            raise
        fitted = []
        for a, y in zip(arg_types, yields):
            if isinstance(a, OptionalType) and not isinstance(y.type, OptionalType):
                y = op_in(ctx, rb, "ember.optional", y)  # an optional carried value given a plain one
            fitted.append(y)
        widened: list[Type] = []
        for k, (a, y) in enumerate(zip(arg_types, fitted)):
            if refines(y.type, a):
                widened.append(a)
                continue
            joined = join_types(a, y.type)
            if joined is None:
                _discard(block)
                raise ctx.fail(f"carried value {k} is {a}, but the body yields {y.type}: they need the same "
                               "kind and element type")
            widened.append(joined)
        block.set_outputs([*head, *fitted, *rest])
        if widened == arg_types:
            return block
        _discard(block)
        arg_types = widened
    raise ctx.fail(f"the carried values' types did not settle after {MAX_WIDENING} imports of the body")


def _unrolled_loop(ctx: NodeContext, body: GraphProto, carried: list[Value]) -> list[Value]:
    """The loop unrolled at build time: its body needs values computed from the
    iteration number at build time (a slice bound, a shape)."""
    why = "(the loop body needs values computed from the iteration number at build time, so it is unrolled)"
    limit = ctx.static_ints(0, f"the trip count {why}", count=1)[0] if ctx.has(0) else None
    has_cond = ctx.has(1)
    keep = bool(ctx.static_scalar(1, f"the condition {why}")) if has_cond else True
    n = len(carried)
    values = list(carried)
    scans: list[list[Value]] = []
    it_rank, cond_rank = _declared_rank(body.input[0]), _declared_rank(body.input[1])
    i = 0
    while keep and (limit is None or i < limit):
        if i >= MAX_UNROLL:
            raise ctx.unsupported(f"the loop body needs build-time values from the iteration number, and the "
                                  f"loop runs more than {MAX_UNROLL} iterations: too many to unroll")
        it = ctx.constant(np.array(i, np.int64).reshape((1,) * (it_rank or 0)))
        cond = ctx.constant(np.array(keep).reshape((1,) * (cond_rank or 0)))
        outs = import_graph(ctx, body, ctx.b, [it, cond, *values])
        values = [ctx.op("ember.optional", y) if isinstance(v.type, OptionalType)
                  and not isinstance(y.type, OptionalType) else y for v, y in zip(carried, outs[1:1 + n])]
        scans.append(outs[1 + n:])
        if has_cond:
            flag = ctx.importer.known.get(outs[0])
            if flag is None:
                raise ctx.unsupported("the loop body needs build-time values from the iteration number, and its "
                                      "condition is computed at run time: it can be neither a region nor unrolled")
            keep = _flag(flag)
        i += 1
    n_scan = len(body.output) - 1 - n
    if n_scan and not scans:
        raise ctx.unsupported("an unrolled loop that runs zero times has no type for its scan outputs")
    stacked = []
    for k in range(n_scan):
        parts = [ctx.op("ember.unsqueeze", s[k], axes=(0,)) for s in scans]
        stacked.append(parts[0] if len(parts) == 1 else ctx.op("ember.concat", *parts, axis=0))
    return [*values, *stacked]


# -- Scan ----------------------------------------------------------------------------------------
def _axes_attr(ctx: NodeContext, name: str, count: int) -> list[int]:
    value = ctx.attr(name)
    if value is None:
        return [0] * count
    value = [int(a) for a in value]
    if len(value) != count:
        raise ctx.fail(f"{name} has {len(value)} entries; expected {count}")
    return value


@converter("Scan", since=9)
def scan(ctx: NodeContext) -> Any:
    body = ctx.subgraph("body")
    k = ctx.attr("num_scan_inputs")
    if k is None or not 1 <= k <= ctx.n_inputs:
        raise ctx.fail(f"num_scan_inputs must be in 1..{ctx.n_inputs}, got {k}")
    n = ctx.n_inputs - k
    m = len(body.output) - n
    if m < 0 or len(body.input) != n + k:
        raise ctx.fail(f"the body takes {len(body.input)} inputs and yields {len(body.output)} values; with {n} "
                       f"state values and {k} scan inputs it must take {n + k} and yield at least {n}")
    states = [ctx.input(i) for i in range(n)]
    xs = [ctx.input(n + j) for j in range(k)]
    if any(v is None for v in states + xs):
        raise ctx.fail("Scan inputs cannot be empty")
    return _scan(ctx, ctx.b, body, states, xs, _axes_attr(ctx, "scan_input_axes", k),
                 _axes_attr(ctx, "scan_input_directions", k), _axes_attr(ctx, "scan_output_axes", m),
                 _axes_attr(ctx, "scan_output_directions", m))


@converter("Scan", since=8)
def scan_batched(ctx: NodeContext) -> Any:
    """Opset 8: inputs and states carry a leading batch axis; the scan runs per batch entry."""
    body = ctx.subgraph("body")
    k = ctx.attr("num_scan_inputs")
    if k is None or not 1 <= k <= ctx.n_inputs - 1:
        raise ctx.fail(f"num_scan_inputs must be in 1..{ctx.n_inputs - 1}, got {k}")
    n = ctx.n_inputs - 1 - k
    m = len(body.output) - n
    if m < 0 or len(body.input) != n + k:
        raise ctx.fail(f"the body takes {len(body.input)} inputs and yields {len(body.output)} values; with {n} "
                       f"state values and {k} scan inputs it must take {n + k} and yield at least {n}")
    states = [ctx.input(1 + i) for i in range(n)]
    xs = [ctx.input(1 + n + j) for j in range(k)]
    if any(v is None for v in states + xs):
        raise ctx.fail("Scan inputs cannot be empty")
    types = [_ranked(ctx, v, "a Scan input") for v in states + xs]
    if any(len(t.shape) < 1 for t in types) or any(len(t.shape) < 2 for t in types[n:]):
        raise ctx.fail("opset-8 Scan takes states with a batch axis and scan inputs with batch and sequence axes")
    if ctx.has(0):
        _check_full_lengths(ctx, types[n].shape[1])
    directions = _axes_attr(ctx, "directions", k)
    batch = _length(ctx, ctx.b, xs[0], 0)

    def outer(rb: Builder, i: Value, cond: Value) -> list[Value]:
        picked = [op_in(ctx, rb, "ember.gather", v, i, axis=0) for v in states + xs]
        outs = _scan(ctx, rb, body, picked[:n], picked[n:], [0] * k, directions, [0] * m, [0] * m)
        return [cond, *outs]

    block = Block([i64[()], boolean[()]])
    rb = Builder(module=ctx.b.module, block=block)
    try:
        block.set_outputs(outer(rb, *block.args))
    except NodeError:
        _discard(block)
        raise
    return list(ctx.op("ember.loop", batch, None, body=block))


def _check_full_lengths(ctx: NodeContext, length: Dim) -> None:
    """Opset 8's sequence_lens: supported when every entry is the full length."""
    lens = ctx.const(0)
    if lens is None or not isinstance(length, int) or not np.all(np.asarray(lens) == length):
        raise ctx.unsupported("sequence_lens shorter than the scan axis (per-batch lengths) are not supported")


def _ranked(ctx: NodeContext, v: Value, what: str) -> TensorType:
    t = v.type
    if not isinstance(t, TensorType) or t.shape is None:
        raise ctx.fail(f"{what} must be a ranked tensor, got {t}")
    return t


def _length(ctx: NodeContext, b: Builder, v: Value, axis: int) -> Value:
    """The length of `v` along `axis` as an i64 scalar value (a constant when static)."""
    d = _ranked(ctx, v, "a scanned tensor").shape[axis]
    if isinstance(d, int):
        return ctx.constant(np.array(d, np.int64))
    dims = op_in(ctx, b, "ember.shape", v, start=axis, end=axis + 1)
    return op_in(ctx, b, "ember.reshape", dims, shape=())


def _reverse(ctx: NodeContext, b: Builder, v: Value) -> Value:
    return op_in(ctx, b, "ember.slice", v, starts=(-1,), ends=(-(2 ** 63),), axes=(0,), steps=(-1,))


def _scan(ctx: NodeContext, b: Builder, body: GraphProto, states: list[Value], xs: list[Value],
          in_axes: list[int], in_dirs: list[int], out_axes: list[int], out_dirs: list[int]) -> list[Value]:
    """ONNX Scan (opset 9 form) as an ember.loop emitted with `b`; returns the final
    states, then the scan outputs."""
    n = len(states)
    moved: list[Value] = []
    for j, (x, axis, direction) in enumerate(zip(xs, in_axes, in_dirs)):
        rank = len(_ranked(ctx, x, f"scan input {j}").shape)
        if not -rank <= axis < rank:
            raise ctx.fail(f"scan_input_axes[{j}] = {axis} is out of range for rank {rank}")
        axis %= rank
        if axis:
            x = op_in(ctx, b, "ember.transpose", x, perm=(axis, *[a for a in range(rank) if a != axis]))
        if direction not in (0, 1):
            raise ctx.fail(f"scan_input_directions[{j}] must be 0 or 1, got {direction}")
        moved.append(_reverse(ctx, b, x) if direction else x)
    lengths = {t.shape[0] for t in (_ranked(ctx, x, "") for x in moved)}
    if len({d for d in lengths if isinstance(d, int)}) > 1:
        raise ctx.fail(f"the scan inputs differ in length along their scan axes: {sorted(map(str, lengths))}")
    trip = _length(ctx, b, moved[0], 0)

    def bind(rb: Builder, args: Sequence[Value]) -> list[Value]:
        i = args[0]
        elements = [op_in(ctx, rb, "ember.gather", x, i, axis=0) for x in moved]
        return [*args[2:], *elements]

    block = carried_body(ctx, body, [v.type for v in states], bind, lead=[i64[()], boolean[()]],
                         finish=lambda rb, args, outs: ([args[1]], outs[:n], outs[n:]))
    results = list(op_in(ctx, b, "ember.loop", trip, None, *states, body=block))
    finals, scans = results[:n], results[n:]
    shaped = []
    for k, (y, axis, direction) in enumerate(zip(scans, out_axes, out_dirs)):
        if direction not in (0, 1):
            raise ctx.fail(f"scan_output_directions[{k}] must be 0 or 1, got {direction}")
        if direction:
            y = _reverse(ctx, b, y)
        rank = len(_ranked(ctx, y, f"scan output {k}").shape)
        if not -rank <= axis < rank:
            raise ctx.fail(f"scan_output_axes[{k}] = {axis} is out of range for rank {rank}")
        axis %= rank
        if axis:
            perm = (*range(1, axis + 1), 0, *range(axis + 1, rank))
            y = op_in(ctx, b, "ember.transpose", y, perm=perm)
        shaped.append(y)
    return [*finals, *shaped]
