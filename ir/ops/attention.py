"""Attention and its companions: scaled dot-product attention over heads, and rotary
position embeddings.

`ember.attention` is the one op every attention form imports to (ONNX Attention,
the decomposed MatMul-Softmax-MatMul chains the fusion passes match): queries,
keys and values in [batch, heads, sequence, head_size] (BHSD), grouped-query heads,
an additive or boolean mask, causal and sliding-window masks with top-left or
bottom-right alignment, per-batch valid key lengths (an external KV cache), a
logit soft cap, and optionally the score matrix at one stage as a second result.
KV-cache concatenation and the 3-D packed-heads form are plain reshapes, transposes
and concats around it (the frontend emits them), so the op itself has one layout.

Numerics (rules.py): f16/bf16 inputs compute and accumulate in f32 and round once at
the end; f64 stays f64. The softmax of a row whose every key is masked out is a row of
zeros (so its output row is zero), never NaN.
"""

from __future__ import annotations

import math

import numpy as np

from ember.ir import attrs as A
from ember.ir.dims import Dim, floordiv
from ember.ir.opdef import AnyTensor, Attr, FloatTensor, Heavy, IntTensor, Op, Operand, Pure, Result, register_op
from ember.ir.ops import rules
from ember.ir.ops.shape import provably_different
from ember.ir.types import TensorType, Type

SCORE_STAGES = ("none", "raw", "softcap", "biased", "probs")


def _same(op: Op, a: Dim, b: Dim, what: str) -> None:
    if provably_different(a, b):
        raise op.error(f"{what}: {a} vs {b}")


def _broadcasts_to(shape: tuple[Dim, ...], target: tuple[Dim, ...]) -> bool:
    """numpy's one-way broadcast of `shape` to `target` (symbols may be anything)."""
    if len(shape) > len(target):
        return False
    return all(s == 1 or not provably_different(s, t) for s, t in zip(reversed(shape), reversed(target)))


@register_op("ember.attention", traits={Pure, Heavy})
class Attention(Op):
    """Scaled dot-product attention, per batch b and query head h:

        s = scale * q[b,h] @ k[b,g]^T            (g = h // (Hq/Hkv): grouped-query heads)
        s = softcap * tanh(s / softcap)          (when softcap > 0)
        s = s + bias                             (mask, causal, window, key padding)
        y[b,h] = softmax(s, over keys) @ v[b,g]

    Shapes: q [B,Hq,Sq,D], k [B,Hkv,Skv,D], v [B,Hkv,Skv,Dv], y [B,Hq,Sq,Dv]; Hq a
    multiple of Hkv. `scale` defaults to 1/sqrt(D).

    The bias: a float `mask` (broadcasting to [B,Hq,Sq,Skv]) is added; a bool `mask`
    admits the keys where it is true. Keys not admitted (by the mask, causal, window or
    kv_lens) score -inf whatever their product (an inf or NaN there does not leak).

    Query i sits at position p = i + offset: offset = q_offset for align = "top_left"
    (0 by default; with a KV cache, its past length: the keys before the query block),
    and L_b - Sq for "bottom_right" (L_b = kv_lens[b] if given, else Skv: the queries
    are the last Sq of the L_b valid keys, as with an external KV cache). `causal`
    admits keys j <= p; `window` = [left, right] admits p - left <= j <= p + right (-1:
    unbounded on that side); `kv_lens` [B] admits only keys j < kv_lens[b]. A row with
    no admitted key (or a float mask of -inf at each one) gets zero probabilities and a
    zero output row.

    `scores` (one of raw, softcap, biased, probs) adds a second result
    [B,Hq,Sq,Skv] holding s after that stage: the scaled product, after the soft cap,
    after adding the bias, or the probabilities (zero rows for fully masked rows).
    %y = ember.attention %q, %k, %v {causal = true} : f32[N,8,S,64]"""

    q = Operand(FloatTensor)
    k = Operand(FloatTensor)
    v = Operand(FloatTensor)
    mask = Operand(AnyTensor, optional=True, doc="bool (true attends) or float (added), broadcasts to the scores")
    kv_lens = Operand(IntTensor, optional=True, doc="[B]: the number of valid (leading) keys per batch")
    scale = Attr(A.Optional(A.Float), default=None)
    causal = Attr(A.Bool, default=False)
    window = Attr(A.Ints, default=(-1, -1))
    align = Attr(A.OneOf("top_left", "bottom_right"), default="top_left")
    q_offset = Attr(A.Dim, default=0)
    softcap = Attr(A.Float, default=0.0)
    scores = Attr(A.OneOf(*SCORE_STAGES), default="none")
    y = Result(FloatTensor)
    extra = Result(FloatTensor, variadic=True, doc="the scores at stage `scores` (none when scores = none)")

    def infer(self, q: Type, k: Type, v: Type, mask: Type | None,
              kv_lens: Type | None) -> tuple[TensorType, tuple[TensorType, ...]]:
        qt, kt, vt = (rules.ranked(self, t, n) for t, n in ((q, "q"), (k, "k"), (v, "v")))
        for t, n in ((qt, "q"), (kt, "k"), (vt, "v")):
            if t.rank != 4:
                raise self.error(f"{n} must have rank 4 [batch, heads, sequence, head_size], got {t}")
        rules.same_dtype(self, qt, kt, vt)
        (b, hq, sq, d), (bk, hkv, skv, dk), (bv, hv, sv, dv) = qt.shape, kt.shape, vt.shape  # type: ignore[misc]
        _same(self, b, bk, "q and k differ in batch")
        _same(self, b, bv, "q and v differ in batch")
        _same(self, d, dk, "q and k differ in head size")
        _same(self, hkv, hv, "k and v differ in heads")
        _same(self, skv, sv, "k and v differ in sequence length")
        if isinstance(hkv, int) and hkv == 0:
            raise self.error(f"k has no heads: {kt}")
        if isinstance(hq, int) and isinstance(hkv, int) and hq % hkv:
            raise self.error(f"q's {hq} heads are not a multiple of k's {hkv} heads")
        if len(self.window) != 2 or any(w < -1 for w in self.window):
            raise self.error(f"window must be [left, right], each -1 or >= 0, got {list(self.window)}")
        if self.softcap < 0 or math.isnan(self.softcap):
            raise self.error(f"softcap must be >= 0 (0: none), got {self.softcap}")
        if self.align == "bottom_right" and self.q_offset != 0:
            raise self.error(f"q_offset {self.q_offset} applies to align = top_left only")
        if isinstance(self.q_offset, int) and self.q_offset < 0:
            raise self.error(f"q_offset must be >= 0, got {self.q_offset}")
        scores_shape = (b, hq, sq, skv)
        if mask is not None:
            mt = rules.ranked(self, mask, "mask")
            if mt.dtype.kind not in ("bool", "float"):
                raise self.error(f"mask must be bool or float, got {mt}")
            if not _broadcasts_to(mt.shape, scores_shape):  # type: ignore[arg-type]
                raise self.error(f"mask {mt} does not broadcast to the scores [{b},{hq},{sq},{skv}]")
        if kv_lens is not None:
            lt = rules.ranked(self, kv_lens, "kv_lens")
            if lt.rank != 1 or provably_different(lt.shape[0], b):  # type: ignore[index]
                raise self.error(f"kv_lens must be a vector of the {b} batches, got {lt}")
        y = qt.with_shape((b, hq, sq, dv))
        extra = () if self.scores == "none" else (qt.with_shape(scores_shape),)
        return y, extra

    @staticmethod
    def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
                  kv_lens: np.ndarray | None, *, scale: float | None, causal: bool, window: tuple[int, ...],
                  align: str, q_offset: int, softcap: float, scores: str) -> tuple[np.ndarray, list[np.ndarray]]:
        dt = rules.compute_dtype(q.dtype)
        qf, kf, vf = (a.astype(dt) for a in (q, k, v))
        batch, hq, sq, d = q.shape
        hkv, skv = k.shape[1], k.shape[2]
        if hq != hkv:
            kf, vf = np.repeat(kf, hq // hkv, axis=1), np.repeat(vf, hq // hkv, axis=1)
        s = dt.type(1.0 / math.sqrt(d) if scale is None else scale)
        raw = np.matmul(qf, np.swapaxes(kf, -1, -2)) * s
        capped = dt.type(softcap) * np.tanh(raw / dt.type(softcap)) if softcap > 0 else raw
        allowed, added = _admitted(mask, kv_lens, batch, sq, skv, causal, window, align, q_offset, dt)
        biased = np.where(allowed, capped if added is None else capped + added, dt.type(-np.inf))
        probs = _masked_softmax(biased, allowed, added)
        y = np.matmul(probs, vf).astype(q.dtype)
        stage = {"raw": raw, "softcap": capped, "biased": biased, "probs": probs}.get(scores)
        return y, ([] if stage is None else [np.broadcast_to(stage, (batch, hq, sq, skv)).astype(q.dtype)])


def _admitted(mask: np.ndarray | None, kv_lens: np.ndarray | None, batch: int, sq: int, skv: int, causal: bool,
              window: tuple[int, ...], align: str, q_offset: int,
              dt: np.dtype) -> tuple[np.ndarray, np.ndarray | None]:
    """Which keys each query may attend ([B,1|H,Sq,Skv] bools) and the float mask to add."""
    lens = np.full((batch,), skv, np.int64) if kv_lens is None else kv_lens.astype(np.int64).reshape(batch)
    offset = lens - sq if align == "bottom_right" else np.full((batch,), q_offset, np.int64)
    i = np.arange(sq).reshape(1, 1, sq, 1)
    j = np.arange(skv).reshape(1, 1, 1, skv)
    pos = i + offset.reshape(batch, 1, 1, 1)  # each query's absolute position
    allowed = np.ones((batch, 1, sq, skv), bool)
    if causal:
        allowed &= j <= pos
    left, right = window
    if left >= 0:
        allowed &= pos - j <= left
    if right >= 0:
        allowed &= j - pos <= right
    if kv_lens is not None:
        allowed &= j < lens.reshape(batch, 1, 1, 1)
    if mask is not None and mask.dtype == np.bool_:
        return allowed & mask, None
    return allowed, None if mask is None else mask.astype(dt)


def _masked_softmax(x: np.ndarray, allowed: np.ndarray, added: np.ndarray | None) -> np.ndarray:
    """softmax over the last axis; rows with no admitted key (including those whose float
    mask is -inf at every admitted key) are zero."""
    top = np.max(x, axis=-1, keepdims=True)
    top = np.where(np.isneginf(top), x.dtype.type(0), top)
    e = np.exp(x - top)
    total = np.sum(e, axis=-1, keepdims=True)
    probs = e / np.where(total == 0, x.dtype.type(1), total)
    open_ = allowed if added is None else allowed & ~np.isneginf(added)
    empty = ~np.any(open_, axis=-1, keepdims=True)
    return np.where(empty, x.dtype.type(0), probs)


@register_op("ember.rotary_embedding", traits={Pure})
class RotaryEmbedding(Op):
    """Rotary position embedding (RoPE): rotate pairs of each head's first `rotary_dim`
    features (default: all) by position-dependent angles,
        (x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos),
    pairing feature i with i + R/2 (halves) or 2i with 2i+1 (`interleaved`); features
    past `rotary_dim` pass through.

    x is [B, H, S, D], or [B, S, H*D] with `num_heads` = H. With `position_ids` [B, S]
    (integers), cos and sin are tables [P, R/2] indexed by position; without, they are
    [B, S, R/2] already per token. R = rotary_dim is even and at most D.
    %y = ember.rotary_embedding %x, %cos, %sin, %pos {interleaved = true} : f32[N,8,S,64]"""

    x = Operand(FloatTensor)
    cos = Operand(FloatTensor)
    sin = Operand(FloatTensor)
    position_ids = Operand(IntTensor, optional=True)
    interleaved = Attr(A.Bool, default=False)
    rotary_dim = Attr(A.Optional(A.Int), default=None)
    num_heads = Attr(A.Optional(A.Int), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type, cos: Type, sin: Type, position_ids: Type | None) -> TensorType:
        xt = rules.ranked(self, x, "x")
        rules.same_dtype(self, x, cos, sin)
        if xt.rank == 4:
            if self.num_heads is not None:
                raise self.error(f"num_heads is only for the 3-D packed form; x is {xt}")
            batch, _, seq, head = xt.shape  # type: ignore[misc]
        elif xt.rank == 3:
            if self.num_heads is None or self.num_heads < 1:
                raise self.error(f"a 3-D x [batch, sequence, heads*head_size] needs num_heads >= 1, got {xt}")
            batch, seq, hidden = xt.shape  # type: ignore[misc]
            if isinstance(hidden, int) and hidden % self.num_heads:
                raise self.error(f"x's hidden size {hidden} is not a multiple of num_heads {self.num_heads}")
            head = floordiv(hidden, self.num_heads)
        else:
            raise self.error(f"x must be [B,H,S,D] or [B,S,H*D], got {xt}")
        rot = head if not self.rotary_dim else self.rotary_dim
        if isinstance(rot, int) and rot % 2:
            raise self.error(f"rotary_dim must be even, got {rot}")
        if self.rotary_dim is not None and (self.rotary_dim < 0 or
                                            (isinstance(head, int) and self.rotary_dim > head)):
            raise self.error(f"rotary_dim {self.rotary_dim} must be in 0..{head} (the head size)")
        half = floordiv(rot, 2)
        ct, st = rules.ranked(self, cos, "cos"), rules.ranked(self, sin, "sin")
        want_rank = 2 if position_ids is not None else 3
        for t, n in ((ct, "cos"), (st, "sin")):
            if t.rank != want_rank:
                form = "[positions, R/2] with position_ids" if position_ids is not None else "[B, S, R/2]"
                raise self.error(f"{n} must be {form}, got {t}")
            if provably_different(t.shape[-1], half):  # type: ignore[index]
                raise self.error(f"{n}'s last dim must be rotary_dim/2 = {half}, got {t}")
            if position_ids is None and (provably_different(t.shape[0], batch)  # type: ignore[index]
                                         or provably_different(t.shape[1], seq)):  # type: ignore[index]
                raise self.error(f"{n} must be [{batch},{seq},{half}] without position_ids, got {t}")
        if position_ids is not None:
            pt = rules.ranked(self, position_ids, "position_ids")
            if pt.rank != 2 or provably_different(pt.shape[0], batch) or provably_different(pt.shape[1], seq):
                raise self.error(f"position_ids must be [{batch},{seq}], got {pt}")
        return xt

    @staticmethod
    def reference(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, position_ids: np.ndarray | None, *,
                  interleaved: bool, rotary_dim: int | None, num_heads: int | None) -> np.ndarray:
        dt = rules.compute_dtype(x.dtype)
        if x.ndim == 4:
            xs = np.transpose(x.astype(dt), (0, 2, 1, 3))  # [B,S,H,D]
        else:
            b, s, hidden = x.shape
            xs = x.astype(dt).reshape(b, s, num_heads, hidden // num_heads)
        rot = rotary_dim or xs.shape[-1]
        c, sn = cos.astype(dt), sin.astype(dt)
        if position_ids is not None:
            c, sn = c[position_ids], sn[position_ids]
        c, sn = c[:, :, None, :], sn[:, :, None, :]  # [B,S,1,R/2]
        head = xs[..., :rot]
        if interleaved:
            x1, x2 = head[..., 0::2], head[..., 1::2]
        else:
            x1, x2 = head[..., : rot // 2], head[..., rot // 2:]
        real, imag = x1 * c - x2 * sn, x1 * sn + x2 * c
        rotated = np.stack([real, imag], axis=-1).reshape(head.shape) if interleaved else \
            np.concatenate([real, imag], axis=-1)
        out = np.concatenate([rotated, xs[..., rot:]], axis=-1)
        out = np.transpose(out, (0, 2, 1, 3)) if x.ndim == 4 else out.reshape(x.shape)
        return out.astype(x.dtype)


UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")


@register_op("ember.linear_attention", traits={Pure, Heavy})
class LinearAttention(Op):
    """Linear attention as a recurrence over time t with a state S [B, Hkv, Dk, Dv] per
    key/value head (g = h // (Hq/Hkv) shares it among query heads):

        linear:       S = S + k_t v_t^T
        gated:        S = exp(g_t) * S + k_t v_t^T
        delta:        S = S + k_t (beta_t * (v_t - S^T k_t))^T
        gated_delta:  S = exp(g_t) * S, then the delta update
        o_t = scale * S^T q_t                       (scale defaults to 1/sqrt(Dk))

    q [B,Hq,T,Dk], k [B,Hkv,T,Dk], v [B,Hkv,T,Dv]; `decay` g (log-space, for the gated
    rules) is [B,Hkv,T,Dk] per key feature or [B,Hkv,T,1] per head and scales S's rows;
    `beta` (for the delta rules) is [B,Hkv,T,1] or [B,1,T,1]. `past_state` is the initial
    S (absent: zeros). Results: o [B,Hq,T,Dv] and the final S. Computes in f32 (f64 for
    f64 inputs) and rounds once.
    %o, %s = ember.linear_attention %q, %k, %v, %past, %decay, %beta : f32[N,8,T,64], f32[N,8,64,64]"""

    q = Operand(FloatTensor)
    k = Operand(FloatTensor)
    v = Operand(FloatTensor)
    past_state = Operand(FloatTensor, optional=True)
    decay = Operand(FloatTensor, optional=True)
    beta = Operand(FloatTensor, optional=True)
    update_rule = Attr(A.OneOf(*UPDATE_RULES), default="gated_delta")
    scale = Attr(A.Optional(A.Float), default=None)
    out = Result(FloatTensor)
    state = Result(FloatTensor)

    def infer(self, q: Type, k: Type, v: Type, past_state: Type | None, decay: Type | None,
              beta: Type | None) -> tuple[TensorType, TensorType]:
        qt, kt, vt = (rules.ranked(self, t, n) for t, n in ((q, "q"), (k, "k"), (v, "v")))
        for t, n in ((qt, "q"), (kt, "k"), (vt, "v")):
            if t.rank != 4:
                raise self.error(f"{n} must have rank 4 [batch, heads, time, head_size], got {t}")
        rules.same_dtype(self, qt, kt, vt, past_state, decay, beta)
        (b, hq, t_, dk), (bk, hkv, tk, dkk), (bv, hv, tv, dv) = qt.shape, kt.shape, vt.shape  # type: ignore[misc]
        for a, c, what in ((b, bk, "q and k differ in batch"), (b, bv, "q and v differ in batch"),
                           (t_, tk, "q and k differ in time"), (t_, tv, "q and v differ in time"),
                           (dk, dkk, "q and k differ in head size"), (hkv, hv, "k and v differ in heads")):
            _same(self, a, c, what)
        if isinstance(hq, int) and isinstance(hkv, int) and (hkv == 0 or hq % hkv):
            raise self.error(f"q's {hq} heads are not a multiple of k's {hkv} heads")
        gated, delta = self.update_rule in ("gated", "gated_delta"), self.update_rule in ("delta", "gated_delta")
        if gated != (decay is not None):
            raise self.error(f"update_rule {self.update_rule} {'needs' if gated else 'takes no'} decay")
        if delta != (beta is not None):
            raise self.error(f"update_rule {self.update_rule} {'needs' if delta else 'takes no'} beta")
        state_shape = (b, hkv, dk, dv)
        if past_state is not None:
            st = rules.ranked(self, past_state, "past_state")
            if st.rank != 4 or any(provably_different(x, y) for x, y in zip(st.shape, state_shape)):  # type: ignore
                raise self.error(f"past_state must be [{b},{hkv},{dk},{dv}], got {st}")
        if decay is not None:
            gt = rules.ranked(self, decay, "decay")
            if gt.rank != 4 or any(provably_different(x, y) for x, y in zip(gt.shape[:3], (b, hkv, t_))) \
                    or (provably_different(gt.shape[3], dk) and provably_different(gt.shape[3], 1)):  # type: ignore
                raise self.error(f"decay must be [{b},{hkv},{t_},{dk}] or [{b},{hkv},{t_},1], got {gt}")
        if beta is not None:
            bt = rules.ranked(self, beta, "beta")
            if bt.rank != 4 or provably_different(bt.shape[0], b) or provably_different(bt.shape[2], t_) \
                    or provably_different(bt.shape[3], 1) or (provably_different(bt.shape[1], hkv)  # type: ignore
                                                              and provably_different(bt.shape[1], 1)):  # type: ignore
                raise self.error(f"beta must be [{b},{hkv},{t_},1] or [{b},1,{t_},1], got {bt}")
        return qt.with_shape((b, hq, t_, dv)), qt.with_shape(state_shape)

    @staticmethod
    def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, past_state: np.ndarray | None,
                  decay: np.ndarray | None, beta: np.ndarray | None, *, update_rule: str,
                  scale: float | None) -> tuple[np.ndarray, np.ndarray]:
        dt = rules.compute_dtype(q.dtype)
        qf, kf, vf = (a.astype(dt) for a in (q, k, v))
        b, hq, steps, dk = q.shape
        hkv, dv = k.shape[1], v.shape[3]
        s = np.zeros((b, hkv, dk, dv), dt) if past_state is None else past_state.astype(dt)
        sc = dt.type(1.0 / math.sqrt(dk) if scale is None else scale)
        out = np.zeros((b, hq, steps, dv), dt)
        for t in range(steps):
            kt, vt = kf[:, :, t], vf[:, :, t]
            if decay is not None:
                s = s * np.exp(decay[:, :, t].astype(dt))[..., None]
            if beta is not None:
                vt = beta[:, :, t].astype(dt) * (vt - np.einsum("bhdm,bhd->bhm", s, kt))
            s = s + kt[..., :, None] * vt[..., None, :]
            read = np.repeat(s, hq // hkv, axis=1) if hq != hkv else s
            out[:, :, t] = sc * np.einsum("bhd,bhdm->bhm", qf[:, :, t], read)
        return out.astype(q.dtype), s.astype(q.dtype)
