"""Post-training calibration: a symmetric int8 scale for every float activation, from data.

As TensorRT's calibrators do, the calibration set (any re-iterable of input batches, each
{input name: array}) runs through the model, and each float tensor's absolute values give a
threshold T; its int8 scale is T / 127. It runs on the reference interpreter, or through a
`runner` the build gives (an fp32 engine on the GPU returning every calibrated tensor: the
compile driver wires it, this layer never imports the runtime). The methods:

- `minmax`: T = the largest |x| seen.
- `percentile`: T = the `percentile`th percentile of |x| (99.99 by default), read from a
  2048-bin histogram over [0, amax] (so within one bin width, amax / 2048, of the exact one).
- `entropy` (TensorRT's default): over the same histogram, the T that minimises the KL
  divergence between the distribution clipped at T and its 128-level quantized form: for each
  candidate i of 128..2048 bins, P is the first i bins with the rest folded into the last one;
  Q merges those i bins into 128 groups and spreads each group's count evenly over its non-empty
  bins; T = (i + 0.5) * bin width at the minimum (the recipe of "8-bit Inference with
  TensorRT", Migacz 2017). The first bin (the exact zeros of ReLU and clip outputs) counts as
  its neighbour, as NVIDIA's pytorch-quantization does, so the zeros do not decide the result.

Histogram methods need amax before binning, so they take two passes over the data: the set must
be re-iterable (a list, or an object whose __iter__ starts again). Weights are not calibrated:
`weight_scales` gives their per-output-channel scales from the values themselves.

The result (`Calibration`) is keyed by the model's tensor names, the ONNX tensor names the
importer keeps, and saves as a readable text cache: a build that finds a cache for the same
method reuses it and runs nothing.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ember.errors import EmberError
from ember.ir.atomic_file import atomic_write
from ember.ir.core import Module
from ember.ir.interpret import interpret
from ember.ir.printer import name_values

METHODS = ("entropy", "percentile", "minmax")
BINS = 2048
LEVELS = 128          # int8's non-negative levels: the quantized distribution's bins
QMAX = 127
CACHE_HEADER = "# Ember calibration cache v1"
RUNS = {"interpreter": 0, "runner": 0}  # batches calibration ran, by where (tests read it to see a cache was used)
Runner = Callable[[Mapping[str, Any]], Mapping[str, Any]]  # a batch -> {tensor name: array} of the calibrated tensors


class CalibrationError(EmberError, ValueError):
    """A calibration that cannot be made as asked (no data, a wrong method, a stale cache)."""


@dataclass
class Calibration:
    """Per tensor: the threshold (amax the scale covers) and the int8 scale = threshold / 127."""

    method: str
    thresholds: dict[str, float]
    percentile: float | None = None
    batches: int = 0
    amax: dict[str, float] = field(default_factory=dict)   # the largest |x| seen, per tensor
    model: str = ""           # the fingerprint of the tensors calibrated (names and types)
    from_cache: bool = False

    @property
    def scales(self) -> dict[str, float]:
        return {name: _scale(t) for name, t in self.thresholds.items()}

    def to_text(self) -> str:
        head = [CACHE_HEADER, f"# method: {self.method}"]
        if self.method == "percentile":
            head.append(f"# percentile: {self.percentile!r}")
        head += [f"# batches: {self.batches}", f"# model: {self.model}", "# tensor\tscale\tthreshold\tamax"]
        rows = [f"{name}\t{_scale(t)!r}\t{t!r}\t{self.amax.get(name, t)!r}" for name, t in self.thresholds.items()]
        return "\n".join(head + rows) + "\n"

    def save(self, path: str | Path) -> None:
        with atomic_write(path) as f:
            f.write(self.to_text().encode())

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> "Calibration":
        lines = text.splitlines()
        if not lines or lines[0].strip() != CACHE_HEADER:
            raise CalibrationError(f"{source}: not an Ember calibration cache (its first line is not "
                                   f"{CACHE_HEADER!r})")
        meta: dict[str, str] = {}
        thresholds: dict[str, float] = {}
        amax: dict[str, float] = {}
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            if line.startswith("#"):
                key, _, value = line[1:].partition(":")
                meta[key.strip()] = value.strip()
                continue
            parts = line.split("\t")
            try:
                name, scale, threshold, top = parts[0], float(parts[1]), float(parts[2]), float(parts[3])
            except (IndexError, ValueError):
                raise CalibrationError(f"{source}:{number}: expected 'tensor<TAB>scale<TAB>threshold<TAB>amax', "
                                       f"got {line[:80]!r}") from None
            if not (math.isfinite(threshold) and threshold >= 0 and math.isfinite(scale)):
                raise CalibrationError(f"{source}:{number}: tensor {name!r} has threshold {threshold} and scale {scale}")
            thresholds[name], amax[name] = threshold, top
        method = meta.get("method", "")
        if method not in METHODS:
            raise CalibrationError(f"{source}: method {method!r}: not one of {', '.join(METHODS)}")
        percentile = float(meta["percentile"]) if "percentile" in meta else None
        return cls(method, thresholds, percentile, int(meta.get("batches", "0") or 0), amax,
                   model=meta.get("model", ""), from_cache=True)

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        return cls.from_text(Path(path).read_text(), str(path))


def _scale(threshold: float) -> float:
    # an all-zero tensor still needs a usable scale: the smallest normal float32
    return max(threshold, float(np.finfo(np.float32).tiny)) / QMAX


# -- thresholds from a histogram of |x| over [0, amax] ------------------------------------------------
def minmax_threshold(amax: float) -> float:
    return float(amax)


def percentile_threshold(hist: np.ndarray, amax: float, percentile: float) -> float:
    """The upper edge of the first bin where the cumulative count reaches `percentile`%."""
    total = hist.sum()
    if total == 0 or amax == 0:
        return 0.0
    cumulative = np.cumsum(hist)
    index = int(np.searchsorted(cumulative, total * percentile / 100.0, side="left"))
    return float(min(index + 1, len(hist)) * amax / len(hist))


def entropy_threshold(hist: np.ndarray, amax: float, levels: int = LEVELS) -> float:
    """The threshold with the least KL divergence (see the module docstring)."""
    hist = np.asarray(hist, dtype=np.float64)
    bins = len(hist)
    if amax == 0 or hist.sum() == 0:
        return 0.0
    width = amax / bins
    if bins <= levels:
        return float(amax)
    # The first bin holds the exact zeros of ReLU, clip and padding outputs: a count that dwarfs
    # the rest would decide the divergence by itself (every wider candidate merges it into a
    # level it shares with sparse bins) and pull the threshold to the smallest candidate. As in
    # NVIDIA's pytorch-quantization recipe, it counts as its neighbour does.
    hist = hist.copy()
    hist[0] = hist[1]
    if hist.sum() == 0:
        return float(amax)
    best_i, best_kl = bins, math.inf
    suffix = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # suffix[i] = sum(hist[i:])
    for i in range(levels, bins + 1):
        p = hist[:i].copy()
        p[i - 1] += suffix[i]
        group = np.minimum(np.arange(i) // (i // levels), levels - 1)      # each bin's quantized level
        nonzero = hist[:i] != 0
        counts = np.bincount(group, weights=hist[:i], minlength=levels)   # the level's count
        filled = np.bincount(group, weights=nonzero, minlength=levels)    # its non-empty bins
        spread = np.divide(counts, filled, out=np.zeros(levels), where=filled > 0)
        q = np.where(nonzero, spread[group], 0.0)
        kl = _kl(p, q)
        if kl < best_kl:
            best_i, best_kl = i, kl
    return float((best_i + 0.5) * width) if best_i < bins else float(amax)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(P || Q) of two count vectors, normalised; where P has mass Q has none, Q borrows a
    little (as the reference recipe smooths) so that the divergence stays finite."""
    p = p / p.sum()
    q_total = q.sum()
    if q_total == 0:
        return math.inf
    q = q / q_total
    eps = 1e-4
    zero_q = (q == 0) & (p > 0)
    if zero_q.any():
        nz = q > 0
        take = eps * zero_q.sum() / max(nz.sum(), 1)
        q = np.where(zero_q, eps, np.where(nz, q - take, 0.0))
        if (q[nz] <= 0).any():
            return math.inf
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


# -- running the data -------------------------------------------------------------------------------
def tensor_names(module: Module) -> dict[Any, str]:
    """The float tensors calibration covers, by value: the main function's inputs and every op
    result (weights and constants left out), named as the textual IR prints them (the ONNX
    tensor names the importer keeps; %0, %1 ... for values built without names)."""
    fn = module.main
    printed = name_values(fn).names
    out = {a: printed[a] for a in fn.body.args if _is_float(a)}
    for op in fn.body.ops:
        if op.name in ("ember.weight", "ember.constant"):
            continue
        out.update({r: printed[r] for r in op.results if _is_float(r)})
    return out


def activation_names(module: Module) -> list[str]:
    return list(tensor_names(module).values())


def fingerprint(module: Module) -> str:
    """What a cache must have been made for: the calibrated tensors' names and types."""
    text = "\n".join(f"{name}: {v.type}" for v, name in tensor_names(module).items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_float(v: Any) -> bool:
    t = v.type
    return getattr(t, "dtype", None) is not None and getattr(t.dtype, "kind", "") == "float"


def _observe_batches(module: Module, batches: Iterable[Mapping[str, Any]], names: Mapping[Any, str],
                     see: Callable[[str, np.ndarray], None], progress: Callable[[int], None] | None,
                     runner: Runner | None = None) -> int:
    count = 0
    args = [(a, n) for a, n in zip(module.main.body.args, module.main.input_names) if a in names]
    inputs = {names[a] for a, _ in args}

    def observe(op: Any, r: Any, value: Any) -> None:
        name = names.get(r)
        if name is not None:
            see(name, np.abs(np.asarray(value, dtype=np.float64)))

    for batch in batches:
        for arg, input_name in args:
            if input_name in batch:
                see(names[arg], np.abs(np.asarray(batch[input_name], dtype=np.float64)))
        if runner is None:
            interpret(module, batch, observe=observe)
            RUNS["interpreter"] += 1
        else:
            got = runner(batch)
            for name in names.values():
                if name not in inputs:
                    if name not in got:
                        raise CalibrationError(f"the calibration runner returned no tensor {name!r}")
                    see(name, np.abs(np.asarray(got[name], dtype=np.float64)))
            RUNS["runner"] += 1
        count += 1
        if progress is not None:
            progress(count)
    return count


def calibrate(module: Module, batches: Iterable[Mapping[str, Any]], *, method: str = "entropy",
              percentile: float = 99.99, cache: str | Path | None = None,
              progress: Callable[[int], None] | None = None, runner: Runner | None = None) -> Calibration:
    """Thresholds and scales for every activation of `module` from `batches` (see the module
    docstring). With `cache`, a cache for the same method is read instead of running anything,
    and a new calibration is written there. `runner` (a batch -> every tensor of
    `tensor_names` that is not an input, by name) runs the batches instead of the interpreter."""
    if method not in METHODS:
        raise CalibrationError(f"calibration method {method!r}: choose {', '.join(METHODS)}")
    if not 0 < percentile <= 100:
        raise CalibrationError(f"percentile {percentile}: give one in (0, 100]")
    if cache is not None and Path(cache).is_file():
        found = Calibration.load(cache)
        if found.method != method or (method == "percentile" and found.percentile != percentile):
            what = f"{found.method}" + (f" {found.percentile}" if found.percentile is not None else "")
            raise CalibrationError(f"{cache}: a {what} calibration; this build asks for {method}"
                                   f"{f' {percentile}' if method == 'percentile' else ''}: remove the cache or "
                                   "name another one")
        missing = [n for n in activation_names(module) if n not in found.thresholds]
        if missing or found.model != fingerprint(module):
            why = (f"has no scale for tensor {missing[0]!r} ({len(missing)} missing)" if missing else
                   f"its tensors' types differ from this model's (fingerprint {found.model} against "
                   f"{fingerprint(module)})")
            raise CalibrationError(f"{cache}: {why}: it was made for another model; remove it or name another "
                                   "cache")
        return found
    wanted = tensor_names(module)
    names = list(wanted.values())
    amax: dict[str, float] = dict.fromkeys(names, 0.0)

    def see_max(name: str, a: np.ndarray) -> None:
        if a.size:
            finite = a[np.isfinite(a)]
            if finite.size:
                amax[name] = max(amax[name], float(finite.max()))
    n = _observe_batches(module, batches, wanted, see_max, progress, runner)
    if n == 0:
        raise CalibrationError("the calibration set gave no batches")
    if method == "minmax":
        result = Calibration(method, {k: minmax_threshold(v) for k, v in amax.items()}, None, n, amax,
                             model=fingerprint(module))
    else:
        hists = {k: np.zeros(BINS, np.float64) for k in names}

        def see_hist(name: str, a: np.ndarray) -> None:
            top = amax[name]
            if top > 0 and a.size:
                finite = a[np.isfinite(a)]
                hists[name] += np.histogram(finite, bins=BINS, range=(0.0, top))[0]
        second = _observe_batches(module, batches, wanted, see_hist, progress, runner)
        if second != n:
            raise CalibrationError(f"the calibration set gave {n} batches, then {second}: it must be re-iterable "
                                   "(a list, not a generator) for the histogram methods")
        if method == "percentile":
            thresholds = {k: percentile_threshold(hists[k], amax[k], percentile) for k in names}
        else:
            thresholds = {k: entropy_threshold(hists[k], amax[k]) for k in names}
        result = Calibration(method, thresholds, percentile if method == "percentile" else None, n, amax,
                             model=fingerprint(module))
    if cache is not None:
        result.save(cache)
    return result


def weight_scales(weight: np.ndarray, axis: int = 0) -> np.ndarray:
    """Symmetric int8 scales per output channel (`axis`): max |w| over the other axes / 127."""
    w = np.abs(np.asarray(weight, dtype=np.float64))
    other = tuple(i for i in range(w.ndim) if i != axis % max(w.ndim, 1))
    top = w.max(axis=other) if other else w
    return np.maximum(top, np.finfo(np.float32).tiny) / QMAX


__all__ = ["METHODS", "Calibration", "CalibrationError", "calibrate", "entropy_threshold", "percentile_threshold",
           "minmax_threshold", "weight_scales", "activation_names"]
