"""Recurrent ONNX ops: LSTM, GRU, RNN as `ember.lstm`, `ember.gru`, `ember.rnn`.

ONNX's activation names become Ember's (LeakyRelu -> leaky_relu); activation_alpha and
activation_beta, which ONNX consumes in order by the activations that take them,
become one (alpha, beta) per activation, the defaults filled in: LeakyRelu 0.01,
HardSigmoid 0.2/0.5, Elu 1.0, ThresholdedRelu 1.0 (the ONNX operators' defaults),
Affine 1.0/0.0, ScaledTanh 1.0/1.0. A bidirectional node given one direction's
activations uses them for both. layout = 1 becomes batch_first.
"""

from __future__ import annotations

from typing import Any

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.ir.ops.recurrent import ACTIVATION_PARAMS, ACTIVATIONS

ONNX_ACTIVATIONS = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "affine": "affine",
                    "leakyrelu": "leaky_relu", "thresholdedrelu": "thresholded_relu", "scaledtanh": "scaled_tanh",
                    "hardsigmoid": "hard_sigmoid", "elu": "elu", "softsign": "softsign", "softplus": "softplus"}


def _attrs(ctx: NodeContext, n_act: int) -> dict[str, Any]:
    direction = ctx.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ctx.fail(f"direction must be forward, reverse or bidirectional, got {direction!r}")
    ndir = 2 if direction == "bidirectional" else 1
    hidden = ctx.attr("hidden_size")
    r_hidden = ctx.tensor_type(2).shape[-1] if ctx.tensor_type(2).shape else None
    if hidden is not None and isinstance(r_hidden, int) and r_hidden != hidden:
        raise ctx.fail(f"hidden_size {hidden} does not match R's last dim {r_hidden}")
    out: dict[str, Any] = {"direction": direction, "batch_first": bool(ctx.attr("layout", 0))}
    if ctx.attr("clip") is not None:
        out["clip"] = float(ctx.attr("clip"))
    names = ctx.attr("activations")
    alphas, betas = list(ctx.attr("activation_alpha") or []), list(ctx.attr("activation_beta") or [])
    if names is None and not alphas and not betas:
        return out
    acts = []
    for n in names or []:
        key = n.lower()
        if key not in ONNX_ACTIVATIONS:
            raise ctx.unsupported(f"activation {n!r} is not one of {', '.join(ONNX_ACTIVATIONS)}")
        acts.append(ONNX_ACTIVATIONS[key])
    if names is None:
        return out  # alphas/betas without activations: the defaults take none of them
    if ndir == 2 and len(acts) == n_act:
        acts = acts * 2
    if len(acts) != n_act * ndir:
        raise ctx.fail(f"activations needs {n_act} per direction, got {list(names)}")
    alpha_out, beta_out = [], []
    for a in acts:
        _, da, db = ACTIVATIONS[a]
        takes_alpha, takes_beta = ACTIVATION_PARAMS.get(a, (False, False))
        alpha_out.append(float(alphas.pop(0)) if takes_alpha and alphas else da)
        beta_out.append(float(betas.pop(0)) if takes_beta and betas else db)
    out["activations"] = tuple(acts)
    out["activation_alpha"], out["activation_beta"] = tuple(alpha_out), tuple(beta_out)
    return out


def _opt(ctx: NodeContext, i: int) -> Any:
    return ctx.input(i) if ctx.has(i) else None


@converter("RNN", since=1)
def rnn(ctx: NodeContext) -> Any:
    y, y_h = ctx.op("ember.rnn", ctx.input(0), ctx.input(1), ctx.input(2), _opt(ctx, 3), _opt(ctx, 4),
                    _opt(ctx, 5), **_attrs(ctx, 1))
    return [y, y_h]


@converter("GRU", since=1)
def gru(ctx: NodeContext) -> Any:
    attrs = _attrs(ctx, 2)
    attrs["linear_before_reset"] = bool(ctx.attr("linear_before_reset", 0))
    y, y_h = ctx.op("ember.gru", ctx.input(0), ctx.input(1), ctx.input(2), _opt(ctx, 3), _opt(ctx, 4),
                    _opt(ctx, 5), **attrs)
    return [y, y_h]


@converter("LSTM", since=1)
def lstm(ctx: NodeContext) -> Any:
    attrs = _attrs(ctx, 3)
    attrs["input_forget"] = bool(ctx.attr("input_forget", 0))
    y, y_h, y_c = ctx.op("ember.lstm", ctx.input(0), ctx.input(1), ctx.input(2), _opt(ctx, 3), _opt(ctx, 4),
                         _opt(ctx, 5), _opt(ctx, 6), _opt(ctx, 7), **attrs)
    return [y, y_h, y_c]
