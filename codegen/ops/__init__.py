"""Lowerings, one module per op family; importing this registers them all."""

from ember.codegen.ops import elementwise, movement, reduce  # noqa: F401
