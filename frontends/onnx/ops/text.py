"""String ops and TfIdfVectorizer, onto Ember's host-only text ops (ir/ops/text.py)."""

from __future__ import annotations

from typing import Any

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter


@converter("StringConcat", since=20)
def string_concat(ctx: NodeContext) -> Any:
    return ctx.op("ember.string_concat", ctx.input(0), ctx.input(1))


@converter("RegexFullMatch", since=20)
def regex_full_match(ctx: NodeContext) -> Any:
    pattern = ctx.attr("pattern")
    if pattern is None:
        raise ctx.fail("RegexFullMatch needs the pattern attribute")
    return ctx.op("ember.regex_full_match", ctx.input(0), pattern=pattern)


@converter("StringSplit", since=20)
def string_split(ctx: NodeContext) -> Any:
    return list(ctx.op("ember.string_split", ctx.input(0), delimiter=ctx.attr("delimiter"),
                       maxsplit=ctx.attr("maxsplit")))


@converter("StringNormalizer", since=10)
def string_normalizer(ctx: NodeContext) -> Any:
    action = ctx.attr("case_change_action", "NONE")
    if action not in ("NONE", "LOWER", "UPPER"):
        raise ctx.fail(f"case_change_action must be NONE, LOWER or UPPER, got {action!r}")
    return ctx.op("ember.string_normalizer", ctx.input(0), case_change=action.lower(),
                  case_sensitive=bool(ctx.attr("is_case_sensitive", 0)), locale=ctx.attr("locale"),
                  stopwords=tuple(ctx.attr("stopwords", ())))


@converter("TfIdfVectorizer", since=9)
def tfidf_vectorizer(ctx: NodeContext) -> Any:
    names = ("mode", "min_gram_length", "max_gram_length", "max_skip_count", "ngram_counts", "ngram_indexes")
    missing = [n for n in names if not ctx.has_attr(n)]
    if missing:
        raise ctx.fail(f"TfIdfVectorizer needs the attributes {', '.join(missing)}")
    attrs = {n: ctx.attr(n) for n in names}
    for n in ("pool_int64s", "pool_strings", "weights"):
        if ctx.has_attr(n):
            attrs[n] = tuple(ctx.attr(n))
    return ctx.op("ember.tfidf_vectorizer", ctx.input(0), **attrs)
