"""`ember.compile`: the builder, from a module to an engine.

It wires the stages, which is why it lives at the top: passes (the pipeline,
then precision), codegen (lower to a program, compile its kernels with NVRTC),
and the runtime's engine (memory plan, the file). Nothing in the runtime
imports this: an engine runs without the compiler.
"""

from __future__ import annotations

import logging
import operator
import os
from pathlib import Path
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ember.errors import EmberError, UnsupportedOpError
from ember.ir import sizes
from ember.ir.bind import bind_symbols
from ember.ir.core import Module

log = logging.getLogger("ember.build")
from ember.ir.dims import free_symbols
from ember.ir.profiles import InputRange, Profile, ProfileError, symbol_ranges

# int8, fp8: what stays float runs in f16
PRECISIONS = {"fp32": None, "fp16": "f16", "bf16": "bf16", "int8": "f16", "fp8": "f16"}
QUANTIZED = ("int8", "fp8")
DEFAULT_CALIB_METHODS = {"int8": "entropy", "fp8": "minmax"}   # fp8: amax, as TensorRT's fp8 calibration


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
    specializations: int = 1
    memory_range: dict[str, int] = field(default_factory=dict)  # arena bytes at the first profile's MIN/OPT/MAX

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
        if self.memory_range:
            lines.append("profile 0 arena: " + ", ".join(f"{k.upper()} {v} bytes" for k, v in self.memory_range.items())
                         + f"; {self.specializations} kernel variant{'s' if self.specializations > 1 else ''}")
        if self.host_ops:
            lines.append(f"host fallbacks ({len(self.host_ops)}):")
            lines.extend(f"  {h}" for h in self.host_ops)
        return "\n".join(lines)


def profiles_for(module: Module, shapes: Mapping[str, Sequence[int]] | None,
                 profiles: Sequence[Mapping[str, Any]] | None) -> list[Profile]:
    """The build's optimization profiles: `profiles` as given (per input, (MIN, OPT, MAX), or
    (MIN, MAX) with OPT = MAX, or one shape), or `shapes` as a one-point profile. Every input
    with symbolic dims must be covered: an engine is never built for a size nobody gave."""
    if shapes is not None and profiles is not None:
        raise BuildError("give either shapes= (one shape per input) or profiles= (ranges), not both")
    fn = module.main
    declared = [(name, tuple(v.type.shape)) for name, v in zip(fn.input_names, fn.inputs)
                if getattr(v.type, "shape", None) is not None]
    if profiles is None:
        profiles = [{name: (shape,) for name, shape in (shapes or {}).items()}]
    if not profiles:
        raise BuildError("profiles= is empty: give at least one profile")
    out = []
    for p, given in enumerate(profiles):
        if not isinstance(given, Mapping):
            raise BuildError(f"profile {p}: expected a mapping from input name to (MIN, OPT, MAX) shapes")
        ranges = []
        for name, shapes_of in given.items():
            ranges.append(_input_range(p, str(name), shapes_of))
        named = {r.name for r in ranges}
        for name, shape in declared:  # inputs of static shape need no mention
            if name not in named and all(isinstance(d, int) for d in shape):
                ranges.append(InputRange(name, shape, shape, shape))
        try:
            symbols = symbol_ranges(declared, ranges)
        except ProfileError as err:
            raise BuildError(f"{f'profile {p}: ' if len(profiles) > 1 else ''}{err}") from None
        missing = sorted({s for _, shape in declared for d in shape for s in free_symbols(d)} - set(symbols))
        if missing:
            where = ", ".join(f"{name} [{','.join(map(str, shape))}]" for name, shape in declared
                              if any(s in missing for d in shape for s in free_symbols(d)))
            raise BuildError(f"the model's inputs have symbolic dims ({', '.join(missing)}: {where}) and the build "
                             "gives them no size: pass shapes= (--shapes NAME:1x3x224x224) or profiles= (--profile "
                             "NAME:MINx..:OPTx..:MAXx..)")
        out.append(Profile(tuple(ranges), symbols))
    return out


def _one_shape(plans: Sequence[Profile]) -> bool:
    return len(plans) == 1 and plans[0].points == 1


def bind_shapes(module: Module, shapes: Mapping[str, Sequence[int]] | None) -> dict[str, int]:
    """Symbol values from concrete input shapes (`shapes={"image": (1, 3, 224, 224)}`)."""
    return profiles_for(module, shapes, None)[0].env("opt")


def _input_range(p: int, name: str, given: Any) -> InputRange:
    try:
        items = list(given)
    except TypeError:
        raise BuildError(f"profile {p}: input {name!r}: expected shapes, got {given!r}") from None
    if items and all(isinstance(x, int) or hasattr(x, "__index__") for x in items):
        items = [items]  # one shape
    if len(items) not in (1, 2, 3):
        raise BuildError(f"profile {p}: input {name!r}: give (MIN, OPT, MAX), (MIN, MAX) or one shape, "
                         f"got {len(items)} shapes")
    dims = [tuple(sizes.check_dim(_int_dim(d, name), f"shapes of input {name!r}") for d in shape) for shape in items]
    lo, mid, hi = (dims[0], dims[0], dims[0]) if len(dims) == 1 else \
        (dims[0], dims[1], dims[1]) if len(dims) == 2 else tuple(dims)
    try:
        return InputRange(name, lo, mid, hi)
    except ProfileError as err:
        raise BuildError(f"profile {p}: {err}") from None


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
        head, fusion, tail = DEFAULT.partition("compose-layouts")
        return f"{head}{convert},{fusion}{tail}"
    return f"{pipeline},{convert}"


DEFAULT_OPT_LEVEL = 2   # ember.compile's tactic-selection effort when opt_level= is not given


def _tuned(work: Module, plans: Sequence[Profile], targets: Sequence[str], cache_dir: Any, opt_level: int,
           timing_cache: Any, progress: Callable[[int, int], None] | None,
           forced: Mapping[int | str, str] | None = None) -> dict[int, str]:
    """The timed picks (tune.py) at the first profile's OPT, or none (opt level 0, no GPU, or
    no GPU that runs the build's targets)."""
    from ember.tune import OPT_LEVELS, TimingCache, device_key, tune
    if opt_level not in OPT_LEVELS:
        raise BuildError(f"opt_level {opt_level}: choose 0 (the heuristic's picks) to 5 (time every candidate)")
    if opt_level == 0:
        return {}
    from ember.runtime import cuda
    from ember.runtime.specs import cubin_runs_on, ptx_runs_on
    info = cuda.device_info(0)
    if info is None:
        log.info("tactic selection: no GPU to time on; the heuristic picks")
        return {}

    def runs(t: str) -> bool:  # sm_90a on sm_90 alone; sm_80 on sm_90 through its PTX
        return cubin_runs_on(t, info["arch"]) or ptx_runs_on("compute_" + t[3:], info["arch"])
    if not any(runs(t) for t in targets):
        log.info("tactic selection: the GPU (%s) runs none of the targets %s; the heuristic picks", info["arch"],
                 ", ".join(targets))
        return {}
    cache = timing_cache if isinstance(timing_cache, TimingCache) else \
        TimingCache.load(timing_cache) if timing_cache is not None else TimingCache()
    # The candidates are built for the newest target alone where this GPU runs it: the kernels
    # are those the engine gets (tiles follow the newest target), one NVRTC build each instead
    # of one per target, and the engine's build then finds them in the kernel cache.
    newest = _newest(targets)
    if newest is not None and runs(newest):
        targets = (newest,)
    start = time.perf_counter()
    report = tune(work, plans[0].env("opt"), opt_level=opt_level, targets=targets, cache=cache,
                  device=str(device_key(0)), cache_dir=cache_dir, progress=progress, forced=forced)
    if timing_cache is not None and not isinstance(timing_cache, TimingCache):
        cache.save(timing_cache)
    log.info("tactic selection (opt level %d): %d ops, %d timed, %d from the timing cache, %d picks differ from the "
             "heuristic, %.2f s", opt_level, report.ops, report.timed, report.cached, report.changed,
             time.perf_counter() - start)
    return report.picks


def _newest(targets: Sequence[str]) -> str | None:
    """The newest architecture of the build's targets: the GPU whose SM count steers the tiles
    (the kernels of one engine serve all its targets)."""
    from ember.runtime.specs import EngineFormatError, arch_number
    try:
        return max(targets, key=arch_number) if targets else None
    except EngineFormatError:
        return None  # a target that is no architecture: the compiler refuses it, naming it


CALIB_DEVICES = ("auto", "cuda", "cpu", "interpreter")


def calibration_runner(module: Module, device: str, targets: Sequence[str] = ("sm_80", "sm_90"),
                       cache_dir: Any = None) -> Callable[[Mapping[str, Any]], dict[str, np.ndarray]]:
    """Calibration's runner on an engine: a copy of `module` returning every top-level tensor as an
    output (compare's `expose_all`), built in fp32 with no passes (the tensors stay as the model
    computes them), one engine per set of batch shapes, run on `device` ("cuda", or "cpu": the
    host arena). Returns {tensor name: array} per batch for the tensors calibration covers
    (passes/calibration.py `tensor_names`)."""
    from ember.compare import expose_all
    from ember.passes.calibration import tensor_names

    exposed, where = expose_all(module)
    ops, covered = list(module.main.body.ops), tensor_names(module)
    labels = {label: covered[ops[i].results[r]] for label, (i, r) in where.items() if ops[i].results[r] in covered}
    engines: dict[tuple, Any] = {}

    def run(batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feeds = {k: np.asarray(v) for k, v in batch.items() if k in exposed.main.input_names}
        key = tuple(sorted((k, v.shape) for k, v in feeds.items()))
        if key not in engines:
            engines[key] = compile(exposed, shapes={k: v.shape for k, v in feeds.items()}, pipeline="",
                                   targets=targets, cache_dir=cache_dir, opt_level=0)
        got = engines[key].run(feeds, device=device)
        return {labels[k]: np.asarray(v) for k, v in got.items() if k in labels}
    return run


def _calibration_device(device: str) -> str:
    """Where calibration runs: "auto" takes the GPU where there is one, else the interpreter."""
    if device not in CALIB_DEVICES:
        raise BuildError(f"calib_device {device!r}: choose one of {', '.join(CALIB_DEVICES)}")
    if device in ("auto", "cuda"):
        from ember.runtime import cuda
        ok, why = cuda.available()
        if device == "cuda" and not ok:
            raise BuildError(f"calib_device 'cuda': {why}; calibrate on 'cpu' or 'interpreter' instead")
        return "cuda" if ok else "interpreter"
    return device


def _quantize_int8(work: Module, calibrator: Any, method: str, cache: Any, keep: Sequence[str],
                   progress: Callable[[int], None] | None, keep_sensitive: int = 0,
                   device: str = "auto", targets: Sequence[str] = ("sm_80", "sm_90"),
                   cache_dir: Any = None, precision: str = "int8") -> dict[str, Any]:
    """Calibrate (or read the cache) and insert the Q/DQ pairs (int8, or fp8 e4m3 with
    `precision="fp8"`: passes/quantize_fp8.py); what the engine records of it."""
    from ember.passes.calibration import CalibrationError, calibrate
    from ember.passes.quantize_fp8 import quantize_fp8
    from ember.passes.quantize_int8 import quantize_int8

    have_cache = cache is not None and Path(cache).is_file()
    if calibrator is None and not have_cache:
        raise BuildError(f"precision {precision} needs calibration data (calibrator=, --calib DATA) or an existing "
                         "calibration cache (calib_cache=, --calib-cache FILE)")
    where = _calibration_device(device) if calibrator is not None and not have_cache else "interpreter"
    runner = None if where == "interpreter" else calibration_runner(work, where, targets, cache_dir)
    if runner is not None:
        log.info("%s: calibrating on %s", precision, "the GPU" if where == "cuda" else "an engine on the host arena")
    try:
        calibration = calibrate(work, calibrator if calibrator is not None else [], method=method,
                                cache=cache, progress=progress, runner=runner)
    except CalibrationError as err:
        raise BuildError(str(err)) from None
    keep = list(keep)
    if keep_sensitive:
        if precision != "int8":
            raise BuildError("keep_sensitive (--int8-keep-sensitive) ranks the layers by int8's error: it goes with "
                             "precision int8")
        from ember.passes.int8_sensitivity import layer_sensitivity
        if calibrator is None:
            raise BuildError("keep_sensitive (--int8-keep-sensitive) ranks the layers on calibration data: give it too")
        first = [b for _, b in zip(range(2), calibrator)]
        ranked = layer_sensitivity(work, calibration, first)
        keep += [e.name for e in ranked[:keep_sensitive]]
        log.info("int8: kept in float, the most sensitive: %s", ", ".join(e.name for e in ranked[:keep_sensitive]))
    quantize = quantize_fp8 if precision == "fp8" else quantize_int8
    quantized = quantize(work, calibration, frozenset(keep))
    if quantized == 0:
        raise BuildError(f"precision {precision}: no conv, matmul or gemm input could be quantized (none is "
                         "calibrated, or every such op is kept)")
    log.info("%s: %d inputs of heavy ops quantized (%s calibration%s)", precision, quantized, calibration.method,
             ", from the cache" if calibration.from_cache else f" over {calibration.batches} batches")
    return {"method": calibration.method, "batches": calibration.batches, "from_cache": calibration.from_cache,
            "quantized_inputs": quantized, "kept": keep}


DEFAULT_TARGETS = ("sm_80", "sm_90")


def default_targets() -> tuple[str, ...]:
    """The targets of a build that names none: sm_80 and sm_90, and sm_90a where the Hopper tiles
    are on (heavy.WGMMA) and the build's GPU is an sm_90 (H100, H200), so that the engine built on
    that GPU uses its wgmma; the sm_80/sm_90 cubins of the same kernels keep it portable."""
    from ember.codegen.ops import heavy
    if heavy.WGMMA:
        from ember.runtime import cuda
        info = cuda.device_info(0)
        if info is not None and info["arch"] == "sm_90":
            return (*DEFAULT_TARGETS, "sm_90a")
    return DEFAULT_TARGETS


def compile(module: Module, *, precision: str = "fp32", targets: Sequence[str] | None = None,
            shapes: Mapping[str, Sequence[int]] | None = None, pipeline: str = "default", strict: bool = False,
            cache_dir: str | os.PathLike | None = None, dump_cuda: str | os.PathLike | None = None,
            progress: Callable[[int, int], None] | None = None, keep: Sequence[str] = (),
            tactics: Mapping[int | str, str] | None = None,
            profiles: Sequence[Mapping[str, Any]] | None = None, opt_level: int | None = None,
            timing_cache: Any = None, tuning_progress: Callable[[int, int], None] | None = None,
            plugins: Sequence[str] = (), calibrator: Any = None, calib_method: str | None = None,
            calib_cache: str | os.PathLike | None = None,
            calib_progress: Callable[[int], None] | None = None, keep_sensitive: int = 0,
            calib_device: str = "auto") -> Any:
    """Optimize, lower and compile `module` into an Engine (ember.runtime.Engine).

    The engine serves the shapes of its optimization profiles: `profiles=[{"input_ids":
    ((1, 16), (8, 128), (32, 512)), ...}, ...]` gives, per input, MIN, OPT and MAX (kernel
    tactics and tiles are chosen at OPT); `shapes={"image": (1, 3, 224, 224)}` is one shape.
    Inputs with symbolic dims need one or the other.

    `tactics` picks, per heavy op (by its index in the optimized entry function or by a
    source location such as an ONNX node name), one of its candidate implementations; the
    engine's launch steps list the one chosen and the candidates.

    `opt_level` (0 to 5; DEFAULT_OPT_LEVEL when None) is the effort of tactic selection:
    above 0, where a GPU is present, each heavy op's candidates are timed on it (tune.py)
    and the fastest kept; 0, or no GPU, takes the heuristic's picks. `timing_cache` (a
    file path or a tune.TimingCache) keeps the timings between builds: a path is read
    before and written after.

    `plugins` names modules (dotted names or .py files) that register plugin ops
    (ember.plugins), imported first; the engine records the plugins its IR uses.

    `precision="int8"` quantizes the heavy ops' inputs (passes/quantize_int8.py) with scales
    from a calibration (passes/calibration.py): `calibrator` is any re-iterable of input
    batches ({name: array}), run by `calib_method` (entropy, percentile or minmax) on
    `calib_device`: "auto" (the GPU where there is one, else the interpreter), "cuda",
    "cpu" (an engine on the host arena) or "interpreter"; `calib_cache` is a calibration cache file, read when it exists
    (nothing is run) and written after a calibration. `keep` names the ops left unquantized
    (op kinds or locations); `keep_sensitive=N` also keeps the N heavy ops that cost the most
    accuracy when quantized alone (passes/int8_sensitivity.py, on the first two calibration
    batches). What stays float runs in f16. `calib_method` None is entropy for int8.

    `precision="fp8"` is the same with fp8 (passes/quantize_fp8.py): e4m3 activations at the
    calibrated threshold / 448 per tensor (calib_method None: minmax, the amax), e4m3 weights per
    output channel, conv/matmul/gemm as ember.fp8_conv / ember.fp8_matmul (fp8 tensor cores on
    sm_89 and newer, f16 ones on sm_80), everything else in f16.

    The environment's EMBER_FLAGS switch on kernel forms that wait on a device check
    (codegen/flags.py)."""
    from ember.codegen import flags
    flags.apply(os.environ.get(flags.ENV, ""))
    from ember.codegen.specialize import SpecializationError, lower_profiles
    from ember.codegen.nvrtc import Compiler
    from ember.ir.parser import copy_module
    from ember.passes.manager import PassManager
    from ember.runtime.engine import Engine

    if precision not in PRECISIONS:
        raise BuildError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if targets is None:
        targets = default_targets()
    if isinstance(targets, str) or not targets:
        raise BuildError(f"targets {targets!r}: give a sequence of one or more architectures, such as "
                         "('sm_80', 'sm_90')")
    if plugins:
        from ember.plugins import load as load_plugins
        load_plugins(plugins)
    work = copy_module(module)  # the caller's module stays as it was
    plans = profiles_for(work, shapes, profiles)
    int8 = _quantize_int8(work, calibrator, calib_method or DEFAULT_CALIB_METHODS[precision], calib_cache, keep,
                          calib_progress, keep_sensitive, calib_device, targets, cache_dir,
                          precision) if precision in QUANTIZED else None
    declared = None  # the dims as the model declares them, where binding makes the IR's static
    if _one_shape(plans):  # a static engine: its shape arithmetic folds (ir/bind.py)
        fn = work.main
        declared = {name: [str(d) for d in getattr(v.type, "shape", None) or ()]
                    for name, v in [*zip(fn.input_names, fn.inputs), *zip(fn.output_names, fn.outputs)]}
        bind_symbols(work, plans[0].env("opt"))
    steps = pipeline if PRECISIONS[precision] is None else \
        with_precision(pipeline, PRECISIONS[precision], () if int8 is not None else keep)
    start = time.perf_counter()
    log.info("passes: %s on %d ops", steps or "(none)", len(work.main.body.ops))
    PassManager(steps).run(work)
    log.info("passes done in %.2f s: %d ops", time.perf_counter() - start, len(work.main.body.ops))
    prefer = _tuned(work, plans, targets, cache_dir, DEFAULT_OPT_LEVEL if opt_level is None else opt_level,
                    timing_cache, tuning_progress, tactics)
    start = time.perf_counter()
    try:
        lowered = lower_profiles(work, plans, tactics, target=_newest(targets), prefer=prefer)
    except SpecializationError as err:
        raise BuildError(str(err)) from None
    log.info("lowered for %d profile(s) in %.2f s: %d kernel variant set(s), %d kernels, %d ops on the host",
             len(plans), time.perf_counter() - start, len(lowered.specializations), len(lowered.kernels),
             len(lowered.host_ops))
    for h in lowered.host_ops:
        log.debug("host op: %s", h)
    env = plans[0].env("opt")
    default = lowered.specializations[0].program.bind(env)
    report = BuildReport(pipeline=steps, kernels=len(lowered.kernels),
                         launches=len(default.launches),
                         host_ops=list(lowered.host_ops))
    report.specializations = len(lowered.specializations)
    if strict and lowered.host_ops:
        raise UnsupportedOpError(f"--strict: {len(lowered.host_ops)} ops have no GPU kernel:\n"
                                 + "\n".join("  " + h for h in lowered.host_ops))
    if dump_cuda is not None:
        _dump(lowered.kernels, dump_cuda)
    compiler = Compiler(targets, cache_dir=cache_dir)
    done = 0

    def tick(_: object) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(lowered.kernels))

    binaries = compiler.compile_all(lowered.kernels.values(), progress=tick)
    log.info("NVRTC %s for %s: %d compiled, %d from the cache, %.2f s", compiler.version, ", ".join(compiler.targets),
             compiler.stats.compiled, compiler.stats.cache_hits, compiler.stats.seconds)
    report.compiled, report.cache_hits = compiler.stats.compiled, compiler.stats.cache_hits
    report.compile_seconds = compiler.stats.seconds
    report.unpinned_layout = compiler.stats.unpinned_layout
    weights = {name: np.asarray(w.data) for name, w in work.weights.items() if w.data is not None}
    weights.update(lowered.constants)
    dynamic = any(p.points > 1 for p in plans)
    engine = Engine.build(
        ir_text=str(work), program=default, weights=weights,
        binaries={name: {"cubins": b.cubins, "ptx": b.ptx, "ptx_arch": b.ptx_arch} for name, b in binaries.items()},
        sources={name: k.rendered for name, k in lowered.kernels.items()},
        info={"targets": list(compiler.targets), "nvrtc": compiler.version, "precision": precision,
              "pipeline": steps, "symbols": env, "plugins": _plugins_used(work),
              **({"quantization": int8} if int8 is not None else {})},
        profiles=plans if dynamic or len(plans) > 1 else (),
        specializations=lowered.specializations if dynamic or len(plans) > 1 else (), declared=declared)
    if dynamic:
        report.memory_range = {w: engine.bind(_shapes_at(p, w)).plan.arena_bytes
                               for w in ("min", "opt", "max") for p in plans[:1]}
    report.memory = engine.memory_report()
    sizes.check_bytes(report.memory["arena_bytes"], "the activation arena (the live activations at the peak)")
    engine.report = report
    log.info("engine: %d steps (%d on the host), arena %d bytes", len(engine.steps), engine.host_steps,
             report.memory["arena_bytes"])
    return engine


def _plugins_used(module: Module) -> dict[str, str]:
    from ember.plugins import used_by
    return used_by(module)


def refit_from_model(engine: Any, module: Module) -> Any:
    """`engine` with the weights of `module` (the model it was built from, with new weights): the
    engine's pass pipeline runs again on them, so folded, converted and transformed weights come
    out as a rebuild would make them; the kernels and the plan stay. Refused, naming the first
    difference, when the optimized graph is not the engine's (another model, or passes whose
    decisions depend on the weights' values, such as constant folding into inline constants)."""
    from ember.ir.parser import copy_module
    from ember.passes.manager import PassManager
    work = copy_module(module)
    missing = [n for n, w in work.weights.items() if w.data is None]
    if missing:
        raise BuildError(f"refit: the model has no data for weight{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(map(repr, missing[:5]))}")
    if not engine.profiles:  # built for one shape: bound as the build bound it
        bind_symbols(work, {k: int(v) for k, v in dict(engine.info.get("symbols") or {}).items()})
    PassManager(str(engine.info.get("pipeline", ""))).run(work)
    text = str(work)
    if text != engine.ir_text:
        mine, theirs = engine.ir_text.splitlines(), text.splitlines()
        line = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
        got = theirs[line].strip() if line < len(theirs) else "(end)"
        want = mine[line].strip() if line < len(mine) else "(end)"
        raise BuildError(f"refit: the model's optimized graph is not the engine's (line {line + 1}: {got!r}, the "
                         f"engine has {want!r}); this engine was built from another model, or its passes decide on "
                         "the weights' values: rebuild it")
    return engine.refit({name: w.data for name, w in work.weights.items() if name in engine.weights})


def _shapes_at(profile: Profile, which: str) -> dict[str, tuple[int, ...]]:
    return {r.name: getattr(r, which) for r in profile.inputs}


def _dump(kernels: Mapping[str, Any], directory: str | os.PathLike) -> None:
    from pathlib import Path
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, kernel in kernels.items():
        (out / f"{name}.cu").write_text(f"// ops: {'; '.join(kernel.ops)}\n" + kernel.rendered)
