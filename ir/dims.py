"""Symbolic tensor dimensions: integers, named symbols, expressions of them, unknowns.

A dim is an `int`, a `DimExpr` (a polynomial over atoms: symbols such as `N`, and
the non-linear atoms `a//b`, `a%b`, `max(a,b)`, `min(a,b)`), or an `Unknown`
(a data-dependent size, optionally bounded above, such as NonZero's output).

Expressions are kept in one canonical form, so structural equality is semantic
equality for everything shape inference produces (`N*S == S*N`, `(N+1)-1 == N`),
and an expression that folds to a constant *is* that `int`: no `DimExpr` ever
holds a constant. Floor division and modulo follow Python (round towards -inf).

Symbols are assumed to be >= 0; `broadcast_dim` below is the one place that
states how they broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

from ember.errors import ShapeError, UsageError, VerifyError

Monomial = tuple[tuple["Atom", int], ...]  # sorted (atom, power) pairs; () is the constant term


class Atom:
    """A factor of a monomial that the polynomial treats as opaque."""

    def key(self) -> str:
        return str(self)

    def evaluate(self, env: Mapping[str, int]) -> int:
        raise NotImplementedError

    def symbols(self) -> set[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class Sym(Atom):
    name: str

    def __str__(self) -> str:
        return self.name

    def evaluate(self, env: Mapping[str, int]) -> int:
        try:
            return int(env[self.name])
        except KeyError:
            raise ShapeError(f"symbol {self.name} has no value here") from None

    def symbols(self) -> set[str]:
        return {self.name}


@dataclass(frozen=True)
class _Binary(Atom):
    lhs: "Dim"
    rhs: "Dim"
    op = ""

    def symbols(self) -> set[str]:
        return free_symbols(self.lhs) | free_symbols(self.rhs)


class FloorDiv(_Binary):
    op = "//"

    def __str__(self) -> str:
        return f"{_operand_str(self.lhs)}//{_operand_str(self.rhs)}"

    def evaluate(self, env: Mapping[str, int]) -> int:
        den = evaluate(self.rhs, env)
        if den == 0:
            raise ShapeError(f"division by zero evaluating {self}")
        return evaluate(self.lhs, env) // den


class Mod(_Binary):
    op = "%"

    def __str__(self) -> str:
        return f"{_operand_str(self.lhs)}%{_operand_str(self.rhs)}"

    def evaluate(self, env: Mapping[str, int]) -> int:
        den = evaluate(self.rhs, env)
        if den == 0:
            raise ShapeError(f"modulo by zero evaluating {self}")
        return evaluate(self.lhs, env) % den


class Max(_Binary):
    op = "max"

    def __str__(self) -> str:
        return f"max({self.lhs}, {self.rhs})"

    def evaluate(self, env: Mapping[str, int]) -> int:
        return max(evaluate(self.lhs, env), evaluate(self.rhs, env))


class Min(_Binary):
    op = "min"

    def __str__(self) -> str:
        return f"min({self.lhs}, {self.rhs})"

    def evaluate(self, env: Mapping[str, int]) -> int:
        return min(evaluate(self.lhs, env), evaluate(self.rhs, env))


def _operand_str(d: "Dim") -> str:
    """Parenthesize anything that is not a single atom or integer."""
    if isinstance(d, int):
        return str(d) if d >= 0 else f"({d})"
    if isinstance(d, DimExpr) and len(d.terms) == 1:
        (mono, coeff), = d.terms
        if coeff == 1 and len(mono) == 1 and mono[0][1] == 1 and not isinstance(mono[0][0], (FloorDiv, Mod)):
            return str(d)
    return f"({d})"


@dataclass(frozen=True)
class DimExpr:
    """A non-constant polynomial over atoms, in canonical form (see module doc)."""

    terms: tuple[tuple[Monomial, int], ...]

    # -- construction -------------------------------------------------------
    @staticmethod
    def from_poly(poly: Mapping[Monomial, int]) -> "Dim":
        items = tuple(sorted(((m, c) for m, c in poly.items() if c != 0), key=_term_key))
        if not items:
            return 0
        if len(items) == 1 and items[0][0] == ():
            return items[0][1]
        return DimExpr(items)

    # -- arithmetic ---------------------------------------------------------
    def __add__(self, other: "Dim") -> "Dim":
        return add(self, other)

    __radd__ = __add__

    def __sub__(self, other: "Dim") -> "Dim":
        return add(self, mul(other, -1))

    def __rsub__(self, other: "Dim") -> "Dim":
        return add(other, mul(self, -1))

    def __mul__(self, other: "Dim") -> "Dim":
        return mul(self, other)

    __rmul__ = __mul__

    def __neg__(self) -> "Dim":
        return mul(self, -1)

    def __floordiv__(self, other: "Dim") -> "Dim":
        return floordiv(self, other)

    def __rfloordiv__(self, other: "Dim") -> "Dim":
        return floordiv(other, self)

    def __mod__(self, other: "Dim") -> "Dim":
        return mod(self, other)

    def __rmod__(self, other: "Dim") -> "Dim":
        return mod(other, self)

    # -- printing -----------------------------------------------------------
    def __str__(self) -> str:
        out = ""
        for mono, coeff in self.terms:
            # A leading unary minus binds tighter than //, so -(a//b) needs the parentheses.
            wrap = sum(p for _, p in mono) > 1 or abs(coeff) != 1 or (coeff < 0 and not out)
            body = "*".join(_factor_str(a, wrap) for a, p in mono for _ in range(p))
            mag = abs(coeff)
            text = str(mag) if not mono else (body if mag == 1 else f"{mag}*{body}")
            if coeff < 0:
                out += "-" + text
            else:
                out += ("+" if out else "") + text
        return out

    def __repr__(self) -> str:
        return f"DimExpr({str(self)!r})"


def _factor_str(atom: Atom, in_product: bool) -> str:
    text = str(atom)
    return f"({text})" if in_product and isinstance(atom, (FloorDiv, Mod)) else text


def _term_key(term: tuple[Monomial, int]) -> tuple:
    mono, _ = term
    # Constant last; higher degree first; then by the atoms' text.
    degree = sum(p for _, p in mono)
    return (mono == (), -degree, tuple((a.key(), p) for a, p in mono))


@dataclass(frozen=True)
class Unknown:
    """A size known only at run time (data dependent), at most `bound` when given."""

    bound: "int | DimExpr | None" = None

    def __str__(self) -> str:
        return "?" if self.bound is None else f"?<={self.bound}"

    # Arithmetic with an unknown is unknown (the bound is not carried through).
    def _unknown(self, other: object) -> "Unknown":
        return Unknown()

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _unknown
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _unknown

    def __neg__(self) -> "Unknown":
        return Unknown()


Dim = Union[int, DimExpr, Unknown]


# -- polynomial helpers -----------------------------------------------------
def _poly(d: "int | DimExpr") -> dict[Monomial, int]:
    if isinstance(d, bool):
        raise UsageError("a bool is not a dim")
    if isinstance(d, int):
        return {(): d} if d else {}
    if isinstance(d, DimExpr):
        return dict(d.terms)
    raise UsageError(f"cannot do arithmetic on dim {d!r}")


def _atom_expr(atom: Atom) -> DimExpr:
    monomial: Monomial = ((atom, 1),)
    return DimExpr(((monomial, 1),))


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    powers: dict[Atom, int] = dict(a)
    for atom, p in b:
        powers[atom] = powers.get(atom, 0) + p
    return tuple(sorted(powers.items(), key=lambda ap: ap[0].key()))


def sym(name: str) -> DimExpr:
    """The dim that is the symbol `name`."""
    if not name.isidentifier():
        raise VerifyError(f"symbol name {name!r} is not an identifier")
    return _atom_expr(Sym(name))


def as_dim(value: object) -> Dim:
    """Coerce user input (int, str of a symbol, DimExpr, Unknown, None for '?') to a Dim."""
    if isinstance(value, bool):
        raise UsageError(f"a bool is not a dim: {value!r}")
    if isinstance(value, (DimExpr, Unknown)):
        return value
    if isinstance(value, int) or hasattr(value, "__index__"):
        return int(value)  # type: ignore[call-overload]
    if value is None:
        return Unknown()
    if isinstance(value, str):
        from ember.ir.parser import parse_dim  # lazy: the parser needs this module
        return parse_dim(value)
    raise UsageError(f"not a dim: {value!r}")


def add(a: "Dim", b: "Dim") -> "Dim":
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return Unknown()
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    poly = _poly(a)
    for m, c in _poly(b).items():
        poly[m] = poly.get(m, 0) + c
    return DimExpr.from_poly(poly)


def mul(a: "Dim", b: "Dim") -> "Dim":
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return Unknown()
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    poly: dict[Monomial, int] = {}
    for ma, ca in _poly(a).items():
        for mb, cb in _poly(b).items():
            m = _mono_mul(ma, mb)
            poly[m] = poly.get(m, 0) + ca * cb
    return DimExpr.from_poly(poly)


def _split_divisible(a: "int | DimExpr", b: int) -> tuple["Dim", "Dim"]:
    """a = b*q + r where q collects the terms whose coefficient b divides."""
    q: dict[Monomial, int] = {}
    r: dict[Monomial, int] = {}
    for m, c in _poly(a).items():
        if m == ():
            q[m], r[m] = divmod(c, b)  # floor semantics keep 0 <= r < b for b > 0
        elif c % b == 0:
            q[m] = c // b
        else:
            r[m] = c
    return DimExpr.from_poly(q), DimExpr.from_poly(r)


def floordiv(a: "Dim", b: "Dim") -> "Dim":
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return Unknown()
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            raise ShapeError("dim division by zero")
        return a // b
    if b == 1:
        return a
    if isinstance(b, int) and b > 0:
        q, r = _split_divisible(a, b)
        if r == 0:
            return q
        if isinstance(r, int):  # 0 < r < b and q is integer-valued
            return q
        return add(q, _atom_expr(FloorDiv(r, b)))
    if a == b:
        return 1
    return _atom_expr(FloorDiv(a, b))


def mod(a: "Dim", b: "Dim") -> "Dim":
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return Unknown()
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            raise ShapeError("dim modulo by zero")
        return a % b
    if b == 1 or a == b:
        return 0
    if isinstance(b, int) and b > 0:
        _, r = _split_divisible(a, b)
        if isinstance(r, int):
            return r
        return _atom_expr(Mod(r, b))
    return _atom_expr(Mod(a, b))


def _ordered(a: "Dim", b: "Dim") -> tuple["Dim", "Dim"]:
    return (a, b) if str(a) <= str(b) else (b, a)


def dmax(a: "Dim", b: "Dim") -> "Dim":
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return Unknown()
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    if a == b:
        return a
    return _atom_expr(Max(*_ordered(a, b)))


def dmin(a: "Dim", b: "Dim") -> "Dim":
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return Unknown()
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    if a == b:
        return a
    return _atom_expr(Min(*_ordered(a, b)))


def ceildiv(a: "Dim", b: "Dim") -> "Dim":
    return mul(floordiv(mul(a, -1), b), -1)


# -- queries ----------------------------------------------------------------
def evaluate(d: Dim, env: Mapping[str, int]) -> int:
    """The integer value of `d` once every symbol in it is bound in `env`."""
    if isinstance(d, int):
        return d
    if isinstance(d, Unknown):
        raise ShapeError("an unknown dim has no value before run time")
    total = 0
    for mono, coeff in d.terms:
        value = coeff
        for atom, power in mono:
            value *= atom.evaluate(env) ** power
        total += value
    return total


def substitute(d: Dim, env: Mapping[str, int]) -> Dim:
    """`d` with the symbols bound in `env` replaced by their values, the others kept (a size
    over the input shapes and the sizes known only at run time, bound in two stages)."""
    if isinstance(d, (int, Unknown)):
        return d
    total: Dim = 0
    for mono, coeff in d.terms:
        value: Dim = coeff
        for atom, power in mono:
            a = _substitute_atom(atom, env)
            for _ in range(power):
                value = mul(value, a)
        total = add(total, value)
    return total


def _substitute_atom(atom: Atom, env: Mapping[str, int]) -> Dim:
    if isinstance(atom, Sym):
        return int(env[atom.name]) if atom.name in env else _atom_expr(atom)
    if not isinstance(atom, _Binary):
        raise ShapeError(f"cannot substitute into {atom}")
    lhs, rhs = substitute(atom.lhs, env), substitute(atom.rhs, env)
    fn = {FloorDiv: floordiv, Mod: mod, Max: dmax, Min: dmin}[type(atom)]
    return fn(lhs, rhs)


def free_symbols(d: Dim) -> set[str]:
    if isinstance(d, int):
        return set()
    if isinstance(d, Unknown):
        return free_symbols(d.bound) if d.bound is not None else set()
    out: set[str] = set()
    for mono, _ in d.terms:
        for atom, _ in mono:
            out |= atom.symbols()
    return out


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def as_symbol(d: Dim) -> str | None:
    """The symbol's name if `d` is exactly one bare symbol, else None."""
    if isinstance(d, DimExpr) and len(d.terms) == 1:
        (mono, coeff), = d.terms
        if coeff == 1 and len(mono) == 1 and mono[0][1] == 1 and isinstance(mono[0][0], Sym):
            return mono[0][0].name
    return None


def broadcast_dim(a: Dim, b: Dim) -> Dim:
    """THE broadcasting rule for one pair of dims, numpy's, extended to symbols.

    - equal dims give that dim; a 1 against anything gives the other (so a
      symbol against 1 gives the symbol, right for every value >= 0 of it);
    - two different integers, neither 1, are an error;
    - a symbolic dim against an integer k > 1 gives k (the runtime requires the
      symbol to be 1 or k); an unknown against k > 1 gives k likewise;
    - two different symbolic dims give max(a, b): right whenever one is 1 or
      both are equal, the only cases that broadcast;
    - an unknown against a symbolic dim gives an unknown.
    """
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    if isinstance(a, int) and isinstance(b, int):
        raise ShapeError(f"dims {a} and {b} do not broadcast")
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return Unknown()
    return dmax(a, b)


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """Right-aligned broadcast of several shapes (numpy's rule, see broadcast_dim)."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = [1] * rank
    for shape in shapes:
        padded = (1,) * (rank - len(shape)) + tuple(shape)
        for i, d in enumerate(padded):
            try:
                out[i] = broadcast_dim(out[i], d)
            except ShapeError:
                raise ShapeError(
                    f"shapes {', '.join(format_shape(s) for s in shapes)} do not broadcast "
                    f"(axis {i - rank}: {out[i]} vs {d})") from None
    return tuple(out)


def format_shape(shape: tuple[Dim, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
