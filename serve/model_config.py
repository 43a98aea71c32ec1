"""A Triton model configuration from an Ember engine, and its protobuf text form (config.pbtxt).

Triton checks every request against the configuration before the model sees it (input names,
datatypes, ranks and fixed dims), so the configuration is the first line of input validation:
it is derived from the engine's own signature, never written by hand. An engine whose inputs
and outputs all lead with one symbolic dim (the batch) is batchable: Triton drops that dim from
`dims` and gathers requests along it up to `max_batch_size`; any other engine is declared with
its full shapes and `max_batch_size: 0`, as Triton requires for models that do not batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from ember.errors import EmberError

TRITON_DTYPES = {
    "bool": "TYPE_BOOL", "u8": "TYPE_UINT8", "u16": "TYPE_UINT16", "u32": "TYPE_UINT32", "u64": "TYPE_UINT64",
    "i8": "TYPE_INT8", "i16": "TYPE_INT16", "i32": "TYPE_INT32", "i64": "TYPE_INT64",
    "f16": "TYPE_FP16", "f32": "TYPE_FP32", "f64": "TYPE_FP64",
}
"""Ember element type -> Triton's DataType enum name (model_config.proto). bf16 is left out: tensors
cross into the model through DLPack into numpy, which has no bf16 (serve/triton_model.py)."""

DEFAULT_MAX_BATCH = 32
MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class ServeError(EmberError, ValueError):
    """An engine or option that cannot be served as asked."""


@dataclass(frozen=True)
class ServeOptions:
    """How the models are served: batching, queueing and instances (the `ember serve` flags)."""

    max_batch: int | None = None       # None: the engine profile's MAX batch, at most DEFAULT_MAX_BATCH
    max_queue_delay_us: int = 500
    max_queue_size: int = 256          # requests waiting per model; more are refused with 503 UNAVAILABLE
    instances_per_gpu: int = 1
    kind: str = "gpu"                  # "gpu": instances on GPUs (KIND_GPU); "cpu": on the host arena (KIND_CPU)
    gpus: tuple[int, ...] | None = None   # which GPUs (None: every GPU Triton sees)
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelConfig:
    """The fields of Triton's ModelConfig that an Ember model sets."""

    name: str
    max_batch_size: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    options: ServeOptions
    batch_symbol: str | None = None

    def to_pbtxt(self) -> str:
        """Protobuf text format, as Triton reads config.pbtxt."""
        o = self.options
        lines = [f"name: {_quote(self.name)}", 'backend: "python"', f"max_batch_size: {self.max_batch_size}"]
        for key, tensors in (("input", self.inputs), ("output", self.outputs)):
            for t in tensors:
                lines.append(f"{key} {{ name: {_quote(t.name)} data_type: {t.data_type} "
                             f"dims: [ {', '.join(str(d) for d in t.dims)} ] }}")
        if self.max_batch_size > 0:
            lines += ["dynamic_batching {",
                      f"  max_queue_delay_microseconds: {o.max_queue_delay_us}",
                      "  default_queue_policy {",
                      f"    max_queue_size: {o.max_queue_size}",
                      "  }",
                      "}"]
        if o.kind == "gpu":
            gpus = f"gpus: [ {', '.join(str(g) for g in o.gpus)} ] " if o.gpus else ""
            lines.append(f"instance_group [ {{ kind: KIND_GPU count: {o.instances_per_gpu} {gpus}}} ]")
        else:
            lines.append(f"instance_group [ {{ kind: KIND_CPU count: {o.instances_per_gpu} }} ]")
        for key, value in sorted(o.parameters.items()):
            lines.append(f"parameters {{ key: {_quote(key)} value {{ string_value: {_quote(value)} }} }}")
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def model_name_of(path_stem: str) -> str:
    """A Triton model name from an engine's file name (its stem), refused when Triton would not take it."""
    if not MODEL_NAME.match(path_stem):
        raise ServeError(f"the engine file name {path_stem!r} is not a usable Triton model name "
                         "(letters, digits, '_', '.', '-'): rename the file")
    return path_stem


def batch_symbol_of(engine: Any) -> str | None:
    """The symbol every input and output leads with, when there is one (the batch dim), else None."""
    tensors = [*engine.inputs, *engine.outputs]
    firsts = {t.dims[0] if t.dims else "" for t in tensors}
    if len(firsts) != 1:
        return None
    (symbol,) = firsts
    return symbol if symbol and not symbol.lstrip("-").isdigit() else None


def batch_range(engine: Any, symbol: str) -> tuple[int, int]:
    """(MIN, MAX) of the batch symbol over the engine's optimization profiles."""
    ranges = [p.symbols[symbol] for p in engine.profiles if symbol in p.symbols]
    if not ranges:
        value = engine.symbols.get(symbol)
        return (value, value) if value is not None else (1, 1)
    return min(r[0] for r in ranges), max(r[-1] for r in ranges)


def model_config(engine: Any, name: str, options: ServeOptions) -> ModelConfig:
    """Triton's configuration for serving `engine` as model `name` (see the module docstring)."""
    if options.max_batch is not None and options.max_batch < 1:
        raise ServeError(f"--max-batch must be at least 1, got {options.max_batch}")
    if options.instances_per_gpu < 1:
        raise ServeError(f"--instances-per-gpu must be at least 1, got {options.instances_per_gpu}")
    if options.kind not in ("gpu", "cpu"):
        raise ServeError(f"instance kind {options.kind!r}: choose gpu or cpu")
    if options.max_queue_delay_us < 0 or options.max_queue_size < 1:
        raise ServeError("the queue delay must be >= 0 microseconds and the queue size at least 1")
    for t in [*engine.inputs, *engine.outputs]:
        if t.dtype not in TRITON_DTYPES:
            raise ServeError(f"{name}: tensor {t.name!r} has element type {t.dtype}, which Triton cannot carry "
                             f"(it carries {', '.join(sorted(TRITON_DTYPES))})")
    symbol = batch_symbol_of(engine) if engine.is_dynamic else None
    max_batch = 0
    if symbol is not None and batch_range(engine, symbol)[1] > 1:
        low, high = batch_range(engine, symbol)
        if low > 1:
            raise ServeError(f"{name}: the engine's profiles start the batch dim {symbol!r} at {low}; Triton sends "
                             "batches of 1 too: rebuild with a profile whose MIN batch is 1")
        if options.max_batch is not None and options.max_batch > high:
            raise ServeError(f"{name}: --max-batch {options.max_batch} is above the engine's profile MAX "
                             f"{symbol}={high}: lower it, or rebuild the engine with a larger MAX")
        max_batch = options.max_batch if options.max_batch is not None else min(high, DEFAULT_MAX_BATCH)

    def dims(t: Any) -> tuple[int, ...]:
        shape = t.shape[1:] if max_batch else t.shape
        declared = t.dims[1:] if max_batch else t.dims
        ranges = (t.ranges[1:] if max_batch else t.ranges) if t.ranges else (None,) * len(shape)
        out = []
        for size, dim, r in zip(shape, declared, ranges):
            if r is not None:       # an input's dim with a range over the profiles
                varies = r[0] != r[1]
            else:                   # a data-dependent size, or a symbol of a dynamic engine (outputs carry no ranges)
                varies = size is None or (engine.is_dynamic and not dim.lstrip("-").isdigit())
            out.append(-1 if varies else int(size))
        return tuple(out)

    inputs = tuple(Tensor(t.name, TRITON_DTYPES[t.dtype], dims(t)) for t in engine.inputs)
    outputs = tuple(Tensor(t.name, TRITON_DTYPES[t.dtype], dims(t)) for t in engine.outputs)
    return ModelConfig(name, max_batch, inputs, outputs, options, symbol if max_batch else None)


def check_unique_names(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ServeError(f"two engines would both be served as model {n!r}: engine file names must differ")
        seen.add(n)
