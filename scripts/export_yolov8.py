"""Export YOLOv8 detectors to ONNX, with and without NMS in the graph, random weights.

Not run in CI. Ultralytics (AGPL-3.0) is used here only, to build the network from its yaml
configuration; it is never a dependency of Ember. Pinned: ultralytics 8.4.190 (on the device,
which lacks it, install it with --no-deps: the device has its dependencies).

    python scripts/export_yolov8.py --small --out tests/fixtures/detectors    # the CI fixture
    python scripts/export_yolov8.py --scale s --out tests/fixtures/detectors --graph-only
    python scripts/export_yolov8.py --refill tests/fixtures/detectors/yolov8s_nms.graph.onnx --out /tmp/yolo

Full-size models are committed as graphs without their convolution weights (`--graph-only`,
a few hundred KB); `--refill` (numpy and onnx only: it runs on the device, which has no
ultralytics) gives each a seeded He-scaled random filter, so the GPU tests get YOLOv8n/s at
640x640 without carrying 50 MB of random numbers.

Each model is exported twice:
- `<name>.onnx`: the network as ultralytics exports it, one output (batch, 4 + classes,
  anchors): boxes as (x centre, y centre, width, height) and per-class scores;
- `<name>_nms.onnx`: the same with the post-processing a deployment adds as ONNX nodes:
  ONNX NonMaxSuppression over every class (centre-point boxes, a score threshold, an IoU
  threshold, a limit per class) and the kept boxes' coordinates and scores gathered, giving
  `selected` (K, 3) [image, class, anchor], `boxes` (K, 4) and `scores` (K,).

The small fixture narrows every layer (width 1/16, depth 1/3), keeps the 80 classes and runs
at 160x160 (525 anchors). Weights are random (the seed below; He-scaled convolutions) and batch norms are given
spread statistics and the class biases spread, so that scores vary around the thresholds. The image size is fixed; the batch is dynamic.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PINNED = {"ultralytics": "8.4.190"}
SEED = 0
SCALES = {"small": [0.33, 0.0625, 1024], "n": [0.33, 0.25, 1024], "s": [0.33, 0.50, 1024]}
NMS = {"max_output_boxes_per_class": 100, "iou_threshold": 0.45, "score_threshold": 0.25}


def build(scale: str) -> object:
    import torch
    import ultralytics
    import yaml
    from ultralytics.nn.tasks import DetectionModel
    if ultralytics.__version__ != PINNED["ultralytics"]:
        sys.exit(f"ultralytics {ultralytics.__version__}; this script pins {PINNED['ultralytics']}")
    cfg_path = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / "yolov8.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["scales"] = {"x": SCALES[scale]}
    cfg["scale"] = "x"
    torch.manual_seed(SEED)
    model = DetectionModel(cfg, ch=3, nc=80, verbose=False)
    with torch.no_grad():
        dfl = {id(m) for m in model.modules() if type(m).__name__ == "DFL" for m in m.modules()}
        for m in model.modules():  # He-scaled, so that deep features do not fade to constants
            if isinstance(m, torch.nn.Conv2d) and id(m) not in dfl:  # (DFL's fixed bin weights stay)
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        for m in model.modules():  # class biases that leave scores spread around the thresholds
            if type(m).__name__ == "Detect":
                for branch in m.cv3:
                    branch[-1].bias.uniform_(-3.0, 0.5)
    model.eval()
    for m in model.modules():  # the export form of the head: one (batch, 4 + nc, anchors) tensor
        if type(m).__name__ == "Detect":
            m.export, m.format = True, "onnx"
    return model


def export(scale: str, imgsz: int, out: Path, name: str) -> dict[str, object]:
    import onnx
    import torch
    model = build(scale)
    image = torch.rand(1, 3, imgsz, imgsz)
    with torch.no_grad():
        raw = model(image)
        raw = raw[0] if isinstance(raw, (list, tuple)) else raw
    out.mkdir(parents=True, exist_ok=True)
    plain = out / f"{name}.onnx"
    torch.onnx.export(model, (image,), str(plain), input_names=["images"], output_names=["output"],
                      dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}}, opset_version=17, dynamo=False)
    graph = onnx.load(str(plain))
    onnx.save(graph, str(plain))  # (weights inline: one file)
    with_nms = out / f"{name}_nms.onnx"
    onnx.save(add_nms(graph, int(raw.shape[1]) - 4), str(with_nms))
    return {"ultralytics": PINNED["ultralytics"], "torch": torch.__version__, "onnx": onnx.__version__,
            "scale": SCALES[scale], "imgsz": imgsz, "seed": SEED, "anchors": int(raw.shape[2]),
            "classes": int(raw.shape[1]) - 4, "nms": NMS,
            "bytes": {plain.name: plain.stat().st_size, with_nms.name: with_nms.stat().st_size}}


def add_nms(model: object, classes: int) -> object:
    """The exported network with ONNX NonMaxSuppression and the gathers after it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    g = onnx.ModelProto()
    g.CopyFrom(model)
    graph = g.graph
    (out,) = [o.name for o in graph.output]
    consts = {"axis1": np.array([1], np.int64), "zero": np.array([0], np.int64), "four": np.array([4], np.int64),
              "end": np.array([4 + classes], np.int64),
              "max_out": np.array([NMS["max_output_boxes_per_class"]], np.int64),
              "iou": np.array([NMS["iou_threshold"]], np.float32),
              "score": np.array([NMS["score_threshold"]], np.float32),
              "image_anchor": np.array([0, 2], np.int64)}
    graph.initializer.extend(numpy_helper.from_array(v, f"nms_{k}") for k, v in consts.items())
    graph.node.extend([
        helper.make_node("Slice", [out, "nms_zero", "nms_four", "nms_axis1"], ["nms_xywh"]),
        helper.make_node("Transpose", ["nms_xywh"], ["nms_boxes"], perm=[0, 2, 1]),
        helper.make_node("Slice", [out, "nms_four", "nms_end", "nms_axis1"], ["nms_scores"]),
        helper.make_node("NonMaxSuppression", ["nms_boxes", "nms_scores", "nms_max_out", "nms_iou", "nms_score"],
                         ["selected"], center_point_box=1),
        helper.make_node("Gather", ["selected", "nms_image_anchor"], ["nms_where"], axis=1),
        helper.make_node("GatherND", ["nms_boxes", "nms_where"], ["boxes"]),
        helper.make_node("GatherND", ["nms_scores", "selected"], ["scores"]),
    ])
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3]),
                         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [None, 4]),
                         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None])])
    onnx.checker.check_model(g)
    return g


STRIPPED = "ember_refill"  # metadata key: the initializers --graph-only emptied


def graph_only(path: Path) -> Path:
    """The model with its convolution filters (float initializers of rank 4) emptied, named in
    the metadata; biases and small constants stay."""
    import onnx
    model = onnx.load(str(path))
    names = []
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 4 and np.prod(init.dims) > 64:
            names.append(init.name)
            init.ClearField("raw_data")
            del init.float_data[:]
    model.metadata_props.add(key=STRIPPED, value=json.dumps({"seed": SEED, "names": names}))
    out = path.with_name(path.stem + ".graph.onnx")
    onnx.save(model, str(out))
    return out


def refill(path: Path, out_dir: Path) -> Path:
    """A graph from `graph_only` with seeded He-scaled normal filters (std sqrt(2 / fan in))."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    spec = json.loads(meta[STRIPPED])
    rng = np.random.default_rng(spec["seed"])
    wanted = set(spec["names"])
    for i, init in enumerate(model.graph.initializer):
        if init.name in wanted:
            dims = tuple(init.dims)
            w = rng.standard_normal(dims) * np.sqrt(2.0 / np.prod(dims[1:]))
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(w.astype(np.float32), init.name))
    for p in list(model.metadata_props):
        if p.key == STRIPPED:
            model.metadata_props.remove(p)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name.replace(".graph.onnx", ".onnx")
    onnx.save(model, str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="the CI fixture (yolov8_small, 160x160)")
    parser.add_argument("--scale", choices=["n", "s"], help="a full-size YOLOv8n or YOLOv8s")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--graph-only", action="store_true", help="write the NMS model without its filters")
    parser.add_argument("--refill", type=Path, help="a --graph-only model to give random filters")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.refill:
        print(refill(args.refill, args.out))
        return
    if args.small == bool(args.scale):
        parser.error("give --small or --scale")
    scale, imgsz, name = ("small", 160, "yolov8_small") if args.small else (args.scale, args.imgsz,
                                                                           f"yolov8{args.scale}")
    info = export(scale, imgsz, args.out, name)
    if args.graph_only:
        for stem in (name, f"{name}_nms"):
            graph = graph_only(args.out / f"{stem}.onnx")
            (args.out / f"{stem}.onnx").unlink()
            info["bytes"][graph.name] = graph.stat().st_size
        info["bytes"] = {k: v for k, v in info["bytes"].items() if k.endswith(".graph.onnx")}
    (args.out / f"{name}.provenance.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
