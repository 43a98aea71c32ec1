"""Reductions, softmax, normalizations, scans, top-k and pooling, from the templates in
include/ember_reduce.cuh; and fused regions of kind "reduction".

A reduction sees its input as rows (`plan_rows`): the kept axes number the rows, the
reduced axes the elements of a row. After merging neighbouring axes of the same kind, a
row is contiguous ([rows][R]), interleaved with an inner kept block ([outer][R][inner]:
a 32x8 block of threads takes 32 neighbouring rows so that loads coalesce), or anything
else (offsets from the dims and strides in meta). A team of threads (a warp for short
rows, the block for long ones) reduces a row with shuffles and shared memory, in f32 for
low-precision floats, and every member gets the result, so softmax and the norms make
their passes (max, sum; mean, variance) in one kernel.

Operands are read through loaders (`Reads`): for a plain op a loader reads a buffer; for
an `ember.fused` of kind "reduction" (elementwise ops feeding the reduction that ends its
body) the operands the elementwise prologue computes get a generated loader struct that
computes them at the index asked for, from the region's inputs broadcast to the operand's
shape: the prologue costs no kernel and no buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ember.codegen.cuda_render import C_EXPR, compute_ctype, ctype, literal, render_op
from ember.codegen.cwriter import CWriter
from ember.codegen.kernel_builder import BLOCK, KernelBuilder
from ember.codegen.lower import LowerContext, lowering
from ember.codegen.ops.elementwise import broadcast_strides
from ember.codegen.ops.movement import dims_of, index_for
from ember.codegen import symbolic
from ember.codegen.symbolic import contiguous_strides, numel
from ember.errors import UnsupportedOpError
from ember.ir import layout as L
from ember.ir.core import Operation, Value
from ember.ir.types import DType

HEADER = "ember_reduce.cuh"
WARPS = BLOCK // 32
MAX_TOPK_LINE = 1 << 15  # top-k ranks each element against its whole line
TOPK_STAGE_BYTES = 48 * 1024


# -- rows ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rows:
    """How a reduction walks its input: `rows` outputs of `R` elements each."""

    geo: str                 # GEO_ROWS | GEO_COLUMNS | GEO_GENERIC
    team: str                # TEAM_WARP | TEAM_BLOCK | TEAM_COLUMN
    rows: int
    R: int
    inner: int = 1
    kept: tuple[tuple[int, int], ...] = ()      # generic: (dim, stride) of the kept axes
    reduced: tuple[tuple[int, int], ...] = ()   # generic: (dim, stride) of the reduced axes


def plan_rows(shape: Sequence[int], axes: Sequence[int], at_run_time: Callable[[int], bool] = lambda _: False
              ) -> Rows:
    """Rows of `shape` reduced over `axes`, row o numbering the kept axes in row-major order.
    Where the sizes are known only when the program runs (`at_run_time`), a team fit for any
    length is taken without asking: a guard on a run-time size sends the op to the host where
    it fails, a worse price than a block for short rows."""
    strides = contiguous_strides(shape)
    groups: list[list[int]] = []  # [dim, stride, reduced]
    for d, (size, stride) in enumerate(zip(shape, strides)):
        if size == 1:
            continue
        red = int(d in axes)
        if groups and groups[-1][2] == red and groups[-1][1] == stride * size:
            groups[-1][0] *= size
            groups[-1][1] = stride
            continue
        groups.append([size, stride, red])
    kept = tuple((g[0], g[1]) for g in groups if not g[2])
    reduced = tuple((g[0], g[1]) for g in groups if g[2])
    rows, R = numel(d for d, _ in kept), numel(d for d, _ in reduced)
    pattern = "".join("R" if g[2] else "K" for g in groups)
    team = "TEAM_BLOCK" if at_run_time(rows) or at_run_time(R) else _row_team(rows, R)
    if pattern in ("", "R", "K", "KR"):
        return Rows("GEO_ROWS", team, rows, R)
    if pattern in ("RK", "KRK") and not at_run_time(kept[-1][0]) and kept[-1][0] >= 16:
        return Rows("GEO_COLUMNS", "TEAM_COLUMN", rows, R, kept[-1][0])
    return Rows("GEO_GENERIC", team, rows, R, 1, kept, reduced)


def _row_team(rows: int, R: int) -> str:
    return "TEAM_BLOCK" if R >= 2048 or (R >= 256 and rows < 1024) else "TEAM_WARP"


def rows_geometry(kb: KernelBuilder, plan: Rows) -> str:
    """The C expression of the plan's ember::Geometry (its meta appended to kb's)."""
    offset = kb.put([d for d, _ in plan.kept] + [s for _, s in plan.kept]
                    + [d for d, _ in plan.reduced] + [s for _, s in plan.reduced])
    return (f"ember::Geometry<{kb.index}, ember::{plan.geo}, {len(plan.kept)}, {len(plan.reduced)}>"
            f"{{{kb.size(plan.R)}, {kb.size(plan.inner)}, meta + {offset}}}")


def launch_rows(kb: KernelBuilder, plan: Rows, call: str, shared: int = 0) -> None:
    """Launch a row kernel: `call` names the team as @TEAM and the row count as @ROWS."""
    call = call.replace("@TEAM", f"ember::{plan.team}").replace("@ROWS", kb.size(plan.rows))
    if plan.team == "TEAM_COLUMN":
        tasks = (plan.rows // plan.inner) * (-(-plan.inner // 32))
        kb.launch(call, tasks, 1, (32, 8), shared)
    elif plan.team == "TEAM_BLOCK":
        kb.launch(call, plan.rows, 1, (BLOCK,), shared)
    else:
        kb.launch(call, plan.rows, WARPS, (BLOCK,), shared)


# -- reading operands -----------------------------------------------------------------------------
class Reads:
    """How a kernel reads the operands of the op it computes (the root).

    For a plain op the root is the op and its operands are buffers. For a fused region the
    root is the body's last op: an operand that is a region argument reads the fused op's
    operand; one that the elementwise prologue computes gets a loader struct computing it.
    """

    def __init__(self, ctx: LowerContext, root: Operation, fused: Operation | None = None,
                 tail: Operation | None = None) -> None:
        self.ctx, self.root, self.fused, self.tail = ctx, root, fused, tail
        self.outer: dict[Value, Value] = {}
        self.defs: dict[Value, Operation] = {}
        if fused is not None:
            body = fused.regions[0]
            self.outer = dict(zip(body.args, fused.operands))
            self.defs = {r: o for o in body.ops if o is not root and o is not tail for r in o.results}
        self._structs: dict[tuple[int, int], str] = {}

    def shape(self, v: Value) -> tuple[int, ...]:
        return self.ctx.shape(v)

    def dtype(self, v: Value) -> DType:
        return self.ctx.dtype(v)

    def result(self, k: int = 0) -> Value:
        """The program value that the root's k-th result is written to (through the cast
        tail, when there is one: the kernel stores in the cast's type)."""
        r = self.root.results[k] if self.tail is None else self.tail.results[0]
        if self.fused is None:
            return r
        outputs = list(self.fused.regions[0].outputs)
        return self.fused.results[outputs.index(r)]

    def sizes(self) -> list[int]:
        """Element counts of everything the kernel touches (for the index type)."""
        values = [v for v in self.root.operands if v is not None] + list(self.root.results)
        values += list(self.outer)
        return [numel(self.ctx.shape(v)) for v in values]

    def loader(self, kb: KernelBuilder, v: Value) -> str:
        """A C expression: a loader whose (i) is element i of v, in v's compute type."""
        if v not in self.defs:
            src = self.outer.get(v, v)
            t = ctype(self.dtype(src))
            return f"ember::Load<{t}, {kb.index}>{{{kb.inp(src, t)}}}"
        key = (id(kb), id(v))
        if key not in self._structs:
            self._structs[key] = self._prologue(kb, v)
        return self._structs[key]

    def _prologue(self, kb: KernelBuilder, v: Value) -> str:
        ops: list[Operation] = []
        args: list[Value] = []
        stack = [v]
        seen: set[int] = set()
        while stack:
            value = stack.pop()
            if id(value) in seen:
                continue
            seen.add(id(value))
            op = self.defs.get(value)
            if op is None:
                args.append(value)
                continue
            if op.name not in C_EXPR and op.name not in ("ember.cast", "ember.constant"):
                raise UnsupportedOpError(f"{op.name} in a reduction's prologue has no elementwise CUDA form")
            if op not in ops:
                ops.append(op)
            stack.extend(o for o in op.operands if o is not None)
        body = self.fused.regions[0]  # type: ignore[union-attr]
        order = {id(o): i for i, o in enumerate(body.ops)}
        ops.sort(key=lambda o: order[id(o)])
        args.sort(key=lambda a: list(body.args).index(a))
        shape = self.shape(v)
        name = f"Prologue{len(self._structs)}"
        w = CWriter()
        names: dict[Value, str] = {}
        fields = []
        lines = CWriter()
        dims_at = None
        for k, a in enumerate(args):
            src = self.outer[a]
            t = ctype(self.dtype(src))
            ptr = kb.inp(src, t)
            fields.append((t, ptr))
            a_shape = self.shape(a)
            if tuple(a_shape) == tuple(shape):
                at = "i"
            else:
                if dims_at is None:
                    dims_at = kb.put(shape)
                strides_at = kb.put(broadcast_strides(a_shape, shape))
                at = f"ember::broadcast_offset<{kb.index}>(i, {len(shape)}, meta + {dims_at}, meta + {strides_at})"
            names[a] = f"a{k}"
            lines.line(f"const {compute_ctype(self.dtype(a))} a{k} = ember::to_compute({ptr}[{at}]);")
        counter = iter(range(1_000_000))
        fresh = lambda: f"t{next(counter)}"  # noqa: E731
        for op in ops:
            if op.name == "ember.constant":
                value = op.attributes["value"]
                if value.array.size != 1:
                    raise UnsupportedOpError("a non-scalar constant in a reduction's prologue")
                names[op.results[0]] = fresh()
                lines.line(f"const {compute_ctype(value.dtype)} {names[op.results[0]]} = "
                           f"{literal(value.array.reshape(()).item(), value.dtype)};")
                continue
            render_op(lines, op, names, fresh)
        with w.block(f"struct {name}", "};"):
            for t, ptr in fields:
                w.line(f"const {t}* __restrict__ {ptr};")
            w.line("const long long* __restrict__ meta;")
            with w.block(f"__device__ __forceinline__ {compute_ctype(self.dtype(v))} operator()({kb.index} i) const"):
                for line in lines.lines:
                    w.line(line)
                w.line(f"return {names[v]};")
        for line in w.lines:
            kb.structs.line(line)
        return f"{name}{{{', '.join(ptr for _, ptr in fields)}, meta}}"

    def mapped(self, kb: KernelBuilder, v: Value, target: Sequence[int]) -> str:
        """A loader for v (broadcasting one way to `target`) read at flat indices of `target`."""
        load = self.loader(kb, v)
        shape = self.shape(v)
        if tuple(shape) == tuple(target):
            return load
        dims_at, strides_at = kb.put(target), kb.put(broadcast_strides(shape, target))
        return (f"ember::mapped({load}, ember::BroadcastMap<{kb.index}>{{meta + {dims_at}, meta + {strides_at}, "
                f"{len(target)}}})")


RootLowering = Callable[[LowerContext, Operation, Reads], None]
ROOTS: dict[str, RootLowering] = {}  # ops that can end a fused "reduction" region


def root(*names: str) -> Callable[[RootLowering], RootLowering]:
    """Register a lowering for plain ops and as the root of fused reduction regions."""
    def register(fn: RootLowering) -> RootLowering:
        for name in names:
            ROOTS[name] = fn
        lowering(*names)(lambda ctx, op: fn(ctx, op, Reads(ctx, op)))
        return fn
    return register


@lowering(fused_kind="reduction")
def fused_reduction(ctx: LowerContext, op: Operation) -> None:
    body = op.regions[0]
    last, tail = body.ops[-1], None
    if last.name == "ember.cast" and len(body.ops) > 1 and ROOTS.get(body.ops[-2].name) in STORES_ANY_FLOAT \
            and last.operands[0] is body.ops[-2].results[0]:
        last, tail = body.ops[-2], last   # a normalization stored in its cast's type
    fn = ROOTS.get(last.name)
    if fn is None:
        raise UnsupportedOpError(f"a fused region ending in {last.name} has no kernel")
    ends = tail.results if tail is not None else last.results
    if any(v not in ends for v in body.outputs):
        raise UnsupportedOpError("a fused reduction region that yields values of its prologue")
    fn(ctx, last, Reads(ctx, last, fused=op, tail=tail))


def _builder(ctx: LowerContext, reads: Reads, hint: str, *extra: int) -> KernelBuilder:
    return KernelBuilder(ctx, hint, index_for(*reads.sizes(), *extra), HEADER)


def _flag(b: bool) -> str:
    return "true" if b else "false"


def _f64(kb: KernelBuilder, x: float, c: str) -> str:
    """A float attribute as a C value of type c (its double bits travel in meta)."""
    return f"({c})ember::meta_f64(meta, {kb.put_f64(x)})"


def _axes(values: Sequence[int] | None, rank: int) -> list[int]:
    return list(range(rank)) if values is None else sorted({a % rank for a in values})


# -- reduce_* and global pools -----------------------------------------------------------------------
POLICIES = {"ember.reduce_sum": "RED_SUM", "ember.reduce_mean": "RED_MEAN", "ember.reduce_max": "RED_MAX",
            "ember.reduce_min": "RED_MIN", "ember.reduce_prod": "RED_PROD", "ember.reduce_l1": "RED_L1",
            "ember.reduce_l2": "RED_L2", "ember.reduce_sum_square": "RED_SUM_SQUARE",
            "ember.reduce_log_sum": "RED_LOG_SUM", "ember.global_avg_pool": "RED_MEAN",
            "ember.global_max_pool": "RED_MAX", "ember.global_lp_pool": "RED_LP"}


def _reduce(ctx: LowerContext, op: Operation, reads: Reads, axes: list[int], kind: str,
            policy: Callable[[KernelBuilder], str] | None = None, compute: str | None = None) -> None:
    """reduce_rows over `axes` with the Policy of `kind`, or the one `policy` writes (computing in
    `compute`)."""
    x = op.operands[0]
    shape = reads.shape(x)
    plan = plan_rows(shape, axes, ctx.lowerer.is_runtime)
    out = reads.result()
    if plan.rows != numel(ctx.shape(out)):
        raise UnsupportedOpError(f"{plan.rows} rows for {numel(ctx.shape(out))} results")
    a = compute or compute_ctype(reads.dtype(x))
    t = ctype(ctx.dtype(out))
    kb = _builder(ctx, reads, "reduce")
    o = kb.out(out, t)
    lx = reads.loader(kb, x)
    geo = rows_geometry(kb, plan)
    if kind == "LOG_SUM_EXP":
        if a not in ("float", "double"):
            raise UnsupportedOpError(f"log_sum_exp of {reads.dtype(x)}")
        launch_rows(kb, plan, f"ember::log_sum_exp_rows<{t}, {a}, {kb.index}, @TEAM>({o}, {lx}, {geo}, @ROWS)")
        return
    if kind in ("RED_L2", "RED_LOG_SUM", "RED_LP") and a not in ("float", "double"):
        raise UnsupportedOpError(f"{op.name} of {reads.dtype(x)}")
    p = op.attributes.get("p", 0)
    call = policy(kb) if policy is not None else f"ember::Policy<{a}, ember::{kind}>{{{p}}}"
    launch_rows(kb, plan, f"ember::reduce_rows<{t}, {a}, {kb.index}, @TEAM>({o}, {lx}, {geo}, @ROWS, {call})")


@root(*[name for name in POLICIES if name.startswith("ember.reduce_")], "ember.reduce_log_sum_exp")
def reduce_op(ctx: LowerContext, op: Operation, reads: Reads) -> None:
    rank = len(reads.shape(op.operands[0]))
    kind = "LOG_SUM_EXP" if op.name == "ember.reduce_log_sum_exp" else POLICIES[op.name]
    _reduce(ctx, op, reads, _axes(op.attributes["axes"], rank), kind)


@root("ember.global_avg_pool", "ember.global_max_pool", "ember.global_lp_pool")
def global_pool(ctx: LowerContext, op: Operation, reads: Reads) -> None:
    rank = len(reads.shape(op.operands[0]))
    _reduce(ctx, op, reads, list(L.resolve(op.attributes["layout"], rank).spatial_axes), POLICIES[op.name])


def int8_mean(kb: KernelBuilder, op: Operation) -> str:
    """ember::Int8Mean of an int8 average pool (x, x_scale, x_zero_point, y_scale, y_zero_point)."""
    args = []
    for v, c in zip(op.operands[1:5], ("float", "signed char", "float", "signed char")):
        args.append(kb.inp(v, c) if v is not None else "nullptr")
    return f"ember::Int8Mean{{{', '.join(args)}}}"


@lowering("ember.int8_global_avg_pool")
def int8_global_pool(ctx: LowerContext, op: Operation) -> None:
    reads = Reads(ctx, op)
    rank = len(reads.shape(op.operands[0]))
    _reduce(ctx, op, reads, list(L.resolve(op.attributes["layout"], rank).spatial_axes), "",
            policy=lambda kb: int8_mean(kb, op), compute="int")


# -- argmax, argmin, hardmax, softmax -----------------------------------------------------------------
@root("ember.argmax", "ember.argmin")
def arg_reduce(ctx: LowerContext, op: Operation, reads: Reads) -> None:
    x = op.operands[0]
    shape = reads.shape(x)
    plan = plan_rows(shape, [op.attributes["axis"] % len(shape)], ctx.lowerer.is_runtime)
    c = compute_ctype(reads.dtype(x))
    kb = _builder(ctx, reads, op.name.split(".")[1])
    o = kb.out(reads.result(), "long long")
    lx, geo = reads.loader(kb, x), rows_geometry(kb, plan)
    largest, last = _flag(op.name == "ember.argmax"), _flag(op.attributes["select_last_index"])
    launch_rows(kb, plan, f"ember::arg_rows<{c}, {largest}, {last}, {kb.index}, @TEAM>({o}, {lx}, {geo}, @ROWS)")


@root("ember.softmax", "ember.log_softmax", "ember.hardmax")
def softmax(ctx: LowerContext, op: Operation, reads: Reads) -> None:
    x = op.operands[0]
    shape = reads.shape(x)
    plan = plan_rows(shape, [op.attributes["axis"] % len(shape)], ctx.lowerer.is_runtime)
    dt = reads.dtype(x)
    c, t = compute_ctype(dt), ctype(dt)
    if op.name != "ember.hardmax" and c not in ("float", "double"):
        raise UnsupportedOpError(f"{op.name} of {dt}")
    kb = _builder(ctx, reads, op.name.split(".")[1])
    o = kb.out(reads.result(), t)
    lx, geo = reads.loader(kb, x), rows_geometry(kb, plan)
    if op.name == "ember.hardmax":
        launch_rows(kb, plan, f"ember::hardmax_rows<{t}, {c}, {kb.index}, @TEAM>({o}, {lx}, {geo}, @ROWS)")
        return
    log = _flag(op.name == "ember.log_softmax")
    launch_rows(kb, plan, f"ember::softmax_rows<{t}, {c}, {kb.index}, @TEAM, {log}>({o}, {lx}, {geo}, @ROWS)")


# -- normalizations -----------------------------------------------------------------------------------
def _channel_map(kb: KernelBuilder, shape: Sequence[int], axis: int) -> str:
    return (f"ember::ChannelMap<{kb.index}>{{{kb.size(contiguous_strides(shape)[axis])}, "
            f"{kb.size(shape[axis])}}}")


def _norm(ctx: LowerContext, reads: Reads, hint: str, x: Value, view: Sequence[int], axes: Sequence[int],
          kind: str, compute: str, params: Sequence[Value | None], param_map: Callable[[KernelBuilder, Value], str],
          epsilon: float, map_r: bool) -> None:
    """Standardize (or RMS-normalize) rows of x viewed as `view`, then scale (and shift)."""
    plan = plan_rows(view, axes, ctx.lowerer.is_runtime)
    out = reads.result()
    t = ctype(ctx.dtype(out))
    kb = _builder(ctx, reads, hint)
    o = kb.out(out, t)
    lx, geo = reads.loader(kb, x), rows_geometry(kb, plan)
    scale, bias = params
    ls = param_map(kb, scale)  # type: ignore[arg-type]
    lb = param_map(kb, bias) if bias is not None else ls
    cache = norm_cache(plan)
    launch_rows(kb, plan, f"ember::norm_rows<{t}, {compute}, {kb.index}, @TEAM, ember::{kind}, {_flag(map_r)}, "
                          f"{_flag(bias is not None)}{f', {cache}' if cache else ''}>({o}, {lx}, {ls}, {lb}, "
                          f"{geo}, @ROWS, {_f64(kb, epsilon, compute)})")


# Normalizations whose rows fit in registers (at most NORM_CACHE_MAX elements a member) read each
# element once instead of three times (ember_reduce.cuh norm_rows CACHE): off until the GPU tests
# of tests/codegen/test_reduce.py (test_norms_in_registers_match_the_interpreter_on_the_gpu) pass.
NORM_CACHE = False
NORM_CACHE_MAX = 32
TEAM_MEMBERS = {"TEAM_WARP": 32, "TEAM_BLOCK": BLOCK, "TEAM_COLUMN": 8}


def norm_cache(plan: Rows) -> int:
    """Elements a team member keeps in registers (0: the row is read three times)."""
    R = symbolic.expr_of(plan.R)
    if not NORM_CACHE or not isinstance(R, int) or R == 0:
        return 0
    per = -(-R // TEAM_MEMBERS[plan.team])
    return per if per <= NORM_CACHE_MAX else 0


def _float_compute(dt: DType) -> str:
    c = compute_ctype(dt)
    if c not in ("float", "double"):
        raise UnsupportedOpError(f"normalization of {dt}")
    return c


@root("ember.layer_norm", "ember.rms_norm")
def layer_norm(ctx: LowerContext, op: Operation, reads: Reads) -> None:
    x = op.x
    shape = reads.shape(x)
    first = op.attributes["axis"] % len(shape)
    normalized = shape[first:]
    if op.name == "ember.rms_norm":
        wide = {_float_compute(reads.dtype(x)), _float_compute(reads.dtype(op.scale))}
        compute, kind, params = ("double" if "double" in wide else "float"), "NORM_RMS", (op.scale, None)
    else:
        compute, kind, params = _float_compute(reads.dtype(x)), "NORM_STANDARD", (op.scale, op.bias)
    _norm(ctx, reads, op.name.split(".")[1], x, shape, list(range(first, len(shape))), kind, compute, params,
          lambda kb, v: reads.mapped(kb, v, normalized), op.attributes["epsilon"], True)


@root("ember.instance_norm", "ember.group_norm")
def channel_norm(ctx: LowerContext, op: Operation, reads: Reads) -> None:
    x = op.x
    shape = reads.shape(x)
    rank = len(shape)
    c_axis = L.resolve(op.attributes["layout"], rank).channel_axis
    compute = _float_compute(reads.dtype(x))
    if op.name == "ember.instance_norm":
        view, axes = list(shape), [a for a in range(1, rank) if a != c_axis]
    else:
        g = op.attributes["num_groups"]
        channels = shape[c_axis]
        spatial = numel(shape[a] for a in range(1, rank) if a != c_axis)
        if c_axis == 1:  # [N][G][C/G * spatial]
            view, axes = [shape[0], g, channels // g * spatial], [2]
        else:            # [N][spatial][G][C/G]
            view, axes = [shape[0], spatial, g, channels // g], [1, 3]

    def per_channel(kb: KernelBuilder, v: Value) -> str:
        return f"ember::mapped({reads.loader(kb, v)}, {_channel_map(kb, shape, c_axis)})"

    _norm(ctx, reads, op.name.split(".")[1], x, view, axes, "NORM_STANDARD", compute, (op.scale, op.bias),
          per_channel, op.attributes["epsilon"], False)


# Roots whose kernels store in the type of `reads.result()`, so a float cast after them is their store.
STORES_ANY_FLOAT = (layer_norm, channel_norm, global_pool, reduce_op)


@root("ember.batch_norm")
def batch_norm(ctx: LowerContext, op: Operation, reads: Reads) -> None:
    x = op.x
    shape = reads.shape(x)
    c_axis = L.resolve(op.attributes["layout"], len(shape)).channel_axis
    compute = _float_compute(reads.dtype(x))
    out = reads.result()
    t = ctype(ctx.dtype(out))
    kb = _builder(ctx, reads, "batch_norm")
    o = kb.out(out, t)
    loads = [reads.loader(kb, v) for v in (x, op.scale, op.bias, op.mean, op.var)]
    kb.launch(f"ember::batch_norm<{t}, {compute}, {kb.index}>({o}, {', '.join(loads)}, "
              f"{_channel_map(kb, shape, c_axis)}, {kb.n}, {_f64(kb, op.attributes['epsilon'], compute)})",
              numel(shape), BLOCK)


@root("ember.lrn")
def lrn(ctx: LowerContext, op: Operation, reads: Reads) -> None:
    x = op.x
    shape = reads.shape(x)
    c_axis = L.resolve(op.attributes["layout"], len(shape)).channel_axis
    compute = _float_compute(reads.dtype(x))
    out = reads.result()
    t = ctype(ctx.dtype(out))
    a = op.attributes
    size = a["size"]
    kb = _builder(ctx, reads, "lrn")
    o = kb.out(out, t)
    lx = reads.loader(kb, x)
    kb.launch(f"ember::lrn<{t}, {compute}, {kb.index}>({o}, {lx}, {_channel_map(kb, shape, c_axis)}, {kb.n}, "
              f"{(size - 1) // 2}, {size // 2}, {_f64(kb, a['bias'], compute)}, {_f64(kb, a['alpha'] / size, compute)}, "
              f"{_f64(kb, a['beta'], compute)})", numel(shape), BLOCK)


# -- cumsum, cumprod, topk ------------------------------------------------------------------------------
@lowering("ember.cumsum", "ember.cumprod")
def cumulative(ctx: LowerContext, op: Operation) -> None:
    x, y = op.operands[0], op.results[0]
    shape = ctx.shape(x)
    axis = op.attributes["axis"] % len(shape)
    dt = ctx.dtype(x)
    t, a = ctype(dt), compute_ctype(dt)
    length, inner = shape[axis], numel(shape[axis + 1:])
    lines = numel(shape) // length if length else 0
    kb = KernelBuilder(ctx, op.name.split(".")[1], index_for(numel(shape)), HEADER)
    o, i = kb.out(y, t), kb.inp(x, t)
    flags = ", ".join(_flag(b) for b in (op.name == "ember.cumprod", op.attributes["exclusive"],
                                         op.attributes["reverse"]))
    kb.launch(f"ember::scan_lines<{t}, {a}, {kb.index}, {flags}>({o}, {i}, {kb.n}, {kb.size(length)}, "
              f"{kb.size(inner)})", lines, WARPS)


@lowering("ember.topk")
def topk(ctx: LowerContext, op: Operation) -> None:
    x = op.x
    shape = ctx.shape(x)
    axis = op.attributes["axis"] % len(shape)
    # k given as data: a size step has read it back and bound the results' dim on `axis`
    k = ctx.shape(op.results[0])[axis] if op.k_value is not None else dims_of(ctx, [op.attributes["k"]])[0]
    length, inner = shape[axis], numel(shape[axis + 1:])
    if length > MAX_TOPK_LINE:
        raise UnsupportedOpError(f"top-k over {length} elements (the kernel ranks lines of up to {MAX_TOPK_LINE})")
    dt = ctx.dtype(x)
    t, c = ctype(dt), compute_ctype(dt)
    lines = numel(shape) // length if length else 0
    itemsize = 8 if c in ("double", "long long", "unsigned long long") else 4
    stage = length * itemsize <= TOPK_STAGE_BYTES
    kb = KernelBuilder(ctx, "topk", index_for(numel(shape)), HEADER)
    values, indices, i = kb.out(op.results[0], t), kb.out(op.results[1], "long long"), kb.inp(x, t)
    if k == 0:
        return
    kb.launch(f"ember::topk<{t}, {c}, {kb.index}, {_flag(op.attributes['largest'])}, {_flag(stage)}>({values}, "
              f"{indices}, {i}, {kb.n}, {kb.size(length)}, {kb.size(inner)}, {kb.size(k)})", lines, 1,
              (BLOCK,), length * itemsize if stage else 0)


# -- windowed pooling -------------------------------------------------------------------------------------
POOLS = {"ember.max_pool": "POOL_MAX", "ember.avg_pool": "POOL_AVG", "ember.lp_pool": "POOL_LP",
         "ember.int8_avg_pool": "POOL_AVG"}


def _same_pads(size: int, k: int, s: int, d: int, auto_pad: str) -> tuple[int, int]:
    out = -(-size // s)
    total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
    small, big = total // 2, total - total // 2
    return (small, big) if auto_pad == "SAME_UPPER" else (big, small)


@lowering(*POOLS)
def pool(ctx: LowerContext, op: Operation) -> None:
    x, y = op.x, op.results[0]
    shape, out_shape = ctx.shape(x), ctx.shape(y)
    rank = len(shape)
    a = op.attributes
    spatial = L.resolve(a["layout"], rank).spatial_axes
    n = len(spatial)
    kernel = list(a["kernel_shape"])
    strides = list(a["strides"]) or [1] * n
    dilations = list(a["dilations"]) or [1] * n
    pads = list(a["pads"]) or [0] * (2 * n)
    begin, end = pads[:n], pads[n:]
    auto_pad = a["auto_pad"]
    if auto_pad == "VALID":
        begin, end = [0] * n, [0] * n
    elif auto_pad != "NOTSET":
        pairs = [_same_pads(shape[ax], kernel[i], strides[i], dilations[i], auto_pad) for i, ax in enumerate(spatial)]
        begin, end = [p[0] for p in pairs], [p[1] for p in pairs]
    in_strides = contiguous_strides(shape)
    meta = []
    for ax in range(rank):
        if ax in spatial:
            i = spatial.index(ax)
            meta += [out_shape[ax], shape[ax], in_strides[ax], kernel[i], strides[i], dilations[i], begin[i], end[i]]
        else:
            meta += [out_shape[ax], shape[ax], in_strides[ax], 1, 1, 1, 0, 0]
    dt = ctx.dtype(x)
    int8 = op.name == "ember.int8_avg_pool"
    t, acc = ctype(dt), "int" if int8 else compute_ctype(dt)
    kind = POOLS[op.name]
    if kind != "POOL_MAX" and acc not in ("float", "double") and not int8:
        raise UnsupportedOpError(f"{op.name} of {dt}")
    kb = KernelBuilder(ctx, op.name.split(".")[1], index_for(numel(shape), numel(out_shape)), HEADER)
    o, i = kb.out(y, t), kb.inp(x, t)
    kb.put(meta)
    count_pad = _flag(bool(a.get("count_include_pad", False)))
    targs = f"{t}, {acc}, {kb.index}, {rank}, ember::{kind}, {count_pad}" + (", ember::Int8Mean" if int8 else "")
    mean = f", {int8_mean(kb, op)}" if int8 else ""
    kb.launch(f"ember::pool<{targs}>({o}, {i}, meta, {kb.n}, {kb.size(numel(kernel))}, {a.get('p', 2)}{mean})",
              numel(out_shape), BLOCK)


__all__ = ["plan_rows", "Rows", "Reads", "ROOTS", "root"]
