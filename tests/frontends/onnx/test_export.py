"""Export back to ONNX: the exported model passes onnx's checker and runs on
onnxruntime with the same results as Ember's interpreter."""

import ml_dtypes
import numpy as np
import onnx
import pytest

from ember import ir
from ember.errors import UnsupportedOpError
from ember.frontends.onnx import export, import_model
from ember.ir.examples import attention_block, cnn_block
from ember.ir.opdef import Op, Operand, Result, register_op
from ember.tolerance import assert_close


def run_ort(model, feeds):
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


@pytest.mark.parametrize("build,feeds", [
    (cnn_block, {"image": np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)}),
    (attention_block, {"tokens": np.random.default_rng(1).standard_normal((2, 7, 32)).astype(np.float32)}),
])
def test_examples_export_and_match_onnxruntime(build, feeds):
    module = build()
    proto = export(module)
    onnx.checker.check_model(proto, full_check=True)
    want = ir.interpret(module, feeds)
    got = run_ort(proto, feeds)
    for name in want:
        assert_close(got[name], want[name], what=name)
    # symbolic dims stay symbolic in the exported signature
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_nhwc_conv_exports_with_transposes_and_weights_keep_their_names():
    rng = np.random.default_rng(2)
    b = ir.Builder("nhwc")
    x = b.input("x", ir.f32["N", 8, 8, 3])
    w = b.weight("conv.w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32).transpose(0, 2, 3, 1).copy())
    y = b.conv(x, w, pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI")
    b.output("y", b.max_pool(b.relu(y), kernel_shape=(2, 2), strides=(2, 2), layout="NHWC"))
    module = b.build()
    proto = export(module)
    assert [t.name for t in proto.graph.initializer if t.name == "conv.w"] == ["conv.w"]
    feeds = {"x": rng.standard_normal((2, 8, 8, 3)).astype(np.float32)}
    assert_close(run_ort(proto, feeds)["y"], ir.interpret(module, feeds)["y"])


def test_symbolic_reshape_becomes_a_shape_computation():
    b = ir.Builder("r")
    x = b.input("x", ir.f32["N", "S", 4])
    b.output("y", b.reshape(x, shape=("N*S", 4)))
    module = b.build()
    proto = export(module)
    x_ = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
    np.testing.assert_array_equal(run_ort(proto, {"x": x_})["y"], x_.reshape(10, 4))


def test_import_export_round_trip():
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1, alpha=0.5),
             helper.make_node("Sigmoid", ["h"], ["s"]), helper.make_node("Mul", ["h", "s"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, ["B", 4])],
                                                [helper.make_tensor_value_info("y", 1, ["B", 4])], [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    module = import_model(model)
    feeds = {"x": rng.standard_normal((3, 4)).astype(np.float32)}
    assert_close(run_ort(export(module), feeds)["y"], run_ort(model, feeds)["y"])


@register_op("test.no_onnx_form")
class NoOnnxForm(Op):
    """An op that exists only in these tests, with no ONNX counterpart."""
    x = Operand()
    out = Result()

    def infer(self, x):
        return x

    @staticmethod
    def reference(x):
        return x


def test_ops_without_an_onnx_form_are_listed_all_at_once():
    b = ir.Builder()
    x = b.input("x", ir.f32[4])
    y = b.op("test.no_onnx_form", b.relu(x), loc="first")
    b.output("y", b.op("test.no_onnx_form", y, loc="second"))
    with pytest.raises(UnsupportedOpError) as info:
        export(b.build())
    text = str(info.value)
    assert text.startswith("2 ops cannot be exported to ONNX:")
    assert "test.no_onnx_form at first: no ONNX form" in text and "test.no_onnx_form at second" in text


# -- one exporter per op: export, check, run on onnxruntime (or onnx.reference), compare --------------------
RNG = np.random.default_rng(11)


def rand(*shape, dtype=np.float32, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape).astype(dtype)


def text(*items):
    return np.array(items, dtype=object)


def run_reference(model, feeds):
    from onnx.reference import ReferenceEvaluator
    outs = ReferenceEvaluator(model).run(None, feeds)
    return dict(zip([o.name for o in model.graph.output], outs))


def check_export(module, feeds, runtime="ort", opset=None):
    """Export, pass onnx's full checker, run, and match Ember's interpreter output by output."""
    proto = export(module)
    onnx.checker.check_model(proto, full_check=True)
    if opset is not None:
        assert proto.opset_import[0].version == opset
    want = ir.interpret(module, feeds)
    got = (run_ort if runtime == "ort" else run_reference)(proto, feeds)
    for name, expected in want.items():
        actual = got[name]
        if isinstance(expected, list):
            assert len(actual) == len(expected), name
            for k, (a, e) in enumerate(zip(actual, expected)):
                assert_close(np.asarray(a), e, what=f"{name}[{k}]")
        else:
            assert_close(np.asarray(actual).astype(np.asarray(expected).dtype)
                         if np.asarray(expected).dtype == object else np.asarray(actual), expected, what=name)
    return proto


def case_elementwise():
    b = ir.Builder("elementwise")
    x, y = b.input("x", ir.f32["N", 4]), b.input("y", ir.f32[4])
    for name in ("rsqrt", "silu"):
        b.output(name, b.op(f"ember.{name}", y if name == "rsqrt" else x))
    for name in ("max", "min", "prelu"):
        b.output(name, b.op(f"ember.{name}", x, y))
    return b.build(), {"x": rand(3, 4, lo=-3, hi=3), "y": rand(4, lo=0.5, hi=2)}


def case_shape_ops():
    b = ir.Builder("shape_ops")
    x = b.input("x", ir.f32["N", 4])
    m = b.input("m", ir.f32[2, 3, 3])
    t = b.input("t", ir.f32[4, 3, 2])
    b.output("det", b.det(m))
    b.output("eye", b.eye_like(x, k=1, dtype=ir.f32))
    b.output("eye_same", b.eye_like(x, k=-2))
    b.output("filled", b.constant_of_shape(b.shape(x), value=np.array(-2.5, np.float32)))
    lens = b.constant(np.array([3, 1, 0], np.int64))
    b.output("rev", b.reverse_sequence(t, lens))  # time 0, batch 1
    b.output("rev_t", b.reverse_sequence(t, b.constant(np.array([2, 1, 0, 2], np.int64)), batch_axis=0, time_axis=2))
    for name, r in zip(("u_values", "u_first", "u_inverse", "u_counts"), b.unique(x, sorted=False, axis=0)):
        b.output(name, r)
    b.output("u_sorted", b.unique(x)[0])
    columns, count = b.nonzero_padded(x)
    b.output("nz_columns", columns)
    b.output("nz_count", count)
    b.output("nz_head", b.head(columns, count, axis=1))
    x_ = np.array([[1, 2, 3, 4], [0, 0, 1, 1], [1, 2, 3, 4], [5, 5, 5, 5]], np.float32)
    return b.build(), {"x": x_, "m": rand(2, 3, 3), "t": rand(4, 3, 2)}


def case_later_opsets():
    b = ir.Builder("later")
    x = b.input("x", ir.f32["N", 4])
    tok = b.input("tok", ir.f32["N", 3, 2])
    cache = b.input("cache", ir.f32[2, 5, 3])
    b.output("bits", b.bitcast(x, to=ir.i32))
    b.output("cumprod", b.cumprod(tok, axis=1, exclusive=True, reverse=True))
    b.output("scatter", b.tensor_scatter(cache, b.slice(cache, starts=(0,), ends=(2,), axes=(1,)),
                                         b.constant(np.array([4, 1], np.int64)), axis=1, mode="circular"))
    return b.build(), {"x": rand(2, 4), "tok": rand(2, 3, 2, lo=0.5, hi=2), "cache": rand(2, 5, 3)}


def case_sequences():
    b = ir.Builder("sequences")
    x = b.input("x", ir.f32["N", 4])
    b.output("parts", b.concat_from_sequence(b.split_to_sequence(x, axis=1, split=(1, 3)), axis=-1))
    b.output("chunks", b.concat_from_sequence(b.split_to_sequence(x, axis=1, chunk_size=3), axis=1))
    b.output("rows", b.concat_from_sequence(b.split_to_sequence(x, axis=0, keepdims=False), axis=1, new_axis=True))
    b.output("grown", b.sequence_length(b.sequence_insert(b.sequence_empty(dtype=ir.f32), x, None)))
    b.output("empty_has", b.optional_has_element(b.optional(None, type=ir.f32["N", 4])))
    b.output("full", b.optional_get_element(b.optional(x)))
    return b.build(), {"x": rand(3, 4)}


def case_strings():
    b = ir.Builder("strings")
    s = b.input("s", ir.string[2])
    joined = b.string_concat(s, b.constant(text("!\t")))
    b.output("joined", joined)
    b.output("match", b.regex_full_match(joined, pattern="[a-z \"]+!\\s"))
    parts, counts = b.string_split(b.constant(text("a,b", ",,c")), delimiter=",", maxsplit=1)
    b.output("parts", parts)
    b.output("counts", counts)
    b.output("words", b.string_split(s)[0])
    b.output("ids", b.label_encoder(s, keys=text("a \"b\"", "x y"), values=np.array([2, 3], np.int64),
                                    default=np.array(-1, np.int64)))
    b.output("names", b.label_encoder(b.input("d", ir.f64[3]), keys=np.array([1.5, 5.0]), values=text("a", "b"),
                                      default=np.array("z", dtype=object)))  # ai.onnx.ml 4's tensors
    return b.build(), {"s": text("a \"b\"", "x y  z"), "d": np.array([5.0, 1.5, 2.0])}


def case_string_normalizer():
    b = ir.Builder("normalizer")
    s = b.input("s", ir.string[3])
    b.output("upper", b.string_normalizer(s, case_change="upper", stopwords=("mon",)))
    b.output("lower", b.string_normalizer(s, case_change="lower", case_sensitive=True, stopwords=("mon",)))
    return b.build(), {"s": text("Mon", "tue", "mon")}


def case_classic_ml():
    b = ir.Builder("ml")
    x = b.input("x", ir.f32["N", 4])
    u = b.input("u", ir.i64["N", 4])
    b.output("labels", b.label_encoder(x, keys=np.array([0.5, np.nan], np.float32), values=np.array([1, 2], np.int64),
                                       default=np.array(-1, np.int64)))
    b.output("scaled", b.label_encoder(x, keys=np.array([0.5, 2.0], np.float32),
                                       values=np.array([10.0, 20.0], np.float32), default=np.array(-0.0, np.float32)))
    b.output("tfidf", b.tfidf_vectorizer(u, mode="TFIDF", min_gram_length=1, max_gram_length=2, max_skip_count=1,
                                         ngram_counts=(0, 2), ngram_indexes=(0, 1, 2), pool_int64s=(1, 3, 1, 2),
                                         weights=(0.5, 1.0, 2.0)))
    # onnxruntime 1.32 swaps post_transform SOFTMAX (1) and LOGISTIC (2); those are left out here
    for agg, post in (("sum", "none"), ("max", "softmax_zero")):
        b.output(f"trees_{agg}", b.tree_ensemble(
            x, nodes_featureids=(0, 3), nodes_splits=np.array([1.0, 0.5], np.float32), nodes_modes=(0, 3),
            nodes_truenodeids=(1, 0), nodes_trueleafs=(0, 1), nodes_falsenodeids=(1, 1), nodes_falseleafs=(1, 1),
            nodes_missing_value_tracks_true=(1, 0), tree_roots=(0,), leaf_targetids=(0, 1),
            leaf_weights=np.array([-1.5, 2.5], np.float32), n_targets=2, aggregate_function=agg, post_transform=post))
    b.output("members", b.tree_ensemble(
        x, nodes_featureids=(0, 3), nodes_splits=np.array([1.0, np.nan], np.float32), nodes_modes=(0, 6),
        nodes_truenodeids=(1, 0), nodes_trueleafs=(0, 1), nodes_falsenodeids=(1, 1), nodes_falseleafs=(1, 1),
        membership_values=np.array([1.0, 3.0, np.nan], np.float32), tree_roots=(0, 1), leaf_targetids=(0, 1),
        leaf_weights=np.array([0.25, 2.5], np.float32), n_targets=2, aggregate_function="average"))
    x_ = np.array([[0.5, 1, 2, 3], [np.nan, 2, 0.5, 0], [3, 0, 0, 1]], np.float32)
    u_ = np.array([[1, 3, 1, 2], [2, 1, 3, 3], [0, 1, 2, 1]], np.int64)
    return b.build(), {"x": x_, "u": u_}


def case_tfidf():
    """ONNX weighs output column ngram_indexes[j] by weights[ngram_indexes[j]]; onnxruntime by
    weights[j]: with a permuted ngram_indexes only onnx.reference follows the spec."""
    b = ir.Builder("tfidf")
    u = b.input("u", ir.i64["N", 4])
    b.output("tfidf", b.tfidf_vectorizer(u, mode="TFIDF", min_gram_length=1, max_gram_length=2, max_skip_count=1,
                                         ngram_counts=(0, 2), ngram_indexes=(2, 0, 1), pool_int64s=(1, 3, 1, 2),
                                         weights=(0.5, 1.0, 2.0)))
    words = b.input("words", ir.string["N", 3])
    b.output("idf", b.tfidf_vectorizer(words, mode="IDF", min_gram_length=2, max_gram_length=2, max_skip_count=0,
                                       ngram_counts=(0, 0), ngram_indexes=(0, 1), pool_strings=("a", "b", "b", "c"),
                                       weights=(0.25, 4.0)))
    return b.build(), {"u": np.array([[1, 3, 1, 2], [2, 1, 3, 3], [0, 1, 2, 1]], np.int64),
                       "words": text("a", "b", "c", "b", "c", "a", "c", "a", "b").reshape(3, 3)}


def case_conv_integer():
    b = ir.Builder("conv_integer")
    x = b.input("x", ir.u8["N", 4, 5, 5])
    xh = b.input("xh", ir.u8["N", 5, 5, 4])
    w = b.constant(RNG.integers(-8, 8, (3, 4, 3, 3)).astype(np.int8))
    zp = b.constant(np.uint8(100))
    b.output("y", b.conv_integer(x, w, zp, None, pads=(1, 1, 0, 0), strides=(1, 2)))
    wh = b.constant(RNG.integers(-8, 8, (3, 3, 3, 4)).astype(np.int8))
    b.output("yh", b.conv_integer(xh, wh, zp, b.constant(np.int8(1)), layout="NHWC", weight_layout="OHWI"))
    return b.build(), {"x": RNG.integers(0, 255, (2, 4, 5, 5)).astype(np.uint8),
                       "xh": RNG.integers(0, 255, (2, 5, 5, 4)).astype(np.uint8)}


def case_int8():
    """int8 ops as ConvInteger / MatMulInteger and their epilogue's f32 ops: exact, so onnxruntime
    gives the interpreter's values (i8 results equal)."""
    b = ir.Builder("int8")
    x = b.input("x", ir.i8["N", 5, 6, 16])
    a = b.input("a", ir.i8["N", 3, 32])
    w = b.constant(RNG.integers(-128, 128, (8, 3, 3, 16)).astype(np.int8))
    sx, zx = b.constant(np.float32(0.05)), b.constant(np.int8(-4))
    sw = b.constant(RNG.uniform(0.001, 0.01, 8).astype(np.float32))
    bias = b.constant(RNG.standard_normal(8).astype(np.float32))
    b.output("q", b.int8_conv(x, w, sx, sw, bias, zx, b.constant(np.float32(0.2)), b.constant(np.int8(3)),
                              pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI", relu=True))
    wm = b.constant(RNG.integers(-128, 128, (8, 32)).astype(np.int8))
    b.output("f", b.int8_matmul(a, wm, sx, sw, bias, zx))
    b.output("h", b.int8_matmul(a, wm, sx, b.constant(np.float32(0.003)), None, None, dtype=ir.f16))
    return b.build(), {"x": RNG.integers(-128, 128, (2, 5, 6, 16)).astype(np.int8),
                       "a": RNG.integers(-128, 128, (2, 3, 32)).astype(np.int8)}


def case_fp8():
    """fp8 ops as Casts of the fp8 operands to f32, Conv / MatMul and their epilogue's f32 ops
    (the f32 sums round where the reference rounds the exact sum once: within f32's rule)."""
    b = ir.Builder("fp8")
    x = b.input("x", ir.f8e4m3fn["N", 5, 6, 16])
    a = b.input("a", ir.f8e5m2["N", 3, 32])
    w = b.constant(RNG.standard_normal((8, 3, 3, 16)).astype(ml_dtypes.float8_e4m3fn))
    sx, sw = b.constant(np.float32(0.05)), b.constant(RNG.uniform(0.001, 0.01, 8).astype(np.float32))
    bias = b.constant(RNG.standard_normal(8).astype(np.float32))
    b.output("c", b.fp8_conv(x, w, sx, sw, bias, pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI",
                             relu=True))
    wm = b.constant(RNG.standard_normal((8, 32)).astype(ml_dtypes.float8_e4m3fn))
    b.output("m", b.fp8_matmul(a, wm, sx, sw, bias))
    b.output("h", b.fp8_matmul(a, wm, sx, b.constant(np.float32(0.003)), None, dtype=ir.f16))
    return b.build(), {"x": RNG.standard_normal((2, 5, 6, 16)).astype(ml_dtypes.float8_e4m3fn),
                       "a": RNG.standard_normal((2, 3, 32)).astype(ml_dtypes.float8_e5m2)}


def case_int8_between():
    """The int8 ops between the heavy ones as ONNX's own ops (Q/DQ around Add, ConvInteger window
    sums, ReduceSum): exact, so onnxruntime gives the interpreter's i8 values."""
    b = ir.Builder("int8_between")
    x = b.input("x", ir.i8["N", 5, 6, 4])
    a = b.input("a", ir.i8["N", 4, 5, 6])
    sx, zx = b.constant(np.float32(0.05)), b.constant(np.int8(-4))
    sy, zy = b.constant(np.float32(0.03)), b.constant(np.int8(7))
    b.output("add", b.int8_add(a, sx, zx, b.constant(RNG.integers(-128, 128, (4, 1, 6)).astype(np.int8)), sy, None,
                               sy, zy, relu=True))
    b.output("rq", b.int8_requantize(a, sx, None, sy, zy))
    b.output("pool", b.int8_avg_pool(x, sx, zx, sy, zy, kernel_shape=(3, 2), strides=(2, 1), pads=(1, 0, 1, 1),
                                     layout="NHWC"))
    b.output("pool_pad", b.int8_avg_pool(a, sx, None, sy, None, kernel_shape=(3, 3), pads=(1, 1, 1, 1),
                                         count_include_pad=True))
    b.output("gap", b.int8_global_avg_pool(x, sx, zx, sy, zy, layout="NHWC"))
    return b.build(), {"x": RNG.integers(-128, 128, (2, 5, 6, 4)).astype(np.int8),
                       "a": RNG.integers(-128, 128, (2, 4, 5, 6)).astype(np.int8)}


def case_vision():
    b = ir.Builder("vision")
    img = b.input("img", ir.f32["N", 4, "H", "W"])
    off = b.input("offset", ir.f32["N", 18, "H", "W"])
    mask = b.input("mask", ir.f32["N", 9, "H", "W"])
    grid = b.input("grid", ir.f32["N", 3, 5, 2])
    w = b.weight("w", rand(6, 4, 3, 3))
    bias = b.weight("bias", rand(6))
    b.output("deform", b.deform_conv(img, w, off, bias, mask, pads=(1, 1, 1, 1)))
    b.output("unpooled", b.max_unpool(*b.max_pool_with_indices(img, kernel_shape=(2, 2), strides=(2, 2)),
                                      kernel_shape=(2, 2), strides=(2, 2), output_shape=("H", "W")))
    b.output("cubic", b.grid_sample(img, grid, mode="cubic", padding_mode="reflection"))
    nhwc = b.transpose(img, perm=(0, 2, 3, 1))
    b.output("nearest_nhwc", b.grid_sample(nhwc, grid, mode="nearest", padding_mode="border", layout="NHWC"))
    w_ohwi = b.transpose(w, perm=(0, 2, 3, 1))
    b.output("deform_nhwc", b.deform_conv(nhwc, w_ohwi, b.transpose(off, perm=(0, 2, 3, 1)), None, None,
                                          pads=(1, 1, 1, 1), layout="NHWC", weight_layout="OHWI"))
    pooled, where = b.max_pool_with_indices(img, kernel_shape=(2, 2), strides=(2, 2))
    pooled, where = (b.transpose(v, perm=(0, 2, 3, 1)) for v in (pooled, where))
    b.output("unpooled_nhwc", b.max_unpool(pooled, where, kernel_shape=(2, 2), strides=(2, 2), layout="NHWC"))
    b.output("linear", b.grid_sample(img, grid, align_corners=True))
    b.output("nms", b.nms(b.constant(np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, 5, 1, 6]]], np.float32)),
                          b.constant(np.array([[[0.9, 0.8, 0.7]]], np.float32)), max_output_boxes_per_class=2,
                          iou_threshold=0.5, score_threshold=0.1))
    rows, count = b.nms_padded(b.constant(np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, 5, 1, 6]]], np.float32)),
                               b.constant(np.array([[[0.9, 0.8, 0.7], [0.1, 0.95, 0.2]]], np.float32)),
                               max_output_boxes_per_class=2, iou_threshold=0.5, score_threshold=0.15)
    b.output("nms_rows", rows)
    b.output("nms_count", count)
    b.output("nms_head", b.head(rows, count))
    cols = b.input("cols", ir.f32["N", 8, 6])
    b.output("col2im", b.col2im(cols, image_shape=(3, 4), block_shape=(2, 2)))
    b.output("col2im_nhwc", b.col2im(b.input("cols9", ir.f32["N", 8, 9]), image_shape=(4, 5), block_shape=(2, 2),
                                     strides=(2, 2), pads=(1, 1, 1, 1), layout="NHWC"))
    return b.build(), {"img": rand(2, 4, 6, 6), "offset": rand(2, 18, 6, 6), "mask": rand(2, 9, 6, 6, lo=0),
                       "grid": rand(2, 3, 5, 2, lo=-1.2, hi=1.2), "cols": rand(2, 8, 6),
                       "cols9": rand(2, 8, 9)}


def case_roi_align():
    """onnxruntime has RoiAlign up to opset 16 only (no kernel for RoiAlign-22)."""
    b = ir.Builder("roi_align")
    img = b.input("img", ir.f32["N", 4, "H", "W"])
    nhwc = b.input("nhwc", ir.f32["N", "H", "W", 4])
    rois = b.constant(np.array([[0, 0, 2, 2], [1, 0.5, 3, 3.5]], np.float32))
    idx = b.constant(np.array([0, 1], np.int64))
    b.output("roi_max", b.roi_align(img, rois, idx, output_height=2, output_width=2, mode="max"))
    b.output("roi_avg", b.roi_align(nhwc, rois, idx, output_height=3, output_width=2, sampling_ratio=2,
                                    spatial_scale=0.5, coordinate_transformation_mode="output_half_pixel",
                                    layout="NHWC"))
    return b.build(), {"img": rand(2, 4, 6, 6), "nhwc": rand(2, 6, 6, 4)}


def case_signal():
    b = ir.Builder("signal")
    sig = b.input("sig", ir.f32["N", "S", 1])
    spec = b.input("spec", ir.f32["N", 5, 2])
    b.output("dft", b.dft(sig, axis=1, onesided=True))
    b.output("dft_cut", b.dft(sig, axis=-1, length=4))
    b.output("idft", b.dft(spec, axis=1, inverse=True))
    b.output("irfft", b.dft(spec, axis=1, inverse=True, onesided=True))
    win = b.window(kind="hann", size=4)
    b.output("stft", b.stft(sig, win, frame_step=2, frame_length=4))
    b.output("stft_bare", b.stft(sig, frame_step=3, frame_length=3, onesided=False))
    b.output("blackman", b.window(kind="blackman", size="S", periodic=False))
    b.output("hamming", b.window(kind="hamming", size=7))
    b.output("mel", b.mel_weight_matrix(num_mel_bins=4, dft_length=16, sample_rate=8000, lower_edge_hertz=0.0,
                                        upper_edge_hertz=4000.0))
    return b.build(), {"sig": rand(2, 10, 1), "spec": rand(2, 5, 2)}


def case_recurrent():
    b = ir.Builder("recurrent")
    tok = b.input("tok", ir.f32["N", "S", 3])
    seq = b.input("seq", ir.f32["S", "N", 3])
    lens = b.input("lens", ir.i64["N"])
    h0 = b.input("h0", ir.f32["N", 1, 2])
    y, y_h = b.rnn(tok, b.constant(rand(1, 2, 3)), b.constant(rand(1, 2, 2)), b.constant(rand(1, 4)), None, h0,
                   batch_first=True, activations=("leaky_relu",), activation_alpha=(0.5,), activation_beta=(0.0,))
    b.output("rnn_y", y)
    b.output("rnn_h", y_h)
    y, y_h = b.gru(seq, b.constant(rand(2, 6, 3)), b.constant(rand(2, 6, 2)), b.constant(rand(2, 12)), lens,
                   direction="bidirectional", linear_before_reset=True, clip=2.0)
    b.output("gru_y", y)
    b.output("gru_h", y_h)
    y, y_h, y_c = b.lstm(tok, b.constant(rand(1, 8, 3)), b.constant(rand(1, 8, 2)), None, None, None, None,
                         b.constant(rand(1, 6)), batch_first=True, direction="reverse", input_forget=True,
                         activations=("hard_sigmoid", "tanh", "scaled_tanh"))
    b.output("lstm_y", y)
    b.output("lstm_h", y_h)
    b.output("lstm_c", y_c)
    return b.build(), {"tok": rand(2, 4, 3), "seq": rand(4, 2, 3), "lens": np.array([4, 2], np.int64),
                       "h0": rand(2, 1, 2)}


def case_attention():
    b = ir.Builder("attention")
    q = b.input("q", ir.f32["N", 4, "S", 8])
    k = b.input("k", ir.f32["N", 2, "T", 8])
    v = b.input("v", ir.f32["N", 2, "T", 8])
    fmask = b.input("fmask", ir.f32["S", "T"])
    y, probs = b.attention(q, k, v, causal=True, scores="probs")
    b.output("causal", y)
    b.output("probs", probs)
    y, capped = b.attention(q, k, v, fmask, scale=0.3, softcap=2.0, scores="softcap")
    b.output("masked", y)
    b.output("capped", capped)
    b.output("offset", b.attention(q, k, v, causal=True, q_offset=2)[0])
    return b.build(), {"q": rand(2, 4, 3, 8), "k": rand(2, 2, 5, 8), "v": rand(2, 2, 5, 8), "fmask": rand(3, 5)}


def case_attention_24():
    b = ir.Builder("attention24")
    q = b.input("q", ir.f32["N", 2, 2, 4])
    k = b.input("k", ir.f32["N", 2, 5, 4])
    v = b.input("v", ir.f32["N", 2, 5, 4])
    lens = b.input("lens", ir.i64["N"])
    bmask = b.constant(np.array([True, True, False, True, True]))
    b.output("padded", b.attention(q, k, v, bmask, lens, causal=True, align="bottom_right")[0])
    b.output("bottom_right", b.attention(q, k, v, causal=True, align="bottom_right")[0])
    return b.build(), {"q": rand(2, 2, 2, 4), "k": rand(2, 2, 5, 4), "v": rand(2, 2, 5, 4),
                       "lens": np.array([4, 3], np.int64)}


def case_attention_window():
    b = ir.Builder("attention25")
    tok = b.input("tok", ir.f32["N", "S", 8])
    heads = b.unsqueeze(tok, axes=(1,))
    y, s = b.attention(heads, heads, heads, causal=True, window=(2, -1), scores="biased")
    b.output("y", y)
    b.output("scores", s)
    b.output("two_sided", b.attention(heads, heads, heads, window=(1, 1))[0])
    return b.build(), {"tok": rand(2, 5, 8)}


def case_rotary():
    b = ir.Builder("rotary")
    x = b.input("x", ir.f32["N", 2, "S", 8])
    packed = b.input("packed", ir.f32["N", "S", 16])
    cos, sin = b.input("cos", ir.f32[10, 3]), b.input("sin", ir.f32[10, 3])
    pos = b.input("pos", ir.i64["N", "S"])
    b.output("rot", b.rotary_embedding(x, cos, sin, pos, rotary_dim=6))
    c3, s3 = b.input("c3", ir.f32["N", "S", 4]), b.input("s3", ir.f32["N", "S", 4])
    b.output("rot_packed", b.rotary_embedding(packed, c3, s3, num_heads=2, interleaved=True))
    return b.build(), {"x": rand(2, 2, 3, 8), "packed": rand(2, 3, 16), "cos": rand(10, 3), "sin": rand(10, 3),
                       "pos": np.array([[0, 1, 2], [5, 9, 3]], np.int64), "c3": rand(2, 3, 4), "s3": rand(2, 3, 4)}


def case_linear_attention():
    b = ir.Builder("linear_attention")
    q = b.input("q", ir.f32["N", 4, "T", 3])
    k = b.input("k", ir.f32["N", 2, "T", 3])
    v = b.input("v", ir.f32["N", 2, "T", 5])
    past = b.input("past", ir.f32["N", 2, 3, 5])
    decay = b.input("decay", ir.f32["N", 2, "T", 1])
    beta = b.input("beta", ir.f32["N", 2, "T", 1])
    out, state = b.linear_attention(q, k, v, past, decay, beta, update_rule="gated_delta", scale=0.5)
    b.output("out", out)
    b.output("state", state)
    out, state = b.linear_attention(q, k, v, update_rule="linear")
    b.output("plain", out)
    b.output("plain_state", state)
    return b.build(), {"q": rand(2, 4, 3, 3), "k": rand(2, 2, 3, 3), "v": rand(2, 2, 3, 5), "past": rand(2, 2, 3, 5),
                       "decay": rand(2, 2, 3, 1, lo=-0.5, hi=0), "beta": rand(2, 2, 3, 1, lo=0, hi=1)}


@pytest.mark.parametrize("case,runtime,opset", [
    (case_elementwise, "ort", 23), (case_shape_ops, "ort", 23), (case_later_opsets, "ort", 26),
    (case_sequences, "ort", 23), (case_strings, "ort", 23),
    (case_string_normalizer, "onnx", 23),  # onnxruntime needs the en_US.UTF-8 locale installed
    (case_classic_ml, "ort", 23), (case_tfidf, "onnx", 23), (case_conv_integer, "ort", 23), (case_int8, "ort", 23),
    (case_int8_between, "ort", 23), (case_fp8, "onnx", 23),  # onnxruntime takes no fp8 numpy inputs
    (case_vision, "ort", 23), (case_roi_align, "onnx", 23),
    (case_signal, "ort", 23),
    (case_recurrent, "ort", 23), (case_attention, "ort", 23), (case_attention_24, "ort", 24),
    (case_attention_window, "ort", 25), (case_rotary, "ort", 23), (case_linear_attention, "ort", 27),
], ids=lambda p: p.__name__[5:] if callable(p) else str(p))
def test_op_exports_and_matches(case, runtime, opset):
    module, feeds = case()
    check_export(module, feeds, runtime, opset)


def test_every_op_has_an_exporter():
    from ember.frontends.onnx.export import EXPORTERS
    from ember.ir.opdef import REGISTRY
    assert sorted(n for n in REGISTRY if n.startswith("ember.") and n not in EXPORTERS) == []


def test_ml_ops_import_their_domain():
    module, _ = case_classic_ml()
    proto = export(module)
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", 23), ("ai.onnx.ml", 5)}


def test_forms_onnx_lacks_are_listed():
    b = ir.Builder("no_form")
    heads = b.unsqueeze(b.input("tok", ir.f32["N", "S", 8]), axes=(1,))
    lens = b.input("lens", ir.i64["N"])
    b.output("seq", b.sequence_length(b.sequence_empty(dtype=ir.bf16)))
    b.output("y", b.attention(heads, heads, heads, None, lens, causal=True)[0])
    with pytest.raises(UnsupportedOpError) as info:
        export(b.build())
    text_ = str(info.value)
    assert text_.startswith("2 ops cannot be exported to ONNX:")
    assert "ONNX sequences cannot hold bf16 tensors" in text_ and "kv_lens with a top-left causal" in text_


def test_loop_with_trip_count_and_no_cond_runs_every_trip_on_onnxruntime_too():
    """ONNX's table ignores the body's cond when only a trip count is given; onnxruntime
    stops on it. The export makes the ignored cond true, so both run all trips."""
    b = ir.Builder("loop")
    y = b.input("y", ir.f32[3])

    def body(rb, i, cond, acc):
        stop = rb.less(i, rb.constant(np.int64(1)))  # false from the second trip on
        return stop, rb.add(acc, y), rb.relu(acc)

    final, scans = b.loop(b.constant(np.int64(4)), None, y, body=body)
    b.output("final", final)
    b.output("scans", scans)
    module = b.build()
    feeds = {"y": np.array([1.0, -2.0, 3.0], np.float32)}
    want = ir.interpret(module, feeds)
    got = run_ort(export(module), feeds)
    assert want["scans"].shape == (4, 3)
    for name in want:
        assert_close(got[name], want[name], what=name)
