"""Shape and data-movement ops: views (reshape, squeeze, unsqueeze, flatten,
bitcast), permutes, joins and cuts (transpose, concat, split, slice), padding and
replication (pad, expand, tile), shape queries (shape, size), generators
(range, trilu, eye_like). Indexing ops (gather*, scatter*, tensor_scatter,
reverse_sequence, nonzero, one_hot, unique) live in `ember.ir.ops.indexing`,
imported at the end of this module.

Sizes and indices that are static configuration in practice (reshape's shape,
slice's starts/ends, pad's pads, expand's shape, tile's repeats, split's sizes)
are `Dims` attributes, so they may be symbolic (`[N*S, -1]`, `ends = [S]`), and
the type rules compute symbolic result shapes with dims arithmetic.

Symbolic reasoning: symbols are >= 0 (dims.py). Where a rule needs a fact it
cannot prove (is `S*4` divisible by 3? is `1 <= S`?), it says below what it
does: give an unknown dim, or assume the case a valid program is in. In the
second case the assumption holds whenever the program runs without error, and
the interpreter checks every result against its declared shape.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ember.errors import ShapeError
from ember.ir import attrs as A
from ember.ir.dims import (Dim, DimExpr, FloorDiv, Max, Min, Mod, Sym, Unknown, broadcast_shapes, floordiv,
                           format_shape, mod)
from ember.ir.opdef import (AnyTensor, Attr, DataMovement, IntTensor, NumericTensor, Op, Operand, Pure, Result,
                            ShapeOnly, ViewLike, register_op, static_value)
from ember.ir import shape_values
from ember.ir.ops import rules
from ember.ir.types import TensorType, Type, i64

VIEW = {Pure, ViewLike}
MOVE = {Pure, DataMovement}

INF_INDEX = 2**31 - 1
"""Slice bounds at or past +-INF_INDEX mean "to the end" (ONNX models write INT_MAX or INT64_MAX)."""


# -- symbolic dim helpers ---------------------------------------------------------------------------
def nonneg(d: Dim) -> bool:
    """True when `d >= 0` is provable for every value >= 0 of its symbols."""
    if isinstance(d, int):
        return d >= 0
    if isinstance(d, Unknown):
        return True  # a size
    return all(c > 0 and all(_atom_nonneg(a) for a, _ in mono) for mono, c in d.terms)


def _atom_nonneg(atom: Any) -> bool:
    if isinstance(atom, Sym):
        return True
    if isinstance(atom, FloorDiv):
        return nonneg(atom.lhs) and nonneg(atom.rhs)
    if isinstance(atom, Mod):
        return nonneg(atom.rhs)  # Python's % takes the divisor's sign
    if isinstance(atom, Max):
        return nonneg(atom.lhs) or nonneg(atom.rhs)
    if isinstance(atom, Min):
        return nonneg(atom.lhs) and nonneg(atom.rhs)
    return False


def known(*ds: Dim) -> bool:
    return not any(isinstance(d, Unknown) for d in ds)


def dadd(a: Dim, b: Dim) -> Dim:
    return a + b if known(a, b) else Unknown()  # type: ignore[operator]


def dmul(a: Dim, b: Dim) -> Dim:
    if a == 0 or b == 0:
        return 0
    if a == 1 or b == 1:
        return b if a == 1 else a
    return a * b if known(a, b) else Unknown()  # type: ignore[operator]


def product(dims: Iterable[Dim]) -> Dim:
    total: Dim = 1
    for d in dims:
        total = dmul(total, d)
    return total


def provably_different(a: Dim, b: Dim) -> bool:
    """a != b for every value >= 0 of the symbols (False when unknown)."""
    if not known(a, b):
        return False
    diff = a - b  # type: ignore[operator]
    return nonneg(diff - 1) or nonneg(-diff - 1)


def merge_dims(a: Dim, b: Dim) -> Dim | None:
    """The one dim two dims that must be equal stand for; None when they provably differ.
    A static dim wins over a symbolic or unknown one; two different symbolic dims are
    assumed equal (the first is kept) since a frontend may name one size twice."""
    if a == b:
        return a
    if provably_different(a, b) or (isinstance(a, int) and isinstance(b, int)):
        return None
    if isinstance(b, int) or isinstance(a, Unknown):
        return b
    return a


def _mono_div(num: tuple, den: tuple) -> Dim | None:
    """Divide one term (monomial, coeff) by another, if it divides exactly."""
    (nm, nc), (dm, dc) = num, den
    if nc % dc:
        return None
    powers = dict(nm)
    for atom, p in dm:
        if powers.get(atom, 0) < p:
            return None
        powers[atom] -= p
    mono = tuple(sorted(((a, p) for a, p in powers.items() if p), key=lambda ap: ap[0].key()))
    return DimExpr.from_poly({mono: nc // dc})


def exact_div(num: Dim, den: Dim) -> Dim | None:
    """num / den when den provably divides num (polynomial division), else None."""
    if not known(num, den) or den == 0:
        return None
    if isinstance(den, int):
        if den < 0:
            num, den = -num, -den  # type: ignore[operator]
        return floordiv(num, den) if mod(num, den) == 0 else None  # type: ignore[arg-type]
    assert isinstance(den, DimExpr)
    quotient: Dim = 0
    rest: Dim = num
    for _ in range(4 * (len(den.terms) + (len(num.terms) if isinstance(num, DimExpr) else 1))):
        if rest == 0:
            break
        lead = rest.terms[0] if isinstance(rest, DimExpr) else ((), rest)
        q = _mono_div(lead, den.terms[0])
        if q is None:
            return None
        quotient = quotient + q
        rest = rest - q * den
    return quotient if quotient * den == num else None  # type: ignore[operator]


def shape_of(op: Op, t: Type | None, what: str = "operand") -> tuple[Dim, ...]:
    """A ranked operand's shape (unranked operands are rejected with a clear error)."""
    return rules.ranked(op, t, what).shape  # type: ignore[return-value]


# -- views ----------------------------------------------------------------------------------------------
@register_op("ember.reshape", traits=VIEW)
class Reshape(Op):
    """Same elements in row-major order, another shape. `shape` may be symbolic and
    may hold one -1 (inferred from the element count) and 0s, which copy the input's
    dim at that index (with allowzero=true a 0 is a zero-size dim, as ONNX).

    The -1 dim is `numel // product(other dims)` when that division is provably exact
    (polynomial division: [N*S, -1] of f32[N,S,64] gives 64); when it cannot be proven
    the dim is unknown (`?`), never an error, as the program is valid for some values.
    A numel mismatch is an error when provable (static dims, or a symbolic difference
    that is nonzero for every value); otherwise it is left to run time.
    %y = ember.reshape %x {shape = [N*S, -1]} : f32[N*S,64]"""

    x = Operand(AnyTensor)
    shape = Attr(A.Dims)
    allowzero = Attr(A.Bool, default=False)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        xs = shape_of(self, x)
        target = list(self.shape)
        if target.count(-1) > 1:
            raise self.error(f"shape {format_shape(self.shape)} has more than one -1; at most one dim is inferred")
        if self.allowzero and -1 in target and 0 in target:
            raise self.error(f"shape {format_shape(self.shape)} has both -1 and 0 with allowzero=true")
        for i, d in enumerate(target):
            if isinstance(d, int) and d < -1:
                raise self.error(f"shape[{i}] = {d}; dims must be >= 0, or -1 to infer one")
            if d == 0 and not self.allowzero:
                if i >= len(xs):
                    raise self.error(f"shape[{i}] = 0 copies input dim {i}, but the input {x} has rank {len(xs)}")
                target[i] = xs[i]
        numel = product(xs)
        if -1 in target:
            k = target.index(-1)
            others = product(d for i, d in enumerate(target) if i != k)
            if others == 0:
                raise self.error(f"cannot infer the -1 in {format_shape(self.shape)}: the other dims multiply to 0")
            q = exact_div(numel, others)
            if q is None and isinstance(numel, int) and isinstance(others, int):
                raise self.error(f"cannot reshape {x} ({numel} elements) to {format_shape(self.shape)}: "
                                 f"{numel} is not a multiple of {others}")
            target[k] = Unknown() if q is None else q
        elif provably_different(numel, product(target)):
            raise self.error(f"cannot reshape {x} ({numel} elements) to {format_shape(self.shape)} "
                             f"({product(target)} elements)")
        return rules.tensor(self, x).with_shape(target)

    @staticmethod
    def reference(x: np.ndarray, *, shape: tuple[int, ...], allowzero: bool) -> np.ndarray:
        target = [x.shape[i] if d == 0 and not allowzero else d for i, d in enumerate(shape)]
        return np.reshape(x, target)


@register_op("ember.squeeze", traits=VIEW)
class Squeeze(Op):
    """Drop size-1 dims: those at `axes`, or without axes every static 1 (then every
    dim must be static, as a symbolic dim may or may not be 1). A symbolic or unknown
    dim named in `axes` is taken to be 1; the reference checks it at run time.
    %y = ember.squeeze %x {axes = [1]} : f32[N,8]"""

    x = Operand(AnyTensor)
    axes = Attr(A.Optional(A.Ints), default=None)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        xs = shape_of(self, x)
        if self.axes is None:
            if not all(isinstance(d, int) for d in xs):
                raise self.error(f"squeeze without axes needs static dims, got {x}; give axes")
            drop = {i for i, d in enumerate(xs) if d == 1}
        else:
            drop = set(rules.axes(self, self.axes, len(xs)))
            for i in sorted(drop):
                if isinstance(xs[i], int) and xs[i] != 1:
                    raise self.error(f"cannot squeeze axis {i} of {x}: its dim is {xs[i]}, not 1")
        return rules.tensor(self, x).with_shape(d for i, d in enumerate(xs) if i not in drop)

    @staticmethod
    def reference(x: np.ndarray, *, axes: tuple[int, ...] | None) -> np.ndarray:
        return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(axes))


@register_op("ember.unsqueeze", traits=VIEW)
class Unsqueeze(Op):
    """Insert size-1 dims; `axes` index the result (rank + len(axes)), negatives from its end.
    %y = ember.unsqueeze %x {axes = [0, -1]} : f32[1,N,8,1]"""

    x = Operand(AnyTensor)
    axes = Attr(A.Ints)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        xs = shape_of(self, x)
        rank = len(xs) + len(self.axes)
        new = set(rules.axes(self, self.axes, rank))
        rest = iter(xs)
        return rules.tensor(self, x).with_shape(1 if i in new else next(rest) for i in range(rank))

    @staticmethod
    def reference(x: np.ndarray, *, axes: tuple[int, ...]) -> np.ndarray:
        return np.expand_dims(x, tuple(axes))


@register_op("ember.flatten", traits=VIEW)
class Flatten(Op):
    """To 2-D: dims before `axis` become the rows, the rest the columns (axis in [-r, r]).
    %y = ember.flatten %x {axis = 1} : f32[N,C*H*W]"""

    x = Operand(AnyTensor)
    axis = Attr(A.Int, default=1)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        xs = shape_of(self, x)
        if not -len(xs) <= self.axis <= len(xs):
            raise self.error(f"axis {self.axis} is out of range [{-len(xs)}, {len(xs)}] for {x}")
        a = self.axis if self.axis >= 0 else self.axis + len(xs)
        return rules.tensor(self, x).with_shape((product(xs[:a]), product(xs[a:])))

    @staticmethod
    def reference(x: np.ndarray, *, axis: int) -> np.ndarray:
        a = axis if axis >= 0 else axis + x.ndim
        return np.reshape(x, (int(np.prod(x.shape[:a])), int(np.prod(x.shape[a:]))))


@register_op("ember.bitcast", traits=VIEW)
class BitCast(Op):
    """The same bits read as another element type of the same bit width (f32 <-> i32,
    u16 <-> f16, bool <-> u8, i4 <-> u4 <-> f4e2m1, ...); the shape is unchanged.
    Bytes are little endian, as ONNX says. Sub-byte types hold their bits in the low
    bits of a byte (as ml_dtypes stores them), so i4 -1 reads as u4 15. Reading bytes
    as bool gives `byte != 0`: a bool holds only 0 or 1.
    %y = ember.bitcast %x {to = i32} : i32[N,4]"""

    x = Operand(AnyTensor)
    to = Attr(A.DTypeAttr)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        t = rules.tensor(self, x)
        if "string" in (t.dtype.kind, self.to.kind):
            raise self.error(f"cannot bitcast {t.dtype} to {self.to}: strings have no fixed bit width")
        if t.dtype.bits != self.to.bits:
            raise self.error(f"cannot bitcast {t.dtype} ({t.dtype.bits} bits) to {self.to} ({self.to.bits} bits); "
                             "the bit widths must be equal")
        return t.with_dtype(self.to)

    @staticmethod
    def reference(x: np.ndarray, *, to: Any) -> np.ndarray:
        data = np.asarray(x, order="C")
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        if to.kind == "bool":
            return data.view(np.uint8) != 0
        return data.view(to.np_dtype).copy()


# -- permute, join, cut ---------------------------------------------------------------------------
@register_op("ember.transpose", traits=MOVE)
class Transpose(Op):
    """Permute axes: result dim i is input dim perm[i]; without perm, reverse them.
    %y = ember.transpose %x {perm = [0, 2, 3, 1]} : f32[N,8,8,3]"""

    x = Operand(AnyTensor)
    perm = Attr(A.Optional(A.Ints), default=None)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        xs = shape_of(self, x)
        perm = tuple(reversed(range(len(xs)))) if self.perm is None else self.perm
        if sorted(perm) != list(range(len(xs))):
            raise self.error(f"perm {list(perm)} is not a permutation of 0..{len(xs) - 1} (input {x})")
        return rules.tensor(self, x).with_shape(xs[p] for p in perm)

    @staticmethod
    def reference(x: np.ndarray, *, perm: tuple[int, ...] | None) -> np.ndarray:
        return np.transpose(x, perm)


@register_op("ember.concat", traits=MOVE)
class Concat(Op):
    """Join tensors of one element type and rank along `axis`; the other dims must agree
    (a static dim wins over a symbolic one; two different symbols are assumed equal).
    %y = ember.concat %a, %b {axis = 1} : f32[N,M+4]"""

    inputs = Operand(AnyTensor, variadic=True)
    axis = Attr(A.Int)
    out = Result(AnyTensor)

    def infer(self, inputs: tuple[Type, ...]) -> TensorType:
        if not inputs:
            raise self.error("needs at least one operand")
        dt = rules.same_dtype(self, *inputs)
        shapes = [shape_of(self, t) for t in inputs]
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes):
            raise self.error("operands must have one rank, got " + ", ".join(map(str, inputs)))
        if rank == 0:
            raise self.error("cannot concatenate scalars; operands need rank >= 1")
        ax = rules.axis(self, self.axis, rank)
        out = list(shapes[0])
        for t, s in zip(inputs[1:], shapes[1:]):
            for i, d in enumerate(s):
                if i == ax:
                    out[i] = dadd(out[i], d)
                    continue
                merged = merge_dims(out[i], d)
                if merged is None:
                    raise self.error(f"operand {t} has dim {d} at axis {i} where the others have {out[i]}; "
                                     f"all dims but axis {ax} must agree")
                out[i] = merged
        return TensorType(dt, tuple(out))

    @staticmethod
    def reference(inputs: tuple[np.ndarray, ...], *, axis: int) -> np.ndarray:
        return np.concatenate(inputs, axis=axis)


@register_op("ember.split", traits=MOVE)
class Split(Op):
    """Cut along `axis` into pieces of `sizes`, or into `num_outputs` pieces of
    ceil(d / num_outputs) with a smaller last one (ONNX 18). Exactly one of the two
    is given, since it fixes the number of results.
    %a, %b = ember.split %x {axis = 1, sizes = [2, S]} : f32[N,2], f32[N,S]"""

    x = Operand(AnyTensor)
    axis = Attr(A.Int, default=0)
    sizes = Attr(A.Optional(A.Dims), default=None)
    num_outputs = Attr(A.Optional(A.Int), default=None)
    outs = Result(AnyTensor, variadic=True)

    def infer(self, x: Type) -> tuple[tuple[TensorType, ...]]:
        xs = shape_of(self, x)
        if (self.sizes is None) == (self.num_outputs is None):
            raise self.error("give exactly one of sizes and num_outputs")
        ax = rules.axis(self, self.axis, len(xs))
        d = xs[ax]
        if self.sizes is not None:
            pieces = list(self.sizes)
            if not pieces:
                raise self.error("sizes is empty; expected at least one piece")
            if any(isinstance(p, int) and p < 0 for p in pieces):
                raise self.error(f"sizes {format_shape(self.sizes)} must be >= 0")
            if provably_different(d, sum_dims(pieces)):
                raise self.error(f"sizes {format_shape(self.sizes)} add up to {sum_dims(pieces)}, "
                                 f"not to dim {d} of axis {ax} of {x}")
        else:
            n = self.num_outputs
            if n < 1:
                raise self.error(f"num_outputs = {n}; expected >= 1")
            if not known(d):
                pieces = [Unknown()] * n
            else:
                chunk = floordiv(d + (n - 1), n)  # type: ignore[operator]
                last = d - (n - 1) * chunk  # type: ignore[operator]
                if isinstance(last, int) and last < 0:
                    raise self.error(f"cannot split dim {d} into {n} pieces of {chunk} and a smaller last one")
                pieces = [chunk] * (n - 1) + [last]
        t = rules.tensor(self, x)
        return (tuple(t.with_shape(xs[:ax] + (p,) + xs[ax + 1:]) for p in pieces),)

    @staticmethod
    def reference(x: np.ndarray, *, axis: int, sizes: tuple[int, ...] | None,
                  num_outputs: int | None) -> tuple[list[np.ndarray]]:
        d = x.shape[axis]
        if sizes is None:
            chunk = -(-d // num_outputs)  # type: ignore[operator]
            sizes = (chunk,) * (num_outputs - 1) + (d - chunk * (num_outputs - 1),)  # type: ignore[operator]
        if sum(sizes) != d:
            raise ValueError(f"split sizes {list(sizes)} do not add up to dim {d}")
        bounds = np.cumsum((0,) + tuple(sizes))
        index = [slice(None)] * x.ndim
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            index[axis] = slice(int(lo), int(hi))
            parts.append(x[tuple(index)])
        return (parts,)


def sum_dims(dims: Iterable[Dim]) -> Dim:
    total: Dim = 0
    for d in dims:
        total = dadd(total, d)
    return total


def clamp_index(v: int, d: int, step: int, is_start: bool) -> int:
    """ONNX Slice's rule for one bound: negatives count from the end, then clamp to
    [0, d] for positive steps and to [0, d-1] (start) or [-1, d-1] (end) for negative."""
    if v < 0:
        v += d
    if step > 0:
        return min(max(v, 0), d)
    return min(max(v, 0 if is_start else -1), d - 1)


def slice_length(start: int, end: int, step: int) -> int:
    """Elements of range(start, end, step) for clamped bounds."""
    return max(0, -((start - end) // step))


def _symbolic_bound(v: Dim, d: Dim, step: int, is_start: bool) -> Dim:
    """clamp_index for symbolic bounds or dims (see Slice's docstring)."""
    if isinstance(v, int) and v >= INF_INDEX:
        return d if step > 0 else d - 1  # type: ignore[operator]
    if isinstance(v, int) and v <= -INF_INDEX:
        return 0 if step > 0 or is_start else -1
    if nonneg(-v - 1):  # type: ignore[operator]
        v = v + d  # type: ignore[operator]
    lo, hi = (0, d) if step > 0 else (0 if is_start else -1, d - 1)  # type: ignore[operator]
    if nonneg(lo - v):  # type: ignore[operator]
        return lo
    if nonneg(v - hi):  # type: ignore[operator]
        return hi
    return v


@register_op("ember.slice", traits=MOVE)
class Slice(Op):
    """Take start:end:step along each of `axes` (default 0..len(starts)-1), ONNX's rules:
    negative bounds count from the end, then starts clamp to [0, d] and ends to [0, d]
    for positive steps, to [0, d-1] and [-1, d-1] for negative ones.

    Starts and ends may be symbolic (ends = [S]). With static dims and bounds the
    rule is exact. With symbolic ones, a bound at or beyond +-2**31-1 means "to the
    end", a bound that is provably negative counts from the end, one that is provably
    past a clamp limit is clamped, and any other is assumed in range (no clamping):
    x[1:] of S gives S-1 rather than max(S-1, 0); the interpreter checks the shape.
    %y = ember.slice %x {starts = [0], ends = [S], axes = [1]} : f32[N,S]"""

    x = Operand(AnyTensor)
    starts = Attr(A.Dims)
    ends = Attr(A.Dims)
    axes = Attr(A.Optional(A.Ints), default=None)
    steps = Attr(A.Optional(A.Ints), default=None)
    out = Result(AnyTensor)

    def _plan(self, rank: int) -> list[tuple[int, Dim, Dim, int]]:
        n = len(self.starts)
        if len(self.ends) != n:
            raise self.error(f"starts has {n} entries and ends {len(self.ends)}; expected one each per axis")
        axes = rules.axes(self, self.axes, rank) if self.axes is not None else tuple(range(n))
        steps = self.steps if self.steps is not None else (1,) * n
        if len(axes) != n or len(steps) != n:
            raise self.error(f"starts, ends, axes and steps need the same length, got {n}, {len(self.ends)}, "
                             f"{len(axes)}, {len(steps)}")
        if n > rank:
            raise self.error(f"{n} slice bounds for rank {rank}")
        if 0 in steps:
            raise self.error(f"steps {list(steps)} hold a 0; steps must be nonzero")
        return list(zip(axes, self.starts, self.ends, steps))

    def infer(self, x: Type) -> TensorType:
        out = list(shape_of(self, x))
        for ax, start, end, step in self._plan(len(out)):
            d = out[ax]
            if isinstance(d, Unknown):
                out[ax] = Unknown()
            elif isinstance(d, int) and isinstance(start, int) and isinstance(end, int):
                out[ax] = slice_length(clamp_index(start, d, step, True), clamp_index(end, d, step, False), step)
            else:
                s, e = _symbolic_bound(start, d, step, True), _symbolic_bound(end, d, step, False)
                n = (e - s) if step > 0 else (s - e)  # type: ignore[operator]
                length = floordiv(n + (abs(step) - 1), abs(step))
                out[ax] = 0 if nonneg(-length) else length  # type: ignore[operator]
        return rules.tensor(self, x).with_shape(out)

    @staticmethod
    def reference(x: np.ndarray, *, starts: tuple[int, ...], ends: tuple[int, ...],
                  axes: tuple[int, ...] | None, steps: tuple[int, ...] | None) -> np.ndarray:
        n = len(starts)
        index = [slice(None)] * x.ndim
        for ax, start, end, step in zip(axes if axes is not None else range(n), starts, ends,
                                        steps if steps is not None else (1,) * n):
            d = x.shape[ax]
            s, e = clamp_index(start, d, step, True), clamp_index(end, d, step, False)
            index[ax] = slice(s, s, 1) if slice_length(s, e, step) == 0 else slice(s, e if e >= 0 else None, step)
        return x[tuple(index)]


# -- pad, expand, tile --------------------------------------------------------------------------------
@register_op("ember.pad", traits=MOVE)
class Pad(Op):
    """Pad (or, with negative pads, crop) `axes` (default all): pads = [begin..., end...].
    Modes: constant (with `value`, a scalar of x's type, default 0), reflect (mirror
    without the border element), edge (repeat it), wrap (periodic). Negative pads crop
    first and the positive ones then pad the cropped tensor. Reflect and wrap pads
    longer than the dim repeat the pattern (numpy's np.pad).
    %y = ember.pad %x {pads = [0, 0, 1, 1, 0, 0, 1, 1], mode = "reflect"} : f32[N,3,H+2,W+2]"""

    x = Operand(AnyTensor)
    value = Operand(AnyTensor, optional=True, doc="the constant for mode=constant: a scalar or one element")
    pads = Attr(A.Dims)
    mode = Attr(A.OneOf("constant", "reflect", "edge", "wrap"), default="constant")
    axes = Attr(A.Optional(A.Ints), default=None)
    out = Result(AnyTensor)

    def infer(self, x: Type, value: Type | None) -> TensorType:
        xs = shape_of(self, x)
        axes = rules.axes(self, self.axes, len(xs)) if self.axes is not None else tuple(range(len(xs)))
        if len(self.pads) != 2 * len(axes):
            raise self.error(f"pads has {len(self.pads)} entries; expected 2 per padded axis ({2 * len(axes)})")
        if value is not None:
            vt = rules.ranked(self, value, "value")
            rules.same_dtype(self, x, value)
            if vt.shape not in ((), (1,)):
                raise self.error(f"value must be a scalar or hold one element, got {value}")
            if self.mode != "constant":
                raise self.error(f"value only applies to mode constant, not {self.mode}")
        out = list(xs)
        for i, ax in enumerate(axes):
            begin, end = self.pads[i], self.pads[len(axes) + i]
            out[ax] = dadd(dadd(xs[ax], begin), end)
            if isinstance(out[ax], int) and out[ax] < 0:
                raise self.error(f"pads {format_shape(self.pads)} crop axis {ax} of {x} below 0")
            if (self.mode != "constant" and xs[ax] == 0
                    and ((isinstance(begin, int) and begin > 0) or (isinstance(end, int) and end > 0))):
                raise self.error(f"cannot pad empty axis {ax} of {x} in mode {self.mode}")
        return rules.tensor(self, x).with_shape(out)

    @staticmethod
    def reference(x: np.ndarray, value: np.ndarray | None, *, pads: tuple[int, ...], mode: str,
                  axes: tuple[int, ...] | None) -> np.ndarray:
        axes = tuple(a % x.ndim for a in axes) if axes is not None else tuple(range(x.ndim))
        crop = [slice(None)] * x.ndim
        widths = [(0, 0)] * x.ndim
        for i, ax in enumerate(axes):
            begin, end = pads[i], pads[len(axes) + i]
            crop[ax] = slice(max(-begin, 0), x.shape[ax] - max(-end, 0))
            widths[ax] = (max(begin, 0), max(end, 0))
        x = x[tuple(crop)]
        if mode != "constant":
            return np.pad(x, widths, mode=mode)
        fill = value.reshape(()) if value is not None else np.zeros((), x.dtype)
        out = np.full(tuple(d + b + e for d, (b, e) in zip(x.shape, widths)), fill, dtype=x.dtype)
        out[tuple(slice(b, b + d) for d, (b, _) in zip(x.shape, widths))] = x
        return out


@register_op("ember.expand", traits=MOVE)
class Expand(Op):
    """Broadcast x against `shape` by the one broadcasting rule (dims.broadcast_shapes),
    both ways as ONNX: a 1 in `shape` keeps x's dim, so the result may be larger than shape.
    %y = ember.expand %x {shape = [N, 1, 64]} : f32[N,8,64]"""

    x = Operand(AnyTensor)
    shape = Attr(A.Dims)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        xs = shape_of(self, x)
        if any(isinstance(d, int) and d < 0 for d in self.shape):
            raise self.error(f"shape {format_shape(self.shape)} has a negative dim")
        try:
            return rules.tensor(self, x).with_shape(broadcast_shapes(xs, self.shape))
        except ShapeError as err:
            raise self.error(str(err)) from None

    @staticmethod
    def reference(x: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape))).copy()


@register_op("ember.tile", traits=MOVE)
class Tile(Op):
    """Repeat x `repeats[i]` times along each axis i (np.tile with one repeat per axis).
    %y = ember.tile %x {repeats = [1, R]} : f32[N,4*R]"""

    x = Operand(AnyTensor)
    repeats = Attr(A.Dims)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        xs = shape_of(self, x)
        if len(self.repeats) != len(xs):
            raise self.error(f"repeats has {len(self.repeats)} entries for {x}; expected one per axis")
        if any(isinstance(r, int) and r < 0 for r in self.repeats):
            raise self.error(f"repeats {format_shape(self.repeats)} must be >= 0")
        return rules.tensor(self, x).with_shape(dmul(d, r) for d, r in zip(xs, self.repeats))

    @staticmethod
    def reference(x: np.ndarray, *, repeats: tuple[int, ...]) -> np.ndarray:
        return np.tile(x, tuple(repeats)) if x.ndim else x.copy()


@register_op("ember.constant_of_shape", traits={Pure})
class ConstantOfShape(Op):
    """A tensor filled with `value` whose shape is data: the shape operand is a 1-D
    i64 tensor known only at run time (the size of what survived a NonZero, say).
    Shapes known at build time, symbolic ones included, use ember.expand of a scalar
    instead; this op is for data-dependent sizes, whose dims are unknown here.
    %z = ember.constant_of_shape %s {value = dense<f32[]: 0.0>} : f32[?,4]"""

    shape = Operand(IntTensor)
    value = Attr(A.TensorAttr)
    out = Result(AnyTensor)

    def infer(self, shape: Type) -> TensorType:
        s = rules.ranked(self, shape, "shape")
        if s.rank != 1 or not isinstance(s.shape[0], int):  # type: ignore[index]
            raise self.error(f"shape must be a 1-D tensor of static length, got {shape}")
        if self.value.array.size != 1:
            raise self.error(f"value must hold one element, got {self.value.type}")
        known = static_value(self.operands[0])
        dims: tuple[Dim, ...] = tuple(int(d) for d in known) if known is not None else \
            tuple(Unknown() for _ in range(s.shape[0]))  # type: ignore[index]
        if any(isinstance(d, int) and d < 0 for d in dims):
            raise self.error(f"shape {list(dims)} has a negative dim")
        return TensorType(self.value.dtype, dims)

    @staticmethod
    def symbolic_sizes(shape: Any, **_: Any) -> tuple[tuple[Dim, ...], ...] | None:
        return (tuple(shape.elements),) if len(shape.shape) == 1 else None

    @staticmethod
    def run_time_sizes(shape: np.ndarray, **_: Any) -> tuple[tuple[int, ...], ...]:
        dims = tuple(int(d) for d in np.asarray(shape).ravel())
        if any(d < 0 for d in dims):
            raise ValueError(f"shape {list(dims)} has a negative dim")
        return (dims,)

    @staticmethod
    def reference(shape: np.ndarray, *, value: np.ndarray) -> np.ndarray:
        dims = tuple(int(d) for d in np.asarray(shape).ravel())
        if any(d < 0 for d in dims):
            raise ValueError(f"shape {list(dims)} has a negative dim")
        return np.full(dims, value.reshape(()), dtype=value.dtype)


@register_op("ember.eye_like", traits={Pure, ShapeOnly})
class EyeLike(Op):
    """A matrix of x's 2-D shape with ones where column - row == k and zeros elsewhere,
    of element type `dtype` (default: x's). Only x's shape is read, so a symbolic
    shape stays symbolic (ONNX EyeLike).
    %y = ember.eye_like %x {k = 1, dtype = f32} : f32[N,M]"""

    x = Operand(AnyTensor)
    k = Attr(A.Int, default=0)
    dtype = Attr(A.Optional(A.DTypeAttr), default=None)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        xs = shape_of(self, x)
        if len(xs) != 2:
            raise self.error(f"needs a 2-D operand, got {x}")
        dt = self.dtype if self.dtype is not None else rules.tensor(self, x).dtype
        if dt.kind == "string":
            raise self.error(f"cannot make an identity matrix of {dt}")
        return TensorType(dt, xs)

    @staticmethod
    def reference(x: np.ndarray, *, k: int, dtype: Any) -> np.ndarray:
        dt = dtype.np_dtype if dtype is not None else x.dtype
        return np.eye(x.shape[0], x.shape[1], k=k, dtype=np.bool_).astype(dt)


@register_op("ember.trilu", traits=MOVE)
class Trilu(Op):
    """Keep the upper (upper=true: j - i >= k) or lower (j - i <= k) triangle of the
    last two axes, zero the rest. ONNX's optional k input is an attribute here.
    %y = ember.trilu %x {upper = false, k = 0} : f32[B,S,S]"""

    x = Operand(AnyTensor)
    upper = Attr(A.Bool, default=True)
    k = Attr(A.Int, default=0)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        if len(shape_of(self, x)) < 2:
            raise self.error(f"needs rank >= 2, got {x}")
        return rules.tensor(self, x)

    @staticmethod
    def reference(x: np.ndarray, *, upper: bool, k: int) -> np.ndarray:
        rows, cols = x.shape[-2:]
        diag = np.arange(cols)[None, :] - np.arange(rows)[:, None]
        keep = diag >= k if upper else diag <= k
        return np.where(keep, x, np.zeros((), x.dtype)).astype(x.dtype)


# -- shape queries and generators ------------------------------------------------------------------
@register_op("ember.shape", traits={Pure, ShapeOnly})
class Shape(Op):
    """The dims of x[start:end] as i64 (Python slicing over the axes, as ONNX 15).
    %s = ember.shape %x {start = 1} : i64[3]"""

    x = Operand(AnyTensor)
    start = Attr(A.Int, default=0)
    end = Attr(A.Optional(A.Int), default=None)
    out = Result(IntTensor)

    def infer(self, x: Type) -> TensorType:
        rank = len(shape_of(self, x))
        return TensorType(i64, (len(range(rank)[self.start:self.end]),))

    @staticmethod
    def reference(x: np.ndarray, *, start: int, end: int | None) -> np.ndarray:
        return np.array(x.shape[start:end], dtype=np.int64).reshape(-1)


@register_op("ember.size", traits={Pure, ShapeOnly})
class Size(Op):
    """The number of elements of x, an i64 scalar.
    %n = ember.size %x : i64[]"""

    x = Operand(AnyTensor)
    out = Result(IntTensor)

    def infer(self, x: Type) -> TensorType:
        rules.tensor(self, x)
        return TensorType(i64, ())

    @staticmethod
    def reference(x: np.ndarray) -> np.ndarray:
        return np.array(x.size, dtype=np.int64)


def range_length(start: Any, limit: Any, delta: Any) -> int:
    """max(ceil((limit - start) / delta), 0), exact for integers, in f64 for floats."""
    values = [v.item() if isinstance(v, np.ndarray) else v for v in (start, limit, delta)]
    if all(isinstance(v, (int, np.integer)) for v in values):
        s, lim, d = (int(v) for v in values)
        if d == 0:
            raise ValueError("range delta is 0")
        return max(-((s - lim) // d), 0)
    s, lim, d = (float(v) for v in values)
    if d == 0 or not np.isfinite([s, lim, d]).all():
        raise ValueError(f"range({s}, {lim}, {d}) has no finite length")
    return max(int(np.ceil((lim - s) / d)), 0)


@register_op("ember.range", traits={Pure})
class Range(Op):
    """start, start + delta, ... up to (not including) limit: three scalars of one
    numeric type; max(ceil((limit - start) / delta), 0) elements. Values are
    start + i * delta computed in f64 (integers: exactly, wrapping) and rounded once.

    The length is data: infer knows it only when all three operands are ember.constant
    (else `?`). The optional `length` attribute states it when a pass or
    frontend has proven it, typically symbolic: range(0, shape(x)[1], 1) is [S], and
    positional embeddings keep their sequence dim. The reference checks the claim.
    %p = ember.range %start, %limit, %delta {length = S} : i64[S]"""

    start = Operand(NumericTensor)
    limit = Operand(NumericTensor)
    delta = Operand(NumericTensor)
    length = Attr(A.Optional(A.Dim), default=None, doc="the result length, when proven")
    out = Result(NumericTensor)

    def infer(self, start: Type, limit: Type, delta: Type) -> TensorType:
        dt = rules.same_dtype(self, start, limit, delta)
        for what, t in (("start", start), ("limit", limit), ("delta", delta)):
            if shape_of(self, t, what) != ():
                raise self.error(f"{what} must be a scalar, got {t}")
        consts = [static_value(v) for v in self.operands]
        n: Dim = Unknown()
        if all(c is not None for c in consts):
            try:
                n = range_length(*consts)
            except ValueError as err:
                raise self.error(str(err)) from None
        if self.length is not None:
            claimed = self.length
            if isinstance(claimed, int) and claimed < 0:
                raise self.error(f"length {claimed} is negative")
            if isinstance(n, int) and isinstance(claimed, int) and n != claimed:
                raise self.error(f"length {claimed} contradicts the constant operands, which give {n}")
            n = claimed
        return TensorType(dt, (n,))

    @staticmethod
    def symbolic_sizes(start: Any, limit: Any, delta: Any, **_: Any) -> tuple[tuple[Dim, ...], ...] | None:
        n = shape_values.range_length(start, limit, delta)
        return None if n is None else ((n,),)

    @staticmethod
    def run_time_sizes(start: np.ndarray, limit: np.ndarray, delta: np.ndarray, **_: Any) -> tuple[tuple[int, ...], ...]:
        return ((range_length(start, limit, delta),),)

    @staticmethod
    def reference(start: np.ndarray, limit: np.ndarray, delta: np.ndarray, *,
                  length: int | None) -> np.ndarray:
        n = range_length(start, limit, delta)
        if length is not None and length != n:
            raise ValueError(f"range gives {n} elements, its length attribute says {length}")
        if start.dtype.kind in "iu":
            steps = np.arange(n, dtype=np.int64)
            return (start.astype(np.int64) + steps * delta.astype(np.int64)).astype(start.dtype)
        wide = start.astype(np.float64) + np.arange(n, dtype=np.float64) * delta.astype(np.float64)
        return wide.astype(start.dtype)


from ember.ir.ops import indexing  # noqa: E402,F401  (the indexing half of this family)

__all__ = ["Reshape", "Squeeze", "Unsqueeze", "Flatten", "BitCast", "Transpose", "Concat", "Split", "Slice", "Pad",
           "Expand", "Tile", "Trilu", "EyeLike", "Shape", "Size", "Range", "nonneg", "exact_div", "merge_dims",
           "product", "provably_different", "clamp_index", "slice_length", "range_length", "indexing"]
