"""The int8 kernels (codegen/ops/int8.py, include/ember_int8.cuh) of ember.int8_matmul and
ember.int8_conv.

On the CPU: which tactics each shape gets (the tensor-core tiles where they read 16 bytes at a
time, the direct kernel everywhere), that the kernels compile for sm_80 and sm_90 with NVRTC (no
warnings) and, through the SIMT loop over the tile, for sm_75; that fused epilogues join the
int8 kernel; that engines run on the host arena as the interpreter computes.

On the GPU (-m gpu): every tactic of every case, at odd, unaligned and tiny shapes, on fresh
random inputs with the arena poisoned first: the s32 accumulators exactly (unit scales: the f32
result is the accumulator), the full epilogue (scales per channel, bias, relu, zero points,
requantized) within one output step, device inputs that are not 16-byte aligned, and the fused
epilogue of a quantized residual block."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ember
from ember import ir
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.ir.ops.int8 import accumulators
from kernel_checks import gpu_available

F = np.float32
Build = Callable[[bool], ir.Module]   # full epilogue (True) or unit scales that expose the accumulators


def _epilogue(b: ir.Builder, rng: np.random.Generator, channels: int, full: bool, zx: int | None,
              requant: bool) -> tuple[Any, ...]:
    """x_scale, w_scale, bias, x_zero_point, y_scale, y_zero_point operands."""
    z = b.constant(np.int8(zx)) if zx is not None else None
    if not full:
        return b.constant(F(1.0)), b.constant(F(1.0)), None, z, None, None
    sx = b.constant(F(rng.uniform(0.01, 0.05)))
    sw = b.constant(rng.uniform(0.001, 0.01, channels).astype(F))
    bias = b.constant(rng.standard_normal(channels).astype(F))
    if not requant:
        return sx, sw, bias, z, None, None
    return sx, sw, bias, z, b.constant(F(rng.uniform(0.05, 0.3))), b.constant(np.int8(rng.integers(-20, 20)))


def matmul(x_shape: tuple[int, ...], n: int, zx: int | None = -7, requant: bool = True) -> Build:
    def build(full: bool) -> ir.Module:
        rng = np.random.default_rng(len(x_shape) * 1000 + n)
        b = ir.Builder("int8_matmul")
        x = b.input("x", ir.i8[x_shape])
        w = b.weight("w", rng.integers(-128, 128, (n, x_shape[-1])).astype(np.int8))
        y = b.int8_matmul(x, w, *_epilogue(b, rng, n, full, zx, requant), relu=full)
        b.output("y", y)
        return b.build()
    return build


def conv(x_shape: tuple[int, ...], w_shape: tuple[int, ...], layout: str = "NHWC", zx: int | None = 5,
         requant: bool = True, **attrs: Any) -> Build:
    def build(full: bool) -> ir.Module:
        rng = np.random.default_rng(sum(x_shape) + 7 * sum(w_shape))
        b = ir.Builder("int8_conv")
        x = b.input("x", ir.i8[x_shape])
        w = b.weight("w", rng.integers(-128, 128, w_shape).astype(np.int8))
        extra = {} if layout.startswith("NC") else {"layout": layout, "weight_layout": "O" + layout[1:-1] + "I"}
        y = b.int8_conv(x, w, *_epilogue(b, rng, w_shape[0], full, zx, requant), relu=full, **extra, **attrs)
        b.output("y", y)
        return b.build()
    return build


CASES: dict[str, Build] = {
    "matmul-1x16x1": matmul((1, 16), 1),
    "matmul-17x48x23": matmul((17, 48), 23, zx=None),
    "matmul-batched-2x3x33x64x40": matmul((2, 3, 33, 64), 40),
    "matmul-130x272x257": matmul((130, 272), 257, requant=False),
    "matmul-300x128x260-big": matmul((300, 128), 260),
    "matmul-k20-direct": matmul((9, 20), 11),
    "matmul-k3-tiny": matmul((2, 3), 2, zx=None),
    "conv-nhwc-16-pad": conv((2, 7, 5, 16), (24, 3, 3, 16), pads=(1, 1, 1, 1)),
    "conv-nhwc-32-strided-dilated": conv((1, 11, 9, 32), (8, 3, 3, 32), zx=-128, strides=(2, 1), dilations=(1, 2),
                                         pads=(2, 1, 0, 1)),
    "conv-nhwc-1x1-48-80": conv((3, 4, 4, 48), (80, 1, 1, 48), zx=None, requant=False),
    "conv-nhwc-same-upper": conv((1, 6, 7, 16), (16, 3, 3, 16), auto_pad="SAME_UPPER", strides=(2, 2)),
    "conv-nhwc-cin3-direct": conv((2, 9, 9, 3), (8, 3, 3, 3), pads=(1, 1, 1, 1)),
    "conv-nchw-direct": conv((1, 16, 6, 6), (8, 16, 3, 3), layout="NCHW", pads=(1, 1, 1, 1)),
    "conv-nhwc-depthwise-direct": conv((1, 6, 6, 32), (32, 3, 3, 1), pads=(1, 1, 1, 1), group=32),
    "conv-nhwc-grouped-direct": conv((2, 5, 5, 32), (16, 3, 3, 16), group=2, requant=False),
    "conv-1d-nwc": conv((2, 9, 16), (8, 3, 16), layout="NWC", pads=(1, 1)),
}
MMA_CASES = {"matmul-1x16x1", "matmul-17x48x23", "matmul-batched-2x3x33x64x40", "matmul-130x272x257",
             "matmul-300x128x260-big", "conv-nhwc-16-pad", "conv-nhwc-32-strided-dilated", "conv-nhwc-1x1-48-80",
             "conv-nhwc-same-upper", "conv-1d-nwc"}


def heavy_step(module: ir.Module) -> Any:
    (step,) = [s for s in lower(module).steps if s.kind == "launch" and s.tactic is not None]
    return step


def feeds_for(module: ir.Module, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {v.name: rng.integers(-128, 128, tuple(v.type.shape)).astype(np.int8) for v in module.main.inputs}


# -- CPU ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_tiles_take_what_they_read_16_bytes_at_a_time(name: str) -> None:
    step = heavy_step(CASES[name](True))
    if name in MMA_CASES:
        assert step.tactic.startswith("mma") and "direct" in step.candidates, step.candidates
        assert set(step.candidates) == {"mma128x128x32/64x32", "mma64x64x64/32x16", "direct"}
    else:
        assert step.candidates == ("direct",), step.candidates


def test_the_big_tile_where_it_fills_the_gpu() -> None:
    assert heavy_step(matmul((2048, 64), 2048)(True)).tactic == "mma128x128x32/64x32"
    assert heavy_step(matmul((256, 64), 256)(True)).tactic == "mma64x64x64/32x16"


def test_the_kernels_say_what_they_compute() -> None:
    """Template flags: tile, requantize, relu, per-channel scales, zero point, paired stores."""
    (kernel,) = lower(CASES["conv-nhwc-16-pad"](True)).kernels.values()
    assert "ember::int8::conv<ember::int8::Mma<64, 64, 64, 32, 16>, true, true, true, true, true, int>(" in kernel.source
    assert "ember::int8::Store<signed char>{out}" in kernel.source   # a lone op: two channels a store
    (kernel,) = lower(CASES["conv-nhwc-1x1-48-80"](False)).kernels.values()
    assert "ember::int8::conv<ember::int8::Mma<64, 64, 64, 32, 16>, false, false, false, false, true, int>(" \
        in kernel.source
    assert "ember::int8::Store<float>{out}" in kernel.source
    (kernel,) = lower(CASES["conv-nchw-direct"](True)).kernels.values()
    assert "ember::int8::conv_direct<false, true, true, true, int>(" in kernel.source
    assert "const signed char h = static_cast<signed char>(acc);  // ember.int8_conv" in kernel.source
    header = (Path(ember.__file__).parent / "codegen" / "include" / "ember_int8.cuh").read_text()
    assert "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32" in header


# (case, full epilogue, tactic): every template and every flag each way (requantized or f32,
# relu, per-channel or one scale, zero point or none, paired stores), both tiles, the direct
# kernels; the fused-epilogue form (per-element functor stores) compiles in the residual block's test
COMPILED = [("matmul-17x48x23", True, "mma64x64x64/32x16"), ("matmul-130x272x257", False, "mma128x128x32/64x32"),
            ("conv-nhwc-16-pad", True, "mma64x64x64/32x16"), ("conv-nhwc-1x1-48-80", False, "mma128x128x32/64x32"),
            ("matmul-k20-direct", True, "direct"), ("conv-nchw-direct", True, "direct")]


def test_every_int8_kernel_compiles_for_its_targets(kernel_cache: Path) -> None:
    """Kernels covering every template and flag, for sm_80 and sm_90, warnings as errors; one
    tile for sm_75 too (the SIMT loop over the tile in the same kernel)."""
    kernels = {}
    for name, full, tactic in COMPILED:
        module = CASES[name](full)
        kernels.update(lower(module, tactics={heavy_step(module).ops[0]: tactic}).kernels)
    assert len(kernels) == len(COMPILED)
    sources = "\n".join(k.source for k in kernels.values())
    for flags in ("true, true, true, true, true, int>(", "false, false, false, true, true, int>(",
                  "false, false, false, false, true, int>("):
        assert flags in sources, flags
    Compiler(("sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(kernels.values())
    module = CASES["conv-nhwc-16-pad"](True)
    Compiler(("sm_75",), cache_dir=kernel_cache, jobs=2).compile_all(lower(module).kernels.values())


def qdq_residual_block() -> tuple[ir.Module, dict[str, np.ndarray]]:
    """onnxruntime's QDQ form of conv -> relu -> conv + residual, 16 channels: the second int8
    conv's epilogue takes the residual add of the two i8 results (int8_add)."""
    rng = np.random.default_rng(21)
    b = ir.Builder("qdq_block")
    x = b.input("x", ir.f32[2, 16, 6, 6])

    def qdq(v: Any, scale: float, zp: int) -> Any:
        s, z = b.constant(F(scale)), b.constant(np.int8(zp))
        return b.dequantize(b.quantize(v, s, z), s, z)

    def qconv(v: Any, seed: int) -> Any:
        w = b.weight(f"w{seed}", rng.integers(-127, 128, (16, 16, 3, 3)).astype(np.int8))
        sw = b.constant(rng.uniform(0.001, 0.004, 16).astype(F))
        wd = b.dequantize(w, sw, b.constant(np.zeros(16, np.int8)), axis=0)
        return b.conv(v, wd, b.constant(rng.standard_normal(16).astype(F) * 0.1), pads=(1, 1, 1, 1))

    h = qdq(b.relu(qconv(qdq(x, 0.02, 3), 1)), 0.03, -128)
    y = qdq(qconv(h, 2), 0.04, 5)
    b.output("y", qdq(b.add(y, h), 0.05, -2))
    return b.build(), {"x": rng.standard_normal((2, 16, 6, 6)).astype(F)}


def test_a_quantized_residual_block_is_two_int8_kernels_with_their_epilogues(kernel_cache: Path) -> None:
    module, feeds = qdq_residual_block()
    engine = ember.compile(module, targets=("sm_80",), cache_dir=kernel_cache)
    assert engine.report.host_ops == []
    int8 = [k for k in engine.kernels.values() if k.name.startswith("int8_conv")]
    assert len(int8) == 2, [k.ops for k in engine.kernels.values()]
    # the second conv's kernel takes the residual add on i8 tensors (fold-qdq's int8_add; its functor
    # stores); the first's result is read by both the second conv and the add: a lone op, stored in pairs
    fused, alone = sorted(int8, key=lambda k: "ember.int8_add" not in k.source)
    assert "ember::int8_add<false>(" in fused.source and "const Epi epi{" in fused.source \
        and ", false, int>(" in fused.source
    assert "ember::int8::Store<signed char>{out}" in alone.source
    assert not any(op.name in ("ember.conv", "ember.quantize", "ember.dequantize") for op in engine.module.walk())
    want = ir.interpret(module, feeds)["y"]
    got = engine.run(feeds, device="cpu")["y"]
    assert np.abs(got - want).max() <= 0.05 * (1 + 1e-6)   # within one step of the output's scale


@pytest.mark.parametrize("name", ["matmul-batched-2x3x33x64x40", "conv-nhwc-32-strided-dilated", "conv-nchw-direct"])
def test_int8_engines_run_on_the_host_arena_as_the_interpreter_computes(name: str, kernel_cache: Path) -> None:
    module = CASES[name](True)
    feeds = feeds_for(module, np.random.default_rng(0))
    engine = ember.compile(module, pipeline="", targets=("sm_80",), cache_dir=kernel_cache)
    assert engine.report.host_ops == [] and engine.host_steps == 0
    np.testing.assert_array_equal(engine.run(feeds, device="cpu")["y"], ir.interpret(module, feeds)["y"])


# -- GPU ------------------------------------------------------------------------------------
def cases_with_tactics() -> list[tuple[str, str]]:
    out = []
    for name in sorted(CASES):
        tactics = ["mma128x128x32/64x32", "mma64x64x64/32x16", "direct"] if name in MMA_CASES else ["direct"]
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
    interpreter's i32 sums (so the comparison is of accumulators)."""
    for name in ("matmul-batched-2x3x33x64x40", "conv-nhwc-32-strided-dilated", "conv-nchw-direct"):
        module = CASES[name](False)
        feeds = feeds_for(module, np.random.default_rng(1))
        op = next(o for o in module.main.body.ops if o.name.startswith("ember.int8_"))
        acc = accumulators(op, [operand_array(module, v, feeds) for v in op.operands])
        assert acc.dtype == np.int32 and np.abs(acc).max() < 2**24
        np.testing.assert_array_equal(ir.interpret(module, feeds)["y"], acc.astype(F))


def _gpu_engine(module: ir.Module, tactic: str, tmp_path: Path) -> Any:
    step = heavy_step(module)
    engine = ember.compile(module, pipeline="", tactics={step.ops[0]: tactic},
                           cache_dir=tmp_path / "cache")
    return engine.create_context("cuda", poison=True, graphs=False)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name,tactic", cases_with_tactics())
def test_the_accumulators_are_the_interpreters_exactly_on_the_gpu(name: str, tactic: str, tmp_path: Path) -> None:
    """Unit scales, no bias: the f32 result is the s32 accumulator (|acc| < 2^24 in every case)."""
    module = CASES[name](False)
    ctx = _gpu_engine(module, tactic, tmp_path)
    op = next(o for o in module.main.body.ops if o.name.startswith("ember.int8_"))
    for seed in (None, None):
        feeds = feeds_for(module, np.random.default_rng(seed))
        acc = accumulators(op, [operand_array(module, v, feeds) for v in op.operands])
        got = np.asarray(ctx.run(feeds)["y"])
        np.testing.assert_array_equal(got, acc.astype(F), err_msg=f"{name} on {tactic}")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name,tactic", cases_with_tactics())
def test_the_epilogue_is_the_interpreters_on_the_gpu(name: str, tactic: str, tmp_path: Path) -> None:
    """Per-channel scales, bias, relu, zero points; requantized results within one step (the
    epilogue rounds as the interpreter does, so they are expected equal), f32 ones to f32 rounding."""
    module = CASES[name](True)
    ctx = _gpu_engine(module, tactic, tmp_path)
    for seed in (None, None):
        feeds = feeds_for(module, np.random.default_rng(seed))
        want = ir.interpret(module, feeds)["y"]
        got = np.asarray(ctx.run(feeds)["y"])
        assert got.dtype == want.dtype and got.shape == want.shape
        if want.dtype == np.int8:
            assert np.abs(got.astype(np.int32) - want.astype(np.int32)).max() <= 1, f"{name} on {tactic}"
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * float(np.abs(want).max()),
                                       err_msg=f"{name} on {tactic}")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", ["matmul-130x272x257", "conv-nhwc-16-pad"])
def test_misaligned_device_inputs_take_the_staged_form(name: str, tmp_path: Path) -> None:
    """An s8 input that starts 3 bytes past a 16-byte boundary: the tiles check the pointers and
    stage through registers instead of cp.async."""
    import torch
    module = CASES[name](False)
    feeds = feeds_for(module, np.random.default_rng())
    engine = ember.compile(module, pipeline="", cache_dir=tmp_path / "cache")
    x = feeds["x"]
    flat = torch.empty(x.size + 3, dtype=torch.int8, device="cuda")[3:]
    flat.copy_(torch.from_numpy(x.ravel()))
    assert flat.data_ptr() % 16 != 0
    got = engine.run({"x": flat.view(x.shape)})["y"]
    want = ir.interpret(module, feeds)["y"]
    np.testing.assert_array_equal(got.cpu().numpy(), want)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_a_quantized_residual_block_matches_its_host_arena_run_on_the_gpu(tmp_path: Path) -> None:
    module, _ = qdq_residual_block()
    engine = ember.compile(module, cache_dir=tmp_path / "cache")
    ctx = engine.create_context("cuda", poison=True, graphs=False)
    for seed in range(3):
        feeds = {"x": np.random.default_rng(seed).standard_normal((2, 16, 6, 6)).astype(F)}
        on_gpu = np.asarray(ctx.run(feeds)["y"])
        on_host = np.asarray(engine.run(feeds, device="cpu")["y"])
        assert np.abs(on_gpu - on_host).max() <= 0.05 * (1 + 1e-6)
