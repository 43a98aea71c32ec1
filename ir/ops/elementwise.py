"""Elementwise ops: arithmetic, comparison, logic, bitwise, unary math, activations.

Binary ops broadcast by the one rule (`dims.broadcast_dim`) and need operands of
one element type. Numeric conventions (f32 compute for low-precision floats,
NaN propagation, integer wrap-around and truncating division) are in
`rules.py`; each reference below follows them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ember.ir import attrs as A
from ember.ir.opdef import (AnyTensor, Attr, BoolTensor, Broadcasting, Commutative, Elementwise, FloatTensor,
                            IntTensor, NumericTensor, Op, Operand, Pure, Result, register_op)
from ember.ir.ops import rules
from ember.ir.ops.rules import in_f32
from ember.ir.types import TensorType, Type, boolean

BINARY = {Pure, Elementwise, Broadcasting}
UNARY = {Pure, Elementwise}


# -- binary arithmetic ------------------------------------------------------------------
class _Binary(Op):
    """Two operands of one element type, broadcast; the result has that type."""

    x = Operand(NumericTensor)
    y = Operand(NumericTensor)
    out = Result(NumericTensor)

    def infer(self, x: Type, y: Type) -> TensorType:
        return TensorType(rules.same_dtype(self, x, y), rules.broadcast(self, x, y))


@register_op("ember.add", traits=BINARY | {Commutative})
class Add(_Binary):
    """x + y."""
    reference = staticmethod(in_f32(np.add))


@register_op("ember.sub", traits=BINARY)
class Sub(_Binary):
    """x - y."""
    reference = staticmethod(in_f32(np.subtract))


@register_op("ember.mul", traits=BINARY | {Commutative})
class Mul(_Binary):
    """x * y."""
    reference = staticmethod(in_f32(np.multiply))


@register_op("ember.div", traits=BINARY)
class Div(_Binary):
    """x / y; integers truncate towards zero (C semantics, as ONNX)."""

    @staticmethod
    def reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if x.dtype.kind in "iu":
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.floor_divide(x, y)
                r = np.remainder(x, y)
            return (q + ((r != 0) & ((x < 0) ^ (y < 0)))).astype(x.dtype)
        return in_f32(np.divide)(x, y)


@register_op("ember.pow", traits=BINARY)
class Pow(Op):
    """x ** y; the exponent may have another numeric type, the result has x's.
    Integer x: a non-negative integer exponent is exact and wraps; a float or
    negative exponent is computed in f64 and truncated toward zero (2 ** -1 = 0)."""

    x = Operand(NumericTensor)
    y = Operand(NumericTensor)
    out = Result(NumericTensor)

    def infer(self, x: Type, y: Type) -> TensorType:
        return TensorType(rules.tensor(self, x).dtype, rules.broadcast(self, x, y))

    @staticmethod
    def reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if x.dtype.kind in "iu":
            if y.dtype.kind in "iu" and not (y < 0).any():
                # Exact, wrapping: x^n mod 2^64 keeps x's low bits right.
                wide = np.uint64 if x.dtype.kind == "u" else np.int64
                with np.errstate(over="ignore"):
                    return np.power(x.astype(wide), y.astype(wide)).astype(x.dtype)
            # A float or negative exponent: computed in f64, truncated toward zero (as ONNX).
            with np.errstate(all="ignore"):
                return np.trunc(np.power(x.astype(np.float64), y.astype(np.float64))).astype(x.dtype)
        wide = rules.compute_dtype(x.dtype)
        return np.power(x.astype(wide), y.astype(wide)).astype(x.dtype)


@register_op("ember.mod", traits=BINARY)
class Mod(_Binary):
    """Remainder (ONNX Mod, opset 28 semantics).

    fmod=false: x - floor(x / y) * y, the sign of the divisor (Python's %). For floats:
    a zero x gives a zero with y's sign; an infinite x, a zero y or a NaN gives NaN; an
    infinite y gives x when x and y have the same sign (or x is zero), else y.
    fmod=true: x - trunc(x / y) * y, the sign of the dividend (C's fmod); an infinite y
    gives x. Low-precision floats compute in f32. Integer remainder by zero is undefined
    (the reference gives 0)."""

    fmod = Attr(A.Bool, default=False)

    @staticmethod
    def reference(x: np.ndarray, y: np.ndarray, *, fmod: bool) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            if fmod:
                return in_f32(np.fmod)(x, y)
            return in_f32(np.mod)(x, y)  # numpy's float mod has exactly the special cases above


@register_op("ember.max", traits=BINARY | {Commutative})
class Max(_Binary):
    """Larger of x and y; NaN if either is NaN."""
    reference = staticmethod(in_f32(np.maximum))


@register_op("ember.min", traits=BINARY | {Commutative})
class Min(_Binary):
    """Smaller of x and y; NaN if either is NaN."""
    reference = staticmethod(in_f32(np.minimum))


@register_op("ember.prelu", traits=BINARY)
class PRelu(_Binary):
    """x if x >= 0 else slope * x; the slope broadcasts to x."""

    def infer(self, x: Type, y: Type) -> TensorType:
        out = super().infer(x, y)
        if out.shape is not None and rules.tensor(self, x).shape is not None and out.shape != x.shape:  # type: ignore[union-attr]
            raise self.error(f"slope {y} must broadcast to x {x}")
        return out

    reference = staticmethod(in_f32(lambda x, y: np.where(x < 0, x * y, x)))


# -- comparison -----------------------------------------------------------------------
class _Compare(Op):
    x = Operand(AnyTensor)
    y = Operand(AnyTensor)
    out = Result(BoolTensor)

    def infer(self, x: Type, y: Type) -> TensorType:
        rules.same_dtype(self, x, y)
        return TensorType(boolean, rules.broadcast(self, x, y))


@register_op("ember.equal", traits=BINARY | {Commutative})
class Equal(_Compare):
    """x == y (false where either is NaN)."""
    reference = staticmethod(lambda x, y: np.equal(x, y))


@register_op("ember.less", traits=BINARY)
class Less(_Compare):
    """x < y."""
    reference = staticmethod(lambda x, y: np.less(x, y))


@register_op("ember.less_equal", traits=BINARY)
class LessEqual(_Compare):
    """x <= y."""
    reference = staticmethod(lambda x, y: np.less_equal(x, y))


@register_op("ember.greater", traits=BINARY)
class Greater(_Compare):
    """x > y."""
    reference = staticmethod(lambda x, y: np.greater(x, y))


@register_op("ember.greater_equal", traits=BINARY)
class GreaterEqual(_Compare):
    """x >= y."""
    reference = staticmethod(lambda x, y: np.greater_equal(x, y))


# -- logic and bits -----------------------------------------------------------------------
class _Logical(_Binary):
    x = Operand(BoolTensor)
    y = Operand(BoolTensor)
    out = Result(BoolTensor)


@register_op("ember.and", traits=BINARY | {Commutative})
class And(_Logical):
    """Logical and of bools."""
    reference = staticmethod(np.logical_and)


@register_op("ember.or", traits=BINARY | {Commutative})
class Or(_Logical):
    """Logical or of bools."""
    reference = staticmethod(np.logical_or)


@register_op("ember.xor", traits=BINARY | {Commutative})
class Xor(_Logical):
    """Logical exclusive or of bools."""
    reference = staticmethod(np.logical_xor)


@register_op("ember.not", traits=UNARY)
class Not(Op):
    """Logical not of a bool."""

    x = Operand(BoolTensor)
    out = Result(BoolTensor)

    def infer(self, x: Type) -> Type:
        return x

    reference = staticmethod(np.logical_not)


class _Bitwise(_Binary):
    x = Operand(IntTensor)
    y = Operand(IntTensor)
    out = Result(IntTensor)


@register_op("ember.bitwise_and", traits=BINARY | {Commutative})
class BitwiseAnd(_Bitwise):
    """x & y on integers."""
    reference = staticmethod(np.bitwise_and)


@register_op("ember.bitwise_or", traits=BINARY | {Commutative})
class BitwiseOr(_Bitwise):
    """x | y on integers."""
    reference = staticmethod(np.bitwise_or)


@register_op("ember.bitwise_xor", traits=BINARY | {Commutative})
class BitwiseXor(_Bitwise):
    """x ^ y on integers."""
    reference = staticmethod(np.bitwise_xor)


@register_op("ember.bitwise_not", traits=UNARY)
class BitwiseNot(Op):
    """~x on integers."""

    x = Operand(IntTensor)
    out = Result(IntTensor)

    def infer(self, x: Type) -> Type:
        return x

    reference = staticmethod(np.invert)


@register_op("ember.bit_shift", traits=BINARY)
class BitShift(_Bitwise):
    """x << y or x >> y, elementwise (ONNX BitShift, opset 28).

    Unsigned x shifts logically. Signed x: a right shift is arithmetic (sign-extending, so
    a negative x stays negative); a left shift works on the two's complement bits, and
    bits moved past the sign bit are lost. A shift amount that is negative or not below
    the bit width gives what the sign fill alone gives: -1 for a right shift of a
    negative x, 0 in every other case (C leaves this undefined; kernels must test it).
    %z = ember.bit_shift %x, %y {direction = "right"} : i32[4]"""

    direction = Attr(A.OneOf("left", "right"))

    @staticmethod
    def reference(x: np.ndarray, y: np.ndarray, *, direction: str) -> np.ndarray:
        x, y = np.broadcast_arrays(x, y)
        bits = x.dtype.itemsize * 8
        out_of_range = (y < 0) | (y >= bits)
        amount = np.where(out_of_range, 0, y).astype(np.uint64)
        unsigned = np.dtype(f"u{x.dtype.itemsize}")
        if direction == "left":
            shifted = np.left_shift(x.view(unsigned), amount.astype(unsigned)).view(x.dtype)
            return np.where(out_of_range, 0, shifted).astype(x.dtype)
        shifted = np.right_shift(x, amount.astype(x.dtype))  # numpy: arithmetic for signed types
        fill = np.where(x < 0, -1, 0) if x.dtype.kind == "i" else 0
        return np.where(out_of_range, fill, shifted).astype(x.dtype)


# -- unary ------------------------------------------------------------------------------------
class _Unary(Op):
    """One operand; the result has its type."""

    x = Operand(NumericTensor)
    out = Result(NumericTensor)

    def infer(self, x: Type) -> Type:
        return x


class _UnaryFloat(_Unary):
    x = Operand(FloatTensor)
    out = Result(FloatTensor)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype) if x.size else x.copy()


def _unary_float(name: str, fn: Any, doc: str) -> type[Op]:
    """Register a float-only unary op whose meaning is one numpy function."""
    cls = type(name.split(".")[1].title().replace("_", ""), (_UnaryFloat,),
               {"__doc__": doc, "reference": staticmethod(in_f32(fn)), "__module__": __name__})
    return register_op(name, traits=UNARY)(cls)


Exp = _unary_float("ember.exp", np.exp, "e^x.")
Log = _unary_float("ember.log", np.log, "Natural log; -inf at 0, NaN below.")
Sqrt = _unary_float("ember.sqrt", np.sqrt, "Square root; NaN below 0.")
Rsqrt = _unary_float("ember.rsqrt", lambda x: 1 / np.sqrt(x), "1 / sqrt(x).")
Reciprocal = _unary_float("ember.reciprocal", np.reciprocal, "1 / x.")
Sin = _unary_float("ember.sin", np.sin, "Sine.")
Cos = _unary_float("ember.cos", np.cos, "Cosine.")
Tan = _unary_float("ember.tan", np.tan, "Tangent.")
Asin = _unary_float("ember.asin", np.arcsin, "Arcsine.")
Acos = _unary_float("ember.acos", np.arccos, "Arccosine.")
Atan = _unary_float("ember.atan", np.arctan, "Arctangent.")
Sinh = _unary_float("ember.sinh", np.sinh, "Hyperbolic sine.")
Cosh = _unary_float("ember.cosh", np.cosh, "Hyperbolic cosine.")
Tanh = _unary_float("ember.tanh", np.tanh, "Hyperbolic tangent.")
Asinh = _unary_float("ember.asinh", np.arcsinh, "Inverse hyperbolic sine.")
Acosh = _unary_float("ember.acosh", np.arccosh, "Inverse hyperbolic cosine.")
Atanh = _unary_float("ember.atanh", np.arctanh, "Inverse hyperbolic tangent.")
Erf = _unary_float("ember.erf", _erf, "The error function.")
Sigmoid = _unary_float("ember.sigmoid", lambda x: 1 / (1 + np.exp(-x)), "1 / (1 + e^-x).")
Softplus = _unary_float("ember.softplus", lambda x: np.logaddexp(0, x), "log(1 + e^x), without overflow.")
Softsign = _unary_float("ember.softsign", lambda x: x / (1 + np.abs(x)), "x / (1 + |x|).")
Floor = _unary_float("ember.floor", np.floor, "Round down.")
Ceil = _unary_float("ember.ceil", np.ceil, "Round up.")
Round = _unary_float("ember.round", np.round, "Round half to even.")
Silu = _unary_float("ember.silu", lambda x: x / (1 + np.exp(-x)), "x * sigmoid(x) (Swish).")
Mish = _unary_float("ember.mish", lambda x: x * np.tanh(np.logaddexp(0, x)), "x * tanh(softplus(x)).")
HardSwish = _unary_float("ember.hardswish", lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
                         "x * max(0, min(1, x/6 + 1/2)).")


@register_op("ember.neg", traits=UNARY)
class Neg(_Unary):
    """-x (integers wrap)."""
    reference = staticmethod(in_f32(np.negative))


@register_op("ember.abs", traits=UNARY)
class Abs(_Unary):
    """|x| (the most negative integer stays itself)."""
    reference = staticmethod(in_f32(np.abs))


@register_op("ember.sign", traits=UNARY)
class Sign(_Unary):
    """-1, 0 or 1 (NaN stays NaN)."""
    reference = staticmethod(in_f32(np.sign))


@register_op("ember.relu", traits=UNARY)
class Relu(_Unary):
    """max(x, 0); NaN stays NaN."""
    reference = staticmethod(in_f32(lambda x: np.maximum(x, np.zeros((), x.dtype))))


@register_op("ember.leaky_relu", traits=UNARY)
class LeakyRelu(_UnaryFloat):
    """x if x >= 0 else alpha * x."""

    alpha = Attr(A.Float, default=0.01)

    @staticmethod
    @in_f32
    def reference(x: np.ndarray, *, alpha: float) -> np.ndarray:
        return np.where(x < 0, x * np.asarray(alpha, x.dtype), x)


@register_op("ember.elu", traits=UNARY)
class Elu(_UnaryFloat):
    """x if x >= 0 else alpha * (e^x - 1)."""

    alpha = Attr(A.Float, default=1.0)

    @staticmethod
    @in_f32
    def reference(x: np.ndarray, *, alpha: float) -> np.ndarray:
        return np.where(x < 0, alpha * np.expm1(np.minimum(x, 0)), x).astype(x.dtype)


@register_op("ember.selu", traits=UNARY)
class Selu(_UnaryFloat):
    """gamma * (x if x > 0 else alpha * (e^x - 1))."""

    alpha = Attr(A.Float, default=1.6732632423543772848170429916717)
    gamma = Attr(A.Float, default=1.0507009873554804934193349852946)

    @staticmethod
    @in_f32
    def reference(x: np.ndarray, *, alpha: float, gamma: float) -> np.ndarray:
        return (gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))).astype(x.dtype)


@register_op("ember.celu", traits=UNARY)
class Celu(_UnaryFloat):
    """max(0, x) + min(0, alpha * (e^(x/alpha) - 1))."""

    alpha = Attr(A.Float, default=1.0)

    @staticmethod
    @in_f32
    def reference(x: np.ndarray, *, alpha: float) -> np.ndarray:
        neg = alpha * np.expm1(np.minimum(x, 0) / alpha)
        return (np.maximum(x, 0) + np.minimum(0, neg)).astype(x.dtype)


@register_op("ember.hard_sigmoid", traits=UNARY)
class HardSigmoid(_UnaryFloat):
    """max(0, min(1, alpha * x + beta))."""

    alpha = Attr(A.Float, default=0.2)
    beta = Attr(A.Float, default=0.5)

    @staticmethod
    @in_f32
    def reference(x: np.ndarray, *, alpha: float, beta: float) -> np.ndarray:
        return np.clip(alpha * x + beta, 0, 1).astype(x.dtype)


@register_op("ember.thresholded_relu", traits=UNARY)
class ThresholdedRelu(_UnaryFloat):
    """x if x > alpha else 0."""

    alpha = Attr(A.Float, default=1.0)

    @staticmethod
    @in_f32
    def reference(x: np.ndarray, *, alpha: float) -> np.ndarray:
        return np.where(x > alpha, x, 0).astype(x.dtype)


@register_op("ember.shrink", traits=UNARY)
class Shrink(_Unary):
    """x + bias if x < -lambd; x - bias if x > lambd; else 0."""

    bias = Attr(A.Float, default=0.0)
    lambd = Attr(A.Float, default=0.5)

    @staticmethod
    @in_f32
    def reference(x: np.ndarray, *, bias: float, lambd: float) -> np.ndarray:
        out = np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0))
        return out.astype(x.dtype)


@register_op("ember.gelu", traits=UNARY)
class Gelu(_UnaryFloat):
    """x * Phi(x). approximate="none": 0.5x(1 + erf(x/sqrt 2));
    "tanh": 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))."""

    approximate = Attr(A.OneOf("none", "tanh"), default="none")

    @staticmethod
    @in_f32
    def reference(x: np.ndarray, *, approximate: str) -> np.ndarray:
        if approximate == "tanh":
            inner = np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)
            return (0.5 * x * (1 + np.tanh(inner))).astype(x.dtype)
        return (0.5 * x * (1 + _erf(x / np.sqrt(2)))).astype(x.dtype)


@register_op("ember.isnan", traits=UNARY)
class IsNaN(Op):
    """True where x is NaN."""

    x = Operand(FloatTensor)
    out = Result(BoolTensor)

    def infer(self, x: Type) -> TensorType:
        return rules.tensor(self, x).with_dtype(boolean)

    reference = staticmethod(lambda x: np.isnan(x.astype(np.float32) if x.dtype.itemsize < 2 else x))


@register_op("ember.isinf", traits=UNARY)
class IsInf(Op):
    """True where x is an infinity of a selected sign."""

    x = Operand(FloatTensor)
    detect_negative = Attr(A.Bool, default=True)
    detect_positive = Attr(A.Bool, default=True)
    out = Result(BoolTensor)

    def infer(self, x: Type) -> TensorType:
        return rules.tensor(self, x).with_dtype(boolean)

    @staticmethod
    def reference(x: np.ndarray, *, detect_negative: bool, detect_positive: bool) -> np.ndarray:
        w = x.astype(np.float64)
        return (np.isneginf(w) & detect_negative) | (np.isposinf(w) & detect_positive)


@register_op("ember.clip", traits=UNARY)
class Clip(Op):
    """min(max(x, lo), hi); absent bounds do not clip; NaN stays NaN.
    The bounds are scalar operands of x's type (usually constants)."""

    x = Operand(NumericTensor)
    lo = Operand(NumericTensor, optional=True)
    hi = Operand(NumericTensor, optional=True)
    out = Result(NumericTensor)

    def infer(self, x: Type, lo: Type | None, hi: Type | None) -> Type:
        rules.same_dtype(self, x, lo, hi)
        for name, b in (("lo", lo), ("hi", hi)):
            if b is not None and rules.tensor(self, b).shape not in ((), (1,)):
                raise self.error(f"bound {name} must be a scalar, got {b}")
        return x

    @staticmethod
    @in_f32
    def reference(x: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None) -> np.ndarray:
        out = x
        if lo is not None:
            out = np.maximum(out, lo.reshape(()))
        if hi is not None:
            out = np.minimum(out, hi.reshape(()))
        return out.astype(x.dtype)


@register_op("ember.where", traits={Pure, Elementwise, Broadcasting})
class Where(Op):
    """x where cond else y, all three broadcast."""

    cond = Operand(BoolTensor)
    x = Operand(AnyTensor)
    y = Operand(AnyTensor)
    out = Result(AnyTensor)

    def infer(self, cond: Type, x: Type, y: Type) -> TensorType:
        return TensorType(rules.same_dtype(self, x, y), rules.broadcast(self, cond, x, y))

    @staticmethod
    def reference(cond: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(cond, x, y).astype(x.dtype)
