"""QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear.

One converter serves every opset: the attributes later opsets added (axis at 13,
saturate at 19, block_size at 21, output_dtype at 21/23, precision at 25) take their
defaults in earlier ones, which is what those opsets meant (per-tensor or per-axis
scales, integer results).
"""

from __future__ import annotations

from typing import Any

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.frontends.onnx.tensors import element_type
from ember.ir.types import DType


def _dtype_attr(ctx: NodeContext, name: str) -> DType | None:
    """An element-type attribute, 0 (UNDEFINED) meaning absent."""
    code = int(ctx.attr(name, 0))
    return element_type(code, f"{ctx.name}: attribute {name!r}") if code else None


@converter("QuantizeLinear", since=10)
def quantize(ctx: NodeContext) -> Any:
    return ctx.op("ember.quantize", ctx.input(0), ctx.input(1), ctx.input(2) if ctx.has(2) else None,
                  axis=int(ctx.attr("axis", 1)), block_size=int(ctx.attr("block_size", 0)),
                  dtype=_dtype_attr(ctx, "output_dtype"), saturate=bool(ctx.attr("saturate", 1)),
                  precision=_dtype_attr(ctx, "precision"))


@converter("DequantizeLinear", since=10)
def dequantize(ctx: NodeContext) -> Any:
    return ctx.op("ember.dequantize", ctx.input(0), ctx.input(1), ctx.input(2) if ctx.has(2) else None,
                  axis=int(ctx.attr("axis", 1)), block_size=int(ctx.attr("block_size", 0)),
                  dtype=_dtype_attr(ctx, "output_dtype"))


@converter("DynamicQuantizeLinear", since=11)
def dynamic_quantize(ctx: NodeContext) -> Any:
    return list(ctx.op("ember.dynamic_quantize", ctx.input(0)))
