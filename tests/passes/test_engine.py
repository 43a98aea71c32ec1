"""The rewrite engine and the pass manager: patterns, the driver, pipelines, options,
verification, printing, user passes, `ember opt`."""

import io

import numpy as np
import pytest

from ember import ir
from ember.errors import PassError
from ember.passes import P, Pass, PassContext, PassManager, Rule, RuleSet, apply_rules, parse_pipeline, register_pass
from ember.passes.manager import PASSES, timing_report


def tiny():
    return ir.parse("""func @main(%x: f32[4], %y: f32[4]) -> (o: f32[4]) {
  %z = ember.constant {value = dense<f32[]: 0.0>} : f32[]
  %0 = ember.add %x, %z : f32[4] loc("a")
  %1 = ember.mul %y, %0 : f32[4] loc("b")
  %2 = ember.relu %1 : f32[4] loc("c")
  return %2
}""")


def test_commutative_ops_match_either_way_and_bind_values():
    x, y = P.var("x"), P.var("y")
    seen = []
    rules = RuleSet("t", [Rule("mul-add", P.op("ember.mul", P.op("ember.add", x, y, name="inner"), P.var("other")),
                               lambda m, b: seen.append((m.x.name, m.other.name)))])
    apply_rules(tiny(), rules)
    assert seen == [("x", "y")]  # mul(y, add(x, z)) matched with the operands swapped


def test_replacement_keeps_type_and_fuses_locations():
    x = P.var("x")
    rules = RuleSet("t", [Rule("relu-mul", P.op("ember.relu", P.op("ember.mul", x, P.var("y"))),
                               lambda m, b: b.max(b.mul(m.x, m.y), b.constant(np.float32(0))))])
    m = tiny()
    fired = apply_rules(m, rules)
    assert fired["relu-mul"] == 1
    text = str(m)
    assert 'ember.max' in text and 'loc("b", "c")' in text and "ember.relu" not in text


def test_rules_that_would_change_a_type_do_not_fire():
    rules = RuleSet("t", [Rule("bad", P.op("ember.relu", P.var("x")), lambda m, b: b.cast(m.x, to=ir.f16))])
    m = tiny()
    assert apply_rules(m, rules) == {}
    assert "ember.cast" not in str(m)  # what the failed rule built was removed


def test_driver_reaches_a_fixed_point_and_guards_against_loops():
    flip = RuleSet("loop", [Rule("flip", P.op("ember.neg", P.var("x")), lambda m, b: b.neg(b.neg(b.neg(m.x))))])
    b = ir.Builder()
    b.output("y", b.neg(b.input("x", ir.f32[2])))
    with pytest.raises(PassError, match="did not settle"):
        apply_rules(b.build(), flip, max_rewrites=50)


def test_pipeline_strings_options_and_errors():
    passes = parse_pipeline("canonicalize, cse ,fold-constants{inline-limit=8,growth=0.5}")
    assert [p.describe() for p in passes] == ["canonicalize", "cse", "fold-constants{inline-limit=8,growth=0.5}"]
    with pytest.raises(PassError, match="unknown pass 'no-such-pass'"):
        parse_pipeline("canonicalize,no-such-pass")
    with pytest.raises(PassError, match="has no option 'size'"):
        parse_pipeline("fold-constants{size=3}")
    with pytest.raises(PassError, match="'many' is not a valid int"):
        parse_pipeline("fold-constants{inline-limit=many}")
    assert [p.name for p in parse_pipeline("cleanup")][:2] == ["canonicalize", "cse"]


def test_a_user_pass_is_one_decorated_function():
    @register_pass("test-count-relus")
    def count_relus(module, ctx):
        """Counts relus (a pass that changes nothing)."""
        ctx.count("test-count-relus", "relus", sum(op.name == "ember.relu" for op in module.walk()))
        return False

    try:
        records = PassManager("test-count-relus").run(tiny())
        assert records[0].stats["relus"] == 1 and not records[0].changed
        assert "test-count-relus" in timing_report(records)
    finally:
        del PASSES["test-count-relus"]


def test_a_pass_that_breaks_the_ir_is_caught_after_it_runs():
    @register_pass("test-break")
    class Break(Pass):
        def run(self, module, ctx):
            op = next(o for o in module.walk() if o.name == "ember.relu")
            op.results[0].type = ir.f16[4]
            return True

    try:
        with pytest.raises(PassError, match="pass test-break left invalid IR: .*declared f16"):
            PassManager("test-break").run(tiny())
        PassManager("test-break", verify_each=False).run(tiny())  # off with a flag
    finally:
        del PASSES["test-break"]


def test_print_ir_after():
    out = io.StringIO()
    PassManager("canonicalize,cse", print_ir_after=["cse"], out=out).run(tiny())
    text = out.getvalue()
    assert text.startswith("// -----// IR after cse //----- //") and "ember.relu" in text
    assert "IR after canonicalize" not in text


def test_ember_opt_command(tmp_path, capsys):
    from ember.cli import main
    path = tmp_path / "t.ir"
    tiny().save(path)
    assert main(["opt", str(path), "-p", "canonicalize", "--timing"]) == 0
    captured = capsys.readouterr()
    assert "ember.add" not in captured.out and "ember.relu" in captured.out
    assert "canonicalize" in captured.err and "add-zero 1" in captured.err
    assert main(["opt", str(path), "-p", "canonicalize", "-o", str(path)]) == 2
    assert "is the input" in capsys.readouterr().err
    assert main(["opt", str(path), "-p", "bogus"]) == 2
    assert "unknown pass 'bogus'" in capsys.readouterr().err
    assert main(["opt", str(path), "-p", "cse", "-o", str(tmp_path / "out.ir")]) == 0
    assert ir.parse((tmp_path / "out.ir").read_text())


def test_context_counts_accumulate():
    ctx = PassContext()
    ctx.count("p", "a")
    ctx.count("p", "a", 2)
    assert ctx.stats["p"]["a"] == 3


def test_the_readme_custom_pass(tmp_path, capsys):
    """examples/custom_pass.py is README's example; ember opt --load runs it."""
    from pathlib import Path

    from ember.cli import main
    example = Path(__file__).parent.parent.parent / "examples" / "custom_pass.py"
    b = ir.Builder()
    x = b.input("x", ir.f32[3])
    b.output("y", b.mul(b.relu(b.relu(x)), b.constant(np.float32(2))))
    b.build().save(tmp_path / "m.ir")
    try:
        assert main(["opt", str(tmp_path / "m.ir"), "-p", "my-simplify{max-rewrites=100}", "--load", str(example),
                     "--timing"]) == 0
        out, err = capsys.readouterr()
        assert out.count("ember.relu") == 1 and "ember.mul" not in out and "ember.add" in out
        assert "relu-relu 1" in err and "double 1" in err
    finally:
        PASSES.pop("my-simplify", None)
