"""Read the textual IR back into a Module.

`grammar.lark` is the syntax, and lark's LALR(1) parser reads it: there is no other
parser. What keeps it linear in time and lean in memory on large modules (a 170k-op
module, a 2M-element literal), where lark building a parse tree took 84 s and 2.4 GB:

- No tree. `parse_actions.Actions` is lark's embedded transformer: each action runs as
  its rule reduces and builds the module on the spot, so what a statement's text leaves
  behind is its op.
- Coarse terminals. A one-line tensor type, a location and the numbers of a dense
  literal are each one token (see the grammar's head). A type's text is read through the
  grammar's `tensor_type` rule once per distinct text; a literal's numbers are read by
  numpy, with no Python object per element (`dense_text`).
- A lean lexer (`lexer.IRLexer`): lark's contextual lexing over the grammar's terminals,
  without a token per run of whitespace or a line counter.
- The cyclic garbage collector is paused while a module is read (see `_collector_paused`).

Every failure is a `ParseError` with file:line:col, a message and what was expected;
semantic problems found afterwards (types that do not match their rules) are one
`VerifyError` listing all of them, from `verify`.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ember.errors import EmberError, ParseError, VerifyError
from ember.ir import dims as D
from ember.ir.core import Module
from ember.ir.lexer import IRLexer
from ember.ir.parse_actions import CURRENT, MAX_NESTING, Actions, Run, dim_value
from ember.ir.types import Type

__all__ = ["GRAMMAR", "MAX_NESTING", "copy_module", "parse", "parse_dim", "parse_type"]

GRAMMAR = Path(__file__).with_name("grammar.lark")

_START = ["start", "any_type", "dim", "tensor_type", "dense_value"]

# What messages call the terminals that are not plain punctuation or keywords.
_NAMES = {
    "VALUE": "a value (%name)", "OP_NAME": "an op name (dialect.op)", "IDENT": "a name",
    "STRING": "a string", "INT": "an integer", "FLOAT": "a float", "HEX": "hex data",
    "TENSOR_TYPE": "a type", "LOCATION": "'loc'", "DENSE_BODY": "'['", "FLOORDIV": "'//'",
    "$END": "end of input",
}


def parse(text: str, *, source: str = "<text>", verify: bool = True) -> Module:
    """Parse a module; verify it unless told not to (VerifyError lists every problem)."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes text, got {type(text).__name__}")
    with _collector_paused():
        module = run(Run(text, source), "start")
    if verify:
        from ember.ir.verify import verify as run_verify
        run_verify(module)
    return module


def parse_type(text: str) -> Type:
    """Parse one type, such as `f32[N,3,224,224]`."""
    return run(Run(text, "<type>"), "any_type")


def parse_dim(text: str) -> D.Dim:
    """Parse one dim, such as `N`, `N*S` or `(H-1)//2+1`."""
    r = Run(text, "<dim>")
    return dim_value(r, run(r, "dim"))


def run(r: Run, start: str) -> Any:
    """Parse `r.text` from the grammar's rule `start`, the actions building into `r`."""
    token = CURRENT.set(r)
    try:
        return _lark().parse(r.text, start=start)
    except UnexpectedInput as err:
        raise _syntax_error(r, err) from None
    except (ParseError, VerifyError):
        raise
    except (EmberError, ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        # (every action places its own failures; this names the file should one not)
        raise ParseError(f"{type(err).__name__}: {err}", source=r.source) from None
    finally:
        CURRENT.reset(token)


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """Built at the first parse, once per process: the grammar's analysis takes about a
    tenth of a second (importing ember.ir does not pay it)."""
    return Lark(GRAMMAR.read_text(), parser="lalr", lexer=IRLexer, start=_START, maybe_placeholders=False,
                transformer=Actions())


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a module is read, as Mercurial does
    while it parses a manifest. Nothing the parser builds is garbage, but each collection
    of the oldest generation walks all of the module built so far: on a 170k-op module,
    eleven such walks took 4 of the 9 seconds of the parse. Collection resumes afterwards
    if it ran before (a parse in another thread meanwhile finds it paused, and leaves
    resuming it to this one)."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def _syntax_error(r: Run, err: UnexpectedInput) -> ParseError:
    """lark's account of a syntax error as a ParseError: what was found, where, and the
    human names of what could have come instead."""
    if isinstance(err, UnexpectedCharacters):
        what, allowed, pos = f"unexpected character {err.char!r}", set(err.allowed or ()), err.pos_in_stream
    elif isinstance(err, UnexpectedToken) and err.token.type != "$END":
        what, allowed, pos = f"unexpected {err.token.value!r}", set(err.expected), err.token.start_pos
    else:
        what, allowed, pos = f"unexpected end of {r.what}", set(getattr(err, "expected", ())), len(r.text)
    parser = getattr(err, "interactive_parser", None)
    if parser is not None:  # an LALR state's lookaheads merge those of every context it serves
        accepted = parser.accepts()
        allowed = allowed & accepted if isinstance(err, UnexpectedCharacters) else accepted
    if "TENSOR_TYPE" in allowed and "INT" not in allowed:
        allowed.discard("IDENT")  # (a type's name starts a type laid out across lines)
    names = _terminal_names()
    if r.what != "input":
        names = {**names, "$END": f"the end of {r.what}"}
    expected = tuple(sorted({names.get(n, n) for n in allowed}))
    return r.error_at(pos, what + (f"; expected {', '.join(expected)}" if expected else ""), expected)


@lru_cache(maxsize=1)
def _terminal_names() -> dict[str, str]:
    names = dict(_NAMES)
    for t in _lark().terminals:
        if t.name not in names:
            names[t.name] = f"'{t.pattern.value}'" if t.pattern.type == "str" else t.name.lower()
    return names


def copy_module(module: Module) -> Module:
    """A working copy: the module re-read from its text, sharing the weight arrays (which
    passes replace, never write), so rewriting the copy leaves the caller's module as it was."""
    work = parse(str(module), verify=False)
    for name, w in module.weights.items():
        if name in work.weights:
            work.weights[name].data = w.data
    return work

