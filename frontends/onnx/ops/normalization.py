"""Normalizations and the softmax family.

Each ONNX op maps to one Ember op, except where an opset's form needs a little more:
- Softmax, LogSoftmax, Hardmax before opset 13 coerce x to 2-D at `axis` and work
  along the flattened trailing dims: a flatten, the op along axis 1, a reshape back
  (one op when `axis` is the last axis, where both forms agree).
- GroupNormalization 18 has one scale and bias per group; they are repeated per channel
  for ember.group_norm (opset 21's form).
- LayerNormalization's optional Mean and InvStdDev outputs are computed with reductions
  beside the single ember.layer_norm op, only when the model asks for them.
- LpNormalization is a reduce_l1/reduce_l2 and a division (a zero norm gives 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.frontends.onnx.tensors import element_type
from ember.ir.core import Value
from ember.ir.dims import Unknown
from ember.ir.types import TensorType

SOFTMAX_LIKE = {"Softmax": "ember.softmax", "LogSoftmax": "ember.log_softmax", "Hardmax": "ember.hardmax"}


def _coerced_2d(ember_name: str):  # noqa: ANN202
    def convert(ctx: NodeContext) -> Any:
        x, t = ctx.input(0), ctx.tensor_type(0)
        if t.shape is None:
            raise ctx.unsupported("the opset < 13 form needs x's rank")
        axis = int(ctx.attr("axis", 1))
        if not -t.rank <= axis < max(t.rank, 1):
            raise ctx.fail(f"axis {axis} is out of range for rank {t.rank}")
        axis %= max(t.rank, 1)
        if axis == t.rank - 1:
            return ctx.op(ember_name, x, axis=-1)
        flat = ctx.op("ember.flatten", x, axis=axis)
        return ctx.op("ember.reshape", ctx.op(ember_name, flat, axis=1), shape=_shape_dims(ctx, t), allowzero=True)
    return convert


def _shape_dims(ctx: NodeContext, t: TensorType) -> tuple[Any, ...]:
    """x's shape as reshape dims (one unknown dim may be inferred as -1)."""
    assert t.shape is not None
    unknown = [i for i, d in enumerate(t.shape) if isinstance(d, Unknown)]
    if len(unknown) > 1 or (unknown and 0 in t.shape):
        raise ctx.unsupported(f"cannot restore the shape {t} after the 2-D coercion: it has unknown dims")
    return tuple(-1 if isinstance(d, Unknown) else d for d in t.shape)


def _single_axis(ember_name: str):  # noqa: ANN202
    return lambda ctx: ctx.op(ember_name, ctx.input(0), axis=int(ctx.attr("axis", -1)))


for _onnx, _ember in SOFTMAX_LIKE.items():
    converter(_onnx, since=1)(_coerced_2d(_ember))
    converter(_onnx, since=13)(_single_axis(_ember))


# -- batch, instance, group ------------------------------------------------------------------------
@converter("BatchNormalization")
def batch_norm(ctx: NodeContext) -> Any:
    """Inference form, and opset 14+'s training_mode=1: normalize with the batch's own
    statistics (biased variance) and give the running statistics updated by `momentum`.
    Opsets 1-6's `is_test` is not read: like onnxruntime, Y uses the given statistics."""
    eps = float(ctx.attr("epsilon", 1e-5))
    if not ctx.attr("spatial", 1):
        raise ctx.unsupported("spatial=0 (per-activation statistics) is not supported")
    if ctx.attr("training_mode", 0):
        return _batch_norm_training(ctx, eps)
    extra = [i for i in range(1, ctx.n_outputs) if ctx.has_output(i)]
    if extra:
        raise ctx.unsupported(f"outputs {extra} (running or saved statistics) exist only in training mode, "
                              "which opsets before 14 do not mark")
    return ctx.op("ember.batch_norm", *(ctx.input(i) for i in range(5)), epsilon=eps)


def _batch_norm_training(ctx: NodeContext, eps: float) -> list[Any]:
    x, scale, bias, running_mean, running_var = (ctx.input(i) for i in range(5))
    rank = ctx.tensor_type(0).rank
    axes = tuple(a for a in range(rank) if a != 1)
    mean = ctx.op("ember.reduce_mean", x, axes=axes, keepdims=False)
    centered = ctx.op("ember.sub", x, ctx.op("ember.reshape", mean, shape=(1, -1) + (1,) * (rank - 2)))
    var = ctx.op("ember.reduce_mean", ctx.op("ember.mul", centered, centered), axes=axes, keepdims=False)
    y = ctx.op("ember.batch_norm", x, scale, bias, mean, var, epsilon=eps)
    outs: list[Any] = [y]
    if ctx.has_output(1) or ctx.has_output(2):
        dt = running_mean.type.dtype.np_dtype  # type: ignore[union-attr]
        momentum = ctx.constant(np.array(ctx.attr("momentum", 0.9), dt))
        rest = ctx.constant(np.array(1 - ctx.attr("momentum", 0.9), dt))

        def update(old: Any, new: Any) -> Any:
            new = ctx.op("ember.cast", new, to=old.type.dtype) if new.type.dtype != old.type.dtype else new
            return ctx.op("ember.add", ctx.op("ember.mul", old, momentum), ctx.op("ember.mul", new, rest))

        outs += [update(running_mean, mean), update(running_var, var)]
    return outs


@converter("InstanceNormalization")
def instance_norm(ctx: NodeContext) -> Any:
    return ctx.op("ember.instance_norm", ctx.input(0), ctx.input(1), ctx.input(2),
                  epsilon=float(ctx.attr("epsilon", 1e-5)))


def _group_norm(per_group: bool):  # noqa: ANN202
    def convert(ctx: NodeContext) -> Any:
        groups = int(ctx.attr("num_groups"))
        scale, bias = ctx.input(1), ctx.input(2)
        if per_group:
            t = ctx.tensor_type(0)
            if t.shape is None or t.rank < 2:
                raise ctx.fail(f"x must have rank >= 2, got {t}")
            scale, bias = (_per_channel(ctx, i, groups, t.shape[1]) for i in (1, 2))
        return ctx.op("ember.group_norm", ctx.input(0), scale, bias, num_groups=groups,
                      epsilon=float(ctx.attr("epsilon", 1e-5)))
    return convert


def _per_channel(ctx: NodeContext, i: int, groups: int, channels: Any) -> Value:
    """Opset 18's per-group parameter (input i, [groups]) repeated for each channel of its group."""
    t = ctx.tensor_type(i)
    if t.shape != (groups,):
        raise ctx.fail(f"input {i} must be a vector of the {groups} groups (opset 18), got {t}")
    if isinstance(channels, Unknown):
        raise ctx.unsupported("the opset 18 form needs the channel count")
    value = ctx.const(i)
    if value is not None and isinstance(channels, int):
        if channels % groups:
            raise ctx.fail(f"num_groups {groups} does not divide the {channels} channels")
        return ctx.constant(np.repeat(value, channels // groups))
    column = ctx.op("ember.unsqueeze", ctx.input(i), axes=(1,))
    block = ctx.op("ember.expand", column, shape=(groups, channels // groups))
    return ctx.op("ember.reshape", block, shape=(channels,))


converter("GroupNormalization", since=18)(_group_norm(per_group=True))
converter("GroupNormalization", since=21)(_group_norm(per_group=False))


# -- layer, rms ------------------------------------------------------------------------------------
@converter("LayerNormalization", since=17)
def layer_norm(ctx: NodeContext) -> Any:
    x, t = ctx.input(0), ctx.tensor_type(0)
    axis, epsilon = int(ctx.attr("axis", -1)), float(ctx.attr("epsilon", 1e-5))
    y = ctx.op("ember.layer_norm", x, ctx.input(1), ctx.input(2) if ctx.has(2) else None, axis=axis,
               epsilon=epsilon)
    if not (ctx.has_output(1) or ctx.has_output(2)):
        return y
    if t.shape is None:
        raise ctx.unsupported("the Mean and InvStdDev outputs need x's rank")
    stash = element_type(int(ctx.attr("stash_type", 1)), f"{ctx.name}: attribute 'stash_type'")
    if not stash.is_float:
        raise ctx.fail(f"stash_type must be a float type, got {stash}")
    axes = tuple(range(axis % t.rank, t.rank)) if -t.rank <= axis < t.rank else (axis,)
    wide = x if t.dtype == stash else ctx.op("ember.cast", x, to=stash)
    mean = ctx.op("ember.reduce_mean", wide, axes=axes, keepdims=True)
    centered = ctx.op("ember.sub", wide, mean)
    var = ctx.op("ember.reduce_mean", ctx.op("ember.mul", centered, centered), axes=axes, keepdims=True)
    eps = ctx.constant(np.array(epsilon, stash.np_dtype))
    inv_std = ctx.op("ember.rsqrt", ctx.op("ember.add", var, eps))
    return [y, mean, inv_std]


@converter("RMSNormalization", since=23)
def rms_norm(ctx: NodeContext) -> Any:
    return ctx.op("ember.rms_norm", ctx.input(0), ctx.input(1), axis=int(ctx.attr("axis", -1)),
                  epsilon=float(ctx.attr("epsilon", 1e-5)))


# -- lrn, lp ---------------------------------------------------------------------------------------
@converter("LRN")
def lrn(ctx: NodeContext) -> Any:
    return ctx.op("ember.lrn", ctx.input(0), size=int(ctx.attr("size")), alpha=float(ctx.attr("alpha", 1e-4)),
                  beta=float(ctx.attr("beta", 0.75)), bias=float(ctx.attr("bias", 1.0)))


@converter("LpNormalization")
def lp_norm(ctx: NodeContext) -> Any:
    p = int(ctx.attr("p", 2))
    if p not in (1, 2):
        raise ctx.fail(f"p must be 1 or 2, got {p}")
    x, t = ctx.input(0), ctx.tensor_type(0)
    norm = ctx.op("ember.reduce_l1" if p == 1 else "ember.reduce_l2", x, axes=(int(ctx.attr("axis", -1)),),
                  keepdims=True)
    zero, one = (ctx.constant(np.array(v, t.dtype.np_dtype)) for v in (0, 1))
    safe = ctx.op("ember.where", ctx.op("ember.equal", norm, zero), one, norm)  # a zero norm: x is all 0
    return ctx.op("ember.div", x, safe)
