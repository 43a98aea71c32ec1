"""What the `default` pipeline does to full-size models, and how long it takes.

    python benchmarks/passes_default.py --models /tmp/full/resnet50.onnx /tmp/full/bert.onnx /tmp/full/vit_b_16.onnx

(`scripts/export_models.py --full --out /tmp/full` makes the models.) For each:
op counts per type before and after (ops inside fused regions counted too),
fused ops and the heavy ops inside each, the pipeline's time and its per-pass
report, and the interpreter's outputs before and after compared by the
project's f32 rule. Writes benchmarks/results/passes_default.json and .md.
Not a timed test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


def counts(module: Any) -> Counter:
    return Counter(op.name for op in module.walk())


def fused_heavy(module: Any) -> list[int]:
    """Heavy ops inside each fused op."""
    from ember.ir.opdef import Heavy
    out = []
    for op in module.walk():
        if op.name == "ember.fused":
            out.append(sum(1 for inner in op.regions[0].walk() if Heavy in getattr(inner, "traits", ())))
    return out


def feeds_for(module: Any, seed: int = 0) -> dict[str, np.ndarray]:
    from ember.ir.dims import evaluate, free_symbols
    rng = np.random.default_rng(seed)
    env: dict[str, int] = {}
    out = {}
    for name, v in zip(module.main.input_names, module.main.inputs):
        t = v.type
        for d in t.shape:
            for s in free_symbols(d):
                env.setdefault(s, 2 if "batch" in s.lower() or s.startswith("N") else 16)
        shape = [evaluate(d, env) for d in t.shape]
        if t.dtype.is_float:
            out[name] = rng.standard_normal(shape).astype(t.dtype.np_dtype)
        elif "mask" in name:
            out[name] = np.ones(shape, t.dtype.np_dtype)
        else:
            out[name] = rng.integers(0, 1000, shape).astype(t.dtype.np_dtype)
    return out


def run(path: Path, pipeline: str) -> dict[str, Any]:
    import ember
    from ember import ir
    from ember.passes import PassManager
    from ember.tolerance import compare

    t = time.perf_counter()
    module = ember.load(path)
    load_s = time.perf_counter() - t
    before = counts(module)
    feeds = feeds_for(module)
    want = ir.interpret(module, feeds)
    t = time.perf_counter()
    records = PassManager(pipeline).run(module)
    pipeline_s = time.perf_counter() - t
    after = counts(module)
    got = ir.interpret(module, feeds)
    agreement = {}
    for name in want:
        c = compare(np.asarray(got[name]), np.asarray(want[name]), rtol=1e-4, atol=1e-5)
        agreement[name] = {"ok": bool(c), "max_abs_diff": c.max_abs_diff, "bound": c.bound}
    heavy = fused_heavy(module)
    return {
        "model": path.stem, "load_s": round(load_s, 3), "pipeline_s": round(pipeline_s, 3),
        "before": dict(before.most_common()), "after": dict(after.most_common()),
        "fused_ops": len(heavy), "max_heavy_in_one_fused_op": max(heavy, default=0),
        "passes": [{"pass": r.name, "seconds": round(r.seconds, 4), "stats": dict(r.stats)} for r in records],
        "outputs_agree": agreement, "ok": all(a["ok"] for a in agreement.values()),
    }


def markdown(results: list[dict[str, Any]], pipeline: str, machine: str) -> str:
    lines = [f"# The `default` pipeline on full-size models ({date.today().isoformat()})", "",
             f"Pipeline: `{pipeline}`; machine: {machine}. Counts include ops inside fused regions.", ""]
    for r in results:
        lines += [f"## {r['model']}", "",
                  f"pipeline time {r['pipeline_s']} s; {r['fused_ops']} fused ops, at most "
                  f"{r['max_heavy_in_one_fused_op']} heavy op in one; outputs before/after agree: "
                  f"{'yes' if r['ok'] else 'NO'} "
                  + ", ".join(f"({k}: max diff {v['max_abs_diff']:.3g} <= {v['bound']:.3g})"
                              for k, v in r["outputs_agree"].items()), "",
                  "| op | before | after |", "|---|---|---|"]
        names = sorted(set(r["before"]) | set(r["after"]), key=lambda n: -max(r["before"].get(n, 0),
                                                                              r["after"].get(n, 0)))
        for n in names:
            lines.append(f"| {n} | {r['before'].get(n, 0)} | {r['after'].get(n, 0)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=[f"/tmp/full_models/{m}.onnx"
                                                        for m in ("resnet50", "bert", "vit_b_16")])
    parser.add_argument("--pipeline", default="default")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    results = [run(Path(m), args.pipeline) for m in args.models]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "passes_default.json").write_text(json.dumps(
        {"date": date.today().isoformat(), "machine": machine, "pipeline": args.pipeline, "models": results},
        indent=1) + "\n")
    (RESULTS / "passes_default.md").write_text(markdown(results, args.pipeline, machine) + "\n")
    for r in results:
        keys = ("ember.conv", "ember.batch_norm", "ember.transpose", "ember.attention", "ember.layer_norm",
                "ember.fused")
        print(r["model"], f"{r['pipeline_s']}s", {k: (r["before"].get(k, 0), r["after"].get(k, 0)) for k in keys},
              "max heavy/fused:", r["max_heavy_in_one_fused_op"], "agree:", r["ok"])


if __name__ == "__main__":
    main()
