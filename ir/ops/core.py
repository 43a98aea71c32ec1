"""Ops every graph needs: constants, weights, identity, cast, and the fused region.

`ember.constant` holds a small tensor inline; `ember.weight` names a tensor in
the module's weight store (names stay stable so weights can be refitted).
`ember.fused` is the op fusion passes create: its isolated region holds the
body, its operands become the region's arguments, its results are what the
region yields, and its meaning is running that region.
"""

from __future__ import annotations

from typing import Any, Sequence

import ml_dtypes
import numpy as np

from ember.ir import attrs as A
from ember.ir.opdef import (AnyTensor, AnyType, Attr, DataMovement, Elementwise, EvalContext,
                            Op, Operand, Pure, Region, Result, ViewLike, register_op)
from ember.ir.ops import rules
from ember.ir.types import DType, TensorType, Type, dtype_of


@register_op("ember.constant", traits={Pure})
class Constant(Op):
    """A small tensor written inline. Large ones go to the weight store (ember.weight).
    %c = ember.constant {value = dense<f32[2]: [1.0, 2.0]>} : f32[2]"""

    value = Attr(A.TensorAttr)
    out = Result(AnyTensor)

    def infer(self) -> TensorType:
        return self.value.type

    @staticmethod
    def reference(*, value: np.ndarray) -> np.ndarray:
        return value.copy()


@register_op("ember.weight", traits={Pure})
class Weight(Op):
    """A tensor of the module's weight store, by name.
    %w = ember.weight {name = "conv1.weight"} : f32[16,3,3,3]"""

    ref = Attr(A.Str, key="name")
    out = Result(AnyTensor)

    def _store(self) -> Any:
        fn = self.function
        return fn.module.weights if fn is not None and fn.module is not None else None

    def infer(self) -> TensorType:
        store = self._store()
        name = self.ref
        if store is None:
            if self.results:
                return self.results[0].type  # detached op: keep the declared type
            raise self.error(f"weight {name!r}: op is not in a module, give its type")
        if name not in store:
            raise self.error(f"no weight named {name!r} in the module")
        return store[name].type

    def evaluate(self, args: Sequence[Any], ctx: EvalContext) -> tuple:
        name = self.ref
        w = ctx.module.weights.get(name) if ctx.module is not None else None
        if w is None or w.data is None:
            raise self.error(f"weight {name!r} has no data (was the module read without its weights file?)")
        return (np.asarray(w.data),)


@register_op("ember.identity", traits={Pure, ViewLike})
class Identity(Op):
    """The operand, unchanged (canonicalize removes it)."""

    x = Operand(AnyType)
    out = Result(AnyType)

    def infer(self, x: Type) -> Type:
        return x

    @staticmethod
    def reference(x: Any) -> Any:
        return x


@register_op("ember.fused", traits={Pure})
class Fused(Op):
    """Ops fused into one kernel. The isolated body reads only its arguments,
    one per operand, and yields the results. `kind` says what codegen makes of
    it (elementwise, reduction, epilogue).
    %r = ember.fused %a, %b {kind = "elementwise"} : f32[4] ({
    ^bb0(%x: f32[4], %y: f32[4]):
      %s = ember.add %x, %y : f32[4]
      yield %s
    })"""

    inputs = Operand(AnyType, variadic=True)
    kind = Attr(A.Str, default="elementwise")
    outs = Result(AnyType, variadic=True)
    body = Region(isolated=True)

    @classmethod
    def region_arg_types(cls, region: str, operand_types: Sequence[Type | None],
                         attributes: Any) -> list[Type]:
        return [t for t in operand_types if t is not None]

    def infer(self, inputs: tuple[Type, ...]) -> tuple[tuple[Type, ...]]:
        args = [a.type for a in self.body.args]
        if list(inputs) != args:
            raise self.error(f"body arguments ({', '.join(map(str, args))}) do not match operands "
                             f"({', '.join(map(str, inputs))})")
        return (self.body.output_types,)

    @staticmethod
    def reference(inputs: tuple[np.ndarray, ...], *, kind: str, body: Any) -> tuple:
        return (body(*inputs),)


def cast_array(x: np.ndarray, to: DType, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """Convert with the semantics stated in rules.py (ONNX Cast's, opset 25).

    - float to int truncates toward zero (out of range and NaN are undefined),
      int to int wraps (two's complement), sub-byte types included;
    - to bool is `x != 0`; bool to numbers is 0/1;
    - to a wider or narrower f16/bf16/f32/f64 rounds to nearest even (inf past the range);
    - to fp8: round to nearest even; saturate=true clamps to +-max (infinities too,
      as opset 25 says; opset 23 made an infinity NaN for the fnuz types), NaN stays
      NaN; saturate=false follows the ONNX table: a rounded value past the range
      is inf for e5m2 and NaN for the types without infinity;
    - to fp6/fp4 (no inf, no NaN): always saturates (+-inf too); a NaN becomes a
      zero of the opposite sign (+NaN gives -0), as ONNX's reference and its backend
      test data do (through ml_dtypes); ONNX's float4 notes say 6 instead, which
      no implementation that the test suite checks follows;
    - to f8e8m0: see `_to_e8m0`;
    - from strings: decimal or scientific numbers, INF/+INF/-INF/NaN in any case;
      integers are parsed exactly, a fraction truncates toward zero for int targets;
      to bool a string is its number != 0;
    - to strings: the plain decimal form of each value (numpy's str).
    """
    x = np.asarray(x)
    src = dtype_of(x)
    if to.kind == "string":
        return _to_string(x, src)
    if src.kind == "string":
        return _from_string(x, to, saturate, round_mode)
    if to.name == "f8e8m0":
        return _to_e8m0(x, saturate, round_mode)
    if to.kind == "bool":
        return np.asarray(x != 0)
    if src.name == "f8e8m0" or (src.is_float and src.bits < 16):
        return cast_array(x.astype(np.float32), to, saturate, round_mode)  # ml_dtypes lacks fp8 -> fp8
    if to.is_int and src.is_float:
        with np.errstate(invalid="ignore", over="ignore"):
            return np.trunc(x.astype(np.float64)).astype(to.np_dtype)
    if to.is_float and to.bits <= 8:
        return _to_small_float(x, src, to, saturate)
    if to.is_int and src.is_int:  # via 64 bits: ml_dtypes has no int4 -> int2 and the like
        return x.astype(np.uint64 if src.kind == "uint" else np.int64).astype(to.np_dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(to.np_dtype)


def _to_small_float(x: np.ndarray, src: DType, to: DType, saturate: bool) -> np.ndarray:
    """fp8/fp6/fp4 targets: round to nearest even, with the saturation rules above."""
    wide = x.astype(np.float64 if src.bits == 64 else np.float32)
    target = to.np_dtype
    fmax = float(ml_dtypes.finfo(target).max)
    if to.bits < 8:  # fp6, fp4: no inf or NaN to fall back to
        nan_zero = np.where(np.signbit(wide), 0.0, -0.0)
        return np.where(np.isnan(wide), nan_zero, np.clip(wide, -fmax, fmax)).astype(target)
    if saturate:
        return np.where(np.isnan(wide), wide, np.clip(wide, -fmax, fmax)).astype(target)
    return wide.astype(target)  # ml_dtypes rounds first, then overflows to inf or NaN as ONNX's table


def _to_string(x: np.ndarray, src: DType) -> np.ndarray:
    if src.kind == "string":
        return np.array([_text(s) for s in x.ravel()], dtype=object).reshape(x.shape)
    if x.dtype.kind in "biufc":
        return x.astype(str).astype(object)
    return np.array([str(v) for v in x.ravel()], dtype=object).reshape(x.shape)  # ml_dtypes scalars


def _text(s: Any) -> str:
    return s.decode("utf-8") if isinstance(s, bytes) else str(s)


def _from_string(x: np.ndarray, to: DType, saturate: bool, round_mode: str) -> np.ndarray:
    texts = [_text(s).strip() for s in x.ravel()]
    if to.is_int:
        bits = np.array([_parse_int(t) % (1 << 64) for t in texts], dtype=np.uint64)  # two's complement
        return bits.reshape(x.shape).astype(to.np_dtype)
    numbers = np.array([_parse_number(t) for t in texts], dtype=np.float64).reshape(x.shape)
    return cast_array(numbers, to, saturate, round_mode)


def _parse_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        number = _parse_number(text)
        if not np.isfinite(number):
            raise ValueError(f"cannot cast string {text!r} to an integer") from None
        value = int(number)  # truncates toward zero
    return value


def _parse_number(s: Any) -> float:
    text = str(s).strip()
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"cannot cast string {text!r} to a number") from None


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """Powers of two 2^-127 .. 2^127 (ONNX Cast to FLOAT8E8M0, opset 25).

    round_mode up/down/nearest picks the power of two at or above, at or below,
    or nearest to |x| (ties, 1.5 * 2^e, go up). A result past 2^127 (or an
    infinity) is 2^127 when saturating, else NaN; below 2^-127 (or zero) it is
    2^-127 when saturating, else NaN (rounding up never goes below 2^-127).
    NaN stays NaN. ONNX leaves negative inputs unspecified: like its reference,
    the sign is dropped.
    """
    v = np.abs(np.asarray(x).astype(np.float64))
    finite = np.isfinite(v) & (v > 0)
    mant, exp = np.frexp(np.where(finite, v, 1.0))  # v = mant * 2^exp, mant in [0.5, 1)
    e = exp.astype(np.int64) - 1
    frac = mant * 2  # v = frac * 2^e, frac in [1, 2)
    if round_mode == "up":
        e = np.maximum(e + (frac > 1), -127)
    elif round_mode == "nearest":
        e = e + (frac >= 1.5)
    elif round_mode == "down":
        e = np.minimum(e, 127)
    else:
        raise ValueError(f"unknown round_mode {round_mode!r}")
    over = (np.isinf(v) | (e > 127)) & ~np.isnan(v)
    under = (v == 0) | (finite & (e < -127))
    bits = np.clip(e, -127, 127) + 127
    bits = np.where(over, 254 if saturate else 255, bits)
    bits = np.where(under, 0 if saturate else 255, bits)
    bits = np.where(np.isnan(v), 255, bits)
    return bits.astype(np.uint8).view(ml_dtypes.float8_e8m0fnu)


@register_op("ember.cast", traits={Pure, Elementwise})
class Cast(Op):
    """Convert to another element type (rules.py states the rounding and saturation).
    %y = ember.cast %x {to = f16} : f16[4]"""

    x = Operand(AnyTensor)
    to = Attr(A.DTypeAttr)
    saturate = Attr(A.Bool, default=True, doc="fp8 targets: clamp to the finite range")
    round_mode = Attr(A.OneOf("up", "down", "nearest"), default="up", doc="f8e8m0 targets only")
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        return rules.tensor(self, x).with_dtype(self.to)

    @staticmethod
    def reference(x: np.ndarray, *, to: DType, saturate: bool, round_mode: str) -> np.ndarray:
        return cast_array(x, to, saturate, round_mode)


__all__ = ["Constant", "Weight", "Identity", "Fused", "Cast", "cast_array", "DataMovement"]
