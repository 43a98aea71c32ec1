"""Fast engines (issue 13's table): fp16 engines of ResNet-50, MobileNetV2, ViT-B/16 and BERT-base
(sequence 128) against PyTorch eager and torch.compile (mode "reduce-overhead"), in the same
process on the same GPU, at batch 1 and 32.

    python benchmarks/gpu_models.py --model resnet50 --out DIR     (one model per device call)
    python benchmarks/gpu_models.py --merge DIR/gpu_models_*.json --out benchmarks/results

Models are built by scripts/export_models.py with random weights (nothing is downloaded) and
exported to ONNX (fp32, dynamic batch); Ember builds an fp16 engine per batch from that file,
PyTorch runs the same module in fp16. Each is timed with CUDA events, inputs already on the GPU,
median of 50 timed runs after 10 warm-up runs (the device folder's METHOD.md). Ember's outputs
are checked against PyTorch's fp32 run on the same inputs by the project's fp16 rule. The figure
is the ratio torch.compile / Ember of one run (>= 1.0: Ember is faster).

Roofline: the run first measures the device's fp16 matrix rate (torch.matmul 8192^3) and copy
bandwidth (a 1 GiB device-to-device copy); per row, the engine's heavy-op FLOPs and the bytes its
launches read and write at that shape (ember.bench.roofline) give the least time either allows,
and the fraction is that over Ember's median (1.0: on the roofline).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gpu_latency import build_log, cuda_time, stage, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet50", "mobilenet_v2", "vit_b_16", "bert")
SEQUENCE = 128
BATCHES = (1, 32)


def _exporter() -> Any:
    spec = importlib.util.spec_from_file_location("export_models", ROOT / "scripts" / "export_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _inputs(name: str, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if name == "bert":
        return {"input_ids": rng.integers(0, 1000, (batch, SEQUENCE)).astype(np.int64),
                "attention_mask": np.ones((batch, SEQUENCE), np.int64)}
    return {"image": rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)}


def device_rates() -> dict[str, float]:
    """The fp16 matrix rate (TFLOP/s, torch.matmul 8192^3) and copy bandwidth (GB/s, read + write
    of a 1 GiB copy) measured on this GPU in this run: the roofline's two ceilings."""
    import torch
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    mm = cuda_time(lambda: torch.matmul(a, b), warmup=5, runs=20)["median_ms"]
    src = torch.empty(1 << 30, device="cuda", dtype=torch.uint8)
    dst = torch.empty_like(src)
    copy = cuda_time(lambda: dst.copy_(src), warmup=5, runs=20)["median_ms"]
    return {"matrix_tflops": 2 * 8192 ** 3 / (mm * 1e-3) / 1e12, "copy_gb_per_s": 2 * (1 << 30) / (copy * 1e-3) / 1e9}


def roofline_row(engine: Any, shapes: dict[str, tuple[int, ...]], ember_ms: float, rates: dict[str, float]
                 ) -> dict[str, Any]:
    from ember.bench import roofline
    r = roofline(engine, shapes)
    compute_ms = r["flops"] / (rates["matrix_tflops"] * 1e12) * 1e3
    memory_ms = r["bytes"] / (rates["copy_gb_per_s"] * 1e9) * 1e3 if r["bytes"] is not None else 0.0
    bound = max(compute_ms, memory_ms)
    return {**r, "compute_ms": compute_ms, "memory_ms": memory_ms,
            "bound": "compute" if compute_ms >= memory_ms else "memory", "fraction": bound / ember_ms}


@contextlib.contextmanager
def ember_flags(text: str) -> Iterator[None]:
    """Builds inside run with EMBER_FLAGS=`text` (codegen/flags.py); the switches and the
    environment are as they were after."""
    import importlib

    from ember.codegen import flags
    saved = {name: getattr(importlib.import_module(m), a) for name, (m, a, _) in flags.FLAGS.items()}
    before = os.environ.get(flags.ENV)
    os.environ[flags.ENV] = text
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(flags.ENV, None)
        else:
            os.environ[flags.ENV] = before
        for name, value in saved.items():
            m, a, _ = flags.FLAGS[name]
            setattr(importlib.import_module(m), a, value)


def check_and_time(ctx: Any, inputs: dict[str, Any], want: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """An engine context's output against PyTorch's fp32 one by the fp16 rule, and its timing."""
    import torch

    from ember.tolerance import TOLERANCES, compare
    got = next(iter(ctx.run(inputs).values()))
    c = compare(np.asarray(torch.as_tensor(got).float().cpu()), want.float().cpu().numpy(),
                rtol=TOLERANCES["float16"][0], atol=TOLERANCES["float16"][1])
    return {"ok": bool(c), "max_abs_diff": c.max_abs_diff, "bound": c.bound}, cuda_time(lambda: ctx.run(inputs))


TARGETS: tuple[str, ...] = ("sm_80", "sm_90")   # every build's (--targets)


def kernel_times(engine: Any, ctx: Any, inputs: dict[str, Any], runs: int = 5, top: int = 12) -> list[dict[str, Any]]:
    """The slowest kernels of the engine, each launch timed on its own (`ember bench --layer-times`'
    table, identical layers added up): kernel, launches, ms per run, share, the ops of its first step."""
    from ember.bench import layer_table
    from ember.runtime.profiling import LayerTimes
    try:
        ctx.layer_times = times = LayerTimes()
        for _ in range(runs):
            ctx.run(inputs)
            ctx.synchronize()
        steps = layer_table(engine, {k: tuple(v.shape) for k, v in inputs.items()}, times.per_step())
    except Exception as err:  # the timings stand without it
        print(f"no kernel times: {err!r}", flush=True)
        return []
    finally:
        ctx.layer_times = None
    kernels: dict[str, dict[str, Any]] = {}
    for r in steps:
        k = kernels.setdefault(r["kernel"], {"kernel": r["kernel"], "launches": 0, "ms": 0.0, "share": 0.0,
                                             "ops": (r["ops"] or [""])[0][:160]})
        k["launches"] += 1
        k["ms"] += r["ms"]
        k["share"] += r["share"]
    return sorted(kernels.values(), key=lambda k: -k["ms"])[:top]


def run_variant(module: Any, feeds: dict[str, np.ndarray], on_gpu: dict[str, Any], want: Any, flags_text: str,
                opt_level: int | None, timing_cache: Path | None, stream: int) -> dict[str, Any]:
    """Ember built with other codegen switches (EMBER_FLAGS), checked and timed as the main column."""
    import ember
    t = time.perf_counter()
    with ember_flags(flags_text):
        engine = ember.compile(module, precision="fp16", shapes={k: v.shape for k, v in feeds.items()},
                               opt_level=opt_level, timing_cache=timing_cache, targets=TARGETS)
    out: dict[str, Any] = {"flags": flags_text, "build_s": round(time.perf_counter() - t, 2),
                           "launches": engine.report.launches}
    ctx = engine.create_context(device="cuda", stream=stream)
    try:
        out["check"], out["ember"] = check_and_time(ctx, {k: on_gpu[k] for k in feeds}, want)
    finally:
        ctx.close()
    return out


def run_model(name: str, batches: tuple[int, ...], rates: dict[str, float] | None = None, opt_level: int | None = None,
              timing_cache: Path | None = None, variants: dict[str, str] | None = None,
              on_rows: Any = None) -> dict[str, Any]:
    import copy

    import torch

    import ember
    export = _exporter()
    export._seed()
    build, input_names, _, _ = export.MODELS[name]
    model, _ = build(False)
    export.randomize(model)
    model.eval()
    folder = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    path, _ = export.export(name, False, folder)
    module = ember.load(path)
    t = stage(f"{name}: built, exported and imported", t0)
    fp32 = model.cuda()
    fp16 = copy.deepcopy(model).half().cuda()
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    pending: list[tuple[Any, ...]] = []
    for batch in batches:
        feeds = _inputs(name, batch, rng)
        t = time.perf_counter()
        engine = ember.compile(module, precision="fp16", shapes={k: v.shape for k, v in feeds.items()},
                               opt_level=opt_level, timing_cache=timing_cache, targets=TARGETS)
        build_s = time.perf_counter() - t
        t = stage(f"{name} batch {batch}: engine built ({engine.report.launches} launches)", t)
        stream = torch.cuda.current_stream().cuda_stream
        ctx = engine.create_context(device="cuda", stream=stream)
        on_gpu = {k: torch.from_numpy(v).cuda() for k, v in feeds.items()}
        half = {k: (v.half() if v.is_floating_point() else v) for k, v in on_gpu.items()}
        args32 = [on_gpu[k] for k in input_names]
        args16 = [half[k] for k in input_names]
        row: dict[str, Any] = {"batch": batch, "build_s": round(build_s, 2), "host_ops": len(engine.report.host_ops)}
        with torch.no_grad():
            want = fp32(*args32)
            row["check"], row["ember"] = check_and_time(ctx, {k: on_gpu[k] for k in feeds}, want)
            t = stage(f"{name} batch {batch}: Ember checked ({row['check']['ok']}) and timed "
                      f"({row['ember']['median_ms']:.3f} ms)", t)
            row["kernels"] = kernel_times(engine, ctx, {k: on_gpu[k] for k in feeds})
            row["torch_eager"] = cuda_time(lambda: fp16(*args16))
            compiled = torch.compile(fp16, mode="reduce-overhead")
            for _ in range(3):
                compiled(*args16)
            row["torch_compile"] = cuda_time(lambda: compiled(*args16))
            t = stage(f"{name} batch {batch}: eager {row['torch_eager']['median_ms']:.3f} ms, torch.compile "
                      f"{row['torch_compile']['median_ms']:.3f} ms", t)
        pending.append((row, feeds, on_gpu, want, stream))
        if rates is not None:
            try:
                row["roofline"] = roofline_row(engine, {k: v.shape for k, v in feeds.items()},
                                               row["ember"]["median_ms"], rates)
            except Exception as err:  # the timings stand without it
                print(f"{name} batch {batch}: no roofline: {err!r}", flush=True)
        row["compile_over_ember"] = row["torch_compile"]["median_ms"] / row["ember"]["median_ms"]
        row["eager_over_ember"] = row["torch_eager"]["median_ms"] / row["ember"]["median_ms"]
        rows.append(row)
        print(name, batch, {k: (v["median_ms"] if isinstance(v, dict) and "median_ms" in v else v)
                            for k, v in row.items()}, flush=True)
        ctx.close()
    # The variants after every main row (written first through `on_rows`): a variant whose kernel
    # faults (a sticky CUDA error) or outlasts the call costs the variants after it, not the table.
    if on_rows is not None and variants:
        on_rows({"model": name, "rows": rows})
    for row, feeds, on_gpu, want, stream in pending:
        for label, text in (variants or {}).items():
            t = time.perf_counter()
            try:
                with torch.no_grad():
                    v = run_variant(module, feeds, on_gpu, want, text, opt_level, timing_cache, stream)
            except Exception as err:  # a variant's failure costs that variant
                print(f"{name} batch {row['batch']}: variant {label} failed: {err!r}", flush=True)
                continue
            v["compile_over_ember"] = row["torch_compile"]["median_ms"] / v["ember"]["median_ms"]
            row.setdefault("variants", {})[label] = v
            stage(f"{name} batch {row['batch']}: variant {label} ({text}): {v['ember']['median_ms']:.3f} ms, "
                  f"check {v['check']['ok']}, {v['launches']} launches", t)
    return {"model": name, "rows": rows}


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [f"# Fast engines: fp16 against torch.compile ({result['date']}, {result['device']})", "",
             "fp16, CUDA events, median of 50 runs after 10 warm-up runs, inputs on the GPU, each row one "
             "run of benchmarks/gpu_models.py (`torch.compile` mode reduce-overhead). Ratio: torch.compile's "
             "time over Ember's (>= 1.0: Ember faster). Check: Ember against PyTorch fp32, fp16 rule.", "",
             "| model | batch | Ember (ms) | PyTorch eager (ms) | torch.compile (ms) | compile / Ember | "
             "eager / Ember | check | host ops | build (s) | roofline |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        for r in m["rows"]:
            check = "ok" if r["check"]["ok"] else f"off ({r['check']['max_abs_diff']:.3g} > {r['check']['bound']:.3g})"
            roof = r.get("roofline")
            roof_cell = f"{roof['fraction']:.2f} ({roof['bound']})" if roof else ""
            lines.append(f"| {m['model']} | {r['batch']} | {r['ember']['median_ms']:.3f} | "
                         f"{r['torch_eager']['median_ms']:.3f} | {r['torch_compile']['median_ms']:.3f} | "
                         f"{r['compile_over_ember']:.2f} | {r['eager_over_ember']:.2f} | {check} | {r['host_ops']} | "
                         f"{r['build_s']} | {roof_cell} |")
    variants = [(m["model"], r, label, v) for m in result["models"] for r in m["rows"]
                for label, v in r.get("variants", {}).items()]
    if variants:
        lines += ["", "Ember with other codegen switches (EMBER_FLAGS, codegen/flags.py), built, checked and timed in "
                  "the same run as the row above:", "",
                  "| model | batch | variant | flags | Ember (ms) | compile / Ember | check | launches | build (s) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for model, r, label, v in variants:
            check = "ok" if v["check"]["ok"] else f"off ({v['check']['max_abs_diff']:.3g} > {v['check']['bound']:.3g})"
            lines.append(f"| {model} | {r['batch']} | {label} | `{v['flags']}` | {v['ember']['median_ms']:.3f} | "
                         f"{v['compile_over_ember']:.2f} | {check} | {v['launches']} | {v['build_s']} |")
    slow = [(m["model"], r) for m in result["models"] for r in m["rows"] if r.get("kernels")]
    if slow:
        lines += ["", "The main column's slowest kernels, each launch timed on its own (no CUDA graph; ms per run, "
                  "share of their sum):", "", "| model | batch | kernel | launches | ms | share | ops |",
                  "|---|---|---|---|---|---|---|"]
        for model, r in slow:
            for k in r["kernels"][:6]:
                lines.append(f"| {model} | {r['batch']} | {k['kernel']} | {k['launches']} | {k['ms']:.4f} | "
                             f"{k['share']:.1%} | {k['ops'][:90].replace('|', '/')} |")
    rates = result.get("rates")
    if rates:
        lines += ["", f"Roofline: the measured fp16 matrix rate {rates['matrix_tflops']:.0f} TFLOP/s (torch.matmul "
                  f"8192^3) and copy bandwidth {rates['copy_gb_per_s']:.0f} GB/s (1 GiB copy, read + write) in this "
                  "run; fraction = max(FLOPs / rate, bytes / bandwidth) / Ember's median, and which one bounds."]
    return lines


def main() -> None:
    global TARGETS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, action="append", help="default: all (one per call is wiser)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--opt-level", type=int, help="ember.compile's tactic-selection effort (default: its own)")
    parser.add_argument("--timing-cache", type=Path, help="read before and written after each build")
    parser.add_argument("--merge", nargs="+", type=Path, help="per-model JSON files to put in one table")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                        help='also build, check and time Ember with EMBER_FLAGS=FLAGS, e.g. split="--split-k"')
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help="every engine's targets, e.g. sm_80,sm_90,sm_90a (with --variant wg=--wgmma)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        result = {"date": parts[0]["date"], "device": parts[0]["device"], "rates": parts[0].get("rates"),
                  "models": [m for p in parts for m in p["models"]]}
        write_results("gpu_models", result, markdown(result), args.out)
        return
    variants = dict(v.split("=", 1) for v in args.variant)
    TARGETS = tuple(args.targets.split(","))
    import torch
    build_log()
    names = args.model or list(MODELS)
    batches = tuple(int(b) for b in args.batches.split(","))
    rates = device_rates()
    result = {"date": date.today().isoformat(), "device": torch.cuda.get_device_name(), "rates": rates,
              "models": []}
    stem = "gpu_models" if len(names) == len(MODELS) else f"gpu_models_{'_'.join(names)}"
    for n in names:  # the table so far is written after each model: a call cut short keeps it
        try:
            def partial(part: dict[str, Any]) -> None:
                so_far = {**result, "models": [*result["models"], part]}
                write_results(stem, so_far, markdown(so_far), args.out)
            result["models"].append(run_model(n, batches, rates, args.opt_level, args.timing_cache, variants,
                                              partial))
        except Exception:  # one model's failure costs that model, not the run's other figures
            traceback.print_exc()
            continue
        write_results(stem, result, markdown(result), args.out)


if __name__ == "__main__":
    main()
