"""Binding shape symbols to numbers in a module: an engine built for one shape is built for
static types.

With `shapes=` (one shape per input) every symbol of the model's input dims has one value.
Left symbolic, the shape arithmetic a framework exports around dynamic dims (BERT's position
ids and mask broadcasts: `shape`, `gather`, `range`, `expand` on symbolic sizes) stays run-time
work, a kernel launch each; bound first, fold-constants turns it into constants, as TensorRT
does for a static engine. Types, dim attributes and types held in attributes are rewritten in
place; sizes known only at run time (`Unknown`, after data-dependent ops) keep their
symbolic bounds, with the bound symbols replaced.
"""

from __future__ import annotations

from typing import Any, Mapping

from ember.ir import dims as D
from ember.ir import sizes
from ember.ir.core import Block, Module
from ember.ir.types import OptionalType, SequenceType, TensorType, Type


def bind_dim(d: D.Dim, env: Mapping[str, int]) -> D.Dim:
    if isinstance(d, D.Unknown):
        return d if d.bound is None else D.Unknown(bind_dim(d.bound, env))
    return D.substitute(d, env)


def bind_type(t: Type, env: Mapping[str, int]) -> Type:
    if isinstance(t, TensorType) and t.shape is not None:
        return TensorType(t.dtype, tuple(bind_dim(d, env) for d in t.shape))
    if isinstance(t, SequenceType):
        return SequenceType(bind_type(t.element, env))
    if isinstance(t, OptionalType):
        return OptionalType(bind_type(t.element, env))
    return t


def _bind_attr(value: Any, env: Mapping[str, int]) -> Any:
    if isinstance(value, D.DimExpr):
        return D.substitute(value, env)
    if isinstance(value, Type):
        return bind_type(value, env)
    if isinstance(value, tuple):
        return tuple(_bind_attr(v, env) for v in value)
    return value


def _bind_block(block: Block, env: Mapping[str, int]) -> None:
    for v in block.args:
        v.type = bind_type(v.type, env)
    for op in block.ops:
        for r in op.results:
            r.type = bind_type(r.type, env)
        op.attributes = {k: _bind_attr(v, env) for k, v in op.attributes.items()}
        for region in op.regions:
            _bind_block(region, env)


def bind_symbols(module: Module, env: Mapping[str, int]) -> None:
    """Replace the symbols bound in `env` by their values throughout `module`, in place; the
    symbols bound are no longer declared. The entry's inputs are checked at their bound sizes
    first, so a size too large is named with the symbols that made it."""
    if not env:
        return
    for v in module.main.inputs:
        t = v.type
        if isinstance(t, TensorType) and t.shape is not None and t.symbols():
            bound = ", ".join(f"{s}={env[s]}" for s in sorted(t.symbols()) if s in env)
            shape = [D.evaluate(d, env) for d in t.shape if not isinstance(d, D.Unknown)]
            sizes.nbytes(shape, t.dtype.itemsize, f"input %{v.name} ({t} with {bound})")
    for fn in module.functions.values():
        _bind_block(fn.body, env)
    for name in env:
        module.symbols.pop(name, None)
