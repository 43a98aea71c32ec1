"""Linear algebra: matmul, gemm, einsum, det.

These are the Heavy ops (cuBLAS-class work that fusion never duplicates).
Accumulation follows rules.py: f16/bf16/fp8 operands accumulate in f32 and
round once to the result type, f64 in f64, f32 in f32; integers wrap in
their type, except that 8-bit integer matmul accumulates in i32 and returns
i32 (ONNX's MatMulInteger without zero points, which a frontend subtracts first).

Contraction dims (matmul's K, gemm's K, einsum's repeated labels) must be
equal. Two different integers are an error at once; where a symbolic dim
is involved and equality cannot be decided statically, the type rule keeps
the integer (or the first expression) and the runtime requires them equal,
as `dims.broadcast_dim` does for broadcasting.
"""

from __future__ import annotations

import string
from typing import Sequence

import numpy as np

from ember.errors import ShapeError
from ember.ir import attrs as A
from ember.ir.dims import Dim, Unknown, broadcast_dim, broadcast_shapes, format_shape
from ember.ir.opdef import Attr, FloatTensor, Heavy, NumericTensor, Op, Operand, Pure, Result, register_op
from ember.ir.ops import rules
from ember.ir.types import DType, TensorType, Type, i32

_INT8 = frozenset({"i8", "u8"})
_SUB_BYTE = frozenset({"i4", "u4", "i2", "u2"})


def _same_dim(op: Op, a: Dim, b: Dim, what: str) -> Dim:
    """Two dims that must be equal: an error if provably not, else the more precise one."""
    if a == b:
        return a
    if isinstance(a, Unknown):
        return b
    if isinstance(b, Unknown):
        return a
    if isinstance(a, int) and isinstance(b, int):
        raise op.error(f"{what}: {a} vs {b}; they must be equal")
    return b if isinstance(b, int) else a


def _matmul_dtype(op: Op, a: TensorType, b: TensorType) -> DType:
    """The result element type: the operands' (shared) one, or i32 for 8-bit integers."""
    names = {a.dtype.name, b.dtype.name}
    if names <= _INT8:
        return i32
    if names & _SUB_BYTE:
        raise op.error(f"matmul of {a.dtype} and {b.dtype}: sub-byte integers must be dequantized "
                       "or cast to i8 first")
    return rules.same_dtype(op, a, b)


# -- matmul -----------------------------------------------------------------------------------
@register_op("ember.matmul", traits={Pure, Heavy})
class MatMul(Op):
    """numpy.matmul / ONNX MatMul: a 1-d operand is promoted to a matrix (a row
    vector on the left, a column vector on the right) and the added dim is
    dropped from the result; leading batch dims broadcast by the one rule.
    Element types must match, except that i8 and u8 (in any mix) multiply into
    i32 with exact i32 accumulation (wrapping past 2^31, as MatMulInteger).
    Other integers wrap in their own type; f16/bf16/fp8 accumulate in f32.
    %y = ember.matmul %a, %b : f32[N,64,16]"""

    a = Operand(NumericTensor)
    b = Operand(NumericTensor)
    out = Result(NumericTensor)

    def infer(self, a: Type, b: Type) -> TensorType:
        a, b = rules.ranked(self, a, "a"), rules.ranked(self, b, "b")
        dt = _matmul_dtype(self, a, b)
        if a.rank == 0 or b.rank == 0:
            raise self.error(f"operands must have rank >= 1, got {a} and {b}")
        sa = (1,) + a.shape if a.rank == 1 else a.shape
        sb = b.shape + (1,) if b.rank == 1 else b.shape
        _same_dim(self, sa[-1], sb[-2], f"contraction dims of {a} and {b} differ")
        try:
            batch = broadcast_shapes(sa[:-2], sb[:-2])
        except ShapeError as err:
            raise self.error(f"batch dims of {a} and {b} do not broadcast: {err}") from None
        shape = batch + ((sa[-2],) if a.rank > 1 else ()) + ((sb[-1],) if b.rank > 1 else ())
        return TensorType(dt, shape)

    @staticmethod
    def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        int8 = all(t.itemsize == 1 and t.kind in "iu" for t in (a.dtype, b.dtype))
        out = np.dtype(np.int32) if int8 else a.dtype
        acc = rules.accumulate_dtype(out)  # i32 for 8-bit, f32 for f16/bf16/fp8
        with np.errstate(over="ignore"):
            return np.matmul(a.astype(acc), b.astype(acc)).astype(out)


# -- gemm -------------------------------------------------------------------------------------
@register_op("ember.gemm", traits={Pure, Heavy})
class Gemm(Op):
    """ONNX Gemm: y = alpha * a' @ b' + beta * c, with a' = a^T if trans_a and
    b' = b^T if trans_b. a' is (M, K), b' is (K, N); c is optional and
    broadcasts one way to (M, N) (a scalar, [N], [1, N], [M, 1] or [M, N]).
    Floats compute in f32 (f64 for f64) and round once. Integers multiply in
    their own type (wrapping); with alpha = beta = 1 the sum stays exact,
    otherwise the scaling is done in f64 and truncated toward zero, as ONNX.
    %y = ember.gemm %x, %w, %bias {trans_b = true} : f32[N,1000]"""

    a = Operand(NumericTensor)
    b = Operand(NumericTensor)
    c = Operand(NumericTensor, optional=True)
    alpha = Attr(A.Float, default=1.0)
    beta = Attr(A.Float, default=1.0)
    trans_a = Attr(A.Bool, default=False)
    trans_b = Attr(A.Bool, default=False)
    out = Result(NumericTensor)

    def infer(self, a: Type, b: Type, c: Type | None) -> TensorType:
        a, b = rules.ranked(self, a, "a"), rules.ranked(self, b, "b")
        dt = rules.same_dtype(self, a, b, c)
        for what, t in (("a", a), ("b", b)):
            if t.rank != 2:
                raise self.error(f"{what} must have rank 2, got {t}")
        m, ka = (a.shape[1], a.shape[0]) if self.trans_a else a.shape
        kb, n = (b.shape[1], b.shape[0]) if self.trans_b else b.shape
        _same_dim(self, ka, kb, f"contraction dims of a' {format_shape((m, ka))} and b' "
                                f"{format_shape((kb, n))} differ")
        if c is not None:
            c = rules.ranked(self, c, "c")
            if c.rank > 2:
                raise self.error(f"c must have rank <= 2, got {c}")
            padded = (1,) * (2 - c.rank) + tuple(c.shape)
            for got, want in zip(padded, (m, n)):
                try:
                    ok = broadcast_dim(got, want) == want
                except ShapeError:
                    ok = False
                if not ok:
                    raise self.error(f"c {c} does not broadcast to the result shape {format_shape((m, n))}")
        return TensorType(dt, (m, n))

    @staticmethod
    def reference(a: np.ndarray, b: np.ndarray, c: np.ndarray | None, *, alpha: float, beta: float,
                  trans_a: bool, trans_b: bool) -> np.ndarray:
        a = a.T if trans_a else a
        b = b.T if trans_b else b
        if a.dtype.kind in "iu":
            with np.errstate(over="ignore"):
                y = np.matmul(a, b)
                if alpha == 1.0 and (c is None or beta == 1.0):
                    return (y if c is None else y + c).astype(a.dtype)
                total = alpha * y.astype(np.float64) + (0.0 if c is None else beta * c.astype(np.float64))
                return np.trunc(total).astype(np.int64).astype(a.dtype)
        acc = rules.accumulate_dtype(a.dtype)
        y = np.float64(alpha).astype(acc) * np.matmul(a.astype(acc), b.astype(acc))
        if c is not None:
            y = y + np.float64(beta).astype(acc) * c.astype(acc)
        return np.broadcast_to(y, (a.shape[0], b.shape[1])).astype(a.dtype)


# -- einsum -----------------------------------------------------------------------------------
_LETTERS = frozenset(string.ascii_letters)


def _parse_term(op: Op, term: str, where: str) -> tuple[list[str], int | None]:
    """Labels of one term, with '...' as the single entry "..."; and where the ellipsis is."""
    labels: list[str] = []
    ellipsis: int | None = None
    i = 0
    while i < len(term):
        ch = term[i]
        if term.startswith("...", i):
            if ellipsis is not None:
                raise op.error(f"{where} {term!r} has more than one ellipsis")
            ellipsis = len(labels)
            labels.append("...")
            i += 3
            continue
        if ch == ".":
            raise op.error(f"{where} {term!r}: a '.' must be part of an ellipsis '...'")
        if ch not in _LETTERS:
            raise op.error(f"{where} {term!r}: {ch!r} is not a label (labels are the letters a-z, A-Z)")
        labels.append(ch)
        i += 1
    return labels, ellipsis


def parse_equation(op: Op, equation: str, n_inputs: int
                   ) -> tuple[list[list[str]], list[str] | None]:
    """Split an einsum equation into per-input label lists and the explicit output (or None)."""
    eq = equation.replace(" ", "")
    if not eq:
        raise op.error("equation is empty")
    if eq.count("->") > 1:
        raise op.error(f"equation {equation!r} has more than one '->'")
    lhs, arrow, rhs = eq.partition("->")
    if "-" in lhs or ">" in lhs or "-" in rhs or ">" in rhs:
        raise op.error(f"equation {equation!r}: '-' and '>' may only appear together as '->'")
    terms = lhs.split(",")
    if len(terms) != n_inputs:
        raise op.error(f"equation {equation!r} has {len(terms)} input terms for {n_inputs} operands")
    inputs = [_parse_term(op, t, f"input term {k}")[0] for k, t in enumerate(terms)]
    if not arrow:
        return inputs, None
    if "," in rhs:
        raise op.error(f"equation {equation!r}: the output term cannot contain ','")
    out, _ = _parse_term(op, rhs, "output term")
    seen_lhs = {label for labels in inputs for label in labels}
    for label in out:
        if out.count(label) > 1:
            raise op.error(f"equation {equation!r}: output label {label!r} repeats")
        if label != "..." and label not in seen_lhs:
            raise op.error(f"equation {equation!r}: output label {label!r} is not in any input term")
    return inputs, out


@register_op("ember.einsum", traits={Pure, Heavy})
class Einsum(Op):
    """Einstein summation (ONNX Einsum, numpy.einsum): each input term names its
    operand's axes with letters (case sensitive); a label repeated across or
    within terms must have one size (within a term it takes the diagonal);
    labels absent from the output are summed. Without '->' the output is the
    ellipsis dims followed by the labels that occur once, in ASCII order.
    '...' stands for the same dims in every term that has it; those dims
    broadcast right-aligned, as numpy's (ONNX asks for equal counts: a subset).
    Spaces are ignored. Operands share one numeric element type, the result has
    it; f16/bf16/fp8 accumulate in f32, integers in their own type (wrapping).
    %y = ember.einsum %q, %k {equation = "bhid,bhjd->bhij"} : f32[B,8,S,S]"""

    inputs = Operand(NumericTensor, variadic=True)
    equation = Attr(A.Str)
    out = Result(NumericTensor)

    def infer(self, inputs: tuple[Type, ...]) -> TensorType:
        if not inputs:
            raise self.error("needs at least one operand")
        types = [rules.ranked(self, t, f"operand {k}") for k, t in enumerate(inputs)]
        dt = rules.same_dtype(self, *types)
        terms, out = parse_equation(self, self.equation, len(types))
        sizes: dict[str, Dim] = {}
        ellipses: list[tuple[Dim, ...]] = []
        for k, (labels, t) in enumerate(zip(terms, types)):
            named = [x for x in labels if x != "..."]
            n_ell = t.rank - len(named)
            if n_ell < 0 or ("..." not in labels and n_ell != 0):
                raise self.error(f"input term {k} {''.join(labels)!r} has {len(named)} labels for "
                                 f"operand {t} of rank {t.rank}")
            pos = 0
            for label in labels:
                if label == "...":
                    ellipses.append(tuple(t.shape[pos:pos + n_ell]))
                    pos += n_ell
                    continue
                d = t.shape[pos]
                if label in sizes:
                    sizes[label] = _same_dim(self, sizes[label], d, f"label {label!r} has different sizes")
                else:
                    sizes[label] = d
                pos += 1
        try:
            ell = broadcast_shapes(*ellipses) if ellipses else ()
        except ShapeError as err:
            raise self.error(f"ellipsis dims do not broadcast: {err}") from None
        if out is None:
            counts: dict[str, int] = {}
            for labels in terms:
                for label in labels:
                    counts[label] = counts.get(label, 0) + 1
            out = (["..."] if ellipses else []) + sorted(x for x, c in counts.items() if c == 1 and x != "...")
        elif "..." not in out and ell:
            raise self.error(f"equation {self.equation!r}: the inputs' ellipsis stands for "
                             f"{len(ell)} dims but the output term has no '...'")
        shape: list[Dim] = []
        for label in out:
            shape.extend(ell if label == "..." else (sizes[label],))
        return TensorType(dt, tuple(shape))

    @staticmethod
    def reference(inputs: Sequence[np.ndarray], *, equation: str) -> np.ndarray:
        dt = inputs[0].dtype
        acc = rules.accumulate_dtype(dt)
        with np.errstate(over="ignore"):
            out = np.einsum(equation.replace(" ", ""), *(x.astype(acc) for x in inputs))
        return np.asarray(out).astype(dt)


# -- det --------------------------------------------------------------------------------------
@register_op("ember.det", traits={Pure})
class Det(Op):
    """Determinant of each square matrix in the last two axes (ONNX Det): x is [..., M, M],
    the result [...], of x's float type. Computed by LU factorization with partial
    pivoting (numpy.linalg.det) in f32 for f16/bf16/fp8 (rounded once) and in x's type
    otherwise. A singular matrix gives 0 (or a tiny value from rounding); a 0x0 matrix 1;
    a matrix holding a NaN gives NaN (LAPACK's pivoting may otherwise skip it).
    %d = ember.det %x : f32[N]"""

    x = Operand(FloatTensor)
    out = Result(FloatTensor)

    def infer(self, x: Type) -> TensorType:
        t = rules.ranked(self, x, "x")
        if t.rank < 2:
            raise self.error(f"x must have rank >= 2 (matrices in the last two axes), got {t}")
        _same_dim(self, t.shape[-2], t.shape[-1], f"matrices of {t} are not square")
        return t.with_shape(t.shape[:-2])

    @staticmethod
    def reference(x: np.ndarray) -> np.ndarray:
        w = x.astype(rules.compute_dtype(x.dtype), copy=False)
        if w.shape[-1] == 0:
            return np.ones(x.shape[:-2], x.dtype)
        d = np.where(np.isnan(w).any(axis=(-2, -1)), np.nan, np.linalg.det(w))
        return np.asarray(d).astype(x.dtype)


__all__ = ["MatMul", "Gemm", "Einsum", "Det", "parse_equation"]
