"""Tactics: a heavy op's candidate implementations behind one interface. Each candidate
of a matmul and of a convolution builds (NVRTC) and is recorded in the engine; a wrong
name is refused with the op's candidates; on the GPU each one matches the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import ir
from ember.errors import EmberError
from ember.runtime import cuda
from ember.tolerance import assert_close

try:  # before the builds load NVRTC and the driver
    import torch  # noqa: F401
except ImportError:
    pass


def matmul_model():
    b = ir.Builder("mm")
    x, y = b.input("a", ir.f32[257, 300]), b.input("b", ir.f32[300, 131])
    b.output("c", b.relu(b.matmul(x, y, loc="mm")))
    return b.build()


def conv_model():
    rng = np.random.default_rng(0)
    b = ir.Builder("conv")
    x = b.input("x", ir.f32[2, 8, 17, 19])
    w = b.weight("w", rng.standard_normal((32, 8, 3, 3)).astype(np.float32))
    b.output("y", b.conv(x, w, pads=(1, 1, 1, 1), loc="conv"))
    return b.build()


CASES = {"mm": (matmul_model, "canonicalize"), "conv": (conv_model, "default")}


def candidates(built, name):
    make, pipeline = CASES[name]
    engine = ember.compile(make(), pipeline=pipeline, cache_dir=built.cache_dir)
    (step,) = [s for s in engine.steps if s.tactic]
    assert step.tactic == step.candidates[0]  # the heuristic's pick by default
    return step.candidates


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_candidate_builds_and_is_recorded(built, name):
    names = candidates(built, name)
    assert len(names) >= 2
    make, pipeline = CASES[name]
    sources = set()
    for tactic in names:
        engine = ember.compile(make(), pipeline=pipeline, tactics={name: tactic}, cache_dir=built.cache_dir)
        (step,) = [s for s in engine.steps if s.tactic]
        assert step.tactic == tactic
        sources.add(engine.kernels[step.kernel].source)
    assert len(sources) == len(names)  # each candidate is its own kernel


def test_a_wrong_tactic_names_the_candidates(built):
    with pytest.raises(EmberError, match=r"tactic 'fastest' for ember.matmul @ mm: this op's candidates are tile"):
        ember.compile(matmul_model(), pipeline="canonicalize", tactics={"mm": "fastest"}, cache_dir=built.cache_dir)
    with pytest.raises(EmberError, match="tactics name no heavy op of the model: nowhere"):
        ember.compile(matmul_model(), pipeline="canonicalize", tactics={"nowhere": "x"}, cache_dir=built.cache_dir)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available()[0], reason=f"no CUDA GPU: {cuda.available()[1]}")
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_candidate_matches_the_interpreter_on_the_gpu(built, name):
    make, pipeline = CASES[name]
    module = make()
    rng = np.random.default_rng(7)
    feeds = {n: rng.standard_normal([int(d) for d in v.type.shape]).astype(np.float32)
             for n, v in zip(module.main.input_names, module.main.inputs)}
    want = ember.interpret(module, feeds)
    for tactic in candidates(built, name):
        engine = ember.compile(make(), pipeline=pipeline, tactics={name: tactic}, cache_dir=built.cache_dir)
        ctx = engine.create_context("cuda", graphs=False)
        got = ctx.run(feeds)
        for k in want:
            assert_close(np.asarray(got[k]), np.asarray(want[k]), what=f"{name} {tactic}: {k}")
