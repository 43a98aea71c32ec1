"""The fp8 kernels (codegen/ops/fp8.py, include/ember_fp8.cuh) of ember.fp8_matmul and ember.fp8_conv.

On the CPU: which tactics each shape gets (the tensor-core tiles where they read 16 bytes at a
time, the direct kernel everywhere), that every kernel compiles with NVRTC for sm_80 and sm_90
(no warnings) and, through the SIMT loop over the tile, for sm_75; that the fp8 tensor-core
instruction is in the sm_90 code and not in the sm_80 code (which widens to f16 instead); that
fused epilogues join the fp8 kernel; that engines run on the host arena as the interpreter
computes.

On the GPU (-m gpu): every tactic of every case, at odd, unaligned and tiny shapes, e4m3 and
e5m2 operands, f32, f16 and bf16 results, on fresh random inputs with the arena poisoned first:
the f32 accumulators (unit scales) and the full epilogue (scales per channel, bias, relu)
against the interpreter within the fp8 accumulation tolerance (tolerance.py FP8_ACCUMULATION);
the same engines built for sm_80 alone (their PTX, JIT-compiled on the device: the f16-widening
path); and device inputs that are not 16-byte aligned."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import ml_dtypes
import numpy as np
import pytest

import ember
from ember import ir
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.ir.ops.fp8 import accumulators
from ember.tolerance import fp8_tolerance
from ember.tolerance import compare as within
from kernel_checks import gpu_available

F = np.float32
E4, E5 = "f8e4m3fn", "f8e5m2"
Build = Callable[[bool], ir.Module]   # full epilogue (True) or unit scales that expose the accumulators
TILES = ("mma128x128x64/64x32", "mma128x128x32/64x32", "mma64x64x64/32x16")


def fp8(values: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray(values, F).astype(ir.dtype(dtype).np_dtype)


def random_fp8(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Values spread over e4m3's range (and e5m2's low part), subnormals and zeros among them."""
    v = rng.standard_normal(shape) * np.exp2(rng.integers(-10, 5, shape))
    v[rng.random(shape) < 0.05] = 0.0
    return fp8(v, dtype)


def _epilogue(b: ir.Builder, rng: np.random.Generator, channels: int, full: bool) -> tuple[Any, ...]:
    """x_scale, w_scale, bias operands."""
    if not full:
        return b.constant(F(1.0)), b.constant(F(1.0)), None
    return (b.constant(F(rng.uniform(0.01, 0.05))), b.constant(rng.uniform(0.001, 0.01, channels).astype(F)),
            b.constant(rng.standard_normal(channels).astype(F)))


def matmul(x_shape: tuple[int, ...], n: int, xt: str = E4, wt: str = E4, out: str = "f16") -> Build:
    def build(full: bool) -> ir.Module:
        rng = np.random.default_rng(len(x_shape) * 1000 + n)
        b = ir.Builder("fp8_matmul")
        x = b.input("x", ir.dtype(xt)[x_shape])
        w = b.weight("w", random_fp8(rng, (n, x_shape[-1]), wt))
        y = b.fp8_matmul(x, w, *_epilogue(b, rng, n, full), relu=full, dtype=ir.dtype(out if full else "f32"))
        b.output("y", y)
        return b.build()
    return build


def conv(x_shape: tuple[int, ...], w_shape: tuple[int, ...], layout: str = "NHWC", xt: str = E4, wt: str = E4,
         out: str = "f16", **attrs: Any) -> Build:
    def build(full: bool) -> ir.Module:
        rng = np.random.default_rng(sum(x_shape) + 7 * sum(w_shape))
        b = ir.Builder("fp8_conv")
        x = b.input("x", ir.dtype(xt)[x_shape])
        w = b.weight("w", random_fp8(rng, w_shape, wt))
        extra = {} if layout.startswith("NC") else {"layout": layout, "weight_layout": "O" + layout[1:-1] + "I"}
        y = b.fp8_conv(x, w, *_epilogue(b, rng, w_shape[0], full), relu=full, dtype=ir.dtype(out if full else "f32"),
                       **extra, **attrs)
        b.output("y", y)
        return b.build()
    return build


CASES: dict[str, Build] = {
    "matmul-1x16x1": matmul((1, 16), 1),
    "matmul-17x48x23-e5m2": matmul((17, 48), 23, xt=E5, wt=E5, out="bf16"),
    "matmul-batched-2x3x33x64x40-mixed": matmul((2, 3, 33, 64), 40, xt=E4, wt=E5),
    "matmul-130x272x257-f32": matmul((130, 272), 257, out="f32"),
    "matmul-300x1040x260-big": matmul((300, 1040), 260, xt=E5, wt=E4),
    "matmul-k20-direct": matmul((9, 20), 11, xt=E5, wt=E4),
    "matmul-k3-tiny": matmul((2, 3), 2),
    "conv-nhwc-16-pad": conv((2, 7, 5, 16), (24, 3, 3, 16), pads=(1, 1, 1, 1)),
    "conv-nhwc-32-strided-dilated-e5m2": conv((1, 11, 9, 32), (8, 3, 3, 32), xt=E5, wt=E5, strides=(2, 1),
                                              dilations=(1, 2), pads=(2, 1, 0, 1)),
    "conv-nhwc-1x1-48-80-f32": conv((3, 4, 4, 48), (80, 1, 1, 48), out="f32"),
    "conv-nhwc-same-upper-bf16": conv((1, 6, 7, 16), (16, 3, 3, 16), out="bf16", auto_pad="SAME_UPPER",
                                      strides=(2, 2)),
    "conv-nhwc-cin3-direct": conv((2, 9, 9, 3), (8, 3, 3, 3), pads=(1, 1, 1, 1)),
    "conv-nchw-direct": conv((1, 16, 6, 6), (8, 16, 3, 3), layout="NCHW", pads=(1, 1, 1, 1)),
    "conv-nhwc-depthwise-direct": conv((1, 6, 6, 32), (32, 3, 3, 1), pads=(1, 1, 1, 1), group=32),
    "conv-1d-nwc-mixed": conv((2, 9, 16), (8, 3, 16), layout="NWC", xt=E5, wt=E4, pads=(1, 1)),
}
MMA_CASES = {"matmul-1x16x1", "matmul-17x48x23-e5m2", "matmul-batched-2x3x33x64x40-mixed", "matmul-130x272x257-f32",
             "matmul-300x1040x260-big", "conv-nhwc-16-pad", "conv-nhwc-32-strided-dilated-e5m2",
             "conv-nhwc-1x1-48-80-f32", "conv-nhwc-same-upper-bf16", "conv-1d-nwc-mixed"}


def heavy_step(module: ir.Module) -> Any:
    (step,) = [s for s in lower(module).steps if s.kind == "launch" and s.tactic is not None]
    return step


def feeds_for(module: ir.Module, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {name: random_fp8(rng, tuple(v.type.shape), v.type.dtype.name)
            for name, v in zip(module.main.input_names, module.main.inputs)}


# -- CPU ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_tiles_take_what_they_read_16_bytes_at_a_time(name: str) -> None:
    step = heavy_step(CASES[name](True))
    if name in MMA_CASES:
        assert step.tactic.startswith("mma") and set(step.candidates) == {*TILES, "direct"}, step.candidates
    else:
        assert step.candidates == ("direct",), step.candidates


def test_the_deep_tile_where_it_fills_the_gpu() -> None:
    assert heavy_step(matmul((2048, 64), 2048)(True)).tactic == "mma128x128x64/64x32"
    assert heavy_step(matmul((256, 64), 256)(True)).tactic == "mma64x64x64/32x16"


def test_the_kernels_say_what_they_compute() -> None:
    """Template flags (tile, relu, per-channel scales, paired stores) and the operands' fp8 types."""
    (kernel,) = lower(CASES["conv-nhwc-16-pad"](True)).kernels.values()
    assert "ember::fp8::conv<ember::fp8::Mma<64, 64, 64, 32, 16>, true, true, true, int>(" in kernel.source
    assert "const __nv_fp8_e4m3* __restrict__ x" in kernel.source
    assert "ember::int8::Store<__half>{out}" in kernel.source   # a lone op: two channels a store
    (kernel,) = lower(CASES["conv-nhwc-1x1-48-80-f32"](False)).kernels.values()
    assert "ember::fp8::conv<ember::fp8::Mma<64, 64, 64, 32, 16>, false, false, true, int>(" in kernel.source
    assert "ember::int8::Store<float>{out}" in kernel.source
    (kernel,) = lower(CASES["conv-nchw-direct"](True)).kernels.values()
    assert "ember::fp8::conv_direct<false, true, true, int>(" in kernel.source
    (kernel,) = lower(CASES["matmul-k20-direct"](True)).kernels.values()
    assert "const __nv_fp8_e5m2* __restrict__ x" in kernel.source and "const __nv_fp8_e4m3* __restrict__ w" \
        in kernel.source


# (case, full epilogue, tactic): every template and each flag both ways (relu, per-channel or one
# scale, paired stores), every tile, e4m3/e5m2 each way round, f32/f16/bf16 results, the direct kernels;
# the fused-epilogue form (per-element functor stores, no pairs) compiles in the residual block's test
COMPILED = [("matmul-17x48x23-e5m2", True, "mma64x64x64/32x16"), ("matmul-130x272x257-f32", False, TILES[1]),
            ("matmul-batched-2x3x33x64x40-mixed", True, TILES[0]), ("matmul-300x1040x260-big", True, TILES[0]),
            ("conv-nhwc-16-pad", True, "mma64x64x64/32x16"), ("conv-nhwc-1x1-48-80-f32", False, TILES[1]),
            ("conv-nhwc-same-upper-bf16", True, TILES[0]), ("matmul-k20-direct", True, "direct"),
            ("conv-nchw-direct", True, "direct")]


def test_every_fp8_kernel_compiles_for_its_targets(kernel_cache: Path) -> None:
    """Kernels covering every template and flag, for sm_80 and sm_90, warnings as errors; one tile
    for sm_75 too (the SIMT loop over the tile in the same kernel). The fp8 mma is in the sm_90
    code only; sm_80's widens the fragments to f16 (its m16n8k16)."""
    kernels = {}
    for name, full, tactic in COMPILED:
        module = CASES[name](full)
        kernels.update(lower(module, tactics={heavy_step(module).ops[0]: tactic}).kernels)
    assert len(kernels) == len(COMPILED)
    sources = "\n".join(k.source for k in kernels.values())
    for flags in ("true, true, true, int>(", "false, false, true, int>("):
        assert flags in sources, flags
    Compiler(("sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(kernels.values())
    module = CASES["conv-nhwc-16-pad"](True)
    Compiler(("sm_75",), cache_dir=kernel_cache, jobs=2).compile_all(lower(module).kernels.values())


def test_the_fp8_mma_is_compiled_only_for_targets_that_have_it(kernel_cache: Path) -> None:
    """The PTX of each target: m16n8k32 e4m3 where __CUDA_ARCH__ >= 890, two f16 m16n8k16 on sm_80."""
    for name, pair in (("conv-nhwc-16-pad", "e4m3.e4m3"), ("matmul-batched-2x3x33x64x40-mixed", "e4m3.e5m2")):
        (kernel,) = lower(CASES[name](True)).kernels.values()
        ptx90, ptx80 = (Compiler((t,), cache_dir=kernel_cache).compile(kernel).ptx.decode() for t in ("sm_90", "sm_80"))
        assert f"mma.sync.aligned.m16n8k32.row.col.f32.{pair}.f32" in ptx90 and "f16.f16" not in ptx90
        assert "m16n8k32" not in ptx80 and "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" in ptx80


def fp8_residual_block() -> tuple[ir.Module, dict[str, np.ndarray]]:
    """An fp8 conv whose f32 result is cast to f16 and added to a residual: one kernel, its
    functor doing the cast and the add."""
    rng = np.random.default_rng(21)
    b = ir.Builder("fp8_block")
    x = b.input("x", ir.f8e4m3fn[2, 6, 6, 16])
    r = b.input("r", ir.f16[2, 6, 6, 16])
    w = b.weight("w", random_fp8(rng, (16, 3, 3, 16), E4))
    y = b.fp8_conv(x, w, b.constant(F(0.03)), b.constant(rng.uniform(0.001, 0.004, 16).astype(F)),
                   b.constant(rng.standard_normal(16).astype(F)), pads=(1, 1, 1, 1), layout="NHWC",
                   weight_layout="OHWI")
    b.output("y", b.add(b.cast(y, to=ir.f16), r))
    feeds = {"x": random_fp8(rng, (2, 6, 6, 16), E4), "r": rng.standard_normal((2, 6, 6, 16)).astype(np.float16)}
    return b.build(), feeds


def test_an_fp8_conv_takes_its_epilogue_into_its_kernel(kernel_cache: Path) -> None:
    module, feeds = fp8_residual_block()
    engine = ember.compile(module, targets=("sm_80", "sm_90"), cache_dir=kernel_cache)
    assert engine.report.host_ops == []
    (kernel,) = [k for k in engine.kernels.values() if k.name.startswith("fp8_conv")]
    assert len(engine.kernels) == 1 and "ember.add" in kernel.source and "const Epi epi{" in kernel.source
    got = engine.run(feeds, device="cpu")["y"]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, ir.interpret(module, feeds)["y"])


@pytest.mark.parametrize("name", ["matmul-batched-2x3x33x64x40-mixed", "conv-nhwc-32-strided-dilated-e5m2",
                                  "conv-nchw-direct"])
def test_fp8_engines_run_on_the_host_arena_as_the_interpreter_computes(name: str, kernel_cache: Path) -> None:
    module = CASES[name](True)
    feeds = feeds_for(module, np.random.default_rng(0))
    engine = ember.compile(module, pipeline="", targets=("sm_80",), cache_dir=kernel_cache)
    assert engine.report.host_ops == [] and engine.host_steps == 0
    np.testing.assert_array_equal(engine.run(feeds, device="cpu")["y"], ir.interpret(module, feeds)["y"])


# -- GPU ------------------------------------------------------------------------------------
def cases_with_tactics() -> list[tuple[str, str]]:
    out = []
    for name in sorted(CASES):
        tactics = [*TILES, "direct"] if name in MMA_CASES else ["direct"]
        out += [(name, t) for t in tactics]
    return out


def operand_array(module: ir.Module, v: Any, feeds: dict[str, np.ndarray]) -> np.ndarray | None:
    """An operand's value: the input fed, a constant's or a weight's data, or None (absent)."""
    if v is None:
        return None
    if v.defining_op is None:
        return feeds[module.main.input_names[list(module.main.inputs).index(v)]]
    if v.defining_op.name == "ember.constant":
        return np.asarray(v.defining_op.attributes["value"].array)
    return np.asarray(module.weights[v.defining_op.attributes["name"]].data)


def test_the_accumulators_the_gpu_tests_compare_with_are_the_ops_sums() -> None:
    """What the GPU tests compare the unit-scale kernels with: the f32 result of unit scales is the
    interpreter's accumulators, and those are the exact sums (in Python's integers, scaled)."""
    for name in ("matmul-batched-2x3x33x64x40-mixed", "conv-nhwc-32-strided-dilated-e5m2", "conv-nchw-direct"):
        module = CASES[name](False)
        feeds = feeds_for(module, np.random.default_rng(1))
        op = next(o for o in module.main.body.ops if o.name.startswith("ember.fp8_"))
        acc = accumulators(op, [operand_array(module, v, feeds) for v in op.operands])
        assert acc.dtype == np.float32 and np.abs(acc).max() > 0
        np.testing.assert_array_equal(ir.interpret(module, feeds)["y"], acc)


def _gpu_engine(module: ir.Module, tactic: str, tmp_path: Path, targets: tuple[str, ...] = ("sm_80", "sm_90")) -> Any:
    step = heavy_step(module)
    engine = ember.compile(module, pipeline="", tactics={step.ops[0]: tactic}, targets=targets,
                           cache_dir=tmp_path / "cache")
    return engine.create_context("cuda", poison=True, graphs=False)


def _check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, what
    rtol, atol = fp8_tolerance(want.dtype)
    result = within(got, want, rtol=rtol, atol=atol)
    assert result, f"{what}: {result.message}"


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name,tactic", cases_with_tactics())
def test_the_accumulators_are_the_interpreters_on_the_gpu(name: str, tactic: str, tmp_path: Path) -> None:
    """Unit scales, no bias, f32 results: the accumulators, within the fp8 accumulation tolerance."""
    module = CASES[name](False)
    ctx = _gpu_engine(module, tactic, tmp_path)
    op = next(o for o in module.main.body.ops if o.name.startswith("ember.fp8_"))
    for seed in (None, None):
        feeds = feeds_for(module, np.random.default_rng(seed))
        acc = accumulators(op, [operand_array(module, v, feeds) for v in op.operands])
        _check(np.asarray(ctx.run(feeds)["y"]), acc, f"{name} on {tactic}")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name,tactic", cases_with_tactics())
def test_the_epilogue_is_the_interpreters_on_the_gpu(name: str, tactic: str, tmp_path: Path) -> None:
    """Per-channel scales, bias, relu, f16/bf16/f32 results."""
    module = CASES[name](True)
    ctx = _gpu_engine(module, tactic, tmp_path)
    for seed in (None, None):
        feeds = feeds_for(module, np.random.default_rng(seed))
        _check(np.asarray(ctx.run(feeds)["y"]), ir.interpret(module, feeds)["y"], f"{name} on {tactic}")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", sorted(MMA_CASES))
def test_the_sm80_path_is_the_interpreters_on_the_gpu(name: str, tmp_path: Path) -> None:
    """An engine for sm_80 alone: on a newer GPU its PTX is compiled for it as sm_80 code (the
    f16-widening path of the tiles), which must compute what sm_90's fp8 mma does."""
    module = CASES[name](True)
    for tactic in TILES:
        ctx = _gpu_engine(module, tactic, tmp_path, targets=("sm_80",))
        feeds = feeds_for(module, np.random.default_rng())
        _check(np.asarray(ctx.run(feeds)["y"]), ir.interpret(module, feeds)["y"], f"{name} on {tactic} (sm_80)")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", ["matmul-130x272x257-f32", "conv-nhwc-16-pad"])
def test_misaligned_device_inputs_take_the_staged_form(name: str, tmp_path: Path) -> None:
    """An fp8 input that starts 3 bytes past a 16-byte boundary: the tiles check the pointers and
    stage through registers instead of cp.async."""
    import torch
    module = CASES[name](True)
    feeds = feeds_for(module, np.random.default_rng())
    engine = ember.compile(module, pipeline="", cache_dir=tmp_path / "cache")
    x = feeds["x"]
    flat = torch.empty(x.size + 3, dtype=torch.uint8, device="cuda")[3:]
    flat.copy_(torch.from_numpy(x.view(np.uint8).ravel()))
    assert flat.data_ptr() % 16 != 0
    got = engine.run({"x": flat.view(torch.float8_e4m3fn).view(x.shape)})["y"]
    _check(got.float().cpu().numpy().astype(got_dtype(module)), ir.interpret(module, feeds)["y"], name)


def got_dtype(module: ir.Module) -> Any:
    return module.main.outputs[0].type.dtype.np_dtype


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_an_fp8_residual_block_matches_its_host_arena_run_on_the_gpu(tmp_path: Path) -> None:
    module, feeds = fp8_residual_block()
    engine = ember.compile(module, cache_dir=tmp_path / "cache")
    ctx = engine.create_context("cuda", poison=True, graphs=False)
    on_gpu = np.asarray(ctx.run(feeds)["y"])
    _check(on_gpu, np.asarray(engine.run(feeds, device="cpu")["y"]), "fp8 residual block")


def test_random_fp8_values_cover_subnormals_zeros_and_both_signs() -> None:
    v = random_fp8(np.random.default_rng(0), (4096,), E4).astype(F)
    tiny = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).smallest_normal)
    assert (v == 0).any() and ((np.abs(v) < tiny) & (v != 0)).any() and (v < 0).any() and np.isfinite(v).all()


# -- the sm_80 path's f16 widening, replayed in numpy ----------------------------------------
def widen2(two: int, e4m3: bool) -> tuple[int, int]:
    """ember_fp8.cuh `widen2`: the two f16 codes (low, high half) of fp8 codes in bits 0-7, 8-15."""
    out = []
    for b in (two & 0xFF, (two >> 8) & 0xFF):
        if e4m3:
            h = ((b & 0x80) << 8) | ((b & 0x7F) << 7)
            out.append(h | 0x7E00 if (b & 0x7F) == 0x7F else h)
        else:
            out.append(b << 8)
    return out[0], out[1]


@pytest.mark.parametrize("fmt", [E4, E5])
def test_the_f16_widening_is_exact_for_every_code(fmt: str) -> None:
    """Every fp8 code becomes the f16 of its value (e5m2), or of its value times 2^-8 (e4m3); NaN
    stays NaN (the accumulators are scaled back by 2^8 per e4m3 operand)."""
    e4m3 = fmt == E4
    codes = np.arange(256, dtype=np.uint8)
    values = codes.view(ir.dtype(fmt).np_dtype).astype(np.float64)
    halves = np.array([widen2(int(c), e4m3)[0] for c in codes], np.uint16).view(np.float16).astype(np.float64)
    with np.errstate(invalid="ignore"):
        scaled = halves * (256.0 if e4m3 else 1.0)
    nan = np.isnan(values)
    assert (np.isnan(scaled) == nan).all()
    np.testing.assert_array_equal(scaled[~nan], values[~nan])
    assert (np.signbit(scaled[~nan]) == np.signbit(values[~nan])).all()   # -0.0 stays -0.0


@pytest.mark.parametrize("xt,wt", [(E4, E4), (E5, E4), (E4, E5)])
def test_the_widened_fragments_multiply_the_same_products(xt: str, wt: str) -> None:
    """The m16n8k32 fp8 fragments (PTX's 8-bit layout: lane 4g + t holds A rows g and g + 8 at
    k = 4t .. 4t + 3 and 16 + 4t ..; B column g at the same k) widened per ember_fp8.cuh `mma_fp8`
    and read back through m16n8k16's f16 layout (k = 2t, 2t + 1, 2t + 8, 2t + 9): the two f16
    products add up to the fp8 product, exactly."""
    rng = np.random.default_rng(9)
    a = random_fp8(rng, (16, 32), xt).view(np.uint8).astype(np.int64)
    b = random_fp8(rng, (32, 8), wt).view(np.uint8).astype(np.int64)

    def reg(bytes4: list[int]) -> int:
        return sum(int(v) << (8 * i) for i, v in enumerate(bytes4))

    a16 = {h: np.zeros((16, 16)) for h in ("lo", "hi")}
    b16 = {h: np.zeros((16, 8)) for h in ("lo", "hi")}

    def f16(code: int) -> float:
        return float(np.array([code], np.uint16).view(np.float16)[0])

    for lane in range(32):
        g, t = lane >> 2, lane & 3
        ar = [reg([a[g if r in (0, 2) else g + 8, 4 * t + q + (16 if r >= 2 else 0)] for q in range(4)])
              for r in range(4)]
        br = [reg([b[4 * t + q + (16 if r else 0), g] for q in range(4)]) for r in range(2)]
        for half, (r0, r1), bw in (("lo", (ar[0], ar[1]), br[0]), ("hi", (ar[2], ar[3]), br[1])):
            regs = [widen2(r0, xt == E4), widen2(r1, xt == E4), widen2(r0 >> 16, xt == E4),
                    widen2(r1 >> 16, xt == E4)]
            for i in range(8):   # m16n8k16 A: a_i in register i // 2, half i % 2
                row = g if i in (0, 1, 4, 5) else g + 8
                col = 2 * t + (i & 1) + (8 if i >= 4 else 0)
                a16[half][row, col] = f16(regs[i // 2][i % 2])
            bregs = [widen2(bw, wt == E4), widen2(bw >> 16, wt == E4)]
            for i in range(4):   # m16n8k16 B: b_i in register i // 2
                b16[half][2 * t + (i & 1) + (8 if i >= 2 else 0), g] = f16(bregs[i // 2][i % 2])
    back = (256.0 if xt == E4 else 1.0) * (256.0 if wt == E4 else 1.0)
    widened = (a16["lo"] @ b16["lo"] + a16["hi"] @ b16["hi"]) * back
    want = a.astype(np.uint8).view(ir.dtype(xt).np_dtype).astype(np.float64) @ \
        b.astype(np.uint8).view(ir.dtype(wt).np_dtype).astype(np.float64)
    np.testing.assert_array_equal(widened, want)
