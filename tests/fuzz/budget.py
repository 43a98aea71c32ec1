"""The fuzz suite's budget: how many cases each target runs, in CI and in a deep run.

In CI (any hypothesis profile of fewer than 1000 examples, such as the default)
each target runs its whole corpus of `CI[target]["corpus"]` mutated cases plus
its named cases, and `CI[target]["examples"]` hypothesis examples, derandomized
(the same ones every run, so CI fails only when the code changes). The deep run
loads the `fuzz-long` profile registered here:

    .venv/bin/python -m pytest tests/fuzz --hypothesis-profile=fuzz-long

which multiplies the corpus by `LONG_FACTOR` and draws fresh random hypothesis
examples, as many as the profile says (docs/fuzzing.md).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("fuzz-long", max_examples=2000, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))

CI = {"onnx": {"corpus": 250, "examples": 80}, "ir": {"corpus": 250, "examples": 80},
      "savedmodel": {"corpus": 150, "examples": 60}, "engine": {"corpus": 500, "examples": 80}}
LONG_FACTOR = 20


def deep() -> bool:
    """Whether a deep profile (1000 examples or more, as fuzz-long) is loaded."""
    return settings.default.max_examples >= 1000


def corpus_size(target: str) -> int:
    return CI[target]["corpus"] * (LONG_FACTOR if deep() else 1)


def examples(target: str) -> int:
    return settings.default.max_examples if deep() else CI[target]["examples"]


def fuzz_settings(target: str) -> settings:
    """The hypothesis settings of a target's test: in CI a fixed set of examples (derandomized, no
    example database), so CI fails only when the code changes; in a deep run, fresh random ones."""
    return settings(max_examples=examples(target), deadline=None, suppress_health_check=list(HealthCheck),
                    derandomize=not deep(), **({} if deep() else {"database": None}))
