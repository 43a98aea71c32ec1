"""Refit (issue 14): new weights into an engine without rebuilding, by the engine's own weight
names (`engine.refit`), by a source name the build only converted to fp16, or from the model with
new weights (`refit_from_model`, `ember refit`): the engine's passes rerun, so ResNet's batch
norms folded into fp16 convolutions refit too, bit for bit as a rebuild. On the host arena."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ember
from ember.build import BuildError, refit_from_model
from ember.cli import main
from ember.ir.builder import Builder
from ember.ir.types import f32
from ember.runtime import Engine
from ember.runtime.specs import EngineInputError

FIXTURES = Path(__file__).parent / "fixtures" / "onnx"


def scaled(path: Path, seed: int = 0):
    """The model with every float initializer scaled by a random factor per element."""
    module = ember.load(path)
    rng = np.random.default_rng(seed)
    changed = 0
    for w in module.weights.values():
        if w.data is not None and w.data.dtype.kind == "f":
            w.data = (w.data * rng.uniform(0.5, 1.5, size=w.data.shape)).astype(w.data.dtype)
            changed += 1
    return module, changed


@pytest.fixture(scope="module")
def resnet(kernel_cache):
    path = FIXTURES / "resnet50_small.onnx"
    feeds = dict(np.load(FIXTURES / "resnet50_small.inputs.npz"))
    shapes = {k: v.shape for k, v in feeds.items()}
    engine = ember.compile(ember.load(path), precision="fp16", shapes=shapes, cache_dir=kernel_cache)
    return path, feeds, shapes, engine


def test_resnet_fp16_refits_from_the_model_bit_for_bit_as_a_rebuild(resnet, kernel_cache, tmp_path):
    path, feeds, shapes, engine = resnet
    new, changed = scaled(path)
    assert changed >= 20 and engine.info["precision"] == "fp16"   # every float initializer
    # its batch norms are folded into the convs: those weights have no source name in the engine
    assert any(n not in engine.weights and f"{n}/f16" not in engine.weights for n in new.weights)
    refit = refit_from_model(engine, new)
    rebuilt = ember.compile(new, precision="fp16", shapes=shapes, cache_dir=kernel_cache)
    before, after, want = (e.run(feeds, device="cpu") for e in (engine, refit, rebuilt))
    for k in want:
        assert np.array_equal(after[k], want[k]) and not np.array_equal(before[k], want[k])
    refit.save(tmp_path / "refit.engine")
    rebuilt.save(tmp_path / "rebuilt.engine")
    assert (tmp_path / "refit.engine").read_bytes() == (tmp_path / "rebuilt.engine").read_bytes()
    assert engine.run(feeds, device="cpu")["logits"].tobytes() == before["logits"].tobytes()  # untouched


def linear(w: np.ndarray, c: np.ndarray):
    b = Builder("linear")
    x = b.input("x", f32[(2, 8)])
    b.output("y", b.add(b.matmul(x, b.weight("w", w)), b.weight("c", c)))
    return b.build()


def test_refit_by_name_and_by_converted_source_name(kernel_cache):
    rng = np.random.default_rng(1)
    w, c = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    w2, c2 = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    x = {"x": rng.standard_normal((2, 8)).astype(np.float32)}
    for precision in ("fp32", "fp16"):
        engine = ember.compile(linear(w, c), precision=precision, cache_dir=kernel_cache)
        refit = engine.refit({"w": w2, "c": c2})
        rebuilt = ember.compile(linear(w2, c2), precision=precision, cache_dir=kernel_cache)
        assert np.array_equal(refit.run(x, device="cpu")["y"], rebuilt.run(x, device="cpu")["y"]), precision


@pytest.mark.parametrize("weights, message", [
    ({"nope": np.zeros(3, np.float32)}, "'nope': not a weight of this engine's optimized graph"),
    ({"w": np.zeros((4, 8), np.float32)}, "shape [4, 8], the engine's weight 'w' is [8, 4]"),
    ({"w": np.zeros((8, 4), np.float64)}, "dtype float64, the engine's weight 'w' is float32"),
])
def test_refit_refuses_what_does_not_fit_naming_it(kernel_cache, weights, message):
    engine = ember.compile(linear(np.ones((8, 4), np.float32), np.ones(4, np.float32)), cache_dir=kernel_cache)
    with pytest.raises(EngineInputError, match="refit: .*" + message.replace("[", r"\[").replace("]", r"\]")):
        engine.refit({**weights, "c": np.zeros(4, np.float32)})


def test_another_model_is_refused(resnet):
    _, _, _, engine = resnet
    with pytest.raises(BuildError, match="optimized graph is not the engine's"):
        refit_from_model(engine, ember.load(FIXTURES / "mobilenet_v2_small.onnx"))


def test_ember_refit_cli(resnet, tmp_path, capsys):
    path, feeds, _, engine = resnet
    engine_path = tmp_path / "r.engine"
    engine.save(engine_path)
    new, _ = scaled(path, seed=2)
    new_path = tmp_path / "new.ir"
    new.save(new_path)
    out = tmp_path / "out.engine"
    assert main(["refit", str(engine_path), "--weights", str(new_path), "-o", str(out)]) == 0
    assert "refit with the weights of" in capsys.readouterr().out
    want = refit_from_model(engine, new).run(feeds, device="cpu")
    got = Engine.load(out).run(feeds, device="cpu")
    assert all(np.array_equal(got[k], want[k]) for k in want)
    # never over a file without --force; -o or --in-place, one of them
    assert main(["refit", str(engine_path), "--weights", str(new_path), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["refit", str(engine_path), "--weights", str(new_path)]) == 2
    assert "-o OUT.engine, or --in-place" in capsys.readouterr().err
    before = engine_path.read_bytes()
    # an .npz by the engine's names; a bad one changes nothing
    name = next(n for n in engine.weights if engine.weights[n].ndim == 4)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{name: np.zeros((1, 1), engine.weights[name].dtype)})
    assert main(["refit", str(engine_path), "--weights", str(bad), "--in-place"]) == 2
    assert "shape [1, 1]" in capsys.readouterr().err and engine_path.read_bytes() == before
    good = tmp_path / "good.npz"
    np.savez(good, **{name: np.zeros_like(engine.weights[name])})
    assert main(["refit", str(engine_path), "--weights", str(good), "--in-place"]) == 0
    assert engine_path.read_bytes() != before
    assert not np.any(Engine.load(engine_path).weights[name])
