"""If, Loop and Scan import: Ember (the interpreter) against onnxruntime on small models,
and the Ember ops and types they import to."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as h
from onnx_check import check_model, imported, run_ember

from ember.errors import UnsupportedOpError
from ember.frontends.onnx.importer import StaticInputsRequired

F32, I64, BOOL = TP.FLOAT, TP.INT64, TP.BOOL


def vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, opset=23, initializers=()):
    graph = h.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])


def rand(*shape):
    return np.random.default_rng(0).uniform(-2, 2, shape).astype(np.float32)


def op_names(module):
    return [op.name for op in module.walk()]


# -- If --------------------------------------------------------------------------------------------
def if_model(then_nodes, then_out, else_nodes, else_out, inputs, outputs, opset=23):
    then_g = h.make_graph(then_nodes, "then", [], then_out)
    else_g = h.make_graph(else_nodes, "else", [], else_out)
    node = h.make_node("If", ["c"], [o.name for o in outputs], then_branch=then_g, else_branch=else_g)
    return model([node], [vi("c", BOOL, []), *inputs], outputs, opset)


@pytest.mark.parametrize("flag", [True, False])
def test_if_branches_read_outer_values_and_differ_in_shape(flag):
    m = if_model([h.make_node("Add", ["x", "x"], ["t"])], [vi("t", F32, [2, 3])],
                 [h.make_node("Relu", ["z"], ["e"])], [vi("e", F32, [4, 3])],
                 [vi("x", F32, [2, 3]), vi("z", F32, [4, 3])], [vi("r", F32, None)])
    got, _ = check_model(m, {"c": np.array(flag), "x": rand(2, 3), "z": rand(4, 3)})
    assert got[0].shape == ((2, 3) if flag else (4, 3))
    module = imported(m)
    assert "ember.if" in op_names(module)
    assert str(module.main.output_types[0]) == "f32[?,3]"


@pytest.mark.parametrize("flag", [True, False])
def test_if_with_sequence_outputs(flag):
    seq = h.make_tensor_sequence_value_info
    m = if_model([h.make_node("SequenceConstruct", ["x", "x"], ["t"])], [seq("t", F32, None)],
                 [h.make_node("SequenceConstruct", ["x"], ["e"])], [seq("e", F32, None)],
                 [vi("x", F32, [3])], [seq("r", F32, None)], opset=13)
    got, _ = check_model(m, {"c": np.array(flag), "x": rand(3)})
    assert len(got[0]) == (2 if flag else 1)


@pytest.mark.parametrize("flag", [True, False])
def test_if_with_optional_outputs(flag):
    seq_t = h.make_sequence_type_proto(h.make_tensor_type_proto(F32, [3]))
    opt_t = h.make_optional_type_proto(seq_t)
    m = if_model([h.make_node("Optional", [], ["t"], type=seq_t)], [h.make_value_info("t", opt_t)],
                 [h.make_node("SequenceConstruct", ["x"], ["s"]), h.make_node("Optional", ["s"], ["e"])],
                 [h.make_value_info("e", opt_t)], [vi("x", F32, [3])], [h.make_value_info("r", opt_t)], opset=16)
    x = rand(3)
    (got,) = run_ember(m, {"c": np.array(flag), "x": x})
    if flag:
        assert got is None
    else:
        assert len(got) == 1 and np.array_equal(got[0], x)


def test_if_with_a_known_condition_imports_only_the_taken_branch():
    """The else branch would need the graph input `shape` at build time; it is never imported."""
    then_g = h.make_graph([h.make_node("Neg", ["x"], ["t"])], "then", [], [vi("t", F32, [3])])
    else_g = h.make_graph([h.make_node("Reshape", ["x", "shape"], ["e"])], "else", [], [vi("e", F32, None)])
    node = h.make_node("If", ["c"], ["r"], then_branch=then_g, else_branch=else_g)
    m = model([node], [vi("x", F32, [3]), vi("shape", I64, [1])], [vi("r", F32, None)],
              initializers=[onnx.numpy_helper.from_array(np.array(True), "c")])
    module = imported(m)
    assert "ember.if" not in op_names(module) and "ember.neg" in op_names(module)
    x = rand(3)
    got, _ = check_model(m, {"x": x, "shape": np.array([3])})
    np.testing.assert_array_equal(got[0], -x)


def reshape_if(shape_len):
    then_g = h.make_graph([h.make_node("Neg", ["x"], ["t"])], "then", [], [vi("t", F32, [3])])
    else_g = h.make_graph([h.make_node("Reshape", ["x", "shape"], ["e"])], "else", [], [vi("e", F32, None)])
    node = h.make_node("If", ["c"], ["r"], then_branch=then_g, else_branch=else_g)
    return model([node], [vi("c", BOOL, []), vi("x", F32, [3]), vi("shape", I64, [shape_len])], [vi("r", F32, None)])


@pytest.mark.parametrize("flag", [True, False])
def test_if_whose_branch_needs_a_graph_input_at_build_time(flag):
    """The backend freezes that input (as for a top-level Reshape); then both branches import."""
    m = reshape_if(1)
    with pytest.raises(StaticInputsRequired) as err:
        imported(m)
    assert err.value.names == ("shape",)
    got, _ = check_model(m, {"c": np.array(flag), "x": rand(3), "shape": np.array([3])})
    module = imported(m, frozen_inputs={"shape": np.array([3])})
    assert "ember.if" in op_names(module) and str(module.main.output_types[0]) == "f32[3]"


@pytest.mark.parametrize("flag", [True, False])
def test_if_whose_branches_differ_in_rank_is_resolved_at_build_time(flag):
    """An unranked result would stop most ops, so the condition (a graph input) is frozen too."""
    m = reshape_if(2)
    with pytest.raises(StaticInputsRequired) as err:
        imported(m, frozen_inputs={"shape": np.array([1, 3])})
    assert err.value.names == ("c",)
    got, _ = check_model(m, {"c": np.array(flag), "x": rand(3), "shape": np.array([1, 3])})
    assert got[0].shape == ((3,) if flag else (1, 3))
    module = imported(m, frozen_inputs={"shape": np.array([1, 3]), "c": np.array(flag)})
    assert "ember.if" not in op_names(module)


# -- Loop ------------------------------------------------------------------------------------------
def loop_model(body_nodes, body_inputs, body_outputs, loop_inputs, graph_inputs, outputs, opset=23,
               initializers=()):
    body = h.make_graph(body_nodes, "body", body_inputs, body_outputs)
    node = h.make_node("Loop", loop_inputs, [o.name for o in outputs], body=body)
    return model([node], graph_inputs, outputs, opset, initializers)


def test_loop_with_trip_count_condition_scan_output_and_outer_value():
    body = [h.make_node("Add", ["v", "x"], ["v2"]), h.make_node("ReduceSum", ["v2"], ["s"], keepdims=0),
            h.make_node("Less", ["s", "limit"], ["c2"]), h.make_node("Mul", ["v2", "v2"], ["sq"])]
    m = loop_model(body, [vi("i", I64, []), vi("c", BOOL, []), vi("v", F32, [3])],
                   [vi("c2", BOOL, []), vi("v2", F32, [3]), vi("sq", F32, [3])], ["M", "cond", "v0"],
                   [vi("M", I64, []), vi("cond", BOOL, []), vi("v0", F32, [3]), vi("x", F32, [3]),
                    vi("limit", F32, [])], [vi("vf", F32, [3]), vi("scan", F32, [None, 3])])
    x = np.array([1, 2, 3], np.float32)
    for trip, limit in [(5, 100.0), (5, 20.0), (0, 1.0)]:
        got, _ = check_model(m, {"M": np.array(trip), "cond": np.array(True), "v0": np.zeros(3, np.float32),
                                 "x": x, "limit": np.array(limit, np.float32)})
        assert got[1].shape[1:] == (3,)
    module = imported(m)
    assert "ember.loop" in op_names(module)
    assert [str(t) for t in module.main.output_types] == ["f32[3]", "f32[?,3]"]


def test_loop_without_trip_count_is_a_while_loop():
    body = [h.make_node("Add", ["v", "v"], ["v2"]), h.make_node("Cast", ["i"], ["fi"], to=F32),
            h.make_node("Less", ["fi", "three"], ["c2"])]
    three = onnx.numpy_helper.from_array(np.array(3.0, np.float32), "three")
    m = loop_model(body, [vi("i", I64, []), vi("c", BOOL, []), vi("v", F32, [2])],
                   [vi("c2", BOOL, []), vi("v2", F32, [2])], ["", "cond", "v0"],
                   [vi("cond", BOOL, []), vi("v0", F32, [2])], [vi("vf", F32, [2])], initializers=[three])
    got, _ = check_model(m, {"cond": np.array(True), "v0": np.ones(2, np.float32)})
    np.testing.assert_array_equal(got[0], [16, 16])  # iterations 0..3: the 4th yields false


def test_loop_without_condition_ignores_the_body_condition_and_takes_1_element_counters():
    """The body declares its iteration number and condition [1], as some exporters do."""
    body = [h.make_node("Cast", ["i"], ["fi"], to=F32), h.make_node("Add", ["v", "fi"], ["v2"]),
            h.make_node("Not", ["c"], ["c2"])]
    m = loop_model(body, [vi("i", I64, [1]), vi("c", BOOL, [1]), vi("v", F32, [1])],
                   [vi("c2", BOOL, [1]), vi("v2", F32, [1])], ["M", "", "v0"],
                   [vi("M", I64, [1]), vi("v0", F32, [1])], [vi("vf", F32, [1])])
    # By hand: the ONNX spec says the body's condition is ignored without a condition input, so
    # 0 + 0 + 1 + 2 + 3. (onnxruntime and onnx.reference stop on it anyway and give 0.)
    (got,) = run_ember(m, {"M": np.array([4]), "v0": np.zeros(1, np.float32)})
    np.testing.assert_array_equal(got, [6])


def test_loop_carried_value_that_grows_is_widened():
    body = [h.make_node("Concat", ["v", "one"], ["v2"], axis=0)]
    one = onnx.numpy_helper.from_array(np.array([1.0], np.float32), "one")
    m = loop_model(body, [vi("i", I64, []), vi("c", BOOL, []), vi("v", F32, [None])],
                   [vi("c", BOOL, []), vi("v2", F32, [None])], ["M", "", "v0"],
                   [vi("M", I64, []), vi("v0", F32, [2])], [vi("vf", F32, [None])], initializers=[one])
    got, _ = check_model(m, {"M": np.array(3), "v0": np.zeros(2, np.float32)})
    assert got[0].shape == (5,)
    module = imported(m)
    loop = next(op for op in module.walk() if op.name == "ember.loop")
    assert str(loop.body.args[2].type) == "f32[?]" and str(loop.results[0].type) == "f32[?]"


def test_loop_whose_body_slices_by_the_iteration_number_is_unrolled():
    """ONNX's loop11 test: x[i:i+1] needs i at build time, so the loop unrolls (trip count frozen)."""
    body = [h.make_node("Add", ["i", "one"], ["end"]), h.make_node("Unsqueeze", ["i", "zero"], ["start1"]),
            h.make_node("Unsqueeze", ["end", "zero"], ["end1"]), h.make_node("Slice", ["x", "start1", "end1"], ["sl"]),
            h.make_node("Add", ["y", "sl"], ["y2"]), h.make_node("Identity", ["y2"], ["sc"]),
            h.make_node("Identity", ["c"], ["c2"])]
    inits = [onnx.numpy_helper.from_array(np.array(1, np.int64), "one"),
             onnx.numpy_helper.from_array(np.array([0], np.int64), "zero")]
    m = loop_model(body, [vi("i", I64, []), vi("c", BOOL, []), vi("y", F32, [1])],
                   [vi("c2", BOOL, []), vi("y2", F32, [1]), vi("sc", F32, [1])], ["M", "cond", "y0"],
                   [vi("M", I64, []), vi("cond", BOOL, []), vi("y0", F32, [1]), vi("x", F32, [5])],
                   [vi("yf", F32, [1]), vi("scan", F32, [None, 1])], initializers=inits)
    feeds = {"M": np.array(4), "cond": np.array(True), "y0": np.array([-2], np.float32),
             "x": np.arange(1, 6, dtype=np.float32)}
    got, _ = check_model(m, feeds)
    np.testing.assert_array_equal(got[1][:, 0], [-1, 1, 4, 8])
    with pytest.raises(UnsupportedOpError, match="trip count .* must be known at build time"):
        imported(m)  # without the trip count frozen
    module = imported(m, frozen_inputs={"M": feeds["M"], "cond": feeds["cond"]})
    assert "ember.loop" not in op_names(module)


def test_loop_needing_the_iteration_number_with_a_run_time_condition_is_unsupported():
    body = [h.make_node("Unsqueeze", ["i", "zero"], ["start1"]), h.make_node("Add", ["start1", "one"], ["end1"]),
            h.make_node("Slice", ["x", "start1", "end1"], ["sl"]), h.make_node("Add", ["y", "sl"], ["y2"]),
            h.make_node("ReduceSum", ["y2"], ["s"], keepdims=0), h.make_node("Less", ["s", "limit"], ["c2"])]
    inits = [onnx.numpy_helper.from_array(np.array([1], np.int64), "one"),
             onnx.numpy_helper.from_array(np.array([0], np.int64), "zero")]
    m = loop_model(body, [vi("i", I64, []), vi("c", BOOL, []), vi("y", F32, [1])],
                   [vi("c2", BOOL, []), vi("y2", F32, [1])], ["M", "cond", "y0"],
                   [vi("M", I64, []), vi("cond", BOOL, []), vi("y0", F32, [1]), vi("x", F32, [5]),
                    vi("limit", F32, [])], [vi("yf", F32, [1])], initializers=inits)
    with pytest.raises(UnsupportedOpError, match="its condition is computed at run time"):
        imported(m, frozen_inputs={"M": np.array(3), "cond": np.array(True)})


def test_loop_over_a_symbolic_batch_imports_symbolically():
    body = [h.make_node("Relu", ["v"], ["v2"])]
    m = loop_model(body, [vi("i", I64, []), vi("c", BOOL, []), vi("v", F32, ["N", 3])],
                   [vi("c", BOOL, []), vi("v2", F32, ["N", 3]), vi("v2", F32, ["N", 3])], ["M", "", "v0"],
                   [vi("M", I64, []), vi("v0", F32, ["N", 3])], [vi("vf", F32, ["N", 3]), vi("s", F32, None)])
    module = imported(m)
    assert [str(t) for t in module.main.output_types] == ["f32[N,3]", "f32[?,N,3]"]
    got, _ = check_model(m, {"M": np.array(2), "v0": rand(4, 3)})
    assert got[1].shape == (2, 4, 3)


# -- Scan ------------------------------------------------------------------------------------------
def scan_body(state_shape, elem_shape):
    return h.make_graph([h.make_node("Add", ["s", "e"], ["s2"]), h.make_node("Mul", ["s2", "e"], ["o"])], "body",
                        [vi("s", F32, state_shape), vi("e", F32, elem_shape)],
                        [vi("s2", F32, state_shape), vi("o", F32, elem_shape)])


@pytest.mark.parametrize("attrs", [
    {},
    {"scan_input_directions": [1]},
    {"scan_input_axes": [1], "scan_output_axes": [1]},
    {"scan_input_axes": [-1], "scan_input_directions": [1], "scan_output_axes": [-2], "scan_output_directions": [1]},
    {"scan_output_axes": [1], "scan_output_directions": [1]},
])
def test_scan9_axes_and_directions(attrs):
    axis = attrs.get("scan_input_axes", [0])[0] % 2
    x = rand(4, 3) if axis == 0 else rand(3, 4)
    node = h.make_node("Scan", ["s0", "x"], ["sf", "ys"], num_scan_inputs=1, body=scan_body([3], [3]), **attrs)
    m = model([node], [vi("s0", F32, [3]), vi("x", F32, list(x.shape))], [vi("sf", F32, [3]), vi("ys", F32, None)],
              opset=16)
    check_model(m, {"s0": rand(3), "x": x})


def test_scan9_two_inputs_and_a_symbolic_length():
    body = h.make_graph([h.make_node("Add", ["s", "a"], ["t"]), h.make_node("Sub", ["t", "b"], ["s2"])], "body",
                        [vi("s", F32, [2]), vi("a", F32, [2]), vi("b", F32, [2])],
                        [vi("s2", F32, [2]), vi("t", F32, [2])])
    node = h.make_node("Scan", ["s0", "a", "b"], ["sf", "ys"], num_scan_inputs=2, body=body,
                       scan_input_directions=[0, 1])
    m = model([node], [vi("s0", F32, [2]), vi("a", F32, ["T", 2]), vi("b", F32, ["T", 2])],
              [vi("sf", F32, [2]), vi("ys", F32, ["T", 2])], opset=16)
    check_model(m, {"s0": rand(2), "a": rand(5, 2), "b": rand(5, 2) * 3})
    module = imported(m)
    assert "ember.shape" in op_names(module)  # the trip count is the symbolic length T
    assert [str(t) for t in module.main.output_types] == ["f32[2]", "f32[?,2]"]


def test_scan8_runs_per_batch_entry():
    node = h.make_node("Scan", ["", "s0", "x"], ["sf", "ys"], num_scan_inputs=1, body=scan_body([3], [3]),
                       directions=[1])
    m = model([node], [vi("s0", F32, [2, 3]), vi("x", F32, [2, 4, 3])],
              [vi("sf", F32, [2, 3]), vi("ys", F32, [2, 4, 3])],
              opset=8)
    check_model(m, {"s0": rand(2, 3), "x": rand(2, 4, 3)})


def test_scan8_sequence_lens_shorter_than_the_axis_is_unsupported():
    node = h.make_node("Scan", ["lens", "s0", "x"], ["sf", "ys"], num_scan_inputs=1, body=scan_body([3], [3]))
    m = model([node], [vi("s0", F32, [2, 3]), vi("x", F32, [2, 4, 3])], [vi("sf", F32, [2, 3]), vi("ys", F32, None)],
              opset=8, initializers=[onnx.numpy_helper.from_array(np.array([4, 2], np.int32), "lens")])
    with pytest.raises(UnsupportedOpError, match="sequence_lens shorter than the scan axis"):
        imported(m)
