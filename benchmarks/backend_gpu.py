"""onnx's backend node cases as GPU engines ("backend GPU mode").

For every node case the backend suite runs (tests/frontends/onnx/test_backend_suite.py: the
same case list, the same exclusions; a case it expects to fail is run and marked), the model
is imported as the suite's backend imports it (inputs an op needs at build time frozen to the
case's values), compiled into an engine for the case's input shapes with targets=("sm_90",)
and the given kernel cache, run on the GPU (device="cuda") on the case's inputs, and each
output compared with the case's expected one by ember.tolerance (the project's rule, not the
runner's rtol). A case is then:

    gpu      passed, and no step ran on the host
    host     passed, with host steps (listed, with their reasons)
    failed   a wrong result (the case and the mismatch are printed)
    error    the import, build or run failed (one line)

`--no-gpu` (or `--dry-run`) does everything but the run: it builds every engine (NVRTC
included, unless `--no-nvrtc`) and classifies by host steps only (gpu, host, error).
`--device cpu` runs the engines on the host arena instead (it runs each op's reference, so
it checks this script and the engines' plumbing, not the kernels).

The builds run first, in `--jobs` worker processes that fill the kernel cache (NVRTC runs in
its own processes, so the compile is parallel across cases). The runs follow in a forked
child process (this one never touches CUDA), each engine rebuilt from the warm cache; a
fresh child takes over after a crash, a case past `--case-timeout` or a CUDA error that
spoils the context (each an error of that case). `--time-limit` starts no case after that
many seconds (the rest are "not run"), so a device call ends inside its limit; `--chunk i/N`
takes every N-th case from the i-th, so chunks cost alike. Writes OUT.json and OUT.md;
`--merge` combines chunks' JSON files, `--before` adds a comparison with an earlier JSON.

On the device (no network there: Ember from the working tree, lark from the carried wheels,
the rest from the image, as scripts/gpu_check.sh does), one chunk per call:

    python3 -m pip install -q --no-index --no-deps --target /tmp/ember-site .whl/*.whl
    mkdir -p /tmp/ember-pkg && ln -sfn "$PWD" /tmp/ember-pkg/ember
    PYTHONPATH=/tmp/ember-pkg:/tmp/ember-site timeout 540 python3 benchmarks/backend_gpu.py \
        --cache-dir /tmp/ember-kernels --chunk 1/3 --time-limit 420 --out "$OUT/backend_gpu_1"

then, here, `python benchmarks/backend_gpu.py --merge backend_gpu_{1,2,3}.json --out
benchmarks/results/backend_gpu`. Here, without a GPU:

    python benchmarks/backend_gpu.py --no-gpu --cache-dir /tmp/kernels --out /tmp/backend_lowering

Not a test: CI does not run it (tests/frontends/onnx/test_backend_gpu_script.py checks it on
a few cases).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "tests" / "frontends" / "onnx")]

STATUSES = ("gpu", "host", "failed", "error", "not run", "excluded")
TARGETS = ("sm_90",)


# -- the cases ----------------------------------------------------------------------------------------------
def suite_cases() -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(node case names the suite runs, in its order; exclusions; expected failures), as the suite
    itself reads them."""
    from onnx_suite import cases
    from test_backend_suite import read_list
    expected, excluded = read_list()
    names = [n for g, n in cases() if g == "node"]
    return names, {k[5:]: v for k, v in excluded.items() if k.startswith("node/")}, \
        {k[5:]: v for k, v in expected.items() if k.startswith("node/")}


_NODE_CASES: dict[str, Any] = {}


def node_case(name: str) -> Any:
    """onnx's TestCase (model and data sets) of a node case."""
    if not _NODE_CASES:
        from onnx.backend.test.loader import load_model_tests
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _NODE_CASES.update({t.name: t for t in load_model_tests(kind="node")})
    return _NODE_CASES[name]


def data_sets(case: Any) -> list[tuple[list[Any], list[Any]]]:
    from onnx.backend.test.runner import _normalize_tensor
    return [([_normalize_tensor(x) for x in inputs], [_normalize_tensor(x) for x in outputs])
            for inputs, outputs in case.data_sets]


def chunk_of(names: Sequence[str], chunk: str | None) -> list[str]:
    if not chunk:
        return list(names)
    m = re.fullmatch(r"(\d+)/(\d+)", chunk)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise SystemExit(f"--chunk {chunk!r}: expected i/N with 1 <= i <= N")
    i, n = int(m.group(1)), int(m.group(2))
    return list(names[i - 1::n])


# -- one case -------------------------------------------------------------------------------------------------
def prepared(name: str) -> tuple[Any, list[tuple[dict[str, Any], list[Any], Any]]]:
    """The suite backend's model (EmberRep) and, per data set, (feeds of the module's inputs,
    expected outputs, the module imported for these feeds)."""
    from ember.frontends.onnx.backend import EmberRep
    case = node_case(name)
    rep = EmberRep(case.model)
    out = []
    for inputs, expected in data_sets(case):
        feeds = rep._feeds(inputs)  # the backend's own conversion and freezing
        module = rep._module_for(feeds)
        given = {n: feeds[n] for n in module.main.input_names if n in feeds}
        out.append((given, expected, module))
    return rep, out


def shapes_of(module: Any, feeds: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    from ember.ir.types import TensorType
    return {n: tuple(np.shape(feeds[n])) for n, v in zip(module.main.input_names, module.main.inputs)
            if isinstance(v.type, TensorType) and v.type.shape is not None and n in feeds
            and isinstance(feeds[n], np.ndarray)}


def build(module: Any, feeds: dict[str, Any], cache_dir: str | None, nvrtc: bool) -> tuple[Any, list[str]]:
    """(engine or None, host ops): the engine for these feeds' shapes; without NVRTC, the
    default pipeline and lowering only (what ember.compile does before it compiles)."""
    import ember
    shapes = shapes_of(module, feeds)
    if nvrtc:
        engine = ember.compile(module, targets=TARGETS, shapes=shapes, cache_dir=cache_dir, opt_level=0)  # heuristic picks: a correctness suite
        return engine, list(engine.report.host_ops)
    from ember.build import profiles_for
    from ember.codegen.specialize import lower_profiles
    from ember.ir.parser import parse
    from ember.passes.manager import PassManager
    work = parse(str(module), verify=False)
    for k, w in module.weights.items():
        work.weights[k].data = w.data
    plans = profiles_for(work, shapes, None)
    PassManager("default").run(work)
    return None, list(lower_profiles(work, plans, None).host_ops)


def ember_commit() -> str:
    """The commit of the Ember that runs (the package's checkout), '+dirty' with local changes."""
    import subprocess

    import ember
    where = Path(ember.__file__).parent
    proc = subprocess.run(["git", "-C", str(where), "describe", "--always", "--dirty=+dirty"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown"


def one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip().splitlines()
    return (text[0] if text else type(err).__name__)[:400]


def build_case(job: tuple[str, str | None, bool]) -> dict[str, Any]:
    """Phase 1 (a worker process): import and build every data set's engine; the host ops or
    the error."""
    name, cache_dir, nvrtc = job
    start = time.perf_counter()
    out: dict[str, Any] = {"name": name}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, sets = prepared(name)
            host: list[str] = []
            for feeds, _, module in sets:
                _, ops = build(module, feeds, cache_dir, nvrtc)
                host += [h for h in ops if h not in host]
        out.update(status="host" if host else "gpu", host_ops=host)
    except Exception as err:  # noqa: BLE001  (every failure is a result here)
        out.update(status="error", error=one_line(err), stage="build")
    out["build_s"] = round(time.perf_counter() - start, 3)
    return out


def compare_outputs(names: Sequence[str], got: dict[str, Any], expected: Sequence[Any]) -> list[str]:
    """Mismatches, one line each, by the project's tolerance rule."""
    from ember.tolerance import compare
    problems = []
    for name, want in zip(names, expected):
        have = got.get(name)
        problems += [f"{name}{where}: {why}" for where, why in _compare(have, want, compare)]
    return problems


def _compare(have: Any, want: Any, compare: Any, where: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(want, list) or want is None:
        if want is None or have is None:
            if (want is None) != (have is None):
                yield where, f"expected {'nothing' if want is None else 'a value'}, got {type(have).__name__}"
            return
        if not isinstance(have, list) or len(have) != len(want):
            yield where, f"expected a sequence of {len(want)}, got {type(have).__name__}"
            return
        for k, (h, w) in enumerate(zip(have, want)):
            yield from _compare(h, w, compare, f"{where}[{k}]")
        return
    w = np.asarray(want)
    h = np.asarray(have)
    if w.dtype.kind in "SUO":
        if h.shape != w.shape or not np.array_equal(_texts(h), _texts(w)):
            yield where, f"strings differ (shape {h.shape}, expected {w.shape})"
        return
    result = compare(h, w)
    if not result.ok:
        yield where, result.message or f"max |diff| {result.max_abs_diff:.3g} > {result.bound:.3g}"


def _texts(a: np.ndarray) -> np.ndarray:
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a.ravel()])


def run_case(name: str, built: dict[str, Any], cache_dir: str | None, device: str) -> dict[str, Any]:
    """Phase 2 (this process): rebuild from the warm cache, run, compare."""
    out = dict(built)
    if built["status"] == "error":
        return out
    start = time.perf_counter()
    problems: list[str] = []
    against_reference: list[str] | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep, sets = prepared(name)
            outputs = []
            for feeds, expected, module in sets:
                engine, _ = build(module, feeds, cache_dir, True)
                got = engine.run(feeds, device=device)
                got = {k: _host(v) for k, v in got.items()}
                outputs.append(got)
                problems += compare_outputs(rep.output_names, got, expected)
            if problems:
                against_reference = reference_problems(name, rep.output_names, outputs)
        if problems and against_reference == []:
            out.update(stored_data_differs=problems)  # the engine agrees with onnx.reference
        elif problems:
            out.update(status="failed", mismatch=problems, reference_mismatch=against_reference)
    except Exception as err:  # noqa: BLE001
        out.update(status="error", error=one_line(err), stage="run")
    out["run_s"] = round(time.perf_counter() - start, 3)
    return out


def reference_problems(name: str, output_names: Sequence[str], outputs: Sequence[dict[str, Any]]) -> list[str] | None:
    """A second opinion where the engine misses a case's stored outputs: onnx's own reference
    evaluator on the same inputs, at the same tolerance. Some stored outputs are rounded (an
    average pool's to 4 decimals, say); an engine that agrees with the evaluator is not wrong.
    None when the evaluator cannot run the case (then the stored data alone decides)."""
    from onnx.reference import ReferenceEvaluator
    case = node_case(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = ReferenceEvaluator(case.model)
            constants = {t.name for t in case.model.graph.initializer}
            names = [i.name for i in case.model.graph.input if i.name not in constants]
            problems: list[str] = []
            for (inputs, _), got in zip(data_sets(case), outputs):
                want = evaluator.run(None, dict(zip(names, inputs)))
                problems += compare_outputs(output_names, got, want)
    except Exception:  # noqa: BLE001 - the evaluator lacks the op, or fails on its own
        return None
    return problems


def _host(v: Any) -> Any:
    if isinstance(v, list):
        return [_host(x) for x in v]
    return np.asarray(v) if v is not None and hasattr(v, "__array__") else v


# Errors after which the CUDA context is unusable: the rest run in a fresh process.
STICKY = ("ILLEGAL_ADDRESS", "LAUNCH_FAILED", "MISALIGNED_ADDRESS", "ILLEGAL_INSTRUCTION", "HARDWARE_STACK_ERROR",
          "INVALID_PC", "LAUNCH_TIMEOUT", "ASSERT", "ECC_UNCORRECTABLE")


def _runner(names: Sequence[str], built: dict[str, dict[str, Any]], cache_dir: str | None, device: str,
            conn: Any) -> None:
    """A child process: run `names` in order, sending each result; stop after a sticky CUDA error."""
    for name in names:
        conn.send(("start", name))
        r = run_case(name, built[name], cache_dir, device)
        conn.send(("done", r))
        if r["status"] == "error" and any(code in r.get("error", "") for code in STICKY):
            break
    conn.close()


def run_all(names: Sequence[str], built: dict[str, dict[str, Any]], cache_dir: str | None, device: str,
            deadline: float, case_timeout: float) -> dict[str, dict[str, Any]]:
    """Phase 2: run the cases in child processes (this one never touches CUDA), a fresh one after a
    sticky CUDA error, a crash or a case past `case_timeout` (that case is an error)."""
    ctx = mp.get_context("fork")
    out: dict[str, dict[str, Any]] = {}
    left = list(names)
    while left and time.perf_counter() < deadline:
        here, there = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_runner, args=(left, built, cache_dir, device, there), daemon=True)
        child.start()
        there.close()
        current, since = None, time.perf_counter()
        while True:
            if time.perf_counter() > deadline:
                child.kill()
                break
            if here.poll(1.0):
                try:
                    kind, payload = here.recv()
                except EOFError:
                    break
                if kind == "start":
                    current, since = payload, time.perf_counter()
                    continue
                out[payload["name"]] = payload
                left.remove(payload["name"])
                current = None
                if payload["status"] == "failed":
                    print(f"FAILED {payload['name']}: {'; '.join(payload['mismatch'])[:500]}", file=sys.stderr)
                if len(out) % 100 == 0:
                    print(f"ran {len(out)}/{len(names)}", file=sys.stderr)
                continue
            if current is not None and time.perf_counter() - since > case_timeout:
                child.kill()
                out[current] = dict(built[current], status="error", stage="run",
                                    error=f"timed out after {case_timeout:.0f} s")
                left.remove(current)
                current = None
                break
            if not child.is_alive() and not here.poll(0):
                break
        child.join(5)
        if current is not None and current in left:  # the process died inside this case
            out[current] = dict(built[current], status="error", stage="run",
                                error=f"the run's process died (exit status {child.exitcode})")
            left.remove(current)
    return out


# -- causes ----------------------------------------------------------------------------------------------------
TYPE = re.compile(r"\b[a-z][a-z0-9]*\[[^\]]*\]")


def cause(host_op: str) -> str:
    """A host op's cause, as a key that groups cases: 'ember.cast: element type i4 has no ...';
    tensor types in the reason become T."""
    op, _, rest = host_op.partition(" @ ")
    reason = rest.split(": ", 1)[1] if ": " in rest else rest
    return f"{op}: {TYPE.sub('T', reason)}"


# -- the report -----------------------------------------------------------------------------------------------
def summarize(results: list[dict[str, Any]], meta: dict[str, Any], before: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    counts = Counter(r["status"] for r in results)
    causes: dict[str, list[str]] = defaultdict(list)
    for r in results:
        for c in dict.fromkeys(cause(h) for h in r.get("host_ops", ())):
            causes[c].append(r["name"])
    out = {"meta": meta, "counts": {s: counts.get(s, 0) for s in STATUSES},
           "causes": {c: sorted(v) for c, v in sorted(causes.items(), key=lambda kv: (-len(kv[1]), kv[0]))},
           "cases": sorted(results, key=lambda r: r["name"])}
    if before is not None:  # what the comparison needs of the earlier run, and no more
        b = before.get("before_of", before)
        out["before"] = {"meta": b["meta"], "counts": b["counts"],
                         "causes": {c: len(v) if isinstance(v, list) else v for c, v in b["causes"].items()},
                         "status": {r["name"]: r["status"] for r in b["cases"]} if "cases" in b else b["status"]}
    return out


def comparison(summary: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """Markdown: counts and causes before and after, and the cases whose status changed."""
    b = summary["before"]
    lines = ["", "## Before and after", "",
             f"Before: Ember {b['meta'].get('ember', '?')}, `{b['meta']['command']}` ({b['meta']['date']}).", "",
             "| cases | before | after |", "|---|---|---|"]
    lines += [f"| {labels[s]} | {b['counts'].get(s, 0)} | {summary['counts'][s]} |" for s in STATUSES
              if b["counts"].get(s, 0) or summary["counts"][s] or s in ("gpu", "host")]
    now = {c: len(v) for c, v in summary["causes"].items()}
    changed = sorted({c for c in [*now, *b["causes"]] if now.get(c, 0) != b["causes"].get(c, 0)},
                     key=lambda c: (now.get(c, 0) - b["causes"].get(c, 0), c))
    if changed:
        lines += ["", "Host-step causes whose case count changed:", "", "| cause | before | after |", "|---|---|---|"]
        lines += [f"| {c.replace('|', '/')} | {b['causes'].get(c, 0)} | {now.get(c, 0)} |" for c in changed]
    moves: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in summary["cases"]:
        was = b["status"].get(r["name"], "absent")
        if was != r["status"]:
            moves[(was, r["status"])].append(r["name"])
    for (was, now_status), names in sorted(moves.items()):
        went = f'"{labels.get(was, was)}" to "{labels.get(now_status, now_status)}"'
        lines += ["", f"{len(names)} cases went from {went}: {', '.join(names)}."]
    return lines


def markdown(summary: dict[str, Any]) -> str:
    meta, counts = summary["meta"], summary["counts"]
    ran = meta["mode"] != "no-gpu"
    lines = [f"# ONNX backend node cases as engines ({meta['mode']}, {meta['date']})", "",
             f"`{meta['command']}`", "",
             f"Ember {meta.get('ember', '?')}; onnx {meta['onnx']}; targets {', '.join(meta['targets'])}; {meta['machine']}; "
             f"{meta['cases']} cases{' (chunk ' + meta['chunk'] + ')' if meta.get('chunk') else ''}; "
             f"{meta['seconds']:.0f} s (builds {meta['build_seconds']:.0f} s"
             + (f", runs {meta['run_seconds']:.0f} s" if ran else "") + ").", ""]
    where = "on the GPU" if meta["mode"].endswith("cuda") else "on the host arena"
    labels = {"gpu": f"passed {where}, no host step" if ran else "no host step",
              "host": "passed, with host steps" if ran else "with host steps",
              "failed": "failed (wrong result)", "error": "error (import, build or run)",
              "not run": "not run (time limit)", "excluded": "excluded by the suite (expected_failures.txt)"}
    lines += ["| cases | count |", "|---|---|"]
    lines += [f"| {labels[s]} | {counts[s]} |" for s in STATUSES if counts[s] or s in ("gpu", "host")]
    expected = [r for r in summary["cases"] if r.get("expected_failure")]
    if expected:
        lines += ["", f"{len(expected)} of these cases are listed as expected failures of the suite: "
                      + ", ".join(f"{r['name']} ({r['status']})" for r in expected) + "."]
    if summary["causes"]:
        lines += ["", "## Host steps by cause", "",
                  "A case counts once per cause; a case with two causes is in two rows.", "",
                  "| cause | cases | examples |", "|---|---|---|"]
        for c, names in summary["causes"].items():
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            lines.append(f"| {c.replace('|', '/')} | {len(names)} | {shown} |")
    if "before" in summary:
        lines += comparison(summary, labels)
    differs = [r for r in summary["cases"] if r.get("stored_data_differs")]
    if differs:
        lines += ["", "## Passed against onnx.reference, not the stored outputs", "",
                  "The engine misses the case's stored outputs but matches onnx's reference evaluator on the same "
                  "inputs at the same tolerance (the stored data is rounded or otherwise off):", ""]
        lines += [f"- {r['name']}: {'; '.join(r['stored_data_differs'])[:300]}" for r in differs]
    failed = [r for r in summary["cases"] if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed", ""] + [f"- {r['name']}: {'; '.join(r['mismatch'])[:300]}" for r in failed]
    errors = [r for r in summary["cases"] if r["status"] == "error"]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {r['name']} ({r.get('stage', '?')}): {r['error'][:200]}" for r in errors]
    return "\n".join(lines) + "\n"


def to_json(summary: dict[str, Any]) -> str:
    """The summary as JSON, a cause, an earlier status or a case per line, so reports diff well."""
    def lines(items: Iterable[str]) -> str:
        return ",\n".join(f"  {x}" for x in items)
    parts = [f' "meta": {json.dumps(summary["meta"])}', f' "counts": {json.dumps(summary["counts"])}',
             ' "causes": {\n' + lines(f"{json.dumps(c)}: {json.dumps(v)}" for c, v in summary["causes"].items()) + "}"]
    if "before" in summary:
        b = summary["before"]
        parts.append(' "before": {' + ", ".join(f'"{k}": {json.dumps(b[k])}' for k in ("meta", "counts", "causes"))
                     + ', "status": {\n' + lines(f"{json.dumps(n)}: {json.dumps(s)}" for n, s in b["status"].items())
                     + "}}")
    parts.append(' "cases": [\n' + lines(json.dumps(r) for r in summary["cases"]) + "]")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write(summary: dict[str, Any], out: str) -> None:
    base = Path(out.removesuffix(".json").removesuffix(".md"))
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".json").write_text(to_json(summary))
    base.with_suffix(".md").write_text(markdown(summary))
    print(f"wrote {base.with_suffix('.json')} and {base.with_suffix('.md')}", file=sys.stderr)


def merge(paths: Sequence[str], out: str, command: str, before: dict[str, Any] | None) -> None:
    parts = [json.loads(Path(p).read_text()) for p in paths]
    results = [r for p in parts for r in p["cases"]]
    meta = dict(parts[0]["meta"])
    meta.update(command=command, chunk="", cases=len(results),
                seconds=sum(p["meta"]["seconds"] for p in parts),
                build_seconds=sum(p["meta"]["build_seconds"] for p in parts),
                run_seconds=sum(p["meta"].get("run_seconds", 0.0) for p in parts))
    write(summarize(results, meta, before), out)


# -- main ---------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    parser.add_argument("--cache-dir", help="the NVRTC kernel cache (shared by the chunks)")
    parser.add_argument("--chunk", help="i/N: every N-th case from the i-th")
    parser.add_argument("--no-gpu", "--dry-run", dest="no_gpu", action="store_true",
                        help="build and classify by host steps only")
    parser.add_argument("--no-nvrtc", action="store_true", help="with --no-gpu: lower only, no NVRTC")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="where the engines run (cpu: the host arena, to check this script)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="build processes (1: build in this process)")
    parser.add_argument("--filter", default="", help="only cases whose name matches this regex")
    parser.add_argument("--time-limit", type=float, default=0.0, help="start no case after this many seconds")
    parser.add_argument("--case-timeout", type=float, default=120.0,
                        help="seconds one case may run before its process is killed (an error)")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="combine chunks' JSON files into OUT")
    parser.add_argument("--before", metavar="JSON", help="an earlier run's JSON: the report compares with it")
    args = parser.parse_args(argv)
    command = "python benchmarks/backend_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    before = json.loads(Path(args.before).read_text()) if args.before else None
    if args.merge:
        merge(args.merge, args.out, command, before)
        return
    if args.no_nvrtc and not args.no_gpu:
        parser.error("--no-nvrtc needs --no-gpu (an engine that runs needs its kernels)")
    if not args.no_nvrtc and not args.cache_dir:
        parser.error("--cache-dir is needed to build engines")
    start = time.perf_counter()
    names, excluded, expected = suite_cases()
    names = [n for n in chunk_of(names, args.chunk) if re.search(args.filter, n)]
    todo = [n for n in names if n not in excluded]
    for n in todo:
        node_case(n)  # load onnx's cases before the workers fork
    deadline = start + args.time_limit if args.time_limit else float("inf")
    built: dict[str, dict[str, Any]] = {}
    jobs = [(n, args.cache_dir, not args.no_nvrtc) for n in todo]
    if args.jobs <= 1:
        for n, *rest in jobs:
            if time.perf_counter() > deadline:
                break
            built[n] = build_case((n, *rest))
    else:
        with mp.get_context("fork").Pool(args.jobs) as pool:
            for k, r in enumerate(pool.imap_unordered(build_case, jobs, chunksize=1), 1):
                built[r["name"]] = r
                if k % 100 == 0:
                    print(f"built {k}/{len(jobs)} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
                if time.perf_counter() > deadline:
                    pool.terminate()
                    break
    build_seconds = time.perf_counter() - start
    ran: dict[str, dict[str, Any]] = {}
    if not args.no_gpu:
        ready = [n for n in todo if n in built]
        ran = run_all(ready, built, args.cache_dir, args.device, deadline, args.case_timeout)
    results = []
    for n in names:
        if n in excluded:
            results.append({"name": n, "status": "excluded", "reason": excluded[n]})
            continue
        r = built.get(n) if args.no_gpu else ran.get(n)
        if r is None:
            results.append({"name": n, "status": "not run"})
            continue
        if n in expected:
            r["expected_failure"] = expected[n]
        results.append(r)
    import onnx
    meta = {"mode": "no-gpu" if args.no_gpu else f"run on {args.device}", "date": date.today().isoformat(),
            "command": command, "ember": ember_commit(), "onnx": onnx.__version__, "targets": list(TARGETS),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.jobs} build processes",
            "chunk": args.chunk or "", "cases": len(names), "seconds": round(time.perf_counter() - start, 1),
            "build_seconds": round(build_seconds, 1),
            "run_seconds": round(time.perf_counter() - start - build_seconds, 1), "nvrtc": not args.no_nvrtc}
    summary = summarize(results, meta, before)
    write(summary, args.out)
    print(" ".join(f"{s}: {c}" for s, c in summary["counts"].items()), file=sys.stderr)


if __name__ == "__main__":
    main()
