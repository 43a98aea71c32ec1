"""`ember compare` against ONNX Runtime, and `--bisect`: a wrong kernel planted twice (an op's
reference, and a fused elementwise group's evaluation), named by the bisection at its layer;
a plugin model ONNX Runtime cannot run, judged against Ember's interpreter (on the GPU, a
plugin whose CUDA body is wrong); fp16 overflow named where it appears; usage errors in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from plugin_models import scaled_tanh_feeds, scaled_tanh_model

from ember.cli import main
from ember.ir.ops.core import Fused
from ember.ir.opdef import REGISTRY

pytest.importorskip("onnxruntime")

FIXTURES = Path(__file__).parent / "fixtures" / "onnx"


def save(tmp_path: Path, nodes: list, inputs: list, outputs: list, inits: list = (), name: str = "m") -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    # IR 10 (onnx 1.16's), not the installed onnx's newest: the device's onnxruntime 1.30 reads up to 13
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def elementwise_then_pool(tmp_path: Path) -> Path:
    """mul1 -> add1 -> tanh1 (one fused elementwise group in the engine) -> pool1 (MaxPool) -> relu1."""
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Mul", ["x", "z"], ["m"], name="mul1"),
             helper.make_node("Add", ["m", "half"], ["a"], name="add1"),
             helper.make_node("Tanh", ["a"], ["t"], name="tanh1"),
             helper.make_node("MaxPool", ["t"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["p"], ["y"], name="relu1")]
    return save(tmp_path, nodes, [helper.make_tensor_value_info("x", f, [1, 4, 8, 8]),
                                  helper.make_tensor_value_info("z", f, [1, 4, 8, 8])],
                [helper.make_tensor_value_info("y", f, [1, 4, 4, 4])],
                [numpy_helper.from_array(np.array(0.5, np.float32), "half")])


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def plant(monkeypatch: pytest.MonkeyPatch, op: str, delta: float) -> None:
    """Op `op`'s reference (what the interpreter and the host arena run) made wrong by `delta`."""
    cls = REGISTRY[op]
    right = cls.reference

    def wrong(*args, **kwargs):
        out = right(*args, **kwargs)
        return (out + np.asarray(delta, out.dtype)).astype(out.dtype)
    monkeypatch.setattr(cls, "reference", staticmethod(wrong))


def plant_in_fused_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fused elementwise groups evaluated wrong (the engine's kernel); the unfused ops stay right."""
    right = Fused.reference

    def wrong(inputs, *, kind, body):
        out = right(inputs, kind=kind, body=body)
        if kind != "elementwise":
            return out
        return tuple(tuple((o + np.asarray(0.25, o.dtype)).astype(o.dtype) for o in outs) for outs in out)
    monkeypatch.setattr(Fused, "reference", staticmethod(wrong))


def test_a_right_model_exits_0_with_figures_in_json(tmp_path, capsys, kernel_cache):
    model = elementwise_then_pool(tmp_path)
    code, out, _ = run(capsys, model, "--device", "cpu", "--json", tmp_path / "r.json", "--cache-dir", kernel_cache)
    assert code == 0, out
    assert "interpreter" in out and "engine (host arena)" in out and "ok: 2 outputs within tolerance" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ok"] is True and data["device"] == "cpu" and data["precision"] == "fp32"
    assert [(o["run"], o["output"], o["ok"]) for o in data["outputs"]] == [
        ("interpreter", "y", True), ("engine (host arena)", "y", True)]
    o = data["outputs"][1]
    assert o["max_abs"] <= o["bound"] and o["cosine"] > 0.9999 and (o["rtol"], o["atol"]) == (1e-4, 1e-5)


def test_a_broken_plugin_is_named_by_bisect(tmp_path, capsys, monkeypatch, kernel_cache):
    model = elementwise_then_pool(tmp_path)
    plant(monkeypatch, "ember.max_pool", 1.0)
    code, out, _ = run(capsys, model, "--device", "cpu", "--cache-dir", kernel_cache)
    assert code == 1 and "MISMATCH: 2 of 2 outputs" in out and "--bisect" in out
    code, out, _ = run(capsys, model, "--device", "cpu", "--bisect", "--json", tmp_path / "r.json",
                       "--cache-dir", kernel_cache)
    assert code == 1
    assert "interpreter: first divergence at ONNX node 'pool1' (MaxPool, tensor 'p')" in out
    assert "engine (host arena): first divergence at ONNX node 'pool1' (MaxPool, tensor 'p')" in out
    divergences = json.loads((tmp_path / "r.json").read_text())["bisect"]["divergences"]
    assert [(d["run"], d["onnx_node"], d["op"]) for d in divergences] == [
        ("interpreter", "pool1", "ember.max_pool"), ("engine (host arena)", "pool1", "ember.max_pool")]
    assert all(abs(d["max_abs"] - 1.0) < 1e-6 and not d["overflow"] for d in divergences)
    assert divergences[0]["checked"] == 3  # m, a, t matched before it
    # a looser tolerance lets it through
    assert run(capsys, model, "--device", "cpu", "--atol", "1.5", "--cache-dir", kernel_cache)[0] == 0


def test_a_wrong_fused_group_is_named_with_its_source_ops(tmp_path, capsys, monkeypatch, kernel_cache):
    model = elementwise_then_pool(tmp_path)
    plant_in_fused_group(monkeypatch)
    code, out, _ = run(capsys, model, "--device", "cpu", "--bisect", "--json", tmp_path / "r.json",
                       "--cache-dir", kernel_cache)
    assert code == 1
    data = json.loads((tmp_path / "r.json").read_text())
    assert [(o["run"], o["ok"]) for o in data["outputs"]] == [("interpreter", True), ("engine (host arena)", False)]
    (d,) = data["bisect"]["divergences"]
    assert (d["run"], d["op"], d["kind"], d["onnx_node"], d["tensor"]) == (
        "engine (host arena)", "ember.fused", "elementwise", "tanh1", "t")
    assert d["sources"] == ["mul1 (ember.mul)", "add1 (ember.add)", "tanh1 (ember.tanh)"]
    assert abs(d["max_abs"] - 0.25) < 1e-6
    assert ("engine (host arena): first divergence at ONNX node 'tanh1' (Tanh, tensor 't'), Ember fused "
            "elementwise group") in out
    assert "of 3 ops: mul1 (ember.mul), add1 (ember.add), tanh1 (ember.tanh)" in out


def test_fp16_overflow_is_named_where_it_appears(tmp_path, capsys, kernel_cache):
    f = TensorProto.FLOAT
    w = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)
    nodes = [helper.make_node("Tanh", ["x"], ["t"], name="squash"),
             helper.make_node("MatMul", ["t", "w"], ["h"], name="fc1"),
             helper.make_node("Mul", ["h", "big"], ["b"], name="boost"),
             helper.make_node("Softmax", ["b"], ["s"], name="probs", axis=-1),
             helper.make_node("ReduceSum", ["b"], ["y"], name="total", keepdims=0)]
    model = save(tmp_path, nodes, [helper.make_tensor_value_info("x", f, [2, 8])],
                 [helper.make_tensor_value_info("s", f, [2, 8]), helper.make_tensor_value_info("y", f, [])],
                 [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(3e4, np.float32), "big")])
    assert run(capsys, model, "--device", "cpu", "--cache-dir", kernel_cache)[0] == 0
    code, out, _ = run(capsys, model, "--device", "cpu", "--fp16", "--bisect", "--json", tmp_path / "r.json",
                       "--cache-dir", kernel_cache)
    assert code == 1
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["precision"] == "fp16"
    (d,) = data["bisect"]["divergences"]
    assert d["overflow"] and d["onnx_node"] == "boost" and "inf at" in d["message"], d
    assert "fp16 overflow: inf at" in out


def test_given_inputs_seed_and_symbolic_shapes(tmp_path, capsys, kernel_cache):
    f = TensorProto.FLOAT
    model = save(tmp_path, [helper.make_node("Sigmoid", ["x"], ["y"], name="act")],
                 [helper.make_tensor_value_info("x", f, ["batch", 3])], [helper.make_tensor_value_info("y", f,
                                                                                                      ["batch", 3])],
                 name="sym")
    code, _, err = run(capsys, model, "--device", "cpu", "--cache-dir", kernel_cache)
    assert code == 2 and "--shapes" in err
    for seed in ("1", "1", "2"):
        assert run(capsys, model, "--shapes", "x:5x3", "--seed", seed, "--json", tmp_path / f"s{seed}.json",
                   "--force", "--cache-dir", kernel_cache)[0] == 0
    np.savez(tmp_path / "in.npz", x=np.full((2, 3), 40.0, np.float32))
    assert run(capsys, model, "--inputs", tmp_path / "in.npz", "--json", tmp_path / "given.json",
               "--cache-dir", kernel_cache)[0] == 0
    given = json.loads((tmp_path / "given.json").read_text())
    assert given["outputs"][0]["shape"] == [2, 3] and given["outputs"][0]["max_abs"] == 0.0


def test_a_realistic_model_and_a_planted_layer(capsys, monkeypatch, kernel_cache):
    model, inputs = FIXTURES / "resnet50_small.onnx", FIXTURES / "resnet50_small.inputs.npz"
    code, out, _ = run(capsys, model, "--inputs", inputs, "--device", "cpu", "--cache-dir", kernel_cache)
    assert code == 0, out
    plant(monkeypatch, "ember.global_avg_pool", 0.5)
    code, out, _ = run(capsys, model, "--inputs", inputs, "--device", "cpu", "--bisect", "--engine-only",
                       "--cache-dir", kernel_cache)
    assert code == 1
    assert "engine (host arena): first divergence at ONNX node '/GlobalAveragePool' (GlobalAveragePool" in out


@pytest.mark.parametrize("args, message", [
    (["{dir}/m.ir"], "takes an .onnx model"),
    (["{model}", "--inputs", "{dir}/nothing.npz"], "--inputs {dir}/nothing.npz: cannot read it"),
    (["{model}", "--inputs", "{dir}/bad.npz"], "--inputs {dir}/bad.npz: cannot read it"),
    (["{model}", "--inputs", "{dir}/extra.npz"], "input 'w': the model has no such input"),
    (["{model}", "--shapes", "x:1x4x8x8", "--inputs", "{dir}/x.npz"], "input 'x' is given by --inputs and by"),
    (["{model}", "--rtol", "-1"], "--rtol -1.0: must be a finite number >= 0"),
    (["{model}", "--json", "{dir}/existing.json"], "--json {dir}/existing.json: the file exists"),
    (["{model}", "--shapes", "x:1x4"], "--shapes x:1x4: the model's input is f32[1,4,8,8] (rank 4)"),
    (["{model}", "--shapes", "x:1x4x8x9"], "--shapes x:1x4x8x9: dim 3 is 8 in the model"),
    (["{model}", "--shapes", "x:1x4x8x8", "--inputs", "{dir}/z.npz"], "--inputs: input 'z' of shape [1, 4, 8, 7]: dim 3 is 8 in the model"),
    (["{model}", "--inputs", "{dir}/f64.npz"], "--inputs: input 'x' is float64; the model's input is f32[1,4,8,8]"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    model = elementwise_then_pool(tmp_path)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "extra.npz", w=np.zeros(3, np.float32))
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 4, 8, 8), np.float32))
    np.savez(tmp_path / "z.npz", z=np.zeros((1, 4, 8, 7), np.float32))
    np.savez(tmp_path / "f64.npz", x=np.zeros((1, 4, 8, 8)))
    (tmp_path / "existing.json").write_text("keep")
    args = [a.replace("{model}", str(model)).replace("{dir}", str(tmp_path)) for a in args]
    code, out, err = run(capsys, *args)
    assert code == 2, out + err
    assert err.startswith("ember compare: error: ") and message.replace("{dir}", str(tmp_path)) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (tmp_path / "existing.json").read_text() == "keep"


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, capsys):
    from ember.runtime import cuda
    if cuda.available()[0]:
        pytest.skip("there is a GPU here")
    code, _, err = run(capsys, elementwise_then_pool(tmp_path), "--device", "cuda")
    assert code == 2 and "--device cuda: no CUDA GPU here" in err


@pytest.mark.gpu
def test_the_gpu_engine_against_onnxruntime_and_bisect(tmp_path, capsys, monkeypatch, kernel_cache):
    model, inputs = FIXTURES / "resnet50_small.onnx", FIXTURES / "resnet50_small.inputs.npz"
    code, out, _ = run(capsys, model, "--inputs", inputs, "--device", "cuda", "--cache-dir", kernel_cache)
    assert code == 0 and "engine (GPU)" in out, out
    code, out, _ = run(capsys, model, "--inputs", inputs, "--device", "cuda", "--fp16", "--cache-dir", kernel_cache)
    assert code == 0, out
    # the interpreter's max_pool made wrong: the GPU kernel stays right, the bisection names the op
    small = elementwise_then_pool(tmp_path)
    plant(monkeypatch, "ember.max_pool", 1.0)
    code, out, err = run(capsys, small, "--device", "cuda", "--bisect", "--json", tmp_path / "r.json",
                         "--cache-dir", kernel_cache)
    assert code == 1 and (tmp_path / "r.json").exists(), out + err
    data = json.loads((tmp_path / "r.json").read_text())
    assert code == 1 and [(o["run"], o["ok"]) for o in data["outputs"]] == [
        ("interpreter", False), ("engine (GPU)", True)]
    assert [(d["run"], d["onnx_node"]) for d in data["bisect"]["divergences"]] == [("interpreter", "pool1")]


def test_the_readme_snippet_runs(tmp_path, capsys, monkeypatch, kernel_cache):
    """README's `ember compare` lines, as pasted at the repository root (here: a folder whose
    tests/ is the repository's, so what they write lands in tmp_path)."""
    import shlex
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Checking a model against ONNX Runtime", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("ember compare ")]
    assert len(lines) == 2
    (tmp_path / "tests").symlink_to(Path(__file__).parent)
    monkeypatch.chdir(tmp_path)
    for line in lines:
        argv = shlex.split(line)[1:]
        assert main([*argv, "--cache-dir", str(kernel_cache)]) == 0, capsys.readouterr()
    assert json.loads((tmp_path / "compare.json").read_text())["precision"] == "fp16"


PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin_scaled_tanh.py"


def plugin_model(tmp_path: Path, domain: str = "com.example") -> tuple[Path, Path]:
    model = scaled_tanh_model(tmp_path / "plugin.onnx", domain)
    inputs = tmp_path / "plugin.inputs.npz"
    np.savez(inputs, **scaled_tanh_feeds())
    return model, inputs


def test_a_plugin_model_onnxruntime_cannot_run_points_to_the_interpreter(tmp_path, capsys, kernel_cache):
    model, inputs = plugin_model(tmp_path)
    code, out, err = run(capsys, "--load", PLUGIN, model, "--inputs", inputs, "--device", "cpu",
                         "--cache-dir", kernel_cache)
    assert code == 2
    assert "ONNX Runtime failed on the model" in err and "(com.example)" in err
    assert "--reference interpreter judges the engine against Ember's interpreter" in err
    code, out, _ = run(capsys, "--load", PLUGIN, model, "--inputs", inputs, "--device", "cpu", "--reference",
                       "interpreter", "--json", tmp_path / "r.json", "--cache-dir", kernel_cache)
    assert code == 0, out
    assert "against Ember's interpreter" in out and "ok: 1 outputs within tolerance" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["reference"] == "interpreter"
    assert [(o["run"], o["ok"]) for o in data["outputs"]] == [("engine (host arena)", True)]


def test_a_wrong_group_around_a_plugin_is_bisected_against_the_interpreter(tmp_path, capsys, monkeypatch,
                                                                          kernel_cache):
    """On the host arena the plugin runs its own numpy reference, as the interpreter does, so the
    wrong kernel is planted in the fused group's evaluation (the GPU twin breaks the plugin's CUDA)."""
    model, inputs = plugin_model(tmp_path)
    plant_in_fused_group(monkeypatch)
    code, out, _ = run(capsys, "--load", PLUGIN, model, "--inputs", inputs, "--device", "cpu", "--reference",
                       "interpreter", "--bisect", "--json", tmp_path / "r.json", "--cache-dir", kernel_cache)
    assert code == 1, out
    (d,) = json.loads((tmp_path / "r.json").read_text())["bisect"]["divergences"]
    assert (d["run"], d["op"], d["kind"]) == ("engine (host arena)", "ember.fused", "elementwise")
    assert "st1 (example.scaled_tanh)" in d["sources"], d["sources"]
    assert d["onnx_node"] == "relu1" and d["checked"] == 0  # the group ends with relu1: its value is y


def test_the_interpreter_cannot_be_judged_against_itself(tmp_path, capsys):
    model, inputs = plugin_model(tmp_path)
    code, _, err = run(capsys, "--load", PLUGIN, model, "--inputs", inputs, "--reference", "interpreter",
                       "--interpreter-only")
    assert code == 2 and "judged against itself" in err


BROKEN_PLUGIN = """
import numpy as np
from ember.plugins import elementwise_op


@elementwise_op("broken.scaled_tanh", version="0.1", operands=("x", "s"),
                cuda="return tanh(x) * s + (T)0.5;", onnx=("com.broken", "ScaledTanh"))
def scaled_tanh(x, s):
    \"\"\"tanh(x) * s: the reference is right, the CUDA body adds 0.5.\"\"\"
    return np.tanh(x) * s
"""


@pytest.mark.gpu
def test_a_broken_plugin_kernel_is_named_by_bisect_on_the_gpu(tmp_path, capsys, kernel_cache):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text(BROKEN_PLUGIN)
    model, inputs = plugin_model(tmp_path, domain="com.broken")
    code, out, err = run(capsys, "--load", plugin, model, "--inputs", inputs, "--device", "cuda", "--reference",
                         "interpreter", "--bisect", "--json", tmp_path / "r.json", "--cache-dir", kernel_cache)
    assert code == 1, out + err
    data = json.loads((tmp_path / "r.json").read_text())
    assert [(o["run"], o["ok"]) for o in data["outputs"]] == [("engine (GPU)", False)]
    (d,) = data["bisect"]["divergences"]
    assert d["run"] == "engine (GPU)" and "st1 (broken.scaled_tanh)" in d["sources"], d
    assert abs(d["max_abs"] - 0.5) < 1e-3  # relu(t + 0.5) - relu(t) reaches 0.5 where t > 0
