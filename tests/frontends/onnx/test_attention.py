"""ONNX Attention (opsets 23-25), RotaryEmbedding, LinearAttention and FlexAttention imported
and run on Ember, against onnxruntime (onnx.reference for the opset-27 and preview ops)."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_check import check_model, check_node, imported, node_model
from oracle import rand


def qkv(b=2, hq=4, hkv=2, sq=3, skv=5, d=8, dv=6, packed=False, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    if packed:
        return {"q": rand((b, sq, hq * d), dtype, rng, -1, 1), "k": rand((b, skv, hkv * d), dtype, rng, -1, 1),
                "v": rand((b, skv, hkv * dv), dtype, rng, -1, 1)}
    return {"q": rand((b, hq, sq, d), dtype, rng, -1, 1), "k": rand((b, hkv, skv, d), dtype, rng, -1, 1),
            "v": rand((b, hkv, skv, dv), dtype, rng, -1, 1)}


# -- Attention ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attrs", [{}, {"scale": 0.25}, {"is_causal": 1}, {"softcap": 1.5, "is_causal": 1}])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("packed", [False, True])
def test_attention(attrs, heads, packed):
    inputs = qkv(hq=heads[0], hkv=heads[1], packed=packed)
    if packed:
        attrs = attrs | {"q_num_heads": heads[0], "kv_num_heads": heads[1]}
    check_node("Attention", inputs, attrs, opset=23)


@pytest.mark.parametrize("mask_shape", [(3, 5), (2, 1, 3, 5), (3, 3), (2, 4, 3, 2)])
@pytest.mark.parametrize("kind", ["float", "bool"])
def test_attention_masks(mask_shape, kind):
    """A mask shorter than the keys is padded with -inf (False); onnxruntime rejects those."""
    inputs = qkv()
    rng = np.random.default_rng(1)
    mask = rng.random(mask_shape) < 0.7 if kind == "bool" else rand(mask_shape, np.float32, rng)
    if kind == "bool":
        mask[..., 0] = True
    check_node("Attention", inputs | {"m": mask}, {}, opset=23, reference="ort" if mask_shape[-1] == 5 else "onnx")


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_past_and_present(packed, causal):
    inputs = qkv(sq=4, skv=2, packed=packed)
    rng = np.random.default_rng(2)
    past = {"pk": rand((2, 2, 6, 8), np.float32, rng), "pv": rand((2, 2, 6, 6), np.float32, rng)}
    attrs = {"is_causal": causal} | ({"q_num_heads": 4, "kv_num_heads": 2} if packed else {})
    mask = {"m": rand((4, 8), np.float32, rng)}
    check_node("Attention", inputs | mask | past, attrs, outputs=("y", "present_k", "present_v"), opset=23)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_attention_qk_output(mode):
    """Mode 0 is the product before the soft cap (onnx.reference caps it too; onnxruntime
    follows the spec); in mode 2 onnxruntime writes a large negative number, not -inf, where
    the causal mask hides a key (onnx.reference and Ember: -inf)."""
    inputs = qkv() | {"m": rand((3, 5), np.float32, np.random.default_rng(3))}
    attrs = {"qk_matmul_output_mode": mode, "softcap": 2.0, "is_causal": 1}
    got, _ = check_node("Attention", inputs, attrs, outputs=("y", "pk", "pv", "qk"), opset=24,
                        reference="onnx" if mode == 2 else "ort")
    assert got[3].shape == (2, 4, 3, 5)


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_nonpad_kv_seqlen(causal):
    inputs = qkv(sq=2, skv=6)
    lens = np.array([6, 3], np.int64)
    model = node_model("Attention", inputs | {"lens": lens}, {"is_causal": causal}, opset=24,
                       input_names=["q", "k", "v", "", "", "", "lens"])
    check_model(model, inputs | {"lens": lens})


@pytest.mark.parametrize("window", [(2, -1), (1, 2), (0, 0)])
def test_attention_sliding_window(window):
    inputs = qkv(sq=5, skv=5)
    attrs = {"left_window_size": window[0], "right_window_size": window[1], "is_causal": int(window[1] < 0)}
    check_node("Attention", inputs, attrs, opset=25)


@pytest.mark.parametrize("dtype,reference", [(np.float16, "ort"), (np.float64, "onnx")])
def test_attention_dtypes(dtype, reference):
    """(onnxruntime's f64 attention is off by 1e-8, beyond the f64 tolerance.)"""
    check_node("Attention", qkv(dtype=dtype), {"is_causal": 1}, opset=23, reference=reference)


def test_attention_imports_one_op_with_symbolic_batch():
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", "S", 32])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, ["N", "T", 16])
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["N", "T", 16])
    pk = helper.make_tensor_value_info("pk", TensorProto.FLOAT, ["N", 2, "P", 8])
    pv = helper.make_tensor_value_info("pv", TensorProto.FLOAT, ["N", 2, "P", 8])
    node = helper.make_node("Attention", ["q", "k", "v", "", "pk", "pv"], ["y", "present_k", "present_v"],
                            q_num_heads=4, kv_num_heads=2, is_causal=1)
    graph = helper.make_graph([node], "attn", [q, k, v, pk, pv], [helper.make_empty_tensor_value_info(n)
                                                                  for n in ("y", "present_k", "present_v")])
    text = str(imported(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])))
    assert text.count("ember.attention") == 1
    assert "q_offset = P" in text and "causal = true" in text
    assert "f32[N,4,S,8]" in text and "f32[N,S,32]" in text and "f32[N,2,P+T,8]" in text
    assert "ember.matmul" not in text and "ember.softmax" not in text


# -- RotaryEmbedding ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rot", [0, 4])
@pytest.mark.parametrize("packed", [False, True])
def test_rotary_embedding(interleaved, rot, packed):
    rng = np.random.default_rng(4)
    x = rand((2, 3, 32) if packed else (2, 4, 3, 8), np.float32, rng)
    half = (rot or 8) // 2
    cos, sin = rand((10, half), np.float32, rng, -1, 1), rand((10, half), np.float32, rng, -1, 1)
    pos = rng.integers(0, 10, (2, 3)).astype(np.int64)
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rot} | ({"num_heads": 4} if packed else {})
    check_node("RotaryEmbedding", {"x": x, "cos": cos, "sin": sin, "pos": pos}, attrs, opset=23)


def test_rotary_embedding_without_position_ids():
    rng = np.random.default_rng(5)
    x = rand((2, 4, 3, 8), np.float32, rng)
    cos, sin = rand((2, 3, 4), np.float32, rng, -1, 1), rand((2, 3, 4), np.float32, rng, -1, 1)
    check_node("RotaryEmbedding", {"x": x, "cos": cos, "sin": sin}, {}, opset=23)
    model = node_model("RotaryEmbedding", {"x": x, "cos": cos, "sin": sin}, {}, opset=23)
    assert [op.name for op in imported(model).main.body.ops] == ["ember.rotary_embedding"]


# -- LinearAttention (opset 27) and FlexAttention (preview) -------------------------------------------------
@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
def test_linear_attention(rule):
    rng = np.random.default_rng(6)
    b, t, hq, hkv, dk, dv = 2, 3, 4, 2, 4, 5
    inputs = {"q": rand((b, t, hq * dk), np.float32, rng, -1, 1), "k": rand((b, t, hkv * dk), np.float32, rng, -1, 1),
              "v": rand((b, t, hkv * dv), np.float32, rng, -1, 1), "s": rand((b, hkv, dk, dv), np.float32, rng)}
    names = ["q", "k", "v", "s", "", ""]
    if rule.startswith("gated"):
        inputs["g"] = rand((b, t, hkv), np.float32, rng, -1, 0)
        names[4] = "g"
    if rule.endswith("delta"):
        inputs["beta"] = rand((b, t, 1), np.float32, rng, 0, 1)
        names[5] = "beta"
    attrs = {"update_rule": rule, "q_num_heads": hq, "kv_num_heads": hkv}
    model = node_model("LinearAttention", inputs, attrs, outputs=("y", "state"), opset=27, input_names=names)
    check_model(model, inputs, reference="onnx")
    assert "ember.linear_attention" in str(imported(model))


def flex_model(q, k, v, **attrs):
    node = helper.make_node("FlexAttention", ["q", "k", "v"], ["y"], domain="ai.onnx.preview", **attrs)
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in (("q", q), ("k", k), ("v", v))]
    graph = helper.make_graph([node], "flex", ins, [helper.make_empty_tensor_value_info("y")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26),
                                                   helper.make_opsetid("ai.onnx.preview", 1)])


def test_flex_attention_plain_is_ember_attention():
    inputs = qkv()
    model = flex_model(inputs["q"], inputs["k"], inputs["v"], scale=0.3)
    check_model(model, inputs, reference="onnx")
    assert [op.name for op in imported(model).main.body.ops] == ["ember.attention"]


def test_flex_attention_score_mod_expands():
    inputs = qkv(hq=2, hkv=2)
    body = helper.make_graph([helper.make_node("Tanh", ["s"], ["t"])], "score_mod",
                             [helper.make_tensor_value_info("s", TensorProto.FLOAT, None)],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    model = flex_model(inputs["q"], inputs["k"], inputs["v"], score_mod=body)
    check_model(model, inputs, reference="onnx")
    assert "ember.attention" not in str(imported(model))
