"""Lowerings, one module per op family; importing this registers them all."""

from ember.codegen.ops import detection, elementwise, fp8, heavy, int8, movement, reduce, sequence_models  # noqa: F401
