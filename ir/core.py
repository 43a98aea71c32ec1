"""The IR's structure: values, operations, blocks, functions, modules.

SSA: every `Value` has exactly one definition, an operation's result or a
block's argument, and knows its uses so that passes can rewrite in place.
A `Block` is a list of operations with arguments and outputs (what it yields
or returns); there are no branches between blocks. Regions are single blocks:
an op's region is `Block`, its arguments are the region's inputs.

A `Module` holds functions, the named weights (the constant store) and the
declarations of shape symbols with their ranges. Op classes live in
`opdef.py`; this file knows nothing about particular ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ember.ir.types import TensorType, Type, dtype_of

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Location:
    """Where an op came from: source names (an ONNX node name, say). A fused op
    carries the names of all the ops it replaced."""

    names: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ", ".join(self.names) if self.names else "<unknown>"

    def __bool__(self) -> bool:
        return bool(self.names)

    @staticmethod
    def of(value: "Location | str | Sequence[str] | None") -> "Location":
        if value is None:
            return UNKNOWN_LOC
        if isinstance(value, Location):
            return value
        if isinstance(value, str):
            return Location((value,))
        return Location(tuple(value))

    @staticmethod
    def fused(locs: "Sequence[Location]") -> "Location":
        names: list[str] = []
        for loc in locs:
            names.extend(n for n in loc.names if n not in names)
        return Location(tuple(names))


UNKNOWN_LOC = Location()


@dataclass(frozen=True)
class Use:
    """`user` reads the value as its operand `index`; a Block user means its outputs."""

    user: "Operation | Block"
    index: int


class Value:
    """An SSA value: the result of an op or an argument of a block."""

    __slots__ = ("type", "name", "owner", "index", "_uses", "__weakref__")

    def __init__(self, type: Type, owner: "Operation | Block", index: int, name: str | None = None) -> None:
        self.type = type
        self.name = name
        self.owner = owner
        self.index = index
        self._uses: list[Use] = []

    @property
    def uses(self) -> tuple[Use, ...]:
        return tuple(self._uses)

    @property
    def users(self) -> list["Operation"]:
        return [u.user for u in self._uses if isinstance(u.user, Operation)]

    @property
    def has_uses(self) -> bool:
        return bool(self._uses)

    @property
    def defining_op(self) -> "Operation | None":
        return self.owner if isinstance(self.owner, Operation) else None

    def replace_all_uses_with(self, new: "Value") -> None:
        for use in list(self._uses):
            if isinstance(use.user, Operation):
                use.user.set_operand(use.index, new)
            else:
                use.user.set_output(use.index, new)

    def __repr__(self) -> str:
        return f"<Value %{self.name or '?'}: {self.type}>"


class Operation:
    """An operation instance. Subclasses (in `opdef.Op`) carry the schema and semantics."""

    name: str = ""

    def __init__(self, operands: Sequence[Value | None], result_types: Sequence[Type],
                 attributes: dict[str, Any], regions: Sequence["Block"] = (),
                 loc: Location = UNKNOWN_LOC) -> None:
        self._operands: list[Value | None] = []
        for v in operands:
            self._append_operand(v)
        self.attributes = dict(attributes)
        self.regions: tuple[Block, ...] = tuple(regions)
        for r in self.regions:
            r.parent = self
        self.loc = loc
        self.parent: Block | None = None
        self.results: tuple[Value, ...] = ()
        self.set_result_types(result_types)

    def set_result_types(self, result_types: Sequence[Type]) -> None:
        assert not any(r.has_uses for r in self.results), "retyping results that have uses"
        self.results = tuple(Value(t, self, i) for i, t in enumerate(result_types))

    # -- operands -------------------------------------------------------------
    @property
    def operands(self) -> tuple[Value | None, ...]:
        return tuple(self._operands)

    def _append_operand(self, v: Value | None) -> None:
        if v is not None:
            if not isinstance(v, Value):
                raise TypeError(f"{self.name}: operand {len(self._operands)} is a {type(v).__name__}, not a Value")
            v._uses.append(Use(self, len(self._operands)))
        self._operands.append(v)

    def set_operand(self, index: int, new: Value | None) -> None:
        old = self._operands[index]
        if old is not None:
            old._uses.remove(Use(self, index))
        if new is not None:
            new._uses.append(Use(self, index))
        self._operands[index] = new

    def set_operands(self, operands: Sequence[Value | None]) -> None:
        self.drop_operands()
        for v in operands:
            self._append_operand(v)

    def drop_operands(self) -> None:
        for i, v in enumerate(self._operands):
            if v is not None:
                v._uses.remove(Use(self, i))
        self._operands = []

    # -- structure ------------------------------------------------------------
    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise ValueError(f"{self.name} has {len(self.results)} results, not one")
        return self.results[0]

    def walk(self) -> Iterator["Operation"]:
        """This op, then every op nested in its regions, in order."""
        yield self
        for r in self.regions:
            yield from r.walk()

    def reads(self) -> list["Value"]:
        """What the op reads from its enclosing scope: its operands, then the outer values
        read inside its regions (control flow), each once, in order."""
        out = [v for v in self.operands if v is not None]
        inner: set[Value] = set()
        for nested in self.walk():
            inner.update(nested.results)
            for region in nested.regions:
                inner.update(region.args)
        for nested in list(self.walk())[1:]:
            out.extend(v for v in nested.operands if v is not None and v not in inner)
        for region in self.regions:
            out.extend(v for v in region.outputs if v not in inner)
        return list(dict.fromkeys(out))

    def erase(self) -> None:
        """Remove from the parent block; the results must have no uses left."""
        for r in self.results:
            if r.has_uses:
                raise ValueError(f"erasing {self.name} whose result is still used")
        self.drop_operands()
        for region in self.regions:
            for op in reversed(region.ops):
                op.drop_all_references()
        if self.parent is not None:
            self.parent.ops.remove(self)
            self.parent = None

    def drop_all_references(self) -> None:
        self.drop_operands()
        for region in self.regions:
            region.drop_outputs()
            for op in region.ops:
                op.drop_all_references()

    @property
    def function(self) -> "Function | None":
        block = self.parent
        while block is not None:
            if isinstance(block.parent, Function):
                return block.parent
            block = block.parent.parent if isinstance(block.parent, Operation) else None
        return None

    def __repr__(self) -> str:
        return f"<{self.name} at {self.loc}>"


class Block:
    """A straight-line list of ops with arguments and outputs (a region, or a function body)."""

    def __init__(self, arg_types: Sequence[Type] = (), arg_names: Sequence[str | None] | None = None) -> None:
        names = list(arg_names) if arg_names is not None else [None] * len(arg_types)
        self.args: list[Value] = [Value(t, self, i, n) for i, (t, n) in enumerate(zip(arg_types, names))]
        self.ops: list[Operation] = []
        self._outputs: list[Value] = []
        self.parent: Operation | Function | None = None

    # -- ops ------------------------------------------------------------------
    def append(self, op: Operation) -> Operation:
        assert op.parent is None, "op already placed in a block"
        op.parent = self
        self.ops.append(op)
        return op

    def insert_before(self, anchor: Operation, op: Operation) -> Operation:
        assert op.parent is None, "op already placed in a block"
        op.parent = self
        self.ops.insert(self.ops.index(anchor), op)
        return op

    def add_arg(self, type: Type, name: str | None = None) -> Value:
        v = Value(type, self, len(self.args), name)
        self.args.append(v)
        return v

    # -- outputs --------------------------------------------------------------
    @property
    def outputs(self) -> tuple[Value, ...]:
        return tuple(self._outputs)

    def set_outputs(self, values: Sequence[Value]) -> None:
        self.drop_outputs()
        for i, v in enumerate(values):
            if not isinstance(v, Value):
                raise TypeError(f"block output {i} is a {type(v).__name__}, not a Value")
            v._uses.append(Use(self, i))
            self._outputs.append(v)

    def set_output(self, index: int, new: Value) -> None:
        old = self._outputs[index]
        old._uses.remove(Use(self, index))
        new._uses.append(Use(self, index))
        self._outputs[index] = new

    def drop_outputs(self) -> None:
        for i, v in enumerate(self._outputs):
            v._uses.remove(Use(self, i))
        self._outputs = []

    def walk(self) -> Iterator[Operation]:
        for op in list(self.ops):
            yield from op.walk()

    @property
    def output_types(self) -> tuple[Type, ...]:
        return tuple(v.type for v in self._outputs)


class Function:
    """A graph: named inputs (the body's arguments), a body, named outputs."""

    def __init__(self, name: str, body: Block, output_names: Sequence[str]) -> None:
        self.name = name
        self.body = body
        body.parent = self
        self.output_names = list(output_names)
        self.module: Module | None = None

    @property
    def inputs(self) -> list[Value]:
        return self.body.args

    @property
    def input_names(self) -> list[str]:
        return [v.name or f"arg{i}" for i, v in enumerate(self.body.args)]

    @property
    def outputs(self) -> tuple[Value, ...]:
        return self.body.outputs

    @property
    def input_types(self) -> list[Type]:
        return [v.type for v in self.body.args]

    @property
    def output_types(self) -> list[Type]:
        return [v.type for v in self.body.outputs]

    def walk(self) -> Iterator[Operation]:
        return self.body.walk()

    def __str__(self) -> str:
        from ember.ir.printer import print_function
        return print_function(self)


@dataclass
class Weight:
    """A named constant in the module's store. `data` is None when only the
    declaration is known (a module read from text without its weights file)."""

    name: str
    type: TensorType
    data: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.data is not None:
            self.check(self.data)

    def check(self, data: np.ndarray) -> None:
        shape = tuple(int(d) for d in data.shape)
        if dtype_of(data) != self.type.dtype or shape != self.type.shape:
            raise ValueError(f"weight {self.name!r}: data is {dtype_of(data)}{list(shape)}, declared {self.type}")


@dataclass(frozen=True)
class SymbolRange:
    """The values a shape symbol may take, inclusive (max None: unbounded).
    Order 7's optimization profiles build on this."""

    min: int = 0
    max: int | None = None

    def __str__(self) -> str:
        return f"[{self.min}, {'inf' if self.max is None else self.max}]"


@dataclass
class Module:
    """Functions, the weight store and the shape symbols: the unit every stage passes on."""

    name: str | None = None
    functions: dict[str, Function] = field(default_factory=dict)
    weights: dict[str, Weight] = field(default_factory=dict)
    symbols: dict[str, SymbolRange] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)

    def add_function(self, fn: Function) -> Function:
        if fn.name in self.functions:
            raise ValueError(f"module already has a function @{fn.name}")
        fn.module = self
        self.functions[fn.name] = fn
        return fn

    def add_weight(self, name: str, data: np.ndarray | None = None, type: TensorType | None = None) -> Weight:
        if name in self.weights:
            raise ValueError(f"module already has a weight named {name!r}")
        if type is None:
            if data is None:
                raise ValueError(f"weight {name!r} needs data or a type")
            type = TensorType(dtype_of(data), tuple(int(d) for d in data.shape))
        w = Weight(name, type, data)
        self.weights[name] = w
        return w

    @property
    def main(self) -> Function:
        """The entry function: @main if present, else the first."""
        if "main" in self.functions:
            return self.functions["main"]
        if not self.functions:
            raise ValueError("module has no functions")
        return next(iter(self.functions.values()))

    def walk(self) -> Iterator[Operation]:
        for fn in self.functions.values():
            yield from fn.walk()

    def __str__(self) -> str:
        from ember.ir.printer import print_module
        return print_module(self)

    def save(self, path: str) -> None:
        from ember.ir.files import save_module
        save_module(self, path)
