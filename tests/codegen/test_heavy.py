"""Heavy-op kernels (matmul, gemm, einsum, conv, conv_transpose, attention) and epilogue fusions.

CPU: every case lowers to launches only (no host step) and NVRTC compiles each kernel
for sm_80 and sm_90 without a warning. GPU (`-m gpu`, on the device): each case runs
through `ember.compile(...).run(..., device="cuda")` on fresh random inputs and matches
`ember.interpret` within the project's tolerances (ember.tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ember
import ember.codegen.ops.heavy as heavy
import ember.passes
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.ir.builder import Builder
from ember.ir.types import DType, bf16, f16, f32, f64, i8, i32, u8
from ember.ir.types import boolean as ir_bool
from ember.tolerance import assert_close
from kernel_checks import gpu_available, nvrtc_compiler

Feeds = dict[str, np.ndarray]


def rand(rng: np.random.Generator, shape: tuple[int, ...], dt: DType = f32, low: float = -1.0,
         high: float = 1.0) -> np.ndarray:
    """Fresh random data, never zeros."""
    if dt.is_int:
        info = np.iinfo(dt.np_dtype)
        return rng.integers(max(info.min, -100), min(info.max, 100) + 1, size=shape).astype(dt.np_dtype)
    return rng.uniform(low, high, size=shape).astype(dt.np_dtype)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[np.random.Generator], tuple[Any, Feeds]]
    pipeline: str = "canonicalize"
    host: bool = False          # expected to run on the host (no kernel for this form)

    def module(self, rng: np.random.Generator) -> tuple[Any, Feeds]:
        module, feeds = self.build(rng)
        if self.pipeline != "canonicalize":
            ember.passes.run_pipeline(module, self.pipeline)
        return module, feeds


def _inputs(rng: np.random.Generator, b: Builder, specs: dict[str, tuple[tuple[int, ...], DType]]
            ) -> tuple[list[Any], Feeds]:
    values, feeds = [], {}
    for name, (shape, dt) in specs.items():
        values.append(b.input(name, dt[shape]))
        feeds[name] = rand(rng, shape, dt)
    return values, feeds


# -- matmul ---------------------------------------------------------------------------------
def matmul_case(sa: tuple[int, ...], sb: tuple[int, ...], dta: DType = f32, dtb: DType | None = None) -> Case:
    def build(rng: np.random.Generator) -> tuple[Any, Feeds]:
        b = Builder("matmul")
        (a, w), feeds = _inputs(rng, b, {"a": (sa, dta), "b": (sb, dtb or dta)})
        b.output("y", b.matmul(a, w))
        return b.build(), feeds
    return Case(f"matmul-{dta}{dtb or ''}-{sa}x{sb}", build)


MATMUL = [
    matmul_case((37, 19), (19, 23)),
    matmul_case((3, 37, 19), (19, 23)),          # folds into one tall product
    matmul_case((2, 1, 5, 7), (3, 7, 9)),        # batch dims broadcast both ways
    matmul_case((7,), (2, 7, 5)),                # 1-d left
    matmul_case((4, 6), (6,)),                   # 1-d right
    matmul_case((6,), (6,)),                     # dot product
    matmul_case((130, 300), (300, 257)),         # K not a multiple of the tile
    matmul_case((3, 0), (0, 2)),                 # empty K: zeros
    matmul_case((2304, 64), (64, 2304)),         # 128x128 tiles
    matmul_case((2, 33, 40), (40, 17), f16),
    matmul_case((2, 33, 40), (40, 17), bf16),
    matmul_case((9, 13), (13, 11), f64),
    matmul_case((5, 70), (70, 6), i8, u8),       # -> i32
    matmul_case((5, 70), (70, 6), i32),          # wraps in i32
]


# -- gemm -----------------------------------------------------------------------------------
def gemm_case(m: int, n: int, k: int, trans_a: bool, trans_b: bool, c: tuple[int, ...] | None,
              alpha: float = 1.0, beta: float = 1.0, dt: DType = f32) -> Case:
    def build(rng: np.random.Generator) -> tuple[Any, Feeds]:
        b = Builder("gemm")
        specs = {"a": ((k, m) if trans_a else (m, k), dt), "b": ((n, k) if trans_b else (k, n), dt)}
        if c is not None:
            specs["c"] = (c, dt)
        vals, feeds = _inputs(rng, b, specs)
        cv = vals[2] if c is not None else None
        b.output("y", b.gemm(vals[0], vals[1], cv, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta))
        return b.build(), feeds
    return Case(f"gemm-{dt}-{m}x{n}x{k}-ta{int(trans_a)}-tb{int(trans_b)}-c{c}-a{alpha}-b{beta}", build)


GEMM = [
    gemm_case(33, 47, 29, False, True, (47,)),
    gemm_case(33, 47, 29, True, False, (33, 1), 0.5, 2.0),
    gemm_case(33, 47, 29, True, True, (), 1.5, -1.0),
    gemm_case(33, 47, 29, False, False, (33, 47)),
    gemm_case(8, 1000, 64, False, True, (1, 1000)),
    gemm_case(17, 19, 23, False, True, (19,), dt=f16),
    gemm_case(7, 9, 11, False, False, (9,), dt=i32),
    gemm_case(7, 9, 11, True, False, (7, 9), 2.0, 3.0, dt=i32),
]


# -- einsum ---------------------------------------------------------------------------------
def einsum_case(eq: str, sa: tuple[int, ...], sb: tuple[int, ...], host: bool = False) -> Case:
    def build(rng: np.random.Generator) -> tuple[Any, Feeds]:
        b = Builder("einsum")
        (a, w), feeds = _inputs(rng, b, {"a": (sa, f32), "b": (sb, f32)})
        b.output("y", b.einsum(a, w, equation=eq))
        return b.build(), feeds
    return Case(f"einsum-{eq}", build, host=host)


EINSUM = [
    einsum_case("bij,bjk->bik", (3, 5, 7), (3, 7, 4)),
    einsum_case("bhid,bhjd->bhij", (2, 3, 9, 8), (2, 3, 11, 8)),
    einsum_case("bhij,bhjd->bhid", (2, 3, 9, 11), (2, 3, 11, 8)),
    einsum_case("ik,kj", (5, 6), (6, 7)),
    einsum_case("ij,jk->ki", (5, 6), (6, 7)),
    einsum_case("abk,kc->abc", (2, 3, 6), (6, 4)),
    einsum_case("ij,ij->i", (5, 6), (5, 6)),
    einsum_case("ii,ij->ij", (5, 5), (5, 6), host=True),   # a diagonal: the host
]


# -- conv -----------------------------------------------------------------------------------
def conv_case(name: str, xs: tuple[int, ...], ws: tuple[int, ...], *, bias: bool = True, dt: DType = f32,
              **attrs: Any) -> Case:
    def build(rng: np.random.Generator) -> tuple[Any, Feeds]:
        b = Builder("conv")
        (x,), feeds = _inputs(rng, b, {"x": (xs, dt)})
        w = b.weight("w", rand(rng, ws, dt))
        c_out = ws[(attrs.get("weight_layout") or "O").index("O")]
        bv = b.weight("bias", rand(rng, (c_out,), dt)) if bias else None
        b.output("y", b.conv(x, w, bv, **attrs))
        return b.build(), feeds
    return Case(f"conv-{name}-{dt}", build)


CONV = [
    conv_case("nchw-stride2", (2, 3, 11, 13), (5, 3, 3, 3), pads=(1, 1, 1, 1), strides=(2, 2)),
    conv_case("nhwc-ohwi", (2, 10, 9, 16), (32, 3, 3, 16), pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI"),
    conv_case("nhwc-ohwi-1x1", (2, 7, 7, 64), (48, 1, 1, 64), layout="NHWC", weight_layout="OHWI", bias=False),
    conv_case("groups2", (1, 8, 7, 7), (32, 4, 3, 3), group=2, pads=(1, 1, 1, 1)),
    conv_case("depthwise-nhwc", (2, 9, 9, 12), (12, 3, 3, 1), group=12, pads=(1, 1, 1, 1), layout="NHWC",
              weight_layout="OHWI"),
    conv_case("depthwise-mult2", (1, 4, 8, 8), (8, 1, 3, 3), group=4, strides=(2, 2)),
    conv_case("dilated", (1, 3, 15, 12), (16, 3, 3, 2), dilations=(2, 3), strides=(2, 1), pads=(2, 0, 1, 3)),
    conv_case("1d", (2, 4, 20), (17, 4, 5), strides=(2,), pads=(2, 1)),
    conv_case("3d", (1, 3, 5, 6, 7), (20, 3, 3, 2, 3), pads=(1, 0, 1, 1, 1, 1)),
    conv_case("same-upper", (1, 3, 10, 10), (4, 3, 3, 3), strides=(2, 2), auto_pad="SAME_UPPER"),
    conv_case("nhwc-f16", (2, 8, 8, 16), (24, 3, 3, 16), pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI",
              dt=f16),
    conv_case("bf16", (1, 16, 6, 6), (16, 16, 3, 3), dt=bf16),
    conv_case("big", (2, 56, 56, 64), (64, 3, 3, 64), pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI"),
]


def conv_transpose_case(name: str, xs: tuple[int, ...], ws: tuple[int, ...], bias: bool = True,
                        **attrs: Any) -> Case:
    def build(rng: np.random.Generator) -> tuple[Any, Feeds]:
        b = Builder("conv_transpose")
        (x,), feeds = _inputs(rng, b, {"x": (xs, f32)})
        w = b.weight("w", rand(rng, ws))
        groups = attrs.get("group", 1)
        bv = b.weight("bias", rand(rng, (ws[1] * groups,))) if bias else None
        b.output("y", b.conv_transpose(x, w, bv, **attrs))
        return b.build(), feeds
    return Case(f"conv_transpose-{name}", build)


CONV_TRANSPOSE = [
    conv_transpose_case("stride2", (1, 4, 5, 5), (4, 3, 3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
                        output_padding=(1, 1)),
    conv_transpose_case("groups-dilated", (2, 4, 6, 6), (4, 2, 3, 3), group=2, dilations=(2, 2), bias=False),
    conv_transpose_case("output-shape", (1, 2, 4, 4), (2, 3, 3, 3), strides=(2, 2), output_shape=(10, 9)),
    conv_transpose_case("1d", (2, 3, 7), (3, 5, 4), strides=(3,), pads=(1, 2)),
    conv_transpose_case("nhwc", (1, 5, 5, 4), (4, 6, 2, 2), strides=(2, 2), layout="NHWC"),
]


# -- attention ------------------------------------------------------------------------------
def attention_case(name: str, qs: tuple[int, ...], ks: tuple[int, ...], dv: int | None = None, *,
                   mask: tuple[tuple[int, ...], str] | None = None, lens: bool = False, dt: DType = f32,
                   empty_row: bool = False, **attrs: Any) -> Case:
    def build(rng: np.random.Generator) -> tuple[Any, Feeds]:
        b = Builder("attention")
        vs = ks[:3] + (dv or ks[3],)
        (q, k, v), feeds = _inputs(rng, b, {"q": (qs, dt), "k": (ks, dt), "v": (vs, dt)})
        m = ln = None
        if mask is not None:
            shape, kind = mask
            if kind == "bool":
                data = rng.random(shape) < 0.7
                if empty_row:
                    data[..., 0, :] = False
                m = b.input("mask", ir_bool[shape])
            else:
                data = rand(rng, shape, f32, -2.0, 2.0)
                data[..., 1] = -np.inf
                m = b.input("mask", f32[shape])
            feeds["mask"] = data
        if lens:
            ln = b.input("kv_lens", i32[(qs[0],)])
            feeds["kv_lens"] = rng.integers(ks[2] // 2, ks[2] + 1, size=(qs[0],)).astype(np.int32)
        res = b.attention(q, k, v, m, ln, **attrs)
        b.output("y", res[0])
        if attrs.get("scores", "none") != "none":
            b.output("scores", res[1])
        return b.build(), feeds
    return Case(f"attention-{name}-{dt}", build)


ATTENTION = [
    attention_case("basic", (2, 4, 17, 16), (2, 4, 23, 16)),
    attention_case("causal", (1, 2, 33, 64), (1, 2, 33, 64), causal=True),
    attention_case("gqa", (2, 8, 9, 32), (2, 2, 12, 32), scale=0.3),
    attention_case("bool-mask", (2, 2, 17, 16), (2, 2, 23, 16), mask=((17, 23), "bool"), empty_row=True),
    attention_case("float-mask", (2, 2, 5, 16), (2, 2, 70, 16), mask=((2, 1, 1, 70), "float")),
    attention_case("lens-bottom-right-window", (3, 2, 4, 16), (3, 2, 40, 16), lens=True, align="bottom_right",
                   causal=True, window=(5, -1)),
    attention_case("softcap", (1, 2, 8, 16), (1, 2, 8, 16), softcap=2.0),
    attention_case("dv", (1, 2, 8, 32), (1, 2, 10, 32), dv=48),
    attention_case("head128", (1, 2, 20, 128), (1, 2, 70, 128)),
    attention_case("f16", (1, 4, 16, 64), (1, 4, 16, 64), dt=f16, causal=True),
    attention_case("bf16", (1, 2, 16, 32), (1, 2, 16, 32), dt=bf16),
    attention_case("scores-raw", (1, 2, 5, 16), (1, 2, 7, 16), scores="raw", causal=True),
    attention_case("scores-probs", (1, 2, 5, 16), (1, 2, 7, 16), scores="probs", mask=((5, 7), "bool"),
                   empty_row=True),
]


# -- epilogue fusions -----------------------------------------------------------------------
def _resnet_block(rng: np.random.Generator) -> tuple[Any, Feeds]:
    """conv (NHWC, OHWI) + bias + relu + residual, then relu: ResNet-50's main kernel."""
    b = Builder("resblock")
    (x, res), feeds = _inputs(rng, b, {"x": ((2, 14, 14, 32), f32), "res": ((2, 14, 14, 48), f32)})
    w = b.weight("w", rand(rng, (48, 3, 3, 32)))
    bias = b.weight("bias", rand(rng, (48,)))
    y = b.conv(x, w, None, pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI")
    y = b.relu(b.add(b.add(y, bias), res))
    b.output("y", y)
    return b.build(), feeds


def _linear_gelu(rng: np.random.Generator) -> tuple[Any, Feeds]:
    """matmul + bias + gelu (BERT's FFN)."""
    b = Builder("ffn")
    (x,), feeds = _inputs(rng, b, {"x": ((2, 13, 64), f32)})
    w = b.weight("w", rand(rng, (64, 96)))
    bias = b.weight("bias", rand(rng, (96,)))
    b.output("y", b.gelu(b.add(b.matmul(x, w), bias)))
    return b.build(), feeds


def _gemm_clip(rng: np.random.Generator) -> tuple[Any, Feeds]:
    """gemm with c, then a clip with constant bounds and a cast to f16."""
    b = Builder("gemm_clip")
    (x,), feeds = _inputs(rng, b, {"x": ((9, 40), f32)})
    w = b.weight("w", rand(rng, (30, 40)))
    c = b.weight("c", rand(rng, (30,)))
    y = b.gemm(x, w, c, trans_b=True)
    y = b.clip(y, b.constant(np.float32(-0.5)), b.constant(np.float32(0.5)))
    b.output("y", b.cast(b.mul(y, b.constant(np.float32(3.0))), to=f16))
    return b.build(), feeds


def _depthwise_hardswish(rng: np.random.Generator) -> tuple[Any, Feeds]:
    b = Builder("dw")
    (x,), feeds = _inputs(rng, b, {"x": ((1, 10, 10, 16), f32)})
    w = b.weight("w", rand(rng, (16, 3, 3, 1)))
    bias = b.weight("bias", rand(rng, (16,)))
    y = b.conv(x, w, bias, group=16, pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI")
    b.output("y", b.hardswish(y))
    return b.build(), feeds


def _attention_scaled(rng: np.random.Generator) -> tuple[Any, Feeds]:
    b = Builder("attn_scaled")
    (q, k, v, r), feeds = _inputs(rng, b, {"q": ((1, 2, 9, 16), f32), "k": ((1, 2, 9, 16), f32),
                                           "v": ((1, 2, 9, 16), f32), "r": ((1, 2, 9, 16), f32)})
    y = b.attention(q, k, v, causal=True)[0]
    b.output("y", b.add(b.mul(y, b.constant(np.float32(2.0))), r))
    return b.build(), feeds


def _matmul_broadcast_rows(rng: np.random.Generator) -> tuple[Any, Feeds]:
    """An epilogue operand broadcast along rows ([M, 1]), read through the general offset."""
    b = Builder("rows")
    (a, w, s), feeds = _inputs(rng, b, {"a": ((3, 10, 12), f32), "w": ((3, 12, 7), f32), "s": ((3, 10, 1), f32)})
    b.output("y", b.sub(b.matmul(a, w), s))
    return b.build(), feeds


def _nchw_conv_channel_add(rng: np.random.Generator) -> tuple[Any, Feeds]:
    """NCHW conv with its own bias, then + a [C, 1, 1] tensor (the general broadcast) and sigmoid."""
    b = Builder("nchw")
    (x, s), feeds = _inputs(rng, b, {"x": ((2, 6, 9, 9), f32), "s": ((20, 1, 1), f32)})
    w = b.weight("w", rand(rng, (20, 6, 3, 3)))
    bias = b.weight("bias", rand(rng, (20,)))
    b.output("y", b.sigmoid(b.add(b.conv(x, w, bias, strides=(2, 2)), s)))
    return b.build(), feeds


def _projection_heads_first(rng: np.random.Generator) -> tuple[Any, Feeds]:
    """matmul + bias stored heads-first (reshape, transpose: the layout tail), attention stored
    back tokens-first (its transpose), then a reshape: no transpose kernel (f16, tensor cores)."""
    b = Builder("heads")
    (x,), feeds = _inputs(rng, b, {"x": ((2, 11, 48), f16)})
    w = b.weight("w", rand(rng, (48, 48), f16))
    bias = b.weight("bias", rand(rng, (48,), f16))
    q = b.transpose(b.reshape(b.add(b.matmul(x, w), bias), shape=[2, 11, 3, 16]), perm=[0, 2, 1, 3])
    y = b.attention(q, q, q)[0]
    b.output("y", b.reshape(b.transpose(y, perm=[0, 2, 1, 3]), shape=[2, 11, 48]))
    return b.build(), feeds


def _projection_back_residual(rng: np.random.Generator) -> tuple[Any, Feeds]:
    """ViT's output projection: a gemm over [tokens * batch, features] stored back as [batch,
    tokens, features] (its layout tail), then the residual added, a scalar taken and relu, on
    the stored grid: one kernel reading the residual where it stores each element (f16)."""
    b = Builder("back_residual")
    (x, res, s), feeds = _inputs(rng, b, {"x": ((7 * 3, 40), f16), "res": ((3, 7, 24), f16), "s": ((), f16)})
    w = b.weight("w", rand(rng, (24, 40), f16))
    bias = b.weight("bias", rand(rng, (24,), f16))
    y = b.transpose(b.reshape(b.gemm(x, w, bias, trans_b=True), shape=[7, 3, 24]), perm=[1, 0, 2])
    b.output("y", b.relu(b.sub(b.add(y, res), s)))
    return b.build(), feeds


def _conv_to_channels_last(rng: np.random.Generator) -> tuple[Any, Feeds]:
    """An NCHW conv + relu stored channels last through its layout tail."""
    b = Builder("nchw_to_nhwc")
    (x,), feeds = _inputs(rng, b, {"x": ((2, 5, 7, 6), f32)})
    w = b.weight("w", rand(rng, (9, 5, 3, 3)))
    b.output("y", b.transpose(b.relu(b.conv(x, w, None, pads=(1, 1, 1, 1))), perm=[0, 2, 3, 1]))
    return b.build(), feeds


FUSED = [
    Case("fused-matmul-heads-first-attention-back", _projection_heads_first, pipeline="fuse-epilogue"),
    Case("fused-gemm-back-then-residual", _projection_back_residual, pipeline="fuse-epilogue"),
    Case("fused-conv-relu-to-channels-last", _conv_to_channels_last, pipeline="fuse-epilogue"),
    Case("fused-conv-bias-relu-residual", _resnet_block, pipeline="fuse-epilogue"),
    Case("fused-matmul-bias-gelu", _linear_gelu, pipeline="fuse-epilogue"),
    Case("fused-gemm-clip-scale-cast", _gemm_clip, pipeline="fuse-epilogue"),
    Case("fused-depthwise-hardswish", _depthwise_hardswish, pipeline="fuse-epilogue"),
    Case("fused-attention-scale-residual", _attention_scaled, pipeline="fuse-epilogue"),
    Case("fused-matmul-row-broadcast", _matmul_broadcast_rows, pipeline="fuse-epilogue"),
    Case("fused-nchw-conv-channel-add", _nchw_conv_channel_add, pipeline="fuse-epilogue"),
]

CASES = MATMUL + GEMM + EINSUM + CONV + CONV_TRANSPOSE + ATTENTION + FUSED


# -- CPU: lowering and NVRTC ----------------------------------------------------------------
@pytest.fixture(scope="module")
def compiler(kernel_cache: Path) -> Compiler:
    return nvrtc_compiler(kernel_cache)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_lowers_to_kernels_that_compile(case: Case, compiler: Compiler) -> None:
    module, _ = case.module(np.random.default_rng(0))
    program = lower(module)
    if case.host:
        assert program.host_ops, "expected a host fallback"
        return
    assert not program.host_ops, program.host_ops
    assert any(s.kind == "launch" for s in program.steps)
    compiler.compile_all(program.kernels.values())


def test_fused_cases_are_fused() -> None:
    """The fusion cases really hold one epilogue fusion per heavy op (so the GPU test covers the
    fused kernels), and one launch each: layout tails leave no transpose kernel."""
    for case in FUSED:
        module, _ = case.module(np.random.default_rng(0))
        heavy = 2 if "attention-back" in case.name else 1
        kinds = [op.attributes.get("kind") for op in module.main.body.ops if op.name == "ember.fused"]
        assert kinds == ["epilogue"] * heavy, (case.name, kinds)
        program = lower(module)
        launches = [s for s in program.steps if s.kind == "launch"]
        assert len(launches) == heavy and not program.host_ops, case.name


def test_kernels_name_their_ops_and_keep_sizes_out_of_the_source() -> None:
    """Shapes are parameters: two sizes of one matmul share one kernel source."""
    sources = set()
    for shape in ((37, 19), (41, 19)):
        case = matmul_case(shape, (19, 23))
        program = lower(case.module(np.random.default_rng(0))[0])
        (kernel,) = program.kernels.values()
        assert "ember.matmul" in kernel.source
        sources.add(kernel.source)
    assert len(sources) == 1


HEAVY_KERNELS = {"gemm", "conv", "conv_direct", "conv_t", "attention", "attention_scores"}


def fixture_programs() -> list[tuple[str, Any, Any]]:
    """(path, module, program) of each ONNX fixture after the default pipeline, at its inputs' shapes."""
    import glob

    from ember.build import bind_shapes

    out = []
    for path in sorted(glob.glob("tests/fixtures/onnx/*.onnx")):
        module = ember.load(path)
        ember.passes.run_pipeline(module, "default")
        with np.load(path.replace(".onnx", ".inputs.npz")) as data:
            shapes = {name: data[name].shape for name in data.files if name in module.main.input_names}
        out.append((path, module, lower(module, bind_shapes(module, shapes))))
    return out


def test_default_pipeline_fixtures_lower_heavy_ops() -> None:
    """After the default pipeline, no heavy op or epilogue fusion of the fixtures falls back to the host."""
    for path, module, program in fixture_programs():
        ops = module.main.body.ops
        for step in program.steps:
            if step.kind != "host":
                continue
            op = ops[step.ops[0]]
            heavy = op.name in ("ember.matmul", "ember.gemm", "ember.conv", "ember.attention", "ember.einsum") or \
                (op.name == "ember.fused" and op.attributes.get("kind") == "epilogue")
            assert not heavy, f"{path}: {op.name} on the host: {step['reason']}"


@pytest.mark.slow
def test_fixture_heavy_kernels_compile(compiler: Compiler) -> None:
    """Every heavy kernel of the fixtures compiles for sm_80 and sm_90 (about a minute on two cores)."""
    kernels = {k.name: k for _, _, program in fixture_programs() for k in program.kernels.values()
               if k.entry_hint in HEAVY_KERNELS}
    assert kernels
    compiler.compile_all(kernels.values())


# -- GPU: against the interpreter -----------------------------------------------------------
def run_on_gpu(module: Any, feeds: Feeds, pipeline: str) -> dict[str, np.ndarray]:
    engine = ember.compile(module, pipeline=pipeline)
    return engine.run(feeds, device="cuda")


@pytest.mark.parametrize("case", [c for c in CASES if not c.host], ids=lambda c: c.name)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_gpu_matches_interpreter(case: Case) -> None:
    module, feeds = case.build(np.random.default_rng())
    expected = ember.interpret(module, feeds)
    got = run_on_gpu(module, feeds, case.pipeline)
    for name, ref in expected.items():
        assert_close(np.asarray(got[name]), np.asarray(ref), what=f"{case.name}: {name}")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_gpu_gemm_4096_cubed_spot_check() -> None:
    """fp32 4096^3: a few rows against numpy in f64."""
    rng = np.random.default_rng()
    n = 4096
    b = Builder("gemm4096")
    a = b.input("a", f32[n, n])
    w = b.input("b", f32[n, n])
    b.output("y", b.matmul(a, w))
    feeds = {"a": rand(rng, (n, n)), "b": rand(rng, (n, n))}
    got = np.asarray(run_on_gpu(b.build(), feeds, "canonicalize")["y"])
    rows = rng.choice(n, size=8, replace=False)
    ref = feeds["a"][rows].astype(np.float64) @ feeds["b"].astype(np.float64)
    assert_close(got[rows].astype(np.float64), ref, rtol=1e-4, atol=1e-3, what="4096^3 rows")


@pytest.mark.parametrize("targets, tile", [(("sm_80",), "tile128x128x8/8x8"), (("sm_80", "sm_90"), "tile64x64x16/4x4")])
def test_the_build_target_steers_the_tile(targets: tuple[str, ...], tile: str) -> None:
    """1920x1920 is 225 big tiles: twice over an A100's 108 SMs, not an H100's 132. The build's
    newest target is the GPU the heuristic fills."""
    from ember.build import _newest
    b = Builder("mm")
    x, w = b.input("x", f32[1920, 64]), b.input("w", f32[64, 1920])
    b.output("y", b.matmul(x, w))
    program = lower(b.build(), target=_newest(targets))
    (step,) = [s for s in program.steps if s.kind == "launch"]
    assert step.tactic == tile and set(step.candidates) == {"tile128x128x8/8x8", "tile64x64x16/4x4"}


# -- the tensor-core attention kernel ---------------------------------------------------------
# ember_attention.cuh `flash_mma` (mma.sync m16n8k16, f32 accumulation, the online softmax in the
# accumulators' layout) for f16 and bf16 with head sizes that are multiples of 16 up to 128. The
# planner takes it with `heavy.ATTENTION_MMA` on (the default since it passed these tests on an
# H100); the tests turn it on whatever the default. CPU: which attentions take it (and which keep the SIMT kernel), every case compiled
# for sm_80 and sm_90. GPU: each case against the interpreter by the f16/bf16 rule, with masks (a
# fully masked row included), causal, grouped heads, kv_lens with a window, softcap, keys and
# queries that do not fill a tile, and BERT's shape.
MMA_CASES = [
    attention_case("mma-basic", (2, 4, 17, 16), (2, 4, 23, 16), dt=f16),
    attention_case("mma-causal", (1, 2, 33, 64), (1, 2, 33, 64), dt=bf16, causal=True),
    attention_case("mma-gqa", (2, 8, 9, 32), (2, 2, 12, 32), dt=f16, scale=0.3),
    attention_case("mma-bool-mask", (2, 2, 17, 16), (2, 2, 23, 16), dt=f16, mask=((17, 23), "bool"), empty_row=True),
    attention_case("mma-float-mask", (2, 2, 5, 48), (2, 2, 70, 48), dt=bf16, mask=((2, 1, 1, 70), "float")),
    attention_case("mma-lens-bottom-right-window", (3, 2, 4, 16), (3, 2, 40, 16), dt=f16, lens=True,
                   align="bottom_right", causal=True, window=(5, -1)),
    attention_case("mma-softcap", (1, 2, 8, 32), (1, 2, 8, 32), dt=f16, softcap=2.0),
    attention_case("mma-head128", (1, 2, 20, 128), (1, 2, 70, 128), dt=f16),
    attention_case("mma-many-query-blocks", (1, 3, 130, 64), (1, 3, 129, 64), dt=bf16, causal=True),
    attention_case("mma-bert", (2, 12, 128, 64), (2, 12, 128, 64), dt=f16, mask=((2, 1, 1, 128), "float")),
]
SIMT_CASES = [  # the kernel's limits: f32, Dv != D, a head size not a multiple of 16, past 128
    attention_case("f32", (1, 2, 16, 32), (1, 2, 16, 32)),
    attention_case("dv", (1, 2, 8, 32), (1, 2, 10, 32), dt=f16, dv=48),
    attention_case("d40", (1, 2, 8, 40), (1, 2, 8, 40), dt=f16),
    attention_case("d256", (1, 2, 8, 256), (1, 2, 8, 256), dt=f16),
]


@pytest.fixture
def mma_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "ATTENTION_MMA", True)


def attention_templates(module) -> list[str]:
    program = lower(module)
    return [k.source for k in program.kernels.values() if "ember::attention::" in k.source]


@pytest.mark.parametrize("case", MMA_CASES, ids=lambda c: c.name)
def test_half_attention_takes_the_tensor_core_kernel(case, mma_on, kernel_cache: Path) -> None:
    module, _ = case.build(np.random.default_rng(0))
    program = lower(module)
    (source,) = [k.source for k in program.kernels.values() if "ember::attention::" in k.source]
    assert "ember::attention::flash_mma<" in source
    nvrtc_compiler(kernel_cache).compile_all(program.kernels.values())


@pytest.mark.parametrize("case", SIMT_CASES, ids=lambda c: c.name)
def test_other_attention_keeps_the_simt_kernel(case, mma_on) -> None:
    module, _ = case.build(np.random.default_rng(0))
    (source,) = attention_templates(module)
    assert "ember::attention::flash<" in source and "flash_mma" not in source


def test_half_attention_takes_the_tensor_core_kernel_by_default() -> None:
    module, _ = MMA_CASES[0].build(np.random.default_rng(0))
    (source,) = attention_templates(module)
    assert "ember::attention::flash_mma<" in source


def test_four_warps_where_blocks_fill_the_gpu_two_otherwise(mma_on) -> None:
    small, _ = attention_case("s", (1, 2, 64, 64), (1, 2, 64, 64), dt=f16).build(np.random.default_rng(0))
    big, _ = attention_case("b", (32, 12, 128, 64), (32, 12, 128, 64), dt=f16).build(np.random.default_rng(0))
    assert "flash_mma<2, 64," in attention_templates(small)[0]
    assert "flash_mma<4, 64," in attention_templates(big)[0]


@pytest.mark.parametrize("case", MMA_CASES, ids=lambda c: c.name)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_tensor_core_attention_matches_the_interpreter_on_the_gpu(case, mma_on) -> None:
    for seed in (None, None):
        module, feeds = case.build(np.random.default_rng(seed))
        engine = ember.compile(module, pipeline=case.pipeline)
        assert any("flash_mma" in k.source for k in engine.kernels.values())
        expected = ember.interpret(module, feeds)
        got = engine.run(feeds, device="cuda")
        for name, ref in expected.items():
            assert_close(np.asarray(got[name]), np.asarray(ref), what=f"{case.name}: {name}")
