"""Ember: an open, Python-first graph compiler for NVIDIA GPUs.

    import ember
    module = ember.load("model.ir")            # or build one with ember.ir.Builder
    outputs = ember.interpret(module, {"x": x})

Layers import one way, frontends -> ir -> passes -> codegen -> runtime, and this
package wires them lazily: `import ember` loads nothing but this file, so
`import ember.runtime` never drags in the compiler.
"""

from __future__ import annotations

import importlib
from typing import Any

from ember.version import __version__

_LAZY = {
    "ir": ("ember.ir", None),
    "errors": ("ember.errors", None),
    "load": ("ember.loader", "load"),
    "interpret": ("ember.ir.interpret", "interpret"),
    "EmberError": ("ember.errors", "EmberError"),
    "compile": ("ember.build", "compile"),
    "Engine": ("ember.runtime.engine", "Engine"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ember' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["__version__", *_LAZY]
