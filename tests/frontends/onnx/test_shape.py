"""Converters of shape and data-movement ONNX ops (frontends/onnx/ops/shape.py, misc.py):
each opset form against onnxruntime, build-time inputs as attributes, symbolic shapes."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_check import check_model, check_node, imported, node_model, run_ember

from ember.errors import UnsupportedOpError

INT_MAX = np.iinfo(np.int64).max
INT_MIN = np.iinfo(np.int64).min
RNG = np.random.default_rng(0)


def i64(*v):
    return np.array(v, np.int64)


def rand(*shape, dtype=np.float32):
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(-20, 20, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def ops_of(model, **kwargs):
    return [op.name for op in imported(model, **kwargs).main.body.ops]


# -- Slice -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("starts,ends,axes,steps", [
    ((1, 0), (3, 4), (0, 1), None),
    ((-1,), (INT_MIN,), (1,), (-1,)),           # reverse an axis
    ((0, 1), (INT_MAX, -1), (-2, -1), (2, 1)),  # INT_MAX end, negative axes
    ((10,), (20,), (0,), None),                 # out of range: empty
    ((-3,), (-1,), None, None),                 # default axes
    ((3,), (0,), (1,), (-2,)),
])
def test_slice_inputs(starts, ends, axes, steps):
    inits = {"starts": i64(*starts), "ends": i64(*ends)}
    if axes is not None or steps is not None:
        inits["axes"] = i64(*(axes if axes is not None else range(len(starts))))
    if steps is not None:
        inits["steps"] = i64(*steps)
    check_node("Slice", {"x": rand(4, 5, 3)}, initializers=inits)


def test_slice_opset1_attributes():
    x = rand(4, 5)
    check_node("Slice", {"x": x}, {"starts": [1, -3], "ends": [3, 1000], "axes": [0, 1]}, opset=9)
    check_node("Slice", {"x": x}, {"starts": [1], "ends": [-1]}, opset=1)


def test_slice_bounds_from_graph_inputs_are_frozen():
    x = rand(6, 4)
    check_node("Slice", {"x": x, "starts": i64(1), "ends": i64(5), "axes": i64(0), "steps": i64(2)})


def test_slice_symbolic():
    model = node_model("Slice", {"x": rand(2, 7, 8)}, initializers={"s": i64(1), "e": i64(INT_MAX), "a": i64(1)})
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "S"
    assert "f32[N,S-1,8]" in str(imported(model))


# -- Split -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset,shape,attrs,split,n", [
    (11, (4, 6), {"axis": 1, "split": [1, 4, 1]}, None, 3),
    (11, (4, 6), {"axis": -1}, None, 3),
    (13, (4, 6), {"axis": 1}, i64(2, 0, 4), 3),
    (13, (4, 6), {}, None, 2),
    (18, (4, 6), {"axis": 1, "num_outputs": 4}, None, 4),  # uneven: 2, 2, 2, 0
    (18, (5, 6), {"axis": 0, "num_outputs": 3}, None, 3),  # uneven: 2, 2, 1
    (18, (4, 6), {"axis": 1}, i64(5, 1), 2),
])
def test_split(opset, shape, attrs, split, n):
    inits = {"split": split} if split is not None else None
    check_node("Split", {"x": rand(*shape)}, attrs, outputs=[f"y{i}" for i in range(n)], opset=opset,
               initializers=inits)


def test_split_opset2_attribute_and_symbolic():
    check_node("Split", {"x": rand(6, 2)}, {"split": [2, 4]}, outputs=["a", "b"], opset=2)
    model = node_model("Split", {"x": rand(3, 8)}, {"axis": 1, "num_outputs": 3}, outputs=["a", "b", "c"],
                       opset=18)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    text = str(imported(model))
    assert "f32[N,3], f32[N,3], f32[N,2]" in text


# -- Pad ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_inputs(mode):
    x = rand(3, 4)
    inits = {"pads": i64(1, 2, 2, 1)}
    if mode == "constant":
        inits["value"] = np.array(1.5, np.float32)
    check_node("Pad", {"x": x}, {"mode": mode}, opset=19, initializers=inits)


def test_pad_axes_negative_pads_and_int():
    x = rand(3, 4, 5, dtype=np.int32)
    check_node("Pad", {"x": x}, opset=18, initializers={"pads": i64(2, -1, 0, 3), "v": np.array(7, np.int32),
                                                        "axes": i64(-1, 0)})
    check_node("Pad", {"x": rand(2, 3)}, {"mode": "reflect"}, opset=18,
               initializers={"pads": i64(1, 1), "axes": i64(1)}, input_names=["x", "pads", "", "axes"])


def test_pad_opset2_and_opset1_attributes():
    check_node("Pad", {"x": rand(2, 3)}, {"pads": [0, 1, 1, 2], "value": -2.0}, opset=2)
    check_node("Pad", {"x": rand(2, 3)}, {"pads": [1, 1, 1, 1], "mode": "edge"}, opset=10)
    model = node_model("Pad", {"x": rand(2, 3)}, {"paddings": [0, 1, 0, 2], "value": 3.0}, opset=1)
    (y,) = run_ember(model, {"x": np.ones((2, 3), np.float32)})
    assert y.shape == (2, 6) and y[0].tolist() == [3, 1, 1, 1, 3, 3]


# -- Tile, Trilu, OneHot ------------------------------------------------------------------------------------------
def test_tile():
    check_node("Tile", {"x": rand(2, 3)}, initializers={"r": i64(2, 3)})
    check_node("Tile", {"x": rand(2, 3, dtype=np.int64), "r": i64(1, 2)})
    model = node_model("Tile", {"x": rand(2, 3)}, opset=1, initializers={"tiles": i64(3), "axis": i64(1)})
    (y,) = run_ember(model, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert y.tolist() == [[0, 1, 2] * 3, [3, 4, 5] * 3]


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -1, 2])
def test_trilu(upper, k):
    inits = {"k": i64(k)} if k is not None else None
    check_node("Trilu", {"x": rand(3, 4, 5)}, {"upper": upper}, initializers=inits)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot(axis):
    idx = np.array([[0, 3, -1], [5, -4, 2]], np.int64)
    check_node("OneHot", {"idx": idx}, {"axis": axis},
               initializers={"depth": np.array(4.0, np.float32), "values": np.array([-1, 2], np.int32)})


# -- gathers and scatters ---------------------------------------------------------------------------------------
def test_gather_elements_and_nd():
    x = rand(3, 4)
    check_node("GatherElements", {"x": x, "i": np.array([[0, -1, 2, 1], [2, 0, 0, 1]], np.int64)}, {"axis": 0})
    check_node("GatherElements", {"x": x, "i": np.array([[3, -4], [0, 1], [2, 2]], np.int32)}, {"axis": 1})
    data = rand(2, 3, 4)
    check_node("GatherND", {"x": data, "i": np.array([[[0, 1]], [[1, 2]]], np.int64)})
    check_node("GatherND", {"x": data, "i": np.array([[1], [2]], np.int64)}, {"batch_dims": 1})
    check_node("GatherND", {"x": data, "i": np.array([[1, -1], [0, 0]], np.int64)}, opset=11)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_and_nd(reduction):
    x = rand(3, 4)
    idx = np.array([[1, 0, 2, 0]], np.int64)
    upd = rand(1, 4)
    check_node("ScatterElements", {"x": x, "i": idx, "u": upd}, {"axis": 0, "reduction": reduction}, opset=18)
    check_node("ScatterND", {"x": x, "i": np.array([[2], [0]], np.int64), "u": rand(2, 4)},
               {"reduction": reduction}, opset=18)


def test_scatter_deprecated_and_negative_indices():
    x = rand(3, 3)
    idx = np.array([[-1, 0, 1]], np.int64)
    check_node("Scatter", {"x": x, "i": idx, "u": rand(1, 3)}, {"axis": 1}, opset=10)
    check_node("ScatterElements", {"x": x, "i": idx, "u": rand(1, 3)}, {"axis": 1}, opset=11)


def test_tensor_scatter():
    cache, upd = rand(2, 3, 6, 4), rand(2, 3, 2, 4)
    check_node("TensorScatter", {"c": cache, "u": upd, "w": i64(1, 4)}, opset=24)
    check_node("TensorScatter", {"c": cache, "u": upd, "w": i64(5, 0)}, {"mode": "circular"}, opset=24)
    check_node("TensorScatter", {"c": rand(2, 5, 3), "u": rand(2, 5, 3)}, {"axis": 1}, opset=24)


# -- data-dependent sizes ----------------------------------------------------------------------------------------
def test_nonzero_and_compress():
    x = np.array([[0, 1.5, 0], [2, 0, -1]], np.float32)
    check_node("NonZero", {"x": x})
    cond = np.array([True, False, True])
    check_node("Compress", {"x": x, "c": cond}, {"axis": 1})
    check_node("Compress", {"x": x, "c": np.array([False, True])}, {"axis": -2})
    check_node("Compress", {"x": x, "c": np.array([True, False, False, True, True])})  # flattened, shorter
    check_node("Compress", {"x": x}, {"axis": 1}, initializers={"c": cond})  # condition known at build time


@pytest.mark.parametrize("attrs", [{}, {"sorted": 0}, {"axis": 0}, {"axis": 1, "sorted": 0}, {"axis": -1}])
def test_unique(attrs):
    x = np.array([[2, 1, 2, 1], [0, 5, 0, 5], [2, 1, 2, 1]], np.float32)
    check_node("Unique", {"x": x}, attrs, outputs=["y", "first", "inverse", "counts"], opset=11)


def test_unique_one_output():
    check_node("Unique", {"x": np.array([3, 1, 3, 2], np.int64)}, {"sorted": 0})


@pytest.mark.parametrize("time_axis,batch_axis", [(0, 1), (1, 0)])
def test_reverse_sequence(time_axis, batch_axis):
    x = rand(4, 4, 2)
    check_node("ReverseSequence", {"x": x, "lens": i64(4, 1, 0, 3)},
               {"time_axis": time_axis, "batch_axis": batch_axis})


# -- generated and reinterpreted ---------------------------------------------------------------------------------
@pytest.mark.parametrize("attrs,reference", [({}, "ort"), ({"k": 1}, "ort"),
                                             ({"k": -2, "dtype": TensorProto.INT32}, "ort"),
                                             ({"dtype": TensorProto.BOOL}, "onnx")])  # ORT has no bool EyeLike
def test_eye_like(attrs, reference):
    check_node("EyeLike", {"x": rand(3, 4)}, attrs, reference=reference)


@pytest.mark.parametrize("x,to,reference", [
    (np.array([1.0, -2.5], np.float32), TensorProto.INT32, "ort"),
    (np.array([[3, -1]], np.int64), TensorProto.DOUBLE, "ort"),
    (np.array([True, False]), TensorProto.UINT8, "onnx"),  # ORT has no bool BitCast
    (np.array(7, np.int16), TensorProto.FLOAT16, "ort"),
])
def test_bitcast(x, to, reference):
    check_node("BitCast", {"x": x}, {"to": to}, opset=26, reference=reference)


# -- Dropout -----------------------------------------------------------------------------------------------------
def test_dropout_inference_is_identity():
    x = rand(2, 3)
    check_node("Dropout", {"x": x})
    check_node("Dropout", {"x": x}, outputs=["y", "mask"])
    # Before opset 12 the inference mask is unspecified: all true as onnx.reference (ORT gives all false)
    check_node("Dropout", {"x": x}, {"ratio": 0.3}, outputs=["y", "mask"], opset=10, reference="onnx")
    check_node("Dropout", {"x": x, "r": np.array(0.5, np.float32), "t": np.array(False)}, outputs=["y", "mask"])
    check_node("Dropout", {"x": x, "r": np.array(0.0, np.float32), "t": np.array(True)}, outputs=["y", "mask"])
    model = node_model("Dropout", {"x": x}, {"is_test": 1}, outputs=["y", "mask"], opset=6)
    y, mask = run_ember(model, {"x": x})
    assert np.array_equal(y, x) and mask.dtype == np.float32 and mask.tolist() == [[1, 1, 1]] * 2


def test_dropout_training_is_refused():
    x = rand(2, 3)
    model = node_model("Dropout", {"x": x}, initializers={"r": np.array(0.25, np.float32), "t": np.array(True)})
    with pytest.raises(UnsupportedOpError, match="training-mode dropout with ratio 0.25"):
        imported(model)


def test_dropout_symbolic_mask():
    model = node_model("Dropout", {"x": rand(2, 3)}, outputs=["y", "mask"])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    text = str(imported(model))
    assert "ember.expand" in text and "bool[N,3]" in text


# -- symbolic import ---------------------------------------------------------------------------------------------
def test_symbolic_batch_import():
    """A symbolic batch flows through the shape family's converters as symbolic dims."""
    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "a"], ["sl"]),
        helper.make_node("Pad", ["sl", "p"], ["pd"], mode="edge"),
        helper.make_node("Tile", ["pd", "r"], ["t"]),
        helper.make_node("EyeLike", ["t"], ["eye"], k=1),
        helper.make_node("Unique", ["x"], ["u", "first", "inv", "cnt"], axis=0),
        helper.make_node("ReverseSequence", ["x", "lens"], ["rs"], batch_axis=0, time_axis=1),
    ]
    inits = [onnx.numpy_helper.from_array(a, n) for n, a in [
        ("s", i64(1)), ("e", i64(INT_MAX)), ("a", i64(1)), ("p", i64(0, 1, 0, 1)), ("r", i64(2, 1))]]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
                                           helper.make_tensor_value_info("lens", TensorProto.INT64, ["N"])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("eye", "u")]
                              + [helper.make_tensor_value_info("rs", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m = imported(model)
    types = {op.name: str(op.results[0].type) for op in m.main.body.ops}
    assert types["ember.slice"] == "f32[N,7]"
    assert types["ember.pad"] == "f32[N,9]"
    assert types["ember.tile"] == "f32[2*N,9]"
    assert types["ember.eye_like"] == "f32[2*N,9]"
    assert types["ember.unique"] == "f32[?<=N,8]"
    assert types["ember.reverse_sequence"] == "f32[N,8]"
    x = rand(3, 8)
    check_model(model, {"x": x, "lens": i64(8, 0, 3)})
