"""Data-movement kernels (ember.codegen.ops.movement).

Every case is a one-op module. On the CPU it is lowered, every kernel is compiled by NVRTC
for sm_80 and sm_90 (cleanly: a warning fails), and each launch's grid is checked to cover
its work; the strided copies (transpose, slice, concat, split, expand, tile, depth/space)
and tiled transposes are also replayed in numpy from their launch arguments and compared
with the interpreter, which checks the planning without a GPU. With `-m gpu` each case
runs on the GPU against the interpreter, on fresh random inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ember
import ember.codegen.ops.movement  # noqa: F401  (registers the lowerings until ops/__init__ imports it)
from ember.codegen.lower import Program, lower
from ember.codegen.nvrtc import Compiler
from ember.ir.builder import Builder
from ember.ir.core import Module, Value
from ember.ir.types import Type, bf16, boolean, f16, f32, i8, i32, i64, u8
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
    host: bool = False      # expected to run (partly) on the host
    launches: bool = True   # expected to launch kernels (shape queries fold away)

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


def indices(shape: tuple[int, ...], dim: int, dtype: Any = np.int64) -> Callable[[np.random.Generator], np.ndarray]:
    """Valid indices into a dim of `dim`, negatives included."""
    return lambda rng: rng.integers(-dim, dim, size=shape).astype(dtype)


def scalar(value: float, dtype: Any) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: np.array(value, dtype=dtype)


def case(name: str, inputs: list[tuple[str, Type]], make: Callable[..., Any], **kw: Any) -> Case:
    return Case(name, inputs, make, **kw)


CASES = [
    # transpose: tiled (batched last-two swap after merging) and generic
    case("transpose_nchw_to_nhwc_f32", [("x", f32[2, 3, 4, 5])], lambda b, x: b.transpose(x, perm=[0, 2, 3, 1])),
    case("transpose_tiles_odd_f16", [("x", f16[3, 33, 65])], lambda b, x: b.transpose(x, perm=[0, 2, 1])),
    case("transpose_2d_bool", [("x", boolean[37, 70])], lambda b, x: b.transpose(x)),
    case("transpose_rank5_i8", [("x", i8[2, 1, 3, 4, 5])], lambda b, x: b.transpose(x, perm=[4, 2, 0, 3, 1])),
    case("transpose_rank3_i64", [("x", i64[4, 5, 6])], lambda b, x: b.transpose(x, perm=[2, 0, 1])),
    case("transpose_ones_bf16", [("x", bf16[1, 1, 3])], lambda b, x: b.transpose(x, perm=[2, 0, 1])),
    # concat and split
    case("concat_axis1_f32", [("a", f32[2, 3]), ("c", f32[2, 5]), ("d", f32[2, 1])],
         lambda b, a, c, d: b.concat(a, c, d, axis=1)),
    case("concat_rank1_f16", [("a", f16[7]), ("c", f16[2])], lambda b, a, c: b.concat(a, c, axis=0)),
    case("concat_axis0_i32", [("a", i32[1, 3, 4]), ("c", i32[3, 3, 4])], lambda b, a, c: b.concat(a, c, axis=-3)),
    case("split_sizes_f32", [("x", f32[5, 7])], lambda b, x: b.split(x, axis=1, sizes=[2, 5])),
    case("split_even_i64", [("x", i64[9])], lambda b, x: b.split(x, axis=0, num_outputs=3)),
    case("split_uneven_f16", [("x", f16[2, 3, 7, 4])], lambda b, x: b.split(x, axis=2, num_outputs=2)),
    # slice
    case("slice_negative_steps_f32", [("x", f32[7, 9])],
         lambda b, x: b.slice(x, starts=[5, 0], ends=[-10, 9], steps=[-2, 3])),
    case("slice_clamped_i32", [("x", i32[10, 4, 3])], lambda b, x: b.slice(x, starts=[1], ends=[100], axes=[0])),
    case("slice_rank5_f16", [("x", f16[6, 5, 4, 3, 2])],
         lambda b, x: b.slice(x, starts=[-1, 1, 0], ends=[-100, 4, 3], axes=[0, 1, 3], steps=[-2, 2, 1])),
    case("slice_bool", [("x", boolean[8])], lambda b, x: b.slice(x, starts=[6], ends=[0], steps=[-1])),
    # pad
    case("pad_reflect_crop_f32", [("x", f32[3, 4])], lambda b, x: b.pad(x, pads=[1, -1, 5, 2], mode="reflect")),
    case("pad_constant_value_f32", [("x", f32[3, 4]), ("v", f32[()])], lambda b, x, v: b.pad(x, v, pads=[1, 0, 2, 3])),
    case("pad_edge_f16", [("x", f16[2, 3, 4])], lambda b, x: b.pad(x, pads=[0, 2, 1, 1, 0, 3], mode="edge")),
    case("pad_wrap_long_i32", [("x", i32[3, 2])], lambda b, x: b.pad(x, pads=[4, 5, 7, 3], mode="wrap")),
    case("pad_zeros_rank5_i8", [("x", i8[1, 2, 3, 2, 4])],
         lambda b, x: b.pad(x, pads=[1, 1], axes=[2])),
    case("pad_reflect_size1_u8", [("x", u8[1, 5])], lambda b, x: b.pad(x, pads=[2, 1, 3, 2], mode="reflect")),
    # expand and tile
    case("expand_f32", [("x", f32[3, 1])], lambda b, x: b.expand(x, shape=[2, 3, 4])),
    case("expand_rank1_i64", [("x", i64[1])], lambda b, x: b.expand(x, shape=[5])),
    case("expand_f16", [("x", f16[2, 1, 3, 1])], lambda b, x: b.expand(x, shape=[2, 4, 3, 5])),
    case("tile_f32", [("x", f32[3, 2])], lambda b, x: b.tile(x, repeats=[2, 3])),
    case("tile_i32", [("x", i32[2, 1, 3])], lambda b, x: b.tile(x, repeats=[1, 4, 2])),
    case("tile_bool", [("x", boolean[5])], lambda b, x: b.tile(x, repeats=[3])),
    # gathers
    case("gather_axis0_f32", [("x", f32[5, 3]), ("i", i64[2, 2])], lambda b, x, i: b.gather(x, i, axis=0),
         feeds={"i": indices((2, 2), 5)}),
    case("gather_axis1_f16", [("x", f16[4, 6, 5]), ("i", i32[3])], lambda b, x, i: b.gather(x, i, axis=1),
         feeds={"i": indices((3,), 6, np.int32)}),
    case("gather_rank1_i64", [("x", i64[7]), ("i", i64[4, 2])], lambda b, x, i: b.gather(x, i),
         feeds={"i": indices((4, 2), 7)}),
    case("gather_last_axis_i8", [("x", i8[2, 3, 4]), ("i", i64[5])], lambda b, x, i: b.gather(x, i, axis=-1),
         feeds={"i": indices((5,), 4)}),
    case("gather_elements_axis0_f32", [("x", f32[5, 3]), ("i", i64[2, 3])],
         lambda b, x, i: b.gather_elements(x, i, axis=0), feeds={"i": indices((2, 3), 5)}),
    case("gather_elements_axis1_f16", [("x", f16[4, 5, 6]), ("i", i32[4, 2, 6])],
         lambda b, x, i: b.gather_elements(x, i, axis=1), feeds={"i": indices((4, 2, 6), 5, np.int32)}),
    case("gather_elements_i32", [("x", i32[3, 4]), ("i", i64[3, 4])],
         lambda b, x, i: b.gather_elements(x, i, axis=-1), feeds={"i": indices((3, 4), 4)}),
    case("gather_nd_batch_f32", [("x", f32[5, 3, 4]), ("i", i64[5, 2, 1])],
         lambda b, x, i: b.gather_nd(x, i, batch_dims=1), feeds={"i": indices((5, 2, 1), 3)}),
    case("gather_nd_pairs_f16", [("x", f16[4, 5, 6]), ("i", i64[3, 2])], lambda b, x, i: b.gather_nd(x, i),
         feeds={"i": indices((3, 2), 4)}),
    case("gather_nd_batch_i32", [("x", i32[2, 3, 4, 5]), ("i", i64[2, 3, 2])],
         lambda b, x, i: b.gather_nd(x, i, batch_dims=1), feeds={"i": indices((2, 3, 2), 3)}),
    # scatters: duplicate indices on purpose (the last update wins; reductions in order)
    *[case(f"scatter_elements_{red}_f32", [("x", f32[5, 3]), ("i", i64[6, 3]), ("u", f32[6, 3])],
           lambda b, x, i, u, red=red: b.scatter_elements(x, i, u, axis=0, reduction=red),
           feeds={"i": indices((6, 3), 5)}) for red in ("none", "add", "mul", "max", "min")],
    case("scatter_elements_add_f16", [("x", f16[4, 7]), ("i", i32[4, 9]), ("u", f16[4, 9])],
         lambda b, x, i, u: b.scatter_elements(x, i, u, axis=1, reduction="add"),
         feeds={"i": indices((4, 9), 7, np.int32)}),
    case("scatter_elements_add_i32", [("x", i32[3, 4, 5]), ("i", i64[3, 6, 5]), ("u", i32[3, 6, 5])],
         lambda b, x, i, u: b.scatter_elements(x, i, u, axis=1, reduction="add"), feeds={"i": indices((3, 6, 5), 4)}),
    case("scatter_elements_bool", [("x", boolean[6]), ("i", i64[4]), ("u", boolean[4])],
         lambda b, x, i, u: b.scatter_elements(x, i, u), feeds={"i": indices((4,), 6)}),
    *[case(f"scatter_nd_{red}_f32", [("x", f32[8, 4]), ("i", i64[6, 1]), ("u", f32[6, 4])],
           lambda b, x, i, u, red=red: b.scatter_nd(x, i, u, reduction=red),
           feeds={"i": indices((6, 1), 8)}) for red in ("none", "add", "max")],
    case("scatter_nd_max_f16", [("x", f16[4, 5, 6]), ("i", i64[3, 2]), ("u", f16[3, 6])],
         lambda b, x, i, u: b.scatter_nd(x, i, u, reduction="max"), feeds={"i": indices((3, 2), 4)}),
    case("scatter_nd_mul_i64", [("x", i64[5, 2]), ("i", i64[2, 3, 1]), ("u", i64[2, 3, 2])],
         lambda b, x, i, u: b.scatter_nd(x, i, u, reduction="mul"), feeds={"i": indices((2, 3, 1), 5)}),
    case("scatter_nd_elements_u8", [("x", u8[3, 4]), ("i", i64[5, 2]), ("u", u8[5])],
         lambda b, x, i, u: b.scatter_nd(x, i, u), feeds={"i": indices((5, 2), 3)}),
    # generators
    case("trilu_lower_f32", [("x", f32[3, 5])], lambda b, x: b.trilu(x, upper=False, k=1)),
    case("trilu_upper_f16", [("x", f16[2, 4, 4])], lambda b, x: b.trilu(x, upper=True, k=-1)),
    case("trilu_far_k_i32", [("x", i32[2, 3, 5, 4])], lambda b, x: b.trilu(x, upper=True, k=10)),
    case("range_f32", [("s", f32[()]), ("l", f32[()]), ("d", f32[()])], lambda b, s, l, d: b.range(s, l, d, length=7),
         feeds={"s": scalar(0.5, np.float32), "l": scalar(2.25, np.float32), "d": scalar(0.25, np.float32)}),
    case("range_i64", [("s", i64[()]), ("l", i64[()]), ("d", i64[()])], lambda b, s, l, d: b.range(s, l, d, length=7),
         feeds={"s": scalar(-3, np.int64), "l": scalar(11, np.int64), "d": scalar(2, np.int64)}),
    case("range_down_i32", [("s", i32[()]), ("l", i32[()]), ("d", i32[()])],
         lambda b, s, l, d: b.range(s, l, d, length=7),
         feeds={"s": scalar(10, np.int32), "l": scalar(-10, np.int32), "d": scalar(-3, np.int32)}),
    case("range_f16", [("s", f16[()]), ("l", f16[()]), ("d", f16[()])], lambda b, s, l, d: b.range(s, l, d, length=7),
         feeds={"s": scalar(1, np.float16), "l": scalar(4.5, np.float16), "d": scalar(0.5, np.float16)}),
    case("one_hot_last_f32", [("i", i64[3, 4]), ("v", f32[2])], lambda b, i, v: b.one_hot(i, v, depth=5),
         feeds={"i": indices((3, 4), 6)}),
    case("one_hot_float_index_axis0", [("i", f32[5]), ("v", f32[2])], lambda b, i, v: b.one_hot(i, v, depth=4, axis=0),
         feeds={"i": lambda rng: rng.uniform(-4.9, 4.9, size=5).astype(np.float32)}),
    case("one_hot_middle_i64", [("i", i32[2, 3]), ("v", i64[2])], lambda b, i, v: b.one_hot(i, v, depth=3, axis=1),
         feeds={"i": indices((2, 3), 3, np.int32)}),
    case("shape_query", [("x", f32[2, 3, 4])], lambda b, x: (b.shape(x, start=1), b.size(x)), launches=False),
    # depth and space
    case("depth_to_space_dcr_f32", [("x", f32[1, 8, 2, 3])], lambda b, x: b.depth_to_space(x, blocksize=2)),
    case("depth_to_space_crd_nhwc_f16", [("x", f16[2, 3, 2, 18])],
         lambda b, x: b.depth_to_space(x, blocksize=3, mode="CRD", layout="NHWC")),
    case("space_to_depth_dcr_f32", [("x", f32[1, 2, 4, 6])], lambda b, x: b.space_to_depth(x, blocksize=2)),
    case("space_to_depth_crd_nhwc_i32", [("x", i32[2, 6, 4, 3])],
         lambda b, x: b.space_to_depth(x, blocksize=2, mode="CRD", layout="NHWC")),
    # resize
    case("resize_nearest_asymmetric_f32", [("x", f32[1, 2, 3, 4])],
         lambda b, x: b.resize(x, scales=[1.0, 1.0, 2.0, 1.5], coordinate_transformation_mode="asymmetric",
                               nearest_mode="floor")),
    case("resize_nearest_ceil_f16", [("x", f16[2, 5, 7, 3])],
         lambda b, x: b.resize(x, sizes=[2, 9, 4, 3], nearest_mode="round_prefer_ceil")),
    case("resize_nearest_u8", [("x", u8[1, 3, 4, 4])],
         lambda b, x: b.resize(x, scales=[1.0, 1.0, 0.5, 3.0], coordinate_transformation_mode="tf_half_pixel_for_nn")),
    case("resize_linear_f32", [("x", f32[1, 3, 5, 7])], lambda b, x: b.resize(x, scales=[1.0, 1.0, 2.0, 2.0],
                                                                               mode="linear")),
    case("resize_linear_align_corners_down", [("x", f32[2, 4, 6])],
         lambda b, x: b.resize(x, scales=[1.0, 0.6, 0.5], mode="linear", coordinate_transformation_mode="align_corners")),
    case("resize_cubic_pytorch_f32", [("x", f32[2, 3, 4, 5])],
         lambda b, x: b.resize(x, sizes=[2, 3, 7, 9], mode="cubic", coordinate_transformation_mode="pytorch_half_pixel")),
    case("resize_cubic_antialias_exclude", [("x", f32[1, 2, 9, 8])],
         lambda b, x: b.resize(x, scales=[1.0, 1.0, 0.5, 0.75], mode="cubic", antialias=True, exclude_outside=True)),
    case("resize_crop_linear_f32", [("x", f32[1, 2, 6, 6])],
         lambda b, x: b.resize(x, sizes=[1, 2, 5, 4], mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                               roi=[0.0, 0.0, -0.2, 0.1, 1.0, 1.0, 0.9, 1.3], extrapolation_value=7.5)),
    case("resize_linear_i32", [("x", i32[1, 1, 4, 5])], lambda b, x: b.resize(x, scales=[1.0, 1.0, 1.5, 2.5],
                                                                               mode="linear")),
    case("resize_linear_rank5_f16", [("x", f16[1, 2, 3, 4, 3])],
         lambda b, x: b.resize(x, scales=[1.0, 1.0, 2.0, 0.5, 1.5], mode="linear",
                               coordinate_transformation_mode="half_pixel_symmetric")),
    case("resize_linear_rank1", [("x", f32[7])], lambda b, x: b.resize(x, scales=[1.7], mode="linear")),
]
IDS = [c.name for c in CASES]


# -- helpers ---------------------------------------------------------------------------------------------
def check_cover(step: dict[str, Any], source: str) -> None:
    """The grid reaches every work item: grid-stride kernels need min(n, cap) items' blocks."""
    per_block = int(re.search(r"grid-stride: (\d+) work item", source).group(1))
    n = step.args[-1].value
    threads = int(np.prod(step.block))
    assert f"__launch_bounds__({threads})" in source
    assert 1 <= threads <= 1024 and step.grid[1:] == (1, 1)
    assert step.grid[0] * per_block >= min(n, GRID_CAP * per_block), (step.grid, per_block, n)
    assert step.grid[0] <= GRID_CAP


def flat_bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.reshape(-1).view(np.dtype(f"u{a.dtype.itemsize}"))


def replay_copies(program: Program, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Run a program of strided copies and tiled transposes in numpy (None: it has other kernels)."""
    buffers: dict[int, np.ndarray] = {}
    info = {v.id: v for v in program.values}
    for inp in program.inputs:
        buffers[inp.value] = flat_bits(feeds[inp.name])
    for v in program.values:
        if v.kind == "activation":
            size = int(np.prod(v.shape, dtype=np.int64))
            buffers[v.id] = np.full(size, 0xAB, dtype=np.dtype(f"u{v.nbytes // max(size, 1) or 1}"))
    for step in launches(program):
        source = program.kernels[step.kernel].source
        args = step.args
        out, src = buffers[args[0].value], buffers[args[1].value]
        meta = np.array(args[-2].value, dtype=np.int64)
        n = args[-1].value
        copy = re.search(r"strided_copy<[^,]+, [^,]+, (\d+), (true|false)>", source)
        if copy:
            rank = int(copy.group(1))
            dims, ins, outs = meta[:rank], meta[rank:2 * rank], meta[2 * rank:3 * rank]
            ib, ob = meta[3 * rank], meta[3 * rank + 1]
            coords = np.unravel_index(np.arange(n), dims) if rank else ()
            src_at = ib + sum((c * s for c, s in zip(coords, ins)), np.zeros(n, np.int64))
            dst_at = np.arange(n) if copy.group(2) == "true" else \
                ob + sum((c * s for c, s in zip(coords, outs)), np.zeros(n, np.int64))
            out[dst_at] = src[src_at]
        elif "concat_pieces" in source:  # args: out, the pieces (the parameters after it), meta, n
            k = int(re.search(r"concat_pieces<[^,]+, [^,]+, (\d+)>", source).group(1))
            pieces = [buffers[a.value] for a in args[1:1 + k]]
            row, starts = int(meta[0]), meta[1:2 + k]
            c = np.arange(n) % row
            o = np.arange(n) // row
            which = np.searchsorted(starts[1:k], c, side="right")
            for j, piece in enumerate(pieces):
                sel = which == j
                width = starts[j + 1] - starts[j]
                out[np.arange(n)[sel]] = piece[o[sel] * width + c[sel] - starts[j]]
        elif "transpose_tiled" in source:
            rows, cols = args[2].value, args[3].value
            out[:] = src.reshape(-1, rows, cols).transpose(0, 2, 1).reshape(-1)
        else:
            return None
    return {o.name: buffers[o.value] for o in program.outputs if info[o.value].kind == "activation"}


@pytest.fixture(scope="module")
def compiler(kernel_cache: Path) -> Compiler:
    return nvrtc_compiler(kernel_cache)


# -- CPU: lowering, NVRTC, coverage, numpy replay ---------------------------------------------------------------
@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_kernels_compile_and_cover(c: Case, compiler: Compiler) -> None:
    _, program = lowered(c.module())
    assert not program.host_ops, program.host_ops
    steps = launches(program)
    assert bool(steps) == c.launches
    compiler.compile_all(program.kernels.values())
    for step in steps:
        check_cover(step, program.kernels[step.kernel].source)


@pytest.mark.parametrize("c", [c for c in CASES if c.name.startswith(("transpose", "concat", "split", "slice", "expand",
                                                                         "tile", "depth", "space"))],
                         ids=lambda c: c.name)
def test_copies_replayed_in_numpy(c: Case) -> None:
    m, program = lowered(c.module())
    feeds = c.random_feeds(np.random.default_rng(0))
    got = replay_copies(program, feeds)
    assert got is not None, "only strided copies and tiled transposes expected"
    want = ember.interpret(m, feeds)
    for name, value in want.items():
        assert np.array_equal(got[name], flat_bits(value)), name


def test_shape_queries_lower_without_folding() -> None:
    b = Builder("shapes")
    x = b.input("x", f32[2, 3, 4])
    b.output("s", b.shape(x, start=1))
    b.output("n", b.size(x))
    program = lower(b.build())
    assert [s.args[-2].value for s in launches(program)] == [(3, 4), (24,)]


def test_transpose_layout_change_is_tiled() -> None:
    _, program = lowered(CASES[0].module())
    (step,) = launches(program)
    assert "transpose_tiled" in program.kernels[step.kernel].source and step.block == (32, 8, 1)


BIG = 3 * 2**30  # elements: past 2^31, so kernels index in 64 bits
LARGE = [
    case("transpose_big", [("x", f16[3, 5, 2**28])], lambda b, x: b.transpose(x, perm=[1, 0, 2])),
    case("transpose_tiles_big", [("x", u8[3, 2**15, 2**15])], lambda b, x: b.transpose(x, perm=[0, 2, 1])),
    case("pad_big", [("x", u8[3, 2**30])], lambda b, x: b.pad(x, pads=[0, 1, 0, 1], mode="edge")),
    case("gather_big", [("x", f32[2**31, 2]), ("i", i64[4])], lambda b, x, i: b.gather(x, i, axis=0)),
    case("scatter_big", [("x", f32[2**31, 2]), ("i", i64[4, 1]), ("u", f32[4, 2])],
         lambda b, x, i, u: b.scatter_nd(x, i, u, reduction="add")),
    case("resize_big", [("x", f16[1, 3, 2**15, 2**14])], lambda b, x: b.resize(x, scales=[1.0, 1.0, 1.0, 2.0],
                                                                                 mode="linear")),
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


def test_scatter_with_many_rows_goes_to_the_host() -> None:
    b = Builder("scatter")
    x, i, u = b.input("x", f32[8, 4]), b.input("i", i64[70000, 1]), b.input("u", f32[70000, 4])
    b.output("y", b.scatter_nd(x, i, u))
    assert lower(b.build()).host_ops


CONCATS = [c for c in CASES if c.name.startswith("concat")] + [
    case("concat_empty_piece_i8", [("a", i8[2, 3, 4]), ("e", i8[2, 0, 4]), ("c", i8[2, 2, 4])],
         lambda b, a, e, c: b.concat(a, e, c, axis=1)),
    case("concat_eight_f16", [(f"p{k}", f16[3, k + 1, 5]) for k in range(8)],
         lambda b, *ps: b.concat(*ps, axis=1)),
]


@pytest.fixture()
def one_launch_concat(monkeypatch: pytest.MonkeyPatch) -> None:
    from ember.codegen.ops import movement
    monkeypatch.setattr(movement, "CONCAT_ONE_LAUNCH", True)


@pytest.mark.parametrize("c", CONCATS, ids=lambda c: c.name)
def test_a_concat_in_one_launch(c: Case, compiler: Compiler, one_launch_concat: None) -> None:
    m, program = lowered(c.module())
    (step,) = launches(program)
    source = program.kernels[step.kernel].source
    assert "concat_pieces" in source
    compiler.compile_all(program.kernels.values())
    check_cover(step, source)
    feeds = c.random_feeds(np.random.default_rng(0))
    got = replay_copies(program, feeds)
    for name, value in ember.interpret(m, feeds).items():
        assert np.array_equal(got[name], flat_bits(value)), name


@pytest.mark.parametrize("c", CONCATS, ids=lambda c: c.name)
@pytest.mark.gpu
def test_a_concat_in_one_launch_on_gpu(c: Case, one_launch_concat: None) -> None:
    if not gpu_available():
        pytest.fail("no CUDA GPU")
    m = c.module()
    feeds = c.random_feeds(np.random.default_rng())
    want = ember.interpret(m, feeds)
    engine = ember.compile(m, pipeline="canonicalize")
    assert sum("concat_pieces" in k.source for k in engine.kernels.values()) == 1
    got = engine.run(feeds, device="cuda")
    for name, value in want.items():
        assert_close(np.asarray(got[name]), value, what=f"{c.name}: {name}")


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
