"""Codegen switches for kernels that wait on a device check, set from the environment, as
XLA_FLAGS sets XLA's: `EMBER_FLAGS="--split-k --mma-dynamic-stages=4 --concat-one-launch"`.

A kernel form that has compiled and been replayed on the CPU but not yet passed its GPU tests
stays off in the code (heavy.SPLIT_K, heavy.MMA_DYNAMIC_STAGES, movement.CONCAT_ONE_LAUNCH);
these flags turn it on in one process, so one device session can run its GPU tests and then
measure it, before the default changes in the code. The compile driver (build.py) applies the
environment's flags at every build (layers read no environment: tests/test_layering.py); a flag
this module does not know is an error that names it.
"""

from __future__ import annotations

import shlex
from typing import Any, Callable

from ember.errors import UsageError

ENV = "EMBER_FLAGS"


def _switch(value: str | None) -> bool:
    if value is None or value.lower() in ("1", "true", "on", "yes"):
        return True
    if value.lower() in ("0", "false", "off", "no"):
        return False
    raise ValueError(value)


def _count(value: str | None) -> int:
    if value is None or not value.isdigit():
        raise ValueError(value)
    return int(value)


# flag -> (module, attribute, parse)
FLAGS: dict[str, tuple[str, str, Callable[[str | None], Any]]] = {
    "split-k": ("ember.codegen.ops.heavy", "SPLIT_K", _switch),
    "mma-dynamic-stages": ("ember.codegen.ops.heavy", "MMA_DYNAMIC_STAGES", _count),
    "concat-one-launch": ("ember.codegen.ops.movement", "CONCAT_ONE_LAUNCH", _switch),
    "norm-registers": ("ember.codegen.ops.reduce", "NORM_CACHE", _switch),
    "depthwise-vector": ("ember.codegen.ops.heavy", "DEPTHWISE_VECTOR", _switch),
    "wgmma": ("ember.codegen.ops.heavy", "WGMMA", _switch),
    "wgmma-persistent": ("ember.codegen.ops.heavy", "WGMMA_PERSISTENT", _switch),
    "wgmma-tma": ("ember.codegen.ops.heavy", "WGMMA_TMA", _switch),
    "elementwise-packs": ("ember.codegen.ops.elementwise", "PACKED", _switch),
    "fast-division": ("ember.codegen.ops.heavy", "FAST_DIVISION", _switch),
    "static-offsets": ("ember.codegen.ops.heavy", "STATIC_OFFSETS", _switch),
}


def parse(text: str) -> dict[str, Any]:
    """`--name[=value] ...` -> {name: value}; errors name the flag and list the known ones."""
    out: dict[str, Any] = {}
    for word in shlex.split(text):
        name, eq, value = word.lstrip("-").partition("=")
        if not word.startswith("--") or name not in FLAGS:
            raise UsageError(f"{ENV}: unknown flag {word!r}; known: {', '.join('--' + f for f in FLAGS)}")
        try:
            out[name] = FLAGS[name][2](value if eq else None)
        except ValueError:
            raise UsageError(f"{ENV}: {word!r} needs {'a count' if FLAGS[name][2] is _count else 'on or off'}") \
                from None
    return out


def apply(text: str) -> dict[str, Any]:
    """Set the switches `text` names (the others keep their values); returns them."""
    import importlib
    values = parse(text)
    for name, value in values.items():
        module, attr, _ = FLAGS[name]
        setattr(importlib.import_module(module), attr, value)
    return values


__all__ = ["ENV", "FLAGS", "apply", "parse"]
