"""ONNX ops that import as (almost) nothing: Dropout in inference."""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.ir.staging import FOLD_LIMIT
from ember.frontends.onnx.registry import converter
from ember.ir.core import Value


def _all_true_like(ctx: NodeContext, dtype: Any = np.bool_) -> Any:
    """Dropout's mask when nothing is dropped: ones of x's shape (a constant when small and static)."""
    t = ctx.tensor_type(0)
    if t.shape is None:
        raise ctx.unsupported(f"the mask output needs a ranked input, got {t}")
    if t.is_static and int(np.prod(t.static_shape, dtype=np.int64)) <= FOLD_LIMIT:
        return np.ones(t.static_shape, dtype=dtype)
    return ctx.op("ember.expand", ctx.constant(np.ones((), dtype=dtype)), shape=t.shape)


def _identity(ctx: NodeContext, mask_dtype: Any) -> list[Value | Any]:
    return [ctx.input(0), _all_true_like(ctx, mask_dtype) if ctx.has_output(1) else None]


@converter("Dropout", since=1)
def dropout_v1(ctx: NodeContext) -> Any:
    """Opsets 1-11 have no training switch an importer for inference can honour (is_test,
    where present, says how the model was exported): Dropout is the identity, as in
    TensorRT. Their inference mask is unspecified; it is all ones, as onnx.reference
    and opset 12 say (onnxruntime gives all false), of x's type before opset 10 and
    bool from 10 on."""
    return _identity(ctx, np.bool_ if ctx.opset >= 10 else ctx.tensor_type(0).dtype.np_dtype)


@converter("Dropout", since=12)
def dropout(ctx: NodeContext) -> Any:
    """Identity unless training_mode is true and the ratio is not 0: a random mask,
    which an inference compiler does not draw (nor could it reproduce ONNX's numpy stream)."""
    training = bool(ctx.static_scalar(2, "training_mode")) if ctx.has(2) else False
    if training:
        ratio = float(np.real(ctx.static_scalar(1, "ratio"))) if ctx.has(1) else 0.5
        if ratio != 0.0:
            raise ctx.unsupported(f"training-mode dropout with ratio {ratio} draws a random mask; Ember imports "
                                  "inference graphs (training_mode false, or ratio 0)")
    return _identity(ctx, np.bool_)
