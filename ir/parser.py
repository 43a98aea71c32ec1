"""Read the textual IR (grammar.lark) back into a Module.

Every failure is a `ParseError` with line, column and what was expected;
semantic problems found afterwards (types that do not match their rules) are
one `VerifyError` listing all of them, from `verify`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ember.errors import EmberError, ParseError, VerifyError
from ember.ir import dims as D
from ember.ir.attrs import AttrError, Dense
from ember.ir.core import Block, Function, Location, Module, SymbolRange, Value
from ember.ir.opdef import lookup
from ember.ir.types import DTYPES, DType, OptionalType, SequenceType, TensorType, Type, string

_GRAMMAR = (Path(__file__).with_name("grammar.lark")).read_text()

_TOKEN_NAMES = {
    "VALUE": "a value (%name)", "OP_NAME": "an op name (dialect.op)", "IDENT": "a name",
    "STRING": "a string", "INT": "an integer", "FLOAT": "a float", "HEX": "hex data",
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "MORETHAN": "'>'", "LESSTHAN": "'<'",
    "__ANON_0": "'->'", "$END": "end of input",
}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", start=["start", "type", "dim"], propagate_positions=True,
                maybe_placeholders=False)


def _expected(names: Any) -> tuple[str, ...]:
    out = []
    for n in sorted(names or ()):
        text = _TOKEN_NAMES.get(n)
        if text is None:
            try:
                text = repr(_lark().get_terminal(n).pattern.value) if n.isupper() else n
            except KeyError:
                text = n
        out.append(text)
    return tuple(dict.fromkeys(out))


def _syntax_error(err: UnexpectedInput, source: str, text: str) -> ParseError:
    if isinstance(err, UnexpectedCharacters):
        what = f"unexpected character {err.char!r}"
        expected = _expected(err.allowed)
    elif isinstance(err, UnexpectedEOF):
        what = "unexpected end of input"
        expected = _expected(err.expected)
    elif isinstance(err, UnexpectedToken):
        what = "unexpected end of input" if err.token.type == "$END" else f"unexpected {err.token.value!r}"
        expected = _expected(err.expected)
    else:
        what, expected = str(err), ()
    line = getattr(err, "line", None)
    col = getattr(err, "column", None)
    at_end = isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END")
    if at_end or line is None or line < 0:
        lines = text.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
    msg = what + (f"; expected {', '.join(expected)}" if expected else "")
    return ParseError(msg, line=line, column=col, source=source, expected=expected)


def parse(text: str, *, source: str = "<text>", verify: bool = True) -> Module:
    """Parse a module; verify it unless told not to (VerifyError lists every problem)."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes text, got {type(text).__name__}")
    try:
        tree = _lark().parse(text, start="start")
    except UnexpectedInput as err:
        raise _syntax_error(err, source, text) from None
    except LarkError as err:
        raise ParseError(str(err).splitlines()[0], source=source) from None
    module = _ModuleReader(source).read(tree)
    if verify:
        from ember.ir.verify import verify as run_verify
        run_verify(module)
    return module


def parse_type(text: str) -> Type:
    """Parse one type, such as `f32[N,3,224,224]`."""
    try:
        tree = _lark().parse(text, start="type")
    except UnexpectedInput as err:
        raise _syntax_error(err, "<type>", text) from None
    return _ModuleReader("<type>").type(tree)


def parse_dim(text: str) -> D.Dim:
    """Parse one dim, such as `N`, `N*S` or `(H-1)//2+1`."""
    try:
        tree = _lark().parse(text, start="dim")
    except UnexpectedInput as err:
        raise _syntax_error(err, "<dim>", text) from None
    return _ModuleReader("<dim>").dim(tree)


class _Scope:
    """Visible value names; an isolated region starts a scope that sees nothing outside."""

    def __init__(self, parent: "_Scope | None", function_names: set[str]) -> None:
        self.parent, self.values, self.function_names = parent, {}, function_names

    def lookup(self, name: str) -> Value | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.values:
                return scope.values[name]
            scope = scope.parent
        return None


class _ModuleReader:
    def __init__(self, source: str) -> None:
        self.source = source

    # -- errors -------------------------------------------------------------------------
    def error(self, node: Tree | Token | None, message: str) -> ParseError:
        line = col = None
        if isinstance(node, Token):
            line, col = node.line, node.column
        elif isinstance(node, Tree) and not node.meta.empty:
            line, col = node.meta.line, node.meta.column
        return ParseError(message, line=line, column=col, source=self.source)

    # -- module -------------------------------------------------------------------------
    def read(self, tree: Tree) -> Module:
        children = tree.children
        if len(children) == 1 and isinstance(children[0], Tree) and children[0].data == "module":
            mod_tree = children[0]
            module = Module()
            items = []
            for c in mod_tree.children:
                if isinstance(c, Tree) and c.data == "symbol_ref":
                    module.name = self.name(c.children[0])
                elif isinstance(c, Tree) and c.data == "module_attrs":
                    module.attributes = self.attr_dict(c.children[0])
                else:
                    items.append(c)
        else:
            module, items = Module(), children
        for item in items:
            self.guarded(item, lambda item=item: self.module_item(module, item))
        return module

    def guarded(self, node: Tree, fn: Callable[[], Any]) -> Any:
        """Turn any failure while building from `node` into a ParseError at it."""
        try:
            return fn()
        except (ParseError, VerifyError):
            raise
        except EmberError as err:
            raise self.error(node, str(err)) from None
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, ZeroDivisionError,
                AttributeError, RecursionError) as err:
            raise self.error(node, f"{type(err).__name__}: {err}") from None

    def module_item(self, module: Module, item: Tree) -> None:
        if item.data == "symbol_decl":
            name_tok, lo_tok, bound = item.children
            name = str(name_tok)
            if name in module.symbols:
                raise self.error(name_tok, f"symbol {name} declared twice")
            if name in DTYPES:
                raise self.error(name_tok, f"symbol name {name} is an element type name")
            hi_tok = bound.children[0]
            hi = None if hi_tok.type == "INF" else int(hi_tok)
            lo = int(lo_tok)
            if hi is not None and hi < lo:
                raise self.error(item, f"symbol {name}: empty range [{lo}, {hi}]")
            module.symbols[name] = SymbolRange(lo, hi)
        elif item.data == "weight_decl":
            name_tok, type_tree = item.children
            name = self.string(name_tok)
            if name in module.weights:
                raise self.error(name_tok, f"weight {name!r} declared twice")
            t = self.type(type_tree)
            if not isinstance(t, TensorType) or not t.is_static:
                raise self.error(type_tree, f"weight {name!r} needs a tensor type with a static shape, got {t}")
            module.add_weight(name, type=t)
        elif item.data == "func":
            fn = self.func(item)
            if fn.name in module.functions:
                raise self.error(item, f"function @{fn.name} defined twice")
            module.add_function(fn)
        else:  # pragma: no cover - the grammar admits nothing else
            raise self.error(item, f"unexpected {item.data}")

    def func(self, tree: Tree) -> Function:
        name = self.name(tree.children[0].children[0])
        args: list[Tree] = []
        results: list[Tree] = []
        stmts: list[Tree] = []
        ret = None
        for c in tree.children[1:]:
            if c.data == "arg_list":
                args = list(c.children)
            elif c.data == "result_list":
                results = list(c.children)
            elif c.data == "stmt":
                stmts.append(c)
            elif c.data == "return_stmt":
                ret = c
        names: set[str] = set()
        scope = _Scope(None, names)
        body = Block()
        for a in args:
            tok, t = a.children
            self.define(scope, tok, body.add_arg(self.type(t), self.value_name(tok)))
        out_names: list[str] = []
        out_types: list[Type] = []
        for r in results:
            out_names.append(self.name(r.children[0]))
            out_types.append(self.type(r.children[1]))
        if len(set(out_names)) != len(out_names):
            raise self.error(tree, f"function @{name} has duplicate output names")
        for s in stmts:
            self.guarded(s, lambda s=s: self.stmt(s, body, scope))
        outs = self.values(ret.children[0], scope) if ret is not None and ret.children else []
        if len(outs) != len(out_types):
            raise self.error(ret, f"return gives {len(outs)} values; @{name} declares {len(out_types)} results")
        for i, (v, t) in enumerate(zip(outs, out_types)):
            if v.type != t:
                raise self.error(ret, f"result {out_names[i]!r} is declared {t} but returns {v.type}")
        body.set_outputs(outs)
        return Function(name, body, out_names)

    # -- statements -----------------------------------------------------------------------
    def define(self, scope: _Scope, tok: Token, value: Value) -> None:
        name = self.value_name(tok)
        if name in scope.function_names:
            raise self.error(tok, f"value %{name} is defined twice")
        scope.function_names.add(name)
        scope.values[name] = value
        value.name = name

    def value_name(self, tok: Token) -> str:
        text = str(tok)[1:]
        return json.loads(text) if text.startswith('"') else text

    def values(self, tree: Tree, scope: _Scope) -> list[Value]:
        out = []
        for tok in tree.children:
            v = scope.lookup(self.value_name(tok))
            if v is None:
                raise self.error(tok, f"use of undefined value {tok}")
            out.append(v)
        return out

    def stmt(self, tree: Tree, block: Block, scope: _Scope) -> None:
        result_toks: list[Token] = []
        op_tok: Token | None = None
        operands: list[Value | None] = []
        attrs: dict[str, Any] = {}
        attr_node: Tree | None = None
        types: list[Type] | None = None
        region_trees: list[Tree] = []
        loc = Location()
        for c in tree.children:
            if isinstance(c, Token) and c.type == "OP_NAME":
                op_tok = c
            elif c.data == "value_list":
                result_toks = list(c.children)
            elif c.data == "operand_list":
                for o in c.children:
                    tok = o.children[0]
                    if tok.type == "NONE":
                        operands.append(None)
                        continue
                    v = scope.lookup(self.value_name(tok))
                    if v is None:
                        raise self.error(tok, f"use of undefined value {tok}")
                    operands.append(v)
            elif c.data == "attr_dict":
                attrs, attr_node = self.attr_dict(c), c
            elif c.data == "type_list":
                types = [self.type(t) for t in c.children]
            elif c.data == "regions":
                region_trees = list(c.children)
            elif c.data == "loc":
                loc = Location(tuple(self.string(t) for t in c.children))
        assert op_tok is not None
        cls = lookup(str(op_tok))
        if cls is None:
            raise self.error(op_tok, f"unknown op {op_tok}")
        types = types or []
        if len(types) != len(result_toks):
            raise self.error(tree, f"{op_tok}: {len(result_toks)} results named but {len(types)} types given")
        for entry in (attr_node.children if attr_node is not None else ()):
            key = str(entry.children[0])
            fld = cls.attr_fields.get(key)
            if fld is None:
                known = ", ".join(cls.attr_fields) or "none"
                raise self.error(entry, f"{op_tok}: unknown attribute {key!r} (known: {known})")
            try:
                fld.kind.normalize(attrs[key])
            except AttrError as err:
                raise self.error(entry, f"{op_tok}: attribute {key!r}: {err}") from None
        try:
            cls.normalize_attributes(attrs, loc)
        except VerifyError as err:
            raise self.error(attr_node or op_tok, str(err)) from None
        if len(region_trees) != len(cls.region_fields):
            raise self.error(op_tok, f"{op_tok} takes {len(cls.region_fields)} regions, got {len(region_trees)}")
        regions = []
        for fld, rt in zip(cls.region_fields, region_trees):
            inner = _Scope(None if fld.isolated else scope, scope.function_names)
            regions.append(self.region(rt, inner))
        try:
            op = cls.create(operands, attrs, result_types=types, regions=regions, loc=loc)
        except VerifyError as err:
            raise self.error(op_tok, str(err)) from None
        block.append(op)
        for tok, r in zip(result_toks, op.results):
            self.define(scope, tok, r)

    def region(self, tree: Tree, scope: _Scope) -> Block:
        block = Block()
        for c in tree.children:
            if c.data == "block_args":
                for a in (c.children[0].children if c.children else []):
                    tok, t = a.children
                    self.define(scope, tok, block.add_arg(self.type(t)))
            elif c.data == "stmt":
                self.guarded(c, lambda c=c: self.stmt(c, block, scope))
            elif c.data == "yield_stmt":
                block.set_outputs(self.values(c.children[0], scope) if c.children else [])
        return block

    # -- attributes -----------------------------------------------------------------------
    def attr_dict(self, tree: Tree) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for entry in tree.children:
            key_tok, value = entry.children
            key = str(key_tok)
            if key in out:
                raise self.error(key_tok, f"attribute {key!r} given twice")
            out[key] = self.attr_value(value)
        return out

    def attr_value(self, node: Tree | Token) -> Any:
        if isinstance(node, Token):
            raise self.error(node, f"unexpected {node}")  # pragma: no cover
        kind = node.data
        if kind == "string":
            return self.string(node.children[0])
        if kind == "true":
            return True
        if kind == "false":
            return False
        if kind == "list":
            return tuple(self.attr_value(c) for c in node.children)
        if kind in ("float", "neg_float", "neg_inf"):
            return self.float(node)
        if kind in ("tensor_type", "container_type"):
            return self.type(node)
        if kind == "dense":
            return self.dense(node)
        if kind == "symbol":
            name = str(node.children[0])
            if name in DTYPES:
                return DTYPES[name]
        return self.dim(node)

    def float(self, node: Tree) -> float:
        tok = node.children[0]
        if node.data == "neg_inf":
            return float("-inf")
        value = float(str(tok))
        return -value if node.data == "neg_float" else value

    def string(self, tok: Token) -> str:
        return json.loads(str(tok))

    def name(self, node: Tree | Token) -> str:
        if isinstance(node, Tree):
            tok = node.children[0]
            return self.string(tok) if node.data == "quoted_name" else str(tok)
        return self.string(node) if node.type == "STRING" else str(node)

    def dense(self, node: Tree) -> Dense:
        type_node, data = node.children
        t = self.type(type_node)
        if not isinstance(t, TensorType) or not t.is_static:
            raise self.error(type_node, f"dense needs a tensor type with a static shape, got {t}")
        shape = t.static_shape
        count = int(np.prod(shape, dtype=np.int64))
        if isinstance(data, Token) and data.type == "HEX":
            raw = bytes.fromhex(str(data)[2:]) if len(str(data)) % 2 == 0 else None
            if raw is None or t.dtype is string or len(raw) != count * t.dtype.itemsize:
                raise self.error(data, f"hex data has the wrong length for {t}")
            arr = np.frombuffer(raw, dtype=t.dtype.np_dtype).reshape(shape)
            return Dense(arr)
        flat: list[Any] = []
        self.dense_flatten(data, flat)
        if len(flat) != count:
            raise self.error(data, f"dense data has {len(flat)} elements; {t} needs {count}")
        if t.dtype is string:
            if not all(isinstance(x, str) for x in flat):
                raise self.error(data, "a str tensor needs string elements")
            arr = np.empty(count, dtype=object)
            arr[:] = flat
            return Dense(arr.reshape(shape), string)
        if any(isinstance(x, str) for x in flat):
            raise self.error(data, f"string elements in a {t.dtype} tensor")
        if t.dtype.is_int and any(isinstance(x, float) for x in flat):
            raise self.error(data, f"float elements in an integer tensor {t}")
        if t.dtype.is_int:
            info = np.iinfo(t.dtype.np_dtype) if t.dtype.bits >= 8 else None
            lo, hi = (int(info.min), int(info.max)) if info else _subbyte_range(t.dtype)
            if any(not (lo <= int(x) <= hi) for x in flat):
                raise self.error(data, f"integer out of range for {t.dtype}")
        try:
            values = np.array(flat, dtype=object)
            arr = values.astype(np.float64 if t.dtype.is_float else object).astype(t.dtype.np_dtype)
        except (TypeError, ValueError, OverflowError) as err:
            raise self.error(data, f"bad dense data for {t}: {err}") from None
        return Dense(arr.reshape(shape), t.dtype)

    def dense_flatten(self, node: Tree, out: list[Any]) -> None:
        if node.data == "dense_list":
            for c in node.children:
                self.dense_flatten(c, out)
        elif node.data == "dense_int":
            out.append(int(node.children[0]))
        elif node.data == "dense_neg_int":
            out.append(-int(node.children[0]))
        elif node.data in ("float", "neg_float", "neg_inf"):
            out.append(self.float(node))
        elif node.data == "string":
            out.append(self.string(node.children[0]))
        elif node.data == "true":
            out.append(True)
        elif node.data == "false":
            out.append(False)
        else:  # pragma: no cover
            raise self.error(node, f"unexpected {node.data} in dense data")

    # -- types and dims ---------------------------------------------------------------------
    def type(self, node: Tree) -> Type:
        if node.data == "container_type":
            kind, inner = node.children
            element = self.type(inner)
            return SequenceType(element) if kind.type == "SEQ" else OptionalType(element)
        name_tok = node.children[0]
        dt = DTYPES.get(str(name_tok))
        if dt is None:
            raise self.error(name_tok, f"unknown element type '{name_tok}'")
        rest = node.children[1:]
        if len(rest) == 1 and isinstance(rest[0], Token) and rest[0].type == "STAR":
            return TensorType(dt, None)
        return TensorType(dt, tuple(self.dim(d) for d in rest))

    def dim(self, node: Tree | Token) -> D.Dim:
        try:
            return self._dim(node)
        except EmberError as err:
            raise self.error(node, str(err)) from None

    def _dim(self, node: Tree | Token) -> D.Dim:
        kind = node.data
        if kind == "unknown":
            return D.Unknown()
        if kind == "bounded":
            b = self._dim(node.children[0])
            if isinstance(b, D.Unknown):
                raise self.error(node, "a bound cannot be unknown")
            return D.Unknown(b)
        if kind == "int":
            return int(node.children[0])
        if kind == "symbol":
            name = str(node.children[0])
            if name in DTYPES:
                raise self.error(node, f"{name} is an element type, not a dim")
            return D.sym(name)
        args = [self._dim(c) for c in node.children if isinstance(c, Tree)]
        if any(isinstance(a, D.Unknown) for a in args):
            raise self.error(node, "'?' cannot appear inside an expression")
        if kind == "neg":
            return D.mul(args[0], -1)
        fn = {"add": D.add, "sub": lambda a, b: D.add(a, D.mul(b, -1)), "mul": D.mul,
              "floordiv": D.floordiv, "mod": D.mod, "max": D.dmax, "min": D.dmin}.get(kind)
        if fn is None:
            raise self.error(node, f"unexpected {kind} in a dim")
        return fn(*args)


def _subbyte_range(dt: DType) -> tuple[int, int]:
    if dt.kind == "int":
        return -(1 << (dt.bits - 1)), (1 << (dt.bits - 1)) - 1
    return 0, (1 << dt.bits) - 1
