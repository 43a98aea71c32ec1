"""Fuzz the ONNX importer: `ember.load(path.onnx)` on mutated models (see harness.py for the property).

CI: the issue's external-data corpus, `conftest.CI["onnx"]["corpus"]` mutated models
(bytes flipped, cut and moved; protobuf fields set to extreme values, dropped,
duplicated, swapped; dims 10^12 and -1, element types, missing and renamed
inputs, attributes of another type, opsets, initializer data) and
`conftest.CI["onnx"]["examples"]` hypothesis examples of the same mutations.
"""

from __future__ import annotations

from budget import corpus_size, fuzz_settings
from corpus import ONNX_KINDS, onnx_case, onnx_corpus
from harness import Record
from hypothesis import given
from hypothesis import strategies as st
from targets import run_onnx


def test_onnx_corpus(onnx_seeds, case_base):
    record = Record("onnx")
    for case in onnx_corpus(onnx_seeds, corpus_size("onnx")):
        run_onnx(record, case, case_base)
    assert not record.failures, record.summary()


@st.composite
def mutations(draw, names):
    seed = draw(st.sampled_from(names))
    muts = draw(st.lists(st.tuples(st.sampled_from(ONNX_KINDS), st.integers(0, 2 ** 32 - 1)), min_size=1,
                         max_size=3))
    return seed, muts


def test_onnx_hypothesis(onnx_seeds, case_base):
    @fuzz_settings("onnx")
    @given(mutations(sorted(onnx_seeds)))
    def one(drawn):
        seed, muts = drawn
        failure = run_onnx(Record("onnx"), onnx_case(onnx_seeds, seed, muts), case_base)
        assert failure is None, str(failure)
    one()
