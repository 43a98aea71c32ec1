"""Signal-processing ONNX ops: DFT (opsets 17 and 20), STFT, the window functions and
MelWeightMatrix, as `ember.dft`, `ember.stft`, `ember.window`, `ember.mel_weight_matrix`.

Their size inputs (dft_length, axis, frame_step, frame_length, a window's size, the mel
parameters) are configuration and become attributes; they must be known at build time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.frontends.onnx.tensors import element_type


def _scalar_dim(ctx: NodeContext, i: int, what: str) -> Any:
    dims = ctx.dims(i, what)
    if len(dims) != 1:
        raise ctx.fail(f"{what} must be a scalar, got {len(dims)} values")
    return dims[0]


def _scalar(ctx: NodeContext, i: int, what: str) -> Any:
    value = np.asarray(ctx.static(i, what))
    if value.size != 1:
        raise ctx.fail(f"{what} must be a scalar, got shape {value.shape}")
    return value.reshape(()).item()


def _dft(ctx: NodeContext, axis: int) -> Any:
    rank = ctx.tensor_type(0).rank
    if axis < 0:
        if rank is None:
            raise ctx.unsupported("a negative DFT axis needs the input's rank")
        axis += rank  # ONNX counts negative axes over all dims, the real/imaginary one included
    length = _scalar_dim(ctx, 1, "dft_length") if ctx.has(1) else None
    return ctx.op("ember.dft", ctx.input(0), axis=axis, inverse=bool(ctx.attr("inverse", 0)),
                  onesided=bool(ctx.attr("onesided", 0)), length=length)


@converter("DFT", since=17)
def dft_17(ctx: NodeContext) -> Any:
    return _dft(ctx, int(ctx.attr("axis", 1)))


@converter("DFT", since=20)
def dft_20(ctx: NodeContext) -> Any:
    return _dft(ctx, int(_scalar(ctx, 2, "axis")) if ctx.has(2) else -2)


@converter("STFT", since=17)
def stft(ctx: NodeContext) -> Any:
    step = _scalar_dim(ctx, 1, "frame_step")
    window = ctx.input(2) if ctx.has(2) else None
    if ctx.has(3):
        length = _scalar_dim(ctx, 3, "frame_length")
    elif window is not None:
        length = window.type.shape[0]  # type: ignore[union-attr, index]
    else:
        length = ctx.tensor_type(0).shape[1]  # type: ignore[index]
    return ctx.op("ember.stft", ctx.input(0), window, frame_step=step, frame_length=length,
                  onesided=bool(ctx.attr("onesided", 1)))


def _window(kind: str):  # noqa: ANN202
    def convert(ctx: NodeContext) -> Any:
        dtype = element_type(ctx.attr("output_datatype", 1), f"{ctx.name}: attribute 'output_datatype'")
        return ctx.op("ember.window", kind=kind, size=_scalar_dim(ctx, 0, "size"),
                      periodic=bool(ctx.attr("periodic", 1)), dtype=dtype)
    return convert


converter("HannWindow", since=17)(_window("hann"))
converter("HammingWindow", since=17)(_window("hamming"))
converter("BlackmanWindow", since=17)(_window("blackman"))


@converter("MelWeightMatrix", since=17)
def mel_weight_matrix(ctx: NodeContext) -> Any:
    dtype = element_type(ctx.attr("output_datatype", 1), f"{ctx.name}: attribute 'output_datatype'")
    return ctx.op("ember.mel_weight_matrix", num_mel_bins=int(_scalar(ctx, 0, "num_mel_bins")),
                  dft_length=int(_scalar(ctx, 1, "dft_length")), sample_rate=int(_scalar(ctx, 2, "sample_rate")),
                  lower_edge_hertz=float(_scalar(ctx, 3, "lower_edge_hertz")),
                  upper_edge_hertz=float(_scalar(ctx, 4, "upper_edge_hertz")), dtype=dtype)
