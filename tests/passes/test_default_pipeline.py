"""The `default` pipeline on every real-model fixture: what it leaves, and that it
computes what the imported model computes (the project's f32 rule)."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import ember
from ember import ir
from ember.ir.opdef import Heavy
from ember.passes import PassManager
from ember.tolerance import assert_close

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))


def feeds_of(name):
    with np.load(FIXTURES / f"{name}.inputs.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("name", MODELS)
def test_default_pipeline_keeps_meaning_and_fuses(name):
    module = ember.load(FIXTURES / f"{name}.onnx")
    feeds = feeds_of(name)
    want = ir.interpret(module, feeds)
    records = PassManager("default").run(module)
    assert [r.name for r in records][:5] == ["canonicalize", "fold-qdq", "fold-qdq-fp8", "fold-constants",
                                             "fold-batch-norm"]
    got = ir.interpret(module, feeds)
    for out in want:
        assert_close(np.asarray(got[out]), np.asarray(want[out]), what=f"{name}:{out}")
    for op in module.walk():
        if op.name == "ember.fused":
            heavy = [o for o in op.regions[0].walk() if Heavy in getattr(o, "traits", ())]
            assert len(heavy) <= 1, f"{name}: a fused op holds {len(heavy)} heavy ops"
    # Running it again finds nothing left to do.
    again = PassManager("default").run(module)
    assert not any(r.stats for r in again if r.name not in ("fold-constants",)), [r for r in again if r.stats]


def test_what_default_leaves_in_the_small_networks():
    counts = {}
    for name in ("resnet50_small", "bert_small", "vit_b_16_small"):
        module = ember.load(FIXTURES / f"{name}.onnx")
        PassManager("default").run(module)
        counts[name] = Counter(op.name for op in module.walk())
        top = Counter(op.name for op in module.main.body.ops)
        if name == "resnet50_small":
            assert counts[name]["ember.batch_norm"] == 0 and counts[name]["ember.transpose"] <= 1
            convs = [op for op in module.main.body.ops if op.name == "ember.fused" and op.attributes["kind"] == "epilogue"
                     and any(o.name == "ember.conv" for o in op.regions[0].ops)]
            assert len(convs) == counts[name]["ember.conv"] and top["ember.conv"] == 0
            assert all(o.attributes["layout"] == "NHWC" for o in module.walk() if o.name == "ember.conv")
        else:
            assert counts[name]["ember.attention"] == 2 and counts[name]["ember.layer_norm"] == 5
