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
from ember.ir.opdef import (AnyTensor, AnyType, Attr, ControlFlow, DataMovement, Elementwise, EvalContext,
                            Op, Operand, Pure, Region, Result, ViewLike, register_op)
from ember.ir.ops import rules
from ember.ir.types import DType, TensorType, Type


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


_FP8_NO_INF = {"f8e4m3fn", "f8e4m3fnuz", "f8e5m2fnuz"}
_FP8_FNUZ = {"f8e4m3fnuz", "f8e5m2fnuz"}


def cast_array(x: np.ndarray, to: DType, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """Convert with the semantics stated in rules.py (ONNX Cast's)."""
    x = np.asarray(x)
    if to.kind == "string":
        return x.astype(str).astype(object)
    if x.dtype == object or x.dtype.kind in "US":
        return np.array([_parse_number(s) for s in x.ravel()], dtype=np.float64).reshape(x.shape).astype(to.np_dtype)
    target = to.np_dtype
    if to.name == "f8e8m0":
        return _to_e8m0(x, saturate, round_mode)
    if to.kind == "bool":
        return (x != 0) if x.dtype.kind != "c" else (x != 0)
    if to.kind in ("int", "uint") and x.dtype.kind == "f":
        wide = np.asarray(x, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return np.trunc(wide).astype(target)
    if to.is_float and to.bits <= 8 and x.dtype.kind in "fiub":
        wide = np.asarray(x, dtype=np.float32 if x.dtype.itemsize <= 4 else np.float64)
        fmax = float(ml_dtypes.finfo(target).max)
        if saturate:
            clipped = np.where(np.isnan(wide), wide, np.clip(wide, -fmax, fmax))
            if to.name in _FP8_FNUZ:  # no infinity: an infinite input is NaN even when saturating
                clipped = np.where(np.isinf(wide), np.nan, clipped)
            return clipped.astype(target)
        if to.name in _FP8_NO_INF or to.bits < 8:
            # Without saturation, values past the range become NaN (no inf to go to).
            out = wide.astype(target)
            over = np.abs(wide) > fmax
            if over.any() and to.bits == 8:
                out = np.where(over, np.array(np.nan, dtype=target), out)
            return out
        return wide.astype(target)
    return x.astype(target)


def _parse_number(s: Any) -> float:
    text = str(s).strip()
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"cannot cast string {text!r} to a number") from None


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """Powers of two: round the exponent up, down or to nearest (ONNX Cast round_mode)."""
    v = np.asarray(x, dtype=np.float32)
    bits = v.view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.int64)
    mantissa = bits & 0x7FFFFF
    if round_mode == "up":
        exponent = exponent + (mantissa != 0)
    elif round_mode == "nearest":
        exponent = exponent + (mantissa >= 0x400000)
    out_bits = np.where(exponent > 254, 254 if saturate else 255, exponent)
    out_bits = np.where(np.isnan(v) | (~np.isfinite(v) & ~np.array(saturate)), 255, out_bits)
    out_bits = np.where(np.isinf(v) & saturate, 254, out_bits)
    return out_bits.astype(np.uint8).view(ml_dtypes.float8_e8m0fnu)


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
