"""Run one op on Ember's interpreter and on onnx.reference, and compare.

Every op test goes through `ember_op`, which also prints the module and parses
it back, so each attribute variant tested is a round-trip case too.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from ember import ir
from ember.tolerance import assert_close

ONNX_OPSET = 23


def rand(shape: Sequence[int], dtype: Any = np.float32, rng: np.random.Generator | None = None,
         low: float = -3.0, high: float = 3.0) -> np.ndarray:
    """Fresh random data (never zeros) of a numpy or Ember dtype."""
    rng = rng if rng is not None else np.random.default_rng()
    np_dtype = dtype.np_dtype if isinstance(dtype, ir.DType) else np.dtype(dtype)
    if np_dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(np_dtype, np.integer):
        info = np.iinfo(np_dtype)
        return rng.integers(max(info.min, int(low * 10)), min(info.max, int(high * 10)) + 1, size=shape,
                            dtype=np_dtype)
    return rng.uniform(low, high, size=shape).astype(np_dtype)


def ember_op(op_name: str, inputs: Sequence[np.ndarray | None], attrs: dict[str, Any] | None = None,
             *, symbolic: dict[int, Sequence[Any]] | None = None, roundtrip: bool = True,
             **regions: Any) -> list[np.ndarray]:
    """Build a one-op module (inputs as graph inputs, None for absent operands),
    check it round-trips through text, interpret it, return its outputs.
    `symbolic` maps input index to a shape with symbols to declare instead of the static one."""
    b = ir.Builder("op_test")
    values: list[ir.Value | None] = []
    feeds: dict[str, np.ndarray] = {}
    for i, arr in enumerate(inputs):
        if arr is None:
            values.append(None)
            continue
        name = f"in{i}"
        shape = (symbolic or {}).get(i, arr.shape)
        values.append(b.input(name, ir.tensor(ir.dtype_of(arr), shape)))
        feeds[name] = arr
    result = b.op(op_name, *values, **(attrs or {}), **regions)
    results = [result] if isinstance(result, ir.Value) else list(result)
    for i, r in enumerate(results):
        b.output(f"out{i}", r)
    module = b.build()
    if roundtrip:
        text = str(module)
        again = ir.parse(text)
        assert str(again) == text, f"{op_name} does not print back identically:\n{text}\n---\n{again}"
        diff = ir.structural_diff(module, again, weight_data=False)
        assert not diff, f"{op_name} round trip differs: {diff}"
    out = ir.interpret(module, feeds)
    return [out[f"out{i}"] for i in range(len(results))]


def onnx_op(op_type: str, inputs: Sequence[np.ndarray | None], attrs: dict[str, Any] | None = None,
            *, n_outputs: int = 1, opset: int = ONNX_OPSET, domain: str = "") -> list[np.ndarray]:
    """Run one ONNX node on onnx.reference.ReferenceEvaluator, inside a one-node model
    whose inputs are typed, so that ops ONNX defines as functions (Gelu,
    GroupNormalization) can expand. Inputs that are not arrays (sequences) run as a bare node."""
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, domain=domain, **(attrs or {}))
    opsets = {domain: opset} if domain else {"": opset}
    feeds = {n: a for n, a in zip(names, inputs) if a is not None}
    if all(isinstance(a, np.ndarray) for a in feeds.values()):
        graph = helper.make_graph(
            [node], "op",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
             for n, a in feeds.items()],
            [helper.make_empty_tensor_value_info(o) for o in outs])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
        sess = ReferenceEvaluator(model)
    else:
        sess = ReferenceEvaluator(node, opsets=opsets)
    return list(sess.run(None, feeds))


def check_vs_onnx(op_name: str, op_type: str, inputs: Sequence[np.ndarray | None],
                  attrs: dict[str, Any] | None = None, onnx_attrs: dict[str, Any] | None = None, *,
                  onnx_inputs: Sequence[np.ndarray | None] | None = None, n_outputs: int = 1,
                  opset: int = ONNX_OPSET, **tol: float) -> list[np.ndarray]:
    """Ember's op on `inputs` against ONNX's on `onnx_inputs` (default the same)."""
    got = ember_op(op_name, inputs, attrs)
    want = onnx_op(op_type, list(onnx_inputs) if onnx_inputs is not None else inputs,
                   onnx_attrs if onnx_attrs is not None else attrs, n_outputs=n_outputs, opset=opset)
    assert len(got) >= n_outputs
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, np.asarray(w), what=f"{op_name} output {i} vs ONNX {op_type}", **tol)
    return got


__all__ = ["rand", "ember_op", "onnx_op", "check_vs_onnx", "assert_close", "onnx"]
