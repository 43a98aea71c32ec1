"""Which Ember code imports which ONNX operator, by domain, op type and opset.

A converter is a function of a `NodeContext` (see importer.py) that emits Ember
ops with the context's builder and returns the node's outputs (a Value, or a
list with None for absent optional outputs). It is registered for the opset
version where its ONNX semantics begin; the importer picks, for a node, the
registration with the greatest `since` not above the model's opset.

    @converter("Relu")
    def relu(ctx):
        return ctx.op("ember.relu", ctx.input(0))
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Callable

ONNX_DOMAINS = ("", "ai.onnx")


def canonical_domain(domain: str) -> str:
    return "" if domain in ONNX_DOMAINS else domain


@dataclass(order=True, frozen=True)
class Converter:
    since: int
    fn: Callable[..., Any] = field(compare=False)
    op_type: str = field(compare=False, default="")
    domain: str = field(compare=False, default="")


CONVERTERS: dict[tuple[str, str], list[Converter]] = {}


def converter(*op_types: str, since: int = 1, domain: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` for each op type from opset `since` on (until a later registration)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for op_type in op_types:
            key = (canonical_domain(domain), op_type)
            entries = CONVERTERS.setdefault(key, [])
            if any(c.since == since for c in entries):
                raise ValueError(f"{op_type} (domain {domain!r}) since opset {since} is registered twice")
            bisect.insort(entries, Converter(since, fn, op_type, canonical_domain(domain)))
        return fn

    return register


def find(domain: str, op_type: str, version: int) -> Converter | None:
    """The converter for `op_type` at opset `version`, or None."""
    _load()
    entries = CONVERTERS.get((canonical_domain(domain), op_type), [])
    best = None
    for c in entries:
        if c.since <= version:
            best = c
    return best


def _load() -> None:
    import ember.frontends.onnx.ops  # noqa: F401  (registers the converters)
