"""Property tests: random well-typed graphs round-trip and verify; fuzzed text
only ever raises the parser's own errors."""

import string as pystring

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ember import ir
from ember.errors import ParseError, VerifyError

UNARY = ["ember.relu", "ember.exp", "ember.tanh", "ember.neg", "ember.abs", "ember.sigmoid", "ember.erf",
         "ember.gelu", "ember.silu", "ember.floor"]
BINARY = ["ember.add", "ember.sub", "ember.mul", "ember.max", "ember.min", "ember.div"]
FLOAT_DTYPES = [ir.f32, ir.f16, ir.bf16, ir.f64]
SYMBOLS = ["N", "S", "B"]

names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
special_floats = st.sampled_from([0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-5, 3.5, -2.0])
floats = st.one_of(special_floats, st.floats(allow_nan=True, allow_infinity=True, width=64))


@st.composite
def dims(draw):
    kind = draw(st.sampled_from(["int", "sym", "expr"]))
    if kind == "int":
        return draw(st.integers(1, 4))
    s = ir.sym(draw(st.sampled_from(SYMBOLS)))
    if kind == "sym":
        return s
    return draw(st.sampled_from([s * 2, s + 1, (s - 1) // 2 + 1, s * ir.sym("S")]))


REDUCE = ["ember.reduce_sum", "ember.reduce_mean", "ember.reduce_max", "ember.reduce_min", "ember.reduce_l2",
          "ember.reduce_log_sum_exp"]


@st.composite
def graphs(draw):
    """A random well-typed graph over one float dtype: elementwise ops, constants,
    fused regions, casts, clip with absent bounds, transposes, reductions, softmax,
    concat and reshape, with symbolic and expression dims, odd names and locations."""
    dt = draw(st.sampled_from(FLOAT_DTYPES))
    rank = draw(st.integers(0, 3))
    shape = tuple(draw(dims()) for _ in range(rank))
    b = ir.Builder(draw(st.one_of(st.none(), names)))
    n_inputs = draw(st.integers(1, 3))
    input_names = draw(st.lists(names, min_size=n_inputs, max_size=n_inputs, unique=True))
    values = [b.input(n, ir.TensorType(dt, shape)) for n in input_names]
    kinds = ["unary", "binary", "const", "fused", "clip", "leaky", "cast", "transpose", "reduce", "softmax",
             "concat", "reshape"]
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(kinds))
        loc = draw(st.one_of(st.none(), names, st.lists(names, min_size=1, max_size=3)))
        x = draw(st.sampled_from(values))
        r = len(x.type.shape)
        same = [v for v in values if v.type == x.type]
        if kind == "unary":
            v = b.op(draw(st.sampled_from(UNARY)), x, loc=loc)
        elif kind == "binary":
            v = b.op(draw(st.sampled_from(BINARY)), x, draw(st.sampled_from(same)), loc=loc)
        elif kind == "const":
            with np.errstate(over="ignore"):  # huge floats become inf in f16: fine, inf is a case too
                data = np.array(draw(st.lists(floats, min_size=1, max_size=3)), dtype=dt.np_dtype)
            v = b.add(x, b.constant(data[:1].reshape(()), dt), loc=loc)
        elif kind == "fused":
            y = draw(st.sampled_from(same))
            (v,) = b.fused(x, y, kind=draw(names), loc=loc,
                           body=lambda rb, p, q: rb.op(draw(st.sampled_from(BINARY)), rb.relu(p), q))
        elif kind == "clip":
            with np.errstate(over="ignore"):
                lo = b.constant(np.array(draw(floats), dtype=dt.np_dtype), dt)
            v = b.clip(x, None, lo, loc=loc) if draw(st.booleans()) else b.clip(x, lo, loc=loc)
        elif kind == "leaky":
            v = b.leaky_relu(x, alpha=draw(floats), loc=loc) if dt != ir.f64 else b.relu(x)
        elif kind == "cast":
            v = b.cast(b.cast(x, to=draw(st.sampled_from(FLOAT_DTYPES)), loc=loc), to=dt)
        elif kind == "transpose":
            v = b.transpose(x, perm=tuple(draw(st.permutations(range(r)))), loc=loc)
        elif kind == "reduce" and r:
            axes = tuple(sorted(draw(st.sets(st.integers(0, r - 1), min_size=1))))
            v = b.op(draw(st.sampled_from(REDUCE)), x, axes=axes, keepdims=draw(st.booleans()), loc=loc)
        elif kind == "softmax" and r:
            v = b.softmax(x, axis=draw(st.integers(-r, r - 1)), loc=loc)
        elif kind == "concat" and r:
            v = b.concat(x, draw(st.sampled_from(same)), axis=draw(st.integers(0, r - 1)), loc=loc)
        elif kind == "reshape":
            v = b.reshape(x, shape=(-1,), loc=loc)
        else:
            v = b.relu(x, loc=loc)
        values.append(v)
    outs = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
    out_names = draw(st.lists(names, min_size=len(outs), max_size=len(outs), unique=True))
    for n, v in zip(out_names, outs):
        b.output(n, v)
    return b.build()


def feeds_for(m, seed):
    from ember.ir.dims import evaluate
    rng = np.random.default_rng(seed)
    env = {s: int(rng.integers(1, 4)) for s in SYMBOLS}
    return {n: rng.uniform(-2, 2, [evaluate(d, env) for d in v.type.shape]).astype(v.type.dtype.np_dtype)
            for n, v in zip(m.main.input_names, m.main.inputs)}


@given(graphs())
def test_random_graphs_round_trip_through_text(m):
    text = str(m)
    again = ir.parse(text)
    assert str(again) == text
    assert ir.structural_diff(m, again) == []


@given(graphs(), st.integers(0, 2**31))
def test_random_graphs_mean_the_same_after_text(m, seed):
    """Printing loses nothing the interpreter can see (float attributes exactly, say).
    Computed NaNs compare as NaNs: their sign bit is numpy's choice per code path (its SIMD
    and scalar loops differ, by the arrays' alignment), not something the text carries."""
    feeds = feeds_for(m, seed)
    first, second = ir.interpret(m, feeds), ir.interpret(ir.parse(str(m)), feeds)
    for name in first:
        a, b = np.asarray(first[name]), np.asarray(second[name])
        if a.dtype.kind in "fc":
            nan = np.isnan(a)
            assert np.array_equal(nan, np.isnan(b)), name
            a, b = a[~nan], b[~nan]
        assert a.tobytes() == b.tobytes(), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(graphs())
def test_random_graphs_round_trip_through_files(tmp_path, m):
    path = tmp_path / "g.ir"
    m.save(path)
    from ember.ir.files import load_module
    assert ir.structural_diff(m, load_module(path)) == []


VALID = """module @m {
  symbol N in [1, 8]
  weight "w" : f32[3]
  func @main(%x: f32[N,3], %"y:0": f32[3]) -> (z: f32[N,3]) {
    %w = ember.weight {name = "w"} : f32[3]
    %c = ember.constant {value = dense<f32[]: -0.5>} : f32[]
    %0 = ember.add %x, %"y:0" : f32[N,3] loc("a")
    %1 = ember.clip %0, none, %c : f32[N,3]
    %2 = ember.fused %1, %w {kind = "k"} : f32[N,3] ({
    ^bb0(%p: f32[N,3], %q: f32[3]):
      %3 = ember.leaky_relu %p {alpha = 0.2} : f32[N,3]
      %4 = ember.mul %3, %q : f32[N,3]
      yield %4
    })
    return %2
  }
}
"""
TOKENS = ["%", "@", "{", "}", "(", ")", "[", "]", "<", ">", ":", ",", "=", "->", "//", "\"", "\\", "?", "*",
          "ember.add", "ember.fused", "none", "dense<", "f32[", "loc(", "^bb0(", "yield", "return", "nan",
          "-", "0x", "1e999", "99999999999999999999999", "\n", " "]


def parse_only_raises_its_own_errors(text: str) -> None:
    try:
        ir.parse(text)
    except (ParseError, VerifyError):
        pass


@given(st.data())
def test_mutated_text_raises_only_parser_errors(data):
    text = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 12)))
        repl = data.draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)))
        text = text[:i] + repl + text[j:]
    parse_only_raises_its_own_errors(text)


@given(st.text(alphabet=pystring.printable + "%@{}()[]<>", max_size=200))
def test_random_text_raises_only_parser_errors(text):
    parse_only_raises_its_own_errors(text)


@given(st.lists(st.sampled_from(TOKENS + ["func @f(", "%x: f32[2]", ") -> (", "y: f32[2]", ") {", "}",
                                          "ember.relu %x", ": f32[2]", "module", "symbol N in [1, 2]"]),
                max_size=30))
def test_token_soup_raises_only_parser_errors(tokens):
    parse_only_raises_its_own_errors(" ".join(tokens))
