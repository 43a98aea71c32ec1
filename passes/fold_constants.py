"""fold-constants: compute at build time what depends only on constants.

The values come from the reference interpreter (each op's own `reference`),
so folding can never disagree with running. Results up to `inline-limit`
elements become inline `ember.constant`s; larger ones become weights named
after the weight they were computed from (`conv1.weight/transpose`), and
only when they are no larger than the constants they are made of (the
`growth` limit), so folding never inflates the weights: `expand` of a scalar
to a large tensor stays an expand. Results of at most `small` elements fold
whatever they grow from (a `range` of 128 positions from three scalars): a
few kilobytes of weights cost less than the kernel launch they save.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ember.ir.core import Block, Module, Operation, Value
from ember.ir.opdef import REGISTRY, EvalContext, Op, Pure
from ember.ir.types import TensorType, dtype_of
from ember.passes.dce import dead_code
from ember.passes.manager import Pass, PassContext, option, register_pass
from ember.passes.rewrite import known_value, replace_op

NOT_FOLDED = {"ember.constant", "ember.weight"}


def _no_regions(block: Block, args: Any) -> tuple:
    raise RuntimeError("ops with regions are not folded")


@register_pass("fold-constants")
@dataclass(frozen=True)
class FoldConstants(Pass):
    """Evaluate pure ops whose operands are all known; bounded so weights never grow."""

    inline_limit: int = option(64, min=0)
    growth: float = option(1.0, min=0.0)
    small: int = option(4096, min=0)
    max_elements: int = option(1 << 24, min=0)

    def run(self, module: Module, ctx: PassContext) -> bool:
        eval_ctx = EvalContext(env={}, module=module, run_block=_no_regions)
        folded = 0
        for fn in module.functions.values():
            for op in list(fn.walk()):
                if op.parent is None or not self._candidate(op):
                    continue
                values = self._fold(op, eval_ctx)
                if values is None:
                    continue
                replace_op(op, [self._materialize(module, op, r, v) for r, v in zip(op.results, values)])
                folded += 1
        if folded:
            ctx.count(self.name, "folded ops", folded)
            dead_code(module)
        return bool(folded)

    def _candidate(self, op: Operation) -> bool:
        return (isinstance(op, Op) and Pure in op.traits and not op.regions and op.name not in NOT_FOLDED
                and all(isinstance(r.type, TensorType) and r.type.is_static for r in op.results))

    def _fold(self, op: Operation, eval_ctx: EvalContext) -> list[np.ndarray] | None:
        inputs = [known_value(v) if v is not None else None for v in op.operands]
        if any(a is None and v is not None for a, v in zip(inputs, op.operands)):
            return None
        in_size = sum(a.size for a in inputs if a is not None)
        out_size = sum(int(np.prod(r.type.static_shape, dtype=np.int64)) for r in op.results)  # type: ignore[attr-defined]
        if out_size > self.max_elements or (out_size > max(self.inline_limit, self.small)
                                            and out_size > self.growth * in_size):
            return None
        try:
            with np.errstate(all="ignore"):
                return [np.asarray(v) for v in op.evaluate(inputs, eval_ctx)]
        except Exception:  # an op that fails on these constants fails at run time too: leave it
            return None

    def _materialize(self, module: Module, op: Operation, result: Value, array: np.ndarray) -> Value:
        if array.size <= self.inline_limit or dtype_of(array).kind == "string":
            from ember.ir.attrs import Dense
            new = REGISTRY["ember.constant"].create((), {"value": Dense(array)}, loc=op.loc)
        else:
            name = self._weight_name(module, op)
            module.add_weight(name, np.ascontiguousarray(array))
            new = REGISTRY["ember.weight"].create((), {"name": name}, result_types=[module.weights[name].type],
                                                  loc=op.loc)
            new.results[0].name = name
        assert op.parent is not None
        op.parent.insert_before(op, new)
        return new.results[0]

    @staticmethod
    def _weight_name(module: Module, op: Operation) -> str:
        """Named after the weight it derives from, so refits can find it: `w/transpose`."""
        source = next((v.defining_op.attributes["name"] for v in op.operands
                       if v is not None and v.defining_op is not None and v.defining_op.name == "ember.weight"),
                      None)
        return module.unique_weight_name(f"{source or 'folded'}/{op.name.split('.', 1)[1]}")
