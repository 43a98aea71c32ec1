"""The ONNX importer itself: names, symbols, locations, functions, external data,
build-time inputs, and clear errors for every kind of bad model."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember import ir
from ember.errors import EmberError, UnsupportedOpError
from ember.frontends.onnx import OnnxFileError, OnnxImportError, StaticInputsRequired, import_model, load
from ember.frontends.onnx.backend import EmberRep

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), opset=17, functions=(), extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets],
                             functions=list(functions))


def vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def mlp():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "fc.weight")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "fc.bias")
    nodes = [helper.make_node("MatMul", ["x", "fc.weight"], ["h"], name="/fc/MatMul"),
             helper.make_node("Add", ["h", "fc.bias"], ["h2"], name="/fc/Add"),
             helper.make_node("Relu", ["h2"], ["y"], name="/act/Relu")]
    return model(nodes, [vi("x", ["batch size", 4])], [vi("y", ["batch size", 8])], [w, b])


def test_names_symbols_locations_and_weights():
    m = import_model(mlp())
    text = str(m)
    assert "func @main(%x: f32[batch_size,4]) -> (y: f32[batch_size,8])" in text
    assert 'loc("/fc/MatMul")' in text and 'loc("/act/Relu")' in text
    assert list(m.weights) == ["fc.weight", "fc.bias"]
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    w, b = (m.weights[n].data for n in ("fc.weight", "fc.bias"))
    np.testing.assert_allclose(ir.interpret(m, {"x": x})["y"], np.maximum(x @ w + b, 0), rtol=1e-6)


def test_load_save_chain_keeps_weights(tmp_path):
    onnx.save(mlp(), tmp_path / "mlp.onnx")
    m = ember.load(tmp_path / "mlp.onnx")
    m.save(tmp_path / "mlp.ir")
    again = ember.load(tmp_path / "mlp.ir")
    assert ir.structural_diff(m, again) == []


def test_external_data_is_mapped_not_copied(tmp_path):
    big = np.random.default_rng(2).standard_normal((256, 256)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    m = model(nodes, [vi("x", [1, 256])], [vi("y", [1, 256])], [numpy_helper.from_array(big, "w")])
    onnx.save_model(m, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size == big.nbytes
    loaded = load(tmp_path / "ext.onnx")
    w = loaded.weights["w"].data
    assert isinstance(w, np.memmap) and np.array_equal(w, big)
    (tmp_path / "ext.data").write_bytes(big.tobytes()[:1000])
    with pytest.raises(EmberError, match="external data file .* is truncated"):
        load(tmp_path / "ext.onnx")


def test_unsupported_ops_are_listed_all_at_once():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("NoSuchOp", ["a"], ["b"], name="first_bad"),
             helper.make_node("AlsoMissing", ["b"], ["c"], name="second_bad", domain="com.example")]
    m = model(nodes, [vi("x", [2])], [vi("c", [2])], extra_opsets=[helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedOpError) as info:
        import_model(m, source="bad.onnx")
    text = str(info.value)
    assert text.splitlines()[0] == "bad.onnx: the model has unsupported parts: 2 problems"
    assert "NoSuchOp (opset 17) node 'first_bad': no converter for this op" in text
    assert "com.example.AlsoMissing (opset 1) node 'second_bad': no converter" in text


def write(tmp_path, m, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(m.SerializeToString())
    return path


@pytest.mark.parametrize("damage,message", [
    (lambda data: data[: len(data) // 2], "not an ONNX model, or a truncated one"),
    (lambda data: b"\x00not a protobuf at all \xff\xfe" * 3, "not an ONNX model"),
    (lambda data: b"", "empty file, not an ONNX model"),
])
def test_truncated_or_foreign_files(tmp_path, damage, message):
    path = tmp_path / "m.onnx"
    path.write_bytes(damage(mlp().SerializeToString()))
    with pytest.raises(OnnxFileError, match=message) as info:
        load(path)
    assert str(info.value).startswith(str(path))


def test_cycle_is_reported_with_its_nodes():
    nodes = [helper.make_node("Add", ["x", "c"], ["a"], name="n1"),
             helper.make_node("Relu", ["a"], ["b"], name="n2"),
             helper.make_node("Neg", ["b"], ["c"], name="n3")]
    with pytest.raises(OnnxImportError) as info:
        import_model(model(nodes, [vi("x", [2])], [vi("b", [2])]), source="cyc.onnx")
    first, *context = str(info.value).splitlines()
    assert "cycle" in first and "'n1'" in first
    assert any("Add(x, c) -> (a)" in line for line in context)


def test_dangling_input_and_unknown_domain_together():
    nodes = [helper.make_node("Relu", ["nowhere"], ["a"], name="r"),
             helper.make_node("Thing", ["x"], ["b"], name="t", domain="org.unknown")]
    with pytest.raises(OnnxImportError) as info:
        import_model(model(nodes, [vi("x", [2])], [vi("a", [2])]), source="bad.onnx")
    text = str(info.value)
    assert text.splitlines()[0] == "bad.onnx: the model is malformed: 2 problems"
    assert "node 'r': input 'nowhere' is produced by no node, graph input or initializer" in text
    assert "node 't': unknown domain 'org.unknown'" in text


def test_initializer_whose_data_does_not_match_its_shape():
    t = TensorProto(name="w", data_type=F, dims=[3, 4], raw_data=np.zeros(5, np.float32).tobytes())
    nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="add")]
    with pytest.raises(EmberError, match="initializer 'w': data") as info:
        import_model(model(nodes, [vi("x", [3, 4])], [vi("y", [3, 4])], [t]))
    assert "Traceback" not in str(info.value)


def test_build_time_inputs_are_named_and_can_be_frozen():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")]
    m = model(nodes, [vi("x", [2, 6]), vi("shape", [2], TensorProto.INT64)], [vi("y", None)])
    with pytest.raises(StaticInputsRequired) as info:
        import_model(m)
    assert info.value.names == ("shape",)
    assert "the target shape (input 1, 'shape') must be known at build time, computed from graph input 'shape'" \
        in str(info.value)
    frozen = import_model(m, frozen_inputs={"shape": np.array([3, 4], np.int64)})
    assert str(frozen.main.outputs[0].type) == "f32[3,4]"
    rep = EmberRep(m)
    out = rep.run([np.arange(12, dtype=np.float32).reshape(2, 6), np.array([4, 3], np.int64)])
    assert out[0].shape == (4, 3)


def test_shape_arithmetic_folds_into_symbolic_attributes():
    # y = reshape(x, concat(shape(x)[0:1], [-1])) keeps the batch symbolic
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
             helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="flatten")]
    inits = [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("zero", 0), ("one", 1), ("minus1", -1))]
    m = import_model(model(nodes, [vi("x", ["N", 3, 4])], [vi("y", None)], inits))
    assert [op.name for op in m.main.body.ops] == ["ember.reshape"]
    assert str(m.main.outputs[0].type) == "f32[N,12]"
    assert m.weights == {}  # the shape initializers became attributes


def test_model_local_functions_are_inlined():
    fn = helper.make_function("custom", "DoubleRelu", ["a"], ["b"],
                              [helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Add", ["r", "r"], ["b"])],
                              [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("DoubleRelu", ["x"], ["y"], domain="custom", name="dr")]
    m = import_model(model(nodes, [vi("x", [3])], [vi("y", [3])], functions=[fn],
                           extra_opsets=[helper.make_opsetid("custom", 1)]))
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    np.testing.assert_array_equal(ir.interpret(m, {"x": x})["y"], 2 * np.maximum(x, 0))
    assert {op.loc.names[0] for op in m.main.body.ops} == {"dr/Relu_0", "dr/Add_1"}


def test_schema_functions_are_expanded_when_ember_has_no_single_op():
    nodes = [helper.make_node("Swish", ["x"], ["y"], name="swish", alpha=1.5)]
    m = model(nodes, [vi("x", [5])], [vi("y", [5])], opset=24)
    x = np.linspace(-3, 3, 5).astype(np.float32)
    got = ir.interpret(import_model(m), {"x": x})["y"]
    np.testing.assert_allclose(got, x / (1 + np.exp(-1.5 * x)), rtol=1e-5)


def test_ember_import_command(tmp_path, capsys):
    from ember.cli import main
    onnx.save(mlp(), tmp_path / "mlp.onnx")
    assert main(["import", str(tmp_path / "mlp.onnx")]) == 0
    assert (tmp_path / "mlp.ir").exists() and (tmp_path / "mlp.weights").exists()
    assert "mlp.onnx -> " in capsys.readouterr().out
    assert ember.load(tmp_path / "mlp.ir").weights["fc.weight"].data.shape == (4, 8)


def test_model_over_2gb_with_external_data_is_mapped(tmp_path):
    """A 2.2 GB initializer in external data (a sparse file here): mapped, never read whole."""
    count = 550_000_000  # float32: 2.2 GB, past protobuf's 2 GB limit
    table = TensorProto(name="table", data_type=F, dims=[count])
    table.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "big.bin"), ("offset", "0"), ("length", str(count * 4))):
        table.external_data.add(key=k, value=v)
    nodes = [helper.make_node("Gather", ["table", "idx"], ["y"], name="lookup")]
    m = model(nodes, [vi("idx", [2], TensorProto.INT64)], [vi("y", [2])], [table])
    (tmp_path / "big.onnx").write_bytes(m.SerializeToString())
    with open(tmp_path / "big.bin", "wb") as f:
        f.truncate(count * 4)  # sparse: no disk blocks behind it
    module = load(tmp_path / "big.onnx")
    data = module.weights["table"].data
    assert isinstance(data, np.memmap) and data.shape == (count,)
    out = ir.interpret(module, {"idx": np.array([0, count - 1], np.int64)})["y"]
    np.testing.assert_array_equal(out, [0.0, 0.0])
