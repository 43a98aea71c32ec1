"""Cases per target: mutated seeds, and named hostile cases.

A mutated case is named `<seed>|<mutator>#<n>|...`: the seed file, then each
mutation applied in turn with the integer that seeded its random choices, so a
failing case is rebuilt exactly by `<target>_case(seeds, seed, [(mutator, n), ...])`
(hypothesis draws the same three things, and shrinks them). `corpus(...)`
enumerates `count` of them deterministically, and adds the named cases: the
hostile external-data locations of issue 11 (`../` paths, absolute paths,
symlinks out of the folder, a folder, a FIFO, negative and huge offsets) and
the legitimate `sub/w.bin` location that must load with its bytes; symlinks and
missing files in a SavedModel; and the regression cases of bugs this suite
found.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np
from mutate import (BYTE_MUTATORS, IR_MUTATORS, ONNX_MUTATORS, PROTO_MUTATORS, SAVEDMODEL_MUTATORS, apply,
                    mutate_json)
from seeds import external_data_model
from targets import Case, Fifo, Folder, Link

Mutations = Sequence[tuple[str, int]]

ONNX_KINDS = [f"bytes:{k}" for k in BYTE_MUTATORS] + [f"proto:{k}" for k in PROTO_MUTATORS] + \
    [f"onnx:{k}" for k in ONNX_MUTATORS] * 2
IR_KINDS = [f"text:{k}" for k in IR_MUTATORS] * 2 + [f"textbytes:{k}" for k in BYTE_MUTATORS] + \
    [f"weights:{k}" for k in BYTE_MUTATORS]
SAVEDMODEL_KINDS = [f"pb:{k}" for k in PROTO_MUTATORS] + [f"pb:{k}" for k in SAVEDMODEL_MUTATORS] * 3 + \
    [f"pbbytes:{k}" for k in BYTE_MUTATORS] + [f"index:{k}" for k in BYTE_MUTATORS] + \
    [f"data:{k}" for k in BYTE_MUTATORS] + ["files:remove", "files:replace"]
ENGINE_KINDS = [f"bytes:{k}" for k in BYTE_MUTATORS] + ["json:plan"] * 4 + ["json:io", "json:kernels",
                                                                             "json:weights.index"] + \
    [f"ir:{k}" for k in IR_MUTATORS] + ["blob:weights", "blob:binaries"]

PASSWD = "/etc/passwd"


def name_of(seed: str, muts: Mutations) -> str:
    return "|".join([seed] + [f"{k}#{n}" for k, n in muts])


def enumerate_mutations(names: Sequence[str], kinds: Sequence[str], count: int, salt: int) -> list[tuple[str, list]]:
    rng = random.Random(salt)
    out = []
    for _ in range(count):
        seed = rng.choice(list(names))
        out.append((seed, [(rng.choice(list(kinds)), rng.randrange(2 ** 32))
                           for _ in range(rng.choice([1, 1, 1, 2, 3]))]))
    return out


# -- ONNX --------------------------------------------------------------------------------------------
def onnx_bytes(data: bytes, muts: Mutations) -> bytes:
    from onnx import ModelProto
    for kind, n in muts:
        group, name = kind.split(":")
        if group == "bytes":
            data = apply(BYTE_MUTATORS, name, data, n)
            continue
        model = ModelProto()
        try:
            model.ParseFromString(data)
        except Exception:
            continue  # an earlier mutation left no protobuf to edit
        apply(PROTO_MUTATORS if group == "proto" else ONNX_MUTATORS, name, model, n)
        try:
            data = model.SerializeToString()
        except Exception:
            continue
    return data


def onnx_case(seeds: dict[str, bytes], seed: str, muts: Mutations) -> Case:
    return Case(name_of(seed, muts), {"model.onnx": onnx_bytes(seeds[seed], muts)})


def _external(name: str, location: str, files: dict[str, Any] | None = None, *, offset: str | None = None,
              length: str | None = None, outside: dict[str, bytes] | None = None, expect: Any = None) -> Case:
    model = external_data_model(location, offset=offset, length=length).SerializeToString()
    return Case(f"external data: {name}", {"model.onnx": model, **(files or {})}, outside=outside or {},
                expect=expect, must_load=expect is not None)


W = np.array([1.5, -2.0, 3.25, 1e-3], np.float32)


def _weights_equal(module: Any) -> str | None:
    got = module.weights["w"].data
    if got is None or not np.array_equal(np.asarray(got), W):
        return f"the weights are {None if got is None else np.asarray(got).tolist()}, sub/w.bin holds {W.tolist()}"
    return None


def external_data_cases() -> list[Case]:
    """Issue 11's external-data locations: refused in one line (never read), except the legitimate
    one, which loads with the bytes written there."""
    w = W.tobytes()
    return [
        _external("legitimate sub/w.bin", "sub/w.bin", {"sub/w.bin": w}, expect=_weights_equal),
        _external("legitimate sub/w.bin at an offset", "sub/w.bin", {"sub/w.bin": b"\0" * 64 + w}, offset="64",
                  length="16", expect=_weights_equal),
        _external("../ path", "../" * 12 + PASSWD.lstrip("/"), length="16"),
        _external("../ path to a file beside the folder", "../outside.bin"),
        _external("absolute path", PASSWD, length="16"),
        _external("symlink leaving the folder", "link.bin", {"link.bin": Link(PASSWD)}, length="16"),
        _external("relative symlink leaving the folder", "link.bin", {"link.bin": Link("{outside}/w.bin")},
                  outside={"w.bin": w}),
        _external("symlinked folder leaving the folder", "d/passwd", {"d": Link("/etc")}, length="16"),
        _external("location is a folder", "sub", {"sub": Folder()}),
        _external("location is a FIFO", "pipe.bin", {"pipe.bin": Fifo()}),
        _external("negative offset", "w.bin", {"w.bin": w}, offset="-8"),
        _external("huge offset", "w.bin", {"w.bin": w}, offset=str(2 ** 62)),
        _external("offset past 64 bits", "w.bin", {"w.bin": w}, offset=str(2 ** 70)),
        _external("huge length", "w.bin", {"w.bin": w}, length=str(10 ** 15)),
        _external("negative length", "w.bin", {"w.bin": w}, length="-16"),
        _external("offset not a number", "w.bin", {"w.bin": w}, offset="abc"),
        _external("empty location", ""),
        _external("location '.'", "."),
        _external("not normalized", "sub/../w.bin", {"w.bin": w, "sub": Folder()}),
        _external("NUL byte in the location", "w.bin\x00.txt", {"w.bin": w}),
        _external("location too long for the system", "x" * 5000),
        _external("missing file", "nowhere.bin"),
        _external("truncated file", "w.bin", {"w.bin": w[:6]}),
    ]


def _one_node(node: Any, opset: int = 17, inputs: Sequence[str] = ("x",), outputs: Sequence[str] = ("y",),
              inits: Sequence[Any] = ()) -> bytes:
    from onnx import TensorProto, helper
    graph = helper.make_graph([node], "regression",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def onnx_regressions() -> list[Case]:
    """Models that crashed the importer once (each a minimal form of a fuzz finding)."""
    from onnx import AttributeProto, helper, numpy_helper

    def attr_of_type(node: Any, name: str, type_: int) -> Any:
        for a in node.attribute:
            if a.name == name:
                a.type = type_
        return node

    relu = _one_node(helper.make_node("Relu", ["x"], ["y"]))
    cases = {
        "a name that is not UTF-8": relu.replace(b"Relu", b"R\xffl\xfe"),
        "kernel_shape an INT, not INTS": _one_node(attr_of_type(
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2]), "kernel_shape", AttributeProto.INT)),
        "axis INTS, not an INT": _one_node(attr_of_type(helper.make_node("Softmax", ["x"], ["y"], axis=1), "axis",
                                                        AttributeProto.INTS)),
        "an attribute of type UNDEFINED": _one_node(attr_of_type(helper.make_node("Softmax", ["x"], ["y"], axis=1),
                                                                 "axis", AttributeProto.UNDEFINED)),
        "Unsqueeze-11 without its required axes": _one_node(helper.make_node("Unsqueeze", ["x"], ["y"]), opset=11),
        "Reshape-1 without its shape": _one_node(helper.make_node("Reshape", ["x"], ["y"]), opset=1),
        "a graph input listed twice": _one_node(helper.make_node("Add", ["x", "x"], ["y"]), inputs=("x", "x")),
        "a graph output listed twice": _one_node(helper.make_node("Relu", ["x"], ["y"]), outputs=("y", "y")),
    }
    for name, shape in (("negative", [-1, 2]), ("huge", [10 ** 12, 10 ** 12])):
        cases[f"ConstantOfShape of a {name} shape"] = _one_node(
            helper.make_node("ConstantOfShape", ["s"], ["y"]), inputs=(),
            inits=[numpy_helper.from_array(np.array(shape, np.int64), "s")])
    axes_2d = numpy_helper.from_array(np.array([[0], [1]], np.int64), "axes")
    cases["Squeeze-13 with axes of two dims"] = _one_node(helper.make_node("Squeeze", ["x", "axes"], ["y"]),
                                                          inits=[axes_2d])
    cases["Unsqueeze-13 with float axes"] = _one_node(
        helper.make_node("Unsqueeze", ["x", "axes"], ["y"]), inits=[numpy_helper.from_array(np.ones(1, np.float32),
                                                                                            "axes")])
    cases["ConstantOfShape filled with two values"] = _one_node(
        helper.make_node("ConstantOfShape", ["s"], ["y"], value=numpy_helper.from_array(np.ones(2, np.float32))),
        inputs=(), inits=[numpy_helper.from_array(np.array([2], np.int64), "s")])
    return [Case(f"regression: {name}", {"model.onnx": data}) for name, data in cases.items()]


def onnx_corpus(seeds: dict[str, bytes], count: int) -> list[Case]:
    return external_data_cases() + onnx_regressions() + \
        [onnx_case(seeds, s, m) for s, m in enumerate_mutations(sorted(seeds), ONNX_KINDS, count, 11)]


# -- IR -------------------------------------------------------------------------------------------------
def ir_case(seeds: dict[str, tuple[str, bytes | None]], seed: str, muts: Mutations) -> Case:
    text, weights = seeds[seed]
    for kind, n in muts:
        group, name = kind.split(":")
        if group == "text":
            text = apply(IR_MUTATORS, name, text, n)
        elif group == "textbytes":
            text = apply(BYTE_MUTATORS, name, text.encode("utf-8"), n).decode("utf-8", errors="replace")
        elif weights is not None:
            weights = apply(BYTE_MUTATORS, name, weights, n)
    files: dict[str, Any] = {"x.ir": text}
    if weights is not None:
        files["x.weights"] = weights
    return Case(name_of(seed, muts), files)


def ir_corpus(seeds: dict[str, tuple[str, bytes | None]], count: int) -> list[Case]:
    named = [Case("ir: weights file is a folder", {"x.ir": seeds["tiny"][0], "x.weights": Folder()}),
             Case("ir: weights file links out of the folder (a cache's layout)",
                  {"x.ir": seeds["tiny"][0], "x.weights": Link("{outside}/x.weights")},
                  outside={"x.weights": seeds["tiny"][1] or b""}, must_load=True, reads_outside=True),
             Case("ir: text not UTF-8", {"x.ir": b"module {\xff\xfe}"}),
             Case("ir: empty", {"x.ir": ""})]
    return named + [ir_case(seeds, s, m) for s, m in enumerate_mutations(sorted(seeds), IR_KINDS, count, 12)]


# -- SavedModel -----------------------------------------------------------------------------------------
PB, INDEX, DATA = "saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001"


def savedmodel_case(seed: dict[str, bytes], muts: Mutations) -> Case:
    from ember.frontends.savedmodel.protos import SavedModel
    files: dict[str, Any] = dict(seed)
    for kind, n in muts:
        group, name = kind.split(":")
        rng = random.Random(n)
        if group == "pb":
            msg = SavedModel()
            try:
                msg.ParseFromString(files[PB])
            except Exception:
                continue
            apply({**PROTO_MUTATORS, **SAVEDMODEL_MUTATORS}, name, msg, n)
            try:
                files[PB] = msg.SerializeToString()
            except Exception:
                continue
        elif group in ("pbbytes", "index", "data"):
            key = {"pbbytes": PB, "index": INDEX, "data": DATA}[group]
            if isinstance(files.get(key), bytes):
                files[key] = apply(BYTE_MUTATORS, name, files[key], n)
        elif name == "remove":
            files.pop(rng.choice(sorted(files)), None)
        else:
            files[rng.choice(sorted(files))] = rng.choice([Folder(), Fifo(), b""])
    return Case(name_of("tiny", muts), files)


def _edit_node(seed: dict[str, bytes], node_name: str, edit: Any, function: str = "__inference___call___") -> bytes:
    """saved_model.pb with `edit(node)` applied to the node `node_name` of the first function whose
    name starts with `function` (or of the graph, for function="")."""
    from ember.frontends.savedmodel.protos import SavedModel
    saved = SavedModel.FromString(seed[PB])
    mg = saved.meta_graphs[0]
    bodies = [f.node_def for f in mg.graph_def.library.function if f.signature.name.startswith(function)] \
        if function else [mg.graph_def.node]
    node = next(n for n in bodies[0] if n.name == node_name)
    edit(node)
    return saved.SerializeToString()


def _set_attr(node: Any, key: str, fill: Any) -> None:
    entry = next((a for a in node.attr if a.key == key), None) or node.attr.add(key=key)
    entry.value.Clear()
    fill(entry.value)


def _drop_attr(node: Any, key: str) -> None:
    for a in list(node.attr):
        if a.key == key:
            node.attr.remove(a)


def _const(node: Any, dims: Sequence[int], strings: Sequence[bytes] = (), floats: Sequence[float] = ()) -> None:
    def fill(v: Any) -> None:
        v.tensor.dtype = 7 if strings else 1
        for d in dims:
            v.tensor.tensor_shape.dim.add().size = d
        v.tensor.string_val.extend(strings)
        v.tensor.float_val.extend(floats)
    _set_attr(node, "value", fill)


def _rewire(node: Any, op: str, inputs: Sequence[str]) -> None:
    node.op = op
    del node.input[:]
    node.input.extend(inputs)


def savedmodel_regressions(seed: dict[str, bytes]) -> list[Case]:
    """SavedModels that crashed the reader once (each a minimal form of a fuzz finding)."""
    def op(name: str, new: str) -> Any:
        return lambda n: setattr(n, "op", new)

    edits = {
        "a Const without its value": ("mul/y", lambda n: _drop_attr(n, "value")),
        "a mask attribute holding a shape": ("strided_slice", lambda n: _set_attr(
            n, "shrink_axis_mask", lambda v: v.shape.dim.add(size=3))),
        "a While without its functions": ("mul", op("mul", "While")),
        "an If without its functions": ("mul", op("mul", "If")),
        "an input index that is not a number": ("mul", lambda n: n.input.__setitem__(1, "mul/y:output:c")),
        "a ReadVariableOp of nothing": ("MatMul/ReadVariableOp", lambda n: n.ClearField("input")),
        "more strings than elements": ("mul/y", lambda n: _const(n, [2], strings=[b"a", b"b", b"c"])),
        "a splat of 2^31 elements": ("mul/y", lambda n: _const(n, [2 ** 31], floats=[1.0])),
        "a splat of 10^12 x 10^12 elements": ("mul/y", lambda n: _const(n, [10 ** 12, 10 ** 12], floats=[1.0])),
        "an Unpack without num": ("Relu", op("Relu", "Unpack")),
        "an Unpack into 2^30 parts": ("Relu", lambda n: (setattr(n, "op", "Unpack"),
                                                          _set_attr(n, "num", lambda v: setattr(v, "i", 2 ** 30)))),
        "a MaxPool without ksize": ("Relu", op("Relu", "MaxPool")),
        "a Fill of a negative shape": ("Reshape", lambda n: _rewire(n, "Fill", ["Reshape/shape:output:0",
                                                                              "mul/y:output:0"])),
        "an AddN of nothing": ("Relu", lambda n: _rewire(n, "AddN", [])),
        "a ConcatV2 of nothing": ("concat", lambda n: _rewire(n, "ConcatV2", [])),
        "a TopKV2 with three ks": ("Relu", lambda n: _rewire(n, "TopKV2", ["add:z:0", "Reshape/shape:output:0"])),
        "a TensorListReserve of nothing": ("Relu", lambda n: _rewire(n, "TensorListReserve", [])),
        "a permutation of floats": ("Relu", lambda n: _rewire(n, "Transpose", ["add:z:0", "mul/y:output:0"])),
        "a Range by 0": ("concat", lambda n: _rewire(n, "Range", ["strided_slice/stack:output:0",
                                                                   "strided_slice/stack_1:output:0",
                                                                   "strided_slice/stack:output:0"])),
    }
    cases = [Case(f"savedmodel regression: {name}", {**seed, PB: _edit_node(seed, node, edit)})
             for name, (node, edit) in edits.items()]
    restore = {
        "an AssignVariableOp with one input": ("AssignVariableOp", lambda n: n.input.__delitem__(1)),
        "an Identity with no input on the restore path": ("Identity", lambda n: n.ClearField("input")),
        "RestoreV2 reading names from a Const without its value": (
            "RestoreV2/tensor_names", lambda n: _drop_attr(n, "value")),
        "RestoreV2 names that are not UTF-8": ("RestoreV2/tensor_names", lambda n: _const(n, [2], [b"\xff", b"\xfe"])),
    }
    cases += [Case(f"savedmodel regression: {name}", {**seed, PB: _edit_node(seed, node, edit,
                                                                             "__inference__traced_restore")})
              for name, (node, edit) in restore.items()]
    cases.append(Case("savedmodel regression: a variable's shared name that is not UTF-8", {**seed, PB: _edit_node(
        seed, "w", lambda n: _set_attr(n, "shared_name", lambda v: setattr(v, "s", b"\xff\xfe")), function="")}))
    return cases


def savedmodel_corpus(seed: dict[str, bytes], count: int) -> list[Case]:
    named = savedmodel_regressions(seed) + [
        Case("savedmodel: variables shard links out of the folder (a cache's layout)",
             {**seed, DATA: Link("{outside}/data")}, outside={"data": seed[DATA]}, must_load=True,
             reads_outside=True),
        Case("savedmodel: variables folder links out of the folder (a cache's layout)",
             {PB: seed[PB], "variables": Link("{outside}/variables")},
             outside={"variables/variables.index": seed[INDEX], "variables/variables.data-00000-of-00001": seed[DATA]},
             must_load=True, reads_outside=True),
        Case("savedmodel: saved_model.pb is a FIFO", {**seed, PB: Fifo()}),
        Case("savedmodel: saved_model.pb is a folder", {**seed, PB: Folder()}),
        Case("savedmodel: variables shard is a FIFO", {**seed, DATA: Fifo()}),
        Case("savedmodel: variables.index is a folder", {**seed, INDEX: Folder()}),
        Case("savedmodel: no variables", {PB: seed[PB]}),
    ]
    return named + [savedmodel_case(seed, m)
                    for _, m in enumerate_mutations(["tiny"], SAVEDMODEL_KINDS, count, 13)]


# -- engines ------------------------------------------------------------------------------------------
def engine_bytes(data: bytes, muts: Mutations) -> bytes:
    from engine_forgery import forge
    for kind, n in muts:
        group, name = kind.split(":")
        if group == "bytes":
            data = apply(BYTE_MUTATORS, name, data, n)
            continue
        rng = random.Random(n)

        def edit(s: dict[str, Any]) -> None:
            if group == "json":
                mutate_json(s[name], rng)
            elif group == "ir":
                s["ir"] = IR_MUTATORS[name](s["ir"], rng)
            elif s.get(name):
                s[name] = bytearray(BYTE_MUTATORS["flip-bits"](bytes(s[name]), rng))
        try:
            data = forge(data, edit)
        except Exception:
            continue  # an earlier mutation left no well-formed engine to edit
    return data


def engine_case(seeds: dict[str, bytes], seed: str, muts: Mutations) -> Case:
    return Case(name_of(seed, muts), {"x.engine": engine_bytes(seeds[seed], muts)})


def engine_corpus(seeds: dict[str, bytes], count: int) -> list[Case]:
    named = [Case("engine: a folder", {"x.engine": Folder()}), Case("engine: a FIFO", {"x.engine": Fifo()}),
             Case("engine: empty", {"x.engine": b""})]
    return named + [engine_case(seeds, s, m) for s, m in enumerate_mutations(sorted(seeds), ENGINE_KINDS, count, 14)]


__all__ = ["onnx_corpus", "ir_corpus", "savedmodel_corpus", "engine_corpus", "onnx_case", "ir_case",
           "savedmodel_case", "engine_case", "external_data_cases", "ONNX_KINDS", "IR_KINDS", "SAVEDMODEL_KINDS",
           "ENGINE_KINDS"]
