"""The verifier reports every problem at once, each with its op and location."""

import numpy as np
import pytest

from ember import ir
from ember.errors import ShapeError, VerifyError


def small_module():
    b = ir.Builder("m")
    x = b.input("x", ir.f32[2, 3])
    y = b.input("y", ir.f32[3])
    s = b.add(x, y, loc="add1")
    t = b.relu(s, loc="relu1")
    u = b.leaky_relu(t, alpha=0.2, loc="leaky1")
    v = b.mul(u, y, loc="mul1")
    b.output("out", v)
    return b.build()


def test_valid_module_verifies():
    assert ir.verify(small_module()) is not None


def test_three_independent_errors_in_one_report():
    m = small_module()
    add, relu, leaky, mul = m.main.body.ops
    add.results[0].type = ir.f32[3, 3]            # 1: declared type contradicts the rule
    del leaky.attributes["alpha"]                   # 2: an attribute goes missing
    body = m.main.body.ops
    body.remove(mul)
    body.insert(0, mul)                             # 3: an op uses values defined after it
    with pytest.raises(VerifyError) as info:
        ir.verify(m)
    err = info.value
    assert len(err.diagnostics) >= 3
    text = str(err)
    assert text.splitlines()[0] == f"@m: {len(err.diagnostics)} verification errors"
    assert "add1: ember.add: result 0 is declared f32[3,3] but the type rule gives f32[2,3]" in text
    assert "leaky1: ember.leaky_relu: attribute 'alpha' is missing" in text
    assert "mul1: ember.mul: operand 0 is not defined before this op" in text
    assert "= ember.add %x, %y : f32[3,3] loc(\"add1\")" in text  # the IR around the fault


def test_declared_type_may_refine_an_unknown_dim():
    text = """func @f(%x: f32[?, 3]) -> (y: f32[5, 3]) {
  %0 = ember.relu %x : f32[5,3]
  return %0
}"""
    ir.parse(text)  # relu infers f32[?,3]; the declaration knows more, and that is allowed
    bad = text.replace("f32[5,3]", "f32[5,4]").replace("f32[5, 3]", "f32[5, 4]")
    with pytest.raises(VerifyError, match="declared f32\\[5,4\\] but the type rule gives f32\\[\\?,3\\]"):
        ir.parse(bad)


def test_builder_fails_at_the_call_that_makes_a_bad_shape():
    b = ir.Builder()
    x = b.input("x", ir.f32[2, 3])
    y = b.input("y", ir.f32[4])
    with pytest.raises(ShapeError, match=r"ember.add: shapes \[2,3\], \[4\] do not broadcast"):
        b.add(x, y)
    with pytest.raises(ShapeError, match="operands must share an element type"):
        b.add(x, b.input("z", ir.f16[3]))


def test_builder_rejects_bad_attributes_and_unknown_ops():
    b = ir.Builder()
    x = b.input("x", ir.f32[2])
    with pytest.raises(VerifyError, match="attribute 'alpha': expected a float"):
        b.leaky_relu(x, alpha="big")
    with pytest.raises(VerifyError, match="unknown attribute 'beta'"):
        b.relu(x, beta=1.0)
    with pytest.raises(AttributeError, match="no op ember.frobnicate"):
        b.frobnicate(x)


def test_symbols_may_not_be_dtype_names():
    m = small_module()
    m.symbols["f32"] = ir.SymbolRange()
    with pytest.raises(VerifyError, match="symbol 'f32' is not a valid symbol name"):
        ir.verify(m)


def test_weight_data_must_match_declaration():
    b = ir.Builder()
    w = b.weight("w", np.ones((2, 2), np.float32))
    b.output("w", w)
    m = b.build()
    m.weights["w"].data = np.ones((3,), np.float32)
    with pytest.raises(VerifyError, match=r"weight 'w': data is f32\[3\], declared f32\[2,2\]"):
        ir.verify(m)


def test_duplicate_names_and_missing_weights():
    text = """module {
  func @f(%x: f32[2]) -> (a: f32[2], a: f32[2]) {
    %w = ember.weight {name = "nope"} : f32[2]
    return %x, %w
  }
}"""
    with pytest.raises(Exception) as info:
        ir.parse(text)
    assert "duplicate output names" in str(info.value)
