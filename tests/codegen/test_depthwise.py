"""The vectorized depthwise convolution (ember_conv.cuh `depthwise8`, heavy.DEPTHWISE_VECTOR):
channels-last depthwise convolutions with 8 | channels in f16 or bf16, one thread per 8 channels.

Off until the GPU tests here pass; each test turns it on. On the CPU: which convolutions are
offered it (first) and which are not, and that its kernels compile for sm_80 and sm_90. On the
GPU: against the interpreter at strides, dilations, odd spatial sizes and padding, with
MobileNetV2's bias + clip(0, 6) epilogue fused, on fresh random inputs.
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


@pytest.fixture(autouse=True)
def depthwise_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "DEPTHWISE_VECTOR", True)


def depthwise(c: int, hw: tuple[int, int], dt: DType = f16, layout: str = "NHWC", strides=(1, 1), dilations=(1, 1),
              pads=(1, 1, 1, 1), multiplier: int = 1, relu6: bool = False, n: int = 2) -> Builder:
    b = Builder("dw")
    xs = (n, *hw, c) if layout == "NHWC" else (n, c, *hw)
    ws = (c * multiplier, 3, 3, 1) if layout == "NHWC" else (c * multiplier, 1, 3, 3)
    x, w = b.input("x", dt[xs]), b.input("w", dt[ws])
    bias = b.input("bias", dt[(c * multiplier,)])
    y = b.conv(x, w, bias, strides=strides, pads=pads, dilations=dilations, group=c, layout=layout,
               weight_layout="OHWI" if layout == "NHWC" else "OIHW")
    if relu6:
        y = b.clip(y, b.constant(np.array(0.0, dt.np_dtype)), b.constant(np.array(6.0, dt.np_dtype)))
    b.output("y", y)
    return b


CASES = {
    "mobilenet-block": lambda: depthwise(32, (14, 14), relu6=True),
    "strided-odd": lambda: depthwise(96, (13, 11), strides=(2, 2)),
    "dilated-bf16": lambda: depthwise(16, (9, 9), bf16, dilations=(2, 2), pads=(2, 2, 2, 2)),
    "one-pixel": lambda: depthwise(8, (1, 1), n=3),
}
NOT_OFFERED = {
    "channels-not-a-multiple-of-8": lambda: depthwise(12, (7, 7)),
    "channels-first": lambda: depthwise(16, (7, 7), layout="NCHW"),
    "f32": lambda: depthwise(16, (7, 7), f32),
    "channel-multiplier-2": lambda: depthwise(8, (7, 7), multiplier=2),
}


def conv_step(program):
    (step,) = [s for s in program.steps if s.kind == "launch" and s.tactic is not None]
    return step


@pytest.mark.parametrize("name", sorted(CASES))
def test_depthwise_convolutions_take_it_first(name: str) -> None:
    program = lower(CASES[name]().build())
    step = conv_step(program)
    assert step.tactic == "depthwise8" and "direct" in step.candidates, step.candidates
    assert "ember::conv::depthwise8" in program.kernels[step.kernel].source


@pytest.mark.parametrize("name", sorted(NOT_OFFERED))
def test_other_convolutions_are_not_offered_it(name: str) -> None:
    step = conv_step(lower(NOT_OFFERED[name]().build()))
    assert "depthwise8" not in step.candidates, step.candidates


def test_the_kernels_compile(kernel_cache: Path) -> None:
    kernels = [k for name in sorted(CASES) for k in lower(CASES[name]().build()).kernels.values()]
    Compiler(("sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(kernels)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", sorted(CASES))
def test_depthwise8_matches_the_interpreter_on_the_gpu(name: str, tmp_path: Path) -> None:
    module = CASES[name]().build()
    engine = ember.compile(module, pipeline="canonicalize,fuse-epilogue", cache_dir=tmp_path / "cache")
    assert any("ember::conv::depthwise8" in k.source for k in engine.kernels.values())
    for _ in range(2):
        feeds = {v.name: rand(np.random.default_rng(), v.type, 0.05, 1.0) for v in module.main.inputs}
        expected = ember.interpret(module, feeds)
        got = engine.run(feeds, device="cuda")
        for out, ref in expected.items():
            assert_close(np.asarray(got[out]), np.asarray(ref), what=f"{name}: {out}")
