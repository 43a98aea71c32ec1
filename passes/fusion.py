"""Building `ember.fused` ops: what fuse-epilogue and fuse-elementwise share.

`fuse(ops, kind)` moves a group of ops of one block into the isolated body
of a new `ember.fused` op placed where the group's last op was. The body's
arguments are the outside values the group reads, in the order the body
first reads them (stable: the same group gives the same operands); its
results are the group's values used outside it. Callers choose groups whose
members depend on nothing computed outside the group from the group's own
values (convex groups), so that placement at the last op keeps SSA order.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ember.ir.core import Block, Location, Operation, Value
from ember.ir.opdef import REGISTRY


def skip_fused(blocks: Iterable[Block]) -> list[Block]:
    """Every block under `blocks`, regions included, except the bodies of ember.fused ops."""
    out: list[Block] = []
    stack = list(blocks)
    while stack:
        block = stack.pop()
        out.append(block)
        for op in block.ops:
            if op.name != "ember.fused":
                stack.extend(op.regions)
    return out


def external_inputs(ops: Sequence[Operation]) -> list[Value]:
    """The values `ops` read that none of them defines, in first-read order."""
    inside = {id(r) for op in ops for r in op.results}
    seen: set[int] = set()
    out: list[Value] = []
    for op in ops:
        for v in op.operands:
            if v is not None and id(v) not in inside and id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def escaping(ops: Sequence[Operation]) -> list[Value]:
    """The results of `ops` used outside them (by another op or a block's outputs)."""
    members = {id(op) for op in ops}
    return [r for op in ops for r in op.results
            if any(not isinstance(u.user, Operation) or id(u.user) not in members for u in r.uses)]


def fuse(ops: Sequence[Operation], kind: str) -> Operation:
    """Replace `ops` (one block, in block order) by one ember.fused op of `kind`."""
    assert ops, "nothing to fuse"
    parent = ops[0].parent
    assert parent is not None and all(op.parent is parent for op in ops), "a fused group spans one block"
    inputs = external_inputs(ops)
    outputs = escaping(ops)
    members = {id(op) for op in ops}
    outside_uses = [(v, [u for u in v.uses if not isinstance(u.user, Operation) or id(u.user) not in members])
                    for v in outputs]
    body = Block([v.type for v in inputs], [v.name for v in inputs])
    arg_of = {id(v): a for v, a in zip(inputs, body.args)}
    last = ops[-1]
    fused = REGISTRY["ember.fused"].create(inputs, {"kind": kind}, result_types=[v.type for v in outputs],
                                           regions=[body], loc=Location.fused([op.loc for op in ops]))
    parent.insert_before(last, fused)
    parent.ops = [op for op in parent.ops if id(op) not in members]
    for op in ops:
        op.parent = None
        body.append(op)
        for i, v in enumerate(op.operands):
            if v is not None and id(v) in arg_of:
                op.set_operand(i, arg_of[id(v)])
    for v, new in zip(outputs, fused.results):
        new.name = v.name
    for (v, uses), new in zip(outside_uses, fused.results):
        for u in uses:
            if isinstance(u.user, Operation):
                u.user.set_operand(u.index, new)
            else:
                u.user.set_output(u.index, new)
    body.set_outputs(outputs)
    return fused
