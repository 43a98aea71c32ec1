"""`ember.compile`: the builder, from a module to an engine.

It wires the stages, which is why it lives at the top: passes (the pipeline,
then precision), codegen (lower to a program, compile its kernels with NVRTC),
and the runtime's engine (memory plan, the file). Nothing in the runtime
imports this: an engine runs without the compiler.
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ember.errors import EmberError, UnsupportedOpError
from ember.ir import sizes
from ember.ir.core import Module
from ember.ir.dims import as_symbol

PRECISIONS = {"fp32": None, "fp16": "f16", "bf16": "bf16"}


class BuildError(EmberError, RuntimeError):
    """A model that cannot be built into an engine with the given options."""


@dataclass
class BuildReport:
    """What a build did: passes, kernels, host fallbacks, the memory plan, compile stats."""

    pipeline: str
    kernels: int = 0
    launches: int = 0
    host_ops: list[str] = field(default_factory=list)
    compiled: int = 0
    cache_hits: int = 0
    compile_seconds: float = 0.0
    unpinned_layout: int = 0
    memory: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"kernels: {self.kernels} ({self.launches} launches); NVRTC: {self.compiled} compiled, "
                 f"{self.cache_hits} from cache, {self.compile_seconds:.2f} s"]
        if self.unpinned_layout:
            lines.append(f"note: {self.unpinned_layout} kernels compiled where address-space randomization could "
                         "not be turned off; their PTX may differ between rebuilds")
        if self.memory:
            lines.append(f"activation arena: {self.memory.get('arena_bytes', 0)} bytes "
                         f"(peak of live bytes {self.memory.get('peak_live_bytes', 0)}, "
                         f"sum of all activations {self.memory.get('sum_bytes', 0)})")
        if self.host_ops:
            lines.append(f"host fallbacks ({len(self.host_ops)}):")
            lines.extend(f"  {h}" for h in self.host_ops)
        return "\n".join(lines)


def bind_shapes(module: Module, shapes: Mapping[str, Sequence[int]] | None) -> dict[str, int]:
    """Symbol values from concrete input shapes (`shapes={"image": (1, 3, 224, 224)}`);
    symbols no shape mentions default to 1."""
    env: dict[str, int] = {}
    fn = module.main
    given = dict(shapes or {})
    unknown = [n for n in given if n not in fn.input_names]
    if unknown:
        raise BuildError(f"shapes name no input of the model: {', '.join(unknown)} "
                         f"(inputs: {', '.join(fn.input_names)})")
    for name, v in zip(fn.input_names, fn.inputs):
        t = v.type
        if name not in given or not hasattr(t, "shape") or t.shape is None:
            continue
        dims = tuple(sizes.check_dim(_int_dim(d, name), f"shapes of input {name!r}") for d in given[name])
        if len(dims) != len(t.shape):
            raise BuildError(f"input {name!r}: shape {list(dims)} has rank {len(dims)}; the model's {t} has "
                             f"rank {len(t.shape)}")
        for axis, (d, want) in enumerate(zip(dims, t.shape)):
            if isinstance(want, int):
                if want != d:
                    raise BuildError(f"input {name!r}: dim {axis} is {want} in the model, {d} in shapes")
                continue
            sym = as_symbol(want)
            if sym is not None:
                if env.get(sym, d) != d:
                    raise BuildError(f"symbol {sym} is {env[sym]} from another input and {d} from {name!r}")
                env[sym] = d
    for v in fn.inputs:
        for s in getattr(v.type, "symbols", lambda: set())():
            env.setdefault(s, 1)
    return env


def _int_dim(d: object, name: str) -> int:
    try:
        return operator.index(d)  # type: ignore[arg-type]
    except TypeError:
        raise BuildError(f"shapes of input {name!r}: dim {d!r} is not an integer") from None


def with_precision(pipeline: str, low: str, keep: Sequence[str] = ()) -> str:
    """The pipeline with convert-precision in it. In the default pipeline it goes before
    fusion, so fused kernels read and write half-precision tensors and the weights are
    converted once, here; convert-precision after fusion would leave f32 at every kernel
    boundary and cast inside each kernel. A custom pipeline gets it at the end."""
    from ember.passes.registry import DEFAULT
    keep_opt = f",keep=[{','.join(keep)}]" if keep else ""
    convert = f"convert-precision{{to={low}{keep_opt}}},canonicalize,cse"
    if pipeline == "default":
        head, fusion, tail = DEFAULT.partition("fuse-epilogue")
        return f"{head}{convert},{fusion}{tail}"
    return f"{pipeline},{convert}"


def compile(module: Module, *, precision: str = "fp32", targets: Sequence[str] = ("sm_80", "sm_90"),
            shapes: Mapping[str, Sequence[int]] | None = None, pipeline: str = "default", strict: bool = False,
            cache_dir: str | os.PathLike | None = None, dump_cuda: str | os.PathLike | None = None,
            progress: Callable[[int, int], None] | None = None, keep: Sequence[str] = (),
            tactics: Mapping[int | str, str] | None = None) -> Any:
    """Optimize, lower and compile `module` into an Engine (ember.runtime.Engine).

    `tactics` picks, per heavy op (by its index in the optimized entry function or by a
    source location such as an ONNX node name), one of its candidate implementations; the
    engine's launch steps list the one chosen and the candidates."""
    from ember.codegen.lower import lower
    from ember.codegen.nvrtc import Compiler
    from ember.ir.parser import parse
    from ember.passes.manager import PassManager
    from ember.runtime.engine import Engine

    if precision not in PRECISIONS:
        raise BuildError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    # Work on a copy: the caller's module stays as it was.
    work = parse(str(module), verify=False)
    for name, w in module.weights.items():
        work.weights[name].data = w.data
    env = bind_shapes(work, shapes)
    steps = pipeline if PRECISIONS[precision] is None else with_precision(pipeline, PRECISIONS[precision], keep)
    PassManager(steps).run(work)
    program = lower(work, env, tactics)
    report = BuildReport(pipeline=steps, kernels=len(program.kernels),
                         launches=sum(1 for s in program.steps if s["kind"] == "launch"),
                         host_ops=list(program.host_ops))
    if strict and program.host_ops:
        raise UnsupportedOpError(f"--strict: {len(program.host_ops)} ops have no GPU kernel:\n"
                                 + "\n".join("  " + h for h in program.host_ops))
    if dump_cuda is not None:
        _dump(program, dump_cuda)
    compiler = Compiler(targets, cache_dir=cache_dir)
    done = 0

    def tick(_: object) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(program.kernels))

    binaries = compiler.compile_all(program.kernels.values(), progress=tick)
    report.compiled, report.cache_hits = compiler.stats.compiled, compiler.stats.cache_hits
    report.compile_seconds = compiler.stats.seconds
    report.unpinned_layout = compiler.stats.unpinned_layout
    weights = {name: np.asarray(w.data) for name, w in work.weights.items() if w.data is not None}
    weights.update(program.constants)
    engine = Engine.build(
        ir_text=str(work), program=program.to_json(), weights=weights,
        binaries={name: {"cubins": b.cubins, "ptx": b.ptx, "ptx_arch": b.ptx_arch} for name, b in binaries.items()},
        sources={name: k.rendered for name, k in program.kernels.items()},
        info={"targets": list(compiler.targets), "nvrtc": compiler.version, "precision": precision,
              "pipeline": steps, "symbols": env})
    report.memory = engine.memory_report()
    sizes.check_bytes(report.memory["arena_bytes"], "the activation arena (the live activations at the peak)")
    engine.report = report
    return engine


def _dump(program: Any, directory: str | os.PathLike) -> None:
    from pathlib import Path
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, kernel in program.kernels.items():
        (out / f"{name}.cu").write_text(f"// ops: {'; '.join(kernel.ops)}\n" + kernel.rendered)
