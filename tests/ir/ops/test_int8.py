"""ember.int8_conv and ember.int8_matmul: the i32 sums against onnx.reference's ConvInteger and
MatMulInteger, the epilogue step by step against numpy written out here and against ONNX's
QuantizeLinear, the float graph they replace, layouts, output types, ties, saturation and NaN,
symbolic shapes and the verifier's errors."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from oracle import ember_op, onnx_op

from ember import ir
from ember.errors import ShapeError, VerifyError

F = np.float32


def ints(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-128, 128, shape).astype(np.int8)


def scalar(v: float, dt=np.float32) -> np.ndarray:
    return np.array(v, dt)


def epilogue_by_hand(acc: np.ndarray, axis: int, sx: float, sw: np.ndarray, bias: np.ndarray | None,
                     relu: bool) -> np.ndarray:
    """The dequantized value, one f32 operation at a time, as ir/ops/int8.py's docstring states it."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    v = acc.astype(F) * (F(sx) * sw.astype(F)).reshape(shape)
    if bias is not None:
        v = v + bias.astype(F).reshape(shape)
    return np.maximum(v, F(0)) if relu else v


CONV_ATTRS = [
    pytest.param({"pads": [1, 1, 1, 1]}, id="pads"),
    pytest.param({"pads": [0, 1, 2, 1], "strides": [2, 1], "dilations": [1, 2]}, id="strides-dilations"),
    pytest.param({"group": 2, "pads": [1, 0, 1, 0]}, id="groups"),
    pytest.param({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, id="same-upper"),
]


@pytest.mark.parametrize("attrs", CONV_ATTRS)
@pytest.mark.parametrize("zero_point", [None, -37], ids=["symmetric", "zero-point"])
def test_int8_conv_sums_are_conv_integers_and_the_epilogue_is_step_by_step(attrs, zero_point):
    rng = np.random.default_rng(0)
    g = attrs.get("group", 1)
    x, w = ints(rng, (2, 4, 7, 6)), ints(rng, (6, 4 // g, 3, 3))
    sw = rng.uniform(0.001, 0.01, 6).astype(F)
    bias = rng.standard_normal(6).astype(F)
    zx = None if zero_point is None else np.array(zero_point, np.int8)
    acc = onnx_op("ConvInteger", [x, w, zx if zx is not None else np.array(0, np.int8)], attrs)[0]
    for relu in (False, True):
        got = ember_op("ember.int8_conv", [x, w, scalar(0.05), sw, bias, zx, None, None], attrs | {"relu": relu})[0]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, epilogue_by_hand(acc, 1, 0.05, sw, bias, relu))
    sy, zy = scalar(0.37), np.array(-5, np.int8)
    q = ember_op("ember.int8_conv", [x, w, scalar(0.05), sw, bias, zx, sy, zy], attrs | {"relu": True})[0]
    want = onnx_op("QuantizeLinear", [epilogue_by_hand(acc, 1, 0.05, sw, bias, True), sy, zy])[0]
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, want)


def test_int8_conv_is_the_float_conv_of_the_dequantized_operands():
    rng = np.random.default_rng(1)
    x, w = ints(rng, (1, 8, 6, 6)), ints(rng, (5, 8, 3, 3))
    sx, zx, sw = 0.02, np.array(11, np.int8), rng.uniform(0.002, 0.02, 5).astype(F)
    bias = rng.standard_normal(5).astype(F)
    got = ember_op("ember.int8_conv", [x, w, scalar(sx), sw, bias, zx, None, None], {"pads": [1, 1, 1, 1]})[0]
    xf = ((x.astype(np.float64) - 11) * sx)
    wf = w.astype(np.float64) * sw.reshape(5, 1, 1, 1).astype(np.float64)
    want = ember_op("ember.conv", [xf, wf, bias.astype(np.float64)], {"pads": [1, 1, 1, 1]})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_int8_conv_channels_last_is_the_transposed_channels_first():
    rng = np.random.default_rng(2)
    x, w = ints(rng, (2, 16, 5, 4)), ints(rng, (8, 16, 3, 3))
    ops = [scalar(0.1), rng.uniform(0.001, 0.01, 8).astype(F), None, np.array(3, np.int8), scalar(0.2), None]
    first = ember_op("ember.int8_conv", [x, w, *ops], {"pads": [1, 1, 1, 1]})[0]
    last = ember_op("ember.int8_conv", [np.transpose(x, (0, 2, 3, 1)), np.transpose(w, (0, 2, 3, 1)), *ops],
                    {"pads": [1, 1, 1, 1], "layout": "NHWC", "weight_layout": "OHWI"})[0]
    np.testing.assert_array_equal(np.transpose(last, (0, 3, 1, 2)), first)


@pytest.mark.parametrize("x_shape", [(5, 24), (2, 3, 7, 24), (1, 24)], ids=["matrix", "batched", "row"])
def test_int8_matmul_sums_are_matmul_integers(x_shape):
    rng = np.random.default_rng(3)
    x, w = ints(rng, x_shape), ints(rng, (9, 24))
    zx = np.array(-100, np.int8)
    sw, bias = rng.uniform(0.001, 0.01, 9).astype(F), rng.standard_normal(9).astype(F)
    acc = onnx_op("MatMulInteger", [x, np.ascontiguousarray(w.T), zx])[0]
    got = ember_op("ember.int8_matmul", [x, w, scalar(0.03), sw, bias, zx, None, None])[0]
    assert got.shape == x_shape[:-1] + (9,)
    np.testing.assert_array_equal(got, epilogue_by_hand(acc, acc.ndim - 1, 0.03, sw, bias, False))
    q = ember_op("ember.int8_matmul", [x, w, scalar(0.03), sw, bias, zx, scalar(0.5), None], {"relu": True})[0]
    want = onnx_op("QuantizeLinear", [epilogue_by_hand(acc, acc.ndim - 1, 0.03, sw, bias, True), scalar(0.5),
                                      np.array(0, np.int8)])[0]
    np.testing.assert_array_equal(q, want)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_a_half_result_is_the_f32_result_rounded_once(dtype):
    rng = np.random.default_rng(4)
    x, w = ints(rng, (3, 32)), ints(rng, (7, 32))
    ops = [x, w, scalar(0.013), scalar(0.0071), rng.standard_normal(7).astype(F), None, None, None]
    wide = ember_op("ember.int8_matmul", ops)[0]
    half = ember_op("ember.int8_matmul", ops, {"dtype": ir.dtype(dtype)})[0]
    np_type = np.float16 if dtype == "f16" else ml_dtypes.bfloat16
    assert half.dtype == np_type
    np.testing.assert_array_equal(half, wide.astype(np_type))


def test_requantize_ties_go_to_even_and_saturate():
    # w = identity rows: acc = x exactly; scale 1, y_scale 2: v / 2 = x / 2, whose halves are ties.
    x = np.array([[-128, -5, -3, -1, 1, 3, 5, 127]], np.int8)
    w = np.eye(8, dtype=np.int8)
    got = ember_op("ember.int8_matmul", [x, w, scalar(1.0), scalar(1.0), None, None, scalar(2.0),
                                         np.array(0, np.int8)])[0]
    assert got.tolist() == [[-64, -2, -2, 0, 0, 2, 2, 64]]
    big = ember_op("ember.int8_matmul", [x, w, scalar(1.0), scalar(1.0), None, None, scalar(0.25), None])[0]
    assert big.tolist() == [[-128, -20, -12, -4, 4, 12, 20, 127]]


def test_a_nan_requantizes_to_the_zero_point():
    # y_scale 0: 0 / 0 is NaN (the zero point), +-x / 0 is +-inf (saturated)
    x = np.array([[0, 1, -1]], np.int8)
    got = ember_op("ember.int8_matmul", [x, np.eye(3, dtype=np.int8), scalar(1.0), scalar(1.0), None, None,
                                         scalar(0.0), np.array(9, np.int8)])[0]
    assert got.tolist() == [[9, 127, -128]]


def test_a_per_tensor_weight_scale_is_every_channels_scale():
    rng = np.random.default_rng(5)
    x, w = ints(rng, (4, 16)), ints(rng, (6, 16))
    one = ember_op("ember.int8_matmul", [x, w, scalar(0.1), scalar(0.004), None, None, None, None])[0]
    each = ember_op("ember.int8_matmul", [x, w, scalar(0.1), np.full(6, 0.004, F), None, None, None, None])[0]
    np.testing.assert_array_equal(one, each)


def infer(op: str, *types, **attrs) -> str:
    b = ir.Builder("t")
    values = [b.input(f"v{i}", t) if t is not None else None for i, t in enumerate(types)]
    return str(b.op(op, *values, **attrs).type)


def test_symbolic_shapes():
    assert infer("ember.int8_conv", ir.i8["N", "H", "W", 16], ir.i8[32, 3, 3, 16], ir.f32[()], ir.f32[32], None, None,
                 ir.f32[()], layout="NHWC", weight_layout="OHWI", strides=[2, 2],
                 pads=[1, 1, 1, 1]) == "i8[N,(H+1)//2,(W+1)//2,32]"
    assert infer("ember.int8_matmul", ir.i8["B", "S", 64], ir.i8[128, 64], ir.f32[()], ir.f32[128]) == "f32[B,S,128]"


@pytest.mark.parametrize("types,attrs,match", [
    ((ir.u8[1, 16], ir.i8[4, 16], ir.f32[()], ir.f32[4]), {}, "must be i8"),
    ((ir.i8[1, 16], ir.i8[4, 15], ir.f32[()], ir.f32[4]), {}, "contraction dims"),
    ((ir.i8[16], ir.i8[4, 16], ir.f32[()], ir.f32[4]), {}, "rank >= 2"),
    ((ir.i8[1, 16], ir.i8[4, 16], ir.f32[2], ir.f32[4]), {}, "x_scale .* scalar"),
    ((ir.i8[1, 16], ir.i8[4, 16], ir.f32[()], ir.f32[3]), {}, "w_scale .* 4 output channels"),
    ((ir.i8[1, 16], ir.i8[4, 16], ir.f32[()], ir.f16[4]), {}, "w_scale .* must be f32"),
    ((ir.i8[1, 16], ir.i8[4, 16], ir.f32[()], ir.f32[4], ir.f32[()]), {}, "bias .* vector of the 4"),
    ((ir.i8[1, 16], ir.i8[4, 16], ir.f32[()], ir.f32[4], None, ir.u8[()]), {}, "x_zero_point .* must be i8"),
    ((ir.i8[1, 16], ir.i8[4, 16], ir.f32[()], ir.f32[4], None, None, None, ir.i8[()]), {}, "needs y_scale"),
    ((ir.i8[1, 16], ir.i8[4, 16], ir.f32[()], ir.f32[4]), {"dtype": ir.i8}, "dequantized result"),
    ((ir.i8[1, 16], ir.i8[4, 16], ir.f32[()], ir.f32[4], None, None, ir.f32[()]), {"dtype": ir.f16},
     "requantized result .* i8"),
])
def test_int8_matmul_errors(types, attrs, match):
    with pytest.raises((ShapeError, VerifyError), match=match):
        infer("ember.int8_matmul", *types, **attrs)


@pytest.mark.parametrize("types,attrs,match", [
    ((ir.i8[1, 4, 5, 5], ir.i8[8, 3, 3, 3], ir.f32[()], ir.f32[8]), {}, "4 input channels"),
    ((ir.i8[1, 4, 5, 5], ir.u8[8, 4, 3, 3], ir.f32[()], ir.f32[8]), {}, "w .* must be i8"),
    ((ir.i8[1, 4, 5, 5], ir.i8[8, 4, 3, 3], ir.f32[()], ir.f32[4]), {}, "w_scale .* 8 output channels"),
    ((ir.i8[1, 4, 5, 5], ir.i8[8, 4, 3, 3], ir.f32[()], ir.f32[8], ir.f32[4]), {}, "bias .* 8 output channels"),
    ((ir.i8[1, 4, 5], ir.i8[8, 4, 3, 3], ir.f32[()], ir.f32[8]), {}, "rank 3"),
])
def test_int8_conv_errors(types, attrs, match):
    with pytest.raises((ShapeError, VerifyError), match=match):
        infer("ember.int8_conv", *types, **attrs)
