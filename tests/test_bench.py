"""`ember bench` (issue 13): latency percentiles, GPU time, host overhead, throughput and the
engine's tactics, for an engine or a model built first. On the CPU the host arena runs the loop
(the plumbing and the report); on the GPU (`-m gpu`) CUDA events time the kernels."""

from __future__ import annotations

import json

import pytest

from ember.cli import main

STATS = ("min", "median", "p90", "p99", "max")


@pytest.fixture(scope="module")
def built(cnn_block_engine):
    """The README's CNN block as .ir and as an engine for N in 1..4 (OPT 2) (tests/conftest.py)."""
    return cnn_block_engine


def report_of(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def check_report(r: dict, iterations: int, batch: int) -> None:
    for key in ("latency", "gpu"):
        values = [r[key][s] for s in STATS]
        assert values == sorted(values) and values[0] > 0, (key, values)
        assert r[key]["min"] <= r[key]["mean"] <= r[key]["max"]
    assert r["iterations"] == iterations
    assert r["throughput_qps"] == pytest.approx(1000.0 / r["latency"]["mean"])
    assert r["samples_per_s"] == pytest.approx(batch * r["throughput_qps"])
    assert r["host_overhead_ms"] == pytest.approx(max(r["latency"]["median"] - r["gpu"]["median"], 0.0))
    assert r["first_run_ms"] > 0
    assert sum(r["tactics"].values()) <= r["launches"]


def test_bench_an_engine_on_the_host_arena_at_a_shape_in_its_profile(built, capsys):
    _, engine = built
    r = report_of(capsys, ["bench", str(engine), "--device", "cpu", "--iterations", "7", "--warmup", "1",
                           "--shapes", "image:3x3x32x32", "--json", "-"])
    assert r["device"] == "host arena" and r["shapes"] == {"image": [3, 3, 32, 32]}
    assert r["build_s"] is None and r["launches"] == 5 and r["host_steps"] == 0
    check_report(r, 7, 3)


def test_bench_builds_a_model_and_times_it_at_opt(built, kernel_cache, capsys):
    model, _ = built
    r = report_of(capsys, ["bench", str(model), "--device", "cpu", "--iterations", "3", "--warmup", "0",
                           "--target", "sm_80", "--cache-dir", str(kernel_cache),
                           "--profile", "image:1x3x32x32:2x3x32x32:4x3x32x32", "--json", "-"])
    assert r["shapes"] == {"image": [2, 3, 32, 32]} and r["build_s"] > 0 and r["precision"] == "fp32"
    check_report(r, 3, 2)


def test_json_to_a_file_and_never_over_one_without_force(built, tmp_path, capsys):
    _, engine = built
    out = tmp_path / "bench.json"
    assert main(["bench", str(engine), "--device", "cpu", "--iterations", "2", "--warmup", "0", "--json", str(out)]) == 0
    check_report(json.loads(out.read_text()), 2, 2)
    out.write_text("mine")
    assert main(["bench", str(engine), "--device", "cpu", "--iterations", "2", "--json", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "mine"


def test_layer_times_cover_every_launch_and_feed_inspect(built, tmp_path, capsys):
    from ember.ir.program import LaunchStep
    from ember.runtime import Engine
    _, engine = built
    out = tmp_path / "layers.json"
    assert main(["bench", str(engine), "--device", "cpu", "--iterations", "3", "--warmup", "0",
                 "--layer-times", "--layer-times-json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "layer times (3 runs" in table
    data = json.loads(out.read_text())
    launches = [(t, s.kernel) for t, s in enumerate(Engine.load(engine).steps) if isinstance(s, LaunchStep)]
    assert sorted((r["step"], r["kernel"]) for r in data["steps"]) == launches
    assert set(data["kernels"]) == {k for _, k in launches} and all(ms > 0 for ms in data["kernels"].values())
    assert sum(r["share"] for r in data["steps"]) == pytest.approx(1.0)
    assert [r["ms"] for r in data["steps"]] == sorted((r["ms"] for r in data["steps"]), reverse=True)
    assert all(r["bytes"] > 0 and r["ops"] for r in data["steps"])
    # what inspect reads to colour its picture
    assert main(["inspect", str(engine), "--layer-times", str(out), "--json", "-"]) == 0
    assert capsys.readouterr().out.strip().startswith("{")


def test_the_table_names_every_figure(built, capsys):
    _, engine = built
    assert main(["bench", str(engine), "--device", "cpu", "--iterations", "2", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    for words in ("latency: min", "GPU time:", "host overhead:", "throughput:", "first run:", "launches",
                  "not a GPU figure"):
        assert words in out, (words, out)


@pytest.mark.parametrize("argv, message", [
    (["--iterations", "0"], "at least one timed run"),
    (["--warmup", "-1"], "warm-up 0 or more"),
    (["--fp16"], "is an engine: --profile, --fp16 and --bf16 are build options"),
    (["--shapes", "image:9x3x32x32"], "image"),
])
def test_bad_options_are_one_clear_error(built, capsys, argv, message):
    _, engine = built
    assert main(["bench", str(engine), "--device", "cpu", *argv]) == 2
    assert message in capsys.readouterr().err


def test_shapes_and_profile_together_are_refused(built, capsys):
    model, _ = built
    assert main(["bench", str(model), "--shapes", "image:1x3x32x32", "--profile",
                 "image:1x3x32x32:2x3x32x32:4x3x32x32"]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.gpu
def test_bench_on_the_gpu_times_kernels_with_events(built, capsys):
    from ember.runtime import cuda
    if not cuda.available()[0]:
        pytest.fail(f"no CUDA GPU: {cuda.available()[1]}")
    _, engine = built
    r = report_of(capsys, ["bench", str(engine), "--device", "cuda", "--iterations", "50", "--warmup", "5",
                           "--layer-times", "--json", "-"])
    assert r["device"].startswith("cuda:0")
    check_report(r, 50, 2)
    assert r["layer_runs"] == 20 and len(r["layers"]) == r["launches"]
    assert all(row["ms"] > 0 for row in r["layers"])
    # Events bracket only what the stream ran: never more than the wall clock around the same runs.
    assert r["gpu"]["median"] <= r["latency"]["median"] * 1.05


# -- FLOPs of heavy ops (the roofline figures of benchmarks/gpu_models.py) -------------------------
def test_heavy_op_flops_by_hand():
    import numpy as np
    from ember.bench import model_flops
    from ember.ir.builder import Builder
    from ember.ir.types import f32
    b = Builder("flops")
    x = b.input("x", f32["N", 3, 8, 8])
    w = b.weight("w", np.ones((16, 3, 3, 3), np.float32))
    y = b.relu(b.conv(x, w, None, pads=(1, 1, 1, 1)))                        # 2 * N*16*8*8 * 27
    flat = b.reshape(y, shape=["N", 1024])
    z = b.matmul(flat, b.weight("m", np.ones((1024, 10), np.float32)))          # 2 * N*10 * 1024
    g = b.gemm(b.input("a", f32[5, 7]), b.weight("g", np.ones((7, 6), np.float32)), trans_a=False)  # 2*5*6*7
    q = b.input("q", f32["N", 2, 9, 4])
    att = b.attention(q, q, q)[0]                                             # 2 * N*2*9*9*(4+4)
    e = b.einsum(q, q, equation="bhid,bhjd->bhij")                            # 2 * N*2*9*9*4
    for name, v in (("z", z), ("g", g), ("att", att), ("e", e)):
        b.output(name, v)
    module = b.build()
    n = 3
    want = 2 * n * 16 * 64 * 27 + 2 * n * 10 * 1024 + 2 * 5 * 6 * 7 + 2 * n * 2 * 81 * 8 + 2 * n * 2 * 81 * 4
    assert model_flops(module, {"N": n}) == want
    from ember.passes.manager import PassManager
    PassManager("default").run(module)   # inside fused regions too
    assert model_flops(module, {"N": n}) == want


def test_int8_op_flops_count_as_their_float_ops():
    import numpy as np
    from ember.bench import model_flops
    from ember.ir.builder import Builder
    from ember.ir.types import i8
    b = Builder("int8_flops")
    x = b.input("x", i8["N", 8, 8, 3])
    s = b.constant(np.float32(0.1))
    y = b.int8_conv(x, b.weight("w", np.ones((16, 3, 3, 3), np.int8)), s, s, None, None, s, pads=(1, 1, 1, 1),
                    layout="NHWC", weight_layout="OHWI")                                      # 2 * N*64*16 * 27
    z = b.int8_matmul(b.reshape(y, shape=["N", 1024]), b.weight("m", np.ones((10, 1024), np.int8)), s, s)  # 2*N*10*1024
    b.output("z", z)
    assert model_flops(b.build(), {"N": 3}) == 2 * 3 * 64 * 16 * 27 + 2 * 3 * 10 * 1024


def test_the_roofline_figures_scale_with_the_batch(built):
    """An engine's FLOPs and launch traffic at two shapes of its profile: FLOPs linear in the batch
    (every heavy op is per sample), bytes the layer table's total, growing with the batch."""
    import ember
    from ember.bench import layer_table, model_flops, roofline
    _, path = built
    engine = ember.Engine.load(path)
    one, four = (roofline(engine, {"image": (n, 3, 32, 32)}) for n in (1, 4))
    assert one["flops"] > 0 and four["flops"] == 4 * one["flops"]
    assert four["flops"] == model_flops(engine.module, {"N": 4})
    steps = {t: 1.0 for t, s in enumerate(engine.steps) if s.kind == "launch"}
    assert one["bytes"] == sum(r["bytes"] for r in layer_table(engine, {"image": (1, 3, 32, 32)}, steps))
    assert four["bytes"] > one["bytes"]


# -- benchmarks/gpu_models.py's variants (Ember with EMBER_FLAGS beside the main column) -----------
def _gpu_models():
    import importlib.util
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_models", root / "benchmarks" / "gpu_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_variants_get_their_own_table_and_the_switches_come_back(monkeypatch):
    import ember.codegen.ops.heavy as heavy
    from ember.codegen import flags
    gm = _gpu_models()
    monkeypatch.delenv(flags.ENV, raising=False)
    with gm.ember_flags("--split-k --mma-dynamic-stages=4"):
        import os
        assert os.environ[flags.ENV] == "--split-k --mma-dynamic-stages=4"
        flags.apply(os.environ[flags.ENV])  # what ember.compile does
        assert heavy.SPLIT_K and heavy.MMA_DYNAMIC_STAGES == 4
    assert not heavy.SPLIT_K and heavy.MMA_DYNAMIC_STAGES == 0 and flags.ENV not in os.environ
    timed = {"median_ms": 2.0}
    row = {"batch": 1, "ember": timed, "torch_eager": {"median_ms": 3.0}, "torch_compile": {"median_ms": 2.5},
           "compile_over_ember": 1.25, "eager_over_ember": 1.5, "check": {"ok": True}, "host_ops": 0, "build_s": 9.0,
           "variants": {"split": {"flags": "--split-k", "ember": {"median_ms": 1.25}, "compile_over_ember": 2.0,
                                  "check": {"ok": False, "max_abs_diff": 0.5, "bound": 0.01}, "launches": 90,
                                  "build_s": 3.0}}}
    text = "\n".join(gm.markdown({"date": "2026-12-07", "device": "test", "models": [{"model": "bert", "rows": [row]}]}))
    assert "| bert | 1 | split | `--split-k` | 1.250 | 2.00 | off (0.5 > 0.01) | 90 | 3.0 |" in text
