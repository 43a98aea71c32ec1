"""Parsing, verifying and printing cost work linear in the module, and dense literals
are read without a Python object per element. Work is counted deterministically
(tests/support/work_meter.py) or as traced memory, never timed: 4x the ops may cost
at most 5x. Wall-clock figures for full-size modules are in benchmarks/ir_scaling.py."""

import re
import tracemalloc

import numpy as np
import pytest

from ember import ir
from ember.errors import ParseError, VerifyError
from ember.ir.parser import MAX_NESTING
from tests.support.work_meter import growth, work


def module_text(n: int) -> str:
    """n ops of a chain: binary and unary elementwise ops with locations, one in ten a
    fused op with a two-op region."""
    lines = ["module @chain {", "  symbol N in [1, 64]", "  func @main(%x: f32[N,64]) -> (y: f32[N,64]) {"]
    prev, prev2 = "x", "x"
    for i in range(n):
        v = f"v{i}"
        kind = i % 10
        if kind == 9:
            lines += [f"    %{v} = ember.fused %{prev}, %{prev2} {{kind = \"epilogue\"}} : f32[N,64] ({{",
                      "    ^bb0(%a: f32[N,64], %b: f32[N,64]):".replace("%a", f"%a{i}").replace("%b", f"%b{i}"),
                      f"      %m{i} = ember.mul %a{i}, %b{i} : f32[N,64]",
                      f"      %t{i} = ember.tanh %m{i} : f32[N,64]",
                      f"      yield %t{i}",
                      f"    }}) loc(\"block{i}/fused\")"]
        elif kind % 2:
            lines.append(f'    %{v} = ember.relu %{prev} : f32[N,64] loc("block{i}/relu")')
        else:
            lines.append(f'    %{v} = ember.add %{prev}, %{prev2} : f32[N,64] loc("block{i}/add")')
        prev2, prev = prev, v
    lines += [f"    return %{prev}", "  }", "}"]
    return "\n".join(lines) + "\n"


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


SMALL, LARGE = module_text(2_000), module_text(8_000)


def test_parsing_costs_linear_work():
    ir.parse(module_text(50))  # warm the op registry and caches
    assert growth(work(lambda: ir.parse(SMALL, verify=False)), work(lambda: ir.parse(LARGE, verify=False))) < 5.0


def test_verifying_and_printing_cost_linear_work():
    small, large = ir.parse(SMALL, verify=False), ir.parse(LARGE, verify=False)
    ir.verify(small)
    assert growth(work(lambda: ir.verify(small)), work(lambda: ir.verify(large))) < 5.0
    assert growth(work(lambda: str(small)), work(lambda: str(large))) < 5.0
    assert str(large) == LARGE  # and the text is the printer's own


def parsed_memory(n: int) -> tuple[int, int, int]:
    """(bytes the module holds, peak bytes while parsing, ops) for an n-op module."""
    text = module_text(n)
    tracemalloc.start()
    try:
        module = ir.parse(text, verify=False)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held, peak, sum(1 for _ in module.walk())


def test_parsing_memory_is_linear_and_about_a_kilobyte_per_op():
    """Lean: well under 2 KB per op held, and the peak while parsing grows with the text
    (lark's tree alone took about 9 KB per op)."""
    _, small_peak, _ = parsed_memory(1_000)
    held, large_peak, ops = parsed_memory(4_000)
    assert ops == 4_000 + 2 * 400
    assert growth(small_peak, large_peak) < 5.0
    assert held / ops < 2_000


def dense_module(n: int, dtype: str = "f32") -> str:
    values = np.random.default_rng(n).standard_normal(n)
    if dtype.startswith("i"):
        values = (values * 100).astype(np.int64)
    b = ir.Builder()
    x = b.input("x", ir.dtype(dtype)[n])
    b.output("y", b.add(x, b.constant(values.astype(ir.dtype(dtype).np_dtype))))
    return str(b.build())


@pytest.mark.parametrize("dtype", ["f32", "i32", "bf16"])
def test_dense_literals_are_read_without_an_object_per_element(dtype):
    small, large = dense_module(2_000, dtype), dense_module(8_000, dtype)
    ir.parse(small)
    work_small, work_large = work(lambda: ir.parse(small)), work(lambda: ir.parse(large))
    # The same calls at any size, and far fewer than the 8,000 elements: the calls are the
    # module's few dozen tokens' (lark's parser makes about 25 per token), none per element.
    assert work_large < 2_000 and growth(work_small, work_large) < 1.5
    assert growth(peak_bytes(lambda: ir.parse(small)), peak_bytes(lambda: ir.parse(large))) < 5.0
    module = ir.parse(large)
    assert str(module) == large


def test_printing_a_dense_literal_costs_linear_work():
    small, large = ir.parse(dense_module(2_000)), ir.parse(dense_module(8_000))
    assert growth(work(lambda: str(small)), work(lambda: str(large))) < 5.0


@pytest.mark.parametrize("data,message", [
    ("[[1.0, 2.0], [3.0]]", "dense data has 3 elements; f32[2,2] needs 4"),
    ("[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]", "dense data has 6 elements"),
    ("[[1.0, 2.0], [3.0, x]]", "unexpected 'x'"),
    ("[[1.0, 2.0], [3.0, .5]]", "unexpected character '.'"),
    ("[[1.0, 2.0], [3.0, +5]]", "unexpected '+'"),
    ("[[1.0, 2.0], [3.0, -nan]]", "unexpected 'nan'"),
    ("[[1.0, 2.0], [3.0, 4.0],]", "unexpected ']'"),
    ("[[1.0, 2.0], [3.0 4.0]]", "unexpected '4.0'; expected ',', ']'"),
])
def test_malformed_dense_literals_get_the_one_by_one_readers_messages(data, message):
    text = f"func @f() -> (y: f32[2,2]) {{\n  %0 = ember.constant {{value = dense<f32[2,2]: {data}>}} : f32[2,2]\n" \
           "  return %0\n}"
    with pytest.raises(ParseError, match=f"<text>:2:.*{re.escape(message)}"):
        ir.parse(text)


def test_dense_literals_read_whole_agree_with_the_one_by_one_reader():
    """Comments inside a literal send it to the one-by-one reader: the same values."""
    whole = ir.parse("func @f() -> (y: f32[3]) {\n  %0 = ember.constant {value = dense<f32[3]: "
                     "[1.5, -2e3, -inf]>} : f32[3]\n  return %0\n}")
    one_by_one = ir.parse("func @f() -> (y: f32[3]) {\n  %0 = ember.constant {value = dense<f32[3]: "
                          "[1.5, // a comment\n -2e3, - inf]>} : f32[3]\n  return %0\n}")
    assert ir.structurally_equal(whole, one_by_one)
    big = "func @f() -> (y: i64[2]) {\n  %0 = ember.constant {value = dense<i64[2]: [9223372036854775807, " \
          "-9223372036854775808]>} : i64[2]\n  return %0\n}"
    assert ir.parse(big).main.body.ops[0].attributes["value"].array.tolist() == [2**63 - 1, -2**63]
    with pytest.raises(ParseError, match="integer out of range for i8"):
        ir.parse(big.replace("i64", "i8"))
    with pytest.raises(ParseError, match="integer out of range for i64"):
        ir.parse(big.replace("9223372036854775807", "9223372036854775808"))


def test_deep_nesting_is_a_parse_error_not_a_crash():
    deep = "[" * 5_000 + "]" * 5_000
    with pytest.raises(ParseError, match=f"nested more than {MAX_NESTING} levels deep"):
        ir.parse("func @f(%x: f32[2]) -> () {\n  %0 = ember.transpose %x {perm = " + deep + "} : f32[2]\n  return\n}")
    with pytest.raises(ParseError, match="nested more than"):
        ir.parse_dim("(" * 5_000 + "N" + ")" * 5_000)
    with pytest.raises(ParseError, match="nested more than"):
        ir.parse_type("seq<" * 5_000 + "f32[2]" + ">" * 5_000)


def test_a_module_without_functions_is_refused():
    with pytest.raises(VerifyError, match="^module has no functions: nothing to run$"):
        ir.parse("module {\n  symbol N in [1, 4]\n}")
    with pytest.raises(VerifyError, match="module has no functions"):
        ir.parse("")
    empty = ir.parse("", verify=False)  # reading it is fine; running it is not
    with pytest.raises(VerifyError, match="module has no functions: nothing to run"):
        empty.main
    with pytest.raises(ValueError):  # VerifyError keeps ValueError as a base
        empty.main
