"""The builder and its command line: the compile report lists every host fallback (the
fixtures' lists are kept in expected_host_ops.json, so a new fallback fails here and on the
GPU), --strict refuses them all at once, --dump-cuda writes each kernel's source, the
example networks compile with NVRTC and run on the host arena, and `ember compile` then
`ember run` work on an engine file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ember
from ember.cli import main
from ember.errors import UnsupportedOpError
from ember.tolerance import assert_close

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))
EXPECTED_HOST_OPS = json.loads((Path(__file__).with_name("expected_host_ops.json")).read_text())


def test_the_expected_host_ops_list_every_fixture():
    detectors = ["yolov8_small", "yolov8_small_nms"]  # tests/fixtures/detectors: test_detectors.py checks them
    assert sorted(EXPECTED_HOST_OPS) == sorted(MODELS + detectors)


@pytest.mark.parametrize("name", MODELS)
def test_compile_report_lists_exactly_the_expected_host_fallbacks(built, name):
    report = built.engine(name).report
    assert [h.split(": ", 1)[0] for h in report.host_ops] == EXPECTED_HOST_OPS[name]
    summary = report.summary()
    if report.host_ops:
        assert f"host fallbacks ({len(report.host_ops)}):" in summary
        assert all(h in summary and h.split(": ", 1)[1] for h in report.host_ops)  # each with its reason
    else:
        assert "host fallbacks" not in summary
    host_steps = [s for s in built.engine(name).steps if s.kind == "host"]
    assert len(host_steps) == len(report.host_ops)


STRICT_IR = """func @main(%x: f32[12], %spectrum: f32[1,8,2]) -> (u: f32[?], y: f32[1,8,2], z: f32[12]) {
  %u, %first, %inverse, %counts = ember.unique %x : f32[?], i64[?], i64[12], i64[?]
  %y = ember.dft %spectrum {inverse = true} : f32[1,8,2]
  %z = ember.relu %x : f32[12]
  return %u, %y, %z
}
"""


def test_strict_lists_every_host_op_at_once(built):
    module = ember.ir.parse(STRICT_IR)
    with pytest.raises(UnsupportedOpError) as info:
        ember.compile(module, strict=True, cache_dir=built.cache_dir)
    message = str(info.value)
    assert message.splitlines()[0] == "--strict: 2 ops have no GPU kernel:"
    assert [line.strip().split(": ", 1)[0] for line in message.splitlines()[1:]] == ["ember.unique @ ?",
                                                                                     "ember.dft @ ?"]
    # A model with no fallbacks builds under --strict.
    module = ember.load(FIXTURES / "resnet50_small.onnx")
    engine = ember.compile(module, shapes={"image": (2, 3, 64, 64)}, strict=True, cache_dir=built.cache_dir)
    assert engine.report.host_ops == []


@pytest.mark.parametrize("example", ["cnn_block", "attention_block"])
def test_the_example_networks_compile_and_run_on_the_host_arena(built, example):
    from ember.ir import examples
    module = getattr(examples, example)()
    rng = np.random.default_rng(1)
    name = module.main.input_names[0]
    shape = (3, 3, 32, 32) if example == "cnn_block" else (3, 5, 32)
    feeds = {name: rng.standard_normal(shape).astype(np.float32)}
    engine = ember.compile(module, shapes={name: shape}, cache_dir=built.cache_dir)
    assert engine.kernels and engine.report.host_ops == []
    want = ember.interpret(module, feeds)
    got = engine.run(feeds, device="cpu")
    for k in want:
        assert_close(np.asarray(got[k]), np.asarray(want[k]), what=f"{example}:{k}")


def test_cli_compile_dump_cuda_then_run_the_engine(built, tmp_path, capsys):
    built.engine("resnet50_small")  # its kernels are cached then, whatever ran before: "NVRTC: 0 compiled" below
    engine_path, dump = tmp_path / "resnet.engine", tmp_path / "cuda"
    model = FIXTURES / "resnet50_small.onnx"
    assert main(["compile", str(model), "-o", str(engine_path), "--shapes", "image:2x3x64x64",
                 "--dump-cuda", str(dump), "--cache-dir", str(built.cache_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{model} -> {engine_path} (fp32, sm_80, sm_90)" in out and "NVRTC: 0 compiled" in out
    engine = ember.Engine.load(engine_path)
    sources = sorted(dump.glob("*.cu"))
    assert sorted(p.stem for p in sources) == sorted(engine.kernels)
    for path in sources:
        text = path.read_text()
        assert text.startswith("// ops: ") and f" {path.stem}(" in text  # the ops, then the kernel
        assert text.split("\n", 1)[1] == engine.kernels[path.stem].source
    # --random takes the shapes the engine was built for; --device cpu says where it runs.
    out_path = tmp_path / "out.npz"
    assert main(["run", str(engine_path), "--random", "--device", "cpu", "-o", str(out_path)]) == 0
    captured = capsys.readouterr()
    assert "host arena" in captured.err and len(captured.err.strip().splitlines()) == 1
    with np.load(out_path) as data:
        assert data["logits"].shape == (2, 10) and np.isfinite(data["logits"]).all()
    # The same run from input files gives what the interpreter gives on the model.
    image = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    assert main(["run", str(engine_path), "-i", f"image={tmp_path / 'image.npy'}", "--device", "cpu",
                 "-o", str(out_path)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["run", str(engine_path), "-i", f"image={tmp_path / 'image.npy'}", "--device", "cpu",
                 "-o", str(out_path), "--force"]) == 0
    want = ember.interpret(ember.load(model), {"image": image})["logits"]
    with np.load(out_path) as data:
        assert_close(data["logits"], np.asarray(want), what="resnet50_small logits")


def test_cli_compile_refuses_to_overwrite_the_model(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes((FIXTURES / "resnet50_small.onnx").read_bytes())
    assert main(["compile", str(model), "-o", str(model)]) != 0
    assert "is the model itself" in capsys.readouterr().err
    assert model.read_bytes() == (FIXTURES / "resnet50_small.onnx").read_bytes()


@pytest.mark.parametrize("name", ["resnet50_small", "bert_small"])
def test_fp16_engines_keep_every_op_on_the_gpu_and_meet_the_fp16_rule(built, name):
    """convert-precision runs before fusion, so kernels read and write f16 and no fused op
    falls back to the host; the outputs keep their f32 type."""
    from ember.tolerance import TOLERANCES, compare
    feeds = built.feeds(name)
    engine = ember.compile(ember.load(FIXTURES / f"{name}.onnx"), precision="fp16",
                           shapes={k: v.shape for k, v in feeds.items()}, cache_dir=built.cache_dir)
    assert engine.report.host_ops == [], engine.report.summary()
    pipeline = engine.report.pipeline
    assert pipeline.index("convert-precision") < pipeline.index("fuse-epilogue")
    assert any("__half" in k.source for k in engine.kernels.values())
    got = engine.run(feeds, device="cpu")
    rtol, atol = TOLERANCES["float16"]
    for k, want in built.expected(name).items():
        assert got[k].dtype == want.dtype
        c = compare(np.asarray(got[k]), want, rtol=rtol, atol=atol)
        assert c, f"{name}:{k}: {c.message}"
