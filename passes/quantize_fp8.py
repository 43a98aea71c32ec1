"""quantize-fp8{calibration=FILE, keep=[...]}: post-training fp8 (e4m3) as explicit Q/DQ pairs.

quantize-int8's twin for precision="fp8": what a calibration found becomes the pairs a
ModelOpt-quantized model carries (QuantizeLinear to FLOAT8E4M3FN, then DequantizeLinear), so
the pipeline has one form to fold and lower. Before each heavy op's float operands:

    conv(x, w, b) -> conv(dq(q(x, s_x)), dq(q(w, s_w[o], axis=0)), b)
    matmul(a, b)  -> matmul(dq(q(a, s_a)), dq(q(b, s_b[n], axis=-1)))

with f8e4m3fn (saturating, no zero point): an activation's scale is its calibrated threshold /
448 (e4m3's largest finite value; the threshold is the amax with the minmax calibrator, the
same cache and calibrators as int8's: passes/calibration.py), a weight's (ember.weight) is per
output channel, max |w| / 448 over the other axes. A bias stays float (the fp8 op's epilogue
adds it in f32). Operands with no calibrated scale, and ops named in `keep` (op kinds such as
`ember.matmul` or `matmul`, or locations), stay as they are.

The pass runs first, on the module as imported (the calibration's names are the module's).
The default pipeline's fold-qdq-fp8 then folds each pair and its heavy op into an fp8 op
(ember.fp8_conv / ember.fp8_matmul, the weight quantized at build time); lower-quantization
writes each activation's quantize as an elementwise kernel (a division and a saturating cast).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.ir.core import Module
from ember.ir.ops.fp8 import FP8_MAX
from ember.passes.calibration import Calibration, CalibrationError
from ember.passes.manager import Pass, PassContext, register_pass
from ember.passes.quantize_int8 import insert_pairs, read_calibration

FP8 = "f8e4m3fn"
TINY = float(np.finfo(np.float32).tiny)


def fp8_scale(threshold: float | np.ndarray, fmt: str = FP8) -> np.ndarray:
    """The fp8 scale that maps `threshold` (an amax) to the format's largest finite value."""
    return (np.maximum(np.asarray(threshold, np.float64), TINY) / FP8_MAX[fmt]).astype(np.float32)


def fp8_weight_scales(weight: np.ndarray, axis: int = 0, fmt: str = FP8) -> np.ndarray:
    """Per output channel (`axis`): max |w| over the other axes / the format's largest value."""
    w = np.abs(np.asarray(weight, dtype=np.float64))
    other = tuple(i for i in range(w.ndim) if i != axis % max(w.ndim, 1))
    return fp8_scale(w.max(axis=other) if other else w, fmt)


def quantize_fp8(module: Module, calibration: Calibration, keep: frozenset[str] = frozenset(),
                 only: frozenset[int] | None = None) -> int:
    """Insert the fp8 Q/DQ pairs (`only`: just before the ops at these indices of the main
    function); returns how many operands were quantized."""
    thresholds = calibration.thresholds
    return insert_pairs(module, fp8_weight_scales,
                        lambda name: fp8_scale(thresholds[name]) if name in thresholds else None, FP8, keep, only)


@register_pass("quantize-fp8")
@dataclass(frozen=True)
class QuantizeFp8(Pass):
    """Quantize heavy ops' inputs to fp8 (e4m3) with a calibration cache's thresholds (see the
    module docstring)."""

    calibration: str = ""
    keep: tuple[str, ...] = ()

    def run(self, module: Module, ctx: PassContext) -> bool:
        if not self.calibration:
            raise CalibrationError("quantize-fp8 needs calibration=FILE (a calibration cache)")
        found = quantize_fp8(module, read_calibration(self.calibration), frozenset(self.keep))
        if found:
            ctx.count(self.name, "operands quantized", found)
        return bool(found)


__all__ = ["QuantizeFp8", "fp8_scale", "fp8_weight_scales", "quantize_fp8"]
