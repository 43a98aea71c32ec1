"""Epilogue offsets by multiply-high and shift (heavy.FAST_DIVISION, for builds with the static
form, heavy.STATIC_OFFSETS, off; ember_prelude.cuh `fast_offset`, kernel_spec.division_magic):
a general broadcast read or a layout tail's store
(BERT's heads-first Q/K/V) divides the flat index by each dim; with a 32-bit index and static
dims each division is umulhi + add + shift by the dim's magic numbers.

On the CPU: the magic numbers give the exact quotient for every index below 2^31 (the device's
32-bit unsigned arithmetic emulated in numpy), over all small divisors and large ones; the
epilogues of the fused cases with a broadcast or a layout tail render fast_offset (64-bit
indices keep broadcast_offset) and build for sm_80 and sm_90. On the GPU: those cases against
the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.codegen.ops.heavy as heavy
from ember.codegen.kernel_spec import division_magic
from ember.tolerance import assert_close
from kernel_checks import gpu_available, nvrtc_compiler
from tests.codegen.test_heavy import FUSED

TAILS = [c for c in FUSED if c.name in ("fused-matmul-heads-first-attention-back", "fused-gemm-back-then-residual",
                                        "fused-conv-relu-to-channels-last", "fused-matmul-row-broadcast")]


@pytest.fixture(autouse=True)
def fast_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run-time-dims form: the static one (heavy.STATIC_OFFSETS) set aside."""
    monkeypatch.setattr(heavy, "FAST_DIVISION", True)
    monkeypatch.setattr(heavy, "STATIC_OFFSETS", False)


def quotient(n: np.ndarray, d: int) -> np.ndarray:
    """(umulhi(n, m) + n) >> l in 32-bit unsigned arithmetic, as the kernel computes it."""
    m, shift = division_magic(d)
    assert 0 <= m < 2**32 and 0 <= shift <= 31
    n64 = n.astype(np.uint64)
    hi = (n64 * np.uint64(m)) >> np.uint64(32)
    total = hi + n64
    assert (total < 2**32).all()
    return (total >> np.uint64(shift)).astype(np.int64)


def test_the_magic_numbers_divide_exactly_below_2_to_the_31() -> None:
    rng = np.random.default_rng(0)
    edge = np.array([0, 1, 2, 3, 2**16, 2**31 - 2, 2**31 - 1], dtype=np.int64)
    divisors = list(range(1, 3000)) + [int(x) for x in rng.integers(3000, 2**31 - 1, 400)] + \
        [2**k for k in range(31)] + [2**k + 1 for k in range(31)] + [2**k - 1 for k in range(2, 32)] + [768, 2304, 3072, 197]
    for d in divisors:
        n = np.concatenate([edge, rng.integers(0, 2**31, 2000), np.arange(0, min(d * 4, 4096)),
                            (np.arange(1, 64) * d) % 2**31, (np.arange(1, 64) * d - 1) % 2**31])
        assert (quotient(n, d) == n // d).all(), d
    with pytest.raises(ValueError):
        division_magic(0)


@pytest.mark.parametrize("case", TAILS, ids=lambda c: c.name)
def test_broadcasts_and_layout_tails_render_fast_offsets_that_build(case, kernel_cache) -> None:
    module, _ = case.build(np.random.default_rng(0))
    from ember.passes.manager import PassManager
    from ember.codegen.lower import lower
    PassManager(case.pipeline).run(module)
    program = lower(module)
    sources = [k.source for k in program.kernels.values()]
    assert any("ember::fast_offset<" in s for s in sources), case.name
    assert not any("ember::broadcast_offset<int>(idx" in s for s in sources)
    nvrtc_compiler(kernel_cache).compile_all(list(program.kernels.values()))


def test_the_switch_keeps_the_divisions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "FAST_DIVISION", False)
    from ember.passes.manager import PassManager
    from ember.codegen.lower import lower
    module, _ = TAILS[0].build(np.random.default_rng(0))
    PassManager(TAILS[0].pipeline).run(module)
    sources = [k.source for k in lower(module).kernels.values()]
    assert not any("fast_offset" in s for s in sources) and any("broadcast_offset<int>(idx" in s for s in sources)


# The GPU tests run each form: magic numbers from meta (fast) and constants (static, which
# tests/codegen/test_static_offsets.py checks on the CPU); MARKS[form] is in the kernels of each.
MARKS = {"fast": "fast_offset<", "static": "static_cast<unsigned>("}


@pytest.fixture(params=sorted(MARKS))
def form(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(heavy, "STATIC_OFFSETS", request.param == "static")
    return MARKS[request.param]


@pytest.mark.parametrize("case", TAILS, ids=lambda c: c.name)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_fast_offsets_match_the_interpreter_on_the_gpu(case, form: str) -> None:
    for _ in range(2):
        module, feeds = case.build(np.random.default_rng())
        expected = ember.interpret(module, feeds)
        engine = ember.compile(module, pipeline=case.pipeline)
        assert any(form in k.source for k in engine.kernels.values())
        got = engine.run(feeds, device="cuda")
        for name, ref in expected.items():
            assert_close(np.asarray(got[name]), np.asarray(ref), what=f"{case.name}: {name}")


def broadcast_and_add(dtype: str = "f16", batch: int = 3, heads: int = 5, seq: int = 37):
    """An elementwise add whose operands broadcast both ways ([b, 1, 1, s] + [1, h, s, 1], as a
    mask and a bias meet), with the builder's own shapes."""
    from ember import ir
    bld = ir.Builder("broadcast")
    x = bld.input("x", getattr(ir, dtype)[batch, 1, 1, seq])
    y = bld.input("y", getattr(ir, dtype)[1, heads, seq, 1])
    bld.output("z", bld.add(x, y))
    module = bld.build()
    rng = np.random.default_rng()
    np_dtype = np.float16 if dtype == "f16" else np.float32
    feeds = {"x": rng.standard_normal((batch, 1, 1, seq)).astype(np_dtype),
             "y": rng.standard_normal((1, heads, seq, 1)).astype(np_dtype)}
    return module, feeds


@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_elementwise_broadcasts_render_fast_offsets_that_build(dtype: str, kernel_cache) -> None:
    from ember.codegen.lower import lower
    module, _ = broadcast_and_add(dtype)
    sources = [k.source for k in lower(module).kernels.values()]
    assert any("ember::fast_offset<4>(i, dims, meta + " in s for s in sources), sources
    assert not any("broadcast_offset" in s for s in sources)
    nvrtc_compiler(kernel_cache).compile_all(list(lower(module).kernels.values()))


def test_elementwise_broadcasts_keep_the_divisions_with_the_switch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from ember.codegen.lower import lower
    monkeypatch.setattr(heavy, "FAST_DIVISION", False)
    module, _ = broadcast_and_add()
    sources = [k.source for k in lower(module).kernels.values()]
    assert not any("fast_offset" in s for s in sources) and any("broadcast_offset<int>" in s for s in sources)


@pytest.mark.parametrize("dtype,batch,heads,seq", [("f16", 3, 5, 37), ("f32", 2, 12, 128), ("f16", 1, 1, 1)])
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_elementwise_fast_offsets_match_the_interpreter_on_the_gpu(dtype: str, batch: int, heads: int,
                                                                    seq: int, form: str) -> None:
    module, feeds = broadcast_and_add(dtype, batch, heads, seq)
    expected = ember.interpret(module, feeds)
    engine = ember.compile(module, pipeline="canonicalize")
    assert seq == 1 or any(form in k.source for k in engine.kernels.values())
    got = engine.run(feeds, device="cuda")
    assert_close(np.asarray(got["z"]), np.asarray(expected["z"]), what=f"broadcast add {dtype}")
