"""Partial evaluation of integer shape arithmetic.

Exported graphs compute the arguments of reshape, expand, slice and friends
at run time: `Shape -> Gather -> Concat -> Reshape`, `Shape -> Mul -> Unsqueeze`.
Ember wants those arguments as (possibly symbolic) attributes, so frontends and
the canonicalizer ask here what such a value is: a `ShapeValue` holds the
elements of a 0-d or 1-d integer tensor as dims (ints or symbolic
expressions). The rules cover the ops shape code is made of; anything else is
unknown (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ember.ir.dims import Dim, DimExpr, Unknown, add, ceildiv, dmax, dmin, floordiv, mod, mul
from ember.ir.opdef import Op
from ember.ir.types import TensorType


@dataclass(frozen=True)
class ShapeValue:
    """A small integer tensor (rank 0 or 1) whose elements are known as dims."""

    elements: tuple[Dim, ...]
    shape: tuple[int, ...]

    @staticmethod
    def of(array: np.ndarray) -> "ShapeValue | None":
        a = np.asarray(array)
        if a.ndim > 1 or a.dtype.kind not in "iub" or a.size > 64:
            return None
        return ShapeValue(tuple(int(x) for x in a.ravel()), a.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(e, int) for e in self.elements)

    def to_array(self, dtype: np.dtype = np.dtype(np.int64)) -> np.ndarray | None:
        if not self.is_static:
            return None
        return np.array(self.elements, dtype=dtype).reshape(self.shape)


Rule = Callable[[Op, Sequence["ShapeValue | None"]], "ShapeValue | None"]
RULES: dict[str, Rule] = {}


def rule(*names: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for n in names:
            RULES[n] = fn
        return fn
    return register


def evaluate(op: Op, operands: Sequence["ShapeValue | None"],
             type_of: Callable[[Any], Any] | None = None) -> "ShapeValue | None":
    """What `op` computes, if its (single) result is a small integer known as dims. `type_of`
    gives the types that ember.shape and ember.size read (default: the IR's; the lowerer's
    know the sizes bound at run time as symbols)."""
    fn = RULES.get(op.name)
    if type_of is not None and op.name in ("ember.shape", "ember.size"):
        fn = lambda op, args: SHAPE_OF[op.name](op, type_of(op.operands[0]))  # noqa: E731
    if fn is None or len(op.results) != 1:
        return None
    t = op.results[0].type
    if not isinstance(t, TensorType) or not (t.dtype.is_int or t.dtype.kind == "bool") or t.shape is None \
            or len(t.shape) > 1:
        return None
    try:
        out = fn(op, operands)
    except (ValueError, TypeError, IndexError, ZeroDivisionError, ArithmeticError):
        return None
    if out is None or any(isinstance(e, Unknown) for e in out.elements):
        return None
    return out


@rule("ember.shape")
def _shape(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    return _shape_of(op, op.operands[0].type)  # type: ignore[union-attr]


@rule("ember.size")
def _size(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    return _size_of(op, op.operands[0].type)  # type: ignore[union-attr]


def _shape_of(op: Op, t: Any) -> ShapeValue | None:
    if not isinstance(t, TensorType) or t.shape is None:
        return None
    rank = len(t.shape)
    start = op.attributes["start"]
    end = op.attributes["end"]
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = rank if end is None else max(0, min(rank, end + rank if end < 0 else end))
    dims = tuple(t.shape[start:end])
    return ShapeValue(dims, (len(dims),))


def _size_of(op: Op, t: Any) -> ShapeValue | None:
    if not isinstance(t, TensorType) or t.shape is None:
        return None
    total: Dim = 1
    for d in t.shape:
        total = mul(total, d)
    return ShapeValue((total,), ())


SHAPE_OF: dict[str, Callable[[Op, Any], ShapeValue | None]] = {"ember.shape": _shape_of, "ember.size": _size_of}


@rule("ember.identity", "ember.cast")
def _same(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    return args[0]


@rule("ember.reshape", "ember.squeeze", "ember.unsqueeze", "ember.flatten")
def _view(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    x = args[0]
    if x is None:
        return None
    out = op.results[0].type.shape  # type: ignore[attr-defined]
    if len(out) == 0 and len(x.elements) == 1:
        return ShapeValue(x.elements, ())
    if len(out) == 1 and out[0] == len(x.elements):
        return ShapeValue(x.elements, (len(x.elements),))
    return None


@rule("ember.concat")
def _concat(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    if any(a is None or a.shape == () for a in args):
        return None
    elements = tuple(e for a in args for e in a.elements)  # type: ignore[union-attr]
    return ShapeValue(elements, (len(elements),))


def _index(i: int, n: int) -> int:
    if not -n <= i < n:
        raise IndexError(i)
    return i % n


@rule("ember.gather")
def _gather(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    data, idx = args
    if data is None or idx is None or data.shape == () or not idx.is_static:
        return None
    n = len(data.elements)
    picked = tuple(data.elements[_index(int(i), n)] for i in idx.elements)
    return ShapeValue(picked, idx.shape)


@rule("ember.slice")
def _slice(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    data = args[0]
    if data is None or data.shape == ():
        return None
    starts, ends = op.attributes["starts"], op.attributes["ends"]
    steps = op.attributes["steps"] or (1,) * len(starts)
    if len(starts) != 1 or not all(isinstance(v, int) for v in (starts[0], ends[0], steps[0])):
        return None
    picked = tuple(data.elements[slice(starts[0], ends[0], steps[0])])
    return ShapeValue(picked, (len(picked),))


@rule("ember.reduce_prod", "ember.reduce_sum")
def _reduce(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    """The product or sum of a vector of dims (Keras' Tensordot multiplies the free dims)."""
    x = args[0]
    axes = op.attributes["axes"]
    if x is None or x.shape == () or (axes is not None and list(axes) not in ([0], [-1])):
        return None
    total: Dim = 1 if op.name == "ember.reduce_prod" else 0
    for e in x.elements:
        total = mul(total, e) if op.name == "ember.reduce_prod" else add(total, e)
    return ShapeValue((total,), (1,) if op.attributes["keepdims"] else ())


def _broadcast(a: ShapeValue, b: ShapeValue, fn: Callable[[Dim, Dim], Dim]) -> ShapeValue:
    na, nb = len(a.elements), len(b.elements)
    if na != nb and 1 not in (na, nb):
        raise ValueError("shapes do not broadcast")
    n = max(na, nb)
    xs = a.elements * n if na == 1 else a.elements
    ys = b.elements * n if nb == 1 else b.elements
    shape = () if a.shape == () and b.shape == () else (n,)
    return ShapeValue(tuple(fn(x, y) for x, y in zip(xs, ys)), shape)


def _truncdiv(a: Dim, b: Dim) -> Dim:
    """Integer division toward zero (ONNX/C); exact on the nonnegative sizes shapes hold."""
    if isinstance(a, int) and isinstance(b, int):
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    return floordiv(a, b)  # symbolic sizes are nonnegative, where the two agree


def _binary(fn: Callable[[Dim, Dim], Dim]) -> Rule:
    def apply(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
        a, b = args
        if a is None or b is None:
            return None
        return _broadcast(a, b, fn)
    return apply


RULES["ember.add"] = _binary(add)
RULES["ember.sub"] = _binary(lambda a, b: add(a, mul(b, -1)))
RULES["ember.mul"] = _binary(mul)
RULES["ember.div"] = _binary(_truncdiv)
RULES["ember.mod"] = _binary(lambda a, b: mod(a, b))
RULES["ember.max"] = _binary(dmax)
RULES["ember.min"] = _binary(dmin)


def _equal(a: Dim, b: Dim) -> Dim:
    """1 or 0 where known: sizes are >= 0, so a symbolic dim never equals a negative int."""
    if a == b:
        return 1
    if isinstance(a, int) and isinstance(b, int):
        return 0
    if isinstance(a, int) and a < 0 or isinstance(b, int) and b < 0:
        return 0
    raise ValueError("equality of symbolic dims is not known")


RULES["ember.equal"] = _binary(_equal)


@rule("ember.where")
def _where(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    cond, x, y = args
    if cond is None or x is None or y is None or not cond.is_static:
        return None
    n = max(len(cond.elements), len(x.elements), len(y.elements))
    pick = []
    for i in range(n):
        c = cond.elements[i if len(cond.elements) > 1 else 0]
        src = x if c else y
        pick.append(src.elements[i if len(src.elements) > 1 else 0])
    shape = () if all(v.shape == () for v in (cond, x, y)) else (n,)
    return ShapeValue(tuple(pick), shape)


@rule("ember.expand")
def _expand(op: Op, args: Sequence[ShapeValue | None]) -> ShapeValue | None:
    x = args[0]
    out = op.results[0].type.shape  # type: ignore[attr-defined]
    if x is None or len(out) != 1 or not isinstance(out[0], int) or len(x.elements) != 1:
        return None
    return ShapeValue(x.elements * out[0], (out[0],))


def is_symbolic(value: ShapeValue) -> bool:
    return any(isinstance(e, DimExpr) for e in value.elements)


def range_length(start: ShapeValue | None, limit: ShapeValue | None, delta: ShapeValue | None) -> Dim | None:
    """The length of range(start, limit, delta) as a dim, when the bounds are known as dims
    (range(0, S, 1) from a shape) and the step is static: ceil((limit - start) / delta).
    None when it is data (or all static, which folding handles)."""
    if start is None or limit is None or delta is None or not delta.is_static \
            or not all(len(v.elements) == 1 for v in (start, limit, delta)) \
            or (start.is_static and limit.is_static):
        return None
    step = int(delta.elements[0])
    span = limit.elements[0] - start.elements[0]  # type: ignore[operator]
    if step > 0:
        length = ceildiv(span, step)
    elif step < 0:
        length = ceildiv(-span, -step)  # type: ignore[operator]
    else:
        return None
    return None if isinstance(length, Unknown) else length
