"""Passes, their registry, pipelines written as strings, and the manager that runs them.

A pass is a frozen dataclass whose fields are its options:

    @register_pass("fuse-elementwise")
    @dataclass(frozen=True)
    class FuseElementwise(Pass):
        '''Merge chains of elementwise ops into ember.fused regions.'''
        max_ops: int = 32                       # fuse-elementwise{max-ops=8}

        def run(self, module: Module, ctx: PassContext) -> bool: ...

or, for a pass without options, a decorated function `(module, ctx) -> bool`.
`run` returns whether it changed anything and counts what it did in
`ctx.stats`. Passes take valid IR and leave valid IR: the manager verifies
after each pass (unless told not to), times each, and can print the IR after
any of them.

Pipelines are strings: "canonicalize,cse,fuse-elementwise{max-ops=8}". A
registered pipeline (like `default`) is a name for such a string.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Callable, ClassVar, Sequence, get_type_hints

from ember.errors import EmberError, PassError, VerifyError
from ember.ir.core import Module
from ember.ir.verify import verify


@dataclass
class PassContext:
    """What passes share while a pipeline runs: counters, and where to write."""

    stats: dict[str, Counter] = field(default_factory=dict)
    out: IO[str] = sys.stderr

    def count(self, pass_name: str, what: str, n: int = 1) -> None:
        self.stats.setdefault(pass_name, Counter())[what] += n


class Pass:
    """Base of passes; subclasses are frozen dataclasses registered with `register_pass`."""

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        """Refuse option values outside what each option declares (`option(min=, max=, choices=)`),
        from a pipeline string and from Python alike."""
        if not dataclasses.is_dataclass(self):
            return
        for f in dataclasses.fields(self):
            problem = _option_problem(getattr(self, f.name), f.metadata)
            if problem:
                raise PassError(f"pass {self.name!r}: option {f.name.replace('_', '-')}={getattr(self, f.name)!r} "
                                f"{problem}")

    def run(self, module: Module, ctx: PassContext) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        opts = [f"{f.name.replace('_', '-')}={_format_option(getattr(self, f.name))}"
                for f in dataclasses.fields(self) if getattr(self, f.name) != f.default] \
            if dataclasses.is_dataclass(self) else []
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")


def option(default: Any, *, min: float | None = None, max: float | None = None,
           choices: Sequence[Any] | None = None) -> Any:
    """A pass option with the values it accepts: `max_ops: int = option(32, min=1)`."""
    return field(default=default, metadata={"min": min, "max": max, "choices": choices})


def _option_problem(value: Any, meta: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    low, high, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if low is not None and value < low:
        return f"is below its minimum {low}"
    if high is not None and value > high:
        return f"is above its maximum {high}"
    if choices is not None and value not in choices:
        return f"is not one of {', '.join(map(str, choices))}"
    return None


PASSES: dict[str, type[Pass]] = {}
PIPELINES: dict[str, str] = {}


def register_pass(name: str) -> Callable[[Any], Any]:
    """Register a Pass subclass, or a function `(module, ctx) -> bool`, under `name`."""

    def register(obj: Any) -> Any:
        if name in PASSES or name in PIPELINES:
            raise PassError(f"pass {name!r} is registered twice (first by {_origin(PASSES.get(name))})")
        if isinstance(obj, type) and issubclass(obj, Pass):
            cls = obj
        elif callable(obj):
            fn = obj
            cls = dataclass(frozen=True)(type(fn.__name__, (Pass,), {
                "__doc__": fn.__doc__, "run": lambda self, module, ctx: bool(fn(module, ctx)),
                "__module__": fn.__module__}))
        else:
            raise TypeError(f"register_pass({name!r}) needs a Pass class or a function")
        cls.name = name
        PASSES[name] = cls
        return obj

    return register


def register_pipeline(name: str, pipeline: str, doc: str = "") -> None:
    """A name for a pipeline string (`default`)."""
    if name in PASSES or name in PIPELINES:
        raise PassError(f"pipeline {name!r} is registered twice (first by {_origin(PASSES.get(name))})")
    PIPELINES[name] = pipeline


def _origin(cls: type | None) -> str:
    """Where a registered pass came from, for the message when a name is taken twice."""
    return "a pipeline" if cls is None else f"{cls.__module__}.{cls.__qualname__}"


# -- pipeline strings --------------------------------------------------------------------------------
_ITEM = re.compile(r"\s*([A-Za-z0-9_-]+)\s*(?:\{([^{}]*)\})?\s*(?:,|$)")


def _split_options(text: str) -> list[tuple[str, str]]:
    out = []
    depth, start = 0, 0
    parts = []
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    for part in parts:
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise PassError(f"option {part.strip()!r}: expected key=value")
        out.append((key.strip(), value.strip()))
    return out


def _convert(value: str, annotation: Any, where: str) -> Any:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    try:
        if annotation is bool or text == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if annotation is int or text == "int":
            return int(value)
        if annotation is float or text == "float":
            return float(value)
        if "tuple" in text:
            items = value[1:-1] if value.startswith("[") and value.endswith("]") else value
            return tuple(i.strip() for i in items.split(",") if i.strip())
        return value
    except ValueError:
        raise PassError(f"{where}: {value!r} is not a valid {text}") from None


def _format_option(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _load_builtins() -> None:
    import ember.passes.registry  # noqa: F401  (registers the built-in passes and pipelines)


def parse_pipeline(text: str) -> list[Pass]:
    """`"canonicalize,cse,fuse-elementwise{max-ops=8}"` as pass instances (pipelines expanded)."""
    _load_builtins()
    passes: list[Pass] = []
    pos = 0
    text = text.strip()
    if not text:
        return passes
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if m is None or m.end() == pos:
            raise PassError(f"pipeline {text!r}: cannot read from column {pos + 1}: {text[pos:]!r}")
        name, options = m.group(1), m.group(2)
        pos = m.end()
        if name in PIPELINES:
            if options:
                raise PassError(f"pipeline {name!r} takes no options")
            passes.extend(parse_pipeline(PIPELINES[name]))
            continue
        cls = PASSES.get(name)
        if cls is None:
            known = ", ".join(sorted(set(PASSES) | set(PIPELINES)))
            raise PassError(f"unknown pass {name!r} (known: {known})")
        kwargs = {}
        if options:
            hints = get_type_hints(cls)
            fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
            for key, value in _split_options(options):
                attr = key.replace("-", "_")
                if attr not in fields:
                    raise PassError(f"pass {name!r} has no option {key!r} "
                                    f"(options: {', '.join(f.replace('_', '-') for f in fields) or 'none'})")
                kwargs[attr] = _convert(value, hints.get(attr, str), f"{name}{{{key}}}")
        passes.append(cls(**kwargs))
    return passes


# -- running -------------------------------------------------------------------------------------------
@dataclass
class PassRecord:
    name: str
    seconds: float
    changed: bool
    stats: Counter


class PassManager:
    """Runs passes in order, verifying after each (unless `verify_each` is off)."""

    def __init__(self, passes: Sequence[Pass] | str, *, verify_each: bool = True,
                 print_ir_after: Sequence[str] = (), print_ir_after_all: bool = False,
                 out: IO[str] | None = None) -> None:
        self.passes = parse_pipeline(passes) if isinstance(passes, str) else list(passes)
        self.verify_each = verify_each
        self.print_ir_after = set(print_ir_after)
        self.print_ir_after_all = print_ir_after_all
        self.out = out or sys.stderr
        _load_builtins()
        unknown = self.print_ir_after - set(PASSES)
        if unknown:
            raise PassError(f"--print-ir-after: unknown pass {sorted(unknown)[0]!r}")

    def run(self, module: Module, ctx: PassContext | None = None) -> list[PassRecord]:
        ctx = ctx or PassContext(out=self.out)
        records = []
        for p in self.passes:
            before = Counter(ctx.stats.get(p.name, Counter()))
            t = time.perf_counter()
            try:
                changed = bool(p.run(module, ctx))
            except EmberError as err:
                if isinstance(err, PassError):
                    raise
                raise PassError(f"pass {p.describe()} failed: {err}") from err
            seconds = time.perf_counter() - t
            if self.verify_each:
                try:
                    verify(module)
                except VerifyError as err:
                    raise PassError(f"pass {p.describe()} left invalid IR: {err}") from None
            stats = Counter(ctx.stats.get(p.name, Counter()))
            stats.subtract(before)
            records.append(PassRecord(p.describe(), seconds, changed, +stats))
            if self.print_ir_after_all or p.name in self.print_ir_after:
                self.out.write(f"// -----// IR after {p.describe()} //----- //\n{module}")
        return records


def run_pipeline(module: Module, pipeline: str, **options: Any) -> list[PassRecord]:
    """Run a pipeline string on `module` in place."""
    return PassManager(pipeline, **options).run(module)


def timing_report(records: Sequence[PassRecord]) -> str:
    total = sum(r.seconds for r in records) or 1e-12
    lines = [f"{'pass':<40} {'seconds':>9} {'%':>6}  changes"]
    for r in records:
        stats = ", ".join(f"{k} {v}" for k, v in r.stats.most_common()) or ("changed" if r.changed else "-")
        lines.append(f"{r.name:<40} {r.seconds:9.4f} {100 * r.seconds / total:5.1f}%  {stats}")
    lines.append(f"{'total':<40} {total:9.4f}")
    return "\n".join(lines) + "\n"
