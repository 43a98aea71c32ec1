"""ONNX converters, one module per op family; importing this registers them all."""

from ember.frontends.onnx.ops import (attention, control, core, elementwise, linalg, misc, ml, nn,  # noqa: F401
                                      normalization, quant, recurrent, reduction, sequence, shape, signal, text,
                                      vision)
