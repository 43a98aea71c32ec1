"""ember.matmul, ember.gemm, ember.einsum: against onnx.reference, by hand, symbolic shapes, errors."""

import numpy as np
import pytest
from oracle import check_vs_onnx, ember_op, onnx_op, rand

from ember import ir
from ember.errors import ShapeError, VerifyError
from ember.tolerance import assert_close

# -- matmul vs ONNX ---------------------------------------------------------------------------
MATMUL_SHAPES = [
    ((3, 4), (4, 5)),          # plain
    ((4,), (4, 5)),            # 1-d left: row vector, dim dropped
    ((3, 4), (4,)),            # 1-d right: column vector, dim dropped
    ((4,), (4,)),              # dot product: a scalar
    ((2, 3, 4), (4, 5)),       # batch on the left
    ((4,), (2, 4, 5)),         # 1-d against a batch
    ((2, 1, 3, 4), (5, 4, 2)),  # batch dims broadcast both ways
    ((1, 3, 4), (2, 2, 4, 5)),  # rank 3 against rank 4
    ((2, 0, 4), (4, 3)),       # empty M
    ((3, 0), (0, 2)),          # empty K: zeros
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_shapes_f32(sa, sb):
    check_vs_onnx("ember.matmul", "MatMul", [rand(sa), rand(sb)])


@pytest.mark.parametrize("dt", [np.float16, np.float64, np.int32, np.int64, np.uint32, np.uint64])
def test_matmul_dtypes(dt):
    check_vs_onnx("ember.matmul", "MatMul", [rand((2, 3, 8), dt, low=0), rand((8, 5), dt, low=0)])


def test_matmul_bf16():
    a, b = rand((3, 16), ir.bf16), rand((16, 4), ir.bf16)
    check_vs_onnx("ember.matmul", "MatMul", [a, b])


@pytest.mark.parametrize("da,db", [(np.int8, np.int8), (np.uint8, np.uint8), (np.uint8, np.int8),
                                   (np.int8, np.uint8)])
def test_matmul_8bit_is_matmul_integer(da, db):
    a = rand((2, 3, 16), da, low=-12.7, high=12.7)
    b = rand((16, 4), db, low=-12.7, high=12.7)
    got = check_vs_onnx("ember.matmul", "MatMulInteger", [a, b], opset=10)
    assert got[0].dtype == np.int32


# -- matmul by hand ---------------------------------------------------------------------------
def test_matmul_by_hand():
    a = np.array([[1, 2], [3, 4]], np.float32)
    b = np.array([[5, 6], [7, 8]], np.float32)
    assert ember_op("ember.matmul", [a, b])[0].tolist() == [[19, 22], [43, 50]]
    v = np.array([1, -1], np.float32)
    assert ember_op("ember.matmul", [v, b])[0].tolist() == [-2, -2]       # row vector
    assert ember_op("ember.matmul", [a, v])[0].tolist() == [-1, -1]       # column vector
    assert ember_op("ember.matmul", [v, v])[0].shape == ()
    assert ember_op("ember.matmul", [v, v])[0] == 2


def test_matmul_empty_k_is_zero():
    out = ember_op("ember.matmul", [np.ones((2, 0), np.float32), np.ones((0, 3), np.float32)])[0]
    assert out.shape == (2, 3) and not out.any()


def test_matmul_f16_accumulates_in_f32():
    # 2048 + 1 + 1 + ... in f16 would stay 2048 (ulp there is 2); f32 keeps every 1.
    a = np.ones((1, 9), np.float16)
    b = np.array([[2048]] + [[1]] * 8, np.float16)
    assert ember_op("ember.matmul", [a, b])[0].item() == 2056.0


def test_matmul_i8_accumulates_in_i32():
    a = np.full((1, 4), 127, np.int8)
    b = np.full((4, 1), -128, np.int8)
    out = ember_op("ember.matmul", [a, b])[0]
    assert out.dtype == np.int32 and out.item() == 4 * 127 * -128
    au = np.full((1, 3), 255, np.uint8)
    assert ember_op("ember.matmul", [au, np.full((3, 1), 255, np.uint8)])[0].item() == 3 * 255 * 255


def test_matmul_i32_wraps():
    a = np.array([[2 ** 30, 2 ** 30]], np.int32)
    b = np.array([[2], [1]], np.int32)
    # 2^31 + 2^30 wraps to -2^31 + 2^30
    assert ember_op("ember.matmul", [a, b])[0].item() == -(2 ** 30)


def test_matmul_nan_propagates():
    a = np.array([[np.nan, 1.0]], np.float32)
    out = ember_op("ember.matmul", [a, np.ones((2, 2), np.float32)])[0]
    assert np.isnan(out).all()


# -- matmul shapes and errors -----------------------------------------------------------------
def _types(*types):
    b = ir.Builder()
    return b, [b.input(f"x{i}", t) for i, t in enumerate(types)]


@pytest.mark.parametrize("ta,tb,want", [
    (ir.f32["N", 3, "K"], ir.f32["K", 5], "f32[N,3,5]"),
    (ir.f32["K"], ir.f32["B", "K", 5], "f32[B,5]"),
    (ir.f32["B", 1, "S", 64], ir.f32[8, 64, "T"], "f32[B,8,S,T]"),
    (ir.f32["B", "S", 64], ir.f32["C", 64, 7], "f32[max(B, C),S,7]"),
    (ir.f32["K"], ir.f32["K"], "f32[]"),
    (ir.f32[4, "K"], ir.f32[64, 2], "f32[4,2]"),     # K = 64 checked at run time
    (ir.i8["N", 16], ir.u8[16, 4], "i32[N,4]"),
    (ir.f16[2, 3], ir.f16[3, 4], "f16[2,4]"),
])
def test_matmul_symbolic(ta, tb, want):
    b, (x, y) = _types(ta, tb)
    assert str(b.matmul(x, y).type) == want


@pytest.mark.parametrize("ta,tb,match", [
    (ir.f32[3, 4], ir.f32[5, 6], "contraction dims .* 4 vs 5"),
    (ir.f32[4], ir.f32[5], "contraction dims"),
    (ir.f32[2, 3, 4], ir.f32[3, 4, 5], "batch dims .* do not broadcast"),
    (ir.f32[()], ir.f32[3], "rank >= 1"),
    (ir.f32[3, 4], ir.f16[4, 5], "share an element type"),
    (ir.i8[3, 4], ir.i32[4, 5], "share an element type"),
    (ir.i4[3, 4], ir.i4[4, 5], "sub-byte integers"),
    (ir.f32[3, 4], ir.tensor("f32", None), "known rank"),
])
def test_matmul_errors(ta, tb, match):
    b, (x, y) = _types(ta, tb)
    with pytest.raises(ShapeError, match=match):
        b.matmul(x, y)


def test_matmul_rejects_bool():
    b, (x, y) = _types(ir.boolean[2, 2], ir.boolean[2, 2])
    with pytest.raises(ShapeError, match="numeric tensor"):
        b.matmul(x, y)


# -- gemm vs ONNX -----------------------------------------------------------------------------
GEMM_C_SHAPES = [None, (), (1,), (5,), (1, 5), (3, 1), (3, 5)]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("c_shape", GEMM_C_SHAPES)
def test_gemm_vs_onnx(trans_a, trans_b, c_shape):
    a = rand((4, 3) if trans_a else (3, 4))
    b = rand((5, 4) if trans_b else (4, 5))
    c = None if c_shape is None else rand(c_shape)
    attrs = {"alpha": 0.5, "beta": -1.5, "trans_a": trans_a, "trans_b": trans_b}
    onnx_attrs = {"alpha": 0.5, "beta": -1.5, "transA": int(trans_a), "transB": int(trans_b)}
    check_vs_onnx("ember.gemm", "Gemm", [a, b, c], attrs, onnx_attrs)


def test_gemm_defaults_vs_onnx():
    check_vs_onnx("ember.gemm", "Gemm", [rand((3, 4)), rand((4, 5)), rand((5,))])


@pytest.mark.parametrize("dt", [np.float16, np.float64, np.int32, np.int64])
def test_gemm_dtypes(dt):
    a, b, c = rand((3, 4), dt), rand((5, 4), dt), rand((1, 5), dt)
    check_vs_onnx("ember.gemm", "Gemm", [a, b, c], {"trans_b": True}, {"transB": 1})


def test_gemm_int_alpha_vs_onnx():
    a, b, c = rand((3, 4), np.int32), rand((4, 5), np.int32), rand((5,), np.int32)
    check_vs_onnx("ember.gemm", "Gemm", [a, b, c], {"alpha": 0.5, "beta": 2.0}, {"alpha": 0.5, "beta": 2.0})


def test_gemm_by_hand():
    a = np.array([[1, 2], [3, 4]], np.float32)
    b = np.array([[1, 0], [1, 1]], np.float32)
    c = np.array([10, 20], np.float32)
    # a @ b = [[3, 2], [7, 4]]; a^T @ b = [[4, 3], [6, 4]]; a @ b^T = [[1, 3], [3, 7]]
    assert ember_op("ember.gemm", [a, b, c])[0].tolist() == [[13, 22], [17, 24]]
    assert ember_op("ember.gemm", [a, b, c], {"trans_a": True, "beta": 0.0})[0].tolist() == [[4, 3], [6, 4]]
    assert ember_op("ember.gemm", [a, b], {"trans_b": True, "alpha": 2.0})[0].tolist() == [[2, 6], [6, 14]]
    col = np.array([[1], [-1]], np.float32)
    assert ember_op("ember.gemm", [a, b, col], {"beta": 3.0})[0].tolist() == [[6, 5], [4, 1]]


def test_gemm_int_truncates_toward_zero():
    a = np.array([[3]], np.int32)
    b = np.array([[-1]], np.int32)
    # alpha * -3 = -1.5 -> -1 (toward zero, not -2)
    assert ember_op("ember.gemm", [a, b], {"alpha": 0.5})[0].item() == -1


def test_gemm_symbolic():
    b, (x, w, c) = _types(ir.f32["N", 512], ir.f32[1000, 512], ir.f32[1000])
    assert str(b.gemm(x, w, c, trans_b=True).type) == "f32[N,1000]"
    b, (x, w, c) = _types(ir.f32[512, "N"], ir.f32[512, 10], ir.f32["N", 1])
    assert str(b.gemm(x, w, c, trans_a=True).type) == "f32[N,10]"


@pytest.mark.parametrize("ta,tb,tc,attrs,match", [
    (ir.f32[3, 4], ir.f32[5, 4], None, {}, "contraction dims"),
    (ir.f32[3, 4], ir.f32[4, 5], None, {"trans_a": True}, "contraction dims"),
    (ir.f32[2, 3, 4], ir.f32[4, 5], None, {}, "a must have rank 2"),
    (ir.f32[3, 4], ir.f32[4], None, {}, "b must have rank 2"),
    (ir.f32[3, 4], ir.f32[4, 5], ir.f32[4], {}, "does not broadcast to the result shape"),
    (ir.f32[3, 4], ir.f32[4, 5], ir.f32[3], {}, "does not broadcast"),
    (ir.f32[3, 4], ir.f32[4, 5], ir.f32[1, 3, 5], {}, "rank <= 2"),
    (ir.f32[3, 4], ir.f32[4, 5], ir.f16[5], {}, "share an element type"),
    (ir.f32["M", 4], ir.f32[4, 5], ir.f32[3, 5], {}, "does not broadcast"),
])
def test_gemm_errors(ta, tb, tc, attrs, match):
    b, vals = _types(*(t for t in (ta, tb, tc) if t is not None))
    with pytest.raises(ShapeError, match=match):
        b.gemm(*vals, **attrs)


# -- einsum vs ONNX ---------------------------------------------------------------------------
EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),                      # implicit output: ik
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhid,bhjd->bhij", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("ij->ji", [(3, 4)]),
    ("ji", [(3, 4)]),                                 # implicit: sorted, a transpose
    ("ii->i", [(3, 3)]),                              # diagonal
    ("ii", [(3, 3)]),                                 # trace
    ("i,i", [(5,), (5,)]),                            # dot
    ("i,j->ij", [(3,), (4,)]),                        # outer
    ("ij->", [(3, 4)]),                               # full sum
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk", [(2, 3, 4), (4, 5)]),             # ellipsis broadcasts
    ("...ii->...i", [(2, 3, 3)]),
    ("i...->...", [(3, 2, 4)]),
    ("b i d , b j d -> b i j", [(2, 3, 4), (2, 5, 4)]),  # spaces
    ("Ab,bC->AC", [(3, 4), (4, 2)]),                  # upper-case labels
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]),       # three operands
]


@pytest.mark.parametrize("equation,shapes", EINSUM_CASES)
def test_einsum_vs_onnx(equation, shapes):
    check_vs_onnx("ember.einsum", "Einsum", [rand(s) for s in shapes], {"equation": equation})


@pytest.mark.parametrize("dt", [np.float16, np.float64, np.int32, np.int64])
def test_einsum_dtypes(dt):
    check_vs_onnx("ember.einsum", "Einsum", [rand((2, 3, 4), dt), rand((2, 4, 5), dt)],
                  {"equation": "bij,bjk->bik"})


def test_einsum_bf16_accumulates_in_f32():
    x = np.array([256] + [1] * 8, ir.bf16.np_dtype)   # bf16 ulp at 256 is 2
    out = ember_op("ember.einsum", [x], {"equation": "i->"})[0]
    assert out.dtype == ir.bf16.np_dtype and float(out) == 264.0


def test_einsum_by_hand():
    m = np.array([[1, 2], [3, 4]], np.float32)
    assert ember_op("ember.einsum", [m], {"equation": "ii"})[0] == 5
    assert ember_op("ember.einsum", [m], {"equation": "ii->i"})[0].tolist() == [1, 4]
    assert ember_op("ember.einsum", [m], {"equation": "ij->j"})[0].tolist() == [4, 6]
    assert ember_op("ember.einsum", [m], {"equation": "ba"})[0].tolist() == [[1, 3], [2, 4]]
    v = np.array([1, 2], np.float32)
    assert ember_op("ember.einsum", [v, v], {"equation": "i,j"})[0].tolist() == [[1, 2], [2, 4]]


@pytest.mark.parametrize("types,equation,want", [
    ([ir.f32["B", 8, "S", 64], ir.f32["B", 8, "T", 64]], "bhid,bhjd->bhij", "f32[B,8,S,T]"),
    ([ir.f32["N", "C", 3, 3]], "...ij->...ji", "f32[N,C,3,3]"),
    ([ir.f32["N", 4, 5], ir.f32[5, 6]], "...ij,jk", "f32[N,4,6]"),
    ([ir.f32["B", 3, 4], ir.f32[1, 4, 6]], "...ij,...jk->...ik", "f32[B,3,6]"),
    ([ir.f32["S", "S"]], "ii->i", "f32[S]"),
    ([ir.f32["S", 7]], "ij->", "f32[]"),
    ([ir.f32[3, 4]], "ij", "f32[3,4]"),
    ([ir.f32[3, 4]], "ji", "f32[4,3]"),
    ([ir.f32[2, "K"], ir.f32[8, 3]], "ik,kj->ij", "f32[2,3]"),
    ([ir.f32["N", 3], ir.f32[4, 5]], "ij,kl->...", "f32[]"),
])
def test_einsum_symbolic(types, equation, want):
    b, vals = _types(*types)
    assert str(b.einsum(*vals, equation=equation).type) == want


@pytest.mark.parametrize("types,equation,match", [
    ([ir.f32[3, 4]], "", "equation is empty"),
    ([ir.f32[3, 4]], "ij,jk->ik", "2 input terms for 1 operands"),
    ([ir.f32[3, 4], ir.f32[4, 5]], "ij->ij", "1 input terms for 2 operands"),
    ([ir.f32[3, 4]], "ijk->i", "3 labels for operand f32\\[3,4\\] of rank 2"),
    ([ir.f32[3, 4]], "i->i", "1 labels"),
    ([ir.f32[3, 4], ir.f32[5, 6]], "ij,jk->ik", "label 'j' has different sizes: 4 vs 5"),
    ([ir.f32[3, 4]], "ii->i", "label 'i' has different sizes"),
    ([ir.f32[3, 4]], "ij->ik", "output label 'k' is not in any input term"),
    ([ir.f32[3, 4]], "ij->ii", "output label 'i' repeats"),
    ([ir.f32[3, 4]], "i1->i", "'1' is not a label"),
    ([ir.f32[3, 4]], "i.j->ij", "must be part of an ellipsis"),
    ([ir.f32[3, 4, 5]], "...i...->i", "more than one ellipsis"),
    ([ir.f32[3, 4]], "ij->i->j", "more than one '->'"),
    ([ir.f32[3, 4]], "ij-i", "'-' and '>'"),
    ([ir.f32[3, 4], ir.f32[4, 5]], "ij,jk->i,k", "cannot contain ','"),
    ([ir.f32[2, 3, 4]], "...j->j", "ellipsis stands for 2 dims but the output term has no '...'"),
    ([ir.f32[2, 3, 4], ir.f32[5, 4, 6]], "...ij,...jk->...ik", "ellipsis dims do not broadcast"),
    ([ir.f32[3, 4], ir.f16[4, 5]], "ij,jk", "share an element type"),
])
def test_einsum_errors(types, equation, match):
    b, vals = _types(*types)
    with pytest.raises(ShapeError, match=match):
        b.einsum(*vals, equation=equation)


def test_einsum_needs_equation():
    b, (x,) = _types(ir.f32[3])
    with pytest.raises(VerifyError, match="missing required attribute 'equation'"):
        b.einsum(x)


def test_einsum_round_trips_equation_with_ellipsis():
    x = rand((2, 3, 3))
    got = ember_op("ember.einsum", [x], {"equation": "...ii -> ...i"})[0]
    assert_close(got, np.einsum("...ii->...i", x))
    assert_close(got, onnx_op("Einsum", [x], {"equation": "...ii -> ...i"})[0])


# -- det --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4), (2, 3, 1, 1), (5, 2, 2)])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_det_vs_onnx(shape, dt):
    check_vs_onnx("ember.det", "Det", [rand(shape, dt)], opset=22)


def test_det_f16_computes_in_f32():
    x = rand((2, 3, 3), np.float16)  # onnx.reference's numpy cannot take f16 here
    got = ember_op("ember.det", [x])[0]
    assert got.dtype == np.float16
    assert np.array_equal(got, np.linalg.det(x.astype(np.float32)).astype(np.float16))


def test_det_by_hand():
    x = np.array([[[1, 2], [3, 4]], [[2, 0], [0, 3]], [[1, 2], [2, 4]]], np.float64)
    got = ember_op("ember.det", [x])[0]
    assert got.shape == (3,) and np.allclose(got, [-2, 6, 0])
    three = np.array([[2, 0, 1], [1, 3, 2], [1, 1, 1]], np.float32)  # 2*(3-2) - 0 + 1*(1-3) = 0
    assert ember_op("ember.det", [three])[0].shape == ()
    assert abs(float(ember_op("ember.det", [three])[0])) < 1e-5
    perm = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32)  # an even permutation
    assert float(ember_op("ember.det", [perm])[0]) == pytest.approx(1.0)
    assert ember_op("ember.det", [np.zeros((2, 0, 0), np.float32)])[0].tolist() == [1.0, 1.0]  # empty product
    nan = ember_op("ember.det", [np.array([[np.nan, 1], [1, 1]], np.float32)])[0]
    assert np.isnan(nan)


def test_det_symbolic():
    b = ir.Builder()
    x = b.input("x", ir.f32["N", "M", "M"])
    assert str(b.det(x).type) == "f32[N]"
    y = b.input("y", ir.f16[4, "K", 3])  # K must be 3 at run time
    assert str(b.det(y).type) == "f16[4]"


@pytest.mark.parametrize("t,match", [
    (ir.f32[3], "rank >= 2"),
    (ir.f32[2, 3], "not square"),
    (ir.i32[2, 2], "float tensor"),
])
def test_det_errors(t, match):
    b = ir.Builder()
    with pytest.raises(ShapeError, match=match):
        b.det(b.input("x", t))
