"""The frontend needs no TensorFlow: with TensorFlow made unimportable, a SavedModel still
loads and runs (in a fresh interpreter), and no module of the package imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import ember

SCRIPT = r"""
import importlib.abc, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} is blocked for this test")
        return None
sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
import ember
from ember.ir.interpret import interpret
data = np.load(sys.argv[2])
module = ember.load(sys.argv[1], signature="scores")
out = interpret(module, {"features": data["features"], "prior": data["prior"]})
np.savez(sys.argv[3], **out)
assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules), "TensorFlow was imported"
print("loaded without tensorflow")
"""


def test_loads_and_runs_with_tensorflow_blocked(saved_models: Any, tmp_path: Path) -> None:
    from ember.tolerance import assert_close
    import numpy as np
    path, reference = saved_models["two_signatures"]
    feeds, expected = reference["scores"]
    np.savez(tmp_path / "in.npz", **feeds)
    args = [sys.executable, "-c", SCRIPT, str(path), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded without tensorflow" in proc.stdout
    out = np.load(tmp_path / "out.npz")
    for name, ref in expected.items():
        assert_close(out[name], ref, what=name)


def test_no_module_imports_tensorflow() -> None:
    root = Path(ember.__file__).parent
    offenders = []
    for file in root.rglob("*.py"):
        if any(part in ("tests", "build", "benchmarks", "scripts") or part.startswith(".") for part in
               file.relative_to(root).parts):
            continue
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] in ("tensorflow", "keras") for n in names):
                offenders.append(str(file.relative_to(root)))
    assert not offenders
