"""The reference interpreter: runs any module on numpy, op by op, from each op's
`reference`. It is the oracle passes and kernels are checked against, and the
fallback that runs engines where there is no GPU.

Inputs are checked against the function's signature first (names, element
types, ranks, static dims, and the symbols bound by the first input that
carries each one, within the module's declared ranges); every op's results
are checked against its declared types, so a wrong reference is caught where
it happens, not three ops later.
"""

from __future__ import annotations

from collections import ChainMap
from typing import Any, Callable, Mapping, MutableMapping, Sequence

import numpy as np

from ember.errors import EmberError, InterpretError
from ember.ir.core import Block, Function, Module, Value
from ember.ir.dims import DimExpr, Unknown, as_symbol, evaluate
from ember.ir.opdef import EvalContext, Op
from ember.ir.types import OptionalType, SequenceType, TensorType, Type, dtype_of, string


def interpret(module: Module, inputs: Mapping[str, Any], *, function: str | None = None,
              observe: Callable[[Op, Value, Any], None] | None = None) -> dict[str, Any]:
    """Run `function` (default: the module's entry) on `inputs`; returns {output name: array}.

    `observe(op, result, value)` sees every result of the function's own ops as it is computed
    (not those inside regions): calibration reads activations through it."""
    fn = _function(module, function)
    args, env = bind_inputs(fn, inputs, module)
    ctx = EvalContext(env=env, module=module, run_block=lambda b, xs: _run_block(b, xs, ctx, {}))
    outs = _run_block(fn.body, args, ctx, {}, observe)
    return dict(zip(fn.output_names, outs))


def _function(module: Module, name: str | None) -> Function:
    if name is None:
        return module.main
    if name not in module.functions:
        raise InterpretError(f"module has no function @{name}; it has {', '.join('@' + f for f in module.functions)}")
    return module.functions[name]


def input_names_mismatch(names: list[str], given: Mapping[str, Any]) -> str:
    """'missing input 'x'; unexpected input 'y'' for inputs given by name, or '' when they agree."""
    missing = [n for n in names if n not in given]
    extra = [n for n in given if n not in names]
    parts = []
    if missing:
        parts.append(f"missing input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    if extra:
        parts.append(f"unexpected input{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}")
    return "; ".join(parts)


def bind_inputs(fn: Function, inputs: Mapping[str, Any], module: Module | None = None
                ) -> tuple[list[Any], dict[str, int]]:
    """Check inputs against the signature; return them in order and the symbol values they fix."""
    names = fn.input_names
    mismatch = input_names_mismatch(names, inputs)
    if mismatch:
        raise InterpretError(f"@{fn.name}: {mismatch} (inputs are {', '.join(map(repr, names))})")
    env: dict[str, int] = {}
    args = []
    for name, v in zip(names, fn.inputs):
        args.append(_check_input(name, inputs[name], v.type, env))
    # Expressions are checked once every bare symbol is bound.
    for name, v, arr in zip(names, fn.inputs, args):
        if isinstance(v.type, TensorType) and v.type.shape is not None:
            _check_shape(f"input {name!r}", np.shape(arr), v.type, env, bind=False)
    if module is not None:
        for sym_name, value in env.items():
            rng = module.symbols.get(sym_name)
            if rng is not None and not (rng.min <= value and (rng.max is None or value <= rng.max)):
                raise InterpretError(f"symbol {sym_name} = {value} is outside its range {rng}")
    return args, env


def _check_input(name: str, value: Any, t: Type, env: dict[str, int]) -> Any:
    if not isinstance(t, TensorType):
        return value  # sequences and optionals are passed through as given
    if not isinstance(value, np.ndarray):
        if hasattr(value, "__array__") or isinstance(value, (list, tuple, int, float, bool)):
            value = np.asarray(value, dtype=t.dtype.np_dtype)
        else:
            raise InterpretError(f"input {name!r}: expected an array of {t}, got {type(value).__name__}")
    try:
        got = dtype_of(value)
    except ValueError:
        raise InterpretError(f"input {name!r}: numpy dtype {value.dtype} is not an Ember element type") from None
    if got != t.dtype:
        raise InterpretError(f"input {name!r}: expected element type {t.dtype}, got {got} (an array of {value.dtype})")
    if t.shape is not None:
        _check_shape(f"input {name!r}", value.shape, t, env, bind=True)
    return value


def _check_shape(what: str, shape: Sequence[int], t: TensorType, env: dict[str, int], *, bind: bool) -> None:
    assert t.shape is not None
    if len(shape) != len(t.shape):
        raise InterpretError(f"{what}: expected rank {len(t.shape)} ({t}), got shape {list(shape)}")
    for axis, (got, want) in enumerate(zip(shape, t.shape)):
        if isinstance(want, Unknown):
            continue
        if isinstance(want, int):
            if got != want:
                raise InterpretError(f"{what}: dim {axis} must be {want} ({t}), got shape {list(shape)}")
            continue
        sym = as_symbol(want)
        if bind and sym is not None:
            if sym in env and env[sym] != got:
                raise InterpretError(f"{what}: dim {axis} is {sym} = {env[sym]} from an earlier input, "
                                     f"got shape {list(shape)}")
            env.setdefault(sym, int(got))
        elif not bind:
            try:
                expected = evaluate(want, env)
            except EmberError:
                continue  # an expression over symbols no input fixes: nothing to check against
            if expected != got:
                raise InterpretError(f"{what}: dim {axis} must be {want} = {expected} ({t}), got shape {list(shape)}")


def _run_block(block: Block, args: Sequence[Any], ctx: EvalContext, outer: Mapping[Value, Any],
               observe: Callable[[Op, Value, Any], None] | None = None) -> tuple:
    if len(args) != len(block.args):
        raise InterpretError(f"region takes {len(block.args)} arguments, got {len(args)}")
    values: MutableMapping[Value, Any] = ChainMap(dict(zip(block.args, args)), outer)  # type: ignore[arg-type]
    sub_ctx = EvalContext(env=ctx.env, module=ctx.module,
                          run_block=lambda b, xs: _run_block(b, xs, sub_ctx, values))
    for op in block.ops:
        operands = [values[v] if v is not None else None for v in op.operands]
        if not isinstance(op, Op):
            raise InterpretError(f"{op.name} is not a registered op")
        try:
            with np.errstate(all="ignore"):  # log(0) = -inf and friends are the semantics, not accidents
                results = op.evaluate(operands, sub_ctx)
        except InterpretError:
            raise
        except Exception as err:
            where = f"{op.loc}: " if op.loc else ""
            raise InterpretError(f"{where}{op.name}: {type(err).__name__}: {str(err).strip()}") from err
        if len(results) != len(op.results):
            raise InterpretError(f"{op.name}: reference gave {len(results)} results for {len(op.results)}")
        for r, out in zip(op.results, results):
            values[r] = _check_result(op, r, out, ctx.env)
            if observe is not None:
                observe(op, r, values[r])
    return tuple(values[v] for v in block.outputs)


def _check_result(op: Op, r: Value, out: Any, env: dict[str, int]) -> Any:
    t = r.type
    if isinstance(t, (SequenceType, OptionalType)):
        return out
    assert isinstance(t, TensorType)
    out = np.asarray(out) if not isinstance(out, np.ndarray) else out
    where = f"{op.loc}: " if op.loc else ""
    want = t.dtype.np_dtype
    if t.dtype is string:
        if out.dtype.kind in "US":
            out = out.astype(object)
    if out.dtype != want:
        raise InterpretError(f"{where}{op.name}: reference gave {out.dtype} for result {r.index} declared {t} "
                             "(a bug in the op's reference)")
    if t.shape is not None:
        try:
            _check_shape(f"{where}{op.name} result {r.index}", out.shape, t, env, bind=True)
            _check_shape(f"{where}{op.name} result {r.index}", out.shape, t, env, bind=False)
        except InterpretError as err:
            raise InterpretError(f"{err} (a bug in the op's type rule or reference)") from None
    return out


__all__ = ["interpret", "bind_inputs", "DimExpr"]
