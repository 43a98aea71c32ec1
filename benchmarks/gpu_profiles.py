"""One engine for a range of shapes against one built for each shape, on the same GPU, in one run.

    python benchmarks/gpu_profiles.py --out DIR      (on the device: scripts/gpu_check.sh bench)

For full-size BERT-base (batch 1..32 x sequence 16..512, OPT 8x128) and ResNet-50 (batch
1..64, OPT 8), with random weights (scripts/export_models.py): the profile engine's latency
at OPT against a fixed-shape engine built at OPT (the issue's bar: within 10%), its latency
at three other shapes (each against a fixed engine of that shape and PyTorch eager), and the
first call at a new shape (binding the program, planning memory, uploading metadata and
capturing CUDA graphs), all fp32, CUDA events, median of many runs after warm-up
(device folder's METHOD.md). Writes gpu_profiles.json and .md to --out and benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gpu_latency import cuda_time, write_results  # noqa: E402

CASES = {
    "bert": {"profile": ((1, 16), (8, 128), (32, 512)), "others": [(1, 16), (3, 129), (32, 512)]},
    "resnet50": {"profile": ((1,), (8,), (64,)), "others": [(1,), (21,), (64,)]},
}


def _inputs(name: str, template: dict[str, np.ndarray], point: tuple) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for k, v in template.items():
        shape = tuple(point) + tuple(v.shape[len(point):])
        if v.dtype.kind == "f":
            out[k] = rng.standard_normal(shape).astype(v.dtype)
        elif "mask" in k:
            out[k] = np.ones(shape, v.dtype)
        else:
            out[k] = rng.integers(0, 1000, size=shape).astype(v.dtype)
    return out


def _profile(template: dict[str, np.ndarray], points: tuple) -> dict[str, tuple]:
    return {k: tuple(tuple(p) + tuple(v.shape[len(p):]) for p in points) for k, v in template.items()}


def bench(name: str, folder: Path) -> dict[str, Any]:
    import torch

    import ember
    sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
    from export_models import MODELS, export
    path, template = export(name, False, folder)
    case = CASES[name]
    module = ember.load(path)
    out: dict[str, Any] = {}
    start = time.perf_counter()
    engine = ember.compile(module, profiles=[_profile(template, case["profile"])], cache_dir=folder / "cache",
                           opt_level=0)  # the same (heuristic) picks as the fixed engines: a fair comparison
    out["profile_build_s"] = round(time.perf_counter() - start, 2)
    out["variants"] = len(engine.specializations)
    out["kernels"] = len(engine.kernels)
    stream = torch.cuda.current_stream().cuda_stream
    ctx = engine.create_context("cuda", stream=stream)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model = MODELS[name][0](False)[0].eval().cuda()  # eager's time does not depend on the weights
    opt = case["profile"][1]
    shapes = [opt] + [p for p in case["others"] if p != opt]
    rows = []
    for point in shapes:
        x = {k: torch.from_numpy(v).cuda() for k, v in _inputs(name, template, point).items()}
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        ctx.run(x)
        torch.cuda.synchronize()
        first_ms = (time.perf_counter() - t0) * 1e3
        row: dict[str, Any] = {"shape": "x".join(map(str, point)), "first_call_ms": round(first_ms, 2),
                               "profile_engine": cuda_time(lambda: ctx.run(x))}
        fixed = ember.compile(module, shapes={k: tuple(v.shape) for k, v in x.items()}, cache_dir=folder / "cache",
                              opt_level=0)
        fctx = fixed.create_context("cuda", stream=stream)
        fctx.run(x)
        row["fixed_engine"] = cuda_time(lambda: fctx.run(x))
        with torch.no_grad():
            args = [x[k] for k in template]
            row["torch_eager"] = cuda_time(lambda: model(*args))
        row["ratio_profile_to_fixed"] = round(row["profile_engine"]["median_ms"] / row["fixed_engine"]["median_ms"], 3)
        rows.append(row)
        print(name, json.dumps(row)[:300], flush=True)
    out["shapes"] = rows
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [f"# One engine for a range of shapes against fixed-shape engines ({result['device']}, {result['date']})",
             "", "fp32, CUDA events, median of 50 runs after 10 warm-up runs, inputs on the GPU, one run of "
             "benchmarks/gpu_profiles.py. The first shape is the profile's OPT. `first call`: the profile engine's "
             "first run at that shape (bind, plan, metadata, CUDA graph capture), wall clock.", ""]
    for name in CASES:
        if name not in result:
            continue
        r = result[name]
        if "error" in r:
            lines += [f"## {name}: error", "", f"    {r['error']}", ""]
            continue
        lines += [f"## {name}: profile {CASES[name]['profile']}", "",
                  f"Build {r['profile_build_s']} s, {r['variants']} kernel variants, {r['kernels']} kernels.", "",
                  "| shape | profile engine (ms) | fixed engine (ms) | profile / fixed | PyTorch eager (ms) | first call (ms) |",
                  "|---|---|---|---|---|---|"]
        for row in r["shapes"]:
            eager = row.get("torch_eager", {}).get("median_ms")
            lines.append(f"| {row['shape']} | {row['profile_engine']['median_ms']:.3f} | "
                         f"{row['fixed_engine']['median_ms']:.3f} | {row['ratio_profile_to_fixed']:.3f} | "
                         f"{'' if eager is None else f'{eager:.3f}'} | {row['first_call_ms']:.1f} |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    import tempfile

    import torch
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(), "date": date.today().isoformat()}
    folder = Path(tempfile.mkdtemp(prefix="ember-profiles-"))
    for name in CASES:
        if args.only and name not in args.only.split(","):
            continue
        try:
            result[name] = bench(name, folder)
        except Exception as err:  # report every benchmark, not the first failure
            result[name] = {"error": f"{type(err).__name__}: {err}"[:2000]}
            print(name, result[name], flush=True)
    write_results("gpu_profiles", result, markdown(result), Path(args.out))

if __name__ == "__main__":
    main()
