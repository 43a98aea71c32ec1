"""The NVRTC cache is checked as the engine file is: a damaged entry is compiled again, never
put in an engine (a zero-byte entry once gave an engine with empty cubins that loaded)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import ember
from ember.ir import Builder, f32


def tiny_module():
    """At least two kernels (an elementwise chain, a matrix product): six cache entries or more."""
    b = Builder("tiny")
    x = b.input("x", f32[4, 8])
    b.output("y", b.relu(b.add(x, x)))
    b.output("z", b.matmul(x, b.transpose(x, perm=(1, 0))))
    return b.build()


def entries(cache_dir):
    return sorted(p for p in cache_dir.rglob("*") if p.is_file())


def build(cache_dir):
    return ember.compile(tiny_module(), cache_dir=cache_dir)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("nvrtc-cache")
    engine = build(cache_dir)
    assert engine.report.compiled == 3 * len(engine.kernels) and engine.report.cache_hits == 0
    return cache_dir, {name: k for name, k in engine.kernels.items()}


def damage(path, how):
    data = path.read_bytes()
    if how == "zero bytes":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped byte":
        flipped = bytearray(data)
        flipped[-10] ^= 0x40
        path.write_bytes(bytes(flipped))
    elif how == "old format":  # the bare build, as the cache held it before entries had a header
        path.write_bytes(data[len(b"EMBERNVRTC1\n") + 8 + 32:])
    elif how == "empty payload with a valid header":
        import hashlib
        path.write_bytes(b"EMBERNVRTC1\n" + (0).to_bytes(8, "little") + hashlib.sha256(b"").digest())


DAMAGES = ["zero bytes", "truncated", "flipped byte", "old format", "empty payload with a valid header"]


def test_damaged_cache_entries_are_compiled_again(warm, tmp_path):
    """Each of five entries damaged another way: exactly those five are compiled again,
    the engine gets the same builds as from a sound cache, and the entries are replaced."""
    cache_dir, kernels = warm
    local = tmp_path / "cache"
    shutil.copytree(cache_dir, local)
    paths = entries(local)
    assert len(paths) > len(DAMAGES)
    for path, how in zip(paths, DAMAGES):
        damage(path, how)
    engine = build(local)
    total = 3 * len(kernels)
    assert (engine.report.compiled, engine.report.cache_hits) == (len(DAMAGES), total - len(DAMAGES))
    for name, kernel in engine.kernels.items():
        for arch, cubin in kernel.cubins.items():
            assert cubin[:4] == b"\x7fELF" and cubin == kernels[name].cubins[arch]
        assert kernel.ptx == kernels[name].ptx
    again = build(local)
    assert (again.report.compiled, again.report.cache_hits) == (0, total)
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    got = again.run({"x": x}, device="cpu")
    want = ember.interpret(tiny_module(), {"x": x})
    for name in ("y", "z"):
        np.testing.assert_allclose(got[name], np.asarray(want[name]), rtol=1e-5)


def test_a_cache_key_follows_the_headers_its_kernel_includes(tmp_path, monkeypatch):
    """A kernel's entry is keyed by the headers it includes, through each other, and no others:
    a change to one of them makes a new key; a new header, or a change to one the kernel does
    not read, keeps the entries that exist (the device runs carry a cache built beforehand)."""
    from ember.codegen import nvrtc
    (tmp_path / "a.cuh").write_text('#pragma once\n#include "base.cuh"\nint a;\n')
    (tmp_path / "base.cuh").write_text("int base;\n")
    (tmp_path / "other.cuh").write_text("int other;\n")
    monkeypatch.setattr(nvrtc, "INCLUDE", tmp_path)
    source = '#include "a.cuh"\nextern "C" __global__ void k() {}\n'
    before = nvrtc._headers_digest(source)
    (tmp_path / "other.cuh").write_text("int other2;\n")
    (tmp_path / "new.cuh").write_text("int fresh;\n")
    assert nvrtc._headers_digest(source) == before
    (tmp_path / "base.cuh").write_text("int base2;\n")  # read only through a.cuh
    assert nvrtc._headers_digest(source) != before
