"""quantize-int8 and `precision="int8"`: calibrated scales become the Q/DQ pairs an explicitly
quantized model carries (activations per tensor at threshold / 127, weights per output
channel at max |w| / 127), the engine computes that quantization, a calibration cache is
reused without running anything, and the CLI's --int8 --calib --calib-cache drive it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.build import BuildError
from ember.cli import main
from ember.ir.builder import Builder
from ember.ir.interpret import interpret
from ember.ir.parser import parse
from ember.ir.types import f32
from ember.passes import calibration as C
from ember.passes.quantize_int8 import quantize_int8

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


def test_the_pairs_carry_the_calibrated_scales() -> None:
    m = conv_mlp()
    cal = C.calibrate(m, batches(), method="minmax")
    names = C.tensor_names(m)
    x_name = names[m.main.body.args[0]]
    flat = next(op for op in m.main.body.ops if op.name == "ember.reshape").results[0]
    assert quantize_int8(m, cal) == 4          # conv's x and w, matmul's a and b
    quant = [op for op in m.main.body.ops if op.name == "ember.quantize"]
    assert len(quant) == 4 and sum(op.name == "ember.dequantize" for op in m.main.body.ops) == 4
    scale = {id(op.operands[0]): np.asarray(op.operands[1].defining_op.attributes["value"].array) for op in quant}
    by_value = {op.operands[0]: scale[id(op.operands[0])] for op in quant}
    assert float(by_value[m.main.body.args[0]]) == pytest.approx(cal.thresholds[x_name] / 127, rel=1e-6)
    assert float(by_value[flat]) == pytest.approx(cal.thresholds[names[flat]] / 127, rel=1e-6)
    w_value = next(v for v in by_value if v.defining_op is not None and v.defining_op.attributes.get("name") == "w")
    np.testing.assert_allclose(by_value[w_value], np.abs(W).max(axis=(1, 2, 3)) / 127, rtol=1e-6)
    fw_value = next(v for v in by_value if v.defining_op is not None and v.defining_op.attributes.get("name") == "fw")
    np.testing.assert_allclose(by_value[fw_value], np.abs(FW).max(axis=0) / 127, rtol=1e-6)  # per output column
    assert all(op.attributes["dtype"] is None or op.attributes["dtype"].name == "i8" for op in quant)
    assert str(quant[0].results[0].type).startswith("i8")
    ember.ir.verify(m)
    # the bias stays float, and a kept op is left alone
    m2 = conv_mlp()
    assert quantize_int8(m2, cal, frozenset({"matmul"})) == 2


def test_an_int8_engine_computes_its_quantization(tmp_path: Path, kernel_cache: Path) -> None:
    m = conv_mlp()
    cache = tmp_path / "calib.txt"
    e = ember.compile(m, precision="int8", calibrator=batches(), calib_method="minmax", calib_cache=cache,
                      shapes={"x": (2, 3, 10, 10)}, cache_dir=kernel_cache, targets=("sm_90",))
    assert e.info["quantization"]["quantized_inputs"] == 4 and e.info["precision"] == "int8"
    assert e.host_steps == 0
    feeds = {"x": np.random.default_rng(5).standard_normal((2, 3, 10, 10)).astype(np.float32)}
    got = e.run(feeds)["z"]
    fp32 = interpret(m, feeds)["z"]
    q = conv_mlp()
    quantize_int8(q, C.Calibration.load(cache))
    fake = interpret(q, feeds)["z"]
    scale = np.abs(fp32).max()
    assert np.abs(got - fake).max() <= 1e-2 * scale           # the engine (f16 around the pairs) is its IR
    assert 1e-3 * scale < np.abs(got - fp32).max() <= 5e-2 * scale  # int8 is not fp32, and close to it
    saved = tmp_path / "m.engine"
    e.save(saved)
    assert ember.Engine.load(saved).info["quantization"] == e.info["quantization"]


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_calibration_through_an_engine_matches_the_interpreters(method: str, kernel_cache: Path) -> None:
    """The runner the build uses on a GPU, here on the host arena: the same batches through an fp32
    engine of the model returning every calibrated tensor give the interpreter's thresholds
    (the host arena computes as the interpreter does, so they agree to float rounding)."""
    from ember.build import calibration_runner
    m = conv_mlp()
    runner = calibration_runner(m, "cpu", ("sm_90",), kernel_cache)
    runs = dict(C.RUNS)
    on_engine = C.calibrate(m, batches(), method=method, runner=runner)
    assert C.RUNS["runner"] == runs["runner"] + (3 if method == "minmax" else 6)
    assert C.RUNS["interpreter"] == runs["interpreter"]
    on_interpreter = C.calibrate(m, batches(), method=method)
    assert set(on_engine.thresholds) == set(on_interpreter.thresholds) == set(C.activation_names(m))
    for name, t in on_interpreter.thresholds.items():
        assert on_engine.thresholds[name] == pytest.approx(t, rel=1e-5), name


def test_the_build_calibrates_where_it_is_told(kernel_cache: Path) -> None:
    opts = dict(precision="int8", calibrator=batches(), calib_method="minmax", shapes={"x": (2, 3, 10, 10)},
                cache_dir=kernel_cache, targets=("sm_90",))
    runs = dict(C.RUNS)
    host = ember.compile(conv_mlp(), calib_device="cpu", **opts)
    assert C.RUNS["runner"] == runs["runner"] + 3 and C.RUNS["interpreter"] == runs["interpreter"]
    interp = ember.compile(conv_mlp(), calib_device="interpreter", **opts)
    assert C.RUNS["interpreter"] == runs["interpreter"] + 3
    feeds = {"x": np.random.default_rng(2).standard_normal((2, 3, 10, 10)).astype(np.float32)}
    assert np.allclose(host.run(feeds)["z"], interp.run(feeds)["z"], rtol=1e-3, atol=1e-3)
    ember.compile(conv_mlp(), calib_device="auto", **opts)   # no GPU here: the interpreter
    assert C.RUNS["interpreter"] == runs["interpreter"] + 6
    with pytest.raises(BuildError, match="calib_device 'gpu'"):
        ember.compile(conv_mlp(), calib_device="gpu", **opts)


def test_a_calibration_cache_is_reused_and_checked(tmp_path: Path, kernel_cache: Path) -> None:
    m = conv_mlp()
    cache = tmp_path / "calib.txt"
    opts = dict(shapes={"x": (2, 3, 10, 10)}, cache_dir=kernel_cache, targets=("sm_90",))
    ember.compile(m, precision="int8", calibrator=batches(), calib_method="percentile", calib_cache=cache, **opts)
    text = cache.read_text()
    runs = C.RUNS["interpreter"]
    e = ember.compile(m, precision="int8", calib_method="percentile", calib_cache=cache, **opts)
    assert C.RUNS["interpreter"] == runs and e.info["quantization"]["from_cache"] is True
    assert cache.read_text() == text
    with pytest.raises(BuildError, match="a percentile 99.99 calibration; this build asks for entropy"):
        ember.compile(m, precision="int8", calib_method="entropy", calib_cache=cache, **opts)
    with pytest.raises(BuildError, match="precision int8 needs calibration data"):
        ember.compile(m, precision="int8", **opts)


def onnx_conv_model(path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 10, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))


def test_the_cli_calibrates_once_and_reuses_the_cache(tmp_path: Path, kernel_cache: Path, capsys) -> None:
    onnx_conv_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(3).standard_normal((10, 3, 10, 10)).astype(np.float32))
    common = [str(tmp_path / "m.onnx"), "--shapes", "x:2x3x10x10", "--target", "sm_90", "--cache-dir",
              str(kernel_cache), "--int8", "--calib-cache", str(tmp_path / "c.txt")]
    assert main(["compile", *common, "--calib", str(tmp_path / "calib.npz"), "--calib-batch", "4",
                 "-o", str(tmp_path / "a.engine")]) == 0
    info = ember.Engine.load(tmp_path / "a.engine").info["quantization"]
    assert info["batches"] == 3 and info["method"] == "entropy" and not info["from_cache"]
    assert (tmp_path / "c.txt").read_text().startswith("# Ember calibration cache v1")
    runs = C.RUNS["interpreter"]
    assert main(["compile", *common, "-o", str(tmp_path / "b.engine")]) == 0
    assert C.RUNS["interpreter"] == runs and ember.Engine.load(tmp_path / "b.engine").info["quantization"]["from_cache"]
    capsys.readouterr()
    assert main(["compile", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "calib.npz"),
                 "-o", str(tmp_path / "c.engine")]) == 2
    assert "--calib and --calib-cache go with --int8 or --fp8" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 3, 10, 10), np.float32), y=np.zeros((5, 1), np.float32))
    assert main(["compile", *common[:-2], "--calib", str(tmp_path / "bad.npz"), "-o", str(tmp_path / "d.engine")]) == 2
    assert "the same number of samples along axis 0" in capsys.readouterr().err
    assert not (tmp_path / "c.engine").exists() and not (tmp_path / "d.engine").exists()


def test_a_forged_quantization_header_is_refused(tmp_path: Path, kernel_cache: Path) -> None:
    from engine_forgery import decode, encode

    from ember.runtime.engine_format import EngineFormatError
    e = ember.compile(conv_mlp(), precision="int8", calibrator=batches(), calib_method="minmax",
                      shapes={"x": (2, 3, 10, 10)}, cache_dir=kernel_cache, targets=("sm_90",))
    header, sections, aligns = decode(e.to_bytes())
    header["quantization"] = {"method": {"nested": "object"}}
    with pytest.raises(EngineFormatError, match="header 'quantization': not a map of names to plain values"):
        ember.Engine.from_bytes(encode(header, sections, aligns))


def outlier_mlp() -> ember.ir.Module:
    """Two matmuls: the first's input is plain, the second's has one channel 1000x the others,
    so a per-tensor int8 scale leaves the rest of that input a few levels."""
    rng = np.random.default_rng(11)
    b = Builder("outliers")
    x = b.input("x", f32[4, 16])
    h = b.op("ember.matmul", x, b.weight("w1", rng.standard_normal((16, 16)).astype(np.float32)), loc="plain")
    boost = np.ones(16, np.float32)
    boost[3] = 1000.0
    h = b.op("ember.mul", h, b.weight("boost", boost))
    w2 = rng.standard_normal((16, 8)).astype(np.float32)
    w2[3] = 0.0   # the outlier channel carries nothing to the output: its scale only costs the others
    b.output("y", b.op("ember.matmul", h, b.weight("w2", w2), loc="outlier"))
    return b.build()


def test_the_per_layer_report_ranks_the_op_that_loses_accuracy_first(kernel_cache: Path) -> None:
    from ember.passes.int8_sensitivity import layer_sensitivity, output_errors
    m = outlier_mlp()
    data = [{"x": np.random.default_rng(s).standard_normal((4, 16)).astype(np.float32)} for s in range(3)]
    cal = C.calibrate(m, data, method="minmax")
    ranked = layer_sensitivity(m, cal, data[:2])
    assert [e.name for e in ranked] == ["outlier", "plain"] and ranked[0].error > 10 * ranked[1].error
    same = output_errors({"y": np.eye(3, dtype=np.float32)}, {"y": np.eye(3, dtype=np.float32)})
    assert same[0].cosine == pytest.approx(1.0) and same[0].max_abs == 0 and same[0].top1 == 1.0
    # compile's keep_sensitive keeps the worst op in float
    engine = ember.compile(m, precision="int8", calibrator=data, calib_method="minmax", keep_sensitive=1,
                           targets=("sm_90",), cache_dir=kernel_cache)
    assert engine.info["quantization"]["kept"] == ["outlier"] and engine.info["quantization"]["quantized_inputs"] == 2


def test_compare_int8_per_layer_on_the_command_line(tmp_path: Path, capsys) -> None:
    onnx_conv_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(3).standard_normal((8, 3, 10, 10)).astype(np.float32))
    assert main(["compare", str(tmp_path / "m.onnx"), "--int8", "--per-layer", "--calib", str(tmp_path / "calib.npz"),
                 "--calib-batch", "4", "--calib-method", "minmax", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "int8 (2 inputs of heavy ops quantized, minmax calibration) against fp32" in out
    assert "ember.conv  conv" in out
    import json
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["layers"][0]["name"] == "conv" and 0 < report["outputs"][0]["cosine"] < 1
    assert main(["compare", str(tmp_path / "m.onnx"), "--per-layer"]) == 2
    assert "--per-layer goes with --int8 or --fp8" in capsys.readouterr().err


def test_calibrating_on_cuda_without_a_gpu_is_one_clear_error(kernel_cache: Path) -> None:
    from ember.runtime import cuda
    if cuda.available()[0]:
        pytest.skip("a GPU is here: calib_device='cuda' runs")
    with pytest.raises(BuildError, match="calib_device 'cuda': .*calibrate on 'cpu' or 'interpreter' instead"):
        ember.compile(conv_mlp(), precision="int8", calibrator=batches(), calib_device="cuda",
                      shapes={"x": (2, 3, 10, 10)}, cache_dir=kernel_cache, targets=("sm_90",))
