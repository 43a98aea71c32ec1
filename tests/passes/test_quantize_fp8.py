"""quantize-fp8 and `precision="fp8"`: calibrated amax becomes the e4m3 Q/DQ pairs a ModelOpt model
carries (activations per tensor at amax / 448, weights per output channel at max |w| / 448),
fold-qdq-fp8 makes fp8 ops of them, and the engine (on the host arena: the engine's own plan and
fp8 semantics) is its IR and, within the fp8 rule of tolerance.py, the fp32 model: a small conv
network and the small BERT fixture. The calibration cache is shared with int8's machinery and
reused; the CLI's --fp8 and compare --fp8 drive it."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import ember
from ember.build import BuildError
from ember.cli import main
from ember.ir.interpret import interpret
from ember.ir.parser import copy_module
from ember.passes import calibration as C
from ember.passes.quantize_fp8 import quantize_fp8
from ember.tolerance import compare, fp8_tolerance
from onnx import TensorProto, helper, numpy_helper

from ember.ir.builder import Builder
from ember.ir.types import f32

FIXTURES = Path(__file__).parents[1] / "fixtures" / "onnx"
E4M3_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)
RNG = np.random.default_rng(7)
W = (RNG.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
B = RNG.standard_normal(8).astype(np.float32)
FW = (RNG.standard_normal((8 * 10 * 10, 6)) * 0.05).astype(np.float32)


def conv_mlp() -> ember.ir.Module:
    b = Builder("conv_mlp")
    x = b.input("x", f32["N", 3, 10, 10])
    y = b.op("ember.relu", b.op("ember.conv", x, b.weight("w", W), b.weight("b", B), pads=[1, 1, 1, 1]))
    flat = b.op("ember.reshape", y, shape=["N", 800])
    b.output("z", b.op("ember.matmul", flat, b.weight("fw", FW)))
    return b.build()


def batches(n: int = 3, batch: int = 2) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((batch, 3, 10, 10)).astype(np.float32)} for _ in range(n)]


def onnx_conv_model(path: Path) -> None:
    import onnx
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 10, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))


def test_e4m3_is_what_the_scales_divide_by() -> None:
    assert E4M3_MAX == 448.0


def test_the_pairs_carry_amax_over_448() -> None:
    """The activation scales are the calibrated amax (checked against numpy over the batches) / 448;
    the weights' are per output channel (conv: axis 0; matmul [K, N]: axis 1)."""
    m = conv_mlp()
    data = batches()
    cal = C.calibrate(m, data, method="minmax")
    names = C.tensor_names(m)
    x_name = names[m.main.body.args[0]]
    amax_x = max(float(np.abs(b["x"]).max()) for b in data)
    assert cal.thresholds[x_name] == pytest.approx(amax_x, rel=1e-12) == cal.amax[x_name]
    flat = next(op for op in m.main.body.ops if op.name == "ember.reshape").results[0]
    amax_flat = max(float(_relu_conv(b["x"]).max()) for b in data)
    assert cal.thresholds[names[flat]] == pytest.approx(amax_flat, rel=1e-5)
    assert quantize_fp8(m, cal) == 4
    quant = [op for op in m.main.body.ops if op.name == "ember.quantize"]
    assert {op.results[0].type.dtype.name for op in quant} == {"f8e4m3fn"}
    scale = {op.operands[0]: np.asarray(op.operands[1].defining_op.attributes["value"].array) for op in quant}
    assert float(scale[m.main.body.args[0]]) == pytest.approx(amax_x / 448, rel=1e-6)
    assert float(scale[flat]) == pytest.approx(amax_flat / 448, rel=1e-5)
    by_weight = {v.defining_op.attributes["name"]: s for v, s in scale.items()
                 if v.defining_op is not None and v.defining_op.name == "ember.weight"}
    np.testing.assert_allclose(by_weight["w"], np.abs(W).max(axis=(1, 2, 3)) / 448, rtol=1e-6)
    np.testing.assert_allclose(by_weight["fw"], np.abs(FW).max(axis=0) / 448, rtol=1e-6)
    ember.ir.verify(m)
    assert quantize_fp8(conv_mlp(), cal, frozenset({"matmul"})) == 2   # a kept op is left alone


def _relu_conv(x: np.ndarray) -> np.ndarray:
    """The conv + relu of conv_mlp, in numpy (an independent computation of the tensor calibrated)."""
    n = x.shape[0]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, 8, 10, 10))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + 10, j:j + 10], W[:, :, i, j].astype(np.float64))
    return np.maximum(out + B.reshape(1, 8, 1, 1), 0)


def _judge(got: np.ndarray, fp32: np.ndarray, fake: np.ndarray, to_fake: float) -> None:
    """The fp8 engine against its own IR's meaning (the fake-quantized model, in f32 where the engine
    runs f16 around the pairs: an e4m3 rounding may flip between them, one fp8 step, so `to_fake`
    is that step's share in this model) and against fp32 by the fp8 rule, with a cosine of the
    outputs near 1; and fp8 is not fp32 (the quantization is really there)."""
    scale = float(np.abs(fp32).max())
    assert np.abs(got - fake).max() <= to_fake * scale
    rtol, atol = fp8_tolerance(np.float32, against="fp32")
    result = compare(got.astype(np.float32), fp32.astype(np.float32), rtol=rtol, atol=atol)
    assert result, result.message
    cosine = float(np.sum(got * fp32) / np.linalg.norm(got) / np.linalg.norm(fp32))
    assert cosine > 0.995
    assert np.abs(got - fp32).max() > 1e-3 * scale


def test_an_fp8_engine_computes_its_quantization(tmp_path: Path, kernel_cache: Path) -> None:
    m = conv_mlp()
    cache = tmp_path / "calib.txt"
    e = ember.compile(m, precision="fp8", calibrator=batches(), calib_cache=cache, shapes={"x": (2, 3, 10, 10)},
                      cache_dir=kernel_cache, targets=("sm_80", "sm_90"))
    q = e.info["quantization"]
    assert q["quantized_inputs"] == 4 and q["method"] == "minmax" and e.info["precision"] == "fp8"
    assert e.host_steps == 0 and e.report.host_ops == []
    heavy = sorted(op.name for op in e.module.walk() if op.name.startswith("ember.fp8_"))
    assert heavy == ["ember.fp8_conv", "ember.fp8_matmul"]
    assert not any(op.name in ("ember.conv", "ember.matmul", "ember.quantize", "ember.dequantize")
                   for op in e.module.walk())
    feeds = {"x": np.random.default_rng(5).standard_normal((2, 3, 10, 10)).astype(np.float32)}
    fake = copy_module(conv_mlp())
    quantize_fp8(fake, C.Calibration.load(cache))
    _judge(e.run(feeds, device="cpu")["z"], interpret(m, feeds)["z"], interpret(fake, feeds)["z"], 2e-2)
    # the cache: read, nothing calibrated again, the same engine
    runs = C.RUNS["interpreter"]
    again = ember.compile(m, precision="fp8", calib_cache=cache, shapes={"x": (2, 3, 10, 10)},
                          cache_dir=kernel_cache, targets=("sm_80", "sm_90"))
    assert C.RUNS["interpreter"] == runs and again.info["quantization"]["from_cache"] is True
    assert again.ir_text == e.ir_text
    with pytest.raises(BuildError, match="precision fp8 needs calibration data"):
        ember.compile(m, precision="fp8", shapes={"x": (2, 3, 10, 10)}, cache_dir=kernel_cache)
    with pytest.raises(BuildError, match="keep_sensitive .* goes with precision int8"):
        ember.compile(m, precision="fp8", calibrator=batches(), keep_sensitive=1, shapes={"x": (2, 3, 10, 10)},
                      cache_dir=kernel_cache)


def test_a_small_bert_in_fp8_is_within_the_fp8_tolerance_of_fp32(kernel_cache: Path) -> None:
    """The transformer fixture: its linear layers become fp8 matmuls (the attention's products of two
    activations stay float, fake-quantized), the rest f16; on the host arena within e4m3's rule."""
    module = ember.load(FIXTURES / "bert_small.onnx")
    feeds = dict(np.load(FIXTURES / "bert_small.inputs.npz"))
    rng = np.random.default_rng(0)
    calib = [{"input_ids": rng.integers(0, 100, (2, 16)).astype(np.int64),
              "attention_mask": np.ones((2, 16), np.int64)} for _ in range(2)] + [feeds]
    e = ember.compile(module, precision="fp8", calibrator=calib, shapes={k: v.shape for k, v in feeds.items()},
                      cache_dir=kernel_cache, targets=("sm_90",))
    fp8_matmuls = [op for op in e.module.walk() if op.name == "ember.fp8_matmul"]
    assert len(fp8_matmuls) >= 12 and e.host_steps == 0, e.report.summary()
    assert {op.operands[0].type.dtype.name for op in fp8_matmuls} == {"f8e4m3fn"}
    fp32 = interpret(module, feeds)["hidden"]
    fake = copy_module(module)
    quantize_fp8(fake, C.calibrate(module, calib, method="minmax"))
    _judge(e.run(feeds, device="cpu")["hidden"], fp32, interpret(fake, feeds)["hidden"], 0.125)


def test_the_cli_builds_fp8_and_compare_reports_it(tmp_path: Path, kernel_cache: Path, capsys) -> None:
    onnx_conv_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(3).standard_normal((8, 3, 10, 10)).astype(np.float32))
    assert main(["compile", str(tmp_path / "m.onnx"), "--shapes", "x:2x3x10x10", "--target", "sm_80,sm_90",
                 "--cache-dir", str(kernel_cache), "--fp8", "--calib", str(tmp_path / "calib.npz"),
                 "--calib-batch", "4", "--calib-cache", str(tmp_path / "c.txt"), "-o", str(tmp_path / "a.engine")]) == 0
    engine = ember.Engine.load(tmp_path / "a.engine")
    assert engine.info["precision"] == "fp8" and engine.info["quantization"]["method"] == "minmax"
    assert any(op.name == "ember.fp8_conv" for op in engine.module.walk())
    assert (tmp_path / "c.txt").read_text().startswith("# Ember calibration cache v1\n# method: minmax")
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "m.onnx"), "--fp8", "--calib", str(tmp_path / "calib.npz"),
                 "--calib-batch", "4", "--json", str(tmp_path / "r.json")]) == 0
    assert "fp8 (2 inputs of heavy ops quantized, minmax calibration) against fp32" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["precision"] == "fp8" and 0.99 < report["outputs"][0]["cosine"] < 1
    with pytest.raises(SystemExit):
        main(["compile", str(tmp_path / "m.onnx"), "--fp8", "--int8", "-o", str(tmp_path / "b.engine")])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["compile", str(tmp_path / "m.onnx"), "--fp16", "--calib", str(tmp_path / "calib.npz"),
                 "-o", str(tmp_path / "b.engine")]) == 2
    assert "--calib and --calib-cache go with --int8 or --fp8" in capsys.readouterr().err


def test_the_fp8_per_layer_report_ranks_the_op_that_loses_accuracy_first(tmp_path: Path, capsys) -> None:
    """One op quantized to e4m3 at a time, each op's error (1 - cosine of the output, worst over
    the batches) as quantizing it alone by hand gives, the worst first (fp8's exponent keeps the
    outlier channel from costing what it costs int8); the command line prints the ranking and
    writes it."""
    from ember.passes.int8_sensitivity import layer_sensitivity
    from tests.passes.test_quantize_int8 import outlier_mlp
    m = outlier_mlp()
    data = [{"x": np.random.default_rng(s).standard_normal((4, 16)).astype(np.float32)} for s in range(3)]
    cal = C.calibrate(m, data, method="minmax")
    ranked = layer_sensitivity(m, cal, data[:2], quantize=quantize_fp8)
    assert sorted(e.name for e in ranked) == ["outlier", "plain"] and ranked[0].error >= ranked[1].error > 0
    for e in ranked:
        one = copy_module(m)
        assert quantize_fp8(one, cal, only=frozenset({e.index})) > 0
        worst = 0.0
        for f in data[:2]:
            a, b = interpret(m, f)["y"].astype(np.float64).ravel(), interpret(one, f)["y"].astype(np.float64).ravel()
            worst = max(worst, 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert e.error == pytest.approx(worst, rel=1e-9, abs=1e-15)
    onnx_conv_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(3).standard_normal((8, 3, 10, 10)).astype(np.float32))
    assert main(["compare", str(tmp_path / "m.onnx"), "--fp8", "--per-layer", "--calib", str(tmp_path / "calib.npz"),
                 "--calib-batch", "4", "--json", str(tmp_path / "r.json")]) == 0
    assert "ember.conv  conv" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["precision"] == "fp8" and report["layers"][0]["name"] == "conv" and report["layers"][0]["error"] > 0
