"""The textual form: golden files print back identically, errors carry positions."""

from pathlib import Path

import numpy as np
import pytest

from ember import ir
from ember.errors import ParseError, VerifyError
from ember.ir import attrs as A
from ember.ir.opdef import AnyType, Attr, Op, Operand, Region, Result, register_op

ROUNDTRIP = Path(__file__).parent.parent / "roundtrip"


@register_op("test.any")
class AnyAttrOp(Op):
    """Carries one attribute of any kind: lets the tests reach every attribute form."""
    x = Operand(AnyType)
    value = Attr(A.AnyAttr, default=None)
    out = Result(AnyType)

    def infer(self, x):
        return x


@register_op("test.multi")
class Multi(Op):
    """Two results of the operand's type."""
    x = Operand(AnyType)
    a = Result(AnyType)
    b = Result(AnyType)

    def infer(self, x):
        return x, x


@register_op("test.region")
class TwoRegions(Op):
    """Two non-isolated regions that read the enclosing scope."""
    x = Operand(AnyType)
    out = Result(AnyType)
    first = Region(isolated=False)
    second = Region(isolated=False)

    def infer(self, x):
        return self.first.outputs[0].type


def strip_comments(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith("//"))


@pytest.mark.parametrize("path", sorted(ROUNDTRIP.glob("*.ir")), ids=lambda p: p.name)
def test_golden_files_print_back_identically(path):
    text = strip_comments(path.read_text())
    module = ir.parse(text, source=str(path))
    assert str(module) == text
    again = ir.parse(str(module))
    assert ir.structural_diff(module, again) == []


def test_attribute_values_survive_exactly():
    module = ir.parse((ROUNDTRIP / "attributes.ir").read_text())
    ops = list(module.main.walk())
    floats = ops[1].attributes["value"]
    assert np.isnan(floats[2]) and np.signbit(floats[1]) and floats[3] == np.inf and floats[5] == 1e-05
    assert ops[2].attributes["value"][1] == 'quote " and \\ backslash'
    assert module.attributes["doc"] == 'round "trip"\n\ttabs \\ and ünïcödé'
    payload = ops[8].attributes["value"].array
    assert payload.view(np.uint32).tolist() == [0x7FC00001, 0x7F800000]  # a NaN payload, bit for bit
    assert ops[11].attributes["value"].array.dtype == ir.i4.np_dtype
    assert ops[17].attributes["value"].array.tolist() == [2**64 - 1]


def test_symbols_and_weights_are_declared():
    module = ir.parse((ROUNDTRIP / "attributes.ir").read_text())
    assert module.symbols["N"] == ir.SymbolRange(1, 64)
    assert module.symbols["S"].max is None
    module = ir.parse((ROUNDTRIP / "structure.ir").read_text())
    assert module.weights['w "quoted"'].type == ir.f16[2]
    assert module.main.input_names == ["x", "input:0", "%odd name"]
    assert module.main.output_names == ["y", "out/1:0", "z", "n"]


@pytest.mark.parametrize("text,where,what", [
    ("module {\n  func @f() -> () {\n    %0 = ember.add %x, %x : f32[]\n    return\n  }\n}", "3:20",
     "undefined value %x"),
    ("func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = ember.nope %x : f32[2]\n  return %0\n}", "2:8", "unknown op ember.nope"),
    ("func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = ember.relu %x : f32[2\n  return %0\n}", "3:3", "expected"),
    ("func @f(%x: f33[2]) -> () {\n  return\n}", "1:13", "unknown element type 'f33'"),
    ("func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = ember.leaky_relu %x {alpha = \"a\"} : f32[2]\n  return %0\n}",
     "2:29", "attribute 'alpha': expected a float"),
    ("func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = ember.relu %x {bogus = 1} : f32[2]\n  return %0\n}",
     "2:23", "unknown attribute 'bogus'"),
    ("func @f(%x: f32[2]) -> (y: f32[2]) {\n  %x = ember.relu %x : f32[2]\n  return %x\n}", "2:3",
     "value %x is defined twice"),
    ("func @f(%x: f32[2]) -> (y: f32[3]) {\n  return %x\n}", "2:3", "declared f32[3] but returns f32[2]"),
    ("func @f(%x: f32[2]) -> () {\n  %0 = ember.constant {value = dense<f32[3]: [1.0]>} : f32[3]\n  return\n}",
     "2:46", "dense data has 1 elements; f32[3] needs 3"),
    ("func @f(%x: f32[2]) -> () {\n  %0 = ember.constant {value = dense<i8[1]: [300]>} : i8[1]\n  return\n}",
     "2:45", "integer out of range for i8"),
    ("func @f(%x: f32[2]) -> () {\n  %0 = ember.relu %x : f32[2], f32[2]\n  return\n}", "2:3",
     "1 results named but 2 types given"),
    ("module {", "1:9", "unexpected end of input"),
    ("func @f() -> () { return } }", "1:28", "unexpected '}'"),
])
def test_parse_errors_name_the_place(text, where, what):
    with pytest.raises(ParseError) as info:
        ir.parse(text, source="t.ir")
    message = str(info.value)
    assert message.startswith(f"t.ir:{where}: "), message
    assert what in message


def test_isolated_region_cannot_read_outside():
    text = """func @f(%x: f32[2]) -> (y: f32[2]) {
  %0 = ember.fused %x : f32[2] ({
  ^bb0(%a: f32[2]):
    %1 = ember.add %a, %x : f32[2]
    yield %1
  })
  return %0
}"""
    with pytest.raises(ParseError, match=r"4:24: use of undefined value %x"):
        ir.parse(text)


def test_parse_verifies_types_and_lists_every_problem():
    text = """func @f(%x: f32[2,3], %y: f32[3]) -> (a: f32[2,3], b: f32[3,3], c: i32[2,3]) {
  %0 = ember.add %x, %y : f32[2,3]
  %1 = ember.add %x, %y : f32[3,3]
  %2 = ember.sub %x, %y : i32[2,3] loc("sub")
  return %0, %1, %2
}"""
    with pytest.raises(VerifyError) as info:
        ir.parse(text)
    assert len(info.value.diagnostics) == 2
    assert "result 0 is declared f32[3,3] but the type rule gives f32[2,3]" in str(info.value)
    assert "sub: ember.sub: result 0 is declared i32[2,3]" in str(info.value)
    module = ir.parse(text, verify=False)
    assert len(module.main.body.ops) == 3


def test_comments_and_floordiv_share_slashes():
    text = "// leading comment\nfunc @f(%x: f32[N]) -> (y: f32[(N+1)//2]) { // trailing comment\n  return %x\n}"
    with pytest.raises(ParseError, match="declared f32"):
        ir.parse(text)
    t = ir.parse_type("f32[(N-1)//2+1, N%3]")
    assert str(t) == "f32[(N+1)//2,N%3]"


def test_parse_type_and_dim():
    assert ir.parse_type("f32[N,3,224,224]") == ir.f32["N", 3, 224, 224]
    assert ir.parse_type("seq<opt<bf16[*]>>") == ir.SequenceType(ir.OptionalType(ir.TensorType(ir.bf16, None)))
    with pytest.raises(ParseError, match="unknown element type"):
        ir.parse_type("q7[2]")
