"""What lark's parser does as it reads the IR's text: it builds the module.

`Actions` is given to lark as its embedded transformer: a method named for a rule (or an
alias) runs as the rule reduces, given its children, and a method named for a terminal
runs as the token is shifted. So the module grows statement by statement, and no parse
tree is kept: values are looked up and defined in scopes as their statements reduce, ops
are made with `cls.create`, regions open and close their scopes (isolated ones see
nothing outside). A `Run` holds one parse's state; lark's parser is built once and
shared, so the actions find the run through a context variable.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from functools import wraps
from typing import Any, Callable

import numpy as np
from lark import Token

from ember.errors import EmberError, ParseError, VerifyError
from ember.ir import dims as D
from ember.ir.attrs import AttrError, Dense
from ember.ir.core import Block, Function, Location, Module, SymbolRange, Value
from ember.ir.dense_text import OutOfRange, from_elements, read_numbers
from ember.ir.opdef import lookup
from ember.ir.sizes import SizeError, numel
from ember.ir.types import DTYPES, OptionalType, SequenceType, TensorType, Type, string

MAX_NESTING = 100
"""Brackets of every kind ((, [, {, <) nest at most this deep. The parser itself keeps
an explicit stack, but what it builds (nested lists, container types) is walked
recursively later; no model comes near the bound."""

CURRENT: ContextVar["Run"] = ContextVar("ember.ir.parse_actions.current")
"""The run the actions work for."""


class Scope:
    """Visible value names; an isolated region starts a scope that sees nothing outside."""

    __slots__ = ("parent", "values", "function_names")

    def __init__(self, parent: "Scope | None", function_names: set[str]) -> None:
        self.parent, self.values, self.function_names = parent, {}, function_names

    def lookup(self, name: str) -> Value | None:
        scope: Scope | None = self
        while scope is not None:
            v = scope.values.get(name)
            if v is not None:
                return v
            scope = scope.parent
        return None


class Run:
    """One run of the parser over one text: the module as it is built, and positions for
    messages. A coarse terminal's inside is read by a run of its own over the token's
    text, `offset` characters into the `whole` text that its messages point into."""

    __slots__ = ("text", "source", "whole", "offset", "what", "module", "scope", "block", "outer", "pending",
                 "depth", "types", "ops")

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source, self.whole, self.offset, self.what = text, source, text, 0, "input"
        self.module = Module()
        self.scope = Scope(None, set())
        self.block = Block()
        self.outer: list[tuple[Scope, Block]] = []  # the enclosing blocks of open regions
        self.pending: list[_Pending] = []  # statements whose regions are being read
        self.depth = 0
        self.types: dict[str, Type] = {}  # a type's text -> the type: each distinct text read once
        self.ops: dict[str, Any] = {}  # an op name -> its class (None: unknown)

    def inside(self, tok: Token, what: str) -> "Run":
        """A run over a coarse terminal's text, sharing this one's types and nesting."""
        run = Run(tok.value, self.source)
        run.whole, run.offset, run.what = self.whole, self.offset + tok.start_pos, what
        run.depth, run.types = self.depth, self.types
        return run

    # -- positions and errors ------------------------------------------------------------------------
    def error(self, tok: Token, message: str) -> ParseError:
        return self.error_at(tok.start_pos, message)

    def error_at(self, pos: int, message: str, expected: tuple[str, ...] = ()) -> ParseError:
        pos += self.offset
        line = self.whole.count("\n", 0, pos) + 1
        column = pos - (self.whole.rfind("\n", 0, pos) + 1) + 1
        return ParseError(message, line=line, column=column, source=self.source, expected=expected)

    def after(self, tok: Token, message: str) -> ParseError:
        """An error at what follows `tok` (a type or data whose own position is not kept)."""
        return self.error_at(_SPACE_OR_COMMENT.match(self.text, tok.end_pos).end(), message)  # type: ignore

    # -- values ----------------------------------------------------------------------------------------
    def use(self, tok: Token) -> Value:
        v = self.scope.lookup(_value_name(tok.value))
        if v is None:
            raise self.error(tok, f"use of undefined value {tok.value}")
        return v

    def define(self, tok: Token, value: Value) -> None:
        name = _value_name(tok.value)
        scope = self.scope
        if name in scope.function_names:
            raise self.error(tok, f"value %{name} is defined twice")
        scope.function_names.add(name)
        scope.values[name] = value
        value.name = name


class _Pending:
    """A statement read up to its result types, waiting for its regions and location."""

    __slots__ = ("parts", "opened")

    def __init__(self, parts: tuple) -> None:
        self.parts, self.opened = parts, 0


class _AttrDict(dict):
    """An attribute dict, with where each key and the dict itself are (for messages)."""

    __slots__ = ("keys_at", "at")


class _ElementName:
    """An element type's name read where a dim could be (`f32`): an attribute's value if
    it stands alone (`{to = f32}`), an error inside a dim."""

    __slots__ = ("tok",)

    def __init__(self, tok: Token) -> None:
        self.tok = tok


_CONVERTED = (EmberError, ValueError, TypeError, KeyError, IndexError, OverflowError, ZeroDivisionError,
              AttributeError)
"""Failures turned into a ParseError at what was being built (a ParseError or VerifyError
is raised as it is)."""


def _guarded(action: Callable[[Any, list], Any]) -> Callable[[Any, list], Any]:
    """A failure while `action` builds turns into a ParseError at its first token."""
    @wraps(action)
    def guarded(self: Any, c: list) -> Any:
        try:
            return action(self, c)
        except (ParseError, VerifyError):
            raise
        except _CONVERTED as err:
            at = next((x for x in c if type(x) is Token), None)
            raise _converted(CURRENT.get(), at, err) from None
    return guarded


class Actions:
    """lark's embedded transformer (see the module's docstring)."""

    # -- brackets: a bound on nesting -----------------------------------------------------------------
    def _open(self, tok: Token) -> Token:
        run = CURRENT.get()
        run.depth += 1
        if run.depth > MAX_NESTING:
            raise run.error(tok, f"nested more than {MAX_NESTING} levels deep")
        return tok

    def _close(self, tok: Token) -> Token:
        CURRENT.get().depth -= 1
        return tok

    LPAR = LSQB = LBRACE = LESSTHAN = _open
    RPAR = RSQB = RBRACE = MORETHAN = _close

    # -- coarse terminals ------------------------------------------------------------------------------
    def TENSOR_TYPE(self, tok: Token) -> Type:
        """A one-line tensor type: read through the rule `tensor_type` once per distinct text."""
        run = CURRENT.get()
        t = run.types.get(tok.value)
        if t is None:
            from ember.ir.parser import run as parse_run  # (the parser imports this module)
            t = run.types[tok.value] = parse_run(run.inside(tok, "the type"), "tensor_type")
        return t

    def LOCATION(self, tok: Token) -> Location:
        text = tok.value
        if '", "' not in text and "\\" not in text:
            return Location((text[5:-2],))
        return Location(tuple(_string(s) for s in _LOC_STRING.findall(text)))

    # -- module ----------------------------------------------------------------------------------------
    def start(self, c: list) -> Module:
        return CURRENT.get().module

    @_guarded
    def module(self, c: list) -> None:
        module = CURRENT.get().module
        for x in c:
            if type(x) is str or type(x) is Token:
                module.name = _text(x)
            elif type(x) is _AttrDict:
                module.attributes = dict(x)

    @_guarded
    def symbol_decl(self, c: list) -> None:
        run = CURRENT.get()
        start, name_tok, lo_tok, hi_tok = c
        name, lo = name_tok.value, int(lo_tok.value)
        hi = None if hi_tok.type == "INF" else int(hi_tok.value)
        module = run.module
        if name in module.symbols:
            raise run.error(name_tok, f"symbol {name} declared twice")
        if name in DTYPES:
            raise run.error(name_tok, f"symbol name {name} is an element type name")
        if hi is not None and hi < lo:
            raise run.error(start, f"symbol {name}: empty range [{lo}, {hi}]")
        module.symbols[name] = SymbolRange(lo, hi)

    @_guarded
    def weight_decl(self, c: list) -> None:
        run = CURRENT.get()
        name_tok, colon, t = c[1], c[2], c[3]
        name = _string(name_tok.value)
        if name in run.module.weights:
            raise run.error(name_tok, f"weight {name!r} declared twice")
        if not isinstance(t, TensorType) or not t.is_static:
            raise run.after(colon, f"weight {name!r} needs a tensor type with a static shape, got {t}")
        run.module.add_weight(name, type=t)

    def string(self, c: list) -> str:
        return _string(c[0].value)

    # -- functions -------------------------------------------------------------------------------------
    def FUNC(self, tok: Token) -> Token:
        """A function starts: a fresh scope and body (its arguments are defined into them)."""
        run = CURRENT.get()
        run.scope = Scope(None, set())
        run.block = Block()
        return tok

    def arg(self, c: list) -> None:
        run = CURRENT.get()
        run.define(c[0], run.block.add_arg(c[1]))

    def result_decl(self, c: list) -> tuple[str, Type]:
        return _text(c[0]), c[1]

    @_guarded
    def func_head(self, c: list) -> tuple:
        start, name = c[0], _text(c[1])
        outs = [x for x in c[2:] if type(x) is tuple]
        names = [n for n, _ in outs]
        if len(set(names)) != len(names):
            raise CURRENT.get().error(start, f"function @{name} has duplicate output names")
        return start, name, names, [t for _, t in outs]

    @_guarded
    def func(self, c: list) -> None:
        run = CURRENT.get()
        start, name, out_names, out_types = c[0]
        ret, values = _after_keyword(c, "RETURN")
        outs = [run.use(v) for v in values]
        if len(outs) != len(out_types):
            raise run.error(ret, f"return gives {len(outs)} values; @{name} declares {len(out_types)} results")
        for i, (v, t) in enumerate(zip(outs, out_types)):
            if v.type != t:
                raise run.error(ret, f"result {out_names[i]!r} is declared {t} but returns {v.type}")
        body = run.block
        body.set_outputs(outs)
        if name in run.module.functions:
            raise run.error(start, f"function @{name} defined twice")
        run.module.add_function(Function(name, body, out_names))

    # -- statements ------------------------------------------------------------------------------------
    def stmt_head(self, c: list) -> None:
        """A statement up to its result types: its op and operands are looked up (the
        operands were defined before); the op is made once its regions and location are."""
        run = CURRENT.get()
        try:
            run.pending.append(_Pending(_statement(run, c)))
        except (ParseError, VerifyError):
            raise
        except _CONVERTED as err:
            raise _converted(run, c[0], err) from None

    def stmt(self, c: list) -> None:
        _finish(CURRENT.get(), c, ())

    def region_stmt(self, c: list) -> None:
        _finish(CURRENT.get(), c, [x for x in c if type(x) is Block])

    def region_open(self, c: list) -> None:
        """A region starts: its own block, in a scope that sees outside unless isolated."""
        run = CURRENT.get()
        pending = run.pending[-1]
        fields = pending.parts[2].region_fields
        isolated = fields[pending.opened].isolated if pending.opened < len(fields) else False
        pending.opened += 1
        run.outer.append((run.scope, run.block))
        run.scope = Scope(None if isolated else run.scope, run.scope.function_names)
        run.block = Block()

    @_guarded
    def region(self, c: list) -> Block:
        run = CURRENT.get()
        _, values = _after_keyword(c, "YIELD")
        block = run.block
        block.set_outputs([run.use(v) for v in values])
        run.scope, run.block = run.outer.pop()
        return block

    def loc(self, c: list) -> Location:
        return Location(tuple(_string(s.value) for s in c))

    # -- attributes ------------------------------------------------------------------------------------
    def attr_dict(self, c: list) -> _AttrDict:
        run = CURRENT.get()
        out = _AttrDict()
        out.keys_at, out.at = {}, c[0]
        for entry in c:
            if type(entry) is not tuple:
                continue  # punctuation
            key_tok, value = entry
            key = key_tok.value
            if key in out:
                raise run.error(key_tok, f"attribute {key!r} given twice")
            out[key] = _attr(value)
            out.keys_at[key] = key_tok
        return out

    def attr_entry(self, c: list) -> tuple[Token, Any]:
        return c[0], c[1]

    def list(self, c: list) -> tuple:
        return tuple(_attr(x) for x in c)

    def true(self, c: list) -> bool:
        return True

    def false(self, c: list) -> bool:
        return False

    def float(self, c: list) -> float:
        return float(c[0].value)

    def neg_float(self, c: list) -> float:
        return -float(c[0].value)

    def neg_inf(self, c: list) -> float:
        return float("-inf")

    # -- dense literals --------------------------------------------------------------------------------
    def dense(self, c: list) -> Dense:
        run = CURRENT.get()
        lt, t, colon, body = c[1], c[2], c[3], c[4]
        if not isinstance(t, TensorType) or not t.is_static:
            raise run.after(lt, f"dense needs a tensor type with a static shape, got {t}")
        try:
            count = numel(t.static_shape, f"dense<{t}>")
        except SizeError as err:
            raise run.after(lt, str(err)) from None
        try:
            return _dense(run, t, count, colon, body)
        except (ParseError, VerifyError):
            raise
        except _CONVERTED as err:
            raise run.after(colon, f"{type(err).__name__}: {err}") from None

    def dense_list(self, c: list) -> list:
        out: list = []
        for x in c:
            if type(x) is list:
                out.extend(x)
            else:
                out.append(x)
        return out

    @_guarded  # (Python refuses to read integers of more than 4,300 digits)
    def int(self, c: list) -> int:
        return int(c[0].value)

    @_guarded
    def neg_int(self, c: list) -> int:
        return -int(c[0].value)

    # -- types and dims --------------------------------------------------------------------------------
    @_guarded
    def tensor_type(self, c: list) -> TensorType:
        run = CURRENT.get()
        name = c[0]
        dt = DTYPES.get(name.value)
        if dt is None:
            raise run.error(name, f"unknown element type '{name.value}'")
        if len(c) == 2 and type(c[1]) is Token and c[1].type == "STAR":
            return TensorType(dt, None)
        return TensorType(dt, tuple(_dim(run, d) for d in c[1:]))

    def container_type(self, c: list) -> Type:
        return SequenceType(c[1]) if c[0].type == "SEQ" else OptionalType(c[1])

    def unknown(self, c: list) -> D.Unknown:
        return D.Unknown()

    def bounded(self, c: list) -> D.Unknown:
        return D.Unknown(_dim(CURRENT.get(), c[0]))

    def symbol(self, c: list) -> Any:
        name = c[0].value
        return _ElementName(c[0]) if name in DTYPES else D.sym(name)

    def parens(self, c: list) -> D.Dim:
        return _dim(CURRENT.get(), c[1])

    def neg(self, c: list) -> D.Dim:
        return _arith(c[0], D.mul, c[1], -1)

    def add(self, c: list) -> D.Dim:
        return _arith(c[1], D.add, c[0], c[2])

    def sub(self, c: list) -> D.Dim:
        return _arith(c[1], lambda a, b: D.add(a, D.mul(b, -1)), c[0], c[2])

    def mul(self, c: list) -> D.Dim:
        return _arith(c[1], D.mul, c[0], c[2])

    def floordiv(self, c: list) -> D.Dim:
        return _arith(c[1], D.floordiv, c[0], c[2])

    def mod(self, c: list) -> D.Dim:
        return _arith(c[1], D.mod, c[0], c[2])

    def max(self, c: list) -> D.Dim:
        return _arith(c[0], D.dmax, c[2], c[4])

    def min(self, c: list) -> D.Dim:
        return _arith(c[0], D.dmin, c[2], c[4])


def dim_value(run: Run, value: Any) -> D.Dim:
    """A dim read on its own (parse_dim): an element type's name is not one."""
    return _dim(run, value)


# -- statements ---------------------------------------------------------------------------------------------
def _statement(run: Run, c: list) -> tuple:
    """A statement's head, read: (result tokens, op token, op class, operands, attributes,
    types, location)."""
    results: list[Token] = []
    operands: list[Value | None] = []
    types: list[Type] = []
    attrs = None
    op = cls = None
    values = run.scope.values
    for x in c:
        k = type(x)
        if k is Token:
            kind = x.type
            if kind == "VALUE":
                if op is None:
                    results.append(x)
                    continue
                v = values.get(x.value[1:])  # (a quoted name, `%"..."`, is never a plain key)
                operands.append(v if v is not None else run.use(x))
            elif kind == "OP_NAME":
                op = x
                cls = run.ops.get(x.value, False)
                if cls is False:
                    cls = run.ops[x.value] = lookup(x.value)
                if cls is None:
                    raise run.error(x, f"unknown op {x.value}")
            elif kind == "NONE":
                operands.append(None)
        elif k is _AttrDict:
            attrs = x
        else:
            types.append(x)
    return results, op, cls, operands, attrs, types, _NO_LOC


def _finish(run: Run, c: list, regions: list[Block] | tuple) -> None:
    """A statement's regions and location are read: make its op."""
    parts = run.pending.pop().parts
    if type(c[-1]) is Location:
        parts = parts[:6] + (c[-1],)
    try:
        _place(run, parts, regions)
    except (ParseError, VerifyError):
        raise
    except _CONVERTED as err:
        raise _converted(run, parts[0][0] if parts[0] else parts[1], err) from None


def _place(run: Run, parts: tuple, regions: list[Block] | tuple) -> None:
    """Make the op a statement describes, append it to the current block, define its results."""
    results, op_tok, cls, operands, attrs, types, loc = parts
    op_name = op_tok.value
    if len(types) != len(results):
        start = results[0] if results else op_tok
        raise run.error(start, f"{op_name}: {len(results)} results named but {len(types)} types given")
    if attrs:
        for key, at in attrs.keys_at.items():
            fld = cls.attr_fields.get(key)
            if fld is None:
                known = ", ".join(cls.attr_fields) or "none"
                raise run.error(at, f"{op_name}: unknown attribute {key!r} (known: {known})")
            try:
                fld.kind.normalize(attrs[key])
            except AttrError as err:
                raise run.error(at, f"{op_name}: attribute {key!r}: {err}") from None
        try:
            cls.normalize_attributes(attrs, loc)
        except VerifyError as err:
            raise run.error(attrs.at, str(err)) from None
    if len(regions) != len(cls.region_fields):
        raise run.error(op_tok, f"{op_name} takes {len(cls.region_fields)} regions, got {len(regions)}")
    try:
        op = cls.create(operands, attrs, result_types=types, regions=regions, loc=loc)
    except VerifyError as err:
        raise run.error(op_tok, str(err)) from None
    run.block.append(op)
    for tok, r in zip(results, op.results):
        run.define(tok, r)


def _after_keyword(c: list, keyword: str) -> tuple[Token, list]:
    """The `return` (or `yield`) token among a block's children, and the values after it."""
    for i in range(len(c) - 1, -1, -1):
        x = c[i]
        if type(x) is Token and x.type == keyword:
            return x, c[i + 1:]
    raise AssertionError(f"no {keyword} among the children")  # the grammar puts one there


# -- dense literals -------------------------------------------------------------------------------------------
def _dense(run: Run, t: TensorType, count: int, colon: Token, body: Any) -> Dense:
    shape = t.static_shape
    if type(body) is Token and body.type == "HEX":
        itemsize = t.dtype.itemsize if t.dtype is not string else 0
        raw = bytes.fromhex(body.value[2:]) if len(body.value) % 2 == 0 else None
        if raw is None or t.dtype is string or len(raw) != count * itemsize:
            raise run.error(body, f"hex data has the wrong length for {t}")
        return Dense(np.frombuffer(raw, dtype=t.dtype.np_dtype).reshape(shape))
    if type(body) is Token:  # DENSE_BODY: the numbers read by numpy, else element by element
        try:
            numbers = read_numbers(body.value, t, count)
        except OutOfRange as err:
            raise run.error(body, str(err)) from None
        if numbers is not None:
            return Dense(numbers.reshape(shape), t.dtype)
        from ember.ir.parser import run as parse_run  # (the parser imports this module)
        flat = parse_run(run.inside(body, "the literal"), "dense_value")
        error: Callable[[str], ParseError] = lambda message: run.error(body, message)  # noqa: E731
    else:
        flat = body
        error = lambda message: run.after(colon, message)  # noqa: E731
    if type(flat) is not list:
        flat = [flat]  # a scalar: `dense<f32[]: 1.0>`
    return Dense(from_elements(flat, t, count, error).reshape(shape), t.dtype)


# -- small readers ---------------------------------------------------------------------------------------------
def _value_name(text: str) -> str:
    """`%x` gives x; `%"input:0"` gives input:0."""
    return text[1:] if text[1] != '"' else json.loads(text[1:])


def _text(x: Token | str) -> str:
    """A name: an IDENT token's text, or a quoted name already read."""
    return x.value if type(x) is Token else x


def _string(token: str) -> str:
    """A STRING token's text (json.loads only when it has escapes)."""
    return token[1:-1] if "\\" not in token else json.loads(token)


def _dim(run: Run, value: Any) -> Any:
    if type(value) is _ElementName:
        raise run.error(value.tok, f"{value.tok.value} is an element type, not a dim")
    return value


def _attr(value: Any) -> Any:
    return DTYPES[value.tok.value] if type(value) is _ElementName else value


def _arith(at: Token, fn: Callable[[Any, Any], D.Dim], a: Any, b: Any) -> D.Dim:
    run = CURRENT.get()
    a, b = _dim(run, a), _dim(run, b)
    try:
        return fn(a, b)
    except EmberError as err:
        raise run.error(at, str(err)) from None


def _converted(run: Run, at: Token | None, err: Exception) -> ParseError:
    """A failure while building what starts at `at`, as a ParseError there."""
    message = str(err) if isinstance(err, EmberError) else f"{type(err).__name__}: {err}"
    return run.error(at, message) if at is not None else ParseError(message, source=run.source)


_SPACE_OR_COMMENT = re.compile(r"(?:[ \t\f\r\n]+(?://[^\n]*)?)*")
_LOC_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NO_LOC = Location()
