"""The grammar, read by lark, is the parser: these tests hold the reading to the texts.

Every committed .ir text is in the grammar and reads back; random mutations of them
either parse or fail with a ParseError or VerifyError that points inside the text (never
another exception); the coarse terminals (a type, a location, a literal's numbers as one
token) read the same as the fine rules they stand for, and only where those can be.
"""

import gc
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ember import ir
from ember.errors import ParseError, VerifyError
from ember.ir import attrs as A
from ember.ir.opdef import AnyType, Attr, Op, Operand, Result, register_op
from ember.ir.parser import MAX_NESTING

TESTS = Path(__file__).parents[1]


@register_op("grammar.any")
class AnyAttr(Op):
    """Carries one attribute of any kind: shows how each form reads."""
    x = Operand(AnyType)
    value = Attr(A.AnyAttr, default=None)
    out = Result(AnyType)

    def infer(self, x):
        return x


def cases() -> list[str]:
    """Each committed .ir text, split into its `// -----` cases, without RUN lines."""
    out = []
    for path in sorted([*TESTS.glob("roundtrip/*.ir"), *TESTS.glob("passes/*.ir")]):
        for part in path.read_text().split("// -----"):
            text = "\n".join(line for line in part.splitlines() if not line.lstrip().startswith("// RUN"))
            if text.strip():
                out.append(text)
    return out


CASES = cases()
PIECES = [*"[]{}(),:=<>@%*+-?/\" 0123456789abxyzN.\n", "dense", "inf", "nan", "none", "->", "//", "f32", "%x",
          "loc", "max(", "0x", "^bb0", "seq<", "-inf", "1e5", "func", "return", "yield", "f32[2]", 'loc("a")']


def reads_back(module: ir.Module) -> None:
    """A module that verifies prints to text that reads as the same module."""
    try:
        ir.verify(module)
    except VerifyError:
        return
    again = ir.parse(str(module))
    assert ir.structurally_equal(module, again), ir.structural_diff(module, again)


def check_position(err: ParseError, text: str) -> None:
    lines = text.split("\n")
    assert err.line is not None and 1 <= err.line <= len(lines), (err, len(lines))
    assert 1 <= err.column <= len(lines[err.line - 1]) + 1, err


@pytest.mark.parametrize("index", range(len(CASES)))
def test_every_committed_text_is_in_the_grammar_and_reads_back(index):
    text = CASES[index]
    try:
        module = ir.parse(text, verify=False)
    except ParseError as err:  # a case that is meant to fail (an error test): not for syntax
        assert not str(err).split(": ", 1)[1].startswith("unexpected"), err
        return
    reads_back(module)


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(CASES))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["delete", "insert", "copy"]))
        if how == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 3)):]
        elif how == "insert":
            text = text[:i] + draw(st.sampled_from(PIECES)) + text[i:]
        else:
            j = draw(st.integers(0, len(text)))
            text = text[:i] + text[j:j + draw(st.integers(1, 12))] + text[i:]
    return text


@given(mutated())
def test_mutated_texts_parse_or_fail_with_a_place_in_the_text(text):
    try:
        module = ir.parse(text, verify=False)
    except ParseError as err:
        check_position(err, text)
        first = str(err).split("\n")[0]
        if "unexpected" in first and "expected" in first.split("unexpected", 1)[1]:
            assert err.expected, err  # the names listed are the ones the error carries
        return
    reads_back(module)


ONE_LINE = 'func @f(%x: f32[2]) -> (y: f32[2]) {\n  %y = ember.relu %x : f32[2] loc("r")\n  return %y\n}'


@pytest.mark.parametrize("split", [
    '%y = ember.relu %x : f32[2]\n    loc("r")',
    '%y = ember.relu %x\n    : f32[2] loc("r")',
    '%y =\n ember.relu %x : f32[2] loc(\n"r")',
    '%y = ember.relu %x : f32[2] // a comment\n    loc("r")',
    '%y = ember.relu %x : f32[ 2 ] loc("r" )',
    '%y = ember.relu %x : f32[\n2] loc("r")',
    '%y = ember.relu %x : f32[2 // two\n] loc( "r")',
    '%y = ember.relu %x : f32 [2] loc ("r")',
    '%y = ember.relu %x : f32[2]\tloc("r",\n"r")',
])
def test_a_statement_reads_the_same_however_it_is_laid_out(split):
    """The printed form reads its type and location as one token each; any other layout
    takes the fine rules: the same module."""
    other = ONE_LINE.replace('%y = ember.relu %x : f32[2] loc("r")', split)
    expected = ir.parse(ONE_LINE) if '"r",' not in split else ir.parse(ONE_LINE.replace('loc("r")', 'loc("r", "r")'))
    assert ir.structurally_equal(expected, ir.parse(other))
    assert str(ir.parse(other)) == str(expected)


@pytest.mark.parametrize("text", ["f32[N,64]", "i8[(H-1)//2+1,N%3,?,?<=N*4]", "f16[*]", "bf16[]",
                                  "seq<opt<f32[max(N, S),2]>>", "f32[2 * N - 1]", "u4[-(-N)]"])
def test_a_type_reads_the_same_as_one_token_and_laid_out(text):
    one_token = ir.parse_type(text)
    laid_out = ir.parse_type(text.replace("[", " [\n ").replace(",", " , // c\n "))
    assert one_token == laid_out
    assert ir.parse_type(str(one_token)) == one_token


def test_coarse_terminals_stay_in_their_places():
    """A list in an attribute is a list, not a literal's numbers; a name before `[` in an
    attribute is a type; `%3` in a dim is `% 3`; `loc` can name a symbol."""
    text = """symbol loc in [1, 8]
func @f(%x: f32[loc,4]) -> (y: f32[loc,4]) {
  %0 = ember.constant {value = dense<i32[2]: [1, 2]>} : i32[2]
  %1 = grammar.any %x {value = [1, 1]} : f32[loc,4]
  %2 = grammar.any %1 {value = f32[loc%3,2]} : f32[loc,4]
  %3 = grammar.any %2 {value = [f32, [2, 3]]} : f32[loc,4]
  return %3
}"""
    ops = list(ir.parse(text, verify=False).main.walk())
    assert ops[0].attributes["value"].array.tolist() == [1, 2]
    assert ops[1].attributes["value"] == (1, 1)
    assert ops[2].attributes["value"] == ir.parse_type("f32[loc%3,2]")
    assert ops[3].attributes["value"] == (ir.f32, (2, 3))


@pytest.mark.parametrize("where,text", [
    ("2:30", "func @f(%x: f32[2]) -> () {\n  %0 = ember.relu %x : f32[2,]\n  return\n}"),
    ("2:29", "func @f(%x: f32[2]) -> () {\n  %0 = ember.relu %x : f32[?+1]\n  return\n}"),
    ("1:13", "func @f(%x: q7[2]) -> () {\n  return\n}"),
    ("4:5", "func @f() -> () {\n  %0 = ember.constant {value = dense<f32[3]: [1.0,\n  2.0,\n    x]>} : f32[3]\n  return\n}"),
])
def test_errors_inside_a_coarse_terminal_point_into_it(where, text):
    with pytest.raises(ParseError) as info:
        ir.parse(text, source="t.ir")
    assert str(info.value).startswith(f"t.ir:{where}: "), info.value


@pytest.mark.parametrize("deep", [
    lambda n: ir.parse("func @f(%x: f32[2]) -> () {\n  %0 = ember.transpose %x {perm = " + "[" * n + "]" * n
                       + "} : f32[2]\n  return\n}"),
    lambda n: ir.parse("func @f() -> () {\n  %0 = ember.constant {value = dense<f32[1]: " + "[" * n + "1.0"
                       + "]" * n + ">} : f32[1]\n  return\n}"),
    lambda n: ir.parse("func @f(%x: f32[" + "(" * n + "2" + ")" * n + "]) -> () {\n  return\n}"),
    lambda n: ir.parse_dim("(" * n + "N" + ")" * n),
    lambda n: ir.parse_type("seq<" * n + "f32[2]" + ">" * n),
])
def test_ten_thousand_brackets_deep_is_a_parse_error(deep):
    with pytest.raises(ParseError, match=f"nested more than {MAX_NESTING} levels deep"):
        deep(10_000)


def test_parsing_in_threads_gives_the_modules_one_thread_gives():
    """The parser is built once and shared; each run keeps its own state."""
    texts = [c for c in CASES if "test." not in c][:24] * 4
    alone = []
    for t in texts:
        try:
            alone.append(str(ir.parse(t, verify=False)))
        except ParseError as err:
            alone.append(str(err))
    together: list[str | None] = [None] * len(texts)

    def work(k: int) -> None:
        for i in range(k, len(texts), 4):
            try:
                together[i] = str(ir.parse(texts[i], verify=False))
            except ParseError as err:
                together[i] = str(err)

    was = gc.isenabled()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert together == alone
    assert gc.isenabled() == was  # each parse resumed the collector only if it had paused it


def test_the_collector_is_left_as_it_was_found():
    """Parsing pauses the cyclic collector and resumes it only if it ran before."""
    was = gc.isenabled()
    try:
        gc.enable()
        ir.parse(ONE_LINE)
        assert gc.isenabled()
        with pytest.raises(ParseError):
            ir.parse("func {")
        assert gc.isenabled()
        gc.disable()
        ir.parse(ONE_LINE)
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_a_literal_far_smaller_than_its_type_is_refused_without_building_its_shape():
    """The bracket check of a literal's numbers does not build the brackets of a shape of
    99,999,999,999 elements (it ran out of memory)."""
    text = "func @f() -> () {\n  %0 = ember.constant {value = dense<f32[99999999999]: [1.0]>} : f32[99999999999]\n" \
           "  return\n}"
    with pytest.raises(ParseError, match="dense data has 1 elements; f32.99999999999. needs 99999999999"):
        ir.parse(text)
    with pytest.raises(ParseError, match="dense data has 1 elements"):
        ir.parse(text.replace("99999999999]", "0,99999999999]"))


def test_long_tokens_read_whole():
    """A token longer than a few kilobytes keeps its text once (see ir/lexer.py): long
    strings, names and literals still read as they are written."""
    doc, name = "x" * 10_000, "v" * 5_000
    text = f'module attributes {{doc = "{doc}"}} {{\n  func @f(%{name}: f32[2]) -> (y: f32[2]) {{\n' \
           f'    %0 = ember.relu %{name} : f32[2] loc("{doc}")\n    return %0\n  }}\n}}'
    module = ir.parse(text)
    assert module.attributes["doc"] == doc and module.main.input_names == [name]
    assert str(module) == text + "\n"
    with pytest.raises(ParseError, match=r"<text>:2:7: .*digits"):
        ir.parse("func @f(%x:\n  f32[" + "9" * 5_000 + "]) -> () {\n  return\n}")
