"""Recurrent layers (ember.rnn, ember.gru, ember.lstm): one kernel per op runs the whole time loop.

The device template is include/ember_rnn.cuh: one block per (batch element, direction)
walks the steps in order, holding the states in shared memory, so no step returns to
the host. Generated here: the kernel's signature (absent optional operands become null
pointers), and `Acts`, the op's activations (one switch over the slots: direction
times activations per direction plus the activation's place) with their alpha/beta
and the clip bound as literals. Sizes and strides (time-major or batch-first) travel
in `meta`.

Every float type has a kernel (f16/bf16/fp8 compute in f32, f64 in f64). What runs on the
host instead: layers whose per-block state does not fit 48 KiB of shared memory
((4 + 2 * gates) * hidden + input values of the compute type).
"""

from __future__ import annotations

from ember.codegen.cuda_render import compute_ctype, ctype, entry, literal
from ember.codegen.cwriter import CWriter
from ember.codegen.kernel import Kernel
from ember.codegen.kernel_builder import KernelBuilder
from ember.codegen.lower import LowerContext, lowering
from ember.codegen.ops.heavy import SHARED_LIMIT
from ember.errors import UnsupportedOpError
from ember.ir.core import Operation
from ember.ir.ops.recurrent import ACTIVATIONS

THREADS = 256
KINDS = {"ember.rnn": (0, 1, 1), "ember.gru": (1, 3, 2), "ember.lstm": (2, 4, 3)}  # kind, gates, activations
DEVICE_ACTIVATIONS = {
    "sigmoid": "sigmoid", "tanh": "tanh_", "relu": "relu_", "affine": "affine", "leaky_relu": "leaky_relu",
    "thresholded_relu": "thresholded_relu", "scaled_tanh": "scaled_tanh", "hard_sigmoid": "hard_sigmoid",
    "elu": "elu", "softsign": "softsign", "softplus": "softplus_",
}
DIRECTION_CODES = {"forward": 0, "reverse": 1, "bidirectional": 2}


def _render_acts(w: CWriter, op: Operation, per_direction: int, ndir: int, dt) -> None:  # type: ignore[no-untyped-def]
    c = compute_ctype(dt)
    defaults = {"ember.rnn": ("tanh",), "ember.gru": ("sigmoid", "tanh"),
                "ember.lstm": ("sigmoid", "tanh", "tanh")}[op.name]
    names = list(op.activations) if op.activations is not None else list(defaults) * ndir
    if len(names) != per_direction * ndir:
        raise UnsupportedOpError(f"{op.name}: {len(names)} activations for {ndir} directions")
    alpha, beta = list(op.activation_alpha), list(op.activation_beta)
    with w.block("struct Acts", "};"):
        with w.block(f"__device__ __forceinline__ {c} operator()(int slot, {c} x) const"):
            with w.block("switch (slot)"):
                for k, name in enumerate(names):
                    if name not in DEVICE_ACTIVATIONS:
                        raise UnsupportedOpError(f"{op.name}: activation {name!r} has no kernel")
                    _, da, db = ACTIVATIONS[name]
                    a = alpha[k] if alpha else da
                    b = beta[k] if beta else db
                    w.line(f"case {k}: return ember::rnn::{DEVICE_ACTIVATIONS[name]}<{c}>(x, {literal(a, dt)}, "
                           f"{literal(b, dt)});")
            w.line("return x;")
        with w.block(f"__device__ __forceinline__ {c} clamp({c} x) const"):
            if op.clip is None:
                w.line("return x;")
            else:
                bound = literal(float(op.clip), dt)
                w.line(f"return ember::min_nan<{c}>(ember::max_nan<{c}>(x, -{bound}), {bound});")


@lowering(*KINDS)
def recurrent(ctx: LowerContext, op: Operation) -> None:
    kind, gates, per_direction = KINDS[op.name]
    x, r = op.x, op.r
    dt = ctx.dtype(x)
    c = compute_ctype(dt)
    if c not in ("float", "double"):
        raise UnsupportedOpError(f"{op.name} on {dt} has no kernel")
    xs, rs = ctx.shape(x), ctx.shape(r)
    batch_first = bool(op.batch_first)
    S, B, I = (xs[1], xs[0], xs[2]) if batch_first else xs
    ndir, H = rs[0], rs[2]
    if B == 0 or H == 0:
        return
    values = 4 * H + I + 2 * gates * H
    shared = values * (8 if c == "double" else 4)
    if shared > SHARED_LIMIT:
        raise UnsupportedOpError(f"{op.name}: hidden size {H} and input size {I} need {shared} bytes of shared "
                                 f"memory (at most {SHARED_LIMIT})")
    if batch_first:
        xt, xb = I, S * I
        yt, yd, yb = ndir * H, H, S * ndir * H
        sd, sb = H, ndir * H
    else:
        xt, xb = B * I, I
        yt, yd, yb = ndir * B * H, B * H, H
        sd, sb = B * H, H
    meta = [S, B, I, H, ndir, DIRECTION_CODES[op.direction], int(getattr(op, "linear_before_reset", False)),
            int(getattr(op, "input_forget", False)), xt, xb, yt, yd, yb, sd, sb]
    s = ctype(dt)
    kb = KernelBuilder(ctx)
    outs = ["y", "yh"] + (["yc"] if kind == 2 else [])
    for name, res in zip(outs, op.results):
        kb.ptr(name, s, "out", ctx.arg(res))
    for name in ("x", "w", "r"):
        kb.ptr(name, s, "in", ctx.arg(getattr(op, name)))
    optional = {}
    for name in ("b", "sequence_lens", "initial_h", "initial_c", "p"):
        v = getattr(op, name, None) if name in op.operand_groups() else None
        if v is None:
            optional[name] = f"static_cast<const {s}*>(nullptr)" if name != "sequence_lens" else \
                "static_cast<const int*>(nullptr)"
            continue
        vc = ctype(ctx.dtype(v))
        optional[name] = kb.ptr(name, vc, "in", ctx.arg(v))
    kb.ptr("meta", "long long", "meta", ctx.meta(meta))
    wr = CWriter()
    wr.line('#include "ember_rnn.cuh"')
    wr.comment(ctx.loc())
    wr.line()
    _render_acts(wr, op, per_direction, ndir, dt)
    wr.line()
    yc = "yc" if kind == 2 else f"static_cast<{s}*>(nullptr)"
    with entry(wr, THREADS, kb.params):
        wr.line(f"ember::rnn::recur<{kind}, {THREADS}, {c}>(x, w, r, {optional['b']}, {optional['sequence_lens']}, "
                f"{optional['initial_h']}, {optional['initial_c']}, {optional['p']}, y, yh, {yc}, meta, Acts{{}});")
    kernel = Kernel(wr.text(), op.name.split(".")[1], tuple(kb.params), (ctx.loc(),))
    ctx.launch(kernel, (B, ndir), (THREADS,), kb.args, shared=shared)


__all__ = ["recurrent"]
