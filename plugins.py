"""Plugins: custom ops a user adds without touching Ember.

An elementwise plugin op is one decorated numpy function:

    from ember.plugins import elementwise_op

    @elementwise_op("my.scaled_tanh", version="1.0", operands=("x", "s"),
                    cuda="return tanh(x) * s;", onnx=("com.example", "ScaledTanh"))
    def scaled_tanh(x, s):
        "tanh(x) * s, broadcast."
        return np.tanh(x) * s

That one definition gives the IR op (operands of one numeric element type, broadcast; the
result of that type; the function is its reference, run in f32 for f16/bf16 and rounded back,
as Ember's own elementwise ops), the ONNX converter for the node (domain, op type), and the
CUDA form: `cuda` is the body of a device function of the operands (named as `operands`, of
the compute type `T`: float for f32/f16/bf16, double for f64) returning a `T`. The op fuses
like any elementwise op (into elementwise groups, heavy ops' epilogues, reductions'
prologues), so its body is compiled inside Ember's kernels by NVRTC.

An engine records the plugins its IR uses (name and version) and holds their compiled
kernels: it runs on the GPU in a process that has not imported the plugin (the op parses as
a placeholder, ir/placeholder.py), and what needs the Python (the host arena, a host
fallback, the interpreter) is refused naming the plugin. An engine never names a file or a
module to import. `ember ... --load FILE.py|MODULE` imports plugins on every command;
`ember.compile(..., plugins=[...])` imports the named modules first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ember.errors import EmberError

NAME = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_.]*$")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PluginError(EmberError, ValueError):
    """A plugin that cannot be registered as written."""


@dataclass(frozen=True)
class Plugin:
    name: str
    version: str
    operands: tuple[str, ...]
    cuda: str
    onnx: tuple[str, str] | None
    source: str                      # the Python module that registered it (for messages only)


PLUGINS: dict[str, Plugin] = {}


def elementwise_op(name: str, *, version: str, cuda: str, operands: Sequence[str] = ("x",),
                   onnx: tuple[str, str] | None = None) -> Callable[[Callable[..., Any]], type]:
    """Register an elementwise plugin op (see the module docstring); decorates its reference."""
    from ember.codegen.cuda_render import C_EXPR
    from ember.frontends.onnx.registry import converter
    from ember.ir.opdef import REGISTRY, Broadcasting, Elementwise, NumericTensor, Op, Operand, Pure, Result, register_op
    from ember.ir.ops import rules
    from ember.ir.placeholder import is_placeholder
    from ember.ir.types import TensorType

    operands = tuple(operands)
    if not NAME.match(name) or name.startswith("ember."):
        raise PluginError(f"plugin op {name!r}: name it dialect.op in lower case, outside the ember dialect "
                          "(as my.twice)")
    if not operands or not all(IDENT.match(o) and o != "T" for o in operands) or len(set(operands)) != len(operands):
        raise PluginError(f"plugin op {name}: operands {list(operands)} must be distinct C identifiers (not T)")
    if not isinstance(version, str) or not version:
        raise PluginError(f"plugin op {name}: give a version (a string, as \"1.0\")")
    if not isinstance(cuda, str) or "return" not in cuda:
        raise PluginError(f"plugin op {name}: `cuda` is a device function body that returns the result")
    same = PLUGINS.get(name)
    if name in REGISTRY and not is_placeholder(name) and not (
            same is not None and (same.version, same.operands, same.cuda, same.onnx) ==
            (version, operands, cuda, tuple(onnx) if onnx else None)):
        raise PluginError(f"plugin op {name} is registered twice, differently (or names an op Ember has)")
    if onnx is not None and (len(onnx) != 2 or not all(isinstance(p, str) for p in onnx) or not onnx[1]):
        raise PluginError(f"plugin op {name}: onnx=(domain, op type), as (\"com.example\", \"Twice\")")

    def decorate(reference: Callable[..., Any]) -> type:
        def infer(self: Any, *types: Any) -> TensorType:
            return TensorType(rules.same_dtype(self, *types), rules.broadcast(self, *types))

        namespace: dict[str, Any] = {o: Operand(NumericTensor) for o in operands}
        namespace.update({"out": Result(NumericTensor), "infer": infer, "__doc__": reference.__doc__ or name,
                          "reference": staticmethod(rules.in_f32(reference)), "plugin_version": version})
        cls = type(name.replace(".", "_"), (Op,), namespace)
        REGISTRY.pop(name, None)   # a placeholder (an engine loaded first), or this plugin imported again
        traits = {Pure, Elementwise} | ({Broadcasting} if len(operands) > 1 else set())
        register_op(name, traits=traits)(cls)
        C_EXPR[name] = _renderer(operands, cuda)
        if onnx is not None:
            from ember.frontends.onnx.registry import CONVERTERS, canonical_domain
            n = len(operands)
            CONVERTERS.pop((canonical_domain(onnx[0]), onnx[1]), None)   # imported again: the same converter
            converter(onnx[1], domain=onnx[0])(lambda ctx: ctx.op(name, *[ctx.input(i) for i in range(n)]))
        PLUGINS[name] = Plugin(name, version, operands, cuda, tuple(onnx) if onnx else None,
                               getattr(reference, "__module__", "?"))
        return cls

    return decorate


def _renderer(operands: tuple[str, ...], body: str) -> Callable[..., str]:
    """C_EXPR's form: an immediately called lambda of the operands, in the compute type T."""
    def render(op: Any, args: Sequence[str], c: str) -> str:
        params = ", ".join(f"{c} {o}" for o in operands)
        return f"([&]({params}) -> {c} {{ using T = {c}; {body} }})({', '.join(args)})"
    return render


def load(modules: Sequence[str]) -> None:
    """Import the named plugin modules (dotted names or .py files)."""
    import importlib.util
    from pathlib import Path
    for item in modules:
        if item.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(item).stem, item)
            if spec is None or spec.loader is None:
                raise PluginError(f"plugin {item}: cannot be imported as a Python module")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            importlib.import_module(item)


def used_by(module: Any) -> dict[str, str]:
    """The plugins whose ops `module` holds (fused bodies included): name -> version."""
    out: dict[str, str] = {}
    for fn in module.functions.values():
        for op in fn.walk():
            version = getattr(type(op), "plugin_version", "")
            if version:
                out[op.name] = str(version)
    return dict(sorted(out.items()))


__all__ = ["PLUGINS", "Plugin", "PluginError", "elementwise_op", "load", "used_by"]
