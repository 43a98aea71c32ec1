"""The heuristic's tactic for every heavy op of the fixtures, fp32 and fp16, against a committed
table (tactic_table.json): without a GPU to time candidates, the build takes the heuristic's
pick, so a change to the heuristic shows here as a diff to review, not as a silent change of
every engine's kernels.

    python tests/codegen/test_tactic_table.py --update     rewrite the table after a deliberate change
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = Path(__file__).with_name("tactic_table.json")
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "onnx").glob("*.onnx"))


def picks(path: Path, precision: str) -> list[list[Any]]:
    """[op index, op name, source location, tactic, candidates] per heavy launch of the fixture
    after the default pipeline at `precision`, lowered at its inputs' shapes for sm_80 + sm_90."""
    import ember
    import ember.passes
    from ember.build import PRECISIONS, _newest, bind_shapes, with_precision
    from ember.codegen.lower import lower

    module = ember.load(path)
    low = PRECISIONS[precision]
    ember.passes.run_pipeline(module, "default" if low is None else with_precision("default", low))
    with np.load(path.with_suffix(".inputs.npz")) as data:
        shapes = {name: data[name].shape for name in data.files if name in module.main.input_names}
    program = lower(module, bind_shapes(module, shapes), target=_newest(("sm_80", "sm_90")))
    ops = module.main.body.ops
    rows = []
    for step in program.steps:
        if step.kind == "launch" and step.tactic is not None:
            op = ops[step.ops[0]]
            rows.append([step.ops[0], op.name if op.name != "ember.fused" else f"fused:{op.regions[0].ops[0].name}",
                         str(op.loc), step.tactic, list(step.candidates)])
    return rows


def table() -> dict[str, dict[str, list[list[Any]]]]:
    return {p.stem: {precision: picks(p, precision) for precision in ("fp32", "fp16")} for p in FIXTURES}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_the_heuristic_picks_the_committed_tactics(path: Path) -> None:
    expected = json.loads(TABLE.read_text())[path.stem]
    for precision in ("fp32", "fp16"):
        got = json.loads(json.dumps(picks(path, precision)))
        assert got == expected[precision], (
            f"{path.stem} {precision}: the heuristic's picks changed; if deliberate, run "
            f"`python tests/codegen/test_tactic_table.py --update` and commit the diff")


def test_fp16_products_take_tensor_cores() -> None:
    """Every fp16 matmul, gemm and implicit-GEMM convolution in the table is on an mma tile
    (thin-group convolutions keep their direct kernel)."""
    data = json.loads(TABLE.read_text())
    seen = 0
    for name, by_precision in data.items():
        for _, op, where, tactic, candidates in by_precision["fp16"]:
            if any("mma" in c for c in candidates) and tactic != "direct":
                seen += 1
                assert "mma" in tactic, (name, op, where, tactic)
    assert seen >= 20


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    lines = ["{"]
    data = table()
    for i, (name, by_precision) in enumerate(data.items()):
        lines.append(f" {json.dumps(name)}: {{")
        for j, (precision, rows) in enumerate(by_precision.items()):
            body = ",\n".join(f"   {json.dumps(r)}" for r in rows)
            lines.append(f"  {json.dumps(precision)}: [\n{body}\n  ]" + ("," if j < len(by_precision) - 1 else ""))
        lines.append(" }" + ("," if i < len(data) - 1 else ""))
    TABLE.write_text("\n".join(lines) + "\n}\n")   # a row per line: reviewable diffs
    print(f"wrote {TABLE}")
