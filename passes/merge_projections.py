"""merge-projections: matrix products of one input by several weights of one shape, as one
product by the weights side by side (horizontal fusion, as TensorRT and XLA merge them).

A transformer layer exported layer by layer projects its input three times, for Q, K and V
(BERT, LLaMA), and a gated MLP twice (gate and up): n launches of an [M, K] x [K, N] product,
each filling a fraction of the GPU at small batches. Merged, one product [M, K] x [K, n*N]
(bias adds merged the same way) computes them all; its result is laid out as [n, ..., N] and
each former product is `gather(t, i)` of it:

    y_i = matmul(x, W_i) [+ b_i]      ->   Y = matmul(x, concat(W_i)) [+ concat(b_i)]
                                             t = transpose(reshape(Y, [..., n, N]), n first)
                                             y_i = gather(t, i, axis 0)

The layout costs no launch: compose-layouts moves each selection's own layout (the heads-first
layout of attention) before the gathers and composes the chain into one transpose, which
fuse-epilogue takes as the product's store layout; the gathers of the leading axis are then
windows of its buffer (codegen/lower.py), so nothing copies them.

What merges: `ember.matmul` ops of one input `x` (static last dim K) and a weight or constant
`W_i` of rank 2, static [K, N] with data, all of one N and element type, each read only by an
`add` of a known bias of shape [N] (then all members have one) or by anything (then none
merges its adds). Products of other shapes (grouped-query attention's narrower K and V) keep
their own. The merged weights are new weights named after the first (`w/merged3`), computed
from the weights' data as the pass runs, so a refit that reruns the pipeline makes them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ember.ir.builder import Builder
from ember.ir.core import Block, Location, Module, Operation, Value
from ember.ir.types import TensorType
from ember.passes.dce import dead_code
from ember.passes.fusion import skip_fused
from ember.passes.manager import Pass, PassContext, option, register_pass
from ember.passes.rewrite import known_value, static_dims as _static


@dataclass
class Member:
    product: Operation          # the matmul
    weight: np.ndarray          # W_i, [K, N]
    bias_add: Operation | None  # the add of the bias, if the group merges adds
    bias: np.ndarray | None     # b_i, [N]

    @property
    def result(self) -> Value:
        return (self.bias_add or self.product).results[0]


def _weight_name(v: Value) -> str:
    op = v.defining_op
    return str(op.attributes["name"]) if op is not None and op.name == "ember.weight" else "constant"


def _bias_of(product: Operation, n: int) -> tuple[Operation, np.ndarray] | None:
    """The add reading the product's result (its only use) and a known [N] bias."""
    uses = list(product.results[0].uses)
    if len(uses) != 1 or not isinstance(uses[0].user, Operation) or uses[0].user.name != "ember.add":
        return None
    add = uses[0].user
    if add.parent is not product.parent or len(add.operands) != 2:
        return None
    other = add.operands[1 - uses[0].index]
    bias = known_value(other)
    if bias is None or bias.shape != (n,) or add.results[0].type != product.results[0].type:
        return None
    return add, np.asarray(bias)


def _candidate(op: Operation) -> tuple[tuple, np.ndarray] | None:
    """(group key without the bias, W) of a matmul that may merge."""
    if op.name != "ember.matmul" or len(op.operands) != 2 or op.regions:
        return None
    x, w = op.operands
    ws, xt, yt = _static(w), x.type if x is not None else None, op.results[0].type
    if ws is None or len(ws) != 2 or not isinstance(xt, TensorType) or xt.shape is None or len(xt.shape) < 2:
        return None
    if not isinstance(yt, TensorType) or xt.shape[-1] != ws[0]:
        return None
    data = known_value(w)
    if data is None:
        return None
    return (id(x), ws, str(yt.dtype)), np.asarray(data)


def groups(block: Block) -> list[list[Member]]:
    """The mergeable groups of `block`, in block order, each of two members or more."""
    found: dict[tuple, list[tuple[Operation, np.ndarray]]] = {}
    for op in block.ops:
        c = _candidate(op)
        if c is not None:
            found.setdefault(c[0], []).append((op, c[1]))
    out = []
    for key, products in found.items():
        if len(products) < 2:
            continue
        n = key[1][1]
        biases = [_bias_of(p, n) for p, _ in products]
        with_bias = all(b is not None for b in biases)
        out.append([Member(p, w, b[0] if with_bias else None, b[1] if with_bias else None)  # type: ignore[index]
                    for (p, w), b in zip(products, biases)])
    return out


def merge(module: Module, block: Block, members: Sequence[Member]) -> None:
    first = members[0].product
    x = first.operands[0]
    n = len(members)
    k, width = members[0].weight.shape
    loc = Location.fused([op.loc for m in members for op in (m.product, m.bias_add) if op is not None])
    b = Builder(module=module, block=block, before=first, loc=loc)
    w_name = module.unique_weight_name(f"{_weight_name(first.operands[1])}/merged{n}")
    y = b.matmul(x, b.weight(w_name, np.concatenate([m.weight for m in members], axis=1)))
    if members[0].bias is not None:
        add = members[0].bias_add
        bias_source = next(v for v in add.operands if v is not first.results[0])  # type: ignore[union-attr]
        source = _weight_name(bias_source)
        bias_name = module.unique_weight_name(f"{w_name}/bias" if source == "constant" else f"{source}/merged{n}")
        bias = np.concatenate([m.bias for m in members])  # type: ignore[misc]
        y = b.add(y, b.weight(bias_name, bias.astype(members[0].bias.dtype)))  # type: ignore[union-attr]
    lead = list(y.type.shape[:-1])
    split = b.reshape(y, shape=[*lead, n, width])
    rank = len(lead)
    laid = b.transpose(split, perm=[rank, *range(rank), rank + 1])
    for i, m in enumerate(members):
        picked = b.gather(laid, b.constant(np.int64(i)), axis=0)
        m.result.replace_all_uses_with(picked)


@register_pass("merge-projections")
@dataclass(frozen=True)
class MergeProjections(Pass):
    """Merge matmuls of one input by weights of one shape (Q, K and V) into one product."""

    max_members: int = option(8, min=2)

    def run(self, module: Module, ctx: PassContext) -> bool:
        merged = 0
        for fn in module.functions.values():
            for block in skip_fused([fn.body]):
                for members in groups(block):
                    for start in range(0, len(members) - 1, self.max_members):
                        chunk = members[start:start + self.max_members]
                        if len(chunk) >= 2:
                            merge(module, block, chunk)
                            merged += len(chunk)
        if merged:
            ctx.count(self.name, "products merged", merged)
            dead_code(module)
        return bool(merged)
