"""Vision ops (deform_conv, grid_sample, roi_align, nms, col2im) against onnx.reference,
hand-computed cases, symbolic shapes and errors.

Channels-last layouts are checked by transposing inputs to ONNX's channels-first order
and the ONNX result back.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle import assert_close, check_vs_onnx, ember_op, rand

from ember import ir
from ember.errors import ShapeError


def to_last(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (0, *range(2, a.ndim), 1))


def to_first(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (0, a.ndim - 1, *range(1, a.ndim - 1)))


def infer(op: str, *types: ir.Type | None, **attrs) -> str:
    b = ir.Builder()
    args = [b.input(f"in{i}", t) if t is not None else None for i, t in enumerate(types)]
    out = b.op(op, *args, **attrs)
    return ", ".join(str(r.type) for r in ([out] if isinstance(out, ir.Value) else out))


# -- deform_conv ------------------------------------------------------------------------------
DEFORM = [
    pytest.param({}, {}, id="plain"),
    pytest.param({"pads": [1, 1, 1, 1]}, {}, id="pads"),
    pytest.param({"strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 1, 2]}, {}, id="strides-dilations"),
    pytest.param({"group": 2}, {}, id="groups"),
    pytest.param({"offset_group": 2}, {}, id="offset-groups"),
    pytest.param({"pads": [1, 1, 1, 1]}, {"mask": True, "bias": True}, id="mask-bias"),
]


def deform_inputs(attrs: dict, extra: dict, rng: np.random.Generator, dtype=np.float32):
    group, og = attrs.get("group", 1), attrs.get("offset_group", 1)
    x = rng.uniform(-2, 2, (2, 4, 5, 6)).astype(dtype)
    w = rng.uniform(-1, 1, (6, 4 // group, 2, 3)).astype(dtype)
    out = ember_op("ember.conv", [x.astype(np.float32), w.astype(np.float32), None],
                   {k: v for k, v in attrs.items() if k != "offset_group"})[0].shape[2:]
    offset = rng.uniform(-1.5, 1.5, (2, og * 6 * 2, *out)).astype(dtype)
    bias = rng.uniform(-1, 1, (6,)).astype(dtype) if extra.get("bias") else None
    mask = rng.uniform(0, 1, (2, og * 6, *out)).astype(dtype) if extra.get("mask") else None
    return x, w, offset, bias, mask


@pytest.mark.parametrize("attrs,extra", DEFORM)
def test_deform_conv_vs_onnx(attrs, extra):
    inputs = deform_inputs(attrs, extra, np.random.default_rng(0))
    check_vs_onnx("ember.deform_conv", "DeformConv", list(inputs), attrs, opset=22)


def test_deform_conv_zero_offsets_is_conv():
    rng = np.random.default_rng(1)
    x, w = rand((1, 3, 6, 6), rng=rng), rand((4, 3, 3, 3), rng=rng)
    attrs = {"pads": [1, 1, 1, 1], "strides": [2, 2]}
    offset = np.zeros((1, 18, 3, 3), np.float32)
    got = ember_op("ember.deform_conv", [x, w, offset, None, None], attrs)[0]
    assert_close(got, ember_op("ember.conv", [x, w, None], attrs)[0])


def test_deform_conv_hand_computed_half_pixel_shift():
    # a 1x1 filter of 2 reading x shifted right by half a pixel: the average of neighbours;
    # the last column's right neighbour is outside and reads 0.
    x = np.array([[[[0, 2, 4]]]], np.float32)
    w = np.full((1, 1, 1, 1), 2, np.float32)
    offset = np.zeros((1, 2, 1, 3), np.float32)
    offset[0, 1] = 0.5
    mask = np.array([[[[1, 1, 0.5]]]], np.float32)
    got = ember_op("ember.deform_conv", [x, w, offset, None, mask], {})[0]
    assert_close(got, np.array([[[[2, 6, 2]]]], np.float32))


def test_deform_conv_1d_and_channels_last():
    rng = np.random.default_rng(2)
    x, w = rand((1, 2, 7), rng=rng), rand((3, 2, 3), rng=rng)
    offset = rng.uniform(-2, 2, (1, 3, 5)).astype(np.float32)
    # 1-d equals 2-d with a height of one and zero vertical offsets
    off2 = np.stack([np.zeros_like(offset), offset], axis=2).reshape(1, 6, 1, 5)
    want = ember_op("ember.deform_conv", [x[:, :, None], w[:, :, None], off2, None, None], {})[0][:, :, 0]
    got = ember_op("ember.deform_conv", [x, w, offset, None, None], {})[0]
    assert_close(got, want)
    x4, w4 = rand((1, 2, 4, 5), rng=rng), rand((3, 2, 2, 2), rng=rng)
    off4 = rng.uniform(-1, 1, (1, 8, 3, 4)).astype(np.float32)
    want = ember_op("ember.deform_conv", [x4, w4, off4, None, None], {})[0]
    got = ember_op("ember.deform_conv", [to_last(x4), np.transpose(w4, (0, 2, 3, 1)), to_last(off4), None, None],
                   {"layout": "NHWC", "weight_layout": "OHWI"})[0]
    assert_close(to_first(got), want)


def test_deform_conv_f16_vs_f32():
    rng = np.random.default_rng(3)
    x, w, offset, bias, mask = deform_inputs({}, {"mask": True, "bias": True}, rng, np.float16)
    got = ember_op("ember.deform_conv", [x, w, offset, bias, mask], {})[0]
    want = ember_op("ember.deform_conv", [a.astype(np.float32) for a in (x, w, offset, bias, mask)], {})[0]
    assert got.dtype == np.float16
    assert_close(got, want.astype(np.float16))


def test_deform_conv_symbolic_shape():
    got = infer("ember.deform_conv", ir.f32["N", 4, "H", "W"], ir.f32[8, 4, 3, 3],
                ir.f32["N", 18, "H", "W"], ir.f32[8], None, pads=[1, 1, 1, 1])
    assert got == "f32[N,8,H,W]"


@pytest.mark.parametrize("types,attrs,match", [
    ((ir.f32[1, 4, 5, 5], ir.f32[8, 4, 3, 3], ir.f32[1, 17, 3, 3], None, None), {}, "offset .* must have shape"),
    ((ir.f32[1, 4, 5, 5], ir.f32[8, 4, 3, 3], ir.f32[1, 18, 3, 3], None, ir.f32[1, 18, 3, 3]), {},
     "mask .* must have shape"),
    ((ir.f32[1, 4, 5, 5], ir.f32[8, 4, 3, 3], ir.f32[1, 18, 3, 3], None, None), {"offset_group": 3},
     "offset groups"),
    ((ir.f32[1, 4, 5, 5], ir.f32[8, 2, 3, 3], ir.f32[1, 18, 3, 3], None, None), {}, "4 input channels"),
    ((ir.f32[1, 4, 5, 5], ir.f32[8, 4, 3, 3], ir.f16[1, 18, 3, 3], None, None), {}, "share an element type"),
])
def test_deform_conv_errors(types, attrs, match):
    with pytest.raises(ShapeError, match=match):
        infer("ember.deform_conv", *types, **attrs)


# -- grid_sample --------------------------------------------------------------------------------
# cubic with border padding is checked by hand below: onnx.reference clamps cubic's position
GRID_2D = [(m, p, a) for m in ("linear", "nearest", "cubic") for p in ("zeros", "border", "reflection")
           for a in (0, 1) if (m, p) != ("cubic", "border")]


@pytest.mark.parametrize("mode,padding_mode,align_corners", GRID_2D)
def test_grid_sample_2d_vs_onnx(mode, padding_mode, align_corners):
    rng = np.random.default_rng(4)
    x = rand((1, 2, 4, 5), rng=rng)
    grid = rng.uniform(-1.4, 1.4, (1, 3, 4, 2)).astype(np.float32)
    attrs = {"mode": mode, "padding_mode": padding_mode, "align_corners": bool(align_corners)}
    check_vs_onnx("ember.grid_sample", "GridSample", [x, grid], attrs, attrs | {"align_corners": align_corners},
                  opset=22)


@pytest.mark.parametrize("mode", ["linear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])
def test_grid_sample_3d_vs_onnx(mode, padding_mode):
    rng = np.random.default_rng(5)
    x = rand((1, 2, 3, 4, 3), rng=rng)
    grid = rng.uniform(-1.3, 1.3, (1, 2, 2, 3, 3)).astype(np.float32)
    attrs = {"mode": mode, "padding_mode": padding_mode}
    check_vs_onnx("ember.grid_sample", "GridSample", [x, grid], attrs, opset=22)


def test_grid_sample_hand_computed():
    x = np.array([[[[1, 2], [3, 4]]]], np.float32)
    # centre of the image, the top-left corner (-1, -1), and beyond the right edge
    grid = np.array([[[[0, 0], [-1, -1], [2, 0]]]], np.float32)
    linear = ember_op("ember.grid_sample", [x, grid], {"align_corners": True})[0]
    assert_close(linear, np.array([[[[2.5, 1, 1.5]]]], np.float32))  # half of x = 1.5 is padding
    border = ember_op("ember.grid_sample", [x, grid], {"align_corners": True, "padding_mode": "border"})[0]
    assert_close(border, np.array([[[[2.5, 1, 3]]]], np.float32))
    # without align_corners, -1 is the outer edge of the first pixel: half of it is padding
    corner = ember_op("ember.grid_sample", [x, grid[:, :, 1:2]], {})[0]
    assert_close(corner, np.array([[[[0.25]]]], np.float32))
    # nearest rounds half to even: x = 0.5 -> 0
    near = ember_op("ember.grid_sample", [x, np.array([[[[0, -1]]]], np.float32)],
                    {"mode": "nearest", "align_corners": True})[0]
    assert near.tolist() == [[[[1]]]]


def test_grid_sample_cubic_border_clamps_taps():
    # p = (-4/3 + 1) / 2 * 3 = -0.5 with align_corners: taps -2..1 read x[0], x[0], x[0], x[1]
    # with Keys weights K(1.5), K(0.5), K(0.5), K(1.5); K(1.5) = -0.09375 at a = -0.75. PyTorch and
    # onnxruntime agree; onnx.reference would clamp p to 0 first and give x[0] = 0.
    x = np.array([[[0, 10, 20, 30]]], np.float32)
    got = ember_op("ember.grid_sample", [x, np.array([[[-4 / 3]]], np.float32)],
                   {"mode": "cubic", "padding_mode": "border", "align_corners": True})[0]
    assert_close(got, np.array([[[-0.9375]]], np.float32), atol=1e-5)


def test_grid_sample_channels_last_f16_and_1d():
    rng = np.random.default_rng(6)
    x = rand((2, 3, 4, 4), rng=rng)
    grid = rng.uniform(-1, 1, (2, 2, 3, 2)).astype(np.float32)
    want = ember_op("ember.grid_sample", [x, grid], {"mode": "cubic"})[0]
    got = ember_op("ember.grid_sample", [to_last(x), grid], {"mode": "cubic", "layout": "NHWC"})[0]
    assert_close(to_first(got), want)
    half = ember_op("ember.grid_sample", [x.astype(np.float16), grid.astype(np.float16)], {"mode": "cubic"})[0]
    assert half.dtype == np.float16
    assert_close(half, want.astype(np.float16))
    x1 = np.array([[[0, 10, 20]]], np.float32)
    got = ember_op("ember.grid_sample", [x1, np.array([[[-0.5], [0.25]]], np.float32)], {"align_corners": True})[0]
    assert_close(got, np.array([[[5, 12.5]]], np.float32))


def test_grid_sample_shapes():
    assert infer("ember.grid_sample", ir.f32["N", 3, "H", "W"], ir.f32["N", "A", "B", 2]) == "f32[N,3,A,B]"
    assert infer("ember.grid_sample", ir.f32["N", "H", "W", 3], ir.f32["N", 7, 9, 2],
                 layout="NHWC") == "f32[N,7,9,3]"
    with pytest.raises(ShapeError, match="grid .* must be"):
        infer("ember.grid_sample", ir.f32[1, 3, 4, 4], ir.f32[1, 2, 2, 3])
    with pytest.raises(ShapeError, match="batch"):
        infer("ember.grid_sample", ir.f32[1, 3, 4, 4], ir.f32[2, 2, 2, 2])


# -- roi_align ----------------------------------------------------------------------------------
ROIS = np.array([[0.5, 0.3, 6.2, 5.1], [1, 1, 3, 2], [-1, -2, 9, 11], [4.2, 3.3, 4.4, 3.6]], np.float32)


@pytest.mark.parametrize("attrs", [
    pytest.param({}, id="defaults"),
    pytest.param({"output_height": 3, "output_width": 2, "sampling_ratio": 2}, id="fixed-ratio"),
    pytest.param({"output_height": 2, "output_width": 3, "spatial_scale": 0.5}, id="adaptive-scaled"),
    pytest.param({"output_height": 2, "output_width": 2, "mode": "max"}, id="max"),
    pytest.param({"output_height": 3, "output_width": 3, "coordinate_transformation_mode": "output_half_pixel"},
                 id="output-half-pixel"),
    pytest.param({"output_height": 2, "output_width": 2, "mode": "max", "sampling_ratio": 1,
                  "coordinate_transformation_mode": "output_half_pixel"}, id="max-output-half-pixel"),
])
def test_roi_align_vs_onnx(attrs):
    x = rand((2, 3, 8, 7), rng=np.random.default_rng(7))
    idx = np.array([0, 1, 1, 0], np.int64)
    check_vs_onnx("ember.roi_align", "RoiAlign", [x, ROIS, idx], attrs, opset=22)


def test_roi_align_hand_computed():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    # half_pixel: the box [1, 1, 3, 3] covers pixel centres 0.5 .. 2.5; one sample per bin at the
    # bin centre 1.5 -> bilinear (1.5, 1.5) = 7.5
    got = ember_op("ember.roi_align", [x, np.array([[1, 1, 3, 3]], np.float32), np.array([0], np.int64)],
                   {"sampling_ratio": 1})[0]
    assert_close(got, np.array([[[[7.5]]]], np.float32))
    # a 2x2 output of the whole image, output_half_pixel: bin centres at 1 and 3
    got = ember_op("ember.roi_align", [x, np.array([[0, 0, 4, 4]], np.float32), np.array([0], np.int64)],
                   {"sampling_ratio": 1, "output_height": 2, "output_width": 2,
                    "coordinate_transformation_mode": "output_half_pixel"})[0]
    assert_close(got, np.array([[[[5, 7], [13, 15]]]], np.float32))


def test_roi_align_channels_last_and_shapes():
    x = rand((1, 3, 6, 6))
    rois, idx = ROIS[:2], np.array([0, 0], np.int64)
    attrs = {"output_height": 2, "output_width": 3}
    want = ember_op("ember.roi_align", [x, rois, idx], attrs)[0]
    got = ember_op("ember.roi_align", [to_last(x), rois, idx], attrs | {"layout": "NHWC"})[0]
    assert_close(to_first(got), want)
    assert infer("ember.roi_align", ir.f32["N", 256, "H", "W"], ir.f32["R", 4], ir.i64["R"],
                 output_height=7, output_width=7) == "f32[R,256,7,7]"


@pytest.mark.parametrize("types,attrs,match", [
    ((ir.f32[1, 3, 4, 4, 4], ir.f32[2, 4], ir.i64[2]), {}, "rank 4"),
    ((ir.f32[1, 3, 4, 4], ir.f32[2, 5], ir.i64[2]), {}, r"rois .* \(num_rois, 4\)"),
    ((ir.f32[1, 3, 4, 4], ir.f32[2, 4], ir.i64[3]), {}, "one index per RoI"),
    ((ir.f32[1, 3, 4, 4], ir.f32[2, 4], ir.i64[2]), {"output_height": 0}, "must be positive"),
    ((ir.f32[1, 3, 4, 4], ir.f32[2, 4], ir.i64[2]), {"sampling_ratio": -1}, "sampling_ratio"),
])
def test_roi_align_errors(types, attrs, match):
    with pytest.raises(ShapeError, match=match):
        infer("ember.roi_align", *types, **attrs)


def test_roi_align_bad_batch_index_raises():
    with pytest.raises(Exception, match="batch index 3"):
        ember_op("ember.roi_align", [rand((1, 1, 4, 4)), ROIS[:1], np.array([3], np.int64)], {})


# -- nms ----------------------------------------------------------------------------------------
BOXES = np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, -0.1, 1, 0.9], [0, 10, 1, 11], [0, 10.1, 1, 11.1],
                   [0, 100, 1, 101]]], np.float32)
SCORES = np.array([[[0.9, 0.75, 0.6, 0.95, 0.5, 0.3]]], np.float32)


@pytest.mark.parametrize("attrs", [
    pytest.param({"max_output_boxes_per_class": 3, "iou_threshold": 0.5}, id="limit"),
    pytest.param({"max_output_boxes_per_class": 10, "iou_threshold": 0.5, "score_threshold": 0.4}, id="score"),
    pytest.param({"max_output_boxes_per_class": 10, "iou_threshold": 0.0}, id="iou-zero"),
    pytest.param({"max_output_boxes_per_class": 0}, id="none"),
])
def test_nms_vs_onnx(attrs):
    onnx_inputs = [BOXES, SCORES, np.array([attrs["max_output_boxes_per_class"]], np.int64),
                   np.array([attrs.get("iou_threshold", 0.0)], np.float32)]
    if "score_threshold" in attrs:
        onnx_inputs.append(np.array([attrs["score_threshold"]], np.float32))
    check_vs_onnx("ember.nms", "NonMaxSuppression", [BOXES, SCORES], attrs, {}, onnx_inputs=onnx_inputs)


def test_nms_two_batches_two_classes_center_boxes_vs_onnx():
    rng = np.random.default_rng(8)
    centers = rng.uniform(0, 4, (2, 12, 2))
    sizes = rng.uniform(0.5, 2, (2, 12, 2))
    boxes = np.concatenate([centers, sizes], axis=2).astype(np.float32)
    scores = rng.uniform(0, 1, (2, 3, 12)).astype(np.float32)
    attrs = {"max_output_boxes_per_class": 4, "iou_threshold": 0.3, "score_threshold": 0.2,
             "center_point_box": True}
    onnx_inputs = [boxes, scores, np.array([4], np.int64), np.array([0.3], np.float32), np.array([0.2], np.float32)]
    got = check_vs_onnx("ember.nms", "NonMaxSuppression", [boxes, scores], attrs, {"center_point_box": 1},
                        onnx_inputs=onnx_inputs)[0]
    assert got.shape[0] > 6


def test_nms_hand_computed():
    got = ember_op("ember.nms", [BOXES, SCORES], {"max_output_boxes_per_class": 3, "iou_threshold": 0.5})[0]
    assert got.tolist() == [[0, 0, 3], [0, 0, 0], [0, 0, 5]]
    # flipped corners are the same boxes; equal scores keep the lower index first
    flipped = BOXES[:, :, [2, 3, 0, 1]]
    ties = np.full_like(SCORES, 0.5)
    got = ember_op("ember.nms", [flipped, ties], {"max_output_boxes_per_class": 6, "iou_threshold": 0.5})[0]
    assert got[:, 2].tolist() == [0, 3, 5]
    # IoU exactly at the threshold does not suppress (strictly greater)
    two = np.array([[[0, 0, 1, 1], [0, 0, 1, 0.5]]], np.float32)
    got = ember_op("ember.nms", [two, np.array([[[0.9, 0.8]]], np.float32)],
                   {"max_output_boxes_per_class": 2, "iou_threshold": 0.5})[0]
    assert got[:, 2].tolist() == [0, 1]


def test_nms_shapes_and_errors():
    assert infer("ember.nms", ir.f32["B", "M", 4], ir.f32["B", 80, "M"],
                 max_output_boxes_per_class=100) == "i64[?<=80*B*min(100, M),3]"
    assert infer("ember.nms", ir.f32[2, 50, 4], ir.f32[2, 3, 50], max_output_boxes_per_class=10) == "i64[?<=60,3]"
    assert infer("ember.nms", ir.f32[2, 50, 4], ir.f32[2, 3, 50]) == "i64[0,3]"
    with pytest.raises(ShapeError, match=r"boxes .* \(batch, boxes, 4\)"):
        infer("ember.nms", ir.f32[1, 5, 5], ir.f32[1, 1, 5])
    with pytest.raises(ShapeError, match="scores .* must be"):
        infer("ember.nms", ir.f32[1, 5, 4], ir.f32[1, 1, 6])
    with pytest.raises(ShapeError, match=r"iou_threshold 1.5 must be in \[0, 1\]"):
        infer("ember.nms", ir.f32[1, 5, 4], ir.f32[1, 1, 5], iou_threshold=1.5)



@pytest.mark.parametrize("attrs", [
    pytest.param({"max_output_boxes_per_class": 3, "iou_threshold": 0.5}, id="limit"),
    pytest.param({"max_output_boxes_per_class": 10, "iou_threshold": 0.5, "score_threshold": 0.96}, id="none-kept"),
    pytest.param({"max_output_boxes_per_class": 0}, id="zero-limit"),
])
def test_nms_padded_is_nms_then_padding(attrs):
    """The rows and count of nms_padded, and ember.head of them, are ember.nms's result."""
    want = ember_op("ember.nms", [BOXES, SCORES], attrs)[0]
    rows, count = ember_op("ember.nms_padded", [BOXES, SCORES], attrs)
    bound = min(6, attrs["max_output_boxes_per_class"])
    assert rows.shape == (bound, 3) and rows.dtype == np.int64 and count.shape == () and count == len(want)
    assert np.array_equal(rows[:len(want)], want) and (rows[len(want):] == -1).all()
    assert np.array_equal(ember_op("ember.head", [rows, count])[0], want)


def test_nms_padded_and_head_shapes():
    assert infer("ember.nms_padded", ir.f32["B", "M", 4], ir.f32["B", 80, "M"],
                 max_output_boxes_per_class=100) == "i64[80*B*min(100, M),3], i64[]"
    assert infer("ember.head", ir.i64[6, 3], ir.i64[()]) == "i64[?<=6,3]"
    assert infer("ember.head", ir.f32[2, "N"], ir.i64[()], axis=-1) == "f32[2,?<=N]"
    with pytest.raises(ShapeError, match="count must be a scalar"):
        infer("ember.head", ir.i64[6, 3], ir.i64[1])
    # a count past either end clamps
    x = np.arange(12).reshape(4, 3)
    assert ember_op("ember.head", [x, np.array(9)])[0].shape == (4, 3)
    assert ember_op("ember.head", [x, np.array(-2)])[0].shape == (0, 3)

# -- col2im -------------------------------------------------------------------------------------
@pytest.mark.parametrize("image,block,attrs", [
    pytest.param([5, 5], [2, 2], {}, id="plain"),
    pytest.param([5, 6], [2, 3], {"strides": [2, 1], "pads": [1, 0, 1, 2]}, id="strides-pads"),
    pytest.param([6, 6], [2, 2], {"dilations": [2, 2]}, id="dilations"),
    pytest.param([3, 4, 3], [2, 2, 2], {}, id="3d"),
])
def test_col2im_vs_onnx(image, block, attrs):
    n = len(image)
    strides = attrs.get("strides", [1] * n)
    dil = attrs.get("dilations", [1] * n)
    pads = attrs.get("pads", [0] * (2 * n))
    blocks = [(s + pads[i] + pads[i + n] - (k - 1) * d - 1) // st + 1
              for i, (s, k, st, d) in enumerate(zip(image, block, strides, dil))]
    x = rand((2, 3 * int(np.prod(block)), int(np.prod(blocks))))
    check_vs_onnx("ember.col2im", "Col2Im", [x], {"image_shape": image, "block_shape": block, **attrs}, attrs,
                  onnx_inputs=[x, np.array(image, np.int64), np.array(block, np.int64)])


def test_col2im_hand_computed_overlaps_add():
    # one channel, a 1x2 block sliding over a 1x3 image: columns [a, b] and [c, d]
    x = np.array([[[1, 3], [2, 4]]], np.float32)  # rows: tap 0, tap 1; columns: blocks
    got = ember_op("ember.col2im", [x], {"image_shape": [1, 3], "block_shape": [1, 2]})[0]
    assert got.tolist() == [[[[1, 2 + 3, 4]]]]
    # padding drops the taps that fall outside
    got = ember_op("ember.col2im", [np.ones((1, 2, 3), np.int32)], {"image_shape": [1, 3], "block_shape": [1, 2],
                                                                      "pads": [0, 1, 0, 0]})[0]
    assert got.tolist() == [[[[2, 2, 1]]]]


def test_col2im_channels_last_and_shapes():
    x = rand((1, 8, 16))
    attrs = {"image_shape": [5, 5], "block_shape": [2, 2]}
    want = ember_op("ember.col2im", [x], attrs)[0]
    got = ember_op("ember.col2im", [x], attrs | {"layout": "NHWC"})[0]
    assert_close(to_first(got), want)
    assert infer("ember.col2im", ir.f32["N", 12, "L"], image_shape=["H", "W"], block_shape=[2, 2]) == \
        "f32[N,3,H,W]"
    with pytest.raises(ShapeError, match="not a multiple of the block's 4 taps"):
        infer("ember.col2im", ir.f32[1, 6, 16], image_shape=[5, 5], block_shape=[2, 2])
    with pytest.raises(ShapeError, match="has 15 columns"):
        infer("ember.col2im", ir.f32[1, 8, 15], image_shape=[5, 5], block_shape=[2, 2])
    with pytest.raises(ShapeError, match="one entry per spatial dim"):
        infer("ember.col2im", ir.f32[1, 8, 16], image_shape=[5, 5], block_shape=[2])
