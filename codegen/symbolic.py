"""Lowering once for a range of shapes: integers that remember the expression they came from.

The lowerings are ordinary Python over concrete shapes: they multiply dims into
grid sizes, compare sizes to pick a tile, format dims into strides. To make one
lowering serve every shape of an optimization profile without rewriting each of
them over symbolic expressions, the lowerer hands them `SymInt`s: integers with the
value they have at the profile's OPT shape *and* the shape expression (ir/dims.py)
that value came from. Arithmetic keeps the expression (`N*S*768`); anything that
decides on the value records a *guard*, as torch.compile's dynamo does:

- a comparison (`n > 1024`, `d == 1`, `max(a, b)`, `bool(n)`) records the
  comparison and its outcome: the lowering took this branch, which is right for
  every shape where the comparison comes out the same;
- anything that takes the bare integer (`int(n)`, `str(n)`, formatting it into
  CUDA C, `range(n)`, true division) records `expr == value`: the result is
  right only at that value, so the lowering is *specialized* there.

A lowering traced at OPT is then valid exactly where all its guards hold; the
builder (codegen/specialize.py) covers the profile with as few traces as that
allows and checks each one by lowering again at other points. Paths that read the
integer without any hook (numpy converting a list of ints, `json`) lose the
expression silently; that check is what catches them.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Any, Callable, Iterator

from ember.ir import dims as D
from ember.ir.profiles import Guard


class Trace:
    """The guards recorded while lowering one op after another (deduplicated, in order)."""

    def __init__(self) -> None:
        self.guards: dict[tuple[str, str, str], Guard] = {}
        self.origin = ""  # the op being lowered, for the guard's message

    def record(self, lhs: D.Dim, op: str, rhs: D.Dim, outcome: bool) -> None:
        if isinstance(lhs, int) and isinstance(rhs, int):
            return
        if str(lhs) == str(rhs) and op in ("==", "<=", ">="):
            return  # true of every shape
        if not outcome:
            op = _NEGATE[op]
        key = (str(lhs), op, str(rhs))
        if key not in self.guards:
            self.guards[key] = Guard(lhs, op, rhs, self.origin)


_NEGATE = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
            ">=": operator.ge}
_ACTIVE: list[Trace] = []


@contextlib.contextmanager
def tracing(trace: Trace) -> Iterator[Trace]:
    _ACTIVE.append(trace)
    try:
        yield trace
    finally:
        _ACTIVE.pop()


def active() -> Trace | None:
    """The trace guards go to now, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def origin(what: str) -> Iterator[None]:
    """Name the op whose lowering records the next guards."""
    if not _ACTIVE:
        yield
        return
    trace = _ACTIVE[-1]
    before, trace.origin = trace.origin, what
    try:
        yield
    finally:
        trace.origin = before


def _record(lhs: D.Dim, op: str, rhs: D.Dim, outcome: bool) -> None:
    if _ACTIVE:
        _ACTIVE[-1].record(lhs, op, rhs, outcome)


def expr_of(x: Any) -> D.Dim:
    """The shape expression of an integer (its own value for a plain int), recording nothing."""
    if isinstance(x, SymInt):
        return x.expr
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return int(x)
    raise TypeError(f"{type(x).__name__} is not an integer")


def value_of(x: Any) -> int:
    """The concrete value (at the traced shape), recording nothing."""
    return int.__int__(x) if isinstance(x, int) else int(x)


def make(value: int, expr: D.Dim) -> int:
    """An integer carrying `expr`; a plain int when the expression is a constant."""
    if isinstance(expr, int):
        return int(value)
    return SymInt(value, expr)


class SymInt(int):
    """An int with the shape expression it was computed from (see the module docstring)."""

    expr: D.Dim

    def __new__(cls, value: int, expr: D.Dim) -> "SymInt":
        obj = int.__new__(cls, value)
        obj.expr = expr
        return obj

    # -- arithmetic keeps the expression ------------------------------------------------------
    def _binary(self, other: Any, fn: Callable[[D.Dim, D.Dim], D.Dim], py: Callable[[int, int], int],
                swap: bool = False) -> Any:
        if isinstance(other, float):  # a float result keeps no expression: pinned to the value
            return py(other, self.pin()) if swap else py(self.pin(), other)
        if isinstance(other, bool) or not isinstance(other, int):
            return NotImplemented
        a, b = (expr_of(other), self.expr) if swap else (self.expr, expr_of(other))
        va, vb = (value_of(other), value_of(self)) if swap else (value_of(self), value_of(other))
        return make(py(va, vb), fn(a, b))

    def __add__(self, o: Any) -> Any:
        return self._binary(o, D.add, operator.add)

    def __radd__(self, o: Any) -> Any:
        return self._binary(o, D.add, operator.add, swap=True)

    def __sub__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: D.add(a, D.mul(b, -1)), operator.sub)

    def __rsub__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: D.add(a, D.mul(b, -1)), operator.sub, swap=True)

    def __mul__(self, o: Any) -> Any:
        return self._binary(o, D.mul, operator.mul)

    def __rmul__(self, o: Any) -> Any:
        return self._binary(o, D.mul, operator.mul, swap=True)

    def __floordiv__(self, o: Any) -> Any:
        return self._binary(o, D.floordiv, operator.floordiv)

    def __rfloordiv__(self, o: Any) -> Any:
        return self._binary(o, D.floordiv, operator.floordiv, swap=True)

    def __mod__(self, o: Any) -> Any:
        return self._binary(o, D.mod, operator.mod)

    def __rmod__(self, o: Any) -> Any:
        return self._binary(o, D.mod, operator.mod, swap=True)

    def __divmod__(self, o: Any) -> Any:
        q, r = self.__floordiv__(o), self.__mod__(o)
        return NotImplemented if q is NotImplemented else (q, r)

    def __rdivmod__(self, o: Any) -> Any:
        q, r = self.__rfloordiv__(o), self.__rmod__(o)
        return NotImplemented if q is NotImplemented else (q, r)

    def __neg__(self) -> Any:
        return make(-value_of(self), D.mul(self.expr, -1))

    def __pos__(self) -> Any:
        return self

    def __abs__(self) -> Any:
        return self if self >= 0 else -self

    # -- decisions record a guard -------------------------------------------------------------
    def _compare(self, other: Any, op: str) -> Any:
        if isinstance(other, SymInt) or (isinstance(other, int) and not isinstance(other, bool)):
            outcome = _COMPARE[op](value_of(self), value_of(other))
            _record(self.expr, op, expr_of(other), outcome)
            return outcome
        if isinstance(other, (bool, float)):
            return _COMPARE[op](self.pin(), other)  # against a float or a bool: pinned to the value
        return NotImplemented

    def __eq__(self, o: Any) -> Any:  # type: ignore[override]
        return self._compare(o, "==")

    def __ne__(self, o: Any) -> Any:  # type: ignore[override]
        return self._compare(o, "!=")

    def __lt__(self, o: Any) -> Any:
        return self._compare(o, "<")

    def __le__(self, o: Any) -> Any:
        return self._compare(o, "<=")

    def __gt__(self, o: Any) -> Any:
        return self._compare(o, ">")

    def __ge__(self, o: Any) -> Any:
        return self._compare(o, ">=")

    __hash__ = int.__hash__

    def __bool__(self) -> bool:
        return bool(self._compare(0, "!="))

    # -- the bare value pins the lowering to it -----------------------------------------------
    def pin(self) -> int:
        value = value_of(self)
        _record(self.expr, "==", value, True)
        return value

    def __int__(self) -> int:
        return self.pin()

    def __index__(self) -> int:
        return self.pin()

    def __float__(self) -> float:
        return float(self.pin())

    def __str__(self) -> str:
        return str(self.pin())

    def __repr__(self) -> str:
        return repr(self.pin())

    def __format__(self, spec: str) -> str:
        return format(self.pin(), spec)

    def __round__(self, ndigits: Any = None) -> Any:
        return round(self.pin(), ndigits) if ndigits is not None else self

    def __trunc__(self) -> Any:
        return self

    def __floor__(self) -> Any:
        return self

    def __ceil__(self) -> Any:
        return self

    def __truediv__(self, o: Any) -> Any:
        return self.pin() / (o.pin() if isinstance(o, SymInt) else o)

    def __rtruediv__(self, o: Any) -> Any:
        return o / self.pin()

    def __pow__(self, o: Any, mod: Any = None) -> Any:
        if isinstance(o, int) and not isinstance(o, SymInt) and o >= 0 and mod is None:
            out: Any = 1
            for _ in range(o):
                out = out * self
            return out
        return pow(self.pin(), o.pin() if isinstance(o, SymInt) else o, mod)

    def __rpow__(self, o: Any) -> Any:
        return pow(o, self.pin())

    def __lshift__(self, o: Any) -> Any:
        return self.pin() << o

    def __rlshift__(self, o: Any) -> Any:
        return o << self.pin()

    def __rshift__(self, o: Any) -> Any:
        return self.pin() >> o

    def __rrshift__(self, o: Any) -> Any:
        return o >> self.pin()

    def __and__(self, o: Any) -> Any:
        return self.pin() & o

    def __rand__(self, o: Any) -> Any:
        return o & self.pin()

    def __or__(self, o: Any) -> Any:
        return self.pin() | o

    def __ror__(self, o: Any) -> Any:
        return o | self.pin()

    def __xor__(self, o: Any) -> Any:
        return self.pin() ^ o

    def __rxor__(self, o: Any) -> Any:
        return o ^ self.pin()

    def __invert__(self) -> Any:
        return ~self.pin()

    def bit_length(self) -> int:
        return self.pin().bit_length()

    def __reduce__(self) -> Any:
        return (int, (self.pin(),))


def smax(a: int, b: int) -> int:
    """max that keeps the expression (max(a, b)) instead of guarding on which is larger."""
    return make(max(value_of(a), value_of(b)), D.dmax(expr_of(a), expr_of(b)))


def smin(a: int, b: int) -> int:
    return make(min(value_of(a), value_of(b)), D.dmin(expr_of(a), expr_of(b)))


def cdiv(a: int, b: int) -> int:
    """Ceiling division, kept symbolic."""
    return -((-a) // b)


def numel(shape: Any) -> int:
    """Element count of a shape of (symbolic) ints; 1 for a scalar."""
    n: int = 1
    for d in shape:
        n = n * d
    return n


def contiguous_strides(shape: Any) -> list[int]:
    """Row-major element strides of a shape of (symbolic) ints."""
    out: list[int] = [0] * len(shape)
    step: int = 1
    for d in range(len(shape) - 1, -1, -1):
        out[d] = step
        step = step * shape[d]
    return out


def broadcast_shapes(*shapes: Any) -> tuple[int, ...]:
    """numpy's broadcast of shapes of (symbolic) ints (guards on which dims are 1)."""
    rank = max((len(sh) for sh in shapes), default=0)
    out: list[int] = [1] * rank
    for sh in shapes:
        padded = [1] * (rank - len(sh)) + list(sh)
        for i, d in enumerate(padded):
            if d != 1:
                out[i] = d
    return tuple(out)


__all__ = ["SymInt", "Trace", "tracing", "active", "origin", "expr_of", "value_of", "make", "smax", "smin", "cdiv", "numel", "contiguous_strides", "broadcast_shapes"]
