"""Reduction, softmax, normalization, scan, top-k and pooling kernels (ember.codegen.ops.reduce),
and fused regions of kind "reduction".

Every case is a one-op module (or one ember.fused). On the CPU it is lowered, every kernel is
compiled by NVRTC for sm_80 and sm_90 (cleanly: a warning fails) and each launch's grid is
checked to cover its work; the row plans are replayed in numpy. With `-m gpu` each case runs
on the GPU against the interpreter, on fresh random inputs (NaN planted where the reference
propagates it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ember
import ember.codegen.ops.movement  # noqa: F401  (with reduce below: registers the lowerings until ops/__init__ does)
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.codegen.ops.reduce import plan_rows
from ember.ir.builder import Builder
from ember.ir.core import Module, Value
from ember.ir.dims import evaluate, free_symbols
from ember.ir.types import Type, bf16, boolean, f16, f32, f64, i8, i32, i64, u8
from ember.tolerance import assert_close
from kernel_checks import gpu_available, launches, lowered, nvrtc_compiler, rand

GRID_CAP = 1 << 18


# -- cases ------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    inputs: list[tuple[str, Type]]
    make: Callable[..., Any]
    feeds: dict[str, Callable[[np.random.Generator], np.ndarray]] = field(default_factory=dict)
    host: bool = False  # expected to run on the host

    def module(self) -> Module:
        b = Builder(self.name)
        values = [b.input(n, t) for n, t in self.inputs]
        out = self.make(b, *values)
        outs = [out] if isinstance(out, Value) else list(out)
        for i, v in enumerate(outs):
            b.output(f"y{i}", v)
        return b.build()

    def random_feeds(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {n: self.feeds[n](rng) if n in self.feeds else rand(rng, t) for n, t in self.inputs}


def positive(t: Type, low: float = 0.5, high: float = 1.5) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.uniform(low, high, size=tuple(t.shape)).astype(t.dtype.np_dtype)


def near_one(t: Type) -> Callable[[np.random.Generator], np.ndarray]:
    """Magnitudes near 1, either sign (products stay finite)."""
    return lambda rng: (rng.uniform(0.8, 1.25, size=tuple(t.shape)) *
                        rng.choice([-1.0, 1.0], size=tuple(t.shape))).astype(t.dtype.np_dtype)


def with_nan(t: Type, every: int = 7) -> Callable[[np.random.Generator], np.ndarray]:
    """Random floats with a NaN at every `every`-th position of the flat array (and -inf beside some)."""
    def make(rng: np.random.Generator) -> np.ndarray:
        x = rand(rng, t)
        flat = x.reshape(-1)
        flat[::every] = np.nan
        flat[3::every * 2] = -np.inf
        return x
    return make


def sparse(t: Type, density: float) -> Callable[[np.random.Generator], np.ndarray]:
    """Random values, about `density` of them nonzero."""
    return lambda rng: (rand(rng, t) * (rng.random(tuple(t.shape)) < density)).astype(t.dtype.np_dtype)


def nan_and_signed_zeros(t: Type) -> Callable[[np.random.Generator], np.ndarray]:
    """Zeros of both signs (not nonzero), NaNs (nonzero) and random values."""
    def make(rng: np.random.Generator) -> np.ndarray:
        x = rand(rng, t)
        flat = x.reshape(-1)
        pick = rng.random(flat.size)
        flat[pick < 0.3] = 0.0
        flat[(pick >= 0.3) & (pick < 0.5)] = -0.0
        flat[(pick >= 0.5) & (pick < 0.55)] = np.nan
        return x
    return make


def ties(t: Type, values: int = 4) -> Callable[[np.random.Generator], np.ndarray]:
    """Few distinct values: ties everywhere."""
    return lambda rng: rng.integers(-values // 2, values // 2 + 1, size=tuple(t.shape)).astype(t.dtype.np_dtype)


def case(name: str, inputs: list[tuple[str, Type]], make: Callable[..., Any], **kw: Any) -> Case:
    return Case(name, inputs, make, **kw)


def reduce_case(op: str, t: Type, dtype_name: str, **attrs: Any) -> Case:
    feeds = {}
    if op == "reduce_prod" and t.dtype.kind == "float":
        feeds = {"x": near_one(t)}
    elif op == "reduce_log_sum":
        feeds = {"x": positive(t)}
    return case(f"{op}_{dtype_name}_{'x'.join(map(str, t.shape))}", [("x", t)],
                lambda b, x: getattr(b, op)(x, **attrs), feeds=feeds)


X3 = f32[3, 5, 7]
CASES = [
    # reduce_*: rows, columns (inner kept axis >= 16), generic, whole tensor, no axes
    *[reduce_case(op, X3, "f32", axes=[1], keepdims=False)
      for op in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_l1", "reduce_l2",
                 "reduce_sum_square", "reduce_log_sum", "reduce_log_sum_exp")],
    *[reduce_case(op, f16[4, 300], "f16", axes=[-1])
      for op in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_l2", "reduce_log_sum_exp")],
    *[reduce_case(op, i32[2, 3, 4, 5], "i32", axes=[0, 2])
      for op in ("reduce_sum", "reduce_mean", "reduce_min", "reduce_prod", "reduce_l1", "reduce_sum_square")],
    reduce_case("reduce_sum", i8[6], "i8"),
    reduce_case("reduce_max", u8[5, 40], "u8", axes=[0]),
    reduce_case("reduce_max", boolean[3, 5, 2], "bool", axes=[1]),
    reduce_case("reduce_min", boolean[7, 9], "bool", axes=[1]),
    reduce_case("reduce_sum", f32[2, 3, 40, 1], "f32", axes=[1]),
    reduce_case("reduce_mean", f16[2, 64, 3, 3], "f16", axes=[2, 3]),
    reduce_case("reduce_sum", bf16[3, 2500], "bf16", axes=[1]),
    reduce_case("reduce_sum", f32[1, 9000], "f32", axes=[1], keepdims=False),
    reduce_case("reduce_sum_square", f32[3, 4], "f32", axes=[]),
    reduce_case("reduce_mean", f64[4, 6, 5], "f64", axes=[0, 2]),
    reduce_case("reduce_max", i64[6, 7, 8], "i64"),
    case("reduce_max_nan_f32", [("x", f32[6, 20])], lambda b, x: b.reduce_max(x, axes=[1]),
         feeds={"x": with_nan(f32[6, 20], 23)}),
    case("reduce_min_nan_cols_f32", [("x", f32[6, 20])], lambda b, x: b.reduce_min(x, axes=[0]),
         feeds={"x": with_nan(f32[6, 20], 23)}),
    case("reduce_log_sum_exp_inf_f32", [("x", f32[6, 5])], lambda b, x: b.reduce_log_sum_exp(x, axes=[1]),
         feeds={"x": lambda rng: np.where(np.arange(30).reshape(6, 5) // 5 == 2, -np.inf,
                                          rng.uniform(-3, 3, (6, 5))).astype(np.float32)}),
    # argmax, argmin
    case("argmax_axis1_f32", [("x", f32[3, 5, 7])], lambda b, x: b.argmax(x, axis=1)),
    case("argmax_ties_last_i32", [("x", i32[4, 33])], lambda b, x: b.argmax(x, axis=1, select_last_index=True),
         feeds={"x": ties(i32[4, 33])}),
    case("argmin_ties_i64", [("x", i64[4, 33])], lambda b, x: b.argmin(x, axis=-1, keepdims=False),
         feeds={"x": ties(i64[4, 33])}),
    case("argmin_columns_f16", [("x", f16[7, 3, 40])], lambda b, x: b.argmin(x, axis=1)),
    case("argmax_nan_f32", [("x", f32[6, 20])], lambda b, x: b.argmax(x, axis=1),
         feeds={"x": with_nan(f32[6, 20], 23)}),
    case("argmax_long_rows_f32", [("x", f32[2, 3000])], lambda b, x: b.argmax(x, axis=1, select_last_index=True),
         feeds={"x": ties(f32[2, 3000], 50)}),
    # softmax family
    case("softmax_axis1_f32", [("x", f32[2, 5, 7])], lambda b, x: b.softmax(x, axis=1)),
    case("softmax_last_f16", [("x", f16[4, 1000])], lambda b, x: b.softmax(x)),
    case("softmax_long_f32", [("x", f32[3, 4000])], lambda b, x: b.softmax(x)),
    case("softmax_columns_f32", [("x", f32[2, 20, 33])], lambda b, x: b.softmax(x, axis=1)),
    case("softmax_nan_rows_f32", [("x", f32[5, 9])], lambda b, x: b.softmax(x), feeds={"x": with_nan(f32[5, 9], 19)}),
    case("softmax_rank1_f64", [("x", f64[13])], lambda b, x: b.softmax(x)),
    case("log_softmax_bf16", [("x", bf16[3, 5, 70])], lambda b, x: b.log_softmax(x)),
    case("log_softmax_axis0_f32", [("x", f32[9, 2, 3])], lambda b, x: b.log_softmax(x, axis=0)),
    case("hardmax_f32", [("x", f32[4, 10])], lambda b, x: b.hardmax(x), feeds={"x": ties(f32[4, 10])}),
    case("hardmax_axis0_f16", [("x", f16[5, 3, 2])], lambda b, x: b.hardmax(x, axis=0)),
    # normalizations
    case("layer_norm_f32", [("x", f32[2, 5, 64]), ("s", f32[64]), ("b", f32[64])],
         lambda b, x, s, c: b.layer_norm(x, s, c)),
    case("layer_norm_two_axes_f16", [("x", f16[3, 7, 10]), ("s", f16[7, 10]), ("b", f16[10])],
         lambda b, x, s, c: b.layer_norm(x, s, c, axis=1)),
    case("layer_norm_long_no_bias_f32", [("x", f32[4, 3000]), ("s", f32[3000])],
         lambda b, x, s: b.layer_norm(x, s, None, epsilon=1e-3)),
    case("layer_norm_broadcast_scale_bf16", [("x", bf16[2, 3, 4, 5]), ("s", bf16[1, 5]), ("b", bf16[4, 1])],
         lambda b, x, s, c: b.layer_norm(x, s, c, axis=2)),
    case("rms_norm_f32", [("x", f32[2, 5, 64]), ("s", f32[64])], lambda b, x, s: b.rms_norm(x, s, epsilon=1e-6)),
    case("rms_norm_f16_f32_scale", [("x", f16[3, 48]), ("s", f32[48])], lambda b, x, s: b.rms_norm(x, s)),
    case("batch_norm_nchw_f32", [("x", f32[2, 3, 4, 5]), ("s", f32[3]), ("b", f32[3]), ("m", f32[3]), ("v", f32[3])],
         lambda b, x, s, c, m, v: b.batch_norm(x, s, c, m, v), feeds={"v": positive(f32[3])}),
    case("batch_norm_nhwc_f16", [("x", f16[2, 4, 5, 6]), ("s", f32[6]), ("b", f32[6]), ("m", f32[6]), ("v", f32[6])],
         lambda b, x, s, c, m, v: b.batch_norm(x, s, c, m, v, layout="NHWC", epsilon=1e-3),
         feeds={"v": positive(f32[6])}),
    case("instance_norm_nchw_f32", [("x", f32[2, 3, 5, 7]), ("s", f32[3]), ("b", f32[3])],
         lambda b, x, s, c: b.instance_norm(x, s, c)),
    case("instance_norm_nhwc_f32", [("x", f32[2, 5, 7, 30]), ("s", f32[30]), ("b", f32[30])],
         lambda b, x, s, c: b.instance_norm(x, s, c, layout="NHWC")),
    case("instance_norm_rank3_f16", [("x", f16[2, 4, 9]), ("s", f16[4]), ("b", f16[4])],
         lambda b, x, s, c: b.instance_norm(x, s, c)),
    case("instance_norm_rank5_nhwc_f32", [("x", f32[1, 2, 3, 4, 5]), ("s", f32[5]), ("b", f32[5])],
         lambda b, x, s, c: b.instance_norm(x, s, c, layout="NDHWC")),
    case("group_norm_nchw_f32", [("x", f32[2, 6, 5, 7]), ("s", f32[6]), ("b", f32[6])],
         lambda b, x, s, c: b.group_norm(x, s, c, num_groups=3)),
    case("group_norm_nhwc_f16", [("x", f16[2, 5, 7, 6]), ("s", f16[6]), ("b", f16[6])],
         lambda b, x, s, c: b.group_norm(x, s, c, num_groups=2, layout="NHWC")),
    case("group_norm_rank2_f32", [("x", f32[3, 8]), ("s", f32[8]), ("b", f32[8])],
         lambda b, x, s, c: b.group_norm(x, s, c, num_groups=4)),
    case("lrn_nchw_f32", [("x", f32[2, 6, 5, 7])], lambda b, x: b.lrn(x, size=3)),
    case("lrn_nhwc_even_f16", [("x", f16[1, 4, 5, 10])], lambda b, x: b.lrn(x, size=4, alpha=1e-2, beta=0.5, bias=2.0,
                                                                              layout="NHWC")),
    # scans and top-k
    case("cumsum_f32", [("x", f32[5, 40])], lambda b, x: b.cumsum(x, axis=1)),
    case("cumsum_exclusive_reverse_i32", [("x", i32[3, 70, 2])],
         lambda b, x: b.cumsum(x, axis=1, exclusive=True, reverse=True)),
    case("cumsum_rank1_f16", [("x", f16[100])], lambda b, x: b.cumsum(x, axis=0)),
    case("cumprod_f32", [("x", f32[4, 37])], lambda b, x: b.cumprod(x, axis=-1), feeds={"x": near_one(f32[4, 37])}),
    case("cumprod_exclusive_i64", [("x", i64[2, 9, 3])], lambda b, x: b.cumprod(x, axis=1, exclusive=True)),
    case("topk_largest_f32", [("x", f32[3, 50, 7])], lambda b, x: b.topk(x, k=5, axis=1)),
    case("topk_smallest_ties_i32", [("x", i32[4, 60])], lambda b, x: b.topk(x, k=9, largest=False),
         feeds={"x": ties(i32[4, 60], 6)}),
    case("topk_f16_long", [("x", f16[2, 1000])], lambda b, x: b.topk(x, k=10)),
    case("topk_nan_full_sort_f32", [("x", f32[3, 12])], lambda b, x: b.topk(x, k=12),
         feeds={"x": with_nan(f32[3, 12], 5)}),
    case("topk_nan_smallest_f32", [("x", f32[3, 12])], lambda b, x: b.topk(x, k=7, largest=False),
         feeds={"x": with_nan(f32[3, 12], 5)}),
    # windowed pooling
    case("max_pool_nchw_f32", [("x", f32[2, 3, 9, 9])],
         lambda b, x: b.max_pool(x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    case("max_pool_nhwc_f16", [("x", f16[1, 8, 8, 5])],
         lambda b, x: b.max_pool(x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], layout="NHWC")),
    case("max_pool_ceil_dilated_i8", [("x", i8[1, 3, 8, 8])],
         lambda b, x: b.max_pool(x, kernel_shape=[2, 3], strides=[2, 2], dilations=[2, 1], ceil_mode=True)),
    case("max_pool_same_upper_u8", [("x", u8[1, 2, 7, 6])],
         lambda b, x: b.max_pool(x, kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")),
    case("max_pool_nan_f32", [("x", f32[1, 2, 6, 6])], lambda b, x: b.max_pool(x, kernel_shape=[2, 2]),
         feeds={"x": with_nan(f32[1, 2, 6, 6], 17)}),
    case("avg_pool_include_pad_f16", [("x", f16[1, 3, 8, 8])],
         lambda b, x: b.avg_pool(x, kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=True)),
    case("avg_pool_exclude_pad_ceil_f32", [("x", f32[2, 3, 7, 7])],
         lambda b, x: b.avg_pool(x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=True)),
    case("avg_pool_ceil_include_pad_f32", [("x", f32[1, 2, 6, 6])],
         lambda b, x: b.avg_pool(x, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1], ceil_mode=True,
                                 count_include_pad=True)),
    case("avg_pool_same_lower_nhwc_f32", [("x", f32[1, 5, 6, 4])],
         lambda b, x: b.avg_pool(x, kernel_shape=[2, 3], auto_pad="SAME_LOWER", layout="NHWC")),
    case("avg_pool_1d_f32", [("x", f32[2, 3, 11])], lambda b, x: b.avg_pool(x, kernel_shape=[4], strides=[3])),
    case("max_pool_3d_f32", [("x", f32[1, 2, 4, 5, 6])],
         lambda b, x: b.max_pool(x, kernel_shape=[2, 2, 3], strides=[2, 1, 2], pads=[0, 1, 1, 1, 0, 1])),
    *[case(f"lp_pool_p{p}_f32", [("x", f32[1, 3, 6, 6])],
           lambda b, x, p=p: b.lp_pool(x, kernel_shape=[2, 2], p=p, pads=[1, 0, 0, 1])) for p in (1, 2, 3)],
    case("global_avg_pool_nhwc_f16", [("x", f16[2, 7, 7, 64])], lambda b, x: b.global_avg_pool(x, layout="NHWC")),
    case("global_avg_pool_nchw_f32", [("x", f32[2, 5, 3, 3])], lambda b, x: b.global_avg_pool(x)),
    case("global_max_pool_rank3_f32", [("x", f32[2, 6, 17])], lambda b, x: b.global_max_pool(x)),
    case("global_max_pool_nhwc_i8", [("x", i8[2, 3, 3, 20])], lambda b, x: b.global_max_pool(x, layout="NHWC")),
    case("global_lp_pool_rank5_f32", [("x", f32[1, 4, 2, 3, 3])], lambda b, x: b.global_lp_pool(x, p=3)),
    # fused regions of kind "reduction": the prologue is computed at the load
    case("fused_add_add_layer_norm", [("x", f32[2, 5, 32]), ("p", f32[5, 32]), ("t", f32[2, 5, 32]),
                                      ("s", f32[32]), ("c", f32[32])],
         lambda b, x, p, t, s, c: b.fused(x, p, t, s, c, kind="reduction",
                                          body=lambda r, x, p, t, s, c: r.layer_norm(r.add(r.add(x, p), t), s, c))),
    case("fused_add_layer_norm_f16", [("x", f16[3, 40]), ("y", f16[3, 40]), ("s", f16[40]), ("c", f16[40])],
         lambda b, x, y, s, c: b.fused(x, y, s, c, kind="reduction",
                                       body=lambda r, x, y, s, c: r.layer_norm(r.add(x, y), s, c))),
    case("fused_mul_reduce_sum", [("x", f32[4, 6, 5]), ("y", f32[6, 1])],
         lambda b, x, y: b.fused(x, y, kind="reduction",
                                 body=lambda r, x, y: r.reduce_sum(r.mul(x, y), axes=[1], keepdims=False))),
    case("fused_sub_exp_softmax", [("x", f32[3, 50]), ("m", f32[3, 1])],
         lambda b, x, m: b.fused(x, m, kind="reduction", body=lambda r, x, m: r.softmax(r.exp(r.sub(x, m))))),
    case("fused_cast_argmax", [("x", i32[5, 9])],
         lambda b, x: b.fused(x, kind="reduction", body=lambda r, x: r.argmax(r.cast(x, to=f32), axis=1))),
    case("fused_scale_prologue_rms_norm", [("x", f32[2, 64]), ("s", f32[64]), ("g", f32[64])],
         lambda b, x, s, g: b.fused(x, s, g, kind="reduction",
                                    body=lambda r, x, s, g: r.rms_norm(r.relu(x), r.mul(s, g)))),
    case("fused_global_avg_pool_nhwc", [("x", f16[1, 4, 4, 32]), ("y", f16[32])],
         lambda b, x, y: b.fused(x, y, kind="reduction",
                                 body=lambda r, x, y: r.global_avg_pool(r.mul(x, y), layout="NHWC"))),
    # a normalization stored through the float cast after it (its tail)
    case("fused_cast_layer_norm_cast_f16", [("x", f16[4, 7, 96]), ("s", f32[96]), ("c", f32[96])],
         lambda b, x, s, c: b.fused(x, s, c, kind="reduction",
                                    body=lambda r, x, s, c: r.cast(r.layer_norm(r.cast(x, to=f32), s, c), to=f16))),
    case("fused_layer_norm_cast_bf16", [("x", f32[3, 50]), ("s", f32[50])],
         lambda b, x, s: b.fused(x, s, kind="reduction",
                                 body=lambda r, x, s: r.cast(r.layer_norm(x, s, None), to=bf16))),
    case("fused_group_norm_cast_f16", [("x", f32[2, 8, 5, 5]), ("s", f32[8]), ("c", f32[8])],
         lambda b, x, s, c: b.fused(x, s, c, kind="reduction",
                                    body=lambda r, x, s, c: r.cast(r.group_norm(x, s, c, num_groups=4), to=f16))),
    # sizes known only when the model runs: a size step binds them, the kernels follow
    case("topk_runtime_k", [("x", f32[2, 9]), ("k", i64[()])], lambda b, x, k: b.topk(x, k),
         feeds={"k": lambda rng: np.array(rng.integers(0, 10), np.int64)}),
    case("topk_runtime_k_all_f16", [("x", f16[3, 700]), ("k", i64[1])], lambda b, x, k: b.topk(x, k, largest=False),
         feeds={"k": lambda rng: np.array([700], np.int64)}),
    case("topk_runtime_k_from_a_kernel", [("x", f32[4, 300]), ("c", i64[2])],
         lambda b, x, c: b.topk(x, b.reshape(b.reduce_min(c, keepdims=False), shape=[1]), axis=1),
         feeds={"c": lambda rng: np.array([rng.integers(0, 301), 400], np.int64)}),
    case("nonzero_f32", [("x", f32[37, 45])], lambda b, x: b.nonzero(x), feeds={"x": sparse(f32[37, 45], 0.3)}),
    case("nonzero_none_bool", [("x", boolean[5, 7])], lambda b, x: b.nonzero(x),
         feeds={"x": lambda rng: np.zeros((5, 7), bool)}),
    case("nonzero_all_i32_many_chunks", [("x", i32[3, 1100])], lambda b, x: b.nonzero(x),
         feeds={"x": lambda rng: rng.integers(1, 9, size=(3, 1100)).astype(np.int32)}),
    case("nonzero_nan_negative_zero_f16", [("x", f16[2500])], lambda b, x: b.nonzero(x),
         feeds={"x": nan_and_signed_zeros(f16[2500])}),
    case("nonzero_rank3_u8", [("x", u8[4, 33, 35])], lambda b, x: b.nonzero(x), feeds={"x": sparse(u8[4, 33, 35], 0.5)}),
    case("constant_of_shape_counted", [("x", f32[6, 40])],
         lambda b, x: b.constant_of_shape(b.concat(b.slice(b.shape(b.nonzero(x)), starts=[1], ends=[2], axes=[0]),
                                                   b.constant(np.array([3], np.int64)), axis=0),
                                          value=np.array(2.5, np.float16)),
         feeds={"x": sparse(f32[6, 40], 0.4)}),
]
IDS = [c.name for c in CASES]


# -- helpers ---------------------------------------------------------------------------------------------
def check_cover(step: dict[str, Any], source: str) -> None:
    """The grid reaches every work item: grid-stride kernels need min(n, cap) items' blocks."""
    per_block = int(re.search(r"grid-stride: (\d+) work item", source).group(1))
    n = step.args[-1].value
    threads = int(np.prod(step.block))
    assert f"__launch_bounds__({threads})" in source
    assert 1 <= threads <= 1024 and threads % 32 == 0 and step.grid[1:] == (1, 1)
    sizes = {s for d in (n, step.grid[0]) if not isinstance(d, int) for s in free_symbols(d)}
    for x in (0, 1, 1000, 10**7) if sizes else (None,):   # sizes bound at run time: at several values
        env = {name: x for name in sizes}
        blocks, items = (d if isinstance(d, int) else evaluate(d, env) for d in (step.grid[0], n))
        assert blocks * per_block >= min(items, GRID_CAP * per_block), (step.grid, per_block, n, env)
        assert blocks <= GRID_CAP


@pytest.fixture(scope="module")
def compiler(kernel_cache: Path) -> Compiler:
    return nvrtc_compiler(kernel_cache)


# -- CPU: lowering, NVRTC, coverage ---------------------------------------------------------------------
@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_kernels_compile_and_cover(c: Case, compiler: Compiler) -> None:
    _, program = lowered(c.module())
    assert bool(program.host_ops) == c.host, program.host_ops
    steps = launches(program)
    assert bool(steps) != c.host
    compiler.compile_all(program.kernels.values())
    for step in steps:
        check_cover(step, program.kernels[step.kernel].source)


LARGE = [
    case("reduce_sum_big", [("x", f16[3, 2**30])], lambda b, x: b.reduce_sum(x, axes=[1])),
    case("reduce_max_columns_big", [("x", f32[2**25, 64])], lambda b, x: b.reduce_max(x, axes=[0])),
    case("argmax_big", [("x", f32[2**16, 2**15])], lambda b, x: b.argmax(x, axis=1)),
    case("softmax_big", [("x", f16[2**21, 1024])], lambda b, x: b.softmax(x)),
    case("layer_norm_big", [("x", f16[2**21, 1024]), ("s", f16[1024]), ("b", f16[1024])],
         lambda b, x, s, c: b.layer_norm(x, s, c)),
    case("group_norm_nhwc_big", [("x", f16[2, 2**14, 2**12, 32]), ("s", f16[32]), ("b", f16[32])],
         lambda b, x, s, c: b.group_norm(x, s, c, num_groups=4, layout="NHWC")),
    case("cumsum_big", [("x", f32[2**20, 2**11])], lambda b, x: b.cumsum(x, axis=1)),
    case("topk_big", [("x", f32[2**20, 2**11])], lambda b, x: b.topk(x, k=8)),
    case("max_pool_big", [("x", f16[1, 2**14, 2**10, 2**8])], lambda b, x: b.max_pool(x, kernel_shape=[2, 2])),
]


@pytest.mark.parametrize("c", LARGE, ids=[c.name for c in LARGE])
def test_large_tensors_index_in_64_bits(c: Case, compiler: Compiler) -> None:
    program = lower(c.module())
    assert not program.host_ops
    for step in launches(program):
        source = program.kernels[step.kernel].source
        assert ", long long" in source.split("ENTRY")[-1], source
        check_cover(step, source)
    compiler.compile_all(program.kernels.values())


def test_fused_prologue_is_inline() -> None:
    _, program = lowered(next(c for c in CASES if c.name == "fused_add_add_layer_norm").module())
    (step,) = launches(program)
    source = program.kernels[step.kernel].source
    assert "struct Prologue0" in source and "ember.add" in source and "norm_rows" in source
    assert len(step.reads) == 5  # every region input, and no scratch buffer


def geometry_offsets(plan: Any, o: int) -> np.ndarray:
    """The flat offsets of row o, as ember::Geometry computes them."""
    r = np.arange(plan.R)
    if plan.geo == "GEO_ROWS":
        return o * plan.R + r
    if plan.geo == "GEO_COLUMNS":
        return (o // plan.inner) * plan.R * plan.inner + o % plan.inner + r * plan.inner
    base, rest = 0, o
    for d, s in reversed(plan.kept):
        base += (rest % d) * s
        rest //= d
    off = np.full(plan.R, base)
    rest = r.copy()
    for d, s in reversed(plan.reduced):
        off += (rest % d) * s
        rest //= d
    return off


@pytest.mark.parametrize("shape, axes", [
    ((3, 5, 7), (1,)), ((3, 5, 7), (0, 2)), ((2, 3, 40, 1), (1,)), ((4, 300), (1,)), ((6,), (0,)),
    ((2, 1, 3, 4, 5), (0, 3)), ((2, 7, 7, 64), (1, 2)), ((2, 5, 1, 6), (1, 3)), ((3, 4), ()), ((1, 1), (0, 1)),
    ((2, 3, 4, 5, 6), (1, 3, 4)),
])
def test_row_plans_cover_each_row(shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    x = np.random.default_rng(1).integers(-9, 9, size=shape)
    plan = plan_rows(shape, axes)
    want = x.sum(axis=axes).reshape(-1) if axes else x.reshape(-1)
    flat = x.reshape(-1)
    got = np.array([flat[geometry_offsets(plan, o)].sum() for o in range(plan.rows)])
    assert plan.rows == want.size and np.array_equal(got, want), plan


def test_plans_pick_teams() -> None:
    assert plan_rows((64, 4096), (1,)).team == "TEAM_BLOCK"
    assert plan_rows((4096, 64), (1,)).team == "TEAM_WARP"
    assert plan_rows((2, 49, 64), (1,)).team == "TEAM_COLUMN"


# -- GPU: against the interpreter -------------------------------------------------------------------------------
@pytest.mark.parametrize("c", CASES, ids=IDS)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_on_gpu(c: Case) -> None:
    m = c.module()
    feeds = c.random_feeds(np.random.default_rng())
    want = ember.interpret(m, feeds)
    got = ember.compile(m, pipeline="canonicalize").run(feeds, device="cuda")
    for name, value in want.items():
        assert_close(np.asarray(got[name]), value, what=f"{c.name}: {name}")


# -- normalizations in registers (reduce.NORM_CACHE) ---------------------------------------------------------
NORMS = [c for c in CASES if c.name.startswith(("layer_norm", "rms_norm"))] + [
    case("layer_norm_bert_rows_f16", [("x", f16[1030, 768]), ("s", f16[768]), ("b", f16[768])],
         lambda b, x, s, c: b.layer_norm(x, s, c, epsilon=1e-12)),
    case("layer_norm_block_rows_f16", [("x", f16[3, 1000]), ("s", f16[1000]), ("b", f16[1000])],
         lambda b, x, s, c: b.layer_norm(x, s, c)),
    case("rms_norm_odd_rows_bf16", [("x", bf16[9, 33]), ("s", bf16[33])], lambda b, x, s: b.rms_norm(x, s)),
]


def norm_kernels(c: Case) -> list[str]:
    program = lower(c.module())
    return [k.source for k in program.kernels.values() if "norm_rows" in k.source]


@pytest.mark.parametrize("c", NORMS, ids=[c.name for c in NORMS])
def test_norms_keep_short_rows_in_registers(c: Case, monkeypatch: pytest.MonkeyPatch, kernel_cache: Path) -> None:
    import ember.codegen.ops.reduce as reduce
    before = norm_kernels(c)
    monkeypatch.setattr(reduce, "NORM_CACHE", True)
    after = norm_kernels(c)
    assert before and after
    cached = [re.search(r"norm_rows<[^>]*?, (true|false), (true|false), (\d+)>", s) for s in after]
    plan = [reduce.norm_cache(p) for p in [plan_rows(*norm_plan_args(c))]]
    assert [int(m.group(3)) if m else 0 for m in cached] == plan, (plan, after[0][-300:])
    assert all(re.search(r"norm_rows<[^>]*?, (true|false), (true|false)>", s) for s in before)
    Compiler(("sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(
        [k for k in lower(c.module()).kernels.values() if "norm_rows" in k.source])


def norm_plan_args(c: Case) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The rows norm_rows walks for a layer or RMS norm: the axes from `axis` on."""
    op = next(o for o in c.module().main.body.ops if o.name in ("ember.layer_norm", "ember.rms_norm"))
    shape = tuple(op.operands[0].type.shape)
    first = op.attributes["axis"] % len(shape)
    return shape, tuple(range(first, len(shape)))


def test_long_rows_stay_out_of_registers() -> None:
    import ember.codegen.ops.reduce as reduce
    reduce.NORM_CACHE, was = True, reduce.NORM_CACHE
    try:
        assert reduce.norm_cache(plan_rows((4096, 768), (1,))) == 24    # a warp a row: 24 each
        assert reduce.norm_cache(plan_rows((40, 768), (1,))) == 3       # few rows: a block a row
        assert reduce.norm_cache(plan_rows((3, 1000), (1,))) == 4       # a block a row
        assert reduce.norm_cache(plan_rows((4, 30000), (1,))) == 0      # 118 each: too many
    finally:
        reduce.NORM_CACHE = was


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("c", NORMS, ids=[c.name for c in NORMS])
def test_norms_in_registers_match_the_interpreter_on_the_gpu(c: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    import ember.codegen.ops.reduce as reduce
    monkeypatch.setattr(reduce, "NORM_CACHE", True)
    m = c.module()
    engine = ember.compile(m, pipeline="canonicalize")
    assert any(re.search(r"norm_rows<[^>]*?, \d+>", k.source) for k in engine.kernels.values())
    for _ in range(2):
        feeds = c.random_feeds(np.random.default_rng())
        want = ember.interpret(m, feeds)
        got = engine.run(feeds, device="cuda")
        for name, value in want.items():
            assert_close(np.asarray(got[name]), value, what=f"{c.name} in registers: {name}")
