"""fuse-elementwise: elementwise DAGs, and the elementwise ops feeding a reduction, as one op.

Groups are grown from their last op (their root) backwards, roots taken from
the end of each block: an elementwise op's producer joins the group when it
is elementwise too (the Elementwise trait: arithmetic, activations,
comparisons, logic, cast, where; broadcasting included) and every use of
its result is inside the group, so a group yields one value and computes
nothing that another op also needs: no op is duplicated into two groups, no
value is computed twice. A group of two or more ops becomes an `ember.fused`
of kind "elementwise"; a reduction-like root (the Reduction or Normalization
traits: reduce_*, argmax, global pools, softmax, log_softmax, layer_norm,
rms_norm...) with at least one elementwise producer taken in becomes one of
kind "reduction" whose body ends with that op. Groups hold at most `max-ops`
ops. A normalization (layer_norm, rms_norm, instance_norm, group_norm) whose only
user is a float cast takes the cast as its tail: the kernel stores its f32 result
in the cast's type, rounding once, as the cast would (no f32 tensor and no extra
launch between an f32 normalization and half-precision neighbours). So does an f32
global pool or mean/sum/max/min reduction whose only user narrows it to f16 or bf16. The fused op's
operands are the outside values its body reads, in first-read order.

Heavy ops never join (fuse-epilogue gives them their own fused ops, which
run first in the default pipeline), nor do ops with regions, string tensors,
or ops already inside fused regions, which this pass leaves alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.ir.core import Block, Module, Operation
from ember.ir.opdef import Elementwise, Heavy, Normalization, Op, Pure, Reduction
from ember.ir.types import TensorType
from ember.passes.fusion import fuse, skip_fused
from ember.passes.manager import Pass, PassContext, option, register_pass


def _plain(op: Operation) -> bool:
    """Pure, no regions, not heavy, only non-string tensors in and out."""
    if not isinstance(op, Op) or Pure not in op.traits or Heavy in op.traits or op.regions or not op.results:
        return False
    values = [v for v in op.operands if v is not None] + list(op.results)
    return all(isinstance(v.type, TensorType) and v.type.dtype.kind != "string" for v in values)


def is_elementwise(op: Operation) -> bool:
    return _plain(op) and Elementwise in op.traits and len(op.results) == 1  # type: ignore[attr-defined]


def is_reduction(op: Operation) -> bool:
    return _plain(op) and (Reduction in op.traits or Normalization in op.traits)  # type: ignore[attr-defined]


# Normalizations whose kernels store through the result's type (codegen/ops/reduce.py `_norm`).
CAST_TAIL_ROOTS = frozenset({"ember.layer_norm", "ember.rms_norm", "ember.instance_norm", "ember.group_norm"})
# Reductions whose kernels (reduce_rows) store their f32 result through the result's type too: a
# narrowing cast after them rounds once, as the store does (a CNN's global average pool before
# the half-precision classifier).
CAST_TAIL_REDUCTIONS = frozenset({"ember.global_avg_pool", "ember.global_max_pool", "ember.reduce_mean",
                                  "ember.reduce_sum", "ember.reduce_max", "ember.reduce_min"})
FLOAT_TYPES = frozenset({"f16", "bf16", "f32"})


def cast_tail_of(op: Operation, block: Block, assigned: set[int]) -> Operation | None:
    """The normalization `op` (a float cast) can be the tail of: the producer of its operand,
    in this block and not yet grouped, whose one result has the cast as its only user."""
    if op.name != "ember.cast" or not is_elementwise(op) or op.operands[0] is None:
        return None
    norm = op.operands[0].defining_op
    if norm is None or norm.parent is not block or id(norm) in assigned:
        return None
    narrowing = str(op.operands[0].type.dtype) == "f32" and str(op.results[0].type.dtype) in ("f16", "bf16")  # type: ignore[union-attr]
    if norm.name not in CAST_TAIL_ROOTS and not (norm.name in CAST_TAIL_REDUCTIONS and narrowing):
        return None
    if not is_reduction(norm) or len(norm.results) != 1:
        return None
    uses = list(norm.results[0].uses)
    if len(uses) != 1 or uses[0].user is not op:
        return None
    kinds = {str(op.operands[0].type.dtype), str(op.results[0].type.dtype)}  # type: ignore[union-attr]
    return norm if kinds <= FLOAT_TYPES else None


def _group(root: Operation, block: Block, position: dict[int, int], assigned: set[int],
           max_ops: int) -> list[Operation]:
    """`root` and the elementwise producers whose every use is in the group, latest first."""
    members = {id(root)}
    group = [root]

    def joins(op: Operation) -> bool:
        return (op.parent is block and id(op) not in members and id(op) not in assigned and is_elementwise(op)
                and all(r.has_uses for r in op.results)
                and all(isinstance(u.user, Operation) and id(u.user) in members for r in op.results for u in r.uses))

    changed = True
    while changed and len(group) < max_ops:
        changed = False
        candidates = {id(v.defining_op): v.defining_op for op in group for v in op.operands
                      if v is not None and v.defining_op is not None}
        for op in sorted(candidates.values(), key=lambda o: -position.get(id(o), -1)):
            if len(group) >= max_ops:
                break
            if joins(op):
                members.add(id(op))
                group.append(op)
                changed = True
    return sorted(group, key=lambda o: position[id(o)])


def fuse_elementwise(module: Module, max_ops: int) -> dict[str, int]:
    """Fuse every group; returns how many fused ops of each kind were made and how many ops they took."""
    stats = {"elementwise": 0, "reduction": 0, "fused ops": 0}
    for fn in module.functions.values():
        for block in skip_fused([fn.body]):
            position = {id(op): i for i, op in enumerate(block.ops)}
            assigned: set[int] = set()
            groups: list[tuple[str, list[Operation]]] = []
            for op in reversed(block.ops):
                if id(op) in assigned:
                    continue
                norm = cast_tail_of(op, block, assigned)
                if norm is not None and max_ops >= 2:
                    group = _group(norm, block, position, assigned, max_ops - 1) + [op]
                    assigned.update(id(o) for o in group)
                    groups.append(("reduction", group))
                    continue
                kind = "elementwise" if is_elementwise(op) else "reduction" if is_reduction(op) else None
                if kind is None:
                    continue
                group = _group(op, block, position, assigned, max_ops)
                if len(group) < 2:
                    continue
                assigned.update(id(o) for o in group)
                groups.append((kind, group))
            for kind, group in groups:
                fuse(group, kind)
                stats[kind] += 1
                stats["fused ops"] += len(group)
    return stats


@register_pass("fuse-elementwise")
@dataclass(frozen=True)
class FuseElementwise(Pass):
    """Merge elementwise DAGs (and the elementwise ops feeding a reduction) into ember.fused ops."""

    max_ops: int = option(32, min=1)

    def run(self, module: Module, ctx: PassContext) -> bool:
        stats = fuse_elementwise(module, self.max_ops)
        if stats["elementwise"]:
            ctx.count(self.name, "elementwise fused ops", stats["elementwise"])
        if stats["reduction"]:
            ctx.count(self.name, "reduction fused ops", stats["reduction"])
        if stats["fused ops"]:
            ctx.count(self.name, "ops fused", stats["fused ops"])
        return bool(stats["elementwise"] or stats["reduction"])
