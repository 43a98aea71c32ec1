"""Offsets over dims and strides known at build time as constant arithmetic (heavy.STATIC_OFFSETS,
cuda_render.static_offset): an epilogue's general broadcast read and its store through a layout
tail (BERT's heads-first Q/K/V, attention's heads-back transpose), and elementwise kernels'
general broadcast reads, divide by constants (no meta loads, no loop).

On the CPU: the rendered expression, evaluated with C's unsigned semantics, gives
ember::broadcast_offset's offset for every index of random shapes with broadcast and permuted
strides; the fused cases and a two-way broadcast render it (and not the loop) and build for sm_80
and sm_90; the switch keeps the loop; a build with run-time dims keeps it too. On the GPU:
tests/codegen/test_fast_division.py runs those cases in both forms against the interpreter."""

from __future__ import annotations

import re

import numpy as np
import pytest

import ember
import ember.codegen.ops.heavy as heavy
from ember.codegen.cuda_render import static_offset
from ember.codegen.lower import lower
from ember.passes.manager import PassManager
from kernel_checks import gpu_available, nvrtc_compiler
from tests.codegen.test_fast_division import TAILS, broadcast_and_add


@pytest.fixture(autouse=True)
def static_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "STATIC_OFFSETS", True)


def evaluate(expression: str, index: str, i: int) -> int:
    """The C expression's value at idx = i: unsigned arithmetic of the index's width, then the
    cast back to the signed index."""
    bits = 32 if index == "int" else 64
    mask = (1 << bits) - 1
    py = re.sub(r"static_cast<unsigned(?: long long)?>\(([-0-9]+)ll\)", lambda m: f"({int(m.group(1)) & mask})",
                expression)
    py = re.sub(r"static_cast<unsigned(?: long long)?>\(idx\)", "idx", py)
    py = re.sub(r"static_cast<(?:int|long long)>", "", py)
    py = re.sub(r"(\d+)u(?:ll)?\b", r"\1", py).replace("/", "//")
    value = eval(py, {"idx": i}) & mask  # noqa: S307 (our own rendered arithmetic)
    return value - (1 << bits) if value >> (bits - 1) else value


def loop_offset(i: int, dims: list[int], strides: list[int]) -> int:
    """ember::broadcast_offset, in Python."""
    off = 0
    for d in range(len(dims) - 1, -1, -1):
        off += (i % dims[d]) * strides[d]
        i //= dims[d]
    return off


@pytest.mark.parametrize("index", ["int", "long long"])
def test_the_constant_arithmetic_gives_the_loops_offset_for_every_index(index: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        rank = int(rng.integers(1, 6))
        dims = [int(x) for x in rng.integers(1, 7, rank)]
        inner = [int(np.prod(dims[k + 1:])) for k in range(rank)]
        perm = rng.permutation(rank)   # a transpose's strides, some dims broadcast (stride 0)
        strides = [inner[perm[k]] if rng.random() > 0.3 else 0 for k in range(rank)]
        expression = static_offset("idx", index, list(zip(dims, strides)))
        assert "meta" not in expression and "em +" not in expression
        for i in range(int(np.prod(dims))):
            assert evaluate(expression, index, i) == loop_offset(i, dims, strides), (dims, strides, i)
    assert evaluate(static_offset("idx", "int", [(4, 0), (1, 9)]), "int", 3) == 0
    big = static_offset("idx", "long long", [(3, 2**33), (2**20, 1)])
    assert evaluate(big, "long long", 2 * 2**20 + 5) == 2 * 2**33 + 5


@pytest.mark.parametrize("case", TAILS, ids=lambda c: c.name)
def test_broadcasts_and_layout_tails_render_constant_offsets_that_build(case, kernel_cache) -> None:
    module, _ = case.build(np.random.default_rng(0))
    PassManager(case.pipeline).run(module)
    program = lower(module)
    sources = [k.source for k in program.kernels.values()]
    assert any("static_cast<unsigned>(idx) / " in s for s in sources), case.name
    assert not any("broadcast_offset<int>(idx" in s or "fast_offset" in s for s in sources)
    nvrtc_compiler(kernel_cache).compile_all(list(program.kernels.values()))


def test_elementwise_broadcasts_render_constant_offsets(kernel_cache) -> None:
    module, _ = broadcast_and_add()
    program = lower(module)
    sources = [k.source for k in program.kernels.values()]
    assert any("static_cast<unsigned>(i) / " in s for s in sources) and not any("broadcast_offset" in s
                                                                                for s in sources)
    nvrtc_compiler(kernel_cache).compile_all(list(program.kernels.values()))


def test_the_switch_and_run_time_dims_keep_the_loop(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    module, _ = broadcast_and_add()
    monkeypatch.setattr(heavy, "STATIC_OFFSETS", False)
    assert any("broadcast_offset<int>" in k.source for k in lower(module).kernels.values())
    monkeypatch.setattr(heavy, "STATIC_OFFSETS", True)
    from ember import ir
    bld = ir.Builder("dynamic")
    n = bld.symbol("n", 1, 64)
    x = bld.input("x", ir.f32[n, 1, 5])
    y = bld.input("y", ir.f32[1, 3, 1])
    bld.output("z", bld.add(x, y))
    engine = ember.compile(bld.build(), pipeline="canonicalize", cache_dir=tmp_path, opt_level=0,
                           profiles=[{"x": ((1, 1, 5), (8, 1, 5), (64, 1, 5))}])
    sources = [k.source for k in engine.kernels.values()]
    assert any("broadcast_offset<" in s for s in sources) and not any("static_cast<unsigned>(i) /" in s
                                                                      for s in sources)


CONVS = ["conv-nchw", "conv-nchw-strided-bf16", "conv-nhwc", "conv-nhwc-grouped", "conv-1x1-nhwc"]


@pytest.mark.parametrize("name", CONVS)
def test_convolutions_built_for_one_shape_hold_their_geometry(name: str, kernel_cache) -> None:
    """Every candidate (implicit GEMM tiles, split-K, direct) defines EMBER_CONV_GEOM as meta's
    geometry before the header, and builds; switched off, none does."""
    from tests.codegen.test_mma import CASES, heavy_launches
    module = CASES[name]().build()
    (step,) = heavy_launches(lower(module))
    program = lower(module)
    source = program.kernels[step.kernel].source
    meta = [a for a in step.args if a.kind == "meta"][0].value
    assert source.startswith(f"#define EMBER_CONV_GEOM {', '.join(str(int(x)) for x in meta[:37])}\n")
    for tactic in step.candidates:
        other = lower(module, tactics={step.ops[0]: tactic})
        assert all(k.source.startswith("#define EMBER_CONV_GEOM") for k in other.kernels.values()), tactic
    nvrtc_compiler(kernel_cache).compile_all(list(program.kernels.values()))


def test_convolutions_keep_reading_meta_with_the_switch_off_or_a_range_of_shapes(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from tests.codegen.test_mma import CASES
    module = CASES["conv-nhwc"]().build()
    monkeypatch.setattr(heavy, "STATIC_OFFSETS", False)
    assert not any("EMBER_CONV_GEOM" in k.source for k in lower(module).kernels.values())
    monkeypatch.setattr(heavy, "STATIC_OFFSETS", True)
    from ember import ir
    bld = ir.Builder("conv")
    n = bld.symbol("n", 1, 8)
    x = bld.input("x", ir.f16[n, 7, 7, 40])
    w = bld.input("w", ir.f16[72, 3, 3, 40])
    bld.output("y", bld.conv(x, w, None, strides=(1, 1), pads=(1, 1, 1, 1), group=1, layout="NHWC",
                             weight_layout="OHWI"))
    engine = ember.compile(bld.build(), pipeline="canonicalize", cache_dir=tmp_path, opt_level=0,
                           profiles=[{"x": ((1, 7, 7, 40), (4, 7, 7, 40), (8, 7, 7, 40))}])
    assert not any("EMBER_CONV_GEOM" in k.source for k in engine.kernels.values())


@pytest.mark.parametrize("name", CONVS)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_convolutions_with_their_geometry_built_in_match_the_interpreter_on_the_gpu(name: str) -> None:
    from tests.codegen.test_mma import CASES, heavy_launches
    from kernel_checks import check_on_gpu
    module = CASES[name]().build()
    (step,) = heavy_launches(lower(module, target="sm_90"))
    for tactic in step.candidates:
        engine = ember.compile(module, pipeline="canonicalize", tactics={step.ops[0]: tactic}, opt_level=0)
        assert any("EMBER_CONV_GEOM" in k.source for k in engine.kernels.values())
        check_on_gpu(engine, module, f"{name} on {tactic} with its geometry built in")
