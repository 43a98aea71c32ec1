"""Load on `ember serve` against the same engine called directly (a benchmark, not a test).

    python benchmarks/serve.py --out DIR                 (on the device: scripts/serve_bench.sh)
    python benchmarks/serve.py --out DIR --model m.onnx --seconds 5 --clients 2 --per-client 2   (smoke run)

ResNet-50 (torchvision, random weights) in fp16 is built into one engine with a batch profile
1..MAX and served by Triton (serve/). For --seconds, --clients processes each keep
--per-client batch-1 requests in flight over gRPC (tensors go as binary protobuf fields). The
benchmark records throughput, p50/p99 latency, the clients' CPU use (cores), and the batch
Triton formed (requests per execution, from its statistics). Then the engine runs directly on
numpy arrays at that batch, as the served model runs it, and the ratio of the two throughputs
is the figure. The serving configurations: one instance on GPU 0, then two instances on it
(or one per GPU where there are two).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
SHAPE = [3, 224, 224]  # one image; --image sets its size


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def client(grpc_port: int, model: str, input_name: str, seconds: float, in_flight: int, start_at: float,
           queue: Any, shape: tuple[int, ...], transport: str = "binary") -> None:
    """One client process: `in_flight` threads, each sending batch-1 requests back to back.
    transport "binary": the image in the gRPC message; "shm": each thread writes its image into
    its own system shared-memory region (registered with Triton) before each request."""
    import threading
    from multiprocessing import shared_memory

    import tritonclient.grpc as grpcclient
    rng = np.random.default_rng(os.getpid())
    x = rng.standard_normal((1, *shape)).astype(np.float32)
    latencies: list[float] = []
    failures = [0]
    first_error: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        t = grpcclient.InferInput(input_name, list(x.shape), "FP32")
        region = None
        if transport == "shm":
            region = shared_memory.SharedMemory(create=True, size=x.nbytes)
            view = np.ndarray(x.shape, x.dtype, buffer=region.buf)
            name = region.name.lstrip("/")
            c.register_system_shared_memory(name, "/" + name, x.nbytes)
            t.set_shared_memory(name, x.nbytes)
        else:
            t.set_data_from_numpy(x)
        mine: list[float] = []
        while time.monotonic() < start_at:
            time.sleep(0.001)
        end = start_at + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                if region is not None:
                    np.copyto(view, x)  # a new image each request, as a real client writes
                c.infer(model, [t])
                mine.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted, the run goes on
                with lock:
                    failures[0] += 1
                    if not first_error:
                        first_error.append(str(e)[:300])
        with lock:
            latencies.extend(mine)
        if region is not None:
            c.unregister_system_shared_memory(name)
            del view
            region.close()
            region.unlink()

    cpu0 = time.process_time()
    threads = [threading.Thread(target=worker) for _ in range(in_flight)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    queue.put({"latencies": latencies, "failures": failures[0], "cpu_s": time.process_time() - cpu0,
               "first_error": first_error[0] if first_error else None})


def load(grpc_port: int, model: str, input_name: str, seconds: float, clients: int, per_client: int,
         transport: str = "binary") -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.monotonic() + 5.0  # every process connected and waiting
    procs = [ctx.Process(target=client, args=(grpc_port, model, input_name, seconds, per_client, start_at, queue, tuple(SHAPE), transport))
             for _ in range(clients)]
    for p in procs:
        p.start()
    parts = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    latencies = sorted(x for part in parts for x in part["latencies"])
    n = len(latencies)
    return {"requests": n, "failures": sum(p["failures"] for p in parts), "seconds": seconds,
            "throughput_per_s": n / seconds,
            "p50_ms": 1e3 * latencies[n // 2] if n else None,
            "p99_ms": 1e3 * latencies[min(n - 1, int(n * 0.99))] if n else None,
            "client_cpu_cores": sum(p["cpu_s"] for p in parts) / seconds,
            "clients": clients, "in_flight": clients * per_client,
            "first_error": next((p["first_error"] for p in parts if p["first_error"]), None)}


def stats(grpc_port: int, model: str) -> dict[str, int]:
    import tritonclient.grpc as grpcclient  # the device has grpcio; the HTTP client needs gevent
    s = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}").get_inference_statistics(
        model, as_json=True)["model_stats"][0]
    i = s["inference_stats"]
    return {"requests": int(i["success"]["count"]), "executions": int(s["execution_count"]),
            **{f"{k}_ns": int(i[k]["ns"]) for k in ("queue", "compute_input", "compute_infer", "compute_output")}}


def phases(metrics_port: int, model: str) -> dict[str, float]:
    """Seconds in the served model's execute by phase (Ember's metric), summed over instances."""
    import re
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for m in re.finditer(r'ember_execute_seconds_total\{[^}]*model="([^"]+)",phase="(\w+)"\} (\S+)', text):
        if m.group(1) == model:
            out[m.group(2)] = out.get(m.group(2), 0.0) + float(m.group(3))
    for m in re.finditer(r'ember_cuda_graph_captures_total\{[^}]*model="([^"]+)"\} (\S+)', text):
        if m.group(1) == model:
            out["captures"] = out.get("captures", 0.0) + float(m.group(2))
    return out


def direct(engine_path: Path, batch: int, seconds: float, device_index: int = 0) -> dict[str, Any]:
    """The engine called directly at `batch` on numpy arrays (host in, host out: as the served model)."""
    from ember.runtime.engine import Engine
    from ember.runtime import cuda
    engine = Engine.load(engine_path)
    on_gpu = cuda.device_count() > 0
    ctx = engine.create_context("cuda" if on_gpu else "cpu", **({"device_index": device_index} if on_gpu else {}))
    feed = {engine.inputs[0].name: np.random.default_rng(0).standard_normal((batch, *SHAPE)).astype(np.float32)}
    for _ in range(10):
        ctx.run(feed)
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(times) < 20:
        t0 = time.perf_counter()
        ctx.run(feed)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"batch": batch, "median_ms": 1e3 * median, "throughput_per_s": batch / median, "runs": len(times)}


def serve_once(engine_path: Path, label: str, options: Any, gpus: tuple[int, ...] | None, args: argparse.Namespace,
               input_name: str) -> dict[str, Any]:
    from ember.serve import Ports, start_server
    http, grpc, metrics = free_ports(3)
    server, configs = start_server([engine_path], options, Ports(http, grpc, metrics, "127.0.0.1"), gpus=gpus,
                                   timeout_s=300)
    model = configs[0].name
    try:
        # warm-up: every batch size the server may form runs once before timing
        load(grpc, model, input_name, 3.0, args.clients, args.per_client, args.transport)
        before = stats(grpc, model)
        phases_before = phases(metrics, model)
        result = load(grpc, model, input_name, args.seconds, args.clients, args.per_client, args.transport)
        after = stats(grpc, model)
        phases_after = phases(metrics, model)
    finally:
        server.stop()
    executions = max(after["executions"] - before["executions"], 1)
    result["executions"] = executions
    result["mean_batch"] = (after["requests"] - before["requests"]) / executions
    result["config"] = label
    requests = max(after["requests"] - before["requests"], 1)
    # Triton adds a batch's compute time to each of its requests: the sums over requests are
    # per-execution times (queue time is each request's own)
    result["server_ms"] = {k[:-3]: (after[k] - before[k]) / requests / 1e6 for k in after if k.endswith("_ns")}
    result["transport"] = args.transport
    result["execute_ms"] = {k: 1e3 * (phases_after.get(k, 0.0) - phases_before.get(k, 0.0)) / executions
                            for k in ("inputs", "stack", "engine", "responses")}
    result["graph_captures"] = phases_after.get("captures", 0.0) - phases_before.get("captures", 0.0)
    return result


def build(model: Path, out: Path, max_batch: int) -> Path:
    import ember
    module = ember.load(model)
    name = module.main.input_names[0]
    engine = ember.compile(module, precision="fp16", opt_level=0,
                           profiles=[{name: ((1, *SHAPE), (max_batch // 2, *SHAPE), (max_batch, *SHAPE))}])
    path = out / "resnet50_fp16.engine"
    engine.save(path)
    return path


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [f"# ember serve under load: {result['model']} ({result['device']}, {result['date']})", "",
             f"{result['clients']} client processes x {result['per_client']} requests in flight (batch 1, gRPC, "
             f"images {'in system shared memory' if result['transport'] == 'shm' else 'in the messages'}), "
             f"{result['seconds']} s per configuration; direct = the same engine on numpy arrays at the batch the "
             "server formed (host in, host out, as the served model runs it).", "",
             "| configuration | req/s | p50 ms | p99 ms | mean batch | client CPU (cores) | direct req/s at that batch "
             "| serve / direct | failures |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        if "error" in r or not r.get("requests"):
            lines.append(f"| {r.get('config', '?')} | error: {(r.get('error') or r.get('first_error') or '')[:200]} |")
            continue
        d = r.get("direct", {})
        ratio = r["throughput_per_s"] / d["throughput_per_s"] if d.get("throughput_per_s") else None
        lines.append(f"| {r['config']} | {r['throughput_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['mean_batch']:.1f} | {r['client_cpu_cores']:.2f} | "
                     f"{d.get('throughput_per_s', float('nan')):.0f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}'} | {r['failures']} |")
    lines += ["", "Triton's split of an execution, from its statistics (ms; compute_input: the requests' inputs "
              "into the model, compute_infer: the model's execute, compute_output: the responses; queue: "
              "a request's wait), against the engine's own time at that batch:", ""]
    for r in result["runs"]:
        if r.get("server_ms"):
            parts = ", ".join(f"{k} {v:.2f}" for k, v in r["server_ms"].items())
            d = r.get("direct", {})
            inside = ", ".join(f"{k} {v:.2f}" for k, v in r.get("execute_ms", {}).items())
            lines.append(f"- {r['config']}: {parts}; inside execute: {inside or 'n/a'}; CUDA graphs captured while "
                         f"timed: {r.get('graph_captures', 'n/a')}; the engine directly at batch {d.get('batch')}: "
                         f"{d.get('median_ms', float('nan')):.2f}")
    lines += ["", f"GPUs seen: {result['gpus']}. " + result.get("note", "")]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="/tmp/resnet50.onnx", help="ONNX model (exported from torchvision if absent)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--transport", choices=["binary", "shm"], default="binary",
                        help="images in the gRPC messages, or in system shared memory")
    parser.add_argument("--image", type=int, default=224, help="image height and width (the model's)")
    args = parser.parse_args()
    SHAPE[1:] = [args.image, args.image]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model)
    if not model.exists():
        sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
        from export_models import export
        exported, _ = export("resnet50", False, model.parent)
        exported.rename(model)
    from ember.runtime import cuda
    from ember.serve import ServeOptions, visible_gpus
    gpus = visible_gpus()
    info = cuda.device_info(0) or {}
    t0 = time.time()
    engine_path = build(model, out, args.max_batch)
    result: dict[str, Any] = {"device": info.get("name", "no GPU"), "date": date.today().isoformat(),
                              "model": "ResNet-50 fp16 (torchvision, random weights)", "gpus": len(gpus),
                              "transport": args.transport, "clients": args.clients, "per_client": args.per_client, "seconds": args.seconds,
                              "build_s": round(time.time() - t0, 1), "runs": []}
    print("built", engine_path, result["build_s"], "s", flush=True)
    from ember.runtime.engine import Engine
    input_name = Engine.load(engine_path).inputs[0].name
    where = "GPU 0" if gpus else "host arena"
    configs = [(f"1 instance, {where}", ServeOptions(max_batch=args.max_batch, max_queue_delay_us=args.queue_delay_us,
                                                  instances_per_gpu=1), gpus[:1] or None)]
    if len(gpus) >= 2:
        configs.append((f"1 instance per GPU, {len(gpus)} GPUs", ServeOptions(
            max_batch=args.max_batch, max_queue_delay_us=args.queue_delay_us, instances_per_gpu=1), gpus))
    else:
        result["note"] = "One GPU was lent: two instances on one GPU stand in for two GPUs."
        configs.append((f"2 instances, {where}", ServeOptions(max_batch=args.max_batch,
                                                           max_queue_delay_us=args.queue_delay_us,
                                                           instances_per_gpu=2), gpus[:1] or None))
    for label, options, on in configs:
        try:
            r = serve_once(engine_path, label, options, tuple(on) if on else None, args, input_name)
            r["direct"] = direct(engine_path, max(1, round(r["mean_batch"])), 5.0)
            if on and len(on) > 1:  # the same batch on every GPU at once is the direct figure to match
                r["direct"]["throughput_per_s"] *= len(on)
        except Exception as err:  # noqa: BLE001 - report every configuration
            r = {"config": label, "error": f"{type(err).__name__}: {err}"[:2000]}
        result["runs"].append(r)
        print(json.dumps(r)[:600], flush=True)
    text = json.dumps(result, indent=1)
    lines = markdown(result)
    for folder in (out, RESULTS):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stem = "serve" if args.transport == "binary" else f"serve_{args.transport}"
            (folder / f"{stem}.json").write_text(text + "\n")
            (folder / f"{stem}.md").write_text("\n".join(lines) + "\n")
        except OSError:
            pass
    print("\n".join(lines))


if __name__ == "__main__":
    main()
