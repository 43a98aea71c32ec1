"""Tactic selection by timing (tune.py, issue 13): the op taken out alone, the fastest candidate
kept, the timing cache (round trip, reuse only where device, problem, tactic and kernel all
match, refusal of a malformed file) and a build whose timings are all cached giving the same
engine byte for byte. On the CPU the GPU's timings are stood in for (the device key and the
measurement are replaced); `-m gpu` times real kernels."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ember
import ember.build
import ember.passes
import ember.tune as tune
from ember.cli import main
from ember.codegen.lower import lower
from ember.ir.builder import Builder
from ember.ir.interpret import interpret
from ember.ir.program import LaunchStep
from ember.ir.types import f16, f32

DEVICE = "Stand-in GPU|sm_90|sms=132|driver=13000|nvrtc=13.0"


def model():
    """Two f16 products (one with a bias and relu epilogue): two ops with tactics to choose."""
    b = Builder("two")
    x = b.input("x", f16[("N", 96)])
    w1 = b.weight("w1", np.random.default_rng(0).uniform(-1, 1, (96, 64)).astype(np.float16))
    w2 = b.weight("w2", np.random.default_rng(1).uniform(-1, 1, (64, 40)).astype(np.float16))
    bias = b.weight("bias", np.random.default_rng(2).uniform(-1, 1, (64,)).astype(np.float16))
    h = b.relu(b.add(b.matmul(x, w1), bias))
    b.output("y", b.matmul(h, w2))
    module = b.build()
    ember.passes.run_pipeline(module, "default")
    return module


def slowest_first(engine, feeds, runs):
    """A stand-in measurement: the heuristic's order reversed (its last candidate is fastest)."""
    (step,) = [s for s in engine.steps if isinstance(s, LaunchStep) and s.tactic]
    return 1.0 + list(reversed(step.candidates)).index(step.tactic)


def never(engine, feeds, runs):
    raise AssertionError("a cached timing was measured again")


@pytest.fixture()
def stand_in_gpu(monkeypatch):
    """As on a machine with a GPU: tactics are timed (by `slowest_first`)."""
    from ember.runtime import cuda
    monkeypatch.setattr(cuda, "device_info", lambda index=0: {"arch": "sm_90", "driver": 13000,
                                                              "name": "Stand-in GPU", "index": index})
    monkeypatch.setattr(tune, "device_key", lambda index=0: DEVICE)
    monkeypatch.setattr(tune, "measure_on_gpu", slowest_first)


def test_an_op_alone_computes_what_it_computed_in_the_model():
    module = model()
    ops = module.main.body.ops
    first = next(i for i, op in enumerate(ops) if op.name == "ember.fused")
    alone = tune.extract(module, first)
    assert [op.name for op in alone.main.body.ops] == ["ember.fused"]
    x = np.random.default_rng(3).uniform(-1, 1, (5, 96)).astype(np.float16)
    feeds = {}
    for name, v in zip(alone.main.input_names, ops[first].operands):
        owner = v.owner
        feeds[name] = x if owner is module.main.body else np.asarray(module.weights[owner.attributes["name"]].data)
    (h,) = interpret(alone, feeds).values()
    w2 = np.asarray(module.weights["w2"].data).astype(np.float32)
    want = interpret(module, {"x": x})["y"].astype(np.float32)
    np.testing.assert_allclose((h.astype(np.float32) @ w2).astype(np.float16).astype(np.float32), want,
                               rtol=2e-2, atol=2e-2)


def test_the_fastest_candidate_is_kept_and_the_cache_reused(kernel_cache):
    module = model()
    cache = tune.TimingCache()
    first = tune.tune(module, {"N": 7}, opt_level=2, targets=("sm_90",), cache=cache, device=DEVICE,
                      cache_dir=kernel_cache, measure=slowest_first)
    program = lower(module, {"N": 7})
    steps = {s.ops[0]: s for s in program.spec().steps if isinstance(s, LaunchStep) and len(s.candidates) > 1}
    assert first.ops == len(steps) == 2 and first.timed == 6 and first.cached == 0
    for index, s in steps.items():
        assert first.picks[index] == s.candidates[2]   # of the 3 timed at opt level 2, the last is fastest
    again = tune.tune(module, {"N": 7}, opt_level=2, targets=("sm_90",), cache=cache, device=DEVICE,
                      cache_dir=kernel_cache, measure=never)
    assert again.picks == first.picks and again.timed == 0 and again.cached == 6
    # another device, or another shape: timed again
    other = tune.tune(module, {"N": 9}, opt_level=1, targets=("sm_90",), cache=cache, device=DEVICE,
                      cache_dir=kernel_cache, measure=slowest_first)
    assert other.timed == 4


def twins():
    """Two identical f16 layers (same shapes, other weights): one tuning problem."""
    b = Builder("twins")
    h = b.input("x", f16[("N", 96)])
    for k in range(2):
        w = b.weight(f"w{k}", np.random.default_rng(k).uniform(-1, 1, (96, 96)).astype(np.float16))
        h = b.relu(b.matmul(h, w, loc=f"layer{k}/matmul"), loc=f"layer{k}/relu")
    b.output("y", h)
    module = b.build()
    ember.passes.run_pipeline(module, "default")
    return module


def test_identical_layers_are_one_problem_built_and_timed_once(kernel_cache, monkeypatch):
    built = []
    real = ember.build.compile
    monkeypatch.setattr(ember.build, "compile", lambda *a, **k: built.append(k.get("tactics")) or real(*a, **k))
    report = tune.tune(twins(), {"N": 7}, opt_level=2, targets=("sm_90",), cache=tune.TimingCache(), device=DEVICE,
                       cache_dir=kernel_cache, measure=slowest_first)
    assert report.ops == 2 and report.timed == 3 and report.cached == 3 and len(built) == 3
    assert len(set(report.picks.values())) == 1
    # and in an engine the two layers are one kernel (named by its code, not its comments), listing both
    engine = ember.compile(twins(), shapes={"x": (7, 96)}, targets=("sm_90",), cache_dir=kernel_cache, opt_level=0)
    launches = [s for s in engine.steps if isinstance(s, LaunchStep)]
    assert len(launches) == 2 and len(engine.kernels) == 1 and launches[0].kernel == launches[1].kernel
    assert len(engine.kernels[launches[0].kernel].ops) == 2


def test_candidates_are_built_for_the_newest_target_the_gpu_runs(stand_in_gpu, kernel_cache, monkeypatch):
    targets = []
    real = tune.tune
    monkeypatch.setattr(tune, "tune", lambda *a, **k: targets.append(tuple(k["targets"])) or real(*a, **k))
    monkeypatch.setattr(tune, "measure_on_gpu", slowest_first)
    ember.compile(model(), shapes={"x": (7, 96)}, targets=("sm_80", "sm_90"), cache_dir=kernel_cache, opt_level=1)
    assert targets == [("sm_90",)]


def test_ops_the_build_forces_are_not_timed(kernel_cache):
    module = model()
    steps = [s for s in lower(module, {"N": 7}).spec().steps if isinstance(s, LaunchStep) and len(s.candidates) > 1]
    report = tune.tune(module, {"N": 7}, opt_level=2, targets=("sm_90",), cache=tune.TimingCache(), device=DEVICE,
                       cache_dir=kernel_cache, measure=slowest_first, forced={steps[0].ops[0]: steps[0].tactic})
    assert report.ops == 1 and steps[0].ops[0] not in report.picks and report.timed == 3


def test_opt_level_zero_times_nothing(kernel_cache):
    report = tune.tune(model(), {"N": 7}, opt_level=0, targets=("sm_90",), cache=tune.TimingCache(),
                       device=DEVICE, cache_dir=kernel_cache, measure=never)
    assert report.picks == {} and report.timed == 0


def test_a_kernel_that_changed_is_timed_again(kernel_cache):
    module = model()
    cache = tune.TimingCache()
    tune.tune(module, {"N": 7}, opt_level=1, targets=("sm_90",), cache=cache, device=DEVICE,
              cache_dir=kernel_cache, measure=slowest_first)
    for problems in cache.entries.values():
        for tactics in problems.values():
            for entry in tactics.values():
                entry["kernel"] = "0" * 32
    report = tune.tune(module, {"N": 7}, opt_level=1, targets=("sm_90",), cache=cache, device=DEVICE,
                       cache_dir=kernel_cache, measure=slowest_first)
    assert report.cached == 0 and report.timed == 4


def test_a_build_with_its_timings_cached_is_byte_identical(stand_in_gpu, kernel_cache, tmp_path, monkeypatch):
    path = tmp_path / "timing.json"
    one = ember.compile(model(), shapes={"x": (7, 96)}, targets=("sm_90",), cache_dir=kernel_cache,
                        opt_level=2, timing_cache=path)
    saved = json.loads(path.read_text())
    assert saved["format"] == 1 and len(saved["entries"][DEVICE]) == 2
    chosen = [s.tactic for s in one.steps if isinstance(s, LaunchStep) and s.tactic]
    heuristic = [s.candidates[0] for s in one.steps if isinstance(s, LaunchStep) and s.tactic]
    assert chosen != heuristic and all(c.startswith("tile") for c in chosen), chosen
    monkeypatch.setattr(tune, "measure_on_gpu", never)
    two = ember.compile(model(), shapes={"x": (7, 96)}, targets=("sm_90",), cache_dir=kernel_cache,
                        opt_level=2, timing_cache=path)
    a, b = tmp_path / "a.engine", tmp_path / "b.engine"
    one.save(a)
    two.save(b)
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(path.read_text()) == saved
    # and the engine still computes the model
    x = np.random.default_rng(4).uniform(-1, 1, (7, 96)).astype(np.float16)
    ref = interpret(model(), {"x": x})["y"]
    got = two.run({"x": x}, device="cpu")["y"]
    np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), rtol=1e-2, atol=1e-2)


def test_without_a_gpu_the_heuristic_picks(kernel_cache, tmp_path, monkeypatch):
    from ember.runtime import cuda
    monkeypatch.setattr(cuda, "device_info", lambda index=0: None)
    monkeypatch.setattr(tune, "measure_on_gpu", never)
    engine = ember.compile(model(), shapes={"x": (7, 96)}, targets=("sm_90",), cache_dir=kernel_cache,
                           opt_level=5, timing_cache=tmp_path / "t.json")
    assert all(s.tactic == s.candidates[0] for s in engine.steps if isinstance(s, LaunchStep) and s.tactic)
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("text, message", [("{", "not a timing cache"), ('{"format": 9, "entries": {}}', "format 1"),
                                           ('{"format": 1, "entries": {"d": {"p": {"t": {"ms": -1, "kernel": "k"}}}}}',
                                            "malformed")])
def test_a_malformed_timing_cache_is_one_clear_error(stand_in_gpu, tmp_path, capsys, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    model().save(tmp_path / "m.ir")
    assert main(["compile", str(tmp_path / "m.ir"), "-o", str(tmp_path / "m.engine"), "--shapes", "x:7x96",
                 "--timing-cache", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert path.read_text() == text and not (tmp_path / "m.engine").exists()


def test_opt_level_is_checked():
    with pytest.raises(ember.EmberError, match="opt_level 9"):
        ember.compile(model(), shapes={"x": (7, 96)}, opt_level=9)


@pytest.mark.gpu
def test_tactics_timed_on_the_gpu(kernel_cache, tmp_path):
    from ember.runtime import cuda
    if not cuda.available()[0]:
        pytest.fail(f"no CUDA GPU: {cuda.available()[1]}")
    path = tmp_path / "timing.json"
    module = model()
    one = ember.compile(module, shapes={"x": (300, 96)}, cache_dir=kernel_cache, opt_level=2, timing_cache=path)
    entries = json.loads(path.read_text())["entries"]
    (device,) = entries
    assert cuda.device_info(0)["name"] in device
    assert len(entries[device]) == 2 and all(len(tactics) == 3 for tactics in entries[device].values())
    assert all(e["ms"] > 0 for p in entries[device].values() for e in p.values())
    two = ember.compile(module, shapes={"x": (300, 96)}, cache_dir=kernel_cache, opt_level=2, timing_cache=path)
    a, b = tmp_path / "a.engine", tmp_path / "b.engine"
    one.save(a)
    two.save(b)
    assert a.read_bytes() == b.read_bytes()
    x = np.random.default_rng().uniform(-1, 1, (300, 96)).astype(np.float16)
    ref = interpret(module, {"x": x})["y"]
    from ember.tolerance import assert_close
    assert_close(np.asarray(two.run({"x": x}, device="cuda")["y"]), ref)


def test_identical_layers_are_one_problem_timed_once(kernel_cache):
    """Two products of the same shapes at different places (other names, other locations): the
    second one's timings come from the first's."""
    rng = np.random.default_rng(5)
    b = Builder("twins")
    x = b.input("x", f16[("N", 64)])
    h = b.relu(b.matmul(x, b.weight("w1", rng.uniform(-1, 1, (64, 64)).astype(np.float16))))
    b.output("y", b.relu(b.matmul(h, b.weight("w2", rng.uniform(-1, 1, (64, 64)).astype(np.float16)))))
    module = b.build()
    ember.passes.run_pipeline(module, "default")
    report = tune.tune(module, {"N": 40}, opt_level=2, targets=("sm_90",), cache=tune.TimingCache(), device=DEVICE,
                       cache_dir=kernel_cache, measure=slowest_first)
    assert report.ops == 2 and report.timed == 3 and report.cached == 3
    assert len(set(report.picks.values())) == 1


def test_canonical_text_drops_locations_and_names():
    a = '%"/a/b" = ember.relu %x_1 : f16[4] loc("/a/b", "/c")\n'
    b = '%y = ember.relu %in0 : f16[4] loc("/other")\n'
    assert tune.canonical_op(a) == tune.canonical_op(b) == "%v0 = ember.relu %v1 : f16[4]\n"
