"""Attention-family ONNX ops: Attention (opsets 23-25) and RotaryEmbedding (23) as single
Ember ops (`ember.attention`, `ember.rotary_embedding`), LinearAttention, FlexAttention.

Attention's 3-D packed-heads form becomes reshape + transpose around the op (Ember's
attention is BHSD only); its internal KV cache (past_key/past_value) becomes a concat
along the sequence axis, which is also present_key/present_value; a mask shorter than
the total key length is padded with -inf (False for bool masks), as ONNX says.
`softmax_precision` is not carried: Ember's attention computes its softmax in f32 for
f16, bf16 and f32 inputs and in f64 for f64. So the usual request (f32 for f16/bf16
inputs) is what it does anyway; f64 requested on f32 inputs is computed in f32, and a
narrower type (f16 on f32 inputs) more precisely than asked.

Every Attention form maps to `ember.attention`; Q/K/V of unknown rank are rejected (the
ONNX expansion needs their ranks too). LinearAttention (27) becomes `ember.linear_attention`.
FlexAttention (ai.onnx.preview) without score_mod/prob_mod is `ember.attention`; with those
subgraphs it is imported through its ONNX function expansion.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.ir.core import Value
from ember.ir.ops.shape import provably_different
from ember.ir.types import TensorType

SCORE_MODES = {0: "raw", 1: "softcap", 2: "biased", 3: "probs"}


def expand(ctx: NodeContext) -> Any:
    """Import the node through its ONNX function expansion."""
    return ctx.expand()


def split_heads(ctx: NodeContext, x: Value, heads: int) -> Value:
    """[B, S, H*D] -> [B, H, S, D]."""
    x = ctx.op("ember.reshape", x, shape=(0, 0, heads, -1))
    return ctx.op("ember.transpose", x, perm=(0, 2, 1, 3))


def merge_heads(ctx: NodeContext, x: Value) -> Value:
    """[B, H, S, D] -> [B, S, H*D]."""
    x = ctx.op("ember.transpose", x, perm=(0, 2, 1, 3))
    return ctx.op("ember.reshape", x, shape=(0, 0, -1))


def _heads_attr(ctx: NodeContext, name: str) -> int:
    n = ctx.attr(name)
    if n is None or n < 1:
        raise ctx.fail(f"3-D inputs need attribute {name} >= 1, got {n}")
    return int(n)


def _pad_mask(ctx: NodeContext, mask: Value, total: Any) -> Value:
    """Pad the mask's key axis up to `total` keys with -inf (False for bool masks)."""
    mt = mask.type
    assert isinstance(mt, TensorType) and mt.shape is not None
    have = mt.shape[-1] if mt.rank else 1
    if mt.rank == 0 or not provably_different(have, total):
        return mask
    if isinstance(have, int) and isinstance(total, int) and have > total:
        raise ctx.fail(f"attn_mask has {have} keys, more than the {total} keys of K (with the past)")
    fill = np.array(False) if mt.dtype.kind == "bool" else np.array(-np.inf, mt.dtype.np_dtype)
    pads = [0] * mt.rank + [0] * (mt.rank - 1) + [total - have]
    return ctx.op("ember.pad", mask, ctx.constant(fill), pads=tuple(pads))


@converter("Attention", since=23)
def attention(ctx: NodeContext) -> Any:
    if any(ctx.tensor_type(i).shape is None for i in range(3)):
        raise ctx.unsupported("Q, K and V need known ranks (3-D packed heads or 4-D)")
    qt = ctx.tensor_type(0)
    q, k, v = ctx.input(0), ctx.input(1), ctx.input(2)
    if ctx.tensor_type(2).dtype != qt.dtype:
        v = ctx.op("ember.cast", v, to=qt.dtype)
    packed = qt.rank == 3
    if packed:
        q = split_heads(ctx, q, _heads_attr(ctx, "q_num_heads"))
        kv_heads = _heads_attr(ctx, "kv_num_heads")
        k, v = split_heads(ctx, k, kv_heads), split_heads(ctx, v, kv_heads)
    elif qt.rank != 4:
        raise ctx.fail(f"Q must be 3-D or 4-D, got {qt}")
    present_k, present_v = k, v
    has_past = ctx.has(4) or ctx.has(5)
    if has_past:
        if not (ctx.has(4) and ctx.has(5)):
            raise ctx.fail("past_key and past_value must be given together")
        past_v = ctx.input(5)
        if ctx.tensor_type(5).dtype != qt.dtype:
            past_v = ctx.op("ember.cast", past_v, to=qt.dtype)
        present_k = ctx.op("ember.concat", ctx.input(4), k, axis=2)
        present_v = ctx.op("ember.concat", past_v, v, axis=2)
    kv_lens = ctx.input(6) if ctx.has(6) else None
    if kv_lens is not None and has_past:
        raise ctx.fail("nonpad_kv_seqlen cannot be combined with past_key/past_value")
    mask = ctx.input(3) if ctx.has(3) else None
    if mask is not None:
        kind = ctx.tensor_type(3).dtype.kind
        if kind not in ("bool", "float"):
            mask = ctx.op("ember.cast", mask, to=qt.dtype)
        total = present_k.type.shape[2]  # type: ignore[union-attr, index]
        mask = _pad_mask(ctx, mask, total)
    stage = SCORE_MODES.get(int(ctx.attr("qk_matmul_output_mode", 0)))
    if stage is None:
        raise ctx.fail(f"qk_matmul_output_mode must be 0..3, got {ctx.attr('qk_matmul_output_mode')}")
    attrs: dict[str, Any] = {
        "scale": ctx.attr("scale"),
        "causal": bool(ctx.attr("is_causal", 0)),
        "window": (int(ctx.attr("left_window_size", -1)), int(ctx.attr("right_window_size", -1))),
        "align": "bottom_right" if kv_lens is not None else "top_left",
        "q_offset": ctx.tensor_type(4).shape[2] if has_past else 0,  # type: ignore[index]
        "softcap": float(ctx.attr("softcap", 0.0)),
        "scores": stage if ctx.has_output(3) else "none",
    }
    results = ctx.op("ember.attention", q, present_k, present_v, mask, kv_lens, **attrs)
    y = results[0]
    if packed:
        y = merge_heads(ctx, y)
    scores = results[1] if ctx.has_output(3) else None
    return [y, present_k if ctx.has_output(1) else None, present_v if ctx.has_output(2) else None, scores]


@converter("RotaryEmbedding", since=23)
def rotary_embedding(ctx: NodeContext) -> Any:
    xt = ctx.tensor_type(0)
    attrs: dict[str, Any] = {"interleaved": bool(ctx.attr("interleaved", 0))}
    if ctx.attr("rotary_embedding_dim", 0):
        attrs["rotary_dim"] = int(ctx.attr("rotary_embedding_dim"))
    if xt.rank == 3:
        attrs["num_heads"] = int(ctx.attr("num_heads", 0))
    pos = ctx.input(3) if ctx.has(3) else None
    return ctx.op("ember.rotary_embedding", ctx.input(0), ctx.input(1), ctx.input(2), pos, **attrs)


@converter("LinearAttention", since=27)
def linear_attention(ctx: NodeContext) -> Any:
    qt = ctx.tensor_type(0)
    if qt.rank != 3:
        raise ctx.fail(f"query must be 3-D [B, T, H*D], got {qt}")
    hq, hkv = _heads_attr(ctx, "q_num_heads"), _heads_attr(ctx, "kv_num_heads")

    def same_type(i: int) -> Value:
        x = ctx.input(i)
        return x if ctx.tensor_type(i).dtype == qt.dtype else ctx.op("ember.cast", x, to=qt.dtype)

    q = split_heads(ctx, ctx.input(0), hq)
    k, v = split_heads(ctx, same_type(1), hkv), split_heads(ctx, same_type(2), hkv)
    past = same_type(3) if ctx.has(3) else None
    decay = beta = None
    if ctx.has(4):
        last = ctx.tensor_type(4).shape[-1]  # type: ignore[index]
        if last == hkv:  # one decay per head (checked first, as ONNX does)
            decay = ctx.op("ember.transpose", ctx.op("ember.reshape", same_type(4), shape=(0, 0, hkv, 1)),
                           perm=(0, 2, 1, 3))
        else:
            decay = split_heads(ctx, same_type(4), hkv)
    if ctx.has(5):
        last = ctx.tensor_type(5).shape[-1]  # type: ignore[index]
        beta = ctx.op("ember.transpose", ctx.op("ember.reshape", same_type(5), shape=(0, 0, last, 1)),
                      perm=(0, 2, 1, 3))
    scale = ctx.attr("scale", 0.0)
    out, state = ctx.op("ember.linear_attention", q, k, v, past, decay, beta,
                        update_rule=ctx.attr("update_rule", "gated_delta"), scale=scale if scale else None)
    if ctx.has(3) and ctx.tensor_type(3).dtype != qt.dtype:
        state = ctx.op("ember.cast", state, to=ctx.tensor_type(3).dtype)
    return [merge_heads(ctx, out), state]


@converter("FlexAttention", since=1, domain="ai.onnx.preview")
def flex_attention(ctx: NodeContext) -> Any:
    """Without score_mod/prob_mod subgraphs this is plain attention; with them, the
    ONNX expansion (which inlines the subgraphs around MatMul/Softmax)."""
    if ctx.has_attr("score_mod") or ctx.has_attr("prob_mod"):
        return expand(ctx)
    qt = ctx.tensor_type(0)
    v = ctx.input(2)
    if ctx.tensor_type(2).dtype != qt.dtype:
        v = ctx.op("ember.cast", v, to=qt.dtype)
    k = ctx.input(1)
    if ctx.tensor_type(1).dtype != qt.dtype:
        k = ctx.op("ember.cast", k, to=qt.dtype)
    return ctx.op("ember.attention", ctx.input(0), k, v, scale=ctx.attr("scale"))[0]
