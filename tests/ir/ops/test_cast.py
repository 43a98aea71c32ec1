"""ember.cast: every pair of element types against onnx.reference's Cast (opset 23; 25 for
round_mode), and the rules by hand: fp8 saturation tables, float to int truncation, integer
wrap-around, bool, strings, f8e8m0 rounding, int4/uint4, f4e2m1.

Where onnx.reference and the ONNX spec text disagree, Ember follows the spec; each such case is
excluded from the comparison and pinned by a hand-written test that names the reason:
- fp8 fnuz with saturate=true maps +-inf to +-max (opset 25's table and onnx.reference; opset 23's
  table said NaN);
- f8e8m0 saturates +-inf to 2^127 and, without saturation, maps 0 (below 2^-127) to NaN (the Cast
  spec's table); onnx.reference gives NaN and 2^-127;
- a string cast to bool is its number != 0; onnx.reference uses Python truthiness ("0" is true).
f4e2m1/f6 map NaN to a zero of the opposite sign (+NaN to -0), as onnx.reference and the ONNX
backend test data do, although ONNX's float4 notes say 6 (test_f4e2m1 pins it).
Float to int4/uint4 truncates toward zero like every float-to-int cast (rules.py; onnx.reference
agrees), although ONNX's int4 note speaks of rounding to nearest even.
"""

import itertools

import ml_dtypes
import numpy as np
import onnx
import pytest
from oracle import ember_op, onnx_op

from ember import ir
from ember.errors import ShapeError, VerifyError
from ember.ir.ops.core import cast_array

TYPES = [t for t in ir.types.DTYPES.values() if t.kind != "complex"]
FP8 = {"f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz"}
NUMPY_NATIVE = {"f64", "f32", "f16", "i64", "i32", "i16", "i8", "u64", "u32", "u16", "u8", "bool"}
FLOAT_SAMPLE = [0.0, -0.0, 0.5, 1.5, -2.25, 2.5, 3.7, -3.7, 7.0, -8.0, 100.3, -1000.7, 0.1, 448.0, 449.0,
                465.0, 1e6, -1e6, 65504.0, 70000.0, 3e-5, np.inf, -np.inf, np.nan]
STRING_SAMPLE = ["1.5", "-2", "3e2", "INF", "+inf", "-Inf", "NaN", "0", " 7 ", "1E-3", "12", "200", "-9"]


def onnx_type(t):
    return onnx.TensorProto.STRING if t.kind == "string" else onnx.helper.np_dtype_to_tensor_dtype(t.np_dtype)


def source_values(src):
    """A sample of values of `src`, specials included."""
    if src.kind == "string":
        return np.array(STRING_SAMPLE, dtype=object)
    if src.kind == "bool":
        return np.array([True, False, True])
    if src.is_int:
        info = ml_dtypes.iinfo(src.np_dtype)
        vals = [info.min, info.max, 0, 1, -1, 7, -8, 100, -100, 200, 300, 70000, info.max // 3]
        return np.array([v for v in vals if info.min <= v <= info.max], dtype=src.np_dtype)
    with np.errstate(over="ignore"):
        return np.array(FLOAT_SAMPLE, np.float64).astype(np.float32).astype(src.np_dtype)


def defined(x, src, dst):
    """Mask of the values whose cast ONNX defines and where Ember follows onnx.reference."""
    if src.kind == "string":
        if dst.kind == "bool":
            return np.zeros(x.shape, bool)  # see the module doc
        wide = np.array([float(v) for v in x], np.float64)
    else:
        wide = x.astype(np.float64)
    keep = np.ones(x.shape, bool)
    if dst.is_int and src.is_float:  # float to int: undefined out of range (NaN, inf included)
        info = ml_dtypes.iinfo(dst.np_dtype)
        with np.errstate(invalid="ignore"):
            keep &= np.isfinite(wide) & (np.trunc(wide) >= info.min) & (np.trunc(wide) <= info.max)
    if dst.is_int and src.kind == "string":  # integer strings in range (numpy rejects the others)
        info = ml_dtypes.iinfo(dst.np_dtype)
        keep &= np.array([v.strip().lstrip("+-").isdigit() for v in x]) & (wide >= info.min) & (wide <= info.max)
    if dst.name == "f8e8m0":  # positive normal numbers only (see the module doc for the rest)
        keep &= np.isfinite(wide) & (wide >= 2.0 ** -126) & (wide < 2.0 ** 127)
    if dst.name in FP8 and dst.name.endswith("fnuz"):
        keep &= ~np.isinf(wide)  # opset 23 vs 25 (see the module doc)
    return keep


def onnx_cast(x, src, attrs, opset=23):
    """onnx.reference's Cast; where it cannot convert directly (ml_dtypes has no e8m0 -> fp8,
    int4 -> int2, str -> fp8 and the like), through an exact intermediate (i64 for integers,
    f64 otherwise), which ONNX's semantics make equivalent."""
    with np.errstate(all="ignore"):
        try:
            return onnx_op("Cast", [x], attrs, opset=opset)[0]
        except TypeError:
            mid = ir.i64 if src.is_int else ir.f64
            y = onnx_op("Cast", [x], {"to": onnx_type(mid)}, opset=opset)[0]
            return onnx_op("Cast", [y], attrs, opset=opset)[0]


PAIRS = [(s, d) for s, d in itertools.product(TYPES, TYPES)
         if not (d.kind == "string" and s.name not in NUMPY_NATIVE | {"str"})]


@pytest.mark.parametrize("src,dst", PAIRS, ids=[f"{s}-{d}" for s, d in PAIRS])
def test_cast_vs_onnx(src, dst):
    x = source_values(src)
    x = x[defined(x, src, dst)]
    for saturate in ((True, False) if dst.name in FP8 else (None,)):
        attrs = {"to": dst} if saturate is None else {"to": dst, "saturate": saturate}
        onnx_attrs = {"to": onnx_type(dst)} | ({} if saturate is None else {"saturate": int(saturate)})
        got = ember_op("ember.cast", [x], attrs)[0]
        want = onnx_cast(x, src, onnx_attrs)
        assert got.dtype == dst.np_dtype and got.shape == x.shape
        if dst.kind == "string":
            assert got.tolist() == want.astype(str).tolist()
            continue
        g, w = got.astype(np.float64), want.astype(np.float64)
        assert np.array_equal(g, w, equal_nan=True), f"{src}->{dst} saturate={saturate}\n{x}\n{got}\n{want}"
        assert np.array_equal(np.signbit(g), np.signbit(w)) or dst.name == "f8e8m0"


@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("src", [ir.f32, ir.f16, ir.bf16, ir.f64])
def test_cast_e8m0_round_modes_vs_onnx(round_mode, saturate, src):
    rng = np.random.default_rng()
    span = 14 if src is ir.f16 else 120
    x = np.concatenate([2.0 ** rng.uniform(-span, span, 20), [1.0, 1.5, 3.0, 0.75, 1.25, 2 ** 12 * 1.5]])
    x = x.astype(src.np_dtype)
    x = x[(x.astype(np.float64) >= 2.0 ** -126) & np.isfinite(x.astype(np.float64))]
    got = ember_op("ember.cast", [x], {"to": ir.f8e8m0, "saturate": saturate, "round_mode": round_mode})[0]
    want = onnx_op("Cast", [x], {"to": onnx_type(ir.f8e8m0), "saturate": int(saturate),
                                 "round_mode": round_mode}, opset=25)[0]
    assert got.view(np.uint8).tolist() == want.view(np.uint8).tolist()


# -- by hand ----------------------------------------------------------------------------------
def cast(x, to, **attrs):
    return ember_op("ember.cast", [np.asarray(x)], {"to": to, **attrs})[0]


def as_floats(a):
    return a.astype(np.float64).tolist()


def test_float_to_int_truncates():
    x = np.float32([2.9, -2.9, 0.5, -0.5, -0.0, 127.99, -128.5])
    assert cast(x, ir.i8).tolist() == [2, -2, 0, 0, 0, 127, -128]
    assert cast(np.float16([3.75, -3.75]), ir.i32).tolist() == [3, -3]
    assert cast(np.array([3.75, -3.75], ml_dtypes.bfloat16), ir.i64).tolist() == [3, -3]
    assert cast(np.array([3.5, -3.5], ml_dtypes.float8_e4m3fn), ir.i16).tolist() == [3, -3]


def test_int_to_int_wraps():
    assert cast(np.int16([200, -200, 128]), ir.i8).tolist() == [-56, 56, -128]   # the spec's example
    assert cast(np.int32([300, -1]), ir.u8).tolist() == [44, 255]
    assert cast(np.int64([-1]), ir.u16).tolist() == [65535]
    assert cast(np.uint64([2 ** 64 - 1]), ir.i64).tolist() == [-1]
    assert cast(np.uint8([255]), ir.i8).tolist() == [-1]


def test_int4_uint4_int2():
    assert cast(np.int8([7, 8, 9, -9, 15, -1]), ir.i4).astype(int).tolist() == [7, -8, -7, 7, -1, -1]
    assert cast(np.int8([15, 16, -1, 17]), ir.u4).astype(int).tolist() == [15, 0, 15, 1]
    assert cast(np.int8([1, 2, 3, -3]), ir.i2).astype(int).tolist() == [1, -2, -1, 1]
    assert cast(np.float32([7.9, -8.9, 3.5, -0.5]), ir.i4).astype(int).tolist() == [7, -8, 3, 0]
    assert cast(np.float32([15.5, 0.9]), ir.u4).astype(int).tolist() == [15, 0]
    i4 = np.array([-8, 7, -1], ml_dtypes.int4)
    assert cast(i4, ir.f32).tolist() == [-8.0, 7.0, -1.0]
    assert cast(i4, ir.u8).tolist() == [248, 7, 255]
    assert cast(i4, ir.boolean).tolist() == [True, True, True]
    assert cast(np.array([0, 3], ml_dtypes.uint4), ir.i32).tolist() == [0, 3]


def test_bool():
    x = np.float32([0.0, -0.0, 0.1, np.nan, -np.inf])
    assert cast(x, ir.boolean).tolist() == [False, False, True, True, True]
    assert cast(np.int32([0, -5, 2]), ir.boolean).tolist() == [False, True, True]
    b = np.array([True, False])
    assert cast(b, ir.f32).tolist() == [1.0, 0.0]
    assert cast(b, ir.i8).tolist() == [1, 0]
    assert as_floats(cast(b, ir.f8e4m3fn)) == [1.0, 0.0]
    assert cast(b, ir.i4).astype(int).tolist() == [1, 0]
    assert cast(np.array([0.0, 0.5], ml_dtypes.float4_e2m1fn), ir.boolean).tolist() == [False, True]


FP8_SATURATE = {  # the ONNX table for saturate=true: inf, -inf, NaN, big, -big, -0.0
    "f8e4m3fn": [448, -448, np.nan, 448, -448, -0.0],
    "f8e4m3fnuz": [240, -240, np.nan, 240, -240, 0.0],
    "f8e5m2": [57344, -57344, np.nan, 57344, -57344, -0.0],
    "f8e5m2fnuz": [57344, -57344, np.nan, 57344, -57344, 0.0],
}
FP8_NO_SATURATE = {  # saturate=false
    "f8e4m3fn": [np.nan, np.nan, np.nan, np.nan, np.nan, -0.0],
    "f8e4m3fnuz": [np.nan, np.nan, np.nan, np.nan, np.nan, 0.0],
    "f8e5m2": [np.inf, -np.inf, np.nan, np.inf, -np.inf, -0.0],
    "f8e5m2fnuz": [np.nan, np.nan, np.nan, np.nan, np.nan, 0.0],
}


@pytest.mark.parametrize("name", sorted(FP8))
@pytest.mark.parametrize("src", [ir.f32, ir.f16, ir.bf16, ir.f64])
def test_fp8_tables(name, src):
    big = 65504.0 if src is ir.f16 else 1e6  # past every fp8 range, after rounding too
    x = np.array([np.inf, -np.inf, np.nan, big, -big, -0.0], np.float64).astype(src.np_dtype)
    to = ir.dtype(name)
    for saturate, table in ((True, FP8_SATURATE), (False, FP8_NO_SATURATE)):
        got = as_floats(cast(x, to, saturate=saturate))
        want = table[name]
        assert np.array_equal(got, want, equal_nan=True), (name, saturate, got)
        assert np.array_equal(np.signbit(got[5]), np.signbit(want[5]))


def test_fp8_rounds_before_checking_the_range():
    # [x] > max is judged on the rounded value: 449 and 464 round to 448 (even), 465 to 480 > 448.
    x = np.float32([449, 464, 465, -464])
    assert as_floats(cast(x, ir.f8e4m3fn, saturate=False))[:2] == [448, 448]
    assert np.isnan(as_floats(cast(x, ir.f8e4m3fn, saturate=False))[2])
    assert as_floats(cast(x, ir.f8e4m3fn, saturate=False))[3] == -448
    assert as_floats(cast(np.float32([61439, 61440]), ir.f8e5m2, saturate=False)) == [57344, np.inf]
    # ties to even: 1.0625 is halfway between 1.0 and 1.125 in e4m3
    assert as_floats(cast(np.float32([1.0625, 1.1875]), ir.f8e4m3fn)) == [1.0, 1.25]


def test_fp8_to_fp8_and_from_e8m0():
    x = np.array([1.5, -1000.0, np.nan], ml_dtypes.float8_e5m2)
    assert np.array_equal(as_floats(cast(x, ir.f8e4m3fn)), [1.5, -448, np.nan], equal_nan=True)
    e = np.array([1.0, 2.0 ** 20, 2.0 ** -3], np.float32).astype(ml_dtypes.float8_e8m0fnu)
    assert cast(e, ir.f32).tolist() == [1.0, 2.0 ** 20, 0.125]
    assert as_floats(cast(e, ir.f8e4m3fn)) == [1.0, 448, 0.125]
    assert cast(e, ir.f16).tolist()[1] == np.inf   # 2^20 overflows f16: inf (ONNX: +/-inf if out of range)


def test_f4e2m1():
    # the ONNX float4 table: round to nearest even, saturate to +-6, +-0 kept; NaN as the
    # backend test data (test_cast_FLOAT_to_FLOAT4E2M1): +NaN -> -0, -NaN -> +0
    x = np.float32([7, -7, np.inf, -np.inf, np.nan, 0.25, 0.75, 2.5, 5.0, -0.0, 1.75, 3.5, -np.nan])
    got = cast(x, ir.f4e2m1)
    assert as_floats(got) == [6, -6, 6, -6, 0, 0, 1, 2, 4, 0, 2, 4, 0]
    assert np.signbit(got.astype(np.float32)[[4, 9]]).all() and not np.signbit(got.astype(np.float32)[12])
    assert as_floats(cast(x, ir.f4e2m1, saturate=False)) == as_floats(got)  # no inf to fall back to
    assert cast(np.array([6.0, -0.5], ml_dtypes.float4_e2m1fn), ir.f32).tolist() == [6.0, -0.5]


def test_f6_saturates_and_nan():
    x = np.float32([np.nan, np.inf, 25.0, -np.inf])
    for dt, top, rounded in ((ir.f6e2m3, 7.5, 7.5), (ir.f6e3m2, 28, 24)):
        got = cast(x, dt)
        assert as_floats(got) == [0, top, rounded, -top]
        assert np.signbit(got.astype(np.float32)[0])  # +NaN -> -0, as for f4e2m1


def test_e8m0_by_hand():
    x = np.float32([1.0, 1.5, 3.0, 0.75, 1.25, 2.0 ** -127, 2.0 ** -130, 0.0, np.inf, np.nan, -4.0, 3e38])
    up = cast(x, ir.f8e8m0).astype(np.float64)
    down = cast(x, ir.f8e8m0, round_mode="down").astype(np.float64)
    near = cast(x, ir.f8e8m0, round_mode="nearest").astype(np.float64)
    top, bottom = 2.0 ** 127, 2.0 ** -127
    assert np.array_equal(up, [1, 2, 4, 1, 2, bottom, bottom, bottom, top, np.nan, 4, top], equal_nan=True)
    assert np.array_equal(down, [1, 1, 2, 0.5, 1, bottom, bottom, bottom, top, np.nan, 4, top], equal_nan=True)
    assert np.array_equal(near, [1, 2, 4, 1, 1, bottom, bottom, bottom, top, np.nan, 4, top], equal_nan=True)
    # without saturation: past 2^127 (after rounding) or below 2^-127 is NaN
    up_ns = cast(x, ir.f8e8m0, saturate=False).astype(np.float64)
    assert np.isnan(up_ns[[7, 8, 9, 11]]).all() and up_ns[6] == bottom   # rounding up reaches 2^-127
    down_ns = cast(x, ir.f8e8m0, saturate=False, round_mode="down").astype(np.float64)
    assert np.isnan(down_ns[[6, 7, 8]]).all() and down_ns[11] == 2.0 ** 127


def test_strings_to_numbers():
    s = np.array(STRING_SAMPLE, dtype=object)
    want = np.float32([1.5, -2, 300, np.inf, np.inf, -np.inf, np.nan, 0, 7, 0.001, 12, 200, -9])
    assert np.array_equal(cast(s, ir.f32), want, equal_nan=True)
    assert cast(np.array(["12", "-3", "100.5", "9223372036854775807"], dtype=object), ir.i64).tolist() \
        == [12, -3, 100, 2 ** 63 - 1]
    assert cast(np.array(["300", "-1"], dtype=object), ir.u8).tolist() == [44, 255]
    # not onnx.reference's truthiness: the string's number != 0
    assert cast(np.array(["0", "1.5", "0.0", "nan"], dtype=object), ir.boolean).tolist() == [False, True, False, True]
    assert as_floats(cast(np.array(["1e6", "-inf"], dtype=object), ir.f8e4m3fn)) == [448, -448]
    assert cast(np.array(["3"], dtype=object), ir.f8e8m0).astype(np.float64).tolist() == [4]


def test_numbers_to_strings():
    assert cast(np.float32([1.5, -0.0, np.inf, np.nan, 0.1]), ir.string).tolist() == ["1.5", "-0.0", "inf", "nan", "0.1"]
    assert cast(np.int64([-7, 2 ** 40]), ir.string).tolist() == ["-7", str(2 ** 40)]
    assert cast(np.array([True, False]), ir.string).tolist() == ["True", "False"]
    assert cast(np.array([1.5, -2.5], ml_dtypes.bfloat16), ir.string).tolist() == ["1.5", "-2.5"]
    assert cast(np.array([3, -2], ml_dtypes.int4), ir.string).tolist() == ["3", "-2"]
    assert cast(np.array(["a", "b"], dtype=object), ir.string).tolist() == ["a", "b"]


def test_bad_string_raises():
    with pytest.raises(Exception, match="cannot cast string 'hello'"):
        cast(np.array(["hello"], dtype=object), ir.f32)


def test_cast_array_direct():
    # the helper quantize and the folder share
    assert cast_array(np.float32([1.5, 300.0]), ir.u8).tolist() == [1, 44]
    assert cast_array(np.float64([1e300]), ir.f8e8m0, round_mode="down").view(np.uint8).tolist() == [254]


# -- types and errors -------------------------------------------------------------------------
def test_cast_type_rule():
    b = ir.Builder()
    x = b.input("x", ir.f32["N", 3])
    assert str(b.cast(x, to=ir.f16).type) == "f16[N,3]"
    assert str(b.cast(x, to="f8e4m3fn", saturate=False).type) == "f8e4m3fn[N,3]"
    assert str(b.cast(x, to=ir.f8e8m0, round_mode="nearest").type) == "f8e8m0[N,3]"


def test_cast_errors():
    b = ir.Builder()
    x = b.input("x", ir.f32[3])
    with pytest.raises(VerifyError, match="unknown element type 'f12'"):
        b.cast(x, to="f12")
    with pytest.raises(VerifyError, match="missing required attribute 'to'"):
        b.cast(x)
    with pytest.raises(VerifyError, match="expected one of 'up', 'down', 'nearest'"):
        b.cast(x, to=ir.f8e8m0, round_mode="even")
    s = b.input("s", ir.SequenceType(ir.f32[3]))
    with pytest.raises(ShapeError, match="must be a tensor"):
        b.cast(s, to=ir.f16)
