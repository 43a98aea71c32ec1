"""Write an Ember module back as ONNX, so optimized graphs can be opened in Netron
and checked against onnxruntime.

Each Ember op has an exporter that emits ONNX nodes (opset 23; an op that ONNX
has only in a later opset raises the model's opset import to it, and the
ai.onnx.ml ops add that domain's import). Attributes
that ONNX takes as inputs (reshape's shape, slice's bounds) become
initializers; symbolic ones (`shape = [N, -1]`) become small shape
computations from the graph inputs that carry the symbols. Layout attributes
ONNX does not have (NHWC convolutions) become transposes around the op.
Weights keep their names, so exported initializers match the store.
Ops with no ONNX form are listed, all at once, in one error.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ember.errors import UnsupportedOpError
from ember.frontends.onnx.ops.elementwise import BINARY, UNARY, WITH_ATTRS
from ember.frontends.onnx.tensors import from_array, onnx_type_code
from ember.ir import layout as L
from ember.ir.core import Block, Function, Module, Operation, Value
from ember.ir.dims import Dim, DimExpr, FloorDiv, Max, Min, Mod, Sym, Unknown
from ember.ir.types import OptionalType, SequenceType, TensorType, Type

OPSET = 23
Exporter = Callable[["GraphWriter", Operation], None]
EXPORTERS: dict[str, Exporter] = {}


def exports(*names: str) -> Callable[[Exporter], Exporter]:
    def register(fn: Exporter) -> Exporter:
        for n in names:
            EXPORTERS[n] = fn
        return fn
    return register


def type_proto(t: Type) -> onnx.TypeProto:
    if isinstance(t, TensorType):
        shape = None if t.shape is None else [
            d if isinstance(d, int) else (None if isinstance(d, Unknown) else str(d)) for d in t.shape]
        return helper.make_tensor_type_proto(onnx_type_code(t.dtype), shape)
    if isinstance(t, SequenceType):
        return helper.make_sequence_type_proto(type_proto(t.element))
    if isinstance(t, OptionalType):
        return helper.make_optional_type_proto(type_proto(t.element))
    raise UnsupportedOpError(f"type {t} has no ONNX form")


class ModelWriter:
    """Shared across a model's graphs: unique names, initializers, symbol sources."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.used: set[str] = set()
        self.initializers: list[onnx.TensorProto] = []
        self.weight_names: set[str] = set()
        self.counter = itertools.count()
        self.problems: list[str] = []
        self.min_opset = 0  # raised by exporters of ops that ONNX has only in a later opset
        self.domains: dict[str, int] = {}  # other operator sets used (ai.onnx.ml) and their versions

    def require(self, version: int, domain: str = "") -> None:
        """The exported model needs `domain` (default: ai.onnx) at `version` or later."""
        if domain:
            self.domains[domain] = max(self.domains.get(domain, 0), version)
        else:
            self.min_opset = max(self.min_opset, version)

    def unique(self, hint: str) -> str:
        base = hint or "v"
        name = base
        while name in self.used:
            name = f"{base}_{next(self.counter)}"
        self.used.add(name)
        return name

    def initializer(self, array: np.ndarray, hint: str) -> str:
        name = self.unique(hint)
        self.initializers.append(from_array(np.asarray(array), name))
        return name


class GraphWriter:
    """Emits the nodes of one block (a function body or a region)."""

    def __init__(self, model: ModelWriter, parent: GraphWriter | None = None) -> None:
        self.model = model
        self.parent = parent
        self.names: dict[Value, str] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.symbols: dict[str, tuple[str, int]] = parent.symbols if parent else {}
        self.symbol_cache: dict[str, str] = parent.symbol_cache if parent else {}

    # -- names -------------------------------------------------------------------------------
    def name(self, v: Value | None) -> str:
        if v is None:
            return ""
        writer: GraphWriter | None = self
        while writer is not None:
            if v in writer.names:
                return writer.names[v]
            writer = writer.parent
        name = self.model.unique(v.name or "v")
        self.names[v] = name
        return name

    def fresh(self, hint: str) -> str:
        return self.model.unique(hint)

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None,
             *, hint: str = "", domain: str = "", **attrs: Any) -> list[str]:
        outs = list(outputs) if outputs is not None else [self.fresh(hint or op_type.lower())]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.fresh(f"{op_type}_node"),
                                           domain=domain, **attrs))
        return outs

    def const(self, array: Any, hint: str = "c") -> str:
        return self.model.initializer(np.asarray(array), hint)

    def ints(self, values: Sequence[int], hint: str = "ints") -> str:
        return self.const(np.array(list(values), np.int64), hint)

    # -- symbolic dims as tensors ----------------------------------------------------------------
    def dims_tensor(self, dims: Sequence[Dim], hint: str = "shape") -> str:
        """A 1-D int64 tensor holding `dims`, computed at run time where they are symbolic."""
        if all(isinstance(d, int) for d in dims):
            return self.ints([int(d) for d in dims], hint)
        parts = [self.dim_tensor(d) for d in dims]
        return self.node("Concat", parts, hint=hint, axis=0)[0]

    def dim_tensor(self, d: Dim) -> str:
        """A [1] int64 tensor with the value of one dim."""
        if isinstance(d, int):
            return self.ints([d], "dim")
        if isinstance(d, Unknown):
            raise UnsupportedOpError("an unknown dim cannot be exported as a value")
        total = None
        for mono, coeff in d.terms:
            term = self.ints([coeff], "coeff") if mono == () or coeff != 1 else None
            for atom, power in mono:
                for _ in range(power):
                    t = self.atom_tensor(atom)
                    term = t if term is None else self.node("Mul", [term, t])[0]
            assert term is not None
            total = term if total is None else self.node("Add", [total, term])[0]
        assert total is not None
        return total

    def atom_tensor(self, atom: Any) -> str:
        if isinstance(atom, Sym):
            if atom.name in self.symbol_cache:
                return self.symbol_cache[atom.name]
            if atom.name not in self.symbols:
                raise UnsupportedOpError(f"symbol {atom.name} is not the dim of any graph input; "
                                         "it cannot be computed in ONNX")
            source, axis = self.symbols[atom.name]
            out = self.node("Shape", [source], hint=f"dim_{atom.name}", start=axis, end=axis + 1)[0]
            self.symbol_cache[atom.name] = out
            return out
        op = {FloorDiv: "Div", Mod: "Mod", Max: "Max", Min: "Min"}.get(type(atom))
        if op is None:
            raise UnsupportedOpError(f"dim {atom} has no ONNX form")
        return self.node(op, [self.dim_tensor(atom.lhs), self.dim_tensor(atom.rhs)])[0]

    # -- blocks ---------------------------------------------------------------------------------
    def block(self, block: Block) -> None:
        for op in block.ops:
            fn = EXPORTERS.get(op.name)
            if fn is None:
                self.model.problems.append(f"{op.name} at {op.loc}: no ONNX form")
                continue
            try:
                fn(self, op)
            except UnsupportedOpError as err:
                self.model.problems.append(f"{op.name} at {op.loc}: {err}")

    def subgraph(self, block: Block, name: str, inputs: Sequence[tuple[Value, str]] = ()) -> onnx.GraphProto:
        """A region as an ONNX subgraph; it may read the enclosing graph's values by name."""
        sub = GraphWriter(self.model, parent=self)
        in_infos = []
        for v, hint in inputs:
            n = sub.model.unique(hint)
            sub.names[v] = n
            in_infos.append(helper.make_value_info(n, type_proto(v.type)))
        sub.block(block)
        out_infos = []
        for k, v in enumerate(block.outputs):
            src = sub.name(v)
            out = sub.fresh(f"{name}_out{k}")
            sub.node("Identity", [src], [out])
            out_infos.append(helper.make_value_info(out, type_proto(v.type)))
        return helper.make_graph(sub.nodes, name, in_infos, out_infos)


def export_module(module: Module, *, function: str | None = None, opset: int = OPSET) -> onnx.ModelProto:
    """The module's entry function (or `function`) as an ONNX model."""
    fn: Function = module.functions[function] if function else module.main
    model = ModelWriter(module)
    top = GraphWriter(model)
    inputs = []
    for name, v in zip(fn.input_names, fn.inputs):
        model.used.add(name)
        top.names[v] = name
        inputs.append(helper.make_value_info(name, type_proto(v.type)))
        if isinstance(v.type, TensorType) and v.type.shape is not None:
            for axis, d in enumerate(v.type.shape):
                if isinstance(d, DimExpr) and len(d.terms) == 1 and d.terms[0][1] == 1 \
                        and len(d.terms[0][0]) == 1 and isinstance(d.terms[0][0][0][0], Sym) \
                        and d.terms[0][0][0][1] == 1:
                    top.symbols.setdefault(d.terms[0][0][0][0].name, (name, axis))
    for name in fn.output_names:
        model.used.add(name)
    top.block(fn.body)
    outputs = []
    for name, v in zip(fn.output_names, fn.outputs):
        top.node("Identity", [top.name(v)], [name])
        outputs.append(helper.make_value_info(name, type_proto(v.type)))
    if model.problems:
        raise UnsupportedOpError(f"{len(model.problems)} ops cannot be exported to ONNX:\n"
                                 + "\n".join("  " + p for p in model.problems))
    graph = helper.make_graph(top.nodes, module.name or fn.name, inputs, outputs, model.initializers)
    imports = [helper.make_opsetid("", max(opset, model.min_opset))]
    imports += [helper.make_opsetid(d, v) for d, v in sorted(model.domains.items())]
    return helper.make_model(graph, opset_imports=imports, producer_name="ember")


# -- exporters ----------------------------------------------------------------------------------
def _outs(w: GraphWriter, op: Operation) -> list[str]:
    return [w.name(r) for r in op.results]


def _simple(onnx_type: str, **fixed: Any) -> Exporter:
    def emit(w: GraphWriter, op: Operation) -> None:
        w.node(onnx_type, [w.name(v) for v in op.operands], _outs(w, op), **fixed)
    return emit


for _onnx, _ember in {**UNARY, **BINARY}.items():
    EXPORTERS[_ember] = _simple(_onnx)
EXPORTERS["ember.identity"] = _simple("Identity")
EXPORTERS["ember.where"] = _simple("Where")
EXPORTERS["ember.clip"] = _simple("Clip")
EXPORTERS["ember.matmul"] = _simple("MatMul")
EXPORTERS["ember.size"] = _simple("Size")
EXPORTERS["ember.nonzero"] = _simple("NonZero")


def _same_operands(onnx_type: str, **attrs: str) -> Exporter:
    """An ONNX op with Ember's operands in order and attributes renamed (onnx_name=ember_name)."""
    def emit(w: GraphWriter, op: Operation) -> None:
        values = {k: op.attributes[v] for k, v in attrs.items()}
        values = {k: int(v) if isinstance(v, bool) else v for k, v in values.items()}
        w.node(onnx_type, [w.name(v) for v in op.operands], _outs(w, op), **values)
    return emit


def _with_attrs(onnx_type: str, mapping: dict[str, tuple[str, Any]]) -> Exporter:
    def emit(w: GraphWriter, op: Operation) -> None:
        attrs = {onnx_name: op.attributes[ember] for onnx_name, (ember, _) in mapping.items()}
        attrs = {k: int(v) if isinstance(v, bool) else v for k, v in attrs.items()}
        w.node(onnx_type, [w.name(op.operands[0])], _outs(w, op), **attrs)
    return emit


for _onnx, (_ember, _attrs) in WITH_ATTRS.items():
    EXPORTERS[_ember] = _with_attrs(_onnx, _attrs)




@exports("ember.bit_shift")
def _bit_shift(w: GraphWriter, op: Operation) -> None:
    w.node("BitShift", [w.name(v) for v in op.operands], _outs(w, op),
           direction=op.attributes["direction"].upper())


@exports("ember.cast")
def _cast(w: GraphWriter, op: Operation) -> None:
    to = op.attributes["to"]
    extra = {"saturate": int(op.attributes["saturate"])} if to.name.startswith("f8") else {}
    w.node("Cast", [w.name(op.operands[0])], _outs(w, op), to=onnx_type_code(to), **extra)


@exports("ember.constant")
def _constant(w: GraphWriter, op: Operation) -> None:
    w.node("Constant", [], _outs(w, op), value=from_array(op.attributes["value"].array))


@exports("ember.weight")
def _weight(w: GraphWriter, op: Operation) -> None:
    name = op.attributes["name"]
    data = w.model.module.weights[name].data
    if data is None:
        raise UnsupportedOpError(f"weight {name!r} has no data to export")
    if name not in w.model.weight_names:
        w.model.weight_names.add(name)
        w.model.used.add(name)
        w.model.initializers.append(from_array(np.asarray(data), name))
    w.names[op.results[0]] = name


@exports("ember.fused")
def _fused(w: GraphWriter, op: Operation) -> None:
    body = op.regions[0]
    for arg, v in zip(body.args, op.operands):
        w.names[arg] = w.name(v)
    w.block(body)
    for r, v in zip(op.results, body.outputs):
        w.node("Identity", [w.name(v)], [w.name(r)])






# -- layouts: ONNX is channels-first, so other layouts transpose around the op --------------------------
def _to_channels_first(w: GraphWriter, x: str, lay: L.Layout) -> str:
    perm = L.permutation(lay.letters, L.channels_first(len(lay.letters)) if len(lay.letters) <= 5 else lay.letters)
    if list(perm) == list(range(len(perm))):
        return x
    return w.node("Transpose", [x], perm=list(perm))[0]


def _from_channels_first(w: GraphWriter, y: str, out: str, lay: L.Layout) -> None:
    cf = L.channels_first(len(lay.letters)) if len(lay.letters) <= 5 else lay.letters
    perm = L.permutation(cf, lay.letters)
    if list(perm) == list(range(len(perm))):
        w.node("Identity", [y], [out])
    else:
        w.node("Transpose", [y], [out], perm=list(perm))


def _activation_layout(op: Operation) -> L.Layout:
    rank = op.operands[0].type.rank  # type: ignore[union-attr]
    return L.activation(op, op.attributes.get("layout"), rank)  # type: ignore[arg-type]


def _window_attrs(op: Operation) -> dict[str, Any]:
    a = op.attributes
    out: dict[str, Any] = {}
    for key in ("kernel_shape", "strides", "pads", "dilations"):
        if a.get(key):
            out[key] = [int(v) for v in a[key]]
    if a.get("auto_pad", "NOTSET") != "NOTSET":
        out["auto_pad"] = a["auto_pad"]
    return out


def _conv_like(onnx_type: str, default_weight: str) -> Exporter:
    def emit(w: GraphWriter, op: Operation) -> None:
        lay = _activation_layout(op)
        x = _to_channels_first(w, w.name(op.operands[0]), lay)
        wl = L.weight(op, op.attributes.get("weight_layout"), lay.spatial, default_weight)  # type: ignore[arg-type]
        weight = w.name(op.operands[1])
        target = default_weight + lay.spatial
        if wl.letters != target:
            weight = w.node("Transpose", [weight], perm=list(L.permutation(wl.letters, target)))[0]
        attrs = _window_attrs(op)
        attrs["group"] = op.attributes.get("group", 1)
        for key in ("output_padding",):
            if op.attributes.get(key):
                attrs[key] = list(op.attributes[key])
        if op.attributes.get("output_shape"):
            attrs["output_shape"] = [int(d) for d in op.attributes["output_shape"]]
        inputs = [x, weight] + ([w.name(op.operands[2])] if len(op.operands) > 2 and op.operands[2] else [])
        y = w.node(onnx_type, inputs, **attrs)[0]
        _from_channels_first(w, y, w.name(op.results[0]), lay)
    return emit


EXPORTERS["ember.conv"] = _conv_like("Conv", "OI")
EXPORTERS["ember.conv_transpose"] = _conv_like("ConvTranspose", "IO")


def _pool(onnx_type: str, extra: Callable[[Operation], dict[str, Any]] = lambda op: {}) -> Exporter:
    def emit(w: GraphWriter, op: Operation) -> None:
        lay = _activation_layout(op)
        x = _to_channels_first(w, w.name(op.operands[0]), lay)
        attrs = {**_window_attrs(op), **extra(op)}
        if op.attributes.get("ceil_mode"):
            attrs["ceil_mode"] = 1
        y = w.node(onnx_type, [x], **attrs)[0]
        _from_channels_first(w, y, w.name(op.results[0]), lay)
    return emit


EXPORTERS["ember.max_pool"] = _pool("MaxPool")
EXPORTERS["ember.avg_pool"] = _pool("AveragePool",
                                    lambda op: {"count_include_pad": int(op.attributes["count_include_pad"])})
EXPORTERS["ember.lp_pool"] = _pool("LpPool", lambda op: {"p": int(op.attributes["p"])})


def _global_pool(onnx_type: str) -> Exporter:
    def emit(w: GraphWriter, op: Operation) -> None:
        lay = _activation_layout(op)
        x = _to_channels_first(w, w.name(op.operands[0]), lay)
        attrs = {"p": int(op.attributes["p"])} if "p" in op.attributes else {}
        y = w.node(onnx_type, [x], **attrs)[0]
        _from_channels_first(w, y, w.name(op.results[0]), lay)
    return emit


EXPORTERS["ember.global_avg_pool"] = _global_pool("GlobalAveragePool")
EXPORTERS["ember.global_max_pool"] = _global_pool("GlobalMaxPool")
EXPORTERS["ember.global_lp_pool"] = _global_pool("GlobalLpPool")


def _channel_op(onnx_type: str, attrs_of: Callable[[Operation], dict[str, Any]]) -> Exporter:
    """Ops with a `layout` whose other operands are per-channel vectors."""
    def emit(w: GraphWriter, op: Operation) -> None:
        lay = _activation_layout(op)
        x = _to_channels_first(w, w.name(op.operands[0]), lay)
        y = w.node(onnx_type, [x] + [w.name(v) for v in op.operands[1:]], **attrs_of(op))[0]
        _from_channels_first(w, y, w.name(op.results[0]), lay)
    return emit


EXPORTERS["ember.batch_norm"] = _channel_op("BatchNormalization", lambda op: {"epsilon": op.attributes["epsilon"]})
EXPORTERS["ember.instance_norm"] = _channel_op("InstanceNormalization",
                                               lambda op: {"epsilon": op.attributes["epsilon"]})
EXPORTERS["ember.group_norm"] = _channel_op("GroupNormalization", lambda op: {
    "epsilon": op.attributes["epsilon"], "num_groups": op.attributes["num_groups"]})
EXPORTERS["ember.lrn"] = _channel_op("LRN", lambda op: {
    k: op.attributes[k] for k in ("size", "alpha", "beta", "bias")})
EXPORTERS["ember.depth_to_space"] = _channel_op("DepthToSpace", lambda op: {
    "blocksize": op.attributes["blocksize"], "mode": op.attributes["mode"]})
EXPORTERS["ember.space_to_depth"] = _channel_op("SpaceToDepth", lambda op: {"blocksize": op.attributes["blocksize"]})






def _axis_op(onnx_type: str) -> Exporter:
    return lambda w, op: w.node(onnx_type, [w.name(op.operands[0])], _outs(w, op), axis=op.attributes["axis"])


for _ember, _onnx in {"ember.softmax": "Softmax", "ember.log_softmax": "LogSoftmax",
                      "ember.hardmax": "Hardmax", "ember.flatten": "Flatten"}.items():
    EXPORTERS[_ember] = _axis_op(_onnx)


def _reduce(onnx_type: str) -> Exporter:
    def emit(w: GraphWriter, op: Operation) -> None:
        axes = op.attributes["axes"]
        inputs = [w.name(op.operands[0])]
        extra = {}
        if axes is not None:
            inputs.append(w.ints(axes, "axes"))
            if not axes:
                extra["noop_with_empty_axes"] = 1
        w.node(onnx_type, inputs, _outs(w, op), keepdims=int(op.attributes["keepdims"]), **extra)
    return emit


for _ember, _onnx in {"ember.reduce_sum": "ReduceSum", "ember.reduce_mean": "ReduceMean",
                      "ember.reduce_max": "ReduceMax", "ember.reduce_min": "ReduceMin",
                      "ember.reduce_prod": "ReduceProd", "ember.reduce_l1": "ReduceL1", "ember.reduce_l2": "ReduceL2",
                      "ember.reduce_log_sum": "ReduceLogSum", "ember.reduce_log_sum_exp": "ReduceLogSumExp",
                      "ember.reduce_sum_square": "ReduceSumSquare"}.items():
    EXPORTERS[_ember] = _reduce(_onnx)



@exports("ember.cumsum")
def _cumsum(w: GraphWriter, op: Operation) -> None:
    w.node("CumSum", [w.name(op.operands[0]), w.const(np.array(op.attributes["axis"], np.int64), "axis")],
           _outs(w, op), exclusive=int(op.attributes["exclusive"]), reverse=int(op.attributes["reverse"]))


@exports("ember.topk")
def _topk(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    if a["k"] is not None:
        k = w.dims_tensor([a["k"]], "k")
    else:
        k = w.node("Reshape", [w.name(op.operands[1]), w.ints([1], "one")], hint="k")[0]
    w.node("TopK", [w.name(op.operands[0]), k], _outs(w, op), axis=a["axis"],
           largest=int(a["largest"]), sorted=int(a["sorted"]))


@exports("ember.reshape")
def _reshape(w: GraphWriter, op: Operation) -> None:
    w.node("Reshape", [w.name(op.operands[0]), w.dims_tensor(op.attributes["shape"])], _outs(w, op),
           allowzero=int(op.attributes["allowzero"]))


@exports("ember.transpose")
def _transpose(w: GraphWriter, op: Operation) -> None:
    perm = op.attributes["perm"]
    w.node("Transpose", [w.name(op.operands[0])], _outs(w, op), perm=list(perm) if perm is not None else None)




@exports("ember.split")
def _split(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    inputs = [w.name(op.operands[0])]
    if a["sizes"] is not None:
        inputs.append(w.dims_tensor(a["sizes"], "split"))
        w.node("Split", inputs, _outs(w, op), axis=a["axis"])
    else:
        w.node("Split", inputs, _outs(w, op), axis=a["axis"], num_outputs=a["num_outputs"])


@exports("ember.slice")
def _slice(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    inputs = [w.name(op.operands[0]), w.dims_tensor(a["starts"], "starts"), w.dims_tensor(a["ends"], "ends")]
    inputs.append(w.ints(a["axes"], "axes") if a["axes"] is not None else "")
    if a["steps"] is not None:
        inputs.append(w.ints(a["steps"], "steps"))
    while inputs and inputs[-1] == "":
        inputs.pop()
    w.node("Slice", inputs, _outs(w, op))


@exports("ember.squeeze")
def _squeeze(w: GraphWriter, op: Operation) -> None:
    axes = op.attributes["axes"]
    inputs = [w.name(op.operands[0])] + ([w.ints(axes, "axes")] if axes is not None else [])
    w.node("Squeeze", inputs, _outs(w, op))


@exports("ember.unsqueeze")
def _unsqueeze(w: GraphWriter, op: Operation) -> None:
    w.node("Unsqueeze", [w.name(op.operands[0]), w.ints(op.attributes["axes"], "axes")], _outs(w, op))


@exports("ember.expand")
def _expand(w: GraphWriter, op: Operation) -> None:
    w.node("Expand", [w.name(op.operands[0]), w.dims_tensor(op.attributes["shape"])], _outs(w, op))


@exports("ember.tile")
def _tile(w: GraphWriter, op: Operation) -> None:
    w.node("Tile", [w.name(op.operands[0]), w.dims_tensor(op.attributes["repeats"], "repeats")], _outs(w, op))


@exports("ember.shape")
def _shape(w: GraphWriter, op: Operation) -> None:
    end = op.attributes["end"]
    w.node("Shape", [w.name(op.operands[0])], _outs(w, op), start=op.attributes["start"], end=end)










@exports("ember.pad")
def _pad(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    inputs = [w.name(op.operands[0]), w.dims_tensor(a["pads"], "pads"),
              w.name(op.operands[1]) if len(op.operands) > 1 else ""]
    if a["axes"] is not None:
        inputs.append(w.ints(a["axes"], "axes"))
    while inputs[-1] == "":
        inputs.pop()
    w.node("Pad", inputs, _outs(w, op), mode=a["mode"])


@exports("ember.trilu")
def _trilu(w: GraphWriter, op: Operation) -> None:
    w.node("Trilu", [w.name(op.operands[0]), w.const(np.array(op.attributes["k"], np.int64), "k")], _outs(w, op),
           upper=int(op.attributes["upper"]))


@exports("ember.range")
def _range(w: GraphWriter, op: Operation) -> None:
    w.node("Range", [w.name(v) for v in op.operands], _outs(w, op))


@exports("ember.one_hot")
def _one_hot(w: GraphWriter, op: Operation) -> None:
    indices, values = op.operands
    w.node("OneHot", [w.name(indices), w.const(np.array(op.attributes["depth"], np.int64), "depth"), w.name(values)],
           _outs(w, op), axis=op.attributes["axis"])


@exports("ember.resize")
def _resize(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    roi = w.const(np.array(a["roi"], np.float32), "roi") if a["roi"] is not None else ""
    scales = w.const(np.array(a["scales"], np.float32), "scales") if a["scales"] is not None else ""
    sizes = w.dims_tensor(a["sizes"], "sizes") if a["sizes"] is not None else ""
    inputs = [w.name(op.operands[0]), roi, scales, sizes]
    while inputs[-1] == "":
        inputs.pop()
    w.node("Resize", inputs, _outs(w, op), mode=a["mode"],
           coordinate_transformation_mode=a["coordinate_transformation_mode"], nearest_mode=a["nearest_mode"],
           cubic_coeff_a=a["cubic_coeff_a"], exclude_outside=int(a["exclude_outside"]),
           extrapolation_value=a["extrapolation_value"], antialias=int(a["antialias"]))


@exports("ember.quantize")
def _quantize(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    out_type = op.results[0].type.dtype  # type: ignore[attr-defined]
    extra = {"precision": onnx_type_code(a["precision"])} if a.get("precision") is not None else {}
    w.node("QuantizeLinear", [w.name(v) for v in op.operands], _outs(w, op), axis=a["axis"],
           block_size=a["block_size"], saturate=int(a["saturate"]), output_dtype=onnx_type_code(out_type), **extra)


@exports("ember.dequantize")
def _dequantize(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    out_type = op.results[0].type.dtype  # type: ignore[attr-defined]
    w.node("DequantizeLinear", [w.name(v) for v in op.operands], _outs(w, op), axis=a["axis"],
           block_size=a["block_size"], output_dtype=onnx_type_code(out_type))




@exports("ember.if")
def _if(w: GraphWriter, op: Operation) -> None:
    then_g = w.subgraph(op.regions[0], w.fresh("then"))
    else_g = w.subgraph(op.regions[1], w.fresh("else"))
    w.node("If", [w.name(op.operands[0])], _outs(w, op), then_branch=then_g, else_branch=else_g)


@exports("ember.loop")
def _loop(w: GraphWriter, op: Operation) -> None:
    body = op.regions[0]
    hints = ["iter", "cond"] + [f"carried{k}" for k in range(len(body.args) - 2)]
    graph = w.subgraph(body, w.fresh("body"), list(zip(body.args, hints)))
    has_trip, has_cond = len(op.operands) > 0 and op.operands[0] is not None, \
        len(op.operands) > 1 and op.operands[1] is not None
    if has_trip and not has_cond:
        # Ember follows ONNX's table: with a trip count and no cond, the body's cond is ignored.
        # Runtimes differ there (onnxruntime stops on it), so the export says it outright.
        true = w.fresh("always")
        graph.node.append(helper.make_node("Constant", [], [true], value=helper.make_tensor(
            true, onnx.TensorProto.BOOL, [], [True])))
        graph.output[0].name, old = w.fresh("cond_ignored"), graph.output[0].name
        graph.node.append(helper.make_node("Identity", [true], [graph.output[0].name]))
        del old
    w.node("Loop", [w.name(v) for v in op.operands], _outs(w, op), body=graph)


__all__ = ["EXPORTERS", "export_module", "exports"]


@exports("ember.max_pool_with_indices")
def _max_pool_indices(w: GraphWriter, op: Operation) -> None:
    lay = _activation_layout(op)
    if lay.channels_last:
        raise UnsupportedOpError("max-pool indices export only in channels-first layout")
    attrs = _window_attrs(op)
    if op.attributes.get("ceil_mode"):
        attrs["ceil_mode"] = 1
    w.node("MaxPool", [w.name(op.operands[0])], _outs(w, op), storage_order=op.attributes["storage_order"], **attrs)


for _ember, _onnx in {"ember.sequence_construct": "SequenceConstruct", "ember.sequence_at": "SequenceAt",
                      "ember.sequence_insert": "SequenceInsert", "ember.sequence_erase": "SequenceErase",
                      "ember.sequence_length": "SequenceLength", "ember.optional_has_element": "OptionalHasElement",
                      "ember.optional_get_element": "OptionalGetElement"}.items():
    EXPORTERS[_ember] = _simple(_onnx)


for _ember, _exporter in {
    "ember.mod": _same_operands("Mod", fmod="fmod"),
    "ember.gemm": _same_operands("Gemm", alpha="alpha", beta="beta", transA="trans_a", transB="trans_b"),
    "ember.einsum": _same_operands("Einsum", equation="equation"),
    "ember.layer_norm": _same_operands("LayerNormalization", axis="axis", epsilon="epsilon"),
    "ember.rms_norm": _same_operands("RMSNormalization", axis="axis", epsilon="epsilon"),
    "ember.concat": _same_operands("Concat", axis="axis"),
    "ember.gather": _same_operands("Gather", axis="axis"),
    "ember.gather_elements": _same_operands("GatherElements", axis="axis"),
    "ember.gather_nd": _same_operands("GatherND", batch_dims="batch_dims"),
    "ember.scatter_elements": _same_operands("ScatterElements", axis="axis", reduction="reduction"),
    "ember.scatter_nd": _same_operands("ScatterND", reduction="reduction"),
    "ember.dynamic_quantize": _same_operands("DynamicQuantizeLinear"),
    "ember.argmax": _same_operands("ArgMax", axis="axis", keepdims="keepdims", select_last_index="select_last_index"),
    "ember.argmin": _same_operands("ArgMin", axis="axis", keepdims="keepdims", select_last_index="select_last_index"),
}.items():
    EXPORTERS[_ember] = _exporter


# -- ops ONNX has in a later opset, in another domain, or only as a composition -------------------------
def _operand(op: Operation, i: int) -> Value | None:
    return op.operands[i] if i < len(op.operands) else None


def _inputs(w: GraphWriter, *values: Value | str | None) -> list[str]:
    """Input names, absent optional ones as "" (trailing ones dropped, as ONNX prefers)."""
    names = [v if isinstance(v, str) else w.name(v) for v in values]
    while names and names[-1] == "":
        names.pop()
    return names


def _scalar_i64(w: GraphWriter, d: Dim, hint: str) -> str:
    """A 0-D int64 tensor holding one dim (computed at run time where it is symbolic)."""
    if isinstance(d, int):
        return w.const(np.array(d, np.int64), hint)
    return w.node("Squeeze", [w.dim_tensor(d)], hint=hint)[0]


def _scalar_const(w: GraphWriter, value: Any, dtype: Any, hint: str) -> str:
    return w.const(np.array(value, dtype), hint)


@exports("ember.rsqrt")
def _rsqrt(w: GraphWriter, op: Operation) -> None:
    w.node("Reciprocal", [w.node("Sqrt", [w.name(op.operands[0])])[0]], _outs(w, op))


@exports("ember.silu")
def _silu(w: GraphWriter, op: Operation) -> None:
    x = w.name(op.operands[0])
    w.node("Mul", [x, w.node("Sigmoid", [x])[0]], _outs(w, op))


EXPORTERS["ember.max"] = _simple("Max")
EXPORTERS["ember.min"] = _simple("Min")
EXPORTERS["ember.prelu"] = _simple("PRelu")
EXPORTERS["ember.det"] = _simple("Det")
EXPORTERS["ember.string_concat"] = _simple("StringConcat")


@exports("ember.bitcast")
def _bitcast(w: GraphWriter, op: Operation) -> None:
    w.model.require(26)
    w.node("BitCast", [w.name(op.operands[0])], _outs(w, op), to=onnx_type_code(op.attributes["to"]))


@exports("ember.cumprod")
def _cumprod(w: GraphWriter, op: Operation) -> None:
    w.model.require(26)
    w.node("CumProd", [w.name(op.operands[0]), w.const(np.array(op.attributes["axis"], np.int64), "axis")],
           _outs(w, op), exclusive=int(op.attributes["exclusive"]), reverse=int(op.attributes["reverse"]))


@exports("ember.eye_like")
def _eye_like(w: GraphWriter, op: Operation) -> None:
    dt = op.attributes["dtype"]
    w.node("EyeLike", [w.name(op.operands[0])], _outs(w, op), k=op.attributes["k"],
           dtype=onnx_type_code(dt) if dt is not None else None)


@exports("ember.constant_of_shape")
def _constant_of_shape(w: GraphWriter, op: Operation) -> None:
    value = np.asarray(op.attributes["value"].array).reshape(1)
    shape = op.operands[0]
    name = w.name(shape)
    if shape.type.dtype.name != "i64":  # type: ignore[union-attr]
        name = w.node("Cast", [name], hint="shape", to=onnx.TensorProto.INT64)[0]
    w.node("ConstantOfShape", [name], _outs(w, op), value=from_array(value, "value"))


@exports("ember.unique")
def _unique(w: GraphWriter, op: Operation) -> None:
    w.node("Unique", [w.name(op.operands[0])], _outs(w, op), sorted=int(op.attributes["sorted"]),
           axis=op.attributes["axis"])


@exports("ember.reverse_sequence")
def _reverse_sequence(w: GraphWriter, op: Operation) -> None:
    """ONNX reverses along axis 0 or 1 with the batch on the other; other axes transpose there."""
    x, lengths = op.operands
    rank = x.type.rank  # type: ignore[union-attr]
    b, t = op.attributes["batch_axis"] % rank, op.attributes["time_axis"] % rank
    if {b, t} == {0, 1}:
        w.node("ReverseSequence", [w.name(x), w.name(lengths)], _outs(w, op), batch_axis=b, time_axis=t)
        return
    perm = [t, b] + [i for i in range(rank) if i not in (b, t)]
    xt = w.node("Transpose", [w.name(x)], perm=perm)[0]
    y = w.node("ReverseSequence", [xt, w.name(lengths)], batch_axis=1, time_axis=0)[0]
    w.node("Transpose", [y], _outs(w, op), perm=list(L.inverse(tuple(perm))))


@exports("ember.tensor_scatter")
def _tensor_scatter(w: GraphWriter, op: Operation) -> None:
    w.model.require(24)
    w.node("TensorScatter", _inputs(w, *op.operands), _outs(w, op), axis=op.attributes["axis"],
           mode=op.attributes["mode"])


# -- sequences and optionals ------------------------------------------------------------------------------
# The element types ONNX sequences may hold (seq(tensor(T)) in every sequence op's schema).
_SEQUENCE_TYPES = {"u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f16", "f32", "f64", "str", "bool", "c64",
                   "c128"}


@exports("ember.sequence_empty")
def _sequence_empty(w: GraphWriter, op: Operation) -> None:
    dt = op.attributes["dtype"]
    if dt.name not in _SEQUENCE_TYPES:
        raise UnsupportedOpError(f"ONNX sequences cannot hold {dt} tensors")
    w.node("SequenceEmpty", [], _outs(w, op), dtype=onnx_type_code(dt))


@exports("ember.split_to_sequence")
def _split_to_sequence(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    inputs = [w.name(op.operands[0])]
    extra: dict[str, Any] = {}
    if a["split"] is not None:
        inputs.append(w.dims_tensor(a["split"], "split"))
    elif a["chunk_size"] is not None:
        inputs.append(w.const(np.array(a["chunk_size"], np.int64), "split"))
    else:
        extra["keepdims"] = int(a["keepdims"])
    w.node("SplitToSequence", inputs, _outs(w, op), axis=a["axis"], **extra)


@exports("ember.concat_from_sequence")
def _concat_from_sequence(w: GraphWriter, op: Operation) -> None:
    w.node("ConcatFromSequence", [w.name(op.operands[0])], _outs(w, op), axis=op.attributes["axis"],
           new_axis=int(op.attributes["new_axis"]))


@exports("ember.optional")
def _optional(w: GraphWriter, op: Operation) -> None:
    x = _operand(op, 0)
    if x is not None:
        w.node("Optional", [w.name(x)], _outs(w, op))
    else:
        w.node("Optional", [], _outs(w, op), type=type_proto(op.attributes["type"]))


# -- strings and classic ML --------------------------------------------------------------------------------
@exports("ember.regex_full_match")
def _regex_full_match(w: GraphWriter, op: Operation) -> None:
    w.node("RegexFullMatch", [w.name(op.operands[0])], _outs(w, op), pattern=op.attributes["pattern"])


@exports("ember.string_split")
def _string_split(w: GraphWriter, op: Operation) -> None:
    w.node("StringSplit", [w.name(op.operands[0])], _outs(w, op), delimiter=op.attributes["delimiter"],
           maxsplit=op.attributes["maxsplit"])


@exports("ember.string_normalizer")
def _string_normalizer(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    w.node("StringNormalizer", [w.name(op.operands[0])], _outs(w, op), case_change_action=a["case_change"].upper(),
           is_case_sensitive=int(a["case_sensitive"]), locale=a["locale"],
           stopwords=list(a["stopwords"]) if a["stopwords"] else None)


@exports("ember.tfidf_vectorizer")
def _tfidf_vectorizer(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    lists = {k: list(a[k]) for k in ("pool_int64s", "pool_strings", "weights") if a[k] is not None}
    w.node("TfIdfVectorizer", [w.name(op.operands[0])], _outs(w, op), mode=a["mode"],
           min_gram_length=a["min_gram_length"], max_gram_length=a["max_gram_length"],
           max_skip_count=a["max_skip_count"], ngram_counts=list(a["ngram_counts"]),
           ngram_indexes=list(a["ngram_indexes"]), **lists)


ML = "ai.onnx.ml"
_LABEL_SUFFIX = {"str": "strings", "i64": "int64s", "f32": "floats"}
_LABEL_DEFAULT = {"str": "default_string", "i64": "default_int64", "f32": "default_float"}


@exports("ember.label_encoder")
def _label_encoder(w: GraphWriter, op: Operation) -> None:
    """Typed lists (opset 2) where keys and values are strings, i64 or f32; tensors (opset 4) otherwise."""
    a = op.attributes
    keys, values = a["keys"].array, a["values"].array
    default = np.asarray(a["default"].array).reshape(-1)
    kt, vt = a["keys"].dtype.name, a["values"].dtype.name
    if kt in _LABEL_SUFFIX and vt in _LABEL_SUFFIX:
        w.model.require(2, ML)
        fill = default[0].item() if vt != "str" else str(default[0])
        attrs = {f"keys_{_LABEL_SUFFIX[kt]}": [x if kt != "str" else str(x) for x in keys.tolist()],
                 f"values_{_LABEL_SUFFIX[vt]}": [x if vt != "str" else str(x) for x in values.tolist()],
                 _LABEL_DEFAULT[vt]: fill}
    else:
        w.model.require(4, ML)
        attrs = {"keys_tensor": from_array(keys, "keys"), "values_tensor": from_array(values, "values"),
                 "default_tensor": from_array(default, "default")}
    w.node("LabelEncoder", [w.name(op.operands[0])], _outs(w, op), domain=ML, **attrs)


_AGGREGATES = {"average": 0, "sum": 1, "min": 2, "max": 3}
_TRANSFORMS = {"none": 0, "softmax": 1, "logistic": 2, "softmax_zero": 3}


@exports("ember.tree_ensemble")
def _tree_ensemble(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    w.model.require(5, ML)
    ints = {k: list(a[k]) for k in ("nodes_featureids", "nodes_truenodeids", "nodes_trueleafs", "nodes_falsenodeids",
                                    "nodes_falseleafs", "tree_roots", "leaf_targetids")}
    if a["nodes_missing_value_tracks_true"] is not None:
        ints["nodes_missing_value_tracks_true"] = list(a["nodes_missing_value_tracks_true"])
    tensors = {"nodes_splits": from_array(a["nodes_splits"].array.reshape(-1), "nodes_splits"),
               "nodes_modes": from_array(np.array(a["nodes_modes"], np.uint8), "nodes_modes"),
               "leaf_weights": from_array(a["leaf_weights"].array.reshape(-1), "leaf_weights")}
    if a["membership_values"] is not None:
        tensors["membership_values"] = from_array(a["membership_values"].array.reshape(-1), "membership_values")
    w.node("TreeEnsemble", [w.name(op.operands[0])], _outs(w, op), domain=ML, n_targets=a["n_targets"],
           aggregate_function=_AGGREGATES[a["aggregate_function"]], post_transform=_TRANSFORMS[a["post_transform"]],
           **ints, **tensors)


# -- vision -----------------------------------------------------------------------------------------------
def _onnx_weight(w: GraphWriter, op: Operation, weight: Value, lay: L.Layout, default: str) -> str:
    """A filter in ONNX's order (OI + spatial) from its `weight_layout`."""
    wl = L.weight(op, op.attributes.get("weight_layout"), lay.spatial, default)  # type: ignore[arg-type]
    name = w.name(weight)
    target = default + lay.spatial
    if wl.letters != target:
        name = w.node("Transpose", [name], perm=list(L.permutation(wl.letters, target)))[0]
    return name


@exports("ember.conv_integer")
def _conv_integer(w: GraphWriter, op: Operation) -> None:
    lay = _activation_layout(op)
    x = _to_channels_first(w, w.name(op.operands[0]), lay)
    weight = _onnx_weight(w, op, op.operands[1], lay, "OI")  # type: ignore[arg-type]
    y = w.node("ConvInteger", _inputs(w, x, weight, _operand(op, 2), _operand(op, 3)),
               group=op.attributes["group"], **_window_attrs(op))[0]
    _from_channels_first(w, y, w.name(op.results[0]), lay)


@exports("ember.int8_conv", "ember.int8_matmul")
def _int8(w: GraphWriter, op: Operation) -> None:
    """ConvInteger / MatMulInteger (the exact i32 sums), then the epilogue of ir/ops/int8.py as
    ONNX ops in f32: Cast, Mul by sx * sw (per channel), Add bias, Relu, and QuantizeLinear (to
    i8) or a Cast to the result type."""
    g = op.operand_groups()
    zx = g["x_zero_point"]
    if op.name == "ember.int8_conv":
        lay = _activation_layout(op)
        x = _to_channels_first(w, w.name(g["x"]), lay)
        weight = _onnx_weight(w, op, g["w"], lay, "OI")  # type: ignore[arg-type]
        acc = w.node("ConvInteger", _inputs(w, x, weight, zx), group=op.attributes["group"], **_window_attrs(op))[0]
        rank, axis = len(lay.letters), 1
    else:
        lay = None
        weight = w.node("Transpose", [w.name(g["w"])], perm=[1, 0])[0]
        acc = w.node("MatMulInteger", _inputs(w, g["x"], weight, zx))[0]
        rank = op.results[0].type.rank  # type: ignore[union-attr]
        axis = rank - 1
    along = [1] * rank
    along[axis] = -1
    channel = w.ints(along, "channel")
    sx = w.node("Reshape", [w.name(g["x_scale"]), w.ints([], "scalar")])[0]
    scale = w.node("Mul", [sx, w.node("Reshape", [w.name(g["w_scale"]), channel])[0]])[0]
    v = w.node("Mul", [w.node("Cast", [acc], to=onnx.TensorProto.FLOAT)[0], scale])[0]
    if g["bias"] is not None:
        v = w.node("Add", [v, w.node("Reshape", [w.name(g["bias"]), channel])[0]])[0]
    if op.attributes["relu"]:
        v = w.node("Relu", [v])[0]
    out_type = op.results[0].type.dtype  # type: ignore[union-attr]
    if g["y_scale"] is not None:
        zy = w.name(g["y_zero_point"]) if g["y_zero_point"] is not None else w.const(np.int8(0), "zero")
        y = w.node("QuantizeLinear", [v, w.name(g["y_scale"]), zy])[0]
    else:
        y = v if out_type.name == "f32" else w.node("Cast", [v], to=onnx_type_code(out_type))[0]
    if lay is not None:
        _from_channels_first(w, y, w.name(op.results[0]), lay)
    else:
        w.node("Identity", [y], [w.name(op.results[0])])


@exports("ember.fp8_conv", "ember.fp8_matmul")
def _fp8(w: GraphWriter, op: Operation) -> None:
    """Cast of the fp8 operands to f32 (exact), Conv / MatMul in f32, then the epilogue of
    ir/ops/fp8.py as ONNX ops in f32: Mul by sx * sw (per channel), Add bias, Relu, and a Cast
    to the result type. The f32 sums round as the runtime's do (the reference rounds the exact
    sum once: the difference is the f32 rounding of the sums)."""
    g = op.operand_groups()
    f32_code = onnx.TensorProto.FLOAT
    if op.name == "ember.fp8_conv":
        lay = _activation_layout(op)
        x = _to_channels_first(w, w.node("Cast", [w.name(g["x"])], to=f32_code)[0], lay)
        weight = w.node("Cast", [_onnx_weight(w, op, g["w"], lay, "OI")], to=f32_code)[0]  # type: ignore[arg-type]
        acc = w.node("Conv", [x, weight], group=op.attributes["group"], **_window_attrs(op))[0]
        rank, axis = len(lay.letters), 1
    else:
        lay = None
        weight = w.node("Transpose", [w.node("Cast", [w.name(g["w"])], to=f32_code)[0]], perm=[1, 0])[0]
        acc = w.node("MatMul", [w.node("Cast", [w.name(g["x"])], to=f32_code)[0], weight])[0]
        rank = op.results[0].type.rank  # type: ignore[union-attr]
        axis = rank - 1
    along = [1] * rank
    along[axis] = -1
    channel = w.ints(along, "channel")
    sx = w.node("Reshape", [w.name(g["x_scale"]), w.ints([], "scalar")])[0]
    v = w.node("Mul", [acc, w.node("Mul", [sx, w.node("Reshape", [w.name(g["w_scale"]), channel])[0]])[0]])[0]
    if g["bias"] is not None:
        v = w.node("Add", [v, w.node("Reshape", [w.name(g["bias"]), channel])[0]])[0]
    if op.attributes["relu"]:
        v = w.node("Relu", [v])[0]
    out_type = op.results[0].type.dtype  # type: ignore[union-attr]
    y = v if out_type.name == "f32" else w.node("Cast", [v], to=onnx_type_code(out_type))[0]
    if lay is not None:
        _from_channels_first(w, y, w.name(op.results[0]), lay)
    else:
        w.node("Identity", [y], [w.name(op.results[0])])


@exports("ember.deform_conv")
def _deform_conv(w: GraphWriter, op: Operation) -> None:
    lay = _activation_layout(op)
    x = _to_channels_first(w, w.name(op.operands[0]), lay)
    weight = _onnx_weight(w, op, op.operands[1], lay, "OI")  # type: ignore[arg-type]
    offset = _to_channels_first(w, w.name(op.operands[2]), lay)
    mask = _operand(op, 4)
    mask_name = _to_channels_first(w, w.name(mask), lay) if mask is not None else ""
    attrs = {k: list(op.attributes[k]) for k in ("kernel_shape", "strides", "pads", "dilations") if op.attributes[k]}
    y = w.node("DeformConv", _inputs(w, x, weight, offset, _operand(op, 3), mask_name),
               group=op.attributes["group"], offset_group=op.attributes["offset_group"], **attrs)[0]
    _from_channels_first(w, y, w.name(op.results[0]), lay)


@exports("ember.max_unpool")
def _max_unpool(w: GraphWriter, op: Operation) -> None:
    """Ember's output_shape (spatial) is ONNX's output_shape input with x's batch and channels
    before it; the indices then address that shape (onnxruntime's reading)."""
    lay = _activation_layout(op)
    x = _to_channels_first(w, w.name(op.operands[0]), lay)
    indices = _to_channels_first(w, w.name(op.operands[1]), lay)
    a = op.attributes
    inputs = [x, indices]
    if a["output_shape"] is not None:
        lead = w.node("Shape", [x], hint="batch_channels", start=0, end=2)[0]
        inputs.append(w.node("Concat", [lead, w.dims_tensor(a["output_shape"], "spatial")], hint="output_shape",
                             axis=0)[0])
    attrs = {k: list(a[k]) for k in ("strides", "pads") if a[k]}
    y = w.node("MaxUnpool", inputs, kernel_shape=list(a["kernel_shape"]), **attrs)[0]
    _from_channels_first(w, y, w.name(op.results[0]), lay)


@exports("ember.grid_sample")
def _grid_sample(w: GraphWriter, op: Operation) -> None:
    lay = _activation_layout(op)
    x = _to_channels_first(w, w.name(op.operands[0]), lay)
    a = op.attributes
    y = w.node("GridSample", [x, w.name(op.operands[1])], mode=a["mode"], padding_mode=a["padding_mode"],
               align_corners=int(a["align_corners"]))[0]
    _from_channels_first(w, y, w.name(op.results[0]), lay)


@exports("ember.roi_align")
def _roi_align(w: GraphWriter, op: Operation) -> None:
    lay = _activation_layout(op)
    x = _to_channels_first(w, w.name(op.operands[0]), lay)
    a = op.attributes
    y = w.node("RoiAlign", [x, w.name(op.operands[1]), w.name(op.operands[2])], mode=a["mode"],
               output_height=a["output_height"], output_width=a["output_width"], sampling_ratio=a["sampling_ratio"],
               spatial_scale=a["spatial_scale"],
               coordinate_transformation_mode=a["coordinate_transformation_mode"])[0]
    _from_channels_first(w, y, w.name(op.results[0]), lay)


def _nms_node(w: GraphWriter, op: Operation, outputs: list[str] | None) -> str:
    """NonMaxSuppression of the op's boxes and scores, its limits as constant inputs."""
    a = op.attributes
    score = a["score_threshold"]
    inputs = [w.name(op.operands[0]), w.name(op.operands[1]),
              w.const(np.array([a["max_output_boxes_per_class"]], np.int64), "max_boxes"),
              w.const(np.array([a["iou_threshold"]], np.float32), "iou_threshold")]
    if score is not None:
        inputs.append(w.const(np.array([score], np.float32), "score_threshold"))
    return w.node("NonMaxSuppression", inputs, outputs, hint="selected",
                  center_point_box=int(a["center_point_box"]))[0]


@exports("ember.nms")
def _nms(w: GraphWriter, op: Operation) -> None:
    _nms_node(w, op, _outs(w, op))


@exports("ember.nms_padded")
def _nms_padded(w: GraphWriter, op: Operation) -> None:
    """NonMaxSuppression, its row count, and the rows padded with -1 up to the bound."""
    _padded(w, op, _nms_node(w, op, None), axis=0)


def _padded(w: GraphWriter, op: Operation, found: str, axis: int) -> None:
    """A data-sized 2-D result `found` padded with -1 along `axis` to the op's bound, and its
    length along that axis as the op's count (the *_padded ops' two results)."""
    padded, count = _outs(w, op)
    (kept,) = w.node("Shape", [found], hint="kept", start=axis, end=axis + 1)
    w.node("Squeeze", [kept, w.ints([0], "axis")], [count])
    (missing,) = w.node("Sub", [w.dim_tensor(op.results[0].type.shape[axis]), kept], hint="missing")
    zero = w.ints([0], "zero")
    pads = [zero, zero, zero, zero]
    pads[2 + axis] = missing
    (pads_value,) = w.node("Concat", pads, hint="pads", axis=0)
    w.node("Pad", [found, pads_value, w.const(np.array(-1, np.int64), "minus_one")], [padded])


@exports("ember.nonzero_padded")
def _nonzero_padded(w: GraphWriter, op: Operation) -> None:
    """NonZero, its column count, and the columns padded with -1 up to numel."""
    (found,) = w.node("NonZero", [w.name(op.operands[0])], hint="found")
    _padded(w, op, found, axis=1)


@exports("ember.head")
def _head(w: GraphWriter, op: Operation) -> None:
    """Slice to [0, max(count, 0)) along the axis (Slice clamps an end past the dim)."""
    (end,) = w.node("Reshape", [w.name(op.operands[1]), w.ints([1], "one")], hint="count")
    (end,) = w.node("Max", [end, w.ints([0], "zero")], hint="end")
    w.node("Slice", [w.name(op.operands[0]), w.ints([0], "start"), end, w.ints([op.attributes["axis"]], "axis")],
           _outs(w, op))


@exports("ember.col2im")
def _col2im(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    lay = L.activation(op, a.get("layout"), len(a["image_shape"]) + 2)  # type: ignore[arg-type]
    attrs = {k: list(a[k]) for k in ("strides", "pads", "dilations") if a[k]}
    y = w.node("Col2Im", [w.name(op.operands[0]), w.dims_tensor(a["image_shape"], "image_shape"),
                          w.ints(a["block_shape"], "block_shape")], **attrs)[0]
    _from_channels_first(w, y, w.name(op.results[0]), lay)


# -- signal -----------------------------------------------------------------------------------------------
@exports("ember.dft")
def _dft(w: GraphWriter, op: Operation) -> None:
    """Ember's axis counts the signal axes; ONNX's counts them all (the same for a
    non-negative axis below the trailing real/imaginary one)."""
    a = op.attributes
    x = op.operands[0]
    axis = a["axis"] % (x.type.rank - 1)  # type: ignore[union-attr]
    length = _scalar_i64(w, a["length"], "dft_length") if a["length"] is not None else ""
    w.node("DFT", [w.name(x), length, w.const(np.array(axis, np.int64), "axis")], _outs(w, op),
           inverse=int(a["inverse"]), onesided=int(a["onesided"]))


@exports("ember.stft")
def _stft(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    w.node("STFT", [w.name(op.operands[0]), _scalar_i64(w, a["frame_step"], "frame_step"), w.name(_operand(op, 1)),
                    _scalar_i64(w, a["frame_length"], "frame_length")], _outs(w, op), onesided=int(a["onesided"]))


_WINDOWS = {"hann": "HannWindow", "hamming": "HammingWindow", "blackman": "BlackmanWindow"}


@exports("ember.window")
def _window(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    w.node(_WINDOWS[a["kind"]], [_scalar_i64(w, a["size"], "size")], _outs(w, op), periodic=int(a["periodic"]),
           output_datatype=onnx_type_code(a["dtype"]))


@exports("ember.mel_weight_matrix")
def _mel_weight_matrix(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    inputs = [_scalar_const(w, a[k], np.int64, k) for k in ("num_mel_bins", "dft_length", "sample_rate")]
    inputs += [_scalar_const(w, a[k], np.float32, k) for k in ("lower_edge_hertz", "upper_edge_hertz")]
    w.node("MelWeightMatrix", inputs, _outs(w, op), output_datatype=onnx_type_code(a["dtype"]))


# -- recurrent --------------------------------------------------------------------------------------------
_ACTIVATION_NAMES = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "affine": "Affine",
                     "leaky_relu": "LeakyRelu", "thresholded_relu": "ThresholdedRelu", "scaled_tanh": "ScaledTanh",
                     "hard_sigmoid": "HardSigmoid", "elu": "Elu", "softsign": "Softsign", "softplus": "Softplus"}


def _recurrent(onnx_type: str, n_states: int, flag: str | None) -> Exporter:
    """RNN/GRU/LSTM. batch_first becomes transposes around the node (onnxruntime has no layout = 1).
    ONNX reads activation_alpha/beta in order, one per activation that takes it; every
    such parameter is written out (Ember's value, or its default)."""
    from ember.ir.ops.recurrent import ACTIVATION_PARAMS, ACTIVATIONS

    def emit(w: GraphWriter, op: Operation) -> None:
        a = op.attributes
        batch_first = a["batch_first"]
        x, weight, r, bias, lens = (_operand(op, i) for i in range(5))
        states = [_operand(op, 5 + i) for i in range(n_states)]
        extra = _operand(op, 5 + n_states)  # LSTM's peepholes

        def swap(v: Value | None) -> str:
            if v is None:
                return ""
            return w.node("Transpose", [w.name(v)], perm=[1, 0, 2])[0] if batch_first else w.name(v)

        lens_name = w.name(lens)
        if lens is not None and lens.type.dtype.name != "i32":  # type: ignore[union-attr]
            lens_name = w.node("Cast", [lens_name], to=onnx.TensorProto.INT32)[0]
        attrs: dict[str, Any] = {"direction": a["direction"], "clip": a["clip"]}
        hidden = r.type.shape[-1] if r is not None else None  # type: ignore[union-attr]
        if isinstance(hidden, int):
            attrs["hidden_size"] = hidden
        if flag is not None:
            attrs[flag] = int(a[flag])
        if a["activations"] is not None:
            acts = list(a["activations"])
            given_a, given_b = list(a["activation_alpha"] or ()), list(a["activation_beta"] or ())
            alphas, betas = [], []
            for k, name in enumerate(acts):
                _, da, db = ACTIVATIONS[name]
                takes_a, takes_b = ACTIVATION_PARAMS.get(name, (False, False))
                if takes_a:
                    alphas.append(float(given_a[k]) if given_a else da)
                if takes_b:
                    betas.append(float(given_b[k]) if given_b else db)
            attrs["activations"] = [_ACTIVATION_NAMES[n] for n in acts]
            attrs["activation_alpha"] = alphas or None
            attrs["activation_beta"] = betas or None
        inputs = _inputs(w, swap(x), weight, r, bias, lens_name, *[swap(s) for s in states],
                         *([extra] if n_states == 2 else []))
        outs = _outs(w, op)
        if not batch_first:
            w.node(onnx_type, inputs, outs, **attrs)
            return
        raw = w.node(onnx_type, inputs, [w.fresh(f"{onnx_type.lower()}_out{k}") for k in range(len(outs))], **attrs)
        w.node("Transpose", [raw[0]], [outs[0]], perm=[2, 0, 1, 3])  # [S,D,B,H] -> [B,S,D,H]
        for src, dst in zip(raw[1:], outs[1:]):
            w.node("Transpose", [src], [dst], perm=[1, 0, 2])  # [D,B,H] -> [B,D,H]
    return emit


EXPORTERS["ember.rnn"] = _recurrent("RNN", 1, None)
EXPORTERS["ember.gru"] = _recurrent("GRU", 1, "linear_before_reset")
EXPORTERS["ember.lstm"] = _recurrent("LSTM", 2, "input_forget")


# -- attention --------------------------------------------------------------------------------------------
_SCORE_MODES = {"raw": 0, "softcap": 1, "biased": 2, "probs": 3}
_INT64_MAX = np.iinfo(np.int64).max


@exports("ember.attention")
def _attention(w: GraphWriter, op: Operation) -> None:
    """ONNX Attention (4-D). Query positions: ONNX offsets its causal and window masks by
    the past length (past_key) or bottom-right by nonpad_kv_seqlen (opset 24). So a
    top-left q_offset splits K and V there into past and current; bottom_right passes
    kv_lens (or every batch's full key length) as nonpad_kv_seqlen. A window needs opset 25."""
    a = op.attributes
    q, k, v, mask, kv_lens = (_operand(op, i) for i in range(5))
    left, right = a["window"]
    windowed = left >= 0 or right >= 0
    positional = a["causal"] or windowed  # whether the queries' positions matter
    k_name, v_name = w.name(k), w.name(v)
    past_k = past_v = nonpad = ""
    if kv_lens is not None or (a["align"] == "bottom_right" and positional):
        if a["align"] == "top_left" and positional:
            raise UnsupportedOpError("kv_lens with a top-left causal or window mask has no ONNX form "
                                     "(ONNX aligns those masks bottom-right to nonpad_kv_seqlen)")
        w.model.require(24)
        if kv_lens is not None:
            nonpad = w.name(kv_lens)
            if kv_lens.type.dtype.name != "i64":  # type: ignore[union-attr]
                nonpad = w.node("Cast", [nonpad], hint="nonpad_kv_seqlen", to=onnx.TensorProto.INT64)[0]
        else:
            keys = w.node("Shape", [k_name], hint="kv_len", start=2, end=3)[0]
            batch = w.node("Shape", [k_name], hint="batch", start=0, end=1)[0]
            nonpad = w.node("Expand", [keys, batch], hint="nonpad_kv_seqlen")[0]
    elif positional and a["q_offset"] != 0:
        at = w.dims_tensor([a["q_offset"]], "q_offset")
        zero, end, axis = w.ints([0], "zero"), w.ints([_INT64_MAX], "end"), w.ints([2], "axis")
        past_k, k_name = (w.node("Slice", [k_name, lo, hi, axis])[0] for lo, hi in ((zero, at), (at, end)))
        past_v, v_name = (w.node("Slice", [v_name, lo, hi, axis])[0] for lo, hi in ((zero, at), (at, end)))
    if windowed:
        w.model.require(25)
    attrs: dict[str, Any] = {"scale": a["scale"], "is_causal": int(a["causal"]), "softcap": a["softcap"] or None}
    if windowed:
        attrs.update(left_window_size=left, right_window_size=right)
    outs = [w.name(op.results[0]), "", ""]
    if a["scores"] != "none":
        attrs["qk_matmul_output_mode"] = _SCORE_MODES[a["scores"]]
        outs.append(w.name(op.results[1]))
    if past_k:  # onnxruntime wants the present outputs with a past
        outs[1:3] = [w.fresh("present_key"), w.fresh("present_value")]
    mask_name = w.name(mask)
    mask_shape = mask.type.shape if mask is not None else None  # type: ignore[union-attr]
    if mask_shape is not None and (len(mask_shape) < 2 or mask_shape[-2] == 1):
        # the same broadcast, made explicit over the queries: onnxruntime takes only 2-D to 4-D
        # masks whose second-to-last dim is Q's sequence length
        rows = w.node("Concat", [w.node("Shape", [w.name(q)], start=2, end=3)[0], w.ints([1], "one")], axis=0)[0]
        mask_name = w.node("Expand", [mask_name, rows], hint="attn_mask")[0]
    w.node("Attention", _inputs(w, q, k_name, v_name, mask_name, past_k, past_v, nonpad), outs, **attrs)


@exports("ember.rotary_embedding")
def _rotary_embedding(w: GraphWriter, op: Operation) -> None:
    a = op.attributes
    w.node("RotaryEmbedding", _inputs(w, *op.operands), _outs(w, op), interleaved=int(a["interleaved"]),
           rotary_embedding_dim=a["rotary_dim"], num_heads=a["num_heads"])


@exports("ember.linear_attention")
def _linear_attention(w: GraphWriter, op: Operation) -> None:
    """ONNX LinearAttention (opset 27) packs heads: [B, T, H*D]. Ember's BHTD operands are
    transposed and reshaped into that form, and the output back."""
    w.model.require(27)
    q, k, v, past, decay, beta = (_operand(op, i) for i in range(6))
    hq, hkv = q.type.shape[1], k.type.shape[1]  # type: ignore[union-attr]
    if not isinstance(hq, int) or not isinstance(hkv, int):
        raise UnsupportedOpError(f"the head counts {hq} and {hkv} must be static (ONNX takes them as attributes)")

    def packed(value: Value | None) -> str:
        """[B, H, T, D] -> [B, T, H*D] (a [B, H, T, 1] per-head value becomes [B, T, H])."""
        if value is None:
            return ""
        t = w.node("Transpose", [w.name(value)], perm=[0, 2, 1, 3])[0]
        return w.node("Reshape", [t, w.ints([0, 0, -1], "packed")])[0]

    a = op.attributes
    out = w.fresh("linear_attention_out")
    w.node("LinearAttention", _inputs(w, packed(q), packed(k), packed(v), w.name(past), packed(decay), packed(beta)),
           [out, w.name(op.results[1])], q_num_heads=hq, kv_num_heads=hkv, update_rule=a["update_rule"],
           scale=a["scale"])
    split = w.node("Reshape", [out, w.ints([0, 0, hq, -1], "heads")])[0]
    w.node("Transpose", [split], [w.name(op.results[0])], perm=[0, 2, 1, 3])


# -- int8 between the heavy ops (ir/ops/int8.py): exact, as ONNX ops --------------------------------
def _q_scalar(w: GraphWriter, v: Value | None, zero: Any = None) -> str:
    """A per-tensor scale or zero point as a 0-D tensor (an absent zero point: `zero`, i8)."""
    if v is None:
        return w.const(np.array(zero, np.int8), "zero") if zero is not None else ""
    return w.node("Reshape", [w.name(v), w.ints([], "scalar")])[0]


def _dequantized(w: GraphWriter, x: str, s: Value, z: Value | None) -> str:
    return w.node("DequantizeLinear", _inputs(w, x, _q_scalar(w, s), _q_scalar(w, z)))[0]


def _requantized(w: GraphWriter, v: str, op: Operation, out: str | None = None) -> str:
    """QuantizeLinear to i8 with the op's y_scale and y_zero_point (0 when absent)."""
    g = op.operand_groups()
    return w.node("QuantizeLinear", [v, _q_scalar(w, g["y_scale"]), _q_scalar(w, g["y_zero_point"], 0)],
                  [out] if out is not None else None)[0]


@exports("ember.int8_requantize")
def _int8_requantize(w: GraphWriter, op: Operation) -> None:
    """QuantizeLinear(DequantizeLinear(x)): its definition."""
    g = op.operand_groups()
    _requantized(w, _dequantized(w, w.name(g["x"]), g["x_scale"], g["x_zero_point"]), op, w.name(op.results[0]))


@exports("ember.int8_add")
def _int8_add(w: GraphWriter, op: Operation) -> None:
    """QuantizeLinear([Relu](DequantizeLinear(a) + DequantizeLinear(b))): the same f32 steps."""
    g = op.operand_groups()
    v = w.node("Add", [_dequantized(w, w.name(g["a"]), g["a_scale"], g["a_zero_point"]),
                       _dequantized(w, w.name(g["b"]), g["b_scale"], g["b_zero_point"])])[0]
    if op.attributes["relu"]:
        v = w.node("Relu", [v])[0]
    _requantized(w, v, op, w.name(op.results[0]))


def _int8_mean(w: GraphWriter, op: Operation, acc: str, count: str, lay: L.Layout) -> None:
    """int8_mean: Cast(acc) * sx / count (f32 count), QuantizeLinear; back to the op's layout."""
    g = op.operand_groups()
    v = w.node("Mul", [w.node("Cast", [acc], to=onnx.TensorProto.FLOAT)[0], _q_scalar(w, g["x_scale"])])[0]
    _from_channels_first(w, _requantized(w, w.node("Div", [v, count])[0], op), w.name(op.results[0]), lay)


@exports("ember.int8_avg_pool")
def _int8_avg_pool(w: GraphWriter, op: Operation) -> None:
    """The window sums as a depthwise ConvInteger with a filter of ones (padding reads zx, so adds
    nothing), the counts as a ConvInteger of ones over ones (or the kernel's size with
    count_include_pad); ceil_mode's last windows have no ConvInteger form."""
    if op.attributes["ceil_mode"]:
        raise UnsupportedOpError("ember.int8_avg_pool with ceil_mode has no exact ONNX form")
    lay = _activation_layout(op)
    x = _to_channels_first(w, w.name(op.operands[0]), lay)
    t = op.operands[0].type  # type: ignore[union-attr]
    shape_cf = [t.shape[a] for a in lay.to_channels_first]  # type: ignore[union-attr]
    channels, kernel = shape_cf[1], [int(k) for k in op.attributes["kernel_shape"]]
    if not isinstance(channels, int):
        raise UnsupportedOpError("ember.int8_avg_pool with a symbolic channel count has no ONNX form")
    window = _window_attrs(op)
    ones = w.const(np.ones([channels, 1, *kernel], np.int8), "ones")
    zx = op.operand_groups()["x_zero_point"]
    acc = w.node("ConvInteger", _inputs(w, x, ones, _q_scalar(w, zx)), group=channels, **window)[0]
    if op.attributes["count_include_pad"]:
        count = w.const(np.array(np.prod(kernel), np.float32), "count")
    else:
        plane = w.node("ConstantOfShape", [w.dims_tensor([1, 1, *shape_cf[2:]])],
                       value=onnx.helper.make_tensor("one", onnx.TensorProto.INT8, [1], [1]))[0]
        inside = w.node("ConvInteger", [plane, w.const(np.ones([1, 1, *kernel], np.int8), "ones")], **window)[0]
        count = w.node("Cast", [inside], to=onnx.TensorProto.FLOAT)[0]
    _int8_mean(w, op, acc, count, lay)


@exports("ember.int8_global_avg_pool")
def _int8_global_avg_pool(w: GraphWriter, op: Operation) -> None:
    """ReduceSum of x - zx in i32 over the spatial dims, their element count as the divisor."""
    lay = _activation_layout(op)
    x = _to_channels_first(w, w.name(op.operands[0]), lay)
    t = op.operands[0].type  # type: ignore[union-attr]
    spatial = [t.shape[a] for a in lay.to_channels_first][2:]  # type: ignore[union-attr]
    g = op.operand_groups()
    d = w.node("Cast", [x], to=onnx.TensorProto.INT32)[0]
    if g["x_zero_point"] is not None:
        d = w.node("Sub", [d, w.node("Cast", [_q_scalar(w, g["x_zero_point"])], to=onnx.TensorProto.INT32)[0]])[0]
    acc = w.node("ReduceSum", [d, w.ints(range(2, 2 + len(spatial)), "axes")], keepdims=1)[0]
    n = w.node("ReduceProd", [w.dims_tensor(spatial)], keepdims=0)[0]
    _int8_mean(w, op, acc, w.node("Cast", [n], to=onnx.TensorProto.FLOAT)[0], lay)
