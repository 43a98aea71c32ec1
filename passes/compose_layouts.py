"""compose-layouts: one transpose where a chain of reshapes and transposes moved data several
times, and a layout every selected slice shares moved before the selection.

An attention block exported from PyTorch (torchvision's ViT, nn.MultiheadAttention) projects
Q, K and V with one matrix product, lays the result out as [3, tokens, batch, features], picks
Q, K and V with `gather` at 0, 1 and 2, and gives each the heads-first layout with its own
reshape and transpose: three transpose kernels a layer. Two rules remove them:

- `layout-before-select`: transpose(reshape(gather(t, i, axis 0))) with a constant scalar i is
  gather(transpose(reshape(t)), i): the slices' common layout applied once to t (after cse,
  the three selections share it);
- `layout-chain`: reshape/transpose chains with two transposes become reshape, one
  transpose, reshape (below), so the projection's own layout and the heads-first one are one
  transpose, which fuse-epilogue then takes as the product's store layout.

Two more move a sequence-first row reordering (a transpose that keeps the last axis) after the
projection that reads it (`layout-after-product`, for a matmul by a matrix: it acts on rows) and
past the projection's bias add (`elementwise-before-layout`), so it meets the projection's own
layout chain and becomes part of its store layout: nn.MultiheadAttention at batch > 1 loses its
input transpose (ViT-B/16 fp16 batch 32: 106 -> 94 launches).

Another moves a residual add (sub, mul, div) that reads a product through a reshape before
that reshape (`residual-before-view`), the residual viewed as the product's grid: the output
projection of nn.MultiheadAttention is a gemm on [tokens, features] viewed back as [batch,
tokens, features] before the residual add, which fuse-epilogue then takes into the gemm.

A chain is composed by splitting the input's dims into the finest factors every reshape of
the chain respects ("atoms", row-major contiguous pieces of the input): each reshape groups
consecutive atoms, each transpose reorders groups, so the chain is the input viewed as its
atoms, one permutation of them, and a view as the result's shape. A chain whose reshapes cut
no common factors (a reshape that splits a dim a transpose moved apart) is left alone.
Static shapes only. Runs in `default` before fuse-epilogue, after recognition (whose patterns
read the layouts as exported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ember.ir.builder import Builder
from ember.ir.core import Module, Operation, Value
from ember.ir.opdef import Heavy, Op
from ember.passes.dce import dead_code
from ember.passes.manager import Pass, PassContext, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_rules, known_value, static_dims as _static

x = P.var("x")


def _perm(op: Operation, rank: int) -> tuple[int, ...]:
    perm = op.attributes["perm"]
    return tuple(perm) if perm is not None else tuple(reversed(range(rank)))


def compose(shape: Sequence[int], steps: Sequence[tuple[str, Sequence[int]]]
            ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The atoms of `shape` (row-major factors) and one permutation of them that do what the
    chain `steps` (("reshape", shape) or ("transpose", perm)) does, or None."""
    sizes: dict[int, int] = {}
    order: list[int] = []            # atom ids in the input's row-major order
    dims: list[list[int]] = []       # the current dims, each a run of atoms
    for d in shape:
        if d != 1:
            sizes[len(sizes)] = d
            order.append(len(order))
        dims.append([order[-1]] if d != 1 else [])
    fresh = len(sizes)
    # a run of reshapes is one view: only its last shape groups the atoms
    steps = [s for k, s in enumerate(steps) if not (s[0] == "reshape" and k + 1 < len(steps)
                                                    and steps[k + 1][0] == "reshape")]
    for kind, arg in steps:
        if kind == "transpose":
            dims = [dims[p] for p in arg]
            continue
        flat = [a for dim in dims for a in dim]
        grouped: list[list[int]] = []
        i = 0
        for d in arg:
            group, need = [], int(d)
            while need > 1:
                if i >= len(flat):
                    return None
                a = flat[i]
                s = sizes[a]
                if need % s == 0:            # the whole atom
                    group.append(a)
                    need //= s
                    i += 1
                elif s % need == 0:          # the atom splits: its outer `need` here, the rest next
                    outer, inner = fresh, fresh + 1
                    fresh += 2
                    sizes[outer], sizes[inner] = need, s // need
                    k = order.index(a)
                    order[k:k + 1] = [outer, inner]
                    flat[i:i + 1] = [outer, inner]
                    group.append(outer)
                    need = 1
                    i += 1
                else:
                    return None
            grouped.append(group)
        if i != len(flat):
            return None
        dims = grouped
    final = [a for dim in dims for a in dim]
    return tuple(sizes[a] for a in order), tuple(order.index(a) for a in final)


def layout_before_select(m: Match, b: Builder) -> Value | None:
    """transpose(reshape(gather(t, i))) = gather(transpose(reshape(t)), i), i a constant scalar, axis 0."""
    g = m.g
    data = g.operands[0]
    index = known_value(g.operands[1])
    t = _static(data)
    if g.attributes.get("axis", 0) != 0 or index is None or np.ndim(index) != 0 or t is None:
        return None
    shape = _static(m.r.results[0])
    if shape is None:
        return None
    perm = _perm(m.t, len(shape))
    laid = b.transpose(b.reshape(data, shape=(t[0], *shape)), perm=(0, *(p + 1 for p in perm)))
    return b.gather(laid, g.operands[1], axis=0)


def layout_chain(m: Match, b: Builder) -> Value | None:
    """transpose(reshape(transpose(x))) = reshape(transpose(reshape(x, atoms), perm), result)."""
    shape, out = _static(m.x), _static(m.outer.results[0])
    if shape is None or out is None:
        return None
    steps = [("transpose", _perm(m.inner, len(shape))), ("reshape", _static(m.mid.results[0]))]
    if steps[1][1] is None:
        return None
    steps.append(("transpose", _perm(m.outer, len(steps[1][1]))))
    composed = compose(shape, steps)
    if composed is None:
        return None
    atoms, perm = composed
    moved = b.transpose(b.reshape(m.x, shape=atoms), perm=perm) if perm != tuple(range(len(perm))) \
        else b.reshape(m.x, shape=atoms)
    return b.reshape(moved, shape=out)


def _single_use(op: Operation) -> bool:
    return len(op.results[0].uses) == 1


RESIDUAL_OPS = ("ember.add", "ember.sub", "ember.mul", "ember.div")


def _viewed_product(v: Value | None) -> Operation | None:
    """The reshape of a heavy op's result that `v` is, read only here."""
    r = v.defining_op if v is not None else None
    if r is None or r.name != "ember.reshape" or len(r.operands) != 1 or not _single_use(r):
        return None
    h = r.operands[0].defining_op
    return r if isinstance(h, Op) and Heavy in h.traits and len(h.results) == 1 else None


def residual_before_view(m: Match, b: Builder) -> Value | None:
    """e(reshape(product), r) = reshape(e(product, reshape(r))): r of e's shape (or one element),
    so the residual add after a projection viewed as [batch, tokens, features] joins the
    product's epilogue (fuse-epilogue grows on the product's own grid)."""
    e = m.e
    shape = _static(e.results[0])
    views = [v for v in e.operands if _viewed_product(v) is not None]
    if shape is None or len(views) != 1 or e.attributes:
        return None
    inner = views[0].defining_op.operands[0]  # type: ignore[union-attr]
    grid = _static(inner)
    if grid is None or _static(views[0]) != shape:
        return None
    operands: list[Value] = []
    for v in e.operands:
        s = _static(v) if v is not None else None
        if v is views[0]:
            operands.append(inner)
        elif s == shape:
            operands.append(b.reshape(v, shape=grid))
        elif s is not None and int(np.prod(s)) == 1:
            operands.append(v if len(s) <= len(grid) else b.reshape(v, shape=()))
        else:
            return None
    return b.reshape(b.op(e.name, *operands), shape=shape)


def _keeps_last(op: Operation) -> tuple[int, ...] | None:
    """The perm of a transpose that leaves the last axis where it is, read only once."""
    shape = _static(op.operands[0])
    if shape is None or not _single_use(op):
        return None
    perm = _perm(op, len(shape))
    return perm if perm and perm[-1] == len(perm) - 1 else None


def layout_after_product(m: Match, b: Builder) -> Value | None:
    """matmul(transpose(x), w) = transpose(matmul(x, w)) for a 2-D w and a transpose that keeps
    the last axis: the product acts on rows, which the transpose only reorders. The layout then
    meets the product's own store layout (nn.MultiheadAttention's sequence-first input)."""
    perm, w = _keeps_last(m.t), m.mm.operands[1]
    ws = _static(w) if w is not None else None
    if perm is None or ws is None or len(ws) != 2:
        return None
    return b.transpose(b.matmul(m.t.operands[0], w), perm=perm)


def elementwise_before_layout(m: Match, b: Builder) -> Value | None:
    """e(transpose(y), c) = transpose(e(y, c)) where the transpose keeps the last axis and every
    other operand varies along the last axis only (a bias): so a projection's bias add meets the
    product before the layout does."""
    e = m.e
    moved = [v for v in e.operands if v is not None and v.defining_op is not None
             and v.defining_op.name == "ember.transpose" and _keeps_last(v.defining_op) is not None]
    shape = _static(e.results[0])
    if len(moved) != 1 or shape is None or e.attributes or _static(moved[0]) != shape:
        return None
    t = moved[0].defining_op
    perm = _keeps_last(t)
    operands: list[Value] = []
    for v in e.operands:
        s = _static(v) if v is not None else None
        if v is moved[0]:
            operands.append(t.operands[0])  # type: ignore[union-attr]
        elif s is not None and all(d == 1 for d in s[:-1]) and len(s) <= len(shape):
            operands.append(v)
        else:
            return None
    return b.transpose(b.op(e.name, *operands), perm=perm)


LAYOUTS = RuleSet("layouts", [
    Rule("layout-before-select",
         P.op("ember.transpose", P.op("ember.reshape", P.op("ember.gather", name="g", any_operands=True,
                                                             where=_single_use), name="r", where=_single_use),
              name="t"),
         layout_before_select, benefit=2, doc="a selected slice's layout applied to all before the selection"),
    Rule("layout-chain",
         P.op("ember.transpose", P.op("ember.reshape", P.op("ember.transpose", x, name="inner", where=_single_use),
                                      name="mid", where=_single_use), name="outer"),
         layout_chain, doc="transpose(reshape(transpose(x))) is one transpose between views"),
    Rule("residual-before-view", P.op(RESIDUAL_OPS, name="e", any_operands=True), residual_before_view,
         doc="an elementwise op on a viewed product moved before the view, into the product's grid"),
    Rule("layout-after-product", P.op("ember.matmul", P.op("ember.transpose", x, name="t"), P.var("w"), name="mm"),
         layout_after_product, doc="a row reordering before a product by a matrix moved after it"),
    Rule("elementwise-before-layout", P.op(RESIDUAL_OPS, name="e", any_operands=True), elementwise_before_layout,
         doc="a bias-like elementwise op after a row reordering moved before it"),
])


@register_pass("compose-layouts")
@dataclass(frozen=True)
class ComposeLayouts(Pass):
    """Move shared slice layouts before the selection and compose reshape/transpose chains."""

    def run(self, module: Module, ctx: PassContext) -> bool:
        from ember.passes.canonicalize import CANONICAL
        from ember.passes.cse import eliminate_common_subexpressions
        changed = False
        while True:  # the selections' layouts merge (cse) before their chain composes with the producer's
            fired = apply_rules(module, LAYOUTS + CANONICAL)
            for rule, n in fired.items():
                ctx.count(self.name, rule, n)
            if not fired:
                break
            changed = True
            eliminate_common_subexpressions(module)
        return bool(dead_code(module)) or changed
