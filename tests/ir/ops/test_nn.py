"""Convolution, pooling and depth/space ops against onnx.reference, hand-computed cases,
symbolic shapes and errors.

Channels-last layouts are checked by transposing inputs to ONNX's channels-first order
and the ONNX result back. Where onnx.reference itself is wrong (grouped ConvTranspose,
MaxPool's strided auto_pad, NaN inside pooling windows), the expected values are
derived another way and the test says how.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from oracle import assert_close, check_vs_onnx, ember_op, onnx_op, rand

from ember import ir
from ember.errors import ShapeError, VerifyError

def to_last(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (0, *range(2, a.ndim), 1))


def to_first(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (0, a.ndim - 1, *range(1, a.ndim - 1)))


def check_channels_last(op: str, onnx_type: str, x: np.ndarray, others: list, attrs: dict, layout: str,
                        onnx_attrs: dict | None = None, weight_perm: tuple | None = None,
                        weight_layout: str | None = None, opset: int = 23, **tol: float) -> np.ndarray:
    """Ember on channels-last x (and a permuted filter) against ONNX on channels-first."""
    w_ember = list(others)
    if weight_perm is not None:
        w_ember[0] = np.transpose(others[0], weight_perm)
    extra = {"layout": layout} | ({"weight_layout": weight_layout} if weight_layout else {})
    got = ember_op(op, [to_last(x), *w_ember], attrs | extra)[0]
    want = onnx_op(onnx_type, [x, *others], onnx_attrs if onnx_attrs is not None else attrs, opset=opset)[0]
    assert_close(to_first(got), want, what=f"{op} {layout} vs ONNX {onnx_type}", **tol)
    return got


def assert_rounded_once(got: np.ndarray, want: np.ndarray) -> None:
    """got (f16/bf16) is the f32 result `want` rounded once: within half a unit in the last
    place of got's type (plus a hair for the f32 results' own summation order)."""
    eps = float(ml_dtypes.finfo(got.dtype).eps)
    ulp = 2.0 ** np.floor(np.log2(np.maximum(np.abs(want), 1e-3))) * eps
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= ulp / 2 * 1.001 + 1e-6 * np.abs(want)), f"max error {err.max()}"


def infer(op: str, *types: ir.Type | None, **attrs) -> str:
    b = ir.Builder()
    args = [b.input(f"in{i}", t) if t is not None else None for i, t in enumerate(types)]
    out = b.op(op, *args, **attrs)
    return ", ".join(str(r.type) for r in ([out] if isinstance(out, ir.Value) else out))


# -- conv ---------------------------------------------------------------------------------------
CONV_2D = [
    pytest.param({}, id="plain"),
    pytest.param({"strides": [2, 2], "pads": [1, 1, 1, 1]}, id="stride2-pad1"),
    pytest.param({"pads": [0, 1, 2, 1]}, id="asymmetric-pads"),
    pytest.param({"dilations": [2, 1], "pads": [1, 0, 1, 2]}, id="dilations"),
    pytest.param({"strides": [1, 2], "dilations": [1, 2]}, id="stride-and-dilation"),
    pytest.param({"auto_pad": "VALID", "strides": [2, 2]}, id="valid"),
    pytest.param({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, id="same-upper"),
    pytest.param({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, id="same-lower"),
    pytest.param({"auto_pad": "SAME_UPPER", "dilations": [2, 2]}, id="same-upper-dilated"),
    pytest.param({"auto_pad": "SAME_LOWER", "strides": [1, 2], "dilations": [1, 2]}, id="same-lower-dilated"),
    pytest.param({"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, id="kernel-shape"),
]


@pytest.mark.parametrize("attrs", CONV_2D)
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_conv_2d_vs_onnx(attrs, with_bias):
    x, w = rand((1, 2, 5, 5)), rand((3, 2, 3, 3))
    check_vs_onnx("ember.conv", "Conv", [x, w, rand((3,)) if with_bias else None], attrs)


@pytest.mark.parametrize("x_shape,w_shape,group", [
    ((1, 4, 5, 5), (6, 2, 3, 3), 2),     # two groups
    ((2, 3, 4, 4), (6, 1, 3, 3), 3),     # depthwise, channel multiplier 2
])
def test_conv_groups_vs_onnx(x_shape, w_shape, group):
    x, w, b = rand(x_shape), rand(w_shape), rand((w_shape[0],))
    check_vs_onnx("ember.conv", "Conv", [x, w, b], {"group": group, "pads": [1, 1, 1, 1]})


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((2, 2, 7), (3, 2, 3), {"strides": [2], "pads": [1, 2], "dilations": [2]}),
    ((1, 2, 7), (4, 1, 2), {"group": 2, "auto_pad": "SAME_UPPER"}),
    ((1, 2, 3, 4, 4), (2, 2, 2, 2, 2), {"pads": [1, 0, 1, 0, 1, 1], "strides": [1, 2, 1]}),
    ((1, 2, 3, 4, 5), (2, 1, 2, 3, 2), {"group": 2, "auto_pad": "SAME_LOWER", "dilations": [1, 1, 2]}),
], ids=["1d", "1d-group-same", "3d", "3d-group-same-dilated"])
def test_conv_1d_3d_vs_onnx(x_shape, w_shape, attrs):
    check_vs_onnx("ember.conv", "Conv", [rand(x_shape), rand(w_shape), rand((w_shape[0],))], attrs)


def test_conv_f16_accumulates_in_f32():
    x, w, b = rand((1, 2, 5, 5), np.float16), rand((3, 2, 3, 3), np.float16), rand((3,), np.float16)
    got = ember_op("ember.conv", [x, w, b], {"pads": [1, 1, 1, 1]})[0]
    assert got.dtype == np.float16
    want = onnx_op("Conv", [x.astype(np.float32), w.astype(np.float32), b.astype(np.float32)],
                   {"pads": [1, 1, 1, 1]})[0]
    assert_rounded_once(got, want)


def test_conv_f64_vs_onnx():
    got = check_vs_onnx("ember.conv", "Conv", [rand((1, 2, 5, 5), np.float64), rand((3, 2, 3, 3), np.float64),
                                               rand((3,), np.float64)], {"strides": [2, 1], "pads": [1, 1, 0, 0]})
    assert got[0].dtype == np.float64


def test_conv_bf16():
    x, w = rand((1, 2, 4, 4), ir.bf16), rand((2, 2, 3, 3), ir.bf16)
    got = ember_op("ember.conv", [x, w, None], {})[0]
    want = onnx_op("Conv", [x.astype(np.float32), w.astype(np.float32)], {})[0]
    assert got.dtype == ir.bf16.np_dtype
    assert_rounded_once(got, want)


@pytest.mark.parametrize("layout,weight_layout,weight_perm,attrs", [
    ("NHWC", None, None, {"strides": [2, 2], "pads": [1, 0, 1, 1]}),
    ("NHWC", "OHWI", (0, 2, 3, 1), {"auto_pad": "SAME_UPPER", "strides": [2, 1]}),
    ("NHWC", "HWIO", (2, 3, 1, 0), {"dilations": [2, 2], "pads": [1, 1, 1, 1]}),
    ("NCHW", "HWIO", (2, 3, 1, 0), {"group": 2, "pads": [1, 1, 1, 1]}),
    ("NHWC", "HWIO", (2, 3, 1, 0), {"group": 2, "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
])
def test_conv_layouts_2d(layout, weight_layout, weight_perm, attrs):
    group = attrs.get("group", 1)
    x, w, b = rand((1, 4, 5, 5)), rand((6, 4 // group, 3, 3)), rand((6,))
    extra = {"weight_layout": weight_layout} if weight_layout else {}
    w_ember = np.transpose(w, weight_perm) if weight_perm else w
    if layout == "NCHW":
        got = ember_op("ember.conv", [x, w_ember, b], attrs | extra | {"layout": layout})[0]
        assert_close(got, onnx_op("Conv", [x, w, b], attrs)[0])
    else:
        check_channels_last("ember.conv", "Conv", x, [w, b], attrs, layout, weight_perm=weight_perm,
                            weight_layout=weight_layout)


def test_conv_layouts_1d_3d():
    x1, w1 = rand((1, 2, 6)), rand((3, 2, 3))
    check_channels_last("ember.conv", "Conv", x1, [w1], {"strides": [2]}, "NWC",
                        weight_perm=(2, 1, 0), weight_layout="WIO")
    x3, w3 = rand((1, 2, 3, 4, 4)), rand((2, 2, 2, 2, 2))
    check_channels_last("ember.conv", "Conv", x3, [w3], {"pads": [1, 1, 1, 0, 0, 0]}, "NDHWC",
                        weight_perm=(0, 2, 3, 4, 1), weight_layout="ODHWI")


def test_conv_4_spatial_dims_vs_onnx():
    """Ranks above 5 have no layout letters; the default layouts still work."""
    x, w = rand((1, 2, 3, 3, 2, 3)), rand((2, 2, 2, 2, 1, 2))
    check_vs_onnx("ember.conv", "Conv", [x, w, None], {"pads": [1, 0, 0, 1, 0, 1, 1, 0], "strides": [1, 2, 1, 1]})
    with pytest.raises(ShapeError, match="has no layout letters"):
        infer("ember.conv", ir.f32[1, 2, 3, 3, 2, 3], ir.f32[2, 2, 2, 2, 1, 2], None, weight_layout="OISSSS")


def test_conv_hand_computed():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.float32).reshape(1, 1, 3, 3)
    got = ember_op("ember.conv", [x, cross, np.array([0.5], np.float32)], {"pads": [1, 1, 1, 1]})[0]
    # each output = sum of the 4-neighbourhood and itself (zeros outside) + 0.5
    assert got[0, 0].tolist() == [[7.5, 11.5, 11.5], [17.5, 25.5, 23.5], [19.5, 29.5, 23.5]]
    # no pads, stride 1: only the centre fits
    assert ember_op("ember.conv", [x, cross, None], {})[0].tolist() == [[[[25.0]]]]
    # cross-correlation, not flipped convolution: an off-centre tap picks its neighbour
    right = np.zeros((1, 1, 3, 3), np.float32)
    right[0, 0, 1, 2] = 1.0
    assert ember_op("ember.conv", [x, right, None], {"pads": [1, 1, 1, 1]})[0][0, 0].tolist() == \
        [[2, 3, 0], [5, 6, 0], [8, 9, 0]]


def test_conv_groups_hand_computed():
    x = np.array([1, 2, 3, 4], np.float32).reshape(1, 4, 1, 1)
    w = np.array([[1, 10], [100, 1000]], np.float32).reshape(2, 2, 1, 1)
    got = ember_op("ember.conv", [x, w, None], {"group": 2})[0]
    # group 0 reads channels 0,1 with [1, 10]; group 1 reads channels 2,3 with [100, 1000]
    assert got.ravel().tolist() == [1 + 20, 300 + 4000]


def test_conv_nan_propagates_and_empty_batch():
    x = rand((1, 1, 4, 4))
    x[0, 0, 0, 0] = np.nan
    got = ember_op("ember.conv", [x, rand((1, 1, 2, 2)), None], {})[0]
    assert np.isnan(got[0, 0, 0, 0]) and not np.isnan(got[0, 0, 1:, :]).any() and not np.isnan(got[0, 0, :, 1:]).any()
    empty = ember_op("ember.conv", [rand((0, 2, 5, 5)), rand((3, 2, 3, 3)), None], {"pads": [1, 1, 1, 1]})[0]
    assert empty.shape == (0, 3, 5, 5)


def test_conv_symbolic_shapes():
    x = ir.f32["N", 3, "H", "W"]
    w = ir.f32[16, 3, 3, 3]
    # (H + 2 - 3)//2 + 1 == (H-1)//2 + 1 == (H+1)//2 for every H >= 0: the canonical form
    assert infer("ember.conv", x, w, None, strides=[2, 2], pads=[1, 1, 1, 1]) == "f32[N,16,(H+1)//2,(W+1)//2]"
    assert infer("ember.conv", x, w, None, strides=[2, 2], auto_pad="SAME_UPPER") == "f32[N,16,(H+1)//2,(W+1)//2]"
    assert infer("ember.conv", x, w, None, strides=[3, 3], auto_pad="SAME_LOWER") == "f32[N,16,(H+2)//3,(W+2)//3]"
    assert infer("ember.conv", x, w, None, auto_pad="VALID") == "f32[N,16,H-2,W-2]"
    assert infer("ember.conv", x, w, None, dilations=[2, 2]) == "f32[N,16,H-4,W-4]"
    nhwc = ir.f32["N", "H", "W", 3]
    assert infer("ember.conv", nhwc, ir.f32[3, 3, 3, 8], None, layout="NHWC", weight_layout="HWIO",
                 strides=[2, 2], pads=[1, 1, 1, 1]) == "f32[N,(H+1)//2,(W+1)//2,8]"
    assert infer("ember.conv", ir.f32[1, 3, None, 8], w, None) == "f32[1,16,?,6]"
    # a filter of symbolic size takes its window from kernel_shape
    assert infer("ember.conv", x, ir.f32[16, 3, "K", "K"], None, kernel_shape=[3, 3], pads=[1, 1, 1, 1]) == \
        "f32[N,16,H,W]"
    assert infer("ember.conv", x, ir.f32[16, 3, "K", "K"], None) == "f32[N,16,H-K+1,-K+W+1]"


def test_conv_symbolic_runs():
    """The symbolic output type evaluates to the shape the reference produces."""
    x, w = rand((2, 3, 7, 6)), rand((4, 3, 3, 3))
    got = ember_op("ember.conv", [x, w, None], {"strides": [2, 2], "pads": [1, 1, 1, 1]},
                   symbolic={0: ("N", 3, "H", "W")})[0]
    assert got.shape == (2, 4, 4, 3)
    assert_close(got, onnx_op("Conv", [x, w], {"strides": [2, 2], "pads": [1, 1, 1, 1]})[0])
    got = ember_op("ember.conv", [x, w, None], {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
                   symbolic={0: ("N", 3, "H", "W")})[0]
    assert_close(got, onnx_op("Conv", [x, w], {"strides": [2, 2], "auto_pad": "SAME_LOWER"})[0])


@pytest.mark.parametrize("x,w,bias,attrs,match", [
    (ir.f32[1, 4, 5, 5], ir.f32[6, 3, 3, 3], None, {"group": 2}, "4 input channels .* 3 per group x 2 groups"),
    (ir.f32[1, 4, 5, 5], ir.f32[5, 2, 3, 3], None, {"group": 2}, "5 output channels do not split into 2"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"layout": "NWHC"}, "layout 'NWHC' does not fit a rank-4"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"layout": "NCW"}, "layout 'NCW' does not fit a rank-4"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"weight_layout": "OIHH"}, "weight_layout 'OIHH'"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"pads": [1, 1, 1]}, r"pads \[1, 1, 1\] has 3 entries; expected 4"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"strides": [2]}, "strides .* expected 2"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"strides": [0, 1]}, "strides .* must be positive"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"pads": [1, -1, 1, 1]}, "must not be negative"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"dilations": [0, 1]}, "dilations .* must be positive"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"group": 0}, "group 0 must be positive"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"pads": [1, 1, 1, 1], "auto_pad": "SAME_UPPER"},
     "exclude each other"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"kernel_shape": [3, 2]}, "does not match the filter"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3], None, {}, "must have rank 4"),
    (ir.f32[1, 3, 2, 5], ir.f32[6, 3, 3, 3], None, {}, "spatial dim 0 of size 2 .* smaller than the window"),
    (ir.f32[3, 5], ir.f32[6, 3], None, {}, "needs rank >= 3"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], ir.f32[5], {}, "bias f32\\[5\\] must be a vector of the 6"),
    (ir.f32[1, 3, 5, 5], ir.f16[6, 3, 3, 3], None, {}, "share an element type"),
    (ir.i32[1, 3, 5, 5], ir.i32[6, 3, 3, 3], None, {}, "must be a float tensor"),
    (ir.f32[1, 3, 5, 5], ir.f32[6, 3, 3, 3], None, {"auto_pad": "SAME"}, "expected one of"),
])
def test_conv_errors(x, w, bias, attrs, match):
    with pytest.raises(VerifyError, match=match):
        infer("ember.conv", x, w, bias, **attrs)


def test_conv_error_is_shape_error_with_op_name():
    with pytest.raises(ShapeError, match=r"ember.conv: x has 4 input channels"):
        infer("ember.conv", ir.f32[1, 4, 5, 5], ir.f32[6, 3, 3, 3], None, group=2)


# -- conv_transpose -----------------------------------------------------------------------------
CONV_T = [
    pytest.param({}, id="plain"),
    pytest.param({"strides": [2, 2]}, id="stride2"),
    pytest.param({"strides": [2, 2], "pads": [1, 0, 1, 1]}, id="pads"),
    pytest.param({"strides": [2, 3], "output_padding": [1, 2]}, id="output-padding"),
    pytest.param({"dilations": [2, 1], "strides": [1, 2]}, id="dilations"),
    pytest.param({"strides": [2, 2], "output_shape": [8, 9]}, id="output-shape-same-upper"),
    pytest.param({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, id="same-upper"),
    pytest.param({"strides": [2, 2], "auto_pad": "SAME_LOWER"}, id="same-lower"),
    pytest.param({"strides": [2, 2], "auto_pad": "VALID"}, id="valid"),
    pytest.param({"kernel_shape": [3, 3], "strides": [2, 2], "output_padding": [1, 0]}, id="kernel-shape"),
]


@pytest.mark.parametrize("attrs", CONV_T)
def test_conv_transpose_vs_onnx(attrs):
    x, w, b = rand((1, 2, 4, 4)), rand((2, 3, 3, 3)), rand((3,))
    if "output_shape" in attrs:
        # onnx.reference derives pads from output_shape only under auto_pad=SAME_*.
        attrs = attrs | {"auto_pad": "SAME_UPPER"}
    check_vs_onnx("ember.conv_transpose", "ConvTranspose", [x, w, b], attrs)


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 2, 5), (2, 3, 3), {"strides": [2], "pads": [1, 0], "output_padding": [1]}),
    ((1, 2, 2, 3, 3), (2, 1, 2, 2, 2), {"strides": [2, 1, 2], "pads": [0, 1, 0, 1, 0, 0]}),
], ids=["1d", "3d"])
def test_conv_transpose_1d_3d_vs_onnx(x_shape, w_shape, attrs):
    check_vs_onnx("ember.conv_transpose", "ConvTranspose", [rand(x_shape), rand(w_shape), rand((w_shape[1],))],
                  attrs)


def test_conv_transpose_output_shape_notset_follows_spec():
    """output_shape with auto_pad NOTSET: pads = total - total//2 at the beginning and
    total//2 at the end (ONNX's equations); onnx.reference cannot run it, so compare with
    the same conv_transpose given those pads explicitly, on ONNX."""
    x, w = rand((1, 2, 3, 3)), rand((2, 1, 3, 3))
    # full = 2*(3-1) + 3 = 7; output 4x5: totals 3 and 2 -> pads begin (2, 1), end (1, 1)
    got = ember_op("ember.conv_transpose", [x, w, None], {"strides": [2, 2], "output_shape": [4, 5]})[0]
    want = onnx_op("ConvTranspose", [x, w], {"strides": [2, 2], "pads": [2, 1, 1, 1]})[0]
    assert got.shape == (1, 1, 4, 5)
    assert_close(got, want)


def test_conv_transpose_groups():
    """onnx.reference mishandles groups, so the expected result is each group's
    conv_transpose on ONNX, concatenated over channels (and the bias added)."""
    x, w, b = rand((1, 4, 3, 3)), rand((4, 3, 2, 2)), rand((6,))
    attrs = {"strides": [2, 2], "pads": [1, 0, 0, 1]}
    got = ember_op("ember.conv_transpose", [x, w, b], attrs | {"group": 2})[0]
    parts = [onnx_op("ConvTranspose", [x[:, 2 * g:2 * g + 2], w[2 * g:2 * g + 2]], attrs)[0] for g in range(2)]
    want = np.concatenate(parts, axis=1) + b.reshape(1, 6, 1, 1)
    assert got.shape == (1, 6, 5, 5)
    assert_close(got, want)


def test_conv_transpose_layouts():
    x, w, b = rand((1, 2, 3, 4)), rand((2, 3, 3, 2)), rand((3,))
    attrs = {"strides": [2, 2], "pads": [1, 0, 0, 1], "output_padding": [1, 0]}
    # TensorFlow's conv2d_transpose filter is (h, w, out, in): HWOI
    check_channels_last("ember.conv_transpose", "ConvTranspose", x, [w, b], attrs, "NHWC",
                        weight_perm=(2, 3, 1, 0), weight_layout="HWOI")
    same = {"strides": [2, 2], "output_padding": [1, 0], "auto_pad": "SAME_LOWER"}
    check_channels_last("ember.conv_transpose", "ConvTranspose", x, [w, b], same, "NHWC")


def test_conv_transpose_hand_computed():
    x = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 1, 2, 2)
    w = np.array([[1, 10], [100, 1000]], np.float32).reshape(1, 1, 2, 2)
    got = ember_op("ember.conv_transpose", [x, w, None], {"strides": [2, 2]})[0]
    # stride == kernel: every input stamps the kernel into its own 2x2 block
    assert got[0, 0].tolist() == [[1, 10, 2, 20], [100, 1000, 200, 2000],
                                  [3, 30, 4, 40], [300, 3000, 400, 4000]]
    # stride 1: overlapping stamps add up; output 3x3
    got = ember_op("ember.conv_transpose", [x, w, None], {})[0]
    assert got[0, 0].tolist() == [[1, 12, 20], [103, 1234, 2040], [300, 3400, 4000]]
    # pads crop the full result; output_padding appends never-written elements (only bias)
    got = ember_op("ember.conv_transpose", [x, w, np.array([0.5], np.float32)],
                   {"strides": [2, 2], "pads": [1, 1, 0, 0], "output_padding": [1, 1]})[0]
    assert got[0, 0].tolist() == [[1000.5, 200.5, 2000.5, 0.5], [30.5, 4.5, 40.5, 0.5],
                                  [3000.5, 400.5, 4000.5, 0.5], [0.5, 0.5, 0.5, 0.5]]


def test_conv_transpose_output_shape_larger_pads_with_zeros():
    x = np.array([[1, 2]], np.float32).reshape(1, 1, 1, 2)
    w = np.ones((1, 1, 1, 2), np.float32)
    # full width 3: [1, 3, 2]; output_shape 6 -> total -3, split with floor division:
    # SAME_UPPER begins with total//2 = -2 (two zeros before) and ends with -1
    got = ember_op("ember.conv_transpose", [x, w, np.array([1.0], np.float32)],
                   {"output_shape": [1, 6], "auto_pad": "SAME_UPPER"})[0]
    assert got[0, 0].tolist() == [[1, 1, 2, 4, 3, 1]]
    # otherwise the beginning gets total - total//2 = -1 and the end -2
    got = ember_op("ember.conv_transpose", [x, w, None], {"output_shape": [1, 6]})[0]
    assert got[0, 0].tolist() == [[0, 1, 3, 2, 0, 0]]


def test_conv_transpose_symbolic_shapes():
    x = ir.f32["N", 4, "H", "W"]
    w = ir.f32[4, 2, 3, 3]
    assert infer("ember.conv_transpose", x, w, None, strides=[2, 2], pads=[1, 1, 1, 1],
                 output_padding=[1, 1]) == "f32[N,2,2*H,2*W]"
    assert infer("ember.conv_transpose", x, w, None, strides=[2, 2], auto_pad="SAME_LOWER") == "f32[N,2,2*H,2*W]"
    assert infer("ember.conv_transpose", x, w, None, strides=[2, 2]) == "f32[N,2,2*H+1,2*W+1]"
    assert infer("ember.conv_transpose", x, ir.f32[4, 3, 3, 3], None, group=2,
                 output_shape=["2*H", 7]) == "f32[N,6,2*H,7]"
    assert infer("ember.conv_transpose", ir.f32["N", "H", "W", 4], ir.f32[3, 3, 2, 4], None, layout="NHWC",
                 weight_layout="HWOI", strides=[2, 2], auto_pad="SAME_UPPER") == "f32[N,2*H,2*W,2]"


def test_conv_transpose_crop_to_one():
    # full size 2*(3-1)+3 = 7 cropped by 3+3: one element left is still an output
    assert infer("ember.conv_transpose", ir.f32[1, 4, 3, 3], ir.f32[4, 2, 3, 3], None, strides=[2, 2],
                 pads=[3, 3, 3, 3]) == "f32[1,2,1,1]"


def test_conv_transpose_empty_batch_and_unknown_dims():
    got = ember_op("ember.conv_transpose", [rand((0, 2, 3, 3)), rand((2, 3, 3, 3)), None], {"strides": [2, 2]})[0]
    assert got.shape == (0, 3, 7, 7)
    assert infer("ember.conv_transpose", ir.f32[None, 2, None, 3], ir.f32[2, 3, 3, 3], None,
                 strides=[2, 2]) == "f32[?,3,?,7]"
    with pytest.raises(ShapeError, match="spatial dim 0 of x .* is empty"):
        infer("ember.conv_transpose", ir.f32[1, 2, 0, 3], ir.f32[2, 3, 3, 3], None)


def test_conv_transpose_symbolic_runs():
    x, w = rand((1, 2, 3, 4)), rand((2, 3, 3, 3))
    got = ember_op("ember.conv_transpose", [x, w, None], {"strides": [2, 2], "output_shape": ["2*H", "2*W"],
                                                          "auto_pad": "SAME_UPPER"},
                   symbolic={0: ("N", 2, "H", "W")})[0]
    assert_close(got, onnx_op("ConvTranspose", [x, w], {"strides": [2, 2], "auto_pad": "SAME_UPPER"})[0])


@pytest.mark.parametrize("x,w,attrs,match", [
    (ir.f32[1, 4, 3, 3], ir.f32[3, 2, 3, 3], {}, "4 input channels but the filter .* takes 3"),
    (ir.f32[1, 3, 3, 3], ir.f32[3, 2, 3, 3], {"group": 2}, "3 input channels do not split into 2 groups"),
    (ir.f32[1, 4, 3, 3], ir.f32[4, 2, 3, 3], {"strides": [2, 2], "output_padding": [2, 0]},
     "output_padding .* less than the stride or the dilation"),
    (ir.f32[1, 4, 3, 3], ir.f32[4, 2, 3, 3], {"output_padding": [1]}, "output_padding .* expected 2"),
    (ir.f32[1, 4, 3, 3], ir.f32[4, 2, 3, 3], {"output_shape": [6]}, "output_shape .* expected 2"),
    (ir.f32[1, 4, 3, 3], ir.f32[4, 2, 3, 3], {"output_shape": [6, 6], "pads": [1, 1, 1, 1]},
     "output_shape derives the pads"),
    (ir.f32[1, 4, 3, 3], ir.f32[4, 2, 3, 3], {"pads": [3, 0, 3, 0]}, "pads crop spatial dim 0 to -1"),
    (ir.f32[1, 4, 3, 3], ir.f32[4, 2, 3, 3], {"strides": [2, 2], "pads": [3, 0, 4, 0]}, "dim 0 to 0 elements"),
    (ir.f32[1, 4, 3, 3], ir.f32[4, 2, 3, 3], {"layout": "NHCW"}, "layout 'NHCW'"),
    (ir.f32[1, 4, 3, 3], ir.f32[4, 2, 3, 3], {"weight_layout": "OIHWX"}, "weight_layout 'OIHWX'"),
])
def test_conv_transpose_errors(x, w, attrs, match):
    with pytest.raises(ShapeError, match=match):
        infer("ember.conv_transpose", x, w, None, **attrs)


# -- windowed pooling ---------------------------------------------------------------------------
POOL_2D = [
    pytest.param({"kernel_shape": [2, 2]}, id="k2"),
    pytest.param({"kernel_shape": [3, 3], "strides": [2, 2]}, id="k3-s2"),
    pytest.param({"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, id="pads"),
    pytest.param({"kernel_shape": [3, 2], "pads": [1, 0, 2, 1], "strides": [2, 1]}, id="asymmetric-pads"),
    pytest.param({"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, id="ceil"),
    pytest.param({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}, id="ceil-pads"),
    pytest.param({"kernel_shape": [2, 2], "dilations": [2, 2]}, id="dilations"),
    pytest.param({"kernel_shape": [2, 3], "dilations": [2, 1], "pads": [1, 1, 0, 1], "strides": [1, 2]},
                 id="dilations-pads"),
    pytest.param({"kernel_shape": [3, 3], "auto_pad": "VALID", "strides": [2, 2]}, id="valid"),
    pytest.param({"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER"}, id="same-upper"),
    pytest.param({"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"}, id="same-lower"),
]


@pytest.mark.parametrize("attrs", POOL_2D)
def test_max_pool_vs_onnx(attrs):
    check_vs_onnx("ember.max_pool", "MaxPool", [rand((1, 2, 5, 5))], attrs)


@pytest.mark.parametrize("attrs", POOL_2D)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_avg_pool_vs_onnx(attrs, count_include_pad):
    check_vs_onnx("ember.avg_pool", "AveragePool", [rand((1, 2, 5, 5))],
                  attrs | {"count_include_pad": count_include_pad})


@pytest.mark.parametrize("attrs", [a for a in POOL_2D if "ceil_mode" not in a.values[0]])
@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool_vs_onnx(attrs, p):
    check_vs_onnx("ember.lp_pool", "LpPool", [rand((1, 2, 5, 5))], attrs | {"p": p})


@pytest.mark.parametrize("op,onnx_type,extra", [
    ("ember.max_pool", "MaxPool", {}),
    ("ember.avg_pool", "AveragePool", {"count_include_pad": 1}),
    ("ember.lp_pool", "LpPool", {"p": 3}),
])
@pytest.mark.parametrize("shape,attrs", [
    ((2, 3, 7), {"kernel_shape": [3], "strides": [2], "pads": [1, 2]}),
    ((1, 2, 7), {"kernel_shape": [2], "dilations": [3], "pads": [1, 0]}),
    ((1, 2, 4, 4, 4), {"kernel_shape": [2, 3, 2], "strides": [2, 1, 2], "pads": [1, 1, 0, 0, 1, 1]}),
], ids=["1d", "1d-dilated", "3d"])
def test_pool_1d_3d_vs_onnx(op, onnx_type, extra, shape, attrs):
    check_vs_onnx(op, onnx_type, [rand(shape)], attrs | extra)


@pytest.mark.parametrize("op,onnx_type,extra", [
    ("ember.max_pool", "MaxPool", {}),
    ("ember.avg_pool", "AveragePool", {"count_include_pad": 1}),
    ("ember.avg_pool", "AveragePool", {}),
    ("ember.lp_pool", "LpPool", {"p": 2}),
])
def test_pool_channels_last(op, onnx_type, extra):
    attrs = {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]} | extra
    check_channels_last(op, onnx_type, rand((2, 3, 5, 4)), [], attrs, "NHWC")
    check_channels_last(op, onnx_type, rand((1, 2, 6)), [], {"kernel_shape": [2], "strides": [2]} | extra, "NWC")
    check_channels_last(op, onnx_type, rand((1, 2, 3, 4, 4)), [], {"kernel_shape": [2, 2, 2]} | extra, "NDHWC")


def test_pool_same_with_strides():
    """auto_pad SAME with strides: onnx.reference's MaxPool gets SAME_LOWER's output size
    wrong with strides, so max pool is checked by hand and avg pool against ONNX."""
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2]}
    # 5 -> 3 outputs; total pad (3-1)*2 + 2 - 5 = 1: UPPER pads the end, LOWER the beginning
    upper = ember_op("ember.max_pool", [x], attrs | {"auto_pad": "SAME_UPPER"})[0]
    assert upper[0, 0].tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    lower = ember_op("ember.max_pool", [x], attrs | {"auto_pad": "SAME_LOWER"})[0]
    assert lower[0, 0].tolist() == [[0, 2, 4], [10, 12, 14], [20, 22, 24]]
    for mode in ("SAME_UPPER", "SAME_LOWER"):
        for cip in (0, 1):
            check_vs_onnx("ember.avg_pool", "AveragePool", [x],
                          attrs | {"auto_pad": mode, "count_include_pad": cip})


@pytest.mark.parametrize("dtype,attrs", [
    (np.int8, {"kernel_shape": [3, 3], "strides": [2, 1]}),  # onnx.reference pads integers with NaN: no pads
    (np.uint8, {"kernel_shape": [2, 2], "dilations": [2, 1]}),
    (np.float16, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
])
def test_max_pool_dtypes_vs_onnx(dtype, attrs):
    got = check_vs_onnx("ember.max_pool", "MaxPool", [rand((1, 2, 5, 5), dtype)], attrs)
    assert got[0].dtype == dtype


@pytest.mark.parametrize("op,onnx_type", [("ember.avg_pool", "AveragePool"), ("ember.lp_pool", "LpPool")])
def test_pool_f16_vs_onnx(op, onnx_type):
    x = rand((1, 2, 5, 5), np.float16)
    got = ember_op(op, [x], {"kernel_shape": [3, 3], "strides": [2, 2]})[0]
    assert got.dtype == np.float16
    want = onnx_op(onnx_type, [x.astype(np.float32)], {"kernel_shape": [3, 3], "strides": [2, 2]})[0]
    assert_rounded_once(got, want)


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [2, 2], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]},
    {"kernel_shape": [2, 3], "dilations": [2, 1], "strides": [1, 2]},
])
@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_with_indices_vs_onnx(attrs, storage_order):
    x = rand((2, 3, 5, 4))
    values, indices = check_vs_onnx("ember.max_pool_with_indices", "MaxPool", [x],
                                    attrs | {"storage_order": storage_order}, n_outputs=2)
    assert indices.dtype == np.int64
    plain = ember_op("ember.max_pool", [x], attrs)[0]
    assert np.array_equal(values, plain)


def test_max_pool_with_indices_hand_computed():
    x = np.array([[1, 5, 2], [5, 0, 9], [3, 4, 9]], np.float32).reshape(1, 1, 3, 3)
    x = np.concatenate([x, x + 100], axis=1)  # channel 1: the same, offset by one plane (9)
    values, idx = ember_op("ember.max_pool_with_indices", [x], {"kernel_shape": [2, 2]})
    assert values[0, 0].tolist() == [[5, 9], [5, 9]]
    # ties keep the first tap in row-major window order: (0,1) over (1,0); (1,2) over (2,2)
    assert idx[0].tolist() == [[[1, 5], [3, 5]], [[10, 14], [12, 14]]]
    _, idx_f = ember_op("ember.max_pool_with_indices", [x], {"kernel_shape": [2, 2], "storage_order": 1})
    # column-major inside the plane: h + w*H
    assert idx_f[0].tolist() == [[[3, 7], [1, 7]], [[12, 16], [10, 16]]]
    # channels-last input: indices still count channels first, so they match after a transpose
    v_last, i_last = ember_op("ember.max_pool_with_indices", [to_last(x)], {"kernel_shape": [2, 2],
                                                                           "layout": "NHWC"})
    assert np.array_equal(to_first(i_last), idx) and np.array_equal(to_first(v_last), values)


def test_max_pool_nan_propagates():
    x = np.array([[1, 2, 3], [4, np.nan, 6], [7, 8, 9]], np.float32).reshape(1, 1, 3, 3)
    got = ember_op("ember.max_pool", [x], {"kernel_shape": [2, 2]})[0]
    assert np.isnan(got).all()
    got = ember_op("ember.max_pool", [x], {"kernel_shape": [1, 2], "strides": [2, 1]})[0]
    assert got[0, 0].tolist() == [[2, 3], [8, 9]]
    x[0, 0, 0, 0] = np.nan
    values, idx = ember_op("ember.max_pool_with_indices", [x], {"kernel_shape": [2, 2]})
    assert np.isnan(values).all()
    assert idx[0, 0].tolist() == [[0, 4], [4, 4]]  # the first NaN in window order


def test_max_pool_padding_only_windows():
    x = np.array([[-5.0]], np.float32).reshape(1, 1, 1, 1)
    got, idx = ember_op("ember.max_pool_with_indices", [x], {"kernel_shape": [1, 1], "pads": [1, 0, 0, 0]})
    # the first row reads only padding: -inf and index -1; padding never beats -5
    assert got[0, 0].tolist() == [[-np.inf], [-5.0]] and idx[0, 0].tolist() == [[-1], [0]]
    got = ember_op("ember.max_pool", [x], {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]})[0]
    assert got[0, 0].tolist() == [[-5, -5], [-5, -5]]
    xi = np.array([-100, -7], np.int8).reshape(1, 1, 2)
    assert ember_op("ember.max_pool", [xi], {"kernel_shape": [2], "pads": [1, 1]})[0].ravel().tolist() == \
        [-100, -7, -7]


def test_avg_pool_count_include_pad_hand_computed():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    excl = ember_op("ember.avg_pool", [x], attrs)[0][0, 0]
    incl = ember_op("ember.avg_pool", [x], attrs | {"count_include_pad": True})[0][0, 0]
    # corner: 1+2+4+5 = 12 over 4 real taps, or over all 9 taps
    assert excl[0, 0] == 3.0 and incl[0, 0] == pytest.approx(12 / 9)
    # edge: 1+2+3+4+5+6 = 21 over 6, or 9; centre: 45 over 9 either way
    assert excl[0, 1] == 3.5 and incl[0, 1] == pytest.approx(21 / 9)
    assert excl[1, 1] == incl[1, 1] == 5.0


def test_avg_pool_ceil_mode_overhang_never_counts():
    x = np.arange(1, 6, dtype=np.float32).reshape(1, 1, 5)
    attrs = {"kernel_shape": [2], "strides": [2], "ceil_mode": True}
    # windows [1,2], [3,4], [5, past-the-end]: the last averages 5 alone either way
    assert ember_op("ember.avg_pool", [x], attrs)[0].ravel().tolist() == [1.5, 3.5, 5.0]
    assert ember_op("ember.avg_pool", [x], attrs | {"count_include_pad": True})[0].ravel().tolist() == [1.5, 3.5, 5.0]
    # with a pad at the end: windows [1,2,3], [3,4,5], [5, pad, past-the-end];
    # the pad counts with count_include_pad, the overhang never does
    attrs = {"kernel_shape": [3], "strides": [2], "pads": [0, 1], "ceil_mode": True}
    assert ember_op("ember.avg_pool", [x], attrs)[0].ravel().tolist() == [2.0, 4.0, 5.0]
    assert ember_op("ember.avg_pool", [x], attrs | {"count_include_pad": True})[0].ravel().tolist() == [2.0, 4.0, 2.5]


def test_pool_ceil_mode_with_dilation_hand_computed():
    """onnx.reference shifts the windows here (it pads the ceil_mode overhang on both sides)."""
    x = np.arange(1, 8, dtype=np.float32).reshape(1, 1, 7)
    attrs = {"kernel_shape": [2], "dilations": [2], "strides": [3], "pads": [1, 0], "ceil_mode": True}
    # windows read positions (-1, 1), (2, 4), (5, 7): a pad, x[1]; x[2], x[4]; x[5], past the end
    assert ember_op("ember.avg_pool", [x], attrs)[0].ravel().tolist() == [2.0, 4.0, 6.0]
    assert ember_op("ember.avg_pool", [x], attrs | {"count_include_pad": True})[0].ravel().tolist() == [1.0, 4.0, 6.0]
    assert ember_op("ember.max_pool", [x], attrs)[0].ravel().tolist() == [2.0, 5.0, 6.0]
    assert ember_op("ember.lp_pool", [x], attrs | {"p": 1})[0].ravel().tolist() == [2.0, 8.0, 6.0]


def test_avg_pool_nan_propagates():
    x = np.array([1, np.nan, 3, 4], np.float32).reshape(1, 1, 4)
    got = ember_op("ember.avg_pool", [x], {"kernel_shape": [2], "strides": [2]})[0]
    assert np.isnan(got[0, 0, 0]) and got[0, 0, 1] == 3.5


def test_lp_pool_hand_computed():
    x = np.array([3, -4, 1, 2, 2], np.float32).reshape(1, 1, 5)
    got = ember_op("ember.lp_pool", [x], {"kernel_shape": [2], "strides": [2], "ceil_mode": True})[0]
    assert got.ravel().tolist() == pytest.approx([5.0, np.sqrt(5.0), 2.0])
    got = ember_op("ember.lp_pool", [x], {"kernel_shape": [3], "p": 1, "pads": [1, 1]})[0]
    assert got.ravel().tolist() == [7, 8, 7, 5, 4]


def test_pool_symbolic_shapes():
    x = ir.f32["N", 64, "H", "W"]
    assert infer("ember.max_pool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]) == \
        "f32[N,64,(H+1)//2,(W+1)//2]"
    assert infer("ember.avg_pool", x, kernel_shape=[2, 2], strides=[2, 2]) == "f32[N,64,H//2,W//2]"
    assert infer("ember.avg_pool", x, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=True) == \
        "f32[N,64,(H+1)//2,(W+1)//2]"
    # a pad at the end as large as the window: the last window may start in it, so min() guards
    assert infer("ember.max_pool", ir.f32[1, 1, "H"], kernel_shape=[2], strides=[2], pads=[0, 2],
                 ceil_mode=True) == "f32[1,1,(H+1)//2]"
    assert infer("ember.max_pool", ir.f32[1, 1, "H"], kernel_shape=[2], strides=[3], pads=[1, 3],
                 ceil_mode=True) == "f32[1,1,min((H+1)//3+2, H//3+1)]"
    assert infer("ember.lp_pool", x, kernel_shape=[3, 3], auto_pad="SAME_LOWER", strides=[2, 2]) == \
        "f32[N,64,(H+1)//2,(W+1)//2]"
    assert infer("ember.max_pool_with_indices", ir.f32["N", "H", "W", 8], kernel_shape=[2, 2], strides=[2, 2],
                 layout="NHWC") == "f32[N,H//2,W//2,8], i64[N,H//2,W//2,8]"


def test_pool_unknown_dims():
    assert infer("ember.avg_pool", ir.f32[None, 3, None, 9], kernel_shape=[2, 2], strides=[2, 2]) == \
        "f32[?,3,?,4]"
    assert infer("ember.global_max_pool", ir.f32[None, 3, None, 9]) == "f32[?,3,1,1]"
    assert infer("ember.depth_to_space", ir.f32[1, None, 2, None], blocksize=2) == "f32[1,?,4,?]"


def test_pool_ceil_mode_static_correction():
    # ceil((5 + 2 - 2)/2) + 1 = 4, but the 4th window would start at 6 >= 5 + 0: dropped
    assert infer("ember.max_pool", ir.f32[1, 1, 5], kernel_shape=[2], strides=[2], pads=[0, 2],
                 ceil_mode=True) == "f32[1,1,3]"
    got = ember_op("ember.max_pool", [np.arange(5, dtype=np.float32).reshape(1, 1, 5)],
                   {"kernel_shape": [2], "strides": [2], "pads": [0, 2], "ceil_mode": True},
                   symbolic={0: (1, 1, "H")})[0]
    assert got.ravel().tolist() == [1, 3, 4]


@pytest.mark.parametrize("op,x,attrs,match", [
    ("ember.max_pool", ir.f32[1, 2, 5, 5], {"kernel_shape": [2]}, "kernel_shape .* expected 2"),
    ("ember.max_pool", ir.f32[1, 2, 5, 5], {"kernel_shape": [2, 0]}, "must be positive"),
    ("ember.avg_pool", ir.f32[1, 2, 5, 5], {"kernel_shape": [2, 2], "pads": [1, 1]}, "pads .* expected 4"),
    ("ember.avg_pool", ir.f32[1, 2, 5, 5], {"kernel_shape": [6, 2]}, "size 5 .* smaller than the window"),
    ("ember.avg_pool", ir.i32[1, 2, 5, 5], {"kernel_shape": [2, 2]}, "must be a float tensor"),
    ("ember.lp_pool", ir.f32[1, 2, 5, 5], {"kernel_shape": [2, 2], "p": 0}, "p 0 must be a positive"),
    ("ember.max_pool", ir.f32[1, 2, 5, 5], {"kernel_shape": [2, 2], "layout": "NDHWC"}, "layout 'NDHWC'"),
    ("ember.max_pool", ir.f32[2, 5], {"kernel_shape": [2]}, "needs rank >= 3"),
    ("ember.max_pool_with_indices", ir.f32[1, 2, 5, 5], {"kernel_shape": [2, 2], "storage_order": 2},
     "storage_order 2"),
    ("ember.max_pool", ir.boolean[1, 2, 5, 5], {"kernel_shape": [2, 2]}, "float or integer tensor"),
])
def test_pool_errors(op, x, attrs, match):
    with pytest.raises(VerifyError, match=match):
        infer(op, x, **attrs)


def test_pool_kernel_shape_is_required():
    with pytest.raises(VerifyError, match="missing required attribute 'kernel_shape'"):
        infer("ember.max_pool", ir.f32[1, 2, 5, 5])


# -- global pooling -----------------------------------------------------------------------------
GLOBAL_OPS = ["ember.global_avg_pool", "ember.global_max_pool", "ember.global_lp_pool"]


def onnx_global(op: str, x: np.ndarray, p: int = 2) -> np.ndarray:
    """ONNX's result for a global pool on channels-first x. onnx.reference has no GlobalLpPool
    and reduces the wrong axes in GlobalMaxPool beyond 2-d, so those use the ops ONNX
    defines them by: LpPool over the whole plane and ReduceMax over the spatial axes."""
    spatial = list(range(2, x.ndim))
    if op == "ember.global_avg_pool":
        return onnx_op("GlobalAveragePool", [x])[0]
    if op == "ember.global_max_pool":
        if x.ndim == 4:
            return onnx_op("GlobalMaxPool", [x])[0]
        return onnx_op("ReduceMax", [x, np.array(spatial, np.int64)], {"keepdims": 1})[0]
    return onnx_op("LpPool", [x], {"kernel_shape": list(x.shape[2:]), "p": p})[0]


@pytest.mark.parametrize("op", GLOBAL_OPS)
@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 3, 4, 5), (1, 2, 2, 3, 4)], ids=["1d", "2d", "3d"])
def test_global_pool_vs_onnx(op, shape):
    x = rand(shape)
    got = ember_op(op, [x])[0]
    assert got.shape == shape[:2] + (1,) * (len(shape) - 2)
    assert_close(got, onnx_global(op, x))
    if op == "ember.global_lp_pool":
        assert_close(ember_op(op, [x], {"p": 3})[0], onnx_global(op, x, p=3))


@pytest.mark.parametrize("op", GLOBAL_OPS)
def test_global_pool_channels_last_and_f16(op):
    x = rand((2, 3, 4, 5))
    assert_close(to_first(ember_op(op, [to_last(x)], {"layout": "NHWC"})[0]), onnx_global(op, x))
    x = rand((1, 3, 4, 5), np.float16)
    got = ember_op(op, [x])[0]
    assert got.dtype == np.float16
    assert_rounded_once(got, onnx_global(op, x.astype(np.float32)))


def test_global_pool_hand_computed():
    x = np.array([[1, -2], [3, np.nan]], np.float32).reshape(1, 1, 2, 2)
    x = np.concatenate([x, np.array([[1, -2], [2, 4]], np.float32).reshape(1, 1, 2, 2)], axis=1)
    assert np.isnan(ember_op("ember.global_max_pool", [x])[0][0, 0]).all()
    assert ember_op("ember.global_max_pool", [x])[0][0, 1].ravel().tolist() == [4]
    assert ember_op("ember.global_avg_pool", [x])[0][0, 1].ravel().tolist() == [1.25]
    assert ember_op("ember.global_lp_pool", [x], {"p": 1})[0][0, 1].ravel().tolist() == [9]
    assert ember_op("ember.global_lp_pool", [x])[0][0, 1].ravel().tolist() == [5]
    xi = np.array([3, -9, 7], np.int32).reshape(1, 1, 3)
    assert ember_op("ember.global_max_pool", [xi])[0].tolist() == [[[7]]]


def test_global_pool_shapes():
    assert infer("ember.global_avg_pool", ir.f32["N", 512, "H", "W"]) == "f32[N,512,1,1]"
    assert infer("ember.global_max_pool", ir.f32["N", "H", "W", 512], layout="NHWC") == "f32[N,1,1,512]"
    assert infer("ember.global_lp_pool", ir.f32["N", "C", 2, 3, 4, 5]) == "f32[N,C,1,1,1,1]"
    with pytest.raises(ShapeError, match="needs rank >= 3"):
        infer("ember.global_avg_pool", ir.f32[2, 3])
    with pytest.raises(ShapeError, match="layout 'NCHW' does not fit a rank-3"):
        infer("ember.global_avg_pool", ir.f32[2, 3, 4], layout="NCHW")
    with pytest.raises(ShapeError, match="p -1 must be a positive"):
        infer("ember.global_lp_pool", ir.f32[2, 3, 4], p=-1)


def test_global_pool_rank_6():
    x = rand((1, 2, 2, 1, 2, 2))
    got = ember_op("ember.global_avg_pool", [x])[0]
    assert_close(got, x.mean(axis=(2, 3, 4, 5), keepdims=True))


# -- depth_to_space / space_to_depth ---------------------------------------------------------------
@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("blocksize,shape", [(2, (1, 8, 2, 3)), (3, (2, 9, 2, 2))])
def test_depth_to_space_vs_onnx(mode, blocksize, shape):
    x = rand(shape)
    check_vs_onnx("ember.depth_to_space", "DepthToSpace", [x], {"blocksize": blocksize, "mode": mode})
    check_channels_last("ember.depth_to_space", "DepthToSpace", x, [], {"blocksize": blocksize, "mode": mode},
                        "NHWC")


@pytest.mark.parametrize("mode,opset", [("DCR", 23), ("CRD", 28)])
def test_space_to_depth_vs_onnx(mode, opset):
    x = rand((2, 3, 4, 6))
    attrs = {"blocksize": 2} | ({"mode": mode} if mode == "CRD" else {})
    check_vs_onnx("ember.space_to_depth", "SpaceToDepth", [x], attrs, opset=opset)
    check_channels_last("ember.space_to_depth", "SpaceToDepth", x, [], attrs, "NHWC", opset=opset)


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float16])
def test_depth_space_dtypes_and_inverse(dtype):
    x = rand((1, 8, 2, 3), dtype)
    for mode in ("DCR", "CRD"):
        y = ember_op("ember.depth_to_space", [x], {"blocksize": 2, "mode": mode})[0]
        assert y.dtype == x.dtype and y.shape == (1, 2, 4, 6)
        back = ember_op("ember.space_to_depth", [y], {"blocksize": 2, "mode": mode})[0]
        assert np.array_equal(back, x)


def test_depth_to_space_hand_computed():
    x = np.arange(8).reshape(1, 8, 1, 1).astype(np.float32)
    dcr = ember_op("ember.depth_to_space", [x], {"blocksize": 2})[0]
    # DCR: channel (i*2 + j)*2 + c lands at [c, i, j]
    assert dcr[0].tolist() == [[[0, 2], [4, 6]], [[1, 3], [5, 7]]]
    crd = ember_op("ember.depth_to_space", [x], {"blocksize": 2, "mode": "CRD"})[0]
    # CRD (PixelShuffle): channel c*4 + i*2 + j lands at [c, i, j]
    assert crd[0].tolist() == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    x_last = np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1)  # NHWC, one channel
    s2d = ember_op("ember.space_to_depth", [x_last], {"blocksize": 2, "layout": "NHWC"})[0]
    assert s2d.tolist() == [[[[0, 1, 2, 3]]]]


def test_depth_space_shapes_and_errors():
    assert infer("ember.depth_to_space", ir.f32["N", "C", "H", "W"], blocksize=2) == "f32[N,C//4,2*H,2*W]"
    assert infer("ember.depth_to_space", ir.f32["N", "H", "W", 32], blocksize=4, layout="NHWC") == \
        "f32[N,4*H,4*W,2]"
    assert infer("ember.space_to_depth", ir.f32["N", 3, "H", 8], blocksize=2) == "f32[N,12,H//2,4]"
    assert infer("ember.space_to_depth", ir.f32[1, 4, 6, 3], blocksize=2, layout="NHWC") == "f32[1,2,3,12]"
    with pytest.raises(ShapeError, match="channels 6 is not a multiple of 4"):
        infer("ember.depth_to_space", ir.f32[1, 6, 2, 2], blocksize=2)
    with pytest.raises(ShapeError, match="width 5 is not a multiple of 2"):
        infer("ember.space_to_depth", ir.f32[1, 3, 4, 5], blocksize=2)
    with pytest.raises(ShapeError, match="must have rank 4"):
        infer("ember.depth_to_space", ir.f32[1, 8, 2], blocksize=2)
    with pytest.raises(ShapeError, match="blocksize 0 must be positive"):
        infer("ember.space_to_depth", ir.f32[1, 3, 4, 4], blocksize=0)
    with pytest.raises(ShapeError, match="layout 'NWHC'"):
        infer("ember.space_to_depth", ir.f32[1, 3, 4, 4], blocksize=2, layout="NWHC")
    with pytest.raises(VerifyError, match="expected one of 'DCR', 'CRD'"):
        infer("ember.depth_to_space", ir.f32[1, 8, 2, 2], blocksize=2, mode="RDC")


# -- layouts -----------------------------------------------------------------------------------------
def test_layout_helpers():
    from ember.ir import layout as L
    nhwc = L.Layout("NHWC")
    assert nhwc.channel_axis == 3 and nhwc.spatial == "HW" and nhwc.spatial_axes == (1, 2)
    assert nhwc.to_channels_first == (0, 3, 1, 2) and nhwc.from_channels_first == (0, 2, 3, 1)
    generic = L.resolve(None, 6)
    assert generic.letters == "NCSSSS" and generic.spatial_axes == (2, 3, 4, 5) and generic.channel_axis == 1
    assert L.resolve("NDHWC", 5).to_channels_first == (0, 4, 1, 2, 3)
    hwio = L.resolve_weight("HWIO", "HW")
    assert hwio.perm("OI", "HW") == (3, 2, 0, 1) and hwio.out_axis == 3 and hwio.in_axis == 2
    assert L.resolve_weight(None, "SSSS", "IO").perm("IO", "SSSS") == (0, 1, 2, 3, 4, 5)
    assert L.inverse((2, 0, 1)) == (1, 2, 0)


# -- traits ------------------------------------------------------------------------------------------
def test_traits():
    from ember.ir.opdef import Heavy, LayoutSensitive, Pure
    for name in ("ember.conv", "ember.conv_transpose"):
        assert {Pure, Heavy, LayoutSensitive} <= ir.lookup(name).traits
    for name in ("ember.max_pool", "ember.max_pool_with_indices", "ember.avg_pool", "ember.lp_pool",
                 "ember.global_avg_pool", "ember.global_max_pool", "ember.global_lp_pool",
                 "ember.depth_to_space", "ember.space_to_depth"):
        assert {Pure, LayoutSensitive} <= ir.lookup(name).traits
        assert Heavy not in ir.lookup(name).traits


# -- conv_integer -------------------------------------------------------------------------------
CONV_INT = [
    pytest.param({}, id="plain"),
    pytest.param({"pads": [1, 1, 1, 1], "strides": [2, 2]}, id="pads-strides"),
    pytest.param({"dilations": [2, 1], "pads": [0, 1, 2, 1]}, id="dilations"),
    pytest.param({"auto_pad": "SAME_LOWER", "strides": [2, 1]}, id="same-lower"),
    pytest.param({"group": 2}, id="groups"),
]


@pytest.mark.parametrize("attrs", CONV_INT)
@pytest.mark.parametrize("x_dtype,w_dtype", [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)],
                         ids=["u8-u8", "u8-i8", "i8-i8"])
def test_conv_integer_vs_onnx(attrs, x_dtype, w_dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(0 if x_dtype == np.uint8 else -128, 128, (1, 4, 5, 5)).astype(x_dtype)
    w = rng.integers(0 if w_dtype == np.uint8 else -128, 128, (4, 4 // attrs.get("group", 1), 3, 3)).astype(w_dtype)
    xz, wz = np.array(7, x_dtype), np.array(3, w_dtype)
    got = check_vs_onnx("ember.conv_integer", "ConvInteger", [x, w, xz, wz], attrs)[0]
    assert got.dtype == np.int32


def test_conv_integer_per_channel_w_zero_point_and_absent_x_zero_point():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (2, 3, 4, 4)).astype(np.uint8)
    w = rng.integers(-128, 127, (5, 3, 2, 2)).astype(np.int8)
    wz = rng.integers(-5, 5, (5,)).astype(np.int8)
    got = ember_op("ember.conv_integer", [x, w, None, wz], {"pads": [1, 0, 0, 1]})[0]
    # the same sums in float64, which is exact here
    want = ember_op("ember.conv", [x.astype(np.float64), (w.astype(np.float64) - wz.reshape(5, 1, 1, 1)), None],
                    {"pads": [1, 0, 0, 1]})[0]
    assert np.array_equal(got, want.astype(np.int32))


def test_conv_integer_hand_computed_padding_reads_zero_point():
    # x - 2 = [[1, 2], [3, 4]]; a 2x2 window of ones over it padded by one at the top-left:
    # the padding adds nothing (it stands for the zero point).
    x = np.array([[[[3, 4], [5, 6]]]], np.uint8)
    w = np.ones((1, 1, 2, 2), np.uint8)
    got = ember_op("ember.conv_integer", [x, w, np.array(2, np.uint8), None], {"pads": [1, 1, 0, 0]})[0]
    assert got.tolist() == [[[[1, 3], [4, 10]]]]


def test_conv_integer_channels_last():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 255, (1, 2, 4, 5)).astype(np.uint8)
    w = rng.integers(0, 255, (3, 2, 3, 2)).astype(np.uint8)
    got = ember_op("ember.conv_integer", [to_last(x), np.transpose(w, (0, 2, 3, 1)), None, None],
                   {"layout": "NHWC", "weight_layout": "OHWI", "pads": [1, 0, 1, 1]})[0]
    want = onnx_op("ConvInteger", [x, w], {"pads": [1, 0, 1, 1]})[0]
    assert np.array_equal(to_first(got), want)


def test_conv_integer_symbolic_shape():
    assert infer("ember.conv_integer", ir.u8["N", 3, "H", "W"], ir.i8[8, 3, 3, 3], None, ir.i8[8],
                 strides=[2, 2], pads=[1, 1, 1, 1]) == "i32[N,8,(H+1)//2,(W+1)//2]"


@pytest.mark.parametrize("types,attrs,match", [
    ((ir.f32[1, 3, 4, 4], ir.i8[2, 3, 1, 1], None, None), {}, "must be a integer tensor"),
    ((ir.i32[1, 3, 4, 4], ir.i8[2, 3, 1, 1], None, None), {}, "must be i8 or u8"),
    ((ir.u8[1, 3, 4, 4], ir.i8[2, 3, 1, 1], ir.i8[()], None), {}, "x_zero_point .* element type"),
    ((ir.u8[1, 3, 4, 4], ir.i8[2, 3, 1, 1], ir.u8[3], None), {}, "x_zero_point .* must be a scalar"),
    ((ir.u8[1, 3, 4, 4], ir.i8[2, 3, 1, 1], None, ir.i8[3]), {}, "one value per output channel"),
    ((ir.u8[1, 4, 4, 4], ir.i8[2, 3, 1, 1], None, None), {}, "4 input channels"),
])
def test_conv_integer_errors(types, attrs, match):
    with pytest.raises(ShapeError, match=match):
        infer("ember.conv_integer", *types, **attrs)


# -- max_unpool ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,attrs", [
    ((1, 2, 4, 6), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 1, 5, 5), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 3, 8), {"kernel_shape": [2], "strides": [2]}),
    ((1, 1, 4, 4, 4), {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]}),
])
def test_max_unpool_inverts_max_pool_vs_onnx(shape, attrs):
    x = rand(shape)
    pooled, idx = ember_op("ember.max_pool_with_indices", [x], attrs)
    check_vs_onnx("ember.max_unpool", "MaxUnpool", [pooled, idx], attrs)


def test_max_unpool_hand_computed_and_output_shape():
    x = np.array([[[[1, 2], [3, 4]]]], np.float32)
    idx = np.array([[[[5, 7], [13, 15]]]], np.int64)
    got = ember_op("ember.max_unpool", [x, idx], {"kernel_shape": [2, 2], "strides": [2, 2]})[0]
    assert got.tolist() == [[[[0, 0, 0, 0], [0, 1, 0, 2], [0, 0, 0, 0], [0, 3, 0, 4]]]]
    # output_shape: the indices address the 5x5 output (PyTorch's and onnxruntime's reading)
    got = ember_op("ember.max_unpool", [x, idx], {"kernel_shape": [2, 2], "strides": [2, 2],
                                                  "output_shape": [5, 5]})[0]
    want = np.zeros(25, np.float32)
    want[[5, 7, 13, 15]] = [1, 2, 3, 4]
    assert got.ravel().tolist() == want.tolist()


def test_max_unpool_channels_last_uses_channels_first_indices():
    x = rand((1, 2, 4, 4))
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2]}
    pooled, idx = ember_op("ember.max_pool_with_indices", [x], attrs)
    want = ember_op("ember.max_unpool", [pooled, idx], attrs)[0]
    got = ember_op("ember.max_unpool", [to_last(pooled), to_last(idx)], attrs | {"layout": "NHWC"})[0]
    assert_close(to_first(got), want)


def test_max_unpool_integers_and_duplicate_indices():
    x = np.array([[[5, 9]]], np.int32)
    idx = np.array([[[1, 1]]], np.int64)
    got = ember_op("ember.max_unpool", [x, idx], {"kernel_shape": [2], "strides": [2]})[0]
    assert got.tolist() == [[[0, 9, 0, 0]]]  # the later element wins


def test_max_unpool_index_out_of_range_raises():
    x, idx = np.ones((1, 1, 1, 1), np.float32), np.array([[[[4]]]], np.int64)
    with pytest.raises(Exception, match="indices range over"):
        ember_op("ember.max_unpool", [x, idx], {"kernel_shape": [2, 2], "strides": [2, 2]})


def test_max_unpool_symbolic_shapes():
    assert infer("ember.max_unpool", ir.f32["N", 8, "H", "W"], ir.i64["N", 8, "H", "W"],
                 kernel_shape=[2, 2], strides=[2, 2]) == "f32[N,8,2*H,2*W]"
    assert infer("ember.max_unpool", ir.f32["N", 8, "H", "W"], ir.i64["N", 8, "H", "W"],
                 kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], output_shape=["A", 9],
                 layout=None) == "f32[N,8,A,9]"
    assert infer("ember.max_unpool", ir.f32["N", "H", "W", 8], ir.i64["N", "H", "W", 8],
                 kernel_shape=[2, 2], strides=[2, 2], layout="NHWC") == "f32[N,2*H,2*W,8]"


@pytest.mark.parametrize("types,attrs,match", [
    ((ir.f32[1, 1, 2, 2], ir.i32[1, 1, 2, 2]), {"kernel_shape": [2, 2]}, "must be i64"),
    ((ir.f32[1, 1, 2, 2], ir.i64[1, 1, 2, 3]), {"kernel_shape": [2, 2]}, "shape of x"),
    ((ir.f32[1, 1, 2, 2], ir.i64[1, 1, 2, 2]), {"kernel_shape": [2]}, "expected 2"),
    ((ir.f32[1, 1, 2, 2], ir.i64[1, 1, 2, 2]), {"kernel_shape": [2, 2], "output_shape": [4]},
     "output_shape .* expected 2"),
    ((ir.f32[1, 1, 1, 1], ir.i64[1, 1, 1, 1]), {"kernel_shape": [1, 1], "pads": [1, 1, 1, 1]}, "crop"),
])
def test_max_unpool_errors(types, attrs, match):
    with pytest.raises(ShapeError, match=match):
        infer("ember.max_unpool", *types, **attrs)
