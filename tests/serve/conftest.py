"""A bundled model built into an engine for a range of shapes, and Triton serving it on loopback.

The engine: bert_small with one profile, batch 1..8 and sequence 4..64 (both inputs), so Triton
batches requests along the batch dim and a sequence length outside 4..64 reaches the engine
(Triton sees -1 there) and is refused by it. The server runs the engine on the host arena, as
on any machine without a GPU. Every port is on 127.0.0.1, chosen free at start.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from serving import loopback_ports

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
PROFILE = "input_ids:1x4:2x16:8x64,attention_mask:1x4:2x16:8x64"


@pytest.fixture(scope="session")
def bert_engine(kernel_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ember.cli import main
    path = tmp_path_factory.mktemp("serve") / "bert_small.engine"
    assert main(["-q", "compile", str(FIXTURES / "bert_small.onnx"), "-o", str(path), "--target", "sm_80",
                 "--cache-dir", str(kernel_cache), "--profile", PROFILE]) == 0
    return path


@pytest.fixture(scope="session")
def reference(bert_engine: Path):
    """The engine run directly on the host arena: what every served answer must equal."""
    from ember.runtime.engine import Engine
    engine = Engine.load(bert_engine)
    return lambda feed: engine.run(feed, device="cpu")


@dataclass
class Served:
    url: str          # host:port of HTTP
    ports: object     # ember.serve.Ports
    process: subprocess.Popen


@pytest.fixture(scope="module")
def served(bert_engine: Path):
    """`ember serve` (the command, in a child process) over the engine: max batch 8, a 20 ms queue
    delay (so that requests sent together are batched even on a busy 2-core machine), two
    instances. Stopping it with SIGINT must end it, and its server, with status 0."""
    ports = loopback_ports()
    command = [sys.executable, "-m", "ember", "serve", str(bert_engine), "--address", "127.0.0.1",
               "--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics),
               "--max-batch", "8", "--max-queue-delay-us", "20000", "--instances-per-gpu", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = Served(f"127.0.0.1:{ports.http}", ports, process)
    try:
        _wait_ready(served)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"ember serve did not stop on SIGINT within 60 s:\n{output}")
    assert process.returncode == 0, output
    assert "model bert_small: dynamic batching up to 8" in output, output


def _wait_ready(served: Served, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            pytest.fail(f"ember serve exited with {served.process.returncode}:\n{served.process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://{served.url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    served.process.kill()
    pytest.fail(f"ember serve was not ready within {timeout_s} s:\n{served.process.communicate()[0]}")
