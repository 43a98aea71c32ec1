"""YOLOv8s end to end (issue 16's benchmark): 640x640, batch 1 and 16, fp16, post-processing
included on both sides: Ember's engine of the ONNX export with NonMaxSuppression in the graph
against torch.compile (mode "reduce-overhead") of the same PyTorch model followed by the same
post-processing written with torchvision's batched NMS, in the same process on the same GPU.

    python benchmarks/gpu_yolov8.py --batches 1 --out DIR --timing-cache DIR/tc.json   (one batch a call)

(the device: carry the ultralytics wheel). Each stage prints its wall time as it ends, so a call
cut short by the device's limit still tells where the time went: the first device call (both
batches at opt level 2 in one 400 s call) printed nothing before the limit.

The network is built by scripts/export_yolov8.py from ultralytics' yaml configuration with
random weights (ultralytics is AGPL-3.0: used by this harness and the exporter, never by Ember;
the device lacks it and OpenCV, so the wheel is installed --no-deps and, where cv2 is absent, a
stand-in module satisfies its import: nothing here reads or draws images). Post-processing, as
ONNX NonMaxSuppression defines it: centre-point boxes, a score threshold, IoU suppression per
image and class, at most 100 boxes per class. Timed with CUDA events, inputs on the GPU, median
of 50 runs after 10 warm-up runs; frames per second = batch / median latency. The detections
are compared with PyTorch fp32's (the share of Ember's (image, class, anchor) triples that fp32
also keeps: fp16 moves boxes across the thresholds, so this is reported, not gated).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import types
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gpu_latency import build_log, cuda_time, stage, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 16)
IMGSZ = 640


class _NoOpenCV(types.ModuleType):
    """Stands in for cv2 where OpenCV is not installed: ultralytics imports it and sets a few
    options at import time; building and running the network never calls it."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _NoOpenCV(f"{self.__name__}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


def _exporter() -> Any:
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.modules["cv2"] = _NoOpenCV("cv2")
    spec = importlib.util.spec_from_file_location("export_yolov8", ROOT / "scripts" / "export_yolov8.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def postprocess(raw: Any, nms: dict[str, Any]) -> tuple[Any, Any, Any]:
    """ONNX NonMaxSuppression (centre-point boxes) over (batch, 4 + classes, anchors), then the
    kept boxes and scores gathered, as the export's graph does: (K, 3) [image, class, anchor],
    (K, 4) boxes, (K,) scores, ordered by (image, class) and score within each."""
    import torch
    import torchvision
    classes = raw.shape[1] - 4
    xywh = raw[:, :4].transpose(1, 2)
    scores = raw[:, 4:]
    corners = torch.cat([xywh[..., :2] - xywh[..., 2:] / 2, xywh[..., :2] + xywh[..., 2:] / 2], dim=-1)
    image, cls, anchor = (scores > nms["score_threshold"]).nonzero(as_tuple=True)
    score = scores[image, cls, anchor]
    group = image * classes + cls
    keep = torchvision.ops.batched_nms(corners[image, anchor].float(), score.float(), group, nms["iou_threshold"])
    group = group[keep]  # kept, by score; at most max_output_boxes_per_class per (image, class)
    order = torch.argsort(group, stable=True)
    grouped = group[order]
    first = torch.searchsorted(grouped, grouped)
    rank = torch.arange(grouped.numel(), device=grouped.device) - first
    kept = keep[order[rank < nms["max_output_boxes_per_class"]]]
    selected = torch.stack([image[kept], cls[kept], anchor[kept]], dim=1)
    return selected, xywh[image[kept], anchor[kept]], score[kept]


def _agreement(ember_rows: np.ndarray, reference_rows: np.ndarray) -> float:
    mine = {tuple(r) for r in ember_rows.tolist()}
    theirs = {tuple(r) for r in reference_rows.tolist()}
    return len(mine & theirs) / max(1, len(mine | theirs))


def run(batches: tuple[int, ...], opt_level: int, timing_cache: Path | None = None) -> dict[str, Any]:
    import copy

    import torch

    import ember
    t0 = time.perf_counter()
    export = _exporter()
    folder = Path(tempfile.mkdtemp())
    info = export.export("s", IMGSZ, folder, "yolov8s")
    model = export.build("s")  # the same seed: the weights the export has
    module = ember.load(folder / "yolov8s_nms.onnx")
    t = stage("built, exported and imported YOLOv8s", t0)
    nms = export.NMS
    fp32 = model.cuda()
    fp16 = copy.deepcopy(model).half().cuda()

    def torch_detect(net: Any, images: Any) -> tuple[Any, Any, Any]:
        raw = net(images)
        return postprocess(raw[0] if isinstance(raw, (list, tuple)) else raw, nms)

    compiled = torch.compile(lambda images: torch_detect(fp16, images), mode="reduce-overhead")
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        images = rng.random((batch, 3, IMGSZ, IMGSZ), dtype=np.float32)
        start = time.perf_counter()
        engine = ember.compile(module, precision="fp16", shapes={"images": images.shape}, opt_level=opt_level,
                               timing_cache=timing_cache)
        build_s = time.perf_counter() - start
        t = stage(f"batch {batch}: Ember engine built", t)
        ctx = engine.create_context(device="cuda", stream=torch.cuda.current_stream().cuda_stream)
        on_gpu = torch.from_numpy(images).cuda()
        half = on_gpu.half()
        row: dict[str, Any] = {"batch": batch, "build_s": round(build_s, 2), "host_ops": len(engine.report.host_ops)}
        with torch.no_grad():
            want = torch_detect(fp32, on_gpu)[0].cpu().numpy()
            got = ctx.run({"images": on_gpu})
            mine = np.asarray(torch.as_tensor(got["selected"]).cpu())
            row["detections"] = {"ember_fp16": int(len(mine)), "torch_fp32": int(len(want)),
                                 "agreement": round(_agreement(mine, want), 4)}
            row["ember"] = cuda_time(lambda: ctx.run({"images": on_gpu}))
            t = stage(f"batch {batch}: Ember checked and timed ({row['ember']['median_ms']:.3f} ms)", t)
            row["torch_eager"] = cuda_time(lambda: torch_detect(fp16, half))
            t = stage(f"batch {batch}: eager timed ({row['torch_eager']['median_ms']:.3f} ms)", t)
            for _ in range(3):
                compiled(half)
            t = stage(f"batch {batch}: torch.compile warmed up", t)
            row["torch_compile"] = cuda_time(lambda: compiled(half))
            t = stage(f"batch {batch}: torch.compile timed ({row['torch_compile']['median_ms']:.3f} ms)", t)
        for k in ("ember", "torch_eager", "torch_compile"):
            row[k]["fps"] = round(batch * 1000.0 / row[k]["median_ms"], 1)
        row["compile_over_ember"] = row["torch_compile"]["median_ms"] / row["ember"]["median_ms"]
        rows.append(row)
        print(batch, {k: (v["median_ms"] if isinstance(v, dict) and "median_ms" in v else v) for k, v in row.items()},
              flush=True)
        ctx.close()
    return {"model": "yolov8s", "export": info, "opt_level": opt_level, "rows": rows}


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [f"# YOLOv8s end to end, fp16 ({result['date']}, {result['device']})", "",
             f"640x640, post-processing (NMS: {result['export']['nms']}) in both; CUDA events, median of 50 runs "
             f"after 10 warm-up runs, inputs on the GPU; `ember.compile(opt_level={result['opt_level']})`; "
             "torch.compile mode reduce-overhead of the network and the same post-processing "
             "(torchvision batched NMS). Ratio: torch.compile's time over Ember's (>= 1.0: Ember faster). "
             "Agreement: |Ember fp16 detections and PyTorch fp32's| / |either| (reported, not gated).", "",
             "| batch | Ember ms (fps) | eager ms (fps) | torch.compile ms (fps) | compile / Ember | detections "
             "(Ember fp16 / torch fp32, agreement) | host ops | build (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        cell = {k: f"{r[k]['median_ms']:.3f} ({r[k]['fps']:.0f})" for k in ("ember", "torch_eager", "torch_compile")}
        d = r["detections"]
        lines.append(f"| {r['batch']} | {cell['ember']} | {cell['torch_eager']} | {cell['torch_compile']} | "
                     f"{r['compile_over_ember']:.2f} | {d['ember_fp16']} / {d['torch_fp32']}, {d['agreement']:.3f} | "
                     f"{r['host_ops']} | {r['build_s']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--opt-level", type=int, default=2)
    parser.add_argument("--timing-cache", type=Path, help="read before and written after each build")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    import torch
    build_log()
    batches = tuple(int(b) for b in args.batches.split(","))
    result = {"date": date.today().isoformat(), "device": torch.cuda.get_device_name(),
              **run(batches, args.opt_level, args.timing_cache)}
    stem = "gpu_yolov8" if batches == BATCHES else f"gpu_yolov8_b{'_'.join(map(str, batches))}"
    write_results(stem, result, markdown(result), args.out)


if __name__ == "__main__":
    main()
