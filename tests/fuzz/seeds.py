"""The real files the fuzz suite mutates, per target.

- ONNX: small models built here with `onnx.helper` (one for the engine, one that
  exercises symbolic dims, a Shape -> Gather -> Concat -> Reshape chain, f16/i8
  initializers, a Constant and an If with subgraphs) and the committed fixtures
  `tests/fixtures/onnx/{resnet50,lstm,gpt2}_small.onnx`.
- IR: those models printed, saved as `.ir` + `.weights` pairs; the worked
  examples (`ember.ir.examples`) and the round-trip files `tests/roundtrip/*.ir`.
- SavedModel: `tests/fixtures/savedmodel/tiny` (committed; `make_savedmodel.py`
  writes it with TensorFlow, which the suite never imports).
- Engine: the tiny model compiled (NVRTC, into the session's private cache),
  the runtime tests' synthetic engine (scratch buffers, metadata, scalars) and
  their host-only engine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

TESTS = Path(__file__).resolve().parent.parent
FIXTURES = TESTS / "fixtures"
ONNX_FIXTURES = ("resnet50_small", "lstm_small", "gpt2_small")
SAVEDMODEL = FIXTURES / "savedmodel" / "tiny"


def features_model() -> Any:
    """An ONNX model with symbolic dims, shape arithmetic, casts, f16 and i8 initializers, a
    Constant node and an If whose branches read an outer value."""
    from onnx import TensorProto as TP
    from onnx import helper
    from onnx import numpy_helper as nh
    x = helper.make_tensor_value_info("x", TP.FLOAT, ["batch", 3, 8, 8])
    flag = helper.make_tensor_value_info("flag", TP.BOOL, [])
    inits = [nh.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float16), "wconv16"),
             nh.from_array(np.array([1, -2, 3, 4], np.int8), "bias8"),
             nh.from_array(np.array([0], np.int64), "zero_i"),
             nh.from_array(np.array([-1], np.int64), "minus1")]
    branch = {name: helper.make_graph([helper.make_node(op, ["pooled"], [name])], name, [],
                                      [helper.make_tensor_value_info(name, TP.FLOAT, ["batch"])])
              for name, op in (("then", "Relu"), ("else", "Neg"))}
    nodes = [
        helper.make_node("Cast", ["wconv16"], ["wconv"], to=TP.FLOAT),
        helper.make_node("Cast", ["bias8"], ["biasf"], to=TP.FLOAT),
        helper.make_node("Conv", ["x", "wconv", "biasf"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("Constant", [], ["alpha"], value=nh.from_array(np.array(0.1, np.float32))),
        helper.make_node("LeakyRelu", ["c"], ["l"], alpha=0.2),
        helper.make_node("MaxPool", ["l"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero_i"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "minus1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["p", "newshape"], ["flat"]),
        helper.make_node("Mul", ["flat", "alpha"], ["y"]),
        helper.make_node("ReduceMean", ["flat"], ["pooled"], keepdims=0, axes=[1]),
        helper.make_node("If", ["flag"], ["z"], then_branch=branch["then"], else_branch=branch["else"]),
    ]
    graph = helper.make_graph(nodes, "features", [x, flag],
                              [helper.make_tensor_value_info("y", TP.FLOAT, ["batch", None]),
                               helper.make_tensor_value_info("z", TP.FLOAT, ["batch"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def external_data_model(location: str, *, offset: str | None = None, length: str | None = None) -> Any:
    """y = x + w, w: f32[4] stored outside the model at `location` (offset and length as given)."""
    from onnx import TensorProto as TP
    from onnx import helper
    w = TP(name="w", data_type=TP.FLOAT, dims=[4])
    w.data_location = TP.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = w.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "external",
                              [helper.make_tensor_value_info("x", TP.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [4])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def onnx_seeds() -> dict[str, bytes]:
    from engine_forgery import tiny_model
    seeds = {"tiny": tiny_model().SerializeToString(), "features": features_model().SerializeToString()}
    for name in ONNX_FIXTURES:
        seeds[name] = (FIXTURES / "onnx" / f"{name}.onnx").read_bytes()
    return seeds


def ir_seeds(onnx: dict[str, bytes], folder: Path) -> dict[str, tuple[str, bytes | None]]:
    """name -> (module text, weights file bytes or None), saved through `Module.save` as users do."""
    from ember.frontends.onnx import import_model, parse_model
    from ember.ir.examples import attention_block, cnn_block
    modules = {name: import_model(parse_model(data, name), source=name) for name, data in onnx.items()
               if name in ("tiny", "features", "lstm_small", "resnet50_small")}
    modules["cnn_block"] = cnn_block()
    modules["attention_block"] = attention_block()
    out: dict[str, tuple[str, bytes | None]] = {}
    for name, module in modules.items():
        path = folder / f"{name}.ir"
        module.save(str(path))
        weights = path.with_suffix(".weights")
        out[name] = (path.read_text(), weights.read_bytes() if weights.exists() else None)
    for path in sorted((TESTS / "roundtrip").glob("*.ir")):
        out[f"roundtrip/{path.stem}"] = (path.read_text(), None)
    return out


def savedmodel_seed() -> dict[str, bytes]:
    """The committed SavedModel as {relative path: bytes}."""
    return {str(p.relative_to(SAVEDMODEL)): p.read_bytes() for p in sorted(SAVEDMODEL.rglob("*")) if p.is_file()}


def _runtime_conftest() -> Any:
    spec = importlib.util.spec_from_file_location("ember_fuzz_runtime_engines", TESTS / "runtime" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def engine_seeds(cache_dir: Path) -> dict[str, bytes]:
    from engine_forgery import tiny_engine
    runtime = _runtime_conftest()
    return {"tiny": tiny_engine(cache_dir).to_bytes(),
            "synthetic": runtime.synthetic_engine(cache_dir).to_bytes(),
            "host_only": runtime.host_only_engine().to_bytes()}


__all__ = ["onnx_seeds", "ir_seeds", "savedmodel_seed", "engine_seeds", "features_model", "external_data_model",
           "SAVEDMODEL"]
