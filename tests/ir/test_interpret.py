"""The interpreter: input checking, symbol binding, result checking, regions."""

import numpy as np
import pytest

from ember import ir
from ember.errors import InterpretError


def sym_module():
    b = ir.Builder("m")
    b.symbol("N", 1, 8)
    x = b.input("x", ir.f32["N", 3])
    y = b.input("y", ir.f32["N", 1])
    b.output("z", b.add(x, y))
    return b.build()


def test_runs_and_binds_symbols():
    m = sym_module()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3), np.float32), rng.standard_normal((4, 1), np.float32)
    out = ir.interpret(m, {"x": x, "y": y})
    np.testing.assert_array_equal(out["z"], x + y)


@pytest.mark.parametrize("feeds,message", [
    ({"x": np.ones((2, 3), np.float32)}, "missing input 'y'"),
    ({"x": np.ones((2, 3), np.float32), "y": np.ones((2, 1), np.float32), "w": 1}, "unexpected input 'w'"),
    ({"x": np.ones((2, 3), np.float64), "y": np.ones((2, 1), np.float32)}, "input 'x': expected element type f32, got f64"),
    ({"x": np.ones((2, 4), np.float32), "y": np.ones((2, 1), np.float32)}, r"input 'x': dim 1 must be 3"),
    ({"x": np.ones((2, 3), np.float32), "y": np.ones((3, 1), np.float32)}, "dim 0 is N = 2 from an earlier input"),
    ({"x": np.ones((9, 3), np.float32), "y": np.ones((9, 1), np.float32)}, r"symbol N = 9 is outside its range \[1, 8\]"),
    ({"x": np.ones((3,), np.float32), "y": np.ones((3, 1), np.float32)}, "expected rank 2"),
])
def test_input_errors_are_clear(feeds, message):
    with pytest.raises(InterpretError, match=message):
        ir.interpret(sym_module(), feeds)


def test_expression_dims_are_checked():
    text = """func @f(%x: f32[N], %y: f32[2*N]) -> (o: f32[N]) {
  return %x
}"""
    m = ir.parse(text)
    ir.interpret(m, {"x": np.ones(3, np.float32), "y": np.ones(6, np.float32)})
    with pytest.raises(InterpretError, match=r"dim 0 must be 2\*N = 6"):
        ir.interpret(m, {"x": np.ones(3, np.float32), "y": np.ones(5, np.float32)})


def test_fused_region_runs_its_body():
    b = ir.Builder()
    x = b.input("x", ir.f32[4])
    y = b.input("y", ir.f32[4])
    (r,) = b.fused(x, y, body=lambda rb, a, c: rb.tanh(rb.mul(a, c)))
    b.output("r", r)
    m = b.build()
    x_, y_ = np.arange(4, dtype=np.float32), np.full(4, 0.5, np.float32)
    np.testing.assert_allclose(ir.interpret(m, {"x": x_, "y": y_})["r"], np.tanh(x_ * y_), rtol=1e-6)


def test_a_wrong_reference_is_caught_where_it_happens():
    m = sym_module()
    add = m.main.body.ops[0]
    add.results[0].type = ir.f16["N", 3]  # the declared type now lies
    with pytest.raises(InterpretError, match="reference gave float32 for result 0 declared f16"):
        ir.interpret(m, {"x": np.ones((2, 3), np.float32), "y": np.ones((2, 1), np.float32)})


def test_weights_without_data_say_so():
    b = ir.Builder()
    b.output("w", b.weight("w", np.ones(2, np.float32)))
    m = ir.parse(str(b.build()))
    with pytest.raises(InterpretError, match="weight 'w' has no data"):
        ir.interpret(m, {})


def test_low_precision_math_computes_in_f32():
    b = ir.Builder()
    x = b.input("x", ir.f16[3])
    b.output("y", b.exp(x))
    x_ = np.array([0.1, 1.0, 5.0], np.float16)
    out = ir.interpret(b.build(), {"x": x_})["y"]
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, np.exp(x_.astype(np.float32)).astype(np.float16))
