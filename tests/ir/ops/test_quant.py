"""ember.quantize, ember.dequantize, ember.dynamic_quantize: against onnx.reference (opset 23)
for every granularity, output type and attribute, by hand, symbolic shapes and errors.

Deliberate differences from onnx.reference, each pinned by a hand-written test:
- fp8 and f4e2m1 zero points are added as the spec's formula says (the reference ignores them;
  fp8 zero points are 0 in practice);
- dequantize subtracts an f4e2m1 zero point likewise;
- dynamic_quantize of an all-zero x gives scale 1 (onnxruntime; the reference's comment says so,
  its code gives 1/255);
- quantize to an integer type maps a NaN quotient to the zero point (undefined in ONNX).
"""

import ml_dtypes
import numpy as np
import onnx
import pytest
from oracle import assert_close, check_vs_onnx, ember_op, rand

from ember import ir
from ember.errors import ShapeError

INT_TYPES = [ir.i8, ir.u8, ir.i16, ir.u16, ir.i4, ir.u4, ir.i2, ir.u2]
FP8_TYPES = [ir.f8e4m3fn, ir.f8e4m3fnuz, ir.f8e5m2, ir.f8e5m2fnuz]
SMALL_FLOATS = [ir.f4e2m1, ir.f6e2m3, ir.f6e3m2]
X_SHAPE = (2, 6, 4)

# granularity: (scale shape, axis, block_size)
GRANULARITY = [
    ((), 1, 0),             # per tensor
    ((1,), 1, 0),           # per tensor, one-element scale
    ((6,), 1, 0),           # per axis, the default axis
    ((2,), 0, 0),           # per axis 0
    ((4,), -1, 0),          # per axis, negative axis
    ((2, 3, 4), 1, 2),      # blocked along axis 1, blocks of 2
    ((2, 2, 4), 1, 4),      # blocked, 6 = 4 + 2: a short last block
    ((1, 6, 4), 0, 2),      # blocked along axis 0, one block covering both
    ((2, 6, 1), -1, 4),     # blocked along the last axis, one block
]


def onnx_enum(t):
    return onnx.helper.np_dtype_to_tensor_dtype(t.np_dtype)


def zero_point(t, shape):
    if t in FP8_TYPES or t in SMALL_FLOATS:
        return np.zeros(shape, t.np_dtype)  # onnx.reference ignores (fp8: requires) zero here
    lo, hi = ml_dtypes.iinfo(t.np_dtype).min, ml_dtypes.iinfo(t.np_dtype).max
    return np.random.default_rng().integers(lo, hi + 1, size=shape).astype(t.np_dtype)


def scales(shape, dt=np.float32, low=0.01, high=0.2):
    return rand(shape, dt, low=low, high=high)


def q_attrs(axis, block_size, **more):
    ember = {"axis": axis, "block_size": block_size, **more}
    onnx_attrs = {"axis": axis, "block_size": block_size}
    if "dtype" in more:
        onnx_attrs["output_dtype"] = onnx_enum(more["dtype"])
    if "saturate" in more:
        onnx_attrs["saturate"] = int(more["saturate"])
    if "precision" in more:
        onnx_attrs["precision"] = onnx_enum(more["precision"])
    return ember, onnx_attrs


# -- quantize vs ONNX -------------------------------------------------------------------------
@pytest.mark.parametrize("scale_shape,axis,block_size", GRANULARITY)
@pytest.mark.parametrize("with_zp", [False, True])
def test_quantize_granularity(scale_shape, axis, block_size, with_zp):
    x, s = rand(X_SHAPE), scales(scale_shape)
    zp = zero_point(ir.i8, scale_shape) if with_zp else None
    attrs, onnx_attrs = q_attrs(axis, block_size)
    got = check_vs_onnx("ember.quantize", "QuantizeLinear", [x, s, zp], attrs, onnx_attrs)[0]
    assert got.dtype == (np.int8 if with_zp else np.uint8)


@pytest.mark.parametrize("to", INT_TYPES + FP8_TYPES + SMALL_FLOATS, ids=str)
def test_quantize_output_types(to):
    x = rand(X_SHAPE, low=-6, high=6)
    s = scales((6,), low=0.02, high=0.5) if to.is_int else scales((6,), low=0.5, high=2)
    # the type from the zero point ...
    check_vs_onnx("ember.quantize", "QuantizeLinear", [x, s, zero_point(to, (6,))])
    # ... or from the dtype attribute
    attrs, onnx_attrs = q_attrs(1, 0, dtype=to)
    got = check_vs_onnx("ember.quantize", "QuantizeLinear", [x, s], attrs, onnx_attrs)[0]
    assert got.dtype == to.np_dtype


@pytest.mark.parametrize("to", FP8_TYPES, ids=str)
@pytest.mark.parametrize("saturate", [True, False])
def test_quantize_fp8_saturate(to, saturate):
    x = rand(X_SHAPE, low=-1e5, high=1e5)
    x[0, 0, :2] = [np.inf, -np.inf]
    attrs, onnx_attrs = q_attrs(1, 0, dtype=to, saturate=saturate)
    check_vs_onnx("ember.quantize", "QuantizeLinear", [x, np.float32(2.0)], attrs, onnx_attrs)


@pytest.mark.parametrize("x_dt,s_dt", [(np.float16, np.float16), (np.float32, np.float16),
                                       (np.float16, np.float32), (ml_dtypes.bfloat16, ml_dtypes.bfloat16),
                                       (np.float32, ml_dtypes.bfloat16), (np.int32, np.float32)])
def test_quantize_input_types(x_dt, s_dt):
    x = rand(X_SHAPE, x_dt, low=-6, high=6)
    s = scales((6,), s_dt, low=0.02, high=0.1)
    check_vs_onnx("ember.quantize", "QuantizeLinear", [x, s, zero_point(ir.i8, (6,))])


@pytest.mark.parametrize("precision", [ir.f16, ir.f32, ir.bf16], ids=str)
def test_quantize_precision_vs_onnx(precision):
    x, s = rand(X_SHAPE, low=-6, high=6), scales((), low=0.01, high=0.03)
    attrs, onnx_attrs = q_attrs(1, 0, precision=precision)
    check_vs_onnx("ember.quantize", "QuantizeLinear", [x, s, zero_point(ir.u8, ())], attrs, onnx_attrs)


# -- dequantize vs ONNX -----------------------------------------------------------------------
@pytest.mark.parametrize("scale_shape,axis,block_size", GRANULARITY)
@pytest.mark.parametrize("with_zp", [False, True])
def test_dequantize_granularity(scale_shape, axis, block_size, with_zp):
    x, s = rand(X_SHAPE, np.int8, low=-12.8, high=12.7), scales(scale_shape)
    zp = zero_point(ir.i8, scale_shape) if with_zp else None
    check_vs_onnx("ember.dequantize", "DequantizeLinear", [x, s, zp], *q_attrs(axis, block_size))


@pytest.mark.parametrize("xt", INT_TYPES + [ir.i32] + FP8_TYPES + SMALL_FLOATS, ids=str)
def test_dequantize_input_types(xt):
    if xt.is_int:
        info = ml_dtypes.iinfo(xt.np_dtype)
        x = np.random.default_rng().integers(max(info.min, -1000), min(info.max, 1000) + 1,
                                             size=X_SHAPE).astype(xt.np_dtype)
    else:
        x = rand(X_SHAPE, np.float32).astype(xt.np_dtype)
    zp = zero_point(xt, (6,)) if xt is not ir.i32 else None
    check_vs_onnx("ember.dequantize", "DequantizeLinear", [x, scales((6,)), zp])
    check_vs_onnx("ember.dequantize", "DequantizeLinear", [x, scales(())])


@pytest.mark.parametrize("s_dt", [np.float16, ml_dtypes.bfloat16])
def test_dequantize_scale_types(s_dt):
    x = rand(X_SHAPE, np.uint8, low=0, high=25.5)
    got = check_vs_onnx("ember.dequantize", "DequantizeLinear", [x, scales((6,), s_dt), zero_point(ir.u8, (6,))])
    assert got[0].dtype == s_dt


@pytest.mark.parametrize("out", [ir.f16, ir.bf16, ir.f32], ids=str)
def test_dequantize_output_dtype(out):
    x = rand(X_SHAPE, np.int8, low=-12.8, high=12.7)
    attrs, onnx_attrs = q_attrs(1, 0, dtype=out)
    got = check_vs_onnx("ember.dequantize", "DequantizeLinear", [x, scales((6,)), zero_point(ir.i8, (6,))],
                        attrs, onnx_attrs)
    assert got[0].dtype == out.np_dtype


def test_dequantize_e8m0_scale():
    x = rand((4, 32), np.float32, low=-6, high=6).astype(ir.f4e2m1.np_dtype)
    s = (2.0 ** np.random.default_rng().integers(-4, 4, size=(4, 1))).astype(np.float32)
    s8 = s.astype(ir.f8e8m0.np_dtype)
    got = ember_op("ember.dequantize", [x, s8], {"axis": 1, "block_size": 32, "dtype": ir.f32})[0]
    assert_close(got, x.astype(np.float32) * s)  # MX: fp4 elements, e8m0 scale per 32


# -- dynamic quantize vs ONNX -----------------------------------------------------------------
@pytest.mark.parametrize("low,high", [(-3, 3), (0.5, 4), (-4, -0.5), (-100, 1)])
def test_dynamic_quantize_vs_onnx(low, high):
    x = rand((3, 7), low=low, high=high)
    got = check_vs_onnx("ember.dynamic_quantize", "DynamicQuantizeLinear", [x], n_outputs=3)
    assert [g.dtype for g in got] == [np.uint8, np.float32, np.uint8]
    assert got[1].shape == () and got[2].shape == ()


# -- by hand ----------------------------------------------------------------------------------
def quantize(x, s, zp=None, **attrs):
    return ember_op("ember.quantize", [np.asarray(x), np.asarray(s), zp], attrs)[0]


def dequantize(x, s, zp=None, **attrs):
    return ember_op("ember.dequantize", [np.asarray(x), np.asarray(s), zp], attrs)[0]


def test_quantize_rounds_half_to_even():
    x = np.float32([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5])
    assert quantize(x, np.float32(1), np.int8(0)).tolist() == [0, 2, 2, 0, -2, -2, 4]
    assert quantize(x * 0.5, np.float32(0.5), np.int8(10)).tolist() == [10, 12, 12, 10, 8, 8, 14]


def test_quantize_saturates():
    assert quantize(np.float32([-10, 300, 254.5]), np.float32(1)).tolist() == [0, 255, 254]
    assert quantize(np.float32([120, -140]), np.float32(1), np.int8(10)).tolist() == [127, -128]
    assert quantize(np.float32([7.6, -9, 3.2]), np.float32(1), dtype=ir.i4).astype(int).tolist() == [7, -8, 3]
    assert quantize(np.float32([7.6, -9]), np.float32(1), dtype=ir.u4).astype(int).tolist() == [8, 0]
    assert quantize(np.float32([1.2, -3]), np.float32(1), dtype=ir.i2).astype(int).tolist() == [1, -2]
    assert quantize(np.float32([70000, -5]), np.float32(1), dtype=ir.u16).tolist() == [65535, 0]


def test_quantize_per_axis_and_blocked_by_hand():
    x = np.float32([[10, 20, 30], [10, 20, 30]])
    assert quantize(x, np.float32([1, 10]), np.uint8([0, 5]), axis=0).tolist() == [[10, 20, 30], [6, 7, 8]]
    assert quantize(x, np.float32([1, 10, 5]), axis=1).tolist() == [[10, 2, 6], [10, 2, 6]]
    # blocks of 2 along axis 1 of 5 elements: scales cover [0:2], [2:4], [4:5]
    xb = np.float32([[10, 20, 300, 400, 500]])
    assert quantize(xb, np.float32([[1, 10, 100]]), dtype=ir.i16, axis=1, block_size=2).tolist() == \
        [[10, 20, 30, 40, 5]]
    assert dequantize(np.int16([[10, 20, 30, 40, 5]]), np.float32([[1, 10, 100]]), axis=1, block_size=2) \
        .tolist() == [[10, 20, 300, 400, 500]]


def test_quantize_fp8_by_hand():
    x = np.float32([1000, -1000, 3.0, np.nan])
    sat = quantize(x, np.float32(1), dtype=ir.f8e4m3fn).astype(np.float32)
    assert sat[:3].tolist() == [448, -448, 3.0] and np.isnan(sat[3])
    no_sat = quantize(x, np.float32(1), dtype=ir.f8e4m3fn, saturate=False).astype(np.float32)
    assert np.isnan(no_sat[[0, 1, 3]]).all() and no_sat[2] == 3.0
    e5 = quantize(x[:2], np.float32(1), dtype=ir.f8e5m2, saturate=False).astype(np.float32)
    assert e5.tolist() == [1024, -1024]
    # the formula adds the zero point even for float types
    zp = np.array(1.0, ir.f8e4m3fn.np_dtype)
    assert quantize(np.float32([2.0]), np.float32(1), zp).astype(np.float32).tolist() == [3.0]
    # fp4 has no infinity: always saturates; NaN converts as ember.cast does (+NaN to -0)
    f4 = quantize(np.float32([100, -100, np.nan, 2.5]), np.float32(1), dtype=ir.f4e2m1, saturate=False)
    assert f4.astype(np.float32).tolist() == [6, -6, 0, 2] and np.signbit(f4.astype(np.float32)[2])


def test_quantize_nan_gives_the_zero_point():
    assert quantize(np.float32([np.nan, 1.0]), np.float32(1), np.uint8(128)).tolist() == [128, 129]
    assert quantize(np.float32([np.nan]), np.float32(1), dtype=ir.i8).tolist() == [0]


def test_quantize_precision_by_hand():
    # 2.5004 is 2.5 in f16: with f16 precision it rounds to even (2), in f32 it is past the tie (3)
    x = np.float32([2.5004])
    assert quantize(x, np.float32(1)).tolist() == [3]
    assert quantize(x, np.float32(1), precision=ir.f16).tolist() == [2]
    assert quantize(x.astype(np.float16), np.float16(1)).tolist() == [2]   # f16 / f16 divides in f16


def test_dequantize_by_hand():
    assert dequantize(np.uint8([0, 128, 255]), np.float32(0.5), np.uint8(128)).tolist() == [-64, 0, 63.5]
    assert dequantize(np.int8([[1, 2], [3, 4]]), np.float32([1, 10]), axis=0).tolist() == [[1, 2], [30, 40]]
    assert dequantize(np.int32([-5, 2 ** 20]), np.float32(2)).tolist() == [-10, 2 ** 21]
    got = dequantize(np.int8([3]), np.float32(0.1), dtype=ir.f16)
    assert got.dtype == np.float16 and got.tolist() == [np.float16(0.3)]
    # f4e2m1 zero point subtracted, as the formula says
    f4 = ml_dtypes.float4_e2m1fn
    assert dequantize(np.array([3.0, -1.0], f4), np.float32(2), np.array(1.0, f4)).tolist() == [4.0, -4.0]
    assert dequantize(np.array([6.0], ir.f6e3m2.np_dtype), np.float32(0.5)).tolist() == [3.0]


def test_per_tensor_scalar_and_one_element_mix():
    # a scalar scale with a [1] zero point (ONNX's test_dequantizelinear_e4m3fn_zero_point) and back
    assert dequantize(np.uint8([10, 20]), np.float32(0.5), np.uint8([4])).tolist() == [3.0, 8.0]
    assert dequantize(np.uint8([10, 20]), np.float32([0.5]), np.uint8(4)).tolist() == [3.0, 8.0]
    got = quantize(np.float32([1.0, -1.0]), np.float32(0.5), np.int8([3]))
    assert got.dtype == np.int8 and got.tolist() == [5, 1]


def test_dynamic_quantize_by_hand():
    y, scale, zp = ember_op("ember.dynamic_quantize", [np.float32([-1, 0, 2, 3])])
    assert scale == np.float32(4) / np.float32(255)
    assert zp == 64  # round(255 / 4) = round(63.75)
    assert y.tolist() == [0, 64, 191, 255]  # 2 / f32(4/255) = 127.49999 -> 127
    y, scale, zp = ember_op("ember.dynamic_quantize", [np.float32([-100, 0, 155, 2.5, 3.5, -0.5])])
    assert scale == 1 and zp == 100
    assert y.tolist() == [0, 100, 255, 102, 104, 100]  # ties to even: 2.5 -> 2, 3.5 -> 4, -0.5 -> 0
    y, scale, zp = ember_op("ember.dynamic_quantize", [np.float32([0.5, 2.0])])  # range widened to 0
    assert zp == 0 and scale == np.float32(2) / np.float32(255) and y.tolist() == [64, 255]
    y, scale, zp = ember_op("ember.dynamic_quantize", [np.float32([-2.0, -0.5])])
    assert zp == 255 and y.tolist() == [0, 191]
    y, scale, zp = ember_op("ember.dynamic_quantize", [np.zeros((2, 2), np.float32)])
    assert scale == 1.0 and zp == 0 and not y.any()   # onnxruntime's scale for an empty range


def test_fake_quant_error_is_within_half_a_step():
    x = rand((4, 16), low=-2, high=2)
    s = np.float32(4 / 255)
    zp = np.uint8(128)
    back = dequantize(quantize(x, s, zp), s, zp)
    assert np.abs(back - x).max() <= s / 2 + 1e-6


def test_quantize_matches_dynamic_quantize():
    x = rand((3, 5))
    y, scale, zp = ember_op("ember.dynamic_quantize", [x])
    assert quantize(x, scale, zp).tolist() == y.tolist()


# -- types ------------------------------------------------------------------------------------
def _vals(*types):
    b = ir.Builder()
    return b, [b.input(f"x{i}", t) for i, t in enumerate(types)]


@pytest.mark.parametrize("op,types,attrs,want", [
    ("quantize", [ir.f32["N", "C", "H", "W"], ir.f32[()]], {}, "u8[N,C,H,W]"),
    ("quantize", [ir.f32["N", 64, "H"], ir.f32[64], ir.i8[64]], {}, "i8[N,64,H]"),
    ("quantize", [ir.f16["N", 64], ir.f16["N", 2]], {"block_size": 32, "dtype": "i4"}, "i4[N,64]"),
    ("quantize", [ir.f32["N", "K"], ir.f32["N", 4]], {"block_size": 32}, "u8[N,K]"),  # 4 = ceil(K/32) at run time
    ("quantize", [ir.f32["S", 8], ir.f32[8]], {"axis": -1, "dtype": "f8e4m3fn"}, "f8e4m3fn[S,8]"),
    ("quantize", [ir.f32[()], ir.f32[()]], {}, "u8[]"),
    ("dequantize", [ir.i8["N", 64], ir.f32[64], ir.i8[64]], {}, "f32[N,64]"),
    ("dequantize", [ir.u4["N", 64], ir.f16["N", 4]], {"block_size": 16}, "f16[N,64]"),
    ("dequantize", [ir.f4e2m1["N", 64], ir.f8e8m0["N", 2]], {"block_size": 32, "dtype": "bf16"}, "bf16[N,64]"),
    ("dequantize", [ir.i32["N"], ir.f32[()]], {}, "f32[N]"),
])
def test_symbolic(op, types, attrs, want):
    b, vals = _vals(*types)
    assert str(getattr(b, op)(*vals, **attrs).type) == want


def test_dynamic_quantize_types():
    b, (x,) = _vals(ir.f32["N", "S"])
    y, s, zp = b.dynamic_quantize(x)
    assert [str(v.type) for v in (y, s, zp)] == ["u8[N,S]", "f32[]", "u8[]"]


@pytest.mark.parametrize("op,types,attrs,match", [
    ("quantize", [ir.f32[4], ir.f32[()], ir.i8[()]], {"dtype": "u8"}, "dtype = u8 does not match the zero point's type i8"),
    ("quantize", [ir.f32[4], ir.f32[()]], {"dtype": "f16"}, "cannot quantize to f16"),
    ("quantize", [ir.f32[4], ir.f32[()], ir.i32[()]], {}, "cannot quantize to i32"),
    ("quantize", [ir.i8[4], ir.f32[()]], {}, "x must be a float or i32 tensor"),
    ("quantize", [ir.f32[4], ir.i32[()]], {}, "float tensor"),
    ("quantize", [ir.f32[2, 6], ir.f32[5]], {}, "per-axis scale f32\\[5\\] needs 6 entries"),
    ("quantize", [ir.f32[2, 6], ir.f32[2, 6]], {}, "must be a scalar \\(per tensor\\) or 1-d"),
    ("quantize", [ir.f32[2, 6], ir.f32[6]], {"block_size": 2}, "blocked scale f32\\[6\\] must have x's rank 2"),
    ("quantize", [ir.f32[2, 6], ir.f32[2, 2]], {"block_size": 2}, "axis 1 should have 3 entries"),
    ("quantize", [ir.f32[2, 6], ir.f32[1, 3]], {"block_size": 2}, "axis 0 should have 2 entries"),
    ("quantize", [ir.f32[2, 6], ir.f32[()]], {"block_size": -1}, "block_size must be >= 0"),
    ("quantize", [ir.f32[2, 6], ir.f32[6]], {"axis": 2}, "axis 2 is out of range for rank 2"),
    ("quantize", [ir.f32[2, 6], ir.f32[6], ir.u8[1]], {}, "zero_point u8\\[1\\] must have the scale's shape"),
    ("quantize", [ir.f32[4], ir.f32[()]], {"precision": "f8e8m0"}, "precision must be"),
    ("dequantize", [ir.f32[4], ir.f32[()]], {}, "x must be a quantized type"),
    ("dequantize", [ir.i8[4], ir.f32[()], ir.u8[()]], {}, "zero_point u8\\[\\] must have x's element type i8"),
    ("dequantize", [ir.i8[4], ir.f8e8m0[()]], {}, "give dtype for an f8e8m0 scale"),
    ("dequantize", [ir.i8[4], ir.f32[()]], {"dtype": "i32"}, "result type must be f32, f16, bf16 or f64"),
    ("dequantize", [ir.i8[2, 6], ir.f32[2]], {}, "needs 6 entries"),
    ("dequantize", [ir.i8[2, 6], ir.f32[2, 4]], {"block_size": 2}, "should have 3 entries"),
    ("dynamic_quantize", [ir.i32[4]], {}, "float tensor"),
])
def test_errors(op, types, attrs, match):
    b, vals = _vals(*types)
    with pytest.raises(ShapeError, match=match):
        getattr(b, op)(*vals, **attrs)
