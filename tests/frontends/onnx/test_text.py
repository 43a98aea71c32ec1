"""String ops and TfIdfVectorizer import: Ember against onnxruntime, and the types they import to."""

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as h
from onnx_check import check_node, imported, node_model, run_ember, run_onnx_reference


def strs(*items):
    return np.array(items, dtype=object)


def same(got, want):
    for g, w in zip(got, want):
        assert np.asarray(g).shape == np.asarray(w).shape
        assert np.asarray(g).tolist() == np.asarray(w).tolist()


@pytest.mark.parametrize("x,y", [(strs("abc", "的"), strs(".com", "中")), (strs("cat", "dog"), strs("s")),
                                 (np.array("cat", dtype=object), np.array("", dtype=object))])
def test_string_concat(x, y):
    check_node("StringConcat", {"a": x, "b": y}, opset=20)


@pytest.mark.parametrize("pattern", [r"www\.[\w.-]+\.\bcom\b", r"(\W|^)[\w.\-]{0,25}@(yahoo|gmail)\.com(\W|$)"])
def test_regex_full_match(pattern):
    x = strs(["www.google.com", "account@gmail.com"], ["www.bbc.co.uk", "a@yahoo.com"])
    check_node("RegexFullMatch", {"x": x}, {"pattern": pattern}, opset=20)


@pytest.mark.parametrize("attrs", [{}, {"delimiter": "-"}, {"delimiter": ""}, {"maxsplit": 1},
                                   {"delimiter": ".", "maxsplit": 1}])
def test_string_split(attrs):
    x = strs(["o-n-n--x-", " hello  world . x"], ["a.b.c", "  "])
    check_node("StringSplit", {"x": x}, attrs, outputs=("parts", "n"), opset=20)


def test_string_split_of_an_empty_string_at_a_delimiter_is_one_empty_substring():
    """As onnx.reference (Python's str.split) has it; onnxruntime counts 0 substrings."""
    got, _ = check_node("StringSplit", {"x": strs("", "a-b")}, {"delimiter": "-"}, outputs=("parts", "n"),
                        opset=20, reference="onnx")
    assert got[1].tolist() == [1, 2]


@pytest.mark.parametrize("x,attrs,want", [
    (strs("monday", "tuesday", "Monday"), {"stopwords": ["monday"]}, ["tuesday"]),
    (strs("monday", "tuesday", "Monday"), {"stopwords": ["monday"], "is_case_sensitive": 1,
                                           "case_change_action": "UPPER"}, ["TUESDAY", "MONDAY"]),
    (strs(["Monday", "tuesday", "WEDNESDAY"]), {"case_change_action": "LOWER", "stopwords": ["Tuesday"]},
     [["monday", "wednesday"]]),
    (strs("monday", "MONDAY"), {"stopwords": ["monday"]}, [""]),
    (strs("a", "B"), {"case_change_action": "UPPER"}, ["A", "B"]),
])
def test_string_normalizer(x, attrs, want):
    """By hand: onnxruntime needs the en_US.UTF-8 locale, which this machine lacks, and
    onnx.reference matches stopwords case-sensitively when there is no case change."""
    (got,) = run_ember(node_model("StringNormalizer", {"x": x}, attrs, opset=10), {"x": x})
    assert got.dtype == object and got.tolist() == want
    if attrs.get("is_case_sensitive") or attrs.get("case_change_action", "NONE") != "NONE":
        (ref,) = run_onnx_reference(node_model("StringNormalizer", {"x": x}, attrs, opset=10), {"x": x})
        assert ref.tolist() == want


@pytest.mark.parametrize("x", [np.array([1, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8], np.int32),
                               np.array([[1, 1, 3, 3, 3, 7], [8, 6, 7, 5, 6, 8]], np.int64)])
@pytest.mark.parametrize("mode,extra", [("TF", {}), ("IDF", {}),
                                        ("TFIDF", {"weights": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})])
def test_tfidf_vectorizer(x, mode, extra):
    attrs = {"mode": mode, "min_gram_length": 1, "max_gram_length": 2, "max_skip_count": 3,
             "ngram_counts": [0, 4], "ngram_indexes": [0, 1, 2, 3, 4, 5, 6],
             "pool_int64s": [2, 3, 5, 4, 5, 6, 7, 8, 6, 7], **extra}
    check_node("TfIdfVectorizer", {"x": x}, attrs, opset=9)


def test_tfidf_vectorizer_strings():
    attrs = {"mode": "TF", "min_gram_length": 1, "max_gram_length": 2, "max_skip_count": 0,
             "ngram_counts": [0, 2], "ngram_indexes": [0, 1, 2], "pool_strings": ["a", "b", "a", "b"]}
    check_node("TfIdfVectorizer", {"x": strs("a", "b", "a", "b", "c")}, attrs, opset=9)


def test_text_ops_import_with_symbolic_shapes():
    split = node_model("StringSplit", {"x": strs("a b")}, {}, outputs=("parts", "n"), opset=20)
    split.graph.input[0].CopyFrom(h.make_tensor_value_info("x", TP.STRING, ["N"]))
    module = imported(split)
    assert [str(t) for t in module.main.output_types] == ["str[N,?]", "i64[N]"]
    norm = node_model("StringNormalizer", {"x": strs("a")}, {"stopwords": ["a"]}, opset=10)
    norm.graph.input[0].CopyFrom(h.make_tensor_value_info("x", TP.STRING, [1, "C"]))
    assert [op.name for op in imported(norm).walk()] == ["ember.string_normalizer"]
    assert str(imported(norm).main.output_types[0]) == "str[1,?]"
