"""Real exported networks, small versions (scripts/export_models.py --small made them
with torch.onnx: ResNet-50, MobileNetV2, EfficientNet-B0, ViT-B/16, BERT, GPT-2,
SSDlite with its post-processing, an LSTM tagger; random weights): each imports,
verifies, keeps its batch symbolic, and matches onnxruntime on the interpreter by
the project's f32 rule, at the exported batch and at another one."""

from pathlib import Path

import numpy as np
import pytest

import ember
from ember import ir
from ember.ir.dims import DimExpr
from ember.tolerance import assert_close

FIXTURES = Path(__file__).parent.parent.parent / "fixtures" / "onnx"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))
EXPECTED = {"resnet50_small", "mobilenet_v2_small", "efficientnet_b0_small", "vit_b_16_small", "bert_small",
            "gpt2_small", "ssdlite_small", "lstm_small"}


def test_every_fixture_is_there():
    assert set(MODELS) == EXPECTED


def run_ort(path, feeds):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def resized(feeds, batch):
    """The same kind of inputs at another batch size (integers stay in range)."""
    out = {}
    for name, a in feeds.items():
        reps = (batch + a.shape[0] - 1) // a.shape[0]
        out[name] = np.concatenate([a] * reps, axis=0)[:batch]
    return out


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    path = FIXTURES / f"{request.param}.onnx"
    with np.load(path.with_suffix(".inputs.npz")) as data:
        feeds = {k: data[k] for k in data.files}
    return path, ember.load(path), feeds


def compare(module, path, feeds):
    got = ir.interpret(module, feeds)
    want = run_ort(path, feeds)
    assert set(got) == set(want)
    for name in want:
        assert_close(np.asarray(got[name]), np.asarray(want[name]), what=f"{path.stem}:{name}")


def test_imports_verifies_and_matches_onnxruntime(model):
    path, module, feeds = model
    ir.verify(module)
    compare(module, path, feeds)


def test_batch_stays_symbolic_and_another_batch_matches(model):
    path, module, feeds = model
    first = module.main.inputs[0].type
    if path.stem == "ssdlite_small":  # one image; its height and width are the dynamic dims
        assert all(isinstance(d, DimExpr) for d in first.shape[2:])
        return
    assert isinstance(first.shape[0], DimExpr), f"{path.stem}: batch dim is {first.shape[0]}"
    compare(module, path, resized(feeds, 3))
