"""ONNX QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear, imported and run on Ember
against onnxruntime (onnx.reference for the types and opsets onnxruntime lacks): per tensor,
per axis, blocked; zero point or output_dtype; fp8 saturation; the opset 10 and 13 forms."""

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_check import check_node, imported
from oracle import rand

U8, I8 = np.uint8, np.int8


@pytest.mark.parametrize("opset", [10, 13, 19, 21, 23])
@pytest.mark.parametrize("zp_dt", [U8, I8])
def test_quantize_per_tensor(opset, zp_dt):
    x = rand((3, 4), low=-20, high=20)
    check_node("QuantizeLinear", {"x": x}, opset=opset,
               initializers={"s": np.float32(0.25), "zp": np.array(3, zp_dt)})


@pytest.mark.parametrize("opset", [10, 13, 23])
def test_dequantize_per_tensor(opset):
    x = rand((3, 4), U8, low=0, high=25)
    check_node("DequantizeLinear", {"x": x}, opset=opset,
               initializers={"s": np.float32(0.5), "zp": np.array(100, U8)})


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_per_axis(axis):
    x = rand((2, 3, 3))
    s = rand((x.shape[axis],), low=0.05, high=0.2)
    zp = np.arange(x.shape[axis], dtype=I8)
    check_node("QuantizeLinear", {"x": x}, {"axis": axis}, opset=13, initializers={"s": s, "zp": zp})
    q = rand((2, 3, 3), I8)
    check_node("DequantizeLinear", {"x": q}, {"axis": axis}, opset=13, initializers={"s": s, "zp": zp})


def test_blocked():
    x = rand((3, 4))
    s = rand((3, 2), low=0.05, high=0.2)
    zp = rand((3, 2), U8, low=0, high=10)
    check_node("QuantizeLinear", {"x": x}, {"axis": 1, "block_size": 2}, opset=21, initializers={"s": s, "zp": zp})
    check_node("QuantizeLinear", {"x": x}, {"axis": 1, "block_size": 2, "output_dtype": TensorProto.INT8}, opset=21,
               initializers={"s": s})
    q = rand((1, 4, 3, 2), U8, low=0, high=25)
    check_node("DequantizeLinear", {"x": q}, {"axis": 1, "block_size": 2}, opset=21,
               initializers={"s": rand((1, 2, 3, 2), low=0.1, high=1), "zp": rand((1, 2, 3, 2), U8, low=0, high=5)})


@pytest.mark.parametrize("to,saturate", [(TensorProto.FLOAT8E4M3FN, 1), (TensorProto.FLOAT8E4M3FN, 0),
                                         (TensorProto.FLOAT8E5M2, 1)])
def test_quantize_fp8(to, saturate):
    x = np.float32([0.5, -3.0, 1000.0, -1e6, 17.0])
    zp = np.zeros((), helper.tensor_dtype_to_np_dtype(to))
    check_node("QuantizeLinear", {"x": x}, {"saturate": saturate}, opset=19, reference="onnx",
               initializers={"s": np.float32(0.5), "zp": zp})  # onnxruntime's Python API lacks fp8


def test_quantize_output_dtype_and_small_types():
    """output_dtype without a zero point; int4, int16 and f4e2m1 (onnx.reference: onnxruntime
    lacks some of these at opset 23+)."""
    x = rand((3, 4), low=-4, high=4)
    for code in (TensorProto.INT4, TensorProto.UINT16, TensorProto.INT16, TensorProto.FLOAT4E2M1):
        check_node("QuantizeLinear", {"x": x}, {"output_dtype": code}, opset=23, reference="onnx",
                   initializers={"s": np.float32(0.5)})


def test_dequantize_types_and_output_dtype():
    f8 = np.float32([1.0, -2.5, 448.0]).astype(ml_dtypes.float8_e4m3fn)
    check_node("DequantizeLinear", {"x": f8}, opset=19, reference="onnx", initializers={"s": np.float32(2.0)})
    check_node("DequantizeLinear", {"x": f8}, opset=19, reference="onnx", initializers={"s": np.float16(2.0)})
    i32 = np.int32([-5, 7, 1 << 20])
    check_node("DequantizeLinear", {"x": i32}, opset=13, initializers={"s": np.float32(0.5)})
    u4 = np.array([0, 3, 15], ml_dtypes.uint4)
    check_node("DequantizeLinear", {"x": u4}, {"output_dtype": TensorProto.FLOAT16}, opset=23, reference="onnx",
               initializers={"s": np.float32(0.5), "zp": np.array(1, ml_dtypes.uint4)})


def test_scalar_scale_with_one_element_zero_point():
    """ONNX's test data pairs a scalar scale with a [1] zero point; both are per tensor."""
    f8 = np.float32([1.0, -2.0, 4.0]).astype(ml_dtypes.float8_e4m3fn)
    check_node("DequantizeLinear", {"x": f8}, {"axis": 0}, opset=21, reference="onnx",
               initializers={"s": np.float32(2.0), "zp": np.zeros((1,), ml_dtypes.float8_e4m3fn)})


@pytest.mark.parametrize("low,high", [(-3, 3), (0.5, 4), (-4, -0.5)])
def test_dynamic_quantize(low, high):
    x = rand((3, 4), low=low, high=high)
    check_node("DynamicQuantizeLinear", {"x": x}, opset=11, outputs=("y", "scale", "zp"))


def test_import_symbolic_batch():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8])
    inits = [onnx.numpy_helper.from_array(rand((3,), low=0.1, high=0.2), "s"),
             onnx.numpy_helper.from_array(np.zeros(3, I8), "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"], axis=1),
             helper.make_node("DynamicQuantizeLinear", ["d"], ["y", "ys", "yz"])]
    outs = [helper.make_empty_tensor_value_info(n) for n in ("y", "ys", "yz")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", 21)])
    text = str(imported(model))
    assert "ember.quantize %x, %s, %zp : i8[N,3,8]" in text
    assert "ember.dequantize %q, %s, %zp : f32[N,3,8]" in text
    assert "ember.dynamic_quantize %d : u8[N,3,8], f32[], u8[]" in text
