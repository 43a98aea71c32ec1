"""Binding shape symbols (ir/bind.py): an engine built for one shape has static types, so the
shape arithmetic around its dynamic dims folds, while one built for a range keeps them."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.ir import parse
from ember.ir.bind import bind_symbols
from ember.ir.program import LaunchStep

# Positions from the sequence length, as transformer exports compute them: shape, gather, range.
POSITIONS = """
func @main(%ids: i64[B,S], %table: f32[64,8]) -> (y: f32[B,S,8]) {
  %s = ember.shape %ids : i64[2]
  %one = ember.constant {value = dense<i64[]: 1>} : i64[]
  %zero = ember.constant {value = dense<i64[]: 0>} : i64[]
  %n = ember.gather %s, %one : i64[]
  %pos = ember.range %zero, %n, %one {length = S} : i64[S]
  %p = ember.gather %table, %pos : f32[S,8]
  %t = ember.gather %table, %ids : f32[B,S,8]
  %y = ember.add %t, %p : f32[B,S,8]
  return %y
}
"""


def test_binding_rewrites_types_and_dim_attributes_and_drops_the_symbols():
    module = parse(POSITIONS)
    bind_symbols(module, {"B": 2, "S": 5})
    text = str(module)
    assert "i64[2,5]" in text and "f32[2,5,8]" in text and "length = 5" in text
    assert "B" not in module.symbols and "S" not in module.symbols
    ember.ir.verify(module)


def test_a_bound_size_too_large_names_the_symbols():
    with pytest.raises(ember.EmberError, match=r"input %ids \(i64\[B,S\] with B=100000000000, S=100000000\)"):
        bind_symbols(parse(POSITIONS), {"B": 10**11, "S": 10**8})


def test_a_one_shape_engine_folds_its_shape_arithmetic_and_keeps_the_declared_dims(kernel_cache):
    module = parse(POSITIONS)
    table = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    ids = np.random.default_rng(1).integers(0, 64, (2, 5))
    static = ember.compile(module, shapes={"ids": (2, 5), "table": (64, 8)}, cache_dir=kernel_cache, opt_level=0)
    ranged = ember.compile(module, profiles=[{"ids": ((1, 1), (2, 5), (4, 16)), "table": (64, 8)}],
                           cache_dir=kernel_cache, opt_level=0)
    kinds = [s.kernel.rsplit("_", 1)[0] for s in static.steps if isinstance(s, LaunchStep)]
    assert "range" not in kinds and "shape" not in kinds      # folded: positions 0..4 are a weight
    assert any(s.kernel.startswith("range") for s in ranged.steps if isinstance(s, LaunchStep))
    assert len(static.steps) < len(ranged.steps)
    assert static.inputs[0].dims == ("B", "S") and static.inputs[0].shape == (2, 5)
    assert static.outputs[0].dims == ("B", "S", "8")
    want = table[ids] + table[np.arange(5)]
    for engine in (static, ranged):
        got = engine.run({"ids": ids, "table": table}, device="cpu")["y"]
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert "i64[B,S]" in str(module)  # the caller's module is left symbolic
