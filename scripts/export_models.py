"""Export real networks to ONNX, full size and small, and check Ember on them.

Not run in CI (it needs torch): run it where torch is, e.g. on the device:

    python scripts/export_models.py --small --out tests/fixtures/onnx      # the committed fixtures
    python scripts/export_models.py --full --out /tmp/full --check          # full size, checked against onnxruntime

Models are built from their configurations with random weights (nothing is
downloaded): torchvision ResNet-50, MobileNetV2, EfficientNet-B0, ViT-B/16 and
SSDlite320-MobileNetV3 (with its post-processing), Hugging Face BERT-base and
GPT-2, and a small LSTM sequence model; each exported with torch.onnx and a
dynamic batch (the detector: a dynamic image size). The small versions keep
each graph's structure with fewer layers and narrow widths, and random weights,
so that layout and transpose mistakes show.

Pinned to the device's versions: torch 2.11, torchvision 0.26, transformers 5.17.
`--check` imports every model with Ember, verifies it, runs it on the
reference interpreter and compares with onnxruntime by the project's f32 rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

PINNED = {"torch": "2.11", "torchvision": "0.26", "transformers": "5.17"}
SEED = 0


def check_versions(strict: bool) -> None:
    import torch
    import torchvision
    import transformers
    found = {"torch": torch.__version__, "torchvision": torchvision.__version__,
             "transformers": transformers.__version__}
    off = {k: v for k, v in found.items() if not v.startswith(PINNED[k])}
    if off:
        message = f"versions differ from the pinned ones {PINNED}: {off}"
        if strict:
            sys.exit(message)
        print("warning:", message, file=sys.stderr)


def _seed() -> None:
    import torch
    torch.manual_seed(SEED)
    np.random.seed(SEED)


def randomize(model: Any) -> None:
    """Random weights everywhere (torchvision zero-inits some heads and biases, which
    would hide a transposed matrix): scaled normals for matrices and filters, scales
    near 1, small biases, positive running variances."""
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 1.0 / max(1.0, (p.numel() / p.shape[0]) ** 0.5))
            elif name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                b.normal_(0.0, 0.1)


# -- the models: (module, example inputs, input names, dynamic axes, output names) ----------------
def resnet50(small: bool) -> Any:
    import torch
    import torchvision
    from torchvision.models.resnet import Bottleneck
    if not small:
        return torchvision.models.resnet50(weights=None), (torch.randn(2, 3, 224, 224),)

    class SmallResNet(torch.nn.Module):
        """Two bottleneck stages of ResNet-50's kind, narrow."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False), torch.nn.BatchNorm2d(8),
                                            torch.nn.ReLU(inplace=True), torch.nn.MaxPool2d(3, 2, 1))
            ds1 = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1, bias=False), torch.nn.BatchNorm2d(16))
            ds2 = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 1, 2, bias=False), torch.nn.BatchNorm2d(32))
            self.layers = torch.nn.Sequential(Bottleneck(8, 4, 1, ds1), Bottleneck(16, 8, 2, ds2), Bottleneck(32, 8))
            self.fc = torch.nn.Linear(32, 10)

        def forward(self, x: Any) -> Any:
            x = self.layers(self.stem(x))
            return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return SmallResNet(), (torch.randn(2, 3, 64, 64),)


def mobilenet_v2(small: bool) -> Any:
    import torch
    import torchvision
    if not small:
        return torchvision.models.mobilenet_v2(weights=None), (torch.randn(2, 3, 224, 224),)
    setting = [[1, 8, 1, 1], [6, 12, 2, 2], [6, 16, 2, 2]]
    return torchvision.models.MobileNetV2(num_classes=10, width_mult=0.5, inverted_residual_setting=setting), \
        (torch.randn(2, 3, 64, 64),)


def efficientnet_b0(small: bool) -> Any:
    import torch
    import torchvision
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig
    if not small:
        return torchvision.models.efficientnet_b0(weights=None), (torch.randn(2, 3, 224, 224),)
    setting = [MBConvConfig(1, 3, 1, 16, 8, 1), MBConvConfig(6, 3, 2, 8, 12, 1), MBConvConfig(6, 5, 2, 12, 16, 1)]
    return EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=64), (torch.randn(2, 3, 64, 64),)


def vit_b_16(small: bool) -> Any:
    import torch
    import torchvision
    from torchvision.models.vision_transformer import VisionTransformer
    if not small:
        return torchvision.models.vit_b_16(weights=None), (torch.randn(2, 3, 224, 224),)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                             num_classes=10), (torch.randn(2, 3, 32, 32),)


def bert(small: bool) -> Any:
    import torch
    from transformers import BertConfig, BertModel
    config = BertConfig() if not small else BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=128,
        max_position_embeddings=64)
    model = BertModel(config, add_pooling_layer=True)
    ids = torch.randint(0, config.vocab_size, (2, 16))
    return _HFWrapper(model, "bert"), (ids, torch.ones_like(ids))


def gpt2(small: bool) -> Any:
    import torch
    from transformers import GPT2Config, GPT2Model
    config = GPT2Config() if not small else GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=128,
                                                         n_positions=64)
    model = GPT2Model(config)
    ids = torch.randint(0, config.vocab_size, (2, 16))
    return _HFWrapper(model, "gpt2"), (ids, torch.ones_like(ids))


def _HFWrapper(model: Any, kind: str) -> Any:  # noqa: N802  (a class factory)
    import torch

    class Wrapper(torch.nn.Module):
        """Plain tensors in and out, no cache: what an inference engine is given."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False) \
                if kind == "gpt2" else self.model(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state

    return Wrapper()


def ssdlite(small: bool) -> Any:
    import torch
    import torchvision
    kwargs = dict(weights=None, weights_backbone=None)
    if small:
        kwargs.update(num_classes=3, width_mult=0.25, detections_per_img=20, topk_candidates=50)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(**kwargs)
    return _Detector(model), (torch.rand(1, 3, 320, 320),)


def _Detector(model: Any) -> Any:  # noqa: N802
    import torch

    class Detector(torch.nn.Module):
        """One image in; boxes, scores and labels out, after NMS."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: Any) -> Any:
            out = self.model(list(images))[0]
            return out["boxes"], out["scores"], out["labels"]

    return Detector()


def lstm(small: bool) -> Any:
    import torch

    class Tagger(torch.nn.Module):
        """Embedding, a bidirectional LSTM, a linear head: a small sequence model."""

        def __init__(self, vocab: int = 100, dim: int = 16, hidden: int = 24, tags: int = 5) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, dim)
            self.lstm = torch.nn.LSTM(dim, hidden, num_layers=2, bidirectional=True, batch_first=True)
            self.head = torch.nn.Linear(2 * hidden, tags)

        def forward(self, tokens: Any) -> Any:
            out, _ = self.lstm(self.embed(tokens))
            return self.head(out)

    return Tagger(), (torch.randint(0, 100, (2, 12)),)


MODELS: dict[str, tuple[Callable[[bool], Any], list[str], dict[str, dict[int, str]], list[str]]] = {
    "resnet50": (resnet50, ["image"], {"image": {0: "batch"}}, ["logits"]),
    "mobilenet_v2": (mobilenet_v2, ["image"], {"image": {0: "batch"}}, ["logits"]),
    "efficientnet_b0": (efficientnet_b0, ["image"], {"image": {0: "batch"}}, ["logits"]),
    "vit_b_16": (vit_b_16, ["image"], {"image": {0: "batch"}}, ["logits"]),
    "bert": (bert, ["input_ids", "attention_mask"],
             {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}, ["hidden"]),
    "gpt2": (gpt2, ["input_ids", "attention_mask"],
             {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}, ["hidden"]),
    "ssdlite": (ssdlite, ["images"], {"images": {2: "height", 3: "width"}}, ["boxes", "scores", "labels"]),
    "lstm": (lstm, ["tokens"], {"tokens": {0: "batch", 1: "sequence"}}, ["tags"]),
}


def export(name: str, small: bool, out_dir: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Export one model; returns the file and the example inputs."""
    import torch
    _seed()
    build, inputs, dynamic, outputs = MODELS[name]
    model, args = build(small)
    randomize(model)
    model.eval()
    path = out_dir / f"{name}{'_small' if small else ''}.onnx"
    torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA kernel has no ONNX export
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=17, dynamo=False, do_constant_folding=True)
    return path, {n: a.numpy() for n, a in zip(inputs, args)}


def check(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Import with Ember, verify, interpret, compare with onnxruntime."""
    import onnxruntime as ort

    import ember
    from ember import ir
    from ember.tolerance import compare
    t = time.time()
    module = ember.load(path)
    import_seconds = time.time() - t
    ir.verify(module)
    t = time.time()
    got = ir.interpret(module, feeds)
    interpret_seconds = time.time() - t
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    results = {}
    for k, w in want.items():
        c = compare(np.asarray(got[k]), np.asarray(w), rtol=1e-4, atol=1e-5) if w.dtype.kind == "f" \
            else compare(np.asarray(got[k]), np.asarray(w))
        results[k] = {"ok": bool(c), "max_abs_diff": c.max_abs_diff, "bound": c.bound, "message": c.message}
    return {"import_seconds": round(import_seconds, 3), "interpret_seconds": round(interpret_seconds, 3),
            "ops": sum(1 for _ in module.walk()), "outputs": results,
            "ok": all(r["ok"] for r in results.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--small", action="store_true")
    size.add_argument("--full", action="store_true")
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--check", action="store_true", help="import, verify and compare with onnxruntime")
    parser.add_argument("--strict-versions", action="store_true")
    parser.add_argument("--report", help="write the check results as JSON")
    args = parser.parse_args()
    check_versions(args.strict_versions)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for name in args.models.split(","):
        t = time.time()
        try:
            path, feeds = export(name, args.small, out)
        except Exception as err:  # noqa: BLE001  (report every model, not the first failure)
            report[name] = {"ok": False, "export_error": f"{type(err).__name__}: {err}"[:2000]}
            print(f"{name}: export failed: {err}", flush=True)
            continue
        np.savez(path.with_suffix(".inputs.npz"), **feeds)
        entry: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size,
                                 "export_seconds": round(time.time() - t, 1)}
        if args.check:
            try:
                entry.update(check(path, feeds))
            except Exception as err:  # noqa: BLE001
                entry.update(ok=False, check_error=f"{type(err).__name__}: {err}"[:4000])
        report[name] = entry
        print(f"{name}: {json.dumps(entry)[:600]}", flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
