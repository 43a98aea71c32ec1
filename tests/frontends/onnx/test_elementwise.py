"""ONNX elementwise ops whose import needs more than a one-to-one mapping: BitShift on signed
integers (opset 28), Mod with fmod=0 on floats, PRelu's per-channel slope before opset 7,
Clip's attribute form, Cast to float4 with NaN; against onnxruntime, or onnx.reference where
onnxruntime lacks the opset or the type."""

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_check import check_node, imported, node_model, run_ember
from oracle import rand


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dt", [np.int8, np.int32, np.int64, np.uint8, np.uint64])
def test_bit_shift_opset_28(direction, dt):
    bits = np.dtype(dt).itemsize * 8
    signed = np.dtype(dt).kind == "i"
    x = rand((3, 5), dt, low=-10 if signed else 0, high=10)
    y = np.array([0, 1, bits - 1, bits, bits + 5] if not signed else [-1, 1, bits - 1, bits, 3], dt)
    check_node("BitShift", {"a": x, "b": y}, {"direction": direction}, opset=28, reference="onnx")


def test_bit_shift_unsigned_opset_11():
    x, y = rand((4,), np.uint32, low=0, high=20), np.array([1, 2, 3, 31], np.uint32)
    for direction in ("LEFT", "RIGHT"):
        check_node("BitShift", {"a": x, "b": y}, {"direction": direction}, opset=11)


def test_bit_shift_signed_by_hand():
    x, y = np.int8([-128, -7, 5, 64]), np.int8([1, 1, -2, 1])
    right = run_ember(node_model("BitShift", {"a": x, "b": y}, {"direction": "RIGHT"}, opset=28), {"a": x, "b": y})
    left = run_ember(node_model("BitShift", {"a": x, "b": y}, {"direction": "LEFT"}, opset=28), {"a": x, "b": y})
    assert right[0].tolist() == [-64, -4, 0, 32] and left[0].tolist() == [0, -14, 0, -128]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # onnx.reference's NaN
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.float16])
def test_mod_float_fmod_0(dt):
    x = np.array([-4.5, 7.5, -0.0, 0.0, 5.0, -5.0, np.inf, 3.0, 2.0], dt)
    y = np.array([2.0, -2.0, 3.0, -3.0, np.inf, np.inf, 2.0, 0.0, np.nan], dt)
    check_node("Mod", {"a": x, "b": y}, {"fmod": 0}, opset=28, reference="onnx")
    check_node("Mod", {"a": x, "b": y}, {"fmod": 1}, opset=13)


def test_mod_int():
    x, y = np.int32([5, -5, 5, -5]), np.int32([3, 3, -3, -3])
    for fmod in (0, 1):
        check_node("Mod", {"a": x, "b": y}, {"fmod": fmod}, opset=13)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (2, 3, 4, 5)])
def test_prelu_channel_slope_before_opset_7(shape):
    """Opset 6's slope vector has one value per channel (axis 1), as PyTorch exports it."""
    x, slope = rand(shape), rand((3,))
    model = node_model("PRelu", {"x": x, "slope": slope}, opset=6)
    got = run_ember(model, {"x": x, "slope": slope})[0]
    s = slope.reshape((3,) + (1,) * (len(shape) - 2))
    assert np.allclose(got, np.where(x < 0, s * x, x))


def test_prelu_broadcasts_from_opset_7():
    check_node("PRelu", {"x": rand((2, 3, 4)), "slope": rand((4,))}, opset=7)
    check_node("PRelu", {"x": rand((2, 3, 4)), "slope": rand((3, 1))}, opset=16)


def test_clip_forms():
    x = rand((3, 4))
    check_node("Clip", {"x": x}, {"min": -1.0, "max": 0.5}, opset=6)
    check_node("Clip", {"x": x}, {}, opset=6)
    check_node("Clip", {"x": x, "lo": np.array(-0.5, np.float32), "hi": np.array(2.0, np.float32)}, opset=13)
    check_node("Clip", {"x": x}, opset=13, initializers={"hi": np.float32(0.1)}, input_names=["x", "", "hi"])


def test_cast_to_float4_nan():
    """NaN becomes a zero of the opposite sign, as ONNX's reference and test data say."""
    x = np.float32([0.48, -3.5, 9.0, np.nan, -np.inf, -0.0])
    got = check_node("Cast", {"x": x}, {"to": TensorProto.FLOAT4E2M1}, opset=23, reference="onnx")[0][0]
    assert got.astype(np.float32).tolist() == [0.5, -4.0, 6.0, 0.0, -6.0, 0.0]
    assert np.signbit(got.astype(np.float32)[[3, 5]]).all()
    back = check_node("Cast", {"x": got}, {"to": TensorProto.FLOAT}, opset=23, reference="onnx")[0][0]
    assert back.dtype == np.float32 and back[2] == 6.0
    assert got.dtype == ml_dtypes.float4_e2m1fn


def test_import_symbolic_batch():
    x = helper.make_tensor_value_info("x", TensorProto.INT32, ["N", 4])
    s = onnx.numpy_helper.from_array(np.int32([1, 2, 3, 40]), "s")
    nodes = [helper.make_node("BitShift", ["x", "s"], ["r"], direction="RIGHT"),
             helper.make_node("Cast", ["r"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mod", ["f", "f"], ["m"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [helper.make_empty_tensor_value_info("m")], [s]),
                              opset_imports=[helper.make_opsetid("", 28)])
    text = str(imported(model))
    assert 'ember.bit_shift %x, %s {direction = "right"} : i32[N,4]' in text
    assert "ember.mod %f, %f : f32[N,4]" in text
