"""Sequence and optional ONNX ops, onto ember.sequence_* and ember.optional*.

Sequences and optionals are host values (lists and None-or-value in the
interpreter). Positions stay operands (they are data); SplitToSequence's split
becomes an attribute, read at build time like Split's. SequenceMap has no
converter: ONNX defines it as a function (a Loop over SequenceAt and
SequenceInsert), which the importer expands.
"""

from __future__ import annotations

from typing import Any

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.frontends.onnx.tensors import element_type
from ember.ir.types import OptionalType, SequenceType, TensorType, boolean, i64


@converter("SequenceConstruct", since=11)
def sequence_construct(ctx: NodeContext) -> Any:
    return ctx.op("ember.sequence_construct", *[v for v in ctx.inputs() if v is not None])


@converter("SequenceEmpty", since=11)
def sequence_empty(ctx: NodeContext) -> Any:
    code = ctx.attr("dtype")
    dt = element_type(code, f"{ctx.name}: attribute 'dtype'") if code is not None else None
    return ctx.op("ember.sequence_empty", dtype=dt)


@converter("SequenceAt", since=11)
def sequence_at(ctx: NodeContext) -> Any:
    return ctx.op("ember.sequence_at", ctx.input(0), _position(ctx, 1))


@converter("SequenceInsert", since=11)
def sequence_insert(ctx: NodeContext) -> Any:
    return ctx.op("ember.sequence_insert", ctx.input(0), ctx.input(1), _position(ctx, 2))


@converter("SequenceErase", since=11)
def sequence_erase(ctx: NodeContext) -> Any:
    return ctx.op("ember.sequence_erase", ctx.input(0), _position(ctx, 1))


@converter("SequenceLength", since=11)
def sequence_length(ctx: NodeContext) -> Any:
    return ctx.op("ember.sequence_length", ctx.input(0))


def _position(ctx: NodeContext, i: int) -> Any:
    """A position operand as the scalar Ember takes (ONNX allows a one-element tensor)."""
    if not ctx.has(i):
        return None
    t = ctx.tensor_type(i)
    v = ctx.input(i)
    if t.shape is not None and t.shape != () and all(d == 1 for d in t.shape):
        v = ctx.op("ember.reshape", v, shape=())
    return v


@converter("SplitToSequence", since=11)
def split_to_sequence(ctx: NodeContext) -> Any:
    axis = ctx.attr("axis", 0)
    keepdims = bool(ctx.attr("keepdims", 1))
    if not ctx.has(1):
        return ctx.op("ember.split_to_sequence", ctx.input(0), axis=axis, keepdims=keepdims)
    split_type = ctx.tensor_type(1)
    if split_type.shape == ():
        (size,) = ctx.static_ints(1, "split (the chunk length)", count=1)
        return ctx.op("ember.split_to_sequence", ctx.input(0), axis=axis, chunk_size=size)
    sizes = ctx.dims(1, "split (the part lengths)")
    # ONNX ignores keepdims when a split is given.
    return ctx.op("ember.split_to_sequence", ctx.input(0), axis=axis, split=tuple(sizes))


@converter("ConcatFromSequence", since=11)
def concat_from_sequence(ctx: NodeContext) -> Any:
    if not ctx.has_attr("axis"):
        raise ctx.fail("ConcatFromSequence needs the axis attribute")
    return ctx.op("ember.concat_from_sequence", ctx.input(0), axis=ctx.attr("axis"),
                  new_axis=bool(ctx.attr("new_axis", 0)))


# -- optionals ----------------------------------------------------------------------------------
@converter("Optional", since=15)
def optional(ctx: NodeContext) -> Any:
    if ctx.has(0):
        return ctx.op("ember.optional", ctx.input(0))
    tp = ctx.attr("type")
    if tp is None:
        raise ctx.fail("an Optional without an input needs the type attribute")
    element = ctx.importer.value_type(tp, f"{ctx.name}: attribute 'type'", ctx.node.output[0])
    return ctx.op("ember.optional", type=element)


@converter("OptionalHasElement", since=15)
def optional_has_element(ctx: NodeContext) -> Any:
    return ctx.op("ember.optional_has_element", ctx.input(0) if ctx.has(0) else None)


@converter("OptionalGetElement", since=15)
def optional_get_element(ctx: NodeContext) -> Any:
    t = ctx.type(0)
    if ctx.opset < 18 and not isinstance(t, OptionalType):
        raise ctx.fail(f"before opset 18 OptionalGetElement takes an optional, got {t}")
    if isinstance(t, TensorType) or (t is not None and not isinstance(t, OptionalType)):
        return ctx.input(0)  # a tensor or sequence is its own element
    return ctx.op("ember.optional_get_element", ctx.input(0))


# -- SequenceMap ------------------------------------------------------------------------------------
@converter("SequenceMap", since=17)
def sequence_map(ctx: NodeContext) -> Any:
    """An ember.loop over the first sequence's length: each iteration gives the body
    element i of every sequence input (tensor inputs as they are) and appends its
    outputs to one sequence each. (ONNX defines SequenceMap as a function of this
    shape; converting it here keeps its body's outer names, which an expansion renames.)"""
    from ember.frontends.onnx.ops.control import carried_body, op_in  # the loop machinery

    body = ctx.subgraph("body")
    inputs = ctx.inputs()
    if not inputs or not isinstance(ctx.type(0), SequenceType):
        raise ctx.fail(f"the first input must be a sequence, got {ctx.type(0)}")
    if len(body.input) != len(inputs):
        raise ctx.fail(f"the body takes {len(body.input)} inputs; the node gives {len(inputs)}")
    empties = []
    for k, vi in enumerate(body.output):
        elem = vi.type.tensor_type.elem_type if vi.type.WhichOneof("value") == "tensor_type" else 0
        if not elem:
            raise ctx.unsupported(f"body output {k} ({vi.name!r}) must be declared a tensor with an element type")
        empties.append(ctx.op("ember.sequence_empty", dtype=element_type(elem, f"{ctx.name}: body output {k}")))

    def bind(rb: Any, args: Any) -> list[Any]:
        i = args[0]
        return [op_in(ctx, rb, "ember.sequence_at", v, i) if isinstance(v.type, SequenceType) else v
                for v in inputs]

    def append(rb: Any, args: Any, outs: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
        inserted = [op_in(ctx, rb, "ember.sequence_insert", acc, y) for acc, y in zip(args[2:], outs)]
        return [args[1]], inserted, []

    block = carried_body(ctx, body, [e.type for e in empties], bind, lead=[i64[()], boolean[()]], finish=append)
    length = ctx.op("ember.sequence_length", inputs[0])
    return list(ctx.op("ember.loop", length, None, *empties, body=block))
