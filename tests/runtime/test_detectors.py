"""YOLOv8 end to end (scripts/export_yolov8.py --small: a narrow YOLOv8 at 160x160, random
weights, 80 classes, with ONNX NonMaxSuppression and gathers after the network): both the
network alone (its `output`, taken as the graph's output) and with NMS compile with no host
step, and match onnxruntime.

The network's output follows the project's f32 rule. NMS turns tiny float differences into
different decisions where a score sits at the score threshold, an IoU at the IoU threshold or
two overlapping boxes' scores tie (random weights put many there), and one different keep
changes what it suppresses. So per (image, class) the boxes greedy NMS keeps on
onnxruntime's network output before its first such near tie (the margins below) must begin
Ember's kept list, in order, and those prefixes must cover most detections, so that a broken
NMS still fails.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from kernel_checks import gpu_available

import ember
from ember.tolerance import assert_close

ROOT = Path(__file__).resolve().parents[2]
DETECTORS = ROOT / "tests" / "fixtures" / "detectors"
YOLO = DETECTORS / "yolov8_small_nms.onnx"
EXPECTED_HOST_OPS = json.loads((Path(__file__).with_name("expected_host_ops.json")).read_text())
NMS = json.loads((DETECTORS / "yolov8_small.provenance.json").read_text())["nms"]
SCORE_MARGIN, IOU_MARGIN = 1e-5, 1e-4  # float noise: scores differ by ~1e-7 on the host, more on a GPU
BATCH = 2


def network_only(path: Path) -> bytes:
    """The exported network without the NMS nodes: its output `output`."""
    import onnx
    model = onnx.load(str(path))
    keep = [n for n in model.graph.node if not any(o.startswith("nms_") or o in ("selected", "boxes", "scores")
                                                  for o in n.output)]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    del model.graph.output[:]
    model.graph.output.extend([onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, None)])
    for init in [i for i in model.graph.initializer if i.name.startswith("nms_")]:
        model.graph.initializer.remove(init)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("yolo")
    plain = folder / "yolov8_small.onnx"
    plain.write_bytes(network_only(YOLO))
    return {"yolov8_small": plain, "yolov8_small_nms": YOLO}


def images(seed: int | None) -> np.ndarray:
    """Scenes rather than noise: coarse random blobs (20x20 cells, smoothed) over fine noise,
    so that features, and so scores, differ from anchor to anchor (uniform noise makes most of
    them tie)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((BATCH, 3, 8, 8))
    smooth = np.kron(coarse, np.ones((20, 20)))
    for axis in (2, 3):  # a box blur of width 9 along each side
        smooth = sum(np.roll(smooth, k, axis=axis) for k in range(-4, 5)) / 9
    return (0.8 * smooth + 0.2 * rng.random((BATCH, 3, 160, 160))).astype(np.float32)


def run_ort(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


@pytest.fixture(scope="module")
def engines(models, built) -> dict[str, ember.Engine]:
    # sm_90 only: the device's (the kernels' other target is compiled by tests/codegen for every template)
    return {name: ember.compile(ember.load(path), shapes={"images": (BATCH, 3, 160, 160)}, targets=("sm_90",),
                                cache_dir=built.cache_dir) for name, path in models.items()}


def corners(xywh: np.ndarray) -> np.ndarray:
    x, y, w, h = xywh.T
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area = lambda c: (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def robust_prefix(raw: np.ndarray, image: int, cls: int) -> list[int]:
    """The boxes greedy NMS keeps for (image, class) from `raw`, up to its first decision that
    float noise could flip (cut there: every later one depends on it): a candidate's score
    within the margin of the threshold, or of the next candidate's where the two overlap (their
    order), or its IoU with a kept box within the margin of the IoU threshold."""
    scores = raw[image, 4 + cls].astype(np.float64)
    t, limit = NMS["score_threshold"], NMS["iou_threshold"]
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] > t - SCORE_MARGIN]
    boxes = corners(raw[image][:4, order].T.astype(np.float64))
    kept: list[int] = []  # positions in `order`

    def overlaps(k: int) -> np.ndarray:  # IoU of candidate k with the kept boxes
        return iou(boxes[k:k + 1], boxes[kept])[0] if kept else np.zeros(0)

    for k, i in enumerate(order):
        if len(kept) == NMS["max_output_boxes_per_class"]:
            break
        o = overlaps(k)
        if np.any(o > limit + IOU_MARGIN):
            continue  # suppressed by a kept box, whatever the noise
        if abs(scores[i] - t) < SCORE_MARGIN or np.any(np.abs(o - limit) < IOU_MARGIN):
            break
        if k + 1 < len(order) and abs(scores[i] - scores[order[k + 1]]) < SCORE_MARGIN \
                and iou(boxes[k:k + 1], boxes[k + 1:k + 2])[0, 0] > limit - IOU_MARGIN \
                and not np.any(overlaps(k + 1) > limit + IOU_MARGIN):
            break  # which of two overlapping near-equal boxes comes first, and suppresses the other
        if not np.any(o > limit):
            kept.append(k)
    return [int(order[k]) for k in kept]


def groups(selected: np.ndarray) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    for b, c, i in selected.tolist():
        out.setdefault((b, c), []).append(i)
    return out


def check_detections(got: dict[str, np.ndarray], want: dict[str, np.ndarray], raw: np.ndarray) -> float:
    """Per (image, class), the boxes kept before NMS's first near-tie decision (on
    onnxruntime's network output) begin Ember's kept list (as a set: rows of near-equal scores
    may come in either order); the boxes both keep have
    coordinates and scores by the f32 rule. Returns the share of onnxruntime's detections
    that the robust prefixes cover (what the comparison really checked)."""
    mine = groups(got["selected"])
    checked = 0
    for b in range(raw.shape[0]):
        for c in range(raw.shape[1] - 4):
            prefix = robust_prefix(raw, b, c)
            # the same boxes kept; their rows' order is score order, which near-equal scores
            # (overlapping or not) may swap
            assert sorted(mine.get((b, c), [])[:len(prefix)]) == sorted(prefix), \
                f"class {c} of image {b}: Ember kept {mine.get((b, c), [])[:len(prefix) + 2]}..., greedy NMS " \
                f"on onnxruntime's scores keeps {prefix} before any near tie"
            checked += len(prefix)
    rows_mine = {tuple(r): k for k, r in enumerate(got["selected"].tolist())}
    common = [(rows_mine[tuple(r)], k) for k, r in enumerate(want["selected"].tolist()) if tuple(r) in rows_mine]
    a, b = np.array(common).T
    assert_close(got["boxes"][a], want["boxes"][b], what="kept boxes")
    assert_close(got["scores"][a], want["scores"][b], what="kept scores")
    return checked / max(1, len(want["selected"]))


def test_both_exports_compile_with_no_host_step(engines):
    for name, engine in engines.items():
        assert engine.report.host_ops == EXPECTED_HOST_OPS[name] == [], name
    kinds = [engines["yolov8_small_nms"].ops[s.ops[0]].name for s in engines["yolov8_small_nms"].steps
             if s.kind == "size"]
    assert "ember.head" in kinds  # NMS's count, read back


def test_the_network_matches_onnxruntime_on_the_host_arena(engines, models):
    feeds = {"images": images(0)}
    assert_close(engines["yolov8_small"].run(feeds)["output"], run_ort(models["yolov8_small"], feeds)["output"],
                 what="yolov8_small output")


def test_detections_match_onnxruntime_on_the_host_arena(engines, models):
    feeds = {"images": images(1)}
    got = engines["yolov8_small_nms"].run(feeds)
    want = run_ort(YOLO, feeds)
    raw = run_ort(models["yolov8_small"], feeds)["output"]
    covered = check_detections(got, want, raw)
    assert len(want["selected"]) > 200 and covered > 0.5, covered


def export_script():
    spec = importlib.util.spec_from_file_location("export_yolov8", ROOT / "scripts" / "export_yolov8.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", ["yolov8n", "yolov8s"])
def test_full_size_yolov8_on_the_gpu_matches_onnxruntime(name, built, tmp_path, record_property):
    """YOLOv8n/s at 640x640, batch 2 (the committed graphs given seeded random filters)."""
    path = export_script().refill(DETECTORS / f"{name}_nms.graph.onnx", tmp_path)
    plain = tmp_path / f"{name}.onnx"
    plain.write_bytes(network_only(path))
    rng = np.random.default_rng()
    feeds = {"images": rng.random((2, 3, 640, 640), dtype=np.float32)}
    raw = run_ort(plain, feeds)["output"]
    for model, check in ((plain, "network"), (path, "detections")):
        engine = ember.compile(ember.load(model), shapes={"images": (2, 3, 640, 640)}, targets=("sm_90",),
                               cache_dir=built.cache_dir)
        assert engine.report.host_ops == []
        got = {k: np.asarray(v) for k, v in engine.run(feeds, device="cuda").items()}
        if check == "network":
            assert_close(got["output"], raw, what=f"{name} output")
        else:
            want = run_ort(path, feeds)
            covered = check_detections(got, want, raw)
            record_property("detections", len(want["selected"]))
            record_property("covered", round(covered, 3))
            assert len(want["selected"]) > 100 and covered > 0.5, covered


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_detections_match_onnxruntime_on_the_gpu(engines, models):
    for seed in (None, None):
        feeds = {"images": images(seed)}
        got = {k: np.asarray(v) for k, v in engines["yolov8_small_nms"].run(feeds, device="cuda").items()}
        raw = run_ort(models["yolov8_small"], feeds)["output"]
        assert_close(np.asarray(engines["yolov8_small"].run(feeds, device="cuda")["output"]), raw,
                     what="yolov8_small output")
        assert check_detections(got, run_ort(YOLO, feeds), raw) > 0.5
