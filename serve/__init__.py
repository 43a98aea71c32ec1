"""Serving Ember engines on NVIDIA Triton Inference Server (`ember serve`, `ember export-triton`).

Ember has no server of its own: each engine becomes a Triton model (serve/model_config.py, the
configuration; serve/triton_model.py, the Python-backend model; serve/repository.py, the model
repository) and Triton does the rest: HTTP and gRPC (KServe v2), dynamic batching, queue bounds,
instances per GPU, Prometheus metrics. `serve/server.py` runs the tritonserver that the
`nvidia-pytriton` package ships. This package imports the runtime and ir only: serving needs no compiler.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ember.serve.model_config import ModelConfig, ServeError, ServeOptions, model_config
from ember.serve.repository import export_repository
from ember.serve.server import Ports, TritonServer, find_triton


def visible_gpus() -> tuple[int, ...]:
    """The GPUs this process sees (none without a driver): one model instance group spans them."""
    from ember.runtime import cuda
    return tuple(range(cuda.device_count()))


def serving_options(options: ServeOptions, gpus: Sequence[int] | None) -> ServeOptions:
    """`options` with the GPUs to run on: those asked for (checked), else every visible one, else none."""
    seen = visible_gpus()
    if gpus:
        missing = [g for g in gpus if g not in seen]
        if missing:
            raise ServeError(f"--gpus {','.join(map(str, gpus))}: GPU {missing[0]} is not visible here "
                             f"({len(seen)} GPU(s) seen)")
        return replace(options, kind="gpu", gpus=tuple(gpus))
    return replace(options, kind="gpu", gpus=seen) if seen else replace(options, kind="cpu", gpus=None)


def start_server(engines: Sequence[str | Path], options: ServeOptions = ServeOptions(), ports: Ports = Ports(), *,
                 gpus: Sequence[int] | None = None, log: str | Path | None = None, verbose: bool = False,
                 timeout_s: float = 120.0) -> tuple[TritonServer, list[ModelConfig]]:
    """Start Triton serving `engines` (one model each, named after the file) and wait until every
    model is ready. The repository is a temporary folder that links to the engine files."""
    find_triton()  # a missing server is named before any engine is loaded
    options = serving_options(options, gpus)
    options = replace(options, parameters={**options.parameters, "ember_sys_path": json.dumps(sys.path)})
    root = Path(tempfile.mkdtemp(prefix="ember-serve-"))
    try:
        configs = export_repository(engines, root / "models", options, link=True)
        server = TritonServer(root / "models", ports, log=log, verbose=verbose, owns=root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    server.start(timeout_s)
    return server, configs


__all__ = ["ServeError", "ServeOptions", "Ports", "TritonServer", "ModelConfig", "model_config", "export_repository",
           "start_server", "find_triton", "visible_gpus"]
