"""Every elementwise op: against onnx.reference (fresh random inputs, every attribute variant,
the dtypes ONNX allows, broadcasting), hand-computed cases for rules.py's numeric conventions
(NaN propagation, truncating integer division, wrap-around, round half to even, -0.0),
symbolic shapes and errors."""

import ml_dtypes
import numpy as np
import pytest
from oracle import assert_close, check_vs_onnx, ember_op, onnx_op, rand

from ember import ir
from ember.errors import ShapeError

F32, F16, F64, BF16 = np.float32, np.float16, np.float64, ml_dtypes.bfloat16
FLOATS = [F32, F16, F64]
SIGNED = [np.int8, np.int16, np.int32, np.int64]
UNSIGNED = [np.uint8, np.uint16, np.uint32, np.uint64]
INTS = SIGNED + UNSIGNED
NUMERIC = FLOATS + [BF16] + INTS
BROADCAST = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((3, 1), ())]


def ids(dts):
    return [np.dtype(d).name for d in dts]


def nonzero(a):
    a = np.array(a)
    a[a == 0] = 1
    return a


def sign_bits(a):
    return np.signbit(np.asarray(a, np.float64)).tolist()


# -- binary arithmetic ------------------------------------------------------------------------
ARITH = [("ember.add", "Add"), ("ember.sub", "Sub"), ("ember.mul", "Mul"), ("ember.div", "Div"),
         ("ember.max", "Max"), ("ember.min", "Min")]


@pytest.mark.parametrize("op,onnx_type", ARITH)
@pytest.mark.parametrize("dt", NUMERIC, ids=ids(NUMERIC))
def test_arith_dtypes(op, onnx_type, dt):
    x, y = rand((3, 4), dt), rand((3, 4), dt)
    if op == "ember.div":
        y = nonzero(y)
    check_vs_onnx(op, onnx_type, [x, y])


@pytest.mark.parametrize("op,onnx_type", ARITH)
@pytest.mark.parametrize("sx,sy", BROADCAST)
def test_arith_broadcast(op, onnx_type, sx, sy):
    check_vs_onnx(op, onnx_type, [rand(sx), rand(sy)])


@pytest.mark.parametrize("sx,sy", BROADCAST[1:3])
def test_int_div_broadcast(sx, sy):
    check_vs_onnx("ember.div", "Div", [rand(sx, np.int32), nonzero(rand(sy, np.int32))])


POW_TYPES = [(F32, F32), (F16, F16), (F64, F64), (F32, np.int64), (F16, F32), (np.int32, np.int32),
             (np.int64, np.int64), (np.int32, np.uint8), (np.int64, F32), (np.int32, F16), (BF16, BF16)]


@pytest.mark.parametrize("dx,dy", POW_TYPES, ids=[f"{np.dtype(a).name}-{np.dtype(b).name}" for a, b in POW_TYPES])
def test_pow_vs_onnx(dx, dy):
    x = rand((2, 3, 4), dx, low=0.1, high=3)
    y = rand((3, 4), dy, low=0, high=0.3 if np.dtype(dy).kind in "iu" else 2.5)
    check_vs_onnx("ember.pow", "Pow", [x, y])


@pytest.mark.parametrize("dt", INTS, ids=ids(INTS))
def test_mod_int_vs_onnx(dt):
    for fmod in (False, True):
        x, y = rand((3, 4), dt), nonzero(rand((4,), dt))
        check_vs_onnx("ember.mod", "Mod", [x, y], {"fmod": fmod}, {"fmod": int(fmod)})


@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
@pytest.mark.parametrize("fmod", [False, True])
def test_mod_float_vs_onnx(dt, fmod):
    check_vs_onnx("ember.mod", "Mod", [rand((3, 4), dt), rand((1, 4), dt)], {"fmod": fmod}, {"fmod": int(fmod)},
                  opset=28)


def test_mod_float_special_values():
    # ONNX 28's table for fmod=0: a zero x takes y's sign; inf x, zero y, NaN give NaN;
    # an infinite y gives x (same sign) or y (opposite signs)
    inf, nan = np.inf, np.nan
    x = np.float32([0.0, -0.0, 0.0, inf, 3.0, nan, 5.0, -5.0, 5.0, -5.0, 7.5, -7.5])
    y = np.float32([2.0, 2.0, -2.0, 2.0, 0.0, 2.0, inf, -inf, -inf, inf, -2.0, 2.0])
    got = ember_op("ember.mod", [x, y])[0]
    want = np.float32([0.0, 0.0, -0.0, nan, nan, nan, 5.0, -5.0, -inf, inf, -0.5, 0.5])
    assert np.array_equal(got, want, equal_nan=True)
    signed = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[signed]), np.signbit(want[signed]))
    fm = ember_op("ember.mod", [x, y], {"fmod": True})[0]
    want_fm = np.float32([0.0, -0.0, 0.0, nan, nan, nan, 5.0, -5.0, 5.0, -5.0, 1.5, -1.5])
    assert np.array_equal(fm, want_fm, equal_nan=True)
    half = ember_op("ember.mod", [np.float16([-7.5]), np.float16([2.0])])[0]
    assert half.dtype == np.float16 and half.tolist() == [0.5]


PRELU_SLOPES = [(2, 3, 4), (4,), (3, 1), (1,), ()]


@pytest.mark.parametrize("slope", PRELU_SLOPES)
def test_prelu_broadcast(slope):
    check_vs_onnx("ember.prelu", "PRelu", [rand((2, 3, 4)), rand(slope)])


@pytest.mark.parametrize("dt", [F16, F64, BF16, np.int32, np.int64, np.uint32, np.uint64],
                         ids=ids([F16, F64, BF16, np.int32, np.int64, np.uint32, np.uint64]))
def test_prelu_dtypes(dt):
    check_vs_onnx("ember.prelu", "PRelu", [rand((2, 3), dt), rand((3,), dt)])


# -- comparison -------------------------------------------------------------------------------
COMPARE = [("ember.equal", "Equal"), ("ember.less", "Less"), ("ember.less_equal", "LessOrEqual"),
           ("ember.greater", "Greater"), ("ember.greater_equal", "GreaterOrEqual")]


def half_equal(dt, shape=(3, 4)):
    """Pairs where about half the elements are equal, so == and <= are both exercised."""
    x, y = rand(shape, dt), rand(shape, dt)
    mask = rand(shape, np.bool_)
    return x, np.where(mask, x, y).astype(x.dtype)


@pytest.mark.parametrize("op,onnx_type", COMPARE)
@pytest.mark.parametrize("dt", NUMERIC, ids=ids(NUMERIC))
def test_compare_dtypes(op, onnx_type, dt):
    check_vs_onnx(op, onnx_type, list(half_equal(dt)))


@pytest.mark.parametrize("op,onnx_type", COMPARE)
def test_compare_broadcast(op, onnx_type):
    x, y = half_equal(F32, (2, 1, 4))
    check_vs_onnx(op, onnx_type, [x, y[0, :, :1]])


def test_equal_bool_and_string():
    check_vs_onnx("ember.equal", "Equal", [rand((3, 4), np.bool_), rand((4,), np.bool_)])
    s = np.array(["a", "bb", "", "a"], dtype=object)
    t = np.array(["a", "b", "", "c"], dtype=object)
    got = check_vs_onnx("ember.equal", "Equal", [s, t])
    assert got[0].tolist() == [True, False, True, False]


def test_compare_nan_is_false():
    x = np.array([np.nan, np.nan, 1.0], np.float32)
    y = np.array([np.nan, 1.0, np.nan], np.float32)
    for op in ("ember.equal", "ember.less", "ember.less_equal", "ember.greater", "ember.greater_equal"):
        assert ember_op(op, [x, y])[0].tolist() == [False, False, False], op
    assert ember_op("ember.equal", [np.float32([-0.0]), np.float32([0.0])])[0].tolist() == [True]


# -- logic and bits ---------------------------------------------------------------------------
@pytest.mark.parametrize("op,onnx_type", [("ember.and", "And"), ("ember.or", "Or"), ("ember.xor", "Xor")])
@pytest.mark.parametrize("sx,sy", BROADCAST[:3])
def test_logic_vs_onnx(op, onnx_type, sx, sy):
    check_vs_onnx(op, onnx_type, [rand(sx, np.bool_), rand(sy, np.bool_)])


def test_logic_truth_tables():
    a = np.array([False, False, True, True])
    b = np.array([False, True, False, True])
    assert ember_op("ember.and", [a, b])[0].tolist() == [False, False, False, True]
    assert ember_op("ember.or", [a, b])[0].tolist() == [False, True, True, True]
    assert ember_op("ember.xor", [a, b])[0].tolist() == [False, True, True, False]
    got = check_vs_onnx("ember.not", "Not", [a])
    assert got[0].tolist() == [True, True, False, False]


BITWISE = [("ember.bitwise_and", "BitwiseAnd"), ("ember.bitwise_or", "BitwiseOr"),
           ("ember.bitwise_xor", "BitwiseXor")]


@pytest.mark.parametrize("op,onnx_type", BITWISE)
@pytest.mark.parametrize("dt", INTS, ids=ids(INTS))
def test_bitwise_vs_onnx(op, onnx_type, dt):
    check_vs_onnx(op, onnx_type, [rand((2, 3, 4), dt, low=-12, high=12), rand((3, 1), dt, low=-12, high=12)])


@pytest.mark.parametrize("dt", INTS, ids=ids(INTS))
def test_bitwise_not_vs_onnx(dt):
    check_vs_onnx("ember.bitwise_not", "BitwiseNot", [rand((3, 4), dt, low=-12, high=12)])


def test_bitwise_by_hand():
    x, y = np.array([0b1100, -1], np.int8), np.array([0b1010, 0x0F], np.int8)
    assert ember_op("ember.bitwise_and", [x, y])[0].tolist() == [0b1000, 0x0F]
    assert ember_op("ember.bitwise_or", [x, y])[0].tolist() == [0b1110, -1]
    assert ember_op("ember.bitwise_xor", [x, y])[0].tolist() == [0b0110, -16]
    assert ember_op("ember.bitwise_not", [np.array([0, 255], np.uint8)])[0].tolist() == [255, 0]


@pytest.mark.parametrize("dt", INTS, ids=ids(INTS))
@pytest.mark.parametrize("direction", ["left", "right"])
def test_bit_shift_vs_onnx(dt, direction):
    bits = np.dtype(dt).itemsize * 8
    x = rand((3, 4), dt, low=-25 if np.dtype(dt).kind == "i" else 0, high=25)
    low = -3 if np.dtype(dt).kind == "i" else 0  # out-of-range amounts: negative and >= the width
    y = np.random.default_rng().integers(low, bits + 3, size=(4,)).astype(dt)
    check_vs_onnx("ember.bit_shift", "BitShift", [x, y], {"direction": direction},
                  {"direction": direction.upper()}, opset=28)


def test_bit_shift_by_hand():
    x = np.array([1, 0x81, 0xFF], np.uint8)
    s = np.array([3, 1, 4], np.uint8)
    assert ember_op("ember.bit_shift", [x, s], {"direction": "left"})[0].tolist() == [8, 0x02, 0xF0]
    assert ember_op("ember.bit_shift", [x, s], {"direction": "right"})[0].tolist() == [0, 0x40, 0x0F]


def test_bit_shift_signed_by_hand():
    x = np.array([-8, -1, 64, 5, -5, -5, 7], np.int8)
    s = np.array([1, 7, 1, 8, -1, 9, 0], np.int8)
    # right: arithmetic (sign fill); out of range (8, -1, 9): -1 for negative x, else 0
    assert ember_op("ember.bit_shift", [x, s], {"direction": "right"})[0].tolist() == [-4, -1, 32, 0, -1, -1, 7]
    # left: two's complement bits, past the sign bit lost; out of range: 0
    assert ember_op("ember.bit_shift", [x, s], {"direction": "left"})[0].tolist() == [-16, -128, -128, 0, 0, 0, 7]
    big = np.array([1, 1], np.uint64), np.array([63, 64], np.uint64)
    assert ember_op("ember.bit_shift", list(big), {"direction": "left"})[0].tolist() == [1 << 63, 0]


# -- unary math -------------------------------------------------------------------------------
UNARY = [  # ember op, ONNX op, input range
    ("ember.exp", "Exp", (-3, 3)), ("ember.log", "Log", (0.1, 3)), ("ember.sqrt", "Sqrt", (0.1, 3)),
    ("ember.reciprocal", "Reciprocal", (0.5, 3)), ("ember.sin", "Sin", (-3, 3)), ("ember.cos", "Cos", (-3, 3)),
    ("ember.tan", "Tan", (-1.4, 1.4)), ("ember.asin", "Asin", (-0.99, 0.99)),
    ("ember.acos", "Acos", (-0.99, 0.99)), ("ember.atan", "Atan", (-3, 3)), ("ember.sinh", "Sinh", (-3, 3)),
    ("ember.cosh", "Cosh", (-3, 3)), ("ember.tanh", "Tanh", (-3, 3)), ("ember.asinh", "Asinh", (-3, 3)),
    ("ember.acosh", "Acosh", (1.01, 3)), ("ember.atanh", "Atanh", (-0.99, 0.99)), ("ember.erf", "Erf", (-3, 3)),
    ("ember.sigmoid", "Sigmoid", (-6, 6)), ("ember.softplus", "Softplus", (-6, 6)),
    ("ember.softsign", "Softsign", (-6, 6)), ("ember.floor", "Floor", (-3, 3)), ("ember.ceil", "Ceil", (-3, 3)),
    ("ember.round", "Round", (-3, 3)), ("ember.mish", "Mish", (-6, 6)), ("ember.hardswish", "HardSwish", (-5, 5)),
    ("ember.neg", "Neg", (-3, 3)), ("ember.abs", "Abs", (-3, 3)), ("ember.sign", "Sign", (-3, 3)),
    ("ember.relu", "Relu", (-3, 3)),
]


@pytest.mark.parametrize("op,onnx_type,domain", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_unary_float(op, onnx_type, domain, dt):
    # onnx.reference computes Erf through f32 (np.vectorize(math.erf, otypes="f")) even for f64;
    # Ember's f64 erf is exact, so f64 is held to f32's tolerance there.
    # HardSwish's reference likewise uses alpha = 1/6 rounded to f32 (an ONNX float attribute).
    tol = {"rtol": 1e-6} if dt is F64 and op in ("ember.erf", "ember.hardswish") else {}
    check_vs_onnx(op, onnx_type, [rand((3, 5), dt, low=domain[0], high=domain[1])], **tol)


@pytest.mark.parametrize("op,onnx_type", [("ember.exp", "Exp"), ("ember.tanh", "Tanh"), ("ember.relu", "Relu"),
                                          ("ember.abs", "Abs"), ("ember.neg", "Neg"), ("ember.round", "Round")])
def test_unary_bf16(op, onnx_type):
    check_vs_onnx(op, onnx_type, [rand((3, 5), BF16)])


@pytest.mark.parametrize("op,onnx_type,dts", [
    ("ember.neg", "Neg", SIGNED), ("ember.abs", "Abs", INTS), ("ember.sign", "Sign", INTS),
    ("ember.relu", "Relu", SIGNED)])
def test_unary_int(op, onnx_type, dts):
    for dt in dts:
        check_vs_onnx(op, onnx_type, [rand((3, 5), dt)])


def test_silu_vs_onnx_swish():
    check_vs_onnx("ember.silu", "Swish", [rand((3, 5))], opset=24)
    check_vs_onnx("ember.silu", "Swish", [rand((3, 5), F16)], opset=24)


def test_rsqrt_by_hand():
    x = np.array([4.0, 0.25, 2.0, 0.0, -1.0], np.float32)
    got = ember_op("ember.rsqrt", [x])[0]
    assert got[:3].tolist() == [0.5, 2.0, np.float32(1 / np.sqrt(2.0))]
    assert np.isposinf(got[3]) and np.isnan(got[4])
    x16 = rand((3, 4), F16, low=0.1, high=3)
    np.testing.assert_allclose(ember_op("ember.rsqrt", [x16])[0].astype(np.float64),
                               1 / np.sqrt(x16.astype(np.float64)), rtol=1e-3)


def test_unary_by_hand():
    x = np.array([-2.0, 0.0, 1.0], np.float32)
    assert ember_op("ember.exp", [x])[0].tolist() == np.exp(x).tolist()
    assert ember_op("ember.sigmoid", [np.float32([0.0])])[0].tolist() == [0.5]
    assert ember_op("ember.softsign", [np.float32([-3.0, 1.0])])[0].tolist() == [-0.75, 0.5]
    assert ember_op("ember.hardswish", [np.float32([-4, -3, 0, 3, 4])])[0].tolist() == [0, 0, 0, 3, 4]
    assert ember_op("ember.sign", [np.float32([-2, 0, 5, np.nan])])[0][:3].tolist() == [-1, 0, 1]
    np.testing.assert_allclose(ember_op("ember.softplus", [np.float32([0.0, 100.0])])[0], [np.log(2), 100])
    np.testing.assert_allclose(ember_op("ember.erf", [np.float32([0.0, 1.0])])[0], [0.0, 0.8427007929])
    assert ember_op("ember.log", [np.float32([0.0])])[0].tolist() == [-np.inf]


# -- activations with attributes --------------------------------------------------------------
ACTIVATIONS = [
    ("ember.leaky_relu", "LeakyRelu", {}), ("ember.leaky_relu", "LeakyRelu", {"alpha": 0.2}),
    ("ember.elu", "Elu", {}), ("ember.elu", "Elu", {"alpha": 0.5}),
    ("ember.selu", "Selu", {}), ("ember.selu", "Selu", {"alpha": 1.5, "gamma": 2.0}),
    ("ember.celu", "Celu", {}), ("ember.celu", "Celu", {"alpha": 2.0}),
    ("ember.hard_sigmoid", "HardSigmoid", {}), ("ember.hard_sigmoid", "HardSigmoid", {"alpha": 0.25, "beta": 0.375}),
    ("ember.thresholded_relu", "ThresholdedRelu", {}), ("ember.thresholded_relu", "ThresholdedRelu", {"alpha": 0.5}),
    ("ember.shrink", "Shrink", {}), ("ember.shrink", "Shrink", {"bias": 0.5, "lambd": 1.0}),
    ("ember.gelu", "Gelu", {}), ("ember.gelu", "Gelu", {"approximate": "none"}),
    ("ember.gelu", "Gelu", {"approximate": "tanh"}),
]


@pytest.mark.parametrize("op,onnx_type,attrs", ACTIVATIONS, ids=[f"{a[0]}-{a[2]}" for a in ACTIVATIONS])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_activation_vs_onnx(op, onnx_type, attrs, dt):
    x = rand((3, 5), dt)
    # ONNX float attributes are f32 (alpha = 0.2 is 0.2000000030), and the reference computes
    # Gelu's erf through f32; Ember's attributes are f64, so f64 is held to f32's tolerance.
    tol = {"rtol": 1e-6} if dt is F64 else {}
    if onnx_type == "Gelu":  # a function op: onnx.reference needs a typed model to expand it
        assert_close(ember_op(op, [x], attrs)[0], onnx_op(onnx_type, [x], attrs)[0], **tol)
    else:
        check_vs_onnx(op, onnx_type, [x], attrs, **tol)


@pytest.mark.parametrize("dt", [np.int32, np.int8, np.uint8], ids=ids([np.int32, np.int8, np.uint8]))
def test_shrink_int_vs_onnx(dt):
    check_vs_onnx("ember.shrink", "Shrink", [rand((3, 5), dt, low=-3, high=3)], {"bias": 1.0, "lambd": 2.0})


def test_activations_by_hand():
    x = np.float32([-2.0, -0.5, 0.0, 0.5, 2.0])
    assert ember_op("ember.leaky_relu", [x], {"alpha": 0.5})[0].tolist() == [-1.0, -0.25, 0.0, 0.5, 2.0]
    assert ember_op("ember.thresholded_relu", [x], {"alpha": 0.5})[0].tolist() == [0, 0, 0, 0, 2.0]
    np.testing.assert_allclose(ember_op("ember.hard_sigmoid", [x])[0], [0.1, 0.4, 0.5, 0.6, 0.9], rtol=1e-6)
    assert ember_op("ember.hard_sigmoid", [np.float32([-10, 10])])[0].tolist() == [0, 1]
    assert ember_op("ember.shrink", [x], {"lambd": 0.5, "bias": 0.25})[0].tolist() == [-1.75, 0, 0, 0, 1.75]
    np.testing.assert_allclose(ember_op("ember.elu", [x])[0], [np.expm1(-2), np.expm1(-0.5), 0, 0.5, 2],
                               rtol=1e-6)
    np.testing.assert_allclose(ember_op("ember.gelu", [np.float32([1.0])])[0], [0.8413447460685429])
    np.testing.assert_allclose(ember_op("ember.gelu", [np.float32([1.0])], {"approximate": "tanh"})[0],
                               [0.8411919906082768], rtol=1e-6)


# -- isnan, isinf ------------------------------------------------------------------------------
SPECIALS = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1.5, -2.0, 65504.0]


@pytest.mark.parametrize("dt", [F32, F16, F64, BF16], ids=ids([F32, F16, F64, BF16]))
def test_isnan_isinf_vs_onnx(dt):
    x = np.array(SPECIALS, dt)
    got = check_vs_onnx("ember.isnan", "IsNaN", [x])
    assert got[0].tolist() == [False, False, True, False, False, False, False, False]
    for neg in (False, True):
        for pos in (False, True):
            got = check_vs_onnx("ember.isinf", "IsInf", [x], {"detect_negative": neg, "detect_positive": pos},
                                {"detect_negative": int(neg), "detect_positive": int(pos)})
            assert got[0].tolist()[:3] == [pos, neg, False]


@pytest.mark.parametrize("dt", [ir.f8e4m3fn, ir.f8e5m2, ir.f8e4m3fnuz, ir.f8e5m2fnuz], ids=str)
def test_isnan_isinf_fp8(dt):
    x = np.array([np.nan, 1.0, -2.0], np.float32).astype(dt.np_dtype)
    assert check_vs_onnx("ember.isnan", "IsNaN", [x])[0].tolist() == [True, False, False]
    assert check_vs_onnx("ember.isinf", "IsInf", [x])[0].tolist() == [False, False, False]
    if dt is ir.f8e5m2:  # the only fp8 with infinities
        inf = np.array([np.inf, -np.inf], np.float32).astype(dt.np_dtype)
        assert ember_op("ember.isinf", [inf], {"detect_negative": False})[0].tolist() == [True, False]


# -- clip ------------------------------------------------------------------------------------
CLIP_BOUNDS = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize("has_lo,has_hi", CLIP_BOUNDS)
@pytest.mark.parametrize("dt", [F32, F16, F64, np.int32, np.int8, np.uint8, np.int64],
                         ids=ids([F32, F16, F64, np.int32, np.int8, np.uint8, np.int64]))
def test_clip_vs_onnx(has_lo, has_hi, dt):
    x = rand((3, 5), dt)
    lo = np.array(-1 if np.dtype(dt).kind != "u" else 5, dt) if has_lo else None
    hi = np.array(2 if np.dtype(dt).kind != "u" else 20, dt) if has_hi else None
    check_vs_onnx("ember.clip", "Clip", [x, lo, hi])


def test_clip_by_hand():
    x = np.float32([-5, -1, 0, 1, 5, np.nan])
    lo, hi = np.float32(-1), np.float32(1)
    got = ember_op("ember.clip", [x, lo, hi])[0]
    assert got[:5].tolist() == [-1, -1, 0, 1, 1] and np.isnan(got[5])
    # lo > hi: every value becomes hi (ONNX's rule)
    assert ember_op("ember.clip", [x[:5], np.float32(2), np.float32(1)])[0].tolist() == [1] * 5


# -- where -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sc,sx,sy", [((3, 4), (3, 4), (3, 4)), ((4,), (3, 1), ()), ((2, 1, 4), (3, 1), (4,))])
@pytest.mark.parametrize("dt", [F32, F16, np.int64, np.uint8, np.bool_], ids=ids([F32, F16, np.int64, np.uint8, np.bool_]))
def test_where_vs_onnx(sc, sx, sy, dt):
    check_vs_onnx("ember.where", "Where", [rand(sc, np.bool_), rand(sx, dt), rand(sy, dt)])


def test_where_strings():
    c = np.array([True, False, True])
    x = np.array(["a", "b", "c"], dtype=object)
    y = np.array(["x", "y", "z"], dtype=object)
    assert check_vs_onnx("ember.where", "Where", [c, x, y])[0].tolist() == ["a", "y", "c"]


# -- the numeric conventions, by hand ---------------------------------------------------------
def test_nan_propagates_through_max_min_relu_clip():
    nan = np.float32(np.nan)
    x = np.float32([np.nan, 1.0, np.nan])
    y = np.float32([1.0, np.nan, np.nan])
    for op in ("ember.max", "ember.min"):
        assert np.isnan(ember_op(op, [x, y])[0]).all(), op
    assert np.isnan(ember_op("ember.relu", [x])[0][[0, 2]]).all()
    assert np.isnan(ember_op("ember.clip", [x, np.float32(0), np.float32(0.5)])[0][[0, 2]]).all()
    assert np.isnan(ember_op("ember.leaky_relu", [np.float32([nan])])[0]).all()
    assert np.isnan(ember_op("ember.max", [np.float16([np.nan]), np.float16([1.0])])[0]).all()


def test_int_division_truncates_toward_zero():
    x = np.array([7, -7, 7, -7, 6, -1], np.int32)
    y = np.array([2, 2, -2, -2, 3, 4], np.int32)
    assert check_vs_onnx("ember.div", "Div", [x, y])[0].tolist() == [3, -3, -3, 3, 2, 0]
    assert ember_op("ember.div", [np.int8([-128, 127]), np.int8([3, -3])])[0].tolist() == [-42, -42]
    assert ember_op("ember.div", [np.uint8([255, 7]), np.uint8([2, 8])])[0].tolist() == [127, 0]


def test_mod_signs():
    x = np.array([5, -5, 5, -5], np.int32)
    y = np.array([3, 3, -3, -3], np.int32)
    assert ember_op("ember.mod", [x, y])[0].tolist() == [2, 1, -1, -2]                   # divisor's sign
    assert ember_op("ember.mod", [x, y], {"fmod": True})[0].tolist() == [2, -2, 2, -2]   # dividend's sign
    xf, yf = np.float32([5.5, -5.5]), np.float32([-2.0, 2.0])
    assert ember_op("ember.mod", [xf, yf], {"fmod": True})[0].tolist() == [1.5, -1.5]


def test_integer_wraps():
    assert ember_op("ember.add", [np.int8([127, -128]), np.int8([1, -1])])[0].tolist() == [-128, 127]
    assert ember_op("ember.sub", [np.uint8([0]), np.uint8([1])])[0].tolist() == [255]
    assert ember_op("ember.mul", [np.int16([300]), np.int16([300])])[0].tolist() == [90000 - 65536]
    assert ember_op("ember.mul", [np.uint32([2 ** 31]), np.uint32([2])])[0].tolist() == [0]
    assert ember_op("ember.neg", [np.int8([-128, 5])])[0].tolist() == [-128, -5]
    assert ember_op("ember.abs", [np.int8([-128, -5])])[0].tolist() == [-128, 5]
    assert ember_op("ember.neg", [np.uint8([1])])[0].tolist() == [255]
    assert ember_op("ember.pow", [np.int8([2, 3]), np.int8([7, 5])])[0].tolist() == [-128, 243 - 256]


def test_int_pow_exponents():
    x = np.array([2, 1, -1, 3, 4], np.int32)
    assert ember_op("ember.pow", [x, np.int32([-1, -3, -3, 2, 0])])[0].tolist() == [0, 1, -1, 9, 1]
    # a float exponent is computed in float and truncated toward zero (3^1.5 = 5.196)
    assert ember_op("ember.pow", [np.int32([3, 4]), np.float32([1.5, 0.5])])[0].tolist() == [5, 2]
    assert ember_op("ember.pow", [np.float32([2.0, 9.0]), np.int64([-2, 1])])[0].tolist() == [0.25, 9.0]


def test_round_half_to_even():
    x = np.float32([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 3.5000002])
    got = check_vs_onnx("ember.round", "Round", [x])[0]
    assert got.tolist() == [0, 2, 2, 0, -2, -2, 0, 4]
    assert sign_bits(got)[3] is True  # round(-0.5) is -0.0
    assert ember_op("ember.round", [np.float16([0.5, 1.5, 2.5])])[0].tolist() == [0, 2, 2]


def test_negative_zero():
    pz, nz = np.float32([0.0]), np.float32([-0.0])
    assert sign_bits(ember_op("ember.neg", [pz])[0]) == [True]
    assert sign_bits(ember_op("ember.abs", [nz])[0]) == [False]
    assert sign_bits(ember_op("ember.relu", [nz])[0]) == [False]        # max(-0, +0) is +0
    assert sign_bits(ember_op("ember.sqrt", [nz])[0]) == [True]         # IEEE: sqrt(-0) = -0
    assert ember_op("ember.div", [np.float32([1.0]), nz])[0].tolist() == [-np.inf]
    assert sign_bits(ember_op("ember.mul", [nz, np.float32([5.0])])[0]) == [True]
    assert sign_bits(ember_op("ember.add", [nz, nz])[0]) == [True]
    assert sign_bits(ember_op("ember.add", [nz, pz])[0]) == [False]
    assert sign_bits(ember_op("ember.sub", [pz, pz])[0]) == [False]
    assert sign_bits(ember_op("ember.ceil", [np.float32([-0.5])])[0]) == [True]
    assert sign_bits(ember_op("ember.floor", [nz])[0]) == [True]
    assert sign_bits(ember_op("ember.round", [np.float32([-0.4])])[0]) == [True]
    assert sign_bits(ember_op("ember.neg", [np.float16([0.0])])[0]) == [True]


def test_low_precision_rounds_once():
    # f16: 2049 is not representable; (2048 + 1) rounds to even (2048), and 1/3 rounds once.
    assert ember_op("ember.add", [np.float16([2048]), np.float16([1])])[0].tolist() == [2048]
    assert ember_op("ember.div", [np.float16([1]), np.float16([3])])[0].tolist() == [float(np.float16(1 / 3))]
    # fp8 e4m3fn: 1.0 + 0.0625 is exactly halfway between 1.0 and 1.125 and rounds to even (1.0)
    e4 = ir.f8e4m3fn.np_dtype
    assert ember_op("ember.add", [np.array([1.0], e4), np.array([0.0625], e4)])[0].astype(float).tolist() == [1.0]
    assert ember_op("ember.exp", [np.array([0.0], e4)])[0].dtype == e4


# -- symbolic shapes and errors ---------------------------------------------------------------
def _vals(*types):
    b = ir.Builder()
    return b, [b.input(f"x{i}", t) for i, t in enumerate(types)]


@pytest.mark.parametrize("op,types,attrs,want", [
    ("add", [ir.f32["N", 1, "W"], ir.f32[3, 1]], {}, "f32[N,3,W]"),
    ("mul", [ir.f32["N", 4], ir.f32[4]], {}, "f32[N,4]"),
    ("sub", [ir.i32["N"], ir.i32["M"]], {}, "i32[max(M, N)]"),
    ("less", [ir.f16["B", "S", 1], ir.f16["S"]], {}, "bool[B,S,S]"),
    ("pow", [ir.f32["N", 3], ir.i64[()]], {}, "f32[N,3]"),
    ("where", [ir.boolean["S", 1], ir.f32[1, "T"], ir.f32[()]], {}, "f32[S,T]"),
    ("prelu", [ir.f32["N", 8, "H"], ir.f32[8, 1]], {}, "f32[N,8,H]"),
    ("gelu", [ir.f16["N", "D"]], {"approximate": "tanh"}, "f16[N,D]"),
    ("isinf", [ir.f32["N"]], {}, "bool[N]"),
    ("not", [ir.boolean["N", 2]], {}, "bool[N,2]"),
    ("bit_shift", [ir.u8["N"], ir.u8[1]], {"direction": "left"}, "u8[N]"),
    ("clip", [ir.f32["N", 3], ir.f32[()], ir.f32[()]], {}, "f32[N,3]"),
])
def test_symbolic_shapes(op, types, attrs, want):
    b, vals = _vals(*types)
    assert str(getattr(b, op)(*vals, **attrs).type) == want


@pytest.mark.parametrize("op,types,attrs,match", [
    ("add", [ir.f32[3], ir.f16[3]], {}, "share an element type"),
    ("add", [ir.f32[3, 4], ir.f32[5]], {}, "do not broadcast"),
    ("add", [ir.boolean[3], ir.boolean[3]], {}, "numeric tensor"),
    ("bit_shift", [ir.i32[3], ir.i16[3]], {"direction": "left"}, "share an element type"),
    ("bit_shift", [ir.f32[3], ir.f32[3]], {"direction": "left"}, "integer tensor"),
    ("bitwise_and", [ir.f32[3], ir.f32[3]], {}, "integer tensor"),
    ("and", [ir.i32[3], ir.i32[3]], {}, "bool tensor"),
    ("not", [ir.f32[3]], {}, "bool tensor"),
    ("exp", [ir.i32[3]], {}, "float tensor"),
    ("gelu", [ir.i32[3]], {}, "float tensor"),
    ("isnan", [ir.i32[3]], {}, "float tensor"),
    ("prelu", [ir.f32[3], ir.f32[2, 3]], {}, "slope .* must broadcast to x"),
    ("clip", [ir.f32[3], ir.f32[3]], {}, "bound lo must be a scalar"),
    ("clip", [ir.f32[3], ir.f32[()], ir.i32[()]], {}, "share an element type"),
    ("where", [ir.f32[3], ir.f32[3], ir.f32[3]], {}, "bool tensor"),
    ("where", [ir.boolean[3], ir.f32[3], ir.i32[3]], {}, "share an element type"),
    ("equal", [ir.f32[3], ir.i32[3]], {}, "share an element type"),
])
def test_errors(op, types, attrs, match):
    b, vals = _vals(*types)
    with pytest.raises(ShapeError, match=match):
        getattr(b, op)(*vals, **attrs)


def test_attribute_errors():
    from ember.errors import VerifyError
    b, (x,) = _vals(ir.u8[3])
    with pytest.raises(VerifyError, match="direction"):
        b.bit_shift(x, x)
    with pytest.raises(VerifyError, match="expected one of 'left', 'right'"):
        b.bit_shift(x, x, direction="up")
    b, (y,) = _vals(ir.f32[3])
    with pytest.raises(VerifyError, match="expected one of 'none', 'tanh'"):
        b.gelu(y, approximate="fast")
    with pytest.raises(VerifyError, match="unknown attribute 'beta'"):
        b.leaky_relu(y, beta=0.1)


def test_every_elementwise_op_is_tested():
    """Guards this file against new ops slipping in untested."""
    import ember.ir.ops.elementwise as ew
    names = {cls.name for cls in vars(ew).values() if isinstance(cls, type) and getattr(cls, "name", "")
             .startswith("ember.") and cls.__module__ == ew.__name__}
    source = open(__file__).read()
    untested = sorted(n for n in names if f'"{n}"' not in source and f'"{n.split(".")[1]}"' not in source)
    assert not untested, untested
