"""ONNX MatMul, Gemm, Einsum, Det, MatMulInteger and QLinearMatMul, imported and run on Ember
against onnxruntime (onnx.reference where onnxruntime lacks the op or the type)."""

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_check import check_node, imported, node_model, run_ember
from oracle import rand


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4,)), ((2, 3, 4), (4,)), ((3, 1, 2, 4), (2, 4, 3))])
@pytest.mark.parametrize("opset", [1, 9, 13])
def test_matmul(sa, sb, opset):
    check_node("MatMul", {"a": rand(sa), "b": rand(sb)}, opset=opset)


@pytest.mark.parametrize("attrs", [{}, {"alpha": 0.5, "beta": 2.0}, {"transA": 1}, {"transB": 1},
                                   {"transA": 1, "transB": 1, "alpha": 0.25}])
@pytest.mark.parametrize("c_shape", [None, (), (1,), (5,), (1, 5), (3, 5)])
def test_gemm(attrs, c_shape):
    a = rand((4, 3) if attrs.get("transA") else (3, 4))
    b = rand((5, 4) if attrs.get("transB") else (4, 5))
    inputs = {"a": a, "b": b} | ({"c": rand(c_shape)} if c_shape is not None else {})
    check_node("Gemm", inputs, attrs, opset=13)


def test_gemm_old_opsets():
    """Opsets 6 (broadcast attribute) and 9 (C required) and 11 (C optional)."""
    a, b, c = rand((2, 3)), rand((3, 4)), rand((4,))
    check_node("Gemm", {"a": a, "b": b, "c": c}, {"broadcast": 1, "transB": 0}, opset=6, reference="onnx")
    check_node("Gemm", {"a": a, "b": b, "c": rand((2, 4))}, {"alpha": 2.0}, opset=9)
    check_node("Gemm", {"a": a, "b": b}, {}, opset=11)


@pytest.mark.parametrize("equation,shapes", [
    ("bij, bjk -> bik", [(5, 2, 3), (5, 3, 4)]),
    ("ij->ji", [(3, 4)]),
    ("i,i", [(5,), (5,)]),
    ("...ii ->...i", [(3, 5, 5)]),
    ("ij->i", [(3, 4)]),
])
def test_einsum(equation, shapes):
    inputs = {f"x{k}": rand(s, np.float64) for k, s in enumerate(shapes)}
    check_node("Einsum", inputs, {"equation": equation}, opset=12)


def test_einsum_bf16_opset_28():
    x, y = rand((2, 2, 3), ml_dtypes.bfloat16), rand((2, 3, 4), ml_dtypes.bfloat16)
    check_node("Einsum", {"x": x, "y": y}, {"equation": "bij,bjk->bik"}, opset=28, reference="onnx", outputs=("z",),
               rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4)])
@pytest.mark.parametrize("opset", [11, 22])
def test_det(shape, opset):
    check_node("Det", {"x": rand(shape)}, opset=opset, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("da,db", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
@pytest.mark.parametrize("zp", ["none", "scalar", "per_row_col"])
def test_matmul_integer(da, db, zp):
    rng = np.random.default_rng(0)
    a = rng.integers(np.iinfo(da).min, np.iinfo(da).max, (3, 4), dtype=da)
    b = rng.integers(np.iinfo(db).min, np.iinfo(db).max, (4, 2), dtype=db)
    inputs = {"a": a, "b": b}
    if zp == "scalar":
        inputs |= {"a_zp": np.array(7, da), "b_zp": np.array(3, db)}
    elif zp == "per_row_col":
        inputs |= {"a_zp": np.array([1, 2, 3], da), "b_zp": np.array([4, 5], db)}
    if zp == "per_row_col":  # neither onnxruntime nor onnx.reference takes one zero point per row of A
        got = run_ember(node_model("MatMulInteger", inputs, opset=10), inputs)[0]
        want = (a.astype(np.int32) - inputs["a_zp"].astype(np.int32)[:, None]) @ \
            (b.astype(np.int32) - inputs["b_zp"].astype(np.int32))
        assert got.dtype == np.int32 and np.array_equal(got, want)
        return
    got = check_node("MatMulInteger", inputs, opset=10)[0][0]
    assert got.dtype == np.int32


def test_matmul_integer_only_a_zero_point():
    a = np.array([[1, 2], [3, 4]], np.uint8)
    b = np.array([[5, 6], [7, 8]], np.uint8)
    check_node("MatMulInteger", {"a": a, "b": b, "a_zp": np.array(2, np.uint8)}, opset=10)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
@pytest.mark.parametrize("scale_dt", [np.float32, np.float16])
@pytest.mark.parametrize("shapes", [((2, 4), (4, 3)), ((2, 2, 4), (2, 4, 3))])
def test_qlinear_matmul(dt, scale_dt, shapes):
    rng = np.random.default_rng(1)
    info = np.iinfo(dt)
    a = rng.integers(info.min, info.max, shapes[0], dtype=dt)
    b = rng.integers(info.min, info.max, shapes[1], dtype=dt)
    inputs = {"a": a, "a_scale": np.array([0.02], scale_dt), "a_zp": np.array([3], dt),
              "b": b, "b_scale": np.array([0.03], scale_dt), "b_zp": np.array([5], dt),
              "y_scale": np.array([0.5], scale_dt), "y_zp": np.array([10], dt)}
    opset = 21 if scale_dt == np.float16 else 10
    check_node("QLinearMatMul", inputs, opset=opset, reference="onnx")


def test_qlinear_matmul_per_column_output_zero_point():
    """A per-column zero point of y takes the elementwise requantization path."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 255, (2, 4), dtype=np.uint8)
    b = rng.integers(0, 255, (4, 3), dtype=np.uint8)
    inputs = {"a": a, "a_scale": np.float32(0.01), "a_zp": np.uint8(100),
              "b": b, "b_scale": np.array([0.01, 0.02, 0.03], np.float32), "b_zp": np.array([90, 100, 110], np.uint8),
              "y_scale": np.float32(0.2), "y_zp": np.array([120, 128, 136], np.uint8)}
    got = check_node("QLinearMatMul", inputs, opset=10, reference="onnx")[0][0]
    acc = (a.astype(np.int32) - 100) @ (b.astype(np.int32) - inputs["b_zp"].astype(np.int32))
    want = np.clip(np.rint(acc * (0.01 * inputs["b_scale"] / 0.2)) + inputs["y_zp"], 0, 255)
    assert got.dtype == np.uint8 and np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_import_symbolic_batch():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 16])
    w = onnx.numpy_helper.from_array(rand((16, 8)), "w")
    c = onnx.numpy_helper.from_array(rand((16,)), "c")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Gemm", ["h", "w", "c"], ["g"], transB=1, alpha=0.5),
             helper.make_node("Einsum", ["g", "g"], ["e"], equation="ni,nj->nij"),
             helper.make_node("Det", ["e"], ["d"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [helper.make_empty_tensor_value_info("d")],
                                                [w, c]), opset_imports=[helper.make_opsetid("", 22)])
    text = str(imported(model))
    assert "ember.matmul %x, %w : f32[N,8]" in text
    assert "ember.gemm %h, %w, %c {alpha = 0.5, trans_b = true} : f32[N,16]" in text
    assert 'ember.einsum %g, %g {equation = "ni,nj->nij"} : f32[N,16,16]' in text
    assert "ember.det %e : f32[N]" in text
