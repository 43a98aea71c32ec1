"""compose-layouts (passes/compose_layouts.py): the atoms-and-one-permutation form of a
reshape/transpose chain moves data as the chain does (random chains, numpy), and the pass
leaves an attention block's three selected layouts as one transpose of the projection."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from ember.ir import Builder, f32
from ember.ir.interpret import interpret
from ember.passes import run_pipeline
from ember.passes.compose_layouts import compose

FACTORS = [1, 2, 3, 4, 6]


@st.composite
def chains(draw):
    shape = tuple(draw(st.lists(st.sampled_from(FACTORS), min_size=1, max_size=4)))
    steps, current = [], shape
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            perm = tuple(draw(st.permutations(range(len(current)))))
            steps.append(("transpose", perm))
            current = tuple(current[p] for p in perm)
        else:  # regroup: split every dim into factors, then merge neighbours at random
            pieces = []
            for d in current:
                for f in (2, 3):
                    while d % f == 0 and d > f and draw(st.booleans()):
                        pieces.append(f)
                        d //= f
                pieces.append(d)
            merged, run = [], 1
            for p in pieces:
                run *= p
                if draw(st.booleans()):
                    merged.append(run)
                    run = 1
            merged.append(run)
            steps.append(("reshape", tuple(merged)))
            current = tuple(merged)
    return shape, steps, current


@settings(max_examples=200, deadline=None)
@given(chains())
def test_a_composed_chain_moves_data_as_the_chain_does(case):
    shape, steps, out = case
    x = np.arange(int(np.prod(shape))).reshape(shape)
    want = x
    for kind, arg in steps:
        want = np.transpose(want, arg) if kind == "transpose" else want.reshape(arg)
    composed = compose(shape, steps)
    if composed is None:  # a reshape cuts across dims a transpose moved apart: no one permutation
        return
    atoms, perm = composed
    got = np.transpose(x.reshape(atoms), perm).reshape(out)
    np.testing.assert_array_equal(got, want)


def test_chains_compose_or_are_refused():
    # the heads-first layout of a [3, S, B, E] projection's slice: one permutation of 3 x 5 x 2 x 4
    assert compose((3, 5, 1, 8), [("reshape", (3, 5, 2, 4)), ("transpose", (0, 2, 1, 3))]) == \
        ((3, 5, 2, 4), (0, 2, 1, 3))
    assert compose((6, 4), [("transpose", (1, 0)), ("reshape", (2, 12)), ("reshape", (4, 6))]) is not None
    # a reshape whose first dim (4) would take the 6 side's atom and part of the next: refused
    assert compose((4, 6), [("transpose", (1, 0)), ("reshape", (4, 6))]) is None


def attention_block():
    """[3, S, B, E] projection picked at 0, 1, 2 and each given the heads-first layout, as
    torchvision's nn.MultiheadAttention exports it."""
    S, B, H, D = 5, 1, 2, 4
    b = Builder("mha")
    x = b.input("x", f32[S, B, H * D])
    w = b.weight("w", np.random.default_rng(0).standard_normal((H * D, 3 * H * D)).astype(np.float32))
    proj = b.transpose(b.reshape(b.matmul(x, w), shape=(S, B, 3, H * D)), perm=(2, 0, 1, 3))
    heads = []
    for i in range(3):
        pick = b.gather(proj, b.constant(np.int64(i)), axis=0)
        heads.append(b.transpose(b.reshape(pick, shape=(S, B * H, D)), perm=(1, 0, 2)))
    b.output("y", b.add(b.add(heads[0], heads[1]), heads[2]))
    return b.build()


def test_the_three_selected_layouts_become_one_transpose():
    module = attention_block()
    x = np.random.default_rng(1).standard_normal((5, 1, 8)).astype(np.float32)
    want = interpret(module, {"x": x})["y"]
    run_pipeline(module, "compose-layouts")
    names = [op.name for op in module.main.body.ops]
    assert names.count("ember.transpose") == 1 and names.count("ember.gather") == 3, names
    np.testing.assert_array_equal(interpret(module, {"x": x})["y"], want)
