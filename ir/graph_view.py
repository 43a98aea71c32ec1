"""Pictures of a function's dataflow, with fused groups and kernel launches drawn as clusters.

`model_view(fn)` draws a function with each `ember.fused` op opened up: a cluster (SVG id
`cluster_fused_<k>`, class `cluster fused`) holding the ops of its body. `engine_view(fn,
program)` draws an engine's IR with one cluster per kernel launch (id
`cluster_kernel_<kernel>`, class `cluster kernel`, plus `fused` where it computes a fused op):
the ops its launch steps cover (`step.ops`, indices into the entry function's ops); launches
that compute the same ops share a cluster. With kernel times (`step_ms`, per step index), a
cluster's fill goes from white (no time) to red (the slowest) and its label gives the time.

A view renders as Graphviz DOT (`to_dot`), as SVG (`to_svg`: Graphviz's `dot -Tsvg` where
the caller names the executable, else Ember's own layered layout, networkx's topological
generations for the rows), and as a self-contained HTML page around that SVG (`to_html`: no
scripts, nothing fetched; every node's tooltip gives its op, types and location).

Weights and constants are left out of the picture (they would double its nodes); an op's
tooltip names the weights it reads. Ops without a node of their own in an engine (views,
folded values) are drawn like any op; host steps' ops are dashed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from html import escape
from typing import Mapping, Sequence

import networkx as nx

from ember.errors import EmberError
from ember.ir.core import Block, Function, Operation, Value
from ember.ir.printer import name_values
from ember.ir.program import HostStep, LaunchStep, Program

HIDDEN = ("ember.weight", "ember.constant")
FORMATS = (".svg", ".html", ".dot")


@dataclass(frozen=True)
class Node:
    """A box: an input, an output or an op (`kind`: input | output | op | host)."""

    id: str
    label: tuple[str, ...]
    title: str
    kind: str = "op"


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    title: str


@dataclass(frozen=True)
class Cluster:
    """A group of nodes drawn inside one rounded rectangle: a fused op's body, or a kernel's ops."""

    id: str
    classes: tuple[str, ...]
    label: tuple[str, ...]
    title: str
    members: tuple[str, ...]
    ms: float | None = None


@dataclass(frozen=True)
class View:
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    clusters: tuple[Cluster, ...]

    @property
    def max_ms(self) -> float:
        return max((c.ms for c in self.clusters if c.ms is not None), default=0.0)


# -- building views ---------------------------------------------------------------------------------
class _Drawing:
    """Nodes and edges of a function, fused ops opened up into their bodies."""

    def __init__(self, fn: Function, kinds: Mapping[int, str] | None = None,
                 notes: Mapping[int, str] | None = None, keep: set[int] | frozenset[int] = frozenset()) -> None:
        self.namer = name_values(fn)
        self.nodes: list[Node] = []
        self.edges: dict[tuple[str, str], Edge] = {}
        self.producer: dict[Value, str | None] = {}  # None: a hidden op (a weight, a constant)
        self.hidden: dict[Value, str] = {}            # what a hidden value is, for tooltips
        self.outer: dict[Value, Value] = {}           # a fused body's argument -> the value it is
        self.members: dict[int, list[str]] = {}       # top-level op index -> its nodes
        kinds, notes = kinds or {}, notes or {}
        for k, (name, v) in enumerate(zip(fn.input_names, fn.inputs)):
            self._node(Node(f"in{k}", (name, _short_type(v)), f"input {name}: {v.type}", "input"), v)
        for i, op in enumerate(fn.body.ops):
            self.members[i] = self._op(op, f"n{i}", kinds.get(i, "op"), notes.get(i, ""), i in keep)
        for k, (name, v) in enumerate(zip(fn.output_names, fn.outputs)):
            self._node(Node(f"out{k}", (name, _short_type(v)), f"output {name}: {v.type}", "output"), None)
            self._edge(v, f"out{k}")

    def _node(self, node: Node, value: Value | None) -> None:
        self.nodes.append(node)
        if value is not None:
            self.producer[value] = node.id

    def _edge(self, v: Value, dst: str) -> None:
        src = self.producer.get(v)
        if src is not None and (src, dst) not in self.edges:
            v = self.outer.get(v, v)
            self.edges[(src, dst)] = Edge(src, dst, f"{self.namer.ref(v)}: {v.type}")

    def _op(self, op: Operation, node_id: str, kind: str, note: str, keep: bool = False) -> list[str]:
        if op.name in HIDDEN and not keep:
            for r in op.results:
                self.producer[r] = None
                name = op.attributes.get("name")
                self.hidden[r] = f"weight {name}" if name else f"constant {self.namer.ref(r)}"
            return []
        if op.name == "ember.fused" and op.regions:
            return self._fused(op, op.regions[0], node_id, kind, note)
        self._node(Node(node_id, _label(op), self._title(op, note), kind), None)
        for v in op.reads():
            self._edge(v, node_id)
        for r in op.results:
            self.producer[r] = node_id
        return [node_id]

    def _fused(self, op: Operation, body: Block, node_id: str, kind: str, note: str) -> list[str]:
        for arg, v in zip(body.args, op.operands):
            if v is not None:
                self.producer[arg] = self.producer.get(v)
                self.outer[arg] = self.outer.get(v, v)
                if v in self.hidden:
                    self.hidden[arg] = self.hidden[v]
        made = []
        for j, inner in enumerate(body.ops):
            made += self._op(inner, f"{node_id}_{j}", kind, note)
        for r, out in zip(op.results, body.outputs):
            self.producer[r] = self.producer.get(out)
        return made

    def _title(self, op: Operation, note: str) -> str:
        lines = [f"{', '.join(self.namer.ref(r) for r in op.results) or '(no results)'} = {op.name}"]
        operands = [v for v in op.operands if v is not None]
        if operands:
            lines.append("operands: " + ", ".join(str(v.type) for v in operands))
        if op.results:
            lines.append("results: " + ", ".join(str(r.type) for r in op.results))
        weights = [self.hidden[v] for v in operands if v in self.hidden]
        if weights:
            lines.append("reads " + ", ".join(weights))
        lines.append(f"loc: {op.loc}")
        if note:
            lines.append(note)
        return "\n".join(lines)


def _short_type(v: Value, limit: int = 40) -> str:
    text = str(v.type)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _label(op: Operation) -> tuple[str, ...]:
    name = op.name.removeprefix("ember.")
    if not op.results:
        return (name,)
    more = f" +{len(op.results) - 1}" if len(op.results) > 1 else ""
    return name, _short_type(op.results[0]) + more


def _cluster_id(base: str, used: set[str]) -> str:
    key, k = base, 2
    while key in used:
        key, k = f"{base}_{k}", k + 1
    used.add(key)
    return key


def model_view(fn: Function) -> View:
    """`fn` with each fused op drawn as a cluster of its body's ops."""
    d = _Drawing(fn)
    clusters, used = [], set()
    for i, op in enumerate(fn.body.ops):
        if op.name != "ember.fused" or not op.regions or not d.members[i]:
            continue
        kind = op.attributes.get("kind", "elementwise")
        clusters.append(Cluster(_cluster_id(f"cluster_fused_{len(clusters)}", used), ("fused",),
                                (f"fused ({kind})",), f"ember.fused {{kind = {kind}}}\nloc: {op.loc}",
                                tuple(d.members[i])))
    return View(fn.name, tuple(d.nodes), tuple(d.edges.values()), tuple(clusters))


def engine_view(fn: Function, program: Program, step_ms: Mapping[int, float] | None = None) -> View:
    """An engine's entry function with one cluster per kernel launch (launches of the same ops
    share one); `step_ms` gives launch steps' times (ms, by step index)."""
    step_ms = step_ms or {}
    kinds: dict[int, str] = {}
    notes: dict[int, str] = {}
    groups: list[list[tuple[int, LaunchStep]]] = []  # the launch steps of each cluster
    group_of: dict[int, int] = {}                     # op index -> its cluster
    for t, step in enumerate(program.steps):
        if isinstance(step, HostStep):
            for i in step.ops:
                kinds[i], notes[i] = "host", f"runs on the host: {step.reason}" if step.reason else "runs on the host"
        if not isinstance(step, LaunchStep):
            continue
        g = next((group_of[i] for i in step.ops if i in group_of), len(groups))
        if g == len(groups):
            groups.append([])
        groups[g].append((t, step))
        for i in step.ops:
            group_of.setdefault(i, g)
    d = _Drawing(fn, kinds, notes, keep=set(group_of))
    ops = fn.body.ops
    clusters: list[Cluster] = []
    used: set[str] = set()
    for g, launches in enumerate(groups):
        covered = sorted(i for i, gg in group_of.items() if gg == g)
        members = tuple(n for i in covered for n in d.members[i])
        if not members:
            continue
        kernels = list(dict.fromkeys(s.kernel for _, s in launches))
        timed = [step_ms[t] for t, _ in launches if t in step_ms]
        ms = sum(timed) if timed else None
        tactic = next((s.tactic for _, s in launches if s.tactic), None)
        label = [kernels[0] + (f" +{len(kernels) - 1}" if len(kernels) > 1 else "")]
        title = [f"step {t}: {s.kernel} grid {'x'.join(map(str, s.grid))} block {'x'.join(map(str, s.block))}"
                 for t, s in launches]
        if tactic:
            label.append(tactic)
            title.append(f"tactic {tactic}")
        if ms is not None:
            label.append(f"{ms:.4g} ms")
            title.append(f"{ms:.4g} ms")
        locs = dict.fromkeys(n for i in covered for n in ops[i].loc.names)
        title.append("loc: " + (", ".join(locs) or "<unknown>"))
        fused = any(ops[i].name == "ember.fused" and ops[i].regions for i in covered)
        clusters.append(Cluster(_cluster_id(f"cluster_kernel_{kernels[0]}", used),
                                ("kernel", "fused") if fused else ("kernel",), tuple(label), "\n".join(title),
                                members, ms))
    return View(fn.name, tuple(d.nodes), tuple(d.edges.values()), tuple(clusters))


# -- colours ---------------------------------------------------------------------------------------
CLUSTER_FILL = "#f1f3f6"
NODE_FILL = {"input": "#e3efff", "output": "#e5f5e5", "op": "#ffffff", "host": "#fff6dd"}


def heat(ms: float | None, max_ms: float) -> str:
    """White (no time) to red (the slowest kernel)."""
    if ms is None or max_ms <= 0:
        return CLUSTER_FILL
    t = min(max(ms / max_ms, 0.0), 1.0)
    g = round(255 * (1 - t))
    return f"#ff{g:02x}{g:02x}"


# -- DOT -------------------------------------------------------------------------------------------
def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_node(n: Node) -> str:
    shape = {"input": "invhouse", "output": "house"}.get(n.kind, "box")
    style = "rounded,dashed,filled" if n.kind == "host" else "rounded,filled"
    return (f"{n.id} [id={_dot_str(n.id)}, class={_dot_str(n.kind)}, shape={shape}, style={_dot_str(style)}, "
            f"fillcolor={_dot_str(NODE_FILL[n.kind])}, label={_dot_str(chr(10).join(n.label))}, "
            f"tooltip={_dot_str(n.title)}];")


def to_dot(view: View) -> str:
    """Graphviz DOT text: one `subgraph cluster_...` per cluster, with its id and classes."""
    lines = [f"digraph {_dot_str(view.name)} {{", "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10, margin="0.12,0.04"];',
             '  edge [arrowsize=0.6, color="#555555"];']
    max_ms = view.max_ms
    clustered = set()
    by_id = {n.id: n for n in view.nodes}
    for c in view.clusters:
        lines.append(f"  subgraph {_dot_str(c.id)} {{")
        lines.append(f"    id={_dot_str(c.id)}; class={_dot_str(' '.join(c.classes))}; "
                     f"label={_dot_str(chr(10).join(c.label))}; tooltip={_dot_str(c.title)};")
        lines.append(f'    style="rounded,filled"; fillcolor={_dot_str(heat(c.ms, max_ms))}; color="#8a8f99"; '
                     'fontname="Helvetica"; fontsize=9;')
        for m in c.members:
            lines.append("    " + _dot_node(by_id[m]))
            clustered.add(m)
        lines.append("  }")
    for n in view.nodes:
        if n.id not in clustered:
            lines.append("  " + _dot_node(n))
    for e in view.edges:
        lines.append(f"  {e.src} -> {e.dst} [tooltip={_dot_str(e.title)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- SVG, Ember's own layout ------------------------------------------------------------------------
CHAR_W, LINE_H, PAD, GAP_X, GAP_Y, MARGIN, LANE = 6.6, 14, 8, 22, 34, 16, 6.0


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Layout:
    """Where everything goes: node and cluster boxes, and each edge's path as points (its ends,
    and where it passes the rows in between, through a lane of its own)."""

    nodes: Mapping[str, Box]
    clusters: Mapping[str, Box]
    paths: Mapping[tuple[str, str], tuple[tuple[float, float], ...]]
    width: float
    height: float


def _node_size(n: Node) -> tuple[float, float]:
    return max(56.0, max(len(s) for s in n.label) * CHAR_W + 2 * PAD), len(n.label) * LINE_H + PAD


def _rows(ids: Sequence[str], edges: Sequence[tuple[str, str]], order: Mapping[str, int]) -> list[list[str]]:
    """Layers: networkx's topological generations (of the condensation, should the groups of a
    view not form a DAG), each in its first node's order."""
    g = nx.DiGraph()
    g.add_nodes_from(ids)
    g.add_edges_from((u, v) for u, v in edges if u != v)
    c = nx.condensation(g)
    members = c.graph["mapping"]
    scc: dict[int, list[str]] = {}
    for n in ids:
        scc.setdefault(members[n], []).append(n)
    return [sorted((n for s in gen for n in scc[s]), key=order.__getitem__) for gen in nx.topological_generations(c)]


@dataclass(frozen=True)
class _Rows:
    at: dict[str, tuple[float, float]]                  # top-left corner of each unit
    lanes: dict[object, list[tuple[float, float, float]]]  # edge (or entry, exit) -> (x, top, bottom) per row
    width: float
    height: float


def _place_rows(rows: list[list[str]], size: Mapping[str, tuple[float, float]], edges: Sequence[tuple[str, str]],
                entries: Sequence[tuple[object, str]] = (), exits: Sequence[tuple[object, str]] = ()) -> _Rows:
    """Rows stacked and centred. An edge that skips rows gets a lane (a narrow dummy unit) in
    each row it passes, so it runs between boxes rather than through them; so do edges that
    come in from outside (`entries`: (key, unit) from the top down to the unit) and go out
    (`exits`: from the unit down to the bottom). Each row is ordered by the mean x of what
    feeds it (two sweeps down)."""
    rank = {u: r for r, row in enumerate(rows) for u in row}
    rows = [list(row) for row in rows]
    size = dict(size)
    preds: dict[str, list[str]] = {}
    chains: dict[object, list[str]] = {}

    def lane(key: object, first: int, end: int, pred: str | None) -> str | None:
        chain = []
        for r in range(first, end):
            d = f"~{len(size)}"
            size[d] = (LANE, 0.0)
            rows[r].append(d)
            if pred is not None:
                preds[d] = [pred]
            chain.append(d)
            pred = d
        chains[key] = chain
        return pred

    for u, v in dict.fromkeys(edges):
        if u != v:
            last = lane((u, v), rank[u] + 1, rank[v], u) if rank[v] - rank[u] > 1 else u
            preds.setdefault(v, []).append(last)  # type: ignore[arg-type]
    for key, v in entries:
        last = lane(key, 0, rank[v], None)
        if last is not None:
            preds.setdefault(v, []).append(last)
    for key, u in exits:
        lane(key, rank[u] + 1, len(rows), u)
    x: dict[str, float] = {}

    def pack(row: list[str]) -> None:
        total = sum(size[u][0] for u in row) + GAP_X * (len(row) - 1)
        left = -total / 2
        for u in row:
            x[u] = left
            left += size[u][0] + GAP_X

    def centre(u: str) -> float:
        return x[u] + size[u][0] / 2

    for row in rows:
        pack(row)
    for _ in range(2):
        for row in rows[1:]:
            keyed = {u: [centre(p) for p in preds.get(u, ()) if p in x] for u in row}
            row.sort(key=lambda u: sum(keyed[u]) / len(keyed[u]) if keyed[u] else centre(u))
            pack(row)
    y, at, span = 0.0, {}, []
    for row in rows:
        h = max(size[u][1] for u in row)
        for u in row:
            at[u] = (x[u], y + (h - size[u][1]) / 2)
        span.append((y, y + h))
        y += h + GAP_Y
    left = min((p[0] for p in at.values()), default=0.0)
    width = max((p[0] + size[u][0] for u, p in at.items()), default=0.0) - left
    lanes = {key: [(centre(d) - left, *span[rank.get(d, _row_of(rows, d))]) for d in chain]
             for key, chain in chains.items()}
    return _Rows({u: (p[0] - left, p[1]) for u, p in at.items() if not u.startswith("~")}, lanes, width,
                 max(y - GAP_Y, 0.0))


def _row_of(rows: Sequence[Sequence[str]], u: str) -> int:
    return next(r for r, row in enumerate(rows) if u in row)


def layout(view: View) -> Layout:
    """Each cluster is laid out inside (its members in rows), then placed as one unit among the
    free nodes; edges run from a box's bottom to the next box's top, through lanes between."""
    order = {n.id: k for k, n in enumerate(view.nodes)}
    size = {n.id: _node_size(n) for n in view.nodes}
    unit = {n.id: n.id for n in view.nodes}
    for c in view.clusters:
        for m in c.members:
            unit[m] = c.id
    inner: dict[str, _Rows] = {}
    offset: dict[str, tuple[float, float]] = {}
    for c in view.clusters:
        members = set(c.members)
        edges = [(e.src, e.dst) for e in view.edges if e.src in members and e.dst in members]
        entries = [(("in", e.src, e.dst), e.dst) for e in view.edges if e.dst in members and e.src not in members]
        exits = [(("out", e.src, e.dst), e.src) for e in view.edges if e.src in members and e.dst not in members]
        placed = _place_rows(_rows(c.members, edges, order), size, edges, entries, exits)
        width = max(placed.width, max(len(s) for s in c.label) * CHAR_W) + 2 * PAD
        top = len(c.label) * LINE_H + PAD
        inner[c.id], offset[c.id] = placed, ((width - placed.width) / 2, top)
        size[c.id] = (width, placed.height + top + PAD)
    units = [c.id for c in view.clusters] + [n.id for n in view.nodes if unit[n.id] == n.id]
    unit_order = {n.id: order[n.id] for n in view.nodes if unit[n.id] == n.id}
    unit_order.update({c.id: min(order[m] for m in c.members) for c in view.clusters})
    unit_edges = [(unit[e.src], unit[e.dst]) for e in view.edges]
    top = _place_rows(_rows(units, unit_edges, unit_order), size, unit_edges)
    nodes: dict[str, Box] = {}
    clusters: dict[str, Box] = {}
    origin: dict[str, tuple[float, float]] = {}
    for u, (ux, uy) in top.at.items():
        ux, uy = ux + MARGIN, uy + MARGIN
        if u not in inner:
            nodes[u] = Box(ux, uy, *size[u])
            continue
        clusters[u] = Box(ux, uy, *size[u])
        ox, oy = ux + offset[u][0], uy + offset[u][1]
        origin[u] = (ox, oy)
        for m, (mx, my) in inner[u].at.items():
            nodes[m] = Box(ox + mx, oy + my, *size[m])

    def inside(c: str, key: object) -> list[tuple[float, float, float]]:
        if c not in inner:
            return []
        ox, oy = origin[c]
        return [(lx + ox, t + oy, b + oy) for lx, t, b in inner[c].lanes.get(key, ())]

    paths = {}
    for e in view.edges:
        a, b = nodes[e.src], nodes[e.dst]
        cu, cv = unit[e.src], unit[e.dst]
        if cu == cv:
            lanes = inside(cu, (e.src, e.dst))
        else:
            lanes = inside(cu, ("out", e.src, e.dst)) + [(lx + MARGIN, t + MARGIN, bt + MARGIN) for lx, t, bt in
                                                          top.lanes.get((cu, cv), ())] + inside(cv, ("in", e.src, e.dst))
        points = [(a.x + a.w / 2, a.y + a.h)]
        for lx, t, bt in lanes:
            points += [(lx, t), (lx, bt)]
        points.append((b.x + b.w / 2, b.y))
        paths[(e.src, e.dst)] = tuple(points)
    return Layout(nodes, clusters, paths, top.width + 2 * MARGIN, top.height + 2 * MARGIN)


def _path(points: Sequence[tuple[float, float]]) -> str:
    """Curves between rows (vertical at both ends), straight lines down the lanes."""
    (x0, y0), rest = points[0], points[1:]
    out = [f"M{x0:.1f},{y0:.1f}"]
    for k, (x1, y1) in enumerate(rest):
        if k % 2 == 1 and k < len(rest) - 1:  # down a lane: from its top to its bottom
            out.append(f"L{x1:.1f},{y1:.1f}")
        else:
            bend = max(abs(y1 - y0) / 2, 12.0)
            out.append(f"C{x0:.1f},{y0 + bend:.1f} {x1:.1f},{y1 - bend:.1f} {x1:.1f},{y1:.1f}")
        x0, y0 = x1, y1
    return " ".join(out)


def _a(s: str) -> str:
    return escape(s, quote=True)


def _text(lines: Sequence[str], x: float, top: float, anchor: str = "middle", weight: str = "normal") -> list[str]:
    return [f'<text x="{x:.1f}" y="{top + LINE_H * (k + 1) - 3:.1f}" text-anchor="{anchor}" '
            f'font-weight="{weight}">{escape(s, quote=False)}</text>' for k, s in enumerate(lines)]


def _svg_node(n: Node, b: Box, cluster: str | None) -> list[str]:
    dash = ' stroke-dasharray="4 3"' if n.kind == "host" else ""
    member = f' data-cluster="{_a(cluster)}"' if cluster else ""
    return [f'<g id="{_a(n.id)}" class="node {n.kind}"{member}><title>{escape(n.title, quote=False)}</title>',
            f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="5" '
            f'fill="{NODE_FILL[n.kind]}" stroke="#3a3f47"{dash}/>',
            *_text(n.label, b.x + b.w / 2, b.y + PAD / 2), "</g>"]


def ember_svg(view: View) -> str:
    """SVG with Ember's own layered layout (no Graphviz), drawn as Graphviz draws: clusters
    (rounded rectangles around their members), then edges, then nodes; a node in a cluster
    names it (`data-cluster`)."""
    lay = layout(view)
    max_ms = view.max_ms
    legend = f"kernel time: white 0 ms to red {max_ms:.4g} ms" if max_ms > 0 else ""
    width = max(lay.width, len(legend) * CHAR_W + 2 * MARGIN)
    height = lay.height + (LINE_H + 4 if legend else 0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
           'font-size="11">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           f'<g id="graph0" class="graph"><title>{escape(view.name, quote=False)}</title>',
           f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>']
    cluster_of = {}
    for c in view.clusters:
        b = lay.clusters[c.id]
        out.append(f'<g id="{_a(c.id)}" class="cluster {" ".join(c.classes)}"><title>{escape(c.title, quote=False)}'
                   f'</title><rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="9" '
                   f'fill="{heat(c.ms, max_ms)}" stroke="#8a8f99"/>')
        out.append("</g>")
        cluster_of.update(dict.fromkeys(c.members, c.id))
    for e in view.edges:
        out.append(f'<g class="edge"><title>{escape(e.title, quote=False)}</title><path '
                   f'd="{_path(lay.paths[(e.src, e.dst)])}" fill="none" stroke="#555" stroke-width="1" '
                   'marker-end="url(#arrow)"/></g>')
    for c in view.clusters:  # over the edges that enter the cluster, on a halo of its fill
        b = lay.clusters[c.id]
        out.append(f'<g class="cluster-label" stroke="{heat(c.ms, max_ms)}" stroke-width="3" paint-order="stroke">')
        out += _text(c.label, b.x + PAD, b.y + PAD / 2, anchor="start", weight="bold")
        out.append("</g>")
    for n in view.nodes:
        out += _svg_node(n, lay.nodes[n.id], cluster_of.get(n.id))
    if legend:
        out += _text([legend], MARGIN, height - LINE_H - 6, anchor="start")
    out.append("</g></svg>")
    return "\n".join(out) + "\n"


def graphviz_svg(view: View, dot: str, timeout: float = 120.0) -> str:
    """SVG from Graphviz (`dot`: the executable's path)."""
    try:
        done = subprocess.run([dot, "-Tsvg"], input=to_dot(view).encode(), capture_output=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EmberError(f"Graphviz ({dot}) did not run: {err}") from err
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise EmberError(f"Graphviz ({dot} -Tsvg) failed: {message[0] if message else f'exit {done.returncode}'}")
    return done.stdout.decode()


def to_svg(view: View, dot: str | None = None) -> str:
    """Graphviz's SVG where `dot` names its executable, else Ember's own layout."""
    return graphviz_svg(view, dot) if dot else ember_svg(view)


def to_html(view: View, svg: str, heading: str) -> str:
    """A self-contained page around `svg` (its XML prolog and doctype dropped): no scripts,
    nothing fetched; hover a node for its op, types and location."""
    body = svg[svg.index("<svg"):] if "<svg" in svg else svg
    max_ms = view.max_ms
    legend = (f"<p>Cluster colour: kernel time, white 0 ms to red {max_ms:.4g} ms.</p>" if max_ms > 0 else "")
    kernels = sum(1 for c in view.clusters if "kernel" in c.classes)
    counts = (f"{len(view.nodes)} nodes, {kernels} kernels" if kernels else
              f"{len(view.nodes)} nodes, {len(view.clusters)} fused groups")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(heading)}</title>\n"
            "<style>body{font-family:system-ui,sans-serif;margin:16px;color:#222}"
            "h1{font-size:18px;margin:0 0 4px} p{margin:2px 0 10px;font-size:13px}"
            ".graph-box{overflow:auto;border:1px solid #ddd}</style>\n</head>\n<body>\n"
            f"<h1>{escape(heading)}</h1>\n<p>{escape(counts)}; hover a box for its op, types and location.</p>\n"
            f"{legend}\n<div class=\"graph-box\">\n{body.strip()}\n</div>\n</body>\n</html>\n")


def render(view: View, suffix: str, heading: str, dot: str | None = None) -> str:
    """The file for `suffix` (.dot, .svg or .html)."""
    if suffix == ".dot":
        return to_dot(view)
    if suffix not in FORMATS:
        raise EmberError(f"a graph is written as {', '.join(FORMATS)}, not {suffix or 'a file without a suffix'}")
    svg = to_svg(view, dot)
    return svg if suffix == ".svg" else to_html(view, svg, heading)


__all__ = ["View", "Node", "Edge", "Cluster", "model_view", "engine_view", "to_dot", "ember_svg", "graphviz_svg",
           "to_svg", "to_html", "render", "heat", "layout", "Layout", "Box", "FORMATS"]
