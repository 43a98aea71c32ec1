"""`ember compare`: an ONNX model in Ember and in ONNX Runtime on the same inputs.

Ember runs the model twice: the reference interpreter on the imported module (what
each op means), and the engine `ember.compile` builds (passes, fusion, precision,
the memory plan), on the GPU or, with `device="cpu"` or no GPU, on the host arena.
Each output is judged against ONNX Runtime's by the project's one rule
(`ember.tolerance`: max |a-b| <= rtol * max |ref| + atol, rtol and atol by element
type; an fp16 engine's float outputs by f16's), with the max absolute and relative
error and the cosine beside it.

`bisect=True` looks for the first layer that diverges in each run that missed, as
Polygraphy's `--mark all` does: ONNX Runtime runs the model with every node's output
made a graph output, and Ember runs the same module (the interpreter's, or the
engine's optimized IR rebuilt with no passes and every top-level value an output,
so its kernels are the ones compared). Ember values are matched to ONNX tensors by
name (the importer keeps them) or by location (an op's `loc` names the ONNX nodes it
came from; a fused op's result is its body's value of the last of them). Layout
passes keep values channels-last, so a value whose shape is the channels-last form of
the tensor's is compared transposed back; a cast or transpose a pass inserted (its
location names a node that is neither) stands for that node only where it converts
what the node computed. Walking the values in the order they are computed, the first
one beyond the tolerance (or, in an fp16 engine, holding inf/NaN where the fp32
reference is finite) is the divergence: its op, its source ops (all of a fused
group's) and the ONNX node.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ember.errors import EmberError
from ember.tolerance import compare as within_tolerance
from ember.tolerance import tolerance_for

RUNNERS = ("interpreter", "engine")
REFERENCES = ("onnxruntime", "interpreter")


class CompareError(EmberError):
    """A comparison that cannot be made (no onnxruntime, not an ONNX model, a failed run)."""


@dataclass(frozen=True)
class OutputReport:
    """One output of one Ember run against ONNX Runtime's."""

    run: str                 # "interpreter", "engine (host arena)", "engine (GPU)"
    output: str
    dtype: str
    shape: tuple[int, ...]
    ok: bool
    max_abs: float           # max |a - b| over the places the reference is finite
    max_rel: float           # max_abs / max |ref|
    cosine: float
    bound: float             # rtol * max |ref| + atol
    rtol: float | None
    atol: float | None
    message: str = ""


@dataclass(frozen=True)
class Divergence:
    """The first value of one run that differs from ONNX Runtime's tensor beyond tolerance."""

    run: str
    value: str               # the IR value (its name in the module the run executed)
    op: str                  # the Ember op (`ember.fused` for a fused group)
    kind: str                # "" or the fused group's kind
    sources: tuple[str, ...]  # source ops, "loc (ember.op)": one, or every op of a fused group
    onnx_node: str
    onnx_op_type: str
    tensor: str              # the ONNX tensor compared
    max_abs: float
    max_rel: float
    cosine: float
    bound: float
    overflow: bool           # inf/NaN where the fp32 reference is finite
    message: str
    checked: int             # values compared before it (all matched ONNX Runtime)

    def describe(self) -> str:
        what = (f"fused {self.kind} group ({self.value}) of {len(self.sources)} ops: " + ", ".join(self.sources)
                if self.kind else f"op {self.sources[0]} ({self.value})")
        head = f"{self.run}: first divergence at ONNX node {self.onnx_node!r} ({self.onnx_op_type}, tensor " \
               f"{self.tensor!r}), Ember {what}"
        figures = f"max |diff| {_num(self.max_abs)}, max rel {_num(self.max_rel)}, cosine {_num(self.cosine)}, " \
                  f"bound {_num(self.bound)}"
        why = f"fp16 overflow: {self.message}" if self.overflow else self.message
        return f"{head}\n  {why}\n  {figures}; {self.checked} earlier values matched"


@dataclass
class CompareResult:
    model: str
    precision: str
    device: str
    outputs: list[OutputReport]
    reference: str = "onnxruntime"   # what the runs are judged against: ONNX Runtime, or Ember's interpreter
    divergences: list[Divergence] = field(default_factory=list)
    bisected: list[str] = field(default_factory=list)   # runs bisected
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    def to_json(self) -> dict[str, Any]:
        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return str(x)
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x
        return clean({"model": self.model, "precision": self.precision, "device": self.device,
                      "reference": self.reference, "ok": self.ok,
                      "outputs": [asdict(o) for o in self.outputs],
                      "bisect": {"runs": self.bisected, "divergences": [asdict(d) for d in self.divergences]},
                      "notes": self.notes})


def _num(x: float) -> str:
    return f"{x:.4g}"


# -- ONNX Runtime ----------------------------------------------------------------------------------
def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise CompareError("ember compare needs onnxruntime (pip install onnxruntime)") from None
    return onnxruntime


def onnx_reference(model: Any, feeds: Mapping[str, np.ndarray], *, every_node: bool = False
                   ) -> dict[str, np.ndarray]:
    """ONNX Runtime's outputs for `feeds` (a ModelProto); with `every_node`, every top-level
    node's outputs too (a copy of the model with them made graph outputs)."""
    ort = _onnxruntime()
    import onnx
    if every_node:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        have = {o.name for o in copy.graph.output}
        for node in copy.graph.node:
            for name in node.output:
                if name and name not in have:
                    have.add(name)
                    copy.graph.output.append(onnx.ValueInfoProto(name=name))
        model = copy
    try:
        data = model.SerializeToString()
    except ValueError as err:  # past protobuf's 2 GiB
        raise CompareError(f"the model is too large to hand to ONNX Runtime in memory: {err}") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        names = [o.name for o in session.get_outputs()]
        outs = session.run(names, {k: v for k, v in feeds.items() if k in wanted})
    except Exception as err:  # onnxruntime's own exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CompareError(f"ONNX Runtime failed on the model: {first}") from None
    return {n: np.asarray(a) for n, a in zip(names, outs)}


# -- figures ---------------------------------------------------------------------------------------
def figures(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float, float]:
    """max |a-b| and max |a-b| / max |ref| over the places the reference is finite, and the cosine."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape or a.dtype == object or e.dtype == object:
        return (0.0, 0.0, 1.0) if a.shape == e.shape and np.array_equal(a, e) else (math.inf, math.inf, math.nan)
    x, y = a.astype(np.float64).ravel(), e.astype(np.float64).ravel()
    finite = np.isfinite(y) & np.isfinite(x)
    if not finite.any():
        return 0.0, 0.0, 1.0
    x, y = x[finite], y[finite]
    diff = float(np.max(np.abs(x - y)))
    scale = float(np.max(np.abs(y)))
    rel = diff / scale if scale else (0.0 if diff == 0 else math.inf)
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    cosine = 1.0 if nx == 0 and ny == 0 else (float(np.dot(x, y)) / (nx * ny) if nx and ny else 0.0)
    return diff, rel, cosine


def judge(actual: Any, expected: np.ndarray, *, low: bool, rtol: float | None, atol: float | None
          ) -> tuple[bool, float, str, float | None, float | None]:
    """(ok, bound, message, rtol, atol) by the project's rule. An f16 run's float values are
    judged with f16's tolerance against the fp32 reference (`low`)."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        return False, 0.0, f"shape {list(a.shape)} != ONNX Runtime's {list(e.shape)}", rtol, atol
    floats = _real_float(a.dtype)
    if floats and _real_float(e.dtype) and a.dtype != e.dtype:
        a = a.astype(e.dtype)
    tol = tolerance_for("float16" if low and floats else e.dtype)
    r = rtol if rtol is not None else tol[0] if tol else None
    t = atol if atol is not None else tol[1] if tol else None
    result = within_tolerance(a, e, rtol=r, atol=t)
    return result.ok, result.bound, result.message, r, t


def _real_float(dtype: np.dtype) -> bool:
    """numpy's floats and ml_dtypes' (bf16, the fp8 family...): the types the rule has tolerances for."""
    return tolerance_for(dtype) is not None and np.dtype(dtype).kind != "c"


def overflow(actual: Any, expected: np.ndarray) -> str:
    """'inf at N places, NaN at M' where the run has them and the reference is finite, or ''."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape or not _real_float(a.dtype) or not _real_float(e.dtype):
        return ""
    x = a.astype(np.float64)
    fin = np.isfinite(e)
    inf, nan = int(np.sum(np.isinf(x) & fin)), int(np.sum(np.isnan(x) & fin))
    parts = [f"inf at {inf} places"] * bool(inf) + [f"NaN at {nan} places"] * bool(nan)
    return ", ".join(parts) + (" where the fp32 reference is finite" if parts else "")


# -- running Ember ---------------------------------------------------------------------------------
def _copy(module: Any) -> Any:
    """A module's copy (text and the same weight arrays): exposing values must not touch the caller's."""
    from ember.ir.parser import copy_module
    return copy_module(module)


def expose_all(module: Any) -> tuple[Any, dict[str, tuple[int, int]]]:
    """A copy of `module` whose entry function also returns every tensor result of its top-level
    ops (weights and constants aside); returns it and, per added output, (op index, result index)."""
    from ember.ir.types import TensorType
    work = _copy(module)
    fn = work.main
    outputs, names = list(fn.outputs), list(fn.output_names)
    already = {id(v) for v in outputs}
    where: dict[str, tuple[int, int]] = {}
    for i, op in enumerate(fn.body.ops):
        if not any(v is not None for v in op.operands):
            continue
        for r, v in enumerate(op.results):
            if id(v) in already or not isinstance(v.type, TensorType):
                continue
            name = f"bisect_{i}_{r}"
            outputs.append(v)
            names.append(name)
            where[name] = (i, r)
    for name, v in zip(fn.output_names, fn.outputs):
        i = next((k for k, op in enumerate(fn.body.ops) if v.owner is op), None)
        if i is not None:
            where[name] = (i, v.index)
    fn.body.set_outputs(outputs)
    fn.output_names = names
    return work, where


def interpreter_reference(module: Any, feeds: Mapping[str, np.ndarray], *, every_node: bool = False
                          ) -> dict[str, np.ndarray]:
    """The interpreter's outputs by name; with `every_node`, every top-level value too, by the ONNX
    tensor name the importer gave it: what `onnx_reference` gives, where ONNX Runtime cannot run
    the model (a plugin op in its own domain)."""
    from ember.ir.interpret import interpret
    if not every_node:
        return {n: np.asarray(v) for n, v in interpret(module, feeds).items()}
    ops = list(module.main.body.ops)
    out = {}
    for (i, r), value in interpret_all(module, feeds).items():
        name = ops[i].results[r].name
        if name:
            out[name] = np.asarray(value)
    return out


def interpret_all(module: Any, feeds: Mapping[str, np.ndarray]) -> dict[tuple[int, int], Any]:
    """Every top-level tensor value of the interpreter's run, by (op index, result index)."""
    from ember.ir.interpret import interpret
    work, where = expose_all(module)
    outs = interpret(work, feeds)
    return {where[n]: outs[n] for n in outs if n in where}


def build_engine(module: Any, feeds: Mapping[str, np.ndarray], *, precision: str, pipeline: str = "default",
                 cache_dir: str | None = None) -> Any:
    from ember.build import compile as build
    shapes = {k: np.shape(v) for k, v in feeds.items()}
    return build(module, precision=precision, shapes=shapes, pipeline=pipeline, cache_dir=cache_dir)


def engine_all(engine: Any, feeds: Mapping[str, np.ndarray], device: str, cache_dir: str | None
               ) -> tuple[Any, dict[tuple[int, int], Any]]:
    """The engine's optimized module rebuilt with no passes and every top-level value an output,
    run on `device`: its module and every value by (op index, result index)."""
    work, where = expose_all(engine.module)
    exposed = build_engine(work, feeds, precision="fp32", pipeline="", cache_dir=cache_dir)
    outs = exposed.run(dict(feeds), device=device)
    return engine.module, {where[n]: np.asarray(outs[n]) for n in outs if n in where}


# -- matching Ember values to ONNX tensors ---------------------------------------------------------
@dataclass(frozen=True)
class _Graph:
    """The ONNX graph's top-level nodes: by label, their order, and each tensor's producer."""

    order: dict[str, int]
    nodes: dict[str, Any]
    producer: dict[str, str]

    @staticmethod
    def of(model: Any) -> "_Graph":
        from ember.frontends.onnx.importer import node_label
        order, nodes, producer = {}, {}, {}
        for i, node in enumerate(model.graph.node):
            label = node_label(node, i)
            order[label], nodes[label] = i, node
            for out in node.output:
                if out:
                    producer[out] = label
        return _Graph(order, nodes, producer)


_INSERTED = {"ember.transpose": {"Transpose"}, "ember.cast": {"Cast", "CastLike"}}


def _source_op(op: Any, index: int) -> tuple[Any, int]:
    """The op that computes result `index` of `op` and its result's index: inside a fused body,
    the op yielding it."""
    if op.name == "ember.fused" and op.regions:
        v = op.regions[0].outputs[index]
        if v.defining_op is not None:
            return v.defining_op, v.index
    return op, index


def match(op: Any, index: int, graph: _Graph, reference: Mapping[str, np.ndarray], *, by_name: bool) -> str | None:
    """The ONNX tensor an Ember value computes, or None. By name where the importer's names
    remain (`by_name`: the imported module), else by the location of the op computing it."""
    name = op.results[index].name
    if by_name and name and name in reference and name in graph.producer:
        return name
    src, r = _source_op(op, index)
    labels = [n for n in src.loc.names if n in graph.order] if src.loc else []
    if not labels:
        return None
    label = max(labels, key=graph.order.__getitem__)
    node = graph.nodes[label]
    if not _computes(src, label, node):
        return None
    if r >= len(node.output) or not node.output[r] or node.output[r] not in reference:
        return None
    return node.output[r]


def _computes(op: Any, label: str, node: Any) -> bool:
    """Whether `op`'s result is node `label`'s value. A cast or transpose located at a node of
    another type was inserted by a pass (layout, precision): it is the node's value when it
    converts what the node computed, not when it prepares the node's input."""
    while op.name in _INSERTED and node.op_type not in _INSERTED[op.name]:
        producer = op.operands[0].defining_op if op.operands and op.operands[0] is not None else None
        if producer is None or label not in producer.loc.names:
            return False
        op = producer
    return True


def as_reference_layout(actual: np.ndarray, expected: np.ndarray) -> list[np.ndarray]:
    """`actual` as the reference's layout: itself when the shapes agree, and the channels-last
    form transposed back when its shape is that of the reference's (NHWC for NCHW)."""
    out = []
    if actual.shape == expected.shape:
        out.append(actual)
    rank = actual.ndim
    if rank >= 3:
        perm = (0, rank - 1, *range(1, rank - 1))
        back = np.transpose(actual, perm)
        if back.shape == expected.shape and perm != tuple(range(rank)):
            out.append(back)
    return out


def first_divergence(run: str, module: Any, values: Mapping[tuple[int, int], Any], graph: _Graph,
                     reference: Mapping[str, np.ndarray], *, by_name: bool, low: bool, rtol: float | None,
                     atol: float | None) -> Divergence | None:
    """Walk the top-level values in order; the first that misses its ONNX tensor."""
    checked = 0
    ops = list(module.main.body.ops)
    for i, op in enumerate(ops):
        for r in range(len(op.results)):
            if (i, r) not in values:
                continue
            tensor = match(op, r, graph, reference, by_name=by_name)
            if tensor is None:
                continue
            expected = reference[tensor]
            candidates = as_reference_layout(np.asarray(values[(i, r)]), expected)
            if not candidates:
                continue
            verdicts = [(judge(c, expected, low=low, rtol=rtol, atol=atol), c) for c in candidates]
            if any(verdict[0] for verdict, _ in verdicts):
                checked += 1
                continue
            (_, bound, message, _, _), chosen = min(verdicts, key=lambda v: figures(v[1], expected)[0])
            where = overflow(chosen, expected)
            diff, rel, cos = figures(chosen, expected)
            return Divergence(run=run, value=_value_label(op, r), op=op.name,
                              kind=str(op.attributes.get("kind", "")) if op.name == "ember.fused" else "",
                              sources=_sources(op), onnx_node=graph.producer[tensor],
                              onnx_op_type=graph.nodes[graph.producer[tensor]].op_type, tensor=tensor,
                              max_abs=diff, max_rel=rel, cosine=cos, bound=bound, overflow=bool(where),
                              message=where or message, checked=checked)
    return None


def _value_label(op: Any, r: int) -> str:
    name = op.results[r].name
    return f"%{name}" if name else f"result {r} of {op.name}"


def _sources(op: Any) -> tuple[str, ...]:
    if op.name == "ember.fused" and op.regions:
        return tuple(f"{o.loc} ({o.name})" for o in op.regions[0].ops if o.name != "ember.weight")
    return (f"{op.loc} ({op.name})",)


# -- the comparison --------------------------------------------------------------------------------
def compare_model(path: str | Path, feeds: Mapping[str, np.ndarray], *, fp16: bool = False, device: str = "auto",
                  rtol: float | None = None, atol: float | None = None, bisect: bool = False,
                  runs: Sequence[str] = RUNNERS, cache_dir: str | None = None, module: Any = None,
                  reference: str = "onnxruntime") -> CompareResult:
    """Run the ONNX model at `path` in Ember (`runs`: the interpreter, the engine on `device`)
    and in ONNX Runtime on `feeds`; with `bisect`, find the first divergence of each run that
    missed. `module`: the model already imported (by `ember.load(path)`).

    `reference="interpreter"` judges the engine against Ember's interpreter instead of ONNX
    Runtime, for models ONNX Runtime cannot run (plugin ops in their own domains): the
    interpreter runs each op's reference (a plugin's numpy function), the engine its kernels."""
    import onnx

    from ember.ir.interpret import interpret
    from ember.loader import load

    path = Path(path)
    if path.suffix != ".onnx" or not path.is_file():
        raise CompareError(f"{path}: ember compare takes an .onnx file (ONNX Runtime runs it beside Ember)")
    if reference not in REFERENCES:
        raise CompareError(f"reference {reference!r}: choose {' or '.join(REFERENCES)}")
    if reference == "onnxruntime":
        _onnxruntime()
    elif "engine" not in runs:
        raise CompareError("with the interpreter as the reference there is only the engine to compare")
    else:
        runs = ("engine",)   # the interpreter is the reference, not a run
    unknown_runs = sorted(set(runs) - set(RUNNERS))
    if unknown_runs or not runs:
        raise CompareError(f"runs {list(runs)}: choose from {', '.join(RUNNERS)}")
    module = load(path) if module is None else module
    names = module.main.input_names
    unknown = sorted(set(feeds) - set(names))
    if unknown:
        raise CompareError(f"input {unknown[0]!r}: the model has no such input (its inputs: {', '.join(names)})")
    missing = [n for n in names if n not in feeds]
    if missing:
        raise CompareError(f"inputs {', '.join(missing)} not given")
    proto = onnx.load(str(path))
    judge_by = reference
    try:
        reference = onnx_reference(proto, feeds) if judge_by == "onnxruntime" else interpreter_reference(module, feeds)
    except CompareError as err:
        plugins = _custom_domains(proto)
        if not plugins:
            raise
        raise CompareError(f"{err}\nthe model has nodes in domains ONNX Runtime may not know "
                           f"({', '.join(plugins)}): --reference interpreter judges the engine against Ember's "
                           "interpreter instead") from None
    precision = "fp16" if fp16 else "fp32"
    chosen = _device(device)
    engine = None
    if "engine" in runs:
        engine = build_engine(module, feeds, precision=precision, cache_dir=cache_dir)
        chosen = engine.pick_device(chosen)  # auto: cuda where there is a GPU, with a notice where not
    result = CompareResult(model=str(path), precision=precision, device=chosen, outputs=[], reference=judge_by)
    got: dict[str, dict[str, Any]] = {}
    if "interpreter" in runs:
        got["interpreter"] = interpret(module, feeds)
    if engine is not None:
        got[_engine_run(chosen)] = engine.run(dict(feeds), device=chosen)
    for run, outs in got.items():
        low = fp16 and run != "interpreter"
        for name in module.main.output_names:
            expected = reference.get(name)
            if expected is None:
                raise CompareError(f"output {name!r}: the reference has no output of that name")
            actual = np.asarray(outs[name])
            ok, bound, message, r, a = judge(actual, expected, low=low, rtol=rtol, atol=atol)
            diff, rel, cos = figures(actual, expected)
            result.outputs.append(OutputReport(run=run, output=name, dtype=str(actual.dtype),
                                               shape=tuple(actual.shape), ok=ok, max_abs=diff, max_rel=rel,
                                               cosine=cos, bound=bound, rtol=r, atol=a, message=message))
    if not bisect:
        return result
    failed = [run for run in got if any(not o.ok for o in result.outputs if o.run == run)]
    if not failed:
        return result
    full = (onnx_reference(proto, feeds, every_node=True) if judge_by == "onnxruntime" else
            interpreter_reference(module, feeds, every_node=True))
    graph = _Graph.of(proto)
    for run in failed:
        result.bisected.append(run)
        if run == "interpreter":
            values = interpret_all(module, feeds)
            found = first_divergence(run, module, values, graph, full, by_name=True, low=False, rtol=rtol,
                                     atol=atol)
        else:
            assert engine is not None
            optimized, values = engine_all(engine, feeds, chosen, cache_dir)
            found = first_divergence(run, optimized, values, graph, full, by_name=False, low=fp16, rtol=rtol,
                                     atol=atol)
        if found is None:
            result.notes.append(f"{run}: no value matched to an ONNX tensor diverges before the outputs")
        else:
            result.divergences.append(found)
    return result


def _custom_domains(proto: Any) -> list[str]:
    standard = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}
    return sorted({n.domain for n in proto.graph.node if n.domain not in standard})


def _engine_run(device: str) -> str:
    return "engine (GPU)" if device == "cuda" else "engine (host arena)"


def _device(device: str) -> str:
    """`device` checked before anything is built: cuda only where there is a GPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise CompareError(f"device {device!r}: choose auto, cpu or cuda")
    if device == "cuda":
        from ember.runtime import cuda
        ok, reason = cuda.available()
        if not ok:
            raise CompareError(f"--device cuda: no CUDA GPU here ({reason}); use --device cpu (the host arena)")
    return device


def write_json(result: CompareResult, path: str | Path) -> None:
    from ember.ir.atomic_file import atomic_write
    with atomic_write(path) as f:
        f.write(json.dumps(result.to_json(), indent=2).encode())


__all__ = ["CompareError", "CompareResult", "Divergence", "OutputReport", "compare_model", "expose_all",
           "first_divergence", "onnx_reference", "write_json"]
