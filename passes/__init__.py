"""Graph passes: rewrite rules, the pass manager, canonicalization, folding, fusion,
layout and precision. Imports `ember.ir` only.

    from ember.passes import run_pipeline
    run_pipeline(module, "canonicalize,cse,fold-constants")

Write a pass: a decorated function or a frozen dataclass (see manager.py); write
rules: `P`, `Rule`, `RuleSet`, `apply_rules` (see rewrite.py).
"""

from ember.passes.manager import (PASSES, PIPELINES, Pass, PassContext, PassManager, option,
                                  parse_pipeline, register_pass, register_pipeline, run_pipeline, timing_report)
from ember.passes.rewrite import P, Rule, RuleSet, apply_rules

__all__ = ["PASSES", "PIPELINES", "P", "Pass", "PassContext", "PassManager", "option", "Rule", "RuleSet", "apply_rules",
           "parse_pipeline", "register_pass", "register_pipeline", "run_pipeline", "timing_report"]
