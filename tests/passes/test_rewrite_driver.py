"""The rewrite driver guards against users' rules: runaway rule sets stop at a limit
proportional to the graph with a clear error, rules that raise are named, and one
rewrite costs the same however large the graph is (deterministic work counts)."""

import textwrap

import numpy as np
import pytest

from ember import ir
from ember.errors import PassError, ShapeError
from ember.passes import P, Rule, RuleSet, apply_rules, parse_pipeline
from ember.passes.rewrite import MIN_REWRITE_LIMIT, erase_if_dead, rewrite_limit
from tests.support.work_meter import growth, work

x, y = P.var("x"), P.var("y")
SWAP = RuleSet("swapper", [Rule("swap-add", P.op("ember.add", x, y), lambda m, b: b.add(m.y, m.x))])
GROW = RuleSet("grower", [Rule("relu-grows", P.op("ember.relu", x), lambda m, b: b.relu(b.relu(m.x)))])


def adds(n: int) -> ir.Module:
    """n adds of two inputs (add is commutative, so swap-add matches each one forever)."""
    b = ir.Builder()
    a, c = b.input("a", ir.f32[4]), b.input("c", ir.f32[4])
    v = a
    for i in range(n):
        v = b.add(v, c, loc=f"add{i}")
    b.output("y", v)
    return b.build()


def relus(n: int, op: str = "relu") -> ir.Module:
    b = ir.Builder()
    v = b.input("x", ir.f32[4])
    for i in range(n):
        v = b.op(f"ember.{op}", v, loc=f"{op}{i}")
    b.output("y", v)
    return b.build()


def first_line(err: BaseException) -> str:
    return str(err).split("\n")[0]


# -- runaway rule sets ------------------------------------------------------------------------------------
def test_the_default_limit_is_proportional_with_a_floor():
    assert rewrite_limit(3) == MIN_REWRITE_LIMIT == 1_000
    assert rewrite_limit(5_000) == 50_000


def test_a_rule_that_undoes_itself_stops_at_the_limit_naming_the_rules():
    m = adds(3)
    with pytest.raises(PassError) as info:
        apply_rules(m, SWAP)
    line = first_line(info.value)
    assert line.startswith("rule set 'swapper' did not settle within 1,000 rewrites")
    assert "the limit for 3 ops" in line and "most fired: swap-add 1,001" in line
    assert "    swap-add: 1,001" in str(info.value)
    ir.verify(m)  # stopped between two rewrites: the module is still valid


def test_a_growing_rule_stops_at_ten_rewrites_per_op():
    m = relus(300)
    with pytest.raises(PassError, match=r"did not settle within 3,000 rewrites \(the limit for 300 ops"):
        apply_rules(m, GROW)
    assert sum(1 for _ in m.walk()) == 300 + 3_001  # each rewrite added one relu


def test_an_explicit_limit_still_applies():
    with pytest.raises(PassError, match=r"within 50 rewrites \(max_rewrites\)"):
        apply_rules(adds(3), SWAP, max_rewrites=50)
    for bad in (-1, 2.5, "10", True):
        with pytest.raises(PassError, match="max_rewrites must be a non-negative integer"):
            apply_rules(adds(3), SWAP, max_rewrites=bad)


def test_rule_sets_that_settle_are_not_limited_by_their_size():
    collapse = RuleSet("collapse", [Rule("relu-relu", P.op("ember.relu", P.op("ember.relu", x, name="inner")),
                                         lambda m, b: m.inner.result)])
    m = relus(3_000)
    assert apply_rules(m, collapse)["relu-relu"] == 2_999
    assert [op.name for op in m.main.body.ops] == ["ember.relu"]


def test_built_in_passes_use_the_proportional_limit():
    (canon,) = parse_pipeline("canonicalize")
    assert canon.max_rewrites == 0 and canon.describe() == "canonicalize"
    (capped,) = parse_pipeline("canonicalize{max-rewrites=5}")
    assert capped.max_rewrites == 5
    with pytest.raises(PassError, match="max-rewrites=-1 is below its minimum 0"):
        parse_pipeline("recognize-patterns{max-rewrites=-1}")


# -- rules that raise -------------------------------------------------------------------------------------
def divide_by_zero(m, b):
    return 1 / 0


def test_a_rule_whose_build_raises_is_named_with_its_set_op_and_source():
    rules = RuleSet("mine", [Rule("boom", P.op("ember.relu", x), divide_by_zero)])
    m = relus(2)
    with pytest.raises(PassError) as info:
        apply_rules(m, rules)
    line = first_line(info.value)
    assert line.startswith("rule 'boom' of rule set 'mine' (build defined at ")
    assert f"{__file__}:{divide_by_zero.__code__.co_firstlineno})" in line
    assert "failed building ember.relu at relu0: ZeroDivisionError: division by zero" in line
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert "\n" not in str(info.value)


def test_a_lambda_rule_is_located_and_what_it_built_is_removed():
    def build(m, b):
        b.neg(m.x)  # built, then the rule fails
        raise KeyError("missing")
    rules = RuleSet("mine", [Rule("half-built", P.op("ember.relu", x), build)])
    m = relus(1)
    with pytest.raises(PassError, match=r"failed building ember.relu at relu0: KeyError: 'missing'"):
        apply_rules(m, rules)
    assert [op.name for op in m.main.body.ops] == ["ember.relu"]
    ir.verify(m)


def test_a_rule_whose_pattern_predicate_raises_is_named():
    rules = RuleSet("mine", [Rule("picky", P.op("ember.relu", P.var("x", where=lambda v: v.type.shape[9])),
                                  lambda m, b: m.x)])
    with pytest.raises(PassError) as info:
        apply_rules(relus(1), rules)
    line = first_line(info.value)
    assert "rule 'picky' of rule set 'mine'" in line
    assert "failed matching ember.relu at relu0: IndexError: tuple index out of range (raised at " in line
    assert __file__ in line


def test_an_ember_error_from_a_rule_is_wrapped_with_the_rule_name():
    """Decision: a deliberate EmberError is wrapped too (a PassError chained from it), so the
    message says which rule of which set raised it; the original stays the __cause__."""
    rules = RuleSet("mine", [Rule("bad-shape", P.op("ember.relu", x),
                                  lambda m, b: b.matmul(m.x, b.constant(np.zeros((3, 3), np.float32))))])
    with pytest.raises(PassError) as info:
        apply_rules(relus(1), rules)
    assert "rule 'bad-shape' of rule set 'mine'" in first_line(info.value)
    assert "ShapeError" in first_line(info.value)
    assert isinstance(info.value.__cause__, ShapeError)


def test_a_build_returning_something_else_than_values_is_named():
    rules = RuleSet("mine", [Rule("returns-int", P.op("ember.relu", x), lambda m, b: 3)])
    with pytest.raises(PassError, match="rule 'returns-int'.*build returned int, not a Value"):
        apply_rules(relus(1), rules)


def test_ember_opt_names_the_file_and_rule_of_a_loaded_rule_that_raises(tmp_path, capsys):
    from ember.cli import main
    from ember.passes.manager import PASSES
    rules = tmp_path / "my_rules.py"
    rules.write_text(textwrap.dedent("""\
        from dataclasses import dataclass
        from ember.passes import P, Pass, Rule, RuleSet, apply_rules, register_pass

        def explode(m, b):
            return {}["nothing"]

        RULES = RuleSet("my-rules", [Rule("explode", P.op("ember.relu", P.var("x")), explode)])

        @register_pass("test-explode")
        @dataclass(frozen=True)
        class Explode(Pass):
            def run(self, module, ctx):
                return bool(apply_rules(module, RULES))
        """))
    model = tmp_path / "m.ir"
    model.write_text(str(relus(1)))
    try:
        assert main(["opt", str(model), "-p", "test-explode", "--load", str(rules)]) == 2
    finally:
        PASSES.pop("test-explode", None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert "rule 'explode' of rule set 'my-rules'" in err and f"{rules}:4" in err
    assert "failed building ember.relu at relu0: KeyError: 'nothing'" in err


# -- scaling (deterministic work counts) ------------------------------------------------------------------
def test_a_looping_rule_up_to_the_limit_costs_linear_work():
    """4x the ops (and so 4x the rewrites allowed) costs at most 5x the work."""
    def run(n):
        m = adds(n)
        def go():
            with pytest.raises(PassError):
                apply_rules(m, SWAP)
        return work(go)
    run(100)  # warm caches
    assert growth(run(100), run(400)) < 5.0  # 1,000 and 4,000 rewrites


def test_the_driver_on_a_chain_costs_linear_work():
    neg_neg = RuleSet("nn", [Rule("neg-neg", P.op("ember.neg", P.op("ember.neg", x)), lambda m, b: m.x)])

    def run(n):
        m = relus(n, "neg")
        return work(lambda: apply_rules(m, neg_neg))

    run(100)
    assert growth(run(2_000), run(8_000)) < 5.0


def test_erasing_a_long_dead_chain_does_not_recurse():
    b = ir.Builder()
    v = b.input("x", ir.f32[4])
    b.output("y", v)
    for _ in range(5_000):
        v = b.relu(v)
    m = b.build()
    last = m.main.body.ops[-1]
    erased = erase_if_dead(last)
    assert len(erased) == 4_999 and len(m.main.body.ops) == 0
