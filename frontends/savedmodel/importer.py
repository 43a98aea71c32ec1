"""Build an Ember Module for one signature of a SavedModel.

The signature names graph tensors (`serving_default_x:0` in,
`StatefulPartitionedCall_1:0` out). The importer evaluates, from those outputs
backwards, only the nodes they need: the calls that tf.function and Keras
produce (StatefulPartitionedCall, PartitionedCall, or a function's name as the
op) are inlined, each function body evaluated with its arguments bound; the
save/restore machinery, NoOps, assertions and control dependencies are simply
never reached. Resource handles (VarHandleOp, passed into calls) resolve to
checkpoint entries (reader.py), and ReadVariableOp turns one into a weight.

Build-time values (ember.ir.staging) let Keras' shape bookkeeping (Shape ->
StridedSlice -> Pack -> Reshape, Tensordot's GatherV2/Prod/ConcatV2) become
attributes, symbolic batch dims included. Every unsupported op reachable from
the outputs is listed, with its node name, in one error before anything is
emitted.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ember.errors import EmberError, UnsupportedOpError, VerifyError
from ember.frontends.savedmodel.protos import entries
from ember.frontends.savedmodel.reader import (CALL_OPS, FunctionBody, SavedModelDir, SavedModelError,
                                               split_ref, walk_back)
from ember.frontends.savedmodel.tensors import DT_RESOURCE, TensorError, numpy_dtype, to_array
from ember.ir.builder import Builder
from ember.ir.core import Location, Module, Value
from ember.ir.dims import Dim, sym
from ember.ir.shape_values import ShapeValue
from ember.ir.staging import Slot, Staging, SymbolicOnly, sanitize_symbol
from ember.ir.types import TensorType, dtype_of
from ember.ir.verify import verify

# Ops that pass their input through (or do nothing) at inference.
PASS_THROUGH = {"Identity", "StopGradient", "PreventGradient", "Snapshot", "EnsureShape", "CheckNumerics",
                "PlaceholderWithDefault"}
# Ops the importer itself resolves (graph inputs, constants, variables).
BUILTIN = {"Placeholder", "Const", "VarHandleOp", "ReadVariableOp", "IdentityN", "VariableV2", "Variable"}
# Output argument names of ops with several single-tensor outputs, in order (function-body
# references name them: `bn:batch_mean:0`). Every other op's outputs are one argument (or one list).
OUTPUT_ARGS = {
    "FusedBatchNorm": ("y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"),
    "FusedBatchNormV2": ("y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"),
    "FusedBatchNormV3": ("y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2",
                         "reserve_space_3"),
    "TopKV2": ("values", "indices"),
    "Unique": ("y", "idx"),
}


class SavedModelImportError(EmberError, ValueError):
    """A graph Ember cannot import as it stands (a dangling reference, a cycle, bad tensors)."""


class NodeError(Exception):
    """Raised by a converter to reject one node; the importer adds where it is."""

    def __init__(self, message: str, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


@dataclass
class Resource:
    """A variable handle: the checkpoint key of its value and a readable name."""

    key: str
    name: str


@dataclass
class TensorList:
    """A TensorFlow TensorList (TensorArray) known element by element at build time: how
    Keras' recurrent layers feed and collect their time steps (see control.py)."""

    items: list[Slot | None]
    dtype: Any = None
    source: Slot | None = None  # the tensor whose leading slices the items are, where unwritten (None)


TFValue = Slot | Resource | TensorList  # what a TensorFlow tensor is during import
Converter = Callable[["NodeContext"], Any]
CONVERTERS: dict[str, Converter] = {}


def converter(*ops: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for op in ops:
            if op in CONVERTERS:
                raise ValueError(f"TensorFlow op {op} is registered twice")
            CONVERTERS[op] = fn
        return fn
    return register


# Ops that act on the import itself (loops unrolled, TensorLists): fn(importer, node, inputs, builder).
STRUCTURAL: dict[str, Callable[..., list[Any]]] = {}


def supported_ops() -> set[str]:
    import ember.frontends.savedmodel.control  # noqa: F401  (registers loops and TensorLists)
    import ember.frontends.savedmodel.ops  # noqa: F401  (registers the converters)
    return set(CONVERTERS) | set(STRUCTURAL) | PASS_THROUGH | set(CALL_OPS) | BUILTIN


# The kind of value (AttrValue's oneof; "list:i" a list of ints) of the attributes whose name
# has one meaning across TensorFlow's ops.
ATTR_KINDS = {
    **{name: "type" for name in ("T", "dtype", "out_type", "output_type", "index_type", "Tidx", "Tout", "DstT",
                                 "SrcT", "Tindices", "Tpaddings", "Tshape", "TI", "Taxis", "Tmultiples")},
    **{name: "list:i" for name in ("strides", "ksize", "dilations", "squeeze_dims", "explicit_paddings")},
    **{name: "s" for name in ("padding", "data_format", "mode", "equation")},
    **{name: "i" for name in ("num_split", "num", "batch_dims", "begin_mask", "end_mask", "ellipsis_mask",
                              "new_axis_mask", "shrink_axis_mask")},
    "value": "tensor", "shape": "shape", "f": "func", "cond": "func", "body": "func", "then_branch": "func",
    "else_branch": "func",
}
KIND_NAMES = {"i": "an int", "f": "a float", "b": "a bool", "s": "a string", "type": "a dtype", "shape": "a shape",
              "tensor": "a tensor", "func": "a function", "list": "a list", "list:i": "a list of ints"}


def _kind_of(default: Any) -> str | None:
    if isinstance(default, bool):
        return "b"
    if isinstance(default, int):
        return "i"
    if isinstance(default, float):
        return "f"
    if isinstance(default, str):
        return "s"
    if isinstance(default, (list, tuple)):
        return "list"
    return None


def _list_fields(a: Any) -> list[str]:
    return [f for f in ("i", "f", "s", "b", "type", "shape", "tensor", "func") if len(getattr(a.list, f))]


def _fits(a: Any, kind: str, expected: str) -> bool:
    if expected == "f":
        return kind in ("f", "i")
    if expected.startswith("list"):
        fields = _list_fields(a) if kind == "list" else []
        return kind == "list" and (expected == "list" or all(f == expected[5:] for f in fields))
    return kind == expected


def _describe(a: Any, kind: str) -> str:
    if kind == "list":
        fields = _list_fields(a)
        return f"a list of {', '.join(KIND_NAMES[f][2:] + 's' for f in fields)}" if fields else "an empty list"
    return KIND_NAMES.get(kind, kind)


class NodeContext:
    """What a converter sees of its node, and the tools to emit Ember ops."""

    def __init__(self, importer: "SavedModelImporter", node: Any, slots: list[TFValue],
                 b: Builder, where: str) -> None:
        self.importer, self.node, self._slots, self.b = importer, node, slots, b
        self.op_type = node.op
        self.name = node.name
        self.where = where
        self.loc = Location((node.name,))
        self._attrs = entries(node.attr)

    @property
    def n_inputs(self) -> int:
        return len(self._slots)

    def _slot(self, i: int) -> Slot:
        if not 0 <= i < len(self._slots):
            raise self.fail(f"input {i} is missing (the node has {len(self._slots)})")
        s = self._slots[i]
        if isinstance(s, Resource):
            raise self.fail(f"input {i} is a variable handle, not a tensor")
        if isinstance(s, TensorList):
            raise self.fail(f"input {i} is a TensorList, not a tensor")
        return s

    def input(self, i: int) -> Value:
        try:
            return self.importer.materialize(self._slot(i), self.node.input[i])
        except SymbolicOnly as err:
            raise NodeError(str(err), unsupported=True) from None

    def inputs(self) -> list[Value]:
        return [self.input(i) for i in range(self.n_inputs)]

    def variable(self, i: int) -> Value:
        """The value of the variable whose handle is input `i`."""
        s = self._slots[i] if i < len(self._slots) else None
        if not isinstance(s, Resource):
            raise self.fail(f"input {i} must be a variable handle")
        return self.importer.materialize(self.importer.variable(s), s.name)

    def type(self, i: int) -> TensorType:
        s = self._slot(i)
        if s.value is not None:
            assert isinstance(s.value.type, TensorType)
            return s.value.type
        if s.const is not None:
            return TensorType(dtype_of(s.const), tuple(int(d) for d in s.const.shape))
        assert s.dims is not None
        return TensorType(dtype_of(np.zeros(0, np.int64)), (len(s.dims.elements),))

    def rank(self, i: int) -> int:
        t = self.type(i)
        if t.shape is None:
            raise self.unsupported(f"input {i} needs a known rank")
        return t.rank

    def const(self, i: int) -> np.ndarray | None:
        s = self._slot(i)
        if s.const is not None:
            return s.const
        return self.importer.known.get(s.value) if s.value is not None else None

    def static(self, i: int, what: str) -> np.ndarray:
        value = self.const(i)
        if value is None:
            raise self.unsupported(f"{what} (input {i}, {self.node.input[i]!r}) must be known at build time")
        return value

    def ints(self, i: int, what: str) -> list[int]:
        value = np.asarray(self.static(i, what))
        if value.dtype.kind not in "iub":
            raise self.fail(f"{what} must be integers, got {value.dtype}")
        return [int(v) for v in value.reshape(-1)]

    def shape_value(self, i: int) -> ShapeValue | None:
        s = self._slot(i)
        if s.const is not None:
            return ShapeValue.of(s.const)
        if s.dims is not None:
            return s.dims
        return self.importer.shape_value_of(s.value) if s.value is not None else None

    def dims(self, i: int, what: str) -> tuple[Dim, ...]:
        sv = self.shape_value(i)
        if sv is None:
            raise self.unsupported(f"{what} (input {i}, {self.node.input[i]!r}) must be known at build time")
        return sv.elements

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's value, or `default`. Its kind (AttrValue's oneof) must be the one the name
        always has in TensorFlow's ops (`ATTR_KINDS`), else that of `default`: converters rely on it."""
        a = self._attrs.get(name)
        if a is None:
            return default
        kind = a.WhichOneof("value")
        if kind is None:
            return default
        expected = ATTR_KINDS.get(name) or _kind_of(default)
        if expected is not None and not _fits(a, kind, expected):
            raise self.fail(f"attribute {name!r} holds {_describe(a, kind)}; {self.op_type} takes "
                            f"{KIND_NAMES[expected]}")
        if kind == "list":
            lst = a.list
            for field in ("i", "f", "s", "b", "type", "shape"):
                values = list(getattr(lst, field))
                if values:
                    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in values]
            return []
        if kind == "s":
            return a.s.decode("utf-8", errors="replace")
        if kind == "tensor":
            try:
                return to_array(a.tensor, f"{self.where}: attribute {name!r}")
            except TensorError as err:
                raise self.fail(str(err)) from None
        if kind == "func":
            return a.func.name
        return getattr(a, kind)

    def required(self, name: str) -> Any:
        """The attribute's value; the node fails without it."""
        value = self.attr(name)
        if value is None:
            raise self.fail(f"attribute {name!r} is missing")
        return value

    def dtype(self, name: str) -> np.dtype:
        code = self.attr(name)
        if code is None:
            raise self.fail(f"attribute {name!r} is missing")
        try:
            return numpy_dtype(int(code), self.where)
        except TensorError as err:
            raise self.unsupported(str(err)) from None

    def op(self, name: str, *operands: Value | None, **attrs: Any) -> Any:
        try:
            return self.b.op(name, *operands, loc=self.loc, **attrs)
        except VerifyError as err:
            raise NodeError(str(err).split("\n")[0]) from None

    def constant(self, value: Any, dtype: Any = None) -> Value:
        return self.importer.constant(np.asarray(value, dtype=dtype))

    def unsupported(self, message: str) -> NodeError:
        return NodeError(message, unsupported=True)

    def fail(self, message: str) -> NodeError:
        return NodeError(message)


class SavedModelImporter(Staging):
    """One signature of a SavedModel imported into a new Module (see the module docstring)."""

    def __init__(self, saved: SavedModelDir, signature: str, shared_batch: bool = True) -> None:
        super().__init__(Module(None))
        self.saved = saved
        self.signature_key = signature
        self.shared_batch = shared_batch
        self.signature = saved.signature(signature)
        self.source = f"{saved.path} (signature {signature!r})"
        self.module.attributes = {"producer": f"TensorFlow {saved.tf_version}".strip()}
        self._variables: dict[str, Slot] = {}
        self.atrous: dict[Value, Any] = {}  # values on a SpaceToBatchND chain (atrous.py)

    # -- the signature -------------------------------------------------------------------------
    def run(self) -> Module:
        sig = self.signature
        inputs = sorted(entries(sig.inputs).items())
        outputs = sorted(entries(sig.outputs).items())
        if not outputs:
            raise SavedModelError(f"{self.source}: the signature has no outputs")
        for key, info in inputs + outputs:
            if info.WhichOneof("encoding") != "name":
                raise UnsupportedOpError(f"{self.source}: {key!r} is a sparse or composite tensor; "
                                         "Ember imports dense tensors only")
        self.check_support([info.name for _, info in outputs])
        b = Builder(module=self.module)
        self.prologue = b.block
        env: dict[str, TFValue] = {}
        for key, info in inputs:
            node = split_ref(info.name)[0]
            try:
                dt = dtype_of(np.zeros(0, numpy_dtype(info.dtype, f"signature input {key!r}")))
            except TensorError as err:
                raise UnsupportedOpError(f"{self.source}: {err}") from None
            shape = None if info.tensor_shape.unknown_rank else tuple(
                int(d.size) if d.size >= 0 else sym(self.symbol_for(key, axis, len(info.tensor_shape.dim)))
                for axis, d in enumerate(info.tensor_shape.dim))
            env[node] = Slot(value=b.input(key, TensorType(dt, shape)))
        results = self.evaluate(self.saved.graph, [info.name for _, info in outputs], env, b)
        for (key, _info), slot in zip(outputs, results):
            if not isinstance(slot, Slot):
                raise SavedModelImportError(f"{self.source}: output {key!r} is a variable handle or a TensorList, "
                                            "not a tensor")
            b.output(key, self.materialize(slot, key))
        module = b.build(verify=False)
        self.prune(module)
        verify(module)
        return module

    def symbol_for(self, key: str, axis: int, rank: int) -> str:
        """The symbol of an unknown input dim. TensorFlow Serving batches every input of a
        signature along axis 0, so an unknown leading dim of a batched input (rank >= 2) is
        the one `batch` symbol (unless shared_batch=False: inputs whose leading dims differ,
        such as two sets of vectors); any other unknown dim is its own, named after input and axis."""
        if axis == 0 and rank >= 2 and self.shared_batch:
            return "batch"
        return sanitize_symbol(f"{key}_{axis}")

    # -- support check -----------------------------------------------------------------------
    def check_support(self, refs: Sequence[str]) -> None:
        """Every unsupported op the outputs reach, through every called function, at once."""
        supported = supported_ops()
        problems: list[str] = []
        seen: set[tuple[str, str]] = set()

        def visit(body: FunctionBody, names: Sequence[str]) -> None:
            for node in walk_back(body, names, seen, control=False):
                callee = self._callee(node)
                for name in [callee] if callee is not None else self.branch_functions(node):
                    inner = self.saved.body(name)
                    visit(inner, [split_ref(r)[0] for r in inner.returns])
                if callee is None and node.op not in supported:
                    problems.append(f"{node.op or '(no op)'} node {node.name!r}" +
                                    (f" in function {body.name!r}" if body.is_function else ""))

        visit(self.saved.graph, [split_ref(r)[0] for r in refs])
        if problems:
            ops = sorted({p.split(" ")[0] for p in problems})
            raise UnsupportedOpError(
                f"{self.source}: {len(problems)} node(s) use ops Ember does not import: {', '.join(ops)}\n" +
                "\n".join("  " + p for p in sorted(problems)))

    def branch_functions(self, node: Any) -> list[str]:
        """The functions a While or If node runs (cond and body; the two branches)."""
        attrs = entries(node.attr)
        names = [attrs[k].func.name for k in ("cond", "body", "then_branch", "else_branch") if k in attrs]
        for name in names:
            if name not in self.saved.functions:
                raise SavedModelImportError(f"{self.source}: node {node.name!r} runs {name!r}, "
                                            "which is not in the function library")
        return names

    def _callee(self, node: Any) -> str | None:
        if node.op in CALL_OPS:
            f = entries(node.attr).get("f")
            name = f.func.name if f is not None else ""
            if name not in self.saved.functions:
                raise SavedModelImportError(f"{self.source}: node {node.name!r} calls {name!r}, "
                                            "which is not in the function library")
            return name
        return node.op if node.op in self.saved.functions else None

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, body: FunctionBody, refs: Sequence[str], env: dict[str, TFValue],
                 b: Builder) -> list[TFValue]:
        """The slots of `refs` in `body`, importing the nodes they need in dependency order."""
        order = self._order(body, refs, env)
        results: dict[str, list[TFValue]] = {}
        for name in order:
            node = body.nodes[name]
            ins = [self._resolve(body, ref, env, results) for ref in node.input if not ref.startswith("^")]
            results[name] = self.import_node(body, node, ins, b)
        return [self._resolve(body, ref, env, results) for ref in refs]

    def _order(self, body: FunctionBody, refs: Sequence[str], env: dict[str, Any]) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}
        for root in (split_ref(r)[0] for r in refs):
            stack = [root]
            while stack:
                name = stack[-1]
                if state.get(name) == 2 or name in env:
                    stack.pop()
                    continue
                node = body.nodes.get(name)
                if node is None:
                    raise SavedModelImportError(f"{self.source}: {body.name}: a node reads {name!r}, which is "
                                                "no node or argument there")
                if state.get(name) == 1:
                    state[name] = 2
                    order.append(name)
                    stack.pop()
                    continue
                state[name] = 1
                for i in node.input:
                    if i.startswith("^"):
                        continue
                    dep = split_ref(i)[0]
                    if state.get(dep) == 1 and dep not in env:
                        raise SavedModelImportError(f"{self.source}: {body.name}: node {name!r} is in a cycle "
                                                    f"through {dep!r}")
                    if state.get(dep) != 2 and dep not in env:
                        stack.append(dep)
        return order

    def _resolve(self, body: FunctionBody, ref: str, env: dict[str, TFValue],
                 results: dict[str, list[TFValue]]) -> TFValue:
        name, arg, index = split_ref(ref)
        if name in env:
            return env[name]
        outs = results[name]
        node = body.nodes[name]
        flat = index
        if arg and node.op in OUTPUT_ARGS:
            names = OUTPUT_ARGS[node.op]
            if arg not in names:
                raise SavedModelImportError(f"{self.source}: {ref!r}: {node.op} has no output {arg!r}")
            flat = names.index(arg) + index
        if flat >= len(outs) or outs[flat] is None:
            raise SavedModelImportError(f"{self.source}: {ref!r}: node {name!r} ({node.op}) has no output {flat}")
        return outs[flat]

    def import_node(self, body: FunctionBody, node: Any, ins: list[TFValue], b: Builder
                    ) -> list[TFValue]:
        where = f"{node.op} node {node.name!r}" + (f" in function {body.name!r}" if body.is_function else "")
        try:
            return self._import_node(body, node, ins, b, where)
        except NodeError as err:
            kind = UnsupportedOpError if err.unsupported else SavedModelImportError
            raise kind(f"{self.source}: {where}: {err}") from None
        except (SymbolicOnly, TensorError, VerifyError) as err:
            raise SavedModelImportError(f"{self.source}: {where}: {str(err).splitlines()[0]}") from None

    def _import_node(self, body: FunctionBody, node: Any, ins: list[TFValue], b: Builder,
                     where: str) -> list[TFValue]:
        op = node.op
        if op in PASS_THROUGH:
            return ins[:1]
        if op == "IdentityN":
            return list(ins)
        if op == "Const":
            value = entries(node.attr).get("value")
            if value is None or value.WhichOneof("value") != "tensor":
                raise NodeError("a Const without a tensor value", unsupported=False)
            return [Slot(const=to_array(value.tensor, "its value"))]
        if op == "Placeholder":
            raise NodeError("this graph input is not an input of the signature, but the outputs need it")
        if op == "VarHandleOp":
            keys = self.saved.handle_keys()
            if node.name not in keys:
                raise NodeError("the checkpoint restores no value into this variable")
            shared = entries(node.attr).get("shared_name")
            name = shared.s.decode("utf-8", errors="replace") if shared is not None and shared.s else node.name
            return [Resource(keys[node.name], name)]
        if op in ("VariableV2", "Variable"):  # TF1 reference variables are read directly
            keys = self.saved.handle_keys()
            if node.name not in keys:
                raise NodeError("the checkpoint restores no value into this variable")
            return [self.variable(Resource(keys[node.name], node.name))]
        if op == "ReadVariableOp":
            res = ins[0] if ins else None
            if not isinstance(res, Resource):
                raise NodeError("reads a value that is not a variable handle")
            return [self.variable(res)]
        callee = self._callee(node)
        if callee is not None:
            return self.call(callee, ins, b)
        if op in STRUCTURAL:
            return STRUCTURAL[op](self, node, ins, b)
        ctx = NodeContext(self, node, ins, b, where)
        start = len(b.block.ops)
        result = CONVERTERS[op](ctx)
        self.fold(b.block.ops[start:])
        return self._bind(result)

    @contextmanager
    def scratch(self, b: Builder) -> Iterator[None]:
        """Import into `b`'s module instead (a probe of a loop body, recurrent.py): its constants,
        weights and variables are emitted there, and what the model's import holds is untouched."""
        saved = (self.module, self.prologue, self.prologue_len, self._variables)
        self.module, self.prologue, self.prologue_len, self._variables = b.module, b.block, 0, {}
        try:
            yield
        finally:
            self.module, self.prologue, self.prologue_len, self._variables = saved

    def variable(self, res: Resource) -> Slot:
        """The value of a variable, read once from the checkpoint (one weight however often read)."""
        if res.key not in self._variables:
            self._variables[res.key] = Slot(const=self.saved.checkpoint.read(res.key), weight=res.name)
        return self._variables[res.key]

    def call(self, name: str, args: list[TFValue], b: Builder) -> list[TFValue]:
        """Inline a function: its body evaluated with its arguments bound to `args`."""
        body = self.saved.body(name)
        if len(args) != len(body.args):
            raise NodeError(f"calls {name!r} with {len(args)} arguments; it takes {len(body.args)}")
        env: dict[str, TFValue] = {}
        for formal, kind, actual in zip(body.args, body.arg_types, args):
            if kind == DT_RESOURCE and not isinstance(actual, Resource):
                raise NodeError(f"argument {formal!r} of {name!r} must be a variable handle")
            env[formal] = actual
        return self.evaluate(body, body.returns, env, b)

    def _bind(self, result: Any) -> list[TFValue]:
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        out: list[TFValue] = []
        for r in results:
            if isinstance(r, np.ndarray):
                out.append(Slot(const=r))
            elif isinstance(r, ShapeValue):
                arr = r.to_array()
                out.append(Slot(const=arr) if arr is not None else Slot(dims=r))
            else:
                out.append(Slot(value=r, const=self.known.get(r), dims=self.known_dims.get(r)))
        return out


def import_saved_model(path: Any, signature: str = "serving_default", tags: Sequence[str] = ("serve",),
                       shared_batch: bool = True) -> Module:
    saved = SavedModelDir(path, tuple(tags))
    return SavedModelImporter(saved, signature, shared_batch).run()
