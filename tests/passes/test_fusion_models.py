"""fold-batch-norm and the fusion passes on real networks: the small ONNX fixtures (and the
ONNX test suite's light models with real batch norms) compute the same before and after
the fusion pipeline, by the project's tolerance on the interpreter, and every heavy op ends
up alone in its own epilogue region."""

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

import ember
from ember import ir
from ember.ir.opdef import Heavy
from ember.passes import run_pipeline
from ember.tolerance import assert_close

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))
PIPELINE = "canonicalize,fold-constants,fold-batch-norm,canonicalize,cse,fuse-epilogue,fuse-elementwise"
PIPELINES: dict[str, str] = {}


def feeds_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path.with_suffix(".inputs.npz")) as data:
        return {k: data[k] for k in data.files}


def heavy(op) -> bool:
    return Heavy in getattr(op, "traits", ())


def check_structure(module: ir.Module, before: Counter) -> None:
    """Heavy ops: no more than before, each alone in an epilogue region (those of one result:
    recurrent ops stay outside)."""
    fused = [op for op in module.walk() if op.name == "ember.fused"]
    for op in fused:
        inner = [i for i in op.regions[0].walk() if heavy(i)]
        if op.attributes["kind"] == "epilogue":
            assert len(inner) == 1 and op.regions[0].ops[0] is inner[0], f"{op.loc}: {len(inner)} heavy ops"
        else:
            assert not inner, f"{op.loc}: a heavy op in a {op.attributes['kind']} region"
    for fn in module.functions.values():
        assert not any(heavy(op) and len(op.results) == 1 for op in fn.body.ops), "a heavy op outside a fused op"
    after = Counter(op.name for op in module.walk() if heavy(op))
    assert all(after[k] <= n for k, n in before.items()) and set(after) <= set(before)  # cse may merge twins


@pytest.mark.parametrize("name", MODELS)
def test_fixture_computes_the_same_after_fusion(name):
    path = FIXTURES / f"{name}.onnx"
    feeds = feeds_of(path)
    module = ember.load(path)
    want = ir.interpret(module, feeds)
    heavy_before = Counter(op.name for op in module.walk() if heavy(op))
    run_pipeline(module, PIPELINES.get(name, PIPELINE))
    check_structure(module, heavy_before)
    assert not any(op.name == "ember.batch_norm" for op in module.walk())
    text = str(module)
    assert str(ir.parse(text)) == text  # fused regions print and parse back
    got = ir.interpret(module, feeds)
    assert set(got) == set(want)
    for out in want:
        assert_close(np.asarray(got[out]), np.asarray(want[out]), what=f"{name}:{out}")


LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.mark.parametrize("name", ["light_resnet50", "light_inception_v2"])
def test_light_models_fold_their_batch_norms(name):
    """Real batch norms after convs fold into the convs whose weights are constants; the
    others (the light models' weights are ConstantOfShape) become a multiply-add that fuses."""
    path = LIGHT / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    module = ember.load(path)
    rng = np.random.default_rng(0)
    feeds = {n: rng.uniform(-1, 1, v.type.static_shape).astype(np.float32)
             for n, v in zip(module.main.input_names, module.main.inputs)}
    want = ir.interpret(module, feeds)
    heavy_before = Counter(op.name for op in module.walk() if heavy(op))
    records = run_pipeline(module, PIPELINE)
    stats = Counter()
    for r in records:
        stats.update(r.stats)
    assert stats["conv-batch-norm"] > 0
    assert not any(op.name == "ember.batch_norm" for op in module.walk())
    check_structure(module, heavy_before)
    got = ir.interpret(module, feeds)
    for out in want:
        assert_close(np.asarray(got[out]), np.asarray(want[out]), what=f"{name}:{out}")
