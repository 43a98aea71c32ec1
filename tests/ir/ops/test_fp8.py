"""ember.fp8_conv and ember.fp8_matmul: the accumulators against exact sums of fp8 codes decoded
by hand here (bits, not ml_dtypes), and against onnx.reference's Conv in f64; the epilogue step
by step in numpy written out here; the float graph they replace; layouts, result types, NaN and
infinity, symbolic shapes and the verifier's errors."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from oracle import ember_op, onnx_op

from ember import ir
from ember.errors import ShapeError, VerifyError

F = np.float32
E4, E5 = ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2
FORMATS = {E4: (4, 3, 7), E5: (5, 2, 15)}   # exponent bits, mantissa bits, bias


def codes(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Random fp8 values: every finite code of the format equally likely (subnormals, zeros, both signs)."""
    raw = rng.integers(0, 256, shape).astype(np.uint8)
    e, m, _ = FORMATS[dtype]
    mag = raw & 0x7F
    finite = mag != 0x7F if dtype is E4 else (mag >> m) != (1 << e) - 1
    return np.where(finite, raw, raw & 0x80).view(dtype)


def exact(code: int, dtype: type) -> Fraction:
    """The value of one fp8 code, decoded from its bits."""
    e, m, bias = FORMATS[dtype]
    sign = -1 if code & 0x80 else 1
    field, mant = (code & 0x7F) >> m, code & ((1 << m) - 1)
    if field == 0:
        return sign * Fraction(mant, 1 << m) * Fraction(2) ** (1 - bias)
    return sign * (1 + Fraction(mant, 1 << m)) * Fraction(2) ** (field - bias)


def exact_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_k x[.., k] * w[n, k], exactly (Fractions), rounded once to f32 (f64 is exact for these
    sums' few significant bits, so the one f64 -> f32 rounding is the only one)."""
    xs = x.reshape(-1, x.shape[-1])
    xv = [[exact(int(c), x.dtype.type) for c in row.view(np.uint8)] for row in xs]
    wv = [[exact(int(c), w.dtype.type) for c in row.view(np.uint8)] for row in w]
    out = np.array([[float(sum((a * b for a, b in zip(r, c)), Fraction(0))) for c in wv] for r in xv])
    return out.astype(F).reshape(x.shape[:-1] + (w.shape[0],))


def epilogue_by_hand(acc: np.ndarray, axis: int, sx: float, sw: np.ndarray, bias: np.ndarray | None,
                     relu: bool) -> np.ndarray:
    """One f32 operation at a time, as ir/ops/fp8.py's docstring states it."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    v = acc.astype(F) * (F(sx) * sw.astype(F)).reshape(shape)
    if bias is not None:
        v = v + bias.astype(F).reshape(shape)
    return np.maximum(v, F(0)) if relu else v


def scalar(v: float) -> np.ndarray:
    return np.array(v, F)


PAIRS = [pytest.param(E4, E4, id="e4m3"), pytest.param(E5, E5, id="e5m2"), pytest.param(E4, E5, id="e4m3-e5m2"),
         pytest.param(E5, E4, id="e5m2-e4m3")]


@pytest.mark.parametrize("xt,wt", PAIRS)
@pytest.mark.parametrize("x_shape", [(5, 24), (2, 3, 4, 24)], ids=["matrix", "batched"])
def test_fp8_matmul_sums_are_exact_and_the_epilogue_is_step_by_step(xt, wt, x_shape):
    rng = np.random.default_rng(3)
    x, w = codes(rng, x_shape, xt), codes(rng, (9, 24), wt)
    acc = exact_matmul(x, w)
    unit = ember_op("ember.fp8_matmul", [x, w, scalar(1.0), scalar(1.0), None])[0]
    assert unit.dtype == F and unit.shape == x_shape[:-1] + (9,)
    np.testing.assert_array_equal(unit, acc)
    sw, bias = rng.uniform(0.001, 0.01, 9).astype(F), rng.standard_normal(9).astype(F)
    for relu in (False, True):
        got = ember_op("ember.fp8_matmul", [x, w, scalar(0.03), sw, bias], {"relu": relu})[0]
        np.testing.assert_array_equal(got, epilogue_by_hand(acc, acc.ndim - 1, 0.03, sw, bias, relu))


CONV_ATTRS = [
    pytest.param({"pads": [1, 1, 1, 1]}, id="pads"),
    pytest.param({"pads": [0, 1, 2, 1], "strides": [2, 1], "dilations": [1, 2]}, id="strides-dilations"),
    pytest.param({"group": 2, "pads": [1, 0, 1, 0]}, id="groups"),
    pytest.param({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, id="same-upper"),
]


@pytest.mark.parametrize("attrs", CONV_ATTRS)
@pytest.mark.parametrize("xt,wt", PAIRS[:3])
def test_fp8_conv_sums_are_onnx_convs_of_the_decoded_values(attrs, xt, wt):
    rng = np.random.default_rng(0)
    g = attrs.get("group", 1)
    x, w = codes(rng, (2, 4, 7, 6), xt), codes(rng, (6, 4 // g, 3, 3), wt)
    decoded = [np.vectorize(lambda c, t=a.dtype.type: float(exact(int(c), t)))(a.view(np.uint8)) for a in (x, w)]
    acc = onnx_op("Conv", decoded, attrs)[0].astype(F)   # f64: exact for these few terms
    unit = ember_op("ember.fp8_conv", [x, w, scalar(1.0), scalar(1.0), None], attrs)[0]
    np.testing.assert_array_equal(unit, acc)
    sw, bias = rng.uniform(0.001, 0.01, 6).astype(F), rng.standard_normal(6).astype(F)
    got = ember_op("ember.fp8_conv", [x, w, scalar(0.05), sw, bias], attrs | {"relu": True})[0]
    np.testing.assert_array_equal(got, epilogue_by_hand(acc, 1, 0.05, sw, bias, True))


def test_fp8_conv_is_the_float_conv_of_the_dequantized_operands():
    rng = np.random.default_rng(1)
    x, w = codes(rng, (1, 8, 6, 6), E4), codes(rng, (5, 8, 3, 3), E4)
    sx, sw = 0.02, rng.uniform(0.002, 0.02, 5).astype(F)
    bias = rng.standard_normal(5).astype(F)
    got = ember_op("ember.fp8_conv", [x, w, scalar(sx), sw, bias], {"pads": [1, 1, 1, 1]})[0]
    xf = x.astype(np.float64) * sx
    wf = w.astype(np.float64) * sw.reshape(5, 1, 1, 1).astype(np.float64)
    want = ember_op("ember.conv", [xf, wf, bias.astype(np.float64)], {"pads": [1, 1, 1, 1]})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_fp8_conv_channels_last_is_the_transposed_channels_first():
    rng = np.random.default_rng(2)
    x, w = codes(rng, (2, 16, 5, 4), E4), codes(rng, (8, 16, 3, 3), E5)
    ops = [scalar(0.1), rng.uniform(0.001, 0.01, 8).astype(F), rng.standard_normal(8).astype(F)]
    first = ember_op("ember.fp8_conv", [x, w, *ops], {"pads": [1, 1, 1, 1]})[0]
    last = ember_op("ember.fp8_conv", [np.transpose(x, (0, 2, 3, 1)), np.transpose(w, (0, 2, 3, 1)), *ops],
                    {"pads": [1, 1, 1, 1], "layout": "NHWC", "weight_layout": "OHWI"})[0]
    np.testing.assert_array_equal(np.transpose(last, (0, 3, 1, 2)), first)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_a_half_result_is_the_f32_result_rounded_once(dtype):
    rng = np.random.default_rng(4)
    x, w = codes(rng, (3, 32), E4), codes(rng, (7, 32), E4)
    ops = [x, w, scalar(0.013), scalar(0.0071), rng.standard_normal(7).astype(F)]
    wide = ember_op("ember.fp8_matmul", ops)[0]
    half = ember_op("ember.fp8_matmul", ops, {"dtype": ir.dtype(dtype)})[0]
    np_type = np.float16 if dtype == "f16" else ml_dtypes.bfloat16
    assert half.dtype == np_type
    np.testing.assert_array_equal(half, wide.astype(np_type))


def test_nan_and_infinity_propagate_as_ieee_arithmetic():
    x = np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 0.0]], F).astype(E4)
    w = np.array([[1.0, 1.0], [0.0, 2.0]], F).astype(E4)
    got = ember_op("ember.fp8_matmul", [x, w, scalar(1.0), scalar(1.0), None])[0]
    assert got[0].tolist() == [3.0, 4.0] and np.isnan(got[1]).all() and got[2].tolist() == [3.0, 0.0]
    xi = np.array([[np.inf, 1.0], [-np.inf, 0.0]], F).astype(E5)
    wi = np.array([[1.0, 0.0], [0.0, 1.0]], F).astype(E5)
    got = ember_op("ember.fp8_matmul", [xi, wi, scalar(1.0), scalar(1.0), None])[0]
    assert got[0, 0] == np.inf and np.isnan(got[0, 1]) and got[1, 0] == -np.inf and np.isnan(got[1, 1])


def test_a_per_tensor_weight_scale_is_every_channels_scale():
    rng = np.random.default_rng(5)
    x, w = codes(rng, (4, 16), E4), codes(rng, (6, 16), E4)
    one = ember_op("ember.fp8_matmul", [x, w, scalar(0.1), scalar(0.004), None])[0]
    each = ember_op("ember.fp8_matmul", [x, w, scalar(0.1), np.full(6, 0.004, F), None])[0]
    np.testing.assert_array_equal(one, each)


def infer(op: str, *types, **attrs) -> str:
    b = ir.Builder("t")
    values = [b.input(f"v{i}", t) if t is not None else None for i, t in enumerate(types)]
    return str(b.op(op, *values, **attrs).type)


def test_symbolic_shapes():
    assert infer("ember.fp8_conv", ir.f8e4m3fn["N", "H", "W", 16], ir.f8e4m3fn[32, 3, 3, 16], ir.f32[()],
                 ir.f32[32], None, layout="NHWC", weight_layout="OHWI", strides=[2, 2], pads=[1, 1, 1, 1],
                 dtype=ir.f16) == "f16[N,(H+1)//2,(W+1)//2,32]"
    assert infer("ember.fp8_matmul", ir.f8e5m2["B", "S", 64], ir.f8e4m3fn[128, 64], ir.f32[()],
                 ir.f32[128]) == "f32[B,S,128]"


F8 = ir.f8e4m3fn


@pytest.mark.parametrize("types,attrs,match", [
    ((ir.i8[1, 16], F8[4, 16], ir.f32[()], ir.f32[4]), {}, "'x' must be a float tensor"),
    ((ir.f16[1, 16], F8[4, 16], ir.f32[()], ir.f32[4]), {}, "x .* must be f8e4m3fn or f8e5m2"),
    ((F8[1, 16], ir.f16[4, 16], ir.f32[()], ir.f32[4]), {}, "w .* must be f8e4m3fn or f8e5m2"),
    ((ir.f8e4m3fnuz[1, 16], F8[4, 16], ir.f32[()], ir.f32[4]), {}, "must be f8e4m3fn or f8e5m2"),
    ((F8[1, 16], F8[4, 15], ir.f32[()], ir.f32[4]), {}, "contraction dims"),
    ((F8[16], F8[4, 16], ir.f32[()], ir.f32[4]), {}, "rank >= 2"),
    ((F8[1, 16], F8[4, 16], ir.f32[2], ir.f32[4]), {}, "x_scale .* scalar"),
    ((F8[1, 16], F8[4, 16], ir.f16[()], ir.f32[4]), {}, "x_scale .* must be f32"),
    ((F8[1, 16], F8[4, 16], ir.f32[()], ir.f32[3]), {}, "w_scale .* 4 output channels"),
    ((F8[1, 16], F8[4, 16], ir.f32[()], ir.f32[4], ir.f32[()]), {}, "bias .* vector of the 4"),
    ((F8[1, 16], F8[4, 16], ir.f32[()], ir.f32[4]), {"dtype": F8}, "result is f32, f16 or bf16"),
])
def test_fp8_matmul_errors(types, attrs, match):
    with pytest.raises((ShapeError, VerifyError), match=match):
        infer("ember.fp8_matmul", *types, **attrs)


@pytest.mark.parametrize("types,attrs,match", [
    ((F8[1, 4, 5, 5], F8[8, 3, 3, 3], ir.f32[()], ir.f32[8]), {}, "4 input channels"),
    ((F8[1, 4, 5, 5], ir.bf16[8, 4, 3, 3], ir.f32[()], ir.f32[8]), {}, "w .* must be f8e4m3fn"),
    ((F8[1, 4, 5, 5], F8[8, 4, 3, 3], ir.f32[()], ir.f32[4]), {}, "w_scale .* 8 output channels"),
    ((F8[1, 4, 5, 5], F8[8, 4, 3, 3], ir.f32[()], ir.f32[8], ir.f32[4]), {}, "bias .* 8 output channels"),
    ((F8[1, 4, 5], F8[8, 4, 3, 3], ir.f32[()], ir.f32[8]), {}, "rank 3"),
])
def test_fp8_conv_errors(types, attrs, match):
    with pytest.raises((ShapeError, VerifyError), match=match):
        infer("ember.fp8_conv", *types, **attrs)
