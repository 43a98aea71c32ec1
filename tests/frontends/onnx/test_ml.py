"""ai.onnx.ml import (LabelEncoder, TreeEnsemble, Binarizer, ArrayFeatureExtractor): Ember
against onnxruntime on one-node models, and the Ember ops they import to."""

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper
from onnx_check import check_model, imported, node_model, run_ember

ML = "ai.onnx.ml"


def ml_model(op_type, inputs, attrs, opset, outputs=("y",)):
    return node_model(op_type, inputs, attrs, opset=opset, domain=ML, outputs=outputs)


def op_names(model):
    return [op.name for op in imported(model).walk()]


def strs(*items):
    return np.array(items, dtype=object)


def rand(*shape, dtype=np.float32):
    return np.random.default_rng(2).uniform(-2, 2, shape).astype(dtype)


# -- Binarizer, ArrayFeatureExtractor ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_binarizer(dtype):
    x = (rand(3, 4) * 3).astype(dtype)
    x.flat[0] = 1  # at the threshold: 0
    m = ml_model("Binarizer", {"x": x}, {"threshold": 1.0}, 1)
    # onnxruntime implements Binarizer for f32 only.
    got, _ = check_model(m, {"x": x}, reference="ort" if dtype == np.float32 else "onnx")
    assert got[0].dtype == dtype
    assert op_names(m) == ["ember.constant", "ember.greater", "ember.cast"]


@pytest.mark.parametrize("x,indices", [(rand(3, 4), np.array([0, 3, 1])), (rand(2, 3, 5), np.array([[4, 0]])),
                                       (rand(5), np.array([2, 2]))])
def test_array_feature_extractor(x, indices):
    m = ml_model("ArrayFeatureExtractor", {"x": x, "i": indices}, {}, 1)
    got, _ = check_model(m, {"x": x, "i": indices})
    assert "ember.gather" in op_names(m)
    if x.ndim == 1:
        assert got[0].shape == (1, 2)  # a vector gives one row, as onnxruntime does


def test_array_feature_extractor_with_a_symbolic_batch():
    m = ml_model("ArrayFeatureExtractor", {"x": rand(2, 4), "i": np.array([1, 2])}, {}, 1)
    m.graph.input[0].CopyFrom(h.make_tensor_value_info("x", TP.FLOAT, ["N", 4]))
    assert str(imported(m).main.output_types[0]) == "f32[N,2]"


# -- LabelEncoder ---------------------------------------------------------------------------------
@pytest.mark.parametrize("x,attrs,opset", [
    (strs("a", "b", "d"), {"keys_strings": ["a", "b", "c"], "values_int64s": [0, 1, 2], "default_int64": 42}, 2),
    (strs("a", "b", "d"), {"keys_strings": ["a", "b", "c"], "values_int64s": [0, 1, 2]}, 2),
    (np.array([[1, 7], [3, 1]]), {"keys_int64s": [1, 3], "values_strings": ["one", "three"]}, 2),
    (np.array([0.5, 2.0, 9.0], np.float32), {"keys_floats": [0.5, 2.0], "values_floats": [1.5, -1.0]}, 2),
    (strs("a", "b", "d"), {"keys_tensor": numpy_helper.from_array(strs("a", "b"), "k"),
                           "values_tensor": numpy_helper.from_array(np.array([7, 8], np.int16), "v"),
                           "default_tensor": numpy_helper.from_array(np.array([42], np.int16), "d")}, 4),
])
def test_label_encoder(x, attrs, opset):
    m = ml_model("LabelEncoder", {"x": x}, attrs, opset)
    (got,) = run_ember(m, {"x": x})
    import onnxruntime as ort
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"x": x})
    assert got.shape == want.shape and got.tolist() == want.tolist()
    assert op_names(m) == ["ember.label_encoder"]


def test_label_encoder_casts_keys_to_the_input_type():
    """keys_int64s for an i32 input (onnxruntime rejects it; the keys' values are what matter)."""
    x = np.array([3, 4], np.int32)
    m = ml_model("LabelEncoder", {"x": x}, {"keys_int64s": [4], "values_strings": ["four"], "default_string": "?"}, 4)
    assert run_ember(m, {"x": x})[0].tolist() == ["?", "four"]


def test_label_encoder_v1_both_directions():
    classes = ["cat", "dog"]
    m = ml_model("LabelEncoder", {"x": strs("dog", "cow")}, {"classes_strings": classes, "default_int64": -5}, 1)
    assert run_ember(m, {"x": strs("dog", "cow")})[0].tolist() == [1, -5]
    m = ml_model("LabelEncoder", {"x": np.array([0, 3])}, {"classes_strings": classes}, 1)
    assert run_ember(m, {"x": np.array([0, 3])})[0].tolist() == ["cat", "_Unused"]


# -- TreeEnsemble ------------------------------------------------------------------------------------
def tree_model(dtype, **changes):
    t = lambda a: numpy_helper.from_array(np.asarray(a, dtype))  # noqa: E731
    attrs = {"nodes_featureids": [0, 1, 0], "nodes_splits": t([3.14, 1.2, 4.2]),
             "nodes_modes": numpy_helper.from_array(np.array([0, 1, 2], np.uint8)), "nodes_truenodeids": [1, 0, 1],
             "nodes_trueleafs": [0, 1, 1], "nodes_falsenodeids": [2, 2, 3], "nodes_falseleafs": [0, 1, 1],
             "tree_roots": [0], "leaf_targetids": [0, 1, 0, 1], "leaf_weights": t([5.23, 12.12, -12.23, 7.21]),
             "n_targets": 2, "aggregate_function": 1, "post_transform": 0}
    attrs.update(changes)
    x = np.array([[1.2, 3.4], [-0.12, 1.0], [4.14, 1.77], [5.0, 0.5]], dtype)
    return ml_model("TreeEnsemble", {"x": x}, attrs, 5), x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("changes", [{}, {"aggregate_function": 0}, {"post_transform": 3},
                                     {"nodes_missing_value_tracks_true": [1, 0, 0]}])
def test_tree_ensemble(dtype, changes):
    m, x = tree_model(dtype, **changes)
    x[1, 0] = np.nan
    check_model(m, {"x": x})
    assert op_names(m) == ["ember.tree_ensemble"]


def test_tree_ensemble_post_transform_numbers_follow_the_onnx_spec():
    """1 is SOFTMAX and 2 LOGISTIC, as ONNX says (onnxruntime 1.32 swaps the two)."""
    for number, name in [(1, "softmax"), (2, "logistic")]:
        m, x = tree_model(np.float32, post_transform=number)
        op = next(op for op in imported(m).walk() if op.name == "ember.tree_ensemble")
        assert op.post_transform == name
    m, x = tree_model(np.float32, post_transform=1)
    (got,) = run_ember(m, {"x": x})
    np.testing.assert_allclose(got.sum(axis=1), 1, rtol=1e-6)


def test_tree_ensemble_probit_is_unsupported():
    m, _ = tree_model(np.float32, post_transform=4)
    with pytest.raises(Exception, match="post_transform PROBIT is not supported"):
        imported(m)


def test_tree_ensemble_with_a_symbolic_batch():
    m, x = tree_model(np.float32)
    m.graph.input[0].CopyFrom(h.make_tensor_value_info("x", TP.FLOAT, ["N", 2]))
    assert str(imported(m).main.output_types[0]) == "f32[N,2]"
