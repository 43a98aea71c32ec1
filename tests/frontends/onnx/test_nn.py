"""ONNX convolution, pooling, unpooling, depth/space, Resize and Upsample imported and run on
Ember against onnxruntime (onnx.reference where the two differ and the backend tests follow
the reference: MaxUnpool's output_shape, align_corners with fractional scales), every
opset form registered, and the Ember ops and types a symbolic batch imports to."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_check import check_node, imported, node_model
from oracle import rand

from ember.errors import UnsupportedOpError
from ember.frontends.onnx import import_model


def model_of(nodes, inputs, outputs, opset=23, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


# -- Conv / ConvTranspose ------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [1, 11, 22])
@pytest.mark.parametrize("attrs", [
    pytest.param({}, id="plain"),
    pytest.param({"strides": [2, 2], "pads": [1, 0, 1, 2], "dilations": [1, 2]}, id="window"),
    pytest.param({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, id="same-upper"),
    pytest.param({"auto_pad": "SAME_LOWER", "kernel_shape": [3, 3]}, id="same-lower"),
    pytest.param({"group": 2}, id="groups"),
])
def test_conv(opset, attrs):
    x, w, b = rand((2, 4, 7, 6)), rand((6, 4 // attrs.get("group", 1), 3, 3)), rand((6,))
    check_node("Conv", {"x": x, "w": w, "b": b}, attrs, opset=opset)


def test_conv_auto_pad_with_zero_pads_is_accepted():
    # the spec forbids pads next to auto_pad (onnxruntime rejects the node); some exporters write zeros
    x, w = rand((1, 2, 5, 5)), rand((3, 2, 3, 3))
    model = node_model("Conv", {"x": x, "w": w}, {"auto_pad": "SAME_UPPER", "pads": [0, 0, 0, 0]})
    from onnx_check import run_ember, run_ort
    got = run_ember(model, {"x": x, "w": w})[0]
    want = run_ort(node_model("Conv", {"x": x, "w": w}, {"auto_pad": "SAME_UPPER"}), {"x": x, "w": w})[0]
    assert np.allclose(got, want, atol=1e-5)


def test_conv_1d_3d_without_bias():
    check_node("Conv", {"x": rand((1, 3, 9)), "w": rand((2, 3, 4))}, {"strides": [2]})
    check_node("Conv", {"x": rand((1, 2, 4, 5, 3)), "w": rand((3, 2, 2, 3, 1))}, {"pads": [1, 0, 0, 0, 1, 0]})


@pytest.mark.parametrize("attrs", [
    pytest.param({}, id="plain"),
    pytest.param({"strides": [2, 3], "output_padding": [1, 2], "pads": [1, 0, 0, 1]}, id="output-padding"),
    pytest.param({"strides": [2, 2], "output_shape": [9, 10]}, id="output-shape"),
    pytest.param({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, id="same-upper"),
    pytest.param({"strides": [2, 2], "auto_pad": "SAME_LOWER"}, id="same-lower"),
    pytest.param({"dilations": [2, 2], "group": 2}, id="dilated-groups"),
])
def test_conv_transpose(attrs):
    group = attrs.get("group", 1)
    x, w = rand((1, 4, 4, 5)), rand((4, 6 // group, 3, 3))
    check_node("ConvTranspose", {"x": x, "w": w, "b": rand((6,))}, attrs)


# -- ConvInteger / QLinearConv -------------------------------------------------------------------
def u8(shape, rng):
    return rng.integers(0, 256, shape).astype(np.uint8)


def test_conv_integer():
    rng = np.random.default_rng(0)
    x, w = u8((1, 3, 5, 5), rng), u8((2, 3, 3, 3), rng)
    check_node("ConvInteger", {"x": x, "w": w}, {"pads": [1, 1, 1, 1]}, opset=10,
               initializers={"xz": np.array(100, np.uint8), "wz": np.array(120, np.uint8)})
    check_node("ConvInteger", {"x": x, "w": w}, {"strides": [2, 2]})


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
@pytest.mark.parametrize("out_type", [np.uint8, np.int8])
def test_qlinear_conv(per_channel, out_type):
    rng = np.random.default_rng(1)
    x = u8((1, 4, 6, 6), rng) if out_type == np.uint8 else rng.integers(-128, 128, (1, 4, 6, 6)).astype(np.int8)
    w = rng.integers(-127, 128, (3, 4, 3, 3)).astype(np.int8)
    inits = {
        "x_scale": np.array(0.02, np.float32), "x_zp": np.array(128 if out_type == np.uint8 else -1, out_type), "w": w,
        "w_scale": (rng.uniform(0.005, 0.02, 3) if per_channel else np.array(0.01)).astype(np.float32),
        "w_zp": np.zeros(3 if per_channel else (), np.int8),
        "y_scale": np.array(0.05, np.float32), "y_zp": np.array(10 if out_type == np.uint8 else -3, out_type),
        "b": rng.integers(-2000, 2000, (3,)).astype(np.int32),
    }
    check_node("QLinearConv", {"x": x}, {"pads": [1, 1, 1, 1], "strides": [1, 2]}, initializers=inits,
               input_names=["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "b"])


def test_qlinear_conv_imports_integer_conv_and_quantize():
    rng = np.random.default_rng(2)
    inits = {"x_scale": np.array(0.02, np.float32), "x_zp": np.array(128, np.uint8), "w": u8((2, 3, 1, 1), rng),
             "w_scale": np.array(0.01, np.float32), "w_zp": np.array(5, np.uint8),
             "y_scale": np.array(0.05, np.float32), "y_zp": np.array(3, np.uint8)}
    model = node_model("QLinearConv", {"x": u8((1, 3, 4, 4), rng)}, initializers=inits,
                       input_names=["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp"])
    text = str(imported(model))
    assert "ember.conv_integer" in text and "ember.quantize" in text and "u8[1,2,4,4]" in text


# -- pooling ------------------------------------------------------------------------------------
POOL = [
    pytest.param({"kernel_shape": [3, 3]}, id="plain"),
    pytest.param({"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1]}, id="pads"),
    pytest.param({"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]}, id="same-upper"),
    pytest.param({"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER"}, id="same-lower"),
]


@pytest.mark.parametrize("attrs", POOL)
@pytest.mark.parametrize("opset", [1, 8, 10, 12, 22])
def test_max_pool(attrs, opset):
    check_node("MaxPool", {"x": rand((1, 2, 7, 6))}, attrs, opset=opset)


def test_max_pool_ceil_dilations_and_int8():
    check_node("MaxPool", {"x": rand((1, 2, 8, 7))},
               {"kernel_shape": [2, 3], "strides": [2, 2], "dilations": [2, 1], "ceil_mode": 1}, opset=10)
    x = np.random.default_rng(3).integers(-128, 128, (1, 2, 5, 5)).astype(np.int8)
    check_node("MaxPool", {"x": x}, {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0]}, opset=12)


@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_with_indices(storage_order):
    check_node("MaxPool", {"x": rand((2, 3, 5, 6))}, {"kernel_shape": [2, 2], "strides": [2, 2],
                                                      "storage_order": storage_order}, outputs=("y", "i"), opset=8)


@pytest.mark.parametrize("opset,attrs", [
    (1, {"kernel_shape": [3, 3], "strides": [2, 1]}),  # (onnx.reference counts padding at opset 1)
    (7, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    (10, {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}),
    (19, {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 0, 1]}),
    (22, {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "count_include_pad": 1}),
])
def test_average_pool(opset, attrs):
    check_node("AveragePool", {"x": rand((1, 2, 7, 6))}, attrs, opset=opset, reference="onnx" if opset == 1 else "ort")


@pytest.mark.parametrize("opset,attrs", [
    (1, {"kernel_shape": [2, 2], "p": 3.0}),
    (2, {"kernel_shape": [2, 2], "p": 1}),
    (11, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    (18, {"kernel_shape": [2, 2], "dilations": [2, 1], "ceil_mode": 1, "strides": [2, 2]}),
])
def test_lp_pool(opset, attrs):
    check_node("LpPool", {"x": rand((1, 2, 7, 6))}, attrs, opset=opset, reference="onnx" if opset == 1 else "ort")


def test_lp_pool_fractional_p_is_unsupported():
    with pytest.raises(UnsupportedOpError, match="p = 2.5"):
        import_model(node_model("LpPool", {"x": rand((1, 1, 4, 4))}, {"kernel_shape": [2, 2], "p": 2.5}, opset=1))


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pools(op):
    check_node(op, {"x": rand((2, 3, 4, 5))})
    check_node(op, {"x": rand((1, 2, 3, 2, 4))})


@pytest.mark.parametrize("opset,p", [(1, 1.0), (2, 3), (23, 2)])
def test_global_lp_pool(opset, p):
    # neither onnxruntime nor onnx.reference runs every GlobalLpPool opset: the norm by hand
    x = rand((1, 2, 3, 4))
    from onnx_check import run_ember
    got = run_ember(node_model("GlobalLpPool", {"x": x}, {"p": p}, opset=opset), {"x": x})[0]
    want = (np.abs(x.astype(np.float64)) ** p).sum(axis=(2, 3), keepdims=True) ** (1 / p)
    assert np.allclose(got, want, rtol=1e-5)


# -- MaxUnpool ----------------------------------------------------------------------------------
def test_max_unpool_roundtrip_with_max_pool():
    x = rand((1, 2, 4, 6))
    pool = helper.make_node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2])
    unpool = helper.make_node("MaxUnpool", ["p", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    model = model_of([pool, unpool], [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                     [helper.make_empty_tensor_value_info("y")], opset=11)
    from onnx_check import check_model
    check_model(model, {"x": x})


def test_max_unpool_output_shape_pads_at_the_end_as_onnx_reference():
    # onnx.reference (and the backend test) place the unpooled 4x4 in the top-left of the 5x5 output;
    # onnxruntime instead reads the indices in the 5x5 shape.
    x = np.array([[[[5, 6], [7, 8]]]], np.float32)
    idx = np.array([[[[5, 7], [13, 15]]]], np.int64)
    got, _ = check_node("MaxUnpool", {"x": x, "i": idx}, {"kernel_shape": [2, 2], "strides": [2, 2]},
                           initializers={"shape": np.array([1, 1, 5, 5], np.int64)}, reference="onnx")
    assert got[0][0, 0, 1, 1] == 5 and got[0].shape == (1, 1, 5, 5)


# -- DepthToSpace / SpaceToDepth ------------------------------------------------------------------
@pytest.mark.parametrize("opset,mode", [(1, None), (11, "DCR"), (13, "CRD")])
def test_depth_to_space(opset, mode):
    attrs = {"blocksize": 2} | ({"mode": mode} if mode else {})
    check_node("DepthToSpace", {"x": rand((1, 8, 2, 3))}, attrs, opset=opset)


def test_space_to_depth():
    check_node("SpaceToDepth", {"x": rand((2, 3, 4, 6))}, {"blocksize": 2}, opset=1)
    check_node("SpaceToDepth", {"x": rand((2, 3, 4, 6))}, {"blocksize": 2})


# -- Resize / Upsample --------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [7, 9])
@pytest.mark.parametrize("mode,scales", [("nearest", [1, 1, 2, 3]), ("linear", [1, 1, 2, 1.5]),
                                         ("nearest", [1, 1, 1.5, 2.5])])
def test_upsample(opset, mode, scales):
    x = rand((1, 2, 4, 4))
    scales = np.array(scales, np.float32)
    if opset == 7:
        check_node("Upsample", {"x": x}, {"mode": mode, "scales": scales.tolist()}, opset=7)
    else:
        check_node("Upsample", {"x": x}, {"mode": mode}, initializers={"scales": scales}, opset=9)


@pytest.mark.parametrize("mode,scales", [("nearest", [1, 1, 2, 3]), ("nearest", [1, 1, 0.6, 0.5]),
                                         ("linear", [1, 1, 1.5, 0.5])])
def test_resize_10(mode, scales):
    check_node("Resize", {"x": rand((1, 2, 5, 6))}, {"mode": mode}, opset=10,
               initializers={"scales": np.array(scales, np.float32)})


RESIZE_11 = [
    pytest.param({"mode": "nearest"}, [1, 1, 2, 1.5], None, id="nearest-scales"),
    pytest.param({"mode": "nearest", "nearest_mode": "ceil", "coordinate_transformation_mode": "align_corners"},
                 None, [1, 2, 7, 3], id="nearest-sizes"),
    pytest.param({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, None, [1, 2, 3, 9],
                 id="linear-pytorch"),
    pytest.param({"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, [1, 1, 0.6, 1.7], None,
                 id="cubic-exclude"),
    pytest.param({"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 3, 2], None,
                 id="linear-asymmetric"),
]


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("attrs,scales,sizes", RESIZE_11)
def test_resize_11_13(opset, attrs, scales, sizes):
    inits = {"roi": np.array([], np.float32), "scales": np.array(scales or [], np.float32)}
    names = ["x", "roi", "scales"]
    if sizes is not None:
        inits["sizes"] = np.array(sizes, np.int64)
        names.append("sizes")
        if opset == 13:
            names[1:3] = ["", ""]
    check_node("Resize", {"x": rand((1, 2, 5, 6))}, attrs, opset=opset, initializers=inits, input_names=names)


def test_resize_11_tf_half_pixel_for_nn():
    check_node("Resize", {"x": rand((1, 2, 5, 6))}, {"coordinate_transformation_mode": "tf_half_pixel_for_nn"},
               initializers={"roi": np.array([], np.float32), "scales": np.array([1, 1, 2, 0.5], np.float32)},
               opset=11)


def test_resize_tf_crop_and_resize():
    inits = {"roi": np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 1.3], np.float32), "scales": np.array([], np.float32),
             "sizes": np.array([1, 2, 4, 5], np.int64)}
    check_node("Resize", {"x": rand((1, 2, 5, 6))}, {"mode": "linear", "coordinate_transformation_mode":
                                                     "tf_crop_and_resize", "extrapolation_value": 7.0},
               initializers=inits, input_names=["x", "roi", "scales", "sizes"], opset=13)


@pytest.mark.parametrize("attrs,scales,sizes", [
    pytest.param({"axes": [2, 3]}, [2.0, 1.5], None, id="axes-scales"),
    pytest.param({"axes": [-1, 2], "mode": "linear"}, None, [4, 7], id="negative-axes-sizes"),
    pytest.param({"keep_aspect_ratio_policy": "not_larger", "mode": "linear", "axes": [2, 3]}, None, [3, 9],
                 id="not-larger"),
    pytest.param({"keep_aspect_ratio_policy": "not_smaller", "axes": [2, 3]}, None, [3, 3], id="not-smaller"),
    pytest.param({"mode": "cubic", "antialias": 1}, [1, 1, 0.6, 0.4], None, id="antialias"),
    pytest.param({"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, [1, 1, 1.7, 0.7],
                 None, id="half-pixel-symmetric"),
])
def test_resize_18_19(attrs, scales, sizes):
    inputs = {"scales": np.array(scales, np.float32)} if scales else {"sizes": np.array(sizes, np.int64)}
    names = ["x", "", "scales"] if scales else ["x", "", "", "sizes"]
    check_node("Resize", {"x": rand((1, 2, 5, 6))}, attrs, opset=19, initializers=inputs, input_names=names)


def test_resize_align_corners_fractional_scale_follows_onnx_reference():
    # the backend test's rule: with scales, align_corners divides by in * scale - 1 (here 2.4 - 1)
    x = np.arange(1, 9, dtype=np.float32).reshape(1, 1, 2, 4)
    got, _ = check_node("Resize", {"x": x}, {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
                        initializers={"scales": np.array([1, 1, 0.6, 0.6], np.float32)},
                        input_names=["x", "", "scales"], reference="onnx")
    assert np.allclose(got[0].ravel(), [1, 3.142857])


def test_resize_scales_from_graph_input_need_freezing():
    with pytest.raises(UnsupportedOpError, match="scales .* must be known at build time"):
        import_model(node_model("Resize", {"x": rand((1, 1, 2, 2)), "s": np.ones(4, np.float32)},
                                input_names=["x", "", "s"], opset=19))


# -- imported IR --------------------------------------------------------------------------------
def test_symbolic_batch_imports_layout_free_ops():
    f32 = TensorProto.FLOAT
    w = helper.make_tensor("w", f32, [8, 3, 3, 3], np.ones(216, np.float32))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["p", "", "s"], ["r"], mode="nearest"),
        helper.make_node("GlobalAveragePool", ["r"], ["y"]),
    ]
    s = helper.make_tensor("s", f32, [4], [1, 1, 2, 2])
    model = model_of(nodes, [helper.make_tensor_value_info("x", f32, ["N", 3, 32, 32])],
                     [helper.make_empty_tensor_value_info("y")], opset=19, initializers=[w, s])
    text = str(imported(model))
    assert "ember.conv" in text and "f32[N,8,16,16]" in text
    assert "ember.max_pool" in text and "f32[N,8,8,8]" in text
    assert "ember.resize" in text and "f32[N,8,16,16]" in text
    assert "f32[N,8,1,1]" in text
    assert "layout" not in text  # channels first is the default
