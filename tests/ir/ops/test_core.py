"""Core ops: constant, weight, identity, fused."""

import numpy as np
import pytest

from ember import ir
from ember.errors import InterpretError, ShapeError, VerifyError
from oracle import check_vs_onnx, ember_op, onnx_op, rand


@pytest.mark.parametrize("value", [
    np.array([1.5, -0.0, np.nan, np.inf], np.float32), np.arange(6, dtype=np.int64).reshape(2, 3),
    np.array(True), np.array(["a", "b"], dtype=object), np.array([0.5, -2], ir.bf16.np_dtype),
])
def test_constant_is_its_value(value):
    b = ir.Builder()
    b.output("c", b.op("ember.constant", value=ir.Dense(value)))
    out = ir.interpret(ir.parse(str(b.build())), {})["c"]
    assert out.dtype == value.dtype and out.shape == value.shape
    assert out.tolist() == value.tolist() if value.dtype == object else out.tobytes() == value.tobytes()


def test_constant_matches_onnx():
    value = rand((2, 3))
    want = onnx_op("Constant", [], {"value": __import__("onnx").numpy_helper.from_array(value)})[0]
    got = ember_op("ember.constant", [], {"value": ir.Dense(value)})[0]
    np.testing.assert_array_equal(got, want)


def test_identity_matches_onnx_for_any_type():
    for x in (rand((3, 4)), rand((5,), np.int8), np.array([True, False])):
        check_vs_onnx("ember.identity", "Identity", [x])
    b = ir.Builder()
    x = b.input("s", ir.SequenceType(ir.f32[2]))
    assert b.identity(x).type == ir.SequenceType(ir.f32[2])


def test_weight_reads_the_store_and_checks_its_name():
    b = ir.Builder()
    data = rand((2, 2))
    b.output("w", b.weight("layer/w:0", data))
    m = b.build()
    np.testing.assert_array_equal(ir.interpret(m, {})["w"], data)
    m.main.body.ops[0].attributes["name"] = "missing"
    with pytest.raises(VerifyError, match="no weight named 'missing'"):
        ir.verify(m)
    with pytest.raises(ValueError, match="already holds other data"):
        b2 = ir.Builder(module=m)
        b2.weight("layer/w:0", rand((2, 2)))


def test_fused_runs_its_isolated_body_on_its_operands():
    b = ir.Builder()
    x, y = b.input("x", ir.f32["N", 3]), b.input("y", ir.f32[3])
    s, p = b.fused(x, y, kind="epilogue", body=lambda rb, a, c: (rb.add(a, c), rb.mul(a, c)))
    b.output("s", s)
    b.output("p", p)
    m = b.build()
    assert str(s.type) == "f32[N,3]" and len(m.main.body.ops) == 1
    xv, yv = rand((2, 3)), rand((3,))
    out = ir.interpret(m, {"x": xv, "y": yv})
    np.testing.assert_array_equal(out["s"], xv + yv)
    np.testing.assert_array_equal(out["p"], xv * yv)


def test_fused_body_must_match_its_operands():
    text = """func @f(%x: f32[2]) -> (y: f32[2]) {
  %0 = ember.fused %x : f32[2] ({
  ^bb0(%a: f32[3]):
    yield %a
  })
  return %0
}"""
    with pytest.raises(VerifyError, match=r"body arguments \(f32\[3\]\) do not match operands \(f32\[2\]\)"):
        ir.parse(text)


def test_detached_weight_needs_its_type():
    cls = ir.lookup("ember.weight")
    with pytest.raises(ShapeError, match="not in a module"):
        cls.create((), {"name": "w"})


def test_fused_with_no_inputs_and_missing_data():
    b = ir.Builder()
    b.output("w", b.weight("w", rand((2,))))
    m = ir.parse(str(b.build()))
    with pytest.raises(InterpretError, match="has no data"):
        ir.interpret(m, {})
