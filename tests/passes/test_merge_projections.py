"""merge-projections (passes/merge_projections.py): random groups of products of one input
compute what they did before the merge (the interpreter on random inputs), and a BERT-style
attention block, through the default pipeline, stores Q, K and V with one product in the
heads-first layout that attention reads."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from ember.ir import Builder, f32
from ember.ir.interpret import interpret
from ember.ir.parser import copy_module
from ember.passes import run_pipeline
from ember.tolerance import assert_close


@st.composite
def groups(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
    k, n = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    members = draw(st.integers(1, 4))
    biased = draw(st.lists(st.booleans(), min_size=members, max_size=members))
    as_weight = draw(st.booleans())
    odd = draw(st.booleans())  # one more product of another width, which must stay apart
    return lead, k, n, biased, as_weight, odd, draw(st.integers(0, 2 ** 31 - 1))


def build(lead, k, n, biased, as_weight, odd, seed):
    rng = np.random.default_rng(seed)
    b = Builder("g")
    x = b.input("x", f32, [*lead, k])

    def known(name, shape):
        data = rng.standard_normal(shape).astype(np.float32)
        return b.weight(name, data) if as_weight else b.constant(data)

    for i, bias in enumerate(biased):
        y = b.matmul(x, known(f"w{i}", (k, n)))
        if bias:
            y = b.add(known(f"b{i}", (n,)), y) if i % 2 else b.add(y, known(f"b{i}", (n,)))
        b.output(f"y{i}", b.relu(y))
    if odd:
        b.output("z", b.matmul(x, known("wz", (k, n + 1))))
    return b.build(), {"x": rng.standard_normal((*lead, k)).astype(np.float32)}


@settings(max_examples=60, deadline=None)
@given(groups())
def test_merged_products_compute_what_the_products_did(case):
    module, feeds = build(*case)
    want = interpret(module, feeds)
    merged = copy_module(module)
    run_pipeline(merged, "merge-projections")
    products = [op for op in merged.main.body.ops if op.name == "ember.matmul"]
    members, odd = len(case[3]), case[5]
    assert len(products) == (1 if members > 1 else members) + odd
    got = interpret(merged, feeds)
    for name in want:
        assert_close(np.asarray(got[name]), np.asarray(want[name]), what=name)


def test_an_attention_block_projects_q_k_and_v_with_one_product_stored_heads_first():
    rng = np.random.default_rng(0)
    b = Builder("attn")
    x = b.input("x", f32, [2, 8, 16])
    heads = []
    for name in "qkv":
        y = b.add(b.weight(f"{name}.bias", rng.standard_normal(16).astype(np.float32)),
                  b.matmul(x, b.weight(f"{name}.w", rng.standard_normal((16, 16)).astype(np.float32))))
        heads.append(b.transpose(b.reshape(y, shape=[2, 8, 4, 4]), perm=[0, 2, 1, 3]))
    b.output("y", b.attention(*heads)[0])
    module = b.build()
    feeds = {"x": rng.standard_normal((2, 8, 16)).astype(np.float32)}
    want = interpret(module, feeds)
    run_pipeline(module, "default")
    fused = [op for op in module.main.body.ops if op.name == "ember.fused"]
    bodies = [[o.name for o in op.regions[0].ops] for op in fused]
    assert ["ember.matmul", "ember.add", "ember.reshape", "ember.transpose"] in bodies, bodies
    assert sum(1 for body in bodies for name in body if name == "ember.matmul") == 1, bodies
    assert not any(op.name == "ember.transpose" for op in module.main.body.ops)  # stored heads-first
    assert_close(np.asarray(interpret(module, feeds)["y"]), np.asarray(want["y"]), what="y")
