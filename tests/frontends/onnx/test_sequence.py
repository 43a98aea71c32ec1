"""Sequence, optional and SequenceMap import: Ember against onnxruntime on one-node
models (sequences as graph inputs and outputs), and the types they import to."""

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as h
from onnx_check import check_model, check_node, imported, run_ember

F32, I64 = TP.FLOAT, TP.INT64


def rand(*shape):
    return np.random.default_rng(1).uniform(-2, 2, shape).astype(np.float32)


def seq_vi(name, elem=F32, shape=None):
    return h.make_tensor_sequence_value_info(name, elem, shape)


def vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, opset=23):
    return h.make_model(h.make_graph(nodes, "g", inputs, outputs), opset_imports=[h.make_opsetid("", opset)])


SEQ = [rand(2, 3), rand(1, 3), rand(4, 3)]


def test_sequence_construct_and_length():
    check_node("SequenceConstruct", {"a": rand(2, 3), "b": rand(5, 3)})
    check_node("SequenceLength", {"s": SEQ})


@pytest.mark.parametrize("position", [None, 0, -1, 3])
def test_sequence_insert(position):
    inputs = {"s": SEQ, "t": rand(2, 3)}
    if position is not None:
        inputs["p"] = np.array(position, np.int64)
    check_node("SequenceInsert", inputs)


@pytest.mark.parametrize("position", [None, 0, -2, np.array([1], np.int32)])
def test_sequence_erase_and_at(position):
    inputs = {"s": SEQ}
    if position is not None:
        inputs["p"] = np.array(position, np.int64) if not isinstance(position, np.ndarray) else position
    check_node("SequenceErase", inputs)
    if position is not None:
        check_node("SequenceAt", inputs)


def test_sequence_empty_then_insert():
    m = model([h.make_node("SequenceEmpty", [], ["e"], dtype=I64), h.make_node("SequenceInsert", ["e", "x"], ["s"])],
              [vi("x", I64, [3])], [seq_vi("s", I64)])
    check_model(m, {"x": np.arange(3)})
    module = imported(m)
    assert str(module.main.output_types[0]) == "seq<i64[*]>"


@pytest.mark.parametrize("inputs,attrs", [
    ({"x": rand(3, 6), "split": np.array(2, np.int64)}, {"axis": 1}),
    ({"x": rand(3, 6), "split": np.array(4, np.int64)}, {"axis": 1}),
    ({"x": rand(3, 6), "split": np.array([1, 2], np.int64)}, {"axis": 0}),
    ({"x": rand(3, 6)}, {"axis": 1, "keepdims": 0}),
    ({"x": rand(3, 6)}, {"axis": -2}),
])
def test_split_to_sequence(inputs, attrs):
    check_node("SplitToSequence", inputs, attrs)


@pytest.mark.parametrize("attrs", [{"axis": 0}, {"axis": 1, "new_axis": 1}, {"axis": -1}])
def test_concat_from_sequence(attrs):
    seq = [rand(2, 3), rand(2, 3)] if attrs.get("new_axis") else SEQ if attrs["axis"] == 0 else [rand(3, 2), rand(3, 1)]
    check_node("ConcatFromSequence", {"s": seq}, attrs)


def test_split_then_concat_imports_with_static_parts():
    m = model([h.make_node("SplitToSequence", ["x"], ["s"], axis=1, keepdims=0),
               h.make_node("ConcatFromSequence", ["s"], ["y"], axis=0, new_axis=1)],
              [vi("x", F32, ["N", 4])], [vi("y", F32, None)])
    module = imported(m)
    ops = {op.name: op for op in module.walk()}
    assert str(ops["ember.split_to_sequence"].results[0].type) == "seq<f32[N]>"
    assert str(module.main.output_types[0]) == "f32[?,N]"
    check_model(m, {"x": rand(5, 4)})


# -- optionals --------------------------------------------------------------------------------------
def test_optional_of_a_tensor_and_of_nothing():
    opt_t = h.make_optional_type_proto(h.make_tensor_type_proto(F32, [2]))
    m = model([h.make_node("Optional", ["x"], ["o"]), h.make_node("OptionalHasElement", ["o"], ["has"]),
               h.make_node("OptionalGetElement", ["o"], ["back"]),
               h.make_node("Optional", [], ["none"], type=h.make_tensor_type_proto(F32, [2])),
               h.make_node("OptionalHasElement", ["none"], ["has_none"])],
              [vi("x", F32, [2])], [vi("has", TP.BOOL, []), vi("back", F32, [2]), vi("has_none", TP.BOOL, []),
                                    h.make_value_info("o", opt_t)], opset=18)
    x = rand(2)
    got, _ = check_model(m, {"x": x})
    assert got[0] and not got[2]
    module = imported(m)
    assert str(module.main.output_types[3]) == "opt<f32[2]>"


def test_optional_graph_inputs_given_none_or_a_value():
    opt_t = h.make_optional_type_proto(h.make_sequence_type_proto(h.make_tensor_type_proto(TP.INT32, None)))
    m = model([h.make_node("OptionalHasElement", ["o"], ["has"])], [h.make_value_info("o", opt_t)],
              [vi("has", TP.BOOL, [])], opset=18)
    assert run_ember(m, {"o": None})[0] == np.array(False)
    assert run_ember(m, {"o": [np.arange(3, dtype=np.int32)]})[0] == np.array(True)
    get = model([h.make_node("OptionalGetElement", ["o"], ["s"])], [h.make_value_info("o", opt_t)],
                [seq_vi("s", TP.INT32)], opset=18)
    (got,) = run_ember(get, {"o": [np.arange(3, dtype=np.int32)]})
    assert [a.tolist() for a in got] == [[0, 1, 2]]


def test_optional_has_element_without_an_input_and_get_element_of_a_plain_tensor():
    m = model([h.make_node("OptionalHasElement", [""], ["has"]), h.make_node("OptionalGetElement", ["x"], ["y"])],
              [vi("x", F32, [3])], [vi("has", TP.BOOL, []), vi("y", F32, [3])], opset=18)
    x = rand(3)
    has, y = run_ember(m, {"x": x})
    assert has == np.array(False) and np.array_equal(y, x)
    old = model([h.make_node("OptionalGetElement", ["x"], ["y"])], [vi("x", F32, [3])], [vi("y", F32, [3])],
                opset=15)
    with pytest.raises(Exception, match="before opset 18 OptionalGetElement takes an optional"):
        imported(old)


# -- SequenceMap -------------------------------------------------------------------------------------
def sequence_map_model(body_nodes, body_inputs, body_outputs, inputs, outputs):
    body = h.make_graph(body_nodes, "body", body_inputs, body_outputs)
    node = h.make_node("SequenceMap", [i.name for i in inputs], [o.name for o in outputs], body=body)
    return model([node], inputs, outputs, opset=17)


def test_sequence_map_over_two_sequences_and_a_tensor():
    m = sequence_map_model([h.make_node("Add", ["a", "b"], ["s"]), h.make_node("Mul", ["s", "t"], ["p"])],
                           [vi("a", F32, ["N"]), vi("b", F32, ["N"]), vi("t", F32, [1])],
                           [vi("s", F32, ["N"]), vi("p", F32, ["N"])],
                           [seq_vi("x0", F32, ["N"]), seq_vi("x1", F32, ["N"]), vi("t", F32, [1])],
                           [seq_vi("y0"), seq_vi("y1")])
    xs = [rand(3), rand(5), rand(1)]
    check_model(m, {"x0": xs, "x1": [x * 2 for x in xs], "t": np.array([0.5], np.float32)})
    module = imported(m)
    assert "ember.loop" in [op.name for op in module.walk()]
    assert [str(t) for t in module.main.output_types] == ["seq<f32[*]>", "seq<f32[*]>"]


def test_sequence_map_extract_shapes():
    m = sequence_map_model([h.make_node("Shape", ["x"], ["s"])], [vi("x", F32, ["H", "W", 3])], [vi("s", I64, [3])],
                           [seq_vi("xs", F32, ["H", "W", 3])], [seq_vi("shapes", I64)])
    (got,) = run_ember(m, {"xs": [rand(4, 2, 3), rand(1, 5, 3)]})
    assert [g.tolist() for g in got] == [[4, 2, 3], [1, 5, 3]]


def test_sequence_map_of_an_empty_sequence():
    m = sequence_map_model([h.make_node("Neg", ["x"], ["y"])], [vi("x", F32, [2])], [vi("y", F32, [2])],
                           [seq_vi("xs", F32, [2])], [seq_vi("ys")])
    assert run_ember(m, {"xs": []})[0] == []
    check_model(m, {"xs": [rand(2)]})
