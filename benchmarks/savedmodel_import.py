"""Full-size Keras SavedModels through the SavedModel frontend: import time, the default
pipeline, and agreement with TensorFlow.

    python benchmarks/savedmodel_import.py [--runs 5] [--models resnet50,mobilenet_v2]

Exports Keras applications (random weights, logits out) with TensorFlow (the test extra),
then times `ember.load` (protobufs, checkpoint with CRC checks, import, verify) and the
`default` pipeline, counts what the pipeline leaves (no transposes in NHWC CNNs), and compares
the interpreter with TensorFlow on one batch by the project's tolerance rule. Writes
benchmarks/results/savedmodel_import.json and .md with the machine and the date. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def keras_model(name: str) -> object:
    import keras
    if name == "resnet50":
        return keras.applications.ResNet50(weights=None, classifier_activation=None)
    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(weights=None, classifier_activation=None)
    if name == "efficientnet_b0":
        return keras.applications.EfficientNetB0(weights=None, classifier_activation=None)
    raise SystemExit(f"unknown model {name}")


def measure(name: str, folder: Path, runs: int) -> dict:
    import tensorflow as tf

    import ember
    from ember.ir.interpret import interpret
    from ember.passes.manager import run_pipeline
    from ember.tolerance import compare

    model = keras_model(name)
    path = folder / name
    model.export(str(path), verbose=False)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    (key, spec), = fn.structured_input_signature[1].items()
    x = np.random.default_rng(0).standard_normal((2, *spec.shape[1:])).astype(np.float32)
    (out_key, ref), = fn(**{key: tf.constant(x)}).items()
    loads, pipes = [], []
    for _ in range(runs):
        t = time.perf_counter()
        module = ember.load(path)
        loads.append(time.perf_counter() - t)
        t = time.perf_counter()
        run_pipeline(module, "default")
        pipes.append(time.perf_counter() - t)
    ops = Counter(op.name for op in module.walk())
    result = compare(interpret(module, {key: x})[out_key], ref.numpy())
    nbytes = sum(w.data.nbytes for w in module.weights.values())
    return {"model": name, "weights_mb": round(nbytes / 2**20, 1), "import_s": round(statistics.median(loads), 3),
            "default_pipeline_s": round(statistics.median(pipes), 3), "transposes": ops["ember.transpose"],
            "convs": ops["ember.conv"], "batch_norms": ops["ember.batch_norm"], "fused": ops["ember.fused"],
            "max_abs_diff": float(result.max_abs_diff), "bound": float(result.bound), "ok": bool(result.ok)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--models", default="resnet50,mobilenet_v2,efficientnet_b0")
    args = ap.parse_args()
    import tensorflow as tf
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(m, Path(tmp), args.runs) for m in args.models.split(",")]
    meta = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(), "tensorflow": tf.__version__, "runs": args.runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "savedmodel_import.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# SavedModel import ({meta['date']}, {meta['machine']}, Python {meta['python']}, "
             f"TensorFlow {meta['tensorflow']} for export and reference only)", "",
             f"Keras applications with random weights (logits), `model.export()`; median of {args.runs} runs.", "",
             "| model | weights (MB) | ember.load (s) | default pipeline (s) | transposes | convs | batch norms left "
             "| fused ops | max abs diff vs TF | bound | ok |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['weights_mb']} | {r['import_s']} | {r['default_pipeline_s']} | "
                     f"{r['transposes']} | {r['convs']} | {r['batch_norms']} | {r['fused']} | "
                     f"{r['max_abs_diff']:.3g} | {r['bound']:.3g} | {r['ok']} |")
    (RESULTS / "savedmodel_import.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
