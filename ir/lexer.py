"""The lexer lark's LALR parser reads the IR's text with: lark's contextual lexer, made lean.

The terminals are the grammar's (`grammar.lark`), and as in lark's contextual lexer each
is tried only where the parser can take it (the parse table says which terminals each
state takes), and a keyword that a pattern of the same priority matches whole (`true`
for IDENT) is read by that pattern and renamed. Two things make it cheaper: whitespace
and comments (the grammar's ignored terminals) are skipped inside each token's match
rather than read as tokens of their own, and no line counter runs alongside: a token
carries its offset, and a message works out its line and column from it.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from lark import Token
from lark.common import LexerConf
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import Lexer, LexerState

COARSE = frozenset({"TENSOR_TYPE", "LOCATION", "DENSE_BODY"})
"""The terminals that take whole what a fine rule also reads (see the grammar's head)."""

_Scanner = tuple[re.Pattern[str], dict[str, dict[str, str]], frozenset[str]]
_TOKEN_SLOTS = frozenset({"type", "value", "start_pos", "line", "column", "end_line", "end_column", "end_pos"})
_new_str = str.__new__
_LONG = 4096
"""A token longer than this keeps its text in `.value` only: a Token is also a str, and a
40 MB literal held twice doubled the parse's peak. The actions read `.value`."""


class IRLexer(Lexer):
    """Given to `Lark(lexer=...)`; lark builds one per parser and calls `lex` per text."""

    __future_interface__ = 2  # lex(lexer_state, parser_state): the parser state gives the context

    def __init__(self, conf: LexerConf) -> None:
        self.terminals = {t.name: t for t in conf.terminals}
        self.flags = conf.g_regex_flags
        ignored = "|".join(self.terminals[name].pattern.to_regexp() for name in conf.ignore)
        self.skip = re.compile(f"(?:{ignored})*", self.flags)
        self.by_state: dict[Any, _Scanner] = {}
        self.by_names: dict[frozenset[str], _Scanner] = {}
        # What a message calls unexpected: the fine terminals' reading (`f32`, not `f32[2]`).
        self.everything = self.scanner(frozenset(self.terminals) - set(conf.ignore) - COARSE)
        # Tokens are made without lark's constructor (two Python calls each) when its fields
        # are the ones this lexer fills in.
        self.fast = set(getattr(Token, "__slots__", ())) == _TOKEN_SLOTS

    def scanner(self, names: frozenset[str]) -> _Scanner:
        """One regular expression for the terminals `names` after any whitespace, tried in
        lark's order (priority, then the longer pattern); with the keywords to rename."""
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
        pattern = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terms if t.name not in keywords)
        found = (re.compile(f"{self.skip.pattern}(?:{pattern or '(?!)'})", self.flags), renames, names)
        self.by_names[names] = found
        return found

    def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        text, pos, end = lexer_state.text.text, lexer_state.text.start, lexer_state.text.end
        by_state, fast = self.by_state, self.fast
        stack, table = parser_state.state_stack, parser_state.parse_conf.states
        while True:
            state = stack[-1]
            found = by_state.get(state)
            if found is None:
                found = self.scanner(frozenset(n for n in table[state] if n in self.terminals))
                by_state[state] = found
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
            if fast:
                tok = _new_str(Token, value if pos - start < _LONG else "")
                tok.type, tok.value, tok.start_pos, tok.end_pos = kind, value, start, pos
                tok.line = tok.column = tok.end_line = tok.end_column = None
            else:  # pragma: no cover - a lark whose Token has other fields
                tok = Token(kind, value, start, None, None, None, None, pos)
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
