"""ember.if and ember.loop: built with the Builder, compared with onnx.reference running
ONNX If/Loop models with subgraphs, hand-computed loops, type joins, text round trips, errors."""

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as h
from onnx.reference import ReferenceEvaluator
from oracle import assert_close, rand

from ember import ir
from ember.errors import InterpretError, ParseError, ShapeError

F32, I64, BOOL = TP.FLOAT, TP.INT64, TP.BOOL


def vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


def onnx_run(nodes, inputs, outputs, feeds):
    graph = h.make_graph(nodes, "g", inputs, outputs)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 23)])
    return ReferenceEvaluator(model).run(None, feeds)


def finish(b, **outputs):
    """Mark outputs, build, check the text round trip; returns the module."""
    for name, v in outputs.items():
        b.output(name, v)
    m = b.build()
    text = str(m)
    again = ir.parse(text)
    assert str(again) == text
    assert not ir.structural_diff(m, again, weight_data=False)
    return m


def run(m, **feeds):
    out = ir.interpret(m, feeds)
    return [out[n] for n in m.main.output_names]


# -- if -----------------------------------------------------------------------------------------
def build_if_add_mul():
    b = ir.Builder()
    c = b.input("c", ir.boolean[()])
    x = b.input("x", ir.f32[2, 3])
    y = b.input("y", ir.f32[2, 3])
    (r,) = b.if_(c, then_branch=lambda rb: rb.add(x, y), else_branch=lambda rb: rb.mul(x, y))
    assert str(r.type) == "f32[2,3]"
    return finish(b, r=r)


@pytest.mark.parametrize("flag", [True, False])
def test_if_vs_onnx_reads_outer_values(flag):
    m = build_if_add_mul()
    then_g = h.make_graph([h.make_node("Add", ["x", "y"], ["t"])], "then", [], [vi("t", F32, [2, 3])])
    else_g = h.make_graph([h.make_node("Mul", ["x", "y"], ["e"])], "else", [], [vi("e", F32, [2, 3])])
    feeds = {"c": np.array(flag), "x": rand((2, 3)), "y": rand((2, 3))}
    (want,) = onnx_run([h.make_node("If", ["c"], ["r"], then_branch=then_g, else_branch=else_g)],
                       [vi("c", BOOL, []), vi("x", F32, [2, 3]), vi("y", F32, [2, 3])], [vi("r", F32, None)], feeds)
    (got,) = run(m, **feeds)
    assert_close(got, want)
    assert_close(got, feeds["x"] + feeds["y"] if flag else feeds["x"] * feeds["y"])


@pytest.mark.parametrize("flag", [True, False])
def test_if_branches_differing_in_one_dim_vs_onnx(flag):
    b = ir.Builder()
    c = b.input("c", ir.boolean[()])
    a = b.input("a", ir.f32[2, 3])
    z = b.input("z", ir.f32[4, 3])
    r, k = b.if_(c, then_branch=lambda rb: (rb.relu(a), z), else_branch=lambda rb: (z, a))
    assert str(r.type) == "f32[?,3]" and str(k.type) == "f32[?,3]"
    m = finish(b, r=r, k=k)
    then_g = h.make_graph([h.make_node("Relu", ["a"], ["t"]), h.make_node("Identity", ["z"], ["t2"])], "then", [],
                          [vi("t", F32, [2, 3]), vi("t2", F32, [4, 3])])
    else_g = h.make_graph([h.make_node("Identity", ["z"], ["e"]), h.make_node("Identity", ["a"], ["e2"])], "else", [],
                          [vi("e", F32, [4, 3]), vi("e2", F32, [2, 3])])
    feeds = {"c": np.array(flag), "a": rand((2, 3)), "z": rand((4, 3))}
    want = onnx_run([h.make_node("If", ["c"], ["r", "k"], then_branch=then_g, else_branch=else_g)],
                    [vi("c", BOOL, []), vi("a", F32, [2, 3]), vi("z", F32, [4, 3])],
                    [vi("r", F32, None), vi("k", F32, None)], feeds)
    got = run(m, **feeds)
    assert [g.shape for g in got] == ([(2, 3), (4, 3)] if flag else [(4, 3), (2, 3)])
    for g, w in zip(got, want):
        assert_close(g, w)


def test_if_type_joins():
    b = ir.Builder()
    c = b.input("c", ir.boolean[1])
    x = b.input("x", ir.f32["N", 3])
    v = b.input("v", ir.f32[3])
    s = b.sequence_construct(v)
    rank, same, seq = b.if_(c, then_branch=lambda rb: (x, x, s),
                            else_branch=lambda rb: (v, x, rb.sequence_construct(x)))
    assert str(rank.type) == "f32[*]"
    assert str(same.type) == "f32[N,3]"
    assert str(seq.type) == "seq<f32[*]>"
    (scalar,) = b.if_(c, then_branch=lambda rb: rb.constant(np.array(1, np.int64)),
                      else_branch=lambda rb: rb.constant(np.array(2, np.int64)))
    assert str(scalar.type) == "i64[]"
    m = finish(b, rank=rank, same=same, scalar=scalar)
    got = run(m, c=np.array([False]), x=rand((2, 3)), v=np.arange(3, dtype=np.float32))
    assert got[0].tolist() == [0, 1, 2] and got[2] == 2


@pytest.mark.parametrize("cond_type,message", [(ir.boolean[2], "cond must be a bool scalar"),
                                               (ir.i32[()], "must be a bool tensor")])
def test_if_bad_cond(cond_type, message):
    b = ir.Builder()
    c = b.input("c", cond_type)
    x = b.input("x", ir.f32[2])
    with pytest.raises(ShapeError, match=message):
        b.if_(c, then_branch=lambda rb: x, else_branch=lambda rb: x)


def test_if_branch_mismatches():
    b = ir.Builder()
    c = b.input("c", ir.boolean[()])
    x = b.input("x", ir.f32[2])
    n = b.input("n", ir.i32[2])
    with pytest.raises(ShapeError, match="then_branch yields 2 values, else_branch 1"):
        b.if_(c, then_branch=lambda rb: (x, x), else_branch=lambda rb: x)
    with pytest.raises(ShapeError, match="result 0: then_branch yields f32\\[2\\], else_branch i32\\[2\\]"):
        b.if_(c, then_branch=lambda rb: x, else_branch=lambda rb: n)
    with_arg = ir.Block([ir.f32[2]])
    with_arg.set_outputs([with_arg.args[0]])
    with pytest.raises(ShapeError, match="then_branch takes no arguments"):
        b.if_(c, then_branch=with_arg, else_branch=lambda rb: x)


# -- loop -------------------------------------------------------------------------------------
LOOP_INPUTS = [vi("M", I64, []), vi("c", BOOL, []), vi("x", F32, [3]), vi("v0", F32, [3])]


def onnx_loop(body_nodes, body_outputs, feeds, m="M", extra_inputs=()):
    body = h.make_graph(body_nodes, "body", [vi("i", I64, []), vi("cond", BOOL, []), vi("v", F32, [3])],
                        body_outputs)
    node = h.make_node("Loop", [m, "c", "v0"], ["vf", "scan"], body=body)
    return onnx_run([node], [i for i in LOOP_INPUTS if i.name != "M" or m] + list(extra_inputs),
                    [vi("vf", F32, [3]), vi("scan", F32, [None, 3])], feeds)


def test_loop_with_trip_count_scan_and_outer_value_vs_onnx():
    b = ir.Builder()
    n = b.input("M", ir.i64[()])
    c = b.input("c", ir.boolean[()])
    x = b.input("x", ir.f32[3])
    v0 = b.input("v0", ir.f32[3])
    vf, scan = b.loop(n, c, v0, body=lambda rb, i, cc, v: (cc, rb.add(v, x), rb.mul(v, v)))
    assert str(vf.type) == "f32[3]" and str(scan.type) == "f32[?,3]"
    m = finish(b, vf=vf, scan=scan)
    feeds = {"M": np.array(4, np.int64), "c": np.array(True), "x": rand((3,)), "v0": rand((3,))}
    want = onnx_loop([h.make_node("Add", ["v", "x"], ["v2"]), h.make_node("Mul", ["v", "v"], ["s"]),
                      h.make_node("Identity", ["cond"], ["co"])],
                     [vi("co", BOOL, []), vi("v2", F32, [3]), vi("s", F32, [3])], feeds)
    got = run(m, **feeds)
    assert got[1].shape == (4, 3)
    for g, w in zip(got, want):
        assert_close(g, w)


@pytest.mark.parametrize("with_trip_count", [False, True])
def test_loop_stopped_by_cond_vs_onnx(with_trip_count):
    """cond_out = i < limit (an outer value): stops after limit+1 iterations, before the trip count."""
    b = ir.Builder()
    n = b.input("M", ir.i64[()]) if with_trip_count else None
    c = b.input("c", ir.boolean[()])
    x = b.input("x", ir.f32[3])
    v0 = b.input("v0", ir.f32[3])
    limit = b.input("limit", ir.i64[()])
    vf, scan = b.loop(n, c, v0, body=lambda rb, i, cc, v: (rb.less(i, limit), rb.sub(v, x), v))
    m = finish(b, vf=vf, scan=scan)
    feeds = {"c": np.array(True), "x": rand((3,)), "v0": rand((3,)), "limit": np.array(2, np.int64)}
    if with_trip_count:
        feeds["M"] = np.array(10, np.int64)
    want = onnx_loop([h.make_node("Less", ["i", "limit"], ["co"]), h.make_node("Sub", ["v", "x"], ["v2"]),
                      h.make_node("Identity", ["v"], ["s"])],
                     [vi("co", BOOL, []), vi("v2", F32, [3]), vi("s", F32, [3])], feeds,
                     m="M" if with_trip_count else "", extra_inputs=[vi("limit", I64, [])])
    got = run(m, **feeds)
    assert got[1].shape == (3, 3)
    assert_close(got[0], feeds["v0"] - 3 * feeds["x"])
    for g, w in zip(got, want):
        assert_close(g, w)


def test_loop_with_if_inside_vs_onnx():
    """The body's If reads the loop's outer value x and the body's own i and v."""
    b = ir.Builder()
    n = b.input("M", ir.i64[()])
    c = b.input("c", ir.boolean[()])
    x = b.input("x", ir.f32[3])
    v0 = b.input("v0", ir.f32[3])

    def body(rb, i, cc, v):
        early = rb.less(i, rb.constant(np.array(2, np.int64)))
        (nxt,) = rb.if_(early, then_branch=lambda tb: tb.add(v, x), else_branch=lambda eb: eb.mul(v, x))
        return cc, nxt, nxt

    vf, scan = b.loop(n, c, v0, body=body)
    m = finish(b, vf=vf, scan=scan)
    two = h.make_tensor("two", I64, [], [2])
    then_g = h.make_graph([h.make_node("Add", ["v", "x"], ["t"])], "then", [], [vi("t", F32, [3])])
    else_g = h.make_graph([h.make_node("Mul", ["v", "x"], ["e"])], "else", [], [vi("e", F32, [3])])
    nodes = [h.make_node("Constant", [], ["two"], value=two), h.make_node("Less", ["i", "two"], ["early"]),
             h.make_node("If", ["early"], ["nxt"], then_branch=then_g, else_branch=else_g),
             h.make_node("Identity", ["cond"], ["co"]), h.make_node("Identity", ["nxt"], ["s"])]
    feeds = {"M": np.array(4, np.int64), "c": np.array(True), "x": rand((3,)), "v0": rand((3,))}
    want = onnx_loop(nodes, [vi("co", BOOL, []), vi("nxt", F32, [3]), vi("s", F32, [3])], feeds)
    got = run(m, **feeds)
    x_, v = feeds["x"], feeds["v0"]
    assert_close(got[0], ((v + x_ + x_) * x_) * x_)
    for g, w in zip(got, want):
        assert_close(g, w)


def test_for_loop_ignores_body_cond_and_has_exact_scan_length():
    """Without a cond operand the body's condition is ignored (ONNX spec; onnx.reference
    runs no iteration at all there, so this case is hand-computed)."""
    b = ir.Builder()
    x = b.input("x", ir.f32[3])
    v0 = b.input("v0", ir.f32[3])
    five = b.constant(np.array(5, np.int64))
    vf, scan, idx = b.loop(five, None, v0, body=lambda rb, i, cc, v: (
        rb.constant(np.array(False)), rb.add(v, x), v, i))
    assert str(vf.type) == "f32[3]" and str(scan.type) == "f32[5,3]" and str(idx.type) == "i64[5]"
    m = finish(b, vf=vf, scan=scan, idx=idx)
    x_, v_ = np.array([1, 1, 2], np.float32), np.array([1, 2, 3], np.float32)
    got = run(m, x=x_, v0=v_)
    assert_close(got[0], v_ + 5 * x_)
    assert_close(got[1], np.stack([v_ + k * x_ for k in range(5)]))
    assert got[2].tolist() == [0, 1, 2, 3, 4]


def test_loop_scan_length_bounded_by_constant_trip_count():
    b = ir.Builder()
    c = b.input("c", ir.boolean[()])
    v0 = b.input("v0", ir.f32[3])
    ten = b.constant(np.array(10, np.int64))
    vf, scan = b.loop(ten, c, v0, body=lambda rb, i, cc, v: (rb.less(i, rb.constant(np.array(6, np.int64))), v, v))
    assert str(scan.type) == "f32[?<=10,3]"
    m = finish(b, scan=scan)
    assert run(m, c=np.array(True), v0=rand((3,)))[0].shape == (7, 3)


def test_loop_zero_iterations_gives_initial_values_and_empty_scans():
    b = ir.Builder()
    n = b.input("M", ir.i64[()])
    v0 = b.input("v0", ir.f32["N"])
    vf, scan = b.loop(n, None, v0, body=lambda rb, i, cc, v: (cc, rb.add(v, v), v))
    assert str(scan.type) == "f32[?,N]"
    m = finish(b, vf=vf, scan=scan)
    v_ = rand((4,))
    got = run(m, M=np.array(0, np.int64), v0=v_)
    np.testing.assert_array_equal(got[0], v_)
    assert got[1].shape == (0, 4) and got[1].dtype == np.float32
    got = run(m, M=np.array(-3, np.int64), v0=v_)
    assert got[1].shape == (0, 4)
    got = run(m, M=np.array(2, np.int64), v0=v_)
    assert_close(got[0], 4 * v_)


def test_loop_carried_value_that_grows_needs_an_unknown_dim():
    b = ir.Builder()
    v0 = b.input("v0", ir.f32[1])
    three = b.constant(np.array(3, np.int64))
    with pytest.raises(ShapeError, match="body yields f32\\[2\\] for carried value 0, which does not fit"):
        b.loop(three, None, v0, body=lambda rb, i, cc, v: (cc, rb.resize(v, scales=[2.0])))
    body = ir.Block([ir.i64[()], ir.boolean[()], ir.f32[None]])
    grown = ir.Builder(module=b.module, block=body).resize(body.args[2], scales=[2.0])
    body.set_outputs([body.args[1], grown])
    (vf,) = b.loop(three, None, v0, body=body)
    assert str(vf.type) == "f32[?]"
    m = finish(b, vf=vf)
    assert run(m, v0=np.array([7], np.float32))[0].tolist() == [7.0] * 8


def test_loop_scan_output_changing_shape_is_a_runtime_error():
    b = ir.Builder()
    v0 = b.input("v0", ir.f32[1])
    body = ir.Block([ir.i64[()], ir.boolean[()], ir.f32[None]])
    grown = ir.Builder(module=b.module, block=body).resize(body.args[2], scales=[2.0])
    body.set_outputs([body.args[1], grown, grown])
    _, scan = b.loop(b.constant(np.array(2, np.int64)), None, v0, body=body)
    m = finish(b, scan=scan)
    with pytest.raises(InterpretError, match="scan output 0 changes shape across iterations"):
        run(m, v0=np.ones(1, np.float32))


def test_loop_carries_an_empty_optional():
    b = ir.Builder()
    n = b.input("M", ir.i64[()])
    x = b.input("x", ir.f32[2])
    empty = b.optional(type=ir.f32[2])
    full, still_empty = b.loop(n, None, b.optional(x), empty, body=lambda rb, i, cc, o, e: (cc, o, e))
    assert str(still_empty.type) == "opt<f32[2]>"
    m = finish(b, has=b.optional_has_element(still_empty), v=b.optional_get_element(full))
    x_ = rand((2,))
    has, v = run(m, M=np.array(2, np.int64), x=x_)
    assert not has and np.array_equal(v, x_)


def test_loop_parses_from_text():
    text = """module {
  func @main(%c: bool[], %x: f32[2]) -> (r: f32[2]) {
    %0 = ember.loop none, %c, %x : f32[2] ({
    ^bb0(%i: i64[], %k: bool[], %v: f32[2]):
      %1 = ember.add %v, %x : f32[2]
      %n = ember.constant {value = dense<i64[]: 3>} : i64[]
      %2 = ember.less %i, %n : bool[]
      yield %2, %1
    })
    return %0
  }
}
"""
    m = ir.parse(text)
    assert str(m) == text
    got = ir.interpret(m, {"c": np.array(True), "x": np.array([1, 2], np.float32)})["r"]
    assert got.tolist() == [5, 10]


def test_loop_errors():
    b = ir.Builder()
    c = b.input("c", ir.boolean[()])
    n32 = b.input("n32", ir.i32[()])
    n = b.input("n", ir.i64[()])
    x = b.input("x", ir.f32[3])
    same = lambda rb, i, cc, v: (cc, v)  # noqa: E731
    with pytest.raises(ShapeError, match="needs a trip count or a condition"):
        b.loop(None, None, x, body=same)
    with pytest.raises(ShapeError, match="trip_count must be an i64 scalar"):
        b.loop(n32, None, x, body=same)
    with pytest.raises(ShapeError, match="must be a bool tensor"):
        b.loop(n, x, x, body=same)
    with pytest.raises(ShapeError, match="body yields 1 values"):
        b.loop(n, None, x, body=lambda rb, i, cc, v: cc)
    with pytest.raises(ShapeError, match="bool scalar condition first"):
        b.loop(n, None, x, body=lambda rb, i, cc, v: (v, v))
    with pytest.raises(ShapeError, match="scan output 0 must be a tensor"):
        b.loop(n, None, x, body=lambda rb, i, cc, v: (cc, v, rb.sequence_construct(v)))
    with pytest.raises(ShapeError, match="carried values cannot be absent"):
        b.loop(n, None, None, x, body=same)
    wrong = ir.Block([ir.i64[()], ir.boolean[()]])
    wrong.set_outputs([wrong.args[1]])
    with pytest.raises(ShapeError, match="1 carried values need 3 arguments, it has 2"):
        b.loop(n, c, x, body=wrong)
    wrong = ir.Block([ir.i32[()], ir.boolean[()], ir.f32[3]])
    wrong.set_outputs([wrong.args[1], wrong.args[2]])
    with pytest.raises(ShapeError, match="body argument 0 \\(the iteration number\\) must be i64"):
        b.loop(n, c, x, body=wrong)


def test_loop_body_reading_a_later_value_does_not_parse():
    text = """module {
  func @main(%c: bool[], %x: f32[2]) -> (r: f32[2]) {
    %0 = ember.loop none, %c, %x : f32[2] ({
    ^bb0(%i: i64[], %k: bool[], %v: f32[2]):
      yield %k, %later
    })
    %later = ember.add %x, %x : f32[2]
    return %0
  }
}
"""
    with pytest.raises(ParseError, match="undefined value %later"):
        ir.parse(text)
