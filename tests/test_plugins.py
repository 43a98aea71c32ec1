"""Plugins (issue 14, ember.plugins): a custom op from an ONNX node with a numpy reference and a
CUDA body, fused into Ember's kernels, recorded in the engine, and the engine loaded and inspected
in a fresh process that has not imported the plugin (its Python then refused by name)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from plugin_models import scaled_tanh_feeds, scaled_tanh_model

import ember
from ember.cli import _load_plugins, main
from ember.plugins import PluginError, elementwise_op

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin_scaled_tanh.py"


def model(path: Path) -> Path:
    return scaled_tanh_model(path)


def feeds() -> dict[str, np.ndarray]:
    return scaled_tanh_feeds()


def expected(f: dict[str, np.ndarray]) -> np.ndarray:
    return np.maximum(np.tanh(f["x"] * 2) * f["s"], 0)


@pytest.fixture(scope="module")
def built(tmp_path_factory, kernel_cache):
    _load_plugins([str(PLUGIN)])
    folder = tmp_path_factory.mktemp("plugins")
    onnx_path = model(folder / "m.onnx")
    engine = folder / "m.engine"
    assert main(["-q", "compile", str(onnx_path), "-o", str(engine), "--load", str(PLUGIN),
                 "--cache-dir", str(kernel_cache)]) == 0
    return onnx_path, engine


def test_the_plugin_op_imports_fuses_and_compiles(built):
    onnx_path, engine_path = built
    module = ember.load(onnx_path)
    assert [op.name for op in module.main.body.ops][1:] == ["ember.mul", "example.scaled_tanh", "ember.relu"]
    f = feeds()
    assert np.allclose(ember.interpret(module, f)["y"], expected(f), atol=1e-6)
    engine = ember.Engine.load(engine_path)
    assert engine.info["plugins"] == {"example.scaled_tanh": "1.0"}
    (kernel,) = engine.kernels.values()   # one fused elementwise kernel: mul, the plugin's body, relu
    assert "return tanh(x) * s;" in kernel.source and "ember.relu" in kernel.source
    assert np.allclose(engine.run(f, device="cpu")["y"], expected(f), atol=1e-6)


def test_a_fresh_process_loads_and_inspects_the_engine_without_the_plugin(built):
    _, engine_path = built
    script = f"""
import json, numpy as np, ember
e = ember.Engine.load({str(engine_path)!r})
out = {{"plugins": e.info["plugins"], "ops": [op.name for op in e.module.main.walk()]}}
try:
    e.run({{"x": np.zeros((2, 8), np.float32), "s": np.ones(8, np.float32)}}, device="cpu")
except Exception as err:
    out["error"] = str(err)
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["plugins"] == {"example.scaled_tanh": "1.0"} and "example.scaled_tanh" in out["ops"]
    assert "plugin (version 1.0) that this process has not imported" in out["error"]
    assert "--load" in out["error"]
    proc = subprocess.run([sys.executable, "-m", "ember", "inspect", str(engine_path)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0 and "plugins: example.scaled_tanh 1.0" in proc.stdout, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "ember", "run", str(engine_path), "--random", "--device", "cpu",
                           "--load", str(PLUGIN)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_without_the_plugin_the_onnx_node_is_named(tmp_path):
    path = model(tmp_path / "m.onnx")
    proc = subprocess.run([sys.executable, "-m", "ember", "compile", str(path), "-o", str(tmp_path / "m.engine")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "ScaledTanh" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize("kw, message", [
    ({"name": "Bad Name"}, "name it dialect.op"),
    ({"name": "ember.mine"}, "outside the ember dialect"),
    ({"operands": ("x", "x")}, "distinct C identifiers"),
    ({"cuda": "x * 2;"}, "returns the result"),
    ({"version": ""}, "give a version"),
    ({"onnx": ("only-domain",)}, "onnx=(domain, op type)"),
])
def test_bad_plugins_are_refused_naming_the_problem(kw, message):
    args = {"name": "test.bad", "version": "1", "cuda": "return x;", "operands": ("x",), **kw}
    name = args.pop("name")
    with pytest.raises(PluginError, match=message.replace("(", r"\(").replace(")", r"\)")):
        elementwise_op(name, **args)(lambda x: x)


def test_a_different_plugin_of_the_same_name_is_refused(built):
    with pytest.raises(PluginError, match="registered twice, differently"):
        elementwise_op("example.scaled_tanh", version="2.0", operands=("x", "s"), cuda="return x;")(lambda x, s: x)


@pytest.mark.gpu
def test_the_plugin_kernel_runs_on_the_gpu_without_the_plugin(built):
    _, engine_path = built
    script = f"""
import numpy as np, ember
e = ember.Engine.load({str(engine_path)!r})
rng = np.random.default_rng(0)
f = {{"x": rng.standard_normal((2, 8)).astype(np.float32), "s": np.linspace(0.5, 2.0, 8).astype(np.float32)}}
y = np.asarray(e.run(f, device="cuda")["y"])
assert np.allclose(y, np.maximum(np.tanh(f["x"] * 2) * f["s"], 0), atol=1e-5), y
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr
