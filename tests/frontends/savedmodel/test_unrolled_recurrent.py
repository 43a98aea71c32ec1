"""Keras' unroll=True recurrent layers: one recurrent op per layer after the default pipeline."""

from __future__ import annotations

from collections import Counter
from typing import Any

import ember
from ember.ir.interpret import interpret
from ember.passes.manager import run_pipeline
from ember.tolerance import assert_close


def test_unrolled_keras_layers_become_recurrent_ops(saved_models: Any) -> None:
    """An unrolled LSTM, GRU (reset_after) and SimpleRNN (4 steps each) import as cells per
    step; recognize-recurrent (in default) makes each one op, and the model still matches
    TensorFlow."""
    path, reference = saved_models["keras_rnn_unrolled"]
    feeds, expected = reference["serving_default"]
    module = ember.load(path)
    ops = Counter(op.name for op in module.walk())
    assert ops["ember.lstm"] == ops["ember.gru"] == ops["ember.rnn"] == 0 and ops["ember.sigmoid"] >= 4 * 5, ops
    run_pipeline(module, "default")
    after = Counter(op.name for op in module.walk())
    assert (after["ember.lstm"], after["ember.gru"], after["ember.rnn"]) == (1, 1, 1), after
    assert after["ember.sigmoid"] == after["ember.tanh"] == after["ember.matmul"] == 0, after
    gru = next(op for op in module.walk() if op.name == "ember.gru")
    assert gru.attributes["linear_before_reset"] is True
    out = interpret(module, feeds)
    for name, ref in expected.items():
        assert_close(out[name], ref, what=name)
