"""Full-size ResNet-50, MobileNetV2, ViT-B/16 and BERT-base, exported here with random
weights (scripts/export_models.py, in the same process), built into fp32 and fp16 engines
and run on the GPU, against onnxruntime by the project's rule (ember/tolerance.py: rtol 1e-4
for fp32, 1e-2 for fp16, of the largest reference value). Needs torch and a GPU: it runs on
the device through scripts/gpu_check.sh."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

try:  # torch before NVRTC and the driver are loaded by a build
    import torch
except ImportError:
    torch = None

from ember.runtime import cuda
from ember.tolerance import TOLERANCES, compare

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda.available()[0], reason=f"no CUDA GPU: {cuda.available()[1]}"),
              pytest.mark.skipif(torch is None, reason="exporting the models needs torch")]

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["resnet50", "mobilenet_v2", "vit_b_16", "bert"]
# The tolerance of each precision's own element type, applied to the f32 outputs.
RULE = {"fp32": TOLERANCES["float32"], "fp16": TOLERANCES["float16"]}


def _export_script():
    spec = importlib.util.spec_from_file_location("export_models", ROOT / "scripts" / "export_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Exported:
    """Each model exported once (full size, batch 2) with onnxruntime's outputs on it."""

    def __init__(self, out: Path) -> None:
        self.out, self.script, self.done = out, _export_script(), {}

    def __call__(self, name: str):
        if name not in self.done:
            import onnxruntime as ort
            path, feeds = self.script.export(name, False, self.out)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
            self.done[name] = (path, feeds, want)
        return self.done[name]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return Exported(tmp_path_factory.mktemp("full-models"))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", MODELS)
def test_full_size_model_on_the_gpu_matches_onnxruntime(exported, built, name, precision, record_property):
    import ember
    path, feeds, want = exported(name)
    start = time.perf_counter()
    engine = ember.compile(ember.load(path), precision=precision, shapes={k: v.shape for k, v in feeds.items()},
                           cache_dir=built.cache_dir)
    record_property("build_seconds", round(time.perf_counter() - start, 2))
    assert engine.report.host_ops == [], engine.report.summary()
    got = engine.run(feeds, device="cuda")
    rtol, atol = RULE[precision]
    for k, w in want.items():
        c = compare(np.asarray(got[k]).astype(w.dtype), w, rtol=rtol, atol=atol)
        record_property(f"{k}_max_abs_diff", c.max_abs_diff)
        record_property(f"{k}_bound", c.bound)
        assert c, f"{name} {precision} {k}: {c.message}"


# One engine for a range of shapes (optimization profiles), against onnxruntime at each shape.
PROFILE_CASES = {
    "bert": ({"input_ids": ((1, 16), (8, 128), (32, 512)), "attention_mask": ((1, 16), (8, 128), (32, 512))},
             [(1, 16), (1, 17), (3, 129), (8, 128), (5, 300), (32, 512)]),
    "resnet50": ({"image": ((1, 3, 224, 224), (8, 3, 224, 224), (64, 3, 224, 224))},
                 [(1,), (3,), (8,), (21,), (64,)]),
}


def _profile_feeds(name: str, template: dict[str, np.ndarray], point: tuple, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in template.items():
        shape = tuple(point) + tuple(v.shape[len(point):])
        if v.dtype.kind == "f":
            out[k] = rng.standard_normal(shape).astype(v.dtype)
        elif "mask" in k:
            mask = np.ones(shape, v.dtype)
            mask[..., shape[-1] * 3 // 4:] = 0 if shape[-1] > 4 else 1  # some padding, never all of it
            out[k] = mask
        else:
            out[k] = rng.integers(0, 1000, size=shape).astype(v.dtype)
    return out


@pytest.mark.parametrize("name", sorted(PROFILE_CASES))
def test_one_full_size_engine_serves_its_profile(exported, built, name, record_property):
    import onnxruntime as ort

    import ember
    path, feeds, _ = exported(name)
    profile, points = PROFILE_CASES[name]
    start = time.perf_counter()
    engine = ember.compile(ember.load(path), profiles=[profile], cache_dir=built.cache_dir)
    record_property("build_seconds", round(time.perf_counter() - start, 2))
    record_property("variants", len(engine.specializations))
    assert engine.report.host_ops == [], engine.report.summary()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ctx = engine.create_context("cuda")
    rtol, atol = RULE["fp32"]
    for i, point in enumerate(points):
        x = _profile_feeds(name, feeds, point, i)
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, x)))
        got = ctx.run(x)
        for k, w in want.items():
            c = compare(np.asarray(got[k]), w, rtol=rtol, atol=atol)
            record_property(f"{'x'.join(map(str, point))}_{k}_diff_over_bound", round(c.max_abs_diff / c.bound, 4))
            assert c, f"{name} at {point} {k}: {c.message}"
