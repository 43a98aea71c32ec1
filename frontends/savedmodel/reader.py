"""A SavedModel folder: its MetaGraphDef, signatures, function library, and variables.

Variables reach a signature's graph as resource handles (VarHandleOp nodes
passed into the call of the signature's function). Which checkpoint entry
holds each one is written down by the graph's own restore op (SaverDef's
restore_op_name): RestoreV2 reads a list of checkpoint keys, and each of its
outputs is assigned (AssignVariableOp, or Assign for TF1 variables) to a
handle, possibly inside the called restore function. Following those
assignments gives handle -> key for TF2 (Keras) and TF1 SavedModels alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ember.errors import EmberError
from ember.frontends.savedmodel.checkpoint import Checkpoint
from ember.ir.regular_files import read_regular
from ember.frontends.savedmodel.protos import SavedModel, TrackableObjectGraph, entries
from ember.frontends.savedmodel.tensors import to_array

INIT_OP_KEY = "__saved_model_init_op"
CALL_OPS = ("StatefulPartitionedCall", "PartitionedCall")


class SavedModelError(EmberError, ValueError):
    """A folder that is not a readable SavedModel, or a signature that is not in it."""


def split_ref(ref: str) -> tuple[str, str, int]:
    """A tensor reference as (node, output arg name or "", index): graph form `node:2`,
    function form `node:arg:2`, a bare `node` (output 0), or a function argument.
    SavedModelDir checks every reference of the file with `check_ref` first."""
    parts = ref.split(":")
    if len(parts) == 1:
        return parts[0], "", 0
    if len(parts) == 2:
        return parts[0], "", int(parts[1])
    return parts[0], parts[1], int(parts[2])


def check_ref(ref: str) -> str | None:
    """Why `ref` is not a tensor reference `split_ref` reads (None: it is one)."""
    parts = ref.lstrip("^").split(":")
    if not parts[0]:
        return "it names no node"
    if len(parts) > 3:
        return "it has more than node:output:index"
    if len(parts) > 1 and not (parts[-1].isdigit() and parts[-1].isascii() and len(parts[-1]) < 10):
        return f"its index {parts[-1]!r} is not a small number"
    return None


@dataclass
class FunctionBody:
    """A graph or a function: its nodes by name, and (functions) arguments and returns."""

    name: str
    nodes: dict[str, Any]
    args: list[str] = field(default_factory=list)
    arg_types: list[int] = field(default_factory=list)
    returns: list[str] = field(default_factory=list)
    is_function: bool = False


def walk_back(body: FunctionBody, starts: Any, seen: set[tuple[str, str]], *, control: bool) -> Any:
    """The nodes of `body` that `starts` depend on (themselves included), each once across
    calls sharing `seen`; through control inputs too when `control`."""
    stack = list(starts)
    while stack:
        name = stack.pop()
        if (body.name, name) in seen or name not in body.nodes:
            continue
        seen.add((body.name, name))
        node = body.nodes[name]
        yield node
        stack.extend(split_ref(i.lstrip("^"))[0] for i in node.input if control or not i.startswith("^"))


class SavedModelDir:
    """The parsed folder; tensors of variables are read lazily from the checkpoint."""

    def __init__(self, path: str | Path, tags: tuple[str, ...] = ("serve",)) -> None:
        self.path = Path(path)
        pb = self.path / "saved_model.pb"
        if not self.path.is_dir():
            raise SavedModelError(f"{self.path}: not a folder (a SavedModel is a folder with saved_model.pb)")
        if not pb.exists() and not pb.is_symlink():
            hint = " (it has saved_model.pbtxt: text SavedModels are not supported)" \
                if (self.path / "saved_model.pbtxt").exists() else ""
            raise SavedModelError(f"{self.path}: no saved_model.pb in this folder: not a SavedModel{hint}")
        data = read_regular(pb, "saved_model.pb", SavedModelError)
        try:
            saved = SavedModel.FromString(data)
        except Exception as err:  # protobuf's DecodeError, for a truncated or foreign file
            raise SavedModelError(f"{pb}: not a readable SavedModel protobuf ({err})") from None
        if not saved.meta_graphs:
            raise SavedModelError(f"{pb}: the SavedModel has no MetaGraphDef")
        self.meta = self._pick(saved, tags, pb)
        self.graph = FunctionBody("graph", {n.name: n for n in self.meta.graph_def.node})
        self.functions = {f.signature.name: f for f in self.meta.graph_def.library.function}
        self.signatures = {k: v for k, v in entries(self.meta.signature_def).items() if k != INIT_OP_KEY}
        self.tf_version = self.meta.meta_info_def.tensorflow_version
        _check_structure(self.meta, pb)
        self._checkpoint: Checkpoint | None = None
        self._handle_keys: dict[str, str] | None = None
        self._bodies: dict[str, FunctionBody] = {}

    @staticmethod
    def _pick(saved: Any, tags: tuple[str, ...], pb: Path) -> Any:
        for mg in saved.meta_graphs:
            if set(tags) <= set(mg.meta_info_def.tags):
                return mg
        if len(saved.meta_graphs) == 1 and not saved.meta_graphs[0].meta_info_def.tags:
            return saved.meta_graphs[0]
        have = [sorted(mg.meta_info_def.tags) for mg in saved.meta_graphs]
        raise SavedModelError(f"{pb}: no MetaGraphDef with tags {sorted(tags)}; it has {have}")

    def signature(self, key: str) -> Any:
        if key not in self.signatures:
            have = ", ".join(repr(k) for k in sorted(self.signatures)) or "none"
            raise SavedModelError(f"{self.path}: no signature {key!r}; the SavedModel has {have}")
        return self.signatures[key]

    # -- functions -------------------------------------------------------------------------------
    def body(self, name: str) -> FunctionBody:
        if name not in self._bodies:
            if name not in self.functions:
                raise SavedModelError(f"{self.path / 'saved_model.pb'}: no function {name!r} in the library")
            f = self.functions[name]
            rets = entries(f.ret)
            self._bodies[name] = FunctionBody(
                name, {n.name: n for n in f.node_def}, [a.name for a in f.signature.input_arg],
                [a.type for a in f.signature.input_arg], [rets[a.name] for a in f.signature.output_arg],
                is_function=True)
        return self._bodies[name]

    # -- variables -------------------------------------------------------------------------------
    @property
    def checkpoint(self) -> Checkpoint:
        if self._checkpoint is None:
            self._checkpoint = Checkpoint(self.path / "variables" / "variables")
        return self._checkpoint

    def handle_keys(self) -> dict[str, str]:
        """Graph VarHandleOp (or TF1 Variable) node name -> checkpoint key: from the objects the
        called functions capture (TF2), then from what the restore op assigns (TF1, and TF2
        handles the first way does not reach)."""
        if self._handle_keys is None:
            self._handle_keys = self._captured_keys()
            restore = self.meta.saver_def.restore_op_name
            if restore:
                traced: dict[str, str] = {}
                self._trace_restore(self.graph, restore.split(":")[0].lstrip("^"), {}, traced, set())
                for handle, key in traced.items():
                    self._handle_keys.setdefault(handle, key)
        return self._handle_keys

    def _captured_keys(self) -> dict[str, str]:
        """TF2's own binding: a concrete function's last inputs are the objects listed in its
        `bound_inputs` (node ids of the SavedObjectGraph), and the checkpoint's object graph
        (the same ids) names each variable's checkpoint key."""
        bound = {name: list(f.bound_inputs) for name, f in entries(self.meta.object_graph_def.concrete_functions).items()
                 if f.bound_inputs}
        calls = [n for n in self.graph.nodes.values() if _callee(n, self.functions) in bound]
        if not calls:
            return {}
        keys = self._object_keys()
        out: dict[str, str] = {}
        for call in calls:
            ids = bound[_callee(call, self.functions) or ""]
            data = [i for i in call.input if not i.startswith("^")]
            for ref, node_id in zip(data[len(data) - len(ids):], ids):
                node = self.graph.nodes.get(split_ref(ref)[0])
                if node is not None and node.op == "VarHandleOp" and node_id in keys:
                    out.setdefault(node.name, keys[node_id])
        return out

    def _object_keys(self) -> dict[int, str]:
        """Object id -> checkpoint key of its value, from the checkpoint's object graph."""
        key = "_CHECKPOINTABLE_OBJECT_GRAPH"
        if key not in self.checkpoint.entries:
            return {}
        value = self.checkpoint.read(key)
        try:
            graph = TrackableObjectGraph.FromString(value.reshape(()).item())
        except Exception as err:  # not one string, or protobuf's DecodeError
            raise SavedModelError(f"{self.checkpoint.index_path}: the checkpoint's object graph ({key}) is not "
                                  f"readable ({type(err).__name__})") from None
        return {i: a.checkpoint_key for i, node in enumerate(graph.nodes) for a in node.attributes
                if a.name == "VARIABLE_VALUE"}

    def _trace_restore(self, body: FunctionBody, start: str, arg_handles: dict[str, str],
                       out: dict[str, str], seen: set[tuple[str, str]]) -> None:
        """Walk back from `start` through every input (control ones too), recording each
        assignment of a RestoreV2 output to a variable handle."""
        for node in walk_back(body, [start], seen, control=True):
            if node.op in ("AssignVariableOp", "Assign") and len(node.input) >= 2:
                handle = self._handle_of(body, node.input[0], arg_handles)
                key = self._restored_key(body, node.input[1])
                if handle is not None and key is not None:
                    out.setdefault(handle, key)
            callee = _callee(node, self.functions)
            if callee is not None:
                inner = self.body(callee)
                handles = {}
                for formal, actual in zip(inner.args, [i for i in node.input if not i.startswith("^")]):
                    h = self._handle_of(body, actual, arg_handles)
                    if h is not None:
                        handles[formal] = h
                for ref in list(inner.nodes):
                    self._trace_restore(inner, ref, handles, out, seen)

    def _handle_of(self, body: FunctionBody, ref: str, arg_handles: dict[str, str]) -> str | None:
        node_name = split_ref(ref.lstrip("^"))[0]
        if body.is_function and node_name in arg_handles:
            return arg_handles[node_name]
        node = body.nodes.get(node_name)
        if node is None or body.is_function:
            return None
        if node.op in ("VarHandleOp", "VariableV2", "Variable"):
            return node.name
        return None

    def _restored_key(self, body: FunctionBody, ref: str) -> str | None:
        """The checkpoint key a value comes from: RestoreV2's output k, through Identity chains."""
        for _ in range(64):
            name, _arg, index = split_ref(ref)
            node = body.nodes.get(name)
            if node is None:
                return None
            if node.op in ("Identity", "IdentityN"):
                at = index if node.op == "IdentityN" else 0
                if at >= len(node.input):
                    return None
                ref = node.input[at]
                continue
            if node.op in ("RestoreV2", "Restore", "RestoreSlice") and len(node.input) >= 2:
                names_node = body.nodes.get(split_ref(node.input[1])[0])
                value = entries(names_node.attr).get("value") if names_node is not None else None
                if names_node is None or names_node.op != "Const" or value is None or not value.HasField("tensor"):
                    return None
                keys = to_array(value.tensor, f"{body.name}/{names_node.name}").reshape(-1)
                key = keys[index] if index < keys.size else None
                return key.decode("utf-8", errors="replace") if isinstance(key, bytes) else None
            return None
        return None


def _check_structure(meta: Any, pb: Path) -> None:
    """What the importer indexes without asking, checked once: every tensor reference (node
    inputs, function returns, signature tensors) has the node[:output]:index form, and every
    function returns each of its outputs."""
    def bad(where: str, ref: str, why: str) -> SavedModelError:
        return SavedModelError(f"{pb}: {where}: {ref!r} is not a tensor reference: {why}")

    bodies = [("the graph", meta.graph_def.node)]
    for f in meta.graph_def.library.function:
        bodies.append((f"function {f.signature.name!r}", f.node_def))
        rets = entries(f.ret)
        for arg in f.signature.output_arg:
            if arg.name not in rets:
                raise SavedModelError(f"{pb}: function {f.signature.name!r} does not return its output {arg.name!r}")
            why = check_ref(rets[arg.name])
            if why:
                raise bad(f"function {f.signature.name!r}, output {arg.name!r}", rets[arg.name], why)
    for where, nodes in bodies:
        for node in nodes:
            for ref in node.input:
                why = check_ref(ref)
                if why:
                    raise bad(f"{where}, node {node.name!r}", ref, why)
    for key, sig in entries(meta.signature_def).items():
        for entry in list(sig.inputs) + list(sig.outputs):
            why = check_ref(entry.value.name) if entry.value.name else None
            if why:
                raise bad(f"signature {key!r}, tensor {entry.key!r}", entry.value.name, why)


def _callee(node: Any, functions: dict[str, Any]) -> str | None:
    if node.op in CALL_OPS:
        f = entries(node.attr).get("f")
        return f.func.name if f is not None and f.func.name in functions else None
    return node.op if node.op in functions else None
