"""What an importer knows at build time about the values it emits.

Frontends (ONNX, SavedModel) emit Ember ops one source node at a time. Many
source nodes compute configuration rather than data: a reshape's target shape
made by `Shape -> Gather -> Concat`, a slice's bounds, Keras' Tensordot
bookkeeping. `Staging` keeps, for each emitted value, its numpy value when it
is computable now (constants, weights, anything computed only from them, folded
through the ops' own references) or its elements as symbolic dims (a shape
taken from a tensor with a symbolic batch). Converters then read such values as
Ember attributes, and the shape arithmetic itself is pruned away at the end.

Constants and weights go to a prologue at the start of the function body, where
every block (and every If/Loop region) can see them.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ember.ir import shape_values
from ember.ir.attrs import Dense
from ember.ir.core import Block, Module, Operation, Value
from ember.ir.opdef import REGISTRY, EvalContext, Op, Pure
from ember.ir.shape_values import ShapeValue
from ember.ir.types import DTYPES, TensorType

# Values computed at import time only while they stay this small (elements).
FOLD_LIMIT = 1 << 16
# Constants up to this many elements are inlined as ember.constant; larger ones become weights.
INLINE_CONSTANT_LIMIT = 64


@dataclass
class Slot:
    """What an importer holds for one source value: an emitted Ember value, and/or its
    build-time value (numpy, or symbolic dims); `weight` names it in the weight store."""

    value: Value | None = None
    const: np.ndarray | None = None
    weight: str | None = None
    dims: ShapeValue | None = None


def sanitize_symbol(name: str) -> str:
    """A source model's dim name (an ONNX dim_param, a SavedModel's input and axis) as an Ember
    symbol: an identifier that is no element type name nor a word of the textual form."""
    text = re.sub(r"\W", "_", name.strip()) or "d"
    if text[0].isdigit():
        text = "d_" + text
    if text in DTYPES or text in ("max", "min", "none", "nan", "inf", "true", "false"):
        text = text + "_"
    return text


class SymbolicOnly(ValueError):
    """A value known only as symbolic dims was used as tensor data."""


class Staging:
    """The build-time state of one import into `module` (see the module docstring)."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.known: dict[Value, np.ndarray] = {}
        self.known_dims: dict[Value, ShapeValue] = {}
        self.prologue: Block | None = None
        self.prologue_len = 0
        self._counter = itertools.count()
        self._eval_ctx = EvalContext(env={}, module=module, run_block=self._no_regions)

    @staticmethod
    def _no_regions(block: Block, args: Sequence[Any]) -> tuple:
        raise RuntimeError("regions are not folded at import")

    # -- folding -------------------------------------------------------------------------------
    def fold(self, ops: Sequence[Operation]) -> None:
        """Compute what the newly emitted ops give when their operands are known."""
        for op in ops:
            if not isinstance(op, Op) or op.regions or Pure not in op.traits:
                continue
            operands = [v for v in op.operands if v is not None]
            if all(v in self.known for v in operands) and self._worth_folding(op, operands):
                try:
                    args = [self.known[v] if v is not None else None for v in op.operands]
                    with np.errstate(all="ignore"):
                        values = [np.asarray(val) for val in op.evaluate(args, self._eval_ctx)]
                    if all(val.size <= FOLD_LIMIT for val in values):
                        for r, val in zip(op.results, values):
                            self.known[r] = val
                        continue
                except Exception:  # folding is an optimization: leave it to run time
                    pass
            svs = [self.shape_value_of(v) for v in op.operands if v is not None]
            sv = shape_values.evaluate(op, svs) if len(op.results) == 1 else None
            if sv is not None:
                arr = sv.to_array(op.results[0].type.dtype.np_dtype)  # type: ignore[attr-defined]
                if arr is not None:
                    self.known[op.results[0]] = arr
                else:
                    self.known_dims[op.results[0]] = sv

    def _worth_folding(self, op: Operation, operands: Sequence[Value]) -> bool:
        """Small inputs, and results that are small or of a size only the data decides."""
        if sum(self.known[v].size for v in operands) > FOLD_LIMIT:
            return False
        for r in op.results:
            if not isinstance(r.type, TensorType):
                return False
            if r.type.is_static and int(np.prod(r.type.static_shape, dtype=np.int64)) > FOLD_LIMIT:
                return False
        return True

    def shape_value_of(self, v: Value) -> ShapeValue | None:
        if v in self.known:
            return ShapeValue.of(self.known[v])
        return self.known_dims.get(v)

    # -- constants and weights --------------------------------------------------------------------
    def materialize(self, slot: Slot, name: str) -> Value:
        """The slot's Ember value, emitting its constant or weight on first use."""
        if slot.value is not None:
            return slot.value
        if slot.const is None and slot.dims is not None:
            raise SymbolicOnly(f"{name!r} is known only as symbolic dims {list(slot.dims.elements)}; "
                               "it cannot be used as data")
        assert slot.const is not None
        if slot.weight is not None or slot.const.size > INLINE_CONSTANT_LIMIT:
            slot.value = self.weight(slot.weight or name, slot.const)
        else:
            slot.value = self.constant(slot.const, name)
        return slot.value

    def _prepend(self, op: Op) -> Value:
        assert self.prologue is not None, "set Staging.prologue to the function's body first"
        op.parent = self.prologue
        self.prologue.ops.insert(self.prologue_len, op)
        self.prologue_len += 1
        return op.result

    def constant(self, array: np.ndarray, name: str | None = None) -> Value:
        op = REGISTRY["ember.constant"].create((), {"value": Dense(array)})
        v = self._prepend(op)
        v.name = name
        self.known[v] = op.attributes["value"].array
        return v

    def weight(self, name: str, array: np.ndarray) -> Value:
        store = self.module.weights
        key = name
        if key in store and store[key].data is not array:
            key = f"{name}_{next(self._counter)}"
        if key not in store:
            self.module.add_weight(key, array)
        op = REGISTRY["ember.weight"].create((), {"name": key}, result_types=[store[key].type])
        v = self._prepend(op)
        v.name = name
        self.known[v] = array
        return v

    # -- cleanup -----------------------------------------------------------------------------
    def prune(self, module: Module) -> None:
        """Drop ops nobody uses (shape arithmetic that became attributes), then unused weights."""
        for fn in module.functions.values():
            dead_code(fn.body)
        used = {op.attributes["name"] for op in module.walk() if op.name == "ember.weight"}
        for name in [n for n in module.weights if n not in used]:
            del module.weights[name]


def dead_code(block: Block) -> None:
    """Erase pure ops whose results nobody reads, in `block` and its regions."""
    changed = True
    while changed:
        changed = False
        for op in reversed(list(block.ops)):
            for region in op.regions:
                dead_code(region)
            if isinstance(op, Op) and Pure in op.traits and not any(r.has_uses for r in op.results):
                op.erase()
                changed = True
