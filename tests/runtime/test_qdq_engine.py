"""A model quantized by onnxruntime.quantization.quantize_static (QDQ format, per-channel int8
weights; i8 or onnxruntime's default u8 activations) compiles with no host fallback: fold-qdq
makes its convolutions and its gemm int8 ops (s8 x s8 -> s32 kernels whose epilogues requantize,
the layer table shows them), lower-quantization writes the pairs left (around the residual add
and the pool) as elementwise ops. Its engine on the host arena (which computes the engine's own
int8 semantics) matches onnxruntime's own run of the quantized model within one quantization
step of each output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember

quantization = pytest.importorskip("onnxruntime.quantization")
import onnxruntime as ort  # noqa: E402


def float_model(path: Path) -> Path:
    """conv 3x3 -> relu -> conv 3x3 (+ the first's output) -> global pool -> gemm."""
    rng = np.random.default_rng(0)
    f = TensorProto.FLOAT
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n) for n, s in (
        ("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (8, 8, 3, 3)), ("b2", (8,)), ("wf", (8, 5)), ("bf", (5,)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"], name="add1"),
             helper.make_node("GlobalAveragePool", ["s"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["fl"], name="flat"),
             helper.make_node("Gemm", ["fl", "wf", "bf"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", f, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", f, [1, 5])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    return path


class Reader(quantization.CalibrationDataReader):
    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.batches = iter([{"x": rng.standard_normal((1, 3, 12, 12)).astype(np.float32)} for _ in range(8)])

    def get_next(self):
        return next(self.batches, None)


def output_step(model: onnx.ModelProto, output: str) -> float:
    """The scale of the DequantizeLinear that makes `output` (or of the last quantization before it)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer[output]
    while node.op_type != "DequantizeLinear":
        node = producer[node.input[0]]
    return float(np.max(inits[node.input[1]]))


@pytest.mark.parametrize("activations", ["QInt8", "QUInt8"])
def test_a_quantize_static_model_runs_int8_ops_and_matches_onnxruntime(activations, tmp_path, kernel_cache):
    from ember.runtime.layers import layers
    src = float_model(tmp_path / "float.onnx")
    qdq = tmp_path / "qdq.onnx"
    quantization.quantize_static(str(src), str(qdq), Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 activation_type=getattr(quantization.QuantType, activations),
                                 weight_type=quantization.QuantType.QInt8, per_channel=True)
    proto = onnx.load(str(qdq))
    kinds = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    module = ember.load(qdq)
    assert any(op.name == "ember.quantize" for op in module.walk())
    engine = ember.compile(module, targets=("sm_80",), cache_dir=kernel_cache)
    assert engine.report.host_ops == [], engine.report.host_ops
    ops = [op.name for op in engine.module.walk()]
    assert not any(name in ("ember.quantize", "ember.dequantize", "ember.conv", "ember.gemm") for name in ops), ops
    int8 = [(layer.kernel, body) for layer in layers(engine) for so in layer.ops for body in (so.op, *so.body)
            if body.startswith("ember.int8_")]
    assert sorted(body for _, body in int8) == ["ember.int8_conv", "ember.int8_conv", "ember.int8_matmul"], int8
    assert all(kernel.startswith(body.split(".")[1]) for kernel, body in int8)
    session = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    step = output_step(proto, "y")
    for seed in range(3):
        x = np.random.default_rng(10 + seed).standard_normal((1, 3, 12, 12)).astype(np.float32)
        got = np.asarray(engine.run({"x": x}, device="cpu")["y"])
        want = session.run(None, {"x": x})[0]
        assert np.abs(got - want).max() <= step * (1 + 1e-6), (np.abs(got - want).max(), step)


@pytest.mark.gpu
@pytest.mark.parametrize("activations", ["QInt8", "QUInt8"])
def test_the_int8_engine_matches_onnxruntime_on_the_gpu(activations, tmp_path, kernel_cache):
    from ember.runtime import cuda
    ok, why = cuda.available()
    if not ok:
        pytest.skip(f"no CUDA GPU: {why}")
    src = float_model(tmp_path / "float.onnx")
    qdq = tmp_path / "qdq.onnx"
    quantization.quantize_static(str(src), str(qdq), Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 activation_type=getattr(quantization.QuantType, activations),
                                 weight_type=quantization.QuantType.QInt8, per_channel=True)
    engine = ember.compile(ember.load(qdq), cache_dir=kernel_cache)
    ctx = engine.create_context("cuda", poison=True, graphs=False)
    session = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    step = output_step(onnx.load(str(qdq)), "y")
    for seed in range(3):
        x = np.random.default_rng(20 + seed).standard_normal((1, 3, 12, 12)).astype(np.float32)
        got = np.asarray(ctx.run({"x": x})["y"])
        assert np.abs(got - session.run(None, {"x": x})[0]).max() <= step * (1 + 1e-6)
        assert np.abs(got - np.asarray(engine.run({"x": x}, device="cpu")["y"])).max() <= step * (1 + 1e-6)
