"""Sequences and optionals (ONNX's), host-only values.

A sequence `seq<T>` holds any number of tensors of one element type; its
type says nothing of its length, and its element type covers every element
(dims that may differ between elements are unknown, ranks that may differ make
it unranked). An optional `opt<T>` holds a value of type T or nothing. The
interpreter holds a sequence as a Python list of arrays and an optional as
None or its value. Positions are data (operands, i32 or i64 scalars,
negative counting from the back); split sizes are attributes, as everywhere
in Ember.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.ir import attrs as A
from ember.ir.dims import Dim, DimExpr, Unknown
from ember.ir.opdef import (AnyTensor, AnyType, Attr, HostOnly, IntTensor, Op, Operand, OptionalValue,
                            Pure, Result, SequenceValue, register_op)
from ember.ir.ops import rules
from ember.ir.ops.control import join_types
from ember.ir.types import DType, OptionalType, SequenceType, TensorType, Type, boolean, i64

SEQ = {Pure, HostOnly}


def _element(op: Op, seq: Type) -> Type:
    if not isinstance(seq, SequenceType):
        raise op.error(f"input_sequence must be a sequence, got {seq}")
    return seq.element


def _position_type(op: Op, t: Type | None) -> None:
    if t is None:
        return
    if not (isinstance(t, TensorType) and t.dtype.name in ("i32", "i64") and t.shape == ()):
        raise op.error(f"position must be an i32 or i64 scalar, got {t}")


def _position(position: np.ndarray, n: int, allow_end: bool) -> int:
    """Normalize a position into the sequence (n: its length); raise when out of range."""
    p = int(np.asarray(position).reshape(()))
    hi = n if allow_end else n - 1
    if not -n <= p <= hi:
        raise IndexError(f"position {p} is out of range for a sequence of {n} tensors "
                         f"(accepted: {-n}..{hi})")
    return p + n if p < 0 else p


def _unbound(t: Type) -> Type:
    """`t` with its symbolic dims unknown (they may differ from element to element)."""
    if isinstance(t, TensorType) and t.shape is not None:
        return t.with_shape(Unknown() if isinstance(d, DimExpr) else d for d in t.shape)
    if isinstance(t, (SequenceType, OptionalType)):
        return type(t)(_unbound(t.element))
    return t


def _join_all(op: Op, types: list[Type], what: str) -> Type:
    out = types[0]
    for t in types[1:]:
        joined = join_types(out, t)
        if joined is None:
            raise op.error(f"{what} must share an element type, got {', '.join(map(str, types))}")
        out = joined
    return out


@register_op("ember.sequence_construct", traits=SEQ)
class SequenceConstruct(Op):
    """A sequence of the operands, in order (at least one, of one element type).
    %s = ember.sequence_construct %a, %b : seq<f32[?,3]>"""

    inputs = Operand(AnyTensor, variadic=True)
    out = Result(SequenceValue)

    def infer(self, inputs: tuple[Type, ...]) -> SequenceType:
        if not inputs:
            raise self.error("needs at least one tensor (ember.sequence_empty makes an empty sequence)")
        return SequenceType(_join_all(self, list(inputs), "inputs"))

    @staticmethod
    def reference(inputs: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        return list(inputs)


@register_op("ember.sequence_empty", traits=SEQ)
class SequenceEmpty(Op):
    """An empty sequence of tensors of `dtype` (any shape: its element type is unranked).
    %s = ember.sequence_empty {dtype = i64} : seq<i64[*]>"""

    dtype = Attr(A.DTypeAttr, default="f32")
    out = Result(SequenceValue)

    def infer(self) -> SequenceType:
        return SequenceType(TensorType(self.dtype, None))

    @staticmethod
    def reference(*, dtype: DType) -> list[np.ndarray]:
        return []


@register_op("ember.sequence_at", traits=SEQ)
class SequenceAt(Op):
    """The tensor at `position` (in -n..n-1; out of range is an error).

    Symbolic dims of the element type become unknown in the result: elements
    may differ in them (ONNX models declare a sequence input `seq(float[N])`
    whose elements have different N), so one symbol cannot stand for all.
    %t = ember.sequence_at %s, %p : f32[?,3]"""

    input_sequence = Operand(SequenceValue)
    position = Operand(IntTensor)
    out = Result(AnyType)

    def infer(self, input_sequence: Type, position: Type) -> Type:
        _position_type(self, position)
        return _unbound(_element(self, input_sequence))

    @staticmethod
    def reference(input_sequence: list[np.ndarray], position: np.ndarray) -> np.ndarray:
        return input_sequence[_position(position, len(input_sequence), allow_end=False)]


@register_op("ember.sequence_insert", traits=SEQ)
class SequenceInsert(Op):
    """A new sequence with `tensor` inserted before `position` (in -n..n;
    absent: at the back). Its element type covers the old elements and the new one.
    %s2 = ember.sequence_insert %s, %t : seq<f32[?,3]>"""

    input_sequence = Operand(SequenceValue)
    tensor = Operand(AnyTensor)
    position = Operand(IntTensor, optional=True)
    out = Result(SequenceValue)

    def infer(self, input_sequence: Type, tensor: Type, position: Type | None) -> SequenceType:
        _position_type(self, position)
        element = _element(self, input_sequence)
        joined = join_types(element, tensor)
        if joined is None:
            raise self.error(f"tensor {tensor} does not match the sequence's element type {element}")
        return SequenceType(joined)

    @staticmethod
    def reference(input_sequence: list[np.ndarray], tensor: np.ndarray,
                  position: np.ndarray | None) -> list[np.ndarray]:
        out = list(input_sequence)
        where = len(out) if position is None else _position(position, len(out), allow_end=True)
        out.insert(where, tensor)
        return out


@register_op("ember.sequence_erase", traits=SEQ)
class SequenceErase(Op):
    """A new sequence without the tensor at `position` (in -n..n-1; absent: the last).
    %s2 = ember.sequence_erase %s, %p : seq<f32[?,3]>"""

    input_sequence = Operand(SequenceValue)
    position = Operand(IntTensor, optional=True)
    out = Result(SequenceValue)

    def infer(self, input_sequence: Type, position: Type | None) -> Type:
        _position_type(self, position)
        _element(self, input_sequence)
        return input_sequence

    @staticmethod
    def reference(input_sequence: list[np.ndarray], position: np.ndarray | None) -> list[np.ndarray]:
        out = list(input_sequence)
        if not out:
            raise IndexError("cannot erase from an empty sequence")
        where = len(out) - 1 if position is None else _position(position, len(out), allow_end=False)
        del out[where]
        return out


@register_op("ember.sequence_length", traits=SEQ)
class SequenceLength(Op):
    """The number of tensors in the sequence, as an i64 scalar.
    %n = ember.sequence_length %s : i64[]"""

    input_sequence = Operand(SequenceValue)
    out = Result(AnyTensor)

    def infer(self, input_sequence: Type) -> TensorType:
        _element(self, input_sequence)
        return i64[()]  # type: ignore[return-value]

    @staticmethod
    def reference(input_sequence: list[np.ndarray]) -> np.ndarray:
        return np.array(len(input_sequence), dtype=np.int64)


@register_op("ember.split_to_sequence", traits=SEQ)
class SplitToSequence(Op):
    """Split a tensor along `axis` into a sequence (ONNX SplitToSequence).

    `split`: the length of each part (>= 0, summing to the axis' length);
    `chunk_size`: parts of that length, the last one shorter when it does not
    divide the axis (ONNX's scalar split); neither: parts of length 1, and
    `keepdims=false` drops the split axis from them. ONNX ignores keepdims
    when a split is given; here it must then stay true.
    %s = ember.split_to_sequence %x {axis = 1, split = [2, 2]} : seq<f32[3,2]>"""

    x = Operand(AnyTensor)
    axis = Attr(A.Int, default=0)
    keepdims = Attr(A.Bool, default=True)
    split = Attr(A.Optional(A.Dims), default=None, doc="part lengths; exclusive with chunk_size")
    chunk_size = Attr(A.Optional(A.Int), default=None, doc="equal parts, the last may be shorter")
    out = Result(SequenceValue)

    def infer(self, x: Type) -> SequenceType:
        x = rules.ranked(self, x, "x")
        if x.rank == 0:
            raise self.error("cannot split a scalar")
        axis = rules.axis(self, self.axis, x.rank)
        dim = x.shape[axis]  # type: ignore[index]
        if self.split is not None and self.chunk_size is not None:
            raise self.error("give at most one of split and chunk_size")
        if not self.keepdims and (self.split is not None or self.chunk_size is not None):
            raise self.error("keepdims=false only applies without split and chunk_size")
        shape: list[Dim] = list(x.shape)  # type: ignore[arg-type]
        if self.split is not None:
            if any(isinstance(s, int) and s < 0 for s in self.split):
                raise self.error(f"split lengths must be >= 0, got {list(self.split)}")
            if not self.split:
                raise self.error("split needs at least one length")
            total: Dim = 0
            for s in self.split:
                total = total + s
            if isinstance(total, int) and isinstance(dim, int) and total != dim:
                raise self.error(f"split {list(self.split)} sums to {total}; axis {self.axis} has length {dim}")
            shape[axis] = self.split[0] if all(s == self.split[0] for s in self.split) else Unknown()
        elif self.chunk_size is not None:
            c = self.chunk_size
            if c < 1:
                raise self.error(f"chunk_size must be >= 1, got {c}")
            shape[axis] = c if isinstance(dim, int) and dim % c == 0 else Unknown(c)
        elif self.keepdims:
            shape[axis] = 1
        else:
            del shape[axis]
        return SequenceType(x.with_shape(shape))

    @staticmethod
    def reference(x: np.ndarray, *, axis: int, keepdims: bool, split: tuple[int, ...] | None,
                  chunk_size: int | None) -> list[np.ndarray]:
        axis = axis % x.ndim
        n = x.shape[axis]
        if split is not None:
            lengths = [int(s) for s in split]
            if sum(lengths) != n:
                raise ValueError(f"split {lengths} sums to {sum(lengths)}; axis {axis} has length {n}")
        elif chunk_size is not None:
            lengths = [chunk_size] * (n // chunk_size) + ([n % chunk_size] if n % chunk_size else [])
        else:
            lengths = [1] * n
        bounds = np.cumsum([0] + lengths)
        parts = [np.take(x, np.arange(lo, hi), axis=axis) for lo, hi in zip(bounds[:-1], bounds[1:])]
        if split is None and chunk_size is None and not keepdims:
            parts = [np.squeeze(p, axis=axis) for p in parts]
        return parts


@register_op("ember.concat_from_sequence", traits=SEQ)
class ConcatFromSequence(Op):
    """Concatenate a (non-empty) sequence along `axis`, or stack it along a new
    axis with `new_axis` (then axis ranges over -r-1..r). The joined axis has
    unknown length: the type does not know how many tensors there are.
    %y = ember.concat_from_sequence %s {axis = 0, new_axis = true} : f32[?,2,3]"""

    input_sequence = Operand(SequenceValue)
    axis = Attr(A.Int)
    new_axis = Attr(A.Bool, default=False)
    out = Result(AnyTensor)

    def infer(self, input_sequence: Type) -> TensorType:
        element = _element(self, input_sequence)
        if not isinstance(element, TensorType):
            raise self.error(f"the sequence must hold tensors, it holds {element}")
        if element.shape is None:
            return element
        rank = element.rank + (1 if self.new_axis else 0)
        if rank == 0:
            raise self.error("cannot concatenate scalars without new_axis=true")
        axis = rules.axis(self, self.axis, rank)
        shape = list(element.shape)
        if self.new_axis:
            shape.insert(axis, Unknown())
        else:
            shape[axis] = Unknown()
        return element.with_shape(shape)

    @staticmethod
    def reference(input_sequence: list[np.ndarray], *, axis: int, new_axis: bool) -> np.ndarray:
        if not input_sequence:
            raise ValueError("cannot concatenate an empty sequence")
        if new_axis:
            return np.stack(input_sequence, axis=axis)
        return np.concatenate(input_sequence, axis=axis)


# -- optionals --------------------------------------------------------------------------
@register_op("ember.optional", traits=SEQ)
class Optional(Op):
    """An optional holding the operand, or an empty optional of `type`
    (exactly one of the two).
    %o = ember.optional {type = f32[2]} : opt<f32[2]>"""

    x = Operand(AnyType, optional=True)
    elem_type = Attr(A.Optional(A.TypeAttr), default=None, key="type")
    out = Result(OptionalValue)

    def infer(self, x: Type | None) -> OptionalType:
        if (x is None) == (self.elem_type is None):
            raise self.error("give exactly one of an operand (a full optional) and type (an empty one)")
        element = x if x is not None else self.elem_type
        if isinstance(element, OptionalType):
            raise self.error(f"an optional cannot hold an optional ({element})")
        return OptionalType(element)

    @staticmethod
    def reference(x: Any, **attrs: Any) -> Any:
        return x


@register_op("ember.optional_has_element", traits=SEQ)
class OptionalHasElement(Op):
    """True when the optional holds a value; a tensor or sequence operand is
    always true, an absent operand false (ONNX's rules).
    %b = ember.optional_has_element %o : bool[]"""

    x = Operand(AnyType, optional=True)
    out = Result(AnyTensor)

    def infer(self, x: Type | None) -> TensorType:
        return boolean[()]  # type: ignore[return-value]

    @staticmethod
    def reference(x: Any) -> np.ndarray:
        return np.array(x is not None)


@register_op("ember.optional_get_element", traits=SEQ)
class OptionalGetElement(Op):
    """The value an optional holds (an error when it is empty); a tensor or
    sequence operand is returned as it is.
    %t = ember.optional_get_element %o : f32[2]"""

    x = Operand(AnyType)
    out = Result(AnyType)

    def infer(self, x: Type) -> Type:
        return x.element if isinstance(x, OptionalType) else x

    @staticmethod
    def reference(x: Any) -> Any:
        if x is None:
            raise ValueError("the optional is empty")
        return x


__all__ = ["SequenceConstruct", "SequenceEmpty", "SequenceAt", "SequenceInsert", "SequenceErase",
           "SequenceLength", "SplitToSequence", "ConcatFromSequence", "Optional", "OptionalHasElement",
           "OptionalGetElement"]
