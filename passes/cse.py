"""cse: one op where several compute the same thing from the same operands.

Two pure ops without regions are the same when their names, operands,
attributes and result types are; attribute floats compare by their bits, so
-0.0 and 0.0 stay apart. An op in a region may reuse an equal op of the
enclosing block when the region reads outer values (not in isolated regions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.ir.attrs import Dense
from ember.ir.core import Block, Module, Operation
from ember.ir.opdef import Op, Pure
from ember.passes.manager import PassContext, register_pass


def _freeze(value: Any) -> Any:
    if isinstance(value, float):
        return ("f", np.float64(value).tobytes())
    if isinstance(value, tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Dense):
        return ("dense", value)
    return value


def _key(op: Operation) -> tuple | None:
    if not isinstance(op, Op) or Pure not in op.traits or op.regions or not op.results:
        return None
    try:
        attrs = tuple(sorted((k, _freeze(v)) for k, v in op.attributes.items()))
        hash(attrs)
    except TypeError:
        return None
    return (op.name, tuple(id(v) if v is not None else None for v in op.operands), attrs,
            tuple(r.type for r in op.results))


def _cse_block(block: Block, seen: dict[tuple, Operation]) -> int:
    removed = 0
    scope = dict(seen)
    for op in list(block.ops):
        for field_, region in zip(getattr(op, "region_fields", ()), op.regions):
            removed += _cse_block(region, {} if field_.isolated else scope)
        key = _key(op)
        if key is None:
            continue
        twin = scope.get(key)
        if twin is None:
            scope[key] = op
            continue
        for old, new in zip(op.results, twin.results):
            old.replace_all_uses_with(new)
        op.erase()
        removed += 1
    return removed


def eliminate_common_subexpressions(module: Module) -> int:
    total = 0
    for fn in module.functions.values():
        while True:
            n = _cse_block(fn.body, {})
            total += n
            if not n:
                break
    return total


@register_pass("cse")
def cse(module: Module, ctx: PassContext) -> bool:
    """Merge pure ops that compute the same thing from the same operands."""
    n = eliminate_common_subexpressions(module)
    if n:
        ctx.count("cse", "merged ops", n)
    return bool(n)
