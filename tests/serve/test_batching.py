"""serve/batching.py: requests of one Triton execution grouped by shape, run as one call per
group, and split back so that each request gets exactly its own rows."""

from __future__ import annotations

import numpy as np
from ember.serve.batching import run_batched
from hypothesis import given, settings
from hypothesis import strategies as st


class Refused(ValueError):
    pass


def make_run(calls: list[int], refuse_width: int | None = None):
    """A stand-in engine whose answer depends on each row and on the row width; it refuses one width."""
    def run(feed):
        x = feed["x"]
        calls.append(x.shape[0])
        if refuse_width is not None and x.shape[1] == refuse_width:
            raise Refused(f"width {x.shape[1]} is outside the profile")
        return {"y": x.sum(axis=1, keepdims=True) * 10 + x.shape[1], "z": x[:, ::-1].copy()}
    return run


requests_strategy = st.lists(st.tuples(st.integers(1, 4), st.sampled_from([2, 3, 5])), min_size=1, max_size=12)


@settings(max_examples=60)
@given(requests_strategy, st.integers(0, 2**31 - 1))
def test_each_request_gets_its_own_rows(shapes, seed):
    rng = np.random.default_rng(seed)
    feeds = [{"x": rng.standard_normal((b, w)).astype(np.float32)} for b, w in shapes]
    calls: list[int] = []
    outcomes, n = run_batched(feeds, make_run(calls), batched=True, is_input_error=lambda e: isinstance(e, Refused))
    assert n == len(calls) == len({w for _, w in shapes})  # one call per row width
    for feed, outcome in zip(feeds, outcomes):
        alone = make_run([])(feed)
        assert outcome.error is None
        for name in ("y", "z"):
            np.testing.assert_allclose(outcome.outputs[name], alone[name], rtol=1e-6)


@settings(max_examples=40)
@given(requests_strategy)
def test_a_refused_request_fails_alone(shapes):
    feeds = [{"x": np.ones((b, w), np.float32)} for b, w in shapes]
    outcomes, _ = run_batched(feeds, make_run([], refuse_width=3), batched=True,
                              is_input_error=lambda e: isinstance(e, Refused))
    for (_, w), feed, outcome in zip(shapes, feeds, outcomes):
        if w == 3:
            assert outcome.invalid and "width 3 is outside the profile" in outcome.error
        else:
            assert outcome.error is None
            np.testing.assert_array_equal(outcome.outputs["y"], make_run([])(feed)["y"])


def test_an_engine_failure_fails_the_group_as_internal():
    def broken(feed):
        raise RuntimeError("CUDA_ERROR_ILLEGAL_ADDRESS")
    outcomes, calls = run_batched([{"x": np.ones((1, 2))}, {"x": np.ones((2, 2))}], broken, batched=True,
                                  is_input_error=lambda e: False)
    assert calls == 1
    assert all(not o.invalid and "RuntimeError: CUDA_ERROR_ILLEGAL_ADDRESS" in o.error for o in outcomes)


def test_an_unbatched_engine_runs_each_request_alone():
    calls: list[int] = []
    feeds = [{"x": np.ones((2, 3), np.float32)} for _ in range(3)]
    outcomes, n = run_batched(feeds, make_run(calls), batched=False, is_input_error=lambda e: False)
    assert n == 3 and calls == [2, 2, 2] and all(o.outputs["y"].shape == (2, 1) for o in outcomes)


def test_a_stacker_reuses_its_buffers_and_gives_the_same_answers():
    from ember.serve.batching import Stacker
    stack = Stacker()
    rng = np.random.default_rng(0)
    for widths in ([3, 3], [3, 3, 3], [3]):
        feeds = [{"x": rng.standard_normal((2, w)).astype(np.float32)} for w in widths]
        outcomes, _ = run_batched(feeds, make_run([]), batched=True, is_input_error=lambda e: False, stack=stack)
        for feed, outcome in zip(feeds, outcomes):
            np.testing.assert_array_equal(outcome.outputs["z"], make_run([])(feed)["z"])
    (buffer,) = stack.buffers.values()
    assert buffer.shape == (6, 3)  # grown once, to the largest batch, and kept
