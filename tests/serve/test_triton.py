"""`ember serve` end to end: Triton (as PyTriton ships it) serving a bundled engine on the host
arena, called with tritonclient over HTTP and gRPC on loopback. Every answer is compared with
the engine run directly; request counts and waits are bounded."""

from __future__ import annotations

import re
import threading
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serving import LazyModule, bert_feed, grpc_inputs, http_inputs, loopback_ports
from tritonclient.utils import InferenceServerException

httpclient = LazyModule("tritonclient.http")  # (the device has no gevent: see serving.py)

MODEL = "bert_small"


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)  # the same engine on the same arena: bit for bit


def test_http_and_grpc_answers_match_the_engine(served, reference):
    server = served
    http = httpclient.InferenceServerClient(server.url)
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.ports.grpc}")
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready(MODEL)
    assert http.get_model_repository_index() == [{"name": MODEL, "version": "1", "state": "READY"}]
    assert http.get_model_config(MODEL)["max_batch_size"] == 8
    meta = http.get_model_metadata(MODEL)
    assert {i["name"]: i["shape"] for i in meta["inputs"]} == {"input_ids": [-1, -1], "attention_mask": [-1, -1]}
    for batch, seq, seed in [(1, 4, 1), (3, 17, 2), (8, 64, 3)]:
        feed = bert_feed(batch, seq, seed)
        want = reference(feed)["hidden"]
        assert_same(http.infer(MODEL, http_inputs(feed)).as_numpy("hidden"), want)
        assert_same(grpc.infer(MODEL, grpc_inputs(feed)).as_numpy("hidden"), want)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(served, reference):
    server = served
    before = _stats(server)
    threads, requests_per_thread = 8, 4
    results: dict[tuple[int, int], np.ndarray] = {}
    feeds = {(t, k): bert_feed(1 + (t + k) % 2, 12, 100 * t + k) for t in range(threads) for k in range(requests_per_thread)}
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def client(t: int) -> None:
        try:
            c = httpclient.InferenceServerClient(server.url, connection_timeout=60, network_timeout=60)
            barrier.wait(timeout=60)
            pending = [(k, c.async_infer(MODEL, http_inputs(feeds[(t, k)]))) for k in range(requests_per_thread)]
            for k, p in pending:
                results[(t, k)] = p.get_result(timeout=60).as_numpy("hidden")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    assert len(results) == threads * requests_per_thread
    for key, got in results.items():
        assert_same(got, reference(feeds[key])["hidden"])
    after = _stats(server)
    requests = after["requests"] - before["requests"]
    executions = after["executions"] - before["executions"]
    # Triton may count the previous test's last request after it answered it: at least ours
    assert requests >= threads * requests_per_thread
    assert executions < threads * requests_per_thread, f"{requests} requests ran as {executions} executions: " \
                                                       "nothing was batched"


def _stats(server) -> dict[str, int]:
    c = httpclient.InferenceServerClient(server.url)
    s = c.get_inference_statistics(MODEL)["model_stats"][0]
    return {"requests": int(s["inference_stats"]["success"]["count"]), "executions": int(s["execution_count"])}


@pytest.mark.parametrize("case", ["dtype", "name", "rank", "batch", "sequence"])
def test_a_bad_request_gets_a_400_naming_the_problem_and_the_next_one_is_served(served, reference, case):
    server = served
    http = httpclient.InferenceServerClient(server.url)
    feed = bert_feed(1, 8, 7)
    inputs = http_inputs(feed)
    expected = {"dtype": "FP32", "name": "input_idz", "rank": "unexpected shape", "batch": "batch-size must be <= 8",
                "sequence": "sequence"}[case]
    if case == "dtype":
        inputs[0] = httpclient.InferInput("input_ids", [1, 8], "FP32")
        inputs[0].set_data_from_numpy(feed["input_ids"].astype(np.float32))
    elif case == "name":
        inputs[0] = httpclient.InferInput("input_idz", [1, 8], "INT64")
        inputs[0].set_data_from_numpy(feed["input_ids"])
    elif case == "rank":
        inputs = http_inputs({k: v.reshape(1, 1, 8) for k, v in feed.items()})
    elif case == "batch":
        inputs = http_inputs(bert_feed(9, 8, 7))
    else:  # a sequence length outside the profile: Triton passes it (-1), the engine refuses it
        inputs = http_inputs(bert_feed(1, 100, 7))
    with pytest.raises(InferenceServerException) as err:
        http.infer(MODEL, inputs)
    assert err.value.status() == "400", (err.value.status(), err.value.message())
    assert expected in err.value.message()
    good = http.infer(MODEL, http_inputs(feed)).as_numpy("hidden")
    assert_same(good, reference(feed)["hidden"])


def test_metrics_show_the_counts_and_embers_own(served):
    server = served
    http = httpclient.InferenceServerClient(server.url)
    feed = bert_feed(2, 6, 11)
    http.infer(MODEL, http_inputs(feed))
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.ports.metrics}/metrics", timeout=10).read().decode()
    success = _metric(text, "nv_inference_request_success", MODEL)
    assert success >= 1
    assert _metric(text, "nv_inference_request_failure", MODEL) >= 0
    assert re.search(r'ember_engine_info\{build_id="[0-9a-f]{16}",instance="bert_small_0_0",model="bert_small",'
                     r'precision="fp32"\} 1', text), text
    assert _metric(text, "ember_engine_calls_total", MODEL) >= 1
    assert _metric(text, "ember_arena_bytes", MODEL) > 0
    assert "ember_cuda_graph_replays_total" in text and "ember_cuda_graph_captures_total" in text
    phases = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'ember_execute_seconds_total\{instance="bert_small_0_\d",model="bert_small",phase="(\w+)"\} (\S+)', text)}
    assert set(phases) == {"inputs", "stack", "engine", "responses"} and phases["engine"] > 0, phases
    assert "nv_inference_queue_duration_us" in text and "nv_inference_compute_infer_duration_us" in text


def _metric(text: str, name: str, model: str) -> float:
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"{name} for {model} not in /metrics"
    return total


def test_a_full_queue_refuses_with_503_and_serving_goes_on(bert_engine, reference):
    from ember.serve import ServeOptions, start_server
    options = ServeOptions(max_batch=1, max_queue_delay_us=0, max_queue_size=1, instances_per_gpu=1)
    server, _ = start_server([bert_engine], options, loopback_ports(), gpus=None, timeout_s=180)
    try:
        feed = bert_feed(1, 64, 5)
        statuses: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            c = httpclient.InferenceServerClient(server.url, network_timeout=60)
            try:
                c.infer(MODEL, http_inputs(feed))
                status = "200"
            except InferenceServerException as e:
                status = f"{e.status()} {e.message()}"
            with lock:
                statuses.append(status)

        workers = [threading.Thread(target=client) for _ in range(24)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        refused = [s for s in statuses if not s.startswith("200")]
        assert len(statuses) == 24 and refused and len(refused) < 24, statuses
        assert all(s.startswith("503") and "queue" in s for s in refused), refused
        c = httpclient.InferenceServerClient(server.url)
        assert_same(c.infer(MODEL, http_inputs(feed)).as_numpy("hidden"), reference(feed)["hidden"])
    finally:
        server.stop()
