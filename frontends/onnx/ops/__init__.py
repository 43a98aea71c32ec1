"""ONNX converters, one module per op family; importing this registers them all."""

from ember.frontends.onnx.ops import core, elementwise  # noqa: F401
