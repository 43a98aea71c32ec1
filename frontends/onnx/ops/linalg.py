"""Matrix products (MatMul, Gemm, Einsum, MatMulInteger, QLinearMatMul) and Det.

The integer products subtract their zero points in i32 (exact for 8-bit operands)
and multiply with ember.matmul, which accumulates i32 in i32 (wrapping past 2^31,
which ONNX allows: "the accumulation may overflow if and only if in 32 bits").
QLinearMatMul then requantizes the i32 accumulator as ONNX's reference does:
y = saturate(round(acc * (a_scale * b_scale / y_scale)) + y_zero_point).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.ir.core import Value
from ember.ir.types import TensorType, f32, i32


@converter("MatMul")
def matmul(ctx: NodeContext) -> Any:
    return ctx.op("ember.matmul", ctx.input(0), ctx.input(1))


@converter("Gemm")
def gemm(ctx: NodeContext) -> Any:
    """Every opset: C is required before 11 and optional after; opsets 1-6's `broadcast`
    only permitted what Ember's unidirectional broadcast of C does anyway."""
    return ctx.op("ember.gemm", ctx.input(0), ctx.input(1), ctx.input(2) if ctx.has(2) else None,
                  alpha=float(ctx.attr("alpha", 1.0)), beta=float(ctx.attr("beta", 1.0)),
                  trans_a=bool(ctx.attr("transA", 0)), trans_b=bool(ctx.attr("transB", 0)))


@converter("Einsum", since=12)
def einsum(ctx: NodeContext) -> Any:
    operands = [v for v in ctx.inputs() if v is not None]
    return ctx.op("ember.einsum", *operands, equation=ctx.attr("equation"))


@converter("Det", since=11)
def det(ctx: NodeContext) -> Any:
    return ctx.op("ember.det", ctx.input(0))


def _as_rows(ctx: NodeContext, v: Value, matrix: TensorType) -> Value:
    """A per-row parameter of `matrix` ([..., M, K]) given as a vector of M: as [M, 1]."""
    t = v.type
    if isinstance(t, TensorType) and t.rank == 1 and matrix.rank is not None and matrix.rank >= 2 \
            and t.shape != (1,):
        return ctx.op("ember.unsqueeze", v, axes=(1,))
    return v


def _centered(ctx: NodeContext, i: int, zp: int, rows: bool) -> Value:
    """Input i in i32 minus its zero point (input zp, when present)."""
    x = ctx.op("ember.cast", ctx.input(i), to=i32)
    if not ctx.has(zp):
        return x
    z = ctx.op("ember.cast", ctx.input(zp), to=i32)
    if rows:
        z = _as_rows(ctx, z, ctx.tensor_type(i))
    return ctx.op("ember.sub", x, z)


@converter("MatMulInteger", since=10)
def matmul_integer(ctx: NodeContext) -> Any:
    """A's zero point is a scalar or one per row of A; B's a scalar or one per column."""
    if not ctx.has(2) and not ctx.has(3):
        return ctx.op("ember.matmul", ctx.input(0), ctx.input(1))  # 8-bit: i32 result
    return ctx.op("ember.matmul", _centered(ctx, 0, 2, rows=True), _centered(ctx, 1, 3, rows=False))


@converter("QLinearMatMul", since=10)
def qlinear_matmul(ctx: NodeContext) -> Any:
    """Scales and zero points per tensor, per row of a or per column of b."""
    acc = ctx.op("ember.matmul", _centered(ctx, 0, 2, rows=True), _centered(ctx, 3, 5, rows=False))
    a_scale = _as_rows(ctx, ctx.input(1), ctx.tensor_type(0))
    multiplier = ctx.op("ember.div", ctx.op("ember.mul", a_scale, ctx.input(4)), ctx.input(6))
    wide = f32 if multiplier.type.dtype.bits <= 32 else multiplier.type.dtype
    real = ctx.op("ember.mul", ctx.op("ember.cast", acc, to=wide), ctx.op("ember.cast", multiplier, to=wide))
    zp = ctx.input(7)
    zp_type = ctx.tensor_type(7)
    if zp_type.shape is not None and all(d == 1 for d in zp_type.shape):  # per tensor: one quantize op
        one = ctx.constant(np.ones(zp_type.shape, wide.np_dtype))
        return ctx.op("ember.quantize", real, one, zp)
    info = np.iinfo(zp_type.dtype.np_dtype)
    shifted = ctx.op("ember.add", ctx.op("ember.round", real), ctx.op("ember.cast", zp, to=wide))
    lo, hi = (ctx.constant(np.array(v, wide.np_dtype)) for v in (info.min, info.max))
    return ctx.op("ember.cast", ctx.op("ember.clip", shifted, lo, hi), to=zp_type.dtype)
