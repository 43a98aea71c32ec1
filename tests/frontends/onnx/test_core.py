"""Converters of the small ops every exported graph has (frontends/onnx/ops/core.py):
constants, identity, casts, shape queries, views, joins, gathers, generators; each
opset form against onnxruntime, and symbolic shape chains kept symbolic."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_check import check_model, check_node, imported, node_model, run_ember

from ember.errors import UnsupportedOpError

RNG = np.random.default_rng(1)


def i64(*v):
    return np.array(v, np.int64)


def rand(*shape, dtype=np.float32):
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(-20, 20, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def constant_model(**attrs):
    node = helper.make_node("Constant", [], ["y"], **attrs)
    graph = helper.make_graph([node], "c", [], [helper.make_empty_tensor_value_info("y")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


# -- constants, identity, casts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("attrs", [
    {"value": onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3))},
    {"value_float": 2.5}, {"value_floats": [1.0, -2.0]}, {"value_int": 7}, {"value_ints": [3, 4, 5]},
])
def test_constant(attrs):
    check_model(constant_model(**attrs), {})


def test_constant_sparse_is_unsupported():
    sparse = helper.make_sparse_tensor(onnx.numpy_helper.from_array(np.float32([1.0]), "v"),
                                       onnx.numpy_helper.from_array(i64(2), "i"), [4])
    with pytest.raises(UnsupportedOpError, match="sparse constants"):
        imported(constant_model(sparse_value=sparse))


def test_identity_and_casts():
    x = rand(2, 3)
    check_node("Identity", {"x": x})
    check_node("Cast", {"x": x * 10}, {"to": TensorProto.INT32})
    check_node("Cast", {"x": x}, {"to": TensorProto.FLOAT16})
    check_node("CastLike", {"x": x * 10, "like": np.zeros(1, np.int8)})
    check_node("CastLike", {"x": rand(3, dtype=np.int64), "like": np.zeros((), np.float64)})


# -- shape queries --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attrs", [{}, {"start": 1}, {"end": -1}, {"start": -2, "end": 3}, {"start": 3, "end": 1}])
def test_shape(attrs):
    check_node("Shape", {"x": rand(2, 3, 4)}, attrs, opset=15)


def test_shape_before_15_and_size():
    check_node("Shape", {"x": rand(2, 3)}, opset=13)
    check_node("Size", {"x": rand(2, 3, 4)})


# -- views ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,allowzero", [((4, 6), 0), ((-1, 4), 0), ((0, -1), 0), ((2, 0, 2, 2), 0),
                                             ((24,), 0)])
def test_reshape(shape, allowzero):
    check_node("Reshape", {"x": rand(2, 3, 4)}, {"allowzero": allowzero}, initializers={"s": i64(*shape)})


def test_reshape_allowzero_and_graph_input_shape():
    check_node("Reshape", {"x": rand(0, 3)}, {"allowzero": 1}, initializers={"s": i64(3, 0)})
    check_node("Reshape", {"x": rand(2, 3), "s": i64(3, -1)})  # the shape is frozen at build time


def test_reshape_opset1_attribute():
    model = node_model("Reshape", {"x": rand(2, 3)}, {"shape": [3, 2]}, opset=1)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = run_ember(model, {"x": x})
    assert y.tolist() == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.parametrize("axis", [0, 1, 3, -1, -3])
def test_flatten(axis):
    check_node("Flatten", {"x": rand(2, 3, 1, 2)}, {"axis": axis})


def test_squeeze_unsqueeze_every_form():
    x = rand(3, 1, 4, 1)
    check_node("Squeeze", {"x": x}, {"axes": [1, -1]}, opset=11)
    check_node("Squeeze", {"x": x}, opset=11)
    check_node("Squeeze", {"x": x}, initializers={"a": i64(-1)})
    check_node("Squeeze", {"x": x}, opset=13)
    check_node("Unsqueeze", {"x": rand(3, 4)}, {"axes": [0, 3]}, opset=11)
    check_node("Unsqueeze", {"x": rand(3, 4)}, initializers={"a": i64(-1, 1)})


# -- joins, permutes, gathers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    check_node("Concat", {"a": rand(2, 3), "b": rand(2, 3), "c": rand(2, 3)}, {"axis": axis})


def test_concat_opset1_default_axis():
    model = node_model("Concat", {"a": rand(2, 1), "b": rand(2, 2)}, opset=1)
    (y,) = run_ember(model, {"a": np.zeros((2, 1), np.float32), "b": np.ones((2, 2), np.float32)})
    assert y.tolist() == [[0, 1, 1], [0, 1, 1]]


@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1]])
def test_transpose(perm):
    check_node("Transpose", {"x": rand(2, 3, 4)}, {"perm": perm} if perm else {})


@pytest.mark.parametrize("axis,idx", [(0, i64(2, 0, -1)), (1, np.array([[1, 0], [3, -4]], np.int32)), (-1, i64(1))])
def test_gather(axis, idx):
    check_node("Gather", {"x": rand(3, 4), "i": idx}, {"axis": axis})


# -- generators ---------------------------------------------------------------------------------------------------
def test_constant_of_shape_and_expand():
    check_node("ConstantOfShape", {}, initializers={"s": i64(2, 3)})
    check_node("ConstantOfShape", {}, {"value": onnx.numpy_helper.from_array(np.array([7], np.int32))},
               initializers={"s": i64(3)})
    check_node("Expand", {"x": rand(3, 1)}, initializers={"s": i64(2, 1, 4)})
    check_node("Expand", {"x": rand(1, 4, dtype=np.int64), "s": i64(3, 1)})


@pytest.mark.parametrize("start,limit,delta", [(0, 10, 3), (10, 0, -2), (5, 5, 1)])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32])
def test_range(start, limit, delta, dtype):
    scalar = [np.array(v, dtype) for v in (start, limit, delta)]
    check_node("Range", {"s": scalar[0], "l": scalar[1], "d": scalar[2]})


# -- symbolic shape chains ---------------------------------------------------------------------------------------
def test_symbolic_shape_chains_stay_symbolic():
    """Shape -> Gather -> Mul -> Concat -> Reshape, Range up to a dim, ConstantOfShape of a shape."""
    c = {n: onnx.numpy_helper.from_array(a, n) for n, a in
         [("zero", i64(0)), ("one", i64(1)), ("eight", i64(8)), ("z", np.array(0, np.int64)),
          ("o", np.array(1, np.int64))]}
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
        helper.make_node("Gather", ["sh", "one"], ["s"], axis=0),
        helper.make_node("Mul", ["n", "s"], ["ns"]),
        helper.make_node("Concat", ["ns", "eight"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Shape", ["x"], ["s_scalar_vec"], start=1, end=2),
        helper.make_node("Squeeze", ["s_scalar_vec"], ["S"]),
        helper.make_node("Range", ["z", "S", "o"], ["pos"]),
        helper.make_node("ConstantOfShape", ["sh"], ["zeros"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("flat", "zeros")]
        + [helper.make_tensor_value_info("pos", TensorProto.INT64, None)],
        list(c.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    text = str(imported(model))
    assert "-> (flat: f32[N*S,8], zeros: f32[N,S,8], pos: i64[S])" in text
    x = rand(2, 8, 8)
    check_model(model, {"x": x})
