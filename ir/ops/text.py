"""Text ops (ONNX's string ops and TfIdfVectorizer), host only.

Strings are `str` tensors: numpy object arrays of Python strings. These ops
have no device kernels and never will in any engine worth the name (Python's
Unicode handling and regular expressions are the semantics), so they carry
HostOnly. Sizes that depend on the data (how many substrings, how many
strings survive a stopword filter) are unknown dims, bounded where a bound is
known.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ember.ir import attrs as A
from ember.ir.dims import Dim, Unknown
from ember.ir.opdef import AnyTensor, Attr, HostOnly, Op, Operand, Pure, Result, register_op
from ember.ir.ops import rules
from ember.ir.types import TensorType, Type, boolean, f32, i64, string

TEXT = {Pure, HostOnly}


def _strings(op: Op, t: Type, what: str = "x") -> TensorType:
    t = rules.tensor(op, t, what)
    if t.dtype != string:
        raise op.error(f"{what} must be a str tensor, got {t}")
    return t


def _as_str(x: np.ndarray) -> np.ndarray:
    """A str array (object dtype) of the same shape."""
    return np.asarray(x, dtype=object)


@register_op("ember.string_concat", traits=TEXT)
class StringConcat(Op):
    """x + y element by element, the two broadcast (ONNX StringConcat).
    %z = ember.string_concat %x, %y : str[N]"""

    x = Operand(AnyTensor)
    y = Operand(AnyTensor)
    out = Result(AnyTensor)

    def infer(self, x: Type, y: Type) -> TensorType:
        _strings(self, x, "x")
        _strings(self, y, "y")
        shape = rules.broadcast(self, x, y)
        return TensorType(string, shape)

    @staticmethod
    def reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        a, b = np.broadcast_arrays(_as_str(x), _as_str(y))
        out = np.empty(a.shape, dtype=object)
        for i in np.ndindex(a.shape):
            out[i] = str(a[i]) + str(b[i])
        return out


@register_op("ember.regex_full_match", traits=TEXT)
class RegexFullMatch(Op):
    """True where the whole string matches `pattern` (ONNX RegexFullMatch).

    ONNX names RE2 syntax; the semantics here are Python's `re.fullmatch`, which
    reads every RE2 pattern without lookaround the same way (RE2 rejects
    lookaround and backreferences; Python accepts them).
    %m = ember.regex_full_match %x {pattern = "www\\.[a-z]+\\.com"} : bool[N]"""

    x = Operand(AnyTensor)
    pattern = Attr(A.Str)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        t = _strings(self, x)
        try:
            re.compile(self.pattern)
        except re.error as err:
            raise self.error(f"pattern {self.pattern!r} is not a regular expression: {err}") from None
        return t.with_dtype(boolean)

    @staticmethod
    def reference(x: np.ndarray, *, pattern: str) -> np.ndarray:
        regex = re.compile(pattern)
        x = _as_str(x)
        out = np.zeros(x.shape, dtype=np.bool_)
        for i in np.ndindex(x.shape):
            out[i] = regex.fullmatch(str(x[i])) is not None
        return out


@register_op("ember.string_split", traits=TEXT)
class StringSplit(Op):
    """Split each string at `delimiter` (ONNX StringSplit): substrings padded with
    "" to the longest split, along a new last axis, and the number of substrings
    of each string.

    Without a delimiter (or with ""), runs of whitespace separate and leading
    and trailing whitespace is dropped; with one, every occurrence separates
    (so consecutive delimiters give empty substrings). `maxsplit` caps the
    splits per string (the rest stays in the last substring). This is Python's
    str.split. An empty input gives a last axis of length 0.
    %parts, %n = ember.string_split %x {delimiter = "."} : str[N,?], i64[N]"""

    x = Operand(AnyTensor)
    delimiter = Attr(A.Optional(A.Str), default=None)
    maxsplit = Attr(A.Optional(A.Int), default=None)
    substrings = Result(AnyTensor)
    length = Result(AnyTensor)

    def infer(self, x: Type) -> tuple[TensorType, TensorType]:
        t = _strings(self, x)
        if t.shape is None:
            raise self.error(f"x must be ranked, got {t}")
        if self.maxsplit is not None and self.maxsplit < 0:
            raise self.error(f"maxsplit must be >= 0, got {self.maxsplit}")
        last: Dim = Unknown(self.maxsplit + 1) if self.maxsplit is not None else Unknown()
        return t.with_shape((*t.shape, last)), TensorType(i64, t.shape)

    @staticmethod
    def reference(x: np.ndarray, *, delimiter: str | None, maxsplit: int | None) -> tuple[np.ndarray, np.ndarray]:
        sep = delimiter or None
        x = _as_str(x)
        parts = [str(s).split(sep, -1 if maxsplit is None else maxsplit) for s in x.ravel()]
        width = max((len(p) for p in parts), default=0)
        out = np.full((x.size, width), "", dtype=object)
        for row, p in enumerate(parts):
            out[row, :len(p)] = p
        counts = np.array([len(p) for p in parts], dtype=np.int64)
        return out.reshape(*x.shape, width), counts.reshape(x.shape)


@register_op("ember.string_normalizer", traits=TEXT)
class StringNormalizer(Op):
    """Drop the strings equal to a stopword, then change case (ONNX StringNormalizer).

    x is [C] or [1, C]. A string is dropped when it equals a stopword, or
    equals one ignoring case when `case_sensitive` is false (compared
    lowercased). `case_change` is then applied to what is left: Python's
    Unicode str.lower/str.upper, whatever `locale` says (the locale is kept for
    the record; ONNX's default is en_US). When every string is dropped the
    result is one empty string, [1] or [1, 1], as ONNX specifies.
    %y = ember.string_normalizer %x {case_change = "upper", stopwords = ["monday"]} : str[?<=4]"""

    x = Operand(AnyTensor)
    case_change = Attr(A.OneOf("none", "lower", "upper"), default="none")
    case_sensitive = Attr(A.Bool, default=False)
    locale = Attr(A.Optional(A.Str), default=None)
    stopwords = Attr(A.Strs, default=())
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        t = _strings(self, x)
        if t.shape is None or not (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[0] == 1)):
            raise self.error(f"x must be [C] or [1, C], got {t}")
        c = t.shape[-1]
        if self.stopwords:
            c = Unknown(max(c, 1)) if isinstance(c, int) else Unknown()
        return t.with_shape((*t.shape[:-1], c))

    @staticmethod
    def reference(x: np.ndarray, *, case_change: str, case_sensitive: bool, locale: str | None,
                  stopwords: Sequence[str]) -> np.ndarray:
        words = [str(s) for s in _as_str(x).reshape(-1)]
        if stopwords:
            if case_sensitive:
                stops = set(stopwords)
                words = [w for w in words if w not in stops]
            else:
                stops = {s.lower() for s in stopwords}
                words = [w for w in words if w.lower() not in stops]
            if not words:
                words = [""]
        if case_change == "lower":
            words = [w.lower() for w in words]
        elif case_change == "upper":
            words = [w.upper() for w in words]
        out = np.array(words, dtype=object)
        return out.reshape(1, -1) if x.ndim == 2 else out


@register_op("ember.tfidf_vectorizer", traits=TEXT)
class TfIdfVectorizer(Op):
    """Count the pool's n-grams in each row of x and weigh the counts (ONNX TfIdfVectorizer).

    x is [C] or [B, C] of i32, i64 or str. The pool lists n-grams by length:
    `ngram_counts[k]` is where the (k+1)-grams start in `pool_int64s` (or
    `pool_strings`), and the j-th n-gram of the whole pool is counted into
    output column `ngram_indexes[j]`. An n-gram of length n occurs at position
    p with skip s when x[p], x[p+s], ..., x[p+(n-1)s] equal it; skips run over
    1..max_skip_count+1 for n >= 2, and unigrams count once. Only lengths in
    [min_gram_length, max_gram_length] are counted; a pool n-gram listed twice
    counts into the later one's column. The result is f32 [O] or [B, O], O =
    max(ngram_indexes) + 1: the counts ("TF"), weights[col] where the count is
    > 0 ("IDF"; 1 without weights), or weights[col] * count ("TFIDF"; the
    count without weights).
    %y = ember.tfidf_vectorizer %x {mode = "TF", min_gram_length = 2, max_gram_length = 2, max_skip_count = 0, ngram_counts = [0, 4], ngram_indexes = [0, 1, 2], pool_int64s = [2, 3, 5, 4, 5, 6, 7, 8, 6, 7]} : f32[3]"""

    x = Operand(AnyTensor)
    mode = Attr(A.OneOf("TF", "IDF", "TFIDF"))
    min_gram_length = Attr(A.Int)
    max_gram_length = Attr(A.Int)
    max_skip_count = Attr(A.Int)
    ngram_counts = Attr(A.Ints)
    ngram_indexes = Attr(A.Ints)
    pool_int64s = Attr(A.Optional(A.Ints), default=None)
    pool_strings = Attr(A.Optional(A.Strs), default=None)
    weights = Attr(A.Optional(A.Floats), default=None)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        t = rules.tensor(self, x, "x")
        if t.shape is None or len(t.shape) not in (1, 2):
            raise self.error(f"x must be [C] or [B, C], got {t}")
        if (self.pool_int64s is None) == (self.pool_strings is None):
            raise self.error("give exactly one of pool_int64s and pool_strings")
        if self.pool_strings is not None and t.dtype != string:
            raise self.error(f"pool_strings needs a str input, got {t}")
        if self.pool_int64s is not None and t.dtype.name not in ("i32", "i64"):
            raise self.error(f"pool_int64s needs an i32 or i64 input, got {t}")
        if not 1 <= self.min_gram_length <= self.max_gram_length:
            raise self.error(f"gram lengths must satisfy 1 <= min ({self.min_gram_length}) <= max "
                             f"({self.max_gram_length})")
        if self.max_skip_count < 0:
            raise self.error(f"max_skip_count must be >= 0, got {self.max_skip_count}")
        pool = self.pool_int64s if self.pool_int64s is not None else self.pool_strings
        counts = list(self.ngram_counts)
        if any(b < a for a, b in zip(counts, counts[1:])) or any(c < 0 or c > len(pool) for c in counts):
            raise self.error(f"ngram_counts {counts} must be ascending starts into the pool of {len(pool)}")
        n_grams = 0
        for k, start in enumerate(counts):
            end = counts[k + 1] if k + 1 < len(counts) else len(pool)
            if (end - start) % (k + 1):
                raise self.error(f"the {k + 1}-grams take {end - start} pool entries, not a multiple of {k + 1}")
            n_grams += (end - start) // (k + 1)
        if len(self.ngram_indexes) != n_grams:
            raise self.error(f"ngram_indexes has {len(self.ngram_indexes)} entries for the pool's {n_grams} n-grams")
        if any(i < 0 for i in self.ngram_indexes):
            raise self.error(f"ngram_indexes must be >= 0, got {list(self.ngram_indexes)}")
        width = max(self.ngram_indexes, default=-1) + 1
        if self.weights is not None and len(self.weights) != width:
            raise self.error(f"weights has {len(self.weights)} entries; the output has {width} columns")
        return TensorType(f32, (*t.shape[:-1], width))

    @staticmethod
    def reference(x: np.ndarray, *, mode: str, min_gram_length: int, max_gram_length: int, max_skip_count: int,
                  ngram_counts: Sequence[int], ngram_indexes: Sequence[int], pool_int64s: Sequence[int] | None,
                  pool_strings: Sequence[str] | None, weights: Sequence[float] | None) -> np.ndarray:
        pool = list(pool_int64s) if pool_int64s is not None else list(pool_strings or ())
        column: dict[tuple, int] = {}
        j = 0
        for k, start in enumerate(ngram_counts):
            n = k + 1
            end = ngram_counts[k + 1] if k + 1 < len(ngram_counts) else len(pool)
            for at in range(start, end, n):
                if min_gram_length <= n <= max_gram_length:
                    column[tuple(pool[at:at + n])] = ngram_indexes[j]
                j += 1
        width = max(ngram_indexes, default=-1) + 1
        rows = x.reshape(1, -1) if x.ndim == 1 else x
        counts = np.zeros((rows.shape[0], width), dtype=np.int64)
        for r, row in enumerate(rows):
            items = [str(v) for v in row] if pool_strings is not None else [int(v) for v in row]
            for n in range(min_gram_length, max_gram_length + 1):
                for skip in range(1, (max_skip_count + 1 if n > 1 else 1) + 1):
                    for p in range(len(items) - (n - 1) * skip):
                        col = column.get(tuple(items[p:p + (n - 1) * skip + 1:skip]))
                        if col is not None:
                            counts[r, col] += 1
        w = np.asarray(weights, dtype=np.float32) if weights is not None else None
        if mode == "TF":
            out = counts.astype(np.float32)
        elif mode == "IDF":
            out = np.where(counts > 0, w if w is not None else np.float32(1), np.float32(0))
        else:
            out = counts * w if w is not None else counts
        out = np.asarray(out, dtype=np.float32)
        return out.reshape(width) if x.ndim == 1 else out


__all__ = ["StringConcat", "RegexFullMatch", "StringSplit", "StringNormalizer", "TfIdfVectorizer"]
