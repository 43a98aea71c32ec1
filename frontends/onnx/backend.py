"""An `onnx.backend.base.Backend` on Ember, so onnx's own backend test suite runs against it.

`prepare` imports the model; `run` interprets it (the reference interpreter
today; engines once codegen lands). Graph inputs that an op needs at build
time (a Reshape's shape fed as an input, as the suite does) are bound to the
values given at `run` and the model is imported for them, as TensorRT builds
for the values of shape tensors; such builds are cached by those values.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from ember.frontends.onnx.importer import StaticInputsRequired, import_model
from ember.ir.core import Module
from ember.ir.interpret import interpret


class EmberRep(BackendRep):
    """A prepared model: imported once, or once per value of its build-time inputs."""

    def __init__(self, model: onnx.ModelProto, device: str = "CPU") -> None:
        self.model = model
        self.device = device
        inits = {t.name for t in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in inits]
        self.output_names = [o.name for o in model.graph.output]
        self.static_names: tuple[str, ...] = ()
        self.builds: dict[bytes, Module] = {}
        try:
            self.module: Module | None = import_model(model, source=model.graph.name or "<model>")
        except StaticInputsRequired as err:
            self.module = None
            self.static_names = err.names

    def _module_for(self, feeds: dict[str, Any]) -> Module:
        if self.module is not None:
            return self.module
        frozen = {n: np.asarray(feeds[n]) for n in self.static_names}
        key = b"".join(n.encode() + a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()
                       for n, a in sorted(frozen.items()))
        if key not in self.builds:
            while True:
                try:
                    self.builds[key] = import_model(self.model, source=self.model.graph.name or "<model>",
                                                    frozen_inputs=frozen)
                    break
                except StaticInputsRequired as err:  # a later node needs more inputs frozen
                    new = [n for n in err.names if n not in frozen and n in feeds]
                    if not new:
                        raise
                    frozen.update({n: np.asarray(feeds[n]) for n in new})
                    self.static_names = tuple(dict.fromkeys(self.static_names + tuple(new)))
        return self.builds[key]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        feeds = self._feeds(inputs)
        module = self._module_for(feeds)
        names = set(module.main.input_names)
        outputs = interpret(module, {k: v for k, v in feeds.items() if k in names})
        values = [_to_onnx_value(outputs[n]) for n in self.output_names]
        return namedtupledict("Outputs", self.output_names)(*values)

    def _feeds(self, inputs: Any) -> dict[str, Any]:
        if isinstance(inputs, dict):
            items = dict(inputs)
        else:
            seq = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            if len(seq) > len(self.input_names):
                raise ValueError(f"{len(seq)} inputs given; the model takes {len(self.input_names)}")
            items = dict(zip(self.input_names, seq))
        return {k: _from_onnx_value(v) for k, v in items.items()}


def _from_onnx_value(v: Any) -> Any:
    if isinstance(v, list):
        return [_from_onnx_value(x) for x in v]
    if isinstance(v, np.ndarray) and v.dtype.kind in "SUO":
        return np.array([x.decode() if isinstance(x, bytes) else x for x in v.ravel()], dtype=object).reshape(v.shape)
    return v


def _to_onnx_value(v: Any) -> Any:
    if isinstance(v, list):
        return [_to_onnx_value(x) for x in v]
    return v


class EmberBackend(Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> EmberRep:
        super().prepare(model, device, **kwargs)
        return EmberRep(model, device)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[Any, Any]] | None = None, **kwargs: Any) -> tuple[Any, ...]:
        """Run one node: wrap it in a model whose inputs take the given arrays' types."""
        arrays = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        names = [n for n in node.input if n]
        graph_inputs = [onnx.helper.make_tensor_value_info(
            n, onnx.helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype), np.asarray(a).shape)
            for n, a in zip(names, arrays)]
        graph_outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o]
        graph = onnx.helper.make_graph([node], "run_node", graph_inputs, graph_outputs)
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(node.domain or "", opset)])
        return cls.run_model(model, dict(zip(names, arrays)), device, **kwargs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


prepare = EmberBackend.prepare
run_model = EmberBackend.run_model
run_node = EmberBackend.run_node
supports_device = EmberBackend.supports_device
