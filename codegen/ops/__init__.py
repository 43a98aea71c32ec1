"""Lowerings, one module per op family; importing this registers them all."""

from ember.codegen.ops import detection, elementwise, fp8, heavy, int8, movement, reduce, sequence_models  # noqa: F401
from ember.codegen import flags as _flags

_flags.apply()  # EMBER_FLAGS: switches of kernel forms that wait on a device check
