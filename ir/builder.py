"""Build graphs in Python, in the spirit of TensorRT's network definition.

    b = Builder("block")
    x = b.input("x", f32["N", 3, 32, 32])
    w = b.weight("conv1.weight", np.random.rand(16, 3, 3, 3).astype(np.float32))
    y = b.relu(b.conv(x, w, pads=(1, 1, 1, 1)))
    b.output("y", y)
    module = b.build()                      # verified

Every op of the registry is a method: `b.conv(...)` makes `ember.conv`
(`b.if_` makes `ember.if`). Positional arguments are operands (None for an
absent optional one), keywords are attributes, `loc=` sets the location, and a
region is given as a function of a region builder and the region's arguments
that returns what the region yields. Types are inferred at each call, so a
wrong shape raises at the line that made it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ember.errors import UsageError, VerifyError
from ember.ir.attrs import Dense
from ember.ir.core import Block, Function, Location, Module, Operation, SymbolRange, Value
from ember.ir.dims import DimExpr, sym
from ember.ir.opdef import Op, lookup
from ember.ir.types import DType, Type, dtype_of, tensor


class Builder:
    """Appends ops to one block; `build()` closes the function and verifies the module."""

    def __init__(self, name: str | None = None, *, function: str = "main", module: Module | None = None,
                 block: Block | None = None, dialect: str = "ember", before: Operation | None = None,
                 loc: Any = None) -> None:
        """`before`: insert new ops ahead of this op of `block` instead of at its end (rewrites);
        `loc`: the location of ops made without one."""
        self.module = module if module is not None else Module(name)
        self.before = before
        self.default_loc = Location.of(loc) if loc is not None else None
        self.created: list[Operation] = []
        self.function_name = function
        self.block = block if block is not None else Block()
        self.dialect = dialect
        self.output_names: list[str] = []
        self.output_values: list[Value] = []

    # -- graph edges ------------------------------------------------------------------
    def input(self, name: str, type: Type | DType | str, shape: Sequence[object] | None = None) -> Value:
        """Declare an input; `type` is a Type (`f32["N", 3]`), or a dtype with `shape`."""
        if not isinstance(type, Type):
            type = tensor(type, shape if shape is not None else ())
        if any(a.name == name for a in self.block.args):
            raise VerifyError(f"input {name!r} is declared twice")
        return self.block.add_arg(type, name)

    def output(self, name: str, value: Value) -> None:
        if name in self.output_names:
            raise VerifyError(f"output {name!r} is marked twice")
        if not isinstance(value, Value):
            raise UsageError(f"output {name!r} must be a Value, got {type(value).__name__}")
        self.output_names.append(name)
        self.output_values.append(value)

    def symbol(self, name: str, min: int = 0, max: int | None = None) -> DimExpr:
        """Declare a shape symbol with the range its values may take."""
        self.module.symbols[name] = SymbolRange(min, max)
        return sym(name)

    # -- constants --------------------------------------------------------------------------
    def weight(self, name: str, data: np.ndarray, *, loc: Any = None) -> Value:
        """Put `data` in the module's weight store under `name` and read it."""
        w = self.module.weights.get(name)
        if w is None:
            w = self.module.add_weight(name, np.asarray(data))
        elif w.data is not data:
            raise VerifyError(f"weight {name!r} already holds other data")
        op = lookup("ember.weight").create((), {"name": name}, result_types=[w.type], loc=loc)  # type: ignore[union-attr]
        op.result.name = name  # the printer quotes or uniquifies it as needed
        self._place(op)
        return op.result

    def constant(self, value: Any, dtype: DType | str | None = None, *, loc: Any = None) -> Value:
        """A small inline constant (`ember.constant`)."""
        if isinstance(dtype, str):
            from ember.ir.types import dtype as by_name
            dtype = by_name(dtype)
        arr = np.asarray(value, dtype=dtype.np_dtype if dtype is not None else None)
        if dtype is None and arr.dtype == np.float64 and not isinstance(value, np.ndarray):
            arr = arr.astype(np.float32)  # Python floats default to f32, as in most frameworks
        dtype_of(arr)
        return self.op("ember.constant", value=Dense(arr), loc=loc)

    # -- ops ------------------------------------------------------------------------------
    def op(self, name: str, *operands: Value | None, loc: Any = None, **kwargs: Any) -> Any:
        """Append op `name`; returns its result, or a tuple when it has several (or a variadic one)."""
        cls = lookup(name)
        if cls is None:
            raise VerifyError(f"unknown op {name}")
        region_fields = {f.name: f for f in cls.region_fields}
        attrs = {k: v for k, v in kwargs.items() if k not in region_fields}
        bodies = {k: v for k, v in kwargs.items() if k in region_fields}
        missing = [f for f in region_fields if f not in bodies]
        if missing:
            raise UsageError(f"{name} needs region{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        for i, v in enumerate(operands):
            if v is not None and not isinstance(v, Value):
                raise UsageError(f"{name}: operand {i} is a {type(v).__name__}, not a Value "
                                "(make constants with b.constant)")
        operand_types = [v.type if v is not None else None for v in operands]
        regions = [self._region(cls, f, bodies[f], operand_types, attrs) for f in region_fields]
        if loc is None and self.default_loc is not None:
            loc = self.default_loc
        op = cls.create(list(operands), attrs, regions=regions, loc=Location.of(loc))
        self._place(op)
        groups = op.result_fields
        if len(op.results) == 1 and not any(f.variadic for f in groups):
            return op.results[0]
        return op.results

    def _place(self, op: Operation) -> None:
        if self.before is not None:
            self.block.insert_before(self.before, op)
        else:
            self.block.append(op)
        self.created.append(op)

    def _region(self, cls: type[Op], field: str, body: Any, operand_types: list[Type | None],
                attrs: dict[str, Any]) -> Block:
        if isinstance(body, Block):
            return body
        if not callable(body):
            raise UsageError(f"{cls.name}: region {field} must be a Block or a function building it")
        block = Block(cls.region_arg_types(field, operand_types, attrs))
        sub = Builder(module=self.module, block=block, dialect=self.dialect)
        result = body(sub, *block.args)
        outs = [] if result is None else [result] if isinstance(result, Value) else list(result)
        block.set_outputs(outs)
        return block

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        if attr.startswith("__"):
            raise AttributeError(attr)
        name = f"{self.dialect}.{attr.rstrip('_')}"
        if lookup(name) is None:
            raise AttributeError(f"no op {name} (Builder methods are the registered ops)")

        def make(*operands: Value | None, **kwargs: Any) -> Any:
            return self.op(name, *operands, **kwargs)

        make.__name__ = attr
        make.__doc__ = lookup(name).__doc__  # type: ignore[union-attr]
        return make

    # -- finishing ---------------------------------------------------------------------------
    def build(self, *, verify: bool = True) -> Module:
        """Close the function (inputs, ops, outputs) into the module and verify it."""
        self.block.set_outputs(self.output_values)
        fn = Function(self.function_name, self.block, self.output_names)
        self.module.add_function(fn)
        if verify:
            from ember.ir.verify import verify as run_verify
            run_verify(self.module)
        return self.module

