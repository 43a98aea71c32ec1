"""recognize-patterns on real networks: the small ONNX fixtures compute the same before
and after `canonicalize,fold-constants,recognize-patterns,canonicalize,cse` (the project's
tolerance on the interpreter), and the transformers come out with one ember.attention per
layer, their GELUs and LayerNorms as single ops, and none of the decomposed pieces left."""

from collections import Counter
from pathlib import Path

import ember
import numpy as np
import pytest
from ember import ir
from ember.passes import run_pipeline
from ember.tolerance import compare

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
MODELS = [p.stem for p in sorted(FIXTURES.glob("*.onnx"))]
PIPELINE = "canonicalize,fold-constants,recognize-patterns,canonicalize,cse"

# Two layers each: per layer one attention and one GELU; LayerNorms: BERT's embeddings one
# plus two a layer, ViT's two a layer plus the final one, GPT-2's likewise.
EXPECTED = {
    "bert_small": {"ember.attention": 2, "ember.layer_norm": 5, "ember.gelu": 2},
    "vit_b_16_small": {"ember.attention": 2, "ember.layer_norm": 5, "ember.gelu": 2},
    "gpt2_small": {"ember.attention": 2, "ember.layer_norm": 5, "ember.gelu": 2},
}
GONE = ("ember.softmax", "ember.erf", "ember.tanh", "ember.isnan", "ember.sqrt", "ember.pow")


def feeds_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path.with_suffix(".inputs.npz")) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("name", MODELS)
def test_fixture_computes_the_same_after_recognition(name):
    path = FIXTURES / f"{name}.onnx"
    feeds = feeds_of(path)
    module = ember.load(path)
    want = ir.interpret(module, feeds)
    run_pipeline(module, PIPELINE)
    got = ir.interpret(module, feeds)
    assert set(got) == set(want)
    for out in want:
        result = compare(np.asarray(got[out]), np.asarray(want[out]))
        assert result, f"{name}:{out}: {result.message} (max diff {result.max_abs_diff:g}, bound {result.bound:g})"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_transformer_ops_are_recognized(name):
    module = ember.load(FIXTURES / f"{name}.onnx")
    run_pipeline(module, PIPELINE)
    counts = Counter(op.name for op in module.walk())
    assert {op: counts[op] for op in EXPECTED[name]} == EXPECTED[name]
    assert not [op for op in GONE if counts[op]], f"decomposed pieces left: {counts}"
    for op in module.walk():
        if op.name == "ember.attention":
            assert op.attributes["scale"] == pytest.approx(1 / 4)  # head size 16, folded from q, k or scores
            mask = op.mask
            if name == "vit_b_16_small":
                assert mask is None
            else:  # where(keep, 0, -inf) as the bool mask `keep`
                assert mask is not None and mask.type.dtype.kind == "bool"
            # GPT-2's key <= query comparison of positions is the causal flag; the padding stays
            assert op.attributes["causal"] == (name == "gpt2_small")
            if name == "gpt2_small":
                assert mask.type.shape[2] == 1
