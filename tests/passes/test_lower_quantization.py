"""lower-quantization against the ops' references on the values where quantization is subtle:
ties (round half to even), NaN (to the zero point), +-inf and large values (saturation), and
every integer type, per tensor and per axis."""

from __future__ import annotations

import numpy as np
import pytest

from ember import ir
from ember.passes.manager import PassManager

SPECIAL = np.array([0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -1.5, 126.5, 127.5, -128.5, 300.0, -300.0,
                    np.inf, -np.inf, np.nan, 1e30, -1e30, 3.4e38], np.float32)

MODULE = """module {{
  func @main(%x: f32[3,{n}]) -> (q: {q}[3,{n}], y: f32[3,{n}]) {{
    %s = ember.constant {{value = dense<f32[{scale_shape}]: {scale}>}} : f32[{scale_shape}]
    %zp = ember.constant {{value = dense<{q}[{scale_shape}]: {zp}>}} : {q}[{scale_shape}]
    %q = ember.quantize %x, %s, %zp {{axis = {axis}}} : {q}[3,{n}]
    %y = ember.dequantize %q, %s, %zp {{axis = {axis}}} : f32[3,{n}]
    return %q, %y
  }}
}}"""


@pytest.mark.parametrize("q", ["u8", "i8", "u16", "i16", "u4", "i4"])
@pytest.mark.parametrize("per_axis", [False, True])
def test_lowered_quantization_equals_the_reference_exactly(q, per_axis):
    n = len(SPECIAL)
    lo = {"u8": 0, "i8": -128, "u16": 0, "i16": -32768, "u4": 0, "i4": -8}[q]
    if per_axis:
        text = MODULE.format(n=n, q=q, scale_shape="3", scale="[1.0, 0.5, 2.0]", zp=f"[{lo + 3}, {lo}, {lo + 1}]",
                             axis=0)
    else:
        text = MODULE.format(n=n, q=q, scale_shape="", scale="1.0", zp=str(lo + 2), axis=1)
    before, after = ir.parse(text), ir.parse(text)
    records = PassManager("lower-quantization").run(after)
    assert sum(sum(r.stats.values()) for r in records) == 2
    assert not any(op.name in ("ember.quantize", "ember.dequantize") for op in after.walk())
    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):  # 3.4e38 * 3 is meant to be inf
        x = np.stack([SPECIAL, SPECIAL * 3, rng.standard_normal(n).astype(np.float32) * 200])
    want, got = ir.interpret(before, {"x": x}), ir.interpret(after, {"x": x})
    np.testing.assert_array_equal(got["q"], want["q"])
    np.testing.assert_array_equal(got["y"], want["y"])
