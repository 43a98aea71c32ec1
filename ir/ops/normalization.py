"""Normalizations and the softmax family: ops that rescale values by statistics
taken over some axes (mean and variance, root mean square, a sum of exponentials).

Numeric conventions (see rules.py): f16/bf16/fp8 inputs compute in f32 and round
once at the end; f64 stays f64. This subsumes ONNX's `stash_type`, which only ever
asks for f32 statistics: Ember always keeps statistics in at least f32, so the
attribute is not carried. Mean and variance are taken in two passes (mean first,
then the mean of squared deviations), the biased variance, as ONNX defines them.

Channel-based norms (batch, instance, group, lrn) carry a `layout` attribute
(`ember.ir.layout`): None or "NCHW"-style puts channels on axis 1, "NHWC"-style on
the last axis, so TensorFlow models import without transposes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ember.errors import ShapeError
from ember.ir import attrs as A
from ember.ir import layout as L
from ember.ir.dims import Dim, Unknown, mod
from ember.ir.opdef import (Attr, FloatTensor, LayoutSensitive, Normalization, Op, Operand, Pure, Result,
                            register_op)
from ember.ir.ops import rules
from ember.ir.types import TensorType, Type

NORM = {Pure, Normalization}
CHANNEL_NORM = {Pure, Normalization, LayoutSensitive}


# -- shared type-rule pieces -----------------------------------------------------------------------
def _float_input(op: Op, x: Type | None, min_rank: int = 0) -> TensorType:
    """x, ranked and of rank >= min_rank (its float type is the operand constraint's job)."""
    t = rules.ranked(op, x, "x")
    if t.rank < min_rank:
        raise op.error(f"x must have rank >= {min_rank}, got {t}")
    return t


def _provably_different(a: Dim, b: Dim) -> bool:
    """Two dims that cannot be equal: both static and unequal (symbols may be anything)."""
    return isinstance(a, int) and isinstance(b, int) and a != b


def _channel_axis(op: Op, x: TensorType) -> int:
    """Where x's channels are, from the op's `layout` (x must have rank >= 2)."""
    return L.activation(op, op.layout, x.rank).channel_axis


def _per_channel(op: Op, t: Type | None, channels: Dim, what: str, like: TensorType | None = None) -> None:
    """Check a per-channel parameter: rank 1 of length `channels` (and x's dtype when `like`)."""
    t = rules.ranked(op, t, what)
    if like is not None and t.dtype != like.dtype:
        raise op.error(f"{what} must have x's element type {like.dtype}, got {t}")
    if t.rank != 1 or _provably_different(t.shape[0], channels):  # type: ignore[index]
        raise op.error(f"{what} must be a vector of the {channels} channels, got {t}")


def _broadcasts_to(op: Op, t: Type | None, target: Sequence[Dim], what: str, like: TensorType | None) -> None:
    """Check that `t` broadcasts (numpy rules, one way) to the normalized shape `target`."""
    t = rules.ranked(op, t, what)
    if like is not None and t.dtype != like.dtype:
        raise op.error(f"{what} must have x's element type {like.dtype}, got {t}")
    shape = t.shape
    assert shape is not None
    ok = len(shape) <= len(target) and all(
        s == 1 or not _provably_different(s, d) for s, d in zip(reversed(shape), reversed(target)))
    if not ok:
        want = "[" + ",".join(str(d) for d in target) + "]"
        raise op.error(f"{what} {t} does not broadcast to the normalized shape {want}")


# -- shared reference pieces -----------------------------------------------------------------------
def _ref_channel_axis(layout: str | None, rank: int) -> int:
    return 1 if layout is None else layout.index("C")


def _along(v: np.ndarray, axis: int, rank: int, dt: np.dtype) -> np.ndarray:
    """A per-channel vector shaped to broadcast along `axis` of a rank-`rank` tensor."""
    shape = [1] * rank
    shape[axis] = -1
    return v.astype(dt).reshape(shape)


def _standardize(x: np.ndarray, axes: tuple[int, ...], epsilon: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) over `axes`, in x's (already wide) dtype."""
    n = max(int(np.prod([x.shape[a] for a in axes])), 1)  # an empty x gives an empty result
    mean = np.sum(x, axis=axes, keepdims=True) / n
    d = x - mean
    var = np.sum(d * d, axis=axes, keepdims=True) / n
    return d / np.sqrt(var + x.dtype.type(epsilon))


# -- batch, instance, group ------------------------------------------------------------------------
@register_op("ember.batch_norm", traits=CHANNEL_NORM)
class BatchNorm(Op):
    """Inference batch normalization with stored statistics, per channel c:
    y = scale[c] * (x - mean[c]) / sqrt(var[c] + epsilon) + bias[c].
    The four parameters are vectors of the C channels, of any float type (as ONNX's
    T1/T2); they compute in x's compute type. ONNX's training mode (batch statistics and
    running-mean outputs) has no place in an inference compiler and is not carried.
    %y = ember.batch_norm %x, %scale, %bias, %mean, %var {epsilon = 0.001, layout = "NHWC"} : f32[1,8,8,3]"""

    x = Operand(FloatTensor)
    scale = Operand(FloatTensor)
    bias = Operand(FloatTensor)
    mean = Operand(FloatTensor)
    var = Operand(FloatTensor)
    epsilon = Attr(A.Float, default=1e-5)
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type, scale: Type, bias: Type, mean: Type, var: Type) -> TensorType:
        t = _float_input(self, x, 2)
        channels = t.shape[_channel_axis(self, t)]  # type: ignore[index]
        for name, p in (("scale", scale), ("bias", bias), ("mean", mean), ("var", var)):
            _per_channel(self, p, channels, name)
        return t

    @staticmethod
    def reference(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray, *,
                  epsilon: float, layout: str | None) -> np.ndarray:
        dt = rules.compute_dtype(x.dtype)
        c = _ref_channel_axis(layout, x.ndim)
        s, b, m, v = (_along(p, c, x.ndim, dt) for p in (scale, bias, mean, var))
        y = s * (x.astype(dt) - m) / np.sqrt(v + dt.type(epsilon)) + b
        return y.astype(x.dtype)


@register_op("ember.instance_norm", traits=CHANNEL_NORM)
class InstanceNorm(Op):
    """Normalize each (sample, channel) over its spatial axes, then scale and shift per channel:
    y = scale[c] * (x - mean_nc) / sqrt(var_nc + epsilon) + bias[c]. x has rank >= 3 (a
    rank-2 input has no spatial axes to take statistics over).
    %y = ember.instance_norm %x, %scale, %bias : f32[2,3,8,8]"""

    x = Operand(FloatTensor)
    scale = Operand(FloatTensor)
    bias = Operand(FloatTensor)
    epsilon = Attr(A.Float, default=1e-5)
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type, scale: Type, bias: Type) -> TensorType:
        t = _float_input(self, x, 3)
        channels = t.shape[_channel_axis(self, t)]  # type: ignore[index]
        _per_channel(self, scale, channels, "scale", t)
        _per_channel(self, bias, channels, "bias", t)
        return t

    @staticmethod
    def reference(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, *, epsilon: float,
                  layout: str | None) -> np.ndarray:
        dt = rules.compute_dtype(x.dtype)
        c = _ref_channel_axis(layout, x.ndim)
        spatial = tuple(a for a in range(1, x.ndim) if a != c)
        y = _standardize(x.astype(dt), spatial, epsilon)
        y = y * _along(scale, c, x.ndim, dt) + _along(bias, c, x.ndim, dt)
        return y.astype(x.dtype)


@register_op("ember.group_norm", traits=CHANNEL_NORM)
class GroupNorm(Op):
    """Split the C channels into `num_groups` contiguous groups; normalize each (sample,
    group) over its channels and spatial axes; then scale and shift per CHANNEL (ONNX
    opset 21 semantics; opset 18's per-group scale is the frontend's to expand).
    num_groups must divide C.
    %y = ember.group_norm %x, %scale, %bias {num_groups = 4} : f32[2,8,4,4]"""

    x = Operand(FloatTensor)
    scale = Operand(FloatTensor)
    bias = Operand(FloatTensor)
    num_groups = Attr(A.Int)
    epsilon = Attr(A.Float, default=1e-5)
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type, scale: Type, bias: Type) -> TensorType:
        t = _float_input(self, x, 2)
        channels = t.shape[_channel_axis(self, t)]  # type: ignore[index]
        if self.num_groups < 1:
            raise self.error(f"num_groups must be >= 1, got {self.num_groups}")
        rest = 0 if isinstance(channels, Unknown) else mod(channels, self.num_groups)
        if isinstance(rest, int) and rest != 0:
            raise self.error(f"num_groups {self.num_groups} does not divide the {channels} channels")
        _per_channel(self, scale, channels, "scale", t)
        _per_channel(self, bias, channels, "bias", t)
        return t

    @staticmethod
    def reference(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, *, num_groups: int, epsilon: float,
                  layout: str | None) -> np.ndarray:
        dt = rules.compute_dtype(x.dtype)
        c = _ref_channel_axis(layout, x.ndim)
        cf = np.moveaxis(x.astype(dt), c, 1)  # channels first: groups are contiguous blocks
        n, channels = cf.shape[:2]
        if channels % num_groups:
            raise ShapeError(f"ember.group_norm: num_groups {num_groups} does not divide {channels} channels")
        per_group = (channels // num_groups) * int(np.prod(cf.shape[2:], dtype=np.int64))
        g = _standardize(cf.reshape(n, num_groups, per_group), (2,), epsilon).reshape(cf.shape)
        y = np.moveaxis(g, 1, c) * _along(scale, c, x.ndim, dt) + _along(bias, c, x.ndim, dt)
        return y.astype(x.dtype)


# -- layer, rms ------------------------------------------------------------------------------------
@register_op("ember.layer_norm", traits=NORM)
class LayerNorm(Op):
    """Normalize over the trailing axes axis..rank-1, then y = normalized * scale + bias.
    scale and the optional bias have x's type and broadcast (one way) to the normalized
    shape x.shape[axis:]. Only Y is produced: ONNX's optional Mean and InvStdDev outputs
    (used by training) are reductions beside this op, which the frontend emits when asked.
    Statistics are kept in f32 for low-precision x (ONNX's stash_type=1).
    %y = ember.layer_norm %x, %scale, %bias : f32[2,16,64]"""

    x = Operand(FloatTensor)
    scale = Operand(FloatTensor)
    bias = Operand(FloatTensor, optional=True)
    axis = Attr(A.Int, default=-1)
    epsilon = Attr(A.Float, default=1e-5)
    out = Result(FloatTensor)

    def infer(self, x: Type, scale: Type, bias: Type | None) -> TensorType:
        t = _float_input(self, x, 1)
        first = rules.axis(self, self.axis, t.rank)
        normalized = t.shape[first:]  # type: ignore[index]
        _broadcasts_to(self, scale, normalized, "scale", t)
        if bias is not None:
            _broadcasts_to(self, bias, normalized, "bias", t)
        return t

    @staticmethod
    def reference(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, *, axis: int,
                  epsilon: float) -> np.ndarray:
        dt = rules.compute_dtype(x.dtype)
        axes = tuple(range(axis % x.ndim, x.ndim))
        y = _standardize(x.astype(dt), axes, epsilon) * scale.astype(dt)
        if bias is not None:
            y = y + bias.astype(dt)
        return y.astype(x.dtype)


@register_op("ember.rms_norm", traits=NORM)
class RmsNorm(Op):
    """Root-mean-square normalization (ONNX RMSNormalization, opset 23) over the trailing
    axes axis..rank-1: y = x / sqrt(mean(x^2) + epsilon) * scale. As in ONNX, scale may have
    another float type than x, and the result has scale's type; it computes in the wider
    of the two compute types.
    %y = ember.rms_norm %x, %scale {epsilon = 1e-06} : f32[2,16,64]"""

    x = Operand(FloatTensor)
    scale = Operand(FloatTensor)
    axis = Attr(A.Int, default=-1)
    epsilon = Attr(A.Float, default=1e-5)
    out = Result(FloatTensor)

    def infer(self, x: Type, scale: Type) -> TensorType:
        t = _float_input(self, x, 1)
        first = rules.axis(self, self.axis, t.rank)
        _broadcasts_to(self, scale, t.shape[first:], "scale", None)  # type: ignore[index]
        return t.with_dtype(rules.tensor(self, scale).dtype)

    @staticmethod
    def reference(x: np.ndarray, scale: np.ndarray, *, axis: int, epsilon: float) -> np.ndarray:
        dt = np.promote_types(rules.compute_dtype(x.dtype), rules.compute_dtype(scale.dtype))
        axes = tuple(range(axis % x.ndim, x.ndim))
        w = x.astype(dt)
        n = max(int(np.prod([x.shape[a] for a in axes])), 1)
        ms = np.sum(w * w, axis=axes, keepdims=True) / n
        y = w / np.sqrt(ms + dt.type(epsilon)) * scale.astype(dt)
        return y.astype(scale.dtype)


# -- lrn -------------------------------------------------------------------------------------------
@register_op("ember.lrn", traits=CHANNEL_NORM)
class Lrn(Op):
    """Local response normalization across channels (AlexNet):
    y = x / (bias + alpha / size * sum of x^2 over the channel window)^beta, where the
    window of channel c is [c - (size-1)//2, c + ceil((size-1)/2)], clipped to 0..C-1.
    %y = ember.lrn %x {size = 5} : f32[1,16,8,8]"""

    x = Operand(FloatTensor)
    size = Attr(A.Int)
    alpha = Attr(A.Float, default=1e-4)
    beta = Attr(A.Float, default=0.75)
    bias = Attr(A.Float, default=1.0)
    layout = Attr(A.Optional(A.Str), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type) -> TensorType:
        t = _float_input(self, x, 2)
        _channel_axis(self, t)
        if self.size < 1:
            raise self.error(f"size must be >= 1, got {self.size}")
        return t

    @staticmethod
    def reference(x: np.ndarray, *, size: int, alpha: float, beta: float, bias: float,
                  layout: str | None) -> np.ndarray:
        dt = rules.compute_dtype(x.dtype)
        c = _ref_channel_axis(layout, x.ndim)
        sq = np.moveaxis(x.astype(dt), c, -1) ** 2
        before, after = (size - 1) // 2, size // 2  # size//2 == ceil((size-1)/2)
        padded = np.pad(sq, [(0, 0)] * (sq.ndim - 1) + [(before, after)])
        channels = sq.shape[-1]
        window = sum(padded[..., k:k + channels] for k in range(size))
        denom = (dt.type(bias) + dt.type(alpha / size) * np.moveaxis(window, -1, c)) ** dt.type(beta)
        return (x.astype(dt) / denom).astype(x.dtype)


# -- softmax family --------------------------------------------------------------------------------
class _AlongAxis(Op):
    """A float tensor transformed along one axis; the result has its type."""

    x = Operand(FloatTensor)
    axis = Attr(A.Int, default=-1)
    out = Result(FloatTensor)

    def infer(self, x: Type) -> TensorType:
        t = _float_input(self, x)
        rules.axis(self, self.axis, t.rank)
        return t


@register_op("ember.softmax", traits=NORM)
class Softmax(_AlongAxis):
    """exp(x) / sum(exp(x)) along one axis (ONNX opset 13: only that axis, no 2-D coercion;
    the frontend rewrites older opsets). Computed as exp(x - max) so large inputs do not
    overflow; a NaN makes its whole slice NaN, and so does a slice that is all -inf.
    %y = ember.softmax %x : f32[2,8,128]"""

    @staticmethod
    def reference(x: np.ndarray, *, axis: int) -> np.ndarray:
        w = x.astype(rules.compute_dtype(x.dtype))
        if w.size == 0:
            return x.copy()
        with np.errstate(invalid="ignore"):
            e = np.exp(w - np.max(w, axis=axis, keepdims=True))
            return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


@register_op("ember.log_softmax", traits=NORM)
class LogSoftmax(_AlongAxis):
    """log(softmax(x)) along one axis, computed as x - max - log(sum(exp(x - max))) (ONNX
    opset 13 semantics; NaN and all -inf slices give NaN as for softmax).
    %y = ember.log_softmax %x {axis = 1} : f32[2,8,128]"""

    @staticmethod
    def reference(x: np.ndarray, *, axis: int) -> np.ndarray:
        w = x.astype(rules.compute_dtype(x.dtype))
        if w.size == 0:
            return x.copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            shifted = w - np.max(w, axis=axis, keepdims=True)
            return (shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))).astype(x.dtype)


@register_op("ember.hardmax", traits={Pure})
class Hardmax(_AlongAxis):
    """1 at the first largest element along the axis, 0 elsewhere (ONNX opset 13). Ties go to
    the lowest index; a NaN counts as the largest (as in argmax), so the first NaN gets the 1.
    %y = ember.hardmax %x : f32[4,10]"""

    @staticmethod
    def reference(x: np.ndarray, *, axis: int) -> np.ndarray:
        y = np.zeros_like(x)
        if x.size == 0:
            return y
        idx = np.argmax(x.astype(rules.compute_dtype(x.dtype)), axis=axis)
        np.put_along_axis(y, np.expand_dims(idx, axis), 1, axis=axis)
        return y


__all__ = ["BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm", "RmsNorm", "Lrn", "Softmax", "LogSoftmax",
           "Hardmax"]
