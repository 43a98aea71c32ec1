"""The ONNX model the plugin tests use: mul1 (x * 2) -> st1 (DOMAIN ScaledTanh, with s) -> relu1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def scaled_tanh_model(path: Path, domain: str = "com.example") -> Path:
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Mul", ["x", "two"], ["m"], name="mul1"),
             helper.make_node("ScaledTanh", ["m", "s"], ["t"], name="st1", domain=domain),
             helper.make_node("Relu", ["t"], ["y"], name="relu1")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f, [2, 8]),
                                       helper.make_tensor_value_info("s", f, [8])],
                          [helper.make_tensor_value_info("y", f, [2, 8])],
                          [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)],
                                ir_version=10), path)
    return path


def scaled_tanh_feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((2, 8)).astype(np.float32), "s": np.linspace(0.5, 2.0, 8).astype(np.float32)}
