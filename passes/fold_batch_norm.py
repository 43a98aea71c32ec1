"""fold-batch-norm: per-channel affine maps folded into the heavy op that feeds them.

Inference batch normalization is the per-channel affine map y -> k*y + t with
k = scale / sqrt(var + epsilon) and t = bias - mean * k. After a linear op
with a constant weight, that map folds into the weight (each output channel's
filter times k) and the bias (b*k + t); a multiplication by a per-channel
constant (k) or an addition of one (t) folds the same way. All folds compute
in f64 and round once to the op's element type; new tensors are weights
named after the ones they replace (`conv1.weight/bn`, `conv1.bias/bn`, or
`conv1.weight/bn_bias` where there was no bias), or inline constants when
they replace constants of at most 64 elements.

Rules (each rooted at the consumer of the heavy op; the heavy op's result
must have no other use, or folding would compute it twice):
- conv-batch-norm, conv-mul, conv-add: ember.conv (any layout, weight_layout,
  groups) and ember.conv_transpose; channels are the layout's C axis.
- gemm-batch-norm, gemm-mul, gemm-add: channels are gemm's N (columns of b',
  c becomes beta*c*k + t with beta 1).
- matmul-batch-norm, matmul-mul: the constant b's last axis, which must be
  the result's channel axis; batch norm's shift becomes an add after it.
- batch-norm-to-affine: a batch norm with constant statistics that did not
  fold becomes ember.mul and ember.add by per-channel constants, so fusion
  sees elementwise ops.

Contract: afterwards no ember.batch_norm with constant parameters remains;
what computes is unchanged up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.ir import layout as L
from ember.ir.builder import Builder
from ember.ir.core import Module, Operation, Value
from ember.ir.types import TensorType
from ember.passes.dce import dead_code
from ember.passes.manager import Pass, PassContext, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_counted, known_value

CONVS = ("ember.conv", "ember.conv_transpose")
INLINE_LIMIT = 64


# -- what a heavy op's channels are ---------------------------------------------------------------
def _tensor(v: Value) -> TensorType | None:
    t = v.type
    return t if isinstance(t, TensorType) and t.shape is not None and t.dtype.is_float else None


def _out_channel_axis(op: Operation) -> int | None:
    """The axis of `op`'s result that a per-channel map may fold along, or None."""
    t = _tensor(op.results[0])
    if t is None:
        return None
    if op.name in CONVS:
        return L.resolve(op.attributes["layout"], t.rank).channel_axis
    return t.rank - 1 if t.rank >= 2 else None


def _channels(op: Operation) -> int | None:
    axis = _out_channel_axis(op)
    if axis is None:
        return None
    c = op.results[0].type.shape[axis]  # type: ignore[union-attr]
    return c if isinstance(c, int) else None


def _per_channel(op: Operation, array: np.ndarray) -> np.ndarray | None:
    """`array` as a vector of `op`'s output channels when, broadcast against `op`'s result,
    it varies along the channel axis only; else None."""
    t, axis, c = _tensor(op.results[0]), _out_channel_axis(op), _channels(op)
    if t is None or axis is None or c is None or array.ndim > t.rank:
        return None
    shape = (1,) * (t.rank - array.ndim) + array.shape
    if any(n != 1 for i, n in enumerate(shape) if i != axis) or shape[axis] not in (1, c):
        return None
    a = np.asarray(array, np.float64)
    if not np.all(np.isfinite(a)):
        return None
    return np.broadcast_to(a.reshape(-1), (c,)).copy()


def _bn_affine(bn: Operation, m: Match) -> tuple[np.ndarray, np.ndarray] | None:
    """(k, t) of a batch norm with constant statistics, in f64; None if they are not finite."""
    eps = float(bn.attributes["epsilon"])
    scale, bias, mean, var = (np.asarray(getattr(m, n), np.float64) for n in ("scale", "bias", "mean", "var"))
    with np.errstate(all="ignore"):
        denom = var + eps
        if not np.all(denom > 0):
            return None
        k = scale / np.sqrt(denom)
        t = bias - mean * k
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(t))):
        return None
    return k, t


def _bn_matches_channels(bn: Operation, heavy: Operation) -> bool:
    t = _tensor(bn.results[0])
    if t is None:
        return False
    return L.resolve(bn.attributes["layout"], t.rank).channel_axis == _out_channel_axis(heavy)


# -- new tensors -----------------------------------------------------------------------------------
SUFFIXES = ("bn", "scale", "shift", "bn_bias", "scale_bias", "shift_bias", "bn_scale", "bn_shift")


def _name_of(v: Value | None) -> str | None:
    """The weight name `v` reads, without the suffixes of earlier folds (`w/bn` -> `w`)."""
    op = v.defining_op if v is not None else None
    if op is None or op.name != "ember.weight":
        return None
    name = op.attributes["name"]
    while "/" in name and name.rsplit("/", 1)[1].rstrip("0123456789") in SUFFIXES:
        name = name.rsplit("/", 1)[0]
    return name


def _tensor_value(b: Builder, array: np.ndarray, source: Value | None, suffix: str) -> Value:
    """A weight named after `source`'s weight (`source/suffix`), or an inline constant when
    `source` is not a weight and the array is small."""
    name = _name_of(source)
    if name is None and array.size <= INLINE_LIMIT:
        return b.constant(np.ascontiguousarray(array))
    return b.weight(b.module.unique_weight_name(f"{name or 'folded'}/{suffix}"), np.ascontiguousarray(array))


def _bias_value(b: Builder, array: np.ndarray, old_bias: Value | None, weight: Value, suffix: str) -> Value:
    if old_bias is not None:
        return _tensor_value(b, array, old_bias, suffix)
    name = _name_of(weight)
    if name is None:
        return _tensor_value(b, array, None, suffix)
    return b.weight(b.module.unique_weight_name(f"{name}/{suffix}_bias"), np.ascontiguousarray(array))


# -- folding an affine map into each heavy op ------------------------------------------------------
def _scale_conv_weight(op: Operation, w: np.ndarray, k: np.ndarray) -> np.ndarray:
    """w (f64) with every output channel o's filter times k[o]."""
    rank = w.ndim
    spatial = L.resolve(op.attributes["layout"], rank).spatial
    if op.name == "ember.conv":
        axis = L.resolve_weight(op.attributes["weight_layout"], spatial, "OI").out_axis
        shape = [1] * rank
        shape[axis] = -1
        return w * k.reshape(shape)
    # conv_transpose: the O axis counts channels per group; group g's filters sit on its
    # block of input channels (the I axis), so output channel g*O + j scales (block g, j).
    wl = L.resolve_weight(op.attributes["weight_layout"], spatial, "IO")
    perm = wl.perm("IO", spatial)
    wc = np.transpose(w, perm)
    g = op.attributes["group"]
    c_in, o_group = wc.shape[0], wc.shape[1]
    scaled = wc.reshape(g, c_in // g, o_group, *wc.shape[2:]) * k.reshape(g, 1, o_group, *([1] * (rank - 2)))
    return np.transpose(scaled.reshape(wc.shape), L.inverse(perm))


def _fold_conv(b: Builder, op: Operation, k: np.ndarray, t: np.ndarray, suffix: str) -> Value | None:
    x, w, bias = (list(op.operands) + [None])[:3]
    w_arr = known_value(w)
    b_arr = known_value(bias) if bias is not None else None
    if w_arr is None or (bias is not None and b_arr is None):
        return None
    dt = op.results[0].type.dtype.np_dtype  # type: ignore[union-attr]
    new_w = w
    if not np.all(k == 1):
        new_w = _tensor_value(b, _scale_conv_weight(op, w_arr.astype(np.float64), k).astype(w_arr.dtype), w,
                              suffix)
    b64 = np.zeros_like(k) if b_arr is None else b_arr.astype(np.float64)
    new_b = _bias_value(b, (b64 * k + t).astype(dt), bias, w, suffix)
    return b.op(op.name, x, new_w, new_b, **op.attributes)


def _fold_gemm(b: Builder, op: Operation, k: np.ndarray, t: np.ndarray, suffix: str) -> Value | None:
    a, w, c = (list(op.operands) + [None])[:3]
    attrs = dict(op.attributes)
    w_arr = known_value(w)
    c_arr = known_value(c) if c is not None else None
    if w_arr is None or (c is not None and c_arr is None):
        return None
    dt = op.results[0].type.dtype.np_dtype  # type: ignore[union-attr]
    new_w = w
    if not np.all(k == 1):
        scaled = w_arr.astype(np.float64) * (k.reshape(-1, 1) if attrs["trans_b"] else k.reshape(1, -1))
        new_w = _tensor_value(b, scaled.astype(w_arr.dtype), w, suffix)
    if c_arr is None:
        shift = np.broadcast_to(t, k.shape)
    else:
        c2 = c_arr.astype(np.float64).reshape((1,) * (2 - c_arr.ndim) + c_arr.shape)
        shift = attrs["beta"] * c2 * k.reshape(1, -1) + t.reshape(1, -1)
        if shift.shape[0] == 1:
            shift = shift.reshape(-1)
    new_c = None
    if c is not None or np.any(shift != 0):
        new_c = _bias_value(b, np.asarray(shift, np.float64).astype(dt), c, w, suffix)
    attrs["beta"] = 1.0
    return b.op("ember.gemm", a, new_w, new_c, **attrs)


def _fold_matmul(b: Builder, op: Operation, k: np.ndarray, t: np.ndarray, suffix: str) -> Value | None:
    a, w = op.operands
    w_arr = known_value(w)
    if w_arr is None or w_arr.ndim < 2:
        return None
    dt = op.results[0].type.dtype.np_dtype  # type: ignore[union-attr]
    new_w = w
    if not np.all(k == 1):
        new_w = _tensor_value(b, (w_arr.astype(np.float64) * k).astype(w_arr.dtype), w, suffix)
    y = b.matmul(a, new_w)
    if np.all(t == 0):
        return y
    return b.add(y, _bias_value(b, t.astype(dt), None, w, suffix))


FOLDERS = {"ember.conv": _fold_conv, "ember.conv_transpose": _fold_conv, "ember.gemm": _fold_gemm,
           "ember.matmul": _fold_matmul}


def _fold(b: Builder, heavy: Operation, k: np.ndarray, t: np.ndarray, suffix: str) -> Value | None:
    if _tensor(heavy.results[0]) is None or _channels(heavy) is None:
        return None
    return FOLDERS[heavy.name](b, heavy, k, t, suffix)


# -- rule builds -------------------------------------------------------------------------------------
def fold_batch_norm(m: Match, b: Builder) -> Value | None:
    """bn(h(x, w, b0)) = h(x, w*k, b0*k + t), k = scale/sqrt(var+eps), t = bias - mean*k."""
    if not _bn_matches_channels(m.bn, m.heavy):
        return None
    affine = _bn_affine(m.bn, m)
    if affine is None or affine[0].shape != (_channels(m.heavy),):
        return None
    return _fold(b, m.heavy, *affine, "bn")


def fold_mul(m: Match, b: Builder) -> Value | None:
    """h(x, w, b0) * s = h(x, w*s, b0*s) for s constant per output channel."""
    k = _per_channel(m.heavy, m.c)
    if k is None:
        return None
    return _fold(b, m.heavy, k, np.zeros_like(k), "scale")


def fold_add(m: Match, b: Builder) -> Value | None:
    """h(x, w, b0) + t = h(x, w, b0 + t) for t constant per output channel."""
    t = _per_channel(m.heavy, m.c)
    if t is None:
        return None
    return _fold(b, m.heavy, np.ones_like(t), t, "shift")


def batch_norm_to_affine(m: Match, b: Builder) -> Value | None:
    """bn(x) = x * k + t with k, t per channel (shaped to broadcast along the channel axis)."""
    x = m.x
    t_x = _tensor(x)
    affine = _bn_affine(m.bn, m)
    if t_x is None or affine is None:
        return None
    k, t = affine
    axis = L.resolve(m.bn.attributes["layout"], t_x.rank).channel_axis
    shape = (-1,) + (1,) * (t_x.rank - 1 - axis)
    dt = t_x.dtype.np_dtype
    y = b.mul(x, _tensor_value(b, k.reshape(shape).astype(dt), m.scale_value, "bn_scale"))
    return b.add(y, _tensor_value(b, t.reshape(shape).astype(dt), m.bias_value, "bn_shift"))


def _heavy(names: str | tuple[str, ...]) -> P:
    return P.op(names, name="heavy", any_operands=True, single_use=True)


def _bn(producer: P) -> P:
    return P.op("ember.batch_norm", producer, P.const("scale"), P.const("bias"), P.const("mean"), P.const("var"),
                name="bn")


RULES = RuleSet("fold-batch-norm", [
    Rule("conv-batch-norm", _bn(_heavy(CONVS)), fold_batch_norm, benefit=2,
         doc="bn(conv(x, w, b0)) = conv(x, w*k, b0*k + t)"),
    Rule("gemm-batch-norm", _bn(_heavy("ember.gemm")), fold_batch_norm, benefit=2,
         doc="bn(gemm(a, w, c)) = gemm(a, w*k, beta*c*k + t)"),
    Rule("matmul-batch-norm", _bn(_heavy("ember.matmul")), fold_batch_norm, benefit=2,
         doc="bn(a @ w) = a @ (w*k) + t"),
    Rule("conv-mul", P.op("ember.mul", _heavy(CONVS), P.const("c")), fold_mul,
         doc="conv(x, w, b0) * s = conv(x, w*s, b0*s)"),
    Rule("gemm-mul", P.op("ember.mul", _heavy("ember.gemm"), P.const("c")), fold_mul,
         doc="gemm(a, w, c) * s = gemm(a, w*s, beta*c*s)"),
    Rule("matmul-mul", P.op("ember.mul", _heavy("ember.matmul"), P.const("c")), fold_mul,
         doc="(a @ w) * s = a @ (w*s)"),
    Rule("conv-add", P.op("ember.add", _heavy(CONVS), P.const("c")), fold_add,
         doc="conv(x, w, b0) + t = conv(x, w, b0 + t)"),
    Rule("gemm-add", P.op("ember.add", _heavy("ember.gemm"), P.const("c")), fold_add,
         doc="gemm(a, w, c) + t = gemm(a, w, beta*c + t)"),
    Rule("batch-norm-to-affine", _bn(P.var("x")), batch_norm_to_affine,
         doc="bn(x) = x*k + t with per-channel constants, where no producer took it"),
])


@register_pass("fold-batch-norm")
@dataclass(frozen=True)
class FoldBatchNorm(Pass):
    """Fold batch norms and per-channel scales and shifts into the weights and bias of the
    conv, gemm or matmul before them; lower the batch norms left to a multiply-add."""

    def run(self, module: Module, ctx: PassContext) -> bool:
        fired = apply_counted(module, RULES, ctx, self.name)
        if fired:
            dead_code(module)
        return bool(fired)
