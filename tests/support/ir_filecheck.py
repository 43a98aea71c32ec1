"""Textual pass tests in the manner of MLIR's: a .ir file with a RUN line, cases split
by `// -----`, CHECK lines checked by `filecheck` (PyPI), plus Ember's own checks:

    // RUN: ember opt %s -p canonicalize | filecheck %s
    // FIRES: add-zero              this case must fire the rule (its counter > 0)
    // NOT-FIRES: add-zero          ...or must not (a near miss)

Every case also runs the interpreter on the input and on the output, on fresh
random inputs, and compares them by the project's tolerance rule: a pass
test cannot pass with a pass that changes what the graph computes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ember import ir
from ember.ir.dims import Unknown, evaluate, free_symbols
from ember.ir.types import TensorType
from ember.tolerance import assert_close

RUN = re.compile(r"^//\s*RUN:\s*ember opt %s -p\s+(?:'([^']*)'|\"([^\"]*)\"|(\S+))\s*\|\s*filecheck %s\s*$")


@dataclass
class Case:
    path: Path
    index: int
    text: str
    pipeline: str
    fires: list[str]
    not_fires: list[str]

    @property
    def id(self) -> str:
        return f"{self.path.name}#{self.index}"


def cases(path: Path) -> list[Case]:
    text = path.read_text()
    pipeline = None
    for line in text.splitlines():
        m = RUN.match(line.strip())
        if m:
            pipeline = next(g for g in m.groups() if g is not None)
            break
    if pipeline is None:
        raise ValueError(f"{path}: no '// RUN: ember opt %s -p PIPELINE | filecheck %s' line")
    out = []
    for k, chunk in enumerate(re.split(r"^// -----\s*$", text, flags=re.M)):
        fires = re.findall(r"^//\s*FIRES:\s*(\S+)", chunk, flags=re.M)
        not_fires = re.findall(r"^//\s*NOT-FIRES:\s*(\S+)", chunk, flags=re.M)
        out.append(Case(path, k, chunk, pipeline, fires, not_fires))
    return out


def filecheck_command() -> list[str]:
    exe = shutil.which("filecheck", path=str(Path(sys.executable).parent)) or shutil.which("filecheck")
    return [exe] if exe else [sys.executable, "-m", "filecheck"]


def random_inputs(module: ir.Module, seed: int) -> dict[str, np.ndarray] | None:
    rng = np.random.default_rng(seed)
    env: dict[str, int] = {}
    feeds = {}
    for name, v in zip(module.main.input_names, module.main.inputs):
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None or any(isinstance(d, Unknown) for d in t.shape):
            return None
        for d in t.shape:
            for s in free_symbols(d):
                env.setdefault(s, int(rng.integers(1, 4)))
        shape = [evaluate(d, env) for d in t.shape]
        if t.dtype.is_float:
            feeds[name] = rng.uniform(-2, 2, shape).astype(t.dtype.np_dtype)
        elif t.dtype.kind == "bool":
            feeds[name] = rng.random(shape) < 0.5
        elif t.dtype.is_int:
            feeds[name] = rng.integers(0, 5, shape).astype(t.dtype.np_dtype)
        else:
            return None
    return feeds


def run_case(case: Case) -> Counter:
    """Run the case's pipeline, FileCheck the output, compare interpreters; returns rule counts."""
    import ember.passes.registry  # noqa: F401
    from ember.passes.manager import PassManager

    before = ir.parse(case.text, source=case.id)
    after = ir.parse(case.text, source=case.id)
    rng = np.random.default_rng(7)
    for name, w in before.weights.items():  # weights declared in text get data, the same in both
        data = rng.uniform(-1, 1, w.type.static_shape).astype(w.type.dtype.np_dtype) if w.type.dtype.is_float \
            else rng.integers(0, 4, w.type.static_shape).astype(w.type.dtype.np_dtype)
        w.data = data
        after.weights[name].data = data
    records = PassManager(case.pipeline).run(after)
    fired: Counter = Counter()
    for r in records:
        fired.update(r.stats)
    output = str(after)
    check = subprocess.run([*filecheck_command(), "--input-file", "-", _check_file(case)], input=output,
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise AssertionError(f"{case.id}: FileCheck failed:\n{check.stdout}{check.stderr}\n--- output:\n{output}")
    for rule in case.fires:
        assert fired[rule] > 0, f"{case.id}: rule {rule} did not fire (fired: {dict(fired)})"
    for rule in case.not_fires:
        assert fired[rule] == 0, f"{case.id}: rule {rule} fired {fired[rule]} times in a near miss"
    for seed in (0, 1):
        feeds = random_inputs(before, seed)
        if feeds is None:
            break
        want, got = ir.interpret(before, feeds), ir.interpret(after, feeds)
        for name in want:
            assert_close(np.asarray(got[name]), np.asarray(want[name]), what=f"{case.id} output {name}")
    return fired


_CHECK_FILES: dict[str, str] = {}


def _check_file(case: Case) -> str:
    import tempfile
    if case.id not in _CHECK_FILES:
        f = tempfile.NamedTemporaryFile("w", suffix=".ir", delete=False)
        f.write(case.text)
        f.close()
        _CHECK_FILES[case.id] = f.name
    return _CHECK_FILES[case.id]
