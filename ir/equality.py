"""Structural equality of modules: what the round-trip tests mean by "the same".

Two modules are equal when their functions have the same ops in the same
order, with equal attributes (NaN equal to NaN, -0.0 unequal to 0.0), types,
value names as printed, operand wiring, locations and regions, and the same
symbols and weights (declarations, and data bit for bit where present).
"""

from __future__ import annotations

import numpy as np

from ember.ir.attrs import attr_equal
from ember.ir.core import Block, Function, Module
from ember.ir.printer import Namer, name_values


def _weights_equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def structural_diff(a: Module, b: Module, *, weight_data: bool = True) -> list[str]:
    """Every difference found, as readable lines (empty when equal). With
    weight_data=False, weights compare by declaration only (text round trips)."""
    out: list[str] = []
    if a.name != b.name:
        out.append(f"module name {a.name!r} != {b.name!r}")
    if not attr_equal(tuple(a.attributes.items()), tuple(b.attributes.items())):
        out.append(f"module attributes {a.attributes} != {b.attributes}")
    if a.symbols != b.symbols:
        out.append(f"symbols {a.symbols} != {b.symbols}")
    if list(a.weights) != list(b.weights):
        out.append(f"weight names {list(a.weights)} != {list(b.weights)}")
    for name in set(a.weights) & set(b.weights):
        wa, wb = a.weights[name], b.weights[name]
        if wa.type != wb.type:
            out.append(f"weight {name!r}: {wa.type} != {wb.type}")
        elif weight_data and not _weights_equal(wa.data, wb.data):
            out.append(f"weight {name!r}: data differs")
    if list(a.functions) != list(b.functions):
        out.append(f"functions {list(a.functions)} != {list(b.functions)}")
    for name in a.functions:
        if name in b.functions:
            out.extend(f"@{name}: {d}" for d in _function_diff(a.functions[name], b.functions[name]))
    return out


def structurally_equal(a: Module, b: Module, *, weight_data: bool = True) -> bool:
    return not structural_diff(a, b, weight_data=weight_data)


def _function_diff(fa: Function, fb: Function) -> list[str]:
    na, nb = name_values(fa), name_values(fb)
    out = []
    if fa.output_names != fb.output_names:
        out.append(f"output names {fa.output_names} != {fb.output_names}")
    out.extend(_block_diff(fa.body, fb.body, na, nb, "body"))
    return out


def _block_diff(a: Block, b: Block, na: Namer, nb: Namer, where: str) -> list[str]:
    out = []
    sig_a = [(na.names.get(v), v.type) for v in a.args]
    sig_b = [(nb.names.get(v), v.type) for v in b.args]
    if sig_a != sig_b:
        out.append(f"{where}: arguments {sig_a} != {sig_b}")
    if len(a.ops) != len(b.ops):
        out.append(f"{where}: {len(a.ops)} ops != {len(b.ops)} ops")
    for i, (oa, ob) in enumerate(zip(a.ops, b.ops)):
        at = f"{where} op {i} ({oa.name})"
        if oa.name != ob.name:
            out.append(f"{at}: op {oa.name} != {ob.name}")
            continue
        if set(oa.attributes) != set(ob.attributes):
            out.append(f"{at}: attribute names {sorted(oa.attributes)} != {sorted(ob.attributes)}")
        for k in oa.attributes.keys() & ob.attributes.keys():
            if not attr_equal(oa.attributes[k], ob.attributes[k]):
                out.append(f"{at}: attribute {k}: {oa.attributes[k]!r} != {ob.attributes[k]!r}")
        ops_a = [na.names.get(v) if v is not None else None for v in oa.operands]
        ops_b = [nb.names.get(v) if v is not None else None for v in ob.operands]
        if ops_a != ops_b:
            out.append(f"{at}: operands {ops_a} != {ops_b}")
        res_a = [(na.names.get(r), r.type) for r in oa.results]
        res_b = [(nb.names.get(r), r.type) for r in ob.results]
        if res_a != res_b:
            out.append(f"{at}: results {res_a} != {res_b}")
        if oa.loc != ob.loc:
            out.append(f"{at}: location {oa.loc.names} != {ob.loc.names}")
        if len(oa.regions) != len(ob.regions):
            out.append(f"{at}: {len(oa.regions)} regions != {len(ob.regions)}")
        for k, (ra, rb) in enumerate(zip(oa.regions, ob.regions)):
            out.extend(_block_diff(ra, rb, na, nb, f"{at} region {k}"))
    outs_a = [na.names.get(v) for v in a.outputs]
    outs_b = [nb.names.get(v) for v in b.outputs]
    if outs_a != outs_b:
        out.append(f"{where}: outputs {outs_a} != {outs_b}")
    return out


__all__ = ["structural_diff", "structurally_equal"]
