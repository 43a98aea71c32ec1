"""A model quantized by onnxruntime.quantization.quantize_static (QDQ format, per-channel int8
weights; i8 or onnxruntime's default u8 activations) compiles with no host fallback: fold-qdq
makes its convolutions and its gemm int8 ops (s8 x s8 -> s32 kernels whose epilogues requantize,
the layer table shows them), the residual add and the pools between them int8 ops on i8
tensors (the add in the second conv's epilogue), and lower-quantization writes the pairs left
(the model's input and output) as elementwise ops. Its engine on the host arena (which computes
the engine's own int8 semantics) matches onnxruntime's own run of the quantized model within one
quantization step of each output."""

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
    assert sorted(body for _, body in int8) == ["ember.int8_add", "ember.int8_conv", "ember.int8_conv",
                                                "ember.int8_global_avg_pool", "ember.int8_matmul"], int8
    kernels = {body: kernel for kernel, body in int8}
    assert kernels["ember.int8_add"].startswith("int8_conv")  # the residual add in the conv's epilogue
    assert all(kernels[f"ember.int8_{heavy}"].startswith(f"int8_{heavy}") for heavy in ("conv", "matmul"))
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


# -- int8 between the heavy ops: pools, residual add, concat --------------------------------------
def pooled_model(path: Path) -> Path:
    """conv -> relu -> max pool -> conv (+ the pool's output) -> conv 1x1, concatenated with the
    sum -> 3x3 average pool -> global average pool."""
    rng = np.random.default_rng(2)
    f = TensorProto.FLOAT
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n) for n, s in (
        ("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (8, 8, 3, 3)), ("b2", (8,)), ("w3", (8, 8, 1, 1)), ("b3", (8,)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["m1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["m1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "m1"], ["s"], name="add1"),
             helper.make_node("Conv", ["s", "w3", "b3"], ["c3"], name="conv3"),
             helper.make_node("Concat", ["c3", "s"], ["cat"], name="cat", axis=1),
             helper.make_node("AveragePool", ["cat"], ["ap"], name="apool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["ap"], ["y"], name="gpool")]
    graph = helper.make_graph(nodes, "qdq_pooled", [helper.make_tensor_value_info("x", f, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", f, [1, 16, 1, 1])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    return path


def quantized_pooled_model(tmp_path: Path, activations: str) -> Path:
    qdq = tmp_path / "qdq_pooled.onnx"
    quantization.quantize_static(str(pooled_model(tmp_path / "pooled.onnx")), str(qdq), Reader(),
                                 quant_format=quantization.QuantFormat.QDQ,
                                 activation_type=getattr(quantization.QuantType, activations),
                                 weight_type=quantization.QuantType.QInt8, per_channel=True)
    return qdq


def within_one_step(got: np.ndarray, want: np.ndarray, step: float) -> bool:
    """|got - want| at most one step, give or take the f32 rounding of two values' difference."""
    slack = step * 1e-6 + 2 * np.finfo(np.float32).eps * np.abs(want)
    return bool(np.all(np.abs(got - want) <= step + slack))


def float_int_crossings(module: ember.ir.Module) -> tuple[int, int]:
    """Casts from float to i8 and from i8 to float anywhere in the module (fused bodies too):
    what a quantize and a dequantize leave after lower-quantization."""
    into = out = 0
    for op in module.walk():
        if op.name != "ember.cast":
            continue
        src, dst = op.operands[0].type.dtype, op.results[0].type.dtype
        into += src.is_float and dst.name == "i8"
        out += src.name == "i8" and dst.is_float
    return into, out


@pytest.mark.parametrize("activations", ["QInt8", "QUInt8"])
def test_pools_adds_and_concats_stay_int8_between_the_int8_layers(activations, tmp_path, kernel_cache):
    """Only the model's input is quantized and only its output dequantized: the max pool, the
    residual add, the concat and both average pools run on i8 tensors (the concat's inputs
    requantized into its scale), and the engine matches onnxruntime within one output step."""
    from ember.passes.manager import PassManager
    qdq = quantized_pooled_model(tmp_path, activations)
    proto = onnx.load(str(qdq))
    assert sum(n.op_type == "QuantizeLinear" for n in proto.graph.node) >= 8
    folded = ember.load(qdq)
    PassManager("canonicalize,fold-qdq").run(folded)
    names = [op.name for op in folded.walk()]
    assert names.count("ember.quantize") == 1  # the input's
    i8_dequantizes = [op for op in folded.walk()
                      if op.name == "ember.dequantize" and op.operands[0].type.dtype.name == "i8"]
    assert len(i8_dequantizes) == 1  # the output's (the others dequantize the i32 biases)
    for name in ("ember.max_pool", "ember.int8_add", "ember.concat", "ember.int8_avg_pool",
                 "ember.int8_global_avg_pool", "ember.int8_requantize"):
        assert name in names, (name, names)
    assert not {"ember.add", "ember.avg_pool", "ember.global_avg_pool"} & set(names)
    module = ember.load(qdq)
    engine = ember.compile(module, targets=("sm_80",), cache_dir=kernel_cache)
    assert engine.report.host_ops == [], engine.report.host_ops
    assert float_int_crossings(engine.module) == (1, 1)
    session = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    step = output_step(proto, "y")
    for seed in range(3):
        x = np.random.default_rng(30 + seed).standard_normal((1, 3, 12, 12)).astype(np.float32)
        got = np.asarray(engine.run({"x": x}, device="cpu")["y"])
        want = session.run(None, {"x": x})[0]
        assert within_one_step(got, want, step), (np.abs(got - want).max(), step)


@pytest.mark.gpu
@pytest.mark.parametrize("activations", ["QInt8", "QUInt8"])
def test_the_pooled_int8_engine_matches_onnxruntime_on_the_gpu(activations, tmp_path, kernel_cache):
    from ember.runtime import cuda
    ok, why = cuda.available()
    if not ok:
        pytest.skip(f"no CUDA GPU: {why}")
    qdq = quantized_pooled_model(tmp_path, activations)
    engine = ember.compile(ember.load(qdq), cache_dir=kernel_cache)
    ctx = engine.create_context("cuda", poison=True, graphs=False)
    session = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    step = output_step(onnx.load(str(qdq)), "y")
    for seed in range(3):
        x = np.random.default_rng(40 + seed).standard_normal((1, 3, 12, 12)).astype(np.float32)
        got = np.asarray(ctx.run({"x": x})["y"])
        assert within_one_step(got, session.run(None, {"x": x})[0], step)
        assert within_one_step(got, np.asarray(engine.run({"x": x}, device="cpu")["y"]), step)
