"""The ONNX backend test suite (onnx.backend.test) run against Ember.

`cases()` lists every case by group; `run_case(group, name)` runs one and
returns (status, message) where status is "pass", "fail" or "skip". As a
script it runs them all (in parallel) and writes a JSON report:

    python tests/support/onnx_suite.py [--jobs 2] [--filter REGEX] [-o report.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
import unittest
import warnings
from functools import lru_cache

GROUPS = {
    "OnnxBackendNodeModelTest": "node",
    "OnnxBackendPyTorchConvertedModelTest": "pytorch-converted",
    "OnnxBackendPyTorchOperatorModelTest": "pytorch-operator",
    "OnnxBackendSimpleModelTest": "simple",
    "OnnxBackendRealModelTest": "real",
}


@lru_cache(maxsize=1)
def _classes() -> dict[str, type]:
    warnings.filterwarnings("ignore")
    import onnx.backend.test

    from ember.frontends.onnx.backend import EmberBackend
    suite = onnx.backend.test.BackendTest(EmberBackend, __name__)
    return {GROUPS[k]: v for k, v in suite.test_cases.items() if k in GROUPS}


def cases() -> list[tuple[str, str]]:
    """(group, case name) for every CPU case; names drop the `_cpu` suffix."""
    out = []
    for group, cls in _classes().items():
        for attr in sorted(dir(cls)):
            if attr.startswith("test_") and attr.endswith("_cpu"):
                out.append((group, attr[: -len("_cpu")]))
    return out


def run_case(group: str, name: str) -> tuple[str, str]:
    cls = _classes()[group]
    method = f"{name}_cpu"
    test = cls(method)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(test, method)()
    except unittest.SkipTest as err:
        return "skip", str(err)
    except Exception as err:  # noqa: BLE001  (every failure is a result here)
        text = f"{type(err).__name__}: {err}".strip()
        if not text.startswith(("AssertionError", "StaticInputsRequired", "UnsupportedOpError", "OnnxImportError",
                                "InterpretError", "VerifyError", "ShapeError")):
            text += "\n" + "".join(traceback.format_exception(err)[-3:])
        return "fail", text
    return "pass", ""


def _worker(item: tuple[str, str]) -> tuple[str, str, str, str, float]:
    t = time.time()
    status, message = run_case(*item)
    return item[0], item[1], status, message, time.time() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--filter", default="")
    parser.add_argument("-o", "--output", default="/tmp/onnx_suite.json")
    args = parser.parse_args()
    items = [c for c in cases() if re.search(args.filter, f"{c[0]}/{c[1]}")]
    start = time.time()
    if args.jobs > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(args.jobs) as pool:
            results = pool.map(_worker, items, chunksize=8)
    else:
        results = [_worker(i) for i in items]
    report = [{"group": g, "name": n, "status": s, "message": m, "seconds": round(t, 3)}
              for g, n, s, m, t in results]
    json.dump(report, open(args.output, "w"), indent=1)
    by_group: dict[str, list[int]] = {}
    for r in report:
        counts = by_group.setdefault(r["group"], [0, 0])
        counts[0] += r["status"] == "pass"
        counts[1] += 1
    for g, (p, n) in by_group.items():
        print(f"{g}: {p}/{n} pass")
    print(f"{time.time() - start:.1f}s; report in {args.output}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    main()
