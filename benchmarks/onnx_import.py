"""How long `ember.load` takes on a full-size ONNX model (ResNet-50 by default).

    python benchmarks/onnx_import.py --model resnet50.onnx [--runs 5]
    python benchmarks/onnx_import.py --export          # export torchvision ResNet-50 first (needs torch)

Reports the median, min and max over the runs of: reading the file, importing
into Ember's IR, and verifying, and writes benchmarks/results/onnx_import.json
and .md with the machine and the date. Not a timed test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def export_resnet50(path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
    from export_models import export
    exported, _ = export("resnet50", False, path.parent)
    exported.rename(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="/tmp/resnet50.onnx")
    parser.add_argument("--export", action="store_true", help="export torchvision ResNet-50 to --model first")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    path = Path(args.model)
    if args.export:
        export_resnet50(path)
    import ember
    from ember import ir

    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        module = ember.load(path)
        ir.verify(module)
        times.append(time.perf_counter() - t)
    n_ops = sum(1 for _ in module.walk())
    weights = sum(w.data.nbytes for w in module.weights.values() if w.data is not None)
    result = {
        "benchmark": "onnx_import", "model": path.name, "model_bytes": path.stat().st_size,
        "ops": n_ops, "weights": len(module.weights), "weight_bytes": weights,
        "runs": args.runs, "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
        "max_s": round(max(times), 4), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "date": date.today().isoformat(), "ember": ember.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "onnx_import.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "onnx_import.md").write_text(
        f"# ONNX import time ({result['date']})\n\n"
        f"| model | file | ops | weights | median | min | max | machine |\n|---|---|---|---|---|---|---|---|\n"
        f"| {result['model']} | {result['model_bytes'] / 2**20:.1f} MiB | {n_ops} | {len(module.weights)} "
        f"({weights / 2**20:.1f} MiB) | {result['median_s']} s | {result['min_s']} s | {result['max_s']} s | "
        f"{result['machine']} |\n\nRead, import into Ember's IR and verify, {args.runs} runs "
        "(`python benchmarks/onnx_import.py --export`).\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
