"""ONNX DeformConv, GridSample (opsets 16 and 20), AffineGrid, RoiAlign (opsets 10 and 16),
NonMaxSuppression and Col2Im imported and run on Ember against onnxruntime (onnx.reference
where onnxruntime lacks the form), and the Ember ops and types a symbolic batch imports to."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_check import check_node, imported, node_model
from oracle import rand

from ember.errors import UnsupportedOpError
from ember.frontends.onnx import import_model


@pytest.mark.parametrize("attrs,with_mask", [
    ({}, False),
    ({"pads": [1, 1, 1, 1], "strides": [2, 1], "offset_group": 2}, True),
    ({"dilations": [1, 2], "group": 2}, True),
])
def test_deform_conv(attrs, with_mask):
    rng = np.random.default_rng(0)
    group, og = attrs.get("group", 1), attrs.get("offset_group", 1)
    x, w = rand((1, 4, 5, 6), rng=rng), rand((2, 4 // group, 2, 2), rng=rng)
    out_h = (5 + 2 * attrs.get("pads", [0])[0] - 2) // attrs.get("strides", [1])[0] + 1
    out_w = (6 + 2 * attrs.get("pads", [0])[0] - 1 - attrs.get("dilations", [1, 1])[1]) // 1 + 1
    inputs = {"x": x, "w": w, "offset": rng.uniform(-1, 1, (1, og * 8, out_h, out_w)).astype(np.float32),
              "b": rand((2,), rng=rng)}
    if with_mask:
        inputs["mask"] = rng.uniform(0, 1, (1, og * 4, out_h, out_w)).astype(np.float32)
    check_node("DeformConv", inputs, attrs, opset=19, reference="onnx")


@pytest.mark.parametrize("opset,mode", [(16, "bilinear"), (16, "nearest"), (16, "bicubic"), (20, "linear"),
                                        (20, "cubic"), (22, "nearest")])
@pytest.mark.parametrize("padding_mode,align_corners", [("zeros", 0), ("border", 1), ("reflection", 0)])
def test_grid_sample(opset, mode, padding_mode, align_corners):
    rng = np.random.default_rng(1)
    x = rand((2, 3, 4, 5), rng=rng)
    grid = rng.uniform(-1.3, 1.3, (2, 3, 2, 2)).astype(np.float32)
    check_node("GridSample", {"x": x, "grid": grid},
               {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}, opset=opset)


def test_grid_sample_volumetric():
    rng = np.random.default_rng(2)
    x, grid = rand((1, 2, 3, 4, 3), rng=rng), rng.uniform(-1, 1, (1, 2, 2, 2, 3)).astype(np.float32)
    check_node("GridSample", {"x": x, "grid": grid}, {"mode": "linear"}, opset=20, reference="onnx")


def test_grid_sample_16_rejects_5d():
    x, grid = rand((1, 2, 3, 4, 3)), rand((1, 2, 2, 2, 3))
    with pytest.raises(UnsupportedOpError, match="4-D"):
        import_model(node_model("GridSample", {"x": x, "grid": grid}, opset=16))


@pytest.mark.parametrize("size,align_corners", [([2, 3, 4, 5], 0), ([2, 3, 4, 5], 1), ([2, 1, 3, 2, 4], 0),
                                                ([2, 1, 3, 2, 4], 1)])
def test_affine_grid(size, align_corners):
    r = len(size) - 2
    theta = rand((2, r, r + 1))
    check_node("AffineGrid", {"theta": theta}, {"align_corners": align_corners},
               initializers={"size": np.array(size, np.int64)}, opset=20)


def test_affine_grid_symbolic_batch():
    theta = helper.make_tensor_value_info("theta", TensorProto.FLOAT, ["N", 2, 3])
    size = helper.make_tensor("size", TensorProto.INT64, [4], [1, 3, 8, 16])
    node = helper.make_node("AffineGrid", ["theta", "size"], ["grid"])
    graph = helper.make_graph([node], "g", [theta], [helper.make_empty_tensor_value_info("grid")], [size])
    text = str(imported(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])))
    assert "ember.matmul" in text and "f32[N,8,16,2]" in text  # theta's batch (size's must equal it)


@pytest.mark.parametrize("opset,attrs", [
    (10, {"output_height": 2, "output_width": 3, "sampling_ratio": 2, "spatial_scale": 0.5}),
    (16, {"output_height": 3, "output_width": 2}),
    (16, {"output_height": 2, "output_width": 2, "mode": "max", "coordinate_transformation_mode": "output_half_pixel"}),
])
def test_roi_align(opset, attrs):
    rng = np.random.default_rng(3)
    x = rand((2, 3, 8, 7), rng=rng)
    rois = np.array([[0.5, 0.3, 6.2, 5.1], [1, 1, 3, 2], [-1, -2, 9, 11]], np.float32)
    check_node("RoiAlign", {"x": x, "rois": rois}, attrs, opset=opset,
               initializers={"idx": np.array([0, 1, 1], np.int64)})


@pytest.mark.parametrize("center,limits", [
    (0, (3, 0.5, None)),
    (1, (10, 0.3, 0.2)),
    (0, (None, None, None)),
    (0, (5, None, None)),
])
def test_non_max_suppression(center, limits):
    rng = np.random.default_rng(4)
    corners = rng.uniform(0, 4, (2, 10, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(0.5, 2, (2, 10, 2))], axis=2).astype(np.float32)
    scores = rng.uniform(0, 1, (2, 3, 10)).astype(np.float32)
    names = ["boxes", "scores"]
    inits = {}
    for name, value, dtype in zip(("limit", "iou", "score"), limits, (np.int64, np.float32, np.float32)):
        if value is not None:
            inits[name] = np.array([value], dtype)
            names.append(name)
        else:
            names.append("")
    while names[-1] == "":
        names.pop()
    check_node("NonMaxSuppression", {"boxes": boxes, "scores": scores}, {"center_point_box": center},
               initializers=inits, input_names=names)


def test_non_max_suppression_imports_a_bounded_unknown_dim():
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["B", 100, 4])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["B", 5, 100])
    limit = helper.make_tensor("limit", TensorProto.INT64, [1], [20])
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit"], ["sel"])
    graph = helper.make_graph([node], "g", [boxes, scores], [helper.make_empty_tensor_value_info("sel")], [limit])
    text = str(imported(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])))
    assert "ember.nms" in text and "i64[?<=100*B,3]" in text


@pytest.mark.parametrize("image,block,attrs", [
    ([5, 5], [2, 2], {}),
    ([6, 5], [2, 3], {"strides": [2, 1], "pads": [1, 0, 1, 2], "dilations": [1, 2]}),
])
def test_col2im(image, block, attrs):
    n = 2
    strides, dil = attrs.get("strides", [1] * n), attrs.get("dilations", [1] * n)
    pads = attrs.get("pads", [0] * (2 * n))
    blocks = [(s + pads[i] + pads[i + n] - (k - 1) * d - 1) // st + 1
              for i, (s, k, st, d) in enumerate(zip(image, block, strides, dil))]
    x = rand((2, 3 * int(np.prod(block)), int(np.prod(blocks))))
    check_node("Col2Im", {"x": x}, attrs, opset=18,
               initializers={"image": np.array(image, np.int64), "block": np.array(block, np.int64)})


def test_symbolic_batch_imports_vision_ops():
    f32 = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", f32, ["N", 3, 16, 16])
    grid = helper.make_tensor_value_info("grid", f32, ["N", 8, 8, 2])
    rois = helper.make_tensor_value_info("rois", f32, ["R", 4])
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, ["R"])
    nodes = [helper.make_node("GridSample", ["x", "grid"], ["g"]),
             helper.make_node("RoiAlign", ["x", "rois", "idx"], ["r"], output_height=7, output_width=7)]
    graph = helper.make_graph(nodes, "g", [x, grid, rois, idx], [helper.make_empty_tensor_value_info("g"),
                                                                 helper.make_empty_tensor_value_info("r")])
    text = str(imported(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])))
    assert "ember.grid_sample" in text and "f32[N,3,8,8]" in text
    assert "ember.roi_align" in text and "f32[R,3,7,7]" in text
