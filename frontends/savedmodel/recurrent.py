"""Keras' recurrent layers as one ember.lstm, ember.gru or ember.rnn each.

Keras exports LSTM, GRU and SimpleRNN layers as a While loop: the time-major input in a
TensorList, the outputs collected in another, the states (h, and c for an LSTM) carried, the
cell's weights read from variables in the body. Unrolled (control.py), a 7-step LSTM is 14
matrix products and 28 activations; as one op it takes the time-loop kernel that keeps the
whole loop on the GPU.

The loop is recognized by what its body computes, not by how it spells it: the body is
imported once more into a scratch module, on a probe step (placeholders for the step's input
and the states), its weights found where the probe's input and first state meet them in
matrix products, and the candidate op (Keras' gate order mapped to Ember's) built from them
is run beside the probe on random inputs by the reference interpreter. Only a candidate that
agrees replaces the loop; anything else (masking, an LSTM's or GRU's activations off the
defaults, a body that is no such cell) is unrolled as before. go_backwards reverses the input before the
loop, so a loop is always a forward op; a Bidirectional layer is two of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.savedmodel.importer import NodeError, Resource, SavedModelImporter, TensorList, TFValue
from ember.ir.builder import Builder
from ember.ir.interpret import interpret
from ember.ir.staging import Slot
from ember.ir.types import TensorType

PROBE_BATCH = 3
RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid")  # a SimpleRNN's, tried in turn
AGREEMENT = 1e-5  # max |candidate - probe| <= AGREEMENT * max(1, max |probe|), in f64 terms of f32 values


def fuse(importer: SavedModelImporter, body: str, ins: list[TFValue], b: Builder, loc: str) -> list[TFValue] | None:
    """The loop's final state with the loop as one recurrent op, or None where it is not a
    recognized cell (the caller unrolls it)."""
    lists = [i for i, v in enumerate(ins) if isinstance(v, TensorList)]
    inputs = [i for i in lists if ins[i].items and all(x is not None for x in ins[i].items)]
    outputs = [i for i in lists if ins[i].items and all(x is None for x in ins[i].items)]
    states = [i for i, v in enumerate(ins) if isinstance(v, Slot) and v.const is None and v.value is not None]
    counters = [i for i, v in enumerate(ins) if isinstance(v, Slot) and v.const is not None and v.const.size == 1]
    others = set(range(len(ins))) - set(lists) - set(states) - set(counters)
    if len(inputs) != 1 or len(outputs) != 1 or len(lists) != 2 or not 1 <= len(states) <= 2 \
            or any(not isinstance(ins[i], Resource) for i in others):
        return None
    source: TensorList = ins[inputs[0]]  # type: ignore[assignment]
    steps = len(source.items)
    if source.source is None or len(ins[outputs[0]].items) not in (steps, 1):  # type: ignore[union-attr]
        return None  # (a layer without return_sequences keeps one output, rewritten every step)
    probe = _probe(importer, body, ins, inputs[0], outputs[0], states)
    if probe is None:
        return None
    module, weights, after = probe
    found = _candidate(module, weights, len(states))
    if found is None:
        return None
    name, w, r, bias, attrs, order = found
    return _emit(importer, b, loc, ins, after, inputs[0], outputs[0], states, counters, steps,
                 name, w, r, bias, attrs, order)


def _probe(importer: SavedModelImporter, body: str, ins: list[TFValue], x_list: int, y_list: int,
           states: list[int]) -> tuple[Any, dict[str, np.ndarray], list[TFValue]] | None:
    """The body imported on placeholders: (module with inputs x, s0[, s1] and outputs y, s0'[,
    s1'], its weights by name, the body's results there)."""
    item = ins[x_list].items[0]  # type: ignore[union-attr]
    x_type = item.value.type if item is not None and item.value is not None else None
    types = [ins[i].value.type for i in states]  # type: ignore[union-attr]
    if not isinstance(x_type, TensorType) or x_type.rank != 2 or any(
            not isinstance(t, TensorType) or t.rank != 2 for t in types):
        return None
    pb = Builder("probe")
    px = pb.input("x", x_type)
    ps = [pb.input(f"s{k}", t) for k, t in enumerate(types)]
    # build-time values afresh (the model's own are emitted in the model), the lists and states probed
    state = [Slot(const=v.const, weight=v.weight, dims=v.dims) if isinstance(v, Slot) else v for v in ins]
    state[x_list] = TensorList([Slot(value=px)] * len(ins[x_list].items), ins[x_list].dtype)  # type: ignore[union-attr]
    state[y_list] = TensorList([None] * len(ins[y_list].items), ins[y_list].dtype)  # type: ignore[union-attr]
    for k, i in enumerate(states):
        state[i] = Slot(value=ps[k])
    with importer.scratch(pb):
        try:
            after = importer.call(body, state, pb)
            written = [x for x in after[y_list].items if x is not None] \
                if isinstance(after[y_list], TensorList) else []
            if len(written) != 1 or any(not isinstance(after[i], Slot) for i in states):
                return None
            pb.output("y", importer.materialize(written[0], "probe"))
            for k, i in enumerate(states):
                pb.output(f"s{k}", importer.materialize(after[i], "probe"))
            module = pb.build()
        except Exception:  # noqa: BLE001  (a body that is no cell, or that does not import: unrolled)
            return None
    weights = {n: w.data for n, w in module.weights.items() if w.data is not None}
    return module, weights, after


def _candidate(module: Any, weights: dict[str, np.ndarray], n_states: int) -> tuple[Any, ...] | None:
    """(op name, W, R, B, attributes, state order) of a recurrent op that computes what the
    probe does, its weights found by their shapes (the kernel (I, gates*H), the recurrent
    kernel (H, gates*H), a bias of gates*H or 2*gates*H: a body may slice them before its
    products) and the op checked on random inputs."""
    fn = module.main
    features, hidden = int(fn.inputs[0].type.shape[1]), int(fn.inputs[1].type.shape[1])
    mats = [(n, w) for n, w in weights.items() if w.ndim == 2 and w.shape[1] % hidden == 0]
    for kname, kernel in mats:
        for rname, recurrent in mats:
            if rname == kname or kernel.shape[0] != features or recurrent.shape != (hidden, kernel.shape[1]):
                continue
            gates = kernel.shape[1] // hidden
            biases = [w for n, w in weights.items() if n not in (kname, rname)
                      and w.size in (gates * hidden, 2 * gates * hidden)]
            if len(biases) > 1 or len(weights) - 2 - len(biases) > 0:
                continue
            bias = biases[0] if biases else None
            for name, w, r, b, attrs in _forms(gates, n_states, kernel, recurrent, bias, hidden):
                for order in ([0, 1], [1, 0]) if n_states == 2 else ([0],):
                    if _agrees(module, name, w, r, b, attrs, order):
                        return name, w, r, b, attrs, order
    return None


def _forms(gates: int, n_states: int, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None,
           hidden: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]]:
    """The ops Keras' cells map to: W (1, gates*H, I), R (1, gates*H, H), B (1, 2*gates*H), Keras'
    gate blocks reordered (LSTM: i, f, c, o -> i, o, f, c)."""
    def blocks(m: np.ndarray, order: list[int]) -> np.ndarray:
        parts = np.split(m, gates, axis=-1)
        return np.concatenate([parts[k] for k in order], axis=-1)

    zeros = np.zeros(gates * hidden, np.float32)
    if gates == 4 and n_states == 2:
        order = [0, 3, 1, 2]
        b = np.zeros(4 * hidden, np.float32) if bias is None else bias.reshape(-1)
        if b.size != 4 * hidden:
            return []
        return [("ember.lstm", blocks(kernel, order).T[None], blocks(recurrent, order).T[None],
                 np.concatenate([blocks(b, order), zeros])[None], {})]
    if gates == 3 and n_states == 1:
        w, r = kernel.T[None], recurrent.T[None]
        if bias is not None and bias.size == 6 * hidden:  # reset_after: input and recurrent biases
            return [("ember.gru", w, r, bias.reshape(1, -1), {"linear_before_reset": True})]
        b = zeros if bias is None else bias.reshape(-1)
        return [("ember.gru", w, r, np.concatenate([b, zeros])[None], {"linear_before_reset": False})]
    if gates == 1 and n_states == 1:  # SimpleRNN: its activation is the layer's choice
        b = zeros if bias is None else bias.reshape(-1)
        if b.size != hidden:
            return []
        w, r, bb = kernel.T[None], recurrent.T[None], np.concatenate([b, zeros])[None]
        return [("ember.rnn", w, r, bb, {} if f == "tanh" else {"activations": (f,)}) for f in RNN_ACTIVATIONS]
    return []


def _agrees(module: Any, name: str, w: np.ndarray, r: np.ndarray, bias: np.ndarray, attrs: dict[str, Any],
            order: list[int]) -> bool:
    """Whether the op, one step from the same input and states, gives the probe's outputs."""
    fn = module.main
    cb = Builder("cell")
    x = cb.input("x", fn.inputs[0].type)
    s = [cb.input(f"s{k}", v.type) for k, v in enumerate(fn.inputs[1:])]
    states = [cb.unsqueeze(s[k], axes=(0,)) for k in order]
    consts = [cb.constant(a.astype(np.float32)) for a in (w, r, bias)]
    results = cb.op(name, cb.unsqueeze(x, axes=(0,)), *consts, None, *states, **attrs)
    cb.output("y", cb.squeeze(results[0], axes=(0, 1)))
    finals = [cb.squeeze(v, axes=(0,)) for v in results[1:]]
    for k in range(len(order)):
        cb.output(f"s{k}", finals[order.index(k)])
    cell = cb.build()
    rng = np.random.default_rng(0)
    for _ in range(2):
        feeds = {}
        for v, n in zip(fn.inputs, fn.input_names):
            shape = [PROBE_BATCH if not isinstance(d, int) else d for d in v.type.shape]
            feeds[n] = rng.standard_normal(shape).astype(v.type.dtype.np_dtype)
        try:
            want, got = interpret(module, feeds), interpret(cell, feeds)
        except Exception:  # noqa: BLE001  (the probe does not run on these shapes: no match)
            return False
        for k in want:
            a, c = np.asarray(want[k], np.float64), np.asarray(got[k], np.float64)
            if a.shape != c.shape or not np.all(np.isfinite(a)):
                return False
            if np.max(np.abs(a - c)) > AGREEMENT * max(1.0, float(np.max(np.abs(a)))):
                return False
    return True


def _emit(importer: SavedModelImporter, b: Builder, loc: str, ins: list[TFValue], after: list[TFValue],
          x_list: int, y_list: int, states: list[int], counters: list[int], steps: int, name: str,
          w: np.ndarray, r: np.ndarray, bias: np.ndarray, attrs: dict[str, Any], order: list[int]) -> list[TFValue]:
    """The op in the model, and the loop's final state: the output list sliced from its
    sequence, the final states, the counters advanced `steps` times."""
    source: Slot = ins[x_list].source  # type: ignore[union-attr,assignment]
    x = importer.materialize(source, loc)
    prefix = loc.replace("/", "_")
    weights = [b.weight(f"{prefix}/{part}", a.astype(np.float32)) for part, a in (("w", w), ("r", r), ("b", bias))]
    initial = [b.op("ember.unsqueeze", importer.materialize(ins[states[k]], loc), axes=(0,), loc=loc) for k in order]
    results = b.op(name, x, *weights, None, *initial, loc=loc, **attrs)
    sequence = b.op("ember.squeeze", results[0], axes=(1,), loc=loc)
    out = list(ins)
    finals = [b.op("ember.squeeze", v, axes=(0,), loc=loc) for v in results[1:]]
    if len(ins[y_list].items) == steps:  # type: ignore[union-attr]
        out[y_list] = TensorList([None] * steps, ins[y_list].dtype, source=Slot(value=sequence))  # type: ignore[union-attr]
    else:  # the last step's output: the final h
        out[y_list] = TensorList([Slot(value=finals[0])], ins[y_list].dtype)  # type: ignore[union-attr]
    for k, i in enumerate(states):
        out[i] = Slot(value=finals[order.index(k)])
    for i in counters:
        start, probed = np.asarray(ins[i].const), getattr(after[i], "const", None)  # type: ignore[union-attr]
        if probed is None:
            raise NodeError("a loop counter of a recurrent layer is not known at build time", unsupported=True)
        step = np.asarray(probed) - start
        out[i] = Slot(const=(start + steps * step).astype(start.dtype))
    return out


__all__ = ["fuse"]
