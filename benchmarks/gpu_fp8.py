"""FP8 against fp16 (issue 17's figures): an 8192^3 GEMM and BERT-base at batch 32 (sequence 128).

    python benchmarks/gpu_fp8.py --out DIR [--gemm-only] [--bert-only]   (on the device: scripts/gpu_check.sh bench)

GEMM: C = A @ B with M = N = K = 8192 as one-op engines: ember.fp8_matmul (e4m3 operands,
per-tensor scales, f32 accumulation, f16 result) at every tensor-core tactic the lowering
offers, Ember's fp16 matmul (its heuristic's pick) and torch.matmul in fp16 (cuBLAS), on the same
GPU in the same run; the fp8 result is checked against the interpreter's meaning of the op on a
corner of the product (tolerance.py `fp8_tolerance`), the fp16 one against torch's.

BERT-base: the model of scripts/export_models.py (random weights, nothing downloaded) exported
to ONNX, built by Ember at precision "fp16" and "fp8" (calibrated with the minmax method on two
random batches), and PyTorch's fp16 module eager and under torch.compile (mode
"reduce-overhead"). Outputs are checked against PyTorch's fp32 run: the fp16 engine by the fp16
rule, the fp8 one by e4m3's (tolerance.py, against="fp32"). CUDA events, median of the timed runs
after warm-up (the device folder's METHOD.md). Writes gpu_fp8.json and gpu_fp8.md to --out and
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gpu_latency import cuda_time, stage, write_results  # noqa: E402

GEMM = 8192
BERT_BATCH, SEQUENCE = 32, 128


def gemm(n: int, cache: Path) -> dict[str, Any]:
    import torch

    import ember
    from ember import ir
    from ember.codegen.lower import lower
    from ember.tolerance import compare, fp8_tolerance

    flops = 2 * n ** 3
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(n, n, device="cuda", generator=gen).half()
    b = torch.randn(n, n, device="cuda", generator=gen).half()
    row: dict[str, Any] = {"m": n, "n": n, "k": n}
    t = cuda_time(lambda: torch.matmul(a, b), warmup=5, runs=20)
    row["torch_fp16"] = {"ms": t["median_ms"], "tflops": flops / t["median_ms"] / 1e9}

    bld = ir.Builder("gemm_fp16")
    bld.output("c", bld.matmul(bld.input("a", ir.f16[n, n]), bld.input("b", ir.f16[n, n])))
    engine = ember.compile(bld.build(), pipeline="canonicalize", cache_dir=cache, opt_level=0)
    ctx = engine.create_context(device="cuda", stream=torch.cuda.current_stream().cuda_stream)
    got = ctx.run({"a": a, "b": b})["c"]
    check = compare(got[:256].cpu().numpy(), torch.matmul(a[:256], b).cpu().numpy())
    t = cuda_time(lambda: ctx.run({"a": a, "b": b}), warmup=5, runs=20)
    row["ember_fp16"] = {"ms": t["median_ms"], "tflops": flops / t["median_ms"] / 1e9, "correct": bool(check),
                         "launches": engine.report.launches}

    sx, sw = 0.02, 0.02
    xq = (a.float() / sx).to(torch.float8_e4m3fn)
    wq = (b.t().float() / sw).to(torch.float8_e4m3fn).contiguous()   # [N, K]: a linear layer's weight
    bld = ir.Builder("gemm_fp8")
    x = bld.input("x", ir.f8e4m3fn[n, n])
    w = bld.input("w", ir.f8e4m3fn[n, n])
    bld.output("c", bld.fp8_matmul(x, w, bld.constant(np.float32(sx)), bld.constant(np.float32(sw)), dtype=ir.f16))
    module = bld.build()
    (step,) = [s for s in lower(module).steps if s.kind == "launch"]
    row["fp8_pick"] = step.tactic
    row["fp8"] = {}
    corner = {"x": xq[:128].view(torch.uint8).cpu().numpy().view(ir.f8e4m3fn.np_dtype),
              "w": wq[:128].view(torch.uint8).cpu().numpy().view(ir.f8e4m3fn.np_dtype)}
    small = ir.Builder("corner")
    xs, ws = small.input("x", ir.f8e4m3fn[128, n]), small.input("w", ir.f8e4m3fn[128, n])
    small.output("c", small.fp8_matmul(xs, ws, small.constant(np.float32(sx)), small.constant(np.float32(sw)),
                                       dtype=ir.f16))
    want = ir.interpret(small.build(), corner)["c"]
    for tactic in [c for c in step.candidates if c.startswith("mma")]:
        engine = ember.compile(module, pipeline="", tactics={step.ops[0]: tactic}, cache_dir=cache, opt_level=0)
        ctx = engine.create_context(device="cuda", stream=torch.cuda.current_stream().cuda_stream)
        got = ctx.run({"x": xq, "w": wq})["c"]
        rtol, atol = fp8_tolerance(np.float16)
        check = compare(got[:128, :128].cpu().numpy(), want, rtol=rtol, atol=atol)
        t = cuda_time(lambda: ctx.run({"x": xq, "w": wq}), warmup=5, runs=20)
        row["fp8"][tactic] = {"ms": t["median_ms"], "tflops": flops / t["median_ms"] / 1e9, "correct": bool(check),
                              "over_ember_fp16": row["ember_fp16"]["ms"] / t["median_ms"],
                              "over_torch_fp16": row["torch_fp16"]["ms"] / t["median_ms"]}
        print("gemm fp8", tactic, row["fp8"][tactic], flush=True)
    return row


def bert(cache: Path) -> dict[str, Any]:
    import copy

    import torch

    import ember
    from ember.tolerance import compare, fp8_tolerance, tolerance_for
    from gpu_models import _exporter, _inputs

    export = _exporter()
    export._seed()
    build, input_names, _, _ = export.MODELS["bert"]
    model, _ = build(False)
    export.randomize(model)
    model.eval()
    path, _ = export.export("bert", False, Path(tempfile.mkdtemp()))
    module = ember.load(path)
    rng = np.random.default_rng(0)
    feeds = _inputs("bert", BERT_BATCH, rng)
    calib = [_inputs("bert", 4, rng) for _ in range(2)]
    on_gpu = {k: torch.from_numpy(v).cuda() for k, v in feeds.items()}
    args = [on_gpu[k] for k in input_names]
    fp32 = model.cuda()
    fp16 = copy.deepcopy(model).half().cuda()
    row: dict[str, Any] = {"batch": BERT_BATCH, "sequence": SEQUENCE}
    t = time.perf_counter()
    with torch.no_grad():
        want = fp32(*args).float().cpu().numpy()
        for precision in ("fp16", "fp8"):
            extra = {"calibrator": calib, "calib_method": "minmax"} if precision == "fp8" else {}
            engine = ember.compile(module, precision=precision, shapes={k: v.shape for k, v in feeds.items()},
                                   cache_dir=cache, **extra)
            ctx = engine.create_context(device="cuda", stream=torch.cuda.current_stream().cuda_stream)
            out = np.asarray(torch.as_tensor(next(iter(ctx.run(on_gpu).values()))).float().cpu())
            rtol, atol = fp8_tolerance(np.float32, against="fp32") if precision == "fp8" else tolerance_for("float16")
            c = compare(out, want, rtol=rtol, atol=atol)
            timed = cuda_time(lambda: ctx.run(on_gpu))
            row[f"ember_{precision}"] = {"ms": timed["median_ms"], "correct": bool(c), "max_abs_diff": c.max_abs_diff,
                                         "bound": c.bound, "launches": engine.report.launches,
                                         "host_ops": len(engine.report.host_ops)}
            t = stage(f"bert {precision}: {row[f'ember_{precision}']}", t)
            ctx.close()
        row["torch_eager_fp16"] = {"ms": cuda_time(lambda: fp16(*[a.half() if a.is_floating_point() else a
                                                                   for a in args]))["median_ms"]}
        compiled = torch.compile(fp16, mode="reduce-overhead")
        for _ in range(3):
            compiled(*args)
        row["torch_compile_fp16"] = {"ms": cuda_time(lambda: compiled(*args))["median_ms"]}
    row["fp8_over_fp16"] = row["ember_fp16"]["ms"] / row["ember_fp8"]["ms"]
    return row


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [f"# FP8 against fp16 ({result['device']}, {result['date']})", "",
             "One run of benchmarks/gpu_fp8.py. Speed-up = fp16 time / fp8 time (> 1: fp8 is faster). CUDA events, "
             "median after warm-up.", ""]
    g = result.get("gemm")
    if g is not None and "error" not in g:
        lines += [f"## GEMM {g['m']}^3 (fp8 e4m3 operands, f16 result)", "",
                  "| implementation | ms | TFLOP/s | fp8 speed-up over Ember fp16 | over torch fp16 | correct |",
                  "|---|---|---|---|---|---|",
                  f"| torch.matmul fp16 | {g['torch_fp16']['ms']:.3f} | {g['torch_fp16']['tflops']:.0f} | | | |",
                  f"| Ember fp16 | {g['ember_fp16']['ms']:.3f} | {g['ember_fp16']['tflops']:.0f} | | | "
                  f"{'yes' if g['ember_fp16']['correct'] else 'NO'} |"]
        for name, t in g["fp8"].items():
            star = "*" if name == g["fp8_pick"] else ""
            lines.append(f"| Ember fp8 {star}{name} | {t['ms']:.3f} | {t['tflops']:.0f} | {t['over_ember_fp16']:.2f} | "
                         f"{t['over_torch_fp16']:.2f} | {'yes' if t['correct'] else 'NO'} |")
        lines.append("")
    elif g is not None:
        lines += [f"GEMM: error: {g['error'][:500]}", ""]
    b = result.get("bert")
    if b is not None and "error" not in b:
        lines += [f"## BERT-base, batch {b['batch']}, sequence {b['sequence']}", "",
                  "| run | ms | correct (vs PyTorch fp32) | launches |", "|---|---|---|---|"]
        for key in ("ember_fp16", "ember_fp8"):
            r = b[key]
            lines.append(f"| {key.replace('_', ' ')} | {r['ms']:.3f} | {'yes' if r['correct'] else 'NO'} "
                         f"(max abs {r['max_abs_diff']:.3g}, bound {r['bound']:.3g}) | {r['launches']} |")
        lines += [f"| torch eager fp16 | {b['torch_eager_fp16']['ms']:.3f} | | |",
                  f"| torch.compile fp16 | {b['torch_compile_fp16']['ms']:.3f} | | |", "",
                  f"fp8 over fp16 (Ember): {b['fp8_over_fp16']:.2f}x", ""]
    elif b is not None:
        lines += [f"BERT: error: {b['error'][:500]}", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--gemm-only", action="store_true")
    parser.add_argument("--bert-only", action="store_true")
    parser.add_argument("--size", type=int, default=GEMM, help="the GEMM's M = N = K (default 8192)")
    args = parser.parse_args()
    import torch
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(), "date": date.today().isoformat()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (("gemm", lambda: gemm(args.size, Path(tmp))), ("bert", lambda: bert(Path(tmp)))):
            if (name == "gemm" and args.bert_only) or (name == "bert" and args.gemm_only):
                continue
            try:
                result[name] = run()
            except Exception as err:  # report each part, not the first failure
                traceback.print_exc()
                result[name] = {"error": f"{type(err).__name__}: {err}"[:2000]}
            print(name, result[name], flush=True)
    write_results("gpu_fp8", result, markdown(result), Path(args.out))


if __name__ == "__main__":
    main()
