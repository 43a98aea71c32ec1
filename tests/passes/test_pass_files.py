"""Runs every textual pass test (tests/passes/*.ir) and checks that every rule of every
rule set has a case where it fires and a near miss where it must not."""

import importlib
import pkgutil
from pathlib import Path

import pytest
from ir_filecheck import cases, run_case

import ember.passes
from ember.passes.rewrite import RuleSet

HERE = Path(__file__).parent
CASES = [c for path in sorted(HERE.glob("*.ir")) for c in cases(path)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pass_case(case):
    run_case(case)


def all_rules() -> dict[str, str]:
    """rule name -> rule set, for every RuleSet a pass module defines."""
    out = {}
    for info in pkgutil.iter_modules(ember.passes.__path__):
        module = importlib.import_module(f"ember.passes.{info.name}")
        for value in vars(module).values():
            if isinstance(value, RuleSet) and "+" not in value.name:
                for rule in value:
                    out[rule.name] = value.name
    return out


def test_every_rule_fires_somewhere_and_has_a_near_miss():
    fires = {r for c in CASES for r in c.fires}
    near = {r for c in CASES for r in c.not_fires}
    rules = all_rules()
    missing = sorted(f"{r} ({s}): " + ", ".join(k for k, ok in (("FIRES", r in fires), ("NOT-FIRES", r in near))
                                                if not ok) for r, s in rules.items() if r not in fires or r not in near)
    assert not missing, "rules without a firing case or a near miss:\n  " + "\n  ".join(missing)
    unknown = sorted((fires | near) - set(rules))
    assert not unknown, f"FIRES/NOT-FIRES name rules that do not exist: {unknown}"
