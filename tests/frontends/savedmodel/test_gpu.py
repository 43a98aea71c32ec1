"""SavedModels compiled into engines and run on the GPU, against TensorFlow's outputs.

The device has no TensorFlow, so the SavedModels and TensorFlow's outputs are built here
beforehand (`python tests/frontends/savedmodel/tf_models.py .savedmodels`) and carried to the
device with the working tree; scripts/gpu_check.sh names the folder in EMBER_SAVEDMODELS."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

try:  # torch before NVRTC and the driver are loaded by a build
    import torch  # noqa: F401
except ImportError:
    pass

from ember.runtime import cuda
from ember.tolerance import assert_close

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda.available()[0], reason=f"no CUDA GPU: {cuda.available()[1]}")]

ROOT = Path(__file__).resolve().parents[3]
# Host segments each model is expected to have: none. tf.where's coordinates have a size only the
# data decides: a size step reads it back and ember.nonzero's kernel writes them; the transpose
# after it runs sized at run time from that count.
EXPECTED_HOST_OPS: dict[str, list[str]] = {}
MODELS = ["mobilenet_v2", "small_resnet", "transformer_block", "keras_layers", "keras_rnn", "dilated_convs",
          "causal_attention", "dynamic_batch", "op_zoo", "keras2_layer_norm", "tf1_resource_variables"]


def _folder() -> Path:
    folder = Path(os.environ.get("EMBER_SAVEDMODELS", ROOT / ".savedmodels"))
    if not (folder / "op_zoo").is_dir():
        pytest.fail(f"{folder}: no prebuilt SavedModels; run `python tests/frontends/savedmodel/tf_models.py "
                    f"{folder}` where TensorFlow is installed and carry the folder")
    return folder


@pytest.mark.parametrize("name", MODELS)
def test_saved_model_engine_on_the_gpu_matches_tensorflow(name: str, tmp_path: Path) -> None:
    import ember
    folder = _folder()
    ref = np.load(folder / f"{name}.reference.npz")
    feeds = {k.split("/")[2]: ref[k] for k in ref.files if k.startswith("serving_default/in/")}
    want = {k.split("/")[2]: ref[k] for k in ref.files if k.startswith("serving_default/out/")}
    engine = ember.compile(ember.load(folder / name), shapes={k: v.shape for k, v in feeds.items()},
                           cache_dir=tmp_path / "cache")
    host = [str(entry).split(":")[0] for entry in engine.report.host_ops]
    assert host == EXPECTED_HOST_OPS.get(name, []), engine.report.summary()
    got = engine.run(feeds, device="cuda")
    assert sorted(got) == sorted(want)
    for k, w in want.items():
        assert_close(np.asarray(got[k]), w, what=f"{name}/{k}")
