"""Write an Ember module back as ONNX, so optimized graphs can be opened in Netron
and checked against onnxruntime.

Each Ember op has an exporter that emits ONNX nodes (opset 23). Attributes
that ONNX takes as inputs (reshape's shape, slice's bounds) become
initializers; symbolic ones (`shape = [N, -1]`) become small shape
computations from the graph inputs that carry the symbols. Layout attributes
ONNX does not have (NHWC convolutions) become transposes around the op.
Weights keep their names, so exported initializers match the store.
Ops with no ONNX form are listed, all at once, in one error.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

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

    def __init__(self, model: ModelWriter, parent: "GraphWriter | None" = None) -> None:
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
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="ember")


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
    w.node("Loop", [w.name(v) for v in op.operands], _outs(w, op), body=graph)


__all__ = ["export_module", "EXPORTERS", "exports"]


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
