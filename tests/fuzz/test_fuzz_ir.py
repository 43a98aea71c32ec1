"""Fuzz the IR: `ember.ir.parse(text)` and `ember.load(x.ir)` with its weights file, on
mutated text (dims, element types, numbers, deleted/duplicated/moved lines, renamed
values, stray tokens, deep nesting, flipped bytes) and mutated weights files.
A module that parses must verify and print back to text that parses to the same text.
"""

from __future__ import annotations

from budget import corpus_size, fuzz_settings
from corpus import IR_KINDS, ir_case, ir_corpus
from harness import Record
from hypothesis import given
from hypothesis import strategies as st
from targets import run_ir


def test_ir_corpus(ir_seeds, case_base):
    record = Record("ir")
    for case in ir_corpus(ir_seeds, corpus_size("ir")):
        run_ir(record, case, case_base)
    assert not record.failures, record.summary()


def test_ir_hypothesis(ir_seeds, case_base):
    @fuzz_settings("ir")
    @given(st.sampled_from(sorted(ir_seeds)),
           st.lists(st.tuples(st.sampled_from(IR_KINDS), st.integers(0, 2 ** 32 - 1)), min_size=1, max_size=3))
    def one(seed, muts):
        failure = run_ir(Record("ir"), ir_case(ir_seeds, seed, muts), case_base)
        assert failure is None, str(failure)
    one()
