"""runtime/cuda.py's handling of run-time sizes, on a stand-in driver (no GPU needed).

Device memory is host memory and kernel launches only check their arguments, so the
values kernels compute are not checked here (the `gpu`-marked tests of
test_dynamic_sizes.py do that on a GPU): what is checked is the bookkeeping around them.
Size and host steps bind the run-time symbols from data the steps read back; launches
sized over them get integer grids and arguments; buffers sized at run time are allocated
on the stream and all freed when the run ends; ops whose run-time guards fail run on the
host; stretches with nothing sized at run time are still captured as CUDA graphs.
"""

from __future__ import annotations


import numpy as np

import ember
from ember.ir.parser import parse

RANGE_IR = """func @main(%start: i64[], %limit: i64[], %delta: i64[]) -> (y: i64[?]) {
  %r = ember.range %start, %limit, %delta : i64[?]
  %y = ember.mul %r, %r : i64[?]
  return %y
}
"""
NONZERO_IR = """func @main(%x: f32[8]) -> (y: f32[?<=8]) {
  %two = ember.constant {value = dense<f32[]: 2.0>} : f32[]
  %i = ember.nonzero %x : i64[1,?<=8]
  %t = ember.transpose %i {perm = [1, 0]} : i64[?<=8,1]
  %g = ember.gather_nd %x, %t : f32[?<=8]
  %y = ember.mul %g, %two : f32[?<=8]
  return %y
}
"""


def engine_of(text: str, shapes, cache_dir, pipeline: str = "default"):
    engine = ember.compile(parse(text), shapes=shapes, cache_dir=cache_dir, pipeline=pipeline)
    engine.check_arch = lambda *args, **kwargs: None  # the stand-in GPU runs every kernel
    return engine


def test_a_range_over_data_sizes_its_kernels_and_frees_its_buffers(fake, built):
    engine = engine_of(RANGE_IR, {"start": (), "limit": (), "delta": ()}, built.cache_dir)
    ctx = engine.create_context("cuda", poison=True)
    for start, limit, delta in [(0, 10, 1), (10, -2, -3), (5, 5, 1), (0, 1000, 1), (3, 2, 1)]:
        feeds = {"start": np.array(start), "limit": np.array(limit), "delta": np.array(delta)}
        fake.launches.clear()
        got = ctx.run(feeds)
        n = len(range(start, limit, delta))
        assert ctx.run_symbols == {"_rt0": n} and got["y"].shape == (n,)
        assert ctx.fallbacks == (2 if n == 0 else 0)  # empty: range and mul run on the host
        assert len(fake.launches) == (0 if n == 0 else 2)
        # range: one element a thread; the i64 mul: two (its 16-byte form), a block of 256 each
        assert [grid for grid, _ in fake.launches] == ([-(-n // 256), -(-n // 512)] if n else [])
        assert not fake.async_live, "a buffer sized at run time outlived the run"
    ctx.close()


def test_kernels_after_nonzero_take_their_sizes_from_the_host_step(fake, built):
    # without bound-data-sizes the size step reads x back (with it, a count the stand-in cannot write)
    engine = engine_of(NONZERO_IR, {"x": (8,)}, built.cache_dir, pipeline="canonicalize")
    ctx = engine.create_context("cuda")
    for x in ([0.0] * 8, [1, 0, 3, 0, 5, 0, 7, 0], [0, 0, 3, 0, 0, 0, 0, 0], [1.0] * 8):
        got = ctx.run({"x": np.array(x, np.float32)})
        n = int(np.count_nonzero(x))
        assert ctx.run_symbols == {"_rt0": n} and got["y"].shape == (n,)
        assert (ctx.fallbacks > 0) == (n <= 1)  # the kernels' decisions for counts 0 and 1 did not hold
        assert not fake.async_live
    ctx.close()


def test_launches_with_nothing_sized_at_run_time_are_still_captured(fake, built):
    text = """func @main(%w: f32[4], %start: i64[], %limit: i64[], %delta: i64[]) -> (z: f32[4], y: i64[?]) {
  %z = ember.relu %w : f32[4]
  %r = ember.range %start, %limit, %delta : i64[?]
  %y = ember.mul %r, %r : i64[?]
  return %z, %y
}
"""
    engine = engine_of(text, {"start": (), "limit": (), "delta": (), "w": (4,)}, built.cache_dir)
    ctx = engine.create_context("cuda")
    feeds = {"start": np.array(0), "limit": np.array(5), "delta": np.array(1), "w": np.ones(4, np.float32)}
    for _ in range(3):
        assert ctx.run(feeds)["y"].shape == (5,)
    assert fake.captures == 1 and ctx.graph_launches == 3  # the relu's stretch: captured once, replayed
    ctx.close()
