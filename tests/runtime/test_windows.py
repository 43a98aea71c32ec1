"""Windows: slices of an activation that are one contiguous run of its buffer (codegen/lower.py
`_add_windows`) are read in place, with no kernel, as TensorRT elides such slices.

Each case is a small module whose gather, slice or split either becomes a window at a known
byte offset or, a near miss (a leading dim that is not 1, a step, two cut axes, an input's
buffer), stays a kernel. The engine runs on the host arena, which reads windows out of the
planned arena as the GPU does, against the interpreter on random inputs; on the stand-in driver
the launch that reads a window gets its source's arena address plus the offset.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.ir.parser import parse
from ember.tolerance import assert_close
from kernel_checks import gpu_available

F32 = 4


def module(body: str, x: str, y: str) -> str:
    return f"""func @main(%x: {x}) -> (y: {y}) {{
  %a = ember.relu %x : {x}
{body}
  return %y
}}
"""


# name: (module text, the window's offset in bytes or None where no window may be made)
CASES = {
    "gather index 2 of the leading axis": (module(
        """  %i = ember.constant {value = dense<i64[]: 2>} : i64[]
  %g = ember.gather %a, %i {axis = 0} : f32[4,5]
  %y = ember.sigmoid %g : f32[4,5]""", "f32[3,4,5]", "f32[4,5]"), 2 * 20 * F32),
    "gather index -1": (module(
        """  %i = ember.constant {value = dense<i64[]: -1>} : i64[]
  %g = ember.gather %a, %i {axis = 0} : f32[4,5]
  %y = ember.sigmoid %g : f32[4,5]""", "f32[3,4,5]", "f32[4,5]"), 2 * 20 * F32),
    "gather after a leading 1, index kept as an axis": (module(
        """  %i = ember.constant {value = dense<i64[1]: [3]>} : i64[1]
  %g = ember.gather %a, %i {axis = 1} : f32[1,1,5]
  %y = ember.sigmoid %g : f32[1,1,5]""", "f32[1,4,5]", "f32[1,1,5]"), 3 * 5 * F32),
    "slice along the axis after a leading 1": (module(
        """  %s = ember.slice %a {starts = [2], ends = [5], axes = [1]} : f32[1,3,5]
  %y = ember.sigmoid %s : f32[1,3,5]""", "f32[1,6,5]", "f32[1,3,5]"), 2 * 5 * F32),
    "slice with a negative start": (module(
        """  %s = ember.slice %a {starts = [-2], ends = [9223372036854775807], axes = [0]} : f32[2,5]
  %y = ember.sigmoid %s : f32[2,5]""", "f32[6,5]", "f32[2,5]"), 4 * 5 * F32),
    "reshape of a window": (module(
        """  %i = ember.constant {value = dense<i64[]: 1>} : i64[]
  %g = ember.gather %a, %i {axis = 0} : f32[4,5]
  %r = ember.reshape %g {shape = [20]} : f32[20]
  %y = ember.sigmoid %r : f32[20]""", "f32[3,4,5]", "f32[20]"), 20 * F32),
    "gather behind a leading 2": (module(
        """  %i = ember.constant {value = dense<i64[]: 1>} : i64[]
  %g = ember.gather %a, %i {axis = 1} : f32[2,5]
  %y = ember.sigmoid %g : f32[2,5]""", "f32[2,4,5]", "f32[2,5]"), None),
    "slice with a step": (module(
        """  %s = ember.slice %a {starts = [0], ends = [6], axes = [0], steps = [2]} : f32[3,5]
  %y = ember.sigmoid %s : f32[3,5]""", "f32[6,5]", "f32[3,5]"), None),
    "slice that cuts two axes": (module(
        """  %s = ember.slice %a {starts = [1, 1], ends = [3, 4], axes = [0, 1]} : f32[2,3]
  %y = ember.sigmoid %s : f32[2,3]""", "f32[6,5]", "f32[2,3]"), None),
    "reversed axis": (module(
        """  %s = ember.slice %a {starts = [-1], ends = [-9223372036854775807], axes = [0], steps = [-1]} : f32[6,5]
  %y = ember.sigmoid %s : f32[6,5]""", "f32[6,5]", "f32[6,5]"), None),
}

SPLIT = """func @main(%x: f32[1,6,5]) -> (p: f32[1,2,5], q: f32[1,4,5]) {
  %a = ember.relu %x : f32[1,6,5]
  %s0, %s1 = ember.split %a {axis = 1, sizes = [2, 4]} : f32[1,2,5], f32[1,4,5]
  %p = ember.sigmoid %s0 : f32[1,2,5]
  %q = ember.tanh %s1 : f32[1,4,5]
  return %p, %q
}
"""
OF_AN_INPUT = """func @main(%x: f32[3,4]) -> (y: f32[4]) {
  %i = ember.constant {value = dense<i64[]: 1>} : i64[]
  %g = ember.gather %x, %i {axis = 0} : f32[4]
  %y = ember.sigmoid %g : f32[4]
  return %y
}
"""

PIPELINE = "canonicalize,cse,dce"  # no fusion: the gather, slice or split meets the lowering as it is


def build(text: str, cache_dir):
    m = parse(text)
    shapes = {n: tuple(v.type.shape) for n, v in zip(m.main.input_names, m.main.inputs)}
    return m, ember.compile(m, shapes=shapes, cache_dir=cache_dir, pipeline=PIPELINE, opt_level=0)


def windows(engine) -> list:
    return [v for v in engine.default.program.values if v.kind == "view" and v.offset is not None]


def feeds_for(m, rng) -> dict[str, np.ndarray]:
    return {n: rng.standard_normal(tuple(v.type.shape)).astype(np.float32)
            for n, v in zip(m.main.input_names, m.main.inputs)}


def matches_the_interpreter(m, engine, seed: int = 0) -> None:
    feeds = feeds_for(m, np.random.default_rng(seed))
    want = ember.interpret(m, feeds)
    got = engine.create_context("cpu", poison=True).run(feeds)
    for name in want:
        np.testing.assert_array_equal(got[name], np.asarray(want[name]), err_msg=name)


@pytest.mark.parametrize("name", CASES)
def test_contiguous_slices_become_windows_and_near_misses_stay_kernels(built, name):
    text, offset = CASES[name]
    m, engine = build(text, built.cache_dir)
    found = windows(engine)
    kernels = [s for s in engine.default.program.launches if "gather" in s.kernel or "slice" in s.kernel]
    if offset is None:
        assert found == [] and kernels, (found, kernels)
    else:
        assert [w.offset for w in found] == [offset] * len(found) and found, found
        assert kernels == []
        assert len(engine.default.program.launches) == 2  # relu and sigmoid: nothing copies
    matches_the_interpreter(m, engine)


def test_split_pieces_are_windows_one_after_the_other(built):
    m, engine = build(SPLIT, built.cache_dir)
    assert [w.offset for w in windows(engine)] == [0, 2 * 5 * F32]
    assert len(engine.default.program.launches) == 3
    matches_the_interpreter(m, engine)


def test_a_slice_of_an_input_is_copied(built):
    m, engine = build(OF_AN_INPUT, built.cache_dir)
    assert windows(engine) == []
    matches_the_interpreter(m, engine)


def test_windows_survive_save_and_load(built, tmp_path):
    m, engine = build(CASES["gather index 2 of the leading axis"][0], built.cache_dir)
    engine.save(tmp_path / "w.engine")
    again = ember.Engine.load(tmp_path / "w.engine")
    assert [w.offset for w in windows(again)] == [2 * 20 * F32]
    matches_the_interpreter(m, again, seed=1)


def test_a_window_that_holds_its_source_alive_keeps_it_from_being_overwritten(built):
    # the window is read after three more kernels, each of which could reuse the source's space
    text = """func @main(%x: f32[3,64,64]) -> (y: f32[64,64], z: f32[3,64,64]) {
  %a = ember.relu %x : f32[3,64,64]
  %i = ember.constant {value = dense<i64[]: 1>} : i64[]
  %g = ember.gather %a, %i {axis = 0} : f32[64,64]
  %b = ember.neg %x : f32[3,64,64]
  %c = ember.exp %b : f32[3,64,64]
  %z = ember.tanh %c : f32[3,64,64]
  %y = ember.sigmoid %g : f32[64,64]
  return %y, %z
}
"""
    m, engine = build(text, built.cache_dir)
    assert len(windows(engine)) == 1
    assert engine.plan.check() == []
    matches_the_interpreter(m, engine, seed=2)


def test_the_launch_reading_a_window_gets_its_address_on_the_stand_in_driver(fake, built):
    m, engine = build(CASES["slice along the axis after a leading 1"][0], built.cache_dir)
    engine.check_arch = lambda *args, **kwargs: None  # the stand-in GPU runs every kernel
    ctx = engine.create_context("cuda")
    ctx.run(feeds_for(m, np.random.default_rng(3)))
    plan = engine.default.plan
    (window,) = windows(engine)
    source = ctx.arena + plan.offsets[window.alias]
    relu, sigmoid = fake.launches[0][1], fake.launches[1][1]
    assert source in relu and source + window.offset in sigmoid, (relu, sigmoid, source, window.offset)
    ctx.close()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", [n for n, (_, offset) in CASES.items() if offset is not None])
def test_windows_read_in_place_on_the_gpu(built, name):
    """The CUDA runtime adds each window's offset to its source's address (graph replay included:
    the second run replays the captured launches)."""
    m, engine = build(CASES[name][0], built.cache_dir)
    assert windows(engine)
    ctx = engine.create_context("cuda", poison=True)
    for seed in (5, 6):
        feeds = feeds_for(m, np.random.default_rng(seed))
        want = ember.interpret(m, feeds)
        got = ctx.run(feeds)
        for out in want:
            assert_close(np.asarray(got[out]), np.asarray(want[out]), what=f"{name}: {out}")
    ctx.close()
