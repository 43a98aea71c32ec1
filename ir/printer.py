"""The textual form of the IR. `parser.py` reads exactly what this writes.

    module @name {
      symbol N in [1, 64]
      weight "conv1.weight" : f32[16,3,3,3]
      func @main(%x: f32[N,3,32,32]) -> (y: f32[N,16,32,32]) {
        %w = ember.weight {name = "conv1.weight"} : f32[16,3,3,3]
        %0 = ember.conv %x, %w {pads = [1, 1, 1, 1]} : f32[N,16,32,32] loc("conv1")
        return %0
      }
    }

One generic form serves every op: results, op name, operands (`none` for an
absent optional one), attributes that differ from their defaults, result
types, regions, location. Value names are the values' own names where they
have them, else numbers, unique within a function.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable

import numpy as np

from ember.ir.attrs import Dense, attr_equal
from ember.ir.core import Block, Function, Module, Operation, Value
from ember.ir.dims import DimExpr
from ember.ir.types import DType, Type, string

_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.$-]+\Z")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED = frozenset({"none", "true", "false", "nan", "inf", "max", "min", "dense", "loc",
                      "seq", "opt", "module", "func", "weight", "symbol", "return", "yield",
                      "in", "attributes"})


_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\ud800-\udfff]')


def quote(s: str) -> str:
    """A JSON string literal; escapes survive printing and parsing exactly."""
    if not _NEEDS_ESCAPE.search(s):
        return f'"{s}"'  # what json.dumps gives when there is nothing to escape
    text = json.dumps(s, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        text = json.dumps(s, ensure_ascii=True)
    return text


def format_name(name: str) -> str:
    """An output or attribute-free name: bare when it reads as one, else quoted."""
    return name if _PLAIN_NAME.match(name) and name not in RESERVED else quote(name)


def format_symbol_ref(name: str) -> str:
    return "@" + format_name(name)


def format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))


def format_attr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, (DType, Type, DimExpr)):
        return str(value)
    if isinstance(value, Dense):
        return format_dense(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    raise TypeError(f"cannot print attribute value {value!r}")


def _canonical_nan_bits(dt: np.dtype) -> bytes:
    return np.array(np.nan, dtype=dt).tobytes()


def _needs_hex(arr: np.ndarray) -> bool:
    """Print raw bytes when values would lose bits: NaN payloads/signs, complex."""
    if arr.dtype.kind == "c":
        return True
    if arr.dtype.kind not in "fV" or arr.dtype == object:
        return False
    try:
        nan_mask = np.isnan(arr.astype(np.float64))
    except (TypeError, ValueError):
        return False
    if not nan_mask.any():
        return False
    canonical = _canonical_nan_bits(arr.dtype)
    return any(x.tobytes() != canonical for x in arr[nan_mask])


def _format_scalar(x: Any, dt: DType) -> str:
    if dt is string:
        return quote(str(x))
    if dt.kind == "bool":
        return "true" if bool(x) else "false"
    if dt.kind in ("int", "uint"):
        return str(int(x))
    return format_float(float(x))


def _format_elements(flat: np.ndarray, dt: DType) -> list[str]:
    """Every element's text, converted by numpy and `map` rather than one call per element
    (a 2M-element literal prints in a second). `repr` of a float64 is `format_float`'s
    text, nan and infinities included."""
    if dt is string:
        return [quote(str(x)) for x in flat.tolist()]
    if dt.kind == "bool":
        return ["true" if x else "false" for x in flat.astype(bool).tolist()]
    if dt.kind == "uint":
        return list(map(str, flat.astype(np.uint64).tolist()))
    if dt.kind == "int":
        return list(map(str, flat.astype(np.int64).tolist()))
    return list(map(repr, flat.astype(np.float64).tolist()))


def _nest(items: list[str], shape: tuple[int, ...]) -> str:
    """`items` (row-major) as nested lists of `shape`, innermost first."""
    if 0 in shape:  # no elements: the lists down to the first empty axis
        k = shape.index(0)
        items, shape = ["[]"] * int(np.prod(shape[:k], dtype=np.int64)), shape[:k]
    for d in reversed(shape):
        items = ["[" + ", ".join(items[i:i + d]) + "]" for i in range(0, len(items), d)]
    return items[0]


def format_dense(d: Dense) -> str:
    arr, dt = d.array, d.dtype
    if dt is not string and _needs_hex(arr):
        return f"dense<{d.type}: 0x{arr.tobytes().hex().upper()}>"
    if arr.ndim == 0:
        return f"dense<{d.type}: {_format_scalar(arr[()] if dt is string else arr.item(), dt)}>"
    return f"dense<{d.type}: {_nest(_format_elements(arr.ravel(), dt), tuple(arr.shape))}>"


def format_loc(names: Iterable[str]) -> str:
    return "loc(" + ", ".join(quote(n) for n in names) + ")"


class Namer:
    """Unique printed names for the values of one function (nested regions included)."""

    def __init__(self) -> None:
        self.names: dict[Value, str] = {}
        self.used: set[str] = set()
        self.counter = 0
        self.op_lines: dict[Operation, str] = {}
        self.type_texts: dict[Type, str] = {}

    def type_text(self, t: Type) -> str:
        """`str(t)`, once per distinct type of the function (types repeat on every op)."""
        text = self.type_texts.get(t)
        if text is None:
            text = self.type_texts[t] = str(t)
        return text

    def name(self, v: Value) -> str:
        if v in self.names:
            return self.names[v]
        hint = v.name
        if hint and hint not in self.used:
            chosen = hint
        elif hint:
            k = 1
            while f"{hint}_{k}" in self.used:
                k += 1
            chosen = f"{hint}_{k}"
        else:
            while str(self.counter) in self.used:
                self.counter += 1
            chosen = str(self.counter)
            self.counter += 1
        self.used.add(chosen)
        self.names[v] = chosen
        return chosen

    def ref(self, v: Value | None) -> str:
        if v is None:
            return "none"
        if v not in self.names:
            return "%<<undefined>>"
        n = self.names[v]
        return "%" + (n if _PLAIN_VALUE.match(n) else quote(n))

    def define(self, v: Value) -> str:
        self.name(v)
        return self.ref(v)


def name_values(fn: Function) -> Namer:
    """The names the printer gives every value of `fn`, and each op's first printed line."""
    namer = Namer()
    for a in fn.body.args:
        namer.define(a)
    _print_block_body(fn.body, namer, "", "return")
    return namer


def _print_op(op: Operation, namer: Namer, indent: str) -> list[str]:
    operands = ", ".join(namer.ref(v) for v in op.operands)
    results = ", ".join(namer.define(r) for r in op.results)
    text = f"{indent}{results + ' = ' if results else ''}{op.name}"
    if operands:
        text += " " + operands
    attrs = printable_attributes(op)
    if attrs:
        text += " {" + ", ".join(f"{k} = {format_attr(v)}" for k, v in attrs.items()) + "}"
    if op.results:
        text += " : " + ", ".join(namer.type_text(r.type) for r in op.results)
    namer.op_lines[op] = text.strip() + (" (...)" if op.regions else "") + (
        " " + format_loc(op.loc.names) if op.loc else "")
    lines = [text]
    if op.regions:
        lines[-1] += " ("
        for i, region in enumerate(op.regions):
            lines[-1] += "{"
            lines.extend(_print_block_body(region, namer, indent + "  ", "yield", header=True))
            lines.append(indent + "}" + (", " if i + 1 < len(op.regions) else ")"))
    if op.loc:
        lines[-1] += " " + format_loc(op.loc.names)
    return lines


def printable_attributes(op: Operation) -> dict[str, Any]:
    """The attributes worth printing: those that differ from the schema default."""
    fields = getattr(op, "attr_fields", {})
    out = {}
    for key, value in op.attributes.items():
        fld = fields.get(key)
        if fld is not None and not fld.required and attr_equal(value, fld.default):
            continue
        out[key] = value
    return out


def _print_block_body(block: Block, namer: Namer, indent: str, terminator: str,
                      header: bool = False) -> list[str]:
    lines = []
    if header and block.args:
        args = ", ".join(f"{namer.define(a)}: {a.type}" for a in block.args)
        lines.append(f"{indent[:-2]}^bb0({args}):")
    for op in block.ops:
        lines.extend(_print_op(op, namer, indent))
    outs = ", ".join(namer.ref(v) for v in block.outputs)
    lines.append(f"{indent}{terminator}{' ' + outs if outs else ''}")
    return lines


def print_function(fn: Function, indent: str = "") -> str:
    namer = Namer()
    args = ", ".join(f"{namer.define(a)}: {a.type}" for a in fn.body.args)
    outs = ", ".join(f"{format_name(n)}: {v.type}" for n, v in zip(fn.output_names, fn.body.outputs))
    lines = [f"{indent}func {format_symbol_ref(fn.name)}({args}) -> ({outs}) {{"]
    lines.extend(_print_block_body(fn.body, namer, indent + "  ", "return"))
    lines.append(indent + "}")
    return "\n".join(lines)


def print_module(m: Module) -> str:
    head = "module"
    if m.name is not None:
        head += " " + format_symbol_ref(m.name)
    if m.attributes:
        head += " attributes {" + ", ".join(f"{k} = {format_attr(v)}" for k, v in m.attributes.items()) + "}"
    lines = [head + " {"]
    for name, rng in m.symbols.items():
        lines.append(f"  symbol {name} in [{rng.min}, {'inf' if rng.max is None else rng.max}]")
    for w in m.weights.values():
        lines.append(f"  weight {quote(w.name)} : {w.type}")
    for fn in m.functions.values():
        lines.append(print_function(fn, "  "))
    lines.append("}")
    return "\n".join(lines) + "\n"
