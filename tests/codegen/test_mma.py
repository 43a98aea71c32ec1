"""The tensor-core tiles (ember_gemm.cuh `MmaTile`: mma.sync m16n8k16, f32 accumulation) of
f16 and bf16 matmul, gemm, einsum and convolution.

On the CPU: which products get them (every operand f16, or every one bf16), the heuristic's
pick by size, and that every tile compiles for sm_80 and sm_90 and, through its SIMT fallback,
for sm_75. On the GPU: each tile, forced by `tactics=`, against the interpreter at odd,
unaligned and tiny shapes, every operand layout (k-major or not), batched products, grouped
NCHW and NHWC convolutions and a fused epilogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ember
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.codegen.ops.heavy import MMA_TILES
from ember.ir.builder import Builder
from ember.ir.types import DType, bf16, f16, f32, f64
from ember.tolerance import assert_close
from kernel_checks import gpu_available, misaligned_on_gpu, rand

MMA = sorted(MMA_TILES)
Build = Callable[[], Builder]


def matmul(sa: tuple[int, ...], sb: tuple[int, ...], dt: DType = f16, dtb: DType | None = None) -> Builder:
    b = Builder("mm")
    x, w = b.input("a", dt[sa]), b.input("b", (dtb or dt)[sb])
    b.output("y", b.matmul(x, w))
    return b


def gemm(m: int, n: int, k: int, ta: bool, tb: bool, dt: DType = f16, bias_relu: bool = False) -> Builder:
    b = Builder("gemm")
    x = b.input("a", dt[(k, m) if ta else (m, k)])
    w = b.input("b", dt[(n, k) if tb else (k, n)])
    c = b.input("c", dt[(n,)])
    y = b.gemm(x, w, c, trans_a=ta, trans_b=tb, alpha=0.5, beta=2.0)
    b.output("y", b.relu(y) if bias_relu else y)
    return b


def conv(xs: tuple[int, ...], ws: tuple[int, ...], dt: DType = f16, layout: str = "NCHW", groups: int = 1,
         strides: tuple[int, int] = (1, 1), pads: tuple[int, int, int, int] = (1, 1, 1, 1)) -> Builder:
    b = Builder("conv")
    x, w = b.input("x", dt[xs]), b.input("w", dt[ws])
    bias = b.input("bias", dt[(ws[0],)])
    wl = "OIHW" if layout == "NCHW" else "OHWI"
    b.output("y", b.conv(x, w, bias, strides=strides, pads=pads, group=groups, layout=layout, weight_layout=wl))
    return b


CASES: dict[str, Build] = {
    "matmul-1x1x1": lambda: matmul((1, 1), (1, 1)),
    "matmul-vector-row": lambda: matmul((1, 77), (77, 45)),
    "matmul-17x23x19": lambda: matmul((17, 19), (19, 23)),
    "matmul-130x257x300": lambda: matmul((130, 300), (300, 257)),
    "matmul-bf16-130x257x300": lambda: matmul((130, 300), (300, 257), bf16),
    "matmul-batched-heads": lambda: matmul((2, 3, 33, 40), (2, 3, 40, 47)),
    "matmul-broadcast-batch": lambda: matmul((2, 1, 9, 64), (3, 64, 31), bf16),
    "matmul-big-tiles": lambda: matmul((520, 96), (96, 392)),
    "matmul-vector-reads": lambda: matmul((3, 72, 64), (64, 200)),
    "matmul-vector-a-only": lambda: matmul((40, 64), (64, 20), bf16),
    "gemm-nn": lambda: gemm(33, 47, 29, False, False),
    "gemm-nt": lambda: gemm(33, 47, 29, False, True),
    "gemm-tn": lambda: gemm(33, 47, 29, True, False, bf16),
    "gemm-tt-bias-relu": lambda: gemm(65, 130, 70, True, True, bias_relu=True),
    "gemm-tt-vector-reads": lambda: gemm(64, 136, 48, True, True, bias_relu=True),
    "gemm-tn-vector-reads": lambda: gemm(200, 40, 56, True, False),
    "conv-nchw": lambda: conv((2, 3, 9, 11), (16, 3, 3, 3)),
    "conv-nchw-strided-bf16": lambda: conv((1, 20, 13, 13), (24, 20, 3, 3), bf16, strides=(2, 2)),
    "conv-nhwc": lambda: conv((2, 7, 7, 40), (72, 3, 3, 40), layout="NHWC"),
    "conv-nhwc-grouped": lambda: conv((1, 6, 6, 64), (64, 3, 3, 32), layout="NHWC", groups=2),
    "conv-1x1-nhwc": lambda: conv((3, 5, 5, 48), (80, 1, 1, 48), layout="NHWC", pads=(0, 0, 0, 0)),
}


def heavy_launches(program: Any) -> list[Any]:
    return [s for s in program.steps if s.kind == "launch" and s.tactic is not None]


def feeds_for(module: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {v.name: rand(rng, v.type, 0.05, 1.0) for v in module.main.inputs}


# -- CPU ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_half_products_offer_the_tensor_core_tiles_first(name: str) -> None:
    program = lower(CASES[name]().build())
    (step,) = heavy_launches(program)
    assert step.tactic.split("/")[-2 if name.startswith("conv") else 0].startswith("mma"), step.tactic
    assert {f"implicit-gemm/{t}" if name.startswith("conv") else t for t in MMA} <= set(step.candidates)


@pytest.mark.parametrize("build", [lambda: matmul((64, 64), (64, 64), f32), lambda: matmul((64, 64), (64, 64), f64),
                                   lambda: conv((1, 16, 8, 8), (32, 16, 3, 3), f32)], ids=["f32", "f64", "conv-f32"])
def test_other_products_keep_the_simt_tiles(build: Build) -> None:
    (step,) = heavy_launches(lower(build().build()))
    assert not any("mma" in c for c in step.candidates), step.candidates


VECTOR = {"matmul-vector-reads": (True, True), "matmul-vector-a-only": (True, False), "matmul-17x23x19": (False, False),
          "gemm-tt-vector-reads": (True, True), "gemm-tn-vector-reads": (True, True), "gemm-nt": (False, False),
          "conv-nhwc": (True, True), "conv-nhwc-grouped": (True, True), "conv-1x1-nhwc": (True, True),
          "conv-nchw": (False, False), "conv-nchw-strided-bf16": (False, False)}


@pytest.mark.parametrize("name", sorted(VECTOR))
def test_16_byte_reads_where_strides_and_extents_allow(name: str) -> None:
    program = lower(CASES[name]().build())
    (step,) = heavy_launches(program)
    kernel = program.kernels[step.kernel]
    flags = ["true" if v else "false" for v in VECTOR[name]]
    if all(VECTOR[name]):  # both: the cp.async pipeline (heavy.MMA_PIPELINED)
        flags.append("true")
    assert f"ember::gemm::Tile<64, 64, 16, 4, 4>, {', '.join(flags)}>" in kernel.source, kernel.source[-600:]


def test_the_heuristic_takes_the_big_tile_when_it_fills_the_gpu() -> None:
    (small,) = heavy_launches(lower(matmul((256, 64), (64, 256)).build()))
    (big,) = heavy_launches(lower(matmul((2048, 64), (64, 2048)).build()))
    assert small.tactic == "mma64x64x32/32x16"
    assert big.tactic == "mma128x128x32/64x32"


@pytest.mark.parametrize("tile", MMA)
def test_every_tile_compiles_for_its_targets_and_falls_back_before_sm_80(tile: str, kernel_cache: Path) -> None:
    """Both element types, both operand orders, scalar and 16-byte reads, for sm_80 and sm_90
    (tensor cores) and sm_75 (the SIMT fallback tile in the same kernel)."""
    kernels = []
    for name in ("gemm-nn", "gemm-tn", "gemm-tt-vector-reads", "matmul-vector-reads", "conv-nhwc", "conv-nchw"):
        module = CASES[name]().build()
        (step,) = heavy_launches(lower(module))
        name = next(c for c in step.candidates if c.endswith(tile))
        program = lower(module, tactics={step.ops[0]: name})
        kernels += list(program.kernels.values())
    Compiler(("sm_75", "sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(kernels)


def test_the_cp_async_pipeline_compiles(kernel_cache: Path) -> None:
    """The multistage cp.async form of both tiles (forced, whatever heavy.MMA_PIPELINED) builds for sm_80 and
    sm_90, on a matmul and an NHWC convolution with 16-byte reads on both operands."""
    from dataclasses import replace

    from ember.codegen.cuda_render import render_spec
    from ember.codegen.kernel_spec import MmaTile
    import ember.codegen.ops.heavy as heavy

    rendered = []
    real = heavy.render_spec

    def pipelined(spec):
        targs = tuple(replace(t, pipelined=True) if isinstance(t, MmaTile) else t for t in spec.targs)
        kernel = real(replace(spec, targs=targs))
        rendered.append(kernel)
        return kernel
    heavy.render_spec = pipelined
    try:
        for name in ("matmul-vector-reads", "conv-nhwc"):
            module = CASES[name]().build()
            (step,) = heavy_launches(lower(module))
            for tile in MMA:
                lower(module, tactics={step.ops[0]: next(c for c in step.candidates if c.endswith(tile))})
    finally:
        heavy.render_spec = real
    assert len(rendered) >= 4 and all(", true, true, true>" in k.source for k in rendered)
    assert render_spec is real
    Compiler(("sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(rendered)


# -- GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("tile", MMA)
@pytest.mark.parametrize("name", sorted(CASES))
def test_tile_matches_the_interpreter_on_the_gpu(name: str, tile: str, tmp_path: Path) -> None:
    module = CASES[name]().build()
    (step,) = heavy_launches(lower(module))
    tactic = next(c for c in step.candidates if c.endswith(tile))
    feeds = feeds_for(module, np.random.default_rng())
    expected = ember.interpret(module, feeds)
    engine = ember.compile(module, pipeline="canonicalize", tactics={step.ops[0]: tactic},
                           cache_dir=tmp_path / "cache")
    got = engine.run(feeds, device="cuda")
    for out, ref in expected.items():
        assert_close(np.asarray(got[out]), np.asarray(ref), what=f"{name} on {tactic}: {out}")


PIPELINED = sorted(n for n, (va, vb) in VECTOR.items() if va and vb) + ["matmul-big-tiles"]


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("tile", MMA)
@pytest.mark.parametrize("name", PIPELINED)
def test_the_cp_async_pipeline_matches_the_interpreter_on_the_gpu(name: str, tile: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The multistage cp.async form (the planners take it where heavy.MMA_PIPELINED; this passed on
    an H100 before it was turned on), forced on every tile where both operands take 16-byte reads (elsewhere the tile keeps its
    register-staged form): K tails, zero-filled edges and convolution padding included."""
    from dataclasses import replace

    import ember.codegen.ops.heavy as heavy
    from ember.codegen.kernel_spec import MmaTile
    real = heavy.render_spec
    monkeypatch.setattr(heavy, "render_spec", lambda spec: real(replace(spec, targs=tuple(
        replace(t, pipelined=True) if isinstance(t, MmaTile) else t for t in spec.targs))))
    module = CASES[name]().build()
    (step,) = heavy_launches(lower(module))
    tactic = next(c for c in step.candidates if c.endswith(tile))
    engine = ember.compile(module, pipeline="canonicalize", tactics={step.ops[0]: tactic},
                           cache_dir=tmp_path / "cache")
    assert any(", true, true, true>" in k.source for k in engine.kernels.values()), "not the pipelined form"
    for seed in (None, None):
        feeds = feeds_for(module, np.random.default_rng(seed))
        expected = ember.interpret(module, feeds)
        got = engine.run(feeds, device="cuda")
        for out, ref in expected.items():
            assert_close(np.asarray(got[out]), np.asarray(ref), what=f"{name} on {tactic}, pipelined: {out}")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", ["matmul-vector-reads", "conv-nhwc"])
def test_misaligned_device_inputs_take_the_scalar_form(name: str, tmp_path: Path) -> None:
    """Device arrays that start 2 bytes past a 16-byte boundary: the vector tile checks the
    pointers and runs its scalar form."""
    module = CASES[name]().build()
    feeds = feeds_for(module, np.random.default_rng())
    expected = ember.interpret(module, feeds)
    engine = ember.compile(module, pipeline="canonicalize", cache_dir=tmp_path / "cache")
    got = engine.run(misaligned_on_gpu(feeds))
    for out, ref in expected.items():
        ref = np.asarray(ref)
        y = got[out].float().cpu().numpy() if hasattr(got[out], "cpu") else np.asarray(got[out])
        assert_close(y.astype(ref.dtype), ref, what=f"{name} misaligned: {out}")   # by the f16 rule


# -- dynamic stages (heavy.MMA_DYNAMIC_STAGES) ---------------------------------------------------
def test_dynamic_stages_take_the_big_tile_past_two_static_stages(monkeypatch: pytest.MonkeyPatch,
                                                                kernel_cache: Path) -> None:
    """With MMA_DYNAMIC_STAGES the pipelined 128x128 tile (20 KB a stage) takes its stages from the
    launch's dynamic shared memory, and the launch asks for them; the 64x64 tile (four static
    stages fit) and unpipelined tiles keep static memory. Every such kernel builds for sm_75 (the
    fallback), sm_80 and sm_90."""
    import ember.codegen.ops.heavy as heavy
    monkeypatch.setattr(heavy, "MMA_DYNAMIC_STAGES", 4)
    kernels = []
    for name in ("matmul-vector-reads", "conv-nhwc", "matmul-17x23x19"):
        module = CASES[name]().build()
        (step,) = heavy_launches(lower(module))
        for tile in MMA:
            program = lower(module, tactics={step.ops[0]: next(c for c in step.candidates if c.endswith(tile))})
            (chosen,) = heavy_launches(program)
            source = program.kernels[chosen.kernel].source
            dynamic = tile.startswith("mma128") and all(VECTOR.get(name, (True, True)))
            assert (", true, true, true, 4>" in source) == dynamic, source[-400:]
            assert chosen.shared == (4 * 2 * (128 * 40 + 128 * 40) if dynamic else 0), chosen.shared
            kernels += list(program.kernels.values())
    Compiler(("sm_75", "sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(kernels)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", PIPELINED)
def test_dynamic_stages_match_the_interpreter_on_the_gpu(name: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The 128x128 tile with four stages of dynamic shared memory (80 KB, past the 48 KB opt-in),
    twice on one context, K tails, zero-filled edges and convolution padding included."""
    import ember.codegen.ops.heavy as heavy
    monkeypatch.setattr(heavy, "MMA_DYNAMIC_STAGES", 4)
    module = CASES[name]().build()
    (step,) = heavy_launches(lower(module))
    tactic = next(c for c in step.candidates if c.endswith("mma128x128x32/64x32"))
    engine = ember.compile(module, pipeline="canonicalize", tactics={step.ops[0]: tactic},
                           cache_dir=tmp_path / "cache")
    assert any(", true, true, true, 4>" in k.source for k in engine.kernels.values()), "not the dynamic form"
    ctx = engine.create_context("cuda", poison=True)
    for _ in range(2):
        feeds = feeds_for(module, np.random.default_rng())
        expected = ember.interpret(module, feeds)
        got = ctx.run(feeds)
        for out, ref in expected.items():
            assert_close(np.asarray(got[out]), np.asarray(ref), what=f"{name} on {tactic}, dynamic stages: {out}")
    ctx.close()
