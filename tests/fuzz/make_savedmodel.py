"""Write the SavedModel the fuzz suite mutates: tests/fixtures/savedmodel/tiny (a few KB).

It is committed, so the fuzz suite never imports TensorFlow (seconds, and a test
extra); run this script again only to change it (it needs TensorFlow):

    .venv/bin/python tests/fuzz/make_savedmodel.py

One signature over two variables (so the checkpoint index and shard are read):
a dense layer with ReLU, a reshape by a constant shape, a sum, a concatenation
with a cast of the input's shape (so shape arithmetic runs at import), and an
unknown batch dim.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "savedmodel" / "tiny"


def main(out: Path = OUT) -> None:
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(0)
            self.w = tf.Variable(rng.standard_normal((8, 4)).astype(np.float32), name="w")
            self.b = tf.Variable(rng.standard_normal(4).astype(np.float32), name="b")

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
        def __call__(self, x):
            h = tf.nn.relu(tf.matmul(x, self.w) + self.b)
            pairs = tf.reshape(h, [-1, 2, 2])
            n = tf.cast(tf.shape(x)[0], tf.float32)
            total = tf.reduce_sum(pairs, axis=-1) / n
            return {"h": h, "y": tf.concat([total, total * 2.0], axis=-1)}

    if out.exists():
        shutil.rmtree(out)
    model = Tiny()
    tf.saved_model.save(model, str(out), signatures={"serving_default": model.__call__})
    for extra in ("assets",):
        if (out / extra).is_dir() and not any((out / extra).iterdir()):
            (out / extra).rmdir()
    print(out, sum(p.stat().st_size for p in out.rglob("*") if p.is_file()), "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
