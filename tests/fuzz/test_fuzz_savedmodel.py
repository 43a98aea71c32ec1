"""Fuzz the SavedModel reader: `ember.load(folder)` on the committed tiny SavedModel with
saved_model.pb mutated (any protobuf field; nodes' ops, inputs and attributes; flipped
bytes), the checkpoint's index and shard mutated, files removed or replaced by
folders, FIFOs or empty files, and symlinked layouts.
"""

from __future__ import annotations

from budget import corpus_size, fuzz_settings
from corpus import SAVEDMODEL_KINDS, savedmodel_case, savedmodel_corpus
from harness import Record
from hypothesis import given
from hypothesis import strategies as st
from targets import run_savedmodel


def test_savedmodel_corpus(savedmodel_seed, case_base):
    record = Record("savedmodel")
    for case in savedmodel_corpus(savedmodel_seed, corpus_size("savedmodel")):
        run_savedmodel(record, case, case_base)
    assert not record.failures, record.summary()


def test_savedmodel_hypothesis(savedmodel_seed, case_base):
    @fuzz_settings("savedmodel")
    @given(st.lists(st.tuples(st.sampled_from(SAVEDMODEL_KINDS), st.integers(0, 2 ** 32 - 1)), min_size=1,
                    max_size=3))
    def one(muts):
        failure = run_savedmodel(Record("savedmodel"), savedmodel_case(savedmodel_seed, muts), case_base)
        assert failure is None, str(failure)
    one()
