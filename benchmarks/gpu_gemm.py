"""fp16 GEMMs: Ember's kernels against torch.matmul (cuBLAS) on the same GPU, in the same run.

    python benchmarks/gpu_gemm.py --out DIR      (on the device: scripts/gpu_check.sh bench)

The table the tensor-core issue asks for: square M = N = K from 512 to 8192, and the
linear layers of BERT-base (sequence 128) and ViT-B/16 (197 tokens) at batch 32 (M = batch x
tokens), each as a one-op engine (`x @ w`, fp16 operands, f32 accumulation, fp16 result),
every tensor-core tactic the lowering offers timed (the heuristic's pick marked), and
torch.matmul on the same operands. With --wgmma the engines are built for sm_80, sm_90 and
sm_90a with the Hopper tiles on (heavy.WGMMA, and the persistent warp-specialized ones,
heavy.WGMMA_PERSISTENT, with cp.async or TMA producers, heavy.WGMMA_TMA), so the wgmma tactics
are timed beside the mma.sync ones. CUDA events, median of many runs after warm-up (the
device folder's METHOD.md), Ember's kernel timed alone (its call's host work apart); outputs checked against torch's by the fp16 rule. Writes
gpu_gemm.json and gpu_gemm.md (device name and date) to --out and benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gpu_latency import cuda_time, write_results  # noqa: E402

SQUARE = [512, 1024, 2048, 4096, 8192]
LAYERS = {  # (M, N, K): M = batch 32 x tokens
    "BERT-base QKV (merged)": (32 * 128, 2304, 768),
    "BERT-base attention out": (32 * 128, 768, 768),
    "BERT-base FFN up": (32 * 128, 3072, 768),
    "BERT-base FFN down": (32 * 128, 768, 3072),
    "ViT-B/16 QKV (merged)": (32 * 197, 2304, 768),
    "ViT-B/16 FFN up": (32 * 197, 3072, 768),
    "ViT-B/16 FFN down": (32 * 197, 768, 3072),
}


def one(label: str, m: int, n: int, k: int, cache: Path, wgmma: bool = False) -> dict[str, Any]:
    import torch

    import ember
    from ember import ir
    from ember.codegen.lower import lower
    from ember.tolerance import compare

    gen = torch.Generator(device="cuda").manual_seed(0)
    a = (torch.rand(m, k, device="cuda", generator=gen) - 0.5).half()
    b = (torch.rand(k, n, device="cuda", generator=gen) - 0.5).half()
    ref = torch.matmul(a, b)
    runs = 20 if m * n * k >= 2**36 else 50
    torch_t = cuda_time(lambda: torch.matmul(a, b), warmup=5, runs=runs)
    bld = ir.Builder("gemm")
    x, w = bld.input("a", ir.f16[m, k]), bld.input("b", ir.f16[k, n])
    bld.output("c", bld.matmul(x, w))
    module = bld.build()
    target = "sm_90a" if wgmma else None
    targets = ("sm_80", "sm_90", "sm_90a") if wgmma else ("sm_80", "sm_90")
    (step,) = [s for s in lower(module, target=target).steps if s.kind == "launch"]
    flops = 2 * m * n * k
    row: dict[str, Any] = {"label": label, "m": m, "n": n, "k": k, "pick": step.tactic,
                           "torch_ms": torch_t["median_ms"], "torch_tflops": flops / torch_t["median_ms"] / 1e9,
                           "tactics": {}}
    for tactic in [c for c in step.candidates if c.startswith(("mma", "wgmma"))]:
        engine = ember.compile(module, pipeline="canonicalize", tactics={step.ops[0]: tactic}, cache_dir=cache,
                               opt_level=0, targets=targets)   # forced: nothing to time (tune skips forced ops anyway)
        ctx = engine.create_context(device="cuda", stream=torch.cuda.current_stream().cuda_stream)
        got = ctx.run({"a": a, "b": b})["c"]
        check = compare(got.cpu().numpy(), ref.cpu().numpy())   # fp16 arrays: the fp16 rule
        t = cuda_time(lambda: ctx.run({"a": a, "b": b}), warmup=5, runs=runs)
        kernel = kernel_ms(ctx, {"a": a, "b": b}, runs)
        row["tactics"][tactic] = {"ms": kernel, "call_ms": t["median_ms"], "tflops": flops / kernel / 1e9,
                                  "of_torch": torch_t["median_ms"] / kernel, "correct": bool(check),
                                  "max_abs_err": float(np.abs(got.float().cpu().numpy() -
                                                              ref.float().cpu().numpy()).max())}
    best = max(row["tactics"].values(), key=lambda r: r["of_torch"])
    row["best_of_torch"] = best["of_torch"]
    row["pick_of_torch"] = row["tactics"][step.tactic]["of_torch"] if step.tactic in row["tactics"] else None
    return row


def kernel_ms(ctx: Any, inputs: dict[str, Any], runs: int) -> float:
    """The median time of the product's kernel alone (a CUDA event pair around its launch, the
    context's per-layer timing): a small product's call time is mostly the host's, not the GPU's."""
    from ember.runtime.profiling import LayerTimes
    ctx.layer_times = times = LayerTimes()
    try:
        for _ in range(runs):
            ctx.run(inputs)
        ctx.synchronize()
        times.collect()
    finally:
        ctx.layer_times = None
    per_run = [sum(ms) for ms in zip(*times.steps.values())]
    return float(np.median(per_run))


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [f"# fp16 GEMM: Ember's tensor-core tiles against torch.matmul ({result['device']}, {result['date']})", "",
             "One run of benchmarks/gpu_gemm.py: C = A @ B, fp16 operands and result, f32 accumulation; CUDA "
             "events, median after warm-up; Ember's time is its kernel's (an event pair around the launch; the "
             "whole call, host included, is in the JSON as call_ms); `of torch` = torch time / Ember kernel "
             "time (1.0: as fast as cuBLAS); "
             "* marks the heuristic's pick; every output checked against torch's by the fp16 rule.", "",
             "| GEMM | M x N x K | torch (ms, TFLOP/s) | Ember tactics (ms, TFLOP/s, of torch) | correct |",
             "|---|---|---|---|---|"]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['label']} | | | error: {row['error'][:200]} | |")
            continue
        cells = []
        for name, t in row["tactics"].items():
            star = "*" if name == row["pick"] else ""
            cells.append(f"{star}{name}: {t['ms']:.3f}, {t['tflops']:.0f}, {t['of_torch']:.2f}")
        ok = all(t["correct"] for t in row["tactics"].values())
        lines.append(f"| {row['label']} | {row['m']}x{row['n']}x{row['k']} | {row['torch_ms']:.3f}, "
                     f"{row['torch_tflops']:.0f} | {'<br>'.join(cells)} | {'yes' if ok else 'NO'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true", help="512 and 4096 only")
    parser.add_argument("--wgmma", action="store_true", help="also time the Hopper tile (sm_90a builds)")
    args = parser.parse_args()
    import torch
    if args.wgmma:
        import ember.codegen.ops.heavy as heavy
        heavy.WGMMA = True
        heavy.WGMMA_PERSISTENT = True
        heavy.WGMMA_TMA = True
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(), "date": date.today().isoformat(), "rows": []}
    cases = [(f"square {s}", s, s, s) for s in SQUARE] + [(k, *v) for k, v in LAYERS.items()]
    if args.quick:
        cases = [c for c in cases if c[1] in (512, 4096) and c[0].startswith("square")]
    with tempfile.TemporaryDirectory() as tmp:
        for label, m, n, k in cases:
            try:
                row = one(label, m, n, k, Path(tmp), args.wgmma)
            except Exception as err:  # report every shape, not the first failure
                row = {"label": label, "error": f"{type(err).__name__}: {err}"[:2000]}
            result["rows"].append(row)
            print(label, {key: v for key, v in row.items() if key != "tactics"}, flush=True)
    write_results("gpu_gemm", result, markdown(result), Path(args.out))


if __name__ == "__main__":
    main()
