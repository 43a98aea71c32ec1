"""Post-training calibration (passes/calibration.py), each method checked against a computation
written apart from it: the entropy threshold against a loop-by-loop KL search, the percentile
against numpy's percentile of every |x|, min-max against the interpreter's outputs; the cache
read back and reused with no interpreter run; bad caches and sets refused by name."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ember.ir.examples import cnn_block
from ember.ir.interpret import interpret
from ember.passes import calibration as C


def reference_entropy_threshold(hist: np.ndarray, amax: float, levels: int = 128) -> float:
    """TensorRT's recipe, spelled out with loops: clip at i bins, quantize to `levels`, expand,
    KL; the i with the least divergence. The zero bin first takes its neighbour's count."""
    hist = [float(h) for h in hist]
    hist[0] = hist[1]
    bins = len(hist)
    width = amax / bins
    best, best_i = math.inf, bins
    for i in range(levels, bins + 1):
        p = [float(h) for h in hist[:i]]
        p[-1] += float(sum(hist[i:]))
        per = i // levels
        q = [0.0] * i
        for level in range(levels):
            start = level * per
            stop = i if level == levels - 1 else start + per
            chunk = hist[start:stop]
            filled = sum(1 for h in chunk if h != 0)
            if filled:
                share = float(sum(chunk)) / filled
                for k in range(start, stop):
                    if hist[k] != 0:
                        q[k] = share
        total_p, total_q = sum(p), sum(q)
        pn = [x / total_p for x in p]
        qn = [x / total_q for x in q]
        holes = [k for k in range(i) if qn[k] == 0 and pn[k] > 0]
        if holes:
            have = [k for k in range(i) if qn[k] > 0]
            take = 1e-4 * len(holes) / len(have)
            qn = [1e-4 if k in holes else (qn[k] - take if qn[k] > 0 else 0.0) for k in range(i)]
        kl = sum(pn[k] * math.log(pn[k] / qn[k]) for k in range(i) if pn[k] > 0)
        if kl < best:
            best, best_i = kl, i
    return (best_i + 0.5) * width if best_i < bins else amax


@pytest.mark.parametrize("seed, shape", [(0, "laplace"), (1, "normal"), (2, "outliers")])
def test_the_entropy_threshold_is_the_least_kl_divergence(seed, shape):
    rng = np.random.default_rng(seed)
    x = {"laplace": rng.laplace(0, 1, 20000), "normal": rng.normal(0, 1, 20000),
         "outliers": np.concatenate([rng.normal(0, 0.5, 20000), rng.normal(0, 30, 20)])}[shape]
    a = np.abs(x)
    amax = float(a.max())
    hist = np.histogram(a, bins=512, range=(0, amax))[0]  # fewer bins: the loop version is slow
    got = C.entropy_threshold(hist, amax)
    want = reference_entropy_threshold(hist, amax)
    assert got == pytest.approx(want, rel=1e-12)
    assert 0 < got <= amax
    if shape == "outliers":
        assert got < amax  # the few outliers are clipped


def test_the_percentile_threshold_is_within_a_bin_of_numpys():
    rng = np.random.default_rng(3)
    a = np.abs(rng.standard_t(3, 100000))
    amax = float(a.max())
    hist = np.histogram(a, bins=C.BINS, range=(0, amax))[0]
    for p in (99.0, 99.9, 99.99):
        exact = float(np.percentile(a, p))
        assert abs(C.percentile_threshold(hist, amax, p) - exact) <= amax / C.BINS, p


def feeds(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"image": rng.standard_normal((2, 3, 32, 32)).astype(np.float32)} for _ in range(n)]


def test_minmax_is_the_largest_value_the_interpreter_computes():
    module = cnn_block()
    batches = feeds(3)
    cal = C.calibrate(module, batches, method="minmax")
    (out_name,) = module.main.output_names
    names = C.tensor_names(module)
    out_value = names[module.main.body.outputs[0]]
    want_out = max(float(np.abs(interpret(module, b)[out_name]).max()) for b in batches)
    want_in = max(float(np.abs(b["image"]).max()) for b in batches)
    image = names[module.main.body.args[0]]
    assert cal.thresholds[out_value] == pytest.approx(want_out, rel=1e-12)
    assert cal.thresholds[image] == pytest.approx(want_in, rel=1e-12)
    assert cal.scales[image] == pytest.approx(want_in / 127)
    assert set(cal.thresholds) == set(C.activation_names(module))
    assert image == "image" and not set(cal.thresholds) & set(module.weights)
    assert len(cal.thresholds) == sum(op.name not in ("ember.weight", "ember.constant")
                                      for op in module.main.body.ops) + 1


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_clip_inside_the_range(method):
    module = cnn_block()
    cal = C.calibrate(module, feeds(3), method=method)
    assert cal.batches == 3
    for name, t in cal.thresholds.items():
        assert 0 <= t <= cal.amax[name] * (1 + 1e-9), (name, t, cal.amax[name])
    assert any(t < cal.amax[n] for n, t in cal.thresholds.items())  # something is clipped


def test_the_cache_is_written_read_back_and_reused_without_running(tmp_path: Path):
    module = cnn_block()
    cache = tmp_path / "calib.txt"
    first = C.calibrate(module, feeds(2), method="percentile", percentile=99.9, cache=cache)
    text = cache.read_text()
    assert text.startswith(C.CACHE_HEADER) and "# method: percentile" in text
    runs = C.RUNS["interpreter"]
    again = C.calibrate(module, feeds(2), method="percentile", percentile=99.9, cache=cache)
    assert C.RUNS["interpreter"] == runs, "the cache was not used"
    assert again.from_cache and again.scales == first.scales and again.thresholds == first.thresholds
    with pytest.raises(C.CalibrationError, match="a percentile 99.9 calibration; this build asks for entropy"):
        C.calibrate(module, feeds(2), method="entropy", cache=cache)


def test_a_cache_for_another_model_or_a_damaged_one_is_refused(tmp_path: Path):
    cache = tmp_path / "calib.txt"
    C.calibrate(cnn_block(channels=4), feeds(1), method="minmax", cache=cache)
    with pytest.raises(C.CalibrationError, match="was made for another model"):
        C.calibrate(cnn_block(channels=8), feeds(1), method="minmax", cache=cache)
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1] + ["conv_out\tnot-a-number\t1.0\t1.0"]) + "\n")
    with pytest.raises(C.CalibrationError, match=r"calib.txt:\d+: expected 'tensor<TAB>scale"):
        C.Calibration.load(cache)
    cache.write_text("scales\n")
    with pytest.raises(C.CalibrationError, match="not an Ember calibration cache"):
        C.Calibration.load(cache)


def test_a_one_shot_set_is_refused_for_the_histogram_methods():
    module = cnn_block()
    with pytest.raises(C.CalibrationError, match="must be re-iterable"):
        C.calibrate(module, iter(feeds(2)), method="entropy")
    assert C.calibrate(module, iter(feeds(2)), method="minmax").batches == 2  # one pass is enough
    with pytest.raises(C.CalibrationError, match="gave no batches"):
        C.calibrate(module, [], method="minmax")
    with pytest.raises(C.CalibrationError, match="choose entropy, percentile, minmax"):
        C.calibrate(module, feeds(1), method="kl")


def test_weight_scales_are_per_output_channel():
    w = np.zeros((3, 2, 2), np.float32)
    w[0, 0, 0], w[1, 1, 1], w[2] = -2.54, 1.27, 0.0
    np.testing.assert_allclose(C.weight_scales(w)[:2], [0.02, 0.01])
    assert 0 < C.weight_scales(w)[2] < 1e-30  # an all-zero channel still gets a usable scale


def test_the_zeros_of_a_relu_do_not_decide_the_entropy_threshold():
    """Half the values exactly zero (a ReLU's output): without the zero bin taking its
    neighbour's count, every wider candidate pays for merging that bin, and the threshold
    falls to the smallest candidate (128.5 bins: an eighth of the range)."""
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal(200_000))
    x[: x.size // 2] = 0.0
    amax = float(x.max())
    hist = np.histogram(x, bins=C.BINS, range=(0.0, amax))[0]
    t = C.entropy_threshold(hist, amax)
    assert t > 0.4 * amax and t > 2.0, (t, amax)
    assert t == pytest.approx(reference_entropy_threshold(hist, amax), rel=1e-12)
