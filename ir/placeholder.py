"""Ops known by name only: a plugin's op in an engine loaded where the plugin's Python is not.

An engine records the plugins its IR uses (name and version). Loading it in a process that has
not imported the plugin registers a placeholder under each missing name, so the engine's IR
parses (operands and result types as the text has them) and its compiled kernels run on the GPU
without the plugin. What needs the op's Python (its reference: the host arena, a host fallback,
the interpreter) is refused, naming the plugin and its version. Importing the plugin afterwards
replaces the placeholder.
"""

from __future__ import annotations

from typing import Any

from ember.errors import EmberError
from ember.ir.opdef import REGISTRY, AnyTensor, AnyType, Op, Operand, Pure, Result, register_op


class PluginNotLoadedError(EmberError, RuntimeError):
    """A plugin op's Python (its reference) is needed and the plugin is not imported."""


class Placeholder(Op):
    """A plugin op whose Python is not loaded: operands and results as written."""

    xs = Operand(AnyTensor, variadic=True)
    outs = Result(AnyType, variadic=True)
    plugin_version = ""

    def infer_result_types(self) -> tuple[Any, ...]:
        return tuple(r.type for r in self.results)

    def evaluate(self, args: Any, ctx: Any) -> tuple:
        cls = type(self)
        raise PluginNotLoadedError(
            f"{cls.name} is the op of a plugin (version {cls.plugin_version or '?'}) that this process has not "
            "imported: its kernel runs on the GPU, but running it here (the host arena, a host fallback, the "
            "interpreter) needs its Python: import the plugin first (ember ... --load FILE.py)")


def ensure(plugins: dict[str, str]) -> list[str]:
    """Register a placeholder for each plugin op (name -> version) not known here; returns them."""
    made = []
    for name, version in plugins.items():
        if name in REGISTRY:
            continue
        cls = type(name.replace(".", "_") + "_placeholder", (Placeholder,),
                   {"__doc__": Placeholder.__doc__, "plugin_version": str(version)})
        register_op(name, traits={Pure})(cls)
        made.append(name)
    return made


def is_placeholder(name: str) -> bool:
    cls = REGISTRY.get(name)
    return isinstance(cls, type) and issubclass(cls, Placeholder)


__all__ = ["Placeholder", "PluginNotLoadedError", "ensure", "is_placeholder"]
