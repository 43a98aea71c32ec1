"""The four fuzz targets: a case's files laid out in a fresh folder, the entry point called
under the harness's guard, and what a successful call must satisfy.

A `Case` is a folder's worth of files (bytes, symlinks, FIFOs, subfolders; and
files that sit outside the folder, for the links that lead out of it), the
path handed to the target, and an optional extra check for cases whose
success is prescribed (the legitimate external-data location must load with
the bytes written there).

- onnx: `ember.load(folder/model.onnx)`; success: the module verifies and
  prints.
- ir: `ember.ir.parse(text)`, then `ember.load(folder/x.ir)` with its weights
  file beside it; success: the module verifies, and its printed text parses
  back to the same text.
- savedmodel: `ember.load(folder)`; success: the module verifies.
- engine: `ember.Engine.load(folder/x.engine)`; success: the signature is sane
  (names, Ember element types, non-negative dims) and one run on the host arena
  with random inputs returns or raises an EmberError.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from harness import Failure, Record, run


@dataclass(frozen=True)
class Link:
    """A symlink to `target` (a path; relative ones are taken from the case's folder)."""

    target: str


@dataclass(frozen=True)
class Fifo:
    """A named pipe: opening it for reading waits for a writer that never comes."""


@dataclass(frozen=True)
class Folder:
    """An empty folder."""


@dataclass(frozen=True)
class Case:
    name: str
    files: Mapping[str, Any]                 # relative path -> bytes | str | Link | Fifo | Folder
    entry: str = ""                          # the path the target is given, relative to the folder
    outside: Mapping[str, bytes] = field(default_factory=dict)  # files in a sibling folder, "outside"
    expect: Callable[[Any], str | None] | None = None            # extra check of a successful result
    must_load: bool = False                  # a legitimate file: a refusal is a failure
    reads_outside: bool = False              # it may read its outside files (a cache's symlinked layout)


def lay_out(case: Case, base: Path) -> Path:
    """The case's folder under `base` (fresh), its files written, and its outside files beside it."""
    folder = Path(tempfile.mkdtemp(prefix="case-", dir=base))
    outside = folder.parent / (folder.name + "-outside")
    for rel, data in case.outside.items():
        (outside / rel).parent.mkdir(parents=True, exist_ok=True)
        (outside / rel).write_bytes(data)
    for rel, item in case.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(item, Link):
            target = item.target.replace("{outside}", str(outside))
            os.symlink(target, path)
        elif isinstance(item, Fifo):
            os.mkfifo(path)
        elif isinstance(item, Folder):
            path.mkdir(exist_ok=True)
        elif isinstance(item, str):
            path.write_text(item, encoding="utf-8")
        else:
            path.write_bytes(item)
    return folder


def clean(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(folder.parent / (folder.name + "-outside"), ignore_errors=True)


def _reads(case: Case, folder: Path) -> list[Path]:
    return [folder, folder.parent / (folder.name + "-outside")] if case.reads_outside else [folder]


def _module_ok(module: Any) -> str | None:
    from ember.ir.verify import verify
    verify(module)
    str(module)
    return None


def run_onnx(record: Record, case: Case, base: Path, known: Any = None) -> Failure | None:
    import ember
    folder = lay_out(case, base)
    try:
        def check(module: Any) -> str | None:
            return _module_ok(module) or (case.expect(module) if case.expect else None)
        return run(record, case.name, lambda: ember.load(folder / (case.entry or "model.onnx")), check,
                   reads=_reads(case, folder), known=known, must_succeed=case.must_load)
    finally:
        clean(folder)


def run_ir(record: Record, case: Case, base: Path, known: Any = None) -> Failure | None:
    """Both entry points of the IR: the text parsed, then the file loaded with its weights."""
    import ember
    from ember.ir.parser import parse
    text = case.files.get("x.ir")
    failure = None
    if isinstance(text, str):
        failure = run(record, case.name + " (parse)", lambda: parse(text, source="fuzz.ir"), _round_trip, known=known)
    folder = lay_out(case, base)
    try:
        return run(record, case.name + " (load)", lambda: ember.load(folder / "x.ir"), _round_trip,
                   reads=_reads(case, folder), known=known, must_succeed=case.must_load) or failure
    finally:
        clean(folder)


def _round_trip(module: Any) -> str | None:
    from ember.ir.parser import parse
    _module_ok(module)
    text = str(module)
    again = str(parse(text, source="printed"))
    if again != text:
        first = next(i for i, (a, b) in enumerate(zip(text.splitlines(), again.splitlines()) ) if a != b) \
            if any(a != b for a, b in zip(text.splitlines(), again.splitlines())) else -1
        return f"printing the parsed module again gives other text (line {first + 1})"
    return None


def run_savedmodel(record: Record, case: Case, base: Path, known: Any = None) -> Failure | None:
    import ember
    folder = lay_out(case, base)
    try:
        return run(record, case.name, lambda: ember.load(folder / case.entry if case.entry else folder),
                   _module_ok, reads=_reads(case, folder), known=known, must_succeed=case.must_load)
    finally:
        clean(folder)


def run_engine(record: Record, case: Case, base: Path, known: Any = None) -> Failure | None:
    from ember.runtime import Engine
    folder = lay_out(case, base)

    def call() -> Any:
        engine = Engine.load(folder / "x.engine")
        problem = _signature_problem(engine)
        if problem is None:
            engine.run(_feeds(engine), device="cpu")
        return problem

    try:
        return run(record, case.name, call, lambda problem: problem, reads=_reads(case, folder), known=known,
                   must_succeed=case.must_load)
    finally:
        clean(folder)


def _signature_problem(engine: Any) -> str | None:
    from ember.ir.types import DTYPES
    for spec in [*engine.inputs, *engine.outputs]:
        if not spec.name or spec.dtype not in DTYPES and engine.values[spec.value].kind != "host":
            return f"a loaded engine has the spec {spec}"
        if any(d is not None and (not isinstance(d, int) or d < 0) for d in spec.shape):
            return f"a loaded engine has the spec {spec}"
    return None


def _feeds(engine: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in engine.inputs:
        shape = tuple(1 if d is None else d for d in spec.shape)
        if int(np.prod(shape, dtype=np.int64)) > 1 << 20:
            shape = tuple(0 for _ in shape)  # the engine refuses the shape; no need for megabytes
        feeds[spec.name] = (rng.standard_normal(shape) * 3).astype(spec.np_dtype) if spec.dtype != "str" \
            else np.full(shape, "x", dtype=object)
    return feeds


TARGETS = {"onnx": run_onnx, "ir": run_ir, "savedmodel": run_savedmodel, "engine": run_engine}

__all__ = ["Case", "Link", "Fifo", "Folder", "lay_out", "clean", "TARGETS", "run_onnx", "run_ir", "run_savedmodel",
           "run_engine"]
