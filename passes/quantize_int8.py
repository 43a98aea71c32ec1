"""quantize-int8{calibration=FILE, keep=[...]}: post-training int8 as explicit Q/DQ pairs.

TensorRT's calibrated ("implicit") int8 and a model that carries QuantizeLinear /
DequantizeLinear pairs ("explicit") end in the same place here: this pass writes what a
calibration found as the pairs an explicitly quantized model would carry, so the rest of the
pipeline has one form to fold and lower. Before each heavy op's float operands:

    conv(x, w, b) -> conv(dq(q(x, s_x)), dq(q(w, s_w[o], axis=0)), b)
    matmul(a, b)  -> matmul(dq(q(a, s_a)), dq(q(b, s_b[n], axis=-1)))

with symmetric int8 (zero point 0, [-128, 127]): an activation's scale is its calibrated
threshold / 127 (passes/calibration.py, keyed by the tensor names the textual IR prints),
a weight's (ember.weight) is per output channel, max |w| / 127 over the other axes. A bias
stays float (it joins the i32 accumulator at the scales' product, in the epilogue).
Operands with no calibrated scale, and ops named in `keep` (op kinds such as `ember.matmul`
or `matmul`, or locations such as an ONNX node name), stay as they are.

The pass runs first, on the module as imported, so the calibration's names are the
module's. The default pipeline's fold-qdq then folds each pair and its heavy op into an int8
op (ember.int8_conv / ember.int8_matmul: s8 x s8 -> s32 kernels, the weight quantized at build
time); the pairs left (around what is kept float) lower to elementwise kernels
(lower-quantization).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ember.ir.builder import Builder
from ember.ir.core import Module, Operation, Value
from ember.ir.types import TensorType, dtype, dtype_of
from ember.passes.calibration import Calibration, CalibrationError, tensor_names, weight_scales
from ember.passes.convert_precision import named_by
from ember.passes.manager import Pass, PassContext, register_pass

# heavy op -> (its float operands to quantize, the axis of each weight's output channels)
QUANTIZED_OPERANDS: dict[str, tuple[tuple[int, int], ...]] = {
    "ember.conv": ((0, 0), (1, 0)),
    "ember.matmul": ((0, -1), (1, -1)),
    "ember.gemm": ((0, -1), (1, -1)),
}


def _weight_data(module: Module, v: Value) -> np.ndarray | None:
    """The data of an ember.weight operand (the weights the pass quantizes per channel)."""
    op = v.defining_op
    if op is None or op.name != "ember.weight":
        return None
    w = module.weights.get(op.attributes["name"])
    return None if w is None or w.data is None else np.asarray(w.data)


def qdq_pair(b: Builder, x: Value, scale: np.ndarray, axis: int, to: str = "i8") -> Value:
    """dq(q(x)) through `to` (a scalar scale, or one per channel along `axis`): symmetric int8
    (zero point 0) or an fp8 format (no zero point, the quantize names its type)."""
    t = x.type
    assert isinstance(t, TensorType)
    s = b.constant(np.asarray(scale, np.float32), "f32")
    zp = b.constant(np.zeros(np.shape(scale), np.int8), "i8") if to == "i8" else None
    ax = axis % t.rank if t.rank else 0
    q_type = {} if to == "i8" else {"dtype": dtype(to)}
    dq_type = {} if to == "i8" else {"dtype": dtype("f32")}
    q = b.op("ember.quantize", x, s, zp, axis=ax, **q_type)
    dq = b.op("ember.dequantize", q, s, zp, axis=ax, **dq_type)
    return dq if t.dtype == dtype_of(np.float32) else b.op("ember.cast", dq, to=t.dtype)


def quantizable(module: Module) -> list[tuple[int, Operation]]:
    """The ops the pass would quantize, with their index in the main function."""
    return [(i, op) for i, op in enumerate(module.main.body.ops) if op.name in QUANTIZED_OPERANDS]


def label(op: Operation, index: int) -> str:
    """How reports and `keep` name an op: its location (an ONNX node name), else `op N`."""
    return op.loc.names[0] if op.loc.names else f"op {index}"


def insert_pairs(module: Module, weight_scale: Callable[[np.ndarray, int], np.ndarray],
                 activation_scale: Callable[[str], np.ndarray | None], to: str = "i8",
                 keep: frozenset[str] = frozenset(), only: frozenset[int] | None = None) -> int:
    """Insert Q/DQ pairs through `to` before the heavy ops' float operands (`only`: just the ops at
    these indices of the main function; `keep`: not the ops it names): a weight's per output
    channel (`weight_scale(data, axis)`), an activation's where `activation_scale(its name)` has
    one. Returns how many operands were quantized; quantize-int8 and quantize-fp8 share it."""
    names = tensor_names(module)
    done = 0
    block = module.main.body
    for position, op in enumerate(list(block.ops)):
        plan = QUANTIZED_OPERANDS.get(op.name)
        if plan is None or named_by(op, keep) or only is not None and position not in only:
            continue
        for index, axis in plan:
            if index >= len(op.operands) or op.operands[index] is None:
                continue
            v = op.operands[index]
            t = v.type
            if not isinstance(t, TensorType) or t.shape is None or t.dtype.kind != "float":
                continue
            b = Builder(module=module, block=block, before=op, loc=op.loc)
            data = _weight_data(module, v)
            if data is not None and data.ndim >= 1:
                if op.name == "ember.gemm" and index == 1 and op.attributes.get("trans_b"):
                    axis = 0  # b is [N, K]: its output channels lead
                new = qdq_pair(b, v, weight_scale(data, axis), axis, to)
            else:
                scale = activation_scale(names[v]) if v in names else None
                if scale is None:
                    continue
                new = qdq_pair(b, v, scale, 0, to)
            op.set_operand(index, new)
            done += 1
    return done


def quantize_int8(module: Module, calibration: Calibration, keep: frozenset[str] = frozenset(),
                  only: frozenset[int] | None = None) -> int:
    """Insert the Q/DQ pairs (`only`: just before the ops at these indices of the main
    function); returns how many operands were quantized."""
    scales = calibration.scales
    return insert_pairs(module, lambda data, axis: weight_scales(data, axis).astype(np.float32),
                        lambda name: np.float32(scales[name]) if name in scales else None,
                        keep=keep, only=only)


def read_calibration(path: str) -> Calibration:
    if not Path(path).is_file():
        raise CalibrationError(f"quantize-int8: calibration cache {path!r} does not exist (calibrate with "
                               "`ember compile --int8 --calib DATA`, which writes it)")
    return Calibration.load(path)


@register_pass("quantize-int8")
@dataclass(frozen=True)
class QuantizeInt8(Pass):
    """Quantize heavy ops' inputs to int8 with a calibration cache's scales (see the module docstring)."""

    calibration: str = ""
    keep: tuple[str, ...] = ()

    def run(self, module: Module, ctx: PassContext) -> bool:
        if not self.calibration:
            raise CalibrationError("quantize-int8 needs calibration=FILE (a calibration cache)")
        found = quantize_int8(module, read_calibration(self.calibration), frozenset(self.keep))
        if found:
            ctx.count(self.name, "operands quantized", found)
        return bool(found)


__all__ = ["QUANTIZED_OPERANDS", "QuantizeInt8", "insert_pairs", "label", "qdq_pair", "quantizable", "quantize_int8",
           "read_calibration"]
