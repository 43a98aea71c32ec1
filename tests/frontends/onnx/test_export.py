"""Export back to ONNX: the exported model passes onnx's checker and runs on
onnxruntime with the same results as Ember's interpreter."""

import numpy as np
import onnx
import pytest

from ember import ir
from ember.errors import UnsupportedOpError
from ember.ir.opdef import Op, Operand, Result, register_op
from ember.frontends.onnx import export, import_model
from ember.ir.examples import attention_block, cnn_block
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
