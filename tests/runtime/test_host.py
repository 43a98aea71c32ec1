"""The host-arena executor: every fixture's engine, run on a numpy arena laid out by
its memory plan, matches the interpreter; a plan whose live buffers overlap is caught;
inputs are checked; device="auto" falls back with a one-line notice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ember
from ember.errors import InterpretError
from ember.runtime import Engine, EngineInputError
from ember.runtime import cuda
from ember.runtime.host import HostContext
from ember.tolerance import assert_close

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))


@pytest.mark.parametrize("name", MODELS)
def test_fixture_on_the_host_arena_matches_the_interpreter(built, name, tmp_path):
    engine = built.engine(name)
    feeds = built.feeds(name)
    want = built.expected(name)
    got = engine.run(feeds, device="cpu")
    assert list(got) == list(want)
    for out in want:
        assert_close(np.asarray(got[out]), want[out], what=f"{name}:{out}")
    # Twice on one context (the arena is reused), and from the saved file: the same bytes out.
    again = engine.run(feeds, device="cpu")
    path = tmp_path / f"{name}.engine"
    engine.save(path)
    loaded = Engine.load(path).run(feeds, device="cpu")
    for out in want:
        assert np.array_equal(again[out], got[out], equal_nan=True)
        assert np.array_equal(loaded[out], got[out], equal_nan=True)


@pytest.mark.parametrize("name", ["resnet50_small", "bert_small"])
def test_overlapping_buffers_corrupt_the_results(built, name):
    """The executor really reads and writes at the planned offsets: a plan that puts every
    buffer at offset 0 gives wrong answers (so a wrong plan cannot pass the test above)."""
    engine = built.engine(name)
    feeds = built.feeds(name)
    want = built.expected(name)
    broken = Engine(ir_text=engine.ir_text, program=engine.program, plan=_all_at_zero(engine.plan),
                    weights=engine.weights, kernels=engine.kernels, info=engine.info, inputs=engine.inputs,
                    outputs=engine.outputs)
    try:
        got = HostContext(broken).run(feeds)
    except InterpretError:
        return  # an op that choked on clobbered operands also shows the plan is used
    assert any(not np.allclose(got[k], want[k], equal_nan=False) for k in want)


def _all_at_zero(plan):
    from copy import deepcopy
    bad = deepcopy(plan)
    for b in bad.buffers:
        b.offset = 0
    bad.offsets = {b.value: 0 for b in bad.buffers if b.value is not None}
    bad.arena_bytes = max([b.nbytes for b in bad.buffers] + [0])
    return bad


def test_unwritten_memory_reads_as_nan(built):
    engine = built.engine("resnet50_small")
    ctx = HostContext(engine)
    assert ctx.arena.size == engine.plan.arena_bytes and (ctx.arena == 0xFF).all()


def test_inputs_are_checked(built):
    engine = built.engine("bert_small")
    feeds = built.feeds("bert_small")
    name = engine.inputs[0].name
    cases = {
        "missing input": {k: v for k, v in feeds.items() if k != name},
        "unexpected input 'extra'": {**feeds, "extra": feeds[name]},
        "expected element type i64, got i32": {**feeds, name: feeds[name].astype(np.int32)},
        "built for shape [2, 16], got [2, 15]": {**feeds, name: feeds[name][:, :15]},
    }
    for expected, given in cases.items():
        with pytest.raises(EngineInputError) as info:
            engine.run(given, device="cpu")
        assert expected in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EngineInputError, match="choose one of auto, cpu, cuda"):
        engine.run(feeds, device="tpu")
    # Lists and scalars of the right type are taken, as the interpreter takes them.
    got = engine.run({k: v.tolist() for k, v in feeds.items()}, device="cpu")
    assert_close(got["hidden"], built.expected("bert_small")["hidden"])


def test_run_returns_the_outputs_asked_for(built):
    """`engine.run(feeds, outputs=[...])`: those outputs, in that order; unknown or repeated names
    are refused in one line (issue 14)."""
    from ember.ir.builder import Builder
    from ember.ir.types import f32
    b = Builder("three")
    x = b.input("x", f32[4, 5])
    b.output("relu", b.relu(x))
    b.output("tanh", b.tanh(x))
    b.output("sum", b.add(x, x))
    engine = ember.compile(b.build(), cache_dir=built.cache_dir)
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)}
    names = [t.name for t in engine.outputs]
    everything = engine.run(feeds, device="cpu")
    some = engine.run(feeds, device="cpu", outputs=names[::-1][:2])
    assert list(some) == names[::-1][:2]
    for name in some:
        assert np.array_equal(some[name], everything[name])
    for bad, message in ((["nope"], "the engine's outputs are"), ([names[0], names[0]], "names one twice")):
        with pytest.raises(EngineInputError, match=message) as info:
            engine.run(feeds, device="cpu", outputs=bad)
        assert "\n" not in str(info.value)


@pytest.mark.skipif(cuda.available()[0], reason="a GPU is present: auto picks it")
def test_auto_falls_back_to_the_host_with_one_line(built, capsys):
    engine = built.engine("vit_b_16_small")
    feeds = built.feeds("vit_b_16_small")
    fresh = Engine.from_bytes(engine.to_bytes())
    out = fresh.run(feeds)  # device="auto"
    assert_close(out["logits"], built.expected("vit_b_16_small")["logits"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU" in err and "host arena" in err
    fresh.run(feeds)
    assert capsys.readouterr().err == ""  # once per engine
    with pytest.raises(Exception, match="no CUDA GPU here"):
        fresh.create_context("cuda")


def test_contexts_are_independent(built):
    engine = built.engine("gpt2_small")
    feeds = built.feeds("gpt2_small")
    a, b = engine.create_context("cpu"), engine.create_context("cpu")
    other = {k: np.roll(v, 1, axis=-1) for k, v in feeds.items()}
    ra, rb = a.run(feeds), b.run(other)
    assert_close(a.run(feeds)["hidden"], ra["hidden"])
    assert not np.allclose(ra["hidden"], rb["hidden"])
    assert a.arena is not b.arena


def test_a_hand_written_engine_with_scratch_and_scalars(synthetic):
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    assert synthetic.plan.scratch[(0, 1)] == synthetic.plan.scratch[(1, 1)]  # one op, one tmp buffer
    assert synthetic.plan.scratch[(0, 2)] == synthetic.plan.scratch[(1, 2)]  # and one counter
    assert synthetic.plan.check() == []
    np.testing.assert_array_equal(synthetic.run({"x": x}, device="cpu")["y"], x * 2)
