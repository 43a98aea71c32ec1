"""ONNX normalizations and the softmax family, imported and run on Ember against onnxruntime
(onnx.reference where onnxruntime lacks the op or the opset): the opset < 13 softmax forms that
coerce to 2-D, BatchNormalization's opsets, GroupNormalization 18 (per group) and 21 (per
channel), LayerNormalization with its Mean and InvStdDev outputs, LpNormalization's zero norm."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_check import check_model, check_node, imported, node_model
from oracle import rand

from ember.errors import UnsupportedOpError
from ember.frontends.onnx import import_model


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -2])
@pytest.mark.parametrize("opset", [1, 11, 13])
def test_softmax_family(op, axis, opset):
    x = rand((2, 3, 4))
    if op == "Hardmax":
        x = np.round(x)  # ties go to the first index
    check_node(op, {"x": x}, {} if axis is None else {"axis": axis}, opset=opset)


def test_coerced_softmax_differs_from_per_axis():
    """Opset 11 with axis=1 on rank 3 normalizes over the flattened trailing dims."""
    x = rand((2, 3, 4))
    got = check_node("Softmax", {"x": x}, {"axis": 1}, opset=11)[0][0]
    assert np.allclose(got.reshape(2, -1).sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(got.sum(axis=1), 1.0, atol=1e-3)


def test_softmax_symbolic_coerced():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=1)], "g", [x],
                                                [helper.make_empty_tensor_value_info("y")]),
                              opset_imports=[helper.make_opsetid("", 11)])
    text = str(imported(model))
    assert "ember.flatten %x : f32[N,12]" in text  # axis = 1 is the default
    assert "ember.softmax" in text and "{axis = 1} : f32[N,12]" in text
    assert "{shape = [N, 3, 4], allowzero = true} : f32[N,3,4]" in text


BN_INPUTS = {"x": rand((2, 3, 4, 5)), "s": rand((3,)), "b": rand((3,)), "mean": rand((3,)),
             "var": rand((3,), low=0.5, high=2)}


@pytest.mark.parametrize("opset,attrs", [(6, {"is_test": 1, "epsilon": 1e-3}), (7, {"spatial": 1}), (9, {}),
                                         (14, {"training_mode": 0}), (15, {"momentum": 0.8})])
def test_batch_norm(opset, attrs):
    check_node("BatchNormalization", BN_INPUTS, attrs, opset=opset, reference="onnx" if opset < 7 else "ort")


@pytest.mark.parametrize("momentum", [0.9, 0.5])
def test_batch_norm_training_mode_uses_batch_statistics(momentum):
    model = node_model("BatchNormalization", BN_INPUTS, {"training_mode": 1, "momentum": momentum}, opset=15,
                       outputs=("y", "running_mean", "running_var"))
    check_model(model, BN_INPUTS, reference="onnx")


def test_batch_norm_unsupported_forms():
    model = node_model("BatchNormalization", BN_INPUTS, {}, opset=9, outputs=("y", "m", "v", "sm", "sv"))
    with pytest.raises(UnsupportedOpError, match=r"outputs \[1, 2, 3, 4\] .* exist only in training mode"):
        import_model(model)
    model = node_model("BatchNormalization", BN_INPUTS, {"spatial": 0}, opset=7)
    with pytest.raises(UnsupportedOpError, match="spatial=0"):
        import_model(model)


@pytest.mark.parametrize("opset", [6, 22])
def test_instance_norm(opset):
    check_node("InstanceNormalization", {"x": rand((2, 3, 5)), "s": rand((3,)), "b": rand((3,))},
               {"epsilon": 1e-3}, opset=opset)


def test_group_norm_opset_21():
    check_node("GroupNormalization", {"x": rand((2, 4, 3, 3)), "s": rand((4,)), "b": rand((4,))},
               {"num_groups": 2, "epsilon": 1e-3}, opset=21, reference="onnx", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("constant", [True, False])
def test_group_norm_opset_18_per_group(constant):
    """Opset 18's scale and bias hold one value per group (constants fold, inputs expand)."""
    x, s, b = rand((2, 6, 2, 2)), rand((3,)), rand((3,))
    if constant:
        got = check_node("GroupNormalization", {"x": x}, {"num_groups": 3}, opset=18, reference="onnx",
                         initializers={"s": s, "b": b}, rtol=1e-4, atol=1e-5)[0][0]
    else:
        got = check_node("GroupNormalization", {"x": x, "s": s, "b": b}, {"num_groups": 3}, opset=18,
                         reference="onnx", rtol=1e-4, atol=1e-5)[0][0]
    g = x.reshape(2, 3, -1)
    norm = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    want = norm * np.repeat(s, 2)[:, None, None] + np.repeat(b, 2)[:, None, None]
    assert np.allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_with_statistics(axis, with_bias):
    x = rand((2, 3, 4))
    shape = x.shape[axis % 3:]
    inputs = {"x": x, "w": rand(shape)} | ({"b": rand(shape)} if with_bias else {})
    check_node("LayerNormalization", inputs, {"axis": axis, "epsilon": 1e-3}, opset=17,
               outputs=("y", "mean", "inv_std"))


def test_layer_norm_f16_statistics_in_f32():
    x = rand((2, 8), np.float16)
    got, _ = check_node("LayerNormalization", {"x": x, "w": rand((8,), np.float16)}, {}, opset=17,
                        outputs=("y", "mean", "inv_std"), rtol=1e-2, atol=1e-2)
    assert got[0].dtype == np.float16 and got[1].dtype == np.float32 and got[2].dtype == np.float32


def test_layer_norm_y_only_is_one_op():
    model = node_model("LayerNormalization", {"x": rand((2, 8)), "w": rand((8,))}, {}, opset=17)
    text = str(imported(model))
    assert text.count("ember.") == 1 and "ember.layer_norm %x, %w : f32[2,8]" in text


@pytest.mark.parametrize("axis", [-1, 1])
def test_rms_norm(axis):
    x = rand((2, 3, 4))
    check_node("RMSNormalization", {"x": x, "w": rand(x.shape[axis % 3:])}, {"axis": axis, "epsilon": 1e-3},
               opset=23, reference="onnx", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [{"size": 3}, {"size": 5, "alpha": 2e-3, "beta": 0.5, "bias": 2.0}])
@pytest.mark.parametrize("opset", [1, 13])
def test_lrn(attrs, opset):
    check_node("LRN", {"x": rand((2, 6, 3, 3))}, attrs, opset=opset)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("opset", [1, 22])
def test_lp_norm(p, axis, opset):
    check_node("LpNormalization", {"x": rand((3, 4))}, {"p": p, "axis": axis}, opset=opset)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # onnx.reference's 0/0
def test_lp_norm_zero_norm_gives_zero():
    x = np.float32([[0.0, 0.0, 0.0], [3.0, 0.0, -4.0]])
    got = check_node("LpNormalization", {"x": x}, {"p": 2}, opset=22, reference="onnx")[0][0]
    assert got.tolist() == np.float32([[0.0, 0.0, 0.0], [0.6, 0.0, -0.8]]).tolist()


def test_mean_variance_normalization_expands():
    """No converter: ONNX's function body imports (reductions, arithmetic)."""
    check_node("MeanVarianceNormalization", {"x": rand((2, 3, 4, 4))}, {}, opset=13)
    check_node("MeanVarianceNormalization", {"x": rand((2, 3, 4))}, {"axes": [0, 2]}, opset=18)


def test_import_symbolic_batch():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8])
    c4 = onnx.numpy_helper.from_array(rand((4,)), "c4")
    c8 = onnx.numpy_helper.from_array(rand((8,)), "c8")
    nodes = [helper.make_node("BatchNormalization", ["x", "c4", "c4", "c4", "c4"], ["bn"]),
             helper.make_node("InstanceNormalization", ["bn", "c4", "c4"], ["inn"]),
             helper.make_node("GroupNormalization", ["inn", "c4", "c4"], ["gn"], num_groups=2),
             helper.make_node("LayerNormalization", ["gn", "c8", "c8"], ["ln", "mean", "inv"]),
             helper.make_node("RMSNormalization", ["ln", "c8"], ["rms"]),
             helper.make_node("LRN", ["rms"], ["lrn"], size=3),
             helper.make_node("LpNormalization", ["lrn"], ["lp"]),
             helper.make_node("Softmax", ["lp"], ["y"])]
    outs = [helper.make_empty_tensor_value_info(n) for n in ("y", "mean", "inv")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs, [c4, c8]),
                              opset_imports=[helper.make_opsetid("", 23)])
    text = str(imported(model))
    for op in ("batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm", "lrn", "reduce_l2", "softmax"):
        assert f"ember.{op}" in text
    assert "{num_groups = 2} : f32[N,4,8]" in text
    assert "ember.reduce_mean" in text and "{axes = [2]} : f32[N,4,1]" in text  # LayerNorm's Mean
    assert "ember.rsqrt" in text
