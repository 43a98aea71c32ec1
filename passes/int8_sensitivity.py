"""How much int8 (or fp8) costs, output by output and layer by layer, on the reference interpreter.

`output_errors` compares a quantized model's outputs with the float model's: largest
absolute and relative difference, cosine similarity of the flattened outputs, and for
classifier-shaped outputs ([batch, classes]) the share of rows whose top-1 class agrees.
`layer_sensitivity` answers TensorRT users' standing question, where the accuracy goes: it
quantizes one heavy op at a time (passes/quantize_int8.py with `only=`), runs the batches
and ranks the ops by the error each causes alone (1 - the outputs' cosine, the worst over
batches and outputs), so the first rows are the ops to keep in float (`--precision-keep`);
`quantize=quantize_fp8` ranks the cost of fp8 (e4m3, amax scales) the same way. One
interpretation per op and batch: a few batches are enough to rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ember.ir.core import Module
from ember.ir.interpret import interpret
from ember.ir.parser import copy_module
from ember.passes.calibration import Calibration
from ember.passes.quantize_int8 import label, quantizable, quantize_int8


@dataclass(frozen=True)
class OutputError:
    output: str
    max_abs: float
    max_rel: float        # max |a - b| / max |a|
    cosine: float
    top1: float | None    # share of rows whose argmax agrees ([batch, classes] outputs)


@dataclass(frozen=True)
class LayerError:
    index: int            # in the main function
    name: str             # its location (an ONNX node name), or `op N`
    kind: str
    error: float          # 1 - cosine, worst over batches and outputs, with only this op quantized
    rel: float            # the largest max |a - b| / max |a| with only this op quantized


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    return float(a @ b / (na * nb)) if na and nb else 0.0


def output_errors(reference: Mapping[str, Any], got: Mapping[str, Any]) -> list[OutputError]:
    out = []
    for name, ref in reference.items():
        a, b = np.asarray(ref), np.asarray(got[name])
        if a.dtype.kind != "f" or a.shape != b.shape:
            continue
        diff = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
        top = float(np.abs(a).max()) if a.size else 0.0
        top1 = float(np.mean(a.argmax(-1) == b.argmax(-1))) if a.ndim == 2 and a.shape[-1] > 1 else None
        out.append(OutputError(name, diff, diff / top if top else diff, _cosine(a, b), top1))
    return out


def layer_sensitivity(module: Module, calibration: Calibration, batches: Iterable[Mapping[str, Any]],
                      progress: Callable[[int, int], None] | None = None,
                      quantize: Callable[..., int] = quantize_int8) -> list[LayerError]:
    """Every quantizable op quantized alone (by `quantize`: quantize_int8 or quantize_fp8), ranked
    by the error it causes (worst first)."""
    feeds: Sequence[Mapping[str, Any]] = list(batches)
    reference = [interpret(module, f) for f in feeds]
    ops = quantizable(module)
    found = []
    for k, (index, op) in enumerate(ops):
        one = copy_module(module)
        if quantize(one, calibration, only=frozenset({index})) == 0:
            continue  # no calibrated input
        worst, rel = 0.0, 0.0
        for f, ref in zip(feeds, reference):
            for e in output_errors(ref, interpret(one, f)):
                worst, rel = max(worst, 1.0 - e.cosine), max(rel, e.max_rel)
        found.append(LayerError(index, label(op, index), op.name, worst, rel))
        if progress is not None:
            progress(k + 1, len(ops))
    return sorted(found, key=lambda e: (-e.error, e.index))


__all__ = ["LayerError", "OutputError", "layer_sensitivity", "output_errors"]
