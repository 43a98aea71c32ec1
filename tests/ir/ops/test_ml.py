"""ai.onnx.ml ops (label_encoder, tree_ensemble): against onnx.reference, hand-computed
cases, symbolic shapes, errors."""

import numpy as np
import pytest
from onnx import numpy_helper
from oracle import assert_close, ember_op, onnx_op

from ember import ir
from ember.errors import ShapeError

ML = "ai.onnx.ml"


def strs(*items):
    return np.array(items, dtype=object)


# -- label_encoder ---------------------------------------------------------------------------------
@pytest.mark.parametrize("x,attrs,onnx_attrs", [
    (strs("a", "b", "d", "c", "g"),
     {"keys": strs("a", "b", "c"), "values": np.array([0, 1, 2]), "default": np.array(42)},
     {"keys_strings": ["a", "b", "c"], "values_int64s": [0, 1, 2], "default_int64": 42}),
    (np.array([[3, 1], [7, 3]]),
     {"keys": np.array([1, 3]), "values": strs("one", "three"), "default": np.array("_Unused", dtype=object)},
     {"keys_int64s": [1, 3], "values_strings": ["one", "three"], "default_string": "_Unused"}),
    (np.array([0.5, -1.0, 2.0], np.float32),
     {"keys": np.array([0.5, 2.0], np.float32), "values": np.array([5.0, 6.0], np.float32),
      "default": np.array(-0.0, np.float32)},
     {"keys_floats": [0.5, 2.0], "values_floats": [5.0, 6.0]}),
    (strs("a", "b", "d"),
     {"keys": strs("a", "b"), "values": np.array([0, 1], np.int16), "default": np.array(42, np.int16)},
     {"keys_tensor": numpy_helper.from_array(strs("a", "b")),
      "values_tensor": numpy_helper.from_array(np.array([0, 1], np.int16)),
      "default_tensor": numpy_helper.from_array(np.array([42], np.int16))}),
])
def test_label_encoder_vs_onnx(x, attrs, onnx_attrs):
    (got,) = ember_op("ember.label_encoder", [x], attrs)
    (want,) = onnx_op("LabelEncoder", [x], onnx_attrs, opset=4, domain=ML)
    assert got.dtype == attrs["values"].dtype and got.shape == x.shape
    assert got.tolist() == np.asarray(want).tolist()


def test_label_encoder_by_hand():
    x = np.array([np.nan, 1.0, -0.0, 2.0, 3.0])
    attrs = {"keys": np.array([1.0, np.nan, 0.0, 1.0]), "values": np.array([10, 20, 30, 40]),
             "default": np.array(-1)}
    (got,) = ember_op("ember.label_encoder", [x], attrs)
    assert got.tolist() == [20, 40, 30, -1, -1]  # NaN matches the NaN key; the last 1.0 wins; -0.0 == 0.0
    (got,) = ember_op("ember.label_encoder", [np.array([5, 6], np.int32)],
                      {"keys": np.array([6], np.int32), "values": np.array([1.5], np.float32),
                       "default": np.array(0.25, np.float32)})
    assert got.dtype == np.float32 and got.tolist() == [0.25, 1.5]
    (got,) = ember_op("ember.label_encoder", [np.array([[1, 2]])],
                      {"keys": np.array([2]), "values": strs("two"), "default": np.array("none", dtype=object)})
    assert got.dtype == object and got.tolist() == [["none", "two"]]
    assert all(type(s) is str for s in got.ravel())  # not 0-d arrays inside the object array


def test_label_encoder_types_and_errors():
    b = ir.Builder()
    x = b.input("x", ir.string["N", 3])
    good = {"keys": strs("a"), "values": np.array([1]), "default": np.array(0)}
    assert str(b.label_encoder(x, **good).type) == "i64[N,3]"
    with pytest.raises(ShapeError, match="keys are i64; they must have x's element type str"):
        b.label_encoder(x, **{**good, "keys": np.array([1])})
    with pytest.raises(ShapeError, match="keys and values must be 1-D of one length"):
        b.label_encoder(x, **{**good, "values": np.array([1, 2])})
    with pytest.raises(ShapeError, match="default must be one i64 element"):
        b.label_encoder(x, **{**good, "default": np.array(0.5)})


# -- tree_ensemble ---------------------------------------------------------------------------------
def tree_attrs(dtype, **changes):
    """A two-target tree: node 0 (x0 <= 3.14) -> node 1 (x0 <= 1.2) | node 2 (x0 <= 4.2)."""
    attrs = {"nodes_featureids": [0, 0, 0], "nodes_splits": np.array([3.14, 1.2, 4.2], dtype),
             "nodes_modes": [0, 0, 0], "nodes_truenodeids": [1, 0, 1], "nodes_trueleafs": [0, 1, 1],
             "nodes_falsenodeids": [2, 2, 3], "nodes_falseleafs": [0, 1, 1], "tree_roots": [0],
             "leaf_targetids": [0, 1, 0, 1], "leaf_weights": np.array([5.23, 12.12, -12.23, 7.21], dtype),
             "n_targets": 2}
    attrs.update(changes)
    return attrs


def onnx_tree_attrs(attrs):
    out = {}
    for k, v in attrs.items():
        if k == "nodes_modes":
            out[k] = numpy_helper.from_array(np.array(v, np.uint8))
        elif isinstance(v, np.ndarray):
            out[k] = numpy_helper.from_array(v)
        elif k == "aggregate_function":
            out[k] = ["average", "sum", "min", "max"].index(v)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("aggregate", ["sum", "average"])
def test_tree_ensemble_vs_onnx(dtype, aggregate):
    x = np.array([[1.2, 3.4], [-0.12, 1.66], [4.14, 1.77], [3.5, 0.0], [9.0, 1.0]], dtype)
    attrs = tree_attrs(dtype, aggregate_function=aggregate)
    (got,) = ember_op("ember.tree_ensemble", [x], attrs)
    (want,) = onnx_op("TreeEnsemble", [x], onnx_tree_attrs(attrs), opset=5, domain=ML)
    assert got.dtype == dtype
    assert_close(got, want)


def test_tree_ensemble_set_membership_vs_onnx():
    x = np.array([[1.2], [3.4], [-0.12], [np.nan], [12.0], [7.0]], np.float32)
    attrs = {"nodes_featureids": [0, 0, 0], "nodes_splits": np.array([11, 232344, np.nan], np.float32),
             "nodes_modes": [0, 6, 6], "nodes_truenodeids": [1, 0, 1], "nodes_trueleafs": [0, 1, 1],
             "nodes_falsenodeids": [2, 2, 3], "nodes_falseleafs": [1, 0, 1], "tree_roots": [0],
             "leaf_targetids": [0, 1, 2, 3], "leaf_weights": np.array([1, 10, 1000, 100], np.float32),
             "membership_values": np.array([1.2, 3.7, 8, 9, np.nan, 12, 7, np.nan], np.float32), "n_targets": 4}
    (got,) = ember_op("ember.tree_ensemble", [x], attrs)
    (want,) = onnx_op("TreeEnsemble", [x], onnx_tree_attrs(attrs), opset=5, domain=ML)
    assert_close(got, want)
    assert got.tolist()[0] == [1, 0, 0, 0] and got.tolist()[3] == [0, 0, 1000, 0]


def two_trees(**changes):
    """Tree 0: x0 < 0 ? leaf 0 (t0, 1.0) : leaf 1 (t1, 2.0); tree 1: the leaf 2 (t1, 4.0) alone."""
    attrs = {"nodes_featureids": [0, 0], "nodes_splits": np.array([0.0, 0.0], np.float32), "nodes_modes": [1, 0],
             "nodes_truenodeids": [0, 2], "nodes_trueleafs": [1, 1], "nodes_falsenodeids": [1, 2],
             "nodes_falseleafs": [1, 1], "tree_roots": [0, 1], "leaf_targetids": [0, 1, 1],
             "leaf_weights": np.array([1.0, 2.0, 4.0], np.float32), "n_targets": 3}
    attrs.update(changes)
    return attrs


def test_tree_ensemble_aggregates_by_hand():
    x = np.array([[-1.0], [1.0], [np.nan]], np.float32)
    results = {agg: ember_op("ember.tree_ensemble", [x], two_trees(aggregate_function=agg))[0].tolist()
               for agg in ("sum", "average", "min", "max")}
    # Row 0 reaches leaves 0 (t0) and 2 (t1); rows 1 and 2 (NaN < 0 is false) leaves 1 and 2 (both t1).
    assert results["sum"] == [[1, 4, 0], [0, 6, 0], [0, 6, 0]]
    assert results["average"] == [[0.5, 2, 0], [0, 3, 0], [0, 3, 0]]
    assert results["min"] == [[1, 4, 0], [0, 2, 0], [0, 2, 0]]  # targets no leaf reaches stay 0
    assert results["max"] == [[1, 4, 0], [0, 4, 0], [0, 4, 0]]
    (got,) = ember_op("ember.tree_ensemble", [x], two_trees(nodes_missing_value_tracks_true=[1, 0]))
    assert got.tolist()[2] == [1, 4, 0]  # NaN takes the true branch at node 0


def test_tree_ensemble_post_transforms_by_hand():
    x = np.array([[-1.0], [1.0]], np.float32)
    scores = np.array([[1, 4, 0], [0, 6, 0]], np.float64)
    (got,) = ember_op("ember.tree_ensemble", [x], two_trees(post_transform="logistic"))
    assert_close(got, (1 / (1 + np.exp(-scores))).astype(np.float32))
    (got,) = ember_op("ember.tree_ensemble", [x], two_trees(post_transform="softmax"))
    e = np.exp(scores)
    assert_close(got, (e / e.sum(axis=1, keepdims=True)).astype(np.float32))
    (got,) = ember_op("ember.tree_ensemble", [x], two_trees(post_transform="softmax_zero"))
    e0 = np.exp(np.array([1.0, 4.0]))
    assert_close(got, np.array([[*(e0 / e0.sum()), 0], [0, 1, 0]], np.float32))


def test_tree_ensemble_f16_accumulates_in_f32():
    attrs = two_trees(nodes_splits=np.array([0, 0], np.float16), leaf_weights=np.array([1, 2048, 1], np.float16),
                      leaf_targetids=[0, 0, 0], tree_roots=[0, 1, 1])
    (got,) = ember_op("ember.tree_ensemble", [np.array([[1.0]], np.float16)], attrs)
    # 2048 + 1 + 1 = 2050 in f32, exact in f16; adding 1 twice in f16 would stay at 2048.
    assert got.dtype == np.float16 and got.tolist() == [[2050, 0, 0]]


def test_tree_ensemble_types_and_errors():
    b = ir.Builder()
    x = b.input("x", ir.f64["N", 2])
    assert str(b.tree_ensemble(x, **tree_attrs(np.float64)).type) == "f64[N,2]"
    cases = [
        ({"nodes_modes": [0, 0]}, "every nodes_\\* list needs 3 entries"),
        ({"nodes_modes": [0, 7, 0]}, "nodes_modes must be in 0..6"),
        ({"nodes_truenodeids": [1, 4, 1]}, "node 1's true branch leaf 4 is out of range"),
        ({"tree_roots": [5]}, "tree_roots"),
        ({"leaf_targetids": [0, 1, 0, 2]}, "leaf_targetids must lie in 0..n_targets-1"),
        ({"nodes_modes": [0, 6, 0]}, "membership_values closes 0 sets with NaN; the 1 member nodes need 1"),
        ({"nodes_featureids": [0, 2, 0]}, "nodes_featureids must lie in 0..1"),
        ({"leaf_weights": np.array([1.0, 2.0, 3.0, 4.0], np.float32)}, "leaf_weights is f32"),
    ]
    for change, message in cases:
        with pytest.raises(ShapeError, match=message):
            b.tree_ensemble(x, **tree_attrs(np.float64, **change))
    with pytest.raises(ShapeError, match="x must be a float \\[N, F\\] tensor"):
        b.tree_ensemble(b.input("v", ir.f64[4]), **tree_attrs(np.float64))
