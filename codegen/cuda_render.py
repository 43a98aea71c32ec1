"""The one place that turns kernel descriptions into CUDA C.

Element types map to C storage types and compute types (f16, bf16 and fp8 compute
in float, as the interpreter does); elementwise ops map to C expressions through
one table, `C_EXPR`; `render_body` writes a region's ops as straight-line C, one
line per op with its source op and location in a comment; kernels are written
with `CWriter` and include the shared prelude (include/ember_prelude.cuh).

Every kernel's `extern "C" __global__` wrapper is written by `entry`, its parameters
declared by `declaration`; `grid_stride_kernel` writes the movement and reduction
kernels around a template call, and `render_spec` the heavy ops' kernels from their
specs (codegen/kernel_spec.py): the epilogue functor and the template call.

The narrow types (`NARROW`: the fnuz fp8 types, e8m0, fp6, fp4 and the sub-byte
integers, one byte per element) have a storage type only in elementwise kernels,
and there only ember.cast reads or writes them (`cast_expression`, through
include/ember_cast.cuh, bit for bit the interpreter's `cast_array`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from ember.codegen.cwriter import CWriter
from ember.codegen.kernel import Kernel, Param
from ember.codegen.kernel_spec import (BroadcastAt, EpilogueSpec, HeavyValue, KernelSpec, MmaTile, Offset, TemplateArg,
                                       Tile, WgmmaTile)
from ember.errors import UnsupportedOpError
from ember.ir.core import Block, Operation, Value
from ember.ir.types import DType, TensorType

STORAGE = {
    "f64": "double", "f32": "float", "f16": "__half", "bf16": "__nv_bfloat16",
    "f8e4m3fn": "__nv_fp8_e4m3", "f8e5m2": "__nv_fp8_e5m2",
    "i64": "long long", "i32": "int", "i16": "short", "i8": "signed char",
    "u64": "unsigned long long", "u32": "unsigned int", "u16": "unsigned short", "u8": "unsigned char",
    "bool": "bool",
}
LOW = {"f16", "bf16", "f8e4m3fn", "f8e5m2"}
NARROW = {
    "f8e4m3fnuz": "ember::f8e4m3fnuz", "f8e5m2fnuz": "ember::f8e5m2fnuz", "f8e8m0": "ember::f8e8m0",
    "f6e2m3": "ember::f6e2m3", "f6e3m2": "ember::f6e3m2", "f4e2m1": "ember::f4e2m1",
    "i4": "ember::i4", "u4": "ember::u4", "i2": "ember::i2", "u2": "ember::u2",
}
SMALL_FLOAT = {  # ember_cast.cuh's format of each fp8/fp6/fp4 type (e8m0 has its own functions)
    "f8e4m3fn": "ember::f8e4m3fn", "f8e5m2": "ember::f8e5m2", "f8e4m3fnuz": "ember::f8e4m3fnuz",
    "f8e5m2fnuz": "ember::f8e5m2fnuz", "f6e2m3": "ember::f6e2m3", "f6e3m2": "ember::f6e3m2",
    "f4e2m1": "ember::f4e2m1",
}
E8M0_ROUND = {"up": "ember::E8M0_UP", "down": "ember::E8M0_DOWN", "nearest": "ember::E8M0_NEAREST"}


def has_ctype(dt: DType) -> bool:
    return dt.name in STORAGE


def ctype(dt: DType) -> str:
    """The C type a tensor of `dt` is stored as."""
    try:
        return STORAGE[dt.name]
    except KeyError:
        raise UnsupportedOpError(f"element type {dt} has no CUDA kernel support yet") from None


def elementwise_ctype(dt: DType) -> str:
    """The C type a tensor of `dt` is stored as in an elementwise kernel: `ctype`, and the narrow types."""
    return NARROW.get(dt.name) or ctype(dt)


def compute_ctype(dt: DType) -> str:
    """The C type values of `dt` are computed in (narrow integers in int, narrow floats in float)."""
    if dt.name in NARROW:
        return "int" if dt.is_int else "float"
    return "float" if dt.name in LOW else ctype(dt)


def literal(value: float | int | bool, dt: DType) -> str:
    """A C literal of `value` in `dt`'s compute type (NaN and infinities included)."""
    c = compute_ctype(dt)
    if dt.kind == "bool":
        return "true" if value else "false"
    if dt.is_int:
        return f"({c})({int(value)}LL)"
    v = float(value)
    if v != v or v in (float("inf"), float("-inf")):
        return special_float(v, c)
    return f"({c}){v!r}" if c == "double" else f"{v!r}f"


def special_float(v: float, c: str) -> str:
    """NaN and the infinities by their bits: NVRTC defines no NAN or INFINITY macros."""
    if c == "double":
        bits = {"nan": "0x7ff8000000000000LL", "inf": "0x7ff0000000000000LL"}
        fn = "__longlong_as_double"
    else:
        bits = {"nan": "0x7fc00000", "inf": "0x7f800000"}
        fn = "__int_as_float"
    if v != v:
        return f"{fn}({bits['nan']})"
    return f"{'-' if v < 0 else ''}{fn}({bits['inf']})"


# -- the elementwise expression table ----------------------------------------------------------------
def _fn(name: str) -> Callable[[str], str]:
    """A float math function: `expf` for float compute, `exp` for double."""
    return lambda c: name if c == "double" else name + "f"


def _math1(name: str) -> Callable[..., str]:
    return lambda op, a, c: f"{_fn(name)(c)}({a[0]})"


def _attr(op: Operation, key: str, c: str) -> str:
    v = float(op.attributes[key])
    return f"({c}){v!r}" if c == "double" else f"{v!r}f"


def _float_only(fn: Callable[..., str]) -> Callable[..., str]:
    def render(op: Operation, a: Sequence[str], c: str) -> str:
        if c not in ("float", "double"):
            raise UnsupportedOpError(f"{op.name} on {c} has no kernel")
        return fn(op, a, c)
    return render


def _div(op: Operation, a: Sequence[str], c: str) -> str:
    return f"({a[0]} / {a[1]})" if c in ("float", "double") else f"ember::div_int<{c}>({a[0]}, {a[1]})"


def _mod(op: Operation, a: Sequence[str], c: str) -> str:
    if c in ("float", "double"):
        return f"{_fn('fmod')(c)}({a[0]}, {a[1]})" if op.attributes["fmod"] else f"ember::floor_mod({a[0]}, {a[1]})"
    if c.startswith("unsigned"):  # no sign to fix (and floor_mod_int's test for one warns on unsigned types)
        return f"({a[1]} ? {a[0]} % {a[1]} : ({c})0)"
    return f"({a[0]} % {a[1]})" if op.attributes["fmod"] else f"ember::floor_mod_int<{c}>({a[0]}, {a[1]})"


def _pow(op: Operation, a: Sequence[str], c: str) -> str:
    if c in ("float", "double"):
        return f"{_fn('pow')(c)}({a[0]}, ({c}){a[1]})"
    return f"ember::ipow<{c}>({a[0]}, ({c}){a[1]})"


def _isinf(op: Operation, a: Sequence[str], c: str) -> str:
    neg, pos = op.attributes["detect_negative"], op.attributes["detect_positive"]
    inf = special_float(float("inf"), c)
    tests = ([f"({a[0]} == -{inf})"] if neg else []) + ([f"({a[0]} == {inf})"] if pos else [])
    return "(" + " || ".join(tests) + ")" if tests else "false"


def _clip(op: Operation, a: Sequence[str], c: str) -> str:
    out = a[0]
    operands = op.operands
    k = 1
    if len(operands) > 1 and operands[1] is not None:
        out = f"ember::max_nan<{c}>({out}, {a[k]})"
        k += 1
    if len(operands) > 2 and operands[2] is not None:
        out = f"ember::min_nan<{c}>({out}, {a[k]})"
    return out


def _shift(op: Operation, a: Sequence[str], c: str) -> str:
    return f"({a[0]} << {a[1]})" if op.attributes["direction"] == "left" else f"({a[0]} >> {a[1]})"


def _quantized(op: Operation, a: Sequence[str], fields: Sequence[tuple[str, str, str]]) -> list[str]:
    """The C arguments of an int8 op's (tensor, scale, zero point) triples (ir/ops/int8.py's
    operand order, QLinear's): an absent zero point is 0."""
    names = iter(a)
    present = {f.name: v is not None for f, v in zip(op.operand_fields, op.operands)}  # type: ignore[attr-defined]
    out = []
    for group in fields:
        for field in group:
            out.append(f"(int){next(names)}" if present.get(field) and not field.endswith("scale") else
                       f"(float){next(names)}" if present.get(field) else "0")
    return out


def _int8_requantize(op: Operation, a: Sequence[str], c: str) -> str:
    x, sx, zx, sy, zy = _quantized(op, a, [("x", "x_scale", "x_zero_point"), ("y_scale", "y_zero_point")])
    return f"ember::int8_requantize(ember::int8_dequantized({x}, {sx}, {zx}), {sy}, {zy})"


def _int8_add(op: Operation, a: Sequence[str], c: str) -> str:
    args = _quantized(op, a, [("a", "a_scale", "a_zero_point"), ("b", "b_scale", "b_zero_point"),
                              ("y_scale", "y_zero_point")])
    relu = "true" if op.attributes.get("relu") else "false"
    return f"ember::int8_add<{relu}>({', '.join(args)})"


C_EXPR: dict[str, Callable[..., str]] = {
    "ember.add": lambda op, a, c: f"({a[0]} + {a[1]})",
    "ember.sub": lambda op, a, c: f"({a[0]} - {a[1]})",
    "ember.mul": lambda op, a, c: f"({a[0]} * {a[1]})",
    "ember.div": _div,
    "ember.mod": _mod,
    "ember.pow": _pow,
    "ember.max": lambda op, a, c: f"ember::max_nan<{c}>({a[0]}, {a[1]})",
    "ember.min": lambda op, a, c: f"ember::min_nan<{c}>({a[0]}, {a[1]})",
    "ember.prelu": lambda op, a, c: f"({a[0]} < ({c})0 ? {a[0]} * {a[1]} : {a[0]})",
    "ember.equal": lambda op, a, c: f"({a[0]} == {a[1]})",
    "ember.less": lambda op, a, c: f"({a[0]} < {a[1]})",
    "ember.less_equal": lambda op, a, c: f"({a[0]} <= {a[1]})",
    "ember.greater": lambda op, a, c: f"({a[0]} > {a[1]})",
    "ember.greater_equal": lambda op, a, c: f"({a[0]} >= {a[1]})",
    "ember.and": lambda op, a, c: f"({a[0]} && {a[1]})",
    "ember.or": lambda op, a, c: f"({a[0]} || {a[1]})",
    "ember.xor": lambda op, a, c: f"({a[0]} != {a[1]})",
    "ember.not": lambda op, a, c: f"(!{a[0]})",
    "ember.bitwise_and": lambda op, a, c: f"({a[0]} & {a[1]})",
    "ember.bitwise_or": lambda op, a, c: f"({a[0]} | {a[1]})",
    "ember.bitwise_xor": lambda op, a, c: f"({a[0]} ^ {a[1]})",
    "ember.bitwise_not": lambda op, a, c: f"(~{a[0]})",
    "ember.bit_shift": _shift,
    "ember.neg": lambda op, a, c: f"(-{a[0]})",
    "ember.abs": lambda op, a, c: f"({a[0]} < ({c})0 ? -{a[0]} : {a[0]})",
    "ember.sign": lambda op, a, c: f"ember::sign<{c}>({a[0]})",
    "ember.relu": lambda op, a, c: f"ember::relu<{c}>({a[0]})",
    "ember.exp": _float_only(_math1("exp")),
    "ember.log": _float_only(_math1("log")),
    "ember.sqrt": _float_only(_math1("sqrt")),
    "ember.rsqrt": _float_only(lambda op, a, c: f"(({c})1 / {_fn('sqrt')(c)}({a[0]}))"),
    "ember.reciprocal": _float_only(lambda op, a, c: f"(({c})1 / {a[0]})"),
    "ember.sin": _float_only(_math1("sin")),
    "ember.cos": _float_only(_math1("cos")),
    "ember.tan": _float_only(_math1("tan")),
    "ember.asin": _float_only(_math1("asin")),
    "ember.acos": _float_only(_math1("acos")),
    "ember.atan": _float_only(_math1("atan")),
    "ember.sinh": _float_only(_math1("sinh")),
    "ember.cosh": _float_only(_math1("cosh")),
    "ember.tanh": _float_only(_math1("tanh")),
    "ember.asinh": _float_only(_math1("asinh")),
    "ember.acosh": _float_only(_math1("acosh")),
    "ember.atanh": _float_only(_math1("atanh")),
    "ember.erf": _float_only(_math1("erf")),
    "ember.floor": _float_only(_math1("floor")),
    "ember.ceil": _float_only(_math1("ceil")),
    "ember.round": _float_only(_math1("rint")),
    "ember.sigmoid": _float_only(lambda op, a, c: f"ember::sigmoid({a[0]})"),
    "ember.softplus": _float_only(lambda op, a, c: f"ember::softplus({a[0]})"),
    "ember.softsign": _float_only(lambda op, a, c: f"({a[0]} / (({c})1 + {_fn('fabs')(c)}({a[0]})))"),
    "ember.silu": _float_only(lambda op, a, c: f"({a[0]} * ember::sigmoid({a[0]}))"),
    "ember.mish": _float_only(lambda op, a, c: f"({a[0]} * {_fn('tanh')(c)}(ember::softplus({a[0]})))"),
    "ember.hardswish": _float_only(lambda op, a, c: f"ember::hardswish({a[0]})"),
    "ember.gelu": _float_only(lambda op, a, c: f"ember::gelu_{'tanh' if op.attributes['approximate'] == 'tanh' else 'erf'}"
                                               f"({a[0]})"),
    "ember.leaky_relu": _float_only(lambda op, a, c: f"({a[0]} < ({c})0 ? {a[0]} * {_attr(op, 'alpha', c)} : {a[0]})"),
    "ember.elu": _float_only(lambda op, a, c: f"({a[0]} < ({c})0 ? {_attr(op, 'alpha', c)} * "
                                              f"{_fn('expm1')(c)}({a[0]}) : {a[0]})"),
    "ember.selu": _float_only(lambda op, a, c: f"({_attr(op, 'gamma', c)} * ({a[0]} > ({c})0 ? {a[0]} : "
                                               f"{_attr(op, 'alpha', c)} * {_fn('expm1')(c)}({a[0]})))"),
    "ember.celu": _float_only(lambda op, a, c: f"({_fn('fmax')(c)}(({c})0, {a[0]}) + {_fn('fmin')(c)}(({c})0, "
                                               f"{_attr(op, 'alpha', c)} * {_fn('expm1')(c)}({a[0]} / "
                                               f"{_attr(op, 'alpha', c)})))"),
    "ember.hard_sigmoid": _float_only(lambda op, a, c: f"{_fn('fmax')(c)}(({c})0, {_fn('fmin')(c)}(({c})1, "
                                                       f"{_attr(op, 'alpha', c)} * {a[0]} + {_attr(op, 'beta', c)}))"),
    "ember.thresholded_relu": _float_only(lambda op, a, c: f"({a[0]} > {_attr(op, 'alpha', c)} ? {a[0]} : ({c})0)"),
    "ember.shrink": lambda op, a, c: (f"({a[0]} < -{_attr(op, 'lambd', 'float')} ? {a[0]} + ({c}){_attr(op, 'bias', 'float')}"
                                      f" : ({a[0]} > {_attr(op, 'lambd', 'float')} ? {a[0]} - "
                                      f"({c}){_attr(op, 'bias', 'float')} : ({c})0))"),
    "ember.isnan": lambda op, a, c: f"ember::is_nan({a[0]})",
    "ember.isinf": _isinf,
    "ember.clip": _clip,
    "ember.where": lambda op, a, c: f"({a[0]} ? {a[1]} : {a[2]})",
    "ember.identity": lambda op, a, c: a[0],
    "ember.int8_requantize": _int8_requantize,
    "ember.int8_add": _int8_add,
}


def expression(op: Operation, args: Sequence[str], compute: str) -> str:
    fn = C_EXPR.get(op.name)
    if fn is None:
        raise UnsupportedOpError(f"{op.name} has no elementwise CUDA form")
    return fn(op, args, compute)


def result_dtype(v: Value) -> DType:
    t = v.type
    if not isinstance(t, TensorType):
        raise UnsupportedOpError(f"{t} values have no CUDA form")
    return t.dtype


def operand_compute(op: Operation) -> str:
    """The compute type an op works in: its first tensor operand's (comparisons, casts read it)."""
    for v in op.operands:
        if v is not None:
            return compute_ctype(result_dtype(v))
    return compute_ctype(result_dtype(op.results[0]))


def render_op(w: CWriter, op: Operation, names: dict[Value, str], fresh: Callable[[], str]) -> None:
    """One elementwise op as a C statement, rounding low-precision results as the interpreter does."""
    out = op.results[0]
    dt = result_dtype(out)
    c_out = compute_ctype(dt)
    args = [names[v] for v in op.operands if v is not None]
    if op.name == "ember.cast":
        expr = cast_expression(args[0], result_dtype(op.operands[0]), dt, op.attributes)
    else:
        narrow = next((t for t in map(result_dtype, [*filter(None, op.operands), *op.results]) if t.name in NARROW), None)
        if narrow is not None:
            raise UnsupportedOpError(f"{op.name} on {narrow} has no kernel (narrow types are only converted, "
                                     "by ember.cast)")
        expr = expression(op, args, operand_compute(op) if op.name != "ember.where" else c_out)
        if dt.name in LOW:
            expr = f"ember::round_to<{ctype(dt)}, float>({expr})"
    name = fresh()
    names[out] = name
    loc = f" @ {op.loc}" if op.loc else ""
    w.line(f"const {c_out} {name} = {expr};  // {op.name}{loc}")


def cast_expression(value: str, src: DType, dst: DType, attrs: dict[str, Any]) -> str:
    """ember.cast of `value` (in `src`'s compute type) as a value of `dst`'s compute type, exactly
    as the interpreter's `cast_array`: fp8/fp6/fp4 round from f32, or from f64 when the source is
    f64 or a 64-bit integer; e8m0 from f64; f16 and bf16 from f64 when the source is f64 or an
    integer (as numpy and ml_dtypes do); sub-byte integers wrap (from integers) or truncate with
    0 outside their range (from floats); float to a standard integer truncates (C's cast: out of
    range is undefined, in ONNX too)."""
    c_dst = compute_ctype(dst)
    saturate = "true" if attrs.get("saturate", True) else "false"
    wide = "double" if src.bits == 64 else "float"
    if dst.kind == "bool":
        return f"({value} != 0)"
    if dst.name == "f8e8m0":
        mode = E8M0_ROUND[attrs.get("round_mode", "up")]
        return f"ember::to_e8m0<{saturate}, {mode}>((double)({value}))"
    if dst.name in SMALL_FLOAT:
        return f"ember::to_small<{SMALL_FLOAT[dst.name]}, {saturate}>(({wide})({value}))"
    if dst.name in ("f16", "bf16"):
        via = "double" if src.is_int or src.bits == 64 else "float"
        return f"(float)ember::round_to<{ctype(dst)}, {via}>(({via})({value}))"
    if dst.name in NARROW:  # i4, u4, i2, u2
        bits, signed = dst.bits, "true" if dst.kind == "int" else "false"
        if src.is_float:
            return f"ember::float_to_int<{bits}, {signed}>({value})"
        if src.is_int:
            return f"ember::wrap_int<{bits}, {signed}>((long long)({value}))"
    return f"({c_dst})({value})"


def render_body(w: CWriter, block: Block, arg_names: Sequence[str], fresh: Callable[[], str]) -> list[str]:
    """A region of elementwise ops as straight-line C; returns the names of what it yields."""
    names: dict[Value, str] = dict(zip(block.args, arg_names))
    for op in block.ops:
        if op.name == "ember.constant":
            value = op.attributes["value"]
            if value.array.size != 1:
                raise UnsupportedOpError("a non-scalar constant inside an elementwise body")
            dt = value.dtype
            name = fresh()
            names[op.results[0]] = name
            w.line(f"const {compute_ctype(dt)} {name} = {literal(value.array.reshape(()).item(), dt)};")
            continue
        render_op(w, op, names, fresh)
    return [names[v] for v in block.outputs]


def index_type(max_elements: int) -> str:
    """32-bit indices while every tensor fits, 64-bit beyond 2^31 elements."""
    return "long long" if max_elements >= 2**31 - 1 else "int"


# -- kernels: the wrapper, grid-stride kernels, heavy-op specs --------------------------------------
def declaration(p: Param) -> str:
    """A kernel parameter's C declaration: pointers restricted, read-only unless written."""
    if p.kind == "tensormap":  # by value, in the kernel's parameter space, where TMA reads it
        return f"const __grid_constant__ {p.ctype} {p.name}"
    if p.kind != "ptr":
        return f"{p.ctype} {p.name}"
    return f"{'' if p.role in ('out', 'scratch') else 'const '}{p.ctype}* __restrict__ {p.name}"


@contextmanager
def entry(w: CWriter, threads: int, params: Sequence[Param]) -> Iterator[None]:
    """The kernel's `extern "C" __global__` wrapper; its body is what the block writes. The entry's
    name is `ENTRY`, replaced by the kernel's hashed name when it is rendered (Kernel.rendered)."""
    decls = ", ".join(declaration(p) for p in params)
    with w.block(f'extern "C" __global__ void __launch_bounds__({threads}) ENTRY({decls})'):
        yield


def grid_stride_kernel(header: str, hint: str, loc: str, per_block: int, structs: Sequence[str],
                       params: tuple[Param, ...], threads: int, call: str) -> Kernel:
    """A kernel that calls one device template of `header` with `per_block` work items of n
    per block, after the helper structs' lines (movement, reduce)."""
    w = CWriter()
    w.line(f'#include "{header}"')
    w.comment(loc)
    w.comment(f"grid-stride: {per_block} work item{'s' if per_block > 1 else ''} of n per block")
    for line in structs:
        w.line(line)
    with entry(w, threads, params):
        w.line(f"{call};")
    return Kernel(w.text(), hint, params, (loc,))


def accumulator(dt: DType) -> str:
    """The accumulator type for results of `dt`: floats compute in f32 (f64), integers wrap unsigned."""
    if dt.kind == "float":
        return compute_ctype(dt)
    if dt.is_int:
        return "unsigned long long" if dt.bits > 32 else "unsigned int"
    raise UnsupportedOpError(f"{dt} has no matrix kernel")


def round_result(expr: str, dt: DType) -> str:
    """The accumulator `expr` as the heavy op's result of type `dt`, in `dt`'s compute type."""
    c = compute_ctype(dt)
    if dt.name in LOW:
        return f"ember::round_to<{ctype(dt)}, float>({expr})"
    return f"static_cast<{c}>({expr})"


def heavy_value(h: HeavyValue, x: str, acc: str) -> str:
    """The C expression of the heavy op's result from the accumulator `x` (of C type `acc`)."""
    dt = h.dtype
    if h.form == "round":
        return round_result(x, dt)
    if h.form == "bias":
        return round_result(f"({x} + {h.read})" if h.read is not None else x, dt)
    assert h.form == "gemm", h.form
    cv = h.read
    if dt.kind == "float":
        expr = f"({literal(h.alpha, dt)} * {x})"
        if cv is not None:
            expr = f"({expr} + {literal(h.beta, dt)} * {cv})"
        return round_result(expr, dt)
    t = compute_ctype(dt)
    if h.alpha == 1.0 and (cv is None or h.beta == 1.0):
        return f"static_cast<{t}>({x}{f' + static_cast<{acc}>({cv})' if cv is not None else ''})"
    total = f"{h.alpha!r} * static_cast<double>(static_cast<{t}>({x}))"
    if cv is not None:
        total += f" + {h.beta!r} * static_cast<double>({cv})"
    return f"static_cast<{t}>(static_cast<long long>(trunc({total})))"


def static_offset(i: str, index: str, pairs: Sequence[tuple[int, int]]) -> str:
    """The element offset of flat index `i` (0 <= i < the dims' product) over dims whose sizes and
    strides are known at build time ((dim, stride) pairs, outermost first): unsigned division and
    remainder by constants, which the compiler turns into multiply-high and shift, with no loads
    and no loop (the static form of ember::broadcast_offset)."""
    unsigned = "unsigned" if index == "int" else "unsigned long long"
    suffix = "u" if index == "int" else "ull"
    u = f"static_cast<{unsigned}>({i})"
    terms, inner = [], 1
    for k in range(len(pairs) - 1, -1, -1):
        dim, stride = pairs[k]
        if dim != 1 and stride != 0:
            coord = u if inner == 1 else f"{u} / {inner}{suffix}"
            if k > 0:
                coord = f"{coord} % {dim}{suffix}"
            terms.append(f"({coord})" if stride == 1 else f"({coord}) * static_cast<{unsigned}>({stride}ll)")
        inner *= dim
    if not terms:
        return f"static_cast<{index}>(0)"
    return f"static_cast<{index}>({' + '.join(terms)})"


def _offset(at: Offset, index: str) -> str:
    if isinstance(at, BroadcastAt):
        if at.static:
            return static_offset("idx", index, at.static)
        if at.magic_at is not None and index == "int":
            return (f"ember::fast_offset<{at.rank}>(idx, em + {at.dims_at}, em + {at.magic_at}, "
                    f"em + {at.strides_at})")
        return f"ember::broadcast_offset<{index}>(idx, {at.rank}, em + {at.dims_at}, em + {at.strides_at})"
    return at


def render_epilogue(w: CWriter, e: EpilogueSpec) -> None:
    """The functor `Epi` (output, operands, meta) whose call computes and stores one element."""
    with w.block("struct Epi", "};"):
        w.line(f"{e.out}* __restrict__ out;")
        for k, (c, _, _) in enumerate(e.reads):
            w.line(f"const {c}* __restrict__ e{k};")
        w.line("const long long* __restrict__ em;  // result rank, dims, broadcast strides")
        with w.block(f"__device__ __forceinline__ void operator()({e.index} idx, int col, {e.acc} acc) const"):
            w.line("(void)col;")
            for k, (_, compute, at) in enumerate(e.reads):
                w.line(f"const {compute} x{k} = ember::to_compute(e{k}[{_offset(at, e.index)}]);")
            w.line(f"const {compute_ctype(e.heavy.dtype)} h = {heavy_value(e.heavy, 'acc', e.acc)};  // {e.heavy.op}")
            names: dict[Value, str] = dict(e.names)
            counter = iter(range(1_000_000))
            fresh = lambda: f"t{next(counter)}"  # noqa: E731
            for op in e.ops:
                if op.name in ("ember.reshape", "ember.transpose"):  # the layout tail: the same element
                    names[op.results[0]] = names[op.operands[0]]
                    if op.name == "ember.transpose":  # the ops after it read their operands as stored
                        names.update(e.stored_names)
                    continue
                if op.name == "ember.constant":
                    value = op.attributes["value"]
                    name = fresh()
                    names[op.results[0]] = name
                    w.line(f"const {compute_ctype(value.dtype)} {name} = "
                           f"{literal(value.array.reshape(()).item(), value.dtype)};")
                    continue
                render_op(w, op, names, fresh)
            w.line(f"out[{_offset(e.store_at, e.index)}] = ember::store<{e.out}>({names[e.result]});")


def template_arg(a: TemplateArg) -> str:
    if isinstance(a, Tile):
        return f"ember::gemm::Tile<{a.bm}, {a.bn}, {a.bk}, {a.tm}, {a.tn}>"
    if isinstance(a, MmaTile):
        return (f"ember::gemm::MmaTile<{a.bm}, {a.bn}, {a.bk}, {a.wm}, {a.wn}, {a.element}, "
                f"{template_arg(a.fallback)}, {template_arg(a.va)}, {template_arg(a.vb)}"
                f"{', true' if a.pipelined else ''}{f', {a.stages}' if a.pipelined and a.stages else ''}>")
    if isinstance(a, WgmmaTile):
        return (f"ember::gemm::WgmmaTile<{a.bm}, {a.bn}, {a.bk}, {a.element}, {template_arg(a.fallback)}, "
                f"{a.stages}{', true' if a.persistent else ''}{', true' if a.tma else ''}>")
    if isinstance(a, bool):
        return "true" if a else "false"
    return str(a)


def render_spec(spec: KernelSpec) -> Kernel:
    """A heavy op's kernel: the header, the ops as a comment, the epilogue functor (if any) and
    the wrapper, which builds `epi` and calls the template."""
    w = CWriter()
    for name, value in spec.defines:
        w.line(f"#define {name} {value}")
    w.line(f'#include "{spec.header}"')
    w.comment(spec.comment)
    e = spec.epilogue
    if e is not None:
        w.line()
        render_epilogue(w, e)
        w.line()
    with entry(w, spec.threads, spec.params):
        if e is not None:
            fields = ["out"] + [f"e{k}" for k in range(len(e.reads))] + [f"meta + {spec.meta_offset}"]
            w.line(f"const Epi epi{{{', '.join(fields)}}};")
        w.line(f"{spec.template}<{', '.join(map(template_arg, spec.targs))}>({', '.join(spec.call)});")
    return Kernel(w.text(), spec.hint, spec.params, spec.ops)
