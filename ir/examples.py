"""The README's worked examples, built with the Builder: a small CNN block and
a transformer attention block, both with symbolic batch (and sequence) dims.

`ember demo` (the quick start's main job) builds them, prints their IR and
runs them on the reference interpreter; the tests run them too, so the README
never shows code that does not work.
"""

from __future__ import annotations

import numpy as np

from ember.ir.builder import Builder
from ember.ir.core import Module, Value
from ember.ir.interpret import interpret
from ember.ir.types import f32


def cnn_block(seed: int = 0, channels: int = 8) -> Module:
    """conv-bn-relu, conv-bn, a residual add, relu, global average pool: a ResNet basic block."""
    rng = np.random.default_rng(seed)
    b = Builder("cnn_block")
    b.symbol("N", 1, 64)
    x = b.input("image", f32["N", 3, 32, 32])

    def conv_bn(x: Value, cin: int, cout: int, name: str) -> Value:
        w = b.weight(f"{name}.weight", rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.2)
        y = b.conv(x, w, pads=(1, 1, 1, 1), loc=f"{name}/conv")
        gamma = b.weight(f"{name}.bn.scale", rng.uniform(0.5, 1.5, cout).astype(np.float32))
        beta = b.weight(f"{name}.bn.bias", rng.standard_normal(cout).astype(np.float32) * 0.1)
        mean = b.weight(f"{name}.bn.mean", rng.standard_normal(cout).astype(np.float32) * 0.1)
        var = b.weight(f"{name}.bn.var", rng.uniform(0.5, 1.5, cout).astype(np.float32))
        return b.batch_norm(y, gamma, beta, mean, var, epsilon=1e-5, loc=f"{name}/bn")

    stem = b.relu(conv_bn(x, 3, channels, "stem"), loc="stem/relu")
    h = b.relu(conv_bn(stem, channels, channels, "block.conv1"), loc="block/relu1")
    h = conv_bn(h, channels, channels, "block.conv2")
    h = b.relu(b.add(h, stem, loc="block/residual"), loc="block/relu2")
    pooled = b.global_avg_pool(h, loc="pool")                      # f32[N,8,1,1]
    b.output("features", b.flatten(pooled, axis=1, loc="flatten"))  # f32[N,8]
    return b.build()


def attention_block(seed: int = 0, dim: int = 32, heads: int = 4) -> Module:
    """Pre-norm multi-head self-attention and a GELU MLP, each with a residual."""
    rng = np.random.default_rng(seed)
    head_dim = dim // heads
    b = Builder("attention_block")
    b.symbol("N", 1, 64)
    b.symbol("S", 1, 4096)
    x = b.input("tokens", f32["N", "S", dim])

    def linear(x: Value, fan_in: int, fan_out: int, name: str) -> Value:
        w = b.weight(f"{name}.weight", (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32))
        bias = b.weight(f"{name}.bias", (rng.standard_normal(fan_out) * 0.02).astype(np.float32))
        return b.add(b.matmul(x, w, loc=f"{name}/matmul"), bias, loc=f"{name}/bias")

    def heads_first(t: Value, name: str) -> Value:               # [N,S,D] -> [N,H,S,D/H]
        t = b.reshape(t, shape=("N", "S", heads, head_dim), loc=f"{name}/split_heads")
        return b.transpose(t, perm=(0, 2, 1, 3), loc=f"{name}/heads_first")

    ones, zeros = np.ones(dim, np.float32), np.zeros(dim, np.float32)
    h = b.layer_norm(x, b.weight("ln1.scale", ones), b.weight("ln1.bias", zeros), axis=-1, loc="ln1")
    q = heads_first(linear(h, dim, dim, "q"), "q")
    k = heads_first(linear(h, dim, dim, "k"), "k")
    v = heads_first(linear(h, dim, dim, "v"), "v")
    scores = b.matmul(q, b.transpose(k, perm=(0, 1, 3, 2), loc="k/transpose"), loc="scores")  # [N,H,S,S]
    scale = b.constant(np.float32(1.0 / np.sqrt(head_dim)))
    probs = b.softmax(b.mul(scores, scale, loc="scale"), axis=-1, loc="softmax")
    ctx = b.transpose(b.matmul(probs, v, loc="context"), perm=(0, 2, 1, 3), loc="merge/transpose")
    ctx = b.reshape(ctx, shape=("N", "S", dim), loc="merge/reshape")
    x = b.add(x, linear(ctx, dim, dim, "proj"), loc="residual1")
    h = b.layer_norm(x, b.weight("ln2.scale", ones), b.weight("ln2.bias", zeros), axis=-1, loc="ln2")
    h = linear(b.gelu(linear(h, dim, 4 * dim, "mlp.up"), loc="mlp/gelu"), 4 * dim, dim, "mlp.down")
    b.output("hidden", b.add(x, h, loc="residual2"))
    return b.build()


def demo(seed: int = 0, print_ir: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Build both examples, print their IR, run them on the interpreter; returns the outputs."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    rng = np.random.default_rng(seed)
    runs = {
        "cnn_block": (cnn_block(seed), {"image": rng.standard_normal((2, 3, 32, 32)).astype(np.float32)}),
        "attention_block": (attention_block(seed), {"tokens": rng.standard_normal((2, 16, 32)).astype(np.float32)}),
    }
    results = {}
    for name, (module, feeds) in runs.items():
        if print_ir:
            console.rule(f"{name}: IR")
            console.print(str(module), markup=False, end="")
        outputs = interpret(module, feeds)
        results[name] = outputs
        table = Table(title=f"{name} on the reference interpreter", title_justify="left")
        for col in ("", "name", "shape", "mean", "std"):
            table.add_column(col)
        for n, arr in feeds.items():
            table.add_row("input", n, str(list(arr.shape)), f"{arr.mean():.4f}", f"{arr.std():.4f}")
        for n, arr in outputs.items():
            table.add_row("output", n, str(list(arr.shape)), f"{arr.mean():.4f}", f"{arr.std():.4f}")
        console.print(table)
    return results
