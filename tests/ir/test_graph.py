"""The networkx view: order, dominators, DOT."""

import networkx as nx
import numpy as np

from ember import ir
from ember.ir.graph import dominators, to_dot, to_networkx, topological_order


def diamond():
    b = ir.Builder("d")
    x = b.input("x", ir.f32[4])
    a = b.relu(x, loc="a")
    l = b.exp(a, loc="left")
    r = b.tanh(a, loc="right")
    j = b.add(l, r, loc="join")
    w = b.weight("w", np.ones(4, np.float32), loc="w")
    b.output("y", b.mul(j, w, loc="out"))
    return b.build().main


def test_graph_edges_follow_values():
    g = to_networkx(diamond())
    assert nx.is_directed_acyclic_graph(g)
    labels = {n: d["label"] for n, d in g.nodes(data=True)}
    assert sorted(labels[v] for v in g.successors(("input", "x"))) == ["ember.relu"]
    assert g.in_degree(("output", "y")) == 1


def test_topological_order_and_dominators():
    fn = diamond()
    order = topological_order(fn)
    names = [op.loc.names[0] for op in order]
    assert names.index("a") < names.index("left") < names.index("join")
    idom = dominators(fn)
    ops = {op.loc.names[0]: op for op in fn.body.ops}
    assert idom[ops["join"]] is ops["a"]  # both paths to the join pass through a
    assert idom[ops["out"]] not in (ops["left"], ops["right"])


def test_dot_export():
    dot = to_dot(diamond())
    assert dot.startswith('digraph "main" {')
    assert "ember.tanh" in dot and "->" in dot
