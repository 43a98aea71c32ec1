"""Control flow: `ember.if` and `ember.loop` (ONNX If and Loop).

Both carry non-isolated regions: a branch or a loop body may read any value of
the enclosing function defined before the op, as ONNX subgraphs read outer
names. Regions are single blocks whose `yield` gives their outputs. Types join
where control flow merges: a dim that two paths disagree on becomes unknown
(`join_types`); a loop-carried value keeps one type across iterations, the
body argument's, which must hold both the initial value and what the body
yields (`types.refines`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ember.errors import EmberError, ShapeError
from ember.ir.dims import Dim, Unknown, evaluate
from ember.ir.opdef import (AnyType, BoolTensor, ControlFlow, EvalContext, IntTensor, Op, Operand, Pure, Region,
                            Result, register_op, static_value)
from ember.ir.types import OptionalType, SequenceType, TensorType, Type, boolean, i64, refines


# -- type joins -------------------------------------------------------------------------
def join_types(a: Type, b: Type) -> Type | None:
    """The most specific type that both `a` and `b` fit, or None when they
    cannot share one (different kinds or element types). Dims that differ
    become unknown; ranks that differ make the tensor unranked."""
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        if a.dtype != b.dtype:
            return None
        if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
            return TensorType(a.dtype, None)
        return TensorType(a.dtype, tuple(x if x == y else Unknown() for x, y in zip(a.shape, b.shape)))
    if isinstance(a, (SequenceType, OptionalType)) and type(a) is type(b):
        inner = join_types(a.element, b.element)  # type: ignore[attr-defined]
        return None if inner is None else type(a)(inner)
    return a if a == b else None


def _is_one_element(t: TensorType) -> bool:
    return t.shape is not None and all(d == 1 for d in t.shape)


def _flag(value: Any) -> bool:
    """The truth of a one-element bool tensor."""
    return bool(np.asarray(value).reshape(-1)[0])


# -- if -------------------------------------------------------------------------------------
@register_op("ember.if", traits={Pure, ControlFlow})
class If(Op):
    """Run one of two regions on a scalar condition; the results are what it yields.

    Both branches take no arguments and may read values of the enclosing
    function. They must yield as many values, of the same kinds and element
    types; a dim that differs between them is unknown in the result, a rank
    that differs makes it unranked.
    %r = ember.if %c : f32[?] ({
      %a = ember.relu %x : f32[4]
      yield %a
    }, {
      yield %y
    })"""

    cond = Operand(BoolTensor, doc="one element (a scalar, or all dims 1)")
    outs = Result(AnyType, variadic=True)
    then_branch = Region(isolated=False)
    else_branch = Region(isolated=False)

    def infer(self, cond: Type) -> tuple[tuple[Type, ...]]:
        if not isinstance(cond, TensorType) or not _is_one_element(cond):
            raise self.error(f"cond must be a bool scalar (one element), got {cond}")
        then_b, else_b = self.then_branch, self.else_branch
        for label, block in (("then_branch", then_b), ("else_branch", else_b)):
            if block.args:
                raise self.error(f"{label} takes no arguments, it has {len(block.args)}")
        then_t, else_t = then_b.output_types, else_b.output_types
        if len(then_t) != len(else_t):
            raise self.error(f"then_branch yields {len(then_t)} values, else_branch {len(else_t)}; "
                             "they must yield as many")
        out: list[Type] = []
        for i, (a, b) in enumerate(zip(then_t, else_t)):
            joined = join_types(a, b)
            if joined is None:
                raise self.error(f"result {i}: then_branch yields {a}, else_branch {b}; "
                                 "they need the same kind and element type")
            out.append(joined)
        return (tuple(out),)

    @staticmethod
    def reference(cond: np.ndarray, *, then_branch: Callable[[], tuple],
                  else_branch: Callable[[], tuple]) -> tuple:
        taken = then_branch if _flag(cond) else else_branch
        return (tuple(taken()),)


# -- loop -----------------------------------------------------------------------------------
@register_op("ember.loop", traits={Pure, ControlFlow})
class Loop(Op):
    """ONNX Loop: iterate `body` while i < trip_count and cond hold.

    Operands: an optional i64 trip count, an optional bool condition (write an
    absent one as `none`: `ember.loop none, %c, %x`), then the loop-carried
    values. At least one of trip count and condition must be given. The body
    takes (iteration number i64[], condition bool[], carried...) and yields
    (condition, carried..., scan outputs...). Without a condition operand the
    body's condition is ignored (a for loop, as ONNX specifies); with one, the
    loop stops after the first iteration that yields false.

    Results: the final carried values (the initial ones after zero
    iterations), then each scan output stacked along a new leading axis. Its
    length is the trip count when that is a constant and there is no
    condition, `?<=trip count` with a condition, `?` otherwise; a scan output
    must keep its shape across iterations.

    Each body argument of a carried value has one type for every iteration:
    the initial value and what the body yields must fit it (`types.refines`). The
    builder gives the arguments the initial values' types; a value that
    changes shape needs a body built with `?` dims there.
    %v, %s = ember.loop %n, none, %x : f32[4], f32[?,4] ({
    ^bb0(%i: i64[], %c: bool[], %v: f32[4]):
      %w = ember.add %v, %v : f32[4]
      yield %c, %w, %v
    })"""

    trip_count = Operand(IntTensor, optional=True, doc="i64, one element")
    cond = Operand(BoolTensor, optional=True, doc="one element")
    carried = Operand(AnyType, variadic=True)
    outs = Result(AnyType, variadic=True)
    body = Region(isolated=False)

    @classmethod
    def region_arg_types(cls, region: str, operand_types: Sequence[Type | None],
                         attributes: Mapping[str, Any]) -> list[Type]:
        carried = list(operand_types[2:])
        if any(t is None for t in carried):
            raise ShapeError(f"{cls.name}: carried values cannot be absent (none)")
        return [i64[()], boolean[()], *carried]  # type: ignore[list-item]

    def infer(self, trip_count: Type | None, cond: Type | None,
              carried: tuple[Type, ...]) -> tuple[tuple[Type, ...]]:
        if trip_count is None and cond is None:
            raise self.error("needs a trip count or a condition (without either it would never end)")
        if trip_count is not None and (not isinstance(trip_count, TensorType) or trip_count.dtype != i64
                                       or not _is_one_element(trip_count)):
            raise self.error(f"trip_count must be an i64 scalar, got {trip_count}")
        if cond is not None and not (isinstance(cond, TensorType) and _is_one_element(cond)):
            raise self.error(f"cond must be a bool scalar (one element), got {cond}")
        n = len(carried)
        args = [a.type for a in self.body.args]
        if len(args) != 2 + n:
            raise self.error(f"body takes (iteration i64[], cond bool[], carried...): {n} carried values "
                             f"need {2 + n} arguments, it has {len(args)}")
        if args[0] != i64[()]:
            raise self.error(f"body argument 0 (the iteration number) must be i64[], got {args[0]}")
        if args[1] != boolean[()]:
            raise self.error(f"body argument 1 (the condition) must be bool[], got {args[1]}")
        for k, (t, a) in enumerate(zip(carried, args[2:])):
            if not refines(t, a):
                raise self.error(f"carried value {k} is {t}, which does not fit its body argument {a}")
        outs = self.body.output_types
        if len(outs) < 1 + n:
            raise self.error(f"body yields {len(outs)} values; it must yield the condition and "
                             f"{n} carried values, then any scan outputs")
        if not (isinstance(outs[0], TensorType) and outs[0].dtype == boolean and _is_one_element(outs[0])):
            raise self.error(f"body must yield a bool scalar condition first, got {outs[0]}")
        finals: list[Type] = []
        for k, (t, a, y) in enumerate(zip(carried, args[2:], outs[1:1 + n])):
            if not refines(y, a):
                raise self.error(f"body yields {y} for carried value {k}, which does not fit its argument "
                                 f"type {a} (give the argument ? dims where the value changes shape)")
            joined = join_types(t, y)
            assert joined is not None  # both fit `a`
            finals.append(joined)
        length = self._scan_length(cond is None)
        scans: list[Type] = []
        for k, y in enumerate(outs[1 + n:]):
            if not isinstance(y, TensorType):
                raise self.error(f"scan output {k} must be a tensor, got {y}")
            scans.append(TensorType(y.dtype, None if y.shape is None else (length, *y.shape)))
        return (tuple(finals + scans),)

    def _scan_length(self, no_cond: bool) -> Dim:
        trip = static_value(self.trip_count)
        if trip is None or trip.size != 1:
            return Unknown()
        count = max(int(trip.reshape(-1)[0]), 0)
        return count if no_cond else Unknown(count)

    def evaluate(self, args: Sequence[Any], ctx: EvalContext) -> tuple:
        """The reference, told the scan outputs' shapes for a loop that runs zero times."""
        groups = self.group(args, like=self.operands)
        n = len(groups["carried"])
        shapes = []
        for t in self.body.output_types[1 + n:]:
            assert isinstance(t, TensorType)
            shapes.append((t.dtype.np_dtype, tuple(_dim_value(d, ctx.env) for d in t.shape or ())))
        body = self.body
        (out,) = self.reference(*groups.values(), body=lambda *xs: ctx.run_block(body, xs),
                                scan_shapes=shapes)
        return tuple(out)

    @staticmethod
    def reference(trip_count: np.ndarray | None, cond: np.ndarray | None, carried: tuple, *,
                  body: Callable[..., tuple],
                  scan_shapes: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None) -> tuple:
        """`scan_shapes` (element type and shape of each scan output) gives the
        empty scan outputs of a loop that runs zero times."""
        limit = None if trip_count is None else int(np.asarray(trip_count).reshape(-1)[0])
        keep = True if cond is None else _flag(cond)
        values = tuple(carried)
        n = len(values)
        scans: list[list[np.ndarray]] | None = None
        i = 0
        while keep and (limit is None or i < limit):
            outs = tuple(body(np.array(i, dtype=np.int64), np.array(keep), *values))
            values = outs[1:1 + n]
            if scans is None:
                scans = [[] for _ in outs[1 + n:]]
            for acc, v in zip(scans, outs[1 + n:]):
                acc.append(np.asarray(v))
            if cond is not None:
                keep = _flag(outs[0])
            i += 1
        if scans is None:
            if scan_shapes is None:
                raise ValueError("the loop ran zero times and the scan outputs' shapes are not given")
            return (values + tuple(np.zeros((0, *shape), dtype=dt) for dt, shape in scan_shapes),)
        stacked = []
        for k, acc in enumerate(scans):
            if len({a.shape for a in acc}) > 1:
                raise ValueError(f"scan output {k} changes shape across iterations: "
                                 f"{sorted({a.shape for a in acc})}")
            stacked.append(np.stack(acc))
        return (values + tuple(stacked),)


def _dim_value(d: Dim, env: Mapping[str, int]) -> int:
    """A dim's value for shaping an empty result; unknown (or unbound) dims give 0."""
    try:
        return evaluate(d, env)
    except EmberError:
        return 0


__all__ = ["If", "Loop", "join_types"]
