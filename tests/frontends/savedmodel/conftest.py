"""SavedModels built once per test run with TensorFlow (a test-only extra), with
TensorFlow's own outputs for fixed random inputs."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Any

import pytest
from shared_run import file_lock, run_folder

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
def saved_models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, tuple[Path, Any]]:
    """name -> (SavedModel folder, {signature: (inputs, TensorFlow's outputs)}).

    Built once per run: the first xdist worker that asks builds them in the run's
    shared folder, the others wait for it and read them (tests copy a folder before
    damaging it), so TensorFlow is imported and run once."""
    root = run_folder(request.config, tmp_path_factory) / "savedmodels"
    done = root / "references.pickle"
    with file_lock(root.parent / "locks" / "savedmodels"):
        if not done.exists():
            tf_models = request.getfixturevalue("tf_models")  # skips the test without TensorFlow
            root.mkdir(exist_ok=True)
            references = {name: build(root / name) for name, build in tf_models.BUILDERS.items()}
            partial = root / "references.pickle.partial"
            partial.write_bytes(pickle.dumps(references))
            partial.replace(done)
        references = pickle.loads(done.read_bytes())
    return {name: (root / name, reference) for name, reference in references.items()}
