"""Memory-bound kernels against the device's copy bandwidth (issue 13): layer norm, softmax,
residual add + layer norm, an elementwise chain and a cast, fp16 in and out (f32 inside), at
[32768, 768] and [4096, 3072], each a one-op (after fusion) Ember engine.

    python benchmarks/gpu_membound.py --out DIR      (on the device: scripts/gpu_check.sh bench gpu_membound)

Bytes are what the kernel must move at least: every input read once and the output written
once. The copy bandwidth is a device-to-device copy of the same bytes measured in the same run
(read + write). A kernel's time is the GPU time of 20 back-to-back runs over 20 (CUDA events
around the loop, median of 15 such loops after warm-up), so the host's per-run work overlaps
the GPU's when it is shorter; `single_ms` is one run between events, host gaps included. PyTorch's
eager kernel for the same computation is timed the same way beside it. The fraction is
bytes / time over the copy's rate; the target is >= 0.8. Outputs are checked against
PyTorch's by the fp16 rule.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parent))
from gpu_latency import cuda_time, write_results  # noqa: E402

SHAPES = [(32768, 768), (4096, 3072)]
LOOP = 20


def loop_time(fn: Callable[[], Any]) -> float:
    """Median ms per call over 15 timings of LOOP back-to-back calls."""
    return cuda_time(fn, warmup=3, runs=15, calls=LOOP)["median_ms"]


def cases(rows: int, cols: int) -> dict[str, dict[str, Any]]:
    """name -> the Ember module's builder, PyTorch's computation, its inputs' dtypes and the bytes moved."""
    import torch
    import torch.nn.functional as F

    from ember import ir

    n = rows * cols

    def layer_norm(b: Any, x: Any, s: Any, c: Any) -> Any:
        return b.layer_norm(x, s, c, epsilon=1e-5)

    def residual_layer_norm(b: Any, x: Any, r: Any, s: Any, c: Any) -> Any:
        return b.layer_norm(b.add(x, r), s, c, epsilon=1e-5)

    def chain(b: Any, x: Any, c: Any) -> Any:
        return b.gelu(b.add(x, c))

    def cast(b: Any, x: Any) -> Any:
        return b.cast(x, to=ir.f16)

    return {
        "layer_norm": {"build": layer_norm, "inputs": [("x", "f16", (rows, cols)), ("s", "f16", (cols,)),
                                                       ("c", "f16", (cols,))],
                       "torch": lambda x, s, c: F.layer_norm(x, (cols,), s, c, 1e-5), "bytes": 2 * n * 2},
        "softmax": {"build": lambda b, x: b.softmax(x, axis=-1), "inputs": [("x", "f16", (rows, cols))],
                    "torch": lambda x: torch.softmax(x, -1), "bytes": 2 * n * 2},
        "residual_layer_norm": {"build": residual_layer_norm,
                                "inputs": [("x", "f16", (rows, cols)), ("r", "f16", (rows, cols)),
                                           ("s", "f16", (cols,)), ("c", "f16", (cols,))],
                                "torch": lambda x, r, s, c: F.layer_norm(x + r, (cols,), s, c, 1e-5),
                                "bytes": 3 * n * 2},
        "bias_gelu": {"build": chain, "inputs": [("x", "f16", (rows, cols)), ("c", "f16", (cols,))],
                      "torch": lambda x, c: F.gelu(x + c), "bytes": 2 * n * 2},
        "cast_f32_f16": {"build": cast, "inputs": [("x", "f32", (rows, cols))],
                         "torch": lambda x: x.half(), "bytes": n * 4 + n * 2},
    }


def one(name: str, case: dict[str, Any], rows: int, cols: int, cache: Path) -> dict[str, Any]:
    import torch

    import ember
    from ember import ir
    from ember.tolerance import compare

    gen = torch.Generator(device="cuda").manual_seed(0)
    dtypes = {"f16": (ir.f16, torch.float16), "f32": (ir.f32, torch.float32)}
    feeds = {k: (torch.rand(shape, device="cuda", generator=gen) * 4 - 2).to(dtypes[dt][1])
             for k, dt, shape in case["inputs"]}
    bld = ir.Builder(name)
    values = [bld.input(k, dtypes[dt][0][shape]) for k, dt, shape in case["inputs"]]
    bld.output("y", case["build"](bld, *values))
    engine = ember.compile(bld.build(), cache_dir=cache, opt_level=0)
    ctx = engine.create_context(device="cuda", stream=torch.cuda.current_stream().cuda_stream)
    want = case["torch"](*feeds.values())
    got = ctx.run(feeds)["y"]
    check = compare(got.float().cpu().numpy(), want.float().cpu().numpy(), rtol=1e-2, atol=1e-2)
    src = torch.empty(case["bytes"] // 2, device="cuda", dtype=torch.uint8)
    dst = torch.empty_like(src)
    copy_ms = loop_time(lambda: dst.copy_(src))
    ember_ms = loop_time(lambda: ctx.run(feeds))
    torch_ms = loop_time(lambda: case["torch"](*feeds.values()))
    single = cuda_time(lambda: ctx.run(feeds), warmup=5, runs=50)["median_ms"]
    ctx.close()
    rate = case["bytes"] / 1e6  # GB per ms -> GB/s at /ms
    return {"kernel": name, "shape": [rows, cols], "bytes": case["bytes"], "launches": engine.report.launches,
            "ember_ms": ember_ms, "single_ms": single, "torch_ms": torch_ms, "copy_ms": copy_ms,
            "ember_gb_s": rate / ember_ms, "torch_gb_s": rate / torch_ms, "copy_gb_s": rate / copy_ms,
            "fraction_of_copy": copy_ms / ember_ms, "torch_over_ember": torch_ms / ember_ms,
            "check": {"ok": bool(check), "max_abs_diff": check.max_abs_diff}}


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [f"# Memory-bound kernels against the copy bandwidth ({result['date']}, {result['device']})", "",
             "fp16 in and out (the cast: f32 in), one engine each; ms per run from 20 back-to-back runs "
             "(median of 15), bytes = inputs read once + output written once, copy = a device-to-device "
             "copy of those bytes in the same run. Fraction = copy time / Ember time (target >= 0.80).", "",
             "| kernel | shape | launches | Ember ms | GB/s | copy GB/s | fraction of copy | PyTorch ms | "
             "PyTorch / Ember | single run ms | check |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['kernel']} | {r['shape'][0]}x{r['shape'][1]} | {r['launches']} | {r['ember_ms']:.4f} | "
                     f"{r['ember_gb_s']:.0f} | {r['copy_gb_s']:.0f} | {r['fraction_of_copy']:.2f} | "
                     f"{r['torch_ms']:.4f} | {r['torch_over_ember']:.2f} | {r['single_ms']:.4f} | "
                     f"{'ok' if r['check']['ok'] else 'off ' + format(r['check']['max_abs_diff'], '.3g')} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    import torch
    cache = Path(tempfile.mkdtemp())
    result = {"date": date.today().isoformat(), "device": torch.cuda.get_device_name(), "rows": []}
    for rows, cols in SHAPES:
        for name, case in cases(rows, cols).items():
            result["rows"].append(one(name, case, rows, cols, cache))
            r = result["rows"][-1]
            print(f"{name} {rows}x{cols}: {r['ember_ms']:.4f} ms, {r['fraction_of_copy']:.2f} of copy, "
                  f"torch {r['torch_ms']:.4f} ms, check {r['check']['ok']}", flush=True)
    write_results("gpu_membound", result, markdown(result), args.out)


if __name__ == "__main__":
    main()
