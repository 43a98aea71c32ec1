"""The int8 ops between the heavy ones (ir/ops/int8.py): ember.int8_requantize and ember.int8_add
against onnx.reference's DequantizeLinear / Add / Relu / QuantizeLinear (the float graph they equal
exactly), ember.int8_avg_pool and ember.int8_global_avg_pool against window sums and f32 steps
written out here in loops (and within one step of the float graph), ties, saturation, layouts,
symbolic shapes and the verifier's errors."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest
from oracle import ember_op, onnx_op

from ember import ir
from ember.errors import ShapeError, VerifyError

F = np.float32


def ints(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-128, 128, shape).astype(np.int8)


def s(v: float) -> np.ndarray:
    return np.array(v, F)


def z(v: int) -> np.ndarray:
    return np.array(v, np.int8)


def dq(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None) -> np.ndarray:
    return onnx_op("DequantizeLinear", [x, scale, zero if zero is not None else z(0)])[0]


def q(v: np.ndarray, scale: np.ndarray, zero: np.ndarray | None) -> np.ndarray:
    return onnx_op("QuantizeLinear", [v, scale, zero if zero is not None else z(0)])[0]


# -- int8_requantize -------------------------------------------------------------------------------
@pytest.mark.parametrize("sx,zx,sy,zy", [(0.05, -3, 0.1, 7), (0.1, None, 0.0123, None), (0.5, 100, 0.001, -128),
                                         (0.02, 0, 0.02, 0)])
def test_int8_requantize_is_quantize_of_dequantize(sx, zx, sy, zy):
    x = np.arange(-128, 128, dtype=np.int8).reshape(16, 16)
    zxa, zya = (None if v is None else z(v) for v in (zx, zy))
    got = ember_op("ember.int8_requantize", [x, s(sx), zxa, s(sy), zya])[0]
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, q(dq(x, s(sx), zxa), s(sy), zya))
    if (sx, zx) == (sy, zy):
        np.testing.assert_array_equal(got, x)  # the same pair: the identity


def test_int8_requantize_ties_round_to_even_and_saturate():
    # (x - 0) * 0.5 / 1.0: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; 127 * 0.5 / 0.25 saturates at 127
    x = np.array([1, 3, 5, -1, -3, 127, -128], np.int8)
    got = ember_op("ember.int8_requantize", [x, s(0.5), None, s(1.0), None])[0]
    np.testing.assert_array_equal(got, [0, 2, 2, 0, -2, 64, -64])
    big = ember_op("ember.int8_requantize", [x, s(0.5), None, s(0.25), z(10)])[0]
    np.testing.assert_array_equal(big, [12, 16, 20, 8, 4, 127, -128])


# -- int8_add --------------------------------------------------------------------------------------
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (3, 1)), ((1,), (5, 2))],
                         ids=["same", "broadcast", "scalar-like"])
def test_int8_add_is_the_float_graph_exactly(shapes, relu):
    rng = np.random.default_rng(len(shapes[1]) + relu)
    a, b = ints(rng, shapes[0]), ints(rng, shapes[1])
    sa, za, sb, zb, sy, zy = s(0.031), z(-5), s(0.017), None, s(0.043), z(12)
    got = ember_op("ember.int8_add", [a, sa, za, b, sb, zb, sy, zy], {"relu": relu})[0]
    v = onnx_op("Add", [dq(a, sa, za), dq(b, sb, zb)])[0]
    if relu:
        v = onnx_op("Relu", [v])[0]
    assert got.dtype == np.int8 and got.shape == np.broadcast_shapes(shapes[0], shapes[1])
    np.testing.assert_array_equal(got, q(v, sy, zy))


def test_int8_add_steps_by_hand():
    # (3 - 1) * 0.25 + (-7 - 0) * 0.5 = -3.0; / 0.5 = -6, + 4 = -2; with relu 0 / 0.5 + 4 = 4
    a, b = np.array([3, 127], np.int8), np.array([-7, 127], np.int8)
    args = [a, s(0.25), z(1), b, s(0.5), None, s(0.5), z(4)]
    np.testing.assert_array_equal(ember_op("ember.int8_add", args)[0], [-2, 127])
    np.testing.assert_array_equal(ember_op("ember.int8_add", args, {"relu": True})[0], [4, 127])


# -- int8 average pools -----------------------------------------------------------------------------
def avg_pool_by_hand(x: np.ndarray, sx: float, zx: int, sy: float, zy: int, kernel, strides, pads, dilations,
                     count_pad: bool, ceil_mode: bool = False) -> np.ndarray:
    """x channels first; every window's taps listed one by one, sums in Python ints, then the f32
    steps of ir/ops/int8.py's docstring on numpy f32 scalars."""
    n, c, *sizes = x.shape
    k = len(sizes)
    begin, end = pads[:k], pads[k:]
    outs = []
    for i in range(k):
        span = sizes[i] + begin[i] + end[i] - ((kernel[i] - 1) * dilations[i] + 1)
        o = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (o - 1) * strides[i] >= sizes[i] + begin[i]:
            o -= 1
        outs.append(o)
    y = np.zeros((n, c, *outs), np.int8)
    for b, ch in product(range(n), range(c)):
        for pos in product(*(range(o) for o in outs)):
            acc = count = 0
            for tap in product(*(range(kk) for kk in kernel)):
                at = [p * st - bg + t * d for p, st, bg, t, d in zip(pos, strides, begin, tap, dilations)]
                inside = all(0 <= a < size for a, size in zip(at, sizes))
                if inside:
                    acc += int(x[(b, ch, *at)]) - zx
                if inside or (count_pad and all(a < size + e for a, size, e in zip(at, sizes, end))):
                    count += 1
            with np.errstate(all="ignore"):
                v = F(F(acc) * F(sx)) / F(count)
                r = F(np.rint(F(v / F(sy)))) + F(zy)
            y[(b, ch, *pos)] = zy if np.isnan(r) else int(np.clip(r, -128, 127))
    return y


POOL_CASES = [
    pytest.param(dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), id="pads"),
    pytest.param(dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=True), id="count-pad"),
    pytest.param(dict(kernel_shape=[2, 3], strides=[2, 1], dilations=[1, 2], pads=[0, 2, 1, 0]), id="strided"),
    pytest.param(dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=True,
                      count_include_pad=True), id="ceil"),
]


@pytest.mark.parametrize("attrs", POOL_CASES)
def test_int8_avg_pool_sums_and_steps_by_hand(attrs):
    rng = np.random.default_rng(3)
    x = ints(rng, (2, 3, 7, 6))
    sx, zx, sy, zy = 0.037, -9, 0.021, 5
    got = ember_op("ember.int8_avg_pool", [x, s(sx), z(zx), s(sy), z(zy)], attrs)[0]
    k = len(attrs["kernel_shape"])
    want = avg_pool_by_hand(x, sx, zx, sy, zy, attrs["kernel_shape"], attrs.get("strides", [1] * k),
                            attrs["pads"], attrs.get("dilations", [1] * k), attrs.get("count_include_pad", False),
                            attrs.get("ceil_mode", False))
    np.testing.assert_array_equal(got, want)
    # within one quantization step of the float graph (its f32 sums in its own order)
    onnx_attrs = {key: (int(v) if isinstance(v, bool) else v) for key, v in attrs.items()}
    ref = q(onnx_op("AveragePool", [dq(x, s(sx), z(zx))], onnx_attrs)[0], s(sy), z(zy))
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_int8_avg_pool_layouts_transpose_the_result():
    rng = np.random.default_rng(4)
    x = ints(rng, (1, 4, 5, 5))
    args = [s(0.05), z(3), s(0.04), None]
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    first = ember_op("ember.int8_avg_pool", [x, *args], attrs)[0]
    last = ember_op("ember.int8_avg_pool", [np.transpose(x, (0, 2, 3, 1)), *args], attrs | {"layout": "NHWC"})[0]
    np.testing.assert_array_equal(np.transpose(last, (0, 3, 1, 2)), first)


def test_int8_avg_pool_of_padding_alone_is_the_zero_point():
    x = np.full((1, 1, 1, 1), 100, np.int8)  # the 3x3 window at pads 2 reads only padding in its corners
    got = ember_op("ember.int8_avg_pool", [x, s(0.1), None, s(0.1), z(-7)],
                   dict(kernel_shape=[1, 1], pads=[1, 1, 1, 1]))[0]
    np.testing.assert_array_equal(got[0, 0], [[-7, -7, -7], [-7, 93, -7], [-7, -7, -7]])  # 0/0: NaN -> zy


@pytest.mark.parametrize("layout", [None, "NHWC"])
def test_int8_global_avg_pool_by_hand(layout):
    rng = np.random.default_rng(5)
    x = ints(rng, (2, 5, 4, 3))
    sx, zx, sy, zy = 0.013, 20, 0.007, -3
    xl = x if layout is None else np.transpose(x, (0, 2, 3, 1))
    got = ember_op("ember.int8_global_avg_pool", [xl, s(sx), z(zx), s(sy), z(zy)], {"layout": layout})[0]
    if layout is not None:
        assert got.shape == (2, 1, 1, 5)
        got = np.transpose(got, (0, 3, 1, 2))
    want = np.zeros((2, 5, 1, 1), np.int8)
    for b, c in product(range(2), range(5)):
        acc = sum(int(v) - zx for v in x[b, c].ravel())
        r = F(np.rint(F(F(F(acc) * F(sx)) / F(12)) / F(sy))) + F(zy)
        want[b, c, 0, 0] = int(np.clip(r, -128, 127))
    np.testing.assert_array_equal(got, want)
    ref = q(onnx_op("GlobalAveragePool", [dq(x, s(sx), z(zx))])[0], s(sy), z(zy))
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


# -- types -----------------------------------------------------------------------------------------
def infer(op: str, *types, **attrs) -> str:
    b = ir.Builder("t")
    values = [b.input(f"v{i}", t) if t is not None else None for i, t in enumerate(types)]
    return str(b.op(op, *values, **attrs).type)


def test_symbolic_shapes():
    sc = ir.f32[()]
    assert infer("ember.int8_add", ir.i8["N", 8, "H", "W"], sc, None, ir.i8[8, 1, 1], sc, ir.i8[()], sc,
                 None) == "i8[N,8,H,W]"
    assert infer("ember.int8_avg_pool", ir.i8["N", "H", "W", 16], sc, None, sc, None, kernel_shape=[3, 3],
                 strides=[2, 2], pads=[1, 1, 1, 1], layout="NHWC") == "i8[N,(H+1)//2,(W+1)//2,16]"
    assert infer("ember.int8_global_avg_pool", ir.i8["N", 16, "H", "W"], ir.f32[1], None, sc, None) == "i8[N,16,1,1]"
    assert infer("ember.int8_requantize", ir.i8["N", 3], sc, ir.i8[1], sc, ir.i8[()]) == "i8[N,3]"


@pytest.mark.parametrize("op,types,attrs,match", [
    ("ember.int8_requantize", (ir.u8[4], ir.f32[()], None, ir.f32[()]), {}, "x .* must be i8"),
    ("ember.int8_requantize", (ir.i8[4], ir.f32[4], None, ir.f32[()]), {}, "x_scale .* scalar"),
    ("ember.int8_requantize", (ir.i8[4], ir.f32[()], ir.u8[()], ir.f32[()]), {}, "x_zero_point .* must be i8"),
    ("ember.int8_requantize", (ir.i8[4], ir.f32[()], None, ir.f16[()]), {}, "y_scale .* must be f32"),
    ("ember.int8_add", (ir.i8[4], ir.f32[()], None, ir.i8[3], ir.f32[()], None, ir.f32[()]), {}, "broadcast"),
    ("ember.int8_add", (ir.i8[4], ir.f32[()], None, ir.i32[4], ir.f32[()], None, ir.f32[()]), {}, "b .* must be i8"),
    ("ember.int8_add", (ir.i8[4], ir.f32[()], None, ir.i8[4], ir.f32[()], None, ir.f32[()], ir.i8[2]), {},
     "y_zero_point .* scalar"),
    ("ember.int8_avg_pool", (ir.i8[1, 2, 4, 4], ir.f32[()], None, ir.f32[()]), {"kernel_shape": [3]},
     "kernel_shape"),
    ("ember.int8_avg_pool", (ir.i8[1, 2, 4, 4], ir.f32[2], None, ir.f32[()]), {"kernel_shape": [2, 2]},
     "x_scale .* scalar"),
    ("ember.int8_global_avg_pool", (ir.u8[1, 2, 4, 4], ir.f32[()], None, ir.f32[()]), {}, "must be i8"),
    ("ember.int8_global_avg_pool", (ir.i8[2, 4], ir.f32[()], None, ir.f32[()]), {}, "rank >= 3"),
])
def test_errors(op, types, attrs, match):
    with pytest.raises((ShapeError, VerifyError), match=match):
        infer(op, *types, **attrs)
