"""Reductions, argmax/argmin, cumsum, cumprod and topk: against onnx.reference, hand-computed
cases (wrap-around, NaN, empty axes, ties, f32 accumulation of f16), symbolic shape
inference and errors."""

import math

import numpy as np
import pytest
from oracle import assert_close, check_vs_onnx, ember_op, onnx_op, rand

from ember import ir
from ember.errors import ShapeError, VerifyError

REDUCTIONS = {
    "reduce_sum": "ReduceSum", "reduce_mean": "ReduceMean", "reduce_max": "ReduceMax",
    "reduce_min": "ReduceMin", "reduce_prod": "ReduceProd", "reduce_l1": "ReduceL1", "reduce_l2": "ReduceL2",
    "reduce_log_sum": "ReduceLogSum", "reduce_log_sum_exp": "ReduceLogSumExp",
    "reduce_sum_square": "ReduceSumSquare",
}
FLOAT_ONLY = {"reduce_l2", "reduce_log_sum", "reduce_log_sum_exp"}


def _onnx_reduce(name, x, axes, keepdims):
    """Ember's axes attribute as ONNX 18's axes input (plus noop_with_empty_axes for ())."""
    inputs, attrs = [x], {"keepdims": int(keepdims)}
    if axes is not None:
        inputs.append(np.array(axes, np.int64))
        if axes == ():
            attrs["noop_with_empty_axes"] = 1
    return onnx_op(REDUCTIONS[name], inputs, attrs)[0]


def _data(name, shape, dtype=np.float32):
    low = 0.2 if name == "reduce_log_sum" else -2.0  # log of a negative sum is NaN
    return rand(shape, dtype, low=low, high=2.0)


def _check_reduce(name, x, axes, keepdims, **tol):
    got = ember_op(f"ember.{name}", [x], {"axes": axes, "keepdims": keepdims})[0]
    want = np.asarray(_onnx_reduce(name, x, axes, keepdims))
    assert got.dtype == x.dtype
    # onnx.reference's integer ReduceSumSquare returns i64 for i32 input; values are compared.
    assert_close(got, want.astype(x.dtype), what=f"{name} axes={axes} keepdims={keepdims}", **tol)
    return got


# -- reductions against ONNX -----------------------------------------------------------------------
@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize("axes,keepdims", [(None, True), (None, False), ((1,), True), ((1,), False),
                                           ((0, 2), False), ((-1,), True), ((), True)])
def test_reduce_vs_onnx_f32(name, axes, keepdims):
    _check_reduce(name, _data(name, (2, 3, 4)), axes, keepdims)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduce_vs_onnx_f16(name):
    x = _data(name, (3, 16, 2), np.float16)
    _check_reduce(name, x, (1,), False)


@pytest.mark.parametrize("name", sorted(set(REDUCTIONS) - FLOAT_ONLY))
@pytest.mark.parametrize("axes", [(1,), None])
def test_reduce_vs_onnx_int32(name, axes):
    x = rand((2, 3, 4), np.int32, low=-0.4, high=0.4)  # small values: the product does not overflow
    _check_reduce(name, x, axes, True)


@pytest.mark.parametrize("name", sorted(set(REDUCTIONS) - {"reduce_mean"}))
def test_reduce_empty_axis_vs_onnx(name):
    """ONNX 18+: reducing nothing gives the identity (mean has none: see the hand cases)."""
    got = _check_reduce(name, np.zeros((2, 0, 3), np.float32), (1,), False)
    assert got.shape == (2, 3)


# -- hand-computed ---------------------------------------------------------------------------------
def _reduce(name, x, **attrs):
    return ember_op(f"ember.{name}", [x], attrs)[0]


def test_reduce_sum_small():
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    assert _reduce("reduce_sum", x, axes=[1], keepdims=False).tolist() == [6, 15]
    assert _reduce("reduce_sum", x, axes=[0]).tolist() == [[5, 7, 9]]
    assert _reduce("reduce_sum", x, keepdims=False).tolist() == 21
    assert _reduce("reduce_sum", x, axes=[]).tolist() == x.tolist()  # reduce over no axis


def test_each_reduction_by_hand():
    x = np.array([[1, -2, 4]], np.float32)
    want = {"reduce_sum": 3, "reduce_mean": 1, "reduce_max": 4, "reduce_min": -2, "reduce_prod": -8,
            "reduce_l1": 7, "reduce_l2": math.sqrt(21), "reduce_sum_square": 21,
            "reduce_log_sum": math.log(3), "reduce_log_sum_exp": math.log(math.e + math.exp(-2) + math.exp(4))}
    for name, value in want.items():
        got = _reduce(name, x, axes=[1], keepdims=False)
        assert got.shape == (1,) and abs(float(got[0]) - value) < 1e-5, name


def test_empty_reductions_give_the_identity():
    xf = np.zeros((2, 0), np.float32)
    xi = np.zeros((2, 0), np.int32)
    expect = {"reduce_sum": 0.0, "reduce_prod": 1.0, "reduce_max": -np.inf, "reduce_min": np.inf,
              "reduce_l1": 0.0, "reduce_l2": 0.0, "reduce_sum_square": 0.0, "reduce_log_sum": -np.inf,
              "reduce_log_sum_exp": -np.inf}
    for name, value in expect.items():
        assert _reduce(name, xf, axes=[1], keepdims=False).tolist() == [value, value], name
    assert np.isnan(_reduce("reduce_mean", xf, axes=[1])).all()
    assert _reduce("reduce_mean", xi, axes=[1]).tolist() == [[0], [0]]
    assert _reduce("reduce_max", xi, axes=[1], keepdims=False).tolist() == [-2**31] * 2
    assert _reduce("reduce_min", xi, axes=[1], keepdims=False).tolist() == [2**31 - 1] * 2
    assert _reduce("reduce_prod", xi, axes=[1], keepdims=False).tolist() == [1, 1]


def test_integer_sums_wrap_in_their_type():
    x = np.array([100, 100], np.int8)
    assert _reduce("reduce_sum", x).tolist() == [-56]
    assert _reduce("reduce_sum_square", np.array([16, 1], np.int8)).tolist() == [1]  # 257 wraps to 1
    assert _reduce("reduce_prod", np.array([16, 16], np.int8)).tolist() == [0]
    assert _reduce("reduce_sum", np.array([250, 10], np.uint8)).tolist() == [4]


def test_integer_mean_truncates_towards_zero():
    x = np.array([[-3, -4], [3, 4]], np.int32)
    assert _reduce("reduce_mean", x, axes=[1], keepdims=False).tolist() == [-3, 3]


def test_nan_propagates_through_max_and_min():
    x = np.array([[1, np.nan, 3], [1, 2, 3]], np.float32)
    for name in ("reduce_max", "reduce_min"):
        got = _reduce(name, x, axes=[1], keepdims=False)
        assert np.isnan(got[0]) and not np.isnan(got[1]), name
    x16 = x.astype(np.float16)
    assert np.isnan(_reduce("reduce_max", x16, axes=[1])[0, 0])


def test_bool_max_is_any_and_min_is_all():
    x = np.array([[True, False], [False, False]])
    assert _reduce("reduce_max", x, axes=[1], keepdims=False).tolist() == [True, False]
    assert _reduce("reduce_min", x, axes=[1], keepdims=False).tolist() == [False, False]
    assert _reduce("reduce_min", np.zeros((1, 0), bool), axes=[1], keepdims=False).tolist() == [True]


def test_f16_accumulates_in_f32():
    ones = np.ones(3000, np.float16)  # an f16 accumulator stalls at 2048
    assert _reduce("reduce_sum", ones).tolist() == [3000.0]
    assert _reduce("reduce_mean", ones).tolist() == [1.0]
    assert _reduce("reduce_sum_square", ones).tolist() == [3000.0]


def test_log_sum_exp_is_stable():
    x = np.array([[1000, 1000], [-np.inf, -np.inf], [np.inf, 1], [np.nan, 1]], np.float32)
    got = _reduce("reduce_log_sum_exp", x, axes=[1], keepdims=False)
    assert abs(got[0] - (1000 + math.log(2))) < 1e-3
    assert got[1] == -np.inf and got[2] == np.inf and np.isnan(got[3])


# -- argmax / argmin -------------------------------------------------------------------------------
@pytest.mark.parametrize("op,onnx_type", [("ember.argmax", "ArgMax"), ("ember.argmin", "ArgMin")])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [True, False])
@pytest.mark.parametrize("select_last_index", [False, True])
def test_arg_vs_onnx(op, onnx_type, axis, keepdims, select_last_index):
    x = rand((3, 4, 5), np.int32, low=-0.2, high=0.2)  # few values: many ties
    attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": select_last_index}
    got = check_vs_onnx(op, onnx_type, [x], attrs,
                        {"axis": axis, "keepdims": int(keepdims), "select_last_index": int(select_last_index)})
    assert got[0].dtype == np.int64


@pytest.mark.parametrize("op,onnx_type", [("ember.argmax", "ArgMax"), ("ember.argmin", "ArgMin")])
def test_arg_vs_onnx_f16(op, onnx_type):
    check_vs_onnx(op, onnx_type, [rand((4, 6), np.float16)], {"axis": 1})


def test_arg_ties_by_hand():
    x = np.array([[1, 3, 3, 0, 0]], np.float32)
    assert ember_op("ember.argmax", [x], {"axis": 1})[0].tolist() == [[1]]
    assert ember_op("ember.argmax", [x], {"axis": 1, "select_last_index": True})[0].tolist() == [[2]]
    assert ember_op("ember.argmin", [x], {"axis": -1, "keepdims": False})[0].tolist() == [3]
    assert ember_op("ember.argmin", [x], {"axis": 1, "select_last_index": True, "keepdims": False})[0].tolist() == [4]
    assert ember_op("ember.argmax", [x], {})[0].tolist() == [[0, 0, 0, 0, 0]]  # axis 0 by default


def test_arg_nan_wins_both_ways():
    x = np.array([1, np.nan, 5, np.nan, -7], np.float32)
    for op in ("ember.argmax", "ember.argmin"):
        assert ember_op(op, [x], {"keepdims": False})[0].tolist() == 1, op
        assert ember_op(op, [x], {"keepdims": False, "select_last_index": True})[0].tolist() == 3, op
    assert ember_op("ember.argmax", [x.astype(np.float16)], {"keepdims": False})[0].tolist() == 1


# -- cumsum ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float16])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("exclusive,reverse", [(False, False), (True, False), (False, True), (True, True)])
def test_cumsum_vs_onnx(dtype, axis, exclusive, reverse):
    x = rand((3, 5), dtype)
    check_vs_onnx("ember.cumsum", "CumSum", [x], {"axis": axis, "exclusive": exclusive, "reverse": reverse},
                  {"exclusive": int(exclusive), "reverse": int(reverse)}, onnx_inputs=[x, np.array(axis)])


def test_cumsum_by_hand():
    x = np.array([1, 2, 3, 4], np.float32)
    run = lambda **a: ember_op("ember.cumsum", [x], {"axis": 0, **a})[0].tolist()  # noqa: E731
    assert run() == [1, 3, 6, 10]
    assert run(exclusive=True) == [0, 1, 3, 6]
    assert run(reverse=True) == [10, 9, 7, 4]
    assert run(exclusive=True, reverse=True) == [9, 7, 4, 0]
    assert ember_op("ember.cumsum", [np.array([100, 100], np.int8)], {"axis": 0})[0].tolist() == [100, -56]
    ones = np.ones(3000, np.float16)
    assert ember_op("ember.cumsum", [ones], {"axis": 0})[0][-1] == 3000  # f32 running sum
    empty = ember_op("ember.cumsum", [np.zeros((2, 0), np.float32)], {"axis": 1, "exclusive": True})[0]
    assert empty.shape == (2, 0)


# -- cumprod ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float16, np.float64])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("exclusive,reverse", [(False, False), (True, False), (False, True), (True, True)])
def test_cumprod_vs_onnx(dtype, axis, exclusive, reverse):
    small = (-1.5, 1.5) if np.dtype(dtype).kind == "f" else (-0.4, 0.4)  # ints in [-4, 4]
    x = rand((3, 5), dtype, low=small[0], high=small[1])
    check_vs_onnx("ember.cumprod", "CumProd", [x], {"axis": axis, "exclusive": exclusive, "reverse": reverse},
                  {"exclusive": int(exclusive), "reverse": int(reverse)}, onnx_inputs=[x, np.array(axis)],
                  opset=26)


def test_cumprod_by_hand():
    x = np.array([1, 2, 3, 4], np.float64)
    def run(**attrs):
        return ember_op("ember.cumprod", [x], {"axis": 0, **attrs})[0].tolist()

    assert run() == [1, 2, 6, 24]
    assert run(exclusive=True) == [1, 1, 2, 6]
    assert run(reverse=True) == [24, 24, 12, 4]
    assert run(exclusive=True, reverse=True) == [24, 12, 4, 1]
    m = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
    assert ember_op("ember.cumprod", [m], {"axis": 0})[0].tolist() == [[1, 2, 3], [4, 10, 18]]
    assert ember_op("ember.cumprod", [m], {"axis": -1})[0].tolist() == [[1, 2, 6], [4, 20, 120]]
    assert ember_op("ember.cumprod", [np.array([16, 16], np.int8)], {"axis": 0})[0].tolist() == [16, 0]  # wraps
    nan = ember_op("ember.cumprod", [np.float32([2, np.nan, 3])], {"axis": 0})[0]
    assert nan[0] == 2 and np.isnan(nan[1:]).all()
    empty = ember_op("ember.cumprod", [np.zeros((0, 3), np.float32)], {"axis": 0, "exclusive": True})[0]
    assert empty.shape == (0, 3)


# -- topk ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("sorted_", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_topk_vs_onnx(axis, largest, sorted_, dtype):
    x = rand((4, 5, 6), dtype, low=-0.3, high=0.3)  # integers with ties
    attrs = {"k": 3, "axis": axis, "largest": largest, "sorted": sorted_}
    got = check_vs_onnx("ember.topk", "TopK", [x], attrs,
                        {"axis": axis, "largest": int(largest), "sorted": int(sorted_)},
                        onnx_inputs=[x, np.array([3], np.int64)], n_outputs=2)
    assert got[0].shape[axis] == 3 and got[1].dtype == np.int64


def test_topk_vs_onnx_f16_and_k_edges():
    x = rand((3, 7), np.float16)
    for k in (0, 1, 7):
        check_vs_onnx("ember.topk", "TopK", [x], {"k": k}, {}, onnx_inputs=[x, np.array([k], np.int64)],
                      n_outputs=2)


def test_topk_by_hand():
    x = np.array([3, 1, 3, 2], np.float32)
    v, i = ember_op("ember.topk", [x], {"k": 2})
    assert v.tolist() == [3, 3] and i.tolist() == [0, 2]  # ties: lower index first
    v, i = ember_op("ember.topk", [x], {"k": 3, "largest": False})
    assert v.tolist() == [1, 2, 3] and i.tolist() == [1, 3, 0]
    v, i = ember_op("ember.topk", [np.array([0, 255, 7, 255], np.uint8)], {"k": 3})
    assert v.tolist() == [255, 255, 7] and i.tolist() == [1, 3, 2]


def test_topk_nan_is_largest():
    x = np.array([1, np.nan, 3], np.float32)
    v, i = ember_op("ember.topk", [x], {"k": 2})
    assert np.isnan(v[0]) and v[1] == 3 and i.tolist() == [1, 2]
    v, i = ember_op("ember.topk", [x], {"k": 3, "largest": False})
    assert v[:2].tolist() == [1, 3] and np.isnan(v[2]) and i.tolist() == [0, 2, 1]


def test_topk_symbolic_k_runs():
    """k = S: the attribute is evaluated with the symbol bound by the input."""
    x = np.array([[5, 1, 4], [0, 2, 9]], np.float32)
    v, i = ember_op("ember.topk", [x], {"k": "S", "axis": 1, "largest": False}, symbolic={0: ["B", "S"]})
    assert v.tolist() == [[1, 4, 5], [0, 2, 9]] and i.tolist() == [[1, 2, 0], [0, 1, 2]]


# -- symbolic shape inference ----------------------------------------------------------------------
def test_symbolic_reduce_shapes():
    b = ir.Builder()
    x = b.input("x", ir.f32["N", "S", "D"])
    assert str(b.reduce_mean(x, axes=[1], keepdims=False).type) == "f32[N,D]"
    assert str(b.reduce_max(x, axes=[-1]).type) == "f32[N,S,1]"
    assert str(b.reduce_sum(x, keepdims=False).type) == "f32[]"
    assert str(b.reduce_l2(x).type) == "f32[1,1,1]"
    assert str(b.argmax(x, axis=1, keepdims=False).type) == "i64[N,D]"
    assert str(b.argmin(x, axis=2).type) == "i64[N,S,1]"
    assert str(b.cumsum(x, axis=1).type) == "f32[N,S,D]"
    assert str(b.cumprod(x, axis=-1, reverse=True).type) == "f32[N,S,D]"
    v, i = b.topk(x, k="min(S, 8)", axis=1)
    assert str(v.type) == "f32[N,min(8, S),D]" and str(i.type) == "i64[N,min(8, S),D]"


# -- errors ----------------------------------------------------------------------------------------
def _build(op, t, **attrs):
    b = ir.Builder()
    x = b.input("x", t)
    return getattr(b, op)(x, **attrs)


@pytest.mark.parametrize("op,t,attrs,match", [
    ("reduce_sum", ir.f32[2, 3], {"axes": [2]}, "axes 2 is out of range for rank 2"),
    ("reduce_mean", ir.f32[2, 3], {"axes": [1, -1]}, "repeat an axis"),
    ("reduce_l2", ir.i32[2, 3], {}, "x must be float"),
    ("reduce_log_sum_exp", ir.i64[2], {}, "x must be float"),
    ("reduce_sum", ir.boolean[2], {}, "must be a numeric tensor"),
    ("argmax", ir.f32[2, 3], {"axis": -3}, "axis -3 is out of range for rank 2"),
    ("argmin", ir.f32[2, 0], {"axis": 1}, "empty"),
    ("cumsum", ir.f32[2, 3], {"axis": 2}, "axis 2 is out of range"),
    ("cumprod", ir.f32[2, 3], {"axis": -3}, "axis -3 is out of range"),
    ("cumprod", ir.boolean[2], {"axis": 0}, "must be a numeric tensor"),
    ("topk", ir.f32[2, 3], {"k": 4}, "k = 4 exceeds the 3 elements"),
    ("topk", ir.f32[2, 3], {"k": -1}, "k must be >= 0"),
    ("topk", ir.f32[2, 3], {"k": 1, "axis": 5}, "axis 5 is out of range"),
])
def test_errors(op, t, attrs, match):
    with pytest.raises(ShapeError, match=match):
        _build(op, t, **attrs)


def test_bad_attribute_values():
    with pytest.raises(VerifyError, match="axes"):
        _build("reduce_sum", ir.f32[2], axes=1.5)
    with pytest.raises(VerifyError, match="cumsum"):
        _build("cumsum", ir.f32[2])  # axis is required
    with pytest.raises(VerifyError, match="attribute 'k': expected a dim, got \\[1, 2\\]"):
        _build("topk", ir.f32[2, 3], k=[1, 2])


def test_runtime_k_out_of_range():
    """k = A is only known when the graph runs: the reference checks it."""
    with pytest.raises(Exception, match="k = 5 is out of range for 3 elements"):
        ember_op("ember.topk", [np.ones((5, 3), np.float32)], {"k": "A"}, symbolic={0: ["A", "B"]})


def test_topk_with_k_computed_at_run_time():
    """A detector's k = min(candidates, boxes over a threshold) is data: k as an operand."""
    b = ir.Builder()
    x = b.input("x", ir.f32[2, 6])
    k = b.input("k", ir.i64[()])
    values, indices = b.topk(x, k, axis=1)
    assert str(values.type) == "f32[2,?<=6]" and str(indices.type) == "i64[2,?<=6]"
    b.output("v", values)
    b.output("i", indices)
    m = b.build()
    x_ = np.array([[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]], np.float32)
    out = ir.interpret(ir.parse(str(m)), {"x": x_, "k": np.array(2, np.int64)})
    np.testing.assert_array_equal(out["v"], [[9, 5], [8, 6]])
    np.testing.assert_array_equal(out["i"], [[5, 4], [5, 1]])
    with pytest.raises(VerifyError, match="either as the attribute k or as the operand k_value"):
        ir.parse(str(m).replace("ember.topk %x, %k {axis = 1}", "ember.topk %x, %k {k = 2, axis = 1}"))
