"""Sequence and optional ops against onnx.reference (single nodes fed Python lists)
and hand-computed cases, their types, text round trips and errors."""

import numpy as np
import pytest
from oracle import assert_close, onnx_op, rand

from ember import ir
from ember.errors import InterpretError, ShapeError
from ember.ir.ops.control import join_types
from ember.ir.types import type_of_array


def seq_type(arrays, dtype=None):
    """The sequence type covering `arrays` (unranked `dtype` for an empty list)."""
    if not arrays:
        return ir.SequenceType(ir.tensor(dtype or "f32", None))
    t = type_of_array(arrays[0])
    for a in arrays[1:]:
        t = join_types(t, type_of_array(a))
    return ir.SequenceType(t)


def ember_run(op_name, inputs, attrs=None):
    """Run one op; inputs are arrays, lists (sequences) or None (absent).
    Checks the text round trip and returns (outputs, the op's result types)."""
    b = ir.Builder()
    values, feeds = [], {}
    for i, a in enumerate(inputs):
        if a is None:
            values.append(None)
            continue
        t = seq_type(a) if isinstance(a, list) else type_of_array(np.asarray(a))
        values.append(b.input(f"in{i}", t))
        feeds[f"in{i}"] = a
    result = b.op(op_name, *values, **(attrs or {}))
    results = [result] if isinstance(result, ir.Value) else list(result)
    for i, r in enumerate(results):
        b.output(f"out{i}", r)
    m = b.build()
    text = str(m)
    assert str(ir.parse(text)) == text
    out = ir.interpret(m, feeds)
    return [out[f"out{i}"] for i in range(len(results))], [str(r.type) for r in results]


def same_list(got, want):
    assert isinstance(got, list) and len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == np.asarray(w).dtype
        assert_close(g, np.asarray(w))


def pos(p):
    return None if p is None else np.array(p, np.int64)


# -- vs onnx.reference --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16])
def test_sequence_construct_vs_onnx(dtype):
    a, c = rand((2, 3), dtype), rand((1, 3), dtype)
    (got,), types = ember_run("ember.sequence_construct", [a, c])
    assert types == [f"seq<{ir.dtype_of(a)}[?,3]>"]
    same_list(got, onnx_op("SequenceConstruct", [a, c])[0])


@pytest.mark.parametrize("position", [None, 0, 1, -1, -2])
def test_sequence_insert_vs_onnx(position):
    s, t = [rand((2, 3)), rand((1, 3))], rand((4, 3))
    (got,), types = ember_run("ember.sequence_insert", [s, t, pos(position)])
    assert types == ["seq<f32[?,3]>"]
    same_list(got, onnx_op("SequenceInsert", [s, t, pos(position)])[0])


@pytest.mark.parametrize("position", [None, 0, 2, -1, -3])
def test_sequence_erase_vs_onnx(position):
    s = [rand((2,)), rand((2,)), rand((2,))]
    (got,), types = ember_run("ember.sequence_erase", [s, pos(position)])
    assert types == ["seq<f32[2]>"]
    same_list(got, onnx_op("SequenceErase", [s, pos(position)])[0])


@pytest.mark.parametrize("position", [0, 1, -1, -2])
def test_sequence_at_vs_onnx(position):
    s = [rand((2, 3)), rand((1, 3))]
    (got,), types = ember_run("ember.sequence_at", [s, pos(position)])
    assert types == ["f32[?,3]"]
    assert_close(got, onnx_op("SequenceAt", [s, pos(position)])[0])


@pytest.mark.parametrize("n", [0, 3])
def test_sequence_length_vs_onnx(n):
    s = [rand((2,)) for _ in range(n)]
    (got,), types = ember_run("ember.sequence_length", [s])
    assert types == ["i64[]"] and got.dtype == np.int64 and got.shape == ()
    assert got == onnx_op("SequenceLength", [s])[0] == n


@pytest.mark.parametrize("axis,keepdims,want_type", [(0, True, "seq<f32[1,5]>"), (1, False, "seq<f32[3]>"),
                                                     (-1, True, "seq<f32[3,1]>"), (0, False, "seq<f32[5]>")])
def test_split_to_sequence_unit_parts_vs_onnx(axis, keepdims, want_type):
    x = rand((3, 5))
    (got,), types = ember_run("ember.split_to_sequence", [x], dict(axis=axis, keepdims=keepdims))
    assert types == [want_type]
    same_list(got, onnx_op("SplitToSequence", [x], dict(axis=axis, keepdims=int(keepdims)))[0])


@pytest.mark.parametrize("attrs,onnx_split,want_type", [
    (dict(axis=1, split=[1, 4]), np.array([1, 4], np.int64), "seq<f32[3,?]>"),
    (dict(axis=1, split=[0, 5]), np.array([0, 5], np.int64), "seq<f32[3,?]>"),
    (dict(axis=0, split=[1, 1, 1]), np.array([1, 1, 1], np.int64), "seq<f32[1,5]>"),
    (dict(axis=1, chunk_size=2), np.array(2, np.int64), "seq<f32[3,?<=2]>"),
    (dict(axis=-1, chunk_size=5), np.array(5, np.int64), "seq<f32[3,5]>"),
])
def test_split_to_sequence_with_split_vs_onnx(attrs, onnx_split, want_type):
    x = rand((3, 5), np.int32)
    (got,), types = ember_run("ember.split_to_sequence", [x], attrs)
    assert types == [want_type.replace("f32", "i32")]
    same_list(got, onnx_op("SplitToSequence", [x, onnx_split], dict(axis=attrs["axis"]))[0])


@pytest.mark.parametrize("axis,new_axis,want_type", [(0, False, "f32[?,3]"), (1, False, "f32[2,?]"),
                                                     (-1, False, "f32[2,?]"), (0, True, "f32[?,2,3]"),
                                                     (2, True, "f32[2,3,?]"), (-1, True, "f32[2,3,?]"),
                                                     (-3, True, "f32[?,2,3]")])
def test_concat_from_sequence_vs_onnx(axis, new_axis, want_type):
    s = [rand((2, 3)) for _ in range(3)]
    (got,), types = ember_run("ember.concat_from_sequence", [s], dict(axis=axis, new_axis=new_axis))
    assert types == [want_type]
    assert_close(got, onnx_op("ConcatFromSequence", [s], dict(axis=axis, new_axis=int(new_axis)))[0])


# -- hand-computed -----------------------------------------------------------------------------
def test_insert_at_the_back_by_position_n():
    s = [np.array([1.0], np.float32), np.array([2.0], np.float32)]
    (got,), _ = ember_run("ember.sequence_insert", [s, np.array([3.0], np.float32), pos(2)])
    assert [a.tolist() for a in got] == [[1.0], [2.0], [3.0]]
    (got,), _ = ember_run("ember.sequence_insert", [s, np.array([3.0], np.float32), pos(-2)])
    assert [a.tolist() for a in got] == [[3.0], [1.0], [2.0]]


def test_split_chunks_and_concat_back():
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    (parts,), _ = ember_run("ember.split_to_sequence", [x], dict(axis=1, chunk_size=2))
    assert [p.tolist() for p in parts] == [[[0, 1], [5, 6]], [[2, 3], [7, 8]], [[4], [9]]]
    (back,), _ = ember_run("ember.concat_from_sequence", [parts], dict(axis=1))
    np.testing.assert_array_equal(back, x)


def test_sequence_pipeline_in_one_function():
    b = ir.Builder()
    a = b.input("a", ir.f32[2, 3])
    c = b.input("c", ir.f32[1, 3])
    s = b.sequence_insert(b.sequence_construct(a), c, b.constant(np.array(0, np.int64)))
    s = b.sequence_erase(b.sequence_insert(s, a), b.constant(np.array(-1, np.int32)))
    e = b.sequence_insert(b.sequence_empty(dtype="f32"), c)
    assert str(e.type) == "seq<f32[*]>"
    b.output("y", b.concat_from_sequence(s, axis=0))
    b.output("n", b.sequence_length(s))
    b.output("e", b.concat_from_sequence(e, axis=0))
    m = b.build()
    assert str(ir.parse(str(m))) == str(m)
    a_, c_ = rand((2, 3)), rand((1, 3))
    out = ir.interpret(m, {"a": a_, "c": c_})
    np.testing.assert_array_equal(out["y"], np.concatenate([c_, a_]))
    assert out["n"] == 2
    np.testing.assert_array_equal(out["e"], c_)
    assert str(m.main.output_types[2]) == "f32[*]"


def test_sequence_as_a_graph_input_and_output():
    b = ir.Builder()
    s = b.input("s", ir.SequenceType(ir.i64[None]))
    b.output("s2", b.sequence_erase(s, b.constant(np.array(0, np.int64))))
    m = b.build()
    out = ir.interpret(m, {"s": [np.array([1, 2]), np.array([3])]})["s2"]
    assert [a.tolist() for a in out] == [[3]]


def test_sequence_at_forgets_symbols_elements_may_differ_in():
    """A sequence input seq<f32[N,3]> whose elements have different N (as ONNX's tests
    feed them): sequence_at gives f32[?,3], so reading each element binds no N."""
    b = ir.Builder()
    s = b.input("s", ir.SequenceType(ir.f32["N", 3]))
    first = b.sequence_at(s, b.constant(np.array(0, np.int64)))
    last = b.sequence_at(s, b.constant(np.array(-1, np.int64)))
    assert str(first.type) == "f32[?,3]"
    b.output("first", b.relu(first))
    b.output("last", b.relu(last))
    m = b.build()
    out = ir.interpret(m, {"s": [np.ones((2, 3), np.float32), np.ones((5, 3), np.float32)]})
    assert out["first"].shape == (2, 3) and out["last"].shape == (5, 3)


def test_optionals():
    b = ir.Builder()
    x = b.input("x", ir.f32[2])
    s = b.sequence_construct(x)
    full, empty, oseq = b.optional(x), b.optional(type=ir.f32[2]), b.optional(s)
    assert [str(v.type) for v in (full, empty, oseq)] == ["opt<f32[2]>", "opt<f32[2]>", "opt<seq<f32[2]>>"]
    outs = dict(has_full=b.optional_has_element(full), has_empty=b.optional_has_element(empty),
                has_tensor=b.optional_has_element(x), has_absent=b.optional_has_element(),
                get=b.optional_get_element(full), get_tensor=b.optional_get_element(x),
                get_seq=b.optional_get_element(oseq), empty=empty)
    assert str(outs["get"].type) == "f32[2]" and str(outs["get_seq"].type) == "seq<f32[2]>"
    assert str(outs["has_full"].type) == "bool[]"
    for k, v in outs.items():
        b.output(k, v)
    m = b.build()
    assert str(ir.parse(str(m))) == str(m)
    x_ = rand((2,))
    out = ir.interpret(m, {"x": x_})
    assert [bool(out[k]) for k in ("has_full", "has_empty", "has_tensor", "has_absent")] == [True, False, True, False]
    np.testing.assert_array_equal(out["get"], x_)
    np.testing.assert_array_equal(out["get_tensor"], x_)
    assert len(out["get_seq"]) == 1 and out["empty"] is None


def test_optional_graph_input():
    b = ir.Builder()
    o = b.input("o", ir.OptionalType(ir.f32[3]))
    b.output("has", b.optional_has_element(o))
    b.output("v", b.optional_get_element(o))
    m = b.build()
    x_ = rand((3,))
    out = ir.interpret(m, {"o": x_})
    assert bool(out["has"]) and np.array_equal(out["v"], x_)
    with pytest.raises(InterpretError, match="the optional is empty"):
        ir.interpret(m, {"o": None})


# -- runtime errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("op,inputs,message", [
    ("ember.sequence_at", [[np.ones(2, np.float32)], pos(1)], "position 1 is out of range .* -1..0"),
    ("ember.sequence_at", [[np.ones(2, np.float32)], pos(-2)], "position -2 is out of range"),
    ("ember.sequence_insert", [[np.ones(2, np.float32)], np.ones(2, np.float32), pos(2)], "accepted: -1..1"),
    ("ember.sequence_erase", [[np.ones(2, np.float32)], pos(1)], "out of range"),
])
def test_positions_out_of_range(op, inputs, message):
    with pytest.raises(InterpretError, match=message):
        ember_run(op, inputs)


def test_empty_sequence_errors():
    b = ir.Builder()
    s = b.input("s", ir.SequenceType(ir.f32[2]))
    b.output("y", b.concat_from_sequence(s, axis=0))
    b.output("z", b.sequence_erase(s))
    m = b.build()
    with pytest.raises(InterpretError, match="cannot concatenate an empty sequence"):
        ir.interpret(m, {"s": []})


def test_split_sum_checked_at_run_time_for_symbolic_dims():
    b = ir.Builder()
    x = b.input("x", ir.f32["N"])
    b.output("s", b.split_to_sequence(x, split=[1, 2]))
    m = b.build()
    assert len(ir.interpret(m, {"x": rand((3,))})["s"]) == 2
    with pytest.raises(InterpretError, match="split \\[1, 2\\] sums to 3; axis 0 has length 4"):
        ir.interpret(m, {"x": rand((4,))})


# -- type errors ---------------------------------------------------------------------------------
def test_type_errors():
    b = ir.Builder()
    f = b.input("f", ir.f32[2])
    i = b.input("i", ir.i32[2])
    p_f = b.input("pf", ir.f32[()])
    p_vec = b.input("pv", ir.i64[1])
    s = b.sequence_construct(f)
    x = b.input("x", ir.f32[3, 4])
    cases = [
        (lambda: b.sequence_construct(f, i), "inputs must share an element type"),
        (lambda: b.sequence_construct(), "needs at least one tensor"),
        (lambda: b.sequence_insert(s, i), "does not match the sequence's element type f32\\[2\\]"),
        (lambda: b.sequence_at(s, p_f), "must be a integer tensor"),
        (lambda: b.sequence_at(s, p_vec), "position must be an i32 or i64 scalar"),
        (lambda: b.sequence_at(f, b.constant(np.array(0, np.int64))), "must be a sequence"),
        (lambda: b.sequence_length(f), "must be a sequence"),
        (lambda: b.split_to_sequence(x, axis=1, split=[1, 2]), "split \\[1, 2\\] sums to 3; axis 1 has length 4"),
        (lambda: b.split_to_sequence(x, split=[2, 1], chunk_size=1), "at most one of split and chunk_size"),
        (lambda: b.split_to_sequence(x, split=[2, 1], keepdims=False), "keepdims=false only applies"),
        (lambda: b.split_to_sequence(x, split=[4, -1]), "split lengths must be >= 0"),
        (lambda: b.split_to_sequence(x, chunk_size=0), "chunk_size must be >= 1"),
        (lambda: b.split_to_sequence(x, axis=2), "axis 2 is out of range for rank 2"),
        (lambda: b.split_to_sequence(b.input("sc", ir.f32[()])), "cannot split a scalar"),
        (lambda: b.concat_from_sequence(s, axis=1), "axis 1 is out of range for rank 1"),
        (lambda: b.concat_from_sequence(s, axis=-3, new_axis=True), "axis -3 is out of range for rank 2"),
        (lambda: b.optional(), "exactly one of an operand"),
        (lambda: b.optional(f, type=ir.f32[2]), "exactly one of an operand"),
        (lambda: b.optional(b.optional(f)), "an optional cannot hold an optional"),
    ]
    for make, message in cases:
        with pytest.raises(ShapeError, match=message):
            make()


def test_unranked_elements():
    b = ir.Builder()
    e = b.sequence_empty(dtype="i64")
    assert str(b.concat_from_sequence(e, axis=0).type) == "i64[*]"
    s = b.sequence_construct(b.input("a", ir.f32[2]), b.input("m", ir.f32[2, 2]))
    assert str(s.type) == "seq<f32[*]>"
