"""Non-max suppression on the GPU: ember.nms becomes ember.nms_padded (two launches: greedy
selection per image and class, then the rows laid out with their count) and an ember.head
whose size step reads back only the count (passes/bound_data_sizes.py); NonZero the same way
(ember.nonzero_padded, one launch, and a head on axis 1). And RoI align, one thread per output
element, channels first or last.

CPU (CI): the program has no host step, the size step reads the 8-byte count and nothing
else, and every kernel compiles for sm_80 and sm_90. GPU: each case against the
interpreter on fresh random boxes, exactly (the kernels compute IoU as the reference does),
including no box surviving and every box surviving."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ember
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.ir.builder import Builder
from ember.ir.core import Module
from ember.ir.types import Type, boolean, f16, f32, f64, i32, i64, u8
from ember.tolerance import assert_close
from ember.passes.manager import PassManager
from kernel_checks import gpu_available, launches, nvrtc_compiler

PIPELINE = "canonicalize,bound-data-sizes"


def corner_boxes(batch: int, m: int, dtype: Any, spread: float = 10.0, size: float = 4.0, flip: bool = False
                 ) -> Callable[[np.random.Generator], np.ndarray]:
    """[y1, x1, y2, x2] boxes crowded enough to overlap (either diagonal with `flip`)."""
    def make(rng: np.random.Generator) -> np.ndarray:
        low = rng.uniform(0, spread, (batch, m, 2))
        high = low + rng.uniform(0.2, size, (batch, m, 2))
        boxes = np.concatenate([low, high], axis=2)
        if flip:
            swap = rng.random((batch, m)) < 0.5
            boxes[swap] = boxes[swap][:, [2, 3, 0, 1]]
        return boxes.astype(dtype)
    return make


def center_boxes(batch: int, m: int, dtype: Any) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        centers = rng.uniform(0, 8, (batch, m, 2))
        sizes = rng.uniform(0.5, 3, (batch, m, 2))
        return np.concatenate([centers, sizes], axis=2).astype(dtype)
    return make


def uniform_scores(shape: tuple[int, ...], dtype: Any, ties: bool = False) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        s = rng.uniform(0, 1, shape)
        return (np.round(s * 4) / 4 if ties else s).astype(dtype)
    return make


@dataclass
class Case:
    name: str
    boxes: Type
    scores: Type
    attrs: dict[str, Any]
    feeds: dict[str, Callable[[np.random.Generator], np.ndarray]] = field(default_factory=dict)

    def module(self) -> Module:
        b = Builder(self.name)
        boxes, scores = b.input("boxes", self.boxes), b.input("scores", self.scores)
        b.output("selected", b.nms(boxes, scores, **self.attrs))
        return b.build()

    def random_feeds(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {n: make(rng) for n, make in self.feeds.items()}


def case(name: str, batch: int, classes: int, m: int, attrs: dict[str, Any], dtype: Any = f32,
         score_dtype: Any = None, boxes: Callable[..., Any] = corner_boxes, ties: bool = False) -> Case:
    sd = score_dtype or dtype
    return Case(name, dtype[batch, m, 4], sd[batch, classes, m], attrs,
                {"boxes": boxes(batch, m, dtype.np_dtype),
                 "scores": uniform_scores((batch, classes, m), sd.np_dtype, ties)})


CASES = [
    case("limit_per_class", 2, 3, 50, {"max_output_boxes_per_class": 7, "iou_threshold": 0.4,
                                       "score_threshold": 0.2}),
    case("every_box_kept", 1, 2, 40, {"max_output_boxes_per_class": 100, "iou_threshold": 1.0}),
    case("no_box_survives", 2, 2, 30, {"max_output_boxes_per_class": 5, "iou_threshold": 0.5,
                                       "score_threshold": 1.5}),
    case("center_boxes", 2, 4, 64, {"max_output_boxes_per_class": 10, "iou_threshold": 0.3,
                                    "score_threshold": 0.1, "center_point_box": True}, boxes=center_boxes),
    case("flipped_corners_tied_scores", 1, 3, 80, {"max_output_boxes_per_class": 20, "iou_threshold": 0.5},
         boxes=lambda b, m, dt: corner_boxes(b, m, dt, flip=True), ties=True),
    case("f16_boxes_and_scores", 1, 2, 200, {"max_output_boxes_per_class": 30, "iou_threshold": 0.6,
                                             "score_threshold": 0.05}, dtype=f16),
    case("f64_scores", 1, 2, 60, {"max_output_boxes_per_class": 8, "iou_threshold": 0.45}, score_dtype=f64),
    case("many_boxes_no_limit", 1, 1, 3000, {"max_output_boxes_per_class": 2**63 - 1, "iou_threshold": 0.55}),
    case("detector_sized", 4, 20, 1000, {"max_output_boxes_per_class": 100, "iou_threshold": 0.5,
                                         "score_threshold": 0.3}),
]
IDS = [c.name for c in CASES]


def lowered(module: Module):
    PassManager(PIPELINE).run(module)
    return module, lower(module)


@pytest.fixture(scope="module")
def compiler(kernel_cache: Path) -> Compiler:
    return nvrtc_compiler(kernel_cache)


# -- CPU: lowering, NVRTC --------------------------------------------------------------------------------
@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_nms_has_no_host_step_and_reads_back_only_its_count(c: Case, compiler: Compiler) -> None:
    assert_padded_with_a_count(c.module(), "ember.nms", ["nms_select", "nms_gather", "head"], compiler)


def assert_padded_with_a_count(module: Module, op: str, hints: list[str], compiler: Compiler) -> None:
    """`op` became its padded form: no host step, kernels `hints` in order, and one size step
    reading a scalar i64 count; every kernel compiles."""
    module, program = lowered(module)
    assert not program.host_ops, program.host_ops
    names = [o.name for o in module.main.body.ops]
    assert op not in names and names.count(f"{op}_padded") == 1
    sizes = [s for s in program.steps if s.kind == "size"]
    assert len(sizes) == 1
    (read,) = sizes[0].reads
    count = program.values[read]
    assert count.dtype == "i64" and count.shape == () and count.kind == "activation"
    assert [program.kernels[s.kernel].entry_hint for s in launches(program)] == hints
    compiler.compile_all(program.kernels.values())


def test_the_host_arena_engine_matches_the_interpreter() -> None:
    c = CASES[0]
    feeds = c.random_feeds(np.random.default_rng(3))
    engine = ember.compile(c.module())
    assert not engine.report.host_ops
    got = engine.run(feeds)["selected"]
    want = ember.interpret(c.module(), feeds)["selected"]
    assert got.dtype == np.int64 and np.array_equal(got, want) and len(want) > 0


# -- GPU: against the interpreter --------------------------------------------------------------------------
@pytest.mark.parametrize("c", CASES, ids=IDS)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_on_gpu(c: Case) -> None:
    m = c.module()
    engine = ember.compile(m)
    for seed in (None, None):
        feeds = c.random_feeds(np.random.default_rng(seed))
        want = ember.interpret(m, feeds)["selected"]
        got = np.asarray(engine.run(feeds, device="cuda")["selected"])
        assert got.shape == want.shape and np.array_equal(got, want), (c.name, got[:10], want[:10])
        if c.name == "no_box_survives":
            assert want.shape == (0, 3)
        if c.name == "every_box_kept":
            assert want.shape == (80, 3)


# -- NonZero at its bound -------------------------------------------------------------------------
def sparse(shape: tuple[int, ...], dtype: Any, density: float) -> Callable[[np.random.Generator], np.ndarray]:
    """Random nonzero values at about `density` of the positions; zeros of both signs elsewhere."""
    def make(rng: np.random.Generator) -> np.ndarray:
        x = rng.uniform(0.5, 9, shape) * rng.choice([-1, 1], shape)
        x = np.where(rng.random(shape) < density, x, rng.choice([0.0, -0.0], shape))
        return x.astype(dtype)
    return make


NONZERO_CASES = [  # (name, input type, feed)
    ("f32_sparse", f32[37, 45], sparse((37, 45), np.float32, 0.3)),
    ("bool_none", boolean[5, 7], lambda rng: np.zeros((5, 7), bool)),
    ("i32_all_many_chunks", i32[3, 1100], lambda rng: rng.integers(1, 9, (3, 1100)).astype(np.int32)),
    ("f16_nan_signed_zeros", f16[2500], lambda rng: np.where(rng.random(2500) < 0.1, np.nan,
                                                             sparse((2500,), np.float16, 0.2)(rng)).astype(np.float16)),
    ("u8_rank3", u8[4, 33, 35], lambda rng: (rng.random((4, 33, 35)) < 0.5) * rng.integers(1, 255, (4, 33, 35)).astype(np.uint8)),
    ("one_element_set", f32[1], lambda rng: np.array([rng.uniform(1, 2)], np.float32)),
]
NONZERO_IDS = [c[0] for c in NONZERO_CASES]


def nonzero_module(name: str, t: Type, padded: bool = False) -> Module:
    """The coordinates (and, with `padded`, the padded pair itself as two more outputs)."""
    b = Builder(name)
    x = b.input("x", t)
    b.output("i", b.nonzero(x))
    if padded:
        columns, count = b.nonzero_padded(x)
        b.output("columns", columns)
        b.output("count", count)
    return b.build()


@pytest.mark.parametrize("name, t, feed", NONZERO_CASES, ids=NONZERO_IDS)
def test_nonzero_has_no_host_step_and_reads_back_only_its_count(name, t, feed, compiler: Compiler) -> None:
    assert_padded_with_a_count(nonzero_module(name, t), "ember.nonzero", ["nonzero_padded", "head"], compiler)


def test_a_scalar_nonzero_keeps_its_own_form() -> None:
    b = Builder("scalar")
    b.output("i", b.nonzero(b.input("x", f32[()])))
    module, _ = lowered(b.build())
    assert [op.name for op in module.main.body.ops] == ["ember.nonzero"]


def test_the_nonzero_host_arena_engine_matches_the_interpreter() -> None:
    name, t, feed = NONZERO_CASES[0]
    module = nonzero_module(name, t, padded=True)
    engine = ember.compile(module)
    assert not engine.report.host_ops
    for seed in range(3):
        feeds = {"x": feed(np.random.default_rng(seed))}
        got, want = engine.run(feeds), ember.interpret(module, feeds)
        for k in want:
            assert got[k].dtype == np.int64 and np.array_equal(got[k], want[k]), k
        assert (want["columns"][:, int(want["count"]):] == -1).all() and want["i"].shape[1] == int(want["count"])


@pytest.mark.parametrize("name, t, feed", NONZERO_CASES, ids=NONZERO_IDS)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_nonzero_on_gpu(name, t, feed) -> None:
    module = nonzero_module(name, t, padded=True)
    engine = ember.compile(module)
    for seed in (None, None):
        feeds = {"x": feed(np.random.default_rng(seed))}
        want = ember.interpret(module, feeds)
        got = {k: np.asarray(v) for k, v in engine.run(feeds, device="cuda").items()}
        for k in want:
            assert got[k].shape == want[k].shape and np.array_equal(got[k], want[k]), (name, k)
        if name == "bool_none":
            assert want["i"].shape == (2, 0)
        if name == "i32_all_many_chunks":
            assert want["i"].shape == (2, 3300)


# -- RoI align ------------------------------------------------------------------------------------
ROI_CASES = [  # (name, dtype, attrs)
    ("avg_adaptive_half_pixel", f32, {"output_height": 3, "output_width": 4, "spatial_scale": 0.5}),
    ("max_fixed_grid_output_half_pixel", f32, {"output_height": 2, "output_width": 2, "spatial_scale": 0.25,
                                               "mode": "max", "sampling_ratio": 2,
                                               "coordinate_transformation_mode": "output_half_pixel"}),
    ("f16_avg", f16, {"output_height": 7, "output_width": 7, "spatial_scale": 1.0, "sampling_ratio": 2}),
    ("f64_max", f64, {"output_height": 2, "output_width": 3, "spatial_scale": 0.5, "mode": "max"}),
]


def roi_module(name: str, dt: Any, attrs: dict[str, Any], index_type: Any = i64) -> Module:
    b = Builder(name)
    x = b.input("x", dt[2, 5, 12, 14])
    rois = b.input("rois", dt[6, 4])
    idx = b.input("idx", index_type[6])
    b.output("y", b.roi_align(x, rois, idx, **attrs))
    return b.build()


def roi_feeds(dt: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    low = rng.uniform(-4, 20, (6, 2))  # some RoIs start outside the image (samples there count 0)
    rois = np.concatenate([low, low + rng.uniform(0.5, 16, (6, 2))], axis=1)
    return {"x": rng.standard_normal((2, 5, 12, 14)).astype(dt.np_dtype), "rois": rois.astype(dt.np_dtype),
            "idx": rng.integers(0, 2, 6)}


@pytest.mark.parametrize("name, dt, attrs", ROI_CASES, ids=[c[0] for c in ROI_CASES])
@pytest.mark.parametrize("pipeline", ["canonicalize", "default"])  # channels first; last (layout-nhwc)
def test_roi_align_is_a_kernel(name, dt, attrs, pipeline, compiler: Compiler) -> None:
    module = roi_module(name, dt, attrs)
    PassManager(pipeline).run(module)
    program = lower(module)
    assert not program.host_ops and any(program.kernels[s.kernel].entry_hint == "roi_align"
                                        for s in launches(program))
    compiler.compile_all(program.kernels.values())


@pytest.mark.parametrize("name, dt, attrs", ROI_CASES, ids=[c[0] for c in ROI_CASES])
@pytest.mark.parametrize("pipeline", ["canonicalize", "default"])
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_roi_align_on_gpu(name, dt, attrs, pipeline) -> None:
    module = roi_module(name, dt, attrs, index_type=i32 if dt is f64 else i64)
    engine = ember.compile(module, pipeline=pipeline)
    feeds = roi_feeds(dt, np.random.default_rng())
    if dt is f64:
        feeds["idx"] = feeds["idx"].astype(np.int32)
    want = ember.interpret(module, feeds)["y"]
    assert_close(np.asarray(engine.run(feeds, device="cuda")["y"]), want, what=name)
