"""Tactic selection by timing, as TensorRT's builder does: each heavy op's candidate kernels
(tactics: templates and tiles, codegen/ops/heavy.py) timed on the GPU, the fastest kept.

For every launch of the first profile's OPT lowering that has more than one candidate, the
op is taken out alone into a module of its own (its operands become inputs, at the OPT
shape), built once per candidate (no passes; NVRTC through the kernel cache) and run on
random inputs: the median of several runs, CUDA events on one context's stream, after
warm-up (each a CUDA graph replay of that one kernel). `opt_level` says how many of the
heuristic's candidates, in its order, are timed (0: none, the heuristic's pick; 5: all)
and how many runs each gets. The picks go to the lowering as preferences (taken at every
shape of every profile where the op offers them).

The timing cache keeps what was measured: per device (GPU name, SM count, architecture,
driver, NVRTC version), per problem (a digest of the op alone at its shape: its IR text
without locations and value names, and the shapes: identical layers are one problem, timed
once), per tactic with the digest of the kernel it built (comments aside), the milliseconds. An entry
is reused only where all of these match, so a kernel that changed is timed again. A build
whose timings are all in the cache times nothing and makes the same engine, byte for byte;
the file (JSON, `--timing-cache FILE`) can be shipped with a model to build elsewhere on
the same GPU.

Without a GPU (or at opt_level 0) nothing is timed: the heuristic picks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ember.errors import EmberError

log = logging.getLogger("ember.build")

OPT_LEVELS = range(0, 6)
# Candidates timed, in the heuristic's order, and timed runs per candidate, by opt level.
TIMED_CANDIDATES = {0: 0, 1: 2, 2: 3, 3: 4, 4: 6, 5: 1 << 30}
RUNS = {0: 0, 1: 10, 2: 20, 3: 30, 4: 50, 5: 100}
WARMUP = 5
BUILD_JOBS = os.cpu_count() or 2   # candidate builds at once (each NVRTC run is a worker process)
CACHE_FORMAT = 1

Measure = Callable[[Any, Mapping[str, np.ndarray], int], float]


class TimingCacheError(EmberError, ValueError):
    """A timing cache file that cannot be read as one."""


@dataclass
class TimingCache:
    """device key -> problem digest -> tactic -> {"kernel": digest, "ms": median}."""

    entries: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    hits: int = 0
    measured: int = 0

    @classmethod
    def load(cls, path: str | Path) -> "TimingCache":
        """The cache in `path`; an empty one when the file does not exist yet."""
        p = Path(path)
        if not p.exists():
            return cls()
        try:
            data = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise TimingCacheError(f"{path}: not a timing cache ({err})") from None
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("entries"),
                                                                                                dict):
            raise TimingCacheError(f"{path}: not a timing cache of format {CACHE_FORMAT} "
                                   "(rebuild it: pass a new file name)")
        entries = data["entries"]
        for device, problems in entries.items():
            ok = isinstance(problems, dict) and all(
                isinstance(tactics, dict) and all(
                    isinstance(e, dict) and isinstance(e.get("kernel"), str)
                    and isinstance(e.get("ms"), (int, float)) and np.isfinite(e["ms"]) and e["ms"] >= 0
                    for e in tactics.values()) for tactics in problems.values())
            if not ok:
                raise TimingCacheError(f"{path}: entries of device {device!r} are malformed")
        return cls(entries)

    def save(self, path: str | Path) -> None:
        from ember.ir.atomic_file import atomic_write
        text = json.dumps({"format": CACHE_FORMAT, "entries": self.entries}, indent=1, sort_keys=True)
        with atomic_write(Path(path)) as f:
            f.write((text + "\n").encode())

    def get(self, device: str, problem: str, tactic: str, kernel: str) -> float | None:
        entry = self.entries.get(device, {}).get(problem, {}).get(tactic)
        if entry is None or entry["kernel"] != kernel:
            return None
        self.hits += 1
        return float(entry["ms"])

    def put(self, device: str, problem: str, tactic: str, kernel: str, ms: float) -> None:
        self.entries.setdefault(device, {}).setdefault(problem, {})[tactic] = {"kernel": kernel, "ms": float(ms)}
        self.measured += 1


def device_key(index: int = 0) -> str | None:
    """The GPU a timing is valid for, or None without one."""
    from ember.codegen.nvrtc import nvrtc_version
    from ember.runtime import cuda
    info = cuda.device_info(index)
    if info is None:
        return None
    return (f"{info['name']}|{info['arch']}|sms={cuda.multiprocessor_count(index)}|driver={info['driver']}"
            f"|nvrtc={nvrtc_version()}")


def extract(module: Any, index: int) -> Any:
    """A module of op `index` of the entry function alone: its operands are the inputs, its
    results the outputs (types as in the model; symbols kept)."""
    from ember.ir.core import Block, Function, Module
    from ember.ir.parser import parse
    work = parse(str(module), verify=False)
    fn = work.main
    op = fn.body.ops[index]
    values: list[Any] = []
    for v in op.operands:
        if v is not None and all(v is not w for w in values):
            values.append(v)
    block = Block([v.type for v in values], [f"in{k}" for k in range(len(values))])
    arg = {id(v): a for v, a in zip(values, block.args)}
    fn.body.ops = [o for o in fn.body.ops if o is not op]
    op.parent = None
    block.append(op)
    for k, v in enumerate(op.operands):
        if v is not None:
            op.set_operand(k, arg[id(v)])
    block.set_outputs(list(op.results))
    alone = Module(name="tactic", symbols=dict(work.symbols))
    alone.add_function(Function("main", block, [f"out{k}" for k in range(len(op.results))]))
    return alone


_LOC = re.compile(r' loc\((?:"(?:[^"\\]|\\.)*"(?:, )?)*\)')
_NAME = re.compile(r'%(?:"(?:[^"\\]|\\.)*"|[\w.$-]+)')


def canonical_op(text: str) -> str:
    """An op alone's IR text without what does not change its kernel: source locations and value
    names (renamed in order of appearance), so identical layers are one problem."""
    names: dict[str, str] = {}
    return _NAME.sub(lambda m: names.setdefault(m.group(0), f"%v{len(names)}"), _LOC.sub("", text))


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def measure_on_gpu(engine: Any, feeds: Mapping[str, np.ndarray], runs: int) -> float:
    """The median GPU time (ms) of `runs` runs after warm-up, on one CUDA context (bench.py's loop)."""
    from ember.bench import bench
    return bench(engine, feeds, device="cuda", iterations=runs, warmup=WARMUP).gpu.median


@dataclass
class TuningReport:
    ops: int = 0                      # ops with candidates to choose from
    timed: int = 0                    # candidate builds timed (not from the cache)
    cached: int = 0                   # timings taken from the cache
    picks: dict[int, str] = field(default_factory=dict)   # op index -> fastest tactic
    changed: int = 0                  # picks other than the heuristic's


def tune(module: Any, env: Mapping[str, int], *, opt_level: int, targets: Sequence[str],
         cache: TimingCache, device: str, cache_dir: Any = None, measure: Measure | None = None,
         seed: int = 0, progress: Callable[[int, int], None] | None = None,
         forced: Mapping[int | str, str] | None = None) -> TuningReport:
    """The fastest candidate per heavy op of `module` (after passes) at `env` (see the module
    docstring). `device` is the timing cache's device key."""
    from ember.build import _newest, compile as build
    from ember.codegen.kernel import strip_comments
    from ember.codegen.lower import lower
    from ember.ir.program import LaunchStep

    if opt_level not in OPT_LEVELS:
        raise EmberError(f"opt level {opt_level}: choose 0 to 5")
    report = TuningReport()
    if opt_level == 0:
        return report
    measure = measure or measure_on_gpu
    program = lower(module, env, target=_newest(targets))
    steps = [s for s in program.spec().steps if isinstance(s, LaunchStep) and len(s.candidates) > 1]
    seen: set[int] = set()
    ops = module.main.body.ops
    # ops the build's `tactics=` names (by index or location) keep that tactic: nothing to time
    skip = {i for i in range(len(ops)) for key in (forced or {})
            if key == i or (isinstance(key, str) and key in ops[i].loc.names)}
    work = [(s.ops[0], s.candidates[:TIMED_CANDIDATES[opt_level]], s.tactic) for s in steps
            if s.ops[0] not in skip and not (s.ops[0] in seen or seen.add(s.ops[0]))]
    report.ops = len(work)
    rng = np.random.default_rng(seed)
    problems = []
    for index, candidates, _ in work:
        alone = extract(module, index)
        fn = alone.main
        shapes = {name: _shape(v.type, env) for name, v in zip(fn.input_names, fn.inputs)}
        problem = _digest(canonical_op(str(alone)), json.dumps(sorted(shapes.items())))
        feeds = {name: _random(rng, v.type, shapes[name]) for name, v in zip(fn.input_names, fn.inputs)}
        problems.append((alone, shapes, problem, feeds))

    def build_one(job: tuple[int, str]) -> Any:
        alone, shapes, _, _ = problems[job[0]]
        return build(alone, pipeline="", shapes=shapes, targets=targets, cache_dir=cache_dir,
                     tactics={0: job[1]}, opt_level=0)

    # Every candidate of every distinct problem (identical layers are one) is built first, in
    # parallel (NVRTC runs in worker processes), then timed one after another so that no
    # build disturbs a timing.
    first: dict[str, int] = {}
    for k, (_, _, problem, _) in enumerate(problems):
        first.setdefault(problem, k)
    jobs = [(k, tactic) for k, (_, candidates, _) in enumerate(work) if first[problems[k][2]] == k
            for tactic in candidates]
    with ThreadPoolExecutor(max_workers=max(1, min(BUILD_JOBS, len(jobs)))) as pool:
        engines = dict(zip(jobs, pool.map(build_one, jobs)))
    timed: dict[str, dict[str, float]] = {}
    for done, (index, candidates, heuristic) in enumerate(work):
        alone, _, problem, feeds = problems[done]
        if problem in timed:
            times = timed[problem]
            report.cached += len(candidates)
        else:
            times = timed[problem] = {}
            for tactic in candidates:
                engine = engines.pop((done, tactic))
                kernel = _digest(*sorted(strip_comments(k.source) for k in engine.kernels.values()))
                ms = cache.get(device, problem, tactic, kernel)
                if ms is None:
                    ms = measure(engine, feeds, RUNS[opt_level])
                    cache.put(device, problem, tactic, kernel, ms)
                    report.timed += 1
                else:
                    report.cached += 1
                times[tactic] = ms
        best = min(candidates, key=lambda t: (times[t], candidates.index(t)))
        report.picks[index] = best
        report.changed += best != heuristic
        log.info("tactic for op %d (%s): %s (%s)", index, alone.main.body.ops[0].name, best,
                 ", ".join(f"{t} {times[t]:.4f} ms" for t in candidates))
        if progress is not None:
            progress(done + 1, len(work))
    return report


def _shape(t: Any, env: Mapping[str, int]) -> tuple[int, ...]:
    from ember.ir.dims import evaluate
    return tuple(int(evaluate(d, env)) for d in t.shape)


def _random(rng: np.random.Generator, t: Any, shape: tuple[int, ...]) -> np.ndarray:
    dt = t.dtype
    if dt.is_float:
        return rng.uniform(-1.0, 1.0, size=shape).astype(dt.np_dtype)
    if dt.kind == "bool":
        return rng.random(shape) < 0.5
    return rng.integers(0, 8, size=shape).astype(dt.np_dtype)


__all__ = ["OPT_LEVELS", "TimingCache", "TimingCacheError", "TuningReport", "device_key", "extract",
           "measure_on_gpu", "tune"]
