"""The `ember` command (also `python -m ember`).

Subcommands grow with the pipeline; each reads models through `ember.load`:

    ember import MODEL [-o OUT.ir] [--freeze NAME=FILE.npy]   an .onnx file to .ir (+ .weights)
    ember opt IN.ir -p PIPELINE [-o OUT.ir] [--print-ir-after-all] [--timing]   run passes, like mlir-opt
    ember compile MODEL -o OUT.engine [--fp16|--bf16|--int8|--fp8] [--target sm_80,sm_90] [--shapes NAME:1x3x224x224 | --profile NAME:MIN:OPT:MAX]
                  [--pipeline P] [--dump-cuda DIR] [--strict]    build an engine (NVRTC; no GPU needed)
    ember inspect MODEL|ENGINE [--ir] [--graph FILE.svg|.html|.dot] [--json FILE|-] [--layer-times FILE.json]
                                                what a model or an engine holds; a picture of its graph
    ember run MODEL [-i NAME=FILE.npy ...] [--device cpu|cuda]   run an engine (or build one first)
    ember refit ENGINE --weights FILE.npz|MODEL (-o OUT.engine | --in-place)   new weights, no rebuild
    ember bench MODEL|ENGINE [--fp16|--bf16] [--shapes ...|--profile ...] [--iterations K] [--warmup K] [--json FILE|-]
                                                latency percentiles, GPU time, host overhead, throughput
    ember verify MODEL                          check every IR invariant
    ember compare MODEL.onnx [--fp16] [--shapes ...] [--inputs FILE.npz] [--atol A --rtol R] [--bisect]
                                                Ember against ONNX Runtime; exit 1 on a mismatch
    ember compare MODEL --int8|--fp8 --calib DATA [--per-layer]   int8/fp8 against fp32 (interpreter)

Errors Ember raises on purpose print as one clear message and exit 2 (`compare` exits 1
when an output misses ONNX Runtime's beyond tolerance); nothing
the user had is overwritten by a failed command.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ember.errors import EmberError


def _load(path: str, args: argparse.Namespace | None = None) -> Any:
    from ember.loader import load
    return load(path, **_model_options(args))


def _model_options(args: argparse.Namespace | None) -> dict[str, Any]:
    """Options of the model's frontend given on the command line (a SavedModel's signature)."""
    signature = getattr(args, "signature", None)
    return {"signature": signature} if signature else {}


def _add_signature(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--signature", metavar="KEY",
                        help="a SavedModel's signature to import (default serving_default)")
    if not any(a.dest == "load" for a in parser._actions):
        parser.add_argument("--load", action="append", metavar="FILE.py|MODULE",
                            help="import your own passes or plugin ops (ember.plugins) first")


def _console() -> Any:
    from rich.console import Console
    return Console(highlight=False, soft_wrap=True)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _output_file(path: str, args: argparse.Namespace, *, flag: str = "-o") -> Path:
    """Where a command may write its file: not a folder, in a folder that exists, and not an
    existing file unless --force says to replace it. Checked before any work is done."""
    out = Path(path)
    if out.is_dir():
        raise EmberError(f"{flag} {path}: is a folder; name the file to write")
    if not out.parent.is_dir():
        raise EmberError(f"{flag} {path}: the folder {out.parent} does not exist")
    if out.exists() and not getattr(args, "force", False):
        raise EmberError(f"{flag} {path}: the file exists; pass --force to replace it")
    return out


def _module_output(path: str, args: argparse.Namespace, *, replacing: Path | None = None) -> Path:
    """OUT.ir and the OUT.weights beside it, both checked (`replacing`: the input, which
    --in-place allows to overwrite)."""
    from ember.ir.files import weights_path

    out = Path(path)
    if out.suffix == ".weights":
        raise EmberError(f"-o {path}: name the module's text (e.g. {out.with_suffix('.ir')}); its weights are "
                         "written beside it as .weights")
    if replacing is not None and out.exists() and out.resolve() == replacing.resolve():
        return out
    _output_file(path, args)
    _output_file(str(weights_path(out)), args, flag=f"-o {path}: its weights file")
    return out


def _add_tuning(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--opt-level", type=int, default=2, choices=range(0, 6), metavar="0..5",
                        help="tactic selection: 0 takes the heuristic's picks; 1..5 time more candidates of each "
                             "heavy op on the GPU, and longer (default 2; without a GPU: the heuristic)")
    parser.add_argument("--timing-cache", metavar="FILE",
                        help="read and update this timing cache (JSON): a build whose timings are all in it "
                             "times nothing and gives the same engine")


def _add_serving(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-batch", type=int, metavar="N",
                        help="the largest batch Triton forms (at most the engine profile's MAX; default: that MAX, "
                             "at most 32)")
    parser.add_argument("--max-queue-delay-us", type=int, default=500, metavar="US",
                        help="how long a request may wait for others to batch with (default 500)")
    parser.add_argument("--max-queue-size", type=int, default=256, metavar="N",
                        help="requests waiting per model; more are refused with 503 (default 256)")
    parser.add_argument("--instances-per-gpu", type=int, default=1, metavar="N",
                        help="model instances on each GPU, each with its own stream and arena (default 1)")
    parser.add_argument("--gpus", metavar="0,1", help="the GPUs to serve on (default: every one visible)")


def _add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replace output files that exist")


def _graph_target(args: argparse.Namespace) -> tuple[Path, str] | None:
    """--graph FILE (.svg, .html or .dot, by its suffix) or its alias --dot FILE (DOT, whatever
    the name): where the picture goes and in which form, checked before any work."""
    from ember.ir.graph_view import FORMATS

    if args.graph and args.dot:
        raise EmberError("give --graph FILE or its alias --dot FILE, not both")
    if args.dot:
        return _output_file(args.dot, args, flag="--dot"), ".dot"
    if not args.graph:
        return None
    suffix = Path(args.graph).suffix.lower()
    if suffix not in FORMATS:
        raise EmberError(f"--graph {args.graph}: name a {', '.join(FORMATS)} file (a picture, a page or Graphviz text)")
    return _output_file(args.graph, args, flag="--graph"), suffix


def _json_target(args: argparse.Namespace) -> str | None:
    if args.json and args.json != "-":
        _output_file(args.json, args, flag="--json")
    return args.json


def _write_text(path: Path | str, text: str) -> None:
    from ember.ir.atomic_file import atomic_write
    with atomic_write(path) as f:
        f.write(text.encode())


def _names(values: Sequence[str] | None) -> list[str]:
    """A repeatable NAME,NAME... option as one list."""
    return [k.strip() for item in values or [] for k in item.split(",") if k.strip()]


def _targets(text: str | None) -> list[str]:
    """--target's architectures; the build's default (ember.build.default_targets) when not given."""
    if text is None:
        from ember.build import default_targets
        return list(default_targets())
    return [t.strip() for t in text.split(",") if t.strip()]


def _write_json(target: str, data: dict[str, Any]) -> None:
    import json
    text = json.dumps(data, indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        _write_text(target, text)


def _write_graph(view: Any, target: tuple[Path, str], heading: str, con: Any, quiet: bool) -> None:
    """The picture: Graphviz's layout where `dot` is installed, else Ember's own."""
    import shutil

    from ember.ir.graph_view import render

    path, suffix = target
    dot = shutil.which("dot") if suffix != ".dot" else None
    _write_text(path, render(view, suffix, heading, dot=dot))
    if not quiet:
        how = "" if suffix == ".dot" else " (Graphviz's layout)" if dot else " (Ember's layout; install Graphviz for dot's)"
        con.print(f"  wrote {path}{how}", markup=False)


def _model_json(module: Any, path: str) -> dict[str, Any]:
    """A model for programs: its symbols, each function's inputs, outputs and op counts, weights."""
    def port(name: str, v: Any) -> dict[str, Any]:
        t = v.type
        shape = getattr(t, "shape", None)
        dtype = getattr(getattr(t, "dtype", None), "name", None)
        return {"name": name, "type": str(t), "dtype": dtype,
                "dims": [d if isinstance(d, int) else str(d) for d in shape] if shape is not None else None}

    loaded = [w for w in module.weights.values() if w.data is not None]
    return {
        "kind": "model", "file": str(path), "name": module.name,
        "symbols": {n: {"min": r.min, "max": r.max} for n, r in module.symbols.items()},
        "functions": [{"name": fn.name,
                       "inputs": [port(n, v) for n, v in zip(fn.input_names, fn.inputs)],
                       "outputs": [port(n, v) for n, v in zip(fn.output_names, fn.outputs)],
                       "ops": dict(Counter(op.name for op in fn.walk()).most_common())}
                      for fn in module.functions.values()],
        "weights": {"count": len(module.weights), "with_data": len(loaded),
                    "bytes": int(sum(w.data.nbytes for w in loaded))},
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    if _is_engine(args.model):
        return _inspect_engine(args)
    if args.layer_times:
        raise EmberError(f"--layer-times: kernel times belong to an engine; {args.model} is a model "
                         "(compile it and inspect the .engine)")
    if args.ir and args.json == "-":
        raise EmberError("--ir and --json - both write to standard output: give --json a file")
    graph, json_out = _graph_target(args), _json_target(args)
    module = _load(args.model, args)
    con = _console()
    quiet = json_out == "-" or args.ir  # standard output carries the JSON or the IR alone
    if json_out:
        _write_json(json_out, _model_json(module, args.model))
    if args.ir:
        con.print(str(module), end="", markup=False)
    elif not quiet:
        _print_model(args.model, module, con)
        if json_out:
            con.print(f"  wrote {json_out}", markup=False)
    if graph:
        from ember.ir.graph_view import model_view

        if not args.no_opt:  # the picture is of what the compiler builds from: the optimized graph
            from ember.passes.manager import PassManager
            PassManager("default").run(module)  # in place: what is printed above is done with it
        state = "as imported" if args.no_opt else "after the default pipeline"
        _write_graph(model_view(module.main), graph, f"{args.model}: @{module.main.name}, {state}", con, quiet)
    return 0


def _print_model(path: str, module: Any, con: Any) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    con.print(f"[bold]{escape(str(path))}[/bold]: module {escape(module.name or '(unnamed)')}")
    for name, rng in module.symbols.items():
        con.print(f"  symbol {name} in {rng}")
    for fn in module.functions.values():
        table = Table(title=f"@{fn.name}", title_justify="left")
        table.add_column("")
        table.add_column("name")
        table.add_column("type")
        for n, v in zip(fn.input_names, fn.inputs):
            table.add_row("input", Text(n), Text(str(v.type)))  # Text: rich would read [batch,3] as markup
        for n, v in zip(fn.output_names, fn.outputs):
            table.add_row("output", Text(n), Text(str(v.type)))
        con.print(table)
        counts = Counter(op.name for op in fn.walk())
        con.print("  ops: " + ", ".join(f"{k} x{v}" for k, v in counts.most_common()))
    loaded = [w for w in module.weights.values() if w.data is not None]
    nbytes = sum(w.data.nbytes for w in loaded)
    con.print(f"  weights: {len(module.weights)} ({len(loaded)} with data, {_fmt_bytes(nbytes)})")


def _parse_feeds(items: Sequence[str]) -> dict[str, np.ndarray]:
    feeds = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise EmberError(f"--input {item!r}: expected NAME=FILE.npy")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise EmberError(f"--input {name}: cannot read {path}: {err}") from None
    return feeds


def random_inputs(fn: Any, seed: int, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """Random arrays for every input not given, symbols set from `dims` (default 1)."""
    from ember.ir import sizes
    from ember.ir.dims import Unknown, evaluate, free_symbols
    from ember.ir.types import TensorType

    rng = np.random.default_rng(seed)
    out = {}
    for name, v in zip(fn.input_names, fn.inputs):
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None:
            raise EmberError(f"input {name!r} of type {t}: give it with --input")
        if any(isinstance(d, Unknown) for d in t.shape):
            raise EmberError(f"input {name!r} of type {t} has a data-dependent dim: give it with --input")
        env = {s: dims.get(s, 1) for d in t.shape for s in free_symbols(d)}
        shape = [evaluate(d, env) for d in t.shape]
        sizes.nbytes(shape, t.dtype.itemsize, f"random input {name!r} ({t})")
        if t.dtype.is_float:
            out[name] = rng.standard_normal(shape).astype(t.dtype.np_dtype)
        elif t.dtype.kind == "bool":
            out[name] = rng.random(shape) < 0.5
        elif t.dtype.is_int:
            out[name] = rng.integers(0, 10, size=shape).astype(t.dtype.np_dtype)
        else:
            raise EmberError(f"input {name!r} of type {t}: give it with --input")
    return out


def _parse_shape(flag: str, item: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in text.lower().split("x")) if text else ()
    except ValueError:
        raise EmberError(f"{flag} {item!r}: dims must be integers joined by x, as 1x3x224x224") from None


def _parse_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """--shapes NAME:1x3x224x224[,NAME2:...] (repeatable): one shape per input."""
    shapes = {}
    for flag_value in items:
        for item in flag_value.split(","):
            name, sep, dims = item.rpartition(":")
            if not sep or not name:
                raise EmberError(f"--shapes {item!r}: expected NAME:1x3x224x224 (inputs separated by commas)")
            if name in shapes:
                raise EmberError(f"--shapes: input {name!r} is given twice")
            shapes[name] = _parse_shape("--shapes", item, dims)
    return shapes


def _parse_profile(value: str) -> dict[str, tuple[tuple[int, ...], ...]]:
    """--profile NAME:MIN:OPT:MAX[,NAME2:...]: one optimization profile (OPT may be left out:
    NAME:MIN:MAX takes OPT = MAX)."""
    profile: dict[str, tuple[tuple[int, ...], ...]] = {}
    for item in value.split(","):
        parts = item.split(":")
        if len(parts) < 3 or len(parts) > 4 or not parts[0]:
            raise EmberError(f"--profile {item!r}: expected NAME:MIN:OPT:MAX (as input_ids:1x16:8x128:32x512) or "
                             "NAME:MIN:MAX; separate inputs with commas and repeat --profile for more profiles")
        name = parts[0]
        if name in profile:
            raise EmberError(f"--profile: input {name!r} is given twice in one profile")
        profile[name] = tuple(_parse_shape("--profile", item, d) for d in parts[1:])
    return profile


def _parse_tactics(items: Sequence[str]) -> dict[int | str, str]:
    tactics: dict[int | str, str] = {}
    for item in items:
        op, sep, name = item.rpartition("=")
        if not sep or not op or not name:
            raise EmberError(f"--tactic {item!r}: expected OP=NAME (OP: an op's location or index)")
        tactics[int(op) if op.isdigit() else op] = name
    return tactics


class CalibrationSet:
    """`--calib`: an .npz of samples per input (split along axis 0 into batches of
    `batch`), or a folder whose .npz files are one batch each (in name order). Re-iterable,
    as the histogram methods read the set twice; a folder is read file by file."""

    def __init__(self, path: str, batch: int) -> None:
        self.path, self.batch = Path(path), batch
        if batch < 1:
            raise EmberError(f"--calib-batch {batch}: give 1 or more")
        if self.path.is_dir():
            self.files = sorted(self.path.glob("*.npz"))
            if not self.files:
                raise EmberError(f"--calib {path}: the folder has no .npz files (one batch each)")
        elif self.path.is_file():
            self.files = []
            with np.load(self.path, allow_pickle=False) as data:
                self.samples = {k: data[k] for k in data.files}
            counts = {k: v.shape[0] if v.ndim else 0 for k, v in self.samples.items()}
            if not counts or len(set(counts.values())) != 1 or 0 in counts.values():
                raise EmberError(f"--calib {path}: expected arrays with the same number of samples along axis 0, "
                                 f"got {', '.join(f'{k}: {v}' for k, v in counts.items()) or 'none'}")
        else:
            raise EmberError(f"--calib {path}: no such file or folder")

    def __iter__(self):
        if self.files:
            for f in self.files:
                try:
                    with np.load(f, allow_pickle=False) as data:
                        yield {k: data[k] for k in data.files}
                except (OSError, ValueError) as err:
                    raise EmberError(f"--calib {f}: not a readable .npz ({err})") from None
            return
        n = next(iter(self.samples.values())).shape[0]
        for start in range(0, n, self.batch):
            yield {k: v[start:start + self.batch] for k, v in self.samples.items()}


def cmd_compile(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ember.build import compile as build

    src, out = Path(args.model), Path(args.output)
    if out.exists() and out.resolve() == src.resolve():
        raise EmberError(f"the output {out} is the model itself")
    _output_file(args.output, args)
    if args.dump_cuda is not None and Path(args.dump_cuda).exists() and not Path(args.dump_cuda).is_dir():
        raise EmberError(f"--dump-cuda {args.dump_cuda}: is a file; name a folder for the kernels' sources")
    module = _load(args.model, args)
    precision = "int8" if args.int8 else "fp8" if args.fp8 else "fp16" if args.fp16 else "bf16" if args.bf16 \
        else "fp32"
    if (args.calib or args.calib_cache) and not (args.int8 or args.fp8):
        raise EmberError("--calib and --calib-cache go with --int8 or --fp8")
    if args.int8_keep_sensitive and not args.int8:
        raise EmberError("--int8-keep-sensitive goes with --int8")
    calibrator = CalibrationSet(args.calib, args.calib_batch) if args.calib else None
    keep = _names(args.precision_keep)
    targets = _targets(args.target)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_console(), transient=True, disable=args.quiet_all) as bar:
        task = bar.add_task("compiling kernels", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if args.shapes and args.profile:
            raise EmberError("give --shapes (one shape per input) or --profile (ranges), not both")
        profiles = [_parse_profile(p) for p in args.profile] if args.profile else None
        shapes = _parse_shapes(args.shapes) if args.shapes else None
        tuning = bar.add_task("tuning", total=None, visible=False)

        def tuned(done: int, total: int) -> None:
            bar.update(tuning, completed=done, total=total, visible=True, description="timing tactics")
        calibrating = bar.add_task("calibrating", total=None, visible=False)

        def calibrated(batches: int) -> None:
            bar.update(calibrating, completed=batches, visible=True,
                       description="calibrating (histogram methods read the set twice)")

        engine = build(module, precision=precision, targets=targets, shapes=shapes, profiles=profiles,
                       pipeline=args.pipeline, strict=args.strict, dump_cuda=args.dump_cuda, progress=tick,
                       cache_dir=args.cache_dir, tactics=_parse_tactics(args.tactic or []),
                       opt_level=args.opt_level, timing_cache=args.timing_cache, tuning_progress=tuned,
                       calibrator=calibrator, calib_method=args.calib_method, calib_cache=args.calib_cache,
                       calib_progress=calibrated, keep=keep, keep_sensitive=args.int8_keep_sensitive,
                       calib_device=args.calib_device)
    engine.save(out)
    if not args.quiet_all:
        con = _console()
        con.print(f"{src} -> {out} ({precision}, {', '.join(targets)})")
        con.print(engine.report.summary(), markup=False)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Build (or load) an engine and time it: latency percentiles, GPU time, host overhead."""
    from ember.bench import bench
    from ember.build import bind_shapes

    if args.iterations < 1 or args.warmup < 0:
        raise EmberError(f"--iterations {args.iterations} --warmup {args.warmup}: at least one timed run, "
                         "warm-up 0 or more")
    if args.device_index < 0 or args.device_index and args.device == "cpu":
        raise EmberError(f"--device-index {args.device_index}: a GPU's index (0, 1, ...), with --device cuda or auto")
    if args.shapes and args.profile:
        raise EmberError("give --shapes (one shape per input) or --profile (ranges), not both")
    if args.json and args.json != "-":
        _output_file(args.json, args, flag="--json")
    if args.layer_times_json:
        _output_file(args.layer_times_json, args, flag="--layer-times-json")
    shapes = _parse_shapes(args.shapes) if args.shapes else None
    build_s = None
    if _is_engine(args.model):
        from ember.runtime.engine import Engine
        if args.profile or args.fp16 or args.bf16:
            raise EmberError(f"{args.model} is an engine: --profile, --fp16 and --bf16 are build options "
                             "(bench the model to build with them)")
        engine = Engine.load(args.model)
        module = engine.module
        dims = {**engine.symbols, **(bind_shapes(module, shapes) if shapes else {})}
    else:
        from ember.build import compile as build
        module = _load(args.model, args)
        profiles = [_parse_profile(p) for p in args.profile] if args.profile else None
        precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
        targets = _targets(args.target)
        start = time.perf_counter()
        engine = build(module, precision=precision, targets=targets, shapes=shapes, profiles=profiles,
                       cache_dir=args.cache_dir, opt_level=args.opt_level, timing_cache=args.timing_cache)
        build_s = time.perf_counter() - start
        # a profile engine is timed at the first profile's OPT shape
        dims = bind_shapes(module, {k: v[1] for k, v in profiles[0].items()}) if profiles else \
            bind_shapes(module, shapes) if shapes else dict(engine.symbols)
    feeds = random_inputs(module.main, args.seed, dims)
    layer_runs = min(args.iterations, 20) if args.layer_times or args.layer_times_json else 0
    report = bench(engine, feeds, device=args.device, iterations=args.iterations, warmup=args.warmup,
                   device_index=args.device_index, build_s=build_s, layer_runs=layer_runs)
    if args.layer_times_json:
        _write_text(args.layer_times_json, json.dumps({
            "device": report.device, "shapes": report.shapes, "runs": layer_runs, "kernels": report.kernel_ms,
            "steps": report.layers}, indent=1) + "\n")
    if args.json:
        if args.json == "-":
            print(report.dumps())
            return 0
        _write_text(args.json, report.dumps() + "\n")
    con = _console()
    shape_text = ", ".join(f"{k}: {'x'.join(map(str, v))}" for k, v in report.shapes.items())
    con.print(f"{args.model} on {report.device} ({report.precision or 'fp32'}; {shape_text})", markup=False)
    if report.device == "host arena":
        con.print("  the host arena runs each kernel's reference op: not a GPU figure", markup=False)
    if build_s is not None:
        con.print(f"  build: {build_s:.2f} s", markup=False)
    con.print(f"  first run: {report.first_run_ms:.3f} ms (binding, planning, graph capture)", markup=False)
    for label, st in (("latency", report.latency), ("GPU time", report.gpu)):
        con.print(f"  {label}: min {st.min:.4f}  median {st.median:.4f}  mean {st.mean:.4f}  p90 {st.p90:.4f}  "
                  f"p99 {st.p99:.4f}  max {st.max:.4f} ms ({report.iterations} runs after {report.warmup} warm-up)",
                  markup=False)
    con.print(f"  host overhead: {report.host_overhead_ms:.4f} ms per run (median latency - median GPU time)",
              markup=False)
    samples = f", {report.samples_per_s:.1f} samples/s" if report.samples_per_s else ""
    con.print(f"  throughput: {report.throughput_qps:.1f} runs/s{samples}", markup=False)
    tactics = ", ".join(f"{k} x{v}" for k, v in report.tactics.items()) or "none"
    con.print(f"  {report.launches} launches, {report.host_steps} host steps; tactics: {tactics}", markup=False)
    if args.layer_times and report.layers is not None:
        from rich.table import Table
        from rich.text import Text
        table = Table(title=f"layer times ({layer_runs} runs, each launch timed on its own: no CUDA graphs)",
                      title_justify="left")
        for col in ("step", "kernel", "ops", "ms", "share", "bytes", "GB/s"):
            table.add_column(col)
        for r in report.layers:
            ops = r["ops"][0] + (f" (+{len(r['ops']) - 1})" if len(r["ops"]) > 1 else "")
            table.add_row(str(r["step"]), Text(r["kernel"]), Text(ops[:80]), f"{r['ms']:.4f}", f"{r['share']:.1%}",
                          "" if r["bytes"] is None else _fmt_bytes(r["bytes"]),
                          "" if r["gb_per_s"] is None else f"{r['gb_per_s']:.1f}")
        con.print(table)
    return 0


def cmd_refit(args: argparse.Namespace) -> int:
    """New weights into an engine without rebuilding: from an .npz of the engine's weight names,
    or from the model with new weights (the engine's passes rerun on them)."""
    from ember.runtime.engine import Engine

    if not _is_engine(args.engine):
        raise EmberError(f"{args.engine}: not an Ember engine (build one with ember compile)")
    if bool(args.output) == bool(args.in_place):
        raise EmberError("name where the refit engine goes: -o OUT.engine, or --in-place to replace ENGINE")
    out = Path(args.engine) if args.in_place else _output_file(args.output, args)
    engine = Engine.load(args.engine)
    if str(args.weights).endswith(".npz"):
        given = _read_npz(args.weights, "--weights")
        refit = engine.refit(given)
        what = f"{len(given)} weights from {args.weights}"
    else:
        from ember.build import refit_from_model
        refit = refit_from_model(engine, _load(args.weights, args))
        what = f"the weights of {args.weights} (the engine's passes rerun on them)"
    refit.save(out)
    if not args.quiet_all:
        _console().print(f"{args.engine} -> {out}: refit with {what}", markup=False)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ember.ir.interpret import interpret

    if args.device_index < 0 or args.device_index and args.device == "cpu":
        raise EmberError(f"--device-index {args.device_index}: a GPU's index (0, 1, ...), with --device cuda or auto")
    feeds = _parse_feeds(args.input or [])
    dims = _parse_dims(args.dim or [])
    if args.output:
        _output_file(args.output, args)
    if _is_engine(args.model):
        from ember.runtime.engine import Engine
        engine = Engine.load(args.model)
        module = engine.module
    else:
        engine, module = None, _load(args.model, args)
    if args.function and args.function not in module.functions:
        raise EmberError(f"--function {args.function}: the model has no such function "
                         f"(it has {', '.join(module.functions)})")
    fn = module.functions[args.function] if args.function else module.main
    known = set(module.symbols) | {s for v in fn.inputs for s in v.type.symbols()}
    unknown = sorted(set(dims) - known)
    if unknown:
        raise EmberError(f"--dim {unknown[0]}: the model has no symbol {unknown[0]!r} "
                         f"(its symbols: {', '.join(sorted(known)) or 'none'})")
    if engine is not None:
        dims = {**engine.symbols, **dims}  # random inputs take the shapes the engine was built for
    missing = [n for n in fn.input_names if n not in feeds]
    if missing:
        if not args.random:
            raise EmberError(f"inputs {', '.join(missing)} not given: pass --input NAME=FILE.npy or --random")
        feeds.update({k: v for k, v in random_inputs(fn, args.seed, dims).items() if k in missing})
    if args.reference:
        outputs, where = interpret(module, feeds, function=fn.name), "the reference interpreter"
    else:
        if engine is None:
            from ember.build import compile as build
            engine = build(module, shapes={k: np.shape(v) for k, v in feeds.items()})
        device = engine.pick_device(args.device)
        if args.device == "cpu":
            print("ember: running the engine's plan on the host arena (--device cpu): each kernel's reference op "
                  "at the planned offsets", file=sys.stderr)
        if args.device_index and device != "cuda":
            raise EmberError(f"--device-index {args.device_index}: a GPU's index; this run is on the host arena")
        if device == "cuda":
            outputs = engine.create_context("cuda", device_index=args.device_index).run(feeds)
        else:
            outputs = engine.run(feeds, device=device)
        where = f"the engine ({'GPU' if device == 'cuda' else 'host arena'})"
    table = Table(title=f"{args.model} on {where}", title_justify="left")
    for col in ("output", "dtype", "shape", "min", "max", "mean"):
        table.add_column(col)
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        numeric = arr.dtype != object and arr.size
        stats = [f"{float(f(arr.astype(np.float64))):.6g}" for f in (np.min, np.max, np.mean)] if numeric else ["", "", ""]
        table.add_row(name, str(arr.dtype), str(list(arr.shape)), *stats)
    _console().print(table)
    if args.output:
        from ember.ir.atomic_file import atomic_write
        with atomic_write(args.output) as f:  # exactly this name (np.savez adds .npz to a path, not to a file)
            np.savez(f, **{k: np.asarray(v) for k, v in outputs.items()})
    return 0


def _parse_dims(items: Sequence[str]) -> dict[str, int]:
    dims = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise EmberError(f"--dim {item!r}: expected SYMBOL=VALUE, e.g. N=4")
        try:
            dims[name] = int(value)
        except ValueError:
            raise EmberError(f"--dim {item!r}: the value must be an integer") from None
        if dims[name] < 0:
            raise EmberError(f"--dim {item!r}: the value must not be negative")
    return dims


def cmd_import(args: argparse.Namespace) -> int:
    from ember.loader import load

    src = Path(args.model)
    out = Path(args.output) if args.output else src.with_suffix(".ir")
    for target in (out, out.with_suffix(".weights")):
        if target.resolve() == src.resolve() or (src.is_dir() and src.resolve() in target.resolve().parents):
            raise EmberError(f"the output {target} would overwrite the model it is imported from")
    _module_output(str(out), args)
    options = _model_options(args)
    if args.freeze:
        options["frozen_inputs"] = _parse_feeds(args.freeze)
    module = load(src, **options)
    module.save(out)
    n_ops = sum(1 for _ in module.walk())
    nbytes = sum(w.data.nbytes for w in module.weights.values() if w.data is not None)
    _console().print(f"{src} -> {out}: {n_ops} ops, {len(module.weights)} weights ({_fmt_bytes(nbytes)})")
    return 0


def _load_plugins(paths: Sequence[str]) -> None:
    """Import user modules (files or dotted names) that register passes or ops. Whatever goes
    wrong inside one (a syntax error, a pass registered twice, an exception at import) is
    reported as that file's problem, with the line, not as a traceback from Ember."""
    import traceback

    from ember.plugins import load
    for item in paths:
        try:
            if item.endswith(".py") and not Path(item).is_file():
                raise EmberError(f"--load {item}: no such file")
            load([item])
        except EmberError as err:
            if str(err).startswith("--load "):
                raise
            raise EmberError(f"--load {item}: {err}") from err
        except SyntaxError as err:
            raise EmberError(f"--load {item}: syntax error at line {err.lineno}: {err.msg}") from None
        except ModuleNotFoundError as err:
            raise EmberError(f"--load {item}: {err}") from None
        except Exception as err:
            frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).name == Path(item).name]
            line = f" (line {frames[-1].lineno})" if frames else ""
            raise EmberError(f"--load {item}: importing it raised {type(err).__name__}{line}: {err}") from err


def cmd_opt(args: argparse.Namespace) -> int:
    import ember.passes.registry  # noqa: F401  (the built-in passes)
    from ember.passes.manager import PassManager, timing_report

    if args.list_passes:
        _list_passes()
        return 0
    if args.input is None or args.pipeline is None:
        raise EmberError("ember opt needs an input and -p/--pipeline (or --list-passes)")
    stdin = args.input == "-"
    if args.output == "-":
        args.output = None  # standard output, as with no -o
    elif args.in_place and not args.output:
        if stdin:
            raise EmberError("--in-place edits a file; the input is standard input")
        args.output = args.input
    to_onnx = bool(args.output) and Path(args.output).suffix.lower() == ".onnx"
    if args.output and not stdin:
        same = Path(args.output).exists() and Path(args.output).resolve() == Path(args.input).resolve()
        if same and not args.in_place:
            raise EmberError(f"the output {args.output} is the input; pass --in-place to overwrite it")
        if to_onnx:  # an ONNX export (one file), not the text IR under an .onnx name
            if not (same and args.in_place):
                _output_file(args.output, args)
        else:
            _module_output(args.output, args, replacing=Path(args.input) if args.in_place else None)

    if stdin:  # IR text (weights it names without data stay declared)
        if args.output:
            _module_output(args.output, args)
        from ember.ir.parser import parse
        module = parse(sys.stdin.read(), source="<stdin>")
    else:
        module = _load(args.input, args)
    manager = PassManager(args.pipeline, verify_each=not args.no_verify, print_ir_after=args.print_ir_after or (),
                          print_ir_after_all=args.print_ir_after_all, out=sys.stderr)
    records = manager.run(module)
    if args.timing:
        sys.stderr.write(timing_report(records))
    if to_onnx:
        from ember.frontends.onnx import export
        from ember.ir.atomic_file import atomic_write
        data = export(module).SerializeToString()
        with atomic_write(args.output) as f:
            f.write(data)
    elif args.output:
        module.save(Path(args.output))
    else:
        sys.stdout.write(str(module))
    return 0


def _list_passes() -> None:
    """Every registered pass (its first doc line and options with defaults and limits) and pipeline."""
    import dataclasses

    from rich.table import Table
    from rich.text import Text

    from ember.passes.manager import PASSES, PIPELINES
    table = Table(title="passes", title_justify="left")
    for col in ("pass", "options", "what it does"):
        table.add_column(col)
    for name in sorted(PASSES):
        cls = PASSES[name]
        opts = []
        for f in dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ():
            limits = [f"{k} {f.metadata[k]}" for k in ("min", "max") if f.metadata.get(k) is not None]
            if f.metadata.get("choices") is not None:
                limits.append("one of " + "|".join(map(str, f.metadata["choices"])))
            opts.append(f"{f.name.replace('_', '-')}={f.default}" + (f" ({', '.join(limits)})" if limits else ""))
        first = (cls.__doc__ or "").strip().split("\n\n")[0]  # its first paragraph
        table.add_row(Text(name), Text("\n".join(opts)), Text(" ".join(first.split())))
    _console().print(table)
    for name in sorted(PIPELINES):
        _console().print(Text(f"pipeline {name}: {PIPELINES[name]}"))


def _read_npz(path: str, flag: str = "--inputs") -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise EmberError(f"{flag} {path}: not an .npz archive (np.savez writes one)")
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise EmberError(f"{flag} {path}: cannot read it: {str(err).strip().splitlines()[0]}") from None


def compare_feeds(module: Any, given: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
                  seed: int) -> dict[str, np.ndarray]:
    """`given` (from --inputs) and random data for the other inputs, at the --shapes given (symbols
    bound by those and by the given arrays' shapes)."""
    from ember.build import bind_shapes

    fn = module.main
    for name in list(given) + list(shapes):
        if name not in fn.input_names:
            raise EmberError(f"input {name!r}: the model has no such input (its inputs: {', '.join(fn.input_names)})")
    both = sorted(set(given) & set(shapes))
    if both:
        raise EmberError(f"input {both[0]!r} is given by --inputs and by --shapes: give it once")
    sources = [(name, "--shapes", shape) for name, shape in shapes.items()]
    sources += [(name, "--inputs", np.shape(x)) for name, x in given.items()]
    for name, flag, shape in sources:
        t = fn.inputs[fn.input_names.index(name)].type
        declared = getattr(t, "shape", None)
        what = f"--shapes {name}:{'x'.join(map(str, shape))}" if flag == "--shapes" else \
            f"--inputs: input {name!r} of shape {list(shape)}"
        if declared is None:
            continue
        if len(shape) != len(declared):
            raise EmberError(f"{what}: the model's input is {t} (rank {len(declared)})")
        for axis, (got, want) in enumerate(zip(shape, declared)):
            if isinstance(want, int) and got != want:
                raise EmberError(f"{what}: dim {axis} is {want} in the model ({t})")
    for name, x in given.items():
        t = fn.inputs[fn.input_names.index(name)].type
        want = getattr(getattr(t, "dtype", None), "np_dtype", None)
        if want is not None and np.asarray(x).dtype != want:
            raise EmberError(f"--inputs: input {name!r} is {np.asarray(x).dtype}; the model's input is {t}")
    missing = [n for n in fn.input_names if n not in given]
    if not missing:
        return dict(given)
    dims = bind_shapes(module, {**shapes, **{k: np.shape(v) for k, v in given.items()}})
    feeds = dict(given)
    feeds.update({k: v for k, v in random_inputs(fn, seed, dims).items() if k in missing})
    return feeds


def _nonnegative(flag: str, value: float | None) -> float | None:
    if value is not None and not (value >= 0 and np.isfinite(value)):
        raise EmberError(f"{flag} {value}: must be a finite number >= 0")
    return value


def compare_int8(args: argparse.Namespace, module: Any) -> int:
    """`ember compare --int8 [--per-layer]` / `--fp8`: the int8 (or fp8) model (calibrated Q/DQ
    pairs, as --int8 / --fp8 builds) against the float model on the interpreter, output by
    output; with --per-layer, every heavy op quantized alone, ranked by the error it
    causes (what to --precision-keep)."""
    from ember.ir.interpret import interpret
    from ember.ir.parser import copy_module
    from ember.passes.calibration import CalibrationError, calibrate
    from ember.build import DEFAULT_CALIB_METHODS
    from ember.passes.int8_sensitivity import layer_sensitivity, output_errors
    from ember.passes.quantize_fp8 import quantize_fp8
    from ember.passes.quantize_int8 import quantize_int8

    precision = "fp8" if getattr(args, "fp8", False) else "int8"
    if not (args.calib or args.calib_cache):
        raise EmberError(f"--{precision} needs calibration data (--calib DATA.npz|DIR) or a calibration cache "
                         "(--calib-cache)")
    if args.json:
        _output_file(args.json, args, flag="--json")
    data = CalibrationSet(args.calib, args.calib_batch) if args.calib else None
    try:
        calibration = calibrate(module, data if data is not None else [],
                                method=args.calib_method or DEFAULT_CALIB_METHODS[precision],
                                cache=args.calib_cache)
    except CalibrationError as err:
        raise EmberError(str(err)) from None
    if args.inputs:
        feeds, where = [_read_npz(args.inputs)], args.inputs
    elif data is not None:
        feeds, where = list(data)[:2], "the first calibration batches"
    else:
        raise EmberError(f"--{precision} with only --calib-cache: give --inputs FILE.npz to evaluate on")
    keep = _names(args.precision_keep)
    quantized = copy_module(module)
    n = (quantize_fp8 if precision == "fp8" else quantize_int8)(quantized, calibration, frozenset(keep))
    con = _console()
    con.print(f"{args.model}: {precision} ({n} inputs of heavy ops quantized, {calibration.method} calibration) "
              f"against fp32, on the interpreter, over {where}", markup=False)
    report: dict[str, Any] = {"model": args.model, "precision": precision, "method": calibration.method,
                              "quantized_inputs": n, "kept": keep, "outputs": [], "layers": []}
    for f in feeds:
        for e in output_errors(interpret(module, f), interpret(quantized, f)):
            report["outputs"].append(vars(e))
            top1 = f"  argmax agreement {e.top1:.3f} (classifiers)" if e.top1 is not None else ""
            con.print(f"  {e.output}: max abs {e.max_abs:.4g}  max rel {e.max_rel:.4g}  cosine {e.cosine:.6f}{top1}",
                      markup=False)
    if args.per_layer:
        layers = layer_sensitivity(module, calibration, feeds,
                                   quantize=quantize_fp8 if precision == "fp8" else quantize_int8)
        report["layers"] = [vars(e) for e in layers]
        con.print("layers quantized alone, the most harmful first (1 - cosine of the outputs; keep the first ones "
                  "in float with --precision-keep NAME,...):", markup=False)
        for e in layers[:args.top]:
            con.print(f"  {e.error:.3e}  max rel {e.rel:.3g}  {e.kind}  {e.name}", markup=False)
    if args.json:
        _write_json(args.json, report)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ember.compare import compare_model, write_json

    if args.per_layer and not (args.int8 or args.fp8):  # the ranking quantizes one layer at a time
        raise EmberError("--per-layer goes with --int8 or --fp8 (the layer-by-layer cost of quantization)")
    if args.int8 or args.fp8:
        return compare_int8(args, _load(args.model, args))

    if not args.model.endswith(".onnx"):
        raise EmberError(f"{args.model}: ember compare takes an .onnx model (ONNX Runtime runs it beside Ember)")
    rtol, atol = _nonnegative("--rtol", args.rtol), _nonnegative("--atol", args.atol)
    if args.json:
        _output_file(args.json, args, flag="--json")
    given = _read_npz(args.inputs) if args.inputs else {}
    shapes = _parse_shapes(args.shapes) if args.shapes else {}
    module = _load(args.model, args)
    feeds = compare_feeds(module, given, shapes, args.seed)
    runs = ("interpreter",) if args.interpreter_only else ("engine",) if args.engine_only else \
        ("interpreter", "engine")
    if args.reference == "interpreter" and args.interpreter_only:
        raise EmberError("--interpreter-only with --reference interpreter: the interpreter would be judged against "
                         "itself")
    result = compare_model(args.model, feeds, fp16=args.fp16, device=args.device, rtol=rtol, atol=atol,
                           bisect=args.bisect, runs=runs, cache_dir=args.cache_dir, module=module,
                           reference=args.reference)
    con = _console()
    against = "ONNX Runtime" if result.reference == "onnxruntime" else "Ember's interpreter"
    con.print(f"{args.model} ({result.precision}) against {against}: max |a-b| <= rtol * max |ref| + atol",
              markup=False)
    rows = [(o.run, o.output, f"{o.dtype}{list(o.shape)}", f"max abs {o.max_abs:.3g}", f"max rel {o.max_rel:.3g}",
             f"cosine {o.cosine:.6f}", f"bound {o.bound:.3g}", "ok" if o.ok else "MISMATCH") for o in result.outputs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []
    for r in rows:
        con.print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), markup=False)
    for o in result.outputs:
        if not o.ok:
            con.print(f"{o.run}: output {o.output}: {o.message}", markup=False)
    for d in result.divergences:
        con.print(d.describe(), markup=False)
    for note in result.notes:
        con.print(note, markup=False)
    if args.json:
        write_json(result, args.json)
    failed = sum(not o.ok for o in result.outputs)
    if failed:
        hint = "" if args.bisect else " (--bisect finds the first layer that diverges)"
        con.print(f"MISMATCH: {failed} of {len(result.outputs)} outputs beyond tolerance{hint}", markup=False)
        return 1
    con.print(f"ok: {len(result.outputs)} outputs within tolerance", markup=False)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if _is_engine(args.model):  # loading checks every section against the others (runtime/validate.py)
        from ember.runtime import Engine
        Engine.load(args.model)
    else:
        _load(args.model, args)  # every frontend verifies what it returns (ember.load's contract): once is enough
    _console().print(f"{args.model}: ok")
    return 0


def _is_engine(path: str) -> bool:
    """An engine file, by its name or its first bytes (an engine begins with its magic)."""
    from ember.loader import sniff
    p = Path(path)
    return p.suffix == ".engine" or (p.is_file() and sniff(p) == "engine")


def _read_layer_times(path: str, engine: Any) -> dict[str, float]:
    """--layer-times FILE.json: {"kernels": {KERNEL: MILLISECONDS}}, what `ember bench
    --layer-times-json` writes (other keys are left alone); every kernel must be the engine's."""
    import json
    import math

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise EmberError(f"--layer-times {path}: cannot read it: {err}") from None
    kernels = data.get("kernels") if isinstance(data, dict) else None
    if not isinstance(kernels, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in kernels.values()):
        raise EmberError(f'--layer-times {path}: expected {{"kernels": {{KERNEL: MILLISECONDS, ...}}}} with times '
                         "that are numbers >= 0 (what ember bench --layer-times-json writes)")
    unknown = sorted(set(kernels) - set(engine.kernels))
    if unknown:
        raise EmberError(f"--layer-times {path}: kernel {unknown[0]} is not in this engine "
                         f"({len(unknown)} of {len(kernels)} names unknown: times of another build?)")
    return {str(k): float(v) for k, v in kernels.items()}


def _inspect_engine(args: argparse.Namespace) -> int:
    """An engine's inputs (symbolic dims with their ranges), outputs, profiles, targets, memory
    and its layers: each kernel launch with the source ops it computes, their precision, tactic,
    launch shape and bytes moved at OPT (runtime/layers.py), and kernel times when given."""
    from ember.ir.graph_view import engine_view
    from ember.runtime import Engine
    from ember.runtime.layers import describe, layers

    if args.no_opt:
        raise EmberError("--no-opt: an engine holds its optimized IR only; inspect the model for the graph "
                         "as imported")
    graph, json_out = _graph_target(args), _json_target(args)
    engine = Engine.load(args.model)
    kernel_ms = _read_layer_times(args.layer_times, engine) if args.layer_times else None
    table = layers(engine, kernel_ms)
    con = _console()
    quiet = json_out == "-"
    if json_out:
        _write_json(json_out, {"file": str(args.model), **describe(engine, kernel_ms)})
    if not quiet:
        _print_engine(args.model, engine, table, kernel_ms is not None, con)
        if json_out:
            con.print(f"  wrote {json_out}", markup=False)
    if graph:
        step_ms = {layer.step: layer.ms for layer in table if layer.ms is not None}
        heading = f"{args.model}: engine ({engine.info.get('precision') or 'fp32'}), one cluster per kernel"
        _write_graph(engine_view(engine.module.main, engine.program, step_ms), graph, heading, con, quiet)
    return 0


def _print_engine(path: str, engine: Any, table: Sequence[Any], timed: bool, con: Any) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    info = engine.info
    con.print(f"[bold]{escape(str(path))}[/bold]: engine, precision {info.get('precision') or 'fp32'}, "
              f"targets {', '.join(info.get('targets') or []) or 'none'}, NVRTC {info.get('nvrtc') or '?'}")
    if info.get("plugins"):
        con.print("  plugins: " + ", ".join(f"{k} {v}" for k, v in info["plugins"].items()), markup=False)
    io = Table(title="inputs and outputs", title_justify="left")
    for col in ("", "name", "type"):
        io.add_column(col)
    for t in engine.inputs:
        io.add_row("input", Text(t.name), Text(str(t).split(": ", 1)[-1]))
    for t in engine.outputs:
        io.add_row("output", Text(t.name), Text(str(t).split(": ", 1)[-1]))
    con.print(io)
    for i, p in enumerate(engine.profiles):
        con.print(Text(f"  profile {i}: {p}"))
    memory = engine.memory_report()
    con.print(f"  arena {_fmt_bytes(memory['arena_bytes'])} (peak of live bytes "
              f"{_fmt_bytes(memory['peak_live_bytes'])}) at the stored shape; weights {len(engine.weights)} "
              f"({_fmt_bytes(sum(int(w.nbytes) for w in engine.weights.values()))})")
    at = ", ".join(f"{k}={v}" for k, v in sorted(engine.symbols.items()))
    layers = Table(title=f"layers ({len(engine.steps)} steps, {engine.host_steps} on the host; launch shapes and "
                         f"bytes at {at or 'the stored shape'})", title_justify="left")
    cols = ["step", "kernel", "source ops", "precision", "tactic", "grid x block", "bytes"] + (["ms"] if timed else [])
    for col in cols:  # names fold, figures stay on one line; the source ops get the most room
        layers.add_column(col, justify="right" if col in ("bytes", "ms") else "left",
                          overflow="fold", no_wrap=col in ("step", "precision", "bytes", "ms"),
                          ratio={"kernel": 2, "source ops": 3, "tactic": 1, "grid x block": 1}.get(col),
                          min_width=16 if col == "source ops" else None)
    for layer in table:
        sources = ", ".join(o.describe() for o in layer.ops)
        precision = ",".join(layer.precision)
        if layer.kind == "launch":
            shape = f"{'x'.join(map(str, layer.grid_opt))} x {'x'.join(map(str, layer.block_opt))}"
            nbytes = "?" if layer.bytes is None else _fmt_bytes(layer.bytes)
            row = [Text(layer.kernel or ""), Text(sources), Text(precision), Text(layer.tactic or ""), Text(shape),
                   Text(nbytes)]
            ms = "" if layer.ms is None else f"{layer.ms:.4g}"
        elif layer.kind in ("size", "branch", "yield"):
            row, ms = [Text(f"({layer.kind} step)"), Text(sources), Text(precision), Text(""), Text(""), Text("")], ""
        else:
            row, ms = [Text("(host)"), Text(sources), Text(precision), Text(layer.reason), Text(""), Text("")], ""
        layers.add_row(str(layer.step), *row, *([Text(ms)] if timed else []))
    if not con.is_terminal:  # into a pipe or a file (rich's 80 columns there): as wide as it reads well
        con.width = max(con.width, 180)
    con.print(layers)


def _serve_options(args: argparse.Namespace, kind: str = "gpu") -> Any:
    from ember.serve import ServeOptions
    return ServeOptions(max_batch=args.max_batch, max_queue_delay_us=args.max_queue_delay_us,
                        max_queue_size=args.max_queue_size, instances_per_gpu=args.instances_per_gpu, kind=kind,
                        gpus=_gpu_list(args.gpus))


def _gpu_list(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(g) for g in text.split(","))
    except ValueError:
        raise EmberError(f"--gpus {text}: a comma-separated list of GPU indices, as 0,1") from None


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve engines on Triton Inference Server until interrupted (ember/serve)."""
    import signal

    from ember.serve import Ports, start_server

    for path in args.engines:
        if not _is_engine(path):
            raise EmberError(f"{path}: not an Ember engine (build one with ember compile)")
    options = _serve_options(args)
    ports = Ports(args.http_port, args.grpc_port, args.metrics_port, args.address)
    server, configs = start_server(args.engines, options, ports, gpus=options.gpus, log=args.log,
                                   verbose=args.verbose > 0, timeout_s=args.start_timeout)
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        # only ask the server to stop: the main thread is in server.wait(), which then returns
        stop["signal"] = signum
        server.interrupt()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not args.quiet_all:
            con = _console()
            for c in configs:
                batching = (f"dynamic batching up to {c.max_batch_size} (queue delay {c.options.max_queue_delay_us} us)"
                            if c.max_batch_size else "no batching (fixed shapes)")
                where = (f"{c.options.instances_per_gpu} instance(s) on GPU {','.join(map(str, c.options.gpus or ()))}"
                         if c.options.kind == "gpu" else f"{c.options.instances_per_gpu} instance(s) on the host arena")
                con.print(f"model {c.name}: {batching}; {where}", markup=False)
            host = server.ports.address
            con.print(f"serving on {host}: HTTP :{ports.http}, gRPC :{ports.grpc}, metrics "
                      f"http://{host}:{ports.metrics}/metrics (Ctrl-C stops)", markup=False)
        status = server.wait()
        if stop["signal"] == 0 and status != 0:
            raise EmberError(f"tritonserver exited with status {status}:\n{server.log_tail()}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    return 0


def cmd_export_triton(args: argparse.Namespace) -> int:
    """A Triton model repository for engines (ember/serve/repository.py)."""
    from ember.serve import export_repository

    for path in args.engines:
        if not _is_engine(path):
            raise EmberError(f"{path}: not an Ember engine (build one with ember compile)")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise EmberError(f"-o {args.output}: is a file; name a model repository folder")
    if not out.parent.is_dir():
        raise EmberError(f"-o {args.output}: the folder {out.parent} does not exist")
    configs = export_repository(args.engines, out, _serve_options(args, "cpu" if args.cpu else "gpu"), force=args.force)
    if not args.quiet_all:
        for c in configs:
            _console().print(f"{out / c.name}: config.pbtxt, 1/model.py, 1/{c.name}.engine "
                             f"(max_batch_size {c.max_batch_size})", markup=False)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ember.ir.examples import demo

    demo(seed=args.seed, print_ir=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ember", description="Ember: compile trained networks into GPU engines.")
    p.add_argument("--version", action="version", version=f"ember {_version()}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log what the build does (-v: stages and their times, -vv: more)")
    p.add_argument("-q", "--quiet", dest="quiet_all", action="store_true", help="only errors (no summaries, no logs)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("import", help="import a model (ONNX, or a SavedModel folder) into Ember's IR: "
                                     "OUT.ir and OUT.weights")
    _add_signature(s)
    s.add_argument("model")
    s.add_argument("-o", "--output", metavar="OUT.ir", help="default: the model's name with .ir")
    _add_force(s)
    s.add_argument("--freeze", action="append", metavar="NAME=FILE.npy",
                   help="fix a graph input to a build-time value (inputs that feed shapes)")
    s.set_defaults(fn=cmd_import)

    s = sub.add_parser("opt", help="run a pass pipeline on a model, like mlir-opt")
    _add_signature(s)
    s.add_argument("input", nargs="?", help="an .ir file (or any model ember.load reads); - reads IR text from stdin")
    s.add_argument("-p", "--pipeline", help='e.g. "canonicalize,cse,fuse-elementwise{max-ops=8}"')
    s.add_argument("--list-passes", action="store_true",
                   help="list the passes and pipelines (with --load: yours too), their options and defaults")
    s.add_argument("-o", "--output", metavar="OUT.ir", help="write OUT.ir and OUT.weights, or OUT.onnx, the module "
                   "exported to ONNX (default: print the IR)")
    s.add_argument("--in-place", action="store_true", help="write the result over the input (or allow -o to name it)")
    _add_force(s)
    s.add_argument("--print-ir-after-all", action="store_true")
    s.add_argument("--print-ir-after", action="append", metavar="PASS")
    s.add_argument("--timing", action="store_true", help="per-pass time and statistics on stderr")
    s.add_argument("--no-verify", action="store_true", help="skip verification after each pass")
    s.set_defaults(fn=cmd_opt)

    s = sub.add_parser("inspect", help="summarize a model: inputs, outputs, ops, weights")
    _add_signature(s)
    s.add_argument("model")
    s.add_argument("--ir", action="store_true", help="print the textual IR")
    s.add_argument("--graph", metavar="FILE.svg|FILE.html|FILE.dot",
                   help="a picture of the optimized graph, fused groups (an engine: kernel launches) drawn as "
                        "clusters; Graphviz's layout where dot is installed, else Ember's own")
    s.add_argument("--dot", metavar="FILE", help="the graph as Graphviz DOT (an alias of --graph FILE.dot)")
    s.add_argument("--no-opt", action="store_true", help="draw a model's graph as imported, without the default "
                   "pipeline")
    s.add_argument("--layer-times", metavar="FILE.json", help='kernel times of an engine, {"kernels": {NAME: MS}}: '
                   "a column in the layer table, colour and labels in the graph")
    s.add_argument("--json", metavar="FILE", help="write what is shown as JSON (- for standard output)")
    _add_force(s)
    s.set_defaults(fn=cmd_inspect)

    s = sub.add_parser("compile", help="build an engine: optimize, generate CUDA, compile with NVRTC")
    _add_signature(s)
    s.add_argument("model")
    s.add_argument("-o", "--output", required=True, metavar="OUT.engine")
    _add_force(s)
    precision = s.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="run float ops in f16")
    precision.add_argument("--bf16", action="store_true", help="run float ops in bf16")
    precision.add_argument("--int8", action="store_true",
                           help="quantize conv/matmul/gemm inputs to int8 with calibrated scales (the rest in f16)")
    precision.add_argument("--fp8", action="store_true",
                           help="quantize conv/matmul/gemm inputs to fp8 (e4m3) with calibrated scales, fp8 tensor "
                                "cores on sm_89+ (the rest in f16)")
    s.add_argument("--calib", metavar="DATA.npz|DIR",
                   help="with --int8/--fp8: calibration data, an .npz of samples per input (axis 0) or a folder of "
                        ".npz batches")
    s.add_argument("--calib-method", default=None, choices=("entropy", "percentile", "minmax"),
                   help="with --int8/--fp8: how activation ranges are chosen (default: entropy for int8, as "
                        "TensorRT; minmax, the amax, for fp8)")
    s.add_argument("--calib-cache", metavar="FILE",
                   help="with --int8/--fp8: a calibration cache, read when it exists (no calibration runs), else "
                        "written")
    s.add_argument("--calib-device", default="auto", choices=("auto", "cuda", "cpu", "interpreter"),
                   help="with --int8/--fp8: where calibration runs: an fp32 engine on the GPU (auto, where there is "
                        "one), on the host arena (cpu), or the interpreter (auto without a GPU)")
    s.add_argument("--calib-batch", type=int, default=8, metavar="N",
                   help="with --calib DATA.npz: samples per calibration batch (default 8)")
    s.add_argument("--precision-keep", action="append", metavar="NAME,...",
                   help="with --int8: ops left unquantized, by kind (matmul) or location (an ONNX node name); "
                        "with --fp16/--bf16: ops kept in f32")
    s.add_argument("--int8-keep-sensitive", type=int, default=0, metavar="N",
                   help="with --int8 --calib: also keep in float the N heavy ops that cost the most accuracy when "
                        "quantized alone (as compare --int8 --per-layer ranks them)")
    s.add_argument("--target", help="GPU architectures, such as sm_80,sm_90,sm_90a (default sm_80,sm_90; sm_90a "
                   "too on an H100/H200 when the Hopper tiles are on)")
    s.add_argument("--shapes", action="append", metavar="NAME:1x3x224x224[,NAME2:...]",
                   help="one shape per input with symbolic dims (an engine for exactly this shape)")
    s.add_argument("--profile", action="append", metavar="NAME:MIN:OPT:MAX[,NAME2:...]",
                   help="an optimization profile: per input, MIN, OPT and MAX shapes (as input_ids:1x16:8x128:32x512); "
                        "repeat for more profiles. Any shape in range runs without a rebuild; tactics are chosen at OPT")
    s.add_argument("--pipeline", default="default")
    s.add_argument("--dump-cuda", metavar="DIR", help="write every kernel's CUDA source")
    s.add_argument("--strict", action="store_true", help="fail if any op would run on the host")
    s.add_argument("--cache-dir", metavar="DIR", help="the NVRTC kernel cache (default ~/.cache/ember)")
    s.add_argument("--tactic", action="append", metavar="OP=NAME",
                   help="pick a heavy op's implementation (OP: its ONNX node name or op index); a wrong "
                        "name lists the op's candidates")
    _add_tuning(s)
    s.set_defaults(fn=cmd_compile)

    s = sub.add_parser("bench", help="time an engine (or a model built into one): latency percentiles, GPU time, "
                                     "host overhead, throughput, as trtexec")
    _add_signature(s)
    s.add_argument("model", help="an .engine, or a model to build first (.onnx, .ir, SavedModel folder)")
    precision = s.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="build with float ops in f16")
    precision.add_argument("--bf16", action="store_true", help="build with float ops in bf16")
    s.add_argument("--shapes", action="append", metavar="NAME:1x3x224x224[,NAME2:...]",
                   help="the shape to time (and, for a model, to build for)")
    s.add_argument("--profile", action="append", metavar="NAME:MIN:OPT:MAX[,NAME2:...]",
                   help="build a profile engine (as compile does) and time it at the first profile's OPT")
    s.add_argument("--target", help="GPU architectures to build for (default as compile's)")
    s.add_argument("--iterations", type=int, default=100, metavar="K", help="timed runs (default 100)")
    s.add_argument("--warmup", type=int, default=10, metavar="K", help="untimed runs first (default 10)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="cuda, or cpu: the host arena (a plumbing check, not a GPU figure)")
    s.add_argument("--device-index", type=int, default=0, metavar="N", help="which GPU (default 0)")
    s.add_argument("--seed", type=int, default=0, help="for the random inputs")
    s.add_argument("--cache-dir", metavar="DIR", help="the NVRTC kernel cache (default ~/.cache/ember)")
    s.add_argument("--json", metavar="FILE", help="write the report as JSON (- for stdout, alone)")
    s.add_argument("--layer-times", action="store_true",
                   help="also time each kernel on its own (CUDA events, no graphs): a table, the slowest first, "
                        "with each one's share, bytes and bandwidth")
    s.add_argument("--layer-times-json", metavar="FILE",
                   help="write the per-kernel times ({\"kernels\": {name: ms}, \"steps\": [...]}: what "
                        "`ember inspect ENGINE --layer-times` reads)")
    _add_tuning(s)
    _add_force(s)
    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("refit", help="replace an engine's weights without rebuilding: from an .npz of its weight "
                                     "names, or from the model with new weights (its passes rerun on them)")
    _add_signature(s)
    s.add_argument("engine", metavar="ENGINE")
    s.add_argument("--weights", required=True, metavar="FILE.npz|MODEL",
                   help="an .npz of the engine's weights by name, or the model (.onnx, .ir, SavedModel) with new weights")
    s.add_argument("-o", "--output", metavar="OUT.engine")
    s.add_argument("--in-place", action="store_true", help="replace ENGINE (written to a temporary, then renamed)")
    _add_force(s)
    s.set_defaults(fn=cmd_refit)

    s = sub.add_parser("run", help="run a model: an .engine, or an .onnx/.ir built into one first")
    _add_signature(s)
    s.add_argument("model")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="cuda, or cpu: the engine's plan on a host arena (default: cuda when there is a GPU)")
    s.add_argument("--device-index", type=int, default=0, metavar="N", help="which GPU (default 0)")
    s.add_argument("--reference", action="store_true", help="run the reference interpreter instead")
    s.add_argument("-i", "--input", action="append", metavar="NAME=FILE.npy")
    s.add_argument("--random", action="store_true", help="random data for inputs not given")
    s.add_argument("--dim", action="append", metavar="SYMBOL=VALUE", help="symbol values for --random")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--function", help="function to run (default: the entry)")
    s.add_argument("-o", "--output", metavar="FILE.npz", help="save the outputs")
    _add_force(s)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("compare", help="run an ONNX model in Ember and in ONNX Runtime on the same inputs; exit 1 "
                                      "when an output differs beyond tolerance")
    s.add_argument("--load", action="append", metavar="FILE.py|MODULE",
                   help="import your own passes or plugin ops (ember.plugins) first")
    s.add_argument("model", help="an .onnx file")
    s.add_argument("--fp16", action="store_true", help="build the engine in fp16 (judged with f16's tolerance; the interpreter runs the model as it is)")
    s.add_argument("--shapes", action="append", metavar="NAME:1x3x224x224[,NAME2:...]",
                   help="shapes of random inputs with symbolic dims")
    s.add_argument("--inputs", metavar="FILE.npz", help="given inputs, by name (others are random)")
    s.add_argument("--seed", type=int, default=0, help="the random inputs' seed (default 0)")
    s.add_argument("--rtol", type=float, help="relative tolerance (default: by element type, 1e-4 for f32)")
    s.add_argument("--atol", type=float, help="absolute tolerance (default: by element type, 1e-5 for f32)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the engine runs: cuda, or cpu: its plan on the host arena (default: cuda when "
                        "there is a GPU)")
    runs = s.add_mutually_exclusive_group()
    runs.add_argument("--interpreter-only", action="store_true", help="compare the reference interpreter only")
    runs.add_argument("--engine-only", action="store_true", help="compare the engine only")
    s.add_argument("--bisect", action="store_true",
                   help="on a mismatch, find the first layer that diverges (every node's output compared)")
    s.add_argument("--reference", choices=["onnxruntime", "interpreter"], default="onnxruntime",
                   help="what the engine is judged against: ONNX Runtime (default), or Ember's interpreter, for "
                        "models ONNX Runtime cannot run (plugin ops in their own domains)")
    s.add_argument("--json", metavar="FILE", help="write the per-output figures (and the bisection) as JSON")
    _add_force(s)
    s.add_argument("--cache-dir", metavar="DIR", help="the NVRTC kernel cache (default ~/.cache/ember)")
    quant = s.add_mutually_exclusive_group()
    quant.add_argument("--int8", action="store_true",
                       help="instead: the int8 model (calibrated, as compile --int8) against fp32 on the interpreter")
    quant.add_argument("--fp8", action="store_true",
                       help="instead: the fp8 (e4m3) model (calibrated, as compile --fp8) against fp32 on the "
                            "interpreter")
    s.add_argument("--per-layer", action="store_true",
                   help="with --int8 or --fp8: each heavy op quantized alone, ranked by the error it causes")
    s.add_argument("--top", type=int, default=20, metavar="N", help="with --per-layer: rows shown (default 20)")
    s.add_argument("--calib", metavar="DATA.npz|DIR", help="with --int8/--fp8: calibration data (as compile --calib)")
    s.add_argument("--calib-method", default=None, choices=("entropy", "percentile", "minmax"),
                   help="default: entropy for int8, minmax (the amax) for fp8")
    s.add_argument("--calib-cache", metavar="FILE", help="with --int8/--fp8: a calibration cache (read, or written)")
    s.add_argument("--calib-batch", type=int, default=8, metavar="N", help="with --calib DATA.npz: samples per batch")
    s.add_argument("--precision-keep", action="append", metavar="NAME,...", help="with --int8: ops left in float")
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("verify", help="check a model's IR invariants")
    s.add_argument("model")
    s.add_argument("--load", action="append", metavar="FILE.py|MODULE",
                   help="import your own passes or plugin ops (ember.plugins) first")
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("serve", help="serve engines on Triton Inference Server (HTTP, gRPC, metrics), one model per "
                                     "engine, with dynamic batching")
    s.add_argument("engines", nargs="+", metavar="ENGINE")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--address", default="0.0.0.0", help="the address the endpoints listen on (default 0.0.0.0; "
                   "127.0.0.1 for this machine only)")
    _add_serving(s)
    s.add_argument("--log", metavar="FILE", help="the server's log (default: a file in its temporary workspace)")
    s.add_argument("--start-timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for every model to load (default 120)")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("export-triton", help="write a Triton model repository for engines (config.pbtxt, a "
                                             "Python-backend model.py, the engine) for the Triton container")
    s.add_argument("engines", nargs="+", metavar="ENGINE")
    s.add_argument("-o", "--output", required=True, metavar="REPO", help="the model repository folder")
    _add_serving(s)
    s.add_argument("--cpu", action="store_true", help="instances on the host arena (KIND_CPU) instead of GPUs")
    s.add_argument("--force", action="store_true", help="replace model folders of the same names in REPO")
    s.set_defaults(fn=cmd_export_triton)

    s = sub.add_parser("demo", help="build the README's example network, print its IR, run it")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="do not print the IR")
    s.set_defaults(fn=cmd_demo)
    return p


def _version() -> str:
    import ember
    return ember.__version__


def _configure_logging(verbose: int, quiet: bool) -> None:
    """Ember's log (the `ember` logger, Python's logging) on stderr: warnings by default."""
    level = logging.ERROR if quiet else logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING
    logger = logging.getLogger("ember")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("ember: %(message)s"))
        logger.addHandler(handler)


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes (not the stream of its creation)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose, args.quiet_all)
    try:
        _load_plugins(getattr(args, "load", None) or [])   # user passes and plugin ops, on every command
        return int(args.fn(args) or 0)
    except EmberError as err:
        print(f"ember {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        print(f"ember {args.command}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"ember {args.command}: error: out of host memory", file=sys.stderr)
        return 2
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"ember {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
