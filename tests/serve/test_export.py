"""`ember export-triton`: a model repository whose config.pbtxt parses against Triton's own
ModelConfig message (tritonclient ships model_config.proto compiled), and which the tritonserver
PyTriton bundles serves, answering as the engine does. Also the configuration rules without a
server: batchable or fixed engines, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ember.cli import main
from google.protobuf import text_format
from serving import LazyModule, bert_feed, http_inputs, loopback_ports
from tritonclient.grpc import model_config_pb2

httpclient = LazyModule("tritonclient.http")  # (the device has no gevent: see serving.py)


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_export_writes_a_repository_triton_serves(bert_engine, reference, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["export-triton", str(bert_engine), "-o", str(repo), "--cpu", "--max-batch", "4",
                 "--instances-per-gpu", "2"]) == 0
    config = parse_config(repo / "bert_small" / "config.pbtxt")
    assert config.name == "bert_small" and config.backend == "python" and config.max_batch_size == 4
    assert [(i.name, model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        ("input_ids", "TYPE_INT64", [-1]), ("attention_mask", "TYPE_INT64", [-1])]
    assert [(o.name, model_config_pb2.DataType.Name(o.data_type), list(o.dims)) for o in config.output] == [
        ("hidden", "TYPE_FP32", [-1, 32])]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 256
    (group,) = config.instance_group
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_CPU" and group.count == 2
    assert config.parameters["ember_engine"].string_value == "bert_small.engine"
    assert (repo / "bert_small" / "1" / "bert_small.engine").read_bytes() == bert_engine.read_bytes()
    assert (repo / "bert_small" / "1" / "model.py").is_file()

    from ember.serve import TritonServer
    with TritonServer(repo, loopback_ports()) as server:  # the exported folder as it is: no sys.path help
        client = httpclient.InferenceServerClient(server.url)
        feed = bert_feed(3, 9, 21)
        inputs = http_inputs(feed)
        got = client.infer("bert_small", inputs).as_numpy("hidden")
    np.testing.assert_array_equal(got, reference(feed)["hidden"])


def test_export_refuses_to_overwrite_a_model_folder(bert_engine, tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / "bert_small").mkdir(parents=True)
    (repo / "bert_small" / "mine.txt").write_text("keep")
    assert main(["export-triton", str(bert_engine), "-o", str(repo)]) == 2
    assert "already exists: pass --force" in capsys.readouterr().err
    assert (repo / "bert_small" / "mine.txt").read_text() == "keep"
    assert main(["export-triton", str(bert_engine), "-o", str(repo), "--force"]) == 0
    assert not (repo / "bert_small" / "mine.txt").exists()


def test_max_batch_above_the_profile_is_refused(bert_engine, tmp_path, capsys):
    assert main(["export-triton", str(bert_engine), "-o", str(tmp_path / "r"), "--max-batch", "9"]) == 2
    err = capsys.readouterr().err
    assert "--max-batch 9 is above the engine's profile MAX batch=8" in err
    assert not (tmp_path / "r").exists()


def test_a_fixed_shape_engine_has_no_batching_and_full_dims(cnn_block_engine, kernel_cache, tmp_path):
    from ember.runtime.engine import Engine
    from ember.serve import ServeOptions, model_config
    model, _ = cnn_block_engine
    fixed = tmp_path / "cnn_fixed.engine"
    assert main(["-q", "compile", str(model), "-o", str(fixed), "--target", "sm_80", "--cache-dir", str(kernel_cache),
                 "--shapes", "image:2x3x32x32"]) == 0
    engine = Engine.load(fixed)
    config = model_config(engine, "cnn_fixed", ServeOptions(kind="cpu"))
    assert config.max_batch_size == 0
    parsed = text_format.Parse(config.to_pbtxt(), model_config_pb2.ModelConfig())
    assert list(parsed.input[0].dims) == [2, 3, 32, 32]
    assert list(parsed.output[0].dims) == list(engine.outputs[0].shape)
    assert not parsed.HasField("dynamic_batching")


def test_the_default_max_batch_is_the_profile_max(cnn_block_engine):
    from ember.runtime.engine import Engine
    from ember.serve import ServeOptions, model_config
    _, engine_path = cnn_block_engine
    config = model_config(Engine.load(engine_path), "cnn", ServeOptions(gpus=(0, 1), instances_per_gpu=3))
    parsed = text_format.Parse(config.to_pbtxt(), model_config_pb2.ModelConfig())
    assert parsed.max_batch_size == 4 and list(parsed.input[0].dims) == [3, 32, 32]
    (group,) = parsed.instance_group
    assert list(group.gpus) == [0, 1] and group.count == 3


@pytest.mark.parametrize("stem, problem", [("my model", "not a usable Triton model name"),
                                           ("", "not a usable Triton model name")])
def test_unusable_model_names_are_refused(stem, problem):
    from ember.serve.model_config import ServeError, model_name_of
    with pytest.raises(ServeError, match=problem):
        model_name_of(stem)


def test_a_python_without_shared_libpython_is_refused_up_front(monkeypatch):
    import sysconfig

    from ember.serve import server
    dist = server.find_triton()
    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var", lambda k: 0 if k == "Py_ENABLE_SHARED" else real(k))
    with pytest.raises(server.ServeError, match="has no shared libpython"):
        server.check_python(dist)


def test_a_python_version_without_a_stub_is_refused(monkeypatch, tmp_path):
    from ember.serve import server
    dist = server.TritonDist(tmp_path, tmp_path)
    (tmp_path / "python_backend_stubs" / "3.10").mkdir(parents=True)
    with pytest.raises(server.ServeError, match="no stub for Python 3.1[1-9].*it has 3.10"):
        server.check_python(dist)


def test_serving_without_triton_names_the_install_step(monkeypatch):
    import importlib.util

    from ember.serve import server
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(server.ServeError, match="pip install --no-deps nvidia-pytriton==0.7.0"):
        server.find_triton()


def test_stopping_with_a_client_still_connected_leaves_no_shared_memory(bert_engine, tmp_path):
    """A keep-alive connection holds Triton for its exit timeout and the stubs are then killed,
    which leaves their regions in /dev/shm; the server removes the ones its own stubs mapped."""
    from ember.serve import ServeOptions, TritonServer, export_repository
    export_repository([bert_engine], tmp_path / "repo", ServeOptions(kind="cpu", instances_per_gpu=2))
    server = TritonServer(tmp_path / "repo", loopback_ports(), exit_timeout_s=1).start()
    try:
        regions = set(server._regions)
        assert len(regions) >= 2 and all(r.exists() for r in regions)  # one per instance stub
        client = httpclient.InferenceServerClient(server.url)  # kept open over the stop
        feed = bert_feed(1, 5, 3)
        inputs = http_inputs(feed)
        client.infer("bert_small", inputs)
    finally:
        server.stop()
    assert not [r for r in regions if r.exists()]
