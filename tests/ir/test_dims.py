"""Symbolic dims: canonical forms, evaluation, the broadcasting rule."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.errors import ParseError, ShapeError
from ember.ir import parse_dim, sym
from ember.ir.dims import (Unknown, broadcast_dim, broadcast_shapes, ceildiv, dmax, evaluate, floordiv,
                           free_symbols, mod)

N, S, H = sym("N"), sym("S"), sym("H")


@pytest.mark.parametrize("text,canonical", [
    ("N*S", "N*S"), ("S*N", "N*S"), ("N+1-1", "N"), ("2*N//2", "N"), ("(2*N+1)//2", "N"),
    ("(H-1)//2+1", "(H+1)//2"), ("(N+3)%2", "(N+1)%2"), ("max(N, S)", "max(N, S)"),
    ("max(S, N)", "max(N, S)"), ("1-N", "-N+1"), ("N*N*2", "2*N*N"), ("2*(N//2)", "2*(N//2)"),
    ("N*S//3", "(N*S)//3"), ("N//(S+1)", "N//(S+1)"), ("3", "3"), ("-(N-N)", "0"), ("N%1", "0"),
])
def test_canonical_form(text, canonical):
    d = parse_dim(text)
    assert str(d) == canonical
    assert parse_dim(str(d)) == d


def test_constants_fold_to_int():
    assert N - N == 0 and isinstance(N - N, int)
    assert (N * 4) // 2 == 2 * N
    assert mod(2 * N + 4, 2) == 0


def test_equal_expressions_are_equal_and_hash_alike():
    a, b = parse_dim("N*S+2*N"), parse_dim("N*(S+2)")
    assert a == b and hash(a) == hash(b)


def test_evaluate():
    assert evaluate(parse_dim("(H-1)//2+1"), {"H": 7}) == 4
    assert evaluate(parse_dim("max(N, S)*2"), {"N": 3, "S": 5}) == 10
    with pytest.raises(ShapeError, match="symbol S has no value"):
        evaluate(N * S, {"N": 1})


def test_floor_semantics_match_python():
    assert evaluate(floordiv(N - 7, 2), {"N": 0}) == -4
    assert evaluate(ceildiv(N, 4), {"N": 5}) == 2


def test_free_symbols():
    assert free_symbols(parse_dim("N*S+max(H, 2)")) == {"N", "S", "H"}
    assert free_symbols(Unknown(N)) == {"N"}


@pytest.mark.parametrize("a,b,out", [
    (3, 3, 3), (1, 5, 5), (5, 1, 5), (N, 1, N), (1, N, N), (N, N, N), (N, 5, 5), (5, N, 5),
    (N, S, dmax(N, S)), (Unknown(), 4, 4), (Unknown(), N, Unknown()),
])
def test_broadcast_rule(a, b, out):
    assert broadcast_dim(a, b) == out


def test_broadcast_mismatch_names_the_axis():
    with pytest.raises(ShapeError, match=r"axis -1: 3 vs 4"):
        broadcast_shapes((2, 3), (4,))


def test_dim_parse_errors_are_parse_errors():
    with pytest.raises(ParseError, match=r"<dim>:1:4: unexpected .\*.; expected"):
        parse_dim("N +* 2")


small = st.integers(-4, 9)
names = st.sampled_from(["N", "S", "H"])


@st.composite
def expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return draw(st.one_of(small.map(str), names))
    a, b = draw(expressions(depth=depth - 1)), draw(expressions(depth=depth - 1))
    op = draw(st.sampled_from(["+", "-", "*", "//", "%", "max", "min"]))
    if op in ("//", "%"):
        return f"({a}){op}{draw(st.integers(1, 5))}"
    if op in ("max", "min"):
        return f"{op}({a}, {b})"
    return f"({a}){op}({b})"


@settings(max_examples=300, deadline=None)
@given(expressions(), st.integers(0, 20), st.integers(0, 20), st.integers(0, 20))
def test_canonical_form_keeps_the_value(text, n, s, h):
    env = {"N": n, "S": s, "H": h}
    expected = eval(text.replace("max", "max").replace("min", "min"), {}, dict(env))  # Python semantics
    d = parse_dim(text)
    assert evaluate(d, env) == expected
    assert evaluate(parse_dim(str(d)), env) == expected


def test_products_of_floor_divisions_keep_their_parentheses():
    half = parse_dim("(N+1)//2")
    assert str(half * half) == "((N+1)//2)*((N+1)//2)"
    assert parse_dim(str(half * half)) == half * half
