"""Optimization profiles: one engine for a range of shapes (issue 12), on the host arena.

For every committed fixture with a symbolic dim, one engine is built with a profile
and run at its MIN, OPT and MAX and at hypothesis-drawn shapes in between, each
against the interpreter at that shape by the project's tolerance rule; no kernel is
compiled after the build (the compiler is made to fail if called) and the engine's
kernels stay the ones it was built with. Shapes outside are refused before any step
runs, naming the input, its shape and the profiles.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ember
from ember.build import BuildError
from ember.ir.interpret import interpret
from ember.ir.program import Arg, Program
from ember.runtime import Engine
from ember.runtime.engine import EngineInputError
from ember.tolerance import compare

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"

# fixture -> per symbol (MIN, OPT, MAX)
PROFILES = {
    "bert_small": {"batch": (1, 2, 3), "sequence": (4, 16, 24)},
    "gpt2_small": {"batch": (1, 2, 3), "sequence": (4, 16, 24)},
    "lstm_small": {"batch": (1, 2, 3), "sequence": (4, 12, 16)},
    "resnet50_small": {"batch": (1, 2, 4)},
    "mobilenet_v2_small": {"batch": (1, 2, 4)},
    "efficientnet_b0_small": {"batch": (1, 2, 4)},
    "vit_b_16_small": {"batch": (1, 2, 4)},
    "ssdlite_small": {"height": (64, 96, 128), "width": (64, 80, 128)},
}


def _declared(module) -> dict[str, tuple]:
    fn = module.main
    return {n: tuple(str(d) for d in v.type.shape) for n, v in zip(fn.input_names, fn.inputs)}


def _shape(dims: tuple, env: dict[str, int]) -> tuple[int, ...]:
    return tuple(env[d] if d in env else int(d) for d in dims)


def _profile(module, ranges: dict[str, tuple[int, int, int]]) -> dict[str, tuple]:
    out = {}
    for name, dims in _declared(module).items():
        out[name] = tuple(_shape(dims, {s: r[k] for s, r in ranges.items()}) for k in range(3))
    return out


def _feeds(module, env: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, v in zip(module.main.input_names, module.main.inputs):
        shape = _shape(_declared(module)[name], env)
        if v.type.dtype.is_float:
            feeds[name] = rng.standard_normal(shape).astype(v.type.dtype.np_dtype)
        elif "mask" in name:
            feeds[name] = np.ones(shape, v.type.dtype.np_dtype)
        else:
            feeds[name] = rng.integers(0, 90, size=shape).astype(v.type.dtype.np_dtype)
    return feeds


class Profiled:
    """Per fixture, lazily: the imported module and its profile engine (saved and loaded back)."""

    def __init__(self, cache_dir, tmp) -> None:
        self.cache_dir, self.tmp = cache_dir, tmp
        self._made: dict[str, tuple] = {}

    def get(self, name: str) -> tuple:
        if name not in self._made:
            module = ember.load(FIXTURES / f"{name}.onnx")
            engine = ember.compile(module, profiles=[_profile(module, PROFILES[name])], cache_dir=self.cache_dir)
            path = self.tmp / f"{name}.engine"
            engine.save(path)
            self._made[name] = (module, Engine.load(path), engine)
        return self._made[name]


@pytest.fixture(scope="module")
def profiled(kernel_cache, tmp_path_factory) -> Profiled:
    return Profiled(kernel_cache, tmp_path_factory.mktemp("profiles"))


def check_at(module, engine: Engine, env: dict[str, int], seed: int = 0) -> None:
    feeds = _feeds(module, env, seed)
    kernels = dict(engine.kernels)
    got = engine.run(feeds, device="cpu")
    want = interpret(module, feeds)
    for name, ref in want.items():
        verdict = compare(got[name], np.asarray(ref))
        assert verdict, f"{name} at {env}: {verdict.message}"
    assert engine.kernels == kernels
    binding = engine.bind({k: v.shape for k, v in feeds.items()})
    assert binding.env == env
    assert {s.kernel for s in binding.steps if s.kind == "launch"} <= set(engine.kernels)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_profile_engine_runs_min_opt_max(name, profiled, no_compiler):
    module, engine, _ = profiled.get(name)
    no_compiler()
    assert engine.is_dynamic and len(engine.profiles) == 1
    for k in range(3):
        check_at(module, engine, {s: r[k] for s, r in PROFILES[name].items()}, seed=k)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_profile_engine_runs_shapes_in_between(name, profiled, no_compiler):
    module, engine, _ = profiled.get(name)
    no_compiler()
    ranges = PROFILES[name]

    @settings(max_examples=3, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.fixed_dictionaries({s: st.integers(lo, hi) for s, (lo, _, hi) in ranges.items()}),
           st.integers(0, 1000))
    def between(env, seed):
        check_at(module, engine, env, seed)

    between()


@pytest.mark.parametrize("name", ["bert_small", "resnet50_small"])
def test_shapes_outside_the_profile_are_refused(name, profiled):
    module, engine, _ = profiled.get(name)
    ranges = PROFILES[name]
    env = {s: hi + 1 for s, (_, _, hi) in ranges.items()}
    with pytest.raises(EngineInputError) as info:
        engine.run(_feeds(module, env, 0), device="cpu")
    message = str(info.value)
    assert "outside every optimization profile" in message and "\n" not in message
    first = module.main.input_names[0]
    assert f"{first} {list(_shape(_declared(module)[first], env))}" in message
    assert str(engine.profiles[0]) in message


def test_the_saved_engine_keeps_its_profiles(profiled):
    module, loaded, built = profiled.get("bert_small")
    assert [str(p) for p in loaded.profiles] == [str(p) for p in built.profiles]
    assert len(loaded.specializations) == len(built.specializations) >= 1
    assert str(loaded.inputs[0]) == "input_ids: i64[batch=1..3,sequence=4..24]"
    feeds = _feeds(module, {"batch": 3, "sequence": 7}, 5)
    a, b = built.run(feeds, device="cpu"), loaded.run(feeds, device="cpu")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_two_profiles_in_one_engine(kernel_cache, no_compiler):
    module = ember.load(FIXTURES / "resnet50_small.onnx")
    engine = ember.compile(module, profiles=[{"image": ((1, 3, 64, 64), (2, 3, 64, 64))},
                                             {"image": ((3, 3, 64, 64), (6, 3, 64, 64), (8, 3, 64, 64))}],
                           cache_dir=kernel_cache)
    no_compiler()
    assert len(engine.profiles) == 2
    for batch, profile in [(1, 0), (2, 0), (3, 1), (7, 1)]:
        check_at(module, engine, {"batch": batch}, seed=batch)
        index = engine.bind({"image": (batch, 3, 64, 64)}).specialization
        assert engine.specializations[index].profile == profile
    with pytest.raises(EngineInputError, match="outside every optimization profile"):
        engine.run({"image": np.zeros((9, 3, 64, 64), np.float32)}, device="cpu")


def test_a_symbolic_input_without_shapes_or_profile_is_refused():
    module = ember.load(FIXTURES / "bert_small.onnx")
    with pytest.raises(BuildError) as info:
        ember.compile(module)
    message = str(info.value)
    assert "batch, sequence" in message and "input_ids [batch,sequence]" in message
    assert "shapes=" in message and "profiles=" in message


@pytest.mark.parametrize("profiles, shapes, wanted", [
    ([{"image": ((2, 3, 64, 64), (1, 3, 64, 64), (4, 3, 64, 64))}], None, "MIN <= OPT <= MAX"),
    ([{"image": ((1, 3, 32, 32), (4, 3, 32, 32))}], None, "dim 2 is 64 in the model"),
    ([{"picture": ((1, 3, 64, 64),)}], None, "names no input"),
    ([{"image": ((1, 3, 64, 64), (4, 3, 64, 64))}], {"image": (1, 3, 64, 64)}, "not both"),
    ([], None, "is empty"),
])
def test_bad_profiles_are_refused(profiles, shapes, wanted):
    module = ember.load(FIXTURES / "resnet50_small.onnx")
    with pytest.raises(BuildError, match=wanted):
        ember.compile(module, profiles=profiles, shapes=shapes)


def test_opt_defaults_to_max_and_tactics_follow_opt(kernel_cache):
    module = ember.load(FIXTURES / "resnet50_small.onnx")
    engine = ember.compile(module, profiles=[{"image": ((1, 3, 64, 64), (4, 3, 64, 64))}], cache_dir=kernel_cache)
    assert engine.profiles[0].symbols == {"batch": (1, 4, 4)}
    assert engine.symbols == {"batch": 4}


# -- on the GPU (scripts/gpu_check.sh tests) -------------------------------------------------------
def _cuda():
    from ember.runtime import cuda
    return cuda.available()




@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.gpu
def test_a_profile_engine_on_the_gpu(name, profiled, no_compiler):
    if not _cuda()[0]:
        pytest.skip(f"no CUDA GPU: {_cuda()[1]}")
    from ember.tolerance import assert_close
    module, engine, _ = profiled.get(name)
    no_compiler()
    ranges = PROFILES[name]
    rng = np.random.default_rng(7)
    envs = [{s: r[k] for s, r in ranges.items()} for k in range(3)]
    envs += [{s: int(rng.integers(lo, hi + 1)) for s, (lo, _, hi) in ranges.items()} for _ in range(2)]
    ctx = engine.create_context("cuda")
    for i, env in enumerate(envs):
        feeds = _feeds(module, env, i)
        got = ctx.run(feeds)
        want = interpret(module, feeds)
        for k, ref in want.items():
            assert_close(np.asarray(got[k]), np.asarray(ref), what=f"{name}:{k} at {env}")


@pytest.mark.gpu
def test_a_graph_cache_of_two_with_three_alternating_shapes(profiled):
    if not _cuda()[0]:
        pytest.skip(f"no CUDA GPU: {_cuda()[1]}")
    from ember.tolerance import assert_close
    module, engine, _ = profiled.get("bert_small")
    ctx = engine.create_context("cuda", graph_cache=2)
    envs = [{"batch": 1, "sequence": 5}, {"batch": 2, "sequence": 16}, {"batch": 3, "sequence": 23}]
    captures = []
    for rnd in range(3):
        for i, env in enumerate(envs):
            feeds = _feeds(module, env, 10 * rnd + i)
            got = ctx.run(feeds)
            want = engine.run(feeds, device="cpu")
            for k in want:
                assert_close(np.asarray(got[k]), np.asarray(want[k]), what=f"{k} at {env}, round {rnd}")
            captures.append(ctx.captures)
            assert len(ctx._states) <= 2
    # Three shapes through two slots: every run is a new capture (least recently used out).
    assert all(b > a for a, b in zip(captures, captures[1:]))
    same = _feeds(module, envs[2], 99)
    before = ctx.captures
    ctx.run(same)
    assert ctx.captures == before, "the shape just used replays its graphs"


@pytest.mark.gpu
def test_an_output_the_engine_fails_to_write_reads_as_poison(kernel_cache):
    if not _cuda()[0]:
        pytest.skip(f"no CUDA GPU: {_cuda()[1]}")
    from ember import ir
    n = 1 << 16
    b = ir.Builder("poison")
    x = b.input("x", ir.f32[n])
    b.output("y", b.relu(x))
    engine = ember.compile(b.build(), cache_dir=kernel_cache)
    feeds = {"x": np.random.default_rng(0).standard_normal(n).astype(np.float32)}
    assert np.array_equal(engine.run(feeds, device="cuda")["y"], np.maximum(feeds["x"], 0))
    program = engine.default.program
    t, step = next((t, s) for t, s in enumerate(program.steps) if s.kind == "launch")
    args = tuple(Arg("i64", n // 2) if a.kind == "i64" and a.value == n else a for a in step.args)
    assert args != step.args  # the kernel now covers only the first half of y
    steps = list(program.steps)
    steps[t] = dataclasses.replace(step, args=args)
    engine.default.program = dataclasses.replace(program, steps=tuple(steps))
    ctx = engine.create_context("cuda", poison=True, graphs=False)
    y = ctx.run(feeds)["y"]
    assert np.array_equal(y[:n // 2], np.maximum(feeds["x"][:n // 2], 0))
    assert np.isnan(y[n // 2:]).all()


def test_a_version_1_engine_loads_as_a_one_shape_engine(kernel_cache, tmp_path):
    import struct
    import zlib

    from ember.runtime import engine_format as fmt
    module = ember.load(FIXTURES / "resnet50_small.onnx")
    engine = ember.compile(module, shapes={"image": (2, 3, 64, 64)}, cache_dir=kernel_cache)
    data = bytearray(engine.to_bytes())
    assert struct.unpack_from("<I", data, 8)[0] == fmt.FORMAT_VERSION == 2
    import hashlib
    struct.pack_into("<I", data, 8, 1)  # what Ember wrote before profiles: the same sections, version 1
    struct.pack_into("<I", data, 24, zlib.crc32(bytes(data[:24])))
    header_len = struct.unpack_from("<Q", data, 16)[0]
    head = bytes(data[32:32 + header_len])
    for form in (b'"format_version":2', b'"format_version": 2'):
        head = head.replace(form, form[:-1] + b"1")
    data[32:32 + header_len] = head
    data[32 + header_len:32 + header_len + 32] = hashlib.sha256(bytes(data[:32 + header_len])).digest()
    path = tmp_path / "v1.engine"
    path.write_bytes(bytes(data))
    loaded = Engine.load(path)
    assert not loaded.profiles and not loaded.is_dynamic
    feeds = _feeds(module, {"batch": 2}, 0)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.run(feeds, device="cpu").values(),
                                                     engine.run(feeds, device="cpu").values()))
    with pytest.raises(EngineInputError, match="built for shape"):
        loaded.run(_feeds(module, {"batch": 3}, 0), device="cpu")


def test_a_view_that_does_not_fit_at_a_shape_is_refused_naming_it():
    from ember.ir.profiles import Specialization
    from ember.runtime import binding as B
    program = {"values": [{"id": 0, "name": "x", "dtype": "f32", "shape": ["N", 6], "kind": "input",
                           "nbytes": "24*N"},
                          {"id": 1, "name": "flat", "dtype": "f32", "shape": ["(6*N)//4", 4], "kind": "view",
                           "nbytes": "16*((6*N)//4)", "alias": 0}],
               "steps": [], "inputs": [{"name": "x", "value": 0}], "outputs": [{"name": "flat", "value": 1}],
               "kernels": []}
    spec = Specialization(0, Program.from_json(program))
    ok = B.bind(0, spec, {"N": 2}, lambda p: {}, EngineInputError)
    assert ok.values[1].shape == (3, 4)
    with pytest.raises(EngineInputError) as info:
        B.bind(0, spec, {"N": 3}, lambda p: {}, EngineInputError)
    message = str(info.value)
    assert "N=3" in message and "flat [(6*N)//4,4] is a view of x [N,6]" in message and "[4, 4] against [3, 6]" in message


def test_two_one_shape_profiles_serve_both_shapes(kernel_cache):
    module = ember.load(FIXTURES / "resnet50_small.onnx")
    engine = ember.compile(module, profiles=[{"image": (1, 3, 64, 64)}, {"image": (8, 3, 64, 64)}],
                           cache_dir=kernel_cache)
    assert engine.is_dynamic and len(engine.profiles) == 2
    for batch in (1, 8):
        check_at(module, engine, {"batch": batch}, seed=batch)
    with pytest.raises(EngineInputError, match="outside every optimization profile"):
        engine.run(_feeds(module, {"batch": 4}, 0), device="cpu")
