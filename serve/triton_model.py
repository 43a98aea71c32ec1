"""The Triton Python-backend model that serves one Ember engine (copied into a model
repository as `<model>/1/model.py`; `ember serve` and `ember export-triton` write the same file).

Triton runs each model instance in its own stub process; this file is its entry point. Why the
details are as they are:
- Tensors cross between the stub and Ember through DLPack, never through the stub's numpy glue:
  the stub PyTriton 0.7.0 bundles was built against numpy 1.x, and an output handed over as a
  numpy 2 array reaches Triton with no bytes ("output tensor shape does not match size").
- Each instance opens the engine file (memory-mapped: pages of weights are shared by the page
  cache across the instances on one machine) and makes one execution context on its device,
  with its own arena and stream.
- Ember's own metrics go to Triton's /metrics through the backend's custom-metric API, labelled
  by model and instance: the engine's build id, the arena size, engine calls and CUDA graph replays.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

import triton_python_backend_utils as pb_utils  # provided by the stub


def _quiet_consumed_capsules(hook=sys.unraisablehook):
    """The stub renames a DLPack capsule it consumed "used_dlpack" where DLPack says "used_dltensor",
    so numpy's capsule destructor, not recognising it, reports "PyCapsule_GetPointer called with
    incorrect name" for every output (and rightly frees nothing: the stub calls the deleter).
    Drop exactly that report; anything else still reaches the log."""
    def quiet(unraisable):
        if isinstance(unraisable.exc_value, ValueError) and "PyCapsule_GetPointer called with incorrect name" in str(
                unraisable.exc_value):
            return
        hook(unraisable)
    sys.unraisablehook = quiet


def _import_ember(parameters: dict) -> None:
    """Make `ember` importable: the serving process passes its own sys.path (ember serve)."""
    try:
        import ember  # noqa: F401
    except ImportError:
        extra = json.loads(parameters.get("ember_sys_path", {}).get("string_value", "[]") or "[]")
        sys.path.extend(p for p in extra if p not in sys.path)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        _quiet_consumed_capsules()
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        _import_ember(parameters)
        from ember.runtime.engine import Engine
        from ember.runtime.specs import EngineInputError
        from ember.serve.batching import Stacker, run_batched

        self._run_batched = run_batched
        self._stack = Stacker()
        self._input_error = EngineInputError
        name = config["name"]
        engine_file = parameters["ember_engine"]["string_value"]
        path = os.path.join(args["model_repository"], args["model_version"], engine_file)
        self.engine = Engine.load(path)
        gpu = args.get("model_instance_kind") == "GPU"
        device_index = int(args.get("model_instance_device_id", 0) or 0)
        max_batch = int(config.get("max_batch_size", 0))
        # The dynamic batcher forms every batch size up to max_batch: keep a CUDA graph for each, or
        # a context's default of 8 shapes is recaptured on most executions.
        gpu_options = {"device_index": device_index, "graph_cache": max(8, max_batch)}
        self.ctx = self.engine.create_context("cuda" if gpu else "cpu", **(gpu_options if gpu else {}))
        self.batched = max_batch > 0
        self.input_names = [t.name for t in self.engine.inputs]
        self.output_types = {t["name"]: t["data_type"] for t in config.get("output", [])}
        instance = args.get("model_instance_name", name)
        labels = {"model": name, "instance": instance}
        build_id = parameters.get("ember_build_id", {}).get("string_value", "")
        # the families must outlive their metrics: keep both
        self._families = [
            pb_utils.MetricFamily(name="ember_engine_info", description="Ember engine served (value 1), by build id",
                                  kind=pb_utils.MetricFamily.GAUGE),
            pb_utils.MetricFamily(name="ember_arena_bytes", description="Activation arena of the execution context",
                                  kind=pb_utils.MetricFamily.GAUGE),
            pb_utils.MetricFamily(name="ember_engine_calls_total", description="Engine runs (one per batch formed)",
                                  kind=pb_utils.MetricFamily.COUNTER),
            pb_utils.MetricFamily(name="ember_cuda_graph_replays_total",
                                  description="Engine segments replayed as CUDA graphs",
                                  kind=pb_utils.MetricFamily.COUNTER),
            pb_utils.MetricFamily(name="ember_cuda_graph_captures_total",
                                  description="CUDA graphs captured (a new shape, or one evicted from the cache)",
                                  kind=pb_utils.MetricFamily.COUNTER),
            pb_utils.MetricFamily(name="ember_execute_seconds_total",
                                  description="Time in the model's execute, by phase: inputs (tensors out of the "
                                              "requests), stack (requests joined into batches), engine (engine runs), "
                                              "responses",
                                  kind=pb_utils.MetricFamily.COUNTER),
        ]
        info, arena, calls, replays, captures, seconds = self._families
        self._info = info.Metric(labels={**labels, "build_id": build_id,
                                         "precision": str(self.engine.info.get("precision", ""))})
        self._info.set(1)
        self._arena = arena.Metric(labels=labels)
        self._calls = calls.Metric(labels=labels)
        self._replays = replays.Metric(labels=labels)
        self._captures = captures.Metric(labels=labels)
        self._phases = {phase: seconds.Metric(labels={**labels, "phase": phase})
                        for phase in ("inputs", "stack", "engine", "responses")}
        self._phase_s = dict.fromkeys(self._phases, 0.0)
        self._graph_launches = 0
        self._graph_captures = 0
        self._arena.set(self._arena_bytes())

    def _arena_bytes(self) -> float:
        nbytes = getattr(self.ctx, "arena_bytes", None)  # CUDA context
        return float(nbytes if nbytes is not None else self.ctx.arena.nbytes)  # host arena: a numpy buffer

    def _timed_stack(self, name: str, arrays: list) -> np.ndarray:
        t = time.perf_counter()
        try:
            return self._stack(name, arrays)
        finally:
            self._phase_s["stack"] += time.perf_counter() - t

    def _run(self, feed: dict) -> dict:
        t = time.perf_counter()
        try:
            out = {k: np.asarray(v) for k, v in self.ctx.run(feed).items()}
        finally:
            self._phase_s["engine"] += time.perf_counter() - t
        # the feed's buffers are reused by the next execution: no output may alias them
        return {k: v.copy() if any(np.shares_memory(v, f) for f in feed.values()) else v for k, v in out.items()}

    def execute(self, requests: list) -> list:
        t0 = time.perf_counter()
        feeds, wanted = [], []
        for request in requests:
            feed = {}
            for name in self.input_names:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    feed[name] = np.from_dlpack(tensor)
            feeds.append(feed)
            wanted.append(list(request.requested_output_names()) or list(self.output_types))
        self._phase_s["inputs"] += time.perf_counter() - t0
        outcomes, calls = self._run_batched(feeds, self._run, self.batched,
                                            lambda e: isinstance(e, self._input_error), self._timed_stack)
        t1 = time.perf_counter()
        self._calls.increment(calls)
        launches = int(getattr(self.ctx, "graph_launches", 0))
        if launches > self._graph_launches:
            self._replays.increment(launches - self._graph_launches)
            self._graph_launches = launches
        captures = int(getattr(self.ctx, "captures", 0))
        if captures > self._graph_captures:
            self._captures.increment(captures - self._graph_captures)
            self._graph_captures = captures
        self._arena.set(self._arena_bytes())
        responses = []
        for outcome, names in zip(outcomes, wanted):
            if outcome.error is not None:
                code = pb_utils.TritonError.INVALID_ARG if outcome.invalid else pb_utils.TritonError.INTERNAL
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(outcome.error, code)))
                continue
            tensors = [pb_utils.Tensor.from_dlpack(n, np.ascontiguousarray(outcome.outputs[n])) for n in names
                       if n in outcome.outputs]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        self._phase_s["responses"] += time.perf_counter() - t1
        for phase, metric in self._phases.items():  # counters take increments: hand over what accrued
            if self._phase_s[phase]:
                metric.increment(self._phase_s[phase])
                self._phase_s[phase] = 0.0
        return responses

    def finalize(self) -> None:
        close = getattr(self.ctx, "close", None)
        if close is not None:
            close()
