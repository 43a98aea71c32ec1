"""Shape and data-movement ops (ir/ops/shape.py, ir/ops/indexing.py): against
onnx.reference for every attribute variant, hand-computed cases, symbolic shape
inference, and errors."""

import numpy as np
import pytest
from oracle import check_vs_onnx, ember_op, onnx, onnx_op, rand

from ember import ir
from ember.errors import InterpretError, ShapeError, VerifyError
from ember.ir.opdef import DataMovement, ShapeOnly, ViewLike

BIG = 2**63 - 1


def i64(*v):
    return np.array(v, np.int64)


def build(*types):
    b = ir.Builder("t")
    return b, [b.input(f"x{i}", t) for i, t in enumerate(types)]


# -- views ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,allowzero,in_shape", [
    ((4, 6), False, (2, 3, 4)), ((-1, 4), False, (2, 3, 4)), ((0, -1), False, (2, 3, 4)),
    ((0, 0, 2, 2), False, (2, 3, 4)), ((24,), False, (2, 3, 4)), ((0, 4), True, (0, 3)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_reshape_vs_onnx(shape, allowzero, in_shape, dtype):
    x = rand(in_shape, dtype)
    check_vs_onnx("ember.reshape", "Reshape", [x], {"shape": shape, "allowzero": allowzero},
                  {"allowzero": int(allowzero)}, onnx_inputs=[x, i64(*shape)])


@pytest.mark.parametrize("axes", [None, (1,), (-1, 1)])
def test_squeeze_vs_onnx(axes):
    x = rand((3, 1, 4, 1))
    check_vs_onnx("ember.squeeze", "Squeeze", [x], {"axes": axes}, {},
                  onnx_inputs=[x] if axes is None else [x, i64(*axes)])


@pytest.mark.parametrize("axes", [(0,), (-1,), (0, 3), (1, -1)])
def test_unsqueeze_vs_onnx(axes):
    x = rand((3, 4), np.float16)
    check_vs_onnx("ember.unsqueeze", "Unsqueeze", [x], {"axes": axes}, {}, onnx_inputs=[x, i64(*axes)])


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_flatten_vs_onnx(axis):
    check_vs_onnx("ember.flatten", "Flatten", [rand((2, 3, 4))], {"axis": axis})


def test_view_traits():
    for name in ("ember.reshape", "ember.squeeze", "ember.unsqueeze", "ember.flatten"):
        assert ViewLike in ir.lookup(name).traits
    for name in ("ember.transpose", "ember.concat", "ember.split", "ember.slice", "ember.pad", "ember.expand",
                 "ember.tile", "ember.gather", "ember.gather_elements", "ember.gather_nd", "ember.trilu"):
        assert DataMovement in ir.lookup(name).traits
    assert ShapeOnly in ir.lookup("ember.shape").traits and ShapeOnly in ir.lookup("ember.size").traits


def test_reshape_hand():
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    (y,) = ember_op("ember.reshape", [x], {"shape": (-1, 0)})  # 0 copies the input's dim 1 (4)
    assert y.shape == (6, 4) and y[5].tolist() == [20, 21, 22, 23]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = ember_op("ember.reshape", [x], {"shape": (0, -1, 1)})
    assert y.shape == (2, 3, 1) and y[1, 2, 0] == 5
    (y,) = ember_op("ember.reshape", [np.zeros((0, 3), np.float32)], {"shape": (3, 0), "allowzero": True})
    assert y.shape == (3, 0)


def test_flatten_and_squeeze_hand():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    (y,) = ember_op("ember.flatten", [x], {"axis": 0})
    assert y.shape == (1, 24) and y[0, 23] == 23
    (y,) = ember_op("ember.flatten", [x], {"axis": 3})
    assert y.shape == (24, 1)
    (y,) = ember_op("ember.unsqueeze", [x], {"axes": (-1, 0)})
    assert y.shape == (1, 2, 3, 4, 1)


# -- transpose, concat, split -----------------------------------------------------------------------------
@pytest.mark.parametrize("perm", [None, (0, 2, 1), (2, 0, 1), (1, 0, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64])
def test_transpose_vs_onnx(perm, dtype):
    check_vs_onnx("ember.transpose", "Transpose", [rand((2, 3, 4), dtype)], {"perm": perm},
                  {} if perm is None else {"perm": perm})


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8])
def test_concat_vs_onnx(axis, dtype):
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    shapes[1] = tuple(5 if i == axis % 3 else d for i, d in enumerate(shapes[1]))
    check_vs_onnx("ember.concat", "Concat", [rand(s, dtype) for s in shapes], {"axis": axis})


@pytest.mark.parametrize("attrs,onnx_split,n", [
    ({"axis": 1, "sizes": (2, 3, 1)}, (2, 3, 1), 3), ({"axis": -1, "sizes": (4, 0)}, (4, 0), 2),
    ({"axis": 1, "num_outputs": 3}, None, 3), ({"axis": 1, "num_outputs": 4}, None, 4),
    ({"axis": 0, "num_outputs": 2}, None, 2),
])
def test_split_vs_onnx(attrs, onnx_split, n):
    x = rand((2, 6, 4))
    onnx_attrs = {"axis": attrs["axis"]}
    if "num_outputs" in attrs:
        onnx_attrs["num_outputs"] = attrs["num_outputs"]
    got = check_vs_onnx("ember.split", "Split", [x], attrs, onnx_attrs, n_outputs=n,
                        onnx_inputs=[x] if onnx_split is None else [x, i64(*onnx_split)])
    assert len(got) == n


def test_split_hand_uneven():
    x = np.arange(7, dtype=np.int32)
    got = ember_op("ember.split", [x], {"num_outputs": 3})
    assert [g.tolist() for g in got] == [[0, 1, 2], [3, 4, 5], [6]]
    got = ember_op("ember.split", [x], {"sizes": (1, 0, 6)})
    assert [g.tolist() for g in got] == [[0], [], [1, 2, 3, 4, 5, 6]]


# -- slice ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("starts,ends,axes,steps", [
    ((1,), (3,), None, None), ((0, 1), (2, 4), (0, 2), None), ((-3,), (BIG,), (1,), None),
    ((1, -1), (100, 0), (2, 1), (2, -1)), ((-1,), (-BIG - 1,), (2,), (-1,)), ((4,), (-100,), (-1,), (-2,)),
    ((0, 0, 0), (-1, -1, -1), None, None), ((2,), (1,), (0,), None), ((10,), (-10,), (1,), (-3,)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_slice_vs_onnx(starts, ends, axes, steps, dtype):
    x = rand((3, 5, 6), dtype)
    onnx_inputs = [x, i64(*starts), i64(*ends)]
    if axes is not None or steps is not None:
        onnx_inputs.append(i64(*(axes if axes is not None else range(len(starts)))))
    if steps is not None:
        onnx_inputs.append(i64(*steps))
    check_vs_onnx("ember.slice", "Slice", [x], {"starts": starts, "ends": ends, "axes": axes, "steps": steps},
                  {}, onnx_inputs=onnx_inputs)


@pytest.mark.parametrize("starts,ends,steps,want", [
    (-1, -BIG - 1, -2, [9, 7, 5, 3, 1]),     # reverse with step 2 from the end
    (2, 100, 1, [2, 3, 4, 5, 6, 7, 8, 9]),   # end clamped to 10
    (8, 2, -3, [8, 5]),
    (-100, 3, 1, [0, 1, 2]),                 # start clamped to 0
    (100, -100, -4, [9, 5, 1]),              # start clamped to 9, end to -1
    (-20, -30, -1, [0]),                     # ONNX spec: start clamps to 0, end to -1 (Python gives [])
    (5, 5, 1, []), (3, 7, -1, []),
])
def test_slice_hand(starts, ends, steps, want):
    x = np.arange(10, dtype=np.int64)
    (y,) = ember_op("ember.slice", [x], {"starts": (starts,), "ends": (ends,), "steps": (steps,)})
    assert y.tolist() == want


# -- pad, expand, tile, trilu --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads,axes", [((1, 2, 0, 1), None), ((2, 1), (1,)), ((0, 1, 2, 0), (-1, 0))])
def test_pad_vs_onnx(mode, pads, axes):
    x = rand((3, 4))
    onnx_inputs = [x, i64(*pads)]
    if axes is not None:
        onnx_inputs += [None, i64(*axes)]
    check_vs_onnx("ember.pad", "Pad", [x], {"pads": pads, "mode": mode, "axes": axes}, {"mode": mode},
                  onnx_inputs=onnx_inputs)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
def test_pad_constant_value_vs_onnx(dtype):
    x, v = rand((2, 3), dtype), rand((), dtype)
    check_vs_onnx("ember.pad", "Pad", [x, v], {"pads": (1, 0, 0, 2)}, {"mode": "constant"},
                  onnx_inputs=[x, i64(1, 0, 0, 2), v])


@pytest.mark.parametrize("mode,pads,want", [
    ("constant", (2, 2), [9, 9, 1, 2, 3, 9, 9]),
    ("reflect", (2, 2), [3, 2, 1, 2, 3, 2, 1]),
    ("edge", (2, 2), [1, 1, 1, 2, 3, 3, 3]),
    ("wrap", (2, 2), [2, 3, 1, 2, 3, 1, 2]),
    ("constant", (-1, 1), [2, 3, 9]),        # negative pads crop
    ("reflect", (0, 4), [1, 2, 3, 2, 1, 2, 3]),  # longer than the dim: the pattern repeats
    ("wrap", (4, 0), [3, 1, 2, 3, 1, 2, 3]),
    ("edge", (-2, 1), [3, 3]),
])
def test_pad_hand(mode, pads, want):
    x = np.array([1, 2, 3], np.int32)
    value = np.array(9, np.int32) if mode == "constant" else None
    (y,) = ember_op("ember.pad", [x, value], {"pads": pads, "mode": mode})
    assert y.tolist() == want


def test_pad_reflect_crop_then_pad():
    x = np.array([1, 2, 3, 4], np.float32)
    (y,) = ember_op("ember.pad", [x], {"pads": (-1, 2), "mode": "reflect"})
    assert y.tolist() == [2, 3, 4, 3, 2]
    (y,) = ember_op("ember.pad", [x], {"pads": (1, 0)})
    assert y.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("in_shape,shape", [((3, 1), (2, 3, 4)), ((1, 4), (3, 1)), ((2, 1, 3), (1, 1)),
                                            ((), (2, 2)), ((4,), (4,))])
@pytest.mark.parametrize("dtype", [np.float32, np.bool_])
def test_expand_vs_onnx(in_shape, shape, dtype):
    x = rand(in_shape, dtype)
    check_vs_onnx("ember.expand", "Expand", [x], {"shape": shape}, {}, onnx_inputs=[x, i64(*shape)])


@pytest.mark.parametrize("repeats", [(1, 1), (2, 3), (3, 1), (0, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_tile_vs_onnx(repeats, dtype):
    x = rand((2, 3), dtype)
    check_vs_onnx("ember.tile", "Tile", [x], {"repeats": repeats}, {}, onnx_inputs=[x, i64(*repeats)])


@pytest.mark.parametrize("upper", [True, False])
@pytest.mark.parametrize("k", [0, 1, -1, 5, -4])
def test_trilu_vs_onnx(upper, k):
    x = rand((2, 3, 4))
    check_vs_onnx("ember.trilu", "Trilu", [x], {"upper": upper, "k": k}, {"upper": int(upper)},
                  onnx_inputs=[x, np.array(k, np.int64)])


def test_trilu_hand():
    x = np.arange(1, 10, dtype=np.int32).reshape(3, 3)
    (y,) = ember_op("ember.trilu", [x], {"upper": True, "k": 1})
    assert y.tolist() == [[0, 2, 3], [0, 0, 6], [0, 0, 0]]
    (y,) = ember_op("ember.trilu", [x], {"upper": False, "k": -1})
    assert y.tolist() == [[0, 0, 0], [4, 0, 0], [7, 8, 0]]
    x = np.array([[np.nan, np.nan], [np.nan, 1.0]], np.float32)
    (y,) = ember_op("ember.trilu", [x], {"upper": False})
    assert np.isnan(y[0, 0]) and y[0, 1] == 0 and np.isnan(y[1, 0])


# -- shape queries and generators ----------------------------------------------------------------------------
@pytest.mark.parametrize("start,end", [(0, None), (1, None), (-2, None), (0, -1), (1, 2), (5, None), (-9, 9),
                                       (2, 1)])
def test_shape_vs_onnx(start, end):
    onnx_attrs = {"start": start} if end is None else {"start": start, "end": end}
    got = check_vs_onnx("ember.shape", "Shape", [rand((2, 3, 4))], {"start": start, "end": end}, onnx_attrs)
    assert got[0].dtype == np.int64


def test_size_vs_onnx():
    got = check_vs_onnx("ember.size", "Size", [rand((2, 3, 4), np.int8)])
    assert got[0].shape == () and got[0] == 24


@pytest.mark.parametrize("start,limit,delta,dtype", [
    (0, 10, 3, np.int64), (10, 0, -3, np.int32), (5, 5, 1, np.int64), (0, 5, -1, np.int64),
    (0.5, 3.2, 0.3, np.float32), (3.0, -1.0, -0.75, np.float32), (1.0, 2.0, 0.25, np.float64),
])
def test_range_vs_onnx(start, limit, delta, dtype):
    args = [np.array(v, dtype) for v in (start, limit, delta)]
    check_vs_onnx("ember.range", "Range", args)


def test_range_static_and_symbolic_length():
    b = ir.Builder("t")
    r = b.range(b.constant(np.int64(2)), b.constant(np.int64(11)), b.constant(np.int64(3)))
    assert str(r.type) == "i64[3]"
    r = b.range(b.constant(1.0), b.constant(0.0), b.constant(0.5))
    assert str(r.type) == "f32[0]"
    lim = b.input("lim", ir.i64[()])
    r = b.range(b.constant(np.int64(0)), lim, b.constant(np.int64(1)))
    assert str(r.type) == "i64[?]"
    r = b.range(b.constant(np.int64(0)), lim, b.constant(np.int64(1)), length="S")
    assert str(r.type) == "i64[S]"
    b.output("r", r)
    b.output("x", b.input("x", ir.f32["S"]))  # binds S (attribute symbols are bound by inputs)
    module = b.build()
    text = str(module)
    assert "{length = S} : i64[S]" in text and str(ir.parse(text)) == text
    out = ir.interpret(module, {"lim": np.int64(4), "x": rand((4,))})
    assert out["r"].tolist() == [0, 1, 2, 3]


def test_range_hand_f16():
    args = [np.array(v, np.float16) for v in (0.0, 1.0, 0.1)]
    (y,) = ember_op("ember.range", args)
    # the length comes from the f16 values: 1 / f16(0.1) = 1 / 0.09998 = 10.002, so 11 elements
    assert y.dtype == np.float16 and y.shape == (11,)
    assert np.allclose(y.astype(np.float32), np.float16(0.1).astype(np.float64) * np.arange(11), atol=1e-3)
    check_vs_onnx("ember.range", "Range", args)


# -- gathers --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis,ind_shape", [(0, (2, 3)), (1, (4,)), (-1, ()), (2, (2, 2))])
@pytest.mark.parametrize("dtype,idx_dtype", [(np.float32, np.int64), (np.int32, np.int32), (np.float16, np.int64)])
def test_gather_vs_onnx(axis, ind_shape, dtype, idx_dtype):
    data = rand((3, 4, 5), dtype)
    d = data.shape[axis]
    idx = np.random.default_rng().integers(-d, d, ind_shape).astype(idx_dtype)
    check_vs_onnx("ember.gather", "Gather", [data, idx], {"axis": axis})


def test_gather_hand_negative_and_out_of_range():
    data = np.array([10, 20, 30], np.int32)
    (y,) = ember_op("ember.gather", [data, i64(-1, 0, -3, 2)])
    assert y.tolist() == [30, 10, 10, 30]
    with pytest.raises(InterpretError, match="out of range"):
        ember_op("ember.gather", [data, i64(3)])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_vs_onnx(axis):
    data = rand((3, 4))
    d = data.shape[axis]
    idx = np.random.default_rng().integers(-d, d, (3, 4)).astype(np.int64)
    check_vs_onnx("ember.gather_elements", "GatherElements", [data, idx], {"axis": axis})


def test_gather_elements_hand():
    data = np.array([[1, 2], [3, 4]], np.float32)
    (y,) = ember_op("ember.gather_elements", [data, i64(0, 0, 1, 0).reshape(2, 2)], {"axis": 1})
    assert y.tolist() == [[1, 1], [4, 3]]
    (y,) = ember_op("ember.gather_elements", [data, i64(-1, 0).reshape(1, 2)], {"axis": 0})  # fewer rows
    assert y.tolist() == [[3, 2]]


@pytest.mark.parametrize("batch_dims,data_shape,ind_shape", [
    (0, (2, 3, 4), (5, 1)), (0, (2, 3, 4), (2, 3)), (0, (2, 3), (2, 2, 2)), (1, (2, 3, 4), (2, 5, 1)),
    (1, (2, 3, 4), (2, 2)), (2, (2, 3, 4, 5), (2, 3, 2)),
])
def test_gather_nd_vs_onnx(batch_dims, data_shape, ind_shape):
    data = rand(data_shape)
    rng = np.random.default_rng()
    m = ind_shape[-1]
    idx = np.stack([rng.integers(0, data_shape[batch_dims + j], ind_shape[:-1]) for j in range(m)], -1)
    check_vs_onnx("ember.gather_nd", "GatherND", [data, idx.astype(np.int64)], {"batch_dims": batch_dims})


def test_gather_nd_hand():
    data = np.array([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], np.int32)
    (y,) = ember_op("ember.gather_nd", [data, i64(1, 0, 0, -1).reshape(2, 2)])
    assert y.tolist() == [[4, 5], [2, 3]]
    (y,) = ember_op("ember.gather_nd", [data, i64(1, 0).reshape(2, 1)], {"batch_dims": 1})
    assert y.tolist() == [[2, 3], [4, 5]]


# -- scatters --------------------------------------------------------------------------------------------------
REDUCTIONS = ["none", "add", "mul", "max", "min"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_scatter_elements_vs_onnx(reduction, axis, dtype):
    data, upd = rand((4, 3), dtype), rand((2, 3), dtype)
    d = data.shape[axis]
    # distinct indices per column/row so "none" is defined in ONNX too
    idx = np.stack([np.random.default_rng().permutation(d)[:2] for _ in range(3)], 1) if axis == 0 else \
        np.stack([np.random.default_rng().permutation(d)[:3] for _ in range(2)], 0)
    upd = upd if axis == 0 else rand((2, 3), dtype)
    idx = idx.astype(np.int64) - (d if reduction == "add" else 0)  # negative indices too
    check_vs_onnx("ember.scatter_elements", "ScatterElements", [data, idx, upd],
                  {"axis": axis, "reduction": reduction})


@pytest.mark.parametrize("reduction,want", [
    ("none", [1, -5, 3, 30]), ("add", [1, 7, 3, 34]), ("mul", [1, -100, 3, 120]), ("max", [1, 10, 3, 30]),
    ("min", [1, -5, 3, 4]),
])
def test_scatter_elements_duplicates_hand(reduction, want):
    data = np.array([1, 2, 3, 4], np.int32)
    (y,) = ember_op("ember.scatter_elements", [data, i64(1, 1, -1), np.array([10, -5, 30], np.int32)],
                    {"reduction": reduction})
    assert y.tolist() == want
    assert data.tolist() == [1, 2, 3, 4]  # the operand is not modified


def test_scatter_nan_and_f16_accumulation():
    data = np.array([np.nan, 1.0], np.float32)
    (y,) = ember_op("ember.scatter_elements", [data, i64(0, 1), np.array([5.0, np.nan], np.float32)],
                    {"reduction": "max"})
    assert np.isnan(y).all()
    data = np.array([2048.0], np.float16)  # f16 steps by 2 here: one-by-one f16 adds would stay at 2048
    (y,) = ember_op("ember.scatter_elements", [data, i64(0, 0), np.array([1.0, 1.0], np.float16)],
                    {"reduction": "add"})
    assert y.dtype == np.float16 and y.tolist() == [2050.0]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("data_shape,ind_shape", [((4, 3), (2, 1)), ((4, 3), (2, 2)), ((2, 3, 4), (1, 2, 2))])
def test_scatter_nd_vs_onnx(reduction, data_shape, ind_shape):
    k = ind_shape[-1]
    lead = data_shape[:k]
    flat = np.random.default_rng().permutation(int(np.prod(lead)))[:int(np.prod(ind_shape[:-1]))]
    idx = np.stack(np.unravel_index(flat, lead), -1).reshape(ind_shape).astype(np.int64)
    data, upd = rand(data_shape), rand(ind_shape[:-1] + data_shape[k:])
    check_vs_onnx("ember.scatter_nd", "ScatterND", [data, idx, upd], {"reduction": reduction})


@pytest.mark.parametrize("reduction,want", [
    ("none", [[30, 30], [3, 4], [20, 20]]), ("add", [[41, 42], [3, 4], [25, 26]]),
    ("mul", [[300, 600], [3, 4], [100, 120]]), ("max", [[30, 30], [3, 4], [20, 20]]),
    ("min", [[1, 2], [3, 4], [5, 6]]),
])
def test_scatter_nd_duplicates_hand(reduction, want):
    data = np.array([[1, 2], [3, 4], [5, 6]], np.int64)
    upd = np.array([[10, 10], [20, 20], [30, 30]], np.int64)
    (y,) = ember_op("ember.scatter_nd", [data, i64(0, -1, 0).reshape(3, 1), upd], {"reduction": reduction})
    assert y.tolist() == want


# -- nonzero, one_hot -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 2, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.bool_, np.int32])
def test_nonzero_vs_onnx(shape, dtype):
    x = rand(shape, dtype)
    if dtype != np.bool_:
        x = np.where(rand(shape, np.bool_), x, 0).astype(dtype)  # some zeros to skip
    check_vs_onnx("ember.nonzero", "NonZero", [x])


def test_nonzero_hand():
    (y,) = ember_op("ember.nonzero", [np.array([[0, 1], [2, 0]], np.int32)])
    assert y.tolist() == [[0, 1], [1, 0]]
    (y,) = ember_op("ember.nonzero", [np.array(3.0, np.float32)])
    assert y.shape == (0, 1)
    (y,) = ember_op("ember.nonzero", [np.zeros((2, 2), np.float32)])
    assert y.shape == (2, 0)


@pytest.mark.parametrize("x", [np.array([[0, 1], [2, 0]], np.int32), np.zeros((2, 3), np.float32),
                               np.ones((3,), np.bool_), np.array([[[0.0, -0.0], [np.nan, 2.0]]], np.float32)],
                         ids=["some", "none", "all", "nan-and-signed-zeros"])
def test_nonzero_padded_is_nonzero_then_padding(x):
    """nonzero_padded's columns and count, and ember.head of them on axis 1, are ember.nonzero's result."""
    (want,) = ember_op("ember.nonzero", [x])
    columns, count = ember_op("ember.nonzero_padded", [x])
    assert columns.shape == (x.ndim, x.size) and columns.dtype == np.int64 and count.shape == ()
    assert count == want.shape[1] and np.array_equal(columns[:, :count], want) and (columns[:, count:] == -1).all()
    assert np.array_equal(ember_op("ember.head", [columns, count], {"axis": 1})[0], want)


def test_nonzero_padded_shapes():
    b = ir.Builder()
    cols, count = b.nonzero_padded(b.input("x", ir.f32["N", 5]))
    assert (str(cols.type), str(count.type)) == ("i64[2,5*N]", "i64[]")
    with pytest.raises(ShapeError, match="rank >= 1"):
        b.nonzero_padded(b.input("s", ir.f32[()]))


@pytest.mark.parametrize("axis", [-1, 0, 1, -3])
@pytest.mark.parametrize("idx_dtype,val_dtype", [(np.int64, np.float32), (np.int32, np.int64)])
def test_one_hot_vs_onnx(axis, idx_dtype, val_dtype):
    idx = np.random.default_rng().integers(-5, 7, (2, 3)).astype(idx_dtype)  # some out of range
    values = rand((2,), val_dtype)
    check_vs_onnx("ember.one_hot", "OneHot", [idx, values], {"depth": 5, "axis": axis}, {"axis": axis},
                  onnx_inputs=[idx, np.array(5, np.int64), values])


def test_one_hot_hand():
    (y,) = ember_op("ember.one_hot", [i64(0, -1, 3, 5, -5), np.array([0, 1], np.int32)], {"depth": 4})
    assert y.tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    (y,) = ember_op("ember.one_hot", [np.array([1.7, -0.5], np.float32), np.array([2.0, 5.0], np.float32)],
                    {"depth": 3, "axis": 0})
    assert y.tolist() == [[2, 5], [5, 2], [2, 2]]  # 1.7 -> 1, -0.5 -> 0


# -- symbolic shape inference ---------------------------------------------------------------------------------------
def test_symbolic_reshape():
    b, (x,) = build(ir.f32["N", "S", 64])
    assert str(b.reshape(x, shape=["N*S", -1]).type) == "f32[N*S,64]"
    assert str(b.reshape(x, shape=[0, 0, 4, -1]).type) == "f32[N,S,4,16]"
    assert str(b.reshape(x, shape=[-1, "S", 8]).type) == "f32[8*N,S,8]"
    assert str(b.reshape(x, shape=["N", -1]).type) == "f32[N,64*S]"
    assert str(b.reshape(x, shape=[-1, 3]).type) == "f32[?,3]"  # 64*N*S/3 is not provably exact
    assert str(b.reshape(x, shape=["S", "N", 64]).type) == "f32[S,N,64]"
    b, (x,) = build(ir.f32["N", "S+1", 4])
    assert str(b.reshape(x, shape=["N*S+N", -1]).type) == "f32[N*S+N,4]"


def test_symbolic_reshape_runs():
    x = rand((2, 3, 8))
    (y,) = ember_op("ember.reshape", [x], {"shape": ["N*S", -1]}, symbolic={0: ("N", "S", 8)})
    assert np.array_equal(y, x.reshape(6, 8))


def test_symbolic_concat_split_transpose():
    b, (a, c) = build(ir.f32["N", 4], ir.f32["N", "M"])
    assert str(b.concat(a, c, axis=1).type) == "f32[N,M+4]"
    assert str(b.concat(c, a, a, axis=-1).type) == "f32[N,M+8]"
    assert str(b.transpose(c).type) == "f32[M,N]"
    b, (a, c) = build(ir.f32["N", 4], ir.f32[3, 4])
    assert str(b.concat(a, c, axis=0).type) == "f32[N+3,4]"
    b, (a, c) = build(ir.f32["N", 4], ir.f32[2, 5])
    assert str(b.concat(a, c, axis=1).type) == "f32[2,9]"  # the static dim wins
    b, (x,) = build(ir.f32["N", "S"])
    parts = b.split(x, axis=1, num_outputs=3)
    assert [str(p.type) for p in parts] == ["f32[N,(S+2)//3]"] * 2 + ["f32[N,-2*((S+2)//3)+S]"]
    parts = b.split(x, axis=1, sizes=[2, "S-2"])
    assert [str(p.type) for p in parts] == ["f32[N,2]", "f32[N,S-2]"]


def test_symbolic_split_runs():
    x = rand((2, 7))
    got = ember_op("ember.split", [x], {"axis": 1, "num_outputs": 3}, symbolic={0: ("N", "S")})
    assert [g.shape for g in got] == [(2, 3), (2, 3), (2, 1)]


@pytest.mark.parametrize("starts,ends,steps,want", [
    ((0,), ("S",), None, "f32[N,S,64]"),
    ((0,), (BIG,), None, "f32[N,S,64]"),
    ((1,), (BIG,), None, "f32[N,S-1,64]"),
    ((-1,), (BIG,), None, "f32[N,1,64]"),
    ((0,), (-1,), None, "f32[N,S-1,64]"),
    ((2,), ("S-1",), None, "f32[N,S-3,64]"),
    ((-1,), (-BIG - 1,), (-1,), "f32[N,S,64]"),
    ((0,), (BIG,), (2,), "f32[N,(S+1)//2,64]"),
    (("S",), (BIG,), None, "f32[N,0,64]"),
    (("S+2",), (BIG,), None, "f32[N,0,64]"),      # provably past the end: clamped
    ((0,), ("2*S",), None, "f32[N,S,64]"),         # provably past the end: clamped
])
def test_symbolic_slice(starts, ends, steps, want):
    b, (x,) = build(ir.f32["N", "S", 64])
    assert str(b.slice(x, starts=starts, ends=ends, axes=[1], steps=steps).type) == want


def test_symbolic_slice_of_static_dim_and_runs():
    b, (x,) = build(ir.f32[1024, 8])
    assert str(b.slice(x, starts=[0], ends=["S"], axes=[0]).type) == "f32[S,8]"
    x = rand((2, 5, 3))
    (y,) = ember_op("ember.slice", [x], {"starts": (1,), "ends": ("S",), "axes": (1,)}, symbolic={0: ("N", "S", 3)})
    assert np.array_equal(y, x[:, 1:5])


def test_symbolic_expand_tile_pad_flatten_squeeze():
    b, (x, y) = build(ir.f32["N", 1], ir.f32[1, 4])
    assert str(b.expand(x, shape=[1, 8]).type) == "f32[N,8]"
    assert str(b.expand(y, shape=["N", 1]).type) == "f32[N,4]"
    assert str(b.expand(x, shape=["M", 1, 1]).type) == "f32[M,N,1]"
    assert str(b.tile(x, repeats=[2, "R"]).type) == "f32[2*N,R]"
    b, (x,) = build(ir.f32["N", 3, "H", "W"])
    assert str(b.pad(x, pads=[0, 0, 1, 1, 0, 0, 1, 1]).type) == "f32[N,3,H+2,W+2]"
    assert str(b.pad(x, pads=[-1, "P"], axes=[2]).type) == "f32[N,3,H+P-1,W]"
    assert str(b.flatten(x, axis=1).type) == "f32[N,3*H*W]"
    assert str(b.flatten(x, axis=0).type) == "f32[1,3*H*N*W]"
    assert str(b.squeeze(b.unsqueeze(x, axes=[-1]), axes=[-1]).type) == "f32[N,3,H,W]"
    assert str(b.squeeze(x, axes=[0]).type) == "f32[3,H,W]"  # N taken to be 1; checked at run time
    assert str(b.shape(x, start=1).type) == "i64[3]"


def test_symbolic_gathers_and_scatters():
    b, (t, ids) = build(ir.f32["V", 512], ir.i64["N", "S"])
    assert str(b.gather(t, ids).type) == "f32[N,S,512]"
    b, (x, ix) = build(ir.f32["B", "S", 8], ir.i64["B", "K", 1])
    assert str(b.gather_nd(x, ix, batch_dims=1).type) == "f32[B,K,8]"
    b, (x, ix, up) = build(ir.f32["N", 4], ir.i64["K", 1], ir.f32["K", 4])
    assert str(b.scatter_nd(x, ix, up).type) == "f32[N,4]"
    b, (ids, vals) = build(ir.i64["N"], ir.f32[2])
    assert str(b.one_hot(ids, vals, depth=10).type) == "f32[N,10]"
    assert str(b.one_hot(ids, vals, depth=10, axis=0).type) == "f32[10,N]"


def test_nonzero_bounded_unknown():
    b, (x,) = build(ir.f32["N", 4])
    nz = b.nonzero(x)
    assert str(nz.type) == "i64[2,?<=4*N]"
    b.output("nz", nz)
    text = str(b.build())
    assert "i64[2,?<=4*N]" in text and str(ir.parse(text)) == text
    b, (x,) = build(ir.f32[3, 5])
    assert str(b.nonzero(x).type) == "i64[2,?<=15]"
    b, (x,) = build(ir.f32[()])
    assert str(b.nonzero(x).type) == "i64[0,?<=1]"


def test_symbolic_results_interpret():
    """Symbolic result shapes evaluate to the reference's shapes at run time."""
    x = rand((2, 6, 4))
    sym = {0: ("N", "S", 4)}
    (y,) = ember_op("ember.pad", [x], {"pads": (1, 2), "axes": (1,), "mode": "edge"}, symbolic=sym)
    assert y.shape == (2, 9, 4)
    (y,) = ember_op("ember.flatten", [x], {"axis": 2}, symbolic=sym)
    assert y.shape == (12, 4)
    (y,) = ember_op("ember.slice", [x], {"starts": (-1,), "ends": (-BIG - 1,), "steps": (-2,), "axes": (1,)},
                    symbolic=sym)
    assert np.array_equal(y, x[:, ::-2])


# -- errors -------------------------------------------------------------------------------------------------
def _raises(types, op, match, exc=ShapeError, **attrs):
    b, xs = build(*types)
    with pytest.raises(exc, match=match):
        getattr(b, op)(*xs, **attrs)


@pytest.mark.parametrize("types,op,attrs,match", [
    ((ir.f32[2, 3],), "reshape", {"shape": [4, 2]}, "cannot reshape f32\\[2,3\\] \\(6 elements\\)"),
    ((ir.f32[2, 3],), "reshape", {"shape": [-1, -1]}, "more than one -1"),
    ((ir.f32[2, 3],), "reshape", {"shape": [-1, 4]}, "6 is not a multiple of 4"),
    ((ir.f32[2, 3],), "reshape", {"shape": [3, -2]}, "dims must be >= 0"),
    ((ir.f32[2, 3],), "reshape", {"shape": [0, 0, 0]}, "input f32\\[2,3\\] has rank 2"),
    ((ir.f32[2, 3],), "reshape", {"shape": [0, -1], "allowzero": True}, "both -1 and 0"),
    ((ir.f32["N", 4],), "reshape", {"shape": ["4*N+1"]}, "cannot reshape"),
    ((ir.f32[2, 3], ir.f32[4, 3]), "concat", {"axis": 1}, "dim 4 at axis 0 where the others have 2"),
    ((ir.f32[2, 3], ir.f32[2, 3, 1]), "concat", {"axis": 0}, "one rank"),
    ((ir.f32[2, 3], ir.i32[2, 3]), "concat", {"axis": 0}, "share an element type"),
    ((ir.f32[2, 3], ir.f32[2, 3]), "concat", {"axis": 2}, "axis 2 is out of range for rank 2"),
    ((ir.f32[2, 3],), "transpose", {"perm": [0, 0]}, "not a permutation of 0..1"),
    ((ir.f32[2, 3],), "transpose", {"perm": [0, 1, 2]}, "not a permutation"),
    ((ir.f32[2, 3],), "squeeze", {"axes": [0]}, "its dim is 2, not 1"),
    ((ir.f32[1, 3],), "squeeze", {"axes": [2]}, "out of range"),
    ((ir.f32["N", 1],), "squeeze", {}, "needs static dims"),
    ((ir.f32[2, 3],), "unsqueeze", {"axes": [3]}, "axes 3 is out of range for rank 3"),
    ((ir.f32[2, 3],), "unsqueeze", {"axes": [0, -4]}, "repeat an axis"),
    ((ir.f32[2, 3],), "flatten", {"axis": 3}, "out of range \\[-2, 2\\]"),
    ((ir.f32[6],), "split", {"sizes": [2, 3]}, "add up to 5, not to dim 6"),
    ((ir.f32[6],), "split", {}, "exactly one of sizes and num_outputs"),
    ((ir.f32[5],), "split", {"num_outputs": 4}, "cannot split dim 5 into 4"),
    ((ir.f32[6],), "split", {"sizes": [2, 3], "axis": 1}, "out of range"),
    ((ir.f32[6],), "slice", {"starts": [0], "ends": [2], "steps": [0]}, "steps must be nonzero"),
    ((ir.f32[6],), "slice", {"starts": [0, 1], "ends": [2]}, "one each per axis"),
    ((ir.f32[6],), "slice", {"starts": [0], "ends": [2], "axes": [1]}, "out of range"),
    ((ir.f32[6, 2],), "slice", {"starts": [0, 0], "ends": [2, 2], "axes": [1, -1]}, "repeat an axis"),
    ((ir.f32[6],), "pad", {"pads": [1]}, "expected 2 per padded axis"),
    ((ir.f32[6],), "pad", {"pads": [-4, -3]}, "below 0"),
    ((ir.f32[6], ir.f32[()]), "pad", {"pads": [1, 1], "mode": "edge"}, "only applies to mode constant"),
    ((ir.f32[6], ir.i32[()]), "pad", {"pads": [1, 1]}, "share an element type"),
    ((ir.f32[0],), "pad", {"pads": [1, 1], "mode": "reflect"}, "cannot pad empty axis"),
    ((ir.f32[3, 2],), "expand", {"shape": [4, 2]}, "do not broadcast"),
    ((ir.f32[3, 2],), "tile", {"repeats": [2]}, "one per axis"),
    ((ir.f32[3],), "trilu", {}, "rank >= 2"),
    ((ir.f32[3, 4], ir.i64[2]), "gather", {"axis": 2}, "out of range"),
    ((ir.f32[3, 4], ir.f32[2]), "gather", {}, "must be a integer tensor"),
    ((ir.f32[3, 4], ir.i64[3]), "gather_elements", {}, "need one rank"),
    ((ir.f32[3, 4], ir.i64[3, 5]), "gather_elements", {"axis": 0}, "indices dim 1 is 5, larger"),
    ((ir.f32[3, 4], ir.i64[2, "K"]), "gather_nd", {}, "must be static"),
    ((ir.f32[3, 4], ir.i64[2, 3]), "gather_nd", {}, "must be in \\[1, 2\\]"),
    ((ir.f32[3, 4], ir.i64[2, 1]), "gather_nd", {"batch_dims": 1}, "batch dims of data and indices"),
    ((ir.f32[3, 4], ir.i64[2, 4], ir.f32[2, 3]), "scatter_elements", {}, "indices and updates"),
    ((ir.f32[3, 4], ir.i64[2, 4], ir.f16[2, 4]), "scatter_elements", {}, "share an element type"),
    ((ir.f32[3, 4], ir.i64[2, 1], ir.f32[2, 3]), "scatter_nd", {}, "updates and indices"),
    ((ir.f32[3, 4], ir.i64[2, 3], ir.f32[2]), "scatter_nd", {}, "exceed the rank"),
    ((ir.i64[3], ir.f32[3]), "one_hot", {"depth": 4}, "values must be \\[off, on\\]"),
    ((ir.i64[3], ir.f32[2]), "one_hot", {"depth": 0}, "depth 0 must be >= 1"),
    ((ir.i64[3], ir.f32[2]), "one_hot", {"depth": 4, "axis": 2}, "out of range for rank 2"),
    ((ir.i64[2], ir.i64[()], ir.i64[()]), "range", {}, "start must be a scalar"),
    ((ir.i64[()], ir.i32[()], ir.i64[()]), "range", {}, "share an element type"),
])
def test_shape_errors(types, op, attrs, match):
    _raises(types, op, match, **attrs)


def test_attribute_errors():
    _raises((ir.f32[3, 4], ir.i64[3, 4], ir.f32[3, 4]), "scatter_elements", "expected one of", VerifyError,
            reduction="sum")
    _raises((ir.f32[3],), "pad", "expected one of", VerifyError, pads=[1, 1], mode="mirror")
    _raises((ir.f32[3],), "reshape", "missing required attribute 'shape'", VerifyError)


def test_range_errors_on_constants():
    b = ir.Builder("t")
    c = b.constant(np.int64(0))
    with pytest.raises(ShapeError, match="delta is 0"):
        b.range(c, b.constant(np.int64(3)), c)
    with pytest.raises(ShapeError, match="contradicts the constant operands, which give 3"):
        b.range(c, b.constant(np.int64(3)), b.constant(np.int64(1)), length=4)


def test_run_time_errors():
    with pytest.raises(InterpretError, match="size not equal to one"):
        ember_op("ember.squeeze", [rand((2, 3))], {"axes": (0,)}, symbolic={0: ("N", 3)})
    with pytest.raises(InterpretError, match="out of range"):
        ember_op("ember.scatter_nd", [rand((3,)), i64(3).reshape(1, 1), rand((1,))])
    b = ir.Builder("t")
    r = b.range(b.input("s", ir.i64[()]), b.input("l", ir.i64[()]), b.input("d", ir.i64[()]), length=2)
    b.output("r", r)
    with pytest.raises(InterpretError, match="length attribute says 2"):
        ir.interpret(b.build(), {"s": np.int64(0), "l": np.int64(3), "d": np.int64(1)})


def test_onnx_python_slicing_differs_only_in_the_documented_corner():
    """onnx.reference slices with Python semantics; the spec (and Ember) clamp start to 0."""
    x = np.arange(10, dtype=np.int64)
    (want,) = onnx_op("Slice", [x, i64(-20), i64(-30), i64(0), i64(-1)])
    assert want.tolist() == []
    (got,) = ember_op("ember.slice", [x], {"starts": (-20,), "ends": (-30,), "steps": (-1,)})
    assert got.tolist() == [0]


# -- eye_like, bitcast, unique, reverse_sequence, tensor_scatter ----------------------------------------------------
ONNX_CODE = {np.float32: 1, np.int32: 6, np.float16: 10, np.int64: 7, np.bool_: 9}


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (3, 3)])
@pytest.mark.parametrize("k", [0, 1, -2, 5])
@pytest.mark.parametrize("dtype", [None, np.int32, np.float16])
def test_eye_like_vs_onnx(shape, k, dtype):
    x = rand(shape, np.int64)
    attrs = {"k": k, "dtype": None if dtype is None else ir.dtype_of(np.dtype(dtype))}
    onnx_attrs = {"k": k} if dtype is None else {"k": k, "dtype": ONNX_CODE[dtype]}
    (y,) = check_vs_onnx("ember.eye_like", "EyeLike", [x], attrs, onnx_attrs)
    assert y.dtype == (np.int64 if dtype is None else dtype)


def test_eye_like_hand_and_symbolic():
    (y,) = ember_op("ember.eye_like", [rand((2, 3))], {"k": 1})
    assert y.tolist() == [[0, 1, 0], [0, 0, 1]] and y.dtype == np.float32
    (y,) = ember_op("ember.eye_like", [rand((3, 2))], {"k": -1, "dtype": ir.boolean})
    assert y.tolist() == [[False, False], [True, False], [False, True]]
    b, (x,) = build(ir.f32["N", "M"])
    assert str(b.eye_like(x).type) == "f32[N,M]"
    assert str(b.eye_like(x, dtype=ir.i64, k=2).type) == "i64[N,M]"
    assert ShapeOnly in ir.lookup("ember.eye_like").traits
    (y,) = ember_op("ember.eye_like", [rand((2, 2))], {}, symbolic={0: ("N", "N")})
    assert y.tolist() == [[1, 0], [0, 1]]


@pytest.mark.parametrize("src,dst", [(np.float32, np.int32), (np.int32, np.float32), (np.float64, np.int64),
                                     (np.uint16, np.int16), (np.int8, np.uint8), (np.bool_, np.uint8),
                                     (np.float16, np.uint16)])
@pytest.mark.parametrize("shape", [(), (2, 3)])
def test_bitcast_vs_onnx(src, dst, shape):
    x = rand(shape, src)
    code = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dst))
    (y,) = check_vs_onnx("ember.bitcast", "BitCast", [x], {"to": ir.dtype_of(np.dtype(dst))}, {"to": code},
                         opset=26)
    assert y.dtype == dst and y.shape == shape


def test_bitcast_hand():
    (y,) = ember_op("ember.bitcast", [np.array([1.0, -2.0], np.float32)], {"to": ir.i32})
    assert y.tolist() == [0x3F800000, -0x40000000]
    (y,) = ember_op("ember.bitcast", [np.array([-1, 127], np.int8)], {"to": ir.u8})
    assert y.tolist() == [255, 127]
    (y,) = ember_op("ember.bitcast", [np.array([-1, -8, 7], ir.i4.np_dtype)], {"to": ir.u4})
    assert y.astype(np.int64).tolist() == [15, 8, 7]
    (y,) = ember_op("ember.bitcast", [np.array([0, 1, 2], np.uint8)], {"to": ir.boolean})
    assert y.tolist() == [False, True, True]
    (y,) = ember_op("ember.bitcast", [np.array(0x3C00, np.uint16)], {"to": ir.f16})
    assert y.shape == () and y == 1.0
    b, (x,) = build(ir.f32["N", 4])
    assert str(b.bitcast(x, to=ir.u32).type) == "u32[N,4]"
    assert ViewLike in ir.lookup("ember.bitcast").traits


def _dups(shape, dtype=np.float32):
    return np.random.default_rng().integers(0, 3, shape).astype(dtype)  # many repeats


# onnx.reference reorders unsorted results with np.take(x, first, axis=0), wrong for a flattened
# multi-dim x or an axis other than 0, so those variants are checked by hand (and against onnxruntime
# in tests/frontends/onnx/test_shape.py).
@pytest.mark.parametrize("sort,axis,shape", [
    (True, None, (3, 4)), (True, 0, (5, 2)), (True, 1, (2, 6)), (True, -1, (2, 2, 5)), (True, None, (7,)),
    (False, None, (7,)), (False, 0, (5, 2)), (False, 0, (6, 2, 2)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_unique_vs_onnx(sort, axis, shape, dtype):
    x = _dups(shape, dtype)
    attrs = {"sorted": sort, "axis": axis}
    onnx_attrs = {"sorted": int(sort)} if axis is None else {"sorted": int(sort), "axis": axis}
    check_vs_onnx("ember.unique", "Unique", [x], attrs, onnx_attrs, n_outputs=4)


def test_unique_hand():
    x = np.array([2, 1, 1, 3, 4, 3], np.int32)  # the ONNX spec's example 1
    y, first, inverse, counts = ember_op("ember.unique", [x], {"sorted": False})
    assert (y.tolist(), first.tolist(), inverse.tolist(), counts.tolist()) == \
        ([2, 1, 3, 4], [0, 1, 3, 4], [0, 1, 1, 2, 3, 2], [1, 2, 2, 1])
    y, first, inverse, counts = ember_op("ember.unique", [x], {})
    assert (y.tolist(), first.tolist(), inverse.tolist(), counts.tolist()) == \
        ([1, 2, 3, 4], [1, 0, 3, 4], [1, 0, 0, 2, 3, 2], [2, 1, 2, 1])
    x = np.array([[1, 0, 0], [1, 0, 0], [2, 3, 4]], np.float16)  # example 3, in f16
    y, first, inverse, counts = ember_op("ember.unique", [x], {"axis": 0})
    assert y.dtype == np.float16 and y.tolist() == [[1, 0, 0], [2, 3, 4]]
    assert (first.tolist(), inverse.tolist(), counts.tolist()) == ([0, 2], [0, 0, 1], [2, 1])
    x = np.array([[2, 1, 2], [0, 5, 0]], np.int64)  # columns (2, 0), (1, 5), (2, 0)
    y, first, inverse, counts = ember_op("ember.unique", [x], {"axis": 1, "sorted": False})
    assert (y.tolist(), first.tolist(), inverse.tolist(), counts.tolist()) == \
        ([[2, 1], [0, 5]], [0, 1], [0, 1, 0], [2, 1])
    y, first, inverse, counts = ember_op("ember.unique", [x], {"axis": 1})
    assert (y.tolist(), first.tolist(), inverse.tolist(), counts.tolist()) == \
        ([[1, 2], [5, 0]], [1, 0], [1, 0, 1], [1, 2])
    y, first, inverse, counts = ember_op("ember.unique", [np.array([[2, 1, 1], [3, 1, 2]], np.float32)],
                                         {"sorted": False})
    assert (y.tolist(), first.tolist(), inverse.tolist(), counts.tolist()) == \
        ([2, 1, 3], [0, 1, 3], [0, 1, 1, 2, 1, 0], [2, 3, 1])
    y, _, inverse, counts = ember_op("ember.unique", [np.array([np.nan, 1.0, np.nan, -0.0, 0.0], np.float32)], {})
    assert y.tolist()[:2] == [0.0, 1.0] and np.isnan(y[2]) and counts.tolist() == [2, 1, 2]


def test_unique_symbolic():
    b, (x,) = build(ir.f32["N", 4])
    assert [str(r.type) for r in b.unique(x)] == ["f32[?<=4*N]", "i64[?<=4*N]", "i64[4*N]", "i64[?<=4*N]"]
    assert [str(r.type) for r in b.unique(x, axis=0)] == ["f32[?<=N,4]", "i64[?<=N]", "i64[N]", "i64[?<=N]"]
    got = ember_op("ember.unique", [_dups((3, 4))], {"axis": 1}, symbolic={0: ("N", "M")})
    assert got[0].shape[0] == 3 and got[2].shape == (4,)


@pytest.mark.parametrize("time_axis,batch_axis", [(0, 1), (1, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_reverse_sequence_vs_onnx(time_axis, batch_axis, dtype):
    shape = [0, 0, 3]
    shape[time_axis], shape[batch_axis] = 5, 4
    x = rand(shape, dtype)
    lens = np.random.default_rng().integers(0, 6, 4).astype(np.int64)
    attrs = {"time_axis": time_axis, "batch_axis": batch_axis}
    check_vs_onnx("ember.reverse_sequence", "ReverseSequence", [x, lens], attrs)


def test_reverse_sequence_hand():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)  # the ONNX spec's example 2
    (y,) = ember_op("ember.reverse_sequence", [x, i64(1, 2, 3, 4)], {"time_axis": 1, "batch_axis": 0})
    assert y.tolist() == [[0, 1, 2, 3], [5, 4, 6, 7], [10, 9, 8, 11], [15, 14, 13, 12]]
    (y,) = ember_op("ember.reverse_sequence", [x, i64(0, 4, 1, 2)], {})
    assert y[:, 0].tolist() == [0, 4, 8, 12] and y[:, 1].tolist() == [13, 9, 5, 1] and y[:, 3].tolist() == [7, 3, 11, 15]
    b, (x, lens) = build(ir.f32["T", "B", 8], ir.i32["B"])
    assert str(b.reverse_sequence(x, lens).type) == "f32[T,B,8]"
    with pytest.raises(InterpretError, match="must be in \\[0, 4\\]"):
        ember_op("ember.reverse_sequence", [rand((4, 2)), i64(5, 1)], {})


def _scatter_inputs(cache_shape, update_shape, axis, with_indices, dtype=np.float32):
    cache, update = rand(cache_shape, dtype), rand(update_shape, dtype)
    room = cache_shape[axis] - update_shape[axis]
    pos = np.random.default_rng().integers(0, room + 1, cache_shape[0]).astype(np.int64) if with_indices else None
    return cache, update, pos


@pytest.mark.parametrize("cache_shape,update_shape,axis", [((2, 3, 6, 4), (2, 3, 2, 4), -2),
                                                           ((2, 5, 3), (2, 1, 3), 1), ((3, 4), (3, 4), 1)])
@pytest.mark.parametrize("with_indices", [True, False])
@pytest.mark.parametrize("mode", ["linear", "circular"])
def test_tensor_scatter_vs_onnx(cache_shape, update_shape, axis, with_indices, mode):
    cache, update, pos = _scatter_inputs(cache_shape, update_shape, axis, with_indices)
    if pos is not None and mode == "circular":
        pos = pos + cache_shape[axis] - 1  # wraps
    check_vs_onnx("ember.tensor_scatter", "TensorScatter", [cache, update, pos], {"axis": axis, "mode": mode},
                  opset=24)


def test_tensor_scatter_hand():
    cache = np.zeros((2, 4), np.int32)
    update = np.array([[1, 2], [3, 4]], np.int32)
    (y,) = ember_op("ember.tensor_scatter", [cache, update, i64(1, 2)], {"axis": 1})
    assert y.tolist() == [[0, 1, 2, 0], [0, 0, 3, 4]]
    (y,) = ember_op("ember.tensor_scatter", [cache, update, i64(3, 0)], {"axis": 1, "mode": "circular"})
    assert y.tolist() == [[2, 0, 0, 1], [3, 4, 0, 0]]
    (y,) = ember_op("ember.tensor_scatter", [cache, update], {"axis": -1})
    assert y.tolist() == [[1, 2, 0, 0], [3, 4, 0, 0]]
    with pytest.raises(InterpretError, match="into a cache of length 4 \\(mode linear\\)"):
        ember_op("ember.tensor_scatter", [cache, update, i64(3, 0)], {"axis": 1})
    b, (c, u, p) = build(ir.f16["B", "H", "L", 64], ir.f16["B", "H", "S", 64], ir.i64["B"])
    assert str(b.tensor_scatter(c, u, p).type) == "f16[B,H,L,64]"
    assert str(b.tensor_scatter(c, u, mode="circular").type) == "f16[B,H,L,64]"


@pytest.mark.parametrize("types,op,attrs,match", [
    ((ir.f32[2, 3, 4],), "eye_like", {}, "needs a 2-D operand"),
    ((ir.string[2, 2],), "eye_like", {}, "cannot make an identity matrix of str"),
    ((ir.f32[2],), "bitcast", {"to": ir.i16}, "the bit widths must be equal"),
    ((ir.f32[2],), "bitcast", {"to": ir.string}, "strings have no fixed bit width"),
    ((ir.f32[2, 3],), "unique", {"axis": 2}, "out of range"),
    ((ir.f32[4], ir.i64[4]), "reverse_sequence", {}, "needs rank >= 2"),
    ((ir.f32[4, 2], ir.i64[2]), "reverse_sequence", {"batch_axis": 0}, "both axis 0"),
    ((ir.f32[4, 2], ir.i64[3]), "reverse_sequence", {}, "lengths must be \\[2\\]"),
    ((ir.f32[4, 2], ir.f32[2]), "reverse_sequence", {}, "integer tensor"),
    ((ir.f32[2, 4], ir.f32[2, 5]), "tensor_scatter", {"axis": 1}, "more than the cache's 4"),
    ((ir.f32[2, 4], ir.f32[3, 2]), "tensor_scatter", {"axis": 1}, "differ at dim 0"),
    ((ir.f32[2, 4], ir.f32[2, 4]), "tensor_scatter", {"axis": 0}, "the batch axis"),
    ((ir.f32[2, 4], ir.f16[2, 4]), "tensor_scatter", {"axis": 1}, "share an element type"),
    ((ir.f32[2, 4], ir.f32[2, 2], ir.i64[3]), "tensor_scatter", {"axis": 1}, "write_indices must be \\[batch\\]"),
])
def test_new_op_errors(types, op, attrs, match):
    _raises(types, op, match, **attrs)


def test_constant_of_shape_takes_a_data_dependent_shape():
    """Its shape is data (what survived a NonZero); dims stay unknown until run time."""
    b = ir.Builder()
    s = b.input("s", ir.i64[2])
    z = b.constant_of_shape(s, value=np.array(1.5, np.float32))
    assert str(z.type) == "f32[?,?]"
    b.output("z", z)
    m = ir.parse(str(b.build()))
    out = ir.interpret(m, {"s": np.array([2, 3], np.int64)})["z"]
    assert out.shape == (2, 3) and out.dtype == np.float32 and (out == 1.5).all()
    want = onnx_op("ConstantOfShape", [np.array([2, 3], np.int64)],
                   {"value": onnx.numpy_helper.from_array(np.array([1.5], np.float32))})[0]
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ShapeError, match="value must hold one element"):
        b2 = ir.Builder()
        b2.constant_of_shape(b2.input("s", ir.i64[2]), value=np.zeros(2, np.float32))
    with pytest.raises(InterpretError, match="negative dim"):
        ir.interpret(m, {"s": np.array([2, -1], np.int64)})
