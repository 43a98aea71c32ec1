"""A user's own pass, as README shows it: two rules and a registered pass.

    ember opt model.ir -p "canonicalize,my-simplify{max-rewrites=100}" --load examples/custom_pass.py
"""

from dataclasses import dataclass

from ember.passes import P, Pass, Rule, RuleSet, apply_rules, register_pass

x = P.var("x")
MY_RULES = RuleSet("my-rules", [
    # relu(relu(x)) = relu(x)
    Rule("relu-relu", P.op("ember.relu", P.op("ember.relu", x, name="inner")), lambda m, b: m.inner.result),
    # x * 2 = x + x
    Rule("double", P.op("ember.mul", x, P.splat(2)), lambda m, b: b.add(m.x, m.x)),
])


@register_pass("my-simplify")
@dataclass(frozen=True)
class MySimplify(Pass):
    """Apply my rules to a fixed point."""

    max_rewrites: int = 10_000  # my-simplify{max-rewrites=100}

    def run(self, module, ctx):
        fired = apply_rules(module, MY_RULES, max_rewrites=self.max_rewrites)
        for rule, n in fired.items():
            ctx.count(self.name, rule, n)
        return bool(fired)
