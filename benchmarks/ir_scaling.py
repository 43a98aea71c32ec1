"""How long the IR's text and rewrite machinery take on large inputs, and how much memory.

    python benchmarks/ir_scaling.py                  # 170k ops, a 2M-element literal, 1k/4k/16k rewrites
    python benchmarks/ir_scaling.py --ops 20000 --dense 200000 --rewrites 1000 4000

Measures, each in a fresh process (so that one measurement's garbage and caches do not
meet the next, and its peak resident memory is its own):
- a module of `--ops` ops (a chain of elementwise ops with locations, one in ten a fused
  op with a two-op region; about 60 bytes of text per op): parse, verify, print, the
  memory the module holds and the peak while parsing (tracemalloc), and `ember verify`
  on the file end to end (wall time, peak resident memory);
- a constant of `--dense` f32 elements: parse (with verify), print, peak memory, and
  `ember verify` end to end;
- the rewrite driver running a rule that never settles (add(a, b) -> add(b, a)) to its
  proportional limit for each of `--rewrites`, and a rule that grows the graph
  (relu(x) -> relu(relu(x))) on a 100-op chain for as many rewrites.

Writes benchmarks/results/ir_scaling.json and .md. Not a timed test: CI runs
tests/ir/test_scaling.py and tests/passes/test_rewrite_driver.py, which count work
deterministically instead. `--python` runs the measurements with another interpreter or
checkout (`PYTHONPATH` pointing at it), for before/after figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

# Runs in a fresh interpreter: prints one JSON object.
_MODULE = """
import gc, json, resource, sys, time, tracemalloc
from ember import ir

def module_text(n):
    lines = ["module @chain {", "  symbol N in [1, 64]", "  func @main(%x: f32[N,64]) -> (y: f32[N,64]) {"]
    prev, prev2 = "x", "x"
    for i in range(n):
        v = f"v{i}"
        if i % 10 == 9:
            lines += [f'    %{v} = ember.fused %{prev}, %{prev2} {{kind = "epilogue"}} : f32[N,64] ({{',
                      f"    ^bb0(%a{i}: f32[N,64], %b{i}: f32[N,64]):",
                      f"      %m{i} = ember.mul %a{i}, %b{i} : f32[N,64]",
                      f"      %t{i} = ember.tanh %m{i} : f32[N,64]",
                      f"      yield %t{i}", f'    }}) loc("block{i}/fused")']
        elif i % 2:
            lines.append(f'    %{v} = ember.relu %{prev} : f32[N,64] loc("block{i}/relu")')
        else:
            lines.append(f'    %{v} = ember.add %{prev}, %{prev2} : f32[N,64] loc("block{i}/add")')
        prev2, prev = prev, v
    lines += [f"    return %{prev}", "  }", "}"]
    return "\\n".join(lines) + "\\n"

n, path = int(sys.argv[1]), sys.argv[2]
text = module_text(n)
open(path, "w").write(text)
out = {"ops": n, "ops_with_regions": None, "text_mb": round(len(text) / 1e6, 2)}
# the first parse in a process builds the parser (lark's grammar analysis)
t = time.perf_counter(); ir.parse(module_text(1)); out["first_parse_s"] = round(time.perf_counter() - t, 3)
t = time.perf_counter(); m = ir.parse(text, verify=False); out["parse_s"] = round(time.perf_counter() - t, 2)
del m
gc.disable()  # the parse's own work, without the collector's walks over the growing module
t = time.perf_counter(); m = ir.parse(text, verify=False); out["parse_no_gc_s"] = round(time.perf_counter() - t, 2)
gc.enable()
out["ops_with_regions"] = sum(1 for _ in m.walk())
t = time.perf_counter(); ir.verify(m); out["verify_s"] = round(time.perf_counter() - t, 2)
t = time.perf_counter(); printed = str(m); out["print_s"] = round(time.perf_counter() - t, 2)
out["print_matches_text"] = printed == text
del m, printed
tracemalloc.start()
m = ir.parse(text, verify=False)
held, peak = tracemalloc.get_traced_memory()
out["module_mb"] = round(held / 1e6, 1); out["parse_peak_mb"] = round(peak / 1e6, 1)
out["bytes_per_op"] = round(held / out["ops_with_regions"])
print(json.dumps(out))
"""

_DENSE = """
import json, sys, time, tracemalloc
import numpy as np
from ember import ir

n, path = int(sys.argv[1]), sys.argv[2]
b = ir.Builder()
x = b.input("x", ir.f32[n])
b.output("y", b.add(x, b.constant(np.random.default_rng(0).standard_normal(n).astype(np.float32))))
m = b.build()
ir.parse_type("f32[1]")  # the parser is built at the first parse: not part of the literal's
t = time.perf_counter(); text = str(m); print_s = time.perf_counter() - t
open(path, "w").write(text)
out = {"elements": n, "text_mb": round(len(text) / 1e6, 2), "print_s": round(print_s, 2)}
del m
t = time.perf_counter(); m = ir.parse(text); out["parse_and_verify_s"] = round(time.perf_counter() - t, 2)
del m
tracemalloc.start()
m = ir.parse(text)
out["parse_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 1e6, 1)
print(json.dumps(out))
"""

_REWRITES = """
import json, sys, time
from ember import ir
from ember.errors import PassError
from ember.passes import P, Rule, RuleSet, apply_rules

x, y = P.var("x"), P.var("y")
swap = RuleSet("swapper", [Rule("swap-add", P.op("ember.add", x, y), lambda m, b: b.add(m.y, m.x))])
grow = RuleSet("grower", [Rule("relu-grows", P.op("ember.relu", x), lambda m, b: b.relu(b.relu(m.x)))])

def chain(n, op):
    b = ir.Builder()
    a, c = b.input("a", ir.f32[4]), b.input("c", ir.f32[4])
    v = a
    for i in range(n):
        v = b.add(v, c) if op == "add" else b.relu(v)
    b.output("y", v)
    return b.build()

def timed(module, rules, limit):
    t = time.perf_counter()
    try:
        apply_rules(module, rules, max_rewrites=limit)
        stopped = False
    except PassError:
        stopped = True
    return round(time.perf_counter() - t, 3), stopped

out = []
for k in map(int, sys.argv[1:]):
    # the proportional limit: 10 rewrites per op (given explicitly, so older checkouts run it too)
    loop_s, loop_stopped = timed(chain(max(k // 10, 1), "add"), swap, k)
    grow_s, grow_stopped = timed(chain(100, "relu"), grow, k)
    out.append({"rewrites": k, "looping_rule_s": loop_s, "looping_rule_graph_ops": max(k // 10, 1),
                "growing_rule_s": grow_s, "growing_rule_final_ops": 100 + k + 1,
                "stopped_with_pass_error": loop_stopped and grow_stopped})
print(json.dumps(out))
"""


def _python(script: str, args: list[str], python: str) -> Any:
    """Run `script` in a fresh interpreter; its JSON output and its peak resident memory."""
    proc = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ember_verify(path: str, python: str) -> dict[str, Any]:
    """`ember verify FILE` end to end: wall time and the process's peak resident memory."""
    script = textwrap.dedent("""
        import json, resource, subprocess, sys, time
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ember", "verify", sys.argv[1]], capture_output=True, text=True)
        wall = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps({"ember_verify_s": round(wall, 2), "ember_verify_peak_rss_mb": round(peak),
                          "ember_verify_rc": proc.returncode, "ember_verify_says": proc.stdout.strip()[:80]
                          or proc.stderr.strip()[:200]}))
    """)
    return _python(script, [path], python)


def measure(ops: int, dense: int, rewrites: list[int], python: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        module_path, dense_path = f"{tmp}/chain.ir", f"{tmp}/dense.ir"
        module = _python(_MODULE, [str(ops), module_path], python)
        module.update(_ember_verify(module_path, python))
        literal = _python(_DENSE, [str(dense), dense_path], python)
        literal.update(_ember_verify(dense_path, python))
    return {"module": module, "dense": literal, "rewrites": _python(_REWRITES, [str(k) for k in rewrites], python)}


def markdown(r: dict[str, Any]) -> str:
    m, d = r["module"], r["dense"]
    lines = [f"# The IR at scale ({r['date']})", "",
             f"Machine: {r['machine']}; load average when started {r['load_average']} (the machine is shared: "
             "figures vary with its load). `python benchmarks/ir_scaling.py` writes this file.", "",
             f"## A module of {m['ops']:,} ops ({m['ops_with_regions']:,} with the ops in regions, "
             f"{m['text_mb']} MB of text)", "",
             "| step | seconds |", "|---|---|",
             f"| parse | {m['parse_s']} |",
             f"| parse, the collector off (the parse's own work) | {m.get('parse_no_gc_s', '-')} |",
             f"| verify | {m['verify_s']} |", f"| print | {m['print_s']} |",
             f"| `ember verify` end to end | {m['ember_verify_s']} |",
             f"| the first parse in a process, of a one-op module | {m.get('first_parse_s', '-')} |", "",
             f"Memory: the module holds {m['module_mb']} MB ({m['bytes_per_op']} bytes per op); the peak while "
             f"parsing is {m['parse_peak_mb']} MB (tracemalloc); `ember verify` peaks at "
             f"{m['ember_verify_peak_rss_mb']} MB resident. Printing gives back the text: "
             f"{'yes' if m['print_matches_text'] else 'NO'}.", "",
             f"## A dense literal of {d['elements']:,} f32 elements ({d['text_mb']} MB of text)", "",
             "| step | seconds |", "|---|---|",
             f"| parse and verify | {d['parse_and_verify_s']} |", f"| print | {d['print_s']} |",
             f"| `ember verify` end to end | {d['ember_verify_s']} |", "",
             f"Peak while parsing: {d['parse_peak_mb']} MB (tracemalloc); `ember verify` peaks at "
             f"{d['ember_verify_peak_rss_mb']} MB resident.", "",
             "## The rewrite driver", "",
             "A rule that never settles (add(a, b) -> add(b, a)) on a graph of a tenth as many ops as rewrites "
             "(so the default limit, 10 per op, is the rewrite count), and a rule that grows the graph "
             "(relu(x) -> relu(relu(x))) from a 100-op chain; both stop with a PassError at the limit.", "",
             "| rewrites | never-settling rule, s | growing rule, s |", "|---|---|---|"]
    lines += [f"| {w['rewrites']:,} | {w['looping_rule_s']} | {w['growing_rule_s']} |" for w in r["rewrites"]]
    before = r.get("before")
    if before:
        bm, bd = before["module"], before["dense"]
        lines += ["", f"## Before ({before['label']})", "",
                  "| measurement | before | now |", "|---|---|---|",
                  f"| parse {m['ops']:,} ops, s | {bm['parse_s']} | {m['parse_s']} |",
                  f"| parse, the collector off, s | {bm.get('parse_no_gc_s', '-')} | {m.get('parse_no_gc_s', '-')} |",
                  f"| first parse in a process (one op), s | {bm.get('first_parse_s', '-')} | "
                  f"{m.get('first_parse_s', '-')} |",
                  f"| verify, s | {bm['verify_s']} | {m['verify_s']} |",
                  f"| print, s | {bm['print_s']} | {m['print_s']} |",
                  f"| parse peak, MB | {bm['parse_peak_mb']} | {m['parse_peak_mb']} |",
                  f"| `ember verify` {m['ops']:,} ops, s | {bm['ember_verify_s']} | {m['ember_verify_s']} |",
                  f"| `ember verify` {m['ops']:,} ops, peak RSS MB | {bm['ember_verify_peak_rss_mb']} | "
                  f"{m['ember_verify_peak_rss_mb']} |",
                  f"| dense {d['elements']:,}: parse and verify, s | {bd['parse_and_verify_s']} | "
                  f"{d['parse_and_verify_s']} |",
                  f"| dense: parse peak, MB | {bd['parse_peak_mb']} | {d['parse_peak_mb']} |",
                  f"| dense: print, s | {bd['print_s']} | {d['print_s']} |"]
        for b, w in zip(before["rewrites"], r["rewrites"]):
            lines.append(f"| {w['rewrites']:,} rewrites (never settling / growing), s | {b['looping_rule_s']} / "
                         f"{b['growing_rule_s']} | {w['looping_rule_s']} / {w['growing_rule_s']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=170_000)
    parser.add_argument("--dense", type=int, default=2_000_000)
    parser.add_argument("--rewrites", type=int, nargs="+", default=[1_000, 4_000, 16_000])
    parser.add_argument("--before", metavar="PYTHONPATH",
                        help="also measure the checkout whose `ember` package this PYTHONPATH entry holds")
    parser.add_argument("--before-label", default="the checkout given by --before")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result: dict[str, Any] = {"date": date.today().isoformat(), "machine": machine,
                              "load_average": [round(x, 1) for x in os.getloadavg()]}
    result.update(measure(args.ops, args.dense, args.rewrites, sys.executable))
    if args.before:
        env_python = sys.executable
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = args.before
        try:
            before = measure(args.ops, args.dense, args.rewrites, env_python)
        finally:
            if old is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = old
        result["before"] = {"label": args.before_label, **before}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ir_scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "ir_scaling.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
