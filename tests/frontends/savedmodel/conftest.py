"""SavedModels built once per test session with TensorFlow (a test-only extra), with
TensorFlow's own outputs for fixed random inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


def _builders() -> Any:
    spec = importlib.util.spec_from_file_location("ember_test_tf_models", HERE / "tf_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tf_models() -> Any:
    pytest.importorskip("tensorflow", reason="TensorFlow is the test extra that builds SavedModels")
    return _builders()


@pytest.fixture(scope="session")
def saved_models(tf_models: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """name -> (SavedModel folder, {signature: (inputs, TensorFlow's outputs)})."""
    root = tmp_path_factory.mktemp("savedmodels")
    return {name: (root / name, build(root / name)) for name, build in tf_models.BUILDERS.items()}
