"""ONNX reductions, ArgMax/ArgMin, CumSum/CumProd and TopK, imported and run on Ember against
onnxruntime (onnx.reference where onnxruntime lacks the op or the type), in each opset form:
axes as an attribute (before 13 for ReduceSum, before 18 for the others) and as an input,
absent, empty and with noop_with_empty_axes."""

import numpy as np
import pytest
from onnx_check import check_node, imported, node_model, run_ember
from oracle import rand

from ember.frontends.onnx import import_model
from ember.frontends.onnx.importer import StaticInputsRequired

REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]
AXES_INPUT_SINCE = {name: 18 for name in REDUCE} | {"ReduceSum": 13}


def _positive(shape):
    return rand(shape, low=0.5, high=2.0)  # ReduceLogSum needs a positive sum


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, -1], 0), (None, 1), (None, 0)])
def test_reduce_axes_attribute(op, axes, keepdims):
    """The attribute form (opset 11; 13 for all but ReduceSum)."""
    x = _positive((3, 4, 5))
    attrs = {"keepdims": keepdims} | ({"axes": axes} if axes is not None else {})
    check_node(op, {"x": x}, attrs, opset=11)


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([-1, 0], 0), ([], 1), (None, 0)])
def test_reduce_axes_input(op, axes, keepdims):
    """The input form: axes as a constant; absent or empty axes reduce everything."""
    x = _positive((3, 4, 5))
    opset = max(AXES_INPUT_SINCE[op], 18)
    inits = {"axes": np.array(axes, np.int64)} if axes is not None else {}
    check_node(op, {"x": x}, {"keepdims": keepdims}, opset=opset, initializers=inits)


@pytest.mark.parametrize("op", REDUCE)
def test_reduce_noop_with_empty_axes(op):
    """noop_with_empty_axes: no axis is reduced, but the element-wise part still applies."""
    x = _positive((2, 3))
    check_node(op, {"x": x}, {"noop_with_empty_axes": 1}, opset=18, input_names=["x", ""])
    check_node(op, {"x": x}, {"noop_with_empty_axes": 1}, opset=18,
               initializers={"axes": np.zeros((0,), np.int64)})


def test_reduce_axes_from_a_graph_input():
    """Axes fed as a graph input are bound at build time (the backend rebuilds for them)."""
    x = rand((3, 4, 5))
    check_node("ReduceMean", {"x": x, "axes": np.array([2], np.int64)}, {"keepdims": 0}, opset=18)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
                                "ReduceL1", "ReduceMean"])
def test_reduce_int32(op):
    x = rand((3, 4), np.int32, low=-0.5, high=0.5)
    check_node(op, {"x": x}, {"keepdims": 0}, opset=18, initializers={"axes": np.array([1], np.int64)})


@pytest.mark.parametrize("op,math", [
    ("ReduceL2", lambda x: np.sqrt(np.sum(x * x, axis=1, keepdims=True))),
    ("ReduceLogSum", lambda x: np.log(np.sum(x, axis=1, keepdims=True))),
    ("ReduceLogSumExp", lambda x: np.log(np.sum(np.exp(x), axis=1, keepdims=True))),
])
def test_reduce_float_only_ops_on_integers(op, math):
    """Ember's op takes floats: integers (ONNX allows them before opset 28) compute in f64 and
    truncate back, as ONNX's reference does (it has no integer kernel for the log ones)."""
    x = np.array([[1, 2, 3, 4], [5, 1, 1, 9]], np.int64)
    model = node_model(op, {"x": x}, {"keepdims": 1}, opset=18, initializers={"axes": np.array([1], np.int64)})
    got = run_ember(model, {"x": x})[0]
    assert got.dtype == np.int64 and got.tolist() == math(x.astype(np.float64)).astype(np.int64).tolist()


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_bool(op):
    x = np.array([[True, False], [True, True], [False, False]])
    check_node(op, {"x": x}, {"keepdims": 0}, opset=20, initializers={"axes": np.array([1], np.int64)})


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceProd", "ReduceLogSumExp"])
def test_reduce_empty_set(op):
    x = np.zeros((2, 0, 4), np.float32)
    check_node(op, {"x": x}, {"keepdims": 1}, opset=18, reference="onnx",
               initializers={"axes": np.array([1], np.int64)})


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("attrs", [{}, {"axis": 1, "keepdims": 0}, {"axis": -1, "select_last_index": 1}])
def test_arg(op, attrs):
    x = np.round(rand((3, 4, 5)))  # rounding makes ties
    check_node(op, {"x": x}, attrs, opset=13)
    if "select_last_index" not in attrs:
        check_node(op, {"x": x}, attrs, opset=11)


@pytest.mark.parametrize("op,opset,reference", [("CumSum", 14, "ort"), ("CumSum", 11, "ort"),
                                                ("CumProd", 26, "onnx")])
@pytest.mark.parametrize("attrs", [{}, {"exclusive": 1}, {"reverse": 1}, {"exclusive": 1, "reverse": 1}])
@pytest.mark.parametrize("axis", [0, -1])
def test_cumulative(op, opset, reference, attrs, axis):
    x = rand((3, 4), np.float64 if op == "CumSum" else np.float32, low=0.5, high=1.5)
    check_node(op, {"x": x}, attrs, opset=opset, reference=reference,
               initializers={"axis": np.array(axis, np.int32)})


def test_cumulative_int32_and_axis_input():
    x = rand((2, 3), np.int32, low=-0.3, high=0.3)
    check_node("CumSum", {"x": x, "axis": np.array(1, np.int64)}, {"exclusive": 1}, opset=14)
    check_node("CumProd", {"x": x, "axis": np.array(0, np.int32)}, {"reverse": 1}, opset=26, reference="onnx")


@pytest.mark.parametrize("attrs", [{"axis": 1}, {"axis": -1, "largest": 0}, {"axis": 0, "sorted": 1}])
@pytest.mark.parametrize("opset", [10, 11, 24])
def test_topk(attrs, opset):
    if opset == 10 and ("largest" in attrs or "sorted" in attrs):
        pytest.skip("largest and sorted start at opset 11")
    x = np.round(rand((4, 5)) * 2) / 2  # ties
    check_node("TopK", {"x": x}, attrs, opset=opset, outputs=("values", "indices"),
               initializers={"k": np.array([3], np.int64)})


def test_topk_attribute_form_and_k_input():
    x = rand((3, 6))
    check_node("TopK", {"x": x}, {"k": 2}, opset=1, outputs=("values", "indices"))
    check_node("TopK", {"x": x, "k": np.array([4], np.int64)}, {}, opset=11, outputs=("values", "indices"))
    check_node("TopK", {"x": rand((3, 6), np.uint64)}, {}, opset=24, outputs=("values", "indices"),
               reference="onnx", initializers={"k": np.array([2], np.int64)})


def test_import_symbolic_batch():
    """Ops and types of a symbolic-batch model: axes become attributes, shapes stay symbolic."""
    import onnx
    from onnx import helper
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 8, 16])
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
        helper.make_node("ArgMax", ["m"], ["a"], axis=1, keepdims=0),
        helper.make_node("CumSum", ["x", "axis"], ["c"]),
        helper.make_node("TopK", ["c", "k"], ["v", "i"], axis=-1),
        helper.make_node("ReduceSumSquare", ["x"], ["s"], noop_with_empty_axes=1),
    ]
    inits = [onnx.numpy_helper.from_array(np.array([1], np.int64), "axes"),
             onnx.numpy_helper.from_array(np.array(2, np.int64), "axis"),
             onnx.numpy_helper.from_array(np.array([4], np.int64), "k")]
    outs = [helper.make_empty_tensor_value_info(n) for n in ("a", "v", "i", "s")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    text = str(imported(model))
    assert "ember.reduce_mean %x {axes = [1], keepdims = false} : f32[N,16]" in text
    assert "ember.argmax" in text and ": i64[N]" in text
    assert "ember.cumsum %x {axis = 2} : f32[N,8,16]" in text
    assert "ember.topk" in text and "f32[N,8,4], i64[N,8,4]" in text
    assert "ember.reduce_sum_square %x {axes = []} : f32[N,8,16]" in text


def test_missing_axes_value_is_reported():
    model = node_model("ReduceSum", {"x": rand((2, 3)), "axes": np.array([1], np.int64)}, opset=13)
    with pytest.raises(StaticInputsRequired, match="axes .* must be known at build time") as err:
        import_model(model)
    assert err.value.names == ("axes",)
