"""Shared test setup.

Hypothesis profiles: `default` keeps CI quick; run
`pytest --hypothesis-profile=long tests/ir/test_properties.py` for a deep fuzz.

Parallel runs (scripts/test.sh runs `pytest -n auto`, pytest-xdist): session fixtures
are per worker process, so the costly ones keep their output in a folder every
process of the run shares (tests/support/shared_run.py), under a file lock: the NVRTC
kernel cache (`kernel_cache` below: a kernel is compiled once per run, by whichever
worker needs it first), the fixtures' engines (tests/runtime/conftest.py) and
TensorFlow's SavedModels (tests/frontends/savedmodel/conftest.py). Which worker runs
which test does not matter, only how often the work is done.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from shared_run import run_folder

settings.register_profile("default", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile("default")

# The GPU tests (scripts/gpu_check.sh sets EMBER_POISON_ARENA=1) fill every CUDA arena with
# NaN bytes before each run, so an output element a kernel leaves unwritten cannot pass.
# The environment is read here, at the edge; the runtime itself reads none.
if os.environ.get("EMBER_POISON_ARENA", "") not in ("", "0"):
    from ember.runtime.engine import Engine

    Engine.poison_arena = True

# Tests build many small engines: with the library's default opt level, each would time its
# heavy ops' tactics where there is a GPU. The tests take the heuristic's picks unless they
# ask for timing (tests/test_tune.py); the benchmarks keep the default.
import ember.build  # noqa: E402

ember.build.DEFAULT_OPT_LEVEL = 0


@pytest.fixture(scope="session")
def kernel_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The NVRTC cache of this run, shared by its xdist workers and cold at its start.

    Safe to share: the compiler stores an entry as a temporary file renamed into
    place, so two processes that compile the same kernel leave one whole entry."""
    path = run_folder(request.config, tmp_path_factory) / "kernel-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def cnn_block_engine(kernel_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The README's CNN block as .ir and as an engine for N in 1..4 (OPT 2), built once per run
    (per xdist worker) for the tool tests (inspect, bench)."""
    from ember.cli import main
    from ember.ir.examples import cnn_block
    folder = tmp_path_factory.mktemp("cnn_block")
    model = folder / "cnn.ir"
    cnn_block().save(model)
    engine = folder / "cnn.engine"
    assert main(["-q", "compile", str(model), "-o", str(engine), "--target", "sm_80", "--cache-dir",
                 str(kernel_cache), "--profile", "image:1x3x32x32:2x3x32x32:4x3x32x32"]) == 0
    return model, engine


# The ONNX backend suite's pass counts per group, from the test reports (the controller
# sees every worker's reports; the test modules' own state stays in the workers).
SUITE_TEST = "tests/frontends/onnx/test_backend_suite.py::test_case["
SUITE_COUNTS: dict[str, Counter] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if SUITE_TEST not in report.nodeid or (report.when != "call" and report.passed):
        return
    group = report.nodeid.split("[", 1)[1].split("/", 1)[0]
    if hasattr(report, "wasxfail"):
        status = "expected failure"
    elif report.skipped:
        status = "excluded"
    else:
        status = "pass" if report.passed else "fail"
    SUITE_COUNTS.setdefault(group, Counter())[status] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001, ARG001
    if not SUITE_COUNTS:
        return
    terminalreporter.write_sep("=", "ONNX backend suite on Ember (onnx 1.23 test cases)")
    for group, counts in SUITE_COUNTS.items():
        line = f"{group}: {counts['pass']}/{sum(counts.values())} pass"
        extra = ", ".join(f"{counts[k]} {k}" for k in ("expected failure", "excluded", "fail") if counts[k])
        terminalreporter.write_line(line + (f" ({extra})" if extra else ""))
