"""Read the textual IR back into a Module.

The grammar is `grammar.lark`, its specification (tests/ir/test_parser_grammar.py
holds this parser to lark's reading of it). The parser is hand-written: recursive
descent over one regular expression that finds each token, building the module
as it reads, with no parse tree, so that time and memory grow linearly with the
text (lark's LALR parser took 48 s and 1.5 GB for a 170k-op module). Dense
literals made only of numbers are read whole by numpy, with no Python object
per element.

Every failure is a `ParseError` with line, column and what was expected;
semantic problems found afterwards (types that do not match their rules) are
one `VerifyError` listing all of them, from `verify`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import numpy as np

from ember.errors import EmberError, ParseError, VerifyError
from ember.ir import dims as D
from ember.ir.attrs import AttrError, Dense
from ember.ir.core import Block, Function, Location, Module, SymbolRange, Value
from ember.ir.opdef import Op, lookup
from ember.ir.sizes import SizeError, numel
from ember.ir.types import DTYPES, DType, OptionalType, SequenceType, TensorType, Type, string

# -- tokens -----------------------------------------------------------------------------------------------
# Whitespace, and comments: `//` after whitespace (or at the start) runs to the end of the line;
# right after a token it is floor division.
_WS = r"(?:[ \t\f\r\n]+(?://[^\n]*)?)*"
_STR = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_TOKEN = re.compile(_WS + "(?:" + "|".join([
    rf"(?P<VALUE>%(?:[A-Za-z0-9_.$-]+|{_STR}))",
    rf"(?P<STRING>{_STR})",
    r"(?P<HEX>0x[0-9A-Fa-f]*)",
    r"(?P<FLOAT>\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)",
    r"(?P<INT>\d+)",
    r"(?P<WORD>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)",
    r"(?P<PUNCT>->|<=|//|\^bb0|[{}()\[\],:=<>@*+\-%?])",
]) + ")")
_SKIP = re.compile(_WS)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_OP_NAME = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+\Z")
_END = "$END"
_BAD = "?"

# What the messages call each kind of token.
A_VALUE, AN_OP, A_NAME, A_STRING, AN_INT = "a value (%name)", "an op name (dialect.op)", "a name", "a string", \
    "an integer"
A_TYPE, A_DIM, AN_ATTR = "a type", "a dim", "an attribute value"

MAX_NESTING = 100
"""Brackets, parentheses, regions and container types nest at most this deep (a bound
on the parser's recursion, far above what any model needs)."""


def parse(text: str, *, source: str = "<text>", verify: bool = True) -> Module:
    """Parse a module; verify it unless told not to (VerifyError lists every problem)."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes text, got {type(text).__name__}")
    module = _Parser(text, source).module()
    if verify:
        from ember.ir.verify import verify as run_verify
        run_verify(module)
    return module


def parse_type(text: str) -> Type:
    """Parse one type, such as `f32[N,3,224,224]`."""
    p = _Parser(text, "<type>")
    return p.whole(p.type)


def parse_dim(text: str) -> D.Dim:
    """Parse one dim, such as `N`, `N*S` or `(H-1)//2+1`."""
    p = _Parser(text, "<dim>")
    return p.whole(p.dim)


class _Scope:
    """Visible value names; an isolated region starts a scope that sees nothing outside."""

    __slots__ = ("parent", "values", "function_names")

    def __init__(self, parent: "_Scope | None", function_names: set[str]) -> None:
        self.parent, self.values, self.function_names = parent, {}, function_names

    def lookup(self, name: str) -> Value | None:
        scope: _Scope | None = self
        while scope is not None:
            v = scope.values.get(name)
            if v is not None:
                return v
            scope = scope.parent
        return None


class _Parser:
    """One pass over the text. `kind`, `val`, `start` describe the current token (kind is
    VALUE, STRING, HEX, FLOAT, INT, WORD, PUNCT, `$END`, or `?` for a character no token
    starts with); `end` is where the next one is looked for."""

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source
        self.kind, self.val, self.start, self.end = _END, "", 0, 0
        self.depth = 0
        self.types: dict[str, Type] = {}
        self.ops: dict[str, type[Op] | None] = {}
        if text.startswith("//"):
            newline = text.find("\n")
            self.end = len(text) if newline < 0 else newline
        self.advance()

    # -- tokens -----------------------------------------------------------------------------------------
    def advance(self) -> None:
        m = _TOKEN.match(self.text, self.end)
        if m is None:
            pos = _SKIP.match(self.text, self.end).end()  # type: ignore[union-attr]
            if pos >= len(self.text):
                self.kind, self.val, self.start, self.end = _END, "", len(self.text), len(self.text)
            else:
                self.kind, self.val, self.start, self.end = _BAD, self.text[pos], pos, pos
            return
        kind = m.lastgroup
        val = m.group(kind)  # type: ignore[arg-type]
        self.kind, self.val, self.end = kind, val, m.end()
        self.start = self.end - len(val)

    def at(self, punct: str) -> bool:
        return self.kind == "PUNCT" and self.val == punct

    def at_word(self, word: str) -> bool:
        return self.kind == "WORD" and self.val == word

    def take(self, punct: str, *also: str) -> int:
        """Consume punctuation `punct` (else fail, expecting it and `also`); returns its offset."""
        if self.kind != "PUNCT" or self.val != punct:
            raise self.unexpected(f"'{punct}'", *also)
        start = self.start
        self.advance()
        return start

    def take_word(self, word: str, *also: str) -> int:
        if self.kind != "WORD" or self.val != word:
            raise self.unexpected(f"'{word}'", *also)
        start = self.start
        self.advance()
        return start

    def take_kind(self, kind: str, what: str, *also: str) -> tuple[str, int]:
        if self.kind != kind:
            raise self.unexpected(what, *also)
        val, start = self.val, self.start
        self.advance()
        return val, start

    def ident(self, what: str = A_NAME, *also: str) -> tuple[str, int]:
        if self.kind != "WORD" or "." in self.val:
            raise self.unexpected(what, *also)
        return self.take_kind("WORD", what)

    def whole(self, read: Callable[[], Any]) -> Any:
        value = self.nested(read)
        if self.kind != _END:
            raise self.unexpected("end of input")
        return value

    def nested(self, read: Callable[[], Any]) -> Any:
        """`read()` one level deeper, refusing text nested past MAX_NESTING."""
        if self.depth >= MAX_NESTING:
            raise self.error_at(self.start, f"nested more than {MAX_NESTING} levels deep")
        self.depth += 1
        try:
            return read()
        finally:
            self.depth -= 1

    # -- errors ------------------------------------------------------------------------------------------
    def position(self, pos: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, pos) + 1
        return line, pos - (self.text.rfind("\n", 0, pos) + 1) + 1

    def error_at(self, pos: int, message: str, expected: tuple[str, ...] = ()) -> ParseError:
        line, col = self.position(pos)
        return ParseError(message, line=line, column=col, source=self.source, expected=expected)

    def unexpected(self, *expected: str) -> ParseError:
        if self.kind == _END:
            what = "unexpected end of input"
        elif self.kind == _BAD:
            what = f"unexpected character {self.val!r}"
        else:
            what = f"unexpected {self.val!r}"
        expected = tuple(dict.fromkeys(expected))
        return self.error_at(self.start, what + (f"; expected {', '.join(expected)}" if expected else ""), expected)

    def guarded(self, pos: int, fn: Callable[[], Any]) -> Any:
        """Turn any failure while building what starts at `pos` into a ParseError there."""
        try:
            return fn()
        except (ParseError, VerifyError):
            raise
        except EmberError as err:
            raise self.error_at(pos, str(err)) from None
        except RecursionError:
            raise self.error_at(pos, f"nested too deeply (more than {MAX_NESTING} levels)") from None
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, ZeroDivisionError,
                AttributeError) as err:
            raise self.error_at(pos, f"{type(err).__name__}: {err}") from None

    # -- module --------------------------------------------------------------------------------------------
    def module(self) -> Module:
        module = Module()
        if self.at_word("module"):
            self.advance()
            if self.at("@"):
                self.advance()
                module.name = self.name()
            if self.at_word("attributes"):
                self.advance()
                module.attributes = self.attr_dict()
            self.take("{", "'@'", "'attributes'")
            while not self.at("}"):
                self.module_item(module, "'}'")
            self.advance()
            if self.kind != _END:
                raise self.unexpected("end of input")
        else:
            while self.kind != _END:
                self.module_item(module, "end of input")
        return module

    def module_item(self, module: Module, closing: str) -> None:
        if self.kind == "WORD":
            start = self.start
            if self.val == "func":
                fn = self.guarded(start, self.func)
                if fn.name in module.functions:
                    raise self.error_at(start, f"function @{fn.name} defined twice")
                module.add_function(fn)
                return
            if self.val == "symbol":
                self.guarded(start, lambda: self.symbol_decl(module))
                return
            if self.val == "weight":
                self.guarded(start, lambda: self.weight_decl(module))
                return
        raise self.unexpected("'func'", "'symbol'", "'weight'", closing)

    def symbol_decl(self, module: Module) -> None:
        start = self.take_word("symbol")
        name, name_at = self.ident()
        self.take_word("in")
        self.take("[")
        lo = int(self.take_kind("INT", AN_INT)[0])
        self.take(",")
        if self.at_word("inf"):
            hi = None
            self.advance()
        else:
            hi = int(self.take_kind("INT", AN_INT, "'inf'")[0])
        self.take("]")
        if name in module.symbols:
            raise self.error_at(name_at, f"symbol {name} declared twice")
        if name in DTYPES:
            raise self.error_at(name_at, f"symbol name {name} is an element type name")
        if hi is not None and hi < lo:
            raise self.error_at(start, f"symbol {name}: empty range [{lo}, {hi}]")
        module.symbols[name] = SymbolRange(lo, hi)

    def weight_decl(self, module: Module) -> None:
        self.take_word("weight")
        text, name_at = self.take_kind("STRING", A_STRING)
        name = _string(text)
        self.take(":")
        type_at = self.start
        t = self.type()
        if name in module.weights:
            raise self.error_at(name_at, f"weight {name!r} declared twice")
        if not isinstance(t, TensorType) or not t.is_static:
            raise self.error_at(type_at, f"weight {name!r} needs a tensor type with a static shape, got {t}")
        module.add_weight(name, type=t)

    def name(self) -> str:
        """An output or function name: bare or quoted."""
        if self.kind == "STRING":
            text = self.val
            self.advance()
            return _string(text)
        return self.ident(A_NAME, A_STRING)[0]

    def func(self) -> Function:
        start = self.take_word("func")
        self.take("@")
        name = self.name()
        names: set[str] = set()
        scope = _Scope(None, names)
        body = Block()
        self.take("(")
        if not self.at(")"):
            self.args(body, scope, "')'")
        self.take(")")
        self.take("->")
        self.take("(")
        out_names: list[str] = []
        out_types: list[Type] = []
        while not self.at(")"):
            if out_names:
                self.take(",", "')'")
            out_names.append(self.name())
            self.take(":")
            out_types.append(self.type())
        self.advance()
        if len(set(out_names)) != len(out_names):
            raise self.error_at(start, f"function @{name} has duplicate output names")
        self.take("{")
        self.statements(body, scope, "return")
        ret_at = self.start
        self.advance()
        outs = self.value_uses(scope) if self.kind == "VALUE" else []
        self.take("}", "','")
        if len(outs) != len(out_types):
            raise self.error_at(ret_at, f"return gives {len(outs)} values; @{name} declares {len(out_types)} results")
        for i, (v, t) in enumerate(zip(outs, out_types)):
            if v.type != t:
                raise self.error_at(ret_at, f"result {out_names[i]!r} is declared {t} but returns {v.type}")
        body.set_outputs(outs)
        return Function(name, body, out_names)

    def args(self, block: Block, scope: _Scope, closing: str) -> None:
        while True:
            text, at = self.take_kind("VALUE", A_VALUE, closing)
            self.take(":")
            self.define(scope, text, at, block.add_arg(self.type()))
            if not self.at(","):
                return
            self.advance()

    # -- statements -------------------------------------------------------------------------------------
    def statements(self, block: Block, scope: _Scope, terminator: str) -> None:
        """Statements up to the block's `terminator` word (return or yield), left current."""
        while True:
            kind = self.kind
            if kind == "VALUE" or (kind == "WORD" and "." in self.val):
                if kind == "VALUE" and self.simple_stmt(block, scope):
                    continue
                start = self.start
                self.guarded(start, lambda: self.stmt(block, scope, start))
            elif kind == "WORD" and self.val == terminator:
                return
            else:
                raise self.unexpected(A_VALUE, AN_OP, f"'{terminator}'")

    def simple_stmt(self, block: Block, scope: _Scope) -> bool:
        """The most common statement, `%r = dialect.op %a, %b : type loc("name")` on one line,
        read with one regular expression; False (nothing consumed) for anything else and for
        anything the general reader would complain about, so that it reports it."""
        m = _SIMPLE_STMT.match(self.text, self.start)
        if m is None:
            return False
        res, op_name, operand_text, type_text, loc_text = m.groups()
        t = self.types.get(type_text)
        cls = self.ops.get(op_name, False)
        if cls is False:
            cls = self.ops[op_name] = lookup(op_name)
        if t is None or cls is None or cls.region_fields or res in scope.function_names:
            return False
        operands = []
        for name in operand_text.split(","):
            v = scope.lookup(name.strip()[1:]) if name else None
            if v is None:
                if name:
                    return False
                continue
            operands.append(v)
        stmt_start = self.start
        self.end = m.end()
        self.advance()
        if (self.kind == "PUNCT" and self.val in (",", "(", "//", "{")) or self.at_word("loc"):
            self.end = stmt_start  # the statement goes on: the general reader reads it
            self.advance()
            return False
        loc = Location(tuple(_LOC_STRING.findall(loc_text))) if loc_text else Location()
        try:
            op = cls.create(operands, {}, result_types=(t,), loc=loc)
        except VerifyError:
            self.end = stmt_start
            self.advance()
            return False
        block.append(op)
        scope.function_names.add(res)
        scope.values[res] = value = op.results[0]
        value.name = res
        return True

    def value_uses(self, scope: _Scope) -> list[Value]:
        out = []
        while True:
            text, at = self.take_kind("VALUE", A_VALUE)
            v = scope.lookup(_value_name(text))
            if v is None:
                raise self.error_at(at, f"use of undefined value {text}")
            out.append(v)
            if not self.at(","):
                return out
            self.advance()

    def define(self, scope: _Scope, text: str, at: int, value: Value) -> None:
        name = _value_name(text)
        if name in scope.function_names:
            raise self.error_at(at, f"value %{name} is defined twice")
        scope.function_names.add(name)
        scope.values[name] = value
        value.name = name

    def stmt(self, block: Block, scope: _Scope, start: int) -> None:
        results: list[tuple[str, int]] = []
        if self.kind == "VALUE":
            while True:
                results.append((self.val, self.start))
                self.advance()
                if not self.at(","):
                    break
                self.advance()
                if self.kind != "VALUE":
                    raise self.unexpected(A_VALUE)
            self.take("=", "','")
        op_name, op_at = self.val, self.start
        if self.kind != "WORD" or not _OP_NAME.match(op_name):
            raise self.unexpected(AN_OP)
        self.advance()
        cls = self.ops.get(op_name, False)
        if cls is False:
            cls = self.ops[op_name] = lookup(op_name)
        if cls is None:
            raise self.error_at(op_at, f"unknown op {op_name}")
        operands: list[Value | None] = []
        if self.kind == "VALUE" or self.at_word("none"):
            while True:
                if self.kind == "VALUE":
                    v = scope.lookup(_value_name(self.val))
                    if v is None:
                        raise self.error_at(self.start, f"use of undefined value {self.val}")
                    operands.append(v)
                elif self.at_word("none"):
                    operands.append(None)
                else:
                    raise self.unexpected(A_VALUE, "'none'")
                self.advance()
                if not self.at(","):
                    break
                self.advance()
        attrs: dict[str, Any] = {}
        entries: list[tuple[str, int]] = []
        attr_at = None
        if self.at("{"):
            attr_at = self.start
            attrs = self.attr_dict(entries)
        types: list[Type] = []
        if self.at(":"):
            self.advance()
            types.append(self.type())
            while self.at(","):
                self.advance()
                types.append(self.type())
        regions: list[Block] = []
        if self.at("("):
            self.advance()
            fields = cls.region_fields
            while True:
                isolated = fields[len(regions)].isolated if len(regions) < len(fields) else False
                inner = _Scope(None if isolated else scope, scope.function_names)
                regions.append(self.nested(lambda: self.region(inner)))
                if not self.at(","):
                    break
                self.advance()
            self.take(")", "','")
        loc = Location()
        if self.at_word("loc"):
            self.advance()
            self.take("(")
            names = [_string(self.take_kind("STRING", A_STRING)[0])]
            while self.at(","):
                self.advance()
                names.append(_string(self.take_kind("STRING", A_STRING)[0]))
            self.take(")", "','")
            loc = Location(tuple(names))
        if len(types) != len(results):
            raise self.error_at(start, f"{op_name}: {len(results)} results named but {len(types)} types given")
        for key, at in entries:
            fld = cls.attr_fields.get(key)
            if fld is None:
                known = ", ".join(cls.attr_fields) or "none"
                raise self.error_at(at, f"{op_name}: unknown attribute {key!r} (known: {known})")
            try:
                fld.kind.normalize(attrs[key])
            except AttrError as err:
                raise self.error_at(at, f"{op_name}: attribute {key!r}: {err}") from None
        try:
            cls.normalize_attributes(attrs, loc)
        except VerifyError as err:
            raise self.error_at(op_at if attr_at is None else attr_at, str(err)) from None
        if len(regions) != len(cls.region_fields):
            raise self.error_at(op_at, f"{op_name} takes {len(cls.region_fields)} regions, got {len(regions)}")
        try:
            op = cls.create(operands, attrs, result_types=types, regions=regions, loc=loc)
        except VerifyError as err:
            raise self.error_at(op_at, str(err)) from None
        block.append(op)
        for (text, at), r in zip(results, op.results):
            self.define(scope, text, at, r)

    def region(self, scope: _Scope) -> Block:
        self.take("{")
        block = Block()
        if self.at("^bb0"):
            self.advance()
            self.take("(")
            if not self.at(")"):
                self.args(block, scope, "')'")
            self.take(")")
            self.take(":")
        self.statements(block, scope, "yield")
        self.advance()
        outs = self.value_uses(scope) if self.kind == "VALUE" else []
        self.take("}", "','")
        block.set_outputs(outs)
        return block

    # -- attributes ---------------------------------------------------------------------------------------
    def attr_dict(self, entries: list[tuple[str, int]] | None = None) -> dict[str, Any]:
        self.take("{")
        out: dict[str, Any] = {}
        while not self.at("}"):
            if out:
                self.take(",", "'}'")
            key, at = self.ident("a name", "'}'")
            if key in out:
                raise self.error_at(at, f"attribute {key!r} given twice")
            self.take("=")
            out[key] = self.guarded(at, self.attr_value)
            if entries is not None:
                entries.append((key, at))
        self.advance()
        return out

    def attr_value(self) -> Any:
        kind, val = self.kind, self.val
        if kind == "STRING":
            self.advance()
            return _string(val)
        if kind == "FLOAT":
            self.advance()
            return float(val)
        if kind == "PUNCT":
            if val == "[":
                return self.nested(self.attr_list)
            if val == "-":
                self.advance()
                if self.kind == "FLOAT":
                    value = float(self.val)
                    self.advance()
                    return -value
                if self.at_word("inf"):
                    self.advance()
                    return float("-inf")
                return self.expr_rest(D.mul(self.nested(self.factor), -1))
        elif kind == "WORD":
            if val == "true" or val == "false":
                self.advance()
                return val == "true"
            if val == "nan" or val == "inf":
                self.advance()
                return float(val)
            if val == "dense":
                return self.dense()
            if val in ("seq", "opt"):
                return self.type()
            if val in DTYPES:
                if self.text.startswith("[", self.next_start()):
                    return self.type()
                self.advance()
                return DTYPES[val]
            if "." not in val and self.text.startswith("[", self.next_start()):
                return self.type()  # an unknown element type: the type reader names it
        return self.expr()

    def next_start(self) -> int:
        """Where the token after the current one starts."""
        return _SKIP.match(self.text, self.end).end()  # type: ignore[union-attr]

    def attr_list(self) -> tuple:
        self.take("[")
        items = []
        while not self.at("]"):
            if items:
                self.take(",", "']'")
            items.append(self.attr_value())
        self.advance()
        return tuple(items)

    def float_value(self) -> float | None:
        """A float literal at the current token (FLOAT, -FLOAT, nan, inf, -inf), or None."""
        if self.kind == "FLOAT":
            value = float(self.val)
            self.advance()
            return value
        if self.kind == "WORD" and self.val in ("nan", "inf"):
            value = float(self.val)
            self.advance()
            return value
        return None

    # -- dense literals -----------------------------------------------------------------------------------
    def dense(self) -> Dense:
        self.take_word("dense")
        self.take("<")
        type_at = self.start
        t = self.type()
        self.take(":")
        if not isinstance(t, TensorType) or not t.is_static:
            raise self.error_at(type_at, f"dense needs a tensor type with a static shape, got {t}")
        shape = t.static_shape
        try:
            count = numel(shape, f"dense<{t}>")
        except SizeError as err:
            raise self.error_at(type_at, str(err)) from None
        data_at = self.start
        if self.kind == "HEX":
            text = self.val
            self.advance()
            itemsize = t.dtype.itemsize if t.dtype is not string else 0
            raw = bytes.fromhex(text[2:]) if len(text) % 2 == 0 else None
            if raw is None or t.dtype is string or len(raw) != count * itemsize:
                raise self.error_at(data_at, f"hex data has the wrong length for {t}")
            self.take(">")
            return Dense(np.frombuffer(raw, dtype=t.dtype.np_dtype).reshape(shape))
        fast = self.dense_numbers(t, count) if self.at("[") else None
        if fast is not None:
            self.take(">")
            return Dense(fast.reshape(shape), t.dtype)
        flat: list[Any] = []
        self.nested(lambda: self.dense_value(flat))
        self.take(">", "','")
        return Dense(self.dense_array(flat, t, count, data_at).reshape(shape), t.dtype)

    def dense_value(self, out: list[Any]) -> None:
        if self.at("["):
            self.advance()
            first = True
            while not self.at("]"):
                if not first:
                    self.take(",", "']'")
                first = False
                self.nested(lambda: self.dense_value(out))
            self.advance()
            return
        kind, val = self.kind, self.val
        if kind == "INT":
            out.append(int(val))
        elif kind == "STRING":
            out.append(_string(val))
        elif kind == "WORD" and val in ("true", "false"):
            out.append(val == "true")
        elif kind == "PUNCT" and val == "-":
            self.advance()
            if self.kind == "INT":
                out.append(-int(self.val))
            elif self.kind == "FLOAT":
                out.append(-float(self.val))
            elif self.at_word("inf"):
                out.append(float("-inf"))
            else:
                raise self.unexpected(AN_INT, "a float", "'inf'")
        else:
            value = self.float_value()
            if value is None:
                raise self.unexpected("'['", AN_INT, "a float", A_STRING, "'true'", "'false'")
            out.append(value)
            return
        self.advance()

    def dense_array(self, flat: list[Any], t: TensorType, count: int, data_at: int) -> np.ndarray:
        if len(flat) != count:
            raise self.error_at(data_at, f"dense data has {len(flat)} elements; {t} needs {count}")
        if t.dtype is string:
            if not all(isinstance(x, str) for x in flat):
                raise self.error_at(data_at, "a str tensor needs string elements")
            arr = np.empty(count, dtype=object)
            arr[:] = flat
            return arr
        if any(isinstance(x, str) for x in flat):
            raise self.error_at(data_at, f"string elements in a {t.dtype} tensor")
        if t.dtype.is_int and any(isinstance(x, float) for x in flat):
            raise self.error_at(data_at, f"float elements in an integer tensor {t}")
        if t.dtype.is_int:
            lo, hi = _int_range(t.dtype)
            if any(not (lo <= int(x) <= hi) for x in flat):
                raise self.error_at(data_at, f"integer out of range for {t.dtype}")
        try:
            values = np.array(flat, dtype=object)
            return values.astype(np.float64 if t.dtype.is_float else object).astype(t.dtype.np_dtype)
        except (TypeError, ValueError, OverflowError) as err:
            raise self.error_at(data_at, f"bad dense data for {t}: {err}") from None

    def dense_numbers(self, t: TensorType, count: int) -> np.ndarray | None:
        """The common case read whole: a nested list of plain numbers (or of true/false for
        bool) with exactly the brackets `t`'s shape needs. Anything else (comments, strings,
        spaced minus signs, a wrong shape, huge integers) returns None, for the token-by-token
        reader and its messages."""
        dt = t.dtype
        if dt is string or dt.kind not in ("float", "int", "uint", "bool"):
            return None
        m = _DENSE_BODY.match(self.text, self.start)
        if m is None:
            return None
        body = m.group()
        after = _SKIP.match(self.text, m.end()).end()  # type: ignore[union-attr]
        if not self.text.startswith(">", after):
            return None
        if body.translate(_SKELETON) != _skeleton(t.static_shape):
            return None
        flat = body.translate(_NO_BRACKETS)
        if dt.kind == "bool":
            if not _BOOL_ELEMENTS.fullmatch(flat):
                return None
            flat = flat.replace("true", "1").replace("false", "0")
            arr = _from_text(flat, np.uint8, count)
            arr = None if arr is None else arr.astype(bool)
        elif dt.kind == "float":
            if not _FLOAT_ELEMENTS.fullmatch(flat):
                return None
            arr = _from_text(flat, np.float64, count)
            if arr is not None and int(np.isinf(arr).sum()) != flat.count("inf"):
                return None  # a literal past float64's range: the reader one by one decides
            arr = None if arr is None else arr.astype(dt.np_dtype)
        else:
            if not _INT_ELEMENTS.fullmatch(flat):
                return None
            arr = _from_text(flat, np.int64, count)
            if arr is not None and arr.size and (arr.max() == _I64.max or arr.min() == _I64.min):
                return None  # at or past int64's ends (numpy saturates): read one by one, exactly
            if arr is not None and arr.size:
                lo, hi = _int_range(dt)
                if int(arr.min()) < lo or int(arr.max()) > hi:
                    raise self.error_at(self.start, f"integer out of range for {dt}")
            arr = None if arr is None else arr.astype(dt.np_dtype)
        if arr is None:
            return None
        self.end = m.end()
        self.advance()
        return arr

    # -- types and dims -----------------------------------------------------------------------------------
    def type(self) -> Type:
        m = _SIMPLE_TYPE.match(self.text, self.start) if self.kind == "WORD" else None
        if m is not None:
            cached = self.types.get(m.group())
            if cached is not None:
                self.end = m.end()
                self.advance()
                return cached
        t = self.nested(self.type_uncached)
        if m is not None and _SKIP.match(self.text, m.end()).end() == self.start:  # type: ignore[union-attr]
            self.types[m.group()] = t  # the same text is the same type: read it once
        return t

    def type_uncached(self) -> Type:
        if self.kind == "WORD" and self.val in ("seq", "opt"):
            kind = self.val
            self.advance()
            self.take("<")
            element = self.type()
            self.take(">")
            return SequenceType(element) if kind == "seq" else OptionalType(element)
        name, at = self.ident(A_TYPE)
        dt = DTYPES.get(name)
        if dt is None:
            if self.at("["):
                raise self.error_at(at, f"unknown element type '{name}'")
            raise self.unexpected("'['")
        self.take("[")
        if self.at("*"):
            self.advance()
            self.take("]")
            return TensorType(dt, None)
        shape = []
        while not self.at("]"):
            if shape:
                self.take(",", "']'")
            shape.append(self.dim())
        self.advance()
        return TensorType(dt, tuple(shape))

    def dim(self) -> D.Dim:
        if self.at("?"):
            self.advance()
            if not self.at("<="):
                return D.Unknown()
            self.advance()
            bound_at = self.start
            bound = self.expr()
            if isinstance(bound, D.Unknown):  # pragma: no cover - expr() never gives one
                raise self.error_at(bound_at, "a bound cannot be unknown")
            return D.Unknown(bound)
        return self.expr()

    def expr(self) -> D.Dim:
        return self.expr_rest(self.term())

    def expr_rest(self, value: D.Dim) -> D.Dim:
        value = self.term_rest(value)
        while self.kind == "PUNCT" and self.val in ("+", "-"):
            op, at = self.val, self.start
            self.advance()
            rhs = self.term()
            value = self.arith(at, D.add, value, rhs if op == "+" else D.mul(rhs, -1))
        return value

    def term(self) -> D.Dim:
        return self.term_rest(self.nested(self.factor))

    def term_rest(self, value: D.Dim) -> D.Dim:
        while True:
            if self.kind == "VALUE" and self.val[1:2] != '"':
                self.end = self.start + 1  # `N%3` reads as N % 3, not N and a value %3
                self.kind, self.val = "PUNCT", "%"
            if self.kind != "PUNCT" or self.val not in ("*", "//", "%"):
                return value
            op, at = self.val, self.start
            self.advance()
            rhs = self.nested(self.factor)
            fn = D.mul if op == "*" else D.floordiv if op == "//" else D.mod
            value = self.arith(at, fn, value, rhs)

    def arith(self, at: int, fn: Callable[[Any, Any], D.Dim], a: D.Dim, b: D.Dim) -> D.Dim:
        try:
            return fn(a, b)
        except EmberError as err:
            raise self.error_at(at, str(err)) from None

    def factor(self) -> D.Dim:
        kind, val, at = self.kind, self.val, self.start
        if kind == "INT":
            self.advance()
            return int(val)
        if kind == "WORD" and "." not in val:
            if val in ("max", "min") and self.text.startswith("(", self.next_start()):
                self.advance()
                self.take("(")
                a = self.expr()
                self.take(",")
                b = self.expr()
                self.take(")", "','")
                return self.arith(at, D.dmax if val == "max" else D.dmin, a, b)
            self.advance()
            if val in DTYPES:
                raise self.error_at(at, f"{val} is an element type, not a dim")
            return D.sym(val)
        if kind == "PUNCT":
            if val == "-":
                self.advance()
                return D.mul(self.nested(self.factor), -1)
            if val == "(":
                self.advance()
                value = self.expr()
                self.take(")", "'+'", "'-'", "'*'", "'//'", "'%'")
                return value
            if val == "?":
                raise self.error_at(at, "'?' cannot appear inside an expression")
        raise self.unexpected(A_DIM, AN_INT, "a symbol", "'('", "'-'", "'max'", "'min'")


def _value_name(text: str) -> str:
    name = text[1:]
    return _string(name) if name.startswith('"') else name


def _string(token: str) -> str:
    """A STRING token's text (json.loads only when it has escapes)."""
    return token[1:-1] if "\\" not in token else json.loads(token)


def _int_range(dt: DType) -> tuple[int, int]:
    if dt.bits >= 8:
        info = np.iinfo(dt.np_dtype)
        return int(info.min), int(info.max)
    if dt.kind == "int":
        return -(1 << (dt.bits - 1)), (1 << (dt.bits - 1)) - 1
    return 0, (1 << dt.bits) - 1


# -- dense literals read whole ---------------------------------------------------------------------------
_DENSE_BODY = re.compile(r"\[[\[\],0-9.eE+\-a-z \t\f\r\n]*\]")
_SPACE = "[ \t\f\r\n]*+"
_NUMBER = r"-?(?:\d++(?:\.\d*+)?+(?:[eE][+-]?\d++)?+|inf)|nan"  # INT, FLOAT, -x, inf, -inf, nan


def _elements(item: str) -> re.Pattern[str]:
    """Comma-separated `item`s (or nothing), with any whitespace around them (possessive:
    there is nothing to backtrack into, and it is three times faster)."""
    one = f"{_SPACE}(?>{item}){_SPACE}"
    return re.compile(f"(?:{one}(?:,{one})*+)?+{_SPACE}")


_FLOAT_ELEMENTS = _elements(_NUMBER)
_INT_ELEMENTS = _elements(r"-?\d++")
_BOOL_ELEMENTS = _elements("true|false")
_I64 = np.iinfo(np.int64)
_SKELETON = str.maketrans("", "", "0123456789.eE+-abcdefghijklmnopqrstuvwxyz \t\f\r\n")
_NO_BRACKETS = str.maketrans("", "", "[]")
_SIMPLE_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\[[A-Za-z0-9_, ?*]*\]")
_PLAIN = r"[A-Za-z0-9_.$-]+"
_PLAIN_STRING = r'"[^"\\\x00-\x1f]*"'
_SIMPLE_STMT = re.compile(
    rf"%({_PLAIN})[ \t]*=[ \t]*([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)"
    rf"((?:[ \t]+%{_PLAIN}(?:[ \t]*,[ \t]*%{_PLAIN})*)?)"
    rf"[ \t]*:[ \t]*({_SIMPLE_TYPE.pattern})"
    rf"(?:[ \t]+loc\([ \t]*({_PLAIN_STRING}(?:[ \t]*,[ \t]*{_PLAIN_STRING})*)[ \t]*\))?")
_LOC_STRING = re.compile(r'"([^"]*)"')


def _skeleton(shape: tuple[int, ...]) -> str:
    """The brackets and commas of a nested list of `shape`: (2, 3) gives `[[,,],[,,]]`."""
    text = "[" + "," * (shape[-1] - 1) + "]" if shape[-1] > 0 else "[]"
    for d in reversed(shape[:-1]):
        text = "[" + ",".join([text] * d) + "]" if d > 0 else "[]"
    return text


def _from_text(flat: str, dtype: type, count: int) -> np.ndarray | None:
    if count == 0:
        return np.zeros(0, dtype) if not flat.strip() else None
    try:
        arr = np.fromstring(flat, dtype=dtype, sep=",")
    except (ValueError, DeprecationWarning):
        return None
    return arr if arr.size == count else None
