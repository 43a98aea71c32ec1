"""Split-K tactics (ember_gemm.cuh `split_block`, codegen/ops/heavy.py `SPLIT_K`): a product of
one batch whose tensor-core tiles leave most multiprocessors idle is split along k; each part
stores partial sums, the last part of a tile adds them in order and runs the epilogue.

They are off (`heavy.SPLIT_K`) until the GPU tests here have passed on a device; every test
turns them on. On the CPU: which products get them and the heuristic's pick, that the chosen
split sets the grid's z and sizes the work and counter scratch, that tactics which do not split
keep their kernels, and that every split kernel compiles for sm_80 and sm_90 (and, through the
SIMT fallback, sm_75) with no warning. On the GPU: each split against the interpreter at odd
sizes (K not a multiple of the slab, M and N past the tile edges, one row), with a fused
epilogue, and run twice on one context (the counters must start from zero every run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ember
import ember.codegen.ops.heavy as heavy
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.ir.builder import Builder
from ember.ir.types import DType, bf16, f16, f32
from ember.tolerance import assert_close
from kernel_checks import gpu_available, rand

SMS = heavy.DEFAULT_SMS


@pytest.fixture(autouse=True)
def split_k(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "SPLIT_K", True)


def linear(m: int, k: int, n: int, dt: DType = f16, epilogue: bool = False) -> Builder:
    b = Builder("linear")
    x, w = b.input("x", dt[(m, k)]), b.input("w", dt[(k, n)])
    y = b.matmul(x, w)
    if epilogue:  # bias, residual and gelu after the sum, as BERT's layers
        y = b.gelu(b.add(b.add(y, b.input("bias", dt[(n,)])), b.input("res", dt[(m, n)])))
    b.output("y", y)
    return b


def conv(c: int, hw: int, k: int, dt: DType = f16) -> Builder:
    b = Builder("conv")
    x, w = b.input("x", dt[(1, hw, hw, c)]), b.input("w", dt[(k, 3, 3, c)])
    bias = b.input("bias", dt[(k,)])
    b.output("y", b.relu(b.conv(x, w, bias, pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI")))
    return b


CASES = {
    "bert-attention-output": lambda: linear(128, 768, 768),
    "bert-ffn-down-fused": lambda: linear(128, 3072, 768, epilogue=True),
    "k-tail": lambda: linear(70, 1000, 130),
    "one-row-bf16": lambda: linear(1, 2048, 200, bf16),
    "resnet-last-conv": lambda: conv(512, 7, 512),
    "conv-bf16-odd": lambda: conv(72, 5, 96, bf16),
}


def heavy_step(program):
    (step,) = [s for s in program.steps if s.kind == "launch" and s.tactic is not None]
    return step


def splits_of(candidates) -> list[int]:
    return sorted(heavy.split_name(c.split("implicit-gemm/")[-1])[1] for c in candidates
                  if heavy.split_name(c)[1] > 1)


# -- CPU ------------------------------------------------------------------------------------------
def test_the_heuristic_splits_small_products_and_not_large_or_shallow_ones() -> None:
    assert heavy.split_candidates(128, 768, 768, 1, SMS) == (4, [2, 4])         # 24 tiles, 24 slabs
    assert heavy.split_candidates(128, 768, 3072, 1, SMS) == (8, [2, 4, 8, 16])  # 96 slabs
    assert heavy.split_candidates(49, 512, 4608, 1, SMS)[0] == 16                # 8 tiles, 144 slabs
    assert heavy.split_candidates(2048, 2048, 4096, 1, SMS) == (1, [])           # fills the GPU
    assert heavy.split_candidates(128, 768, 200, 1, SMS) == (1, [])              # 7 slabs: too shallow
    assert heavy.split_candidates(128, 768, 768, 3, SMS) == (1, [])              # batched
    heavy.SPLIT_K = False
    assert heavy.split_candidates(128, 768, 768, 1, SMS) == (1, [])


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_split_tactic_sets_the_grid_and_its_scratch(name: str) -> None:
    module = CASES[name]().build()
    step = heavy_step(lower(module))
    splits = splits_of(step.candidates)
    assert splits, step.candidates
    for s in splits:
        tactic = next(c for c in step.candidates if c.endswith(f"/split{s}"))
        program = lower(module, tactics={step.ops[0]: tactic})
        chosen = heavy_step(program)
        tiles = chosen.grid[0] * chosen.grid[1]
        assert chosen.grid[2] == s
        scratch = [a.value for a in chosen.args if a.kind == "scratch"]
        assert scratch == [4 * s * tiles * 64 * 64, 4 * tiles]
        assert f", {s}>(" in program.kernels[chosen.kernel].source


def test_tactics_that_do_not_split_keep_their_grid_and_no_scratch() -> None:
    module = CASES["bert-attention-output"]().build()
    step = heavy_step(lower(module))
    program = lower(module, tactics={step.ops[0]: "mma64x64x32/32x16"})
    chosen = heavy_step(program)
    assert chosen.grid == (2, 12, 1) and all(a.value == 0 for a in chosen.args if a.kind == "scratch")


def test_the_kernels_compile_for_their_targets(kernel_cache: Path) -> None:
    kernels = []
    for name in sorted(CASES):
        module = CASES[name]().build()
        step = heavy_step(lower(module))
        for s in splits_of(step.candidates):
            tactic = next(c for c in step.candidates if c.endswith(f"/split{s}"))
            kernels += list(lower(module, tactics={step.ops[0]: tactic}).kernels.values())
    assert len(kernels) >= 10
    Compiler(("sm_75", "sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(kernels)


def test_f32_products_are_not_split() -> None:
    step = heavy_step(lower(linear(128, 768, 768, f32).build()))
    assert splits_of(step.candidates) == []


# -- GPU ------------------------------------------------------------------------------------------
def split_tactics() -> list[tuple[str, int]]:
    out = []
    heavy.SPLIT_K = True
    try:
        for name in sorted(CASES):
            step = heavy_step(lower(CASES[name]().build()))
            out += [(name, s) for s in splits_of(step.candidates)]
    finally:
        heavy.SPLIT_K = False
    return out


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name,splits", split_tactics())
def test_split_products_match_the_interpreter_on_the_gpu(name: str, splits: int, tmp_path: Path) -> None:
    module = CASES[name]().build()
    step = heavy_step(lower(module))
    tactic = next(c for c in step.candidates if c.endswith(f"/split{splits}"))
    engine = ember.compile(module, pipeline="canonicalize,fuse-epilogue", tactics={step.ops[0]: tactic},
                           cache_dir=tmp_path / "cache")
    ctx = engine.create_context("cuda", poison=True)
    for _ in range(2):  # the counters start from zero every run
        feeds = {v.name: rand(np.random.default_rng(), v.type, 0.05, 1.0) for v in module.main.inputs}
        expected = ember.interpret(module, feeds)
        got = ctx.run(feeds)
        for out, ref in expected.items():
            assert_close(np.asarray(got[out]), np.asarray(ref), what=f"{name} on {tactic}: {out}")
    ctx.close()
