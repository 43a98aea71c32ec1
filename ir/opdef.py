"""How an op is defined: schema fields, traits, the registry, and the generic
machinery (creation, type inference, evaluation) that every op shares.

An op is one class. Its fields declare the schema, in order:

    @register_op("ember.transpose", traits={Pure, ViewLike})
    class Transpose(Op):
        '''Permute axes.'''
        x = Operand(AnyTensor)
        perm = Attr(Ints)
        out = Result()

        def infer(self, x: TensorType) -> TensorType: ...       # the only type rule

        @staticmethod
        def reference(x, *, perm): return np.transpose(x, perm)   # the meaning, in numpy

The verifier, printer, parser, builder and interpreter read nothing but these.
`infer` receives the operand types grouped by field (a tuple for a variadic
operand, None for an absent optional one) and reads attributes as `self.<attr>`;
it returns one type per result field. `reference` receives numpy arrays grouped
the same way, every attribute as a keyword (symbolic dims already evaluated),
and a callable per region; it returns an array or a tuple of arrays. An op
whose meaning needs more than that (the module's weights, say) overrides
`evaluate`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from ember.errors import ShapeError, VerifyError
from ember.ir import attrs as A
from ember.ir.core import Block, Location, Operation, Value
from ember.ir.dims import DimExpr, evaluate
from ember.ir.types import OptionalType, SequenceType, TensorType, Type


# -- traits -------------------------------------------------------------------
@dataclass(frozen=True)
class Trait:
    """A property passes and codegen select ops by, instead of by name."""

    name: str
    doc: str = ""

    def __repr__(self) -> str:
        return self.name


Pure = Trait("Pure", "no side effects: may be deleted when unused, folded, deduplicated")
Elementwise = Trait("Elementwise", "each output element depends on the same-index input elements")
Broadcasting = Trait("Broadcasting", "operands broadcast by the one rule in dims.broadcast_dim")
Commutative = Trait("Commutative", "the two operands may be swapped")
ViewLike = Trait("ViewLike", "costs no kernel: a reshape or view of its input's memory")
Reduction = Trait("Reduction", "reduces over axes; accumulates in f32 for f16/bf16 inputs")
Heavy = Trait("Heavy", "matmul/conv class work: never duplicated to fuse")
LayoutSensitive = Trait("LayoutSensitive", "carries a `layout` attribute the layout pass may rewrite")
Quantization = Trait("Quantization", "quantizes or dequantizes")
ControlFlow = Trait("ControlFlow", "has regions that may read values from the enclosing scope")
HostOnly = Trait("HostOnly", "works on sequences or optionals: runs on the host")
DataMovement = Trait("DataMovement", "moves or selects elements without arithmetic")
Normalization = Trait("Normalization", "normalizes over some axes (mean/variance)")
ShapeOnly = Trait("ShapeOnly", "its result depends only on operand shapes, not their data")


# -- type constraints -----------------------------------------------------------
@dataclass(frozen=True)
class TypeConstraint:
    """What an operand or result may be; `kinds` are DType kinds, empty for any."""

    name: str
    kinds: frozenset[str] = frozenset()
    tensor: bool = True
    value_type: type | None = None

    def accepts(self, t: Type) -> bool:
        if self.value_type is not None:
            return isinstance(t, self.value_type)
        if not isinstance(t, TensorType):
            return not self.tensor
        return not self.kinds or t.dtype.kind in self.kinds

    def __repr__(self) -> str:
        return self.name


AnyTensor = TypeConstraint("tensor")
FloatTensor = TypeConstraint("float tensor", frozenset({"float"}))
IntTensor = TypeConstraint("integer tensor", frozenset({"int", "uint"}))
BoolTensor = TypeConstraint("bool tensor", frozenset({"bool"}))
NumericTensor = TypeConstraint("numeric tensor", frozenset({"float", "int", "uint", "complex"}))
AnyType = TypeConstraint("any value", tensor=False)
SequenceValue = TypeConstraint("sequence", value_type=SequenceType)
OptionalValue = TypeConstraint("optional", value_type=OptionalType)


# -- schema fields ----------------------------------------------------------------
class Field:
    name: str = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name


class Operand(Field):
    def __init__(self, constraint: TypeConstraint = AnyTensor, *, optional: bool = False,
                 variadic: bool = False, doc: str = "") -> None:
        self.constraint, self.optional, self.variadic, self.doc = constraint, optional, variadic, doc

    def __get__(self, op: "Op | None", owner: type) -> Any:
        if op is None:
            return self
        return op.operand_groups()[self.name]


class Result(Field):
    def __init__(self, constraint: TypeConstraint = AnyType, *, variadic: bool = False, doc: str = "") -> None:
        self.constraint, self.variadic, self.doc = constraint, variadic, doc

    def __get__(self, op: "Op | None", owner: type) -> Any:
        if op is None:
            return self
        return op.result_groups()[self.name]


REQUIRED: Any = object()


class Attr(Field):
    """An attribute field. `key` spells it in the IR when the Python name must
    differ (`ref = Attr(Str, key="name")`: `name` is the op's own name)."""

    def __init__(self, kind: A.AttrKind = A.AnyAttr, default: Any = REQUIRED, doc: str = "",
                 key: str | None = None) -> None:
        self.kind, self.doc, self.key = kind, doc, key
        self.default = default if default is REQUIRED or default is None else kind.normalize(default)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.key or name

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def __get__(self, op: "Op | None", owner: type) -> Any:
        if op is None:
            return self
        return op.attributes[self.name]


class Region(Field):
    """A single-block region. Isolated regions (fused bodies) see only their
    arguments; others (if, loop) may read values of the enclosing scope."""

    def __init__(self, *, isolated: bool = True, doc: str = "") -> None:
        self.isolated, self.doc = isolated, doc

    def __get__(self, op: "Op | None", owner: type) -> Any:
        if op is None:
            return self
        return op.regions[op.region_fields.index(self)]


# -- the registry -------------------------------------------------------------------
REGISTRY: dict[str, type["Op"]] = {}


def register_op(name: str, traits: Iterable[Trait] = ()) -> Callable[[type["Op"]], type["Op"]]:
    """Class decorator: name the op, attach traits, make it known to the parser and builder."""
    if "." not in name:
        raise ValueError(f"op name {name!r} needs a dialect prefix, as in ember.add")

    def decorate(cls: type[Op]) -> type[Op]:
        if name in REGISTRY:
            raise ValueError(f"op {name} is registered twice ({REGISTRY[name].__qualname__}, {cls.__qualname__})")
        cls.name = name
        cls.traits = frozenset(traits)
        REGISTRY[name] = cls
        return cls

    return decorate


def lookup(name: str) -> type["Op"] | None:
    if name not in REGISTRY:
        import ember.ir.ops  # noqa: F401  (registers the built-in ops)
    return REGISTRY.get(name)


@dataclass(frozen=True)
class ShapeOnly:
    """An operand of a size rule known only by its shape and element type (not read back)."""

    shape: tuple[int, ...]
    dtype: Any = None

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass
class EvalContext:
    """What `evaluate` may need beyond the operands: symbol values, the module
    (its weights), and a way to run a region."""

    env: dict[str, int]
    module: Any
    run_block: Callable[[Block, Sequence[Any]], tuple]


# Instance state every Operation keeps; an op class must not define these names.
_OPERATION_STATE = frozenset({"_operands", "attributes", "regions", "loc", "parent", "results"})


class Op(Operation):
    """Base of every op class; see the module docstring."""

    traits: ClassVar[frozenset[Trait]] = frozenset()
    operand_fields: ClassVar[tuple[Operand, ...]] = ()
    result_fields: ClassVar[tuple[Result, ...]] = ()
    attr_fields: ClassVar[dict[str, Attr]] = {}
    region_fields: ClassVar[tuple[Region, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for key in vars(cls):
            if key in _OPERATION_STATE:
                raise TypeError(f"{cls.__name__}.{key} shadows the Operation's own {key!r}; rename it")
        fields: dict[str, Field] = {}
        for base in reversed(cls.__mro__):
            for key, value in vars(base).items():
                if isinstance(value, Field):
                    if hasattr(Op, key):
                        raise TypeError(f"{cls.__name__}.{key}: the field shadows Op.{key}; rename it "
                                        f"(an attribute can keep its IR spelling with Attr(..., key={key!r}))")
                    fields[key] = value
        cls.operand_fields = tuple(f for f in fields.values() if isinstance(f, Operand))
        cls.result_fields = tuple(f for f in fields.values() if isinstance(f, Result))
        cls.attr_fields = {f.name: f for f in fields.values() if isinstance(f, Attr)}
        cls.region_fields = tuple(f for f in fields.values() if isinstance(f, Region))
        if sum(f.variadic for f in cls.operand_fields) > 1 or sum(f.variadic for f in cls.result_fields) > 1:
            raise TypeError(f"{cls.__name__}: at most one variadic operand and one variadic result")

    run_time_sizes: ClassVar[Callable[..., tuple[tuple[int, ...], ...]] | None] = None
    """For an op whose result sizes are data but cheap to find from its operands (ember.range:
    three scalars; ember.topk: its k), the result shapes from the operands (grouped by field,
    as `reference` takes them, with the attributes as keywords). Lowering then gives the op a
    *size step*, which reads those operands back and binds the sizes, and a kernel computes the
    values (codegen/lower.py); without it, such an op runs on the host."""

    run_time_size_reads: ClassVar[tuple[str, ...] | None] = None
    """The operands whose values `run_time_sizes` needs (None: all). The others reach it as
    `ShapeOnly`, their shape and element type, so a size step reads back a scalar k, not the
    tensor top-k ranks."""

    symbolic_sizes: ClassVar[Callable[..., tuple[tuple[Any, ...], ...] | None] | None] = None
    """`run_time_sizes` over dims, for when the operands it reads are known as dims
    (ir/shape_values.py: a shape computed from shapes, the lowerer's sized by run-time
    symbols): the result shapes as dims, or None. The ConstantOfShape of a top-k's Shape is
    then sized by the top-k's symbol rather than by a new one that nothing ties to it. The
    read operands come as ShapeValue, the others as ShapeOnly with dims for a shape."""

    # -- creation -------------------------------------------------------------------
    @classmethod
    def create(cls, operands: Sequence[Value | None] = (), attributes: Mapping[str, Any] | None = None, *,
               result_types: Sequence[Type] | None = None, regions: Sequence[Block] = (),
               loc: Location | str | Sequence[str] | None = None) -> "Op":
        """Make an op. Without `result_types`, infer them (raising ShapeError at once)."""
        loc = Location.of(loc)
        attrs = cls.normalize_attributes(attributes or {}, loc)
        operands = list(operands)
        while operands and operands[-1] is None:
            operands.pop()
        op = cls.__new__(cls)
        Operation.__init__(op, operands, (), attrs, regions, loc)
        try:
            op.operand_groups()
            if len(regions) != len(cls.region_fields):
                raise op.error(f"expects {len(cls.region_fields)} regions, got {len(regions)}")
            types = op.infer_result_types() if result_types is None else tuple(result_types)
        except Exception:
            op.drop_all_references()
            raise
        op.set_result_types(types)
        return op

    @classmethod
    def normalize_attributes(cls, given: Mapping[str, Any], loc: Location = Location()) -> dict[str, Any]:
        problems: list[str] = []
        out: dict[str, Any] = {}
        for key in given:
            if key not in cls.attr_fields:
                known = ", ".join(cls.attr_fields) or "none"
                problems.append(f"unknown attribute {key!r} (known: {known})")
        for key, fld in cls.attr_fields.items():
            if key not in given or given[key] is None:
                if fld.required:
                    problems.append(f"missing required attribute {key!r} ({fld.kind.name})")
                out[key] = None if fld.required else fld.default
                continue
            try:
                out[key] = fld.kind.normalize(given[key])
            except A.AttrError as err:
                problems.append(f"attribute {key!r}: {err}")
        if problems:
            where = f"{loc}: " if loc else ""
            raise VerifyError(f"{where}{cls.name}: " + "; ".join(problems),
                              tuple(f"{where}{cls.name}: {p}" for p in problems))
        return out

    # -- schema views -------------------------------------------------------------------
    def size_reads(self) -> list[Value]:
        """The operands a size step reads back (see `run_time_size_reads`)."""
        names = type(self).run_time_size_reads
        if names is None:
            return [v for v in self.operands if v is not None]
        picked = [getattr(self, n) for n in names]
        return [v for v in picked if v is not None]

    def sizes_at_run_time(self, value_of: Callable[[Value], Any], shape_of: Callable[[Value], tuple[int, ...]],
                          env: Mapping[str, int]) -> tuple[tuple[int, ...], ...]:
        """`run_time_sizes` on this run's operands: the values it reads, the shapes of the rest."""
        rule = type(self).run_time_sizes
        if rule is None:
            raise self.error("has no rule for its sizes at run time")
        reads = self.size_reads()
        args = [None if v is None else np.asarray(value_of(v)) if any(v is r for r in reads)
                else ShapeOnly(tuple(int(d) for d in shape_of(v)), getattr(v.type, "dtype", None))
                for v in self.operands]
        return rule(*self.group(args, like=self.operands).values(), **self.evaluated_attributes(env))

    def group(self, items: Sequence[Any], like: Sequence[Any] | None = None) -> dict[str, Any]:
        """Split a flat operand list (values, types or arrays) by operand field.

        Which operands are absent is read from `like` (default: `items`), so the
        interpreter can group run-time values, where an empty optional is also None,
        by the op's own operands."""
        fields = self.operand_fields
        like = list(items) if like is None else list(like)
        if len(like) != len(items):
            raise self.error(f"{len(items)} values for {len(like)} operands")
        n = len(items)
        index: dict[str, Any] = {}
        if not any(f.variadic for f in fields):
            if n > len(fields):
                raise self.error(f"takes at most {len(fields)} operands, got {n}")
            index = {f.name: (i if i < n else None) for i, f in enumerate(fields)}
        else:
            n_fixed = sum(not f.variadic for f in fields)
            if n < n_fixed - sum(f.optional for f in fields if not f.variadic):
                raise self.error(f"takes at least {n_fixed} operands, got {n}")
            vi = next(i for i, f in enumerate(fields) if f.variadic)
            n_after = len(fields) - vi - 1
            index = {f.name: (i if i < n else None) for i, f in enumerate(fields[:vi])}
            index[fields[vi].name] = tuple(range(vi, max(vi, n - n_after)))
            index.update({f.name: n - n_after + k for k, f in enumerate(fields[vi + 1:])})
        out: dict[str, Any] = {}
        for f in fields:
            at = index[f.name]
            if f.variadic:
                if any(like[i] is None for i in at):
                    raise self.error(f"variadic operand {f.name!r} cannot have absent entries")
                out[f.name] = tuple(items[i] for i in at)
                continue
            if at is None or like[at] is None:
                if not f.optional:
                    raise self.error(f"operand {f.name!r} is required")
                out[f.name] = None
            else:
                out[f.name] = items[at]
        return out

    def operand_groups(self) -> dict[str, Any]:
        return self.group(self.operands)

    def result_groups(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        results = list(self.results)
        fields = self.result_fields
        n_fixed = sum(not f.variadic for f in fields)
        i = 0
        for f in fields:
            if f.variadic:
                take = len(results) - n_fixed
                out[f.name] = tuple(results[i:i + take])
                i += take
            else:
                out[f.name] = results[i] if i < len(results) else None
                i += 1
        return out

    @property
    def operand_types(self) -> list[Type | None]:
        return [v.type if v is not None else None for v in self.operands]

    def has_trait(self, trait: Trait) -> bool:
        return trait in self.traits

    # -- types ----------------------------------------------------------------------
    def infer(self, *operand_types: Any) -> Any:
        raise NotImplementedError(f"{self.name} defines no type rule")

    def infer_result_types(self) -> tuple[Type, ...]:
        """Run `infer` on the operand types and flatten to one type per result."""
        groups = self.group(self.operand_types)
        for f in self.operand_fields:
            got = groups[f.name]
            for t in (got if f.variadic else (got,)):
                if t is not None and not f.constraint.accepts(t):
                    raise self.error(f"operand {f.name!r} must be a {f.constraint.name}, got {t}")
        out = self.infer(*groups.values())
        flat: list[Type] = []
        outs = out if isinstance(out, tuple) else (out,)
        if not any(f.variadic for f in self.result_fields) and len(outs) != len(self.result_fields):
            raise self.error(f"type rule gave {len(outs)} results, schema has {len(self.result_fields)}")
        for t in outs:
            if isinstance(t, tuple):
                flat.extend(t)
            else:
                flat.append(t)
        for t in flat:
            if not isinstance(t, Type):
                raise self.error(f"type rule returned {t!r}, not a Type")
        return tuple(flat)

    def infer_types(self, operand_types: Sequence[Any]) -> tuple[Any, ...]:
        """The type rule on given operand types (one per operand, None for an absent optional),
        one type per result: what the types would be with other operand shapes (the lowerer's
        sizes over run-time symbols; a size step's concrete shapes at run time)."""
        groups = self.group(operand_types)
        out = self.infer(*groups.values())
        flat: list[Any] = []
        for t in (out if isinstance(out, tuple) else (out,)):
            flat.extend(t if isinstance(t, tuple) else (t,))
        return tuple(flat)

    @classmethod
    def region_arg_types(cls, region: str, operand_types: Sequence[Type | None],
                         attributes: Mapping[str, Any]) -> list[Type]:
        """The argument types a builder gives region `region` (default: none)."""
        return []

    def verify_(self) -> None:
        """Checks beyond the type rule (override; raise self.error)."""

    def error(self, message: str) -> ShapeError:
        where = f"{self.loc}: " if self.loc else ""
        return ShapeError(f"{where}{self.name}: {message}")

    # -- meaning ------------------------------------------------------------------------
    reference: ClassVar[Callable[..., Any]]

    def evaluated_attributes(self, env: Mapping[str, int]) -> dict[str, Any]:
        return {k: _evaluate_attr(v, env) for k, v in self.attributes.items()}

    def evaluate(self, args: Sequence[Any], ctx: EvalContext) -> tuple:
        """Run the reference semantics on concrete operands; returns one array per result."""
        groups = self.group(args, like=self.operands)
        kwargs = self.evaluated_attributes(ctx.env)
        for f, block in zip(self.region_fields, self.regions):
            kwargs[f.name] = _region_callable(block, ctx)
        ref = type(self).reference
        out = ref(*groups.values(), **kwargs)
        if not isinstance(out, tuple):
            out = (out,)
        flat: list[Any] = []
        for f, o in zip(self.result_fields, out):
            if f.variadic:
                flat.extend(o)
            else:
                flat.append(o)
        return tuple(flat)


def _region_callable(block: Block, ctx: EvalContext) -> Callable[..., tuple]:
    def run(*args: Any) -> tuple:
        return ctx.run_block(block, args)
    return run


def _evaluate_attr(value: Any, env: Mapping[str, int]) -> Any:
    if isinstance(value, DimExpr):
        return evaluate(value, env)
    if isinstance(value, tuple):
        return tuple(_evaluate_attr(v, env) for v in value)
    if isinstance(value, A.Dense):
        return value.array
    return value


def format_exception(err: BaseException) -> str:
    """One line for a foreign exception escaping a type rule (a bug in the rule)."""
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    return f"{type(err).__name__}: {err}{where}"


def static_value(v: Value | None) -> np.ndarray | None:
    """The array of an inline constant operand, if it is one (used by type rules)."""
    if v is None or v.defining_op is None:
        return None
    op = v.defining_op
    if op.name == "ember.constant":
        return op.attributes["value"].array
    return None
