"""ONNX DFT (opsets 17 and 20), STFT, HannWindow, HammingWindow, BlackmanWindow and
MelWeightMatrix imported and run on Ember against onnxruntime (onnx.reference where
onnxruntime lacks a case)."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_check import check_model, imported, node_model
from oracle import rand


@pytest.mark.parametrize("attrs,last", [({}, 1), ({}, 2), ({"inverse": 1}, 1), ({"inverse": 1}, 2),
                                        ({"onesided": 1}, 1)])
@pytest.mark.parametrize("axis", [1, 2, -2])
def test_dft_opset_17(attrs, axis, last):
    x = rand((2, 6, 4, last))
    check_model(node_model("DFT", {"x": x}, attrs | {"axis": axis}, opset=17), {"x": x})


@pytest.mark.parametrize("attrs", [{}, {"inverse": 1}, {"onesided": 1}, {"inverse": 1, "onesided": 1}])
@pytest.mark.parametrize("axis", [1, -2])
@pytest.mark.parametrize("length", [None, 5, 8])
def test_dft_opset_20(attrs, axis, length):
    x = rand((2, 6, 4, 2 if attrs.get("inverse") else 1))
    inputs = {"x": x} | ({"n": np.array(length, np.int64)} if length else {}) | {"axis": np.array(axis, np.int64)}
    names = ["x", "n" if length else "", "axis"]
    model = node_model("DFT", inputs, attrs, opset=20, input_names=names)
    check_model(model, inputs, reference="onnx" if attrs.get("inverse") and attrs.get("onesided") else "ort")


@pytest.mark.parametrize("with_window", [False, True])
@pytest.mark.parametrize("onesided", [0, 1])
def test_stft(with_window, onesided):
    signal = rand((2, 64, 1))
    inputs = {"s": signal, "step": np.array(8, np.int64)}
    if with_window:
        inputs["w"] = rand((16,), low=0, high=1)
    else:
        inputs["n"] = np.array(16, np.int64)
    names = ["s", "step", "w" if with_window else "", "" if with_window else "n"]
    model = node_model("STFT", inputs, {"onesided": onesided}, opset=17, input_names=names)
    check_model(model, inputs)
    assert [op.name for op in imported(model, frozen_inputs={"step": inputs["step"], **(
        {"n": inputs["n"]} if "n" in inputs else {})}).main.body.ops] == ["ember.stft"]


@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.DOUBLE])
def test_windows(op, periodic, dtype):
    """(onnxruntime's f64 Hamming and Blackman windows are off by 2e-8: f32 constants.)"""
    inputs = {"size": np.array(12, np.int64)}
    model = node_model(op, inputs, {"periodic": periodic, "output_datatype": dtype}, opset=17)
    check_model(model, inputs, reference="ort" if dtype == TensorProto.FLOAT else "onnx")


def test_mel_weight_matrix():
    inputs = {"bins": np.array(10, np.int64), "dft": np.array(64, np.int64), "rate": np.array(16000, np.int64),
              "low": np.array(20.0, np.float32), "high": np.array(7600.0, np.float32)}
    check_model(node_model("MelWeightMatrix", inputs, {}, opset=17), inputs)


def test_signal_imports_with_symbolic_batch():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L", 1])
    n = helper.make_tensor("n", TensorProto.INT64, [], [400])
    node = helper.make_node("DFT", ["x", "n"], ["y"], onesided=1, axis=1)
    hann = helper.make_node("HannWindow", ["n"], ["w"])
    graph = helper.make_graph([node, hann], "dft", [x], [helper.make_empty_tensor_value_info("y"),
                                                         helper.make_empty_tensor_value_info("w")],
                              initializer=[n])
    text = str(imported(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])))
    assert "ember.dft" in text and "f32[N,201,2]" in text
    assert "f32[400]" in text  # the window, folded to a constant at import
