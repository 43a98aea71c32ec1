"""An engine described: its layers, memory, profiles and signature, as records and as JSON.

`ember inspect ENGINE` prints these and `ember inspect ENGINE --json` writes them; both read
the records made here, so the table and the JSON cannot disagree.

A layer is one step of the stored program (the first profile's first kernel variant,
bound at its OPT shape, as the engine keeps it): the kernel, the IR ops it computes
(their printed result names and locations), their result element types (the layer's
precision), the tactic and its candidates, the launch shape as the engine's profile
program has it (expressions over the input symbols where the engine serves a range)
and at OPT, and the bytes a launch reads and writes at OPT: the sizes of the values it
lists as read and written (weights included, scratch not). A byte count is None where
a size is found only when the model runs (after a NonZero, say).

Kernel times (`kernel_ms`: kernel name -> milliseconds per run, what `ember bench
--layer-times-json` writes) are per kernel; a kernel launched by several steps has its
time split evenly between them, so the layers' times add up to the kernels'.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ember.ir.printer import name_values
from ember.ir.program import BranchStep, HostStep, LaunchStep, Size, SizeStep, Step, ValueSpec, YieldStep, expr_json


@dataclass(frozen=True)
class SourceOp:
    """An IR op a step computes: its index in the entry function, printed result names, location
    (the source model's names), result types and, for a fused op, the ops of its body."""

    index: int
    op: str
    names: tuple[str, ...]
    loc: tuple[str, ...]
    types: tuple[str, ...]
    body: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.op} @ {', '.join(self.loc)}" if self.loc else self.op

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "op": self.op, "names": list(self.names),
                               "loc": list(self.loc), "types": list(self.types)}
        if self.body:
            out["body"] = list(self.body)
        return out


@dataclass(frozen=True)
class Layer:
    """One step of the engine's program (see the module docstring)."""

    step: int
    kind: str                          # launch | host | size
    ops: tuple[SourceOp, ...]
    precision: tuple[str, ...]         # the element types of the ops' results, each once
    kernel: str | None = None
    tactic: str | None = None
    candidates: tuple[str, ...] = ()
    grid: tuple[Size, ...] = ()        # as the profile program has them: ints or expressions
    block: tuple[Size, ...] = ()
    grid_opt: tuple[Size, ...] = ()    # at the stored (OPT) shape
    block_opt: tuple[Size, ...] = ()
    shared: Size = 0
    read_bytes: int | None = None
    written_bytes: int | None = None
    reason: str = ""                   # a host step: why its ops have no kernel
    ms: float | None = None

    @property
    def bytes(self) -> int | None:
        """Bytes read and written at OPT (None where a size is known only at run time)."""
        if self.read_bytes is None or self.written_bytes is None:
            return None
        return self.read_bytes + self.written_bytes

    @property
    def launch_shape(self) -> str:
        """`grid x block`, as the profile program has them (`32*N x 1 x 1 x 256x1x1`)."""
        if self.kind != "launch":
            return ""
        return f"{'x'.join(map(str, self.grid))} x {'x'.join(map(str, self.block))}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "kind": self.kind, "ops": [o.to_json() for o in self.ops],
                               "precision": list(self.precision)}
        if self.kind == "launch":
            out.update({"kernel": self.kernel, "tactic": self.tactic, "candidates": list(self.candidates),
                        "grid": [expr_json(x) for x in self.grid], "block": [expr_json(x) for x in self.block],
                        "grid_opt": [expr_json(x) for x in self.grid_opt],
                        "block_opt": [expr_json(x) for x in self.block_opt], "shared": expr_json(self.shared),
                        "read_bytes": self.read_bytes, "written_bytes": self.written_bytes, "bytes": self.bytes,
                        "ms": self.ms})
        elif self.kind == "host":
            out["reason"] = self.reason
        return out


def _nbytes(values: Sequence[ValueSpec], ids: Sequence[int]) -> int | None:
    total = 0
    for vid in dict.fromkeys(ids):
        n = values[vid].nbytes
        if not isinstance(n, int):
            return None
        total += n
    return total


def _symbolic_steps(engine: Any) -> Sequence[Step]:
    """The stored program's steps as the profile program has them (sizes as expressions), when
    the engine keeps that program and it matches step for step; else the stored steps."""
    stored = engine.steps
    if not engine.specializations:
        return stored
    steps = engine.specializations[0].program.steps
    if len(steps) != len(stored) or any(type(a) is not type(b) or getattr(a, "kernel", None) != getattr(b, "kernel", None)
                                        for a, b in zip(steps, stored)):
        return stored
    return steps


def layers(engine: Any, kernel_ms: Mapping[str, float] | None = None) -> list[Layer]:
    """A layer per step of the engine's stored program, with kernel times where given."""
    fn = engine.module.main
    ops = engine.ops
    namer = name_values(fn)
    values = engine.values
    launches = Counter(s.kernel for s in engine.steps if isinstance(s, LaunchStep))
    kernel_ms = kernel_ms or {}

    def source(i: int) -> SourceOp:
        op = ops[i]
        body = tuple(o.name for r in op.regions for o in r.ops) if op.name == "ember.fused" else ()
        return SourceOp(i, op.name, tuple(namer.ref(r) for r in op.results), tuple(op.loc.names),
                        tuple(str(r.type) for r in op.results), body)

    def precision(indices: Sequence[int]) -> tuple[str, ...]:
        dtypes = (getattr(getattr(r.type, "dtype", None), "name", None) for i in indices for r in ops[i].results)
        return tuple(dict.fromkeys(d for d in dtypes if d))

    out = []
    for t, (step, symbolic) in enumerate(zip(engine.steps, _symbolic_steps(engine))):
        sources = tuple(source(i) for i in step.ops)
        if isinstance(step, LaunchStep):
            ms = kernel_ms.get(step.kernel)
            out.append(Layer(t, "launch", sources, precision(step.ops), step.kernel, step.tactic, step.candidates,
                             symbolic.grid, symbolic.block, step.grid, step.block, step.shared,
                             _nbytes(values, step.reads), _nbytes(values, step.writes),
                             ms=None if ms is None else ms / launches[step.kernel]))
        elif isinstance(step, HostStep):
            out.append(Layer(t, "host", sources, precision(step.ops), reason=step.reason))
        elif isinstance(step, SizeStep):
            out.append(Layer(t, "size", sources, precision(step.ops)))
        elif isinstance(step, (BranchStep, YieldStep)):
            out.append(Layer(t, step.kind, sources, precision(step.ops)))
    return out


def describe(engine: Any, kernel_ms: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The engine as JSON: signature (element types, dims as declared, ranges over the profiles),
    profiles, targets, precision, memory plan and layers (see `layers`)."""
    info = engine.info
    memory = engine.memory_report()

    def port(t: Any) -> dict[str, Any]:
        ranges = [list(r) if r is not None else None for r in t.ranges] if t.ranges else None
        return {"name": t.name, "dtype": t.dtype, "dims": list(t.dims), "shape": list(t.shape), "ranges": ranges}

    return {
        "kind": "engine",
        "precision": info.get("precision") or "fp32",
        "targets": list(info.get("targets") or []),
        "nvrtc": info.get("nvrtc") or None,
        "pipeline": info.get("pipeline") or None,
        "plugins": dict(info.get("plugins") or {}),
        "ember_version": info.get("ember_version"),
        "symbols": engine.symbols,  # the stored shape: where grid_opt, block_opt and bytes are taken
        "inputs": [port(t) for t in engine.inputs],
        "outputs": [port(t) for t in engine.outputs],
        "profiles": [p.to_json() for p in engine.profiles],
        "memory": {"arena_bytes": memory["arena_bytes"], "peak_live_bytes": memory["peak_live_bytes"],
                   "sum_bytes": memory["sum_bytes"], "buffers": memory["buffers"],
                   "weights": len(engine.weights),
                   "weights_bytes": sum(int(w.nbytes) for w in engine.weights.values())},
        "kernels": len(engine.kernels),
        "host_steps": engine.host_steps,
        "layers": [layer.to_json() for layer in layers(engine, kernel_ms)],
    }


__all__ = ["Layer", "SourceOp", "layers", "describe"]
