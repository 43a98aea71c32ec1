"""`ember bench`: an engine's latency and throughput, as trtexec reports them.

One execution context runs the engine on inputs uploaded to the device once (so no
host-to-device copy is timed), first a cold run (binding the program at the shape,
planning, capturing CUDA graphs: reported apart), then `warmup` runs, then `iterations`
timed runs. Each timed run gives two figures: the latency, host wall clock from the call
until the stream has finished (what a caller waits), and the GPU time, CUDA events
recorded on the context's stream around the run (what the kernels take). Their medians'
difference is the host overhead per run. Throughput is runs per second from the mean
latency, and samples per second where every input has the same leading (batch) dim.

On the host arena (`device="cpu"`) the same loop times the reference ops at the planned
offsets: a check of the plumbing, not a figure for the GPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from ember.errors import EmberError

PERCENTILES = {"min": 0.0, "median": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}


@dataclass(frozen=True)
class Stats:
    """Milliseconds over the timed runs."""

    min: float
    mean: float
    median: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, ms: list[float]) -> "Stats":
        a = np.asarray(ms, dtype=np.float64)
        q = {k: float(np.percentile(a, p)) for k, p in PERCENTILES.items()}
        return cls(q["min"], float(a.mean()), q["median"], q["p90"], q["p99"], q["max"])


@dataclass
class BenchReport:
    device: str                      # "cuda:0 (NVIDIA H100 80GB HBM3)" or "host arena"
    shapes: dict[str, list[int]]
    iterations: int
    warmup: int
    latency: Stats                   # host wall clock per run, until the stream finished
    gpu: Stats                       # CUDA events around each run (host: the wall clock again)
    first_run_ms: float              # the cold run: binding, planning, graph capture
    host_overhead_ms: float          # median latency - median GPU time
    throughput_qps: float            # runs per second, from the mean latency
    samples_per_s: float | None      # x the batch, where the inputs share a leading dim
    precision: str = ""
    build_s: float | None = None
    launches: int = 0
    host_steps: int = 0
    tactics: dict[str, int] = field(default_factory=dict)   # chosen tactic -> heavy launches
    layers: list[dict[str, Any]] | None = None   # --layer-times: per launch step, the slowest first
    kernel_ms: dict[str, float] | None = None     # --layer-times: per kernel, ms per run
    layer_runs: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)


def _batch(feeds: Mapping[str, np.ndarray]) -> int | None:
    leading = {np.shape(v)[0] for v in feeds.values() if np.ndim(v) >= 1}
    return leading.pop() if len(leading) == 1 else None


def describe_engine(engine: Any) -> dict[str, Any]:
    """What the report says of the engine: its precision, launches, host steps, tactics."""
    from ember.ir.program import LaunchStep
    launches = [s for s in engine.steps if isinstance(s, LaunchStep)]
    tactics: dict[str, int] = {}
    for s in launches:
        if s.tactic is not None:
            tactics[s.tactic] = tactics.get(s.tactic, 0) + 1
    info = getattr(engine, "info", None)
    precision = str(info.get("precision", "")) if isinstance(info, dict) else ""
    return {"precision": precision, "launches": len(launches), "host_steps": engine.host_steps,
            "tactics": dict(sorted(tactics.items(), key=lambda kv: -kv[1]))}


def _dims(v: Any, env: Mapping[str, int]) -> list[int]:
    from ember.ir.dims import evaluate
    return [evaluate(d, env) for d in v.type.shape]


def op_flops(op: Any, env: Mapping[str, int]) -> int:
    """Multiply-adds x 2 of one heavy op at the symbols' values `env` (0 for any other op):
    matmul/gemm (and int8_matmul, fp8_matmul) as 2 M N K per batch, einsum as 2 x the product of
    its labels' sizes, conv (and int8_conv, fp8_conv) as 2 x output elements x the filter's (input
    channels per group x kernel) taps, conv_transpose as 2 x input elements x the filter's taps,
    attention as 2 Sq Skv (D + Dv) per batch and head."""
    name = op.name
    if name == "ember.einsum":
        from ember.ir.ops.linalg import parse_equation
        terms, _ = parse_equation(op, op.attributes["equation"], len(op.operands))
        sizes: dict[str, int] = {}
        for term, v in zip(terms, op.operands):
            dims = _dims(v, env)
            if len(term) != len(dims):   # an ellipsis: count the batch dims it stands for
                return 2 * int(np.prod(_dims(op.results[0], env))) * dims[-1]
            for label, d in zip(term, dims):
                sizes[label] = max(sizes.get(label, 1), d)
        return 2 * int(np.prod(list(sizes.values())))   # every label once: output and contracted
    if name in ("ember.matmul", "ember.gemm", "ember.int8_matmul", "ember.fp8_matmul"):
        a = _dims(op.operands[0], env)
        k = a[0] if name == "ember.gemm" and op.attributes.get("trans_a") else a[-1]
        return 2 * int(np.prod(_dims(op.results[0], env))) * k
    if name in ("ember.conv", "ember.int8_conv", "ember.fp8_conv"):
        w = _dims(op.operands[1], env)
        layout = op.attributes.get("weight_layout") or "OIHW"
        taps = int(np.prod(w)) // w[layout.index("O")]
        return 2 * int(np.prod(_dims(op.results[0], env))) * taps
    if name == "ember.conv_transpose":
        w = _dims(op.operands[1], env)
        return 2 * int(np.prod(_dims(op.operands[0], env))) * int(np.prod(w[1:]))
    if name == "ember.attention":
        b, h, sq, d = _dims(op.operands[0], env)
        skv, dv = _dims(op.operands[1], env)[2], _dims(op.operands[2], env)[3]
        return 2 * b * h * sq * skv * (d + dv)
    return 0


def model_flops(module: Any, env: Mapping[str, int]) -> int:
    """The heavy ops' FLOPs of a module's entry function (inside fused regions too) at `env`."""
    return sum(op_flops(op, env) for op in module.main.body.walk())


def _step_bytes(b: Any, step: Any) -> int | None:
    """The bytes a bound step reads and writes (None where a size is known only at run time)."""
    nbytes: int | None = 0
    for vid in (*step.reads, *step.writes):
        n = b.values[int(vid)].nbytes
        nbytes = None if nbytes is None or n is None else nbytes + int(n)
    return nbytes


def roofline(engine: Any, shapes: Mapping[str, Any]) -> dict[str, Any]:
    """What bounds the engine at `shapes`: its heavy ops' FLOPs and the bytes its launches read
    and write (weights included), for a roofline against a device's measured rates."""
    b = engine.bind({k: tuple(v) for k, v in shapes.items()})
    traffic = [_step_bytes(b, s) for s in b.steps if s.kind == "launch"]
    return {"flops": model_flops(engine.module, dict(b.env)),
            "bytes": None if any(n is None for n in traffic) else sum(int(n) for n in traffic)}


def layer_table(engine: Any, shapes: Mapping[str, Any], per_step: Mapping[int, float]) -> list[dict[str, Any]]:
    """Each timed launch step at the run's shapes: its kernel, source ops, ms per run, share of the
    layers' total, bytes it reads and writes (weights included) and the bandwidth that makes."""
    b = engine.bind({k: tuple(v) for k, v in shapes.items()})
    ops = engine.ops
    total = sum(per_step.values()) or 1.0
    rows = []
    for t, ms in per_step.items():
        step = b.steps[t]
        nbytes = _step_bytes(b, step)
        sources = [f"{ops[i].name} @ {', '.join(ops[i].loc.names)}" if ops[i].loc.names else ops[i].name
                   for i in step.ops]
        rows.append({"step": t, "kernel": step.kernel, "ops": sources, "tactic": step.tactic, "ms": ms,
                     "share": ms / total, "bytes": nbytes,
                     "gb_per_s": (nbytes / (ms * 1e6)) if nbytes and ms > 0 else None})
    return sorted(rows, key=lambda r: -r["ms"])


def bench(engine: Any, feeds: Mapping[str, np.ndarray], *, device: str = "cuda", iterations: int = 100,
          warmup: int = 10, device_index: int = 0, build_s: float | None = None,
          layer_runs: int = 0) -> BenchReport:
    """Time `engine` on `feeds` (see the module docstring); with `layer_runs`, that many more runs
    time each launch on its own (runtime/profiling.py: no CUDA graphs)."""
    if iterations < 1 or warmup < 0:
        raise EmberError(f"iterations {iterations} and warmup {warmup}: at least 1 timed run, warm-up >= 0")
    device = engine.pick_device(device)
    ctx = engine.create_context(device, device_index=device_index) if device == "cuda" else \
        engine.create_context(device)
    inputs = {k: ctx.upload(v) for k, v in feeds.items()}
    start = time.perf_counter()
    ctx.run(inputs)
    ctx.synchronize()
    first = (time.perf_counter() - start) * 1000.0
    for _ in range(warmup):
        ctx.run(inputs)
    ctx.synchronize()
    wall, gpu = [], []
    timer = ctx.timer()
    for _ in range(iterations):
        start = time.perf_counter()
        timer.start()
        ctx.run(inputs)
        timer.stop()
        ctx.synchronize()
        wall.append((time.perf_counter() - start) * 1000.0)
        gpu.append(timer.elapsed_ms())
    layers = kernel_ms = None
    if layer_runs:
        from ember.runtime.profiling import LayerTimes
        ctx.layer_times = profile = LayerTimes()
        for _ in range(layer_runs):
            ctx.run(inputs)
            ctx.synchronize()
        ctx.layer_times = None
        kernel_ms = profile.per_kernel()
        layers = layer_table(engine, {k: np.shape(v) for k, v in feeds.items()}, profile.per_step())
    latency, gpu_stats = Stats.of(wall), Stats.of(gpu)
    qps = 1000.0 / latency.mean
    batch = _batch(feeds)
    if device == "cuda":
        from ember.runtime import cuda
        info = cuda.device_info(device_index) or {}
        where = f"cuda:{device_index} ({info.get('name', 'GPU')}, {info.get('arch', '')})"
    else:
        where = "host arena"
    return BenchReport(where, {k: list(np.shape(v)) for k, v in feeds.items()}, iterations, warmup, latency,
                       gpu_stats, first, max(latency.median - gpu_stats.median, 0.0), qps,
                       qps * batch if batch else None, build_s=build_s, layers=layers, kernel_ms=kernel_ms,
                       layer_runs=layer_runs, **describe_engine(engine))


__all__ = ["BenchReport", "Stats", "bench", "describe_engine", "layer_table"]
