"""Forged engine files: sections edited and the checksums recomputed, so only the loader's
content checks (ember.runtime.validate) stand between the file and the runtime.

    bad = forge(data, lambda s: s["plan"]["memory"]["buffers"][0].__setitem__(1, -256))

`forge` hands the edit every section decoded (`ir` as text, the JSON sections as
objects, `binaries` and `weights` as bytearrays; a JSON section set to bytes is
written as they are) and writes the file again with
`ember.runtime.engine_format`, the header's counts and fields kept as they were.
`tiny_model()` is the small ONNX model the forgery tests and the engine fuzz
target compile: a GEMM with its bias and ReLU fused (a launch with metadata and
scalars), a reshape (a view), a softmax, a comparison with a weight, and a
NonZero whose size step reads its input back (compiled without bound-data-sizes, which
would give it a padded kernel and a count to read instead).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

from ember.runtime import engine_format as fmt

JSON_SECTIONS = ("io", "plan", "kernels", "weights.index")


def decode(data: bytes) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """(header fields, sections by name, alignment by name) of a well-formed engine."""
    c = fmt.parse(memoryview(data), "<forge>", data)
    header = {k: v for k, v in c.header.items() if k not in ("format", "format_version", "file_size", "sections")}
    aligns = {e["name"]: e["align"] for e in c.header["sections"]}
    out: dict[str, Any] = {}
    for name, view in c.sections.items():
        if name == "ir":
            out[name] = bytes(view).decode("utf-8")
        elif name in JSON_SECTIONS:
            out[name] = json.loads(bytes(view))
        else:
            out[name] = bytearray(view)
    return header, out, aligns


def encode(header: dict[str, Any], sections: dict[str, Any], aligns: dict[str, int]) -> bytes:
    """The engine file of these sections, every checksum valid."""
    parts = []
    for name, value in sections.items():
        if isinstance(value, str):
            data = value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray)):
            data = bytes(value)  # raw bytes, for a JSON section that is not JSON
        elif name in JSON_SECTIONS:
            data = fmt.canonical_json(value)
        else:
            data = bytes(value)
        parts.append(fmt.Section(name, data, aligns.get(name, 64)))
    return fmt.to_bytes(header, parts)


def forge(data: bytes, edit: Callable[[dict[str, Any]], Any]) -> bytes:
    """`data` with `edit(sections)` applied (it edits in place) and the checksums recomputed."""
    header, sections, aligns = decode(data)
    edit(sections)
    return encode(header, sections, aligns)


def tiny_model() -> Any:
    """The ONNX model described in the module docstring (x: f32[2,8] -> y: f32[8], idx: i64[2,?])."""
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array((np.arange(32, dtype=np.float32).reshape(8, 4) - 16) / 10, "w"),
             numpy_helper.from_array(np.linspace(-1, 1, 4).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([8], np.int64), "s"),
             numpy_helper.from_array(np.array(0.5, np.float32), "zero")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Reshape", ["r", "s"], ["flat"]),
             helper.make_node("Softmax", ["flat"], ["y"], axis=0),
             helper.make_node("Greater", ["x", "zero"], ["pos"]), helper.make_node("NonZero", ["pos"], ["idx"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8]),
                               helper.make_tensor_value_info("idx", TensorProto.INT64, [2, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def tiny_engine(cache_dir: Any) -> Any:
    """`tiny_model()` compiled (for sm_90 only: one cubin and the PTX per kernel) into an Engine."""
    import ember
    from ember.frontends.onnx import import_model
    from ember.passes.registry import DEFAULT
    module = import_model(tiny_model(), source="tiny.onnx")
    pipeline = ",".join(p for p in DEFAULT.split(",") if p != "bound-data-sizes")
    return ember.compile(module, targets=("sm_90",), cache_dir=cache_dir, pipeline=pipeline)


__all__ = ["decode", "encode", "forge", "tiny_model", "tiny_engine"]
