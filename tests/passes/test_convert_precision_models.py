"""convert-precision on real models, compared with the low type's tolerance.

The textual tests (convert-precision.ir) use values that f16 holds exactly, because the
harness compares the declared f32 outputs with the f32 tolerance. Real models round at
every f16 op, so here the outputs are compared with the tolerance of the type the graph
computes in (ember.tolerance's f16 and bf16 rows), and the structure is checked: no float
op but the kept ones computes in f32.
"""

from pathlib import Path

import numpy as np
import pytest

import ember
from ember import ir
from ember.ir.opdef import Normalization, Reduction
from ember.ir.types import TensorType
from ember.passes.manager import run_pipeline
from ember.tolerance import assert_close, tolerance_for

FIXTURES = Path(__file__).parents[1] / "fixtures" / "onnx"
# ssdlite's detections are left out: its scores shift in the fourth digit, which reorders
# near-equal candidates through top-k and NMS, so whole boxes change places.
MODELS = ["resnet50_small", "mobilenet_v2_small", "efficientnet_b0_small", "bert_small", "gpt2_small",
          "vit_b_16_small", "lstm_small"]
F32_OK = {"ember.cast", "ember.constant", "ember.weight", "ember.nms", "ember.topk"}


def f32_ops(module: ir.Module) -> set[str]:
    """Ops other than casts and the f32-by-design ones that still produce f32."""
    return {op.name for op in module.walk()
            if op.name not in F32_OK and Reduction not in op.traits and Normalization not in op.traits
            and any(isinstance(r.type, TensorType) and r.type.dtype.name == "f32" for r in op.results)}


@pytest.mark.parametrize("to", ["f16", "bf16"])
@pytest.mark.parametrize("name", MODELS)
def test_low_precision_model(name, to):
    path = FIXTURES / f"{name}.onnx"
    feeds = dict(np.load(FIXTURES / f"{name}.inputs.npz"))
    before, after = ember.load(path), ember.load(path)
    run_pipeline(after, f"convert-precision{{to={to}}}")
    assert not f32_ops(after), f"{name}: still computing in f32: {sorted(f32_ops(after))}"
    assert after.main.output_types == before.main.output_types
    rtol, atol = tolerance_for("float16" if to == "f16" else "bfloat16")
    want, got = ir.interpret(before, feeds), ir.interpret(after, feeds)
    for key in want:
        assert_close(np.asarray(got[key]), np.asarray(want[key]), rtol=rtol, atol=atol,
                     what=f"{name} in {to}: output {key}")


def test_weights_converted_once():
    """Every conv filter of ResNet is read as a converted `<name>/f16` weight; the f32
    originals are gone from the store."""
    module = ember.load(FIXTURES / "resnet50_small.onnx")
    originals = set(module.weights)
    run_pipeline(module, "convert-precision")
    assert set(module.weights) == {f"{n}/f16" for n in originals}
    assert all(w.type.dtype.name == "f16" for w in module.weights.values())


def test_keep_by_type_and_location():
    module = ember.load(FIXTURES / "resnet50_small.onnx")
    run_pipeline(module, "convert-precision{keep=[ember.gemm,/stem/stem.0/Conv]}")
    kept = {op.name: op.results[0].type.dtype.name for op in module.walk()
            if op.name == "ember.gemm" or "/stem/stem.0/Conv" in op.loc.names and op.name == "ember.conv"}
    assert kept == {"ember.gemm": "f32", "ember.conv": "f32"}


def test_rejects_other_types():
    module = ember.load(FIXTURES / "resnet50_small.onnx")
    with pytest.raises(ember.errors.PassError, match="to='f8' is not one of f16, bf16"):
        run_pipeline(module, "convert-precision{to=f8}")
