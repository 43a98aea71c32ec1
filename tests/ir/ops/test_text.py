"""Text ops (string_concat, regex_full_match, string_split, string_normalizer,
tfidf_vectorizer): against onnx.reference, hand-computed cases, symbolic shapes, errors."""

import numpy as np
import pytest
from oracle import assert_close, ember_op, onnx_op

from ember import ir
from ember.errors import ShapeError, VerifyError
from ember.ir.opdef import HostOnly, lookup


def strs(*rows):
    return np.array(rows, dtype=object)


def same_strings(got, want):
    got, want = np.asarray(got), np.asarray(want, dtype=object)
    assert got.dtype == object and got.shape == want.shape, (got, want)
    assert got.tolist() == want.tolist()


def test_text_ops_are_host_only():
    for name in ("string_concat", "regex_full_match", "string_split", "string_normalizer", "tfidf_vectorizer"):
        assert HostOnly in lookup(f"ember.{name}").traits


# -- string_concat --------------------------------------------------------------------------------
@pytest.mark.parametrize("x,y", [
    (strs("abc", "def"), strs(".com", ".net")),
    (strs("cat", "dog", "snake"), strs("s")),
    (np.array("cat", dtype=object), np.array("s", dtype=object)),
    (strs("的", ""), strs("的", "abc")),
    (strs(["a", "b"], ["c", "d"]), strs("1", "2")),
])
def test_string_concat_vs_onnx(x, y):
    (got,) = ember_op("ember.string_concat", [x, y])
    (want,) = onnx_op("StringConcat", [x, y])
    same_strings(got, want)


def test_string_concat_by_hand_and_symbolic():
    (got,) = ember_op("ember.string_concat", [strs(["a", "b"]), strs(["x"], ["y"])])
    same_strings(got, [["ax", "bx"], ["ay", "by"]])
    b = ir.Builder()
    x = b.input("x", ir.string["N", 1])
    y = b.input("y", ir.string[3])
    assert str(b.string_concat(x, y).type) == "str[N,3]"


def test_string_concat_errors():
    b = ir.Builder()
    x = b.input("x", ir.string[2])
    with pytest.raises(ShapeError, match="y must be a str tensor"):
        b.string_concat(x, b.input("n", ir.i64[2]))
    with pytest.raises(ShapeError, match="broadcast"):
        b.string_concat(x, b.input("z", ir.string[3]))


# -- regex_full_match --------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern,x", [
    (r"www\.[\w.-]+\.\bcom\b", strs("www.google.com", "www.facebook.com", "www.bbc.co.uk")),
    (r"(\W|^)[\w.\-]{0,25}@(yahoo|gmail)\.com(\W|$)", strs(["account@gmail.com", "a@hotmail.com"],
                                                         ["not email", "account2@yahoo.com"])),
    ("a+", np.empty((2, 0), dtype=object)),
])
def test_regex_full_match_vs_onnx(pattern, x):
    (got,) = ember_op("ember.regex_full_match", [x], {"pattern": pattern})
    (want,) = onnx_op("RegexFullMatch", [x], {"pattern": pattern})
    assert got.dtype == np.bool_ and got.shape == x.shape
    assert got.tolist() == want.tolist()


def test_regex_full_match_by_hand():
    (got,) = ember_op("ember.regex_full_match", [strs("ab", "abc", "", "aab")], {"pattern": "a*b"})
    assert got.tolist() == [True, False, False, True]  # the whole string must match, not a prefix


def test_regex_errors():
    b = ir.Builder()
    x = b.input("x", ir.string["N"])
    assert str(b.regex_full_match(x, pattern="a").type) == "bool[N]"
    with pytest.raises(ShapeError, match="is not a regular expression"):
        b.regex_full_match(x, pattern="(a")
    with pytest.raises(ShapeError, match="x must be a str tensor"):
        b.regex_full_match(b.input("f", ir.f32[2]), pattern="a")


# -- string_split ---------------------------------------------------------------------------------
@pytest.mark.parametrize("x,attrs", [
    (strs("abc.com", "def.net"), {"delimiter": "."}),
    (strs(["hello world", "def.net"], ["o n n x", "the quick brown fox"]), {"maxsplit": 2}),
    (strs("o-n-n--x-", "o-n----nx"), {"delimiter": "-"}),
    (strs("hello world !", "  hello   world !", " hello world   ! "), {"delimiter": ""}),
    (strs("hello world !", "  hello   world !", " hello world   ! "), {}),
    (np.empty((0,), dtype=object), {}),
    (strs("a,b,c", "d"), {"delimiter": ",", "maxsplit": 1}),
])
def test_string_split_vs_onnx(x, attrs):
    got = ember_op("ember.string_split", [x], attrs)
    want = onnx_op("StringSplit", [x], attrs, n_outputs=2)
    same_strings(got[0], want[0])
    assert got[1].dtype == np.int64 and got[1].tolist() == want[1].tolist()


def test_string_split_by_hand():
    parts, n = ember_op("ember.string_split", [strs("a::b", "", "c")], {"delimiter": ":"})
    same_strings(parts, [["a", "", "b"], ["", "", ""], ["c", "", ""]])
    assert n.tolist() == [3, 1, 1]  # "" split at ":" is one empty substring
    parts, n = ember_op("ember.string_split", [strs("  ", "x y")])
    same_strings(parts, [["", ""], ["x", "y"]])
    assert n.tolist() == [0, 2]  # whitespace splitting drops the empty runs
    parts, n = ember_op("ember.string_split", [np.array("a b c", dtype=object)], {"maxsplit": 1})
    same_strings(parts, ["a", "b c"])
    assert n.shape == () and int(n) == 2


def test_string_split_types():
    b = ir.Builder()
    x = b.input("x", ir.string["N", 2])
    parts, n = b.string_split(x, delimiter=",")
    assert (str(parts.type), str(n.type)) == ("str[N,2,?]", "i64[N,2]")
    parts, n = b.string_split(x, maxsplit=2)
    assert str(parts.type) == "str[N,2,?<=3]"
    with pytest.raises(ShapeError, match="maxsplit must be >= 0"):
        b.string_split(x, maxsplit=-1)
    with pytest.raises(ShapeError, match="x must be a str tensor"):
        b.string_split(b.input("i", ir.i32[2]))


# -- string_normalizer --------------------------------------------------------------------------------
MONDAY = strs("monday", "tuesday", "wednesday", "thursday")


@pytest.mark.parametrize("x,attrs,onnx_attrs", [
    (strs("monday", "tuesday"), {"case_sensitive": True}, {"is_case_sensitive": 1}),
    (MONDAY, {"case_sensitive": True, "stopwords": ["monday"]}, {"is_case_sensitive": 1, "stopwords": ["monday"]}),
    (MONDAY, {"case_change": "lower", "case_sensitive": True, "stopwords": ["monday"]},
     {"case_change_action": "LOWER", "is_case_sensitive": 1, "stopwords": ["monday"]}),
    (MONDAY, {"case_change": "upper", "case_sensitive": True, "stopwords": ["monday"]},
     {"case_change_action": "UPPER", "is_case_sensitive": 1, "stopwords": ["monday"]}),
    (strs("monday", "monday"), {"case_change": "upper", "case_sensitive": True, "stopwords": ["monday"]},
     {"case_change_action": "UPPER", "is_case_sensitive": 1, "stopwords": ["monday"]}),
    (strs(["Monday", "tuesday", "wednesday", "Monday", "tuesday", "wednesday"]),
     {"case_change": "upper", "stopwords": ["monday"]}, {"case_change_action": "UPPER", "stopwords": ["monday"]}),
    (strs(["Monday", "TUESDAY"]), {"case_change": "lower"}, {"case_change_action": "LOWER"}),
])
def test_string_normalizer_vs_onnx(x, attrs, onnx_attrs):
    (got,) = ember_op("ember.string_normalizer", [x], attrs)
    (want,) = onnx_op("StringNormalizer", [x], onnx_attrs)
    same_strings(got, want)


def test_string_normalizer_by_hand():
    (got,) = ember_op("ember.string_normalizer", [strs("The", "cat", "THE", "end")],
                      {"stopwords": ["the"], "case_change": "none"})
    same_strings(got, ["cat", "end"])  # case-insensitive by default
    (got,) = ember_op("ember.string_normalizer", [strs("The", "cat", "the")],
                      {"stopwords": ["the"], "case_sensitive": True})
    same_strings(got, ["The", "cat"])
    (got,) = ember_op("ember.string_normalizer", [strs(["a", "A"])], {"stopwords": ["A"]})
    same_strings(got, [[""]])  # all dropped: one empty string, [1, 1] for a [1, C] input
    (got,) = ember_op("ember.string_normalizer", [strs("Straße", "")], {"case_change": "upper"})
    same_strings(got, ["STRASSE", ""])  # Python's Unicode case mapping; empty strings stay


def test_string_normalizer_types_and_errors():
    b = ir.Builder()
    x = b.input("x", ir.string[4])
    assert str(b.string_normalizer(x).type) == "str[4]"
    assert str(b.string_normalizer(x, stopwords=["a"]).type) == "str[?<=4]"
    assert str(b.string_normalizer(b.input("r", ir.string[1, "C"]), stopwords=["a"]).type) == "str[1,?]"
    assert str(b.string_normalizer(b.input("e", ir.string[0]), stopwords=["a"]).type) == "str[?<=1]"
    with pytest.raises(ShapeError, match=r"x must be \[C\] or \[1, C\]"):
        b.string_normalizer(b.input("m", ir.string[2, 2]))
    with pytest.raises(VerifyError, match="case_change"):
        b.string_normalizer(x, case_change="title")


# -- tfidf_vectorizer ---------------------------------------------------------------------------------
POOL = {"ngram_counts": [0, 4], "ngram_indexes": [0, 1, 2, 3, 4, 5, 6], "pool_int64s": [2, 3, 5, 4, 5, 6, 7, 8, 6, 7]}
ROW = np.array([1, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8], dtype=np.int32)


@pytest.mark.parametrize("x", [ROW, ROW.reshape(2, 6), ROW.astype(np.int64)])
@pytest.mark.parametrize("grams", [(2, 2, 0), (2, 2, 5), (1, 2, 5), (1, 1, 3), (1, 2, 0)])
@pytest.mark.parametrize("mode,weights", [("TF", None), ("IDF", [0.5, 1, 2, 3, 4, 5, 6]),
                                          ("TFIDF", [0.5, 1, 2, 3, 4, 5, 6])])
def test_tfidf_vs_onnx(x, grams, mode, weights):
    lo, hi, skip = grams
    attrs = {"mode": mode, "min_gram_length": lo, "max_gram_length": hi, "max_skip_count": skip, **POOL}
    if weights is not None:
        attrs["weights"] = weights
    (got,) = ember_op("ember.tfidf_vectorizer", [x], attrs)
    (want,) = onnx_op("TfIdfVectorizer", [x], attrs, opset=9)
    assert got.dtype == np.float32
    assert_close(got, want)


def test_tfidf_strings_and_empty_level_vs_onnx():
    x = strs("a", "b", "a", "c", "b", "a")
    attrs = {"mode": "TF", "min_gram_length": 1, "max_gram_length": 2, "max_skip_count": 1,
             "ngram_counts": [0, 2], "ngram_indexes": [2, 0, 1], "pool_strings": ["a", "c", "b", "a"]}
    (got,) = ember_op("ember.tfidf_vectorizer", [x], attrs)
    (want,) = onnx_op("TfIdfVectorizer", [x], attrs, opset=9)
    assert_close(got, want)
    empty = {"mode": "TF", "min_gram_length": 2, "max_gram_length": 2, "max_skip_count": 0,
             "ngram_counts": [0, 0], "ngram_indexes": [0, 1, 2], "pool_int64s": [5, 6, 7, 8, 6, 7]}
    (got,) = ember_op("ember.tfidf_vectorizer", [ROW], empty)
    (want,) = onnx_op("TfIdfVectorizer", [ROW], empty, opset=9)
    assert_close(got, want)


def test_tfidf_by_hand():
    x = np.array([[1, 2, 1, 2, 9], [2, 1, 9, 9, 1]], dtype=np.int64)
    attrs = {"mode": "TF", "min_gram_length": 1, "max_gram_length": 2, "max_skip_count": 1,
             "ngram_counts": [0, 2], "ngram_indexes": [3, 2, 0, 1], "pool_int64s": [1, 9, 1, 2, 2, 1]}
    (got,) = ember_op("ember.tfidf_vectorizer", [x], attrs)
    # Pool: unigrams 1 -> col 3, 9 -> col 2; bigrams (1,2) -> col 0, (2,1) -> col 1.
    # Row 0: 1 twice, 9 once; skip-1 pairs (1,2) twice and (2,1) once; skip-2 pairs (1,1), (2,2),
    # (1,9) are not in the pool. Row 1: 1 twice, 9 twice; (2,1) once at skip 1; skip 2 finds none.
    assert got.tolist() == [[2, 1, 1, 2], [0, 1, 2, 2]]
    (got,) = ember_op("ember.tfidf_vectorizer", [x], {**attrs, "mode": "TFIDF", "weights": [1, 10, 100, 1000]})
    assert got.tolist() == [[2, 10, 100, 2000], [0, 10, 200, 2000]]
    # Without weights (onnx.reference cannot run these): IDF marks presence, TFIDF counts.
    (got,) = ember_op("ember.tfidf_vectorizer", [x], {**attrs, "mode": "IDF"})
    assert got.tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    (got,) = ember_op("ember.tfidf_vectorizer", [x], {**attrs, "mode": "TFIDF"})
    assert got.tolist() == [[2, 1, 1, 2], [0, 1, 2, 2]]


def test_tfidf_types_and_errors():
    b = ir.Builder()
    x = b.input("x", ir.i64["B", "C"])
    base = {"mode": "TF", "min_gram_length": 1, "max_gram_length": 1, "max_skip_count": 0,
            "ngram_counts": [0], "ngram_indexes": [4, 1], "pool_int64s": [7, 8]}
    assert str(b.tfidf_vectorizer(x, **base).type) == "f32[B,5]"
    assert str(b.tfidf_vectorizer(b.input("v", ir.i32["C"]), **base).type) == "f32[5]"
    cases = [
        ({"pool_strings": ["a"]}, "exactly one of pool_int64s and pool_strings"),
        ({"ngram_indexes": [0]}, "ngram_indexes has 1 entries for the pool's 2 n-grams"),
        ({"min_gram_length": 2}, "gram lengths must satisfy"),
        ({"ngram_counts": [0, 1]}, "the 2-grams take 1 pool entries"),
        ({"weights": [1.0]}, "weights has 1 entries; the output has 5 columns"),
        ({"max_skip_count": -1}, "max_skip_count must be >= 0"),
    ]
    for change, message in cases:
        with pytest.raises(ShapeError, match=message):
            b.tfidf_vectorizer(x, **{**base, **change})
    with pytest.raises(ShapeError, match="pool_int64s needs an i32 or i64 input"):
        b.tfidf_vectorizer(b.input("s", ir.string[3]), **base)
    with pytest.raises(ShapeError, match=r"x must be \[C\] or \[B, C\]"):
        b.tfidf_vectorizer(b.input("t", ir.i64[1, 2, 3]), **base)
