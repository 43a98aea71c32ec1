"""Keras and tf.Module SavedModels imported without TensorFlow's help, against TensorFlow's outputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ember
from ember.frontends import savedmodel
from ember.ir.interpret import interpret
from ember.passes.manager import run_pipeline
from ember.ir.types import TensorType
from ember.ir.verify import verify
from ember.passes.manager import run_pipeline
from ember.tolerance import assert_close

CASES = [("mobilenet_v2", "serving_default"), ("small_resnet", "serving_default"),
         ("transformer_block", "serving_default"), ("keras_layers", "serving_default"),
         ("keras_rnn", "serving_default"), ("dilated_convs", "serving_default"),
         ("keras_tf_save", "serving_default"), ("causal_attention", "serving_default"), ("two_signatures", "serving_default"),
         ("two_signatures", "scores"), ("dynamic_batch", "serving_default"), ("op_zoo", "serving_default"),
         ("keras2_layer_norm", "serving_default"), ("tf1_resource_variables", "serving_default"),
         ("tf1_ref_variables", "serving_default")]


def _check(module: Any, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    out = interpret(module, feeds)
    assert sorted(out) == sorted(expected)
    for name, ref in expected.items():
        assert_close(out[name], ref, what=name)


@pytest.mark.parametrize("name,signature", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_matches_tensorflow(saved_models: Any, name: str, signature: str) -> None:
    path, reference = saved_models[name]
    module = ember.load(path, signature=signature)
    verify(module)
    feeds, expected = reference[signature]
    fn = module.functions["main"]
    assert [a.name for a in fn.body.args] == sorted(feeds), "inputs are the signature's keys, as TF Serving shows"
    _check(module, feeds, expected)


def test_every_op_zoo_output_is_compared(saved_models: Any) -> None:
    _, reference = saved_models["op_zoo"]
    assert len(reference["serving_default"][1]) == 49


def test_signatures_are_listed(saved_models: Any) -> None:
    path, _ = saved_models["two_signatures"]
    assert savedmodel.signatures(path) == ["scores", "serving_default"]
    scores = ember.load(path, signature="scores")
    fn = scores.functions["main"]
    assert fn.output_names == ["best", "probabilities"]
    assert [str(v.type) for v in fn.outputs] == ["i32[batch]", "f32[batch,4]"]
    assert [a.name for a in fn.body.args] == ["features", "prior"]


def test_leading_dims_can_be_separate_symbols(saved_models: Any) -> None:
    path, reference = saved_models["two_signatures"]
    shared = ember.load(path, signature="scores")
    assert [str(a.type) for a in shared.functions["main"].body.args] == ["f32[batch,8]", "f32[batch,4]"]
    separate = ember.load(path, signature="scores", shared_batch=False)
    assert [str(a.type) for a in separate.functions["main"].body.args] == ["f32[features_0,8]", "f32[prior_0,4]"]
    _check(separate, *reference["scores"])


def test_batch_stays_symbolic_and_runs_at_other_sizes(saved_models: Any) -> None:
    import tensorflow as tf
    path, _ = saved_models["dynamic_batch"]
    module = ember.load(path)
    (arg,) = module.functions["main"].body.args
    assert isinstance(arg.type, TensorType) and str(arg.type.shape[0]) == "batch"
    assert "reshape" in str(module)  # Keras' Reshape and Flatten: symbolic target shapes, no host shapes
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    for batch in (1, 3, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 6, 6, 4)).astype(np.float32)
        (key, ref), = fn(**{arg.name: tf.constant(x)}).items()
        assert_close(interpret(module, {arg.name: x})[key], ref.numpy(), what=f"batch {batch}")


@pytest.mark.parametrize("name", ["mobilenet_v2", "small_resnet"])
def test_keras_cnn_needs_no_transposes(saved_models: Any, name: str) -> None:
    """NHWC is imported as NHWC: after the default pipeline there is no transpose at all,
    batch norms are folded into convolutions, and the result still matches TensorFlow."""
    path, reference = saved_models[name]
    module = ember.load(path)
    assert not any(op.name == "ember.transpose" for op in module.walk())
    run_pipeline(module, "default")
    ops = Counter(op.name for op in module.walk())
    assert ops["ember.transpose"] == 0, ops
    assert ops["ember.batch_norm"] == 0 and ops["ember.rsqrt"] == 0, ops
    assert all(op.attributes["layout"] == "NHWC" for op in module.walk() if op.name == "ember.conv")
    _check(module, *reference["serving_default"])


def test_transformer_gelu_layer_norm_and_attention_are_recognized(saved_models: Any) -> None:
    path, reference = saved_models["transformer_block"]
    module = ember.load(path)
    run_pipeline(module, "default")
    ops = Counter(op.name for op in module.walk())
    assert ops["ember.layer_norm"] == 2 and ops["ember.gelu"] == 2 and ops["ember.attention"] == 1, ops
    assert ops["ember.erf"] == 0 and ops["ember.rsqrt"] == 0 and ops["ember.tanh"] == 0, ops
    assert ops["ember.einsum"] == 0 and ops["ember.softmax"] == 0, ops
    approx = sorted(op.attributes["approximate"] for op in module.walk() if op.name == "ember.gelu")
    assert approx == ["none", "tanh"]
    _check(module, *reference["serving_default"])


def test_keras2_fused_batch_norm_layer_norm_is_recognized(saved_models: Any) -> None:
    """tf.keras 2's LayerNormalization through FusedBatchNormV3(is_training=True) becomes one
    layer_norm over the last axis (its unit scale and zero offset disappear)."""
    path, reference = saved_models["keras2_layer_norm"]
    module = ember.load(path)
    run_pipeline(module, "default")
    ops = Counter(op.name for op in module.walk())
    assert ops["ember.layer_norm"] == 1 and ops["ember.rsqrt"] == 0 and ops["ember.reduce_mean"] == 0, ops
    _check(module, *reference["serving_default"])


def test_keras_recurrent_layers_become_recurrent_ops(saved_models: Any) -> None:
    """The While loops of an LSTM, a bidirectional GRU and a SimpleRNN (7 steps) are one
    ember.lstm, two ember.gru (forward, and backward on the reversed input) and one ember.rnn:
    no unrolled step is left, the weights are the ops' own (W, R, B per loop), and the model
    still matches TensorFlow, before and after the default pipeline, which makes the two GRUs
    one bidirectional GRU (recognize-recurrent): one recurrent op per Keras layer."""
    path, reference = saved_models["keras_rnn"]
    module = ember.load(path)
    ops = Counter(op.name for op in module.walk())
    assert (ops["ember.lstm"], ops["ember.gru"], ops["ember.rnn"]) == (1, 2, 1), ops
    assert ops["ember.loop"] == ops["ember.sigmoid"] == ops["ember.tanh"] == 0 and ops["ember.matmul"] == 1, ops
    assert len(module.weights) == 4 * 3 + 2  # W, R, B of each recurrent op, and the Dense layer's two
    _check(module, *reference["serving_default"])
    optimized = ember.load(path)
    run_pipeline(optimized, "default")
    after = Counter(op.name for op in optimized.walk())  # one op per layer: the two GRUs are one bidirectional
    assert (after["ember.lstm"], after["ember.gru"], after["ember.rnn"]) == (1, 1, 1), after
    assert [op.attributes["direction"] for op in optimized.walk() if op.name == "ember.gru"] == ["bidirectional"]
    _check(optimized, *reference["serving_default"])


def test_recurrent_layers_off_the_defaults(saved_models: Any) -> None:
    """A GRU without reset_after and a relu SimpleRNN run backwards are recurrent ops too; an
    LSTM that reads a mask is no plain cell (its loop also reads the mask), so it is unrolled.
    All match TensorFlow."""
    path, reference = saved_models["keras_rnn_variants"]
    module = ember.load(path)
    ops = Counter(op.name for op in module.walk())
    assert (ops["ember.lstm"], ops["ember.gru"], ops["ember.rnn"]) == (0, 1, 1), ops
    grus = [op for op in module.walk() if op.name == "ember.gru"]
    assert grus[0].attributes["linear_before_reset"] is False
    assert [op.attributes["activations"] for op in module.walk() if op.name == "ember.rnn"] == [("relu",)]
    assert ops["ember.sigmoid"] >= 6 * 3, ops  # the masked LSTM, unrolled: 3 sigmoid gates a step
    _check(module, *reference["serving_default"])


def test_space_to_batch_convolutions_become_dilated_convolutions(saved_models: Any) -> None:
    """SpaceToBatchND -> conv -> BatchToSpaceND is one dilated ember.conv: no rearranging
    transposes or reshapes are left, and the result still matches TensorFlow."""
    path, reference = saved_models["dilated_convs"]
    module = ember.load(path)
    ops = Counter(op.name for op in module.walk())
    assert ops["ember.transpose"] == 0 and ops["ember.reshape"] == 0, ops
    dilations = sorted(tuple(op.attributes["dilations"]) for op in module.walk() if op.name == "ember.conv")
    assert dilations == [(1, 3), (2, 2), (2, 3), (3, 3)], dilations
    _check(module, *reference["serving_default"])


def test_weights_come_from_the_checkpoint_once(saved_models: Any) -> None:
    """Keras' export reads each variable through two handles; the module holds each value once."""
    path, _ = saved_models["small_resnet"]
    module = ember.load(path)
    arrays = [w.data for w in module.weights.values()]
    assert len(module.weights) == 6 + 6 * 4 + 2  # conv kernels, batch norms' four vectors, the dense layer
    assert len({id(a) for a in arrays}) == len(arrays)
    contents = {a.tobytes() for a in arrays}
    assert len(contents) == len(arrays), "a variable's value was imported twice"


def test_cli_import(saved_models: Any, tmp_path: Any, capsys: Any) -> None:
    from ember.cli import main
    path, reference = saved_models["two_signatures"]
    out = tmp_path / "scores.ir"
    assert main(["import", str(path), "-o", str(out), "--signature", "scores"]) == 0
    module = ember.load(out)
    _check(module, *reference["scores"])


def test_engine_from_a_saved_model_runs_on_the_host(saved_models: Any, kernel_cache: Path) -> None:
    """SavedModel -> passes -> CUDA through NVRTC -> engine, run on the host arena."""
    path, reference = saved_models["two_signatures"]
    feeds, expected = reference["scores"]
    engine = ember.compile(ember.load(path, signature="scores"), targets=["sm_80"],
                           shapes={name: value.shape for name, value in feeds.items()}, cache_dir=kernel_cache)
    out = engine.run(feeds, device="cpu")
    for name, ref in expected.items():
        assert_close(np.asarray(out[name]), ref, what=name)


def test_cli_compile_and_run_a_saved_model(saved_models: Any, tmp_path: Any, kernel_cache: Path) -> None:
    """`ember compile DIR --signature ... --shapes ...` then `ember run OUT.engine` (host arena)."""
    from ember.cli import main
    path, reference = saved_models["two_signatures"]
    feeds, expected = reference["scores"]
    engine = tmp_path / "scores.engine"
    assert main(["compile", str(path), "--signature", "scores", "-o", str(engine), "--target", "sm_90",
                 "--shapes", "features:3x8", "--shapes", "prior:3x4", "--cache-dir", str(kernel_cache)]) == 0
    args = ["run", str(engine), "-o", str(tmp_path / "out.npz"), "--device", "cpu"]
    for name, value in feeds.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["-i", f"{name}={tmp_path / f'{name}.npy'}"]
    assert main(args) == 0
    out = np.load(tmp_path / "out.npz")
    for name, ref in expected.items():
        assert_close(out[name], ref, what=name)
