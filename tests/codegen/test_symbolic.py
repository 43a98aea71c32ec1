"""SymInt tracing (codegen/symbolic.py) and profile coverage (codegen/specialize.py).

The property: run any straight-line integer computation on SymInts at one point; at any
other point where every recorded guard holds, the expressions evaluate to exactly what the
same computation gives on plain ints there. A computation that reads the bare integer pins
itself (a guard `expr == value`), so it is only claimed where it was traced.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember import ir
from ember.codegen import symbolic as S
from ember.codegen.specialize import SpecializationError, lower_profiles
from ember.ir import dims as D
from ember.ir.profiles import Guard, InputRange, Profile, grid_points, satisfied
from ember.ir.program import Program

OPS = ["add", "sub", "mul", "floordiv", "mod", "max", "min", "smax", "smin", "cdiv", "lt", "eq", "int", "str",
       "numel", "neg", "float"]


def run(program, a, b):
    """A little 'lowering': a list of (op, constant) steps over two integers; returns its outputs."""
    outs = []
    x, y = a, b
    for op, k in program:
        if op == "add":
            x = x + k
        elif op == "sub":
            x = k - x
        elif op == "mul":
            x = x * y
        elif op == "floordiv":
            x = x // k
        elif op == "mod":
            x = x % k
        elif op == "max":
            x = max(x, y)
        elif op == "min":
            x = min(x, k)
        elif op == "smax":
            x = S.smax(x, y)
        elif op == "smin":
            x = S.smin(x, k)
        elif op == "cdiv":
            x = S.cdiv(x, k)
        elif op == "lt":
            x = x + 1 if x < k else x * 2
        elif op == "eq":
            x = y if x == k else x
        elif op == "int":
            x = int(x) + 1
        elif op == "str":
            outs.append(int(f"{x}"))
        elif op == "numel":
            x = S.numel([x, y, 2])
        elif op == "neg":
            x = -x
        elif op == "float":
            x = int(x * 1.5)
        outs.append(x)
    return outs


programs = st.lists(st.tuples(st.sampled_from(OPS), st.integers(1, 9)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(programs, st.integers(0, 20), st.integers(0, 20), st.integers(0, 20), st.integers(0, 20))
def test_expressions_hold_wherever_the_guards_hold(program, a, b, a2, b2):
    trace = S.Trace()
    with S.tracing(trace):
        traced = run(program, S.make(a, D.sym("A")), S.make(b, D.sym("B")))
        exprs = [S.expr_of(v) for v in traced]
    guards = list(trace.guards.values())
    here = {"A": a, "B": b}
    assert all(g.holds(here) for g in guards)
    assert [D.evaluate(e, here) for e in exprs] == run(program, a, b)
    there = {"A": a2, "B": b2}
    if all(g.holds(there) for g in guards):
        assert [D.evaluate(e, there) for e in exprs] == run(program, a2, b2)


def test_reading_the_bare_integer_pins_it():
    trace = S.Trace()
    with S.tracing(trace):
        n = S.make(12, D.mul(D.sym("N"), 4))
        text = f"{n}"
    assert text == "12"
    assert [str(g) for g in trace.guards.values()] == ["4*N == 12"]


def test_symbolic_helpers_add_no_guards():
    trace = S.Trace()
    with S.tracing(trace):
        n = S.make(40, D.sym("N"))
        blocks = S.smax(1, S.smin(S.cdiv(n * 3, 256), 1024))
        strides = S.contiguous_strides([n, 8, 2])
    assert not trace.guards
    assert str(S.expr_of(blocks)) == str(D.dmax(1, D.dmin(D.ceildiv(D.mul(D.sym("N"), 3), 256), 1024)))
    assert [str(S.expr_of(s)) for s in strides] == ["16", "2", "1"]


def test_guards_round_trip_and_evaluate_at_many_points():
    g = Guard(D.mul(D.sym("B"), D.sym("S")), "<", 128, "ember.fused @ x")
    assert Guard.from_json(g.to_json()) == g
    profile = Profile((InputRange("x", (1, 4), (2, 16), (8, 64)),), {"B": (1, 2, 8), "S": (4, 16, 64)})
    points, exhaustive = grid_points(profile, 1 << 20)
    assert exhaustive and len(points["B"]) == 8 * 61
    mask = satisfied(points, [g])
    assert mask.sum() == sum(1 for b in range(1, 9) for s in range(4, 65) if b * s < 128)
    sampled, exhaustive = grid_points(profile, 100)
    assert not exhaustive and len(sampled["B"]) > 100


def test_bind_program_evaluates_and_checks_sizes():
    program = {"values": [{"id": 0, "name": "x", "dtype": "f32", "shape": ["B", "S*4"], "kind": "input",
                           "nbytes": "16*B*S"}],
               "steps": [{"kind": "launch", "kernel": "k", "grid": ["max(1,(B*S+255)//256)", 1, 1],
                          "block": [256, 1, 1], "shared": 0, "args": [{"value": 0}, {"meta": ["B", 3]},
                                                                         {"i64": "B*S"}, {"f32": 1.5}],
                          "ops": [0], "reads": [0], "writes": []}],
               "inputs": [], "outputs": [], "kernels": []}
    symbolic_program = Program.from_json(program)
    bound = symbolic_program.bind({"B": 3, "S": 100})
    assert bound.values[0].shape == (3, 400) and bound.values[0].nbytes == 4800
    step = bound.steps[0]
    assert step.grid == (2, 1, 1)
    assert [a.to_json() for a in step.args[1:]] == [{"meta": [3, 3]}, {"i64": 300}, {"f32": 1.5}]
    assert bound.to_json()["steps"][0]["grid"] == [2, 1, 1]
    assert Program.from_json(symbolic_program.to_json()) == symbolic_program  # the JSON round trip
    from ember.ir.sizes import SizeError
    with pytest.raises(SizeError, match="limit"):
        symbolic_program.bind({"B": 1 << 30, "S": 1 << 20})


def _small_module():
    b = ir.Builder("small")
    x = b.input("x", ir.f32["N", 8])
    w = b.weight("w", np.arange(8, dtype=np.float32))
    b.output("y", b.relu(b.add(x, w)))
    return b.build()


def _profile(lo, opt, hi):
    return Profile((InputRange("x", (lo, 8), (opt, 8), (hi, 8)),), {"N": (lo, opt, hi)})


def test_a_lowering_that_loses_its_expressions_is_caught(monkeypatch):
    """`%d` formatting (like json and struct) reads a SymInt's value with no hook: the program
    would be right only at OPT. The check that lowers again at other points refuses the build,
    naming where it differs."""
    from ember.codegen import lower as L
    original = L.LowerContext.i64

    def lossy(self, x):
        return original(self, int("%d" % x))  # the expression is dropped, silently
    monkeypatch.setattr(L.LowerContext, "i64", lossy)
    with pytest.raises(SpecializationError, match="does not hold at"):
        lower_profiles(_small_module(), [_profile(1, 4, 16)])


def test_a_profile_is_covered_and_each_point_is_served():
    lowered = lower_profiles(_small_module(), [_profile(1, 4, 64)])
    specs = lowered.specializations
    assert 1 <= len(specs) <= 8 and all(lowered.exhaustive)
    for n in range(1, 65):
        assert any(s.holds({"N": n}) for s in specs), n


def test_too_many_variants_are_refused_naming_the_guards(monkeypatch):
    from ember.codegen import lower as L
    original = L.LowerContext.i64

    def pinned(self, x):
        return original(self, int(x))  # int() pins: one variant per value of N
    monkeypatch.setattr(L.LowerContext, "i64", pinned)
    with pytest.raises(SpecializationError) as info:
        lower_profiles(_small_module(), [_profile(1, 50, 100)])
    assert "more than 64 variants" in str(info.value) and "N ==" in str(info.value)
    assert math.isfinite(len(str(info.value)))
