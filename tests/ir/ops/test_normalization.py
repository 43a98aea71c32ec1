"""Normalizations and the softmax family: against onnx.reference (channels-last layouts
transposed to ONNX's channels-first here), hand-computed cases, symbolic shape
inference and errors."""

import math

import numpy as np
import pytest
from oracle import assert_close, check_vs_onnx, ember_op, onnx_op, rand

from ember import ir
from ember.errors import ShapeError, VerifyError

TO_NCHW = {3: (0, 2, 1), 4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}  # channels-last -> channels-first
TO_NHWC = {3: (0, 2, 1), 4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}
CHANNELS_LAST = {3: "NWC", 4: "NHWC", 5: "NDHWC"}


def check_layout(op, onnx_type, x, params, attrs, onnx_attrs, layout):
    """Ember's op on x in `layout` against ONNX's on x transposed to channels first."""
    got = ember_op(op, [x, *params], {**attrs, "layout": layout} if layout else attrs)[0]
    channels_last = layout is not None and layout.endswith("C") and len(layout) > 2
    x_cf = np.transpose(x, TO_NCHW[x.ndim]) if channels_last else x
    want = np.asarray(onnx_op(onnx_type, [x_cf, *params], onnx_attrs)[0])
    if channels_last:
        want = np.transpose(want, TO_NHWC[x.ndim])
    assert_close(got, want, what=f"{op} layout={layout} {attrs}")
    return got


def _channels(x, layout):
    return x.shape[-1] if layout is not None and layout.endswith("C") and len(layout) > 2 else x.shape[1]


# -- batch norm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,layout", [((2, 3), None), ((2, 3, 5), None), ((2, 3, 4, 4), None),
                                          ((2, 3, 4, 4), "NCHW"), ((2, 4, 4, 3), "NHWC"), ((2, 5, 3), "NWC"),
                                          ((1, 2, 2, 2, 3), "NDHWC")])
@pytest.mark.parametrize("epsilon", [1e-5, 0.1])
def test_batch_norm_vs_onnx(shape, layout, epsilon):
    x = rand(shape)
    c = _channels(x, layout)
    params = [rand((c,)), rand((c,)), rand((c,)), rand((c,), low=0.1, high=2.0)]
    check_layout("ember.batch_norm", "BatchNormalization", x, params, {"epsilon": epsilon},
                 {"epsilon": epsilon}, layout)


def test_batch_norm_vs_onnx_f16():
    x = rand((2, 4, 3, 3), np.float16)
    params = [rand((4,), np.float16), rand((4,), np.float16), rand((4,), np.float16),
              rand((4,), np.float16, low=0.5, high=2.0)]
    got = check_vs_onnx("ember.batch_norm", "BatchNormalization", [x, *params])
    assert got[0].dtype == np.float16


def test_batch_norm_by_hand():
    x = np.array([[1, 2], [3, 4]], np.float32)  # N=2, C=2
    scale, bias = np.array([2, 1], np.float32), np.array([0, 1], np.float32)
    mean, var = np.array([1, 2], np.float32), np.array([4, 1], np.float32)
    y = ember_op("ember.batch_norm", [x, scale, bias, mean, var], {"epsilon": 0.0})[0]
    assert y.tolist() == [[0, 1], [2, 3]]  # c0: 2*(x-1)/2; c1: (x-2)/1 + 1
    xt = np.array([[[1, 2], [3, 4]]], np.float32)  # NWC: W=2, C=2
    y = ember_op("ember.batch_norm", [xt, scale, bias, mean, var], {"epsilon": 0.0, "layout": "NWC"})[0]
    assert y.tolist() == [[[0, 1], [2, 3]]]


def test_batch_norm_mixed_parameter_types():
    """ONNX's T1/T2: parameters may have another float type than x; y has x's."""
    x = np.array([[2.0, 4.0]], np.float16)
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    y = ember_op("ember.batch_norm", [x, ones, zeros, zeros, ones.astype(np.float64)], {"epsilon": 0.0})[0]
    assert y.dtype == np.float16 and y.tolist() == [[2.0, 4.0]]


# -- instance norm ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,layout", [((2, 3, 5), None), ((2, 3, 4, 5), None), ((1, 2, 3, 3, 2), None),
                                          ((2, 4, 5, 3), "NHWC"), ((2, 5, 3), "NWC"), ((1, 3, 2, 2, 2), "NDHWC")])
def test_instance_norm_vs_onnx(shape, layout):
    x = rand(shape)
    c = _channels(x, layout)
    check_layout("ember.instance_norm", "InstanceNormalization", x, [rand((c,)), rand((c,))],
                 {"epsilon": 1e-3}, {"epsilon": 1e-3}, layout)


def test_instance_norm_vs_onnx_f16():
    x = rand((2, 3, 4, 4), np.float16)
    check_vs_onnx("ember.instance_norm", "InstanceNormalization", [x, rand((3,), np.float16), rand((3,), np.float16)])


def test_instance_norm_by_hand():
    x = np.array([[[1, 3], [5, 5]]], np.float32)  # N=1, C=2, W=2
    scale, bias = np.array([2, 1], np.float32), np.array([0.5, 7], np.float32)
    y = ember_op("ember.instance_norm", [x[:, :1], scale[:1], bias[:1]], {"epsilon": 0.0})[0]
    assert y.ravel().tolist() == [-1.5, 2.5]  # mean 2, var 1: 2*(-1, 1) + 0.5
    y = ember_op("ember.instance_norm", [x, scale, bias], {"epsilon": 0.25})[0]
    assert np.allclose(y[0, 0], [2 * -1 / math.sqrt(1.25) + 0.5, 2 / math.sqrt(1.25) + 0.5])
    assert y[0, 1].tolist() == [7, 7]  # a constant channel normalizes to 0: only the bias is left
    y = ember_op("ember.instance_norm", [x.transpose(0, 2, 1), scale, bias], {"epsilon": 0.25, "layout": "NWC"})[0]
    assert y[0, :, 1].tolist() == [7, 7]


# -- group norm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_groups", [1, 2, 4])
@pytest.mark.parametrize("shape,layout", [((2, 4, 3, 3), None), ((2, 3, 3, 4), "NHWC"), ((2, 4, 5), None),
                                          ((2, 5, 4), "NWC")])
def test_group_norm_vs_onnx(num_groups, shape, layout):
    x = rand(shape)
    check_layout("ember.group_norm", "GroupNormalization", x, [rand((4,)), rand((4,))],
                 {"num_groups": num_groups, "epsilon": 1e-4}, {"num_groups": num_groups, "epsilon": 1e-4},
                 layout)


def test_group_norm_vs_onnx_f16():
    x = rand((2, 6, 3, 3), np.float16)
    check_layout("ember.group_norm", "GroupNormalization", x, [rand((6,), np.float16), rand((6,), np.float16)],
                 {"num_groups": 3}, {"num_groups": 3}, None)


def test_group_norm_by_hand():
    x = np.array([[[1], [3], [10], [14]]], np.float32)  # N=1, C=4, W=1; groups {1,3} {10,14}
    scale, bias = np.array([1, 2, 3, 4], np.float32), np.array([0, 0, 0, 1], np.float32)
    y = ember_op("ember.group_norm", [x, scale, bias], {"num_groups": 2, "epsilon": 0.0})[0]
    assert y.ravel().tolist() == [-1, 2, -3, 5]  # each group normalizes to (-1, 1), then per channel
    y = ember_op("ember.group_norm", [x.reshape(1, 1, 4), scale, bias],
                 {"num_groups": 2, "epsilon": 0.0, "layout": "NWC"})[0]
    assert y.ravel().tolist() == [-1, 2, -3, 5]


# -- layer norm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, -2, 1, 0, 2])
@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_vs_onnx(axis, with_bias):
    x = rand((2, 3, 4))
    norm_shape = x.shape[axis % 3:]
    inputs = [x, rand(norm_shape)] + ([rand(norm_shape)] if with_bias else [])
    got = check_vs_onnx("ember.layer_norm", "LayerNormalization", inputs, {"axis": axis, "epsilon": 1e-3})
    assert got[0].shape == x.shape


def test_layer_norm_broadcast_scale_vs_onnx():
    x = rand((2, 3, 4))
    check_vs_onnx("ember.layer_norm", "LayerNormalization", [x, rand((4,)), rand((1, 4))], {"axis": -2})


def test_layer_norm_vs_onnx_f16():
    x = rand((2, 5, 16), np.float16)
    got = check_vs_onnx("ember.layer_norm", "LayerNormalization", [x, rand((16,), np.float16), rand((16,), np.float16)])
    assert got[0].dtype == np.float16


def test_layer_norm_by_hand():
    x = np.array([[1, 2, 3, 4]], np.float32)
    y = ember_op("ember.layer_norm", [x, np.full(4, 2, np.float32), np.ones(4, np.float32)], {"epsilon": 0.0})[0]
    std = math.sqrt((1.5 ** 2 * 2 + 0.5 ** 2 * 2) / 4)  # mean 2.5
    want = [2 * (v - 2.5) / std + 1 for v in (1, 2, 3, 4)]
    assert np.allclose(y[0], want, rtol=1e-6)
    # f16 statistics would round the sum 40048 to a multiple of 32 and shift the mean; f32 keeps them exact.
    big = np.full((1, 4), 1e4, np.float16) + np.array([[0, 8, 16, 24]], np.float16)
    y = ember_op("ember.layer_norm", [big, np.ones(4, np.float16)], {"epsilon": 0.0})[0]
    assert np.allclose(y[0].astype(np.float32), [-1.3416, -0.4472, 0.4472, 1.3416], atol=2e-3)


# -- rms norm --------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, -2, 0])
@pytest.mark.parametrize("epsilon", [1e-5, 0.5])
def test_rms_norm_vs_onnx(axis, epsilon):
    x = rand((2, 3, 4))
    check_vs_onnx("ember.rms_norm", "RMSNormalization", [x, rand(x.shape[axis % 3:])],
                  {"axis": axis, "epsilon": epsilon})


def test_rms_norm_vs_onnx_f16():
    x = rand((3, 32), np.float16)
    check_vs_onnx("ember.rms_norm", "RMSNormalization", [x, rand((32,), np.float16)])


def test_rms_norm_by_hand():
    x = np.array([[3, 4]], np.float32)
    y = ember_op("ember.rms_norm", [x, np.array([1, 2], np.float32)], {"epsilon": 0.0})[0]
    rms = math.sqrt((9 + 16) / 2)
    assert np.allclose(y[0], [3 / rms, 8 / rms], rtol=1e-6)
    y = ember_op("ember.rms_norm", [x.astype(np.float16), np.array([1, 2], np.float32)], {"epsilon": 0.0})[0]
    assert y.dtype == np.float32  # ONNX's V: the result has scale's type
    assert np.allclose(y[0], [3 / rms, 8 / rms], rtol=1e-6)


# -- lrn -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("alpha,beta,bias", [(1e-4, 0.75, 1.0), (0.5, 0.5, 2.0)])
@pytest.mark.parametrize("layout", [None, "NHWC"])
def test_lrn_vs_onnx(size, alpha, beta, bias, layout):
    # N == C: onnx.reference's LRN loops over x.shape[0] where it means the channels.
    x = rand((4, 3, 3, 4)) if layout else rand((4, 4, 3, 3))
    attrs = {"size": size, "alpha": alpha, "beta": beta, "bias": bias}
    check_layout("ember.lrn", "LRN", x, [], attrs, attrs, layout)


def test_lrn_vs_onnx_f16():
    x = rand((3, 3, 4, 4), np.float16)
    check_vs_onnx("ember.lrn", "LRN", [x], {"size": 3, "alpha": 0.3})


def test_lrn_by_hand():
    x = np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1)
    y = ember_op("ember.lrn", [x], {"size": 3, "alpha": 3.0, "beta": 1.0, "bias": 1.0})[0].ravel()
    assert np.allclose(y, [1 / 6, 2 / 15, 3 / 14])  # windows {0,1} {0,1,2} {1,2}: 5, 14, 13
    y = ember_op("ember.lrn", [x], {"size": 2, "alpha": 2.0, "beta": 1.0, "bias": 1.0})[0].ravel()
    assert np.allclose(y, [1 / 6, 2 / 14, 3 / 10])  # even size looks ahead: {0,1} {1,2} {2}
    y = ember_op("ember.lrn", [x.reshape(1, 1, 1, 3)], {"size": 3, "alpha": 3.0, "beta": 1.0, "layout": "NHWC"})[0]
    assert np.allclose(y.ravel(), [1 / 6, 2 / 15, 3 / 14])


# -- softmax family --------------------------------------------------------------------------------
@pytest.mark.parametrize("op,onnx_type", [("ember.softmax", "Softmax"), ("ember.log_softmax", "LogSoftmax"),
                                          ("ember.hardmax", "Hardmax")])
@pytest.mark.parametrize("axis", [-1, 0, 1, 2, -2])
def test_softmax_family_vs_onnx(op, onnx_type, axis):
    check_vs_onnx(op, onnx_type, [rand((2, 3, 4))], {"axis": axis})


@pytest.mark.parametrize("op,onnx_type", [("ember.softmax", "Softmax"), ("ember.log_softmax", "LogSoftmax"),
                                          ("ember.hardmax", "Hardmax")])
def test_softmax_family_vs_onnx_f16_and_default_axis(op, onnx_type):
    check_vs_onnx(op, onnx_type, [rand((3, 10), np.float16)])
    check_vs_onnx(op, onnx_type, [rand((2, 5))], {})


def test_hardmax_ties_vs_onnx():
    x = np.round(rand((4, 6), low=-1, high=1))  # many ties
    check_vs_onnx("ember.hardmax", "Hardmax", [x], {"axis": 1})


def test_softmax_by_hand():
    x = np.array([[0, math.log(3)], [1000, 1000], [np.nan, 1], [-np.inf, -np.inf]], np.float32)
    y = ember_op("ember.softmax", [x], {})[0]
    assert np.allclose(y[:2], [[0.25, 0.75], [0.5, 0.5]])
    assert np.isnan(y[2]).all() and np.isnan(y[3]).all()
    y = ember_op("ember.log_softmax", [x], {})[0]
    assert np.allclose(y[:2], [[math.log(0.25), math.log(0.75)], [-math.log(2), -math.log(2)]])
    assert np.isnan(y[2]).all()
    y = ember_op("ember.softmax", [np.array([[1, 2], [1, 4]], np.float32)], {"axis": 0})[0]
    e = math.e ** 2
    assert np.allclose(y, [[0.5, 1 / (1 + e)], [0.5, e / (1 + e)]])


def test_hardmax_by_hand():
    x = np.array([[1, 3, 3], [1, np.nan, 5]], np.float32)
    assert ember_op("ember.hardmax", [x], {})[0].tolist() == [[0, 1, 0], [0, 1, 0]]  # first tie; NaN wins
    assert ember_op("ember.hardmax", [x], {"axis": 0})[0][:, 0].tolist() == [1, 0]


# -- symbolic shape inference ----------------------------------------------------------------------
def test_symbolic_types():
    b = ir.Builder()
    x = b.input("x", ir.f32["N", "S", "D"])
    s, bias = b.input("s", ir.f32["D"]), b.input("b", ir.f32["D"])
    assert str(b.layer_norm(x, s, bias).type) == "f32[N,S,D]"
    assert str(b.rms_norm(x, s).type) == "f32[N,S,D]"
    assert str(b.softmax(x, axis=1).type) == "f32[N,S,D]"
    img = b.input("img", ir.f16["N", "H", "W", 8])
    p = b.input("p", ir.f16[8])
    assert str(b.batch_norm(img, p, p, p, p, layout="NHWC").type) == "f16[N,H,W,8]"
    assert str(b.instance_norm(img, p, p, layout="NHWC").type) == "f16[N,H,W,8]"
    assert str(b.group_norm(img, p, p, num_groups=4, layout="NHWC").type) == "f16[N,H,W,8]"
    assert str(b.lrn(img, size=3, layout="NHWC").type) == "f16[N,H,W,8]"
    assert str(b.rms_norm(img, b.input("w", ir.f32[8])).type) == "f32[N,H,W,8]"
    cimg = b.input("cimg", ir.f32["N", "C", "H", "W"])
    c = b.input("c", ir.f32["C"])
    assert str(b.group_norm(cimg, c, c, num_groups=32).type) == "f32[N,C,H,W]"  # C unknown: checked at run time


def test_symbolic_layer_norm_runs():
    x = rand((2, 3, 4))
    got = ember_op("ember.layer_norm", [x, np.ones(4, np.float32)], {}, symbolic={0: ["N", "S", 4]})[0]
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    assert np.allclose(got, want, atol=1e-5)


# -- errors ----------------------------------------------------------------------------------------
def _build(op, *types, **attrs):
    b = ir.Builder()
    vals = [b.input(f"v{i}", t) for i, t in enumerate(types)]
    return getattr(b, op)(*vals, **attrs)


F4 = ir.f32[4]


@pytest.mark.parametrize("op,types,attrs,match", [
    ("batch_norm", (ir.f32[2, 4, 3, 3], ir.f32[3], F4, F4, F4), {}, "scale must be a vector of the 4 channels"),
    ("batch_norm", (ir.f32[2, 3, 3, 4], F4, F4, F4, ir.f32[2, 2]), {"layout": "NHWC"}, "var must be a vector"),
    ("batch_norm", (ir.f32[2, 3, 3, 4], F4, F4, F4, F4), {}, "scale must be a vector of the 3 channels"),
    ("batch_norm", (ir.f32[2, 4, 3], F4, F4, F4, F4), {"layout": "NHWC"}, "layout 'NHWC' does not fit a rank-3"),
    ("batch_norm", (ir.f32[4], F4, F4, F4, F4), {}, "rank >= 2"),
    ("batch_norm", (ir.i32[2, 4], F4, F4, F4, F4), {}, "must be a float tensor"),
    ("instance_norm", (ir.f32[2, 4], F4, F4), {}, "rank >= 3"),
    ("instance_norm", (ir.f32[2, 4, 3], F4, ir.f16[4]), {}, "bias must have x's element type f32"),
    ("group_norm", (ir.f32[2, 6, 3], ir.f32[6], ir.f32[6]), {"num_groups": 4}, "num_groups 4 does not divide the 6"),
    ("group_norm", (ir.f32[2, 6, 3], ir.f32[6], ir.f32[6]), {"num_groups": 0}, "num_groups must be >= 1"),
    ("group_norm", (ir.f32[2, 6, 3], ir.f32[3], ir.f32[3]), {"num_groups": 3}, "scale must be a vector of the 6"),
    ("layer_norm", (ir.f32[2, 4], F4), {"axis": 2}, "axis 2 is out of range for rank 2"),
    ("layer_norm", (ir.f32[2, 4], ir.f32[3]), {}, r"scale f32\[3\] does not broadcast to the normalized shape \[4\]"),
    ("layer_norm", (ir.f32[2, 4], ir.f32[2, 4]), {"axis": -1}, "does not broadcast"),
    ("layer_norm", (ir.f32[2, 4], F4, ir.f32[5]), {}, "bias f32"),
    ("layer_norm", (ir.f32[2, 4], ir.f16[4]), {}, "scale must have x's element type"),
    ("rms_norm", (ir.f32[2, 4], ir.f32[2]), {}, "scale f32\\[2\\] does not broadcast"),
    ("rms_norm", (ir.f32[2, 4], F4), {"axis": -3}, "axis -3 is out of range"),
    ("lrn", (ir.f32[1, 4, 3, 3],), {"size": 0}, "size must be >= 1"),
    ("lrn", (ir.f32[1, 4, 3, 3],), {"size": 3, "layout": "NCW"}, "layout 'NCW' does not fit a rank-4"),
    ("softmax", (ir.f32[2, 3],), {"axis": 2}, "axis 2 is out of range for rank 2"),
    ("log_softmax", (ir.f32[2, 3],), {"axis": -3}, "axis -3 is out of range"),
    ("hardmax", (ir.i32[2, 3],), {}, "must be a float tensor"),
])
def test_errors(op, types, attrs, match):
    with pytest.raises(ShapeError, match=match):
        _build(op, *types, **attrs)


def test_missing_attribute():
    with pytest.raises(VerifyError, match="num_groups"):
        _build("group_norm", ir.f32[2, 4, 3], F4, F4)


def test_group_norm_runtime_channel_check():
    """C symbolic: the type rule cannot check divisibility; the reference does."""
    x = rand((1, 6, 2))
    with pytest.raises(Exception, match="num_groups 4 does not divide 6"):
        ember_op("ember.group_norm", [x, np.ones(6, np.float32), np.zeros(6, np.float32)], {"num_groups": 4},
                 symbolic={0: ["N", "C", 2], 1: ["C"], 2: ["C"]})
