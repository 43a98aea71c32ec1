"""Mutations of real files: random bytes, and edits that know the file's structure.

Every mutator is `f(data, rng) -> data` with `rng` a `random.Random`, so a case is
reproduced by its seed file, the mutator's name and the integer that seeded
`rng` (hypothesis draws those three; the corpus enumerates them). Structure-aware
mutators edit what a parser would see: protobuf fields of an ONNX model or a
SavedModel (through reflection, any field of any nested message: dims set to
10^12 or -1, element types changed, inputs removed or renamed, attributes of
another type), JSON entries of an engine's sections with the checksums
recomputed, and IR text (dims, element types, attribute values, deleted,
duplicated and swapped lines).
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Callable

Mutator = Callable[[Any, random.Random], Any]

INTS = [0, 1, -1, 2, 3, 7, 255, 256, 65535, 2 ** 31 - 1, -2 ** 31, 2 ** 32, 2 ** 40, 10 ** 12, 2 ** 62,
        2 ** 63 - 1, -2 ** 63]
HUGE_DIMS = [10 ** 12, -1, 0, 2 ** 31, 2 ** 62, 2 ** 63 - 1, -5]
FLOATS = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e38, -1.0, 3.5e-45]
HOSTILE_NAMES = ["", "../../../../etc/passwd", "/etc/passwd", "x" * 5000, "a:b:c", "%0", "\u00e9\u2603", "with space",
                 "nul\x00byte", "..", "."]


# -- bytes ---------------------------------------------------------------------------------------
def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def set_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    if out:
        at = rng.randrange(len(out))
        chunk = rng.choice([b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff\x0f", b"\xff" * 9 + b"\x01",
                            bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))])
        out[at:at + len(chunk)] = chunk
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    return data[:rng.choice([0, 1, 7, rng.randrange(len(data)), len(data) - 1, len(data) // 2])]


def splice(data: bytes, rng: random.Random) -> bytes:
    """Delete, duplicate or move a chunk."""
    if len(data) < 2:
        return data + data
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.choice([1, 4, 16, 256, len(data)]))
    chunk = data[a:b]
    what = rng.randrange(3)
    if what == 0:
        return data[:a] + data[b:]
    if what == 1:
        return data[:b] + chunk + data[b:]
    rest = data[:a] + data[b:]
    c = rng.randrange(len(rest) + 1)
    return rest[:c] + chunk + rest[c:]


BYTE_MUTATORS: dict[str, Mutator] = {"flip-bits": flip_bits, "set-bytes": set_bytes, "truncate": truncate,
                                     "splice": splice}


# -- protobuf, by reflection -----------------------------------------------------------------------
def _fields(msg: Any) -> list[tuple[Any, Any, int | None]]:
    """Every set field of `msg` and of the messages nested in it: (message, field, index)."""
    out = []
    stack = [msg]
    while stack:
        m = stack.pop()
        for fd, value in m.ListFields():
            if fd.is_repeated:
                for i, item in enumerate(value):
                    out.append((m, fd, i))
                    if fd.type == fd.TYPE_MESSAGE:
                        stack.append(item)
            else:
                out.append((m, fd, None))
                if fd.type == fd.TYPE_MESSAGE:
                    stack.append(value)
    return out


def _strings(msg: Any) -> list[str]:
    return [m.__getattribute__(fd.name)[i] if i is not None else getattr(m, fd.name)
            for m, fd, i in _fields(msg) if fd.type == fd.TYPE_STRING]


def _new_value(fd: Any, old: Any, rng: random.Random, names: list[str]) -> Any:
    t = fd.type
    if t == fd.TYPE_BOOL:
        return not old
    if t in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
        return rng.choice(FLOATS)
    if t == fd.TYPE_STRING:
        pick = rng.randrange(4)
        if pick == 0 and names:
            return rng.choice(names)
        if pick == 1:
            return rng.choice(HOSTILE_NAMES).replace("\x00", "")
        if pick == 2 and old:
            i = rng.randrange(len(old))
            return old[:i] + old[i + 1:]
        return old + rng.choice(["_", "0", "x"])
    if t == fd.TYPE_BYTES:
        return rng.choice([b"", old[: len(old) // 2], old + old, bytes(rng.randrange(256) for _ in range(5)),
                           flip_bits(old, rng) if old else b"\x01"])
    if t == fd.TYPE_ENUM:
        values = [v.number for v in fd.enum_type.values]
        return rng.choice(values)
    unsigned = t in (fd.TYPE_UINT32, fd.TYPE_UINT64, fd.TYPE_FIXED32, fd.TYPE_FIXED64)
    bits = 32 if t in (fd.TYPE_INT32, fd.TYPE_UINT32, fd.TYPE_FIXED32, fd.TYPE_SINT32, fd.TYPE_SFIXED32) else 64
    lo, hi = (0, 2 ** bits - 1) if unsigned else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
    choices = [v for v in INTS + [old + 1, old - 1, old * 2] if lo <= v <= hi]
    return rng.choice(choices)


def mutate_proto_field(msg: Any, rng: random.Random) -> Any:
    """Set one scalar field anywhere in the message tree to an unusual value."""
    fields = [(m, fd, i) for m, fd, i in _fields(msg) if fd.type != fd.TYPE_MESSAGE]
    if not fields:
        return msg
    m, fd, i = rng.choice(fields)
    names = _strings(msg) if fd.type == fd.TYPE_STRING else []
    old = getattr(m, fd.name)[i] if i is not None else getattr(m, fd.name)
    try:
        new = _new_value(fd, old, rng, names)
        if i is None:
            setattr(m, fd.name, new)
        else:
            getattr(m, fd.name)[i] = new
    except (ValueError, TypeError):
        pass  # a value the field's type cannot hold
    return msg


def drop_proto_element(msg: Any, rng: random.Random) -> Any:
    """Remove one element of a repeated field, or clear a singular one, anywhere in the tree."""
    fields = _fields(msg)
    if not fields:
        return msg
    m, fd, i = rng.choice(fields)
    if i is None:
        m.ClearField(fd.name)
    else:
        del getattr(m, fd.name)[i]
    return msg


def duplicate_proto_element(msg: Any, rng: random.Random) -> Any:
    """Append a copy of one element of a repeated field (duplicate names, nodes, dims)."""
    fields = [(m, fd, i) for m, fd, i in _fields(msg) if i is not None]
    if not fields:
        return msg
    m, fd, i = rng.choice(fields)
    seq = getattr(m, fd.name)
    if fd.type == fd.TYPE_MESSAGE:
        seq.add().CopyFrom(seq[i])
    else:
        seq.append(seq[i])
    return msg


def swap_proto_elements(msg: Any, rng: random.Random) -> Any:
    """Swap two elements of a repeated field (node order, input order)."""
    fields = [(m, fd) for m, fd, i in _fields(msg) if i == 1]
    if not fields:
        return msg
    m, fd = rng.choice(fields)
    seq = getattr(m, fd.name)
    a, b = rng.randrange(len(seq)), rng.randrange(len(seq))
    if fd.type == fd.TYPE_MESSAGE:
        ca, cb = type(seq[a])(), type(seq[b])()
        ca.CopyFrom(seq[a])
        cb.CopyFrom(seq[b])
        seq[a].CopyFrom(cb)
        seq[b].CopyFrom(ca)
    else:
        seq[a], seq[b] = seq[b], seq[a]
    return msg


PROTO_MUTATORS: dict[str, Mutator] = {"field": mutate_proto_field, "drop": drop_proto_element,
                                      "duplicate": duplicate_proto_element, "swap": swap_proto_elements}


# -- ONNX, by meaning ------------------------------------------------------------------------------
def _graphs(model: Any) -> list[Any]:
    out, stack = [], [model.graph]
    while stack:
        g = stack.pop()
        out.append(g)
        for node in g.node:
            for a in node.attribute:
                if a.HasField("g"):
                    stack.append(a.g)
                stack.extend(a.graphs)
    return out


def _onnx_ops() -> list[str]:
    """Every op type the ONNX importer has a converter for (a node becomes any of them)."""
    from ember.frontends.onnx import registry
    registry._load()
    return sorted({op for _, op in registry.CONVERTERS})


def _tf_ops() -> list[str]:
    """Every op the SavedModel importer knows."""
    from ember.frontends.savedmodel.importer import supported_ops
    return sorted(supported_ops())


def onnx_dims(model: Any, rng: random.Random) -> Any:
    """A dim of a graph input, output or value_info, or of an initializer: huge, negative, zero,
    symbolic, or one dim more or less."""
    g = rng.choice(_graphs(model))
    infos = [vi for vi in list(g.input) + list(g.output) + list(g.value_info) if vi.type.HasField("tensor_type")]
    if g.initializer and (not infos or rng.random() < 0.4):
        t = rng.choice(g.initializer)
        what = rng.randrange(3)
        if what == 0 and t.dims:
            t.dims[rng.randrange(len(t.dims))] = rng.choice(HUGE_DIMS)
        elif what == 1:
            t.dims.append(rng.choice([1, 2, 10 ** 12]))
        elif t.dims:
            del t.dims[rng.randrange(len(t.dims))]
        return model
    if not infos:
        return model
    shape = rng.choice(infos).type.tensor_type.shape
    what = rng.randrange(4)
    if what == 0 and shape.dim:
        shape.dim[rng.randrange(len(shape.dim))].dim_value = rng.choice(HUGE_DIMS)
    elif what == 1 and shape.dim:
        shape.dim[rng.randrange(len(shape.dim))].dim_param = rng.choice(["N", "batch", "", "2*N", "-", "N N"])
    elif what == 2:
        shape.dim.add().dim_value = rng.choice([1, 3, 10 ** 12])
    elif shape.dim:
        del shape.dim[rng.randrange(len(shape.dim))]
    return model


def onnx_dtype(model: Any, rng: random.Random) -> Any:
    """An element type changed: of an initializer (its data left as it was), a graph input or
    output, or a Cast's target."""
    g = rng.choice(_graphs(model))
    code = rng.choice([0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 16, 17, 21, 22, 23, 25, 99, -1])
    what = rng.randrange(3)
    try:
        if what == 0 and g.initializer:
            rng.choice(g.initializer).data_type = code
        elif what == 1 and (g.input or g.output):
            rng.choice(list(g.input) + list(g.output)).type.tensor_type.elem_type = code
        else:
            casts = [n for n in g.node if n.op_type == "Cast"]
            for a in (rng.choice(casts).attribute if casts else []):
                if a.name == "to":
                    a.i = code
    except ValueError:
        pass
    return model


def onnx_inputs(model: Any, rng: random.Random) -> Any:
    """A node input removed, emptied, renamed to nothing, or to a later node's output (a cycle)."""
    g = rng.choice(_graphs(model))
    nodes = [n for n in g.node if n.input]
    if not nodes:
        return model
    n = rng.choice(nodes)
    i = rng.randrange(len(n.input))
    what = rng.randrange(4)
    if what == 0:
        del n.input[i]
    elif what == 1:
        n.input[i] = ""
    elif what == 2:
        n.input[i] = "missing_" + n.input[i]
    else:
        outputs = [o for m in g.node for o in m.output]
        n.input[i] = rng.choice(outputs) if outputs else n.input[i]
    return model


def onnx_attribute(model: Any, rng: random.Random) -> Any:
    """An attribute's type swapped (its value left in the old field), its value made extreme,
    or the attribute removed."""
    from onnx import AttributeProto
    attrs = [(n, a) for g in _graphs(model) for n in g.node for a in n.attribute]
    if not attrs:
        return model
    node, a = rng.choice(attrs)
    what = rng.randrange(4)
    if what == 0:
        a.type = rng.choice([AttributeProto.INT, AttributeProto.FLOAT, AttributeProto.STRING, AttributeProto.INTS,
                             AttributeProto.FLOATS, AttributeProto.TENSOR, AttributeProto.GRAPH,
                             AttributeProto.STRINGS, AttributeProto.UNDEFINED])
    elif what == 1:
        if a.type == AttributeProto.INT:
            a.i = rng.choice(INTS)
        elif a.type == AttributeProto.INTS and a.ints:
            a.ints[rng.randrange(len(a.ints))] = rng.choice(INTS)
        elif a.type == AttributeProto.FLOAT:
            a.f = rng.choice(FLOATS)
        elif a.type == AttributeProto.TENSOR:
            a.t.dims.append(rng.choice([10 ** 12, 0, 5]))
        else:
            a.ints.extend([rng.choice(INTS)])
    elif what == 2:
        node.attribute.remove(a)
    else:
        node.attribute.add().CopyFrom(a)  # the attribute twice
    return model


def onnx_opset(model: Any, rng: random.Random) -> Any:
    """The opset changed, or a node's op type or domain."""
    what = rng.randrange(3)
    if what == 0 and model.opset_import:
        rng.choice(model.opset_import).version = rng.choice([0, 1, 6, 7, 99, 10 ** 9, -1])
    else:
        g = rng.choice(_graphs(model))
        if g.node:
            n = rng.choice(g.node)
            if what == 1:
                n.op_type = rng.choice(_onnx_ops() + ["NoSuchOp", ""])
            else:
                n.domain = rng.choice(["com.microsoft", "ai.onnx.ml", "custom", "ai.onnx"])
    return model


def onnx_tensor_data(model: Any, rng: random.Random) -> Any:
    """An initializer's data cut, grown, moved between raw_data and typed fields, or made external."""
    from onnx import TensorProto
    inits = [t for g in _graphs(model) for t in g.initializer]
    if not inits:
        return model
    t = rng.choice(inits)
    what = rng.randrange(4)
    if what == 0 and t.raw_data:
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]
    elif what == 1:
        t.raw_data = t.raw_data + b"\x00" * rng.choice([1, 4, 1000])
    elif what == 2:
        t.ClearField("raw_data")
        t.float_data.extend([1.0, 2.0])
    else:
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in (("location", rng.choice(["w.bin", "missing.bin", "", "."])),
                           ("offset", rng.choice(["0", "-8", "abc", str(2 ** 70)])),
                           ("length", rng.choice(["4", "-1", str(10 ** 15)]))):
            e = t.external_data.add()
            e.key, e.value = key, value
    return model


ONNX_MUTATORS: dict[str, Mutator] = {"dims": onnx_dims, "dtype": onnx_dtype, "inputs": onnx_inputs,
                                     "attribute": onnx_attribute, "opset": onnx_opset, "tensor-data": onnx_tensor_data}


# -- SavedModel, by meaning ------------------------------------------------------------------------
def _nodes(saved: Any) -> list[Any]:
    out = []
    for mg in saved.meta_graphs:
        out.extend(mg.graph_def.node)
        for f in mg.graph_def.library.function:
            out.extend(f.node_def)
    return out


def savedmodel_node(saved: Any, rng: random.Random) -> Any:
    """A node of the graph or of a function: its op, an input, or an attribute changed."""
    nodes = _nodes(saved)
    if not nodes:
        return saved
    n = rng.choice(nodes)
    what = rng.randrange(5)
    if what == 0:
        n.op = rng.choice(_tf_ops() + ["NoSuchOp", ""])
    elif what == 1 and n.input:
        i = rng.randrange(len(n.input))
        n.input[i] = rng.choice(["", "missing:0", n.input[i] + ":7", "^" + n.input[i], n.input[i].split(":")[0]
                                 + ":x:99", "a:b:c:d"])
    elif what == 2 and n.input:
        del n.input[rng.randrange(len(n.input))]
    elif n.attr:
        entry = rng.choice(n.attr)
        v = entry.value
        pick = rng.randrange(6)
        if pick == 0:
            v.type = rng.choice([0, 1, 2, 3, 9, 10, 14, 19, 20, 21, 23, 99, -1])
        elif pick == 1:
            v.shape.ClearField("dim")
            for d in rng.sample(HUGE_DIMS, 2):
                v.shape.dim.add().size = d
        elif pick == 2:
            v.i = rng.choice(INTS)
        elif pick == 3:
            v.s = rng.choice([b"", b"NHWC", b"NCHW", b"VALID", b"\xff\xfe"])
        elif pick == 4 and v.HasField("tensor"):
            v.tensor.tensor_shape.ClearField("dim")
            v.tensor.tensor_shape.dim.add().size = rng.choice(HUGE_DIMS)
        else:
            v.list.i.extend([rng.choice(INTS)])
    return saved


SAVEDMODEL_MUTATORS: dict[str, Mutator] = {"node": savedmodel_node}


# -- JSON (engine sections) ------------------------------------------------------------------------
def _json_slots(obj: Any, path: tuple = ()) -> list[tuple[Any, Any]]:
    """(container, key) of every entry in a JSON tree."""
    out: list[tuple[Any, Any]] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        items = o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) else ()
        for k, v in items:
            out.append((o, k))
            if isinstance(v, (dict, list)):
                stack.append(v)
    return out


def mutate_json(obj: Any, rng: random.Random) -> Any:
    """One entry anywhere replaced (a near or extreme integer, another type), deleted, or a list
    element duplicated or moved."""
    slots = _json_slots(obj)
    if not slots:
        return obj
    container, key = rng.choice(slots)
    old = container[key]
    what = rng.randrange(6)
    if what == 0 and isinstance(old, int) and not isinstance(old, bool):
        container[key] = rng.choice([old + 1, old - 1, old + 256, old - 256, old * 2, -old] + INTS)
    elif what == 1:
        container[key] = rng.choice([None, True, "x", 1.5, [], {}, -1, 2 ** 64, "0"])
    elif what == 2:
        del container[key]
    elif what == 3 and isinstance(container, list):
        container.insert(rng.randrange(len(container) + 1), json.loads(json.dumps(old)))
    elif what == 4 and isinstance(container, list) and len(container) > 1:
        j = rng.randrange(len(container))
        container[key], container[j] = container[j], container[key]
    elif isinstance(old, str):
        container[key] = rng.choice(["", old + "x", old[:-1], "../etc/passwd", "sm_" + old])
    else:
        container[key] = rng.choice(INTS)
    return obj


# -- IR text ---------------------------------------------------------------------------------------
_DIMS = re.compile(r"(?<=[\[,])\s*([A-Za-z_][A-Za-z0-9_]*|\d+|\?)(?=\s*[,\]])")
_DTYPE = re.compile(r"\b(f64|f32|f16|bf16|i64|i32|i16|i8|u8|bool|str|i4)(?=\[)")
_INT = re.compile(r"(?<![%\w.])-?\d+(?![\w.])")
_VALUE = re.compile(r"%[\w\"./:]+")


def ir_dims(text: str, rng: random.Random) -> str:
    matches = list(_DIMS.finditer(text))
    if not matches:
        return text
    m = rng.choice(matches)
    new = rng.choice(["1000000000000", "-1", "0", "N", "?", "99999999999999999999999999", "2*N", "N-N", "1e3"])
    return text[:m.start(1)] + new + text[m.end(1):]


def ir_dtype(text: str, rng: random.Random) -> str:
    matches = list(_DTYPE.finditer(text))
    if not matches:
        return text
    m = rng.choice(matches)
    return text[:m.start()] + rng.choice(["f32", "i64", "bool", "str", "f4e2m1", "f33", "c128", "u2"]) + \
        text[m.end():]


def ir_number(text: str, rng: random.Random) -> str:
    """An integer anywhere (attribute values, dense literals, dims) made extreme."""
    matches = list(_INT.finditer(text))
    if not matches:
        return text
    m = rng.choice(matches)
    return text[:m.start()] + str(rng.choice(INTS + [10 ** 30])) + text[m.end():]


def ir_lines(text: str, rng: random.Random) -> str:
    """A line deleted, duplicated or moved."""
    lines = text.split("\n")
    if len(lines) < 2:
        return text
    i = rng.randrange(len(lines))
    what = rng.randrange(3)
    if what == 0:
        del lines[i]
    elif what == 1:
        lines.insert(i, lines[i])
    else:
        line = lines.pop(i)
        lines.insert(rng.randrange(len(lines) + 1), line)
    return "\n".join(lines)


def ir_values(text: str, rng: random.Random) -> str:
    """A use of a value renamed: to another value (maybe defined later), or to none."""
    matches = list(_VALUE.finditer(text))
    if not matches:
        return text
    m = rng.choice(matches)
    new = rng.choice([x.group() for x in matches] + ["%nowhere", "%", "%0"])
    return text[:m.start()] + new + text[m.end():]


def ir_tokens(text: str, rng: random.Random) -> str:
    """A token of the syntax inserted or deleted, or deep nesting."""
    if not text:
        return "(" * 10000
    i = rng.randrange(len(text))
    what = rng.randrange(4)
    if what == 0:
        return text[:i] + rng.choice(["{", "}", "(", ")", "[", "]", ",", ":", "=", "\"", "<", ">", "^bb0", "\\",
                                      "\x00", "\ufeff"]) + text[i:]
    if what == 1:
        return text[:i] + text[i + 1:]
    if what == 2:
        return text[:i] + "[" * 5000 + text[i:]
    return text[:i] + rng.choice(["dense<f32[2]: [1.0]>", "dense<f32[]: 1e99999>", "dense<i8[2]: [300, -300]>",
                                  "dense<f32[1000000000000]: 0.0>", "{a = 1, a = 2}", "nan", "0x10"]) + text[i:]


IR_MUTATORS: dict[str, Mutator] = {"dims": ir_dims, "dtype": ir_dtype, "number": ir_number, "lines": ir_lines,
                                   "values": ir_values, "tokens": ir_tokens}


def apply(mutators: dict[str, Mutator], name: str, value: Any, seed: int) -> Any:
    """`mutators[name](value, Random(seed))`."""
    return mutators[name](value, random.Random(seed))


__all__ = ["BYTE_MUTATORS", "PROTO_MUTATORS", "ONNX_MUTATORS", "SAVEDMODEL_MUTATORS", "IR_MUTATORS", "mutate_json",
           "apply"]
