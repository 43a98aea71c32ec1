"""`ember serve` on a GPU: instances on the device (KIND_GPU), called over gRPC only (the device
has grpcio but not the HTTP client's gevent). Requests of several batch sizes sent together are
batched, each answer is judged against the engine run directly on the GPU by the project's
tolerance rule, and the CUDA graphs are replayed, not captured on every execution."""

from __future__ import annotations

import re
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serving import bert_feed, grpc_inputs, loopback_ports

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"


@pytest.mark.gpu
def test_served_on_the_gpu_matches_the_engine(tmp_path, kernel_cache):
    import tritonclient.grpc as grpcclient

    import ember
    from ember.serve import ServeOptions, start_server
    from ember.tolerance import compare

    module = ember.load(FIXTURES / "bert_small.onnx")
    profile = {"input_ids": ((1, 4), (4, 16), (8, 64)), "attention_mask": ((1, 4), (4, 16), (8, 64))}
    engine = ember.compile(module, profiles=[profile], cache_dir=kernel_cache)
    path = tmp_path / "bert_small.engine"
    engine.save(path)
    server, configs = start_server([path], ServeOptions(max_batch=8, max_queue_delay_us=20_000, instances_per_gpu=2),
                                   loopback_ports(), timeout_s=300)
    try:
        assert configs[0].options.kind == "gpu"
        feeds = {i: bert_feed(1 + i % 3, 12, 50 + i) for i in range(12)}
        results: dict[int, np.ndarray] = {}
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(feeds))

        def send(i: int) -> None:
            try:
                client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.ports.grpc}")
                barrier.wait(timeout=60)
                results[i] = client.infer("bert_small", grpc_inputs(feeds[i]), client_timeout=120).as_numpy("hidden")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=send, args=(i,)) for i in feeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert not errors, errors
        for i, got in results.items():
            want = np.asarray(engine.run(feeds[i], device="cuda")["hidden"])
            verdict = compare(got, want)
            assert verdict.ok, (i, verdict)
        stats = grpcclient.InferenceServerClient(f"127.0.0.1:{server.ports.grpc}").get_inference_statistics(
            "bert_small", as_json=True)["model_stats"][0]
        assert int(stats["execution_count"]) < len(feeds)
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.ports.metrics}/metrics", timeout=10).read().decode()
        replays = sum(float(v) for v in re.findall(r'ember_cuda_graph_replays_total\{[^}]*\} (\S+)', text))
        assert replays > 0, text
    finally:
        server.stop()
