"""Loops, branches and TensorLists, resolved at build time.

Keras' recurrent layers (LSTM, GRU, SimpleRNN) export as a While loop over the time
steps: the input is a TensorList made from the time-major sequence, the outputs are
collected in a TensorList reserved for them, and the loop's condition compares the step
and a counter with constants. Such a loop has a trip count known at build time, and the
importer unrolls it: it evaluates the condition function on the loop variables (the
counters fold to constants) and, while it holds, imports the body function once more with
the previous iteration's results. TensorLists become Python lists of imported values
(`TensorList`), read and written at indices known at build time; stacking one emits a
concat. An If whose predicate is known at build time imports the branch taken.

A loop or branch whose condition depends on the data is reported as unsupported (Ember's
ember.loop/ember.if would run it from the host; that import is future work).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.savedmodel import recurrent
from ember.frontends.savedmodel.importer import STRUCTURAL, NodeError, SavedModelImporter, TensorList, TFValue
from ember.frontends.savedmodel.protos import entries
from ember.ir.builder import Builder
from ember.ir.staging import Slot

MAX_UNROLL = 4096


def structural(*ops: str, inputs: int = 0) -> Any:
    """Register `fn` for `ops`; a node with fewer than `inputs` data inputs fails before it runs."""
    def register(fn: Any) -> Any:
        def checked(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
            if len(ins) < inputs:
                raise NodeError(f"takes {inputs} input{'s' if inputs != 1 else ''}, has {len(ins)}")
            return fn(importer, node, ins, b)
        for op in ops:
            STRUCTURAL[op] = checked
        return fn
    return register


def _known(importer: SavedModelImporter, value: TFValue, what: str) -> np.ndarray:
    if isinstance(value, Slot):
        if value.const is not None:
            return value.const
        if value.value is not None and value.value in importer.known:
            return importer.known[value.value]
    raise NodeError(f"{what} must be known at build time (it depends on the model's inputs)", unsupported=True)


def _scalar(importer: SavedModelImporter, value: TFValue, what: str) -> Any:
    """The one element of a build-time value (a loop's condition, a branch's predicate, an index)."""
    known = np.asarray(_known(importer, value, what))
    if known.size != 1:
        raise NodeError(f"{what} must be one value; it has {known.size}")
    return known.reshape(()).item()


def _index(importer: SavedModelImporter, value: TFValue, size: int, what: str) -> int:
    i = int(_scalar(importer, value, what))
    if not -size <= i < size:
        raise NodeError(f"{what} {i} is out of range for a TensorList of {size} elements")
    return i % size


def _tensor_list(value: TFValue) -> TensorList:
    if not isinstance(value, TensorList):
        raise NodeError("expects a TensorList")
    return value


# -- control flow -----------------------------------------------------------------------------
@structural("While", "StatelessWhile")
def while_loop(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    cond, body = _function(node, "cond"), _function(node, "body")
    fused = recurrent.fuse(importer, body, ins, b, node.name)  # a Keras LSTM, GRU or SimpleRNN layer
    if fused is not None:
        return fused
    state = list(ins)
    for _ in range(MAX_UNROLL + 1):
        (flag,) = importer.call(cond, state, b)[:1]
        if not bool(_scalar(importer, flag, "the loop's condition")):
            return state
        state = importer.call(body, state, b)
    raise NodeError(f"the loop runs more than {MAX_UNROLL} iterations; Ember unrolls loops at build time",
                    unsupported=True)


@structural("If", "StatelessIf", inputs=1)
def if_(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    taken = bool(_scalar(importer, ins[0], "the branch's predicate"))
    return importer.call(_function(node, "then_branch" if taken else "else_branch"), ins[1:], b)


def _function(node: Any, attr: str) -> str:
    """The name of the function in attribute `attr` of a While or If."""
    value = entries(node.attr).get(attr)
    if value is None or value.WhichOneof("value") != "func":
        raise NodeError(f"attribute {attr!r} names no function")
    return value.func.name


# -- TensorLists -------------------------------------------------------------------------------
@structural("TensorListReserve", inputs=2)
def reserve(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    n = int(_scalar(importer, ins[1], "num_elements"))
    if n < 0:
        raise NodeError("a TensorList of unknown length (num_elements -1)", unsupported=True)
    return [TensorList([None] * n)]


@structural("EmptyTensorList")
def empty(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    return [TensorList([])]


@structural("TensorListFromTensor", inputs=1)
def from_tensor(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    x = ins[0]
    if not isinstance(x, Slot):
        raise NodeError("expects a tensor")
    v = importer.materialize(x, node.input[0])
    n = v.type.shape[0] if v.type.shape else None
    if not isinstance(n, int):
        raise NodeError(f"a TensorList from a tensor of {v.type}: its leading dim must be static", unsupported=True)
    items = []
    for i in range(n):
        piece = b.op("ember.slice", v, starts=(i,), ends=(i + 1,), axes=(0,), loc=node.name)
        items.append(_bound(importer, b.op("ember.squeeze", piece, axes=(0,), loc=node.name)))
    return [TensorList(items, source=Slot(value=v))]


def _bound(importer: SavedModelImporter, v: Any) -> Slot:
    importer.fold([v.owner.operands[0].owner, v.owner])
    return Slot(value=v, const=importer.known.get(v))


@structural("TensorListGetItem", inputs=2)
def get_item(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    lst = _tensor_list(ins[0])
    i = _index(importer, ins[1], len(lst.items), "the index")
    item = lst.items[i] if lst.items[i] is not None or lst.source is None else _slice(importer, lst, i, b, node.name)
    if item is None:
        raise NodeError(f"reads element {i} of a TensorList before it is written")
    return [item]


def _slice(importer: SavedModelImporter, lst: TensorList, i: int, b: Builder, loc: str) -> Slot:
    """Element i of a TensorList that holds its source tensor's leading slices (a recurrent op's outputs)."""
    v = importer.materialize(lst.source, loc)  # type: ignore[arg-type]
    piece = b.op("ember.slice", v, starts=(i,), ends=(i + 1,), axes=(0,), loc=loc)
    return _bound(importer, b.op("ember.squeeze", piece, axes=(0,), loc=loc))


@structural("TensorListSetItem", inputs=3)
def set_item(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    lst = _tensor_list(ins[0])
    i = _index(importer, ins[1], len(lst.items), "the index")
    if not isinstance(ins[2], Slot):
        raise NodeError("writes something that is not a tensor")
    items = [x if x is not None or lst.source is None else _slice(importer, lst, k, b, node.name)
             for k, x in enumerate(lst.items)]
    items[i] = ins[2]
    return [TensorList(items, lst.dtype)]


@structural("TensorListPushBack", inputs=2)
def push_back(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    lst = _tensor_list(ins[0])
    if not isinstance(ins[1], Slot):
        raise NodeError("pushes something that is not a tensor")
    items = [x if x is not None or lst.source is None else _slice(importer, lst, k, b, node.name)
             for k, x in enumerate(lst.items)]
    return [TensorList(items + [ins[1]], lst.dtype)]


@structural("TensorListLength", inputs=1)
def length(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    return [Slot(const=np.array(len(_tensor_list(ins[0]).items), dtype=np.int32))]


@structural("TensorListStack", inputs=1)
def stack(importer: SavedModelImporter, node: Any, ins: list[TFValue], b: Builder) -> list[TFValue]:
    lst = _tensor_list(ins[0])
    if lst.source is not None and all(item is None for item in lst.items):
        return [lst.source]  # a recurrent op's output sequence, as it is
    if lst.source is not None:
        lst = TensorList([x if x is not None else _slice(importer, lst, k, b, node.name)
                          for k, x in enumerate(lst.items)], lst.dtype)
    if not lst.items or any(item is None for item in lst.items):
        unset = [i for i, item in enumerate(lst.items) if item is None]
        raise NodeError(f"stacks a TensorList with unwritten elements {unset[:8]}" if lst.items
                        else "stacks an empty TensorList", unsupported=True)
    parts = [b.op("ember.unsqueeze", importer.materialize(item, node.name), axes=(0,), loc=node.name)
             for item in lst.items]
    out = parts[0] if len(parts) == 1 else b.op("ember.concat", *parts, axis=0, loc=node.name)
    return [Slot(value=out)]

