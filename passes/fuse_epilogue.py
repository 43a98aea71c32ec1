"""fuse-epilogue: a heavy op and the elementwise work on its result, as one fused op.

Every op with the Heavy trait (conv, conv_transpose, matmul, gemm, einsum...)
outside fused regions becomes an `ember.fused` op of kind "epilogue" whose
isolated body holds the heavy op first, then its epilogue: the elementwise
ops that consume its result on its own output grid (bias and residual adds,
activations, scales, clips, casts; the Elementwise trait, with a result of
the heavy op's shape). The fused op's operands are the outside values the
body reads, in first-read order; it yields the epilogue's last value.

The epilogue grows from the heavy op's result, one step at a time, while the
current value's users (with the ops that consume theirs, when several values
must meet again, as in x * sigmoid(x)) are all epilogue ops and leave exactly
one value used outside. It stops at a value used outside the epilogue, by a
non-elementwise op or as a function output: an intermediate used outside
cannot be fused away, and fusing its users anyway would compute the heavy op
twice. Each fused op holds one heavy op: an add of two convs' results goes
into the epilogue of the first in program order, and the other's fused op
yields its result as an operand.

A transpose (after an optional reshape) that is the only user of the epilogue's value
joins as its layout tail: the kernel stores each element where the transpose puts it,
so a projection writes the heads-first layout attention reads (and attention the
layout the output projection reads) with no transpose kernel between them.

Elementwise ops after the layout tail join too, on the stored layout's grid, where every
other operand they read has that grid's shape or is a single element (a residual added
after the output projection's transpose back to [batch, tokens, features]): the kernel
reads such an operand where it stores the element.

A widening float cast at the end (f16 or bf16 to f32: exact) whose users are all
reductions or normalizations stays out: fuse-elementwise puts it into their prologue,
so the heavy op writes the narrow type (half the bytes) and the consumer widens as it
reads, with the same values.

Contract: afterwards every heavy op of one result outside fused regions sits
in an epilogue fused op, one per op, and no op runs twice. Heavy ops of
several results (rnn, gru, lstm) stay as they are, and so do ops already in
fused regions.
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.ir.core import Block, Module, Operation, Value
from ember.ir.opdef import Elementwise, Heavy, Normalization, Op, Pure, Reduction
from ember.ir.types import TensorType
from ember.passes.fusion import fuse, skip_fused
from ember.passes.manager import Pass, PassContext, option, register_pass


def is_heavy(op: Operation) -> bool:
    return (isinstance(op, Op) and Heavy in op.traits and Pure in op.traits and not op.regions
            and len(op.results) == 1 and isinstance(op.results[0].type, TensorType))


def _epilogue_op(op: Operation, block: Block, shape: tuple) -> bool:
    """An elementwise op of `block` that computes on the heavy op's output grid."""
    if not isinstance(op, Op) or op.parent is not block or op.regions or len(op.results) != 1:
        return False
    if Elementwise not in op.traits or Pure not in op.traits or Heavy in op.traits:
        return False
    t = op.results[0].type
    return isinstance(t, TensorType) and t.shape == shape and t.dtype.kind != "string"


def _widening_into_reductions(op: Operation) -> bool:
    """A cast from f16 or bf16 to f32 whose every user is a reduction or normalization."""
    if op.name != "ember.cast" or not op.operands or op.operands[0] is None:
        return False
    src, dst = op.operands[0].type, op.results[0].type
    if not (isinstance(src, TensorType) and isinstance(dst, TensorType)):
        return False
    if str(src.dtype) not in ("f16", "bf16") or str(dst.dtype) != "f32":
        return False
    users = [u.user for u in op.results[0].uses]
    return bool(users) and all(isinstance(u, Op) and (Reduction in u.traits or Normalization in u.traits)
                               for u in users)


def _only_user(v: Value, block: Block | None) -> Operation | None:
    uses = list(v.uses)
    if len(uses) != 1 or not isinstance(uses[0].user, Op) or uses[0].user.parent is not block:
        return None
    return uses[0].user


def _layout_tail(last: Operation) -> list[Operation]:
    """[reshape,] transpose: the only user of `last`'s value (and of the reshape's)."""
    user = _only_user(last.results[0], last.parent)
    tail = []
    if user is not None and user.name == "ember.reshape" and len(user.operands) == 1:
        tail.append(user)
        user = _only_user(user.results[0], last.parent)
    if user is None or user.name != "ember.transpose":
        return []
    return tail + [user]


class _Grower:
    """Grows one heavy op's epilogue (see the module docstring)."""

    def __init__(self, heavy: Operation, position: dict[int, int], max_ops: int, layout: bool = True) -> None:
        self.block = heavy.parent
        self.layout = layout
        self.shape = heavy.results[0].type.shape  # type: ignore[union-attr]
        self.position = position
        self.max_ops = max_ops
        self.group = [heavy]
        self.members = {id(heavy)}

    def grow(self) -> list[Operation]:
        self._take_steps(self.group[0].results[0])
        if len(self.group) > 1 and _widening_into_reductions(self.group[-1]):
            self.members.discard(id(self.group.pop()))
        if self.layout:
            tail = _layout_tail(self.group[-1])
            self.group.extend(tail)
            self.members.update(id(op) for op in tail)
            if tail:  # elementwise ops on the stored layout's grid, each operand of that shape or one element
                self.shape = tail[-1].results[0].type.shape  # type: ignore[union-attr]
                self._take_steps(tail[-1].results[0], after_tail=True)
        return self.group

    def _take_steps(self, out: Value, after_tail: bool = False) -> None:
        """Epilogue steps from `out` while they fit; after the layout tail, only those whose outside
        operands are read at the stored element, and never a widening cast into reductions."""
        while len(self.group) < self.max_ops:
            step = self._step(out, self.max_ops - len(self.group))
            if step is None:
                return
            if after_tail:
                inside = self.members | {id(op) for op in step}
                if not all(self._stored_grid_reads(op, inside) for op in step) or _widening_into_reductions(step[-1]):
                    return
            self.group.extend(step)
            self.members.update(id(op) for op in step)
            out = step[-1].results[0]

    def _stored_grid_reads(self, op: Operation, inside: set[int]) -> bool:
        """Whether every operand of `op` from outside the group is read at the stored element."""
        for v in op.operands:
            if v is None or id(v.owner) in inside:
                continue
            t = v.type
            if not isinstance(t, TensorType) or t.shape is None:
                return False
            if tuple(t.shape) != tuple(self.shape) and any(d != 1 for d in t.shape):
                return False
        return True

    def _outside(self, v: Value, taken: set[int]) -> list[Operation] | None:
        """The users of `v` outside the group and `taken`; None if a block output reads it."""
        users = []
        for u in v.uses:
            if not isinstance(u.user, Operation):
                return None
            if id(u.user) not in self.members and id(u.user) not in taken and u.user not in users:
                users.append(u.user)
        return users

    def _step(self, out: Value, budget: int) -> list[Operation] | None:
        """The smallest set of epilogue ops that takes in every use of `out` and leaves one
        value used outside; None if there is none within `budget` ops."""
        step: list[Operation] = []
        taken: set[int] = set()
        frontier = [out]
        while True:
            added = False
            for v in frontier:
                users = self._outside(v, taken)
                if users is None:
                    return None
                for user in users:
                    if not _epilogue_op(user, self.block, self.shape):
                        return None
                    step.append(user)
                    taken.add(id(user))
                    added = True
            if not added or len(step) > budget:
                return None
            frontier = [r for op in step for r in op.results if self._escapes(r, taken)]
            if len(frontier) == 1:
                step.sort(key=lambda op: self.position[id(op)])
                assert frontier[0].owner is step[-1], "the one escaping value is the last op's"
                return step

    def _escapes(self, v: Value, taken: set[int]) -> bool:
        return not v.uses or any(not isinstance(u.user, Operation)
                                 or (id(u.user) not in self.members and id(u.user) not in taken) for u in v.uses)


def fuse_epilogues(module: Module, max_ops: int, layout: bool = True) -> tuple[int, int]:
    """Wrap every heavy op with its epilogue; returns (fused ops made, epilogue ops taken in)."""
    made = taken = 0
    for fn in module.functions.values():
        for block in skip_fused([fn.body]):
            position = {id(op): i for i, op in enumerate(block.ops)}
            for op in list(block.ops):
                if op.parent is not block or not is_heavy(op):
                    continue
                group = _Grower(op, position, max_ops, layout).grow()
                fuse(group, "epilogue")
                made += 1
                taken += len(group) - 1
    return made, taken


@register_pass("fuse-epilogue")
@dataclass(frozen=True)
class FuseEpilogue(Pass):
    """Wrap each heavy op with the elementwise ops after it in one ember.fused (kind "epilogue")."""

    max_ops: int = option(16, min=1)
    layout: bool = option(True)  # take a transpose after the epilogue as the layout of its store

    def run(self, module: Module, ctx: PassContext) -> bool:
        made, taken = fuse_epilogues(module, self.max_ops, self.layout)
        if made:
            ctx.count(self.name, "fused ops", made)
        if taken:
            ctx.count(self.name, "epilogue ops", taken)
        return bool(made)
