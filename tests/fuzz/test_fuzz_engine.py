"""Fuzz the engine loader: `ember.Engine.load(path)` on engines with flipped, cut and moved
bytes (the checksums refuse them) and, past the checksums, sections edited and the
checksums recomputed: any JSON entry of the plan, io, kernels or weights index
replaced, deleted, duplicated or moved; the IR text mutated; weights and binaries
flipped. An engine that loads must have a sane signature and run on the host arena
(random inputs) or refuse with an EmberError.
"""

from __future__ import annotations

from budget import corpus_size, fuzz_settings
from corpus import ENGINE_KINDS, engine_case, engine_corpus
from harness import Record
from hypothesis import given
from hypothesis import strategies as st
from targets import run_engine


def test_engine_corpus(engine_seeds, case_base):
    record = Record("engine")
    for case in engine_corpus(engine_seeds, corpus_size("engine")):
        run_engine(record, case, case_base)
    assert not record.failures, record.summary()


def test_engine_hypothesis(engine_seeds, case_base):
    @fuzz_settings("engine")
    @given(st.sampled_from(sorted(engine_seeds)),
           st.lists(st.tuples(st.sampled_from(ENGINE_KINDS), st.integers(0, 2 ** 32 - 1)), min_size=1, max_size=3))
    def one(seed, muts):
        failure = run_engine(Record("engine"), engine_case(engine_seeds, seed, muts), case_base)
        assert failure is None, str(failure)
    one()
