"""Recurrent cells unrolled over a sequence (torch-style loops over LSTMCell/GRUCell/RNNCell
exported to ONNX: gather x[:, t], gemm with transposed weights, the outputs stacked) become
one recurrent op under recognize-recurrent, and the interpreter gives what it gave before;
near misses keep the chain. (Keras' unroll=True layers: tests/frontends/savedmodel.)"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from ember.ir.builder import Builder
from ember.ir.interpret import interpret
from ember.passes.manager import run_pipeline
from ember.tolerance import assert_close

STEPS, BATCH, INPUT, HIDDEN = 4, 2, 3, 5
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def unrolled(cell: str, *, bad_step: int | None = None, bad: str = "", final_only: bool = False) -> Any:
    """x [B, S, I] -> the stacked hidden states [B, S, H] (or the last one), as torch's export
    of a Python loop writes it. `bad` spoils step `bad_step`: "weight" (other weights),
    "activation" (relu for tanh), "link" (it reads the initial state, not the last step's)."""
    rng = np.random.default_rng(7)
    g = GATES[cell]
    b = Builder("unrolled")
    batch = b.symbol("batch", 1)
    x = b.input("x", "f32", (batch, STEPS, INPUT))
    h0 = b.input("h0", "f32", (batch, HIDDEN))
    params = [rng.standard_normal(s).astype(np.float32) * 0.5 for s in
              ((g * HIDDEN, INPUT), (g * HIDDEN, HIDDEN), (g * HIDDEN,), (g * HIDDEN,))]
    w_ih, w_hh, b_ih, b_hh = (b.weight(n, a) for n, a in zip(("w_ih", "w_hh", "b_ih", "b_hh"), params))
    other = b.weight("w_ih_other", params[0] + 0.25)
    h = c = h0
    outs = []
    for t in range(STEPS):
        spoil = t == bad_step
        xt = b.gather(x, b.constant(np.int64(t)), axis=1)
        gi = b.gemm(xt, other if spoil and bad == "weight" else w_ih, b_ih, trans_b=True)
        gh = b.gemm(h0 if spoil and bad == "link" else h, w_hh, b_hh, trans_b=True)
        act = b.relu if spoil and bad == "activation" else b.tanh
        if cell == "lstm":
            i, f, gg, o = b.split(b.add(gi, gh), axis=1, num_outputs=4)
            c = b.add(b.mul(b.sigmoid(f), c), b.mul(b.sigmoid(i), act(gg)))
            h = b.mul(b.sigmoid(o), b.tanh(c))
        elif cell == "gru":
            ir, iz, in_ = b.split(gi, axis=1, num_outputs=3)
            hr, hz, hn = b.split(gh, axis=1, num_outputs=3)
            r, z = b.sigmoid(b.add(ir, hr)), b.sigmoid(b.add(iz, hz))
            n = act(b.add(in_, b.mul(r, hn)))
            h = b.add(b.mul(b.sub(b.constant(np.float32(1)), z), n), b.mul(z, h))
        else:
            h = act(b.add(gi, gh))
        if not final_only:
            outs.append(b.unsqueeze(h, axes=(1,)))
    b.output("y", h if final_only else b.concat(*outs, axis=1))
    return b.build()


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((BATCH, STEPS, INPUT)).astype(np.float32),
            "h0": rng.standard_normal((BATCH, HIDDEN)).astype(np.float32)}


def _recurrent_ops(module: Any) -> Counter:
    return Counter(op.name for op in module.walk() if op.name in ("ember.lstm", "ember.gru", "ember.rnn"))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("final_only", [False, True], ids=["sequence", "final"])
def test_unrolled_cells_become_one_op(cell: str, final_only: bool) -> None:
    module = unrolled(cell, final_only=final_only)
    before = interpret(module, _feeds())
    run_pipeline(module, "recognize-recurrent")
    assert _recurrent_ops(module) == {f"ember.{cell}": 1}
    ops = Counter(op.name for op in module.walk())
    assert ops["ember.gemm"] == ops["ember.sigmoid"] == ops["ember.gather"] == 0, ops
    (op,) = [op for op in module.walk() if op.name == f"ember.{cell}"]
    assert op.attributes["batch_first"] is True
    if cell == "gru":
        assert op.attributes["linear_before_reset"] is True  # torch's GRU
    after = interpret(module, _feeds())
    assert_close(after["y"], before["y"], what=f"{cell} y")


@pytest.mark.parametrize("bad", ["weight", "activation", "link"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_near_misses_keep_the_chain(cell: str, bad: str) -> None:
    module = unrolled(cell, bad_step=2, bad=bad)
    before = interpret(module, _feeds())
    run_pipeline(module, "recognize-recurrent")
    assert not _recurrent_ops(module)
    assert_close(interpret(module, _feeds())["y"], before["y"], what="y")


def test_a_middle_state_used_elsewhere_is_a_slice_of_the_sequence() -> None:
    """h_1 also leaves the function: the op's output sequence supplies it."""
    module = unrolled("rnn", final_only=True)
    fn = module.functions["main"]
    (last,) = fn.outputs
    middle = next(op for op in fn.walk() if op.name == "ember.tanh").results[0]  # h_0
    fn.body.set_outputs([last, middle])
    fn.output_names.append("h0_out")
    before = interpret(module, _feeds())
    run_pipeline(module, "recognize-recurrent")
    assert _recurrent_ops(module) == {"ember.rnn": 1}
    after = interpret(module, _feeds())
    for k in before:
        assert_close(after[k], before[k], what=k)
