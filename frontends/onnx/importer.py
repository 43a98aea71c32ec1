"""Turn an ONNX ModelProto into a verified Ember Module.

The importer walks the graph in dependency order and hands each node to its
converter (registry.py) through a `NodeContext`. Values are tracked in slots:
an emitted Ember value, and what is known about it at build time: its numpy
value (initializers, Constant nodes, anything computed only from them) or its
elements as symbolic dims (`Shape -> Gather -> Concat` chains). Converters for
ops whose ONNX inputs are configuration (Reshape's shape, Slice's bounds) read
those inputs as static values and give Ember attributes.

Every problem is collected, not just the first: all unsupported nodes, with
op type, opset and node name, are reported in one error at the end.
Nodes without a converter whose ONNX schema defines them as a function of
other ops (or model-local functions) are imported through that expansion.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TypeProto, helper

from ember.errors import EmberError, UnsupportedOpError, VerifyError
from ember.frontends.onnx import registry
from ember.frontends.onnx.tensors import TensorError, element_type, onnx_type_code, to_array
from ember.ir.builder import Builder
from ember.ir.core import Block, Location, Module, Value
from ember.ir.dims import Dim, Unknown, sym
from ember.ir.opdef import ShapeOnly
from ember.ir.shape_values import ShapeValue
from ember.ir.staging import Slot, Staging, SymbolicOnly, sanitize_symbol
from ember.ir.types import OptionalType, SequenceType, TensorType, Type, dtype_of
from ember.ir.verify import verify

KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training"}


class OnnxImportError(EmberError, ValueError):
    """A malformed model: a cycle, a dangling input, bad tensor data, an unknown domain."""


class StaticInputsRequired(UnsupportedOpError):
    """Graph inputs that feed configuration (a reshape's shape, say), which Ember needs at
    build time, as TensorRT needs shape tensors. Pass them as `frozen_inputs`."""

    def __init__(self, message: str, names: Sequence[str]) -> None:
        super().__init__(message)
        self.names = tuple(names)


EXPANDED = object()  # a converter's result meaning "imported through the function expansion"


class NodeError(Exception):
    """Raised by a converter (through ctx.unsupported/ctx.fail) to reject one node."""

    def __init__(self, message: str, *, unsupported: bool = True, needs: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.unsupported = unsupported
        self.needs = tuple(needs)


@dataclass
class Scope:
    slots: dict[str, Slot] = field(default_factory=dict)
    parent: "Scope | None" = None

    def lookup(self, name: str) -> Slot | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.slots:
                return scope.slots[name]
            scope = scope.parent
        return None


@functools.lru_cache(maxsize=None)
def schema_attributes(op_type: str, domain: str, opset: int) -> dict[str, tuple[int, bool]]:
    """The attributes ONNX's schema of `op_type` at `opset` declares: name -> (type, required);
    empty when there is no schema (custom domains, model-local functions)."""
    try:
        schema = onnx.defs.get_schema(op_type, max(int(opset), 1), domain)
    except Exception:  # onnx.defs.SchemaError, or an opset onnx cannot look up
        return {}
    return {name: (int(a.type), bool(a.required)) for name, a in schema.attributes.items()
            if int(a.type) != AttributeProto.UNDEFINED}


def _attribute_type(code: int) -> str:
    try:
        return AttributeProto.AttributeType.Name(code)
    except ValueError:
        return f"type {code}"


def describe_node(node: NodeProto) -> str:
    ins = ", ".join(i or "<absent>" for i in node.input)
    outs = ", ".join(node.output)
    domain = f"{node.domain}." if node.domain not in ("", "ai.onnx") else ""
    return f"{domain}{node.op_type}({ins}) -> ({outs})"


def node_label(node: NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


class NodeContext:
    """What a converter sees of its node, and the tools to emit Ember ops."""

    def __init__(self, importer: "OnnxImporter", node: NodeProto, scope: Scope, builder: Builder,
                 opsets: dict[str, int], label: str) -> None:
        self.importer, self.node, self.scope, self.b, self.opsets = importer, node, scope, builder, opsets
        self.op_type = node.op_type
        self.domain = registry.canonical_domain(node.domain)
        self.opset = opsets.get(self.domain, 1)
        self.name = label
        self.loc = Location((label,))
        self._attrs = {a.name: a for a in node.attribute}

    # -- inputs ------------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return len(self.node.input)

    @property
    def n_outputs(self) -> int:
        return len(self.node.output)

    def has(self, i: int) -> bool:
        return i < len(self.node.input) and self.node.input[i] != ""

    def has_output(self, i: int) -> bool:
        return i < len(self.node.output) and self.node.output[i] != ""

    def _slot(self, i: int) -> Slot | None:
        return self.scope.lookup(self.node.input[i]) if self.has(i) else None

    def input(self, i: int) -> Value | None:
        slot = self._slot(i)
        return None if slot is None else self.importer.materialize(slot, self.node.input[i])

    def inputs(self) -> list[Value | None]:
        return [self.input(i) for i in range(self.n_inputs)]

    def type(self, i: int) -> Type | None:
        slot = self._slot(i)
        if slot is None:
            return None
        if slot.value is not None:
            return slot.value.type
        assert slot.const is not None
        return TensorType(dtype_of(slot.const), tuple(int(d) for d in slot.const.shape))

    def tensor_type(self, i: int) -> TensorType:
        t = self.type(i)
        if not isinstance(t, TensorType):
            raise self.fail(f"input {i} must be a tensor, got {t}")
        return t

    def const(self, i: int) -> np.ndarray | None:
        """The input's value if it is known at build time."""
        slot = self._slot(i)
        if slot is None:
            return None
        if slot.const is not None:
            return slot.const
        if slot.value is not None:
            return self.importer.known.get(slot.value)
        return None

    def static(self, i: int, what: str) -> np.ndarray:
        """The input's value, which this op needs at build time."""
        value = self.const(i)
        if value is None:
            raise self._needs_static(i, what)
        return value

    def static_ints(self, i: int, what: str, count: int | None = None) -> tuple[int, ...]:
        """A build-time input of integers, read flat (`count`: exactly that many)."""
        value = np.asarray(self.static(i, what))
        if value.dtype.kind not in "iub":
            raise self.fail(f"{what} must be integers, got {value.dtype}")
        if count is not None and value.size != count:
            raise self.fail(f"{what} must hold {count} value{'s' if count != 1 else ''}, got shape "
                            f"{list(value.shape)}")
        return tuple(int(v) for v in value.reshape(-1))

    def static_scalar(self, i: int, what: str) -> Any:
        """A build-time input of one element, as a Python number."""
        value = np.asarray(self.static(i, what))
        if value.size != 1:
            raise self.fail(f"{what} must hold one value, got shape {list(value.shape)}")
        return value.reshape(()).item()

    def dims(self, i: int, what: str) -> tuple[Dim, ...]:
        """The elements of a small integer input as dims (ints or symbolic), needed at build time."""
        sv = self.shape_value(i)
        if sv is None:
            raise self._needs_static(i, what)
        return sv.elements

    def shape_value(self, i: int) -> ShapeValue | None:
        value = self.const(i)
        if value is not None:
            return ShapeValue.of(value)
        slot = self._slot(i)
        if slot is None:
            return None
        if slot.dims is not None:
            return slot.dims
        return self.importer.known_dims.get(slot.value) if slot.value is not None else None

    def _needs_static(self, i: int, what: str) -> NodeError:
        slot = self._slot(i)
        if slot is None:
            return self.fail(f"{what} (input {i}) is required")
        sources = self.importer.graph_inputs_feeding(slot.value) if slot.value is not None else []
        src = f", computed from graph input{'s' if len(sources) > 1 else ''} " + \
            ", ".join(repr(s) for s in sources) if sources else ""
        return NodeError(f"{what} (input {i}, {self.node.input[i]!r}) must be known at build time{src}",
                         needs=sources)

    # -- attributes ------------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's value, or `default` when the node has none. An attribute whose type is not
        the one the op's ONNX schema declares (an INT where INTS is due), or a required one that is
        missing, fails the node: converters may rely on the schema's types."""
        a = self._attrs.get(name)
        declared = schema_attributes(self.op_type, self.domain, self.opset).get(name)
        if a is None:
            if declared is not None and declared[1] and default is None:
                raise self.fail(f"attribute {name!r} is required")
            return default
        if declared is not None and a.type != declared[0]:
            raise self.fail(f"attribute {name!r} is {_attribute_type(a.type)}; {self.op_type} takes "
                            f"{_attribute_type(declared[0])}")
        return self.importer.attribute_value(a, self.name)

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    # -- emitting ----------------------------------------------------------------------------
    def op(self, name: str, *operands: Value | None, **attrs: Any) -> Any:
        try:
            return self.b.op(name, *operands, loc=self.loc, **attrs)
        except VerifyError as err:
            raise NodeError(str(err).split("\n")[0], unsupported=False) from None

    def constant(self, value: Any, dtype: Any = None) -> Value:
        """A small constant, emitted where every block can see it."""
        arr = np.asarray(value, dtype=dtype.np_dtype if hasattr(dtype, "np_dtype") else dtype)
        return self.importer.constant(arr)

    def unsupported(self, message: str) -> NodeError:
        return NodeError(message)

    def fail(self, message: str) -> NodeError:
        return NodeError(message, unsupported=False)

    def expand(self) -> Any:
        """Import this node through its ONNX function expansion (for forms a converter leaves
        to it); returns nothing: the expansion binds the node's outputs itself."""
        self.importer.expand_schema_function(self.node, self.scope, self.b, self.opsets, self.name)
        return EXPANDED

    def subgraph(self, name: str) -> GraphProto:
        g = self.attr(name)
        if not isinstance(g, GraphProto):
            raise self.fail(f"attribute {name!r} must be a graph")
        return g

    def import_subgraph(self, graph: GraphProto, builder: Builder, args: Sequence[Value]) -> list[Value]:
        """Import `graph` into `builder`'s block; its inputs are `args`; it may read outer values."""
        imp = self.importer
        errors_before, static_before, needs_before = len(imp.errors), imp.static_failures, len(imp.needs_static)
        outs = imp.import_body(graph, builder, Scope(parent=self.scope), self.opsets, args)
        if any(v is None for v in outs):
            only_static = imp.static_failures - static_before == len(imp.errors) - errors_before
            needs = imp.needs_static[needs_before:] if only_static else ()
            raise NodeError(f"its subgraph {graph.name!r} could not be imported (see the errors above)",
                            unsupported=False, needs=needs)
        return outs


class OnnxImporter(Staging):
    def __init__(self, model: ModelProto, *, source: str = "<model>", base_dir: str | None = None,
                 frozen_inputs: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(Module(model.graph.name or None))
        self.model = model
        self.source = source
        self.base_dir = base_dir
        self.frozen = dict(frozen_inputs or {})
        self.module.attributes = {"producer": f"{model.producer_name} {model.producer_version}".strip()} \
            if model.producer_name else {}
        self.opsets = {registry.canonical_domain(o.domain): int(o.version) for o in model.opset_import}
        self.opsets.setdefault("", 1)
        self.functions = {(registry.canonical_domain(f.domain), f.name): f for f in model.functions}
        self.errors: list[str] = []
        self.reported: set[tuple] = set()  # nodes check_support already listed
        self.needs_static: list[str] = []  # graph inputs that failed nodes need at build time
        self.static_failures = 0           # how many of the errors are only that

    # -- the whole model ---------------------------------------------------------------------
    def run(self) -> Module:
        graph = self.model.graph
        self.check_structure(graph, outer=set(), opsets=self.opsets, where="graph")
        if self.errors:
            raise OnnxImportError(self._report("the model is malformed"))
        self.check_support(graph, self.opsets)
        b = Builder(module=self.module)
        self.prologue = b.block
        scope = Scope()
        inits = {t.name for t in graph.initializer}
        args = []
        for vi in graph.input:
            if vi.name in inits:
                continue  # IR < 4 lists initializers among inputs; they stay constants
            if vi.name in self.frozen:
                scope.slots[vi.name] = Slot(const=np.asarray(self.frozen[vi.name]))
                continue
            v = b.input(vi.name, self.value_type(vi.type, f"graph input {vi.name!r}", vi.name))
            scope.slots[vi.name] = Slot(value=v)
            args.append(v)
        outputs = self.import_body(graph, b, scope, self.opsets, None)
        if any(v is None for v in outputs) and not self.errors:
            missing = [vi.name for vi, v in zip(graph.output, outputs) if v is None]
            self.errors.append(f"graph outputs {missing} were not produced")
        if self.errors:
            message = self._report("the model has unsupported parts")
            if self.needs_static and self.static_failures == len(self.errors):
                raise StaticInputsRequired(message, list(dict.fromkeys(self.needs_static)))
            raise UnsupportedOpError(message)
        for vi, v in zip(graph.output, outputs):
            b.output(vi.name, v)
        module = b.build(verify=False)
        self.prune(module)
        verify(module)
        return module

    def _report(self, what: str) -> str:
        n = len(self.errors)
        head = f"{self.source}: {what}: " + (self.errors[0].split("\n")[0] if n == 1 else f"{n} problems")
        return head + "\n" + "\n".join("  " + e for e in self.errors)

    # -- checks before import -------------------------------------------------------------------
    def check_structure(self, graph: GraphProto, outer: set[str], opsets: dict[str, int], where: str) -> None:
        """Dangling inputs, cycles, duplicate definitions, unknown domains, all at once."""
        defined = set(outer) | {t.name for t in graph.initializer} | {i.name for i in graph.input}
        defined |= {t.values.name for t in graph.sparse_initializer}
        # A subgraph may return one value twice (a Loop body's carried value and its scan output);
        # the model's outputs are named by their values, so there each name is one output.
        listed = [("input", [i.name for i in graph.input])]
        if where == "graph":
            listed.append(("output", [o.name for o in graph.output]))
        for what, names in listed:
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                self.errors.append(f"{where}: {what} {twice[0]!r} is listed twice among the graph's {what}s")
        producers: dict[str, int] = {}
        for k, node in enumerate(graph.node):
            for o in node.output:
                if not o:
                    continue
                if o in producers or o in {i.name for i in graph.input}:
                    self.errors.append(f"node {node_label(node, k)!r}: value {o!r} is defined twice\n"
                                       f"      {describe_node(node)}")
                producers[o] = k
            dom = registry.canonical_domain(node.domain)
            if dom not in opsets and dom not in {registry.canonical_domain(d) for d in KNOWN_DOMAINS} \
                    and (dom, node.op_type) not in self.functions:
                self.errors.append(f"node {node_label(node, k)!r}: unknown domain {node.domain!r} "
                                   f"(the model imports {', '.join(repr(d) for d in opsets)})\n"
                                   f"      {describe_node(node)}")
        for k, node in enumerate(graph.node):
            for name in node.input:
                if name and name not in defined and name not in producers:
                    self.errors.append(f"node {node_label(node, k)!r}: input {name!r} is produced by no node, "
                                       f"graph input or initializer\n      {describe_node(node)}")
            for a in node.attribute:
                for g in ([a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)):
                    self.check_structure(g, defined | set(producers), opsets, f"{where}/{node_label(node, k)}")
        for o in graph.output:
            if o.name not in defined and o.name not in producers:
                self.errors.append(f"{where}: output {o.name!r} is produced by no node, input or initializer")
        if not self.errors:
            cycle = self._find_cycle(graph, producers)
            if cycle:
                names = " -> ".join(repr(node_label(graph.node[k], k)) for k in cycle)
                self.errors.append(f"node {node_label(graph.node[cycle[0]], cycle[0])!r}: the graph has a cycle: "
                                   f"{names}\n      {describe_node(graph.node[cycle[0]])}")

    @staticmethod
    def _find_cycle(graph: GraphProto, producers: dict[str, int]) -> list[int]:
        deps = [[producers[i] for i in n.input if i in producers] for n in graph.node]
        state = [0] * len(graph.node)  # 0 new, 1 on stack, 2 done
        for start in range(len(graph.node)):
            if state[start]:
                continue
            stack = [(start, iter(deps[start]))]
            path = [start]
            state[start] = 1
            while stack:
                k, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[k] = 2
                    stack.pop()
                    path.pop()
                elif state[nxt] == 1:
                    return path[path.index(nxt):] + [nxt]
                elif state[nxt] == 0:
                    state[nxt] = 1
                    stack.append((nxt, iter(deps[nxt])))
                    path.append(nxt)
        return []

    def check_support(self, graph: GraphProto, opsets: dict[str, int]) -> None:
        """Record every node whose op Ember cannot import at all (no converter, no expansion)."""
        for k, node in enumerate(graph.node):
            if not self.can_import(node, opsets):
                self.reported.add(_node_key(node))
                dom = registry.canonical_domain(node.domain)
                self.errors.append(
                    f"{node.domain + '.' if dom else ''}{node.op_type} (opset {opsets.get(dom, '?')}) "
                    f"node {node_label(node, k)!r}: no converter for this op\n      {describe_node(node)}")
            for a in node.attribute:
                for g in ([a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)):
                    self.check_support(g, opsets)

    def can_import(self, node: NodeProto, opsets: dict[str, int]) -> bool:
        dom = registry.canonical_domain(node.domain)
        version = opsets.get(dom, 1)
        if registry.find(dom, node.op_type, version) is not None or (dom, node.op_type) in self.functions:
            return True
        schema = self._schema(node, version)
        return schema is not None and (schema.has_function or schema.has_context_dependent_function)

    @staticmethod
    def _schema(node: NodeProto, version: int) -> Any:
        try:
            return onnx.defs.get_schema(node.op_type, version, node.domain)
        except onnx.defs.SchemaError:
            return None

    # -- graphs ------------------------------------------------------------------------------
    def import_body(self, graph: GraphProto, b: Builder, scope: Scope, opsets: dict[str, int],
                    args: Sequence[Value] | None) -> list[Value]:
        """Import a graph's nodes into `b`; `args` (for subgraphs) bind its inputs."""
        if args is not None:
            formal = [vi.name for vi in graph.input]
            if len(formal) != len(args):
                raise NodeError(f"subgraph {graph.name!r} takes {len(formal)} inputs, given {len(args)}",
                                unsupported=False)
            for name, v in zip(formal, args):
                scope.slots[name] = Slot(value=v)
                v.name = v.name or name
        for t in graph.initializer:
            self.add_initializer(t, scope)
        for k, node in self.topological(graph):
            self.import_node(node, scope, b, opsets, node_label(node, k))
        outs: list[Any] = []
        for vi in graph.output:
            slot = scope.lookup(vi.name)
            outs.append(None if slot is None else self.materialize(slot, vi.name))  # None: reported upstream
        return outs

    @staticmethod
    def topological(graph: GraphProto) -> list[tuple[int, NodeProto]]:
        """Nodes in an order where producers come first (ONNX asks for it; not every model obeys)."""
        producers = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
        order, state = [], [0] * len(graph.node)
        for start in range(len(graph.node)):
            stack = [start]
            while stack:
                k = stack[-1]
                if state[k] == 2:
                    stack.pop()
                    continue
                state[k] = 1
                pending = [producers[i] for i in graph.node[k].input
                           if i in producers and state[producers[i]] == 0]
                if pending:
                    stack.extend(pending)
                    continue
                state[k] = 2
                order.append(k)
                stack.pop()
        return [(k, graph.node[k]) for k in order]

    def add_initializer(self, t: onnx.TensorProto, scope: Scope) -> None:
        try:
            array = to_array(t, self.base_dir, f"initializer {t.name!r}")
        except TensorError as err:
            raise OnnxImportError(f"{self.source}: {err}") from None
        scope.slots[t.name] = Slot(const=array, weight=t.name)

    def import_node(self, node: NodeProto, scope: Scope, b: Builder, opsets: dict[str, int], label: str) -> None:
        missing = [name for name in node.input if name and scope.lookup(name) is None]
        missing += [name for name in _outer_reads(node) if scope.lookup(name) is None]
        if missing:
            if not self.errors:  # not downstream of a reported failure: say what is missing
                dom = registry.canonical_domain(node.domain)
                self._node_failed(node, opsets.get(dom, 1), label,
                                  f"input {missing[0]!r} is not defined where this node runs", False, ())
            return
        dom = registry.canonical_domain(node.domain)
        version = opsets.get(dom, 1)
        conv = registry.find(dom, node.op_type, version)
        if conv is None:
            if (dom, node.op_type) in self.functions:
                self.inline_function(node, self.functions[(dom, node.op_type)], scope, b, label)
                return
            if self.can_import(node, opsets):
                self.expand_schema_function(node, scope, b, opsets, label)
            elif _node_key(node) not in self.reported:  # a node inside a function body
                self._node_failed(node, version, label, "no converter for this op", True, ())
            return
        ctx = NodeContext(self, node, scope, b, opsets, label)
        start = len(b.block.ops)
        try:
            result = conv.fn(ctx)
        except NodeError as err:
            self._node_failed(node, version, label, str(err), err.unsupported, err.needs)
            return
        except EmberError as err:
            self._node_failed(node, version, label, str(err).split("\n")[0], False, ())
            return
        self.fold(b.block.ops[start:])
        if result is EXPANDED:
            return
        self.bind_outputs(node, result, scope, label, version)

    def _node_failed(self, node: NodeProto, version: int, label: str, message: str, unsupported: bool,
                     needs: Sequence[str]) -> None:
        dom = f"{node.domain}." if registry.canonical_domain(node.domain) else ""
        kind = "unsupported" if unsupported else "cannot import"
        self.errors.append(f"{dom}{node.op_type} (opset {version}) node {label!r}: {kind}: {message}\n"
                           f"      {describe_node(node)}")
        if needs:
            self.needs_static.extend(needs)
            self.static_failures += 1

    def bind_outputs(self, node: NodeProto, result: Any, scope: Scope, label: str, version: int) -> None:
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        for i, name in enumerate(node.output):
            if not name:
                continue
            r = results[i] if i < len(results) else None
            if r is None:
                self._node_failed(node, version, label, f"output {i} ({name!r}) is not produced", True, ())
                continue
            if isinstance(r, np.ndarray):
                scope.slots[name] = Slot(const=r)
                continue
            if isinstance(r, ShapeValue):
                arr = r.to_array()
                scope.slots[name] = Slot(const=arr) if arr is not None else Slot(dims=r)
                continue
            if r.name is None:
                r.name = name
            scope.slots[name] = Slot(value=r, const=self.known.get(r), dims=self.known_dims.get(r))

    # -- build-time knowledge (folding: ember.ir.staging) ------------------------------------
    def graph_inputs_feeding(self, v: Value | None) -> list[str]:
        """The function inputs a value is computed from (for 'needs a static input' reports)."""
        if v is None:
            return []
        seen, out, stack = set(), [], [v]
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            if isinstance(x.owner, Block):
                if x.owner is self.prologue and x.name:
                    out.append(x.name)
                continue
            if ShapeOnly in getattr(x.owner, "traits", ()) and all(
                    isinstance(o.type, TensorType) and o.type.is_static for o in x.owner.operands if o is not None):
                continue  # reads only static shapes: no input's data reaches it through here
            stack.extend(o for o in x.owner.operands if o is not None)
        return sorted(out)

    # -- materializing constants -------------------------------------------------------------
    def materialize(self, slot: Slot, name: str) -> Value:
        try:
            return super().materialize(slot, name)
        except SymbolicOnly as err:
            raise NodeError(str(err), unsupported=True) from None

    # -- functions -----------------------------------------------------------------------------
    def expand_schema_function(self, node: NodeProto, scope: Scope, b: Builder, opsets: dict[str, int],
                               label: str) -> None:
        dom = registry.canonical_domain(node.domain)
        version = opsets.get(dom, 1)
        schema = self._schema(node, version)
        full = NodeProto()
        full.CopyFrom(node)
        present = {a.name for a in node.attribute}
        for aname, a in schema.attributes.items():
            if aname not in present and a.default_value is not None and a.default_value.name:
                full.attribute.append(a.default_value)
        fn = None
        try:
            if schema.has_function:
                versions = [v for v in schema.function_opset_versions if v <= version] or \
                    list(schema.function_opset_versions)
                fn = onnx.FunctionProto.FromString(schema.get_function_with_opset_version(max(versions)))
            else:
                types = [self.type_proto(scope, name) for name in node.input]
                versions = [v for v in schema.context_dependent_function_opset_versions if v <= version] or \
                    list(schema.context_dependent_function_opset_versions)
                raw = schema.get_context_dependent_function_with_opset_version(
                    max(versions), full.SerializeToString(), [t.SerializeToString() for t in types])
                fn = onnx.FunctionProto.FromString(raw)
        except Exception as err:  # the schema could not build its body for these inputs
            self._node_failed(node, version, label, f"its ONNX function body cannot be built: {err}", True, ())
            return
        if not fn.node:
            self._node_failed(node, version, label, "its ONNX function body is empty for these inputs", True, ())
            return
        self.inline_function(full, fn, scope, b, label)

    def inline_function(self, node: NodeProto, fn: onnx.FunctionProto, scope: Scope, b: Builder,
                        label: str) -> None:
        """Import a function's body in place of `node`, its values renamed apart."""
        prefix = f"{label}/"
        rename: dict[str, str] = {}
        for k, formal in enumerate(fn.input):
            rename[formal] = node.input[k] if k < len(node.input) else ""
        for k, formal in enumerate(fn.output):
            if k < len(node.output) and node.output[k]:
                rename[formal] = node.output[k]
        attrs = {a.name: a for a in node.attribute}
        fn_opsets = {registry.canonical_domain(o.domain): int(o.version) for o in fn.opset_import}
        fn_opsets = {**self.opsets, **fn_opsets}
        for a in fn.attribute_proto:
            if a.name not in attrs:
                attrs[a.name] = a
        body = [self._renamed(n, rename, prefix, attrs) for n in fn.node]
        for k, inner in enumerate(body):
            self.import_node(inner, scope, b, fn_opsets, f"{label}/{node_label(inner, k)}")

    def _renamed(self, inner: NodeProto, rename: dict[str, str], prefix: str,
                 attrs: dict[str, AttributeProto]) -> NodeProto:
        def name(n: str) -> str:
            if not n:
                return ""
            return rename.get(n, prefix + n)

        out = NodeProto()
        out.CopyFrom(inner)
        del out.input[:]
        del out.output[:]
        del out.attribute[:]
        out.input.extend(name(n) for n in inner.input)
        out.output.extend(name(n) for n in inner.output)
        for a in inner.attribute:
            if a.ref_attr_name:
                if a.ref_attr_name in attrs:
                    new = AttributeProto()
                    new.CopyFrom(attrs[a.ref_attr_name])
                    new.name = a.name
                    out.attribute.append(new)
                continue
            if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                new = AttributeProto()
                new.CopyFrom(a)
                for g in ([new.g] if a.type == AttributeProto.GRAPH else list(new.graphs)):
                    self._rename_outer_refs(g, name, attrs)
                out.attribute.append(new)
                continue
            out.attribute.append(a)
        return out

    def _rename_outer_refs(self, graph: GraphProto, name: Any, attrs: dict[str, AttributeProto]) -> None:
        """Inside a function body's subgraph, names the subgraph does not define refer to the
        body's values, which inlining renamed: rename those references (in place)."""
        local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
        local |= {o for n in graph.node for o in n.output}
        renamed = []
        for n in graph.node:
            new = NodeProto()
            new.CopyFrom(n)
            del new.input[:]
            new.input.extend(i if (not i or i in local) else name(i) for i in n.input)
            del new.attribute[:]
            for a in n.attribute:
                b = AttributeProto()
                b.CopyFrom(attrs[a.ref_attr_name] if a.ref_attr_name and a.ref_attr_name in attrs else a)
                if a.ref_attr_name:
                    b.name = a.name
                if b.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                    inner_name = lambda x, local=local: x if x in local else name(x)  # noqa: E731
                    for g in ([b.g] if b.type == AttributeProto.GRAPH else list(b.graphs)):
                        self._rename_outer_refs(g, inner_name, attrs)
                new.attribute.append(b)
            renamed.append(new)
        del graph.node[:]
        graph.node.extend(renamed)
        for o in graph.output:
            if o.name not in local:
                o.name = name(o.name)

    # -- types ------------------------------------------------------------------------------
    def value_type(self, t: TypeProto, where: str, value_name: str, element: bool = False) -> Type:
        kind = t.WhichOneof("value")
        if kind == "tensor_type":
            dt = element_type(t.tensor_type.elem_type, where)
            if not t.tensor_type.HasField("shape"):
                return TensorType(dt, None)
            dims: list[Dim] = []
            for axis, d in enumerate(t.tensor_type.shape.dim):
                if d.HasField("dim_value"):
                    dims.append(int(d.dim_value))
                elif element:  # elements of a sequence may each have other sizes
                    dims.append(Unknown())
                elif d.HasField("dim_param") and d.dim_param:
                    dims.append(sym(sanitize_symbol(d.dim_param)))
                else:
                    dims.append(sym(sanitize_symbol(f"{value_name}_{axis}")))
            return TensorType(dt, tuple(dims))
        if kind == "sequence_type":
            return SequenceType(self.value_type(t.sequence_type.elem_type, where, value_name, element=True))
        if kind == "optional_type":
            return OptionalType(self.value_type(t.optional_type.elem_type, where, value_name, element=element))
        raise UnsupportedOpError(f"{where}: {kind or 'an empty'} type is not supported")

    def type_proto(self, scope: Scope, name: str) -> TypeProto:
        """An ONNX TypeProto for a value (for context-dependent function bodies)."""
        slot = scope.lookup(name) if name else None
        if slot is None:
            return TypeProto()
        t = slot.value.type if slot.value is not None else TensorType(dtype_of(slot.const), slot.const.shape)
        return _type_proto(t)

    # -- attributes ----------------------------------------------------------------------------
    def attribute_value(self, a: AttributeProto, where: str) -> Any:
        if a.type == AttributeProto.TENSOR:
            return to_array(a.t, self.base_dir, f"{where}: attribute {a.name!r}")
        if a.type == AttributeProto.TENSORS:
            return [to_array(t, self.base_dir, f"{where}: attribute {a.name!r}") for t in a.tensors]
        if a.type == AttributeProto.STRING:
            return a.s.decode("utf-8", errors="replace")
        if a.type == AttributeProto.STRINGS:
            return [s.decode("utf-8", errors="replace") for s in a.strings]
        if a.type == AttributeProto.TYPE_PROTO:
            return a.tp
        return helper.get_attribute_value(a)


def _outer_reads(node: NodeProto) -> list[str]:
    """Names a node's subgraphs read from the scope around the node."""
    out: list[str] = []
    for a in node.attribute:
        for g in ([a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)):
            local = {i.name for i in g.input} | {t.name for t in g.initializer}
            local |= {o for n in g.node for o in n.output}
            for n in g.node:
                out.extend(i for i in n.input if i and i not in local)
                out.extend(i for i in _outer_reads(n) if i not in local)
            out.extend(o.name for o in g.output if o.name not in local)
    return list(dict.fromkeys(out))


def _node_key(node: NodeProto) -> tuple:
    """Identifies a node across protobuf wrapper objects (which are not kept)."""
    return (node.name, node.op_type, node.domain, tuple(node.input), tuple(node.output))


def _type_proto(t: Type) -> TypeProto:
    if isinstance(t, TensorType):
        shape = None if t.shape is None else [d if isinstance(d, int) else str(d) for d in t.shape]
        return helper.make_tensor_type_proto(onnx_type_code(t.dtype), shape)
    if isinstance(t, SequenceType):
        return helper.make_sequence_type_proto(_type_proto(t.element))
    if isinstance(t, OptionalType):
        return helper.make_optional_type_proto(_type_proto(t.element))
    return TypeProto()


def import_model(model: ModelProto, *, source: str = "<model>", base_dir: str | None = None,
                 frozen_inputs: dict[str, np.ndarray] | None = None) -> Module:
    """Import a ModelProto; `frozen_inputs` fixes graph inputs to build-time values."""
    return OnnxImporter(model, source=source, base_dir=base_dir, frozen_inputs=frozen_inputs).run()
