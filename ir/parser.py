"""Read the textual IR back into a Module.

`grammar.lark` is the syntax, and lark's LALR(1) parser reads it: there is no other
parser. Two things keep it linear in time and lean in memory on large modules (a
170k-op module, a 2M-element literal), where a parse tree took 48 s and 1.5 GB:

- No tree. The actions below are lark's embedded transformer: each runs as its rule
  reduces and builds the module on the spot (scopes, values, ops, regions), so what a
  statement's text leaves behind is its op.
- Coarse terminals. A tensor type, a location and the numbers of a dense literal are
  each one token (see the grammar's head). A type's text is read through the grammar's
  `tensor_type` rule once per distinct text; a literal's numbers are read by numpy,
  with no Python object per element, once its brackets are checked against its shape.

Every failure is a `ParseError` with file:line:col, a message and what was expected;
semantic problems found afterwards (types that do not match their rules) are one
`VerifyError` listing all of them, from `verify`.
"""

from __future__ import annotations

import gc
import json
import re
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from lark import Lark, Token
from lark.common import LexerConf
from lark.lexer import Lexer, LexerState
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ember.errors import EmberError, ParseError, VerifyError
from ember.ir import dims as D
from ember.ir.attrs import AttrError, Dense
from ember.ir.core import Block, Function, Location, Module, SymbolRange, Value
from ember.ir.opdef import lookup
from ember.ir.sizes import SizeError, numel
from ember.ir.types import DTYPES, DType, OptionalType, SequenceType, TensorType, Type, string

GRAMMAR = Path(__file__).with_name("grammar.lark")

MAX_NESTING = 100
"""Brackets of every kind ((, [, {, <) nest at most this deep. The parser itself keeps
an explicit stack, but what it builds (nested lists, container types) is walked
recursively later; no model comes near the bound."""

# What messages call the terminals that are not plain punctuation or keywords.
_NAMES = {
    "VALUE": "a value (%name)", "OP_NAME": "an op name (dialect.op)", "IDENT": "a name",
    "STRING": "a string", "INT": "an integer", "FLOAT": "a float", "HEX": "hex data",
    "TENSOR_TYPE": "a type", "LOCATION": "'loc'", "DENSE_BODY": "'['", "FLOORDIV": "'//'",
    "$END": "end of input",
}
_COARSE = frozenset({"TENSOR_TYPE", "LOCATION", "DENSE_BODY"})
_START = ["start", "any_type", "dim", "tensor_type", "dense_value"]


def parse(text: str, *, source: str = "<text>", verify: bool = True) -> Module:
    """Parse a module; verify it unless told not to (VerifyError lists every problem)."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes text, got {type(text).__name__}")
    with _collector_paused():
        module = _run(_Read(text, source), "start")
    if verify:
        from ember.ir.verify import verify as run_verify
        run_verify(module)
    return module


def parse_type(text: str) -> Type:
    """Parse one type, such as `f32[N,3,224,224]`."""
    return _run(_Read(text, "<type>"), "any_type")


def parse_dim(text: str) -> D.Dim:
    """Parse one dim, such as `N`, `N*S` or `(H-1)//2+1`."""
    read = _Read(text, "<dim>")
    return _run(read, "dim", lambda d: _dim(read, d))


# -- the parser and its runs -------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _lark() -> Lark:
    """Built once per process (the grammar's analysis takes about a tenth of a second)."""
    return Lark(GRAMMAR.read_text(), parser="lalr", lexer=_Lexer, start=_START, maybe_placeholders=False,
                transformer=_Actions())


@lru_cache(maxsize=1)
def _terminal_names() -> dict[str, str]:
    names = dict(_NAMES)
    for t in _lark().terminals:
        if t.name not in names:
            names[t.name] = f"'{t.pattern.value}'" if t.pattern.type == "str" else t.name.lower()
    return names


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a module is read (as Mercurial does
    while it parses a manifest). Nothing the parser builds is garbage, but each collection
    of the oldest generation walks the whole module built so far: on a 170k-op module, 11
    such walks took 4 of the 9 seconds. Collection resumes afterwards if it ran before
    (a parse in another thread meanwhile finds it paused and leaves it to this one)."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


_CURRENT: ContextVar["_Read"] = ContextVar("ember.ir.parser.current")
"""The run the actions work for (a context variable: lark's parser is built once and
shared, so a run's state cannot live in the actions object)."""


def _run(read: "_Read", start: str, finish: Callable[[Any], Any] | None = None) -> Any:
    token = _CURRENT.set(read)
    try:
        result = _lark().parse(read.text, start=start)
        return finish(result) if finish is not None else result
    except UnexpectedInput as err:
        raise read.syntax_error(err) from None
    finally:
        _CURRENT.reset(token)


_new_str = str.__new__


class _Lexer(Lexer):
    """lark's contextual lexer, made lean. The same terminals (the grammar's), each tried
    only where the parser can take it (the parse table says which, state by state), and
    lark's rule for keywords that a name's pattern also matches. But whitespace and
    comments are skipped by one regular expression ahead of each token, not read as
    tokens of their own, and there is no line counting: a message works out a token's
    line and column from its offset. Lexing takes half the time lark's own lexer takes."""

    __future_interface__ = 2

    def __init__(self, conf: LexerConf) -> None:
        self.terminals = {t.name: t for t in conf.terminals}
        self.flags = conf.g_regex_flags
        ignored = "|".join(self.terminals[name].pattern.to_regexp() for name in conf.ignore)
        self.skip = re.compile(f"(?:{ignored})*", self.flags)
        self.by_state: dict[Any, tuple[re.Pattern[str], dict[str, dict[str, str]], frozenset[str]]] = {}
        self.by_names: dict[frozenset[str], tuple[re.Pattern[str], dict[str, dict[str, str]], frozenset[str]]] = {}
        # What a message calls unexpected: the fine terminals' reading (`f32`, not `f32[2]`).
        self.everything = self.scanner(frozenset(self.terminals) - set(conf.ignore) - _COARSE)

    def scanner(self, names: frozenset[str]) -> tuple[re.Pattern[str], dict[str, dict[str, str]], frozenset[str]]:
        """One regular expression for the terminals `names`, tried in lark's order (priority,
        then the longer pattern); a keyword that a pattern of the same priority matches whole
        is read by that pattern and renamed (`true` is TRUE where both IDENT and TRUE fit)."""
        found = self.by_names.get(names)
        if found is not None:
            return found
        terms = sorted((self.terminals[n] for n in names),
                       key=lambda t: (-t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
        renames: dict[str, dict[str, str]] = {}
        for r in terms:
            if r.pattern.type != "re":
                continue
            for s in terms:
                if s.pattern.type == "str" and s.priority == r.priority:
                    m = re.match(r.pattern.to_regexp(), s.pattern.value, self.flags)
                    if m is not None and m.group() == s.pattern.value:
                        renames.setdefault(r.name, {})[s.pattern.value] = s.name
        keywords = {k for table in renames.values() for k in table.values()}
        pattern = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terms if t.name not in keywords) or "(?!)"
        found = self.by_names[names] = (re.compile(f"{self.skip.pattern}(?:{pattern})", self.flags), renames, names)
        return found

    def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        text, pos, end = lexer_state.text.text, lexer_state.text.start, lexer_state.text.end
        by_state = self.by_state
        stack, table = parser_state.state_stack, parser_state.parse_conf.states
        while True:
            state = stack[-1]
            found = by_state.get(state)
            if found is None:
                found = by_state[state] = self.scanner(frozenset(n for n in table[state] if n in self.terminals))
            m = found[0].match(text, pos, end)
            if m is None:
                pos = self.skip.match(text, pos, end).end()  # type: ignore[union-attr]
                if pos >= end:
                    return
                raise self.failure(text, pos, found[2], parser_state)
            kind = m.lastgroup
            value, start, pos = m.group(kind), m.start(kind), m.end()
            if kind in found[1]:
                kind = found[1][kind].get(value, kind)
            tok = _new_str(Token, value)
            tok.type, tok.value, tok.start_pos, tok.end_pos = kind, value, start, pos
            tok.line = tok.column = tok.end_line = tok.end_column = None
            yield tok

    def failure(self, text: str, pos: int, allowed: frozenset[str], parser_state: Any) -> UnexpectedInput:
        """What lark's contextual lexer raises: the token the text holds, if any terminal
        matches there, else the character."""
        regex, renames, _ = self.everything
        m = regex.match(text, pos)
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        if m is None:
            return UnexpectedCharacters(text, pos, line, column, allowed=set(allowed), state=parser_state)
        kind = m.lastgroup
        value = m.group(kind)
        tok = Token(renames.get(kind, {}).get(value, kind), value, pos, line, column, None, None, m.end())  # type: ignore
        return UnexpectedToken(tok, set(allowed), state=parser_state)


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


class _Pending:
    """An op whose regions are being read: the start of its statement, read already."""

    __slots__ = ("parts", "opened")

    def __init__(self, parts: tuple) -> None:
        self.parts, self.opened = parts, 0


class _Read:
    """One run of the parser over one text: positions, and the module as it is built. A
    coarse terminal's inside is read by a run of its own, `offset` characters into the
    `whole` text that messages point into."""

    __slots__ = ("text", "source", "whole", "offset", "what", "module", "scope", "block", "outer", "pending",
                 "depth", "types", "ops")

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source, self.whole, self.offset, self.what = text, source, text, 0, "input"
        self.module = Module()
        self.scope = _Scope(None, set())
        self.block = Block()
        self.outer: list[tuple[_Scope, Block]] = []  # the enclosing blocks of open regions
        self.pending: list[_Pending] = []
        self.depth = 0
        self.types: dict[str, Type] = {}  # type text -> type: each distinct text read once
        self.ops: dict[str, Any] = {}  # op name -> class (or None: unknown)

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

    def syntax_error(self, err: UnexpectedInput) -> ParseError:
        if isinstance(err, UnexpectedCharacters):
            what, allowed, pos = f"unexpected character {err.char!r}", err.allowed, err.pos_in_stream
        elif isinstance(err, UnexpectedToken) and err.token.type != "$END":
            what, allowed, pos = f"unexpected {err.token.value!r}", err.expected, err.token.start_pos
        else:
            what, allowed, pos = f"unexpected end of {self.what}", getattr(err, "expected", ()), len(self.text)
        allowed = set(allowed or ())
        parser = getattr(err, "interactive_parser", None)
        if parser is not None:  # a state's lookaheads are merged from every context it serves
            allowed = parser.accepts() if not isinstance(err, UnexpectedCharacters) else allowed & parser.accepts()
        if "TENSOR_TYPE" in allowed and "INT" not in allowed:
            allowed.discard("IDENT")  # a type's name starts a type laid out over several lines
        names = _terminal_names()
        if self.what != "input":
            names = {**names, "$END": f"the end of {self.what}"}
        expected = tuple(sorted({names.get(n, n) for n in allowed}))
        return self.error_at(pos, what + (f"; expected {', '.join(expected)}" if expected else ""), expected)

    # -- values ----------------------------------------------------------------------------------------
    def use(self, tok: Token) -> Value:
        v = self.scope.lookup(tok[1:] if tok[1] != '"' else json.loads(tok[1:]))
        if v is None:
            raise self.error(tok, f"use of undefined value {tok}")
        return v

    def define(self, tok: Token, value: Value) -> None:
        name = tok[1:] if tok[1] != '"' else json.loads(tok[1:])
        scope = self.scope
        if name in scope.function_names:
            raise self.error(tok, f"value %{name} is defined twice")
        scope.function_names.add(name)
        scope.values[name] = value
        value.name = name

    # -- coarse terminals, read inside ---------------------------------------------------------------
    def inner(self, tok: Token, start: str) -> Any:
        """Read a coarse terminal's text through the grammar's rule `start`."""
        read = _Read(tok.value, self.source)
        read.whole, read.offset, read.what = self.whole, self.offset + tok.start_pos, _WHAT[start]
        read.depth, read.types = self.depth, self.types
        return _run(read, start)


_WHAT = {"tensor_type": "the type", "dense_value": "the literal"}
_SPACE_OR_COMMENT = re.compile(r"(?:[ \t\f\r\n]+(?://[^\n]*)?)*")
_NO_LOC = Location()


class _AttrDict(dict):
    """An attribute dict, with where each key and the dict itself are (for messages)."""

    __slots__ = ("keys_at", "at")


class _ElementName:
    """An element type's name read where a dim could be (`f32`): an attribute's value if
    it stands alone (`{to = f32}`), an error inside a dim."""

    __slots__ = ("tok",)

    def __init__(self, tok: Token) -> None:
        self.tok = tok


def _dim(read: _Read, value: Any) -> Any:
    if type(value) is _ElementName:
        raise read.error(value.tok, f"{value.tok} is an element type, not a dim")
    return value


def _attr(value: Any) -> Any:
    return DTYPES[value.tok.value] if type(value) is _ElementName else value


def _string(token: str) -> str:
    """A STRING token's text (json.loads only when it has escapes)."""
    return token[1:-1] if "\\" not in token else json.loads(token)


_CONVERTED = (EmberError, ValueError, TypeError, KeyError, IndexError, OverflowError, ZeroDivisionError,
              AttributeError)


class _Actions:
    """lark's embedded transformer: a method per rule (or alias) runs as the rule reduces,
    given its children; a method named for a terminal runs as the token is shifted."""

    # -- brackets: a bound on nesting -----------------------------------------------------------------
    def _open(self, tok: Token) -> Token:
        read = _CURRENT.get()
        read.depth += 1
        if read.depth > MAX_NESTING:
            raise read.error(tok, f"nested more than {MAX_NESTING} levels deep")
        return tok

    def _close(self, tok: Token) -> Token:
        _CURRENT.get().depth -= 1
        return tok

    LPAR = LSQB = LBRACE = LESSTHAN = _open
    RPAR = RSQB = RBRACE = MORETHAN = _close

    # -- coarse terminals ----------------------------------------------------------------------------
    def TENSOR_TYPE(self, tok: Token) -> Type:
        read = _CURRENT.get()
        t = read.types.get(tok.value)
        if t is None:
            t = read.types[tok.value] = read.inner(tok, "tensor_type")
        return t

    def LOCATION(self, tok: Token) -> Location:
        if '", "' not in tok and "\\" not in tok:
            return Location((tok[5:-2],))
        return Location(tuple(_string(s) for s in _LOC_STRING.findall(tok)))

    # -- module ----------------------------------------------------------------------------------------
    def start(self, c: list) -> Module:
        return _CURRENT.get().module

    def module(self, c: list) -> None:
        module = _CURRENT.get().module
        for x in c:
            if type(x) is str or type(x) is Token:
                module.name = str(x)
            elif type(x) is _AttrDict:
                module.attributes = dict(x)

    def symbol_decl(self, c: list) -> None:
        read = _CURRENT.get()
        start, name_tok, lo_tok, hi_tok = c
        name, lo = str(name_tok), int(lo_tok)
        hi = None if hi_tok.type == "INF" else int(hi_tok)
        module = read.module
        if name in module.symbols:
            raise read.error(name_tok, f"symbol {name} declared twice")
        if name in DTYPES:
            raise read.error(name_tok, f"symbol name {name} is an element type name")
        if hi is not None and hi < lo:
            raise read.error(start, f"symbol {name}: empty range [{lo}, {hi}]")
        module.symbols[name] = SymbolRange(lo, hi)

    def weight_decl(self, c: list) -> None:
        read = _CURRENT.get()
        name_tok, t = c
        name = _string(name_tok)
        if name in read.module.weights:
            raise read.error(name_tok, f"weight {name!r} declared twice")
        if not isinstance(t, TensorType) or not t.is_static:
            raise read.error(name_tok, f"weight {name!r} needs a tensor type with a static shape, got {t}")
        read.module.add_weight(name, type=t)

    def string(self, c: list) -> str:
        return _string(c[0])

    # -- functions -------------------------------------------------------------------------------------
    def FUNC(self, tok: Token) -> Token:
        """A function starts: a fresh scope and body (its arguments are defined into them)."""
        read = _CURRENT.get()
        read.scope = _Scope(None, set())
        read.block = Block()
        return tok

    def arg(self, c: list) -> None:
        read = _CURRENT.get()
        read.define(c[0], read.block.add_arg(c[1]))

    def result_decl(self, c: list) -> tuple[str, Type]:
        return str(c[0]), c[1]

    def func_head(self, c: list) -> tuple:
        start, name = c[0], str(c[1])
        outs = [x for x in c[2:] if type(x) is tuple]
        names = [n for n, _ in outs]
        if len(set(names)) != len(names):
            raise _CURRENT.get().error(start, f"function @{name} has duplicate output names")
        return start, name, names, [t for _, t in outs]

    def func(self, c: list) -> None:
        read = _CURRENT.get()
        (start, name, out_names, out_types), ret = c[0], c[-1]
        values = []
        for i in range(len(c) - 1, 0, -1):
            if type(c[i]) is Token and c[i].type == "RETURN":
                ret, values = c[i], c[i + 1:]
                break
        outs = [read.use(v) for v in values]
        if len(outs) != len(out_types):
            raise read.error(ret, f"return gives {len(outs)} values; @{name} declares {len(out_types)} results")
        for i, (v, t) in enumerate(zip(outs, out_types)):
            if v.type != t:
                raise read.error(ret, f"result {out_names[i]!r} is declared {t} but returns {v.type}")
        body = read.block
        body.set_outputs(outs)
        if name in read.module.functions:
            raise read.error(start, f"function @{name} defined twice")
        read.module.add_function(Function(name, body, out_names))

    # -- statements ------------------------------------------------------------------------------------
    def stmt_head(self, c: list) -> None:
        """A statement up to its result types: its op is looked up and its operands too (they
        were defined before); it is made once its regions and location are read."""
        read = _CURRENT.get()
        try:
            read.pending.append(_Pending(_statement(read, c)))
        except (ParseError, VerifyError):
            raise
        except _CONVERTED as err:
            raise _converted(read, c[0], err) from None

    def stmt(self, c: list) -> None:
        read = _CURRENT.get()
        parts = read.pending.pop().parts
        if type(c[-1]) is Location:
            parts = parts[:6] + (c[-1],)
        try:
            _place(read, parts, ())
        except (ParseError, VerifyError):
            raise
        except _CONVERTED as err:
            raise _converted(read, parts[0][0] if parts[0] else parts[1], err) from None

    def region_open(self, c: list) -> None:
        """A region starts: its own block, in a scope that sees outside unless isolated."""
        read = _CURRENT.get()
        pending = read.pending[-1]
        fields = pending.parts[2].region_fields
        isolated = fields[pending.opened].isolated if pending.opened < len(fields) else False
        pending.opened += 1
        read.outer.append((read.scope, read.block))
        read.scope = _Scope(None if isolated else read.scope, read.scope.function_names)
        read.block = Block()

    def region(self, c: list) -> Block:
        read = _CURRENT.get()
        values: list = []
        for i in range(len(c) - 1, -1, -1):
            if type(c[i]) is Token and c[i].type == "YIELD":
                values = c[i + 1:]
                break
        block = read.block
        block.set_outputs([read.use(v) for v in values])
        read.scope, read.block = read.outer.pop()
        return block

    def region_stmt(self, c: list) -> None:
        read = _CURRENT.get()
        parts = read.pending.pop().parts
        if type(c[-1]) is Location:
            parts = parts[:6] + (c[-1],)
        try:
            _place(read, parts, [x for x in c if type(x) is Block])
        except (ParseError, VerifyError):
            raise
        except _CONVERTED as err:
            raise _converted(read, parts[0][0] if parts[0] else parts[1], err) from None

    def loc(self, c: list) -> Location:
        return Location(tuple(_string(s) for s in c))

    # -- attributes ------------------------------------------------------------------------------------
    def attr_dict(self, c: list) -> _AttrDict:
        read = _CURRENT.get()
        out = _AttrDict()
        out.keys_at, out.at = {}, c[0]
        for entry in c:
            if type(entry) is not tuple:
                continue  # punctuation
            key_tok, value = entry
            key = str(key_tok)
            if key in out:
                raise read.error(key_tok, f"attribute {key!r} given twice")
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
        return float(c[0])

    def neg_float(self, c: list) -> float:
        return -float(c[0])

    def neg_inf(self, c: list) -> float:
        return float("-inf")

    # -- dense literals --------------------------------------------------------------------------------
    def dense(self, c: list) -> Dense:
        read = _CURRENT.get()
        lt, t, colon, body = c[1], c[2], c[3], c[4]
        if not isinstance(t, TensorType) or not t.is_static:
            raise read.after(lt, f"dense needs a tensor type with a static shape, got {t}")
        shape = t.static_shape
        try:
            count = numel(shape, f"dense<{t}>")
        except SizeError as err:
            raise read.after(lt, str(err)) from None
        try:
            return _dense(read, t, shape, count, colon, body)
        except (ParseError, VerifyError):
            raise
        except _CONVERTED as err:
            raise read.after(colon, f"{type(err).__name__}: {err}") from None

    def dense_list(self, c: list) -> list:
        out: list = []
        for x in c:
            if type(x) is list:
                out.extend(x)
            else:
                out.append(x)
        return out

    def int(self, c: list) -> int:
        return int(c[0])

    def neg_int(self, c: list) -> int:
        return -int(c[0])

    # -- types and dims --------------------------------------------------------------------------------
    def tensor_type(self, c: list) -> TensorType:
        read = _CURRENT.get()
        name = c[0]
        dt = DTYPES.get(name.value)
        if dt is None:
            raise read.error(name, f"unknown element type '{name}'")
        if len(c) == 2 and type(c[1]) is Token and c[1].type == "STAR":
            return TensorType(dt, None)
        return TensorType(dt, tuple(_dim(read, d) for d in c[1:]))

    def container_type(self, c: list) -> Type:
        return SequenceType(c[1]) if c[0] == "seq" else OptionalType(c[1])

    def unknown(self, c: list) -> D.Unknown:
        return D.Unknown()

    def bounded(self, c: list) -> D.Unknown:
        return D.Unknown(_dim(_CURRENT.get(), c[0]))

    def symbol(self, c: list) -> Any:
        name = c[0].value
        return _ElementName(c[0]) if name in DTYPES else D.sym(name)

    def parens(self, c: list) -> D.Dim:
        return _dim(_CURRENT.get(), c[1])

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


def _arith(at: Token, fn: Callable[[Any, Any], D.Dim], a: Any, b: Any) -> D.Dim:
    read = _CURRENT.get()
    a, b = _dim(read, a), _dim(read, b)
    try:
        return fn(a, b)
    except EmberError as err:
        raise read.error(at, str(err)) from None


def _converted(read: _Read, at: Token, err: Exception) -> ParseError:
    """A failure while building what starts at `at`, as a ParseError there."""
    if isinstance(err, EmberError):
        return read.error(at, str(err))
    return read.error(at, f"{type(err).__name__}: {err}")


# -- statements ---------------------------------------------------------------------------------------------
def _statement(read: _Read, c: list) -> tuple:
    """A statement's children, read: (result tokens, op token, op class, operands, attributes,
    types, location). Operands are looked up now: they were defined before."""
    results: list[Token] = []
    operands: list[Value | None] = []
    types: list[Type] = []
    attrs = None
    loc = _NO_LOC
    op = cls = None
    scope = read.scope
    for x in c:
        k = type(x)
        if k is Token:
            kind = x.type
            if kind == "VALUE":
                if op is None:
                    results.append(x)
                    continue
                name = x.value[1:]
                v = scope.values.get(name) if name[0] != '"' else None
                operands.append(v if v is not None else read.use(x))
            elif kind == "OP_NAME":
                op = x
                cls = read.ops.get(x.value, False)
                if cls is False:
                    cls = read.ops[x.value] = lookup(x.value)
                if cls is None:
                    raise read.error(x, f"unknown op {x}")
            elif kind == "NONE":
                operands.append(None)
        elif k is _AttrDict:
            attrs = x
        else:
            types.append(x)
    return results, op, cls, operands, attrs, types, loc


def _place(read: _Read, parts: tuple, regions: list[Block] | tuple) -> None:
    """Make the op a statement describes, append it to the current block, define its results."""
    results, op_tok, cls, operands, attrs, types, loc = parts
    if len(types) != len(results):
        start = results[0] if results else op_tok
        raise read.error(start, f"{op_tok}: {len(results)} results named but {len(types)} types given")
    if attrs:
        for key, at in attrs.keys_at.items():
            fld = cls.attr_fields.get(key)
            if fld is None:
                known = ", ".join(cls.attr_fields) or "none"
                raise read.error(at, f"{op_tok}: unknown attribute {key!r} (known: {known})")
            try:
                fld.kind.normalize(attrs[key])
            except AttrError as err:
                raise read.error(at, f"{op_tok}: attribute {key!r}: {err}") from None
        try:
            cls.normalize_attributes(attrs, loc)
        except VerifyError as err:
            raise read.error(attrs.at, str(err)) from None
    if len(regions) != len(cls.region_fields):
        raise read.error(op_tok, f"{op_tok} takes {len(cls.region_fields)} regions, got {len(regions)}")
    try:
        op = cls.create(operands, attrs, result_types=types, regions=regions, loc=loc)
    except VerifyError as err:
        raise read.error(op_tok, str(err)) from None
    read.block.append(op)
    for tok, r in zip(results, op.results):
        read.define(tok, r)


_LOC_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


# -- dense literals -------------------------------------------------------------------------------------------
def _dense(read: _Read, t: TensorType, shape: tuple[int, ...], count: int, colon: Token, body: Any) -> Dense:
    if type(body) is Token and body.type == "HEX":
        itemsize = t.dtype.itemsize if t.dtype is not string else 0
        raw = bytes.fromhex(body[2:]) if len(body) % 2 == 0 else None
        if raw is None or t.dtype is string or len(raw) != count * itemsize:
            raise read.error(body, f"hex data has the wrong length for {t}")
        return Dense(np.frombuffer(raw, dtype=t.dtype.np_dtype).reshape(shape))
    if type(body) is Token:  # DENSE_BODY: numbers read by numpy, or else one by one
        fast = _dense_numbers(read, body, t, count)
        if fast is not None:
            return Dense(fast.reshape(shape), t.dtype)
        flat = read.inner(body, "dense_value")
        at: Callable[[str], ParseError] = lambda message: read.error(body, message)  # noqa: E731
    else:
        flat = body
        at = lambda message: read.after(colon, message)  # noqa: E731
    if type(flat) is not list:
        flat = [flat]
    return Dense(_dense_array(flat, t, count, at).reshape(shape), t.dtype)


def _dense_array(flat: list, t: TensorType, count: int, error: Callable[[str], ParseError]) -> np.ndarray:
    if len(flat) != count:
        raise error(f"dense data has {len(flat)} elements; {t} needs {count}")
    if t.dtype is string:
        if not all(isinstance(x, str) for x in flat):
            raise error("a str tensor needs string elements")
        arr = np.empty(count, dtype=object)
        arr[:] = flat
        return arr
    if any(isinstance(x, str) for x in flat):
        raise error(f"string elements in a {t.dtype} tensor")
    if t.dtype.is_int and any(isinstance(x, float) for x in flat):
        raise error(f"float elements in an integer tensor {t}")
    if t.dtype.is_int:
        lo, hi = _int_range(t.dtype)
        if any(not (lo <= int(x) <= hi) for x in flat):
            raise error(f"integer out of range for {t.dtype}")
    try:
        values = np.array(flat, dtype=object)
        return values.astype(np.float64 if t.dtype.is_float else object).astype(t.dtype.np_dtype)
    except (TypeError, ValueError, OverflowError) as err:
        raise error(f"bad dense data for {t}: {err}") from None


def _dense_numbers(read: _Read, body: str, t: TensorType, count: int) -> np.ndarray | None:
    """The common case read whole: a nested list of plain numbers (or of true/false for
    bool) with exactly the brackets `t`'s shape needs. Anything else (spaced minus signs, a
    wrong shape, huge integers) returns None, for the rule that reads one element at a time
    and its messages."""
    dt = t.dtype
    if dt is string or dt.kind not in ("float", "int", "uint", "bool"):
        return None
    if body.translate(_SKELETON) != _skeleton(t.static_shape):
        return None
    flat = body.translate(_NO_BRACKETS)
    if dt.kind == "bool":
        if not _BOOL_ELEMENTS.fullmatch(flat):
            return None
        arr = _from_text(flat.replace("true", "1").replace("false", "0"), np.uint8, count)
        return None if arr is None else arr.astype(bool)
    if dt.kind == "float":
        if not _FLOAT_ELEMENTS.fullmatch(flat):
            return None
        arr = _from_text(flat, np.float64, count)
        if arr is not None and int(np.isinf(arr).sum()) != flat.count("inf"):
            return None  # a literal past float64's range: the one-by-one reader decides
        return None if arr is None else arr.astype(dt.np_dtype)
    if not _INT_ELEMENTS.fullmatch(flat):
        return None
    arr = _from_text(flat, np.int64, count)
    if arr is None:
        return None
    if arr.size and (arr.max() == _I64.max or arr.min() == _I64.min):
        return None  # at or past int64's ends (numpy saturates): read one by one, exactly
    if arr.size:
        lo, hi = _int_range(dt)
        if int(arr.min()) < lo or int(arr.max()) > hi:
            raise read.error(body, f"integer out of range for {dt}")  # type: ignore[arg-type]
    return arr.astype(dt.np_dtype)


def _int_range(dt: DType) -> tuple[int, int]:
    if dt.bits >= 8:
        info = np.iinfo(dt.np_dtype)
        return int(info.min), int(info.max)
    if dt.kind == "int":
        return -(1 << (dt.bits - 1)), (1 << (dt.bits - 1)) - 1
    return 0, (1 << dt.bits) - 1


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


def _skeleton(shape: tuple[int, ...]) -> str:
    """The brackets and commas of a nested list of `shape`: (2, 3) gives `[[,,],[,,]]`."""
    text = "[" + "," * (shape[-1] - 1) + "]" if shape and shape[-1] > 0 else "[]"
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
