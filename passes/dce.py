"""dce: delete pure ops whose results nobody uses, and weights no op reads."""

from __future__ import annotations

from ember.ir.core import Block, Module
from ember.ir.opdef import Op, Pure
from ember.passes.manager import PassContext, register_pass


def _block(block: Block) -> int:
    removed = 0
    for op in reversed(list(block.ops)):
        for region in op.regions:
            removed += _block(region)
        if isinstance(op, Op) and Pure in op.traits and not any(r.has_uses for r in op.results):
            op.erase()
            removed += 1
    return removed


def dead_code(module: Module) -> int:
    """Erase unused pure ops (to a fixed point) and unreferenced weights; returns ops removed."""
    total = 0
    for fn in module.functions.values():
        while True:
            n = _block(fn.body)
            total += n
            if not n:
                break
    used = {op.attributes["name"] for op in module.walk() if op.name == "ember.weight"}
    for name in [n for n in module.weights if n not in used]:
        del module.weights[name]
    return total


@register_pass("dce")
def dce(module: Module, ctx: PassContext) -> bool:
    """Delete unused pure ops and weights no op reads."""
    n = dead_code(module)
    if n:
        ctx.count("dce", "dead ops", n)
    return bool(n)
