"""ember.resize against onnx.reference (every mode, coordinate mode, nearest mode,
antialias, exclude_outside, dtypes), hand-computed cases, symbolic shapes and errors."""

import numpy as np
import pytest
from oracle import assert_close, check_vs_onnx, ember_op, rand

from ember import ir
from ember.errors import ShapeError, VerifyError

COORDS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
          "tf_crop_and_resize"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
ROI = [0.0, 0.0, 0.25, -0.25, 1.0, 1.0, 0.75, 1.25]  # crops rows, extrapolates past both column edges
X_SHAPE = (1, 1, 4, 6)
# (kind, values): upsampling, downsampling and sizes with non-integer ratios. Every in*scale is an
# integer here, where onnx.reference and the ONNX spec agree (see test_align_corners_fractional_width).
CASES = [("scales", [1.0, 1.0, 1.5, 2.0]), ("scales", [1.0, 1.0, 0.5, 0.5]),
         ("sizes", [1, 1, 3, 4]), ("sizes", [1, 1, 7, 9])]


def _run(mode, ctm, kind, values, *, x=None, nearest_mode="round_prefer_floor", **extra):
    x = rand(X_SHAPE) if x is None else x
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest_mode, **extra)
    onnx_attrs = {k: int(v) if isinstance(v, bool) else v for k, v in attrs.items()}
    attrs[kind] = values
    roi = None
    if ctm == "tf_crop_and_resize":
        attrs["roi"] = ROI
        attrs["extrapolation_value"] = onnx_attrs["extrapolation_value"] = -7.0
        roi = np.array(ROI, np.float32)
    scales = np.array(values, np.float32) if kind == "scales" else None
    sizes = np.array(values, np.int64) if kind == "sizes" else None
    return check_vs_onnx("ember.resize", "Resize", [x], attrs, onnx_attrs, onnx_inputs=[x, roi, scales, sizes],
                         **({"rtol": 1e-6} if x.dtype == np.float64 and mode == "cubic" else {}))


@pytest.mark.parametrize("kind,values", CASES)
@pytest.mark.parametrize("nearest_mode", NEAREST)
@pytest.mark.parametrize("ctm", COORDS)
def test_nearest_vs_onnx(ctm, nearest_mode, kind, values):
    _run("nearest", ctm, kind, values, nearest_mode=nearest_mode)


@pytest.mark.parametrize("kind,values", CASES)
@pytest.mark.parametrize("ctm", COORDS)
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_interpolating_vs_onnx(mode, ctm, kind, values):
    _run(mode, ctm, kind, values)


@pytest.mark.parametrize("ctm", ["half_pixel", "half_pixel_symmetric", "asymmetric"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_fractional_output_width_vs_onnx(mode, ctm):
    # 6 * 0.75 = 4.5: floor gives 4, and half_pixel_symmetric recentres on the 4.5-wide canvas
    _run(mode, ctm, "scales", [1.0, 1.0, 0.75, 0.75])


@pytest.mark.parametrize("kind,values", [("scales", [1.0, 1.0, 0.5, 0.5]), ("sizes", [1, 1, 3, 4]),
                                         ("scales", [1.0, 1.0, 2.0, 0.5])])
@pytest.mark.parametrize("ctm", ["half_pixel", "pytorch_half_pixel", "align_corners", "tf_crop_and_resize"])
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_antialias_vs_onnx(mode, ctm, kind, values):
    _run(mode, ctm, kind, values, antialias=True)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("ctm", ["half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize"])
def test_cubic_exclude_outside_vs_onnx(ctm, antialias):
    _run("cubic", ctm, "scales", [1.0, 1.0, 0.5, 1.5], exclude_outside=True, antialias=antialias,
         cubic_coeff_a=-0.5)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.uint8, np.int32])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_dtypes_vs_onnx(mode, dtype):
    x = rand(X_SHAPE, dtype, low=0.0 if dtype == np.uint8 else -3.0, high=25.0)
    _run(mode, "half_pixel", "scales", [1.0, 1.0, 1.5, 0.5], x=x)


@pytest.mark.parametrize("shape,scales", [((5,), [1.6]), ((2, 3), [2.0, 0.5]),
                                          ((1, 2, 2, 3, 4), [1.0, 1.0, 2.0, 0.5, 1.5])])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_other_ranks_vs_onnx(mode, shape, scales):
    _run(mode, "half_pixel", "scales", scales, x=rand(shape))


# -- hand-computed ----------------------------------------------------------------------------
def resize(x, **attrs):
    return ember_op("ember.resize", [np.asarray(x)], attrs)[0]


def test_nearest_2x_upsample_of_2x2():
    x = np.array([[1, 2], [3, 4]], np.float32)
    want = [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert resize(x, scales=[2.0, 2.0]).tolist() == want
    assert resize(x, sizes=[4, 4], coordinate_transformation_mode="asymmetric").tolist() == want


def test_align_corners_linear_ramp():
    got = resize(np.array([0, 10, 20], np.float32), sizes=[5], mode="linear",
                 coordinate_transformation_mode="align_corners")
    assert_close(got, np.array([0, 5, 10, 15, 20], np.float32))


@pytest.mark.parametrize("nearest_mode,ties,plain", [
    ("round_prefer_floor", [10, 10, 20, 20, 30], [10, 20, 20]),
    ("round_prefer_ceil", [10, 20, 20, 30, 30], [10, 20, 20]),
    ("floor", [10, 10, 20, 20, 30], [10, 10, 20]),
    ("ceil", [10, 20, 20, 30, 30], [10, 20, 20]),
])
def test_nearest_modes(nearest_mode, ties, plain):
    # align_corners 3 -> 5 samples at 0, .5, 1, 1.5, 2: every other one a tie
    x = np.array([10, 20, 30], np.int64)
    assert resize(x, sizes=[5], coordinate_transformation_mode="align_corners",
                  nearest_mode=nearest_mode).tolist() == ties
    # asymmetric 2 -> 3 samples at 0, 2/3, 4/3 (ceil of 4/3 clamps to the last element)
    got = resize(np.array([10, 20], np.int64), scales=[1.5], coordinate_transformation_mode="asymmetric",
                 nearest_mode=nearest_mode)
    assert got.tolist() == plain[:2] + [20]


def test_linear_downsample_with_and_without_antialias():
    x = np.array([0, 1, 2, 3], np.float32)
    # half_pixel at scale 1/2 samples 0.5 and 2.5
    assert_close(resize(x, scales=[0.5], mode="linear"), np.array([0.5, 2.5], np.float32))
    # antialias: the triangle spans +-2 input pixels with weights (.125, .375, .375, .125), edges clamped:
    # 0*.125 + 0*.375 + 1*.375 + 2*.125 and 1*.125 + 2*.375 + 3*.375 + 3*.125
    assert_close(resize(x, scales=[0.5], mode="linear", antialias=True), np.array([0.625, 2.375], np.float32))


@pytest.mark.parametrize("a,k_half,k_one_half", [(-0.75, 0.59375, -0.09375), (-0.5, 0.5625, -0.0625)])
def test_cubic_kernel_on_a_delta(a, k_half, k_one_half):
    # asymmetric 2x samples x = y/2; a delta at 2 shows the kernel: K(0)=1, K(1)=0, K(.5), K(1.5)
    x = np.array([0, 0, 1, 0, 0], np.float64)
    got = resize(x, scales=[2.0], mode="cubic", coordinate_transformation_mode="asymmetric", cubic_coeff_a=a)
    want = [0, k_one_half, 0, k_half, 1, k_half, 0, k_one_half, 0, 0]
    assert_close(got, np.array(want))


def test_cubic_exclude_outside_renormalizes_at_the_border():
    x = np.array([1, 2, 3, 4], np.float64)
    kw = dict(scales=[2.0], mode="cubic", coordinate_transformation_mode="asymmetric")
    # at x=0.5 the taps are -1, 0, 1, 2 with weights -.09375, .59375, .59375, -.09375;
    # tap -1 reads the edge, or is dropped and the other three renormalized (their sum: 1.09375)
    assert_close(resize(x, **kw)[1], np.float64(-0.09375 * 1 + 0.59375 * 1 + 0.59375 * 2 - 0.09375 * 3))
    assert_close(resize(x, exclude_outside=True, **kw)[1],
                 np.float64((0.59375 * 1 + 0.59375 * 2 - 0.09375 * 3) / 1.09375))


def test_tf_crop_and_resize_extrapolates():
    # roi [-0.5, 1.5] over length 4 samples -1.5, 1.5, 4.5: the outer two lie outside [0, 3]
    got = resize(np.array([0, 10, 20, 30], np.float32), sizes=[3], mode="linear",
                 coordinate_transformation_mode="tf_crop_and_resize", roi=[-0.5, 1.5], extrapolation_value=-1.0)
    assert_close(got, np.array([-1, 15, -1], np.float32))
    got = resize(np.array([[0, 10], [20, 30]], np.float32), sizes=[2, 3], mode="nearest",
                 coordinate_transformation_mode="tf_crop_and_resize", roi=[0.0, 0.0, 1.0, 1.5],
                 extrapolation_value=5.0)
    # columns sample 0, .75, 1.5: the last is outside on every row
    assert got.tolist() == [[0, 10, 5], [20, 30, 5]]


def test_half_pixel_symmetric_recentres():
    x = np.array([0, 10, 20, 30], np.float32)
    # 4 * 0.6 = 2.4 -> 2 outputs; half_pixel samples 1/3 and 2, the symmetric variant shifts
    # both by 2 * (1 - 2/2.4) = 1/3
    assert_close(resize(x, scales=[0.6], mode="linear"), np.array([10 / 3, 20], np.float32))
    assert_close(resize(x, scales=[0.6], mode="linear", coordinate_transformation_mode="half_pixel_symmetric"),
                 np.array([20 / 3, 70 / 3], np.float32))


def test_align_corners_with_scales_divides_by_the_unrounded_length():
    # ONNX's reference and backend tests: with scales, L = 3 * 1.5 = 4.5, samples y * 2 / 3.5
    # (onnxruntime divides by the integer output length 4 - 1).
    got = resize(np.array([0, 30, 60], np.float32), scales=[1.5], mode="linear",
                 coordinate_transformation_mode="align_corners")
    assert_close(got, np.array([0, 60 / 3.5, 120 / 3.5, 180 / 3.5], np.float32))


def test_align_corners_with_sizes_divides_by_the_output_length():
    got = resize(np.array([0, 30, 60], np.float32), sizes=[4], mode="linear",
                 coordinate_transformation_mode="align_corners")
    assert_close(got, np.array([0, 20, 40, 60], np.float32))


def test_scales_and_sizes_together_size_by_sizes_and_sample_by_scales():
    # keep_aspect_ratio_policy: 4 elements at scale 0.6 give round(2.4) = 2 outputs, sampled at
    # half_pixel (y + 0.5) / 0.6 - 0.5 = 0.333..., 2.0
    x = np.array([0, 10, 20, 30], np.float32)
    got = resize(x, scales=[0.6], sizes=[2], mode="linear")
    assert_close(got, np.array([10 / 3, 20], np.float32))


def test_tf_half_pixel_for_nn():
    # opset 11: x = (y + 0.5) / s; 3 -> 2 at s = 2/3 reads 0.75 -> 1 and 2.25 -> 2 (round_prefer_floor)
    got = resize(np.array([1, 2, 3], np.float32), sizes=[2], coordinate_transformation_mode="tf_half_pixel_for_nn")
    assert got.tolist() == [2, 3]


def test_pytorch_half_pixel_single_output_samples_zero():
    # spec and onnxruntime: x_original = 0 when the output has length 1 (onnx.reference uses -0.5)
    x = np.array([1, 5, 7, 2], np.float32)
    got = resize(x, sizes=[1], mode="cubic", coordinate_transformation_mode="pytorch_half_pixel")
    assert_close(got, np.array([1], np.float32))


def test_nan_propagates_only_through_weighted_taps():
    x = np.array([0, np.nan, 2, 3], np.float32)
    got = resize(x, scales=[2.0], mode="linear", coordinate_transformation_mode="asymmetric")
    want = np.array([0, np.nan, np.nan, np.nan, 2, 2.5, 3, 3], np.float32)
    assert_close(got, want)


def test_integers_round_half_to_even_and_saturate():
    kw = dict(scales=[2.0], coordinate_transformation_mode="asymmetric")
    assert resize(np.array([0, 1], np.uint8), mode="linear", **kw).tolist() == [0, 0, 1, 1]
    assert resize(np.array([1, 2], np.uint8), mode="linear", **kw).tolist() == [1, 2, 2, 2]
    # cubic under- and overshoots clip to [0, 255]; 127.5 rounds to 128
    got = resize(np.array([0, 0, 255, 255], np.uint8), mode="cubic", **kw)
    assert got.tolist() == [0, 0, 0, 128, 255, 255, 255, 255]


def test_identity_scales_and_empty_output():
    x = rand((2, 3))
    for mode in ("nearest", "linear", "cubic"):
        np.testing.assert_array_equal(resize(x, scales=[1.0, 1.0], mode=mode), x)
    assert resize(x, sizes=[2, 0], mode="linear").shape == (2, 0)


def test_nearest_takes_any_element_type():
    x = np.array([True, False])
    assert resize(x, scales=[2.0]).tolist() == [True, True, False, False]


# -- shapes -------------------------------------------------------------------------------------
def test_symbolic_sizes_and_scales():
    b = ir.Builder()
    x = b.input("x", ir.f32["N", "C", "H", "W"])
    up = b.resize(x, sizes=["N", "C", "2*H", "2*W"], mode="linear")
    assert str(up.type) == "f32[N,C,2*H,2*W]"
    assert str(b.resize(x, scales=[1.0, 1.0, 2.0, 2.0]).type) == "f32[N,C,2*H,2*W]"
    assert str(b.resize(x, scales=[1.0, 1.0, 0.5, 1.5]).type) == "f32[N,C,H//2,(3*W)//2]"
    assert str(b.resize(x, scales=[1.0, 1.0, 1 / 3, 0.75]).type) == "f32[N,C,?,(3*W)//4]"
    b.output("y", up)
    m = b.build()
    assert ir.parse(str(m)) is not None
    got = ir.interpret(m, {"x": rand((1, 2, 3, 4))})["y"]
    assert got.shape == (1, 2, 6, 8)
    b2 = ir.Builder()
    assert str(b2.resize(b2.input("s", ir.f32[3, 5]), scales=[2.5, 0.5]).type) == "f32[7,2]"


@pytest.mark.parametrize("attrs,message", [
    (dict(), "give scales or sizes"),
    (dict(scales=[1.0, 2.0], sizes=[1, 2, 3]), "sizes has 3 values; x has rank 2"),
    (dict(scales=[2.0]), "scales has 1 values; x has rank 2"),
    (dict(sizes=[2, 3, 4]), "sizes has 3 values; x has rank 2"),
    (dict(scales=[1.0, 0.0]), "scales must be finite and > 0"),
    (dict(scales=[1.0, -2.0]), "scales must be finite and > 0"),
    (dict(sizes=[2, -1]), "sizes must be >= 0"),
    (dict(scales=[1.0, 2.0], antialias=True), "antialias applies to linear and cubic"),
    (dict(scales=[1.0, 2.0], roi=[0.0, 0.0, 1.0, 1.0]), "roi is used by coordinate_transformation_mode"),
    (dict(scales=[1.0, 2.0], coordinate_transformation_mode="tf_crop_and_resize"), "needs roi"),
    (dict(scales=[1.0, 2.0], coordinate_transformation_mode="tf_crop_and_resize", roi=[0.0, 1.0]),
     "roi has 2 values; x of rank 2 needs 4"),
])
def test_errors(attrs, message):
    b = ir.Builder()
    x = b.input("x", ir.f32[2, 3])
    with pytest.raises(ShapeError, match=message):
        b.resize(x, **attrs)


def test_type_errors():
    b = ir.Builder()
    with pytest.raises(ShapeError, match="interpolates numbers"):
        b.resize(b.input("b", ir.boolean[2]), scales=[2.0], mode="linear")
    with pytest.raises(ShapeError, match="needs a known rank"):
        b.resize(b.input("u", ir.tensor("f32", None)), scales=[2.0])
    with pytest.raises(ShapeError, match="axis 0 of x is empty"):
        b.resize(b.input("e", ir.f32[0, 2]), sizes=[3, 2])
    with pytest.raises(VerifyError, match="mode"):
        b.resize(b.input("x", ir.f32[2]), scales=[2.0], mode="bilinear")
