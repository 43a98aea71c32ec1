"""The hand-written parser accepts the language grammar.lark describes.

On every committed .ir text and on random mutations of them, lark's LALR parser
for the grammar is the oracle: where it finds a syntax error the parser raises a
ParseError; where it accepts, the parser reports no syntax error (it may still
report a semantic one: an undefined value, an unknown op), and what it reads
prints back to text that reads again as the same module.
"""

from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import LarkError

from ember import ir
from ember.errors import ParseError, VerifyError

TESTS = Path(__file__).parents[1]
GRAMMAR = Path(ir.__file__).with_name("grammar.lark")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", start=["start", "type", "dim"], maybe_placeholders=False)


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
          "loc", "max(", "0x", "^bb0", "seq<", "-inf", "1e5", "func", "return", "yield"]


def lark_accepts(text: str) -> bool:
    try:
        _lark().parse(text, start="start")
    except LarkError:
        return False
    return True


@pytest.mark.parametrize("index", range(len(CASES)))
def test_every_committed_text_is_in_the_grammar_and_parses(index):
    text = CASES[index]
    assert lark_accepts(text)
    try:
        ir.parse(text, verify=False)
    except ParseError as err:  # a case that is meant to fail (an error test): not for syntax
        assert not str(err).split(": ", 1)[1].startswith("unexpected"), err


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
def test_the_parser_agrees_with_the_grammar_on_mutated_texts(text):
    try:
        module = ir.parse(text, verify=False)
    except ParseError as err:
        first = str(err).split("\n")[0]
        if lark_accepts(text):
            assert "unexpected" not in first, f"the grammar accepts this text; the parser says: {first}"
        return
    assert lark_accepts(text), "the parser accepted a text outside the grammar"
    try:
        ir.verify(module)
    except VerifyError:
        return
    again = ir.parse(str(module))
    assert ir.structurally_equal(module, again), ir.structural_diff(module, again)


@pytest.mark.parametrize("split", [
    '%y = ember.relu %x : f32[2]\n    loc("r")',
    '%y = ember.relu %x\n    : f32[2] loc("r")',
    '%y =\n ember.relu %x : f32[2] loc(\n"r")',
    '%y = ember.relu %x : f32[2] // a comment\n    loc("r")',
    '%y = ember.relu %x : f32[ 2 ] loc("r" )',
])
def test_a_statement_reads_the_same_however_it_is_laid_out(split):
    """The one-line form takes a quicker road through the parser; every other layout the
    general one: the same module."""
    one_line = 'func @f(%x: f32[2]) -> (y: f32[2]) {\n  %y = ember.relu %x : f32[2] loc("r")\n  return %y\n}'
    other = one_line.replace('%y = ember.relu %x : f32[2] loc("r")', split)
    assert ir.structurally_equal(ir.parse(one_line), ir.parse(other))
    assert str(ir.parse(other)) == str(ir.parse(one_line))
