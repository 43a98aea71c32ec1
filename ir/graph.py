"""A networkx view of a function, for analysis: order, dominators, pictures.

Nodes are the function's inputs (`("input", name)`), its ops (the Operation
objects) and its outputs (`("output", name)`); an edge carries the value that
flows along it. Ops nested in regions are not expanded: a region op is one node.
"""

from __future__ import annotations

import networkx as nx

from ember.ir.core import Function, Operation, Value
from ember.ir.printer import name_values

SOURCE = ("source",)


def to_networkx(fn: Function) -> nx.DiGraph:
    g = nx.DiGraph()
    names = name_values(fn).names
    producer: dict[Value, object] = {}
    for name, v in zip(fn.input_names, fn.inputs):
        node = ("input", name)
        g.add_node(node, kind="input", label=name, type=str(v.type))
        producer[v] = node
    for op in fn.body.ops:
        g.add_node(op, kind="op", label=op.name, loc=str(op.loc))
        for v in op.reads():
            if v in producer:
                g.add_edge(producer[v], op, value=names.get(v, "?"), type=str(v.type))
        for r in op.results:
            producer[r] = op
    for name, v in zip(fn.output_names, fn.outputs):
        node = ("output", name)
        g.add_node(node, kind="output", label=name, type=str(v.type))
        g.add_edge(producer[v], node, value=names.get(v, "?"), type=str(v.type))
    return g


def topological_order(fn: Function) -> list[Operation]:
    """The ops in an order where each comes after all it reads (stable for ties)."""
    g = to_networkx(fn)
    position = {op: i for i, op in enumerate(fn.body.ops)}
    order = nx.lexicographical_topological_sort(g, key=lambda n: position.get(n, -1))
    return [n for n in order if isinstance(n, Operation)]


def dominators(fn: Function) -> dict[object, object]:
    """Immediate dominator of every node, from a virtual source feeding all inputs
    and every op without operands (constants, weights)."""
    g = to_networkx(fn)
    roots = [n for n in g.nodes if g.in_degree(n) == 0]
    g.add_node(SOURCE)
    for r in roots:
        g.add_edge(SOURCE, r)
    idom = nx.immediate_dominators(g, SOURCE)
    idom.pop(SOURCE, None)
    return idom


def to_dot(fn: Function) -> str:
    """Graphviz DOT text for the function's dataflow graph, fused ops drawn as clusters of
    their bodies (ir/graph_view.py draws it; `ember inspect --graph` writes it)."""
    from ember.ir.graph_view import model_view
    from ember.ir.graph_view import to_dot as view_to_dot
    return view_to_dot(model_view(fn))
