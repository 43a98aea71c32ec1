"""ember.attention, ember.rotary_embedding, ember.linear_attention: against onnx.reference
(ONNX's Attention opsets 23-25, RotaryEmbedding 23, LinearAttention 27), by hand,
symbolic shapes, errors."""

import math

import numpy as np
import pytest
from oracle import assert_close, ember_op, onnx_op, rand

from ember import ir
from ember.errors import ShapeError, VerifyError
from ember.ir.dims import sym

STAGES = {"raw": 0, "softcap": 1, "biased": 2, "probs": 3}


def qkv(b=2, hq=4, hkv=2, sq=3, skv=5, d=8, dv=6, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return (rand((b, hq, sq, d), dtype, rng, -1, 1), rand((b, hkv, skv, d), dtype, rng, -1, 1),
            rand((b, hkv, skv, dv), dtype, rng, -1, 1))


def onnx_attention(q, k, v, mask=None, past=None, kv_lens=None, attrs=None, opset=23, n_outputs=1):
    inputs = [q, k, v, mask, *(past or (None, None)), kv_lens]
    while inputs[-1] is None:
        inputs.pop()
    return onnx_op("Attention", inputs, attrs or {}, n_outputs=n_outputs, opset=opset)


# -- attention vs ONNX --------------------------------------------------------------------------
@pytest.mark.parametrize("attrs,onnx_attrs", [
    ({}, {}),
    ({"scale": 0.3}, {"scale": 0.3}),
    ({"causal": True}, {"is_causal": 1}),
    ({"softcap": 1.5}, {"softcap": 1.5}),
    ({"causal": True, "softcap": 0.7, "scale": 0.5}, {"is_causal": 1, "softcap": 0.7, "scale": 0.5}),
])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (4, 1)])
def test_attention_vs_onnx(attrs, onnx_attrs, heads):
    q, k, v = qkv(hq=heads[0], hkv=heads[1])
    got = ember_op("ember.attention", [q, k, v], attrs)[0]
    assert_close(got, onnx_attention(q, k, v, attrs=onnx_attrs)[0], what=f"attention {attrs}")


@pytest.mark.parametrize("mask_shape", [(3, 5), (2, 1, 3, 5), (2, 4, 3, 5), (4, 3, 5), (5,)])
@pytest.mark.parametrize("kind", ["float", "bool"])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_masks_vs_onnx(mask_shape, kind, causal):
    q, k, v = qkv()
    rng = np.random.default_rng(1)
    mask = rng.random(mask_shape) < 0.7 if kind == "bool" else rand(mask_shape, np.float32, rng)
    if kind == "bool":
        mask[..., 0] = True  # keep a key per row (fully masked rows are tested by hand)
    got = ember_op("ember.attention", [q, k, v, mask], {"causal": causal})[0]
    onnx_mask = np.broadcast_to(mask, (3, 5)).copy() if mask.ndim == 1 else mask  # its causal path needs rank 2
    want = onnx_attention(q, k, v, onnx_mask, attrs={"is_causal": int(causal)})[0]
    assert_close(got, want, what=f"mask {mask_shape} {kind} causal={causal}")


@pytest.mark.parametrize("stage", list(STAGES))
def test_attention_scores_vs_onnx(stage):
    """(onnx.reference soft-caps the mode-0 output too, against its spec and onnxruntime;
    so the raw stage is compared without a soft cap here, and with one against onnxruntime
    in the frontend tests.)"""
    q, k, v = qkv()
    mask = rand((3, 5), np.float32, np.random.default_rng(2))
    cap = 0.0 if stage == "raw" else 2.0
    y, scores = ember_op("ember.attention", [q, k, v, mask], {"scores": stage, "softcap": cap})
    want = onnx_attention(q, k, v, mask, attrs={"qk_matmul_output_mode": STAGES[stage], "softcap": cap},
                          opset=24, n_outputs=4)
    assert_close(y, want[0], what="y")
    assert_close(scores, want[3], what=f"scores {stage}")


@pytest.mark.parametrize("causal", [False, True])
def test_attention_past_is_q_offset_vs_onnx(causal):
    """ONNX's internal cache: keys = past ++ new, queries start at the past length."""
    q, k, v = qkv(sq=4, skv=2)
    past_k, past_v = qkv(sq=1, skv=6, seed=5)[1:]
    full_k, full_v = np.concatenate([past_k, k], axis=2), np.concatenate([past_v, v], axis=2)
    got = ember_op("ember.attention", [q, full_k, full_v], {"causal": causal, "q_offset": 6})[0]
    want = onnx_attention(q, k, v, past=(past_k, past_v), attrs={"is_causal": int(causal)}, opset=24,
                          n_outputs=3)
    assert_close(got, want[0], what="y")
    assert_close(full_k, want[1], what="present key")


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [(-1, -1), (1, -1), (2, 1)])
def test_attention_kv_lens_vs_onnx(causal, window):
    q, k, v = qkv(sq=2, skv=6)
    lens = np.array([6, 3], np.int64)
    attrs = {"causal": causal, "align": "bottom_right", "window": window}
    got = ember_op("ember.attention", [q, k, v, None, lens], attrs)[0]
    onnx_attrs = {"is_causal": int(causal), "left_window_size": window[0], "right_window_size": window[1]}
    assert_close(got, onnx_attention(q, k, v, kv_lens=lens, attrs=onnx_attrs, opset=25)[0], what="kv_lens")


@pytest.mark.parametrize("window,causal", [((1, 2), False), ((0, 0), False), ((2, -1), True), ((-1, 1), False)])
def test_attention_window_vs_onnx(window, causal):
    q, k, v = qkv(sq=5, skv=5)
    got = ember_op("ember.attention", [q, k, v], {"window": window, "causal": causal})[0]
    onnx_attrs = {"left_window_size": window[0], "right_window_size": window[1], "is_causal": int(causal)}
    assert_close(got, onnx_attention(q, k, v, attrs=onnx_attrs, opset=25)[0], what=f"window {window}")


@pytest.mark.parametrize("dtype", [np.float16, ir.bf16, np.float64])
def test_attention_dtypes_vs_onnx(dtype):
    q, k, v = qkv(dtype=dtype.np_dtype if isinstance(dtype, ir.DType) else dtype)
    got = ember_op("ember.attention", [q, k, v], {"causal": True})[0]
    assert got.dtype == q.dtype
    want = onnx_attention(q, k, v, attrs={"is_causal": 1})[0]
    assert_close(got, want, what=f"attention {q.dtype}")


# -- attention by hand ----------------------------------------------------------------------------
def test_attention_by_hand():
    """Zero queries score every key equally: the mean of the admitted values."""
    q = np.zeros((1, 1, 3, 2), np.float32)
    k = rand((1, 1, 3, 2))
    v = np.array([[[[1.0], [2.0], [6.0]]]], np.float32)
    plain = ember_op("ember.attention", [q, k, v])[0]
    assert_close(plain[0, 0, :, 0], np.array([3.0, 3.0, 3.0], np.float32))
    causal = ember_op("ember.attention", [q, k, v], {"causal": True})[0]
    assert_close(causal[0, 0, :, 0], np.array([1.0, 1.5, 3.0], np.float32))
    bottom = ember_op("ember.attention", [q[:, :, :1], k, v], {"causal": True, "align": "bottom_right"})[0]
    assert_close(bottom[0, 0, :, 0], np.array([3.0], np.float32))  # the last query sees every key
    window = ember_op("ember.attention", [q, k, v], {"window": (0, 1)})[0]
    assert_close(window[0, 0, :, 0], np.array([1.5, 4.0, 6.0], np.float32))
    lens = ember_op("ember.attention", [q, k, v, None, np.array([2], np.int64)])[0]
    assert_close(lens[0, 0, :, 0], np.array([1.5, 1.5, 1.5], np.float32))
    offset = ember_op("ember.attention", [q[:, :, :2], k, v], {"causal": True, "q_offset": 1})[0]
    assert_close(offset[0, 0, :, 0], np.array([1.5, 3.0], np.float32))


def test_attention_scores_by_hand():
    q = np.array([[[[1.0, 0.0]]]], np.float32)
    k = np.array([[[[2.0, 0.0], [0.0, 2.0]]]], np.float32)
    v = np.array([[[[1.0], [3.0]]]], np.float32)
    mask = np.array([0.0, math.log(3.0)], np.float32)
    y, raw = ember_op("ember.attention", [q, k, v, mask], {"scale": 1.0, "scores": "raw"})
    assert raw.tolist() == [[[[2.0, 0.0]]]]
    _, biased = ember_op("ember.attention", [q, k, v, mask], {"scale": 1.0, "scores": "biased"})
    assert_close(biased, np.array([[[[2.0, math.log(3.0)]]]], np.float32))
    _, capped = ember_op("ember.attention", [q, k, v], {"scale": 1.0, "softcap": 1.0, "scores": "softcap"})
    assert_close(capped, np.array([[[[math.tanh(2.0), 0.0]]]], np.float32))
    _, probs = ember_op("ember.attention", [q, k, v, mask], {"scale": 1.0, "scores": "probs"})
    e2 = math.exp(2.0)
    assert_close(probs, np.array([[[[e2 / (e2 + 3), 3 / (e2 + 3)]]]], np.float32))
    assert_close(y, np.array([[[[(e2 + 9) / (e2 + 3)]]]], np.float32))


def test_attention_fully_masked_rows_are_zero():
    q, k, v = qkv(b=1, hq=1, hkv=1, sq=2, skv=2)
    bool_mask = np.array([[True, False], [False, False]])
    y, probs = ember_op("ember.attention", [q, k, v, bool_mask], {"scores": "probs"})
    assert not np.isnan(y).any()
    assert (y[0, 0, 1] == 0).all() and (probs[0, 0, 1] == 0).all()
    assert_close(y[0, 0, 0], v[0, 0, 0])
    neg = np.array([[0.0, 0.0], [-np.inf, -np.inf]], np.float32)
    y2 = ember_op("ember.attention", [q, k, v, neg])[0]
    assert (y2[0, 0, 1] == 0).all() and not np.isnan(y2).any()
    k_inf = k.copy()
    k_inf[..., 1, :] = np.inf  # a masked key's inf score must not leak NaN
    y3 = ember_op("ember.attention", [q, k_inf, v, np.array([True, False])])[0]
    assert_close(y3[0, 0], np.broadcast_to(v[0, 0, 0], (2, v.shape[-1])))


def test_attention_grouped_heads_by_hand():
    """Query heads 0,1 read kv head 0; heads 2,3 read kv head 1 (contiguous groups)."""
    q = np.zeros((1, 4, 1, 2), np.float32)
    k = rand((1, 2, 2, 2))
    v = np.array([[[[1.0], [1.0]], [[5.0], [5.0]]]], np.float32)
    y = ember_op("ember.attention", [q, k, v])[0]
    assert y[0, :, 0, 0].tolist() == [1.0, 1.0, 5.0, 5.0]


# -- attention shapes and errors -------------------------------------------------------------------
def test_attention_symbolic():
    b = ir.Builder()
    q = b.input("q", ir.f32["N", 8, "S", 64])
    k = b.input("k", ir.f32["N", 2, "T", 64])
    v = b.input("v", ir.f32["N", 2, "T", 32])
    mask = b.input("m", ir.boolean["S", "T"])
    y, scores = b.op("ember.attention", q, k, v, mask, scores="probs", causal=True, q_offset=sym("P"))
    assert str(y.type) == "f32[N,8,S,32]"
    assert str(scores.type) == "f32[N,8,S,T]"
    assert len(b.op("ember.attention", q, k, v)) == 1


@pytest.mark.parametrize("shapes,attrs,match", [
    (((2, 4, 8), (2, 4, 8), (2, 4, 8)), {}, "rank 4"),
    (((1, 3, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4)), {}, "not a multiple"),
    (((1, 2, 2, 4), (1, 2, 2, 5), (1, 2, 2, 4)), {}, "head size"),
    (((1, 2, 2, 4), (1, 2, 3, 4), (1, 2, 2, 4)), {}, "sequence length"),
    (((1, 2, 2, 4), (1, 2, 3, 4), (1, 2, 3, 4)), {"window": (-2, 0)}, "window"),
    (((1, 2, 2, 4), (1, 2, 3, 4), (1, 2, 3, 4)), {"window": (1,)}, "window"),
    (((1, 2, 2, 4), (1, 2, 3, 4), (1, 2, 3, 4)), {"align": "bottom_right", "q_offset": 2}, "q_offset"),
    (((1, 2, 2, 4), (1, 2, 3, 4), (1, 2, 3, 4)), {"softcap": -1.0}, "softcap"),
])
def test_attention_errors(shapes, attrs, match):
    b = ir.Builder()
    args = [b.input(f"x{i}", ir.f32[s]) for i, s in enumerate(shapes)]
    with pytest.raises(ShapeError, match=match):
        b.op("ember.attention", *args, **attrs)


def test_attention_operand_errors():
    b = ir.Builder()
    q, k, v = (b.input(n, ir.f32[1, 2, 3, 4]) for n in "qkv")
    with pytest.raises(ShapeError, match="does not broadcast"):
        b.op("ember.attention", q, k, v, b.input("m", ir.f32[4, 3]))
    with pytest.raises(ShapeError, match="bool or float"):
        b.op("ember.attention", q, k, v, b.input("mi", ir.i32[3, 3]))
    with pytest.raises(ShapeError, match="kv_lens"):
        b.op("ember.attention", q, k, v, None, b.input("l", ir.i64[2]))
    with pytest.raises(ShapeError, match="element type"):
        b.op("ember.attention", q, k, b.input("vh", ir.f16[1, 2, 3, 4]))
    with pytest.raises(VerifyError, match="scores"):
        b.op("ember.attention", q, k, v, scores="logits")


# -- rotary embedding ------------------------------------------------------------------------------
def rotary_inputs(shape=(2, 3, 4, 8), rot=8, with_pos=True, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rand(shape, dtype, rng)
    b, s = shape[0], (shape[2] if len(shape) == 4 else shape[1])
    table = (16, rot // 2) if with_pos else (b, s, rot // 2)
    cos, sin = rand(table, dtype, rng, -1, 1), rand(table, dtype, rng, -1, 1)
    pos = rng.integers(0, 16, (b, s)).astype(np.int64) if with_pos else None
    return x, cos, sin, pos


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rot", [None, 4])
@pytest.mark.parametrize("with_pos", [True, False])
def test_rotary_vs_onnx(interleaved, rot, with_pos):
    x, cos, sin, pos = rotary_inputs(rot=rot or 8, with_pos=with_pos)
    attrs = {"interleaved": interleaved, "rotary_dim": rot}
    onnx_attrs = {"interleaved": int(interleaved)} | ({"rotary_embedding_dim": rot} if rot else {})
    got = ember_op("ember.rotary_embedding", [x, cos, sin, pos], attrs)[0]
    assert_close(got, onnx_op("RotaryEmbedding", [x, cos, sin, pos], onnx_attrs)[0], what=f"rope {attrs}")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rotary_packed_vs_onnx(dtype):
    x, cos, sin, pos = rotary_inputs(shape=(2, 4, 24), rot=6, dtype=dtype)
    attrs = {"num_heads": 4, "interleaved": True}
    got = ember_op("ember.rotary_embedding", [x, cos, sin, pos], attrs)[0]
    want = onnx_op("RotaryEmbedding", [x, cos, sin, pos], {"num_heads": 4, "interleaved": 1})[0]
    assert_close(got, want, what=f"packed rope {dtype}")


def test_rotary_by_hand():
    """cos 0, sin 1 turns each pair (a, b) into (-b, a); features past rotary_dim pass."""
    x = np.array([[[[1.0, 2.0, 3.0, 4.0, 9.0, 9.0]]]], np.float32)  # [1,1,1,6]
    cos, sin = np.zeros((1, 1, 2), np.float32), np.ones((1, 1, 2), np.float32)
    halves = ember_op("ember.rotary_embedding", [x, cos, sin], {"rotary_dim": 4})[0]
    assert halves.ravel().tolist() == [-3.0, -4.0, 1.0, 2.0, 9.0, 9.0]
    pairs = ember_op("ember.rotary_embedding", [x, cos, sin], {"rotary_dim": 4, "interleaved": True})[0]
    assert pairs.ravel().tolist() == [-2.0, 1.0, -4.0, 3.0, 9.0, 9.0]
    table_cos = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    table_sin = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    pos = np.array([[0]], np.int64)
    same = ember_op("ember.rotary_embedding", [x, table_cos, table_sin, pos], {"rotary_dim": 4})[0]
    assert same.ravel().tolist() == x.ravel().tolist()


def test_rotary_symbolic_and_errors():
    b = ir.Builder()
    x = b.input("x", ir.f32["N", "S", 64])
    cos, sin = b.input("c", ir.f32[128, 4]), b.input("s", ir.f32[128, 4])
    pos = b.input("p", ir.i64["N", "S"])
    y = b.op("ember.rotary_embedding", x, cos, sin, pos, num_heads=8)
    assert str(y.type) == "f32[N,S,64]"
    with pytest.raises(ShapeError, match="num_heads"):
        b.op("ember.rotary_embedding", x, cos, sin, pos)
    with pytest.raises(ShapeError, match="rotary_dim/2"):
        b.op("ember.rotary_embedding", x, cos, sin, pos, num_heads=4)
    with pytest.raises(ShapeError, match="even"):
        b.op("ember.rotary_embedding", x, cos, sin, pos, num_heads=8, rotary_dim=5)
    x4 = b.input("x4", ir.f32[1, 2, 3, 8])
    with pytest.raises(ShapeError, match="B, S, R/2"):
        b.op("ember.rotary_embedding", x4, cos, sin)
    with pytest.raises(ShapeError, match="position_ids"):
        b.op("ember.rotary_embedding", x4, cos, sin, b.input("p2", ir.i64[1, 4]))


# -- linear attention ------------------------------------------------------------------------------
def to_heads(x, h):
    b, t, hd = x.shape
    return x.reshape(b, t, h, hd // h).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
@pytest.mark.parametrize("heads,per_head_decay,past", [((2, 2), False, False), ((4, 2), True, True),
                                                      ((4, 1), False, True)])
def test_linear_attention_vs_onnx(rule, heads, per_head_decay, past):
    hq, hkv = heads
    rng = np.random.default_rng(3)
    b, t, dk, dv = 2, 3, 4, 5
    q, k, v = rand((b, t, hq * dk), np.float32, rng, -1, 1), rand((b, t, hkv * dk), np.float32, rng, -1, 1), \
        rand((b, t, hkv * dv), np.float32, rng, -1, 1)
    state = rand((b, hkv, dk, dv), np.float32, rng, -1, 1) if past else None
    decay = rand((b, t, hkv if per_head_decay else hkv * dk), np.float32, rng, -1, 0) \
        if rule.startswith("gated") else None
    beta = rand((b, t, hkv), np.float32, rng, 0, 1) if rule.endswith("delta") else None
    e_decay = None if decay is None else (decay.reshape(b, t, hkv, 1).transpose(0, 2, 1, 3) if per_head_decay
                                          else to_heads(decay, hkv))
    e_beta = None if beta is None else beta.reshape(b, t, hkv, 1).transpose(0, 2, 1, 3)
    out, new_state = ember_op("ember.linear_attention",
                              [to_heads(q, hq), to_heads(k, hkv), to_heads(v, hkv), state, e_decay, e_beta],
                              {"update_rule": rule})
    want = onnx_op("LinearAttention", [q, k, v, state, decay, beta],
                   {"update_rule": rule, "q_num_heads": hq, "kv_num_heads": hkv}, n_outputs=2, opset=27)
    assert_close(out, to_heads(want[0], hq), what=f"{rule} output")
    assert_close(new_state, want[1], what=f"{rule} state")


def test_linear_attention_by_hand():
    """One head, Dk = Dv = 1: S accumulates k*v; o = scale * q * S."""
    q = np.array([1.0, 2.0], np.float32).reshape(1, 1, 2, 1)
    k = np.array([3.0, 1.0], np.float32).reshape(1, 1, 2, 1)
    v = np.array([2.0, 4.0], np.float32).reshape(1, 1, 2, 1)
    out, s = ember_op("ember.linear_attention", [q, k, v], {"update_rule": "linear", "scale": 1.0})
    assert out.ravel().tolist() == [6.0, 20.0] and s.ravel().tolist() == [10.0]
    decay = np.log(np.array([0.5, 0.5], np.float32)).reshape(1, 1, 2, 1)
    out, s = ember_op("ember.linear_attention", [q, k, v, None, decay], {"update_rule": "gated", "scale": 1.0})
    assert_close(out.ravel(), np.array([6.0, 14.0], np.float32))  # S = 0.5*0 + 6, then 0.5*6 + 4
    assert_close(s.ravel(), np.array([7.0], np.float32))
    beta = np.ones((1, 1, 2, 1), np.float32)
    out, s = ember_op("ember.linear_attention", [q, k, v, None, None, beta], {"update_rule": "delta", "scale": 1.0})
    # t0: S = 3*2 = 6; t1: v' = 4 - 6*1 = -2, S = 6 + 1*(-2) = 4
    assert_close(out.ravel(), np.array([6.0, 8.0], np.float32))
    assert_close(s.ravel(), np.array([4.0], np.float32))


def test_linear_attention_symbolic_and_errors():
    b = ir.Builder()
    q = b.input("q", ir.f32["N", 8, "T", 16])
    k = b.input("k", ir.f32["N", 2, "T", 16])
    v = b.input("v", ir.f32["N", 2, "T", 32])
    g = b.input("g", ir.f32["N", 2, "T", 1])
    beta = b.input("beta", ir.f32["N", 1, "T", 1])
    out, s = b.op("ember.linear_attention", q, k, v, None, g, beta)
    assert str(out.type) == "f32[N,8,T,32]" and str(s.type) == "f32[N,2,16,32]"
    with pytest.raises(ShapeError, match="needs decay"):
        b.op("ember.linear_attention", q, k, v, None, None, beta)
    with pytest.raises(ShapeError, match="takes no beta"):
        b.op("ember.linear_attention", q, k, v, None, g, beta, update_rule="gated")
    with pytest.raises(ShapeError, match="decay must be"):
        b.op("ember.linear_attention", q, k, v, None, b.input("g2", ir.f32["N", 2, "T", 3]), beta)
    with pytest.raises(ShapeError, match="past_state"):
        b.op("ember.linear_attention", q, k, v, b.input("s0", ir.f32["N", 2, 16, 16]), g, beta)
