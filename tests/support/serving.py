"""Helpers for the serving tests (tests/serve): free loopback ports, bert_small's inputs, and
those inputs as tritonclient request tensors (INT64, binary)."""

from __future__ import annotations

import socket

import numpy as np


def free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def loopback_ports():
    from ember.serve import Ports
    http, grpc, metrics = free_ports(3)
    return Ports(http, grpc, metrics, "127.0.0.1")


def bert_feed(batch: int, sequence: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 100, size=(batch, sequence)).astype(np.int64)
    mask = (rng.random((batch, sequence)) < 0.9).astype(np.int64)
    mask[:, 0] = 1
    return {"input_ids": ids, "attention_mask": mask}


def http_inputs(feed):
    import tritonclient.http  # here, not at the top: the device has no gevent for the HTTP client
    out = []
    for name, value in feed.items():
        t = tritonclient.http.InferInput(name, list(value.shape), "INT64")
        t.set_data_from_numpy(value, binary_data=True)
        out.append(t)
    return out


def grpc_inputs(feed):
    import tritonclient.grpc
    out = []
    for name, value in feed.items():
        t = tritonclient.grpc.InferInput(name, list(value.shape), "INT64")
        t.set_data_from_numpy(value)
        out.append(t)
    return out


class LazyModule:
    """A module imported on first use: the CPU serving tests name tritonclient.http at the top,
    and the device has no gevent for it, so `-m gpu` runs collect these files without it."""

    def __init__(self, name: str) -> None:
        self._name, self._module = name, None

    def __getattr__(self, attr: str):
        if self._module is None:
            import importlib
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

