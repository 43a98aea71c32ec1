"""benchmarks/backend_gpu.py (the backend suite's node cases as GPU engines) on a few cases, here:
`--no-gpu` classifies by host steps, `--device cpu` runs the engines on the host arena and
compares by the tolerance rule, a wrong output is a failure that names the mismatch, and a
report compares with an earlier one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "backend_gpu.py"
CASES = "^test_(abs|cast_FLOAT_to_INT4|bitcast_bool_to_uint8)$"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("backend_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def test_no_gpu_classifies_by_host_steps(script, tmp_path: Path) -> None:
    script.main(["--no-gpu", "--no-nvrtc", "--jobs", "1", "--filter", CASES, "--out", str(tmp_path / "a")])
    report = read(tmp_path / "a")
    assert {c["name"]: c["status"] for c in report["cases"]} == {
        "test_abs": "gpu", "test_cast_FLOAT_to_INT4": "gpu", "test_bitcast_bool_to_uint8": "host"}
    assert report["causes"] == {"ember.bitcast: no kernel for this op yet": ["test_bitcast_bool_to_uint8"]}
    assert "| with host steps | 1 |" in (tmp_path / "a.md").read_text()
    # compared with an earlier report in which the cast had a host step
    earlier = dict(report, cases=[dict(c, status="host") if c["name"] == "test_cast_FLOAT_to_INT4" else c
                                  for c in report["cases"]])
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    script.main(["--no-gpu", "--no-nvrtc", "--jobs", "1", "--filter", CASES, "--out", str(tmp_path / "b"),
                 "--before", str(tmp_path / "earlier.json")])
    assert '1 cases went from "with host steps" to "no host step": test_cast_FLOAT_to_INT4.' in \
        (tmp_path / "b.md").read_text()


def test_engines_run_and_compare(script, tmp_path: Path, kernel_cache: Path) -> None:
    script.main(["--device", "cpu", "--jobs", "1", "--filter", "^test_abs$", "--cache-dir", str(kernel_cache),
                 "--out", str(tmp_path / "r")])
    (case,) = read(tmp_path / "r")["cases"]
    assert case["status"] == "gpu", case


def test_a_wrong_output_is_a_failure(script) -> None:
    f = np.float32
    assert script.compare_outputs(["y"], {"y": np.ones(3, f)}, [np.ones(3, f)]) == []
    (problem,) = script.compare_outputs(["y"], {"y": np.ones(3, f)}, [np.zeros(3, f)])
    assert problem.startswith("y: ")
    (problem,) = script.compare_outputs(["s"], {"s": [np.ones(2, f)]}, [[np.ones(2, f), np.ones(2, f)]])
    assert "sequence of 2" in problem
    assert script.compare_outputs(["t"], {"t": np.array(["a"], object)}, [np.array([b"a"])]) == []


def test_a_miss_of_rounded_stored_data_is_judged_by_onnx_reference(script, tmp_path: Path, kernel_cache: Path,
                                                                   monkeypatch) -> None:
    """The average-pool case's stored output is rounded to 4 decimals (0.3572 for 0.35722223):
    an engine that matches onnx.reference passes, noted; one that matches neither fails."""
    name = "test_averagepool_2d_ceil_last_window_starts_on_pad"
    script.main(["--device", "cpu", "--jobs", "1", "--filter", f"^{name}$", "--cache-dir", str(kernel_cache),
                 "--out", str(tmp_path / "r")])
    (case,) = read(tmp_path / "r")["cases"]
    assert case["status"] == "gpu" and case["stored_data_differs"][0].startswith("y: max |diff| 5.558"), case
    assert "## Passed against onnx.reference, not the stored outputs" in (tmp_path / "r.md").read_text()
    off = script.reference_problems(name, ["y"], [{"y": np.full((1, 3, 1, 1), 0.3, np.float32)}])
    assert len(off) == 1 and off[0].startswith("y: ")


def test_runs_survive_crashes_hangs_and_sticky_errors(script, monkeypatch) -> None:
    """Each run process is forked; one that dies, hangs past the case timeout or meets a CUDA error
    that spoils its context is replaced, and the cases after it still run."""
    import os
    import time

    def fake(name, built, cache_dir, device):
        if name == "crash":
            os._exit(3)
        if name == "hang":
            time.sleep(60)
        if name == "sticky":
            return dict(built, status="error", error="CudaError: cuStreamSynchronize: CUDA_ERROR_ILLEGAL_ADDRESS")
        return dict(built, status="gpu")

    monkeypatch.setattr(script, "run_case", fake)
    names = ["a", "crash", "b", "hang", "c", "sticky", "d"]
    out = script.run_all(names, {n: {"name": n} for n in names}, None, "cpu", time.perf_counter() + 60, 1.0)
    assert {n: r["status"] for n, r in out.items()} == {
        "a": "gpu", "crash": "error", "b": "gpu", "hang": "error", "c": "gpu", "sticky": "error", "d": "gpu"}
    assert "died (exit status 3)" in out["crash"]["error"] and "timed out" in out["hang"]["error"]
