"""One builder-made module that uses every registered op, with symbolic and
expression dims, regions, locations, NaN, -0.0 and escaped strings: it prints
and parses back to the same module, and saves and loads with its weights bit
for bit. A new op must add itself to CALLS, or `test_every_op_is_covered` fails.
"""

from types import SimpleNamespace

import numpy as np
import pytest

import ember
from ember import ir
from ember.ir.opdef import REGISTRY


def const(b, value, dtype=None):
    return b.constant(value, dtype)


def unary(name):
    return lambda b, v: b.op(name, v.x)


def binary(name, a="x", c="y"):
    return lambda b, v: b.op(name, getattr(v, a), getattr(v, c))


def text(*items):
    return np.array(items, dtype=object)


def loop_body(rb, i, cond, acc, outer):
    nxt = rb.add(acc, outer, loc="loop/add")
    return rb.less(rb.cast(i, to=ir.i64), rb.constant(np.int64(3))), nxt, rb.relu(nxt)


CALLS = {
    # elementwise (x: f32[N,4], y: f32[4])
    **{n: unary(n) for n in [
        "ember.abs", "ember.acos", "ember.acosh", "ember.asin", "ember.asinh", "ember.atan", "ember.atanh",
        "ember.ceil", "ember.cos", "ember.cosh", "ember.erf", "ember.exp", "ember.floor", "ember.hardswish",
        "ember.isnan", "ember.log", "ember.mish", "ember.neg", "ember.reciprocal", "ember.relu", "ember.round",
        "ember.rsqrt", "ember.sigmoid", "ember.sign", "ember.silu", "ember.sin", "ember.sinh", "ember.softplus",
        "ember.softsign", "ember.sqrt", "ember.tan", "ember.tanh", "ember.identity"]},
    **{n: binary(n) for n in [
        "ember.add", "ember.sub", "ember.mul", "ember.div", "ember.pow", "ember.max", "ember.min", "ember.prelu",
        "ember.equal", "ember.less", "ember.less_equal", "ember.greater", "ember.greater_equal"]},
    **{n: binary(n, "p", "q") for n in ["ember.and", "ember.or", "ember.xor"]},
    **{n: binary(n, "u", "u2") for n in ["ember.bitwise_and", "ember.bitwise_or", "ember.bitwise_xor"]},
    "ember.bitwise_not": lambda b, v: b.bitwise_not(v.u),
    "ember.bit_shift": lambda b, v: b.bit_shift(v.u, v.u2, direction="left"),
    "ember.not": lambda b, v: b.not_(v.p),
    "ember.mod": lambda b, v: b.mod(v.x, v.y, fmod=True),
    "ember.celu": lambda b, v: b.celu(v.x, alpha=0.5),
    "ember.elu": lambda b, v: b.elu(v.x, alpha=-0.0),
    "ember.selu": lambda b, v: b.selu(v.x, alpha=1.5, gamma=float("inf")),
    "ember.leaky_relu": lambda b, v: b.leaky_relu(v.x, alpha=float("nan")),
    "ember.hard_sigmoid": lambda b, v: b.hard_sigmoid(v.x, alpha=0.1, beta=-0.0),
    "ember.thresholded_relu": lambda b, v: b.thresholded_relu(v.x, alpha=1e-05),
    "ember.shrink": lambda b, v: b.shrink(v.x, bias=0.25, lambd=1.5),
    "ember.gelu": lambda b, v: b.gelu(v.x, approximate="tanh"),
    "ember.isinf": lambda b, v: b.isinf(v.x, detect_negative=False),
    "ember.clip": lambda b, v: b.clip(v.x, None, const(b, np.float32(-0.0))),
    "ember.where": lambda b, v: b.where(v.p, v.x, v.y),
    "ember.cast": lambda b, v: b.cast(v.x, to=ir.f8e4m3fn, saturate=False),
    "ember.constant": lambda b, v: const(b, np.array([np.nan, -0.0, np.inf], np.float32)),
    "ember.weight": lambda b, v: b.weight("w:0 \"quoted\"\n", np.array([np.nan, -0.0], np.float32)),
    # nn (img: f32[N,4,H,W])
    "ember.conv": lambda b, v: b.conv(v.img, v.w, v.bias, strides=(2, 2), pads=(1, 1, 1, 1)),
    "ember.conv_transpose": lambda b, v: b.conv_transpose(v.img, v.wt, strides=(2, 2)),
    "ember.max_pool": lambda b, v: b.max_pool(v.img, kernel_shape=(2, 2), strides=(2, 2), ceil_mode=True),
    "ember.max_pool_with_indices": lambda b, v: b.max_pool_with_indices(v.img, kernel_shape=(3, 3)),
    "ember.avg_pool": lambda b, v: b.avg_pool(v.nhwc, kernel_shape=(3, 3), pads=(1, 1, 1, 1), layout="NHWC",
                                              count_include_pad=True),
    "ember.lp_pool": lambda b, v: b.lp_pool(v.img, kernel_shape=(2, 2), p=3),
    "ember.global_avg_pool": lambda b, v: b.global_avg_pool(v.img),
    "ember.global_max_pool": lambda b, v: b.global_max_pool(v.nhwc, layout="NHWC"),
    "ember.global_lp_pool": lambda b, v: b.global_lp_pool(v.img, p=1),
    "ember.depth_to_space": lambda b, v: b.depth_to_space(v.img, blocksize=2, mode="CRD"),
    "ember.space_to_depth": lambda b, v: b.space_to_depth(v.img, blocksize=2),
    "ember.batch_norm": lambda b, v: b.batch_norm(v.img, v.c4, v.c4, v.c4, v.c4, epsilon=1e-3),
    "ember.instance_norm": lambda b, v: b.instance_norm(v.img, v.c4, v.c4),
    "ember.group_norm": lambda b, v: b.group_norm(v.img, v.c4, v.c4, num_groups=2),
    "ember.layer_norm": lambda b, v: b.layer_norm(v.tok, v.d8, None, axis=-1),
    "ember.rms_norm": lambda b, v: b.rms_norm(v.tok, v.d8, epsilon=1e-6),
    "ember.lrn": lambda b, v: b.lrn(v.img, size=3),
    "ember.softmax": lambda b, v: b.softmax(v.tok, axis=1),
    "ember.log_softmax": lambda b, v: b.log_softmax(v.tok),
    "ember.hardmax": lambda b, v: b.hardmax(v.tok, axis=0),
    # reductions
    **{n: (lambda n: lambda b, v: b.op(n, v.tok, axes=(1,), keepdims=False))(n) for n in [
        "ember.reduce_sum", "ember.reduce_mean", "ember.reduce_max", "ember.reduce_min", "ember.reduce_prod",
        "ember.reduce_l1", "ember.reduce_l2", "ember.reduce_log_sum", "ember.reduce_log_sum_exp",
        "ember.reduce_sum_square"]},
    "ember.argmax": lambda b, v: b.argmax(v.tok, axis=-1, select_last_index=True),
    "ember.argmin": lambda b, v: b.argmin(v.tok, axis=1, keepdims=False),
    "ember.cumsum": lambda b, v: b.cumsum(v.tok, axis=1, exclusive=True, reverse=True),
    "ember.topk": lambda b, v: b.topk(v.tok, k=2, axis=-1),
    # linalg and quantization
    "ember.matmul": lambda b, v: b.matmul(v.tok, v.m84),
    "ember.gemm": lambda b, v: b.gemm(v.x, v.m44, v.y, alpha=0.5, trans_b=True),
    "ember.einsum": lambda b, v: b.einsum(v.tok, v.m84, equation="nsd,de->nse"),
    "ember.quantize": lambda b, v: b.quantize(v.x, v.scale, v.zp),
    "ember.dequantize": lambda b, v: b.dequantize(b.quantize(v.x, v.scale, v.zp), v.scale, v.zp),
    "ember.int8_conv": lambda b, v: b.int8_conv(b.quantize(v.nhwc, v.scale, const(b, np.int8(3))),
                                                const(b, np.arange(-48, 48, dtype=np.int8).reshape(6, 2, 2, 4)),
                                                v.scale, const(b, np.full(6, 0.01, np.float32)),
                                                None, const(b, np.int8(3)), v.scale, None, pads=(0, 1, 0, 1),
                                                layout="NHWC", weight_layout="OHWI", relu=True),
    "ember.int8_matmul": lambda b, v: b.int8_matmul(b.quantize(v.tok, v.scale, const(b, np.int8(0))),
                                                    const(b, np.arange(-16, 16, dtype=np.int8).reshape(4, 8)),
                                                    v.scale, const(b, np.float32(0.02)), v.c4, dtype=ir.f16),
    "ember.int8_requantize": lambda b, v: b.int8_requantize(b.quantize(v.x, v.scale, const(b, np.int8(-3))), v.scale,
                                                            const(b, np.int8(-3)), const(b, np.float32(0.1)), None),
    "ember.int8_add": lambda b, v: b.int8_add(b.quantize(v.x, v.scale, const(b, np.int8(0))), v.scale, None,
                                              b.quantize(v.y, v.scale, const(b, np.int8(5))), v.scale,
                                              const(b, np.int8(5)), const(b, np.float32(0.1)), const(b, np.int8(-128)),
                                              relu=True),
    "ember.int8_avg_pool": lambda b, v: b.int8_avg_pool(b.quantize(v.nhwc, v.scale, const(b, np.int8(2))), v.scale,
                                                        const(b, np.int8(2)), v.scale, None, kernel_shape=(3, 3),
                                                        pads=(1, 1, 1, 1), layout="NHWC", count_include_pad=True),
    "ember.int8_global_avg_pool": lambda b, v: b.int8_global_avg_pool(b.quantize(v.img, v.scale, const(b, np.int8(0))),
                                                                      v.scale, None, const(b, np.float32(0.01)),
                                                                      const(b, np.int8(-7))),
    "ember.fp8_conv": lambda b, v: b.fp8_conv(b.quantize(v.nhwc, v.scale, None, dtype=ir.f8e4m3fn),
                                              const(b, np.linspace(-2, 2, 96).astype(ir.f8e5m2.np_dtype)
                                                    .reshape(6, 2, 2, 4)),
                                              v.scale, const(b, np.full(6, 0.01, np.float32)), None,
                                              pads=(0, 1, 0, 1), layout="NHWC", weight_layout="OHWI", relu=True),
    "ember.fp8_matmul": lambda b, v: b.fp8_matmul(b.quantize(v.tok, v.scale, None, dtype=ir.f8e4m3fn),
                                                  const(b, np.linspace(-1, 1, 32).astype(ir.f8e4m3fn.np_dtype)
                                                        .reshape(4, 8)),
                                                  v.scale, const(b, np.float32(0.02)), v.c4, dtype=ir.bf16),
    "ember.dynamic_quantize": lambda b, v: b.dynamic_quantize(v.x),
    # shape and indexing
    "ember.reshape": lambda b, v: b.reshape(v.tok, shape=("N*S", -1)),
    "ember.transpose": lambda b, v: b.transpose(v.tok, perm=(2, 0, 1)),
    "ember.concat": lambda b, v: b.concat(v.x, v.x, axis=0),
    "ember.split": lambda b, v: b.split(v.x, axis=1, sizes=(1, 3)),
    "ember.slice": lambda b, v: b.slice(v.tok, starts=(1,), ends=("S",), axes=(1,)),
    "ember.gather": lambda b, v: b.gather(v.x, v.idx, axis=1),
    "ember.gather_elements": lambda b, v: b.gather_elements(v.m44, v.idx44, axis=0),
    "ember.gather_nd": lambda b, v: b.gather_nd(v.m44, v.idx_nd),
    "ember.scatter_elements": lambda b, v: b.scatter_elements(v.m44, v.idx44, v.m44, axis=1, reduction="max"),
    "ember.scatter_nd": lambda b, v: b.scatter_nd(v.m44, v.idx_nd, b.slice(v.m44, starts=(0,), ends=(2,)),
                                                  reduction="add"),
    "ember.pad": lambda b, v: b.pad(v.x, pads=(0, 1, "N", 2), mode="reflect"),
    "ember.expand": lambda b, v: b.expand(v.y, shape=("N", 1)),
    "ember.tile": lambda b, v: b.tile(v.x, repeats=(2, "N")),
    "ember.shape": lambda b, v: b.shape(v.tok, start=1),
    "ember.size": lambda b, v: b.size(v.tok),
    "ember.range": lambda b, v: b.range(const(b, np.int64(0)), const(b, np.int64(10)), const(b, np.int64(3))),
    "ember.nonzero": lambda b, v: b.nonzero(v.x),
    "ember.nonzero_padded": lambda b, v: b.nonzero_padded(v.x),
    "ember.one_hot": lambda b, v: b.one_hot(v.idx, const(b, np.array([0.0, 1.0], np.float32)), depth=5),
    "ember.trilu": lambda b, v: b.trilu(v.m44, upper=False, k=-1),
    "ember.squeeze": lambda b, v: b.squeeze(v.one, axes=(1,)),
    "ember.unsqueeze": lambda b, v: b.unsqueeze(v.x, axes=(0, -1)),
    "ember.flatten": lambda b, v: b.flatten(v.img, axis=2),
    "ember.resize": lambda b, v: b.resize(v.img, sizes=("N", 4, "2*H", "W"), mode="linear",
                                          coordinate_transformation_mode="align_corners"),
    # control flow and regions
    "ember.fused": lambda b, v: b.fused(v.x, v.y, kind="elementwise \"fused\"", loc=["a", "b\tc"],
                                        body=lambda rb, p, q: rb.tanh(rb.mul(p, q, loc="fused/mul"))),
    "ember.if": lambda b, v: b.if_(v.flag, then_branch=lambda rb: rb.relu(v.x),
                                   else_branch=lambda rb: rb.neg(v.x)),
    "ember.loop": lambda b, v: b.loop(const(b, np.int64(5)), None, v.y,
                                      body=lambda rb, i, c, acc: loop_body(rb, i, c, acc, v.y)),
    # sequences and optionals
    "ember.sequence_construct": lambda b, v: b.sequence_construct(v.x, v.x),
    "ember.sequence_empty": lambda b, v: b.sequence_empty(dtype=ir.bf16),
    "ember.sequence_at": lambda b, v: b.sequence_at(v.seq, const(b, np.int64(-1))),
    "ember.sequence_insert": lambda b, v: b.sequence_insert(v.seq, v.x, None),
    "ember.sequence_erase": lambda b, v: b.sequence_erase(v.seq, const(b, np.int64(0))),
    "ember.sequence_length": lambda b, v: b.sequence_length(v.seq),
    "ember.split_to_sequence": lambda b, v: b.split_to_sequence(v.x, axis=1, split=(1, 3)),
    "ember.concat_from_sequence": lambda b, v: b.concat_from_sequence(v.seq, axis=0, new_axis=True),
    "ember.optional": lambda b, v: b.optional(None, type=ir.f32["N", 4]),
    "ember.optional_has_element": lambda b, v: b.optional_has_element(v.opt),
    "ember.optional_get_element": lambda b, v: b.optional_get_element(b.optional(v.x)),
    # added with the ONNX frontend: shape and indexing
    "ember.bitcast": lambda b, v: b.bitcast(v.x, to=ir.i32),
    "ember.eye_like": lambda b, v: b.eye_like(v.x, k=1, dtype=ir.f16),
    "ember.unique": lambda b, v: b.unique(v.x, sorted=False, axis=0),
    "ember.reverse_sequence": lambda b, v: b.reverse_sequence(v.m44, const(b, np.array([4, 3, 0, 1], np.int64))),
    "ember.tensor_scatter": lambda b, v: b.tensor_scatter(v.m44, b.slice(v.m44, starts=(0,), ends=(2,), axes=(1,)),
                                                          const(b, np.array([0, 1, 2, 3], np.int64)), axis=1,
                                                          mode="circular"),
    "ember.constant_of_shape": lambda b, v: b.constant_of_shape(b.shape(v.x), value=np.array(-0.0, np.float32)),
    "ember.cumprod": lambda b, v: b.cumprod(v.tok, axis=1, exclusive=True),
    "ember.det": lambda b, v: b.det(v.m44),
    # vision
    "ember.conv_integer": lambda b, v: b.conv_integer(b.cast(v.img, to=ir.u8),
                                                      const(b, np.arange(8, dtype=np.int8).reshape(2, 4, 1, 1)),
                                                      v.zp, None, pads=(0, 1, 0, 1)),
    "ember.max_unpool": lambda b, v: b.max_unpool(*b.max_pool_with_indices(v.img, kernel_shape=(2, 2), strides=(2, 2)),
                                                  kernel_shape=(2, 2), strides=(2, 2), output_shape=("H", "W")),
    "ember.deform_conv": lambda b, v: b.deform_conv(v.img, v.w, b.expand(const(b, np.float32(0.25)),
                                                                         shape=("N", 18, "H", "W")),
                                                    v.bias, None, pads=(1, 1, 1, 1)),
    "ember.grid_sample": lambda b, v: b.grid_sample(v.img, b.expand(const(b, np.array([0.5, -0.25], np.float32)),
                                                                    shape=("N", 3, 5, 2)),
                                                    mode="cubic", padding_mode="reflection"),
    "ember.roi_align": lambda b, v: b.roi_align(v.img, const(b, np.array([[0, 0, 2, 2], [1, 0.5, 3, 3]], np.float32)),
                                                const(b, np.array([0, 0], np.int64)), output_height=2,
                                                output_width=2, mode="max"),
    "ember.nms": lambda b, v: b.nms(const(b, np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, 5, 1, 6]]], np.float32)),
                                    const(b, np.array([[[0.9, 0.8, 0.7]]], np.float32)),
                                    max_output_boxes_per_class=2, iou_threshold=0.5, score_threshold=0.1),
    "ember.nms_padded": lambda b, v: b.nms_padded(
        const(b, np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, 5, 1, 6]]], np.float32)),
        const(b, np.array([[[0.9, 0.8, 0.7]]], np.float32)), max_output_boxes_per_class=2, iou_threshold=0.5),
    "ember.head": lambda b, v: b.head(v.tok, const(b, np.array(1, np.int64)), axis=1),
    "ember.col2im": lambda b, v: b.col2im(b.reshape(v.x, shape=("N", 4, 1)), image_shape=(2, 2), block_shape=(2, 2)),
    # attention, recurrent, signal
    "ember.attention": lambda b, v: b.attention(*[b.unsqueeze(v.tok, axes=(1,))] * 3, causal=True,
                                                window=(2, -1), scores="probs"),
    "ember.rotary_embedding": lambda b, v: b.rotary_embedding(v.tok, *[b.split(v.tok, axis=2, sizes=(2, 6))[0]] * 2,
                                                              num_heads=2, interleaved=True),
    "ember.linear_attention": lambda b, v: b.linear_attention(*[b.unsqueeze(v.tok, axes=(1,))] * 3,
                                                              update_rule="linear"),
    "ember.rnn": lambda b, v: b.rnn(v.tok, const(b, np.full((1, 2, 8), 0.1, np.float32)),
                                    const(b, np.full((1, 2, 2), 0.2, np.float32)), batch_first=True,
                                    activations=("leaky_relu",), activation_alpha=(0.5,), activation_beta=(0.0,)),
    "ember.gru": lambda b, v: b.gru(v.tok, const(b, np.full((2, 6, 8), 0.1, np.float32)),
                                    const(b, np.full((2, 6, 2), -0.2, np.float32)), direction="bidirectional",
                                    batch_first=True, linear_before_reset=True),
    "ember.lstm": lambda b, v: b.lstm(v.tok, const(b, np.full((1, 8, 8), 0.1, np.float32)),
                                      const(b, np.full((1, 8, 2), 0.2, np.float32)), batch_first=True,
                                      direction="reverse", clip=0.5),
    "ember.dft": lambda b, v: b.dft(b.unsqueeze(v.x, axes=(2,)), axis=1, onesided=True),
    "ember.stft": lambda b, v: b.stft(b.unsqueeze(v.x, axes=(2,)), frame_step=2, frame_length=2),
    "ember.window": lambda b, v: b.window(kind="blackman", size="S", periodic=False),
    "ember.mel_weight_matrix": lambda b, v: b.mel_weight_matrix(num_mel_bins=4, dft_length=16, sample_rate=8000,
                                                                lower_edge_hertz=0.0, upper_edge_hertz=4000.0),
    # strings and classic ML
    "ember.string_concat": lambda b, v: b.regex_full_match(
        b.string_concat(const(b, text("a \"b\"", "\u7684")), const(b, text("!\t"))), pattern="[a-z \"]+!\\s"),
    "ember.regex_full_match": lambda b, v: b.regex_full_match(const(b, text(["x1", "yy"])), pattern="\\w\\d"),
    "ember.string_split": lambda b, v: b.string_split(const(b, text("a,b", ",,c")), delimiter=",", maxsplit=1)[1],
    "ember.string_normalizer": lambda b, v: b.label_encoder(
        b.string_normalizer(const(b, text("Mon", "tue")), case_change="upper", stopwords=("mon",)),
        keys=text("TUE"), values=np.array([2], np.int64), default=np.array(-1, np.int64)),
    "ember.label_encoder": lambda b, v: b.label_encoder(v.x, keys=np.array([0.5, np.nan], np.float32),
                                                        values=np.array([1, 2], np.int64),
                                                        default=np.array(-1, np.int64)),
    "ember.tfidf_vectorizer": lambda b, v: b.tfidf_vectorizer(
        b.cast(v.u, to=ir.i64), mode="TFIDF", min_gram_length=1, max_gram_length=2, max_skip_count=1,
        ngram_counts=(0, 2), ngram_indexes=(2, 0, 1), pool_int64s=(1, 3, 1, 2), weights=(0.5, 1.0, -0.0)),
    "ember.tree_ensemble": lambda b, v: b.tree_ensemble(
        v.x, nodes_featureids=(0, 3), nodes_splits=np.array([1.0, np.nan], np.float32), nodes_modes=(0, 6),
        nodes_truenodeids=(1, 0), nodes_trueleafs=(0, 1), nodes_falsenodeids=(1, 1), nodes_falseleafs=(1, 1),
        nodes_missing_value_tracks_true=(0, 1), membership_values=np.array([1.0, 2.0, np.nan], np.float32),
        tree_roots=(0,), leaf_targetids=(0, 1), leaf_weights=np.array([-0.0, 2.5], np.float32), n_targets=2,
        aggregate_function="average", post_transform="softmax_zero"),
}


def every_op_module():
    rng = np.random.default_rng(7)
    b = ir.Builder("every op \"module\"")
    b.symbol("N", 1, 16)
    b.symbol("S", 2, 128)
    v = SimpleNamespace()
    v.x = b.input("x", ir.f32["N", 4])
    v.y = b.input("y:0", ir.f32[4])
    v.img = b.input("img", ir.f32["N", 4, "H", "W"])
    v.nhwc = b.input("img_nhwc", ir.f32["N", "H", "W", 4])
    v.tok = b.input("tokens", ir.f32["N", "S", 8])
    v.p = b.input("p", ir.boolean["N", 4])
    v.q = b.input("q", ir.boolean[4])
    v.u = b.input("u", ir.u8["N", 4])
    v.u2 = b.input("u2", ir.u8[4])
    v.flag = b.input("flag", ir.boolean[()])
    v.one = b.input("one", ir.f32["N", 1, 4])
    v.w = b.weight("conv.weight", rng.standard_normal((6, 4, 3, 3)).astype(np.float32))
    v.bias = b.weight("conv.bias", rng.standard_normal(6).astype(np.float32))
    v.wt = b.weight("convT.weight", rng.standard_normal((4, 2, 2, 2)).astype(np.float16).astype(np.float32))
    v.c4 = b.weight("c4", rng.uniform(0.5, 1.5, 4).astype(np.float32))
    v.d8 = b.weight("d8", rng.uniform(0.5, 1.5, 8).astype(np.float32))
    v.m84 = b.weight("m84", rng.standard_normal((8, 4)).astype(np.float32))
    v.m44 = b.weight("m44", rng.standard_normal((4, 4)).astype(np.float32))
    v.scale = const(b, np.float32(0.05))
    v.zp = const(b, np.uint8(128))
    v.idx = const(b, np.array([3, -1, 0], np.int64))
    v.idx44 = const(b, rng.integers(0, 4, (4, 4)).astype(np.int64))
    v.idx_nd = const(b, np.array([[1], [3]], np.int64))
    v.seq = b.sequence_construct(v.x, v.x)
    v.opt = b.optional(v.x)
    outputs = []
    for name in sorted(CALLS):
        result = CALLS[name](b, v)
        results = [result] if isinstance(result, ir.Value) else list(result)
        outputs.extend((f"{name}/{i}", r) for i, r in enumerate(results))
    for name, value in outputs:
        b.output(name, value)
    return b.build()


def test_every_op_is_covered():
    missing = sorted(n for n in REGISTRY if n.startswith("ember.") and n not in CALLS)
    assert not missing, f"add these ops to CALLS: {missing}"


@pytest.fixture(scope="module")
def module():
    return every_op_module()


def test_every_op_module_uses_every_op(module):
    used = {op.name for op in module.walk()}
    assert {n for n in REGISTRY if n.startswith("ember.")} <= used


def test_text_round_trip_of_every_op(module):
    text = str(module)
    again = ir.parse(text)
    assert str(again) == text
    assert ir.structural_diff(module, again, weight_data=False) == []
    assert 'weight "w:0 \\"quoted\\"\\n" : f32[2]' in text
    assert "alpha = nan" in text and "beta = -0.0" in text and "gamma = inf" in text
    assert 'loc("a", "b\\tc")' in text
    assert "f32[N,4,2*H,W]" in text  # an expression dim


def test_save_and_load_of_every_op(module, tmp_path):
    module.save(tmp_path / "every.ir")
    again = ember.load(tmp_path / "every.ir")
    assert ir.structural_diff(module, again) == []
    for name, w in module.weights.items():
        assert again.weights[name].data.tobytes() == w.data.tobytes()
    assert str(again) == str(module)


def random_feeds(module, seed=0, **dims):
    rng = np.random.default_rng(seed)
    feeds = {}
    from ember.ir.dims import evaluate
    for name, v in zip(module.main.input_names, module.main.inputs):
        shape = [evaluate(d, dims) for d in v.type.shape]
        dt = v.type.dtype
        if dt.kind == "bool":
            feeds[name] = rng.random(shape) < 0.5
        elif dt.is_int:
            feeds[name] = rng.integers(0, 4, shape).astype(dt.np_dtype)
        else:
            feeds[name] = rng.uniform(0.5, 2.0, shape).astype(dt.np_dtype)
    return feeds


def test_every_op_runs_and_runs_the_same_after_reload(module, tmp_path):
    module.save(tmp_path / "every.ir")
    again = ember.load(tmp_path / "every.ir")
    feeds = random_feeds(module, N=2, S=3, H=4, W=6)
    first, second = ir.interpret(module, feeds), ir.interpret(again, feeds)
    assert first.keys() == second.keys()
    for name in first:
        a, b = first[name], second[name]
        if isinstance(a, list):
            assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b)), name
        elif a is None:
            assert b is None, name
        elif np.asarray(a).dtype == object:
            assert np.asarray(a).tolist() == np.asarray(b).tolist(), name
        else:
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), name
    assert first["ember.resize/0"].shape == (2, 4, 8, 6)
