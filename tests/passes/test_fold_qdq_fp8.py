"""fold-qdq-fp8 on a ModelOpt-style fp8 ONNX model: QuantizeLinear/DequantizeLinear to FLOAT8E4M3FN
(zero points +0.0) around a conv and a gemm, the weights fp8 initializers with per-channel
DequantizeLinear. It compiles with the default pipeline into ember.fp8_conv and ember.fp8_matmul,
with no quantize/dequantize left and no host fallback, and the engine (on the host arena) matches
onnx.reference's run of the model by the f32 rule: the folded ops compute what the pairs mean."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnx.reference
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.tolerance import assert_close

E4M3 = ml_dtypes.float8_e4m3fn


def fp8_tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT8E4M3FN, array.shape, array.view(np.uint8).tobytes(), raw=True)


def per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ModelOpt's weights: e4m3 codes and one scale per output channel (axis 0), amax / 448."""
    s = (np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 448).astype(np.float32)
    return (w / s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(E4M3), s


def modelopt_model(path: Path) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    wq, sw = per_channel((rng.standard_normal((8, 16, 3, 3)) * 0.2).astype(np.float32))
    mq, sm = per_channel((rng.standard_normal((10, 8 * 6 * 6)) * 0.05).astype(np.float32))
    zero = np.zeros((), E4M3)
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zp"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("QuantizeLinear", ["f", "sf", "zp"], ["fq"]),
             helper.make_node("DequantizeLinear", ["fq", "sf", "zp"], ["fd"]),
             helper.make_node("DequantizeLinear", ["mq", "sm", "zm"], ["md"], axis=0),
             helper.make_node("Gemm", ["fd", "md", "mb"], ["y"], transB=1, name="fc")]
    inits = [fp8_tensor("wq", wq), fp8_tensor("mq", mq), fp8_tensor("zp", zero),
             fp8_tensor("zw", np.zeros(8, E4M3)), fp8_tensor("zm", np.zeros(10, E4M3)),
             numpy_helper.from_array(np.array(0.01, np.float32), "sx"), numpy_helper.from_array(sw, "sw"),
             numpy_helper.from_array(np.array(0.02, np.float32), "sf"), numpy_helper.from_array(sm, "sm"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "mb")]
    graph = helper.make_graph(nodes, "modelopt_fp8",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return model


def test_a_modelopt_fp8_model_folds_into_fp8_ops(tmp_path: Path, kernel_cache: Path) -> None:
    model = modelopt_model(tmp_path / "m.onnx")
    engine = ember.compile(ember.load(tmp_path / "m.onnx"), targets=("sm_90",), cache_dir=kernel_cache)
    assert engine.report.host_ops == [] and engine.host_steps == 0
    names = [op.name for op in engine.module.walk()]
    assert names.count("ember.fp8_conv") == 1 and names.count("ember.fp8_matmul") == 1
    assert not {"ember.conv", "ember.gemm", "ember.quantize", "ember.dequantize", "ember.relu"} & set(names)
    conv = next(op for op in engine.module.walk() if op.name == "ember.fp8_conv")
    assert conv.attributes["relu"] and conv.attributes["layout"] == "NHWC"
    x = np.random.default_rng(1).standard_normal((2, 16, 6, 6)).astype(np.float32)
    want = onnx.reference.ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert_close(engine.run({"x": x}, device="cpu")["y"], want, what="y")
