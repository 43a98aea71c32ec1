"""Size arithmetic is checked in one place (`ember.ir.sizes`), against one limit, wherever a
model's dims become numbers: the verifier (known dims), the build (symbols bound by
shapes), and the engine's arena. Nothing wraps: a dim of 10^12 squared is refused, not
reported as a 16-exabyte arena."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ember
from ember.errors import EmberError, VerifyError
from ember.ir import parse, sizes

HUGE = """module @m {
  func @main(%x: f32[1000000000000,1000000000000]) -> (y: f32[1000000000000,1000000000000]) {
    %0 = ember.relu %x : f32[1000000000000,1000000000000] loc("act")
    return %0
  }
}
"""

SYMBOLIC = """module @m {
  symbol N in [1, inf]
  func @main(%x: f32[N,1000000]) -> (y: f32[N,1000000]) {
    %0 = ember.relu %x : f32[N,1000000] loc("act")
    return %0
  }
}
"""


def test_products_are_checked_before_they_grow():
    assert sizes.numel([3, 4, 5], "t") == 60 and sizes.numel([], "t") == 1 and sizes.numel([0, 10**6], "t") == 0
    assert sizes.nbytes([3, 5], 2, "t") == 30 and sizes.nbytes([3], 0.5, "t") == 2  # int4: packed, rounded up
    with pytest.raises(sizes.SizeError, match=r"^input x: shape \[1000000000000, 1000000000000\] has 10{24} "
                                              r"elements, more than the limit"):
        sizes.numel([10**12, 10**12], "input x")
    with pytest.raises(sizes.SizeError, match="dim -3 is negative"):
        sizes.numel([2, -3], "t")
    with pytest.raises(sizes.SizeError, match="is not an integer"):
        sizes.numel([2.5], "t")
    with pytest.raises(sizes.SizeError, match=r"arena: 2199023255552 bytes \(2 TiB\) is more than the limit"):
        sizes.check_bytes(2 << 40, "arena")
    with pytest.raises(sizes.SizeError, match="offset -1 is negative"):
        sizes.check_range(-1, 4, 100, "w")
    with pytest.raises(sizes.SizeError, match=r"bytes 98\.\.102 lie past the end \(100 bytes\)"):
        sizes.check_range(98, 4, 100, "w")
    assert issubclass(sizes.SizeError, EmberError) and issubclass(sizes.SizeError, ValueError)


@given(st.lists(st.integers(0, 2**40), min_size=0, max_size=6), st.sampled_from([1, 2, 4, 8]))
def test_nbytes_is_the_exact_product_or_a_refusal(shape, itemsize):
    exact = int(np.prod([int(d) for d in shape], dtype=object)) * itemsize if shape else itemsize
    try:
        got = sizes.nbytes(shape, itemsize, "t")
    except sizes.SizeError:
        assert exact > sizes.MAX_BYTES or max(shape, default=0) > sizes.MAX_ELEMENTS or \
            int(np.prod([int(d) for d in shape], dtype=object)) > sizes.MAX_ELEMENTS
    else:
        assert got == exact <= sizes.MAX_BYTES


def test_the_verifier_refuses_huge_known_dims():
    with pytest.raises(VerifyError) as info:
        parse(HUGE)
    problems = info.value.diagnostics
    assert any(p.startswith("@main: input %x: f32[1000000000000,1000000000000]: shape") for p in problems)
    assert any(p.startswith("act: ember.relu: result 0:") and "than the limit" in p for p in problems)


def test_symbolic_dims_are_checked_when_bound():
    module = parse(SYMBOLIC)  # fine: N is not known yet
    with pytest.raises(EmberError, match=r"input %x \(f32\[N,1000000\] with N=10000000\): shape "
                                         r"\[10000000, 1000000\] has 10000000000000 elements"):
        ember.compile(module, shapes={"x": (10**7, 10**6)})
    with pytest.raises(EmberError, match="dim -4 is negative"):
        ember.compile(module, shapes={"x": (-4, 10**6)})


def test_the_arena_is_checked_even_when_each_value_fits(monkeypatch):
    """Buffers live at once, each under the limit, together over it."""
    from ember.ir import Builder, f32
    b = Builder("three")
    x = b.input("x", f32[1024])
    a = b.relu(x)
    b.output("y", b.add(b.add(x, a), b.neg(x)))
    module = b.build()
    monkeypatch.setattr(sizes, "MAX_BYTES", 8191)  # each value 4096 bytes, the arena 8192
    with pytest.raises(EmberError, match="the activation arena .* is more than the limit"):
        ember.compile(module)
