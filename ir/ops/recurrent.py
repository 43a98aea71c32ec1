"""Recurrent layers: LSTM, GRU and the simple RNN, each one op that runs its time loop.

They share ONNX's conventions: gates packed along the weight rows (LSTM i,o,f,c; GRU
z,r,h), one weight set per direction ([D, gates*H, I] input weights, [D, gates*H, H]
recurrence weights, [D, 2*gates*H] biases: input then recurrence), directions
forward, reverse or bidirectional (D = 2: forward results first), optional
per-batch sequence lengths, optional initial states.

Shapes (S sequence, B batch, I input size, H hidden size, D directions):
x [S, B, I]; y [S, D, B, H]; y_h (and y_c) [D, B, H]; initial states [D, B, H].
With `batch_first` (ONNX layout = 1): x [B, S, I], y [B, S, D, H], states [B, D, H].

Sequence lengths: batch b runs steps 0..len_b-1 (reverse: len_b-1 down to 0); y is 0
at later steps, and the final states are those after its last step (0 when len_b = 0,
as onnxruntime has it).

Activations: names from ACTIVATIONS, one list per direction concatenated (LSTM f,g,h;
GRU f,g; RNN f); `activation_alpha`/`activation_beta` give each activation's
parameters (empty: each activation's default; see ACTIVATIONS). `clip` bounds every
activation's input to [-clip, clip] (peepholes included).

Numerics: f16/bf16 compute in f32 and round once at the end; f64 stays f64.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ember.ir import attrs as A
from ember.ir.dims import Dim
from ember.ir.opdef import Attr, FloatTensor, Heavy, IntTensor, Op, Operand, Pure, Result, register_op
from ember.ir.ops import rules
from ember.ir.ops.shape import provably_different
from ember.ir.types import TensorType, Type

# name -> (function of (x, alpha, beta), default alpha, default beta)
ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray, float, float], np.ndarray], float, float]] = {
    "sigmoid": (lambda x, a, b: 1 / (1 + np.exp(-x)), 0.0, 0.0),
    "tanh": (lambda x, a, b: np.tanh(x), 0.0, 0.0),
    "relu": (lambda x, a, b: np.maximum(x, 0), 0.0, 0.0),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leaky_relu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, 0.0),
    "thresholded_relu": (lambda x, a, b: np.where(x > a, x, 0), 1.0, 0.0),
    "scaled_tanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "hard_sigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * (np.exp(x) - 1)), 1.0, 0.0),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), 0.0, 0.0),
    "softplus": (lambda x, a, b: np.logaddexp(x, 0), 0.0, 0.0),
}
# Activation parameters an activation reads (alpha, beta), for frontends that take them in order.
ACTIVATION_PARAMS = {"affine": (True, True), "leaky_relu": (True, False), "thresholded_relu": (True, False),
                     "scaled_tanh": (True, True), "hard_sigmoid": (True, True), "elu": (True, False)}
DIRECTIONS = ("forward", "reverse", "bidirectional")


class _Recurrent(Op):
    """What LSTM, GRU and RNN share: operand checks, result shapes, the time loop."""

    gates = 1
    default_activations: tuple[str, ...] = ()
    state_names = ("h",)

    def _directions(self) -> int:
        return 2 if self.direction == "bidirectional" else 1

    def _check(self, x: Type, w: Type, r: Type, b: Type | None, sequence_lens: Type | None,
               states: Sequence[tuple[str, Type | None]]) -> tuple[TensorType, Dim, Dim, Dim, Dim]:
        xt, wt, rt = (rules.ranked(self, t, n) for t, n in ((x, "x"), (w, "w"), (r, "r")))
        rules.same_dtype(self, xt, wt, rt, b, *(t for _, t in states))
        for t, n in ((xt, "x"), (wt, "w"), (rt, "r")):
            if t.rank != 3:
                raise self.error(f"{n} must have rank 3, got {t}")
        ndir = self._directions()
        seq, batch, inp = xt.shape if not self.batch_first else (xt.shape[1], xt.shape[0], xt.shape[2])  # type: ignore
        hidden = rt.shape[2]  # type: ignore[index]
        g = self.gates
        if provably_different(wt.shape[0], ndir) or provably_different(rt.shape[0], ndir):  # type: ignore[index]
            raise self.error(f"direction {self.direction} needs {ndir} weight sets; w is {wt}, r is {rt}")
        if provably_different(wt.shape[1], g * hidden) or provably_different(rt.shape[1], g * hidden):  # type: ignore
            raise self.error(f"w and r need {g}*hidden = {g * hidden} rows (hidden = r's last dim {hidden}); "
                             f"w is {wt}, r is {rt}")
        if provably_different(wt.shape[2], inp):  # type: ignore[index]
            raise self.error(f"w's last dim must be x's input size {inp}, got {wt}")
        if b is not None:
            bt = rules.ranked(self, b, "b")
            if bt.rank != 2 or provably_different(bt.shape[0], ndir) \
                    or provably_different(bt.shape[1], 2 * g * hidden):  # type: ignore[index]
                raise self.error(f"b must be [{ndir}, {2 * g * hidden}], got {bt}")
        if sequence_lens is not None:
            st = rules.ranked(self, sequence_lens, "sequence_lens")
            if st.rank != 1 or provably_different(st.shape[0], batch):  # type: ignore[index]
                raise self.error(f"sequence_lens must be a vector of the {batch} batches, got {st}")
        state_shape = (batch, ndir, hidden) if self.batch_first else (ndir, batch, hidden)
        for name, t in states:
            if t is None:
                continue
            tt = rules.ranked(self, t, name)
            if tt.rank != 3 or any(provably_different(a, c) for a, c in zip(tt.shape, state_shape)):  # type: ignore
                raise self.error(f"{name} must be [{','.join(map(str, state_shape))}], got {tt}")
        n_act = len(self.default_activations)
        if self.activations is not None:
            if len(self.activations) != n_act * ndir:
                raise self.error(f"activations needs {n_act} per direction ({n_act * ndir}), "
                                 f"got {list(self.activations)}")
            unknown = [a for a in self.activations if a not in ACTIVATIONS]
            if unknown:
                raise self.error(f"unknown activations {unknown}; expected some of {', '.join(ACTIVATIONS)}")
        n_given = len(self.activations) if self.activations is not None else n_act * ndir
        for name in ("activation_alpha", "activation_beta"):
            vals = getattr(self, name)
            if vals and len(vals) != n_given:
                raise self.error(f"{name} needs one value per activation ({n_given}), got {list(vals)}")
        if self.clip is not None and not self.clip > 0:
            raise self.error(f"clip must be > 0, got {self.clip}")
        return xt, seq, batch, hidden, ndir

    def _results(self, xt: TensorType, seq: Dim, batch: Dim, hidden: Dim, ndir: int) -> tuple[TensorType, ...]:
        y = (batch, seq, ndir, hidden) if self.batch_first else (seq, ndir, batch, hidden)
        state = (batch, ndir, hidden) if self.batch_first else (ndir, batch, hidden)
        return (xt.with_shape(y),) + tuple(xt.with_shape(state) for _ in self.state_names)


def _activation_fns(names: Sequence[str] | None, defaults: Sequence[str], ndir: int, alpha: Sequence[float],
                    beta: Sequence[float]) -> list[list[Callable[[np.ndarray], np.ndarray]]]:
    """One list of activation callables per direction."""
    acts = list(names) if names is not None else list(defaults) * ndir
    fns = []
    for k, name in enumerate(acts):
        fn, da, db = ACTIVATIONS[name]
        a = alpha[k] if alpha else da
        b = beta[k] if beta else db
        fns.append(lambda x, fn=fn, a=a, b=b: fn(x, x.dtype.type(a), x.dtype.type(b)))
    n = len(defaults)
    return [fns[d * n:(d + 1) * n] for d in range(ndir)]


def _clipper(clip: float | None) -> Callable[[np.ndarray], np.ndarray]:
    if clip is None:
        return lambda v: v
    return lambda v: np.clip(v, -v.dtype.type(clip), v.dtype.type(clip))


Cell = Callable[[np.ndarray, tuple[np.ndarray, ...], int], tuple[np.ndarray, ...]]


def _time_loop(x: np.ndarray, sequence_lens: np.ndarray | None, initial: list[np.ndarray], direction: str,
               cell: Cell, batch_first: bool, out_dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """Run `cell(x_t, states, d)` over time for each direction; x is [S,B,I] (or batch
    first), each initial state [D,B,H] (or [B,D,H]). Returns y and the final states."""
    if batch_first:
        x = np.swapaxes(x, 0, 1)
        initial = [np.swapaxes(s, 0, 1) for s in initial]
    seq, batch = x.shape[0], x.shape[1]
    hidden = initial[0].shape[2]
    lens = np.full((batch,), seq, np.int64) if sequence_lens is None else sequence_lens.astype(np.int64)
    ndir = 2 if direction == "bidirectional" else 1
    y = np.zeros((seq, ndir, batch, hidden), x.dtype)
    finals: list[list[np.ndarray]] = [[] for _ in initial]
    for d in range(ndir):
        states = tuple(s[d] for s in initial)
        backward = direction == "reverse" or d == 1
        for t in (range(seq - 1, -1, -1) if backward else range(seq)):
            active = (t < lens).reshape(batch, 1)
            new = cell(x[t], states, d)
            states = tuple(np.where(active, n, s) for n, s in zip(new, states))
            y[t, d] = np.where(active, states[0], 0)
        empty = (lens == 0).reshape(batch, 1)
        for k, s in enumerate(states):
            finals[k].append(np.where(empty, 0, s))
    outs = [y] + [np.stack(f) for f in finals]
    if batch_first:
        outs = [np.transpose(outs[0], (2, 0, 1, 3))] + [np.swapaxes(s, 0, 1) for s in outs[1:]]
    return tuple(o.astype(out_dtype) for o in outs)


def _prepare(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None, gates: int,
             initial: Sequence[np.ndarray | None], batch_first: bool) -> tuple:
    """Widen to the compute type; fill absent bias and initial states with zeros."""
    dt = rules.compute_dtype(x.dtype)
    ndir, hidden = w.shape[0], r.shape[2]
    batch = x.shape[0] if batch_first else x.shape[1]
    bias = np.zeros((ndir, 2 * gates * hidden), dt) if b is None else b.astype(dt)
    shape = (batch, ndir, hidden) if batch_first else (ndir, batch, hidden)
    states = [np.zeros(shape, dt) if s is None else s.astype(dt) for s in initial]
    return dt, x.astype(dt), w.astype(dt), r.astype(dt), bias, states


@register_op("ember.rnn", traits={Pure, Heavy})
class RNN(_Recurrent):
    """The simple RNN: H_t = f(X_t W^T + H_{t-1} R^T + Wb + Rb), f = tanh by default.
    %y, %y_h = ember.rnn %x, %w, %r : f32[S,1,N,16], f32[1,N,16]"""

    x = Operand(FloatTensor)
    w = Operand(FloatTensor)
    r = Operand(FloatTensor)
    b = Operand(FloatTensor, optional=True)
    sequence_lens = Operand(IntTensor, optional=True)
    initial_h = Operand(FloatTensor, optional=True)
    direction = Attr(A.OneOf(*DIRECTIONS), default="forward")
    activations = Attr(A.Optional(A.Strs), default=None)
    activation_alpha = Attr(A.Floats, default=())
    activation_beta = Attr(A.Floats, default=())
    clip = Attr(A.Optional(A.Float), default=None)
    batch_first = Attr(A.Bool, default=False)
    y = Result(FloatTensor)
    y_h = Result(FloatTensor)

    gates = 1
    default_activations = ("tanh",)

    def infer(self, x: Type, w: Type, r: Type, b: Type | None, sequence_lens: Type | None,
              initial_h: Type | None) -> tuple[TensorType, ...]:
        return self._results(*self._check(x, w, r, b, sequence_lens, [("initial_h", initial_h)]))

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None,
                  sequence_lens: np.ndarray | None, initial_h: np.ndarray | None, *, direction: str,
                  activations: tuple[str, ...] | None, activation_alpha: tuple[float, ...],
                  activation_beta: tuple[float, ...], clip: float | None,
                  batch_first: bool) -> tuple[np.ndarray, ...]:
        _, xf, wf, rf, bias, states = _prepare(x, w, r, b, 1, [initial_h], batch_first)
        ndir, hidden = w.shape[0], r.shape[2]
        fns = _activation_fns(activations, RNN.default_activations, ndir, activation_alpha, activation_beta)
        clamp = _clipper(clip)

        def cell(xt: np.ndarray, s: tuple[np.ndarray, ...], d: int) -> tuple[np.ndarray, ...]:
            pre = xt @ wf[d].T + s[0] @ rf[d].T + bias[d, :hidden] + bias[d, hidden:]
            return (fns[d][0](clamp(pre)),)

        return _time_loop(xf, sequence_lens, states, direction, cell, batch_first, x.dtype)


@register_op("ember.gru", traits={Pure, Heavy})
class GRU(_Recurrent):
    """Gated recurrent unit, gates z (update), r (reset), h (candidate):
        z = f(X W_z^T + H R_z^T + Wb_z + Rb_z),  r = f(X W_r^T + H R_r^T + Wb_r + Rb_r)
        h = g(X W_h^T + (r * H) R_h^T + Rb_h + Wb_h)        (linear_before_reset = false)
        h = g(X W_h^T + r * (H R_h^T + Rb_h) + Wb_h)        (linear_before_reset = true)
        H' = (1 - z) * h + z * H;  f = sigmoid, g = tanh by default.
    %y, %y_h = ember.gru %x, %w, %r, %b {direction = "bidirectional"} : f32[S,2,N,16], f32[2,N,16]"""

    x = Operand(FloatTensor)
    w = Operand(FloatTensor)
    r = Operand(FloatTensor)
    b = Operand(FloatTensor, optional=True)
    sequence_lens = Operand(IntTensor, optional=True)
    initial_h = Operand(FloatTensor, optional=True)
    direction = Attr(A.OneOf(*DIRECTIONS), default="forward")
    activations = Attr(A.Optional(A.Strs), default=None)
    activation_alpha = Attr(A.Floats, default=())
    activation_beta = Attr(A.Floats, default=())
    clip = Attr(A.Optional(A.Float), default=None)
    linear_before_reset = Attr(A.Bool, default=False)
    batch_first = Attr(A.Bool, default=False)
    y = Result(FloatTensor)
    y_h = Result(FloatTensor)

    gates = 3
    default_activations = ("sigmoid", "tanh")

    def infer(self, x: Type, w: Type, r: Type, b: Type | None, sequence_lens: Type | None,
              initial_h: Type | None) -> tuple[TensorType, ...]:
        return self._results(*self._check(x, w, r, b, sequence_lens, [("initial_h", initial_h)]))

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None,
                  sequence_lens: np.ndarray | None, initial_h: np.ndarray | None, *, direction: str,
                  activations: tuple[str, ...] | None, activation_alpha: tuple[float, ...],
                  activation_beta: tuple[float, ...], clip: float | None, linear_before_reset: bool,
                  batch_first: bool) -> tuple[np.ndarray, ...]:
        _, xf, wf, rf, bias, states = _prepare(x, w, r, b, 3, [initial_h], batch_first)
        ndir, hid = w.shape[0], r.shape[2]
        fns = _activation_fns(activations, GRU.default_activations, ndir, activation_alpha, activation_beta)
        clamp = _clipper(clip)

        def cell(xt: np.ndarray, s: tuple[np.ndarray, ...], d: int) -> tuple[np.ndarray, ...]:
            f, g = fns[d]
            h = s[0]
            wb, rb = bias[d, :3 * hid], bias[d, 3 * hid:]
            xw = xt @ wf[d].T + wb
            rz, rr, rh = rf[d][:hid], rf[d][hid:2 * hid], rf[d][2 * hid:]
            z = f(clamp(xw[:, :hid] + h @ rz.T + rb[:hid]))
            rg = f(clamp(xw[:, hid:2 * hid] + h @ rr.T + rb[hid:2 * hid]))
            if linear_before_reset:
                cand = g(clamp(xw[:, 2 * hid:] + rg * (h @ rh.T + rb[2 * hid:])))
            else:
                cand = g(clamp(xw[:, 2 * hid:] + (rg * h) @ rh.T + rb[2 * hid:]))
            return ((1 - z) * cand + z * h,)

        return _time_loop(xf, sequence_lens, states, direction, cell, batch_first, x.dtype)


@register_op("ember.lstm", traits={Pure, Heavy})
class LSTM(_Recurrent):
    """Long short-term memory, gates i (input), o (output), f (forget), c (cell):
        i = f(X W_i^T + H R_i^T + Wb_i + Rb_i + P_i * C)
        f = f(X W_f^T + H R_f^T + Wb_f + Rb_f + P_f * C)     (1 - i with input_forget)
        c = g(X W_c^T + H R_c^T + Wb_c + Rb_c)
        C' = f * C + i * c
        o = f(X W_o^T + H R_o^T + Wb_o + Rb_o + P_o * C')
        H' = o * h(C');  f = sigmoid, g = h = tanh by default.
    `p` holds the peepholes [D, 3H] in order i, o, f (absent: zero).
    %y, %y_h, %y_c = ember.lstm %x, %w, %r : f32[S,1,N,16], f32[1,N,16], f32[1,N,16]"""

    x = Operand(FloatTensor)
    w = Operand(FloatTensor)
    r = Operand(FloatTensor)
    b = Operand(FloatTensor, optional=True)
    sequence_lens = Operand(IntTensor, optional=True)
    initial_h = Operand(FloatTensor, optional=True)
    initial_c = Operand(FloatTensor, optional=True)
    p = Operand(FloatTensor, optional=True)
    direction = Attr(A.OneOf(*DIRECTIONS), default="forward")
    activations = Attr(A.Optional(A.Strs), default=None)
    activation_alpha = Attr(A.Floats, default=())
    activation_beta = Attr(A.Floats, default=())
    clip = Attr(A.Optional(A.Float), default=None)
    input_forget = Attr(A.Bool, default=False)
    batch_first = Attr(A.Bool, default=False)
    y = Result(FloatTensor)
    y_h = Result(FloatTensor)
    y_c = Result(FloatTensor)

    gates = 4
    default_activations = ("sigmoid", "tanh", "tanh")
    state_names = ("h", "c")

    def infer(self, x: Type, w: Type, r: Type, b: Type | None, sequence_lens: Type | None,
              initial_h: Type | None, initial_c: Type | None, p: Type | None) -> tuple[TensorType, ...]:
        xt, seq, batch, hidden, ndir = self._check(x, w, r, b, sequence_lens,
                                                   [("initial_h", initial_h), ("initial_c", initial_c)])
        if p is not None:
            pt = rules.ranked(self, p, "p")
            rules.same_dtype(self, x, p)
            if pt.rank != 2 or provably_different(pt.shape[0], ndir) \
                    or provably_different(pt.shape[1], 3 * hidden):  # type: ignore[index]
                raise self.error(f"p (peepholes) must be [{ndir}, {3 * hidden}], got {pt}")
        return self._results(xt, seq, batch, hidden, ndir)

    @staticmethod
    def reference(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None,
                  sequence_lens: np.ndarray | None, initial_h: np.ndarray | None, initial_c: np.ndarray | None,
                  p: np.ndarray | None, *, direction: str, activations: tuple[str, ...] | None,
                  activation_alpha: tuple[float, ...], activation_beta: tuple[float, ...], clip: float | None,
                  input_forget: bool, batch_first: bool) -> tuple[np.ndarray, ...]:
        dt, xf, wf, rf, bias, states = _prepare(x, w, r, b, 4, [initial_h, initial_c], batch_first)
        ndir, hid = w.shape[0], r.shape[2]
        peep = np.zeros((ndir, 3 * hid), dt) if p is None else p.astype(dt)
        fns = _activation_fns(activations, LSTM.default_activations, ndir, activation_alpha, activation_beta)
        clamp = _clipper(clip)

        def cell(xt: np.ndarray, s: tuple[np.ndarray, ...], d: int) -> tuple[np.ndarray, ...]:
            f, g, h = fns[d]
            hp, cp = s
            pre = xt @ wf[d].T + hp @ rf[d].T + bias[d, :4 * hid] + bias[d, 4 * hid:]
            pi, po, pf = peep[d, :hid], peep[d, hid:2 * hid], peep[d, 2 * hid:]
            i = f(clamp(pre[:, :hid] + pi * cp))
            fg = 1 - i if input_forget else f(clamp(pre[:, 2 * hid:3 * hid] + pf * cp))
            c = g(clamp(pre[:, 3 * hid:]))
            cn = fg * cp + i * c
            o = f(clamp(pre[:, hid:2 * hid] + po * cn))
            return o * h(cn), cn

        return _time_loop(xf, sequence_lens, states, direction, cell, batch_first, x.dtype)


__all__ = ["RNN", "GRU", "LSTM", "ACTIVATIONS", "ACTIVATION_PARAMS", "DIRECTIONS"]
