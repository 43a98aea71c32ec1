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
from collections.abc import MutableSequence
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from ember.errors import UsageError, VerifyError
from ember.ir.types import TensorType, Type, dtype_of

if TYPE_CHECKING:
    pass


@dataclass(frozen=True, slots=True)
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
        """The names of all `locs`, each once, in order (linear: ops fused again and again
        carry long name lists)."""
        names: dict[str, None] = {}
        for loc in locs:
            names.update(dict.fromkeys(loc.names))
        return Location(tuple(names))


UNKNOWN_LOC = Location()


@dataclass(frozen=True, slots=True)
class Use:
    """`user` reads the value as its operand `index`; a Block user means its outputs."""

    user: "Operation | Block"
    index: int


class Value:
    """An SSA value: the result of an op or an argument of a block.

    Its uses are the keys of an insertion-ordered dict, so that rewriting one user of
    a value read by thousands of ops costs O(1), not a search of the list."""

    __slots__ = ("type", "name", "owner", "index", "_uses", "__weakref__")

    def __init__(self, type: Type, owner: "Operation | Block", index: int, name: str | None = None) -> None:
        self.type = type
        self.name = name
        self.owner = owner
        self.index = index
        self._uses: dict[Use, None] = {}

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
        # The block's order: neighbours in the linked list of the block this op is in (`_block`).
        self._prev: Operation | None = None
        self._next: Operation | None = None
        self._block: Block | None = None
        self.results: tuple[Value, ...] = ()
        self.set_result_types(result_types)

    def set_result_types(self, result_types: Sequence[Type]) -> None:
        assert not any(r._uses for r in self.results), "retyping results that have uses"
        self.results = tuple([Value(t, self, i) for i, t in enumerate(result_types)])

    # -- operands -------------------------------------------------------------
    @property
    def operands(self) -> tuple[Value | None, ...]:
        return tuple(self._operands)

    def _append_operand(self, v: Value | None) -> None:
        if v is not None:
            if not isinstance(v, Value):
                raise UsageError(f"{self.name}: operand {len(self._operands)} is a {type(v).__name__}, not a Value")
            v._uses[Use(self, len(self._operands))] = None
        self._operands.append(v)

    def set_operand(self, index: int, new: Value | None) -> None:
        old = self._operands[index]
        if old is not None:
            del old._uses[Use(self, index)]
        if new is not None:
            new._uses[Use(self, index)] = None
        self._operands[index] = new

    def set_operands(self, operands: Sequence[Value | None]) -> None:
        self.drop_operands()
        for v in operands:
            self._append_operand(v)

    def drop_operands(self) -> None:
        for i, v in enumerate(self._operands):
            if v is not None:
                del v._uses[Use(self, i)]
        self._operands = []

    # -- structure ------------------------------------------------------------
    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise VerifyError(f"{self.name} has {len(self.results)} results, not one")
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
                raise VerifyError(f"erasing {self.name} whose result is still used")
        self.drop_operands()
        for region in self.regions:
            for op in reversed(region.ops):
                op.drop_all_references()
        if self.parent is not None:
            self.parent._unlink(self)
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
    """A straight-line sequence of ops with arguments and outputs (a region, or a function body).

    The ops form a doubly linked list, so that a rewrite inserting ahead of an op or
    erasing one costs O(1) however long the block is. `block.ops` reads them as a
    sequence (iterate, index, slice, `len`); that view is a list built when first read
    after such a change and kept while ops are only appended, so reading stays as cheap
    as a list's.
    """

    def __init__(self, arg_types: Sequence[Type] = (), arg_names: Sequence[str | None] | None = None) -> None:
        names = list(arg_names) if arg_names is not None else [None] * len(arg_types)
        self.args: list[Value] = [Value(t, self, i, n) for i, (t, n) in enumerate(zip(arg_types, names))]
        self._first: Operation | None = None
        self._last: Operation | None = None
        self._count = 0
        self._order: list[Operation] | None = []  # the ops in order; None once stale
        self._upkeep = 0  # O(n) updates of _order since it was built (see _keep_order)
        self._outputs: list[Value] = []
        self.parent: Operation | Function | None = None

    # -- ops ------------------------------------------------------------------
    @property
    def ops(self) -> "OpList":
        """The ops in order: a live sequence view (its list methods edit the block)."""
        return OpList(self)

    @ops.setter
    def ops(self, ops: Iterable[Operation]) -> None:
        new = list(ops)
        op = self._first
        while op is not None:
            op._prev, op._next, op._block, op = None, None, None, op._next
        self._first = self._last = None
        self._count = 0
        self._order = []
        for op in new:
            self._link(op, None)

    def append(self, op: Operation) -> Operation:
        assert op.parent is None, "op already placed in a block"
        op.parent = self
        self._link(op, None)
        return op

    def insert_before(self, anchor: Operation, op: Operation) -> Operation:
        assert op.parent is None, "op already placed in a block"
        if anchor._block is not self:
            raise VerifyError(f"insert_before: {anchor.name} is not an op of this block")
        op.parent = self
        self._link(op, anchor)
        return op

    def _order_list(self) -> list[Operation]:
        order = self._order
        if order is None:
            order = []
            op = self._first
            while op is not None:
                order.append(op)
                op = op._next
            self._order, self._upkeep = order, 0
        return order

    def _keep_order(self) -> list[Operation] | None:
        """The order list when it is worth updating in place, else None (and it is dropped).

        An in-place update costs O(n) in C; rebuilding the list costs O(n) in Python, about
        twenty times more. Up to 16 updates per build keep readers that interleave with
        edits as fast as with a plain list, and a run of edits with no reads in between
        (the rewrite driver) drops the list after 16 and then pays O(1) per edit."""
        if self._order is None:
            return None
        self._upkeep += 1
        if self._upkeep > 16:
            self._order = None
        return self._order

    def _link(self, op: Operation, before: Operation | None) -> None:
        """Put `op` ahead of `before` (None: at the end); `op.parent` is the caller's."""
        if op._block is not None:
            raise VerifyError(f"{op.name} is already in a block")
        if before is None:
            last = self._last
            op._prev, op._next = last, None
            if last is None:
                self._first = op
            else:
                last._next = op
            self._last = op
            if self._order is not None:
                self._order.append(op)
        else:
            prev = before._prev
            op._prev, op._next = prev, before
            before._prev = op
            if prev is None:
                self._first = op
            else:
                prev._next = op
            order = self._keep_order()
            if order is not None:
                order.insert(order.index(before), op)
        op._block = self
        self._count += 1

    def _unlink(self, op: Operation) -> None:
        """Take `op` out of the order; `op.parent` is the caller's."""
        if op._block is not self:
            raise VerifyError(f"{op.name} is not an op of this block")
        prev, nxt = op._prev, op._next
        if prev is None:
            self._first = nxt
        else:
            prev._next = nxt
        if nxt is None:
            self._last = prev
        else:
            nxt._prev = prev
        op._prev = op._next = op._block = None
        self._count -= 1
        order = self._order
        if order is not None and order and order[-1] is op:
            order.pop()
        else:
            order = self._keep_order()
            if order is not None:
                order.remove(op)

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
                raise UsageError(f"block output {i} is a {type(v).__name__}, not a Value")
            v._uses[Use(self, i)] = None
            self._outputs.append(v)

    def set_output(self, index: int, new: Value) -> None:
        old = self._outputs[index]
        del old._uses[Use(self, index)]
        new._uses[Use(self, index)] = None
        self._outputs[index] = new

    def drop_outputs(self) -> None:
        for i, v in enumerate(self._outputs):
            del v._uses[Use(self, i)]
        self._outputs = []

    def walk(self) -> Iterator[Operation]:
        """Every op, nested ones too, in order; ops added to this block meanwhile are not visited."""
        for op in tuple(self._order_list()):
            yield from op.walk()

    @property
    def output_types(self) -> tuple[Type, ...]:
        return tuple(v.type for v in self._outputs)


class OpList(MutableSequence):
    """`block.ops`: the block's ops as a sequence. Reading is a list's; the list methods
    (insert, remove, del, assignment, append) edit the block's order, as they edited the
    list this used to be. `op in block.ops` is O(1)."""

    __slots__ = ("_block",)

    def __init__(self, block: Block) -> None:
        self._block = block

    def __len__(self) -> int:
        return self._block._count

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._block._order_list())

    def __reversed__(self) -> Iterator[Operation]:
        return reversed(self._block._order_list())

    def __contains__(self, op: object) -> bool:
        return isinstance(op, Operation) and op._block is self._block

    def __getitem__(self, index: Any) -> Any:
        return self._block._order_list()[index]

    def index(self, op: Any, start: int = 0, stop: int | None = None) -> int:
        order = self._block._order_list()
        return order.index(op, start, len(order) if stop is None else stop)

    def insert(self, index: int, op: Operation) -> None:
        order = self._block._order_list()
        if index < 0:
            index = max(0, index + len(order))
        self._block._link(op, order[index] if index < len(order) else None)

    def append(self, op: Operation) -> None:
        self._block._link(op, None)

    def __delitem__(self, index: Any) -> None:
        order = self._block._order_list()
        doomed = order[index] if isinstance(index, slice) else [order[index]]
        for op in list(doomed):
            self._block._unlink(op)

    def __setitem__(self, index: Any, value: Any) -> None:
        order = list(self._block._order_list())
        order[index] = value
        self._block.ops = order

    def remove(self, op: Operation) -> None:
        if not (isinstance(op, Operation) and op._block is self._block):
            raise VerifyError(f"{op!r} is not an op of this block")
        self._block._unlink(op)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OpList):
            other = list(other)
        return isinstance(other, (list, tuple)) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._block._order_list())


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
            raise VerifyError(f"weight {self.name!r}: data is {dtype_of(data)}{list(shape)}, declared {self.type}")


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
            raise VerifyError(f"module already has a function @{fn.name}")
        fn.module = self
        self.functions[fn.name] = fn
        return fn

    def unique_weight_name(self, base: str) -> str:
        """`base`, or `base2`, `base3`... the first no weight of the module has (for weights a
        pass derives from others: `w/transpose`, `w/merged3`)."""
        name, k = base, 1
        while name in self.weights:
            k += 1
            name = f"{base}{k}"
        return name

    def add_weight(self, name: str, data: np.ndarray | None = None, type: TensorType | None = None) -> Weight:
        if name in self.weights:
            raise VerifyError(f"module already has a weight named {name!r}")
        if type is None:
            if data is None:
                raise VerifyError(f"weight {name!r} needs data or a type")
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
            raise VerifyError(f"{'@' + self.name if self.name else 'module'}: module has no functions: nothing to run")
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
