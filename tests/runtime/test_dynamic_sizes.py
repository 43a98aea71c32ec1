"""Data-dependent sizes (NonZero, NMS, ranges over computed bounds) on the host arena.

Only the ops whose sizes are truly data stay host steps; the ops after them are kernels
sized at run time over the *run-time symbols* those steps bind (codegen/lower.py,
runtime/binding.py `RunSizes`). A range whose bounds are computed on the device gets a
size step (its three scalars read back) and a kernel. Each engine here is saved and
loaded back (its run-time sizes checked as a stored program is), run against the
interpreter by the project's tolerance rule, and no kernel is compiled after the build.
The `gpu`-marked tests at the end run the same engines on runtime/cuda.py (`pytest -m gpu`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engine_forgery import forge

import ember
from ember.ir.parser import parse
from ember.runtime import Engine, EngineFormatError, cuda
from ember.tolerance import compare

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
SSD = "ssdlite_small"
SSD_PROFILE = {"images": ((1, 3, 64, 64), (1, 3, 96, 80), (1, 3, 128, 128))}  # as test_profiles.PROFILES
# What stays on the host: the detections NonZero finds, TopK (its k is the count of them,
# capped, read from data), the ConstantOfShape of that count (no kernel yet) and the If around
# NMS. The Slice of the If's result (min(count, 20) long, which its type rule cannot state over
# a run-time size) gets a size step that runs the type rule on the run's shapes, and a kernel.
SSD_HOST_OPS: list[str] = []  # NonZero, TopK with a run-time k, ConstantOfShape, NMS: size steps; the If: branch steps

RANGE_IR = """func @main(%start: {t}[], %n: {t}[], %delta: {t}[]) -> (y: {t}[?]) {{
  %one = ember.constant {{value = dense<{t}[]: 1>}} : {t}[]
  %limit = ember.add %n, %one : {t}[]
  %r = ember.range %start, %limit, %delta : {t}[?]
  %y = ember.mul %r, %r : {t}[?]
  return %y
}}
"""
# (start, n, delta): the range is start, start + delta, ... below n + 1
RANGES = {"i64": [(0, 9, 1), (10, -1, -3), (5, 4, 1), (0, 0, 1), (-4, 6, 2), (3, 2, 1), (7, 100, 7)],
          "f32": [(0.5, 2.0, 0.25), (2.0, -2.0, -0.5), (1.0, 0.0, 1.0), (0.0, 3.0, 0.3)]}

NONZERO_IR = """func @main(%x: f32[8]) -> (y: f32[?<=8], n: i64[1]) {
  %zero = ember.constant {value = dense<f32[]: 0.0>} : f32[]
  %two = ember.constant {value = dense<f32[]: 2.0>} : f32[]
  %m = ember.greater %x, %zero : bool[8]
  %i = ember.nonzero %m : i64[1,?<=8]
  %t = ember.transpose %i {perm = [1, 0]} : i64[?<=8,1]
  %g = ember.gather_nd %x, %t : f32[?<=8]
  %y = ember.mul %g, %two : f32[?<=8]
  %n = ember.shape %y : i64[1]
  return %y, %n
}
"""
NONZERO_INPUTS = {"none": [-1.0] * 8, "one": [-1, -2, 3, -4, -5, -6, -7, -8], "some": [1, -2, 3, -4, 5, 0, 7, -8],
                  "all": [1, 2, 3, 4, 5, 6, 7, 8]}


def saved_and_loaded(engine: Engine, path: Path) -> Engine:
    engine.save(path)
    return Engine.load(path)


def host_ops(engine: Engine) -> list[str]:
    ops = engine.ops
    return [f"{ops[s.ops[0]].name} @ {ops[s.ops[0]].loc}" for s in engine.steps if s.kind == "host"]


def check(engine: Engine, module, feeds, what: str, device: str = "cpu", rtol: dict[str, float] | None = None
          ) -> object:
    ctx = engine.create_context(device)
    got = ctx.run(feeds)
    want = ember.interpret(module, feeds)
    for name, ref in want.items():
        verdict = compare(np.asarray(got[name]), np.asarray(ref), **({"rtol": rtol[name]} if rtol and name in rtol else {}))
        assert verdict, f"{what}: {name}: {verdict.message}"
    return ctx


@pytest.fixture(scope="module")
def ssd_fixed(built, tmp_path_factory) -> tuple:
    """SSDlite: the module and the fixture's fixed-shape engine (320x320), saved and loaded back."""
    module = ember.load(FIXTURES / f"{SSD}.onnx")
    return module, saved_and_loaded(built.engine(SSD), tmp_path_factory.mktemp("dynamic") / "fixed.engine")


@pytest.fixture(scope="module")
def ssd_profile(built, tmp_path_factory) -> tuple:
    """SSDlite built for a profile (64..128 a side): the module, the engine saved and loaded back,
    and the engine as built (with its report)."""
    module = ember.load(FIXTURES / f"{SSD}.onnx")
    engine = ember.compile(module, profiles=[SSD_PROFILE], cache_dir=built.cache_dir)
    return module, saved_and_loaded(engine, tmp_path_factory.mktemp("dynamic") / "profile.engine"), engine


def test_ssdlite_keeps_only_its_data_dependent_ops_on_the_host(ssd_fixed, ssd_profile):
    (_, fixed), (_, loaded, built_profile) = ssd_fixed, ssd_profile
    assert host_ops(fixed) == SSD_HOST_OPS
    assert host_ops(loaded) == SSD_HOST_OPS and loaded.is_dynamic
    assert [h.split(": ", 1)[0] for h in built_profile.report.host_ops] == SSD_HOST_OPS
    for engine in (fixed, loaded):
        # each host step with a data-dependent result binds a run-time symbol; kernels after them use it
        binds = [b.symbol for s in engine.steps if s.kind not in ("launch", "branch", "yield") for b in s.binds]
        assert len(binds) == len(set(binds)) >= 6
        yields = [s for s in engine.steps if s.kind == "yield"]  # the If's two branches bind its result's size
        assert len(yields) == 2 and yields[0].binds == yields[1].binds and yields[0].binds
        sized = [s for s in engine.steps if s.kind == "launch"
                 and not all(isinstance(x, int) for x in [*s.grid, *(v for a in s.args for v in a.sizes)])]
        assert len(sized) >= 20, "the gathers, concats and elementwise ops after NonZero are kernels"
        assert any(v.kind == "dynamic" for v in engine.values)
        ops = engine.ops
        size_steps = [s for s in engine.steps if s.kind == "size"]
        # ConstantOfShape of a top-k's Shape is sized by the top-k's symbol: no step of its own;
        # the NMS (inside the If's else branch) and the NonZeros read back their counts, not their inputs
        assert [(ops[s.ops[0]].name, ops[s.ops[0]].loc.names[0], s.source) for s in size_steps] == [
            ("ember.head", "/model/NonZero", "data"), ("ember.topk", "/model/TopK", "data"),
            ("ember.head", "/model/NonZero_2", "data"), ("ember.topk", "/model/TopK_1", "data"),
            ("ember.head", "NonMaxSuppression_1917", "data"), ("ember.slice", "/model/Slice_6", "shapes")]
        for i in (0, 2, 4):
            (count,) = size_steps[i].reads
            assert engine.values[count].shape == () and engine.values[count].dtype == "i64"
        # a top-k's size step reads its k back (one i64), not the scores it ranks
        for s in size_steps:
            if ops[s.ops[0]].name == "ember.topk":
                (k,) = s.reads
                assert engine.values[k].shape in ((), (1,)) and engine.values[k].dtype == "i64"


def test_ssdlite_at_fixed_shape_matches_the_interpreter_as_the_detections_vary(ssd_fixed, built, no_compiler):
    module, fixed = ssd_fixed
    no_compiler()
    kernels = dict(fixed.kernels)
    counts = set()
    shape = built.feeds(SSD)["images"].shape
    rng = np.random.default_rng(3)
    for amplitude in (1.0, 1e3, 1e5):  # larger inputs push more scores under the threshold
        feeds = {"images": (rng.standard_normal(shape) * amplitude).astype(np.float32)}
        ctx = check(fixed, module, feeds, f"{shape} x{amplitude}")
        counts.add((ctx.run_symbols["_rt0"], ctx.run_symbols["_rt2"]))
    assert len(counts) == 3, f"the inputs should give NonZero different counts: {counts}"
    assert fixed.kernels == kernels


@pytest.mark.parametrize("hw, amplitude", [((64, 64), 1e3), ((96, 80), 1.0), ((128, 128), 1e5), ((72, 120), 1e4)])
def test_ssdlite_with_a_profile_matches_the_interpreter(ssd_profile, no_compiler, hw, amplitude):
    module, loaded, _ = ssd_profile
    no_compiler()
    feeds = {"images": (np.random.default_rng(hw[0]).standard_normal((1, 3, *hw)) * amplitude).astype(np.float32)}
    ctx = check(loaded, module, feeds, f"{hw} x{amplitude}")
    assert 0 < ctx.run_symbols["_rt0"] <= 3234 and ctx.fallbacks == 0


@pytest.fixture(scope="module")
def range_engines(built, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ranges")
    out = {}
    for t in RANGES:
        module = parse(RANGE_IR.format(t=t))
        engine = ember.compile(module, shapes={"start": (), "n": (), "delta": ()}, cache_dir=built.cache_dir)
        out[t] = (module, saved_and_loaded(engine, tmp / f"range-{t}.engine"), engine)
    return out


@pytest.mark.parametrize("t", sorted(RANGES))
def test_a_range_over_computed_bounds_is_a_size_step_and_kernels(range_engines, no_compiler, t):
    module, engine, built_engine = range_engines[t]
    no_compiler()
    assert built_engine.report.host_ops == [] and host_ops(engine) == []
    kinds = [s.kind for s in engine.steps]
    assert kinds.count("size") == 1 and kinds.count("host") == 0
    size = kinds.index("size")
    assert [engine.module.main.body.ops[s.ops[0]].name for s in engine.steps[size + 1:]] == \
        ["ember.range", "ember.mul"]
    np_type = np.int64 if t == "i64" else np.float32
    for start, n, delta in RANGES[t]:
        feeds = {"start": np.array(start, np_type), "n": np.array(n, np_type), "delta": np.array(delta, np_type)}
        ctx = check(engine, module, feeds, f"range {start}, {n}+1, {delta}")
        length = len(np.arange(start, n + 1, delta))
        assert ctx.run_symbols == {"_rt0": length}
        assert ctx.fallbacks == (1 if length == 0 else 0) * 2  # empty: range and mul run on the host


def test_a_range_of_delta_zero_is_refused_as_the_interpreter_refuses_it(range_engines):
    _, engine, _ = range_engines["i64"]
    feeds = {"start": np.array(0), "n": np.array(5), "delta": np.array(0)}
    with pytest.raises(ember.errors.EmberError, match="range delta is 0"):
        engine.run(feeds, device="cpu")


def test_a_run_time_size_past_the_limits_is_refused_when_it_is_reached(range_engines, tmp_path):
    _, engine, _ = range_engines["i64"]

    def huge_grid(s):
        step = next(x for x in s["plan"]["program"]["steps"] if x["kind"] == "launch" and
                    any(isinstance(g, str) for g in x["grid"]))
        step["grid"][0] = "_rt0*4294967296"
    path = tmp_path / "forged.engine"
    path.write_bytes(forge(engine.to_bytes(), huge_grid))
    forged = Engine.load(path)  # loads: the size is an expression over a symbol a step binds
    feeds = {"start": np.array(0), "n": np.array(9), "delta": np.array(1)}
    with pytest.raises(EngineFormatError, match=r"section 'plan': program.steps\[\d+\].grid\[0\]: grid dim "
                                                r"42949672960 is outside"):
        forged.run(feeds, device="cpu")


@pytest.fixture(scope="module")
def nonzero_engine(built, tmp_path_factory) -> tuple:
    module = parse(NONZERO_IR)
    engine = ember.compile(module, shapes={"x": (8,)}, cache_dir=built.cache_dir)
    return module, saved_and_loaded(engine, tmp_path_factory.mktemp("nonzero") / "nonzero.engine")


def test_kernels_after_nonzero_see_every_count_from_none_to_all(nonzero_engine, no_compiler):
    module, engine = nonzero_engine
    no_compiler()
    assert host_ops(engine) == []   # the nonzero: one kernel (padded, with its count), a size step reading the count
    for name, x in NONZERO_INPUTS.items():
        feeds = {"x": np.array(x, np.float32)}
        ctx = check(engine, module, feeds, name)
        count = int((feeds["x"] > 0).sum())
        assert ctx.run_symbols == {"_rt0": count}
        got = ctx.run(feeds)
        assert got["y"].shape == (count,) and got["n"].tolist() == [count]
    # decisions on the count the kernels took at build time (a count of 1 drops the axis
    # of the transpose, a count of 0 launches nothing) send those ops to the host then
    assert engine.create_context("cpu").run({"x": np.array(NONZERO_INPUTS["some"], np.float32)})
    ctx = engine.create_context("cpu")
    ctx.run({"x": np.array(NONZERO_INPUTS["none"], np.float32)})
    assert ctx.fallbacks > 0


# -- the same on the GPU (runtime/cuda.py) ---------------------------------------------------------------
def on_both(engine: Engine, module, feeds, what: str, same_sizes: bool = True,
            rtol: dict[str, float] | None = None) -> object:
    """Run on the GPU (twice: the static stretches replayed as CUDA graphs) and on the host arena;
    both match the interpreter (`rtol`: a looser bound for named outputs) and (`same_sizes`: where
    no float rounding decides a count) bind the same run-time sizes and fall back on the same ops."""
    rtol = rtol or {}
    host = check(engine, module, feeds, f"{what} (host arena)", rtol=rtol)
    ctx = engine.create_context("cuda")
    want = ember.interpret(module, feeds)
    for attempt in range(2):
        got = ctx.run(feeds)
        for name, ref in want.items():
            verdict = compare(np.asarray(got[name]), np.asarray(ref), **({"rtol": rtol[name]} if name in rtol else {}))
            assert verdict, f"{what} (cuda, run {attempt}): {name}: {verdict.message}"
        if same_sizes:
            assert ctx.run_symbols == host.run_symbols and ctx.fallbacks == host.fallbacks
    return ctx


@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available()[0], reason=f"no CUDA GPU: {cuda.available()[1]}")
@pytest.mark.parametrize("which", ["fixed", "profile"])
@pytest.mark.parametrize("amplitude", [1.0, 1e4])
def test_ssdlite_on_cuda_matches_the_interpreter(request, built, no_compiler, which, amplitude):
    module, engine = request.getfixturevalue(f"ssd_{which}")[:2]
    no_compiler()
    shapes = [built.feeds(SSD)["images"].shape] if which == "fixed" else [(1, 3, 64, 64), (1, 3, 128, 96)]
    for shape in shapes:
        feeds = {"images": (np.random.default_rng(7).standard_normal(shape) * amplitude).astype(np.float32)}
        # (a score a rounding away from the threshold could count differently from the interpreter's).
        # At x1e4 the decoded boxes magnify float32 rounding: numpy's own mean (global average
        # pools) sums in another order over a strided view than over a contiguous array, and that
        # alone moves the host arena's boxes (the same reference ops) by 3e-4 of their range. The
        # boxes are held to 1e-3 there; scores and labels to the rule.
        loose = {"boxes": 1e-3} if amplitude != 1.0 else {}
        ctx = on_both(engine, module, feeds, f"{which} {shape} x{amplitude}", same_sizes=False, rtol=loose)
        assert ctx.fallbacks == 0 and ctx.captures > 0 and ctx.graph_launches > 0


@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available()[0], reason=f"no CUDA GPU: {cuda.available()[1]}")
@pytest.mark.parametrize("t", sorted(RANGES))
def test_a_range_over_computed_bounds_on_cuda(range_engines, no_compiler, t):
    module, engine, _ = range_engines[t]
    no_compiler()
    np_type = np.int64 if t == "i64" else np.float32
    for start, n, delta in RANGES[t]:
        feeds = {"start": np.array(start, np_type), "n": np.array(n, np_type), "delta": np.array(delta, np_type)}
        on_both(engine, module, feeds, f"range {start}, {n}+1, {delta}")


@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available()[0], reason=f"no CUDA GPU: {cuda.available()[1]}")
def test_kernels_after_nonzero_on_cuda(nonzero_engine, no_compiler):
    module, engine = nonzero_engine
    no_compiler()
    for name, x in NONZERO_INPUTS.items():
        on_both(engine, module, {"x": np.array(x, np.float32)}, name)
