"""ONNX LSTM, GRU and RNN imported and run on Ember against onnxruntime (onnx.reference for
layout = 1, which onnxruntime's CPU kernels reject)."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_check import check_model, imported, node_model, run_ember, run_ort
from oracle import assert_close, rand

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def recurrent_inputs(op, direction="forward", layout=0, seq=4, batch=3, inp=2, hidden=5, full=True, seed=0):
    rng = np.random.default_rng(seed)
    g, d = GATES[op], 2 if direction == "bidirectional" else 1

    def r(*shape):
        return rand(shape, np.float32, rng, -1, 1)

    state = (batch, d, hidden) if layout else (d, batch, hidden)
    inputs = {"x": r(batch, seq, inp) if layout else r(seq, batch, inp), "w": r(d, g * hidden, inp),
              "r": r(d, g * hidden, hidden)}
    names = ["x", "w", "r"]
    if full:
        inputs |= {"b": r(d, 2 * g * hidden), "lens": np.array([seq, 2, 1], np.int32), "h0": r(*state)}
        names += ["b", "lens", "h0"]
        if op == "LSTM":
            inputs |= {"c0": r(*state), "p": r(d, 3 * hidden)}
            names += ["c0", "p"]
    return inputs, names


def outputs(op):
    return ("y", "y_h", "y_c") if op == "LSTM" else ("y", "y_h")


@pytest.mark.parametrize("op", list(GATES))
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("full", [False, True])
def test_recurrent(op, direction, full):
    inputs, names = recurrent_inputs(op, direction, full=full)
    attrs = {"hidden_size": 5, "direction": direction} | ({"clip": 0.8} if full else {})
    model = node_model(op, inputs, attrs, outputs=outputs(op), opset=22, input_names=names)
    check_model(model, inputs)


@pytest.mark.parametrize("op", list(GATES))
def test_recurrent_batch_first(op):
    inputs, names = recurrent_inputs(op, "bidirectional", layout=1, full=False)
    model = node_model(op, inputs, {"hidden_size": 5, "direction": "bidirectional", "layout": 1},
                       outputs=outputs(op), opset=22, input_names=names)
    check_model(model, inputs, reference="onnx")


@pytest.mark.parametrize("op,attrs", [
    ("RNN", {"activations": ["LeakyRelu"], "activation_alpha": [0.2]}),
    ("GRU", {"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.3], "activation_beta": [0.6],
             "linear_before_reset": 1}),
    ("LSTM", {"activations": ["Sigmoid", "ScaledTanh", "Elu"], "activation_alpha": [0.5, 0.9],
              "activation_beta": [1.5]}),
    ("LSTM", {"input_forget": 1}),
])
def test_recurrent_attributes(op, attrs):
    inputs, names = recurrent_inputs(op, attrs.get("direction", "forward"))
    model = node_model(op, inputs, {"hidden_size": 5} | attrs, outputs=outputs(op), opset=22, input_names=names)
    check_model(model, inputs)


def test_one_activation_list_serves_both_directions():
    """onnxruntime rejects this; Ember reads it as the same list for each direction."""
    inputs, _ = recurrent_inputs("RNN", "bidirectional", full=False)
    attrs = {"hidden_size": 5, "direction": "bidirectional"}
    one = node_model("RNN", inputs, attrs | {"activations": ["Relu"]}, outputs=("y", "y_h"), opset=22)
    two = node_model("RNN", inputs, attrs | {"activations": ["Relu", "Relu"]}, outputs=("y", "y_h"), opset=22)
    got, want = run_ember(one, inputs), run_ort(two, inputs)
    for g, w in zip(got, want):
        assert_close(g, w)


@pytest.mark.parametrize("opset", [7, 14])
def test_recurrent_older_opsets(opset):
    inputs, names = recurrent_inputs("LSTM", "reverse")
    model = node_model("LSTM", inputs, {"hidden_size": 5, "direction": "reverse"}, outputs=outputs("LSTM"),
                       opset=opset, input_names=names)
    check_model(model, inputs)


def test_recurrent_imports_one_op_with_symbolic_batch():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["S", "N", 16])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 96, 16])
    r = helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 96, 32])
    node = helper.make_node("GRU", ["x", "w", "r"], ["", "y_h"], hidden_size=32, direction="bidirectional")
    graph = helper.make_graph([node], "gru", [x, w, r], [helper.make_empty_tensor_value_info("y_h")])
    module = imported(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]))
    ops = module.main.body.ops
    assert [op.name for op in ops] == ["ember.gru"]
    assert str(ops[0].results[1].type) == "f32[2,N,32]" and str(ops[0].results[0].type) == "f32[S,2,N,32]"


def test_recurrent_rejects_bad_attributes():
    inputs, _ = recurrent_inputs("RNN", full=False)
    for attrs, match in (({"activations": ["Gelu"]}, "activation"), ({"hidden_size": 7}, "hidden_size"),
                         ({"direction": "both"}, "direction")):
        model = node_model("RNN", inputs, {"hidden_size": 5} | attrs, outputs=("y", "y_h"), opset=22)
        with pytest.raises(Exception, match=match):
            imported(model)
