"""The fuzz suite's seeds, built once per session (budget.py says how many cases run).

The suite's modules (harness, mutate, seeds, targets, corpus, budget) sit beside
this file and are imported by name, so this folder goes on sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import budget  # noqa: E402,F401  (registers the fuzz-long profile before the plugin loads it)


@pytest.fixture(scope="session")
def case_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each case's folder is made (and removed after it)."""
    return tmp_path_factory.mktemp("fuzz-cases")


@pytest.fixture(scope="session")
def onnx_seeds() -> dict[str, bytes]:
    from seeds import onnx_seeds as build
    return build()


@pytest.fixture(scope="session")
def ir_seeds(onnx_seeds: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> dict:
    from seeds import ir_seeds as build
    return build(onnx_seeds, tmp_path_factory.mktemp("ir-seeds"))


@pytest.fixture(scope="session")
def savedmodel_seed() -> dict[str, bytes]:
    from seeds import savedmodel_seed as build
    return build()


@pytest.fixture(scope="session")
def engine_seeds(kernel_cache: Path) -> dict[str, bytes]:
    """Compiled into the run's NVRTC cache (tests/conftest.py: cold at the run's start, shared by its
    workers, so the runtime tests' synthetic engine and the tiny model compile once per run)."""
    from seeds import engine_seeds as build
    return build(kernel_cache)
