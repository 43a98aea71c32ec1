"""Ember against PyTorch eager and torch.compile on the same GPU, in the same run.

    python benchmarks/gpu_latency.py --out DIR      (on the device: scripts/gpu_check.sh bench)

Measures, as METHOD.md asks (CUDA events, warm-up, median of many runs):
- build time of ResNet-50 (torchvision, random weights): cold (empty kernel cache) and warm;
- ResNet-50 latency at batch 1 and 32: Ember's engine, PyTorch eager, torch.compile;
- an fp32 GEMM of 4096^3: Ember (a one-op engine) against torch.matmul with TF32 off.
Writes gpu_latency.json and gpu_latency.md (device name and date) to --out and to
benchmarks/results/ when that folder is writable.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).parent / "results"


def cuda_time(fn: Callable[[], Any], warmup: int = 10, runs: int = 50, calls: int = 1) -> dict[str, float]:
    """Median and least ms per call over `runs` event pairs, each around `calls` back-to-back
    calls (more than one: the host's per-call work overlaps the GPU's where it is shorter)."""
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": runs}


def resnet(batch: int, path: Path) -> dict[str, Any]:
    import torch
    import torchvision

    import ember

    # fp32 as Ember computes it: no TF32 in cuDNN's convolutions or cuBLAS (PyTorch allows it in
    # cuDNN by default, which would compare 10-bit-mantissa products against full fp32 ones).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().cuda()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    out: dict[str, Any] = {"batch": batch}
    with torch.no_grad():
        out["torch_eager"] = cuda_time(lambda: model(x))
        compiled = torch.compile(model)
        compiled(x)
        out["torch_compile"] = cuda_time(lambda: compiled(x))
    module = ember.load(path)
    engine = ember.compile(module, shapes={module.main.input_names[0]: (batch, 3, 224, 224)})
    ctx = engine.create_context(device="cuda", stream=torch.cuda.current_stream().cuda_stream)
    feeds = {module.main.input_names[0]: x}
    out["ember"] = cuda_time(lambda: ctx.run(feeds))
    out["ember_host_ops"] = len(engine.report.host_ops)
    return out


def build_times(path: Path) -> dict[str, float]:
    import ember
    cache = Path(tempfile.mkdtemp())
    module = ember.load(path)
    t = time.perf_counter()
    ember.compile(module, shapes={module.main.input_names[0]: (1, 3, 224, 224)}, cache_dir=cache)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    ember.compile(module, shapes={module.main.input_names[0]: (1, 3, 224, 224)}, cache_dir=cache)
    warm = time.perf_counter() - t
    shutil.rmtree(cache, ignore_errors=True)
    return {"cold_s": round(cold, 2), "warm_s": round(warm, 2)}


def gemm(n: int = 4096) -> dict[str, Any]:
    import torch

    import ember
    from ember import ir
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    torch_t = cuda_time(lambda: torch.matmul(a, b), warmup=5, runs=20)
    bld = ir.Builder("gemm")
    x, y = bld.input("a", ir.f32[n, n]), bld.input("b", ir.f32[n, n])
    bld.output("c", bld.matmul(x, y))
    engine = ember.compile(bld.build(), pipeline="canonicalize")
    ctx = engine.create_context(device="cuda", stream=torch.cuda.current_stream().cuda_stream)
    ember_t = cuda_time(lambda: ctx.run({"a": a, "b": b}), warmup=5, runs=20)
    flops = 2 * n ** 3
    return {"n": n, "torch_tf32_off": torch_t, "ember": ember_t,
            "torch_tflops": flops / torch_t["median_ms"] / 1e9, "ember_tflops": flops / ember_t["median_ms"] / 1e9,
            "ember_vs_torch": torch_t["median_ms"] / ember_t["median_ms"]}


def _ms(entry: Any, key: str) -> str:
    try:
        return f"{entry[key]['median_ms']:.3f}"
    except (KeyError, TypeError):
        return "n/a"


def markdown(result: dict[str, Any]) -> list[str]:
    """The tables: ResNet-50 latency per batch, the GEMM, the build times; errors as they came."""
    lines = [f"# Ember GPU benchmarks ({result['date']}, {result['device']})", "",
             "Median of many runs after warm-up, CUDA events, same process and GPU for every column.", "",
             "| ResNet-50 fp32 (TF32 off everywhere) | PyTorch eager (ms) | torch.compile (ms) | Ember (ms) | Ember vs eager | "
             "Ember vs torch.compile | Ember host ops |", "|---|---|---|---|---|---|---|"]
    for key in ("resnet50_b1", "resnet50_b32"):
        r = result.get(key, {})
        if "error" in r:
            lines.append(f"| batch {key.split('_b')[1]} | error: {r['error'][:200]} | | | | | |")
            continue
        ember_ms = r["ember"]["median_ms"]
        lines.append(f"| batch {r['batch']} | {_ms(r, 'torch_eager')} | {_ms(r, 'torch_compile')} | {ember_ms:.3f} | "
                     f"{r['torch_eager']['median_ms'] / ember_ms:.2f}x | {r['torch_compile']['median_ms'] / ember_ms:.2f}x"
                     f" | {r['ember_host_ops']} |")
    g = result.get("gemm_4096", {})
    lines += ["", "| fp32 GEMM 4096^3 (TF32 off) | ms | TFLOP/s |", "|---|---|---|"]
    if "error" in g:
        lines.append(f"| error | {g['error'][:200]} | |")
    else:
        lines.append(f"| torch.matmul | {_ms(g, 'torch_tf32_off')} | {g['torch_tflops']:.1f} |")
        lines.append(f"| Ember | {_ms(g, 'ember')} | {g['ember_tflops']:.1f} ({100 * g['ember_vs_torch']:.0f}% of "
                     "torch) |")
    b = result.get("build", {})
    lines += ["", "| ResNet-50 build (batch 1, sm_80 + sm_90 + PTX) | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in b.items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="/tmp/resnet50.onnx")
    args = parser.parse_args()
    import torch
    path = Path(args.model)
    if not path.exists():
        import sys
        sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
        from export_models import export
        exported, _ = export("resnet50", False, path.parent)
        exported.rename(path)
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(), "date": date.today().isoformat()}
    for name, fn in (("build", lambda: build_times(path)), ("resnet50_b1", lambda: resnet(1, path)),
                     ("resnet50_b32", lambda: resnet(32, path)), ("gemm_4096", gemm)):
        try:
            result[name] = fn()
        except Exception as err:  # report every benchmark, not the first failure
            result[name] = {"error": f"{type(err).__name__}: {err}"[:2000]}
        print(name, json.dumps(result[name])[:400], flush=True)
    write_results("gpu_latency", result, markdown(result), Path(args.out))


def stage(what: str, since: float) -> float:
    """Print how long a stage took (the device log shows where a slow call spent its time)."""
    now = time.perf_counter()
    print(f"[{now - since:7.1f} s] {what}", flush=True)
    return now


def build_log() -> None:
    """Ember's build log (passes, tactic timing, NVRTC) to stderr, with times since start."""
    import logging
    logging.basicConfig(format="%(relativeCreated)9.0f ms  %(message)s")
    logging.getLogger("ember").setLevel(logging.INFO)


def write_results(stem: str, result: dict[str, Any], lines: list[str], out: Path) -> None:
    """STEM.json and STEM.md to the run's output folder and to benchmarks/results/ (where writable)."""
    text = json.dumps(result, indent=1)
    for folder in (out, RESULTS):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{stem}.json").write_text(text + "\n")
            (folder / f"{stem}.md").write_text("\n".join(lines) + "\n")
        except OSError:
            pass


if __name__ == "__main__":
    np.random.seed(0)
    main()
