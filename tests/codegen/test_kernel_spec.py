"""Kernel assembly and heavy-op specs: parameters declared by one rule, one wrapper for every
kernel, a spec per candidate rendered by cuda_render, and the SM count that steers tiles."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import ember.codegen.ops  # noqa: F401  (registers the lowerings)
from ember.codegen.cuda_render import declaration, entry, render_spec
from ember.codegen.cwriter import CWriter
from ember.codegen.kernel import Param
from ember.codegen.kernel_spec import KernelSpec, Tile
from ember.codegen.lower import lower
from ember.codegen.ops.heavy import DEFAULT_SMS, sm_count, tile_candidates
from ember.ir.builder import Builder
from ember.ir.types import f32


def test_declarations_follow_the_roles() -> None:
    assert declaration(Param("out0", "ptr", "float", "out")) == "float* __restrict__ out0"
    assert declaration(Param("in1", "ptr", "__half", "in")) == "const __half* __restrict__ in1"
    assert declaration(Param("meta", "ptr", "long long", "meta")) == "const long long* __restrict__ meta"
    assert declaration(Param("tmp", "ptr", "float", "scratch")) == "float* __restrict__ tmp"
    assert declaration(Param("M", "i32", "int", "scalar")) == "int M"
    assert declaration(Param("scale", "f32", "float", "scalar")) == "float scale"


def test_one_wrapper() -> None:
    w = CWriter()
    with entry(w, 128, (Param("y", "ptr", "float", "out"), Param("n", "i64", "long long", "scalar"))):
        w.line("y[0] = 1.0f;")
    assert w.text() == ('extern "C" __global__ void __launch_bounds__(128) ENTRY(float* __restrict__ y, '
                        'long long n) {\n  y[0] = 1.0f;\n}\n')


def test_a_spec_renders_its_template_call() -> None:
    spec = KernelSpec("ember_gemm.cuh", "gemm", "ember::gemm::strided", (Tile(64, 64, 16, 4, 4), True, False, "float"),
                      ("a", "b"), 256, (Param("a", "ptr", "float", "in"), Param("b", "ptr", "float", "in")),
                      "ember.matmul @ mm", ("ember.matmul @ mm",))
    kernel = render_spec(spec)
    assert kernel.source.splitlines() == [
        '#include "ember_gemm.cuh"', "// ember.matmul @ mm",
        'extern "C" __global__ void __launch_bounds__(256) ENTRY(const float* __restrict__ a, '
        "const float* __restrict__ b) {",
        "  ember::gemm::strided<ember::gemm::Tile<64, 64, 16, 4, 4>, true, false, float>(a, b);", "}"]
    assert kernel.ops == ("ember.matmul @ mm",) and kernel.entry_hint == "gemm"


@pytest.mark.parametrize("target, sms", [("sm_80", 108), ("sm_86", 84), ("sm_89", 128), ("sm_90", 132),
                                         ("sm_90a", 132), (None, DEFAULT_SMS), ("sm_999", DEFAULT_SMS)])
def test_the_sm_count_comes_from_the_target(target: str | None, sms: int) -> None:
    assert sm_count(SimpleNamespace(target=target)) == sms  # type: ignore[arg-type]


def test_the_sm_count_steers_the_tile() -> None:
    # 2304 x 2304: 324 tiles of 128x128, which fill 132 SMs twice over but not 200.
    assert tile_candidates(2304, 2304, 1, "float", 132)[0] == "tile128x128x8/8x8"
    assert tile_candidates(2304, 2304, 1, "float", 200)[0] == "tile64x64x16/4x4"
    assert tile_candidates(2304, 2304, 1, "double", 132) == ["tile64x64x16/4x4"]


def _matmul(m: int, k: int, n: int):  # type: ignore[no-untyped-def]
    b = Builder("mm")
    x, w = b.input("x", f32[(m, k)]), b.input("w", f32[(k, n)])
    b.output("y", b.matmul(x, w))
    return b.build()


def test_each_candidate_is_its_own_kernel() -> None:
    module = _matmul(256, 64, 2304)
    sources = {}
    for tactic in ("tile128x128x8/8x8", "tile64x64x16/4x4"):
        (kernel,) = lower(module, {}, {0: tactic}).kernels.values()
        sources[tactic] = kernel.source
    assert "ember::gemm::Tile<128, 128, 8, 8, 8>" in sources["tile128x128x8/8x8"]
    assert "ember::gemm::Tile<64, 64, 16, 4, 4>" in sources["tile64x64x16/4x4"]
    for source in sources.values():
        assert source.count('extern "C" __global__') == 1 and "struct Epi" in source
