"""The built-in ops, one module per family; importing this registers them all.

To add an op: pick the family module (or start one and import it here), write
one class with its schema, `infer` and `reference` (see `ember.ir.opdef`), and
add it to that family's tests, which check it against onnx.reference where
ONNX has the op and against hand-computed cases for every attribute variant.
"""

from ember.ir.ops import (attention, control, core, elementwise, fp8, int8, linalg, ml, nn,  # noqa: F401
                          normalization, quant, recurrent, reduction, resize, sequence, shape, signal, text, vision)
