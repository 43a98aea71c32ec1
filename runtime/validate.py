"""An engine's contents, checked once at load, before anything trusts them.

The container (engine_format.py) proves that the file is the one that was
written; this module proves that what was written makes sense, because the
checksums prove nothing about a file forged with valid ones. The runtime
indexes lists by the ids it reads here, slices the host arena at the plan's
offsets, hands ctypes the scalars and the driver the sizes: after these checks
every id points somewhere, every value's byte size is its shape times its
element size, every buffer lies inside the arena and no two buffers live at
once share bytes (the lifetimes are recomputed from the steps, not taken from
the plan), every kernel has binaries and every argument fits its parameter.

What is not checked, because it cannot be: a kernel's machine code. An engine
carries GPU code, and a forged kernel can do on the GPU what any code can; the
checks here keep the host side (numpy, ctypes, the host arena) from being
misled, and turn every inconsistency into one line naming the file, the
section and the entry.

Every refusal is an `EngineFormatError`:
`model.engine: section 'plan': program.steps[3].args[2]: value 99 is not a value of the program (0..41)`.
The checks walk the sections in the order the runtime depends on them: `io`,
`plan` (its program, then its memory plan against the program), `kernels`,
`weights.index`, then the IR against the program. The JSON is checked here as
JSON (this module is the engine file's schema); once it passes, it becomes the
typed program (ir/program.py), and the checks of the memory plan and the IR
against the program, like everything else in the runtime, read that.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, NoReturn, Sequence

from ember.errors import EmberError, ShapeError
from ember.ir.sizes import MAX_BYTES, MAX_ELEMENTS, SizeError, check_range, nbytes
from ember.ir.types import DTYPES
from ember.runtime.engine_format import EngineFormatError
from ember.ir.program import (ARENA_KINDS, ARG_PARAM, PARAM_KINDS, VALUE_KINDS, BranchStep, HostStep, LaunchStep,
                              Program, SizeStep, Step, ValueSpec, YieldStep, step_tables, tensormap_layout)
from ember.runtime.memory_plan import MemoryPlan, align, lifetimes, op_groups
I64 = (-(1 << 63), (1 << 63) - 1)
I32 = (-(1 << 31), (1 << 31) - 1)
GRID_LIMITS = ((1 << 31) - 1, 65535, 65535)
MAX_BLOCK = 1024
MAX_SHARED = 1 << 20  # bytes of dynamic shared memory; every GPU so far has at most 228 KiB
MAX_ALIGNMENT = 1 << 20
WEIGHT_ALIGN = 256


class _Invalid(Exception):
    """One problem, found at `where` in `section`; `check_engine` words it."""

    def __init__(self, section: str, where: str, what: str) -> None:
        super().__init__(what)
        self.section, self.where, self.what = section, where, what


class At:
    """A place in a section (`plan`, `program.steps[3].args[2]`), for the message."""

    def __init__(self, section: str, path: str = "") -> None:
        self.section, self.path = section, path

    def __getitem__(self, key: int | str) -> "At":
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.path else str(key))
        return At(self.section, self.path + step)

    def fail(self, what: str) -> NoReturn:
        raise _Invalid(self.section, self.path, what)


# -- JSON shapes ---------------------------------------------------------------------------------
def _obj(x: Any, at: At, *required: str) -> Mapping[str, Any]:
    if not isinstance(x, dict):
        at.fail(f"expected an object, got {_kind(x)}")
    missing = [k for k in required if k not in x]
    if missing:
        at.fail(f"missing {', '.join(map(repr, missing))}")
    return x


def _list(x: Any, at: At, length: int | None = None) -> list[Any]:
    if not isinstance(x, list):
        at.fail(f"expected a list, got {_kind(x)}")
    if length is not None and len(x) != length:
        at.fail(f"expected {length} entries, got {len(x)}")
    return x


def _int(x: Any, at: At, lo: int, hi: int, what: str = "integer") -> int:
    """An integer in lo..hi; `what` names it in the message ("offset -4 is outside 0..1024")."""
    if isinstance(x, bool) or not isinstance(x, int):
        at.fail(f"{what}: expected an integer, got {_kind(x)}")
    if not lo <= x <= hi:
        at.fail(f"{what} {x} is outside {lo}..{hi}")
    return x


def _str(x: Any, at: At) -> str:
    if not isinstance(x, str):
        at.fail(f"expected a string, got {_kind(x)}")
    return x


def _ints(x: Any, at: At, lo: int, hi: int, what: str = "integer") -> list[int]:
    return [_int(v, at[i], lo, hi, what) for i, v in enumerate(_list(x, at))]


def _kind(x: Any) -> str:
    text = repr(x)
    return f"{type(x).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _sized(f: Any, at: At, *args: Any) -> int:
    """A check from ember.ir.sizes, its SizeError reported at `at`."""
    try:
        return f(*args)
    except SizeError as err:
        at.fail(str(err))


def _arch(x: Any, at: At) -> str:
    from ember.runtime.specs import arch_number
    text = _str(x, at)
    try:
        arch_number(text)
    except EngineFormatError:
        at.fail(f"{text!r} is not a CUDA architecture like sm_80 or compute_90")
    return text


# -- the whole engine ------------------------------------------------------------------------------
def check_engine(source: str, *, io: Any, plan: Any, kernels: Any, weights_index: Any, binaries: Any,
                 weights_size: int, weight_data: Any, more_kernels: Iterable[str] = ()) -> None:
    """Check the JSON sections of an engine against each other (raises EngineFormatError).
    `weight_data(name, offset, nbytes)` gives a json-encoded weight's bytes."""
    try:
        plan_obj = _obj(plan, At("plan"), "program", "memory")
        program = _program(plan_obj["program"], At("plan", "program"))
        _symbols(plan_obj.get("symbols", {}), At("plan", "symbols"))
        _kernels(_obj(kernels, At("kernels")), program, binaries, At("kernels"), set(more_kernels))
        _weights(_obj(weights_index, At("weights.index")), program, weights_size, weight_data, At("weights.index"))
        _io(_obj(io, At("io"), "inputs", "outputs"), program, At("io"))
    except _Invalid as bad:
        raise EngineFormatError(_message(source, bad)) from None


def check_bound(source: str, program: Program) -> None:
    """A program an engine bound at a shape (runtime/binding.py), checked as a stored one is."""
    try:
        _program(program.to_json(), At("profiles", "program"))
    except _Invalid as bad:
        raise EngineFormatError(_message(source, bad)) from None


def profile_kernels(data: Any) -> set[str]:
    """The kernels the programs of section 'profiles' name (checked in full when it is read)."""
    try:
        return {str(k["name"]) for sp in data["specializations"] for k in sp["program"]["kernels"]}
    except (KeyError, TypeError, AttributeError):
        return set()


def check_launch(source: str, step: LaunchStep, t: int) -> None:
    """A launch step whose sizes were evaluated at run time (over run-time symbols), checked as a
    stored one is: grid and block within the GPU's limits, its sized arguments in range (its
    kernel, parameters and value arguments were checked on load and do not change)."""
    where = At("plan", "program")["steps"][t]
    try:
        for d, (g, limit) in enumerate(zip(step.grid, GRID_LIMITS)):
            _int(g, where["grid"][d], 1, limit, "grid dim")
        block = [_int(b, where["block"][d], 1, MAX_BLOCK, "block dim") for d, b in enumerate(step.block)]
        if math.prod(block) > MAX_BLOCK:
            where["block"].fail(f"{block} is {math.prod(block)} threads a block, more than {MAX_BLOCK}")
        _int(step.shared, where["shared"], 0, MAX_SHARED, "shared memory bytes")
        for a, arg in enumerate(step.args):
            at = where["args"][a][arg.kind]
            if arg.kind == "scratch":
                _int(arg.value, at, 0, MAX_BYTES, "scratch bytes")
            elif arg.kind == "meta":
                _ints(list(arg.value), at, *I64, "metadata")
            elif arg.kind == "i64":
                _int(arg.value, at, *I64)
            elif arg.kind == "i32":
                _int(arg.value, at, *I32)
            elif arg.kind == "tensormap":
                rank = int(arg.value[2])
                _ints(list(arg.value[3:3 + rank]), at, 1, MAX_ELEMENTS, "tensor map dim")
                _ints(list(arg.value[3 + rank:2 + 2 * rank]), at, 16, 2**40 - 1, "tensor map stride")
    except _Invalid as bad:
        raise EngineFormatError(_message(source, bad)) from None


def check_memory(source: str, program: Program, memory: Any,
                 extra_reads: Mapping[int, Sequence[int]]) -> MemoryPlan:
    """The memory plan, read and checked against the program: the buffers are the ones the
    steps need (`extra_reads`: what the IR's ops read beyond their kernels), each inside the
    arena, and none shares bytes with another that is live at the same time."""
    try:
        return _memory(memory, program, extra_reads, At("plan", "memory"))
    except _Invalid as bad:
        raise EngineFormatError(_message(source, bad)) from None


def check_ir(source: str, module: Any, program: Program, symbols: Mapping[str, int],
             weights: Mapping[str, Any]) -> tuple[list[Any], dict[Any, int]]:
    """The IR against the program: as many values, of the same types, ops where the steps say,
    weights declared as stored. Returns the IR ops by step index and the program value id of
    each IR value (ir/program.py `step_tables`)."""
    try:
        return _ir(module, program, symbols, weights, At("ir"))
    except _Invalid as bad:
        raise EngineFormatError(_message(source, bad)) from None


def _message(source: str, bad: _Invalid) -> str:
    where = f"{bad.where}: " if bad.where else ""
    return f"{source}: section {bad.section!r}: {where}{bad.what}"


# -- plan.program ------------------------------------------------------------------------------------
def _program(x: Any, at: At) -> Mapping[str, Any]:
    program = _obj(x, at, "values", "inputs", "outputs", "kernels", "steps")
    values = _list(program["values"], at["values"])
    steps = _list(program["steps"], at["steps"])
    runtime = _runtime_symbols(steps, values, at["steps"])
    for i, v in enumerate(values):
        _value(v, i, at["values"][i], runtime)
    for i, v in enumerate(values):
        if v["kind"] == "view":
            _view(v, values, at["values"][i])
    for key in ("inputs", "outputs"):
        seen: set[str] = set()
        for i, entry in enumerate(_list(program[key], at[key])):
            where = at[key][i]
            entry = _obj(entry, where, "name", "value")
            name = _str(entry["name"], where["name"])
            if name in seen:
                where["name"].fail(f"{key[:-1]} {name!r} is listed twice")
            seen.add(name)
            vid = _vid(entry["value"], values, where["value"])
            if key == "inputs" and values[vid]["kind"] not in ("input", "host"):
                where["value"].fail(f"input {name!r} is value {vid}, {_a(values[vid]['kind'])} value, not an input")
    params: dict[str, list[Mapping[str, Any]]] = {}
    for i, k in enumerate(_list(program["kernels"], at["kernels"])):
        where = at["kernels"][i]
        k = _obj(k, where, "name", "params")
        name = _str(k["name"], where["name"])
        if name in params:
            where["name"].fail(f"kernel {name!r} is listed twice")
        params[name] = [_param(p, where["params"][j]) for j, p in enumerate(_list(k["params"], where["params"]))]
    bound: set[str] = set()  # the run-time symbols bound by the steps before
    for t, s in enumerate(steps):
        where = at["steps"][t]
        s = _obj(s, where, "kind", "ops")
        _ints(s["ops"], where["ops"], 0, len(values), "op index")
        reads = [_vid(v, values, where["reads"][j]) for j, v in enumerate(_list(s.get("reads", []), where["reads"]))]
        writes = [_vid(v, values, where["writes"][j])
                  for j, v in enumerate(_list(s.get("writes", []), where["writes"]))]
        if s["kind"] == "launch":
            _launch(s, params, values, reads, writes, where, bound)
        elif s["kind"] == "host":
            _str(s.get("reason", ""), where["reason"])
        elif s["kind"] == "size":
            if len(s["ops"]) != 1 or not s.get("binds") or writes:
                where.fail("a size step has one op, binds run-time symbols and writes nothing")
            if s.get("from", "data") not in ("data", "shapes"):
                where["from"].fail(f"a size step's sizes come from 'data' or 'shapes', not {s['from']!r}")
        elif s["kind"] in ("branch", "yield"):
            _branch(steps, t, s, reads, writes, where)
        else:
            where["kind"].fail(f"step kind {s['kind']!r} is not 'launch', 'host', 'size', 'branch' or 'yield'")
        if "binds" in s and s["kind"] == "launch":
            where["binds"].fail("a launch step binds no symbols (host and size steps do)")
        for j, (sym, vid, _) in enumerate(s.get("binds", ())):
            if s["kind"] == "host" and vid not in writes:
                where["binds"][j].fail(f"{sym} is bound from value {vid}, which the step does not write")
            bound.add(sym)
        for j, vid in enumerate(writes):
            root = values[_root(values, vid)]
            allowed = ("activation", "dynamic") if s["kind"] == "launch" else ("activation", "dynamic", "host")
            if root["kind"] not in allowed:
                where["writes"][j].fail(f"the step writes value {vid} ({values[vid]['name']}), which is "
                                        f"{'a view of ' if root is not values[vid] else ''}{_a(root['kind'])} value")
    return program


def _branch(steps: list[Any], t: int, s: Mapping[str, Any], reads: list[int], writes: list[int], where: At) -> None:
    """A branch step and the two yields that end its branches, as the lowerer lays them out:
    [branch, then..., yield (next: past the else yield), else..., yield (next: the step after)].
    Every jump goes forward, so a forged program cannot loop."""
    if len(s["ops"]) != 1:
        where["ops"].fail(f"a {s['kind']} step names one op (an ember.if)")
    if s["kind"] == "yield":
        if len(reads) != len(writes):
            where.fail(f"a yield step writes as many values as it reads, not {len(writes)} for {len(reads)}")
        _int(s.get("next"), where["next"], t + 1, len(steps), "step index")
        return
    if len(reads) != 1 or writes:
        where.fail("a branch step reads one value (the condition) and writes nothing")
    else_at = _int(s.get("else_at"), where["else_at"], t + 2, len(steps) - 1, "step index")

    def ends_branch(i: int) -> Mapping[str, Any] | None:
        other = steps[i]
        return other if isinstance(other, dict) and other.get("kind") == "yield" and other.get("ops") == s["ops"] \
            else None

    then_yield = ends_branch(else_at - 1)
    if then_yield is None:
        where["else_at"].fail(f"the then branch (steps {t + 1} to {else_at - 1}) does not end in a yield of op "
                              f"{s['ops'][0]}")
    end = _int(then_yield.get("next"), where["else_at"], else_at + 1, len(steps), "step index")
    else_yield = ends_branch(end - 1)
    if else_yield is None or else_yield.get("next") != end:
        where["else_at"].fail(f"the else branch (steps {else_at} to {end - 1}) does not end in a yield of op "
                              f"{s['ops'][0]} that goes on at step {end}")


def _runtime_symbols(steps: list[Any], values: list[Any], at: At) -> set[str]:
    """The symbols the steps bind at run time (`binds`: [symbol, value id, axis]), each once (the two
    yields of one ember.if bind the same ones: one of them runs)."""
    out: set[str] = set()
    yields: dict[str, list[Any]] = {}  # symbol -> the ops of the yields that bind it
    for t, s in enumerate(steps):
        if not isinstance(s, dict) or "binds" not in s:
            continue
        where = at[t]["binds"]
        for j, b in enumerate(_list(s["binds"], where)):
            sym, vid, axis = _list(b, where[j], 3)
            if not isinstance(sym, str) or not sym.isidentifier():
                where[j][0].fail(f"a run-time symbol is an identifier, not {_kind(sym)}")
            if s.get("kind") == "yield":
                yields.setdefault(sym, []).append(s.get("ops"))
            seen = yields.get(sym, [])
            if sym in out and not (len(seen) == 2 and seen[0] == seen[1] and s.get("kind") == "yield"):
                where[j][0].fail(f"run-time symbol {sym} is bound twice")
            vid = _vid(vid, values, where[j][1])
            v = values[vid] if isinstance(values[vid], dict) else {}
            shape = v.get("shape") if isinstance(v, dict) else None
            _int(axis, where[j][2], 0, len(shape) - 1 if isinstance(shape, list) and shape else -1, "axis")
            if v.get("kind") != "dynamic" or shape[axis] != sym:
                where[j].fail(f"value {vid} is not a value sized by {sym} on axis {axis} (its kind "
                              f"{v.get('kind')!r}, shape {shape})")
            out.add(sym)
    return out


def _size(x: Any, at: At, lo: int, hi: int, what: str, symbols: set[str] | None) -> None:
    """An integer in lo..hi, or, where `symbols` (run-time symbols) are allowed, the text of a
    shape expression over them (checked again, as an integer, when the program runs)."""
    if not isinstance(x, str) or symbols is None:
        _int(x, at, lo, hi, what)
        return
    from ember.ir.program import parse_expr
    try:
        d = parse_expr(x)
    except EmberError as err:
        at.fail(f"{what}: {str(err).splitlines()[0]}")
    from ember.ir.dims import free_symbols
    unknown = sorted(free_symbols(d) - symbols)
    if unknown:
        at.fail(f"{what} {x!r} names {', '.join(unknown)}, which no step before binds")


def _value(v: Any, i: int, at: At, runtime: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    v = _obj(v, at, "id", "name", "dtype", "shape", "kind", "nbytes")
    if v["id"] != i:
        at["id"].fail(f"value {i} has id {v['id']!r}: ids number the values in order")
    _str(v["name"], at["name"])
    kind = _str(v["kind"], at["kind"])
    if kind not in VALUE_KINDS:
        at["kind"].fail(f"kind {kind!r} is not one of {', '.join(VALUE_KINDS)}")
    sized = set(runtime) if kind in ("dynamic", "view") else None  # sized at run time
    _size(v["nbytes"], at["nbytes"], 0, MAX_BYTES, "byte size", sized)
    for j, d in enumerate(_list(v["shape"], at["shape"])):
        _size(d, at["shape"][j], 0, MAX_ELEMENTS, "dim", sized)
    shape = v["shape"]
    if kind == "host":  # lives on the host, with whatever type and size the op gives it
        _str(v["dtype"], at["dtype"])
        return
    dtype = _str(v["dtype"], at["dtype"])
    if dtype not in DTYPES or (kind == "dynamic" and dtype == "str"):
        at["dtype"].fail(f"element type {dtype!r} is not an Ember element type of a {kind} value")
    if kind == "view":
        _int(v.get("alias"), at["alias"], 0, (1 << 63) - 1, "alias")
    if any(isinstance(d, str) for d in shape) or isinstance(v["nbytes"], str):
        return  # its byte size is checked when the program runs
    size = _sized(nbytes, at["shape"], shape, DTYPES[dtype].itemsize, f"value {i} ({v['name']})")
    if size != v["nbytes"]:
        at["nbytes"].fail(f"{v['nbytes']} bytes for {dtype}{shape}, which has {size}")
    if kind in ("weight", "const"):
        _str(v.get("weight"), at["weight"])


def _view(v: Mapping[str, Any], values: list[Any], at: At) -> None:
    alias = v["alias"]
    if alias >= len(values) or alias == v["id"]:
        at["alias"].fail(f"value {v['id']} is a view of value {alias}, which is not another value of the program "
                         f"(0..{len(values) - 1})")
    source = values[alias]
    if source["kind"] != "dynamic" and any(isinstance(x, str) for x in [*v["shape"], v["nbytes"]]):
        at.fail(f"value {v['id']} is sized at run time, but its source, value {alias}, is not")
    if source["kind"] in ("view", "host"):
        at["alias"].fail(f"value {v['id']} is a view of value {alias}, {_a(source['kind'])} value; a view reads the "
                         "buffer of an input, weight, constant or activation")
    if v.get("offset") is not None:
        _window(v, source, at)
        return
    if _other_size(source["nbytes"], v["nbytes"]) or source["dtype"] != v["dtype"]:
        at["alias"].fail(f"value {v['id']} ({v['dtype']}, {v['nbytes']} bytes) is a view of value {alias} "
                         f"({source['dtype']}, {source['nbytes']} bytes): a view has its source's bytes")


def _window(v: Mapping[str, Any], source: Mapping[str, Any], at: At) -> None:
    """A window (a view with an offset) reads a contiguous part of an activation's buffer."""
    _size(v["offset"], at["offset"], 0, MAX_BYTES, "window offset", None)
    if source["kind"] != "activation":
        at["alias"].fail(f"value {v['id']} is a window of value {v['alias']}, {_a(source['kind'])} value; a window "
                         "reads an activation's buffer")
    if source["dtype"] != v["dtype"]:
        at["alias"].fail(f"value {v['id']} ({v['dtype']}) is a window of value {v['alias']} ({source['dtype']}): "
                         "a window has its source's element type")
    sizes = (v["offset"], v["nbytes"], source["nbytes"])
    if all(isinstance(x, int) for x in sizes) and sizes[0] + sizes[1] > sizes[2]:
        at["offset"].fail(f"value {v['id']}: a window of {sizes[1]} bytes at byte {sizes[0]} runs past the "
                          f"{sizes[2]} bytes of value {v['alias']}")


def _root(values: Sequence[Mapping[str, Any]], vid: int) -> int:
    """The value whose buffer `vid` reads, in the JSON (views checked to point at a non-view)."""
    v = values[vid]
    return int(v["alias"]) if v["kind"] == "view" and v.get("alias") is not None else vid


def _other_size(a: Any, b: Any) -> bool:
    """Whether two byte sizes differ: ints, or expressions over run-time symbols (canonical, so
    equal expressions print alike); an int against an expression is checked as the program runs."""
    if isinstance(a, str) and isinstance(b, str):
        from ember.ir.program import parse_expr
        return parse_expr(a) != parse_expr(b)
    return isinstance(a, int) and isinstance(b, int) and a != b


def _vid(x: Any, values: Sequence[Any], at: At) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < len(values):
        at.fail(f"value {x!r} is not a value of the program (0..{len(values) - 1})")
    return x


def _param(p: Any, at: At) -> Mapping[str, Any]:
    p = _obj(p, at, "name", "kind")
    _str(p["name"], at["name"])
    if p["kind"] not in PARAM_KINDS:
        at["kind"].fail(f"parameter kind {p['kind']!r} is not one of {', '.join(PARAM_KINDS)}")
    _str(p.get("role", "in"), at["role"])
    return p


def _launch(s: Mapping[str, Any], params: Mapping[str, list[Mapping[str, Any]]], values: Sequence[Any],
            reads: list[int], writes: list[int], at: At, bound: set[str] | None = None) -> None:
    """A launch step; with `bound` (the run-time symbols bound before it), sizes may be
    expressions over those, and the step may carry run-time guards."""
    _obj(s, at, "kernel", "grid", "block", "args")
    kernel = _str(s["kernel"], at["kernel"])
    if kernel not in params:
        at["kernel"].fail(f"kernel {kernel!r} is not among the program's kernels")
    for d, (g, limit) in enumerate(zip(_list(s["grid"], at["grid"], 3), GRID_LIMITS)):
        _size(g, at["grid"][d], 1, limit, "grid dim", bound)
    block = _list(s["block"], at["block"], 3)
    for d, b in enumerate(block):
        _size(b, at["block"][d], 1, MAX_BLOCK, "block dim", bound)
    if all(isinstance(b, int) for b in block) and math.prod(block) > MAX_BLOCK:
        at["block"].fail(f"{block} is {math.prod(block)} threads a block, more than {MAX_BLOCK}")
    _size(s.get("shared", 0), at["shared"], 0, MAX_SHARED, "shared memory bytes", bound)
    for j, g in enumerate(_list(s.get("guards", []), at["guards"])):
        lhs, op, rhs, origin = _list(g, at["guards"][j], 4)
        if op not in ("==", "!=", "<", "<=", ">", ">="):
            at["guards"][j].fail(f"a run-time guard is [lhs, comparison, rhs, origin] over run-time symbols, not {g!r}")
        _size(lhs, at["guards"][j][0], *I64, "guard side", bound)
        _size(rhs, at["guards"][j][2], *I64, "guard side", bound)
        _str(origin, at["guards"][j][3])
    args = _list(s["args"], at["args"])
    ps = params[kernel]
    if len(args) != len(ps):
        at["args"].fail(f"{len(args)} arguments for the {len(ps)} parameters of {kernel}")
    listed = set(reads) | set(writes)
    for a, (p, arg) in enumerate(zip(ps, args)):
        where = at["args"][a]
        arg = _obj(arg, where)
        if len(arg) != 1 or next(iter(arg)) not in ARG_PARAM:
            where.fail(f"expected one of {', '.join(ARG_PARAM)}, got keys {sorted(arg)}")
        (kind, x), = arg.items()
        if ARG_PARAM[kind] != p["kind"]:
            where.fail(f"a {kind} argument for parameter {p['name']!r} of kind {p['kind']}")
        if kind == "value":
            vid = _vid(x, values, where["value"])
            root = values[_root(values, vid)]
            if root["kind"] == "host" or root["dtype"] == "str":  # (dynamic values have device buffers)
                where["value"].fail(f"value {vid} ({values[vid]['name']}) lives on the host; a kernel cannot read it")
            if vid not in listed:
                where["value"].fail(f"value {vid} is an argument but not among the step's reads and writes")
            if p.get("role") == "out" and vid not in writes:
                where["value"].fail(f"value {vid} is the output {p['name']!r} but not among the step's writes")
        elif kind == "scratch":
            _size(x, where["scratch"], 0, MAX_BYTES, "scratch bytes", bound)
        elif kind == "meta":
            for j, m in enumerate(_list(x, where["meta"])):
                _size(m, where["meta"][j], *I64, "metadata", bound)
        elif kind == "i64":
            _size(x, where["i64"], *I64, "integer", bound)
        elif kind == "i32":
            _size(x, where["i32"], *I32, "integer", bound)
        elif kind == "tensormap":
            _tensormap(x, values, reads, where["tensormap"], bound)
        elif isinstance(x, bool) or not isinstance(x, (int, float)):
            where["f32"].fail(f"expected a number, got {_kind(x)}")


def _tensormap(x: Any, values: Any, reads: Sequence[int], at: At, bound: Any) -> None:
    """A TMA descriptor argument: a 16-bit float value the step reads, a rank of 1 to 5, positive
    dims, byte strides that are multiples of 16 below 2^40, boxes of 1 to 256 (ir/program.py)."""
    items = _list(x, at)
    if len(items) < 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items[:3]):
        at.fail("expected [value, element, rank, sizes...]")
    try:
        vid, rank, element, dims, strides, box = tensormap_layout(items)
    except ShapeError as err:
        at.fail(str(err))
    _vid(vid, values, at[0])
    if vid not in reads:
        at[0].fail(f"value {vid} is described by a tensor map but not among the step's reads")
    if values[vid]["dtype"] != element:
        at[0].fail(f"value {vid} is {values[vid]['dtype']}, the tensor map says {element}")
    for j, d in enumerate(dims):
        _size(d, at[3 + j], 1, MAX_ELEMENTS, "tensor map dim", bound)
    for j, st in enumerate(strides):
        _size(st, at[3 + rank + j], 16, 2**40 - 1, "tensor map stride", bound)
        if isinstance(st, int) and st % 16:
            at[3 + rank + j].fail(f"tensor map stride {st} is not a multiple of 16 bytes")
    for j, b in enumerate(box):
        if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 256:
            at[2 + 2 * rank + j].fail(f"tensor map box {b!r} is not an integer from 1 to 256")


def _symbols(x: Any, at: At) -> None:
    for name, value in _obj(x, at).items():
        _int(value, at[name], 0, MAX_ELEMENTS, "symbol value")


# -- plan.memory -------------------------------------------------------------------------------------
def _memory(x: Any, program: Program, extra_reads: Mapping[int, Sequence[int]], at: At) -> MemoryPlan:
    m = _obj(x, at, "arena_bytes", "peak_live_bytes", "sum_bytes", "buffers")
    alignment = _int(m.get("alignment", 256), at["alignment"], 1, MAX_ALIGNMENT, "alignment")
    if alignment & (alignment - 1) or alignment < 256:
        at["alignment"].fail(f"alignment {alignment} is not a power of two of at least 256")
    arena = _int(m["arena_bytes"], at["arena_bytes"], 0, MAX_BYTES, "arena size")
    for key in ("peak_live_bytes", "sum_bytes"):
        _int(m[key], at[key], 0, MAX_BYTES, key.replace("_", " "))
    _str(m.get("order", ""), at["order"])
    values, steps = program.values, program.steps
    listed: dict[str, tuple[int, int, int, int]] = {}
    for i, b in enumerate(_list(m["buffers"], at["buffers"])):
        where = at["buffers"][i]
        key, offset, size, start, end = _list(b, where, 5)
        _buffer_key(key, values, steps, where[0])
        if key in listed:
            where[0].fail(f"buffer {key} is listed twice")
        offset = _int(offset, where[1], 0, MAX_BYTES, "offset")
        size = _int(size, where[2], 0, MAX_BYTES, "size")
        start = _int(start, where[3], -1, len(steps), "first step")
        end = _int(end, where[4], start, len(steps), "last step")
        if offset % alignment:
            where[1].fail(f"buffer {key}: offset {offset} is not a multiple of the alignment {alignment}")
        _sized(check_range, where, offset, size, arena, f"buffer {key}")
        listed[key] = (offset, size, start, end)
    extras = _list(m.get("extra_reads", []), at["extra_reads"])
    given_extra: dict[int, list[int]] = {}
    for i, e in enumerate(extras):
        t, vids = _list(e, at["extra_reads"][i], 2)
        given_extra[_int(t, at["extra_reads"][i][0], 0, len(steps) - 1, "step")] = \
            [_vid(v, values, at["extra_reads"][i][1][j]) for j, v in enumerate(_list(vids, at["extra_reads"][i][1]))]
    want_extra = {int(t): sorted({int(v) for v in vids}) for t, vids in extra_reads.items() if vids}
    if given_extra != want_extra:
        at["extra_reads"].fail(f"{_short(given_extra)} are not the reads the IR's ops add to their kernels' "
                               f"({_short(want_extra)})")
    needed = {b.key: b for b in lifetimes(program, extra_reads)}
    for key, b in needed.items():
        if key not in listed:
            at["buffers"].fail(f"no buffer for {_buffer_name(key, values)}, which the steps use at "
                               f"{b.start}..{b.end}")
        offset, size, start, end = listed[key]
        if (size, start, end) != (b.nbytes, b.start, b.end):
            at["buffers"].fail(f"buffer {key}: {size} bytes live at steps {start}..{end}; the steps use "
                               f"{b.nbytes} bytes at {b.start}..{b.end}")
    unused = sorted(set(listed) - set(needed))
    if unused:
        at["buffers"].fail(f"buffer {unused[0]} is not used by any step")
    top = max((offset + align(size, alignment) for offset, size, _, _ in listed.values()), default=0)
    if arena != top:
        at["arena_bytes"].fail(f"the arena is {arena} bytes; its buffers end at {top}")
    scratch = _scratch(m.get("scratch", []), program, listed, at["scratch"])
    plan = MemoryPlan.from_json({**m, "scratch": scratch})
    overlaps = plan.check()
    if overlaps:
        at["buffers"].fail(f"{overlaps[0]}{f' (and {len(overlaps) - 1} more)' if len(overlaps) > 1 else ''}")
    return plan


def _buffer_key(key: Any, values: Sequence[ValueSpec], steps: Sequence[Step], at: At) -> None:
    text = _str(key, at)
    if text.startswith("v") and text[1:].isdigit():
        vid = int(text[1:])
        if vid < len(values) and values[vid].in_arena:
            return
        at.fail(f"buffer {text}: value {vid} is not an input or activation of the program")
    if text.startswith("s") and "." in text:
        first, _, j = text[1:].partition(".")
        if first.isdigit() and j.isdigit() and int(first) < len(steps):
            return
    at.fail(f"buffer key {text!r} is neither v<value> nor s<step>.<slot>")


def _buffer_name(key: str, values: Sequence[ValueSpec]) -> str:
    if key.startswith("v"):
        v = values[int(key[1:])]
        return f"value {key[1:]} ({v.name}, {_a(v.kind)})"
    return f"scratch buffer {key}"


def _scratch(x: Any, program: Program, listed: Mapping[str, tuple[int, int, int, int]],
             at: At) -> list[list[int]]:
    """Each scratch argument's offset: its op's slot, as large as the argument."""
    steps = program.steps
    given: dict[tuple[int, int], int] = {}
    for i, e in enumerate(_list(x, at)):
        t, a, off = _list(e, at[i], 3)
        given[(_int(t, at[i][0], 0, len(steps) - 1, "step"), _int(a, at[i][1], 0, 1 << 20, "argument"))] = \
            _int(off, at[i][2], 0, MAX_BYTES, "offset")
    want: dict[tuple[int, int], tuple[int, str]] = {}
    for first, last in op_groups(steps):
        for t in range(first, last + 1):
            j = 0
            for a, arg in enumerate(steps[t].args):  # type: ignore[union-attr]
                if arg.kind == "scratch" and not isinstance(arg.value, int):
                    j += 1  # sized at run time: allocated per run, outside the arena
                elif arg.kind == "scratch":
                    want[(t, a)] = (int(arg.value), f"s{first}.{j}")
                    j += 1
    for (t, a), (size, key) in want.items():
        if (t, a) not in given:
            at.fail(f"no offset for the scratch argument {a} of step {t}")
        offset = given[(t, a)]
        if key in listed:
            if offset != listed[key][0]:
                at.fail(f"step {t} argument {a}: offset {offset}, but its buffer {key} is at {listed[key][0]}")
        elif size or offset:
            at.fail(f"step {t} argument {a}: {size} scratch bytes at {offset} with no buffer {key}")
    extra = sorted(set(given) - set(want))
    if extra:
        at.fail(f"step {extra[0][0]} argument {extra[0][1]} is not a scratch argument")
    return [[t, a, off] for (t, a), off in sorted(given.items())]


def _short(d: Mapping[int, list[int]]) -> str:
    text = str(dict(sorted(d.items())))
    return text if len(text) < 80 else text[:77] + "..."


# -- kernels, weights.index, io ----------------------------------------------------------------------
def _kernels(kernels: Mapping[str, Any], program: Mapping[str, Any], binaries: Any, at: At,
             more: set[str] | None = None) -> None:
    """Every kernel of the plan with its builds, each inside the 'binaries' section and of its
    kind: a cubin is an ELF image, PTX is text with a .version (what a damaged build cache
    once put in an engine: empty cubins, which loaded and failed only on the GPU)."""
    binaries_size = len(binaries)
    wanted = {k["name"] for k in program["kernels"]}
    missing = sorted(wanted - set(kernels))
    wanted |= more or set()  # the kernels only other shapes' programs launch (section 'profiles')
    if missing:
        more = f" ({len(missing)} kernels missing)" if len(missing) > 1 else ""
        at.fail(f"kernel {missing[0]} of the plan has no binaries{more}")
    extra = sorted(set(kernels) - wanted)
    if extra:
        at.fail(f"kernel {extra[0]} is not a kernel of the plan")
    for name, k in kernels.items():
        where = at[name]
        k = _obj(k, where, "ops", "source", "cubins", "ptx", "ptx_arch")
        for i, op in enumerate(_list(k["ops"], where["ops"])):
            _str(op, where["ops"][i])
        _str(k["source"], where["source"])
        ptx_arch = _str(k["ptx_arch"], where["ptx_arch"])
        for arch, place in _obj(k["cubins"], where["cubins"]).items():
            _arch(arch, where["cubins"][arch])
            _range(place, binaries_size, where["cubins"][arch], f"the {arch} cubin of {name}")
            offset, size = place
            if size < 64 or bytes(binaries[offset:offset + 4]) != b"\x7fELF":
                where["cubins"][arch].fail(f"the {arch} cubin of {name} is not an ELF image ({size} bytes)")
        ptx_size = _range(k["ptx"], binaries_size, where["ptx"], f"the PTX of {name}")
        if ptx_size and b".version" not in bytes(binaries[k["ptx"][0]:k["ptx"][0] + min(ptx_size, 4096)]):
            where["ptx"].fail(f"the PTX of {name} is not PTX text (no .version directive)")
        if ptx_arch:
            _arch(ptx_arch, where["ptx_arch"])
        if not k["cubins"] and not (ptx_size and ptx_arch):
            where.fail(f"kernel {name} has neither a cubin nor PTX")


def _range(place: Any, limit: int, at: At, what: str) -> int:
    offset, size = _list(place, at, 2)
    _int(offset, at[0], 0, MAX_BYTES, "offset")
    _int(size, at[1], 0, MAX_BYTES, "size")
    _sized(check_range, at, offset, size, limit, f"{what} in the 'binaries' section")
    return size


def _weights(index: Mapping[str, Any], program: Mapping[str, Any], weights_size: int, weight_data: Any,
             at: At) -> None:
    for name, w in index.items():
        where = at[name]
        w = _obj(w, where, "dtype", "shape", "offset", "nbytes")
        dtype = _str(w["dtype"], where["dtype"])
        if dtype not in DTYPES:
            where["dtype"].fail(f"element type {dtype!r} is not an Ember element type")
        shape = _ints(w["shape"], where["shape"], 0, MAX_ELEMENTS, "dim")
        offset = _int(w["offset"], where["offset"], 0, MAX_BYTES, "offset")
        size = _int(w["nbytes"], where["nbytes"], 0, MAX_BYTES, "byte size")
        if offset % WEIGHT_ALIGN:
            where["offset"].fail(f"offset {offset} is not a multiple of {WEIGHT_ALIGN}")
        _sized(check_range, where, offset, size, weights_size, f"weight {name!r} in the 'weights' section")
        encoding = w.get("encoding", "raw")
        count = _sized(nbytes, where["shape"], shape, 1, f"weight {name!r}")
        if encoding == "json":
            if dtype != "str":
                where["encoding"].fail(f"a {dtype} weight stored as JSON (only str weights are)")
            items = weight_data(name, offset, size)
            if not isinstance(items, list) or len(items) != count or not all(isinstance(s, str) for s in items):
                where.fail(f"expected a JSON list of {count} strings for str{shape}")
        elif encoding == "raw":
            if dtype == "str":
                where["encoding"].fail("a str weight stored raw (str weights are stored as JSON)")
            want = _sized(nbytes, where["shape"], shape, DTYPES[dtype].itemsize, f"weight {name!r}")
            if size != want:
                where["nbytes"].fail(f"{size} bytes for {dtype}{shape}, which has {want}")
        else:
            where["encoding"].fail(f"encoding {encoding!r} is neither 'raw' nor 'json'")
    for i, v in enumerate(program["values"]):
        if v["kind"] not in ("weight", "const"):
            continue
        name = v["weight"]
        if name not in index:
            At("plan", "program")["values"][i]["weight"].fail(f"weight {name!r} is not in the weights index")
        w = index[name]
        if (w["dtype"], w["shape"]) != (v["dtype"], v["shape"]):
            At("plan", "program")["values"][i].fail(f"value {i} is {v['dtype']}{v['shape']}, its weight {name!r} "
                                                     f"{w['dtype']}{w['shape']}")


def _io(io: Mapping[str, Any], program: Mapping[str, Any], at: At) -> None:
    values = program["values"]
    for key in ("inputs", "outputs"):
        specs = _list(io[key], at[key])
        declared = program[key]
        if len(specs) != len(declared):
            at[key].fail(f"{len(specs)} {key}, the program has {len(declared)}")
        for i, (spec, entry) in enumerate(zip(specs, declared)):
            where = at[key][i]
            spec = _obj(spec, where, "name", "dtype", "shape", "dims", "value")
            if (spec["name"], spec["value"]) != (entry["name"], entry["value"]):
                where.fail(f"{spec['name']!r} (value {spec['value']!r}) is {key[:-1]} {i} of the program, which "
                           f"is {entry['name']!r} (value {entry['value']})")
            _str(spec["dtype"], where["dtype"])
            dims = _list(spec["dims"], where["dims"])
            for j, d in enumerate(dims):
                _str(d, where["dims"][j])
            shape = _list(spec["shape"], where["shape"])
            for j, d in enumerate(shape):
                if d is not None:
                    _int(d, where["shape"][j], 0, MAX_ELEMENTS, "dim")
            v = values[spec["value"]]
            if v["kind"] == "host" or any(isinstance(d, str) for d in v["shape"]):
                continue
            if spec["dtype"] != v["dtype"] or shape != v["shape"]:
                where.fail(f"{spec['name']!r} is {spec['dtype']}{shape}, its value {spec['value']} "
                           f"{v['dtype']}{v['shape']}")


# -- the IR against the program ----------------------------------------------------------------------
def _ir(module: Any, program: Program, symbols: Mapping[str, int], weights: Mapping[str, Any],
        at: At) -> tuple[list[Any], dict[Any, int]]:
    from ember.ir.dims import evaluate
    from ember.ir.types import TensorType, dtype_of
    if not module.functions:
        at.fail("the module has no functions")
    fn = module.main
    values = program.values
    ops, ids = step_tables(fn, program.steps)
    if len(ids) != len(values):
        at.fail(f"the entry function @{fn.name} has {len(ids)} values, the program {len(values)}: the sections do "
                "not belong together")
    if [len(program.inputs), len(program.outputs)] != [len(fn.inputs), len(fn.outputs)]:
        at.fail(f"@{fn.name} has {len(fn.inputs)} inputs and {len(fn.outputs)} outputs, the program "
                f"{len(program.inputs)} and {len(program.outputs)}")
    for i, (port, v) in enumerate(zip(program.inputs, fn.inputs)):
        if ids[v] != port.value:
            at.fail(f"input {i} of @{fn.name} is value {ids[v]}, the program says {port.value}")
    for i, (port, v) in enumerate(zip(program.outputs, fn.outputs)):
        if ids.get(v) != port.value:
            at.fail(f"output {i} of @{fn.name} is value {ids.get(v)}, the program says {port.value}")
    for name, w in module.weights.items():
        if name in weights:
            arr = weights[name]
            if not w.type.is_static or dtype_of(arr) != w.type.dtype or tuple(arr.shape) != w.type.shape:
                at.fail(f"weight {name!r} is declared {w.type}, stored as {dtype_of(arr)}{list(arr.shape)}")
    for v, vid in ids.items():
        info = values[vid]
        t = v.type
        if info.kind == "host" or not isinstance(t, TensorType):
            if info.kind != "host":
                at.fail(f"value {vid} (%{v.name}) is {t}, not a tensor, but the program keeps it as {_a(info.kind)}")
            continue
        shape = None
        if t.shape is not None:
            try:
                shape = [evaluate(d, symbols) for d in t.shape]
            except (EmberError, KeyError):
                shape = None
        if not info.is_bound:
            shape = None  # sized at run time
        if t.dtype.name != info.dtype or (shape is not None and tuple(shape) != info.shape):
            at.fail(f"value {vid} (%{v.name}) is {t}, the program has {info.dtype}{list(info.shape)}")
    steps = program.steps
    for t, s in enumerate(steps):
        for j, index in enumerate(s.ops):
            if index >= len(ops):
                At("plan", "program")["steps"][t]["ops"][j].fail(
                    f"op {index} is not an op of @{fn.name} (it has {len(ops)})")
    for t, s in enumerate(steps):  # a host or size step lists what its ops read (the plan keeps those alive)
        if isinstance(s, SizeStep):
            op = ops[s.ops[0]]
            results = {ids[r] for r in op.results}
            if getattr(type(op), "run_time_sizes", None) is None and s.source != "shapes":
                At("plan", "program")["steps"][t].fail(f"op {s.ops[0]} ({op.name}) has no rule for its sizes at "
                                                       "run time; a size step cannot run it")
            for j, b in enumerate(s.binds):
                if b.value not in results:
                    At("plan", "program")["steps"][t]["binds"][j].fail(
                        f"{b.symbol} is bound from value {b.value}, which is not a result of op {s.ops[0]}")
        if isinstance(s, (BranchStep, YieldStep)):
            _branch_ir(s, ops, ids, At("plan", "program")["steps"][t])
            continue
        if isinstance(s, LaunchStep) or isinstance(s, SizeStep) and s.source == "shapes":  # (which reads no value)
            continue
        listed = set(s.reads)
        for index in s.ops:
            needs = getattr(ops[index], "size_reads", ops[index].reads)() if isinstance(s, SizeStep) \
                else ops[index].reads()
            missing = [ids[v] for v in needs if v in ids and ids[v] not in listed]
            if missing:
                At("plan", "program")["steps"][t].fail(
                    f"op {index} ({ops[index].name}) reads value {missing[0]}, which the step does not list")
    for first, last in _groups(steps):
        written = {w for t in range(first, last + 1) for w in steps[t].writes}
        for index in steps[first].ops:
            for r in ops[index].results:
                info = values[ids[r]]
                if (info.kind == "dynamic" or info.kind in ARENA_KINDS and info.nbytes) and ids[r] not in written:
                    At("plan", "program")["steps"][first].fail(
                        f"op {index} ({ops[index].name}) computes value {ids[r]}, which the step does not write")
    return ops, ids


def _branch_ir(s: BranchStep | YieldStep, ops: Sequence[Any], ids: Mapping[Any, int], at: At) -> None:
    """A branch or yield step against its ember.if: the condition it reads, the results it
    writes, the values a branch yields."""
    op = ops[s.ops[0]]
    if op.name != "ember.if":
        at["ops"][0].fail(f"op {s.ops[0]} is {op.name}; a {s.kind} step runs an ember.if")
    if isinstance(s, BranchStep):
        if list(s.reads) != [ids.get(op.operands[0])]:
            at["reads"].fail(f"the branch reads value {list(s.reads)}, its condition is value {ids.get(op.operands[0])}")
        return
    results = [ids.get(r) for r in op.results]
    yielded = [[ids.get(v) for v in block.outputs] for block in op.regions]
    if list(s.writes) != results or list(s.reads) not in yielded:
        at.fail(f"the yield writes values {list(s.writes)} from {list(s.reads)}; op {s.ops[0]}'s results are "
                f"{results}, its branches yield {yielded[0]} and {yielded[1]}")


def _groups(steps: Sequence[Step]) -> Iterable[tuple[int, int]]:
    """Launch groups (consecutive launches of one op set) and host steps, as step ranges."""
    groups = {first: last for first, last in op_groups(steps)}
    for t, s in enumerate(steps):
        if isinstance(s, HostStep):
            yield t, t
        elif t in groups:
            yield t, groups[t]


__all__ = ["check_engine", "check_bound", "check_memory", "check_ir", "check_launch", "profile_kernels"]
