"""`ember inspect`: the graph picture (--graph .svg/.html/.dot, Graphviz or Ember's own layout),
the JSON dump (--json) and the engine's layer table with precision, bytes and kernel times
(issue 14). One small engine (the README's CNN block: three conv+bn+relu epilogue fusions, a
transpose and a pooling reduction), compiled once into the run's kernel cache."""

from __future__ import annotations

import json
import re
import shutil
import sys
import xml.etree.ElementTree as ET

import pytest

from ember.cli import main
from ember.ir.examples import cnn_block
from ember.ir.program import LaunchStep

SVG = "{http://www.w3.org/2000/svg}"
# The kernels of the CNN block's engine, in step order: one cluster each.
KINDS = ["transpose", "conv_direct", "conv_direct", "conv_direct", "reduce"]


@pytest.fixture(scope="module")
def built(cnn_block_engine):
    """The CNN block as .ir and as an engine for N in 1..4 (OPT 2) (tests/conftest.py), and the loaded engine."""
    from ember.runtime import Engine
    model, engine = cnn_block_engine
    return model, engine, Engine.load(engine)


@pytest.fixture()
def no_graphviz(monkeypatch):
    """As on a machine without Graphviz: Ember's own layout."""
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "dot" else real(name, *a, **k))


def launch_names(engine) -> list[str]:
    """Each step's kernel as the graph names its cluster: a kernel launched again is numbered from 2."""
    seen: dict[str, int] = {}
    names = []
    for s in engine.steps:
        seen[s.kernel] = seen.get(s.kernel, 0) + 1
        names.append(s.kernel + (f"_{seen[s.kernel]}" if seen[s.kernel] > 1 else ""))
    return names


def kernel_of(engine) -> dict[int, str]:
    """Op index -> the launch (as launch_names names it) that computes it."""
    return {i: name for s, name in zip(engine.steps, launch_names(engine)) if isinstance(s, LaunchStep)
            for i in s.ops}


def clusters(root: ET.Element, prefix: str) -> dict[str, ET.Element]:
    return {g.get("id"): g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith(prefix)}


def rect(el: ET.Element) -> tuple[float, float, float, float]:
    r = el.find(f"{SVG}rect")
    return tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))  # type: ignore[return-value]


def test_engine_graph_svg_draws_one_cluster_per_kernel_with_its_ops(built, tmp_path, no_graphviz, capsys):
    _, engine_path, engine = built
    conv = next(s.kernel for s in engine.steps if isinstance(s, LaunchStep) and s.kernel.startswith("conv"))
    times = tmp_path / "times.json"
    launches = sum(s.kernel == conv for s in engine.steps)  # the kernel's time, shared by its launches
    times.write_text(json.dumps({"kernels": {conv: 0.5 * launches, engine.steps[-1].kernel: 0.125}}))
    out = tmp_path / "g.svg"
    assert main(["inspect", str(engine_path), "--graph", str(out), "--layer-times", str(times)]) == 0
    assert "Ember's layout" in capsys.readouterr().out
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG}svg"
    found = clusters(root, "cluster_kernel_")
    assert sorted(found) == sorted(f"cluster_kernel_{name}" for name in launch_names(engine))
    assert [s.kernel.rsplit("_", 1)[0] for s in engine.steps] == KINDS
    fn = engine.module.main
    fused = [i for i, op in enumerate(fn.body.ops) if op.name == "ember.fused"]
    assert len(fused) == 3 and sum("fused" in g.get("class").split() for g in found.values()) == 3
    nodes = {g.get("id"): g for g in root.iter(f"{SVG}g") if "node" in (g.get("class") or "").split()}
    kernels = kernel_of(engine)
    for i in fused:  # every body op inside its kernel's cluster, drawn within its rectangle
        cid = f"cluster_kernel_{kernels[i]}"
        cx, cy, cw, ch = rect(found[cid])
        body = fn.body.ops[i].regions[0].ops
        for j, op in enumerate(body):
            node = nodes[f"n{i}_{j}"]
            assert node.get("data-cluster") == cid
            x, y, w, h = rect(node)
            assert cx <= x and x + w <= cx + cw and cy <= y and y + h <= cy + ch
            title = node.find(f"{SVG}title").text
            assert op.name in title and str(op.loc) in title and str(op.results[0].type) in title
    # kernel times: the slowest cluster red with its time in the label, an untimed one grey
    timed = found[f"cluster_kernel_{conv}"]
    assert timed.find(f"{SVG}rect").get("fill") == "#ff0000" and "0.5 ms" in timed.find(f"{SVG}title").text
    reduce_fill = found[f"cluster_kernel_{engine.steps[-1].kernel}"].find(f"{SVG}rect").get("fill")
    assert reduce_fill == "#ffbfbf"  # a quarter of the slowest: round(255 * 3/4) = 0xbf green and blue
    untimed = found[f"cluster_kernel_{engine.steps[0].kernel}"].find(f"{SVG}rect").get("fill")
    assert not untimed.startswith("#ff")
    labels = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "0.5 ms" in labels and "0.125 ms" in labels
    # edges: the residual read of the first block's output reaches the last block's add
    edges = [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert len(edges) == 12 and sum(t.endswith("f32[N,32,32,8]") for t in edges) == 8


def test_engine_graph_html_is_one_self_contained_page(built, tmp_path, no_graphviz):
    _, engine_path, _ = built
    out = tmp_path / "g.html"
    assert main(["inspect", str(engine_path), "--graph", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and len(clusters(root, "cluster_kernel_")) == len(KINDS)
    assert_self_contained(page)


def assert_self_contained(page: str) -> None:
    """Nothing fetched: no scripts, stylesheets, images or links; URLs only as XML namespaces."""
    lowered = page.lower()
    for bad in ("<script", "<link", "<img", "<iframe", "src=", "href=", "@import"):
        assert bad not in lowered, bad
    assert all(u.startswith("url(#") for u in re.findall(r"url\([^)]*", lowered))
    for attr in re.findall(r'([\w:-]+)="https?:', page):
        assert attr.startswith("xmlns"), attr


def test_engine_graph_dot_and_the_dot_alias(built, tmp_path):
    _, engine_path, engine = built
    a, b = tmp_path / "g.dot", tmp_path / "g.gv"
    assert main(["inspect", str(engine_path), "--graph", str(a)]) == 0
    assert main(["inspect", str(engine_path), "--dot", str(b)]) == 0  # DOT whatever the name
    text = a.read_text()
    assert text.startswith('digraph "main" {') and b.read_text() == text
    assert sorted(re.findall(r'subgraph "(cluster_kernel_\w+)"', text)) == \
        sorted(f"cluster_kernel_{name}" for name in launch_names(engine))


def test_graph_goes_through_graphviz_when_dot_is_installed(built, tmp_path, monkeypatch):
    """With `dot` on the PATH the SVG is Graphviz's (here a stand-in that records what it was
    given); the page embeds it without its XML prolog and doctype."""
    _, engine_path, _ = built
    fake = tmp_path / "dot"
    fake.write_text(f"#!{sys.executable}\n"
                    "import sys, pathlib\n"
                    f"pathlib.Path({str(tmp_path / 'dot.args')!r}).write_text(' '.join(sys.argv[1:]))\n"
                    f"pathlib.Path({str(tmp_path / 'dot.in')!r}).write_text(sys.stdin.read())\n"
                    "sys.stdout.write('<?xml version=\"1.0\"?>\\n<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" '\n"
                    "                 '\"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\\n'\n"
                    "                 '<svg xmlns=\"http://www.w3.org/2000/svg\"><g id=\"from-dot\"/></svg>\\n')\n")
    fake.chmod(0o755)
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: str(fake) if name == "dot" else real(name, *a, **k))
    assert main(["inspect", str(engine_path), "--graph", str(tmp_path / "g.svg")]) == 0
    assert (tmp_path / "dot.args").read_text() == "-Tsvg"
    assert "from-dot" in (tmp_path / "g.svg").read_text()
    sent = (tmp_path / "dot.in").read_text()
    assert len(re.findall(r'subgraph "cluster_kernel_', sent)) == len(KINDS)
    assert main(["inspect", str(engine_path), "--graph", str(tmp_path / "g.html")]) == 0
    page = (tmp_path / "g.html").read_text()
    assert "from-dot" in page and "<!DOCTYPE svg" not in page and "<?xml" not in page
    assert_self_contained(page)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (the stand-in test covers the call)")
def test_graphviz_svg_keeps_the_cluster_ids(built, tmp_path):
    _, engine_path, _ = built
    assert main(["inspect", str(engine_path), "--graph", str(tmp_path / "g.svg")]) == 0
    root = ET.parse(tmp_path / "g.svg").getroot()
    found = clusters(root, "cluster_kernel_")
    assert len(found) == len(KINDS) and sum("fused" in g.get("class").split() for g in found.values()) == 3


def test_model_graph_is_the_optimized_one_unless_no_opt(built, tmp_path, no_graphviz):
    model, _, _ = built
    assert main(["inspect", str(model), "--graph", str(tmp_path / "opt.svg")]) == 0
    root = ET.parse(tmp_path / "opt.svg").getroot()
    fused = clusters(root, "cluster_fused_")
    assert len(fused) == 3 and all(g.get("class") == "cluster fused" for g in fused.values())
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert not any("ember.batch_norm" in t for t in titles)  # folded into the convolutions
    assert main(["inspect", str(model), "--graph", str(tmp_path / "raw.svg"), "--no-opt"]) == 0
    root = ET.parse(tmp_path / "raw.svg").getroot()
    assert not clusters(root, "cluster_")
    ops = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node op"]
    assert len(ops) == 12  # 3 conv, 3 batch_norm, 3 relu, add, pool, flatten; weights left out
    assert len(ops) + 15 == sum(1 for _ in cnn_block().walk())


def test_engine_json_lists_every_step(built, tmp_path, capsys):
    _, engine_path, engine = built
    out = tmp_path / "e.json"
    assert main(["inspect", str(engine_path), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["kind"] == "engine" and data["precision"] == "fp32" and data["targets"] == ["sm_80"]
    assert data["symbols"] == {"N": 2}
    assert data["inputs"] == [{"name": "image", "dtype": "f32", "dims": ["N", "3", "32", "32"],
                               "shape": [2, 3, 32, 32], "ranges": [[1, 4], [3, 3], [32, 32], [32, 32]]}]
    assert data["outputs"][0]["name"] == "features" and data["outputs"][0]["dims"] == ["N", "8"]
    assert data["profiles"] == [{"inputs": [{"name": "image", "min": [1, 3, 32, 32], "opt": [2, 3, 32, 32],
                                             "max": [4, 3, 32, 32]}], "symbols": {"N": [1, 2, 4]}}]
    assert data["memory"]["arena_bytes"] == engine.plan.arena_bytes > 0
    assert data["memory"]["weights"] == 6 and data["memory"]["weights_bytes"] == 3 * 32 + 4 * (216 + 2 * 576)
    capsys.readouterr()
    layers = data["layers"]
    assert [(x["kind"], x["kernel"]) for x in layers] == [("launch", s.kernel) for s in engine.steps]
    assert [[o["index"] for o in x["ops"]] for x in layers] == [list(s.ops) for s in engine.steps]
    first_conv = layers[1]
    assert first_conv["ops"][0]["op"] == "ember.fused" and first_conv["ops"][0]["body"] == ["ember.conv", "ember.relu"]
    assert first_conv["ops"][0]["loc"] == ["stem/conv", "stem/bn", "stem/relu"]
    assert first_conv["ops"][0]["names"] == ["%1"] and first_conv["precision"] == ["f32"]
    assert first_conv["tactic"] == "direct" and "direct" in first_conv["candidates"]
    assert first_conv["grid"] == ["32*N", 1, 1] and first_conv["grid_opt"] == [64, 1, 1]
    # at OPT (N=2): reads the NHWC image and the folded weight and bias, writes the activation
    assert first_conv["read_bytes"] == 2 * 32 * 32 * 3 * 4 + 8 * 27 * 4 + 8 * 4
    assert first_conv["written_bytes"] == 2 * 32 * 32 * 8 * 4
    assert first_conv["bytes"] == first_conv["read_bytes"] + first_conv["written_bytes"]
    assert layers[0]["bytes"] == 2 * (2 * 3 * 32 * 32 * 4)  # the transpose: the image in, the same bytes out
    assert main(["inspect", str(engine_path), "--json", "-"]) == 0  # standard output: the JSON alone
    assert json.loads(capsys.readouterr().out)["layers"] == layers


def test_engine_table_has_precision_bytes_and_times(built, tmp_path, capsys):
    _, engine_path, engine = built
    assert main(["inspect", str(engine_path)]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "bytes" in out and "88.9 KiB" in out  # 91,008 bytes: the first conv at N=2
    assert " ms " not in out
    times = tmp_path / "t.json"
    kernel = engine.steps[1].kernel  # a kernel's time is shared by the launches of it
    times.write_text(json.dumps({"kernels": {kernel: 0.25}, "device": "anything"}))
    assert main(["inspect", str(engine_path), "--layer-times", str(times)]) == 0
    out = capsys.readouterr().out
    launches = sum(getattr(s, "kernel", None) == kernel for s in engine.steps)
    assert "ms" in out and f"{0.25 / launches:g}" in out


def test_model_json(built, tmp_path):
    model, _, _ = built
    out = tmp_path / "m.json"
    assert main(["inspect", str(model), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    fn, = data["functions"]
    assert data["kind"] == "model" and data["symbols"] == {"N": {"min": 1, "max": 64}}
    assert fn["inputs"] == [{"name": "image", "type": "f32[N,3,32,32]", "dtype": "f32", "dims": ["N", 3, 32, 32]}]
    assert fn["outputs"][0]["type"] == "f32[N,8]"
    assert fn["ops"]["ember.conv"] == 3 and fn["ops"]["ember.weight"] == 15 and sum(fn["ops"].values()) == 27
    assert data["weights"]["count"] == 15 and data["weights"]["with_data"] == 15 and data["weights"]["bytes"] > 0


@pytest.mark.parametrize("args, message", [
    (["{engine}", "--graph", "{tmp}/g.png"], "name a .svg, .html, .dot file"),
    (["{engine}", "--graph", "{tmp}/g.svg", "--dot", "{tmp}/g.dot"], "not both"),
    (["{model}", "--layer-times", "{tmp}/t.json"], "kernel times belong to an engine"),
    (["{engine}", "--layer-times", "{tmp}/bad.json"], "is not in this engine"),
    (["{engine}", "--layer-times", "{tmp}/neg.json"], "numbers >= 0"),
    (["{engine}", "--graph", "{tmp}/exists.svg"], "the file exists; pass --force"),
    (["{engine}", "--no-opt", "--graph", "{tmp}/g.svg"], "--no-opt"),
])
def test_inspect_errors_are_one_line(built, tmp_path, capsys, args, message):
    model, engine, _ = built
    (tmp_path / "bad.json").write_text(json.dumps({"kernels": {"no_such_kernel": 1.0}}))
    (tmp_path / "neg.json").write_text(json.dumps({"kernels": {"x": -1}}))
    (tmp_path / "t.json").write_text(json.dumps({"kernels": {}}))
    (tmp_path / "exists.svg").write_text("mine")
    argv = [a.format(engine=engine, model=model, tmp=tmp_path) for a in args]
    assert main(["inspect", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "exists.svg").read_text() == "mine" and not (tmp_path / "g.svg").exists()
