"""layout-nhwc on real models: the small ONNX fixtures compute the same before and after,
and ResNet-50 ends with every conv and pool NHWC and one transpose (at the input)."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import ember
from ember import ir
from ember.ir.opdef import REGISTRY, LayoutSensitive
from ember.passes.layout_nhwc import SPECS
from ember.passes.manager import run_pipeline
from ember.tolerance import assert_close

FIXTURES = Path(__file__).parents[1] / "fixtures" / "onnx"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))
FULL_RESNET = Path("/tmp/full_models/resnet50.onnx")
ACCEPTANCE = "canonicalize,fold-constants,layout-nhwc,canonicalize,cse"
CONV_NETS = ("resnet50_small", "mobilenet_v2_small", "efficientnet_b0_small")


def ops(module: ir.Module) -> Counter:
    return Counter(op.name for op in module.walk())


def layouts(module: ir.Module) -> Counter:
    return Counter(op.attributes.get("layout") for op in module.walk()
                   if op.name in ("ember.conv", "ember.max_pool", "ember.avg_pool", "ember.global_avg_pool"))


def test_every_layout_sensitive_op_has_a_spec():
    missing = sorted(n for n, c in REGISTRY.items() if LayoutSensitive in c.traits and n not in SPECS)
    assert not missing, f"layout-nhwc does not know which operands of {missing} are activations"


def check_model(name: str, pipeline: str) -> ir.Module:
    path = FIXTURES / f"{name}.onnx"
    feeds = dict(np.load(FIXTURES / f"{name}.inputs.npz"))
    before, after = ember.load(path), ember.load(path)
    run_pipeline(after, pipeline)
    want, got = ir.interpret(before, feeds), ir.interpret(after, feeds)
    for key in want:
        assert_close(np.asarray(got[key]), np.asarray(want[key]), what=f"{name} output {key}")
    return after


@pytest.mark.parametrize("name", MODELS)
def test_layout_keeps_numerics(name):
    """The pass alone (plus cse, which merges the transposes it duplicates) on every fixture."""
    after = check_model(name, "layout-nhwc,cse")
    assert all(lay == "NHWC" for lay in layouts(after))


@pytest.mark.parametrize("name", CONV_NETS)
def test_conv_nets_keep_one_transpose(name):
    """The acceptance pipeline on the conv nets: all NHWC, one transpose (the image's)."""
    after = check_model(name, ACCEPTANCE)
    assert set(layouts(after)) == {"NHWC"}
    transposes = [op for op in after.walk() if op.name == "ember.transpose"]
    assert len(transposes) == 1 and transposes[0].operands[0] is after.main.inputs[0]


@pytest.mark.skipif(not FULL_RESNET.exists(), reason="full-size ResNet-50 export not present")
def test_full_resnet50_counts():
    module = ember.load(FULL_RESNET)
    before = ops(module)
    run_pipeline(module, ACCEPTANCE)
    after = ops(module)
    assert before["ember.transpose"] == 0 and after["ember.transpose"] == 1
    assert after["ember.conv"] == before["ember.conv"] == 53
    assert layouts(module) == Counter({"NHWC": 53 + 2})  # 53 convs, the max pool, the global pool
    assert after["ember.flatten"] == 0 and after["ember.reshape"] == 1
    convs = [op for op in module.walk() if op.name == "ember.conv"]
    assert all(op.attributes["weight_layout"] == "OHWI" for op in convs)
    assert all(op.operands[1].defining_op.attributes["name"].endswith("/ohwi") for op in convs)
