"""The Hopper tile (ember_gemm.cuh `WgmmaTile`: wgmma m64nNk16 from swizzled shared memory, f32
accumulation) of f16 and bf16 matmul, gemm and convolution, built for sm_90a.

On the CPU: the tile is offered only where the switch is on, the build's newest target is sm_90a
and both operands take 16-byte reads; its launch asks for the stages' dynamic shared memory; the
kernel builds for sm_80 and sm_90 (its mma.sync fallback) and sm_90a, where its PTX holds the
wgmma instructions; PTX goes with the newest portable target. On the GPU (sm_90 only): the tile,
forced by `tactics=`, against the interpreter at odd, unaligned and tiny shapes, K tails, every
operand order, batched products, NHWC convolutions with padding and a fused epilogue, twice on
one context with poisoned outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ember
import ember.codegen.ops.heavy as heavy
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.ir.program import tensormap_layout
from ember.ir.types import bf16, f32
from ember.tolerance import assert_close
from kernel_checks import check_on_gpu, gpu_available, misaligned_on_gpu
from tests.codegen.test_mma import CASES, conv, feeds_for, gemm, heavy_launches, matmul

TILE = "wgmma128x128x64"
WIDE = "wgmma128x256x64"
HOPPER = (TILE, WIDE)
PERSISTENT = (f"{TILE}/ws", f"{WIDE}/ws")   # warp-specialized, one block per multiprocessor
TMA = (f"{TILE}/tma", f"{WIDE}/tma", "wgmma128x192x64/tma")   # the same with a TMA producer
TARGETS = ("sm_80", "sm_90", "sm_90a")

# Both operands read 16 bytes at a time (the tile's condition), at sizes around the 128 x 128 block
# and the 64-deep slab: tails in m, n and k, one block, many, a batch, both orders of each operand.
WG_CASES = {
    "matmul-vector-reads": CASES["matmul-vector-reads"],
    "matmul-big-tiles": CASES["matmul-big-tiles"],
    "matmul-8x8x8": lambda: matmul((8, 8), (8, 8)),
    "matmul-136x264x72": lambda: matmul((136, 72), (72, 264)),
    "matmul-bf16-520x392x520": lambda: matmul((520, 520), (520, 392), bf16),
    "matmul-batched-256x128x200": lambda: matmul((3, 256, 200), (3, 200, 128)),
    "matmul-1024x1024x1024": lambda: matmul((1024, 1024), (1024, 1024)),
    # more tiles than an H100 has multiprocessors, two slabs each: persistent blocks take several
    # tiles, and the producer's loads run on into the next tile
    "matmul-2048x4096x128": lambda: matmul((2048, 128), (128, 4096)),
    "gemm-tt-vector-reads": CASES["gemm-tt-vector-reads"],
    "gemm-tn-vector-reads": CASES["gemm-tn-vector-reads"],
    "gemm-nt-200x264x136-bias-relu": lambda: gemm(200, 264, 136, False, True, bias_relu=True),
    "gemm-tt-bf16-384x136x64": lambda: gemm(384, 136, 64, True, True, bf16),
    "conv-nhwc": CASES["conv-nhwc"],
    "conv-1x1-nhwc": CASES["conv-1x1-nhwc"],
    "conv-nhwc-grouped": CASES["conv-nhwc-grouped"],
    "conv-nhwc-3x3-s2-bf16": lambda: conv((2, 15, 15, 64), (136, 3, 3, 64), bf16, layout="NHWC", strides=(2, 2)),
}


@pytest.fixture
def wgmma_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "WGMMA", True)
    monkeypatch.setattr(heavy, "WGMMA_PERSISTENT", False)


@pytest.fixture
def persistent_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "WGMMA", True)
    monkeypatch.setattr(heavy, "WGMMA_PERSISTENT", True)
    monkeypatch.setattr(heavy, "WGMMA_TMA", True)


def offered(name: str, target: str | None) -> tuple[str, ...]:
    (step,) = heavy_launches(lower(WG_CASES[name]().build(), target=target))
    return step.candidates


def forced(name: str, tile: str = TILE) -> tuple[object, object]:
    """The program of case `name` with a Hopper tile forced, and its launch."""
    module = WG_CASES[name]().build()
    (step,) = heavy_launches(lower(module, target="sm_90a"))
    tactic = next(c for c in step.candidates if c.endswith(tile))
    program = lower(module, target="sm_90a", tactics={step.ops[0]: tactic})
    (chosen,) = heavy_launches(program)
    return program, chosen


# -- CPU ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(WG_CASES))
def test_the_tiles_are_offered_for_sm_90a_builds_only(name: str, wgmma_on: None) -> None:
    assert all(any(c.endswith(t) for c in offered(name, "sm_90a")) for t in HOPPER)
    assert not any(c.startswith("wgmma") or "/wgmma" in c for c in offered(name, "sm_90"))


def test_the_switch_keeps_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "WGMMA", False)
    assert not any(c.endswith(TILE) for c in offered("matmul-big-tiles", "sm_90a"))


@pytest.mark.parametrize("build", [lambda: matmul((17, 19), (19, 23)), CASES["matmul-vector-a-only"],
                                   CASES["conv-nchw"], lambda: matmul((256, 64), (64, 256), f32)],
                         ids=["scalar-reads", "a-only", "nchw", "f32"])
def test_products_without_16_byte_reads_of_both_operands_do_not_get_it(build: object, wgmma_on: None) -> None:
    (step,) = heavy_launches(lower(build().build(), target="sm_90a"))
    assert not any(c.endswith(TILE) for c in step.candidates), step.candidates


def test_the_heuristic_puts_them_first_where_their_blocks_fill_the_gpu(wgmma_on: None) -> None:
    (huge,) = heavy_launches(lower(matmul((4096, 64), (64, 4096)).build(), target="sm_90a"))
    (big,) = heavy_launches(lower(matmul((2048, 64), (64, 2048)).build(), target="sm_90a"))
    (small,) = heavy_launches(lower(matmul((256, 64), (64, 256)).build(), target="sm_90a"))
    assert huge.candidates[:2] == (WIDE, TILE)
    assert big.candidates[:2] == (TILE, WIDE)
    assert small.tactic == "mma64x64x32/32x16" and small.candidates[1:3] == (TILE, WIDE)


@pytest.mark.parametrize("tile,bn,mma", [(TILE, 128, "MmaTile<128, 128, 32, 64, 32, __half"),
                                         (WIDE, 256, "MmaTile<128, 256, 32, 64, 64, __half")])
def test_the_launch_asks_for_the_stages_dynamic_shared_memory(tile: str, bn: int, mma: str, wgmma_on: None) -> None:
    program, step = forced("matmul-big-tiles", tile)
    assert step.shared == 4 * (128 + bn) * 64 * 2 + 1024
    source = program.kernels[step.kernel].source
    assert f"ember::gemm::WgmmaTile<128, {bn}, 64, __half, ember::gemm::{mma}" in source


def test_the_persistent_tiles_are_offered_ahead_of_the_plain_ones_where_their_switch_is_on(persistent_on: None
                                                                                           ) -> None:
    (huge,) = heavy_launches(lower(matmul((4096, 64), (64, 4096)).build(), target="sm_90a"))
    assert huge.candidates[:7] == (f"{WIDE}/tma", f"{TILE}/tma", TMA[2], f"{WIDE}/ws", f"{TILE}/ws", WIDE, TILE)
    # BERT's Q/K/V at batch 32 (4096 x 2304): 192-column tiles fill the last wave best
    (qkv,) = heavy_launches(lower(matmul((4096, 768), (768, 2304)).build(), target="sm_90a"))
    assert qkv.candidates[0] == TMA[2]
    assert not any(c.endswith("/ws") for c in offered("matmul-big-tiles", "sm_90"))


@pytest.mark.parametrize("tile,bn,stages", [(PERSISTENT[0], 128, 6), (PERSISTENT[1], 256, 4)])
@pytest.mark.parametrize("name,tiles", [("matmul-2048x4096x128", 256), ("matmul-8x8x8", 1),
                                        ("matmul-batched-256x128x200", 6)])
def test_a_persistent_tile_launches_a_block_per_multiprocessor_of_four_warpgroups_less_one(
        tile: str, bn: int, stages: int, name: str, tiles: int, persistent_on: None) -> None:
    """At most one block per multiprocessor (132 for sm_90a) and one per tile (`tiles`: at least);
    384 threads (the producer's warpgroup and two consumers'); the stages' dynamic shared memory."""
    program, step = forced(name, tile)
    assert step.block == (384, 1, 1)
    assert step.grid == (min(tiles, heavy.SM_COUNTS["sm_90"]), 1, 1)
    assert step.shared == stages * (128 + bn) * 64 * 2 + 1024
    source = program.kernels[step.kernel].source
    assert f"ember::gemm::WgmmaTile<128, {bn}, 64, __half, ember::gemm::MmaTile<64, 64, 32, 32, 16" in source
    assert f", {stages}, true>" in source


def test_a_persistent_tile_compiles_everywhere_and_sm_90a_holds_the_warp_specialized_pipeline(
        persistent_on: None, kernel_cache: Path) -> None:
    """Each persistent tile for sm_80 and sm_90 (its fallback) and sm_90a, where the PTX holds the
    register hand-over, the mbarrier hand-offs and four wgmma a slab (an NHWC convolution too)."""
    portable = [forced("matmul-big-tiles", tile)[0] for tile in PERSISTENT]
    kernels = [k for program in portable for k in program.kernels.values() if "WgmmaTile<" in k.source]
    binaries = Compiler(TARGETS, cache_dir=kernel_cache, jobs=2).compile_all(kernels)
    for b in (binaries.values() if isinstance(binaries, dict) else binaries):
        assert set(b.cubins) == set(TARGETS) and b"setmaxnreg" not in bytes(b.ptx)
    forms = [forced("matmul-2048x4096x128", PERSISTENT[1])[0], forced("conv-nhwc", PERSISTENT[0])[0]]
    specific = Compiler(("sm_90a",), cache_dir=kernel_cache, jobs=2).compile_all(
        [k for program in forms for k in program.kernels.values() if "WgmmaTile<" in k.source])
    for b in (specific.values() if isinstance(specific, dict) else specific):
        ptx = bytes(b.ptx)
        assert ptx.count(b"wgmma.mma_async") == 4 and b"setmaxnreg.inc" in ptx and b"setmaxnreg.dec" in ptx
        assert b"mbarrier.try_wait.parity" in ptx and b"mbarrier.init" in ptx and b"fence.proxy.async" in ptx


TMA_CASES = sorted(n for n in WG_CASES if not n.startswith("conv"))


@pytest.mark.parametrize("name", TMA_CASES)
def test_strided_products_get_tma_tiles_with_two_tensor_maps(name: str, persistent_on: None) -> None:
    """Both operands as 3-D maps (inner dim, rows, batch), 64 x 64 x 1 boxes, 16-byte strides; the
    mapped values are among the step's reads; the kernel takes them as __grid_constant__."""
    program, step = forced(name, TMA[1])
    maps = [a for a in step.args if a.kind == "tensormap"]
    assert len(maps) == 2 and step.block == (384, 1, 1)
    for arg in maps:
        vid, rank, element, dims, strides, box = tensormap_layout(arg.value)
        assert vid in step.reads and rank == 3 and element == "f16" or element == "bf16"
        assert box == [64, 64, 1] and all(s % 16 == 0 and s > 0 for s in strides)
    source = program.kernels[step.kernel].source
    assert "const __grid_constant__ ember::TensorMap ta" in source and "ember::gemm::strided_tma<" in source


def test_tma_tiles_need_plain_matrices(persistent_on: None) -> None:
    """Not for convolutions (im2col), two batch dims or a broadcast batch: the cp.async forms stay."""
    assert not any(c.endswith("/tma") for c in offered("conv-nhwc", "sm_90a"))
    assert any(c.endswith("/ws") for c in offered("conv-nhwc", "sm_90a"))
    P = heavy.Product
    plain = P(128, 128, 64, (3,), (8192,), (8192,), (16384,), 64, 1, 128, 1, 128, 1)
    assert heavy.tensor_maps(plain, True, False) == (([64, 128, 3], [128, 16384]), ([128, 64, 3], [256, 16384]))
    two_batch_dims = P(128, 128, 64, (2, 3), (0, 8192), (8192, 0), (0, 16384), 64, 1, 128, 1, 128, 1)
    broadcast = P(128, 128, 64, (3,), (8192,), (0,), (16384,), 64, 1, 128, 1, 128, 1)
    odd_stride = P(128, 128, 60, (), (), (), (), 60, 1, 128, 1, 128, 1)
    for prob in (two_batch_dims, broadcast, odd_stride):
        assert heavy.tensor_maps(prob, True, False) is None


def test_tensor_map_arguments_round_trip_and_are_checked() -> None:
    from ember.errors import ShapeError
    from ember.ir.program import Arg
    from ember.runtime.validate import _tensormap, At
    from ember.runtime.engine_format import EngineFormatError
    arg = Arg("tensormap", (3, 1, 2, 64, 100, 256, 64, 64))
    assert Arg.from_json(arg.to_json()) == arg and tensormap_layout(arg.value)[2] == "bf16"
    with pytest.raises(ShapeError, match="element code 7"):
        tensormap_layout((3, 7, 2, 64, 100, 256, 64, 64))
    with pytest.raises(ShapeError, match="rank 2 needs"):
        tensormap_layout((3, 1, 2, 64, 100, 64, 64))
    values = [{"id": i, "name": f"v{i}", "dtype": "bf16", "kind": "activation"} for i in range(4)]
    _tensormap(list(arg.to_json()["tensormap"]), values, [3], At("plan", "program"), None)
    bad = {"stride 24": [3, 1, 2, 64, 100, 24, 64, 64], "not read": [2, 1, 2, 64, 100, 256, 64, 64],
           "box 512": [3, 1, 2, 64, 100, 256, 512, 64], "dim 0": [3, 1, 2, 0, 100, 256, 64, 64],
           "f16 map of bf16": [3, 0, 2, 64, 100, 256, 64, 64]}
    for what, items in bad.items():
        with pytest.raises((EngineFormatError, Exception)) as err:
            _tensormap(items, values, [3], At("plan", "program"), None)
        assert "tensor map" in str(err.value) or "tensormap" in str(err.value), what


def test_a_tma_engine_saves_loads_and_runs_on_the_host_arena(persistent_on: None, tmp_path: Path) -> None:
    """The tensormap arguments pass the loader's checks; the host arena, which runs the reference
    ops, needs none of them."""
    module = WG_CASES["matmul-136x264x72"]().build()
    engine, tactic = forced_engine(module, TMA[0], tmp_path)
    assert tactic.endswith("/tma")
    engine.save(tmp_path / "tma.engine")
    loaded = ember.Engine.load(tmp_path / "tma.engine")
    feeds = feeds_for(module, np.random.default_rng(0))
    got = loaded.run(feeds, device="cpu")
    for name, ref in ember.interpret(module, feeds).items():
        assert_close(np.asarray(got[name]), np.asarray(ref), what=f"{name} on the host arena")


def test_a_tma_tile_compiles_everywhere_and_sm_90a_holds_the_bulk_tensor_copies(
        persistent_on: None, kernel_cache: Path) -> None:
    kernels = [k for tile in TMA for k in forced("matmul-big-tiles", tile)[0].kernels.values() if "WgmmaTile<" in k.source]
    binaries = Compiler(TARGETS, cache_dir=kernel_cache, jobs=2).compile_all(kernels)
    for b in (binaries.values() if isinstance(binaries, dict) else binaries):
        assert set(b.cubins) == set(TARGETS) and b"cp.async.bulk.tensor" not in bytes(b.ptx)
    specific = Compiler(("sm_90a",), cache_dir=kernel_cache, jobs=2).compile_all(
        [k for tile in TMA[1:] for k in forced("gemm-tt-bf16-384x136x64", tile)[0].kernels.values()
         if "WgmmaTile<" in k.source])
    for b in (specific.values() if isinstance(specific, dict) else specific):
        ptx = bytes(b.ptx)
        assert b"cp.async.bulk.tensor.3d" in ptx and b"mbarrier.arrive.expect_tx" in ptx
        assert ptx.count(b"wgmma.mma_async") == 4


def test_every_form_compiles_and_sm_90a_holds_the_wgmma(wgmma_on: None, kernel_cache: Path) -> None:
    """One instance per tile for sm_80 and sm_90 (the mma.sync fallback) and sm_90a, its PTX the
    portable compute_90's (no wgmma in it); for sm_90a alone the other forms (bf16, a row-major
    A, a k-major B with a fused epilogue, an NHWC convolution), whose compute_90a PTX holds the
    wgmma instructions (4 a slab), the proxy fence and the unaligned pieces' mma.sync. (CI
    compiles one instance per family and target: the rest is the GPU tests' work.)"""
    portable = [forced("matmul-big-tiles", tile)[0] for tile in HOPPER]
    kernels = [k for program in portable for k in program.kernels.values() if "WgmmaTile<" in k.source]
    binaries = Compiler(TARGETS, cache_dir=kernel_cache, jobs=2).compile_all(kernels)
    for b in (binaries.values() if isinstance(binaries, dict) else binaries):
        assert set(b.cubins) == set(TARGETS) and b.ptx_arch == "compute_90"
        assert b"wgmma.mma_async" not in bytes(b.ptx)
    forms = [forced("matmul-bf16-520x392x520", WIDE)[0], forced("gemm-tn-vector-reads")[0],
             forced("gemm-nt-200x264x136-bias-relu")[0], forced("conv-nhwc")[0]]
    specific = Compiler(("sm_90a",), cache_dir=kernel_cache, jobs=2).compile_all(
        [k for program in forms for k in program.kernels.values() if "WgmmaTile<" in k.source])
    for b in (specific.values() if isinstance(specific, dict) else specific):
        ptx = bytes(b.ptx)
        assert b.ptx_arch == "compute_90a"
        assert ptx.count(b"wgmma.mma_async") == 4 and b"fence.proxy.async" in ptx and b"mma.sync" in ptx


def test_an_sm_90_gpu_loads_the_sm_90a_cubin() -> None:
    from ember.runtime.specs import cubin_runs_on
    from ember.runtime.cuda import DeviceEngine
    fake = type("K", (), {"cubins": {"sm_80": b"80", "sm_90": b"90", "sm_90a": b"90a"}, "ptx": None, "ptx_arch": None,
                          "name": "k"})()
    picker = DeviceEngine._image
    holder = type("D", (), {"arch": "sm_90"})()
    assert picker(holder, fake) == (b"90a", "sm_90a")
    holder.arch = "sm_86"
    assert picker(holder, fake) == (b"80", "sm_80")
    assert not cubin_runs_on("sm_90a", "sm_100")


# -- GPU ------------------------------------------------------------------------------------
def forced_engine(module: object, tile: str, tmp_path: Path) -> tuple[object, str]:
    """An engine for sm_80, sm_90 and sm_90a with the Hopper `tile` forced on the module's product."""
    (step,) = heavy_launches(lower(module, target="sm_90a"))
    tactic = next(c for c in step.candidates if c.endswith(tile))
    engine = ember.compile(module, pipeline="canonicalize", targets=TARGETS, tactics={step.ops[0]: tactic},
                           cache_dir=tmp_path / "cache", opt_level=0)
    assert any("WgmmaTile<" in k.source for k in engine.kernels.values())
    return engine, tactic


def _sm_90() -> bool:
    if not gpu_available():
        return False
    from ember.runtime import cuda
    info = cuda.device_info(0)
    return info is not None and info["arch"] == "sm_90"


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name,tile", [(n, t) for t in HOPPER + PERSISTENT + TMA for n in sorted(WG_CASES)
                                       if t not in TMA or n in TMA_CASES])
def test_the_tile_matches_the_interpreter_on_the_gpu(name: str, tile: str, tmp_path: Path,
                                                      persistent_on: None) -> None:
    """On sm_90 the sm_90a cubin (wgmma; the persistent forms warp-specialized, the TMA ones
    reading the runtime's tensor maps); elsewhere the same engine's mma.sync fallback."""
    module = WG_CASES[name]().build()
    engine, tactic = forced_engine(module, tile, tmp_path)
    check_on_gpu(engine, module, f"{name} on {tactic}")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("tile", TMA)
def test_the_tma_tile_reads_device_inputs_in_place(tile: str, tmp_path: Path, persistent_on: None) -> None:
    """Torch tensors as inputs, run in place: tensor maps of the caller's buffers, encoded again
    for new ones, twice each."""
    import torch
    module = WG_CASES["matmul-1024x1024x1024"]().build()
    engine, tactic = forced_engine(module, tile, tmp_path)
    ctx = engine.create_context(device="cuda", stream=torch.cuda.current_stream().cuda_stream)
    for _ in range(3):
        feeds = feeds_for(module, np.random.default_rng())
        expected = ember.interpret(module, feeds)
        on_gpu = {k: torch.from_numpy(np.asarray(v)).cuda() for k, v in feeds.items()}
        got = ctx.run(on_gpu)
        for out, ref in expected.items():
            ref = np.asarray(ref)
            assert_close(got[out].float().cpu().numpy().astype(ref.dtype), ref, what=f"in place on {tactic}")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_the_gpu_under_the_tests_is_an_sm_90() -> None:
    """The tile's GPU tests mean wgmma only on sm_90 (H100, H200): say so where they ran elsewhere."""
    assert _sm_90(), "the wgmma tests ran the mma.sync fallback: this GPU is not sm_90"


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name,tile", [(n, t) for n in ("matmul-136x264x72", "conv-nhwc")
                                       for t in HOPPER + PERSISTENT + TMA if not (n.startswith("conv") and t in TMA)])
def test_misaligned_device_inputs_take_the_pieces(name: str, tile: str, tmp_path: Path, persistent_on: None) -> None:
    """Device arrays that start 2 bytes past a 16-byte boundary: sm_90a runs the block as 64 x 64
    pieces of the scalar mma.sync tile."""
    module = WG_CASES[name]().build()
    engine, tactic = forced_engine(module, tile, tmp_path)
    feeds = feeds_for(module, np.random.default_rng())
    expected = ember.interpret(module, feeds)
    got = engine.run(misaligned_on_gpu(feeds))
    for out, ref in expected.items():
        ref = np.asarray(ref)
        assert_close(got[out].float().cpu().numpy().astype(ref.dtype), ref, what=f"{name} misaligned on {tactic}")


def test_a_build_that_names_no_targets_adds_sm_90a_on_an_sm_90_with_the_tiles_on(monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    from ember import build
    from ember.runtime import cuda
    monkeypatch.setattr(cuda, "device_info", lambda index=0: {"arch": "sm_90", "driver": 13000, "name": "H100"})
    monkeypatch.setattr(heavy, "WGMMA", True)
    assert build.default_targets() == ("sm_80", "sm_90", "sm_90a")
    monkeypatch.setattr(heavy, "WGMMA", False)
    assert build.default_targets() == ("sm_80", "sm_90")
    monkeypatch.setattr(heavy, "WGMMA", True)
    monkeypatch.setattr(cuda, "device_info", lambda index=0: {"arch": "sm_89", "driver": 13000, "name": "L4"})
    assert build.default_targets() == ("sm_80", "sm_90")
    monkeypatch.setattr(cuda, "device_info", lambda index=0: None)
    assert build.default_targets() == ("sm_80", "sm_90")
