"""Epilogue offsets by multiply-high and shift (heavy.FAST_DIVISION; ember_prelude.cuh
`fast_offset`, kernel_spec.division_magic): a general broadcast read or a layout tail's store
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
    monkeypatch.setattr(heavy, "FAST_DIVISION", True)


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


@pytest.mark.parametrize("case", TAILS, ids=lambda c: c.name)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_fast_offsets_match_the_interpreter_on_the_gpu(case) -> None:
    for _ in range(2):
        module, feeds = case.build(np.random.default_rng())
        expected = ember.interpret(module, feeds)
        engine = ember.compile(module, pipeline=case.pipeline)
        assert any("fast_offset<" in k.source for k in engine.kernels.values())
        got = engine.run(feeds, device="cuda")
        for name, ref in expected.items():
            assert_close(np.asarray(got[name]), np.asarray(ref), what=f"{case.name}: {name}")
