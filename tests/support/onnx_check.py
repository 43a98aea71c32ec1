"""Small ONNX models for converter tests: build one node, run it on Ember and on onnxruntime.

    got, want = check_node("Conv", {"x": x, "w": w}, {"pads": [1, 1, 1, 1]})

`check_node` imports through ember.frontends.onnx (the interpreter runs it) and
compares every output with onnxruntime's (or onnx.reference's, with
reference="onnx") by the project's one tolerance rule.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper

from ember.frontends.onnx import import_model
from ember.frontends.onnx.backend import EmberRep
from ember.ir.interpret import interpret
from ember.tolerance import assert_close


def value_info(name: str, array: Any) -> onnx.ValueInfoProto:
    if isinstance(array, list):
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(array[0]).dtype) if array else onnx.TensorProto.FLOAT
        return helper.make_tensor_sequence_value_info(name, elem, None)
    a = np.asarray(array)
    code = onnx.TensorProto.STRING if a.dtype.kind in "OUS" else helper.np_dtype_to_tensor_dtype(a.dtype)
    return helper.make_tensor_value_info(name, code, a.shape)


def node_model(op_type: str, inputs: dict[str, Any], attrs: dict[str, Any] | None = None, *,
               outputs: Sequence[str] = ("y",), opset: int = 23, domain: str = "",
               initializers: dict[str, np.ndarray] | None = None, input_names: Sequence[str] | None = None
               ) -> onnx.ModelProto:
    """A one-node model; `inputs` become graph inputs (`initializers` become constants).
    `input_names` orders the node's inputs ('' for an absent one); default: inputs then initializers."""
    inits = initializers or {}
    names = list(input_names) if input_names is not None else [*inputs, *inits]
    node = helper.make_node(op_type, names, list(outputs), domain=domain, **(attrs or {}))
    graph = helper.make_graph(
        [node], op_type.lower(), [value_info(n, a) for n, a in inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [onnx.numpy_helper.from_array(np.asarray(a), n) for n, a in inits.items()])
    imports = [helper.make_opsetid("", opset if not domain else 23)]
    if domain:
        imports.append(helper.make_opsetid(domain, opset))
    return helper.make_model(graph, opset_imports=imports)


def run_ember(model: onnx.ModelProto, feeds: dict[str, Any]) -> list[Any]:
    rep = EmberRep(model)
    return list(rep.run(feeds))


def run_ort(model: onnx.ModelProto, feeds: dict[str, Any]) -> list[Any]:
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_onnx_reference(model: onnx.ModelProto, feeds: dict[str, Any]) -> list[Any]:
    from onnx.reference import ReferenceEvaluator
    return list(ReferenceEvaluator(model).run(None, feeds))


def check_model(model: onnx.ModelProto, feeds: dict[str, Any], *, reference: str = "ort",
                **tol: float) -> tuple[list[Any], list[Any]]:
    got = run_ember(model, feeds)
    want = run_ort(model, feeds) if reference == "ort" else run_onnx_reference(model, feeds)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        if isinstance(w, list):
            assert len(g) == len(w), f"output {i}: sequence of {len(g)} vs {len(w)}"
            for j, (gi, wi) in enumerate(zip(g, w)):
                assert_close(np.asarray(gi), np.asarray(wi), what=f"output {i}[{j}]", **tol)
        else:
            assert_close(np.asarray(g), np.asarray(w), what=f"output {i}", **tol)
    return got, want


def check_node(op_type: str, inputs: dict[str, Any], attrs: dict[str, Any] | None = None, *,
               outputs: Sequence[str] = ("y",), opset: int = 23, reference: str = "ort",
               initializers: dict[str, np.ndarray] | None = None, input_names: Sequence[str] | None = None,
               **tol: float) -> tuple[list[Any], list[Any]]:
    model = node_model(op_type, inputs, attrs, outputs=outputs, opset=opset, initializers=initializers,
                       input_names=input_names)
    return check_model(model, inputs, reference=reference, **tol)


def imported(model: onnx.ModelProto, **kwargs: Any) -> Any:
    """The Ember module of a model (to assert on its ops and types)."""
    return import_model(model, **kwargs)


__all__ = ["node_model", "check_node", "check_model", "run_ember", "run_ort", "run_onnx_reference", "imported",
           "interpret", "value_info"]
