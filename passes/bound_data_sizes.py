"""bound-data-sizes: results whose size only their data decides, given a fixed-size form.

ember.nms and ember.nonzero return as many rows (columns) as their data decide.

ember.nms keeps a number of boxes that only the boxes and scores decide. A kernel cannot
write a result whose size nobody knows before it runs, and finding the size first would
mean running NMS on the host. So the op becomes the fixed-size ember.nms_padded, whose rows
sit in a buffer at their bound (B * C * min(M, max_output_boxes_per_class)) with a count the
kernel writes beside them, and an ember.head that takes the first `count` rows:

    %sel = ember.nms %boxes, %scores {...} : i64[?<=B*C*K,3]
 -> %rows, %n = ember.nms_padded %boxes, %scores {...} : i64[B*C*K,3], i64[]
    %sel = ember.head %rows, %n : i64[?<=B*C*K,3]

The runtime then reads back 8 bytes (the count, a size step of the head) at the segment
boundary, not the boxes. Where the number of boxes is itself data (boxes that survived a
score threshold), the rows' size is unknown in the IR too; the lowerer knows it as an
expression of the run-time symbols that size the boxes. Left alone: an NMS whose result
size is static (max_output_boxes_per_class 0).

ember.nonzero the same way: ember.nonzero_padded writes the coordinates at their bound
(rank x numel, -1 after the real columns) and their count, and an ember.head on axis 1
takes the real columns, so the runtime reads back the count instead of the whole input:

    %i = ember.nonzero %x : i64[2,?<=H*W]
 -> %cols, %n = ember.nonzero_padded %x : i64[2,H*W], i64[]
    %i = ember.head %cols, %n {axis = 1} : i64[2,?<=H*W]

Left alone: a scalar x (nothing to write) and an x whose own size is data (no bound
to pad to).
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.ir.builder import Builder
from ember.ir.core import Module, Value
from ember.ir.dims import Unknown
from ember.ir.types import TensorType
from ember.passes.dce import dead_code
from ember.passes.manager import Pass, PassContext, register_pass
from ember.passes.rewrite import Match, P, Rule, RuleSet, apply_counted


def padded_nms(m: Match, b: Builder) -> Value | None:
    op = m.nms
    out = op.results[0].type
    if not isinstance(out, TensorType) or out.shape is None or not isinstance(out.shape[0], Unknown):
        return None  # a static size (max_output_boxes_per_class 0) needs no count
    attrs = {k: op.attributes[k] for k in ("max_output_boxes_per_class", "iou_threshold", "score_threshold",
                                          "center_point_box")}
    rows, count = b.op("ember.nms_padded", *op.operands, **attrs)
    return b.op("ember.head", rows, count, axis=0)


def padded_nonzero(m: Match, b: Builder) -> Value | None:
    x = m.nonzero.operands[0].type
    if not isinstance(x, TensorType) or not x.shape or any(isinstance(d, Unknown) for d in x.shape):
        return None  # a scalar has no coordinates; a data-sized x has no bound to pad to
    columns, count = b.op("ember.nonzero_padded", m.nonzero.operands[0])
    return b.op("ember.head", columns, count, axis=1)


RULES = RuleSet("bound-data-sizes", [
    Rule("nms-to-padded", P.op("ember.nms", name="nms", any_operands=True), padded_nms,
         doc="nms = head(nms_padded rows, its count)"),
    Rule("nonzero-to-padded", P.op("ember.nonzero", name="nonzero", any_operands=True), padded_nonzero,
         doc="nonzero = head(nonzero_padded columns, their count) on axis 1"),
])


@register_pass("bound-data-sizes")
@dataclass(frozen=True)
class BoundDataSizes(Pass):
    """Give data-sized results a fixed-size form with a count (nms, nonzero -> their padded form + head)."""

    def run(self, module: Module, ctx: PassContext) -> bool:
        fired = apply_counted(module, RULES, ctx, self.name)
        if fired:
            dead_code(module)
        return bool(fired)
