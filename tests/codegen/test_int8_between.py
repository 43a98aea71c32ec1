"""The kernels of the int8 ops between the heavy ones (ir/ops/int8.py): ember.int8_requantize and
ember.int8_add through the elementwise generator (cuda_render's table, prelude helpers; alone, fused
with each other, and in an int8 conv's epilogue), ember.int8_avg_pool through the pooling template
and ember.int8_global_avg_pool through the row reductions (both with ember::Int8Mean), and
max_pool, global_max_pool and concat on i8 (the existing kernels).

On the CPU: the kernels say what they compute, compile for sm_80 and sm_90 with NVRTC (warnings as
errors), and engines on the host arena give the interpreter's values.

On the GPU (-m gpu): every case at several shapes (odd, tiny, one element, channels-last and
first, each reduction team), fresh random inputs each run, the arena poisoned first: max pools and
concat exactly, the requantizing ops within one step (they round as the interpreter does, so
they are expected equal)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ember
from ember import ir
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from kernel_checks import gpu_available

F = np.float32
Case = Callable[[], ir.Module]


def _pair(b: ir.Builder, rng: np.random.Generator, zero: bool = True) -> tuple[Any, Any]:
    """A random per-tensor scale and zero point (or none)."""
    z = b.constant(np.int8(rng.integers(-30, 30))) if zero else None
    return b.constant(F(rng.uniform(0.01, 0.1))), z


def requantize(shape: tuple[int, ...], zero: bool = True) -> Case:
    def build() -> ir.Module:
        rng = np.random.default_rng(sum(shape))
        b = ir.Builder("int8_requantize")
        x = b.input("x", ir.i8[shape])
        b.output("y", b.int8_requantize(x, *_pair(b, rng, zero), *_pair(b, rng, zero)))
        return b.build()
    return build


def add(a_shape: tuple[int, ...], b_shape: tuple[int, ...], relu: bool, zero: bool = True) -> Case:
    def build() -> ir.Module:
        rng = np.random.default_rng(sum(a_shape) + 3 * sum(b_shape) + relu)
        b = ir.Builder("int8_add")
        x, y = b.input("a", ir.i8[a_shape]), b.input("b", ir.i8[b_shape])
        b.output("y", b.int8_add(x, *_pair(b, rng, zero), y, *_pair(b, rng), *_pair(b, rng, zero), relu=relu))
        return b.build()
    return build


def avg_pool(shape: tuple[int, ...], layout: str | None = None, zero: bool = True, **attrs: Any) -> Case:
    def build() -> ir.Module:
        rng = np.random.default_rng(sum(shape) + len(attrs))
        b = ir.Builder("int8_avg_pool")
        x = b.input("x", ir.i8[shape])
        b.output("y", b.int8_avg_pool(x, *_pair(b, rng, zero), *_pair(b, rng), layout=layout, **attrs))
        return b.build()
    return build


def global_avg_pool(shape: tuple[int, ...], layout: str | None = None, zero: bool = True) -> Case:
    def build() -> ir.Module:
        rng = np.random.default_rng(sum(shape))
        b = ir.Builder("int8_global_avg_pool")
        x = b.input("x", ir.i8[shape])
        b.output("y", b.int8_global_avg_pool(x, *_pair(b, rng, zero), *_pair(b, rng, zero), layout=layout))
        return b.build()
    return build


def max_pool(shape: tuple[int, ...], layout: str | None = None, **attrs: Any) -> Case:
    def build() -> ir.Module:
        b = ir.Builder("i8_max_pool")
        x = b.input("x", ir.i8[shape])
        b.output("y", b.max_pool(x, layout=layout, **attrs) if attrs else b.global_max_pool(x, layout=layout))
        return b.build()
    return build


def concat(shapes: list[tuple[int, ...]], axis: int) -> Case:
    def build() -> ir.Module:
        b = ir.Builder("i8_concat")
        parts = [b.input(f"x{i}", ir.i8[s]) for i, s in enumerate(shapes)]
        b.output("y", b.concat(*parts, axis=axis))
        return b.build()
    return build


def residual_block(shape: tuple[int, ...]) -> Case:
    """An int8 conv requantizing (i8 out) whose epilogue takes int8_add with the block's input and an
    int8_requantize into a concat's pair (fuse-epilogue), then the i8 concat."""
    def build() -> ir.Module:
        rng = np.random.default_rng(sum(shape))
        c = shape[-1]
        b = ir.Builder("int8_block")
        x = b.input("x", ir.i8[shape])
        sx, zx = _pair(b, rng)
        w = b.weight("w", rng.integers(-127, 128, (c, 3, 3, c)).astype(np.int8))
        sw = b.constant(rng.uniform(0.001, 0.004, c).astype(F))
        sy, zy = _pair(b, rng)
        h = b.int8_conv(x, w, sx, sw, b.constant(rng.standard_normal(c).astype(F)), zx, sy, zy,
                        pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI", relu=True)
        sa, za = _pair(b, rng)
        r = b.int8_add(h, sy, zy, x, sx, zx, sa, za)
        b.output("y", b.concat(b.int8_requantize(r, sa, za, sx, zx), x, axis=3))
        return b.build()
    return build


# name -> (build, exact): exact for the kernels that move or compare values
CASES: dict[str, tuple[Case, bool]] = {
    "requantize-1": (requantize((1,)), False),
    "requantize-3x5x7": (requantize((3, 5, 7)), False),
    "requantize-4099-no-zero-points": (requantize((4099,), zero=False), False),
    "add-2x3x5x7": (add((2, 3, 5, 7), (2, 3, 5, 7), relu=False), False),
    "add-relu-broadcast-channels": (add((2, 9, 9, 17), (17,), relu=True), False),
    "add-broadcast-both-no-zero-points": (add((3, 1, 5), (1, 7, 1), relu=False, zero=False), False),
    "avg-pool-3x3-pad": (avg_pool((2, 3, 7, 9), kernel_shape=(3, 3), pads=(1, 1, 1, 1)), False),
    "avg-pool-count-pad-ceil": (avg_pool((1, 5, 8, 6), kernel_shape=(3, 2), strides=(2, 2), pads=(1, 0, 1, 1),
                                         ceil_mode=True, count_include_pad=True), False),
    "avg-pool-nhwc-dilated": (avg_pool((2, 11, 10, 19), "NHWC", kernel_shape=(2, 3), dilations=(2, 1),
                                       strides=(1, 2)), False),
    "avg-pool-1d-same": (avg_pool((3, 4, 13), kernel_shape=(4,), strides=(3,), auto_pad="SAME_LOWER",
                                  zero=False), False),
    "global-avg-pool-rows": (global_avg_pool((2, 5, 7, 9)), False),
    "global-avg-pool-nhwc-columns": (global_avg_pool((2, 7, 9, 40), "NHWC"), False),
    "global-avg-pool-block": (global_avg_pool((1, 3, 64, 65), zero=False), False),
    "global-avg-pool-1x1": (global_avg_pool((3, 17, 1, 1), "NHWC"), False),
    "max-pool-3x3-s2-pad": (max_pool((2, 3, 9, 7), kernel_shape=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1)), True),
    "max-pool-nhwc-ceil": (max_pool((1, 6, 7, 5), "NHWC", kernel_shape=(2, 2), strides=(2, 2), ceil_mode=True), True),
    "global-max-pool-nhwc": (max_pool((2, 5, 6, 33), "NHWC"), True),
    "concat-channels": (concat([(1, 3, 5, 5), (1, 8, 5, 5), (1, 1, 5, 5)], 1), True),
    "concat-last-odd": (concat([(7, 3), (7, 1), (7, 13)], 1), True),
    "block-nhwc-16": (residual_block((2, 6, 5, 16)), False),
    "block-nhwc-3": (residual_block((1, 4, 7, 3)), False),
}
FUSION = "fuse-epilogue,fuse-elementwise"


def pipeline_of(name: str) -> str:
    return FUSION if name.startswith("block") else ""


def feeds_for(module: ir.Module, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {n: rng.integers(-128, 128, tuple(v.type.shape)).astype(np.int8)
            for n, v in zip(module.main.input_names, module.main.inputs)}


def _optimized(name: str) -> ir.Module:
    from ember.passes.manager import PassManager
    module = CASES[name][0]()
    if pipeline_of(name):
        PassManager(pipeline_of(name)).run(module)
    return module


# -- CPU ------------------------------------------------------------------------------------
def test_the_kernels_say_what_they_compute() -> None:
    sources = {name: "\n".join(k.source for k in lower(_optimized(name)).kernels.values()) for name in CASES}
    assert "ember::int8_add<true>(" in sources["add-relu-broadcast-channels"]
    assert "ember::int8_add<false>(" in sources["add-broadcast-both-no-zero-points"]
    assert "ember::int8_requantize(ember::int8_dequantized(" in sources["requantize-3x5x7"]
    assert "ember::Int8Mean{" in sources["avg-pool-3x3-pad"] and "ember::POOL_AVG" in sources["avg-pool-3x3-pad"]
    assert "ember::reduce_rows<signed char, int," in sources["global-avg-pool-rows"]
    assert "ember::Int8Mean{" in sources["global-avg-pool-nhwc-columns"]
    # the block: the conv's epilogue takes the add and the requantize (one int8 conv kernel), then the concat
    block = lower(_optimized("block-nhwc-16")).kernels.values()
    conv = [k for k in block if k.name.startswith("int8_conv")]
    assert len(conv) == 1 and "ember::int8_add<false>(" in conv[0].source
    assert "ember::int8_requantize(" in conv[0].source
    assert not any(k.name.startswith("ew") for k in block)


def test_every_kernel_compiles_for_its_targets(kernel_cache: Path) -> None:
    kernels = {}
    for name in CASES:
        kernels.update(lower(_optimized(name)).kernels)
    Compiler(("sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(kernels.values())


@pytest.mark.parametrize("name", ["add-relu-broadcast-channels", "avg-pool-count-pad-ceil",
                                  "global-avg-pool-nhwc-columns", "block-nhwc-3"])
def test_engines_run_on_the_host_arena_as_the_interpreter_computes(name: str, kernel_cache: Path) -> None:
    module = CASES[name][0]()
    feeds = feeds_for(module, np.random.default_rng(0))
    engine = ember.compile(module, pipeline=pipeline_of(name), targets=("sm_80",), cache_dir=kernel_cache)
    assert engine.report.host_ops == [] and engine.host_steps == 0
    np.testing.assert_array_equal(engine.run(feeds, device="cpu")["y"], ir.interpret(module, feeds)["y"])


# -- GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_kernels_are_the_interpreters_on_the_gpu(name: str, tmp_path: Path) -> None:
    build, exact = CASES[name]
    module = build()
    engine = ember.compile(module, pipeline=pipeline_of(name), cache_dir=tmp_path / "cache")
    assert engine.report.host_ops == []
    ctx = engine.create_context("cuda", poison=True, graphs=False)
    for seed in (None, None):
        feeds = feeds_for(module, np.random.default_rng(seed))
        want = ir.interpret(module, feeds)["y"]
        got = np.asarray(ctx.run(feeds)["y"])
        assert got.dtype == want.dtype == np.int8 and got.shape == want.shape
        if exact:
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert np.abs(got.astype(np.int32) - want.astype(np.int32)).max() <= 1, name
