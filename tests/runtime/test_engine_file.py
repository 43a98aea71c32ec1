"""The engine file: a save/load round trip, byte-identical rebuilds, and the refusals of
`Engine.load` (each section truncated, flipped bytes, a newer format, a missing arch),
each a clear one-line EngineFormatError."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from ember.errors import EmberError
from ember.runtime import Engine, EngineFormatError
from ember.runtime import engine_format as fmt

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))
WITH_KERNELS = "gpt2_small"  # has launch steps, host steps, views, constants


@pytest.fixture(scope="module")
def saved(built, tmp_path_factory):
    engine = built.engine(WITH_KERNELS)
    assert engine.kernels, "the fixture should have kernels"
    path = tmp_path_factory.mktemp("engine") / f"{WITH_KERNELS}.engine"
    engine.save(path)
    return engine, path


def sections_of(path: Path) -> dict[str, dict]:
    return {e["name"]: e for e in fmt.read(path).header["sections"]}


def refusal(path: Path, **kw) -> str:
    with pytest.raises(EngineFormatError) as info:
        Engine.load(path, **kw)
    err = info.value
    assert isinstance(err, EmberError) and isinstance(err, ValueError)
    message = str(err)
    assert "\n" not in message, message
    assert message.startswith(str(path)), message
    return message


def test_round_trip_keeps_everything(saved, built, tmp_path):
    engine, path = saved
    loaded = Engine.load(path)
    assert loaded.inputs == engine.inputs and loaded.outputs == engine.outputs
    assert loaded.program == engine.program
    assert loaded.plan.to_json() == engine.plan.to_json()
    assert loaded.ir_text == engine.ir_text
    assert loaded.symbols == engine.symbols
    assert sorted(loaded.weights) == sorted(engine.weights)
    for name, w in engine.weights.items():
        got = loaded.weights[name]
        assert got.dtype == w.dtype and got.shape == w.shape
        assert got.tobytes() == w.tobytes(), name
        assert not got.flags.writeable  # mapped from the file, not copied
    assert sorted(loaded.kernels) == sorted(engine.kernels)
    for name, k in engine.kernels.items():
        got = loaded.kernels[name]
        assert got.cubins == k.cubins and got.ptx == k.ptx and got.ptx_arch == k.ptx_arch
        assert got.ops == k.ops and got.source == k.source and name in got.source
    header = fmt.read(path).header
    assert header["format_version"] == fmt.FORMAT_VERSION
    assert header["targets"] == ["sm_80", "sm_90"] and header["nvrtc"] == "13.0"
    assert header["ptx_arch"] == ["compute_90"]
    assert [e["name"] for e in header["sections"]] == ["ir", "io", "plan", "kernels", "weights.index", "binaries",
                                                       "weights"]
    weights = sections_of(path)["weights"]
    assert weights["offset"] % fmt.PAGE == 0
    index = fmt.read(path).json("weights.index")
    assert all((weights["offset"] + e["offset"]) % 256 == 0 for e in index.values())
    # The file's bytes are what to_bytes gives, and a saved-then-loaded engine saves the same bytes.
    assert path.read_bytes() == engine.to_bytes()
    again = tmp_path / "again.engine"
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes()
    assert loaded.memory_report() == engine.memory_report()


def test_io_describes_names_types_and_symbolic_dims(built):
    engine = built.engine("bert_small")
    feeds = built.feeds("bert_small")
    assert [t.name for t in engine.inputs] == list(feeds)
    for spec in engine.inputs:
        assert spec.shape == feeds[spec.name].shape and spec.np_dtype == feeds[spec.name].dtype
        assert "batch" in spec.dims and "sequence" in spec.dims
    ssd = built.engine("ssdlite_small")
    assert [t.name for t in ssd.outputs] == ["boxes", "scores", "labels"]
    assert ssd.outputs[0].shape == (None, 4)  # data-dependent: as many boxes as NMS keeps


@pytest.mark.parametrize("name", MODELS)
def test_rebuilds_are_byte_identical(built, name, tmp_path):
    first = built.engine(name).to_bytes()
    # gpt2 and bert compile every kernel again in a fresh cache; the others reuse the session's.
    cold = name in ("gpt2_small", "bert_small")
    engine = _build(name, tmp_path / "cold" if cold else built.cache_dir)
    assert engine.to_bytes() == first
    # Each kernel is a cubin per target and one PTX: all compiled in the cold cache, none in the warm one.
    report, builds = engine.report, 3 * len(engine.kernels)
    assert (report.compiled, report.cache_hits) == ((builds, 0) if cold else (0, builds)), report.summary()
    assert report.unpinned_layout == 0  # the NVRTC workers ran with a fixed address-space layout


def _build(name, cache):
    import ember
    from ember.build import compile as ember_compile
    module = ember.load(FIXTURES / f"{name}.onnx")
    with np.load(FIXTURES / f"{name}.inputs.npz") as data:
        shapes = {k: data[k].shape for k in data.files}
    return ember_compile(module, shapes=shapes, cache_dir=cache)


def test_save_is_atomic(saved, tmp_path, monkeypatch):
    engine, path = saved
    target = tmp_path / "x.engine"
    target.write_bytes(b"previous contents")

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(fmt.os, "fsync", broken)
    with pytest.raises(OSError):
        engine.save(target)
    assert target.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir()] == ["x.engine"]  # no temporary file left behind


def test_each_section_truncated_is_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cuts = {"magic": 5, "prefix": 20, "header": fmt.PREFIX_SIZE + 10}
    for name, e in sections_of(path).items():
        if e["size"]:
            cuts[name] = e["offset"] + e["size"] // 2
    cuts["last byte"] = len(data) - 1
    for what, cut in cuts.items():
        bad = tmp_path / f"cut-{what}.engine"
        bad.write_bytes(data[:cut])
        message = refusal(bad)
        assert "truncated" in message, (what, message)
        if what in sections_of(path):
            assert repr(what) in message, (what, message)
    empty = tmp_path / "empty.engine"
    empty.write_bytes(b"")
    assert "empty" in refusal(empty)


def test_a_flipped_byte_anywhere_is_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    places = {"magic": 2, "version": 8, "header length": 16, "header": fmt.PREFIX_SIZE + 40,
              "header digest": fmt.PREFIX_SIZE + struct.unpack_from("<Q", data, 16)[0] + 3}
    entries = sections_of(path)
    for name, e in entries.items():
        if e["size"]:
            places[name] = e["offset"] + e["size"] // 3
    ends = sorted((e["offset"] + e["size"], name) for name, e in entries.items())
    gaps = [(end, name) for end, name in ends if data[end:end + 1] == b"\0" and end < len(data)]
    assert gaps, "some padding follows a section"
    places["padding"] = gaps[0][0]
    for what, at in places.items():
        flipped = bytearray(data)
        flipped[at] ^= 0x40
        bad = tmp_path / f"flip-{what.replace(' ', '-')}.engine"
        bad.write_bytes(bytes(flipped))
        message = refusal(bad)
        assert "corrupted" in message or "not an Ember engine" in message, (what, message)
        if what in entries:
            assert f"section {what!r} fails its SHA-256 checksum" in message, message


def test_trailing_bytes_are_refused(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "long.engine"
    bad.write_bytes(path.read_bytes() + b"\0" * 64)
    assert "unexpected bytes after the end" in refusal(bad)


def test_a_newer_format_version_is_refused(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, fmt.FORMAT_VERSION + 1)
    struct.pack_into("<I", data, 24, zlib.crc32(bytes(data[:24])))
    bad = tmp_path / "newer.engine"
    bad.write_bytes(bytes(data))
    message = refusal(bad)
    assert f"version {fmt.FORMAT_VERSION + 1} is newer" in message and "upgrade Ember" in message


def test_not_an_engine_is_refused(tmp_path):
    other = tmp_path / "model.onnx"
    other.write_bytes((FIXTURES / "resnet50_small.onnx").read_bytes()[:4096])
    assert "not an Ember engine file" in refusal(other)
    assert "the engine file is missing" in refusal(tmp_path / "missing.engine")


def test_a_gpu_it_cannot_run_on_is_refused(saved):
    _, path = saved
    message = refusal(path, arch="sm_75")
    assert "sm_75" in message and "sm_80, sm_90" in message and "compute_90" in message
    assert "rebuild with --target sm_75" in message
    # A newer minor of a built major runs its cubin; a newer major JIT-compiles the PTX.
    for arch in ("sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"):
        Engine.load(path, arch=arch)
    engine = Engine.load(path, arch="sm_90")
    with pytest.raises(EngineFormatError, match="needs a CUDA 13.0 driver"):
        engine.check_arch("sm_100", driver_version=12080)
    engine.check_arch("sm_90", driver_version=12080)  # the cubin needs no JIT
    with pytest.raises(EngineFormatError, match="not a CUDA architecture"):
        Engine.load(path, arch="volta")


def test_an_engine_without_kernels_runs_anywhere(host_only, tmp_path):
    path = tmp_path / "host.engine"
    host_only.save(path)
    engine = Engine.load(path, arch="sm_75")
    x = np.arange(1000, dtype=np.float32)
    np.testing.assert_array_equal(engine.run({"x": x}, device="cpu")["y"], x * 2)


def test_an_sm_90a_engine_runs_on_sm_90_alone_and_names_the_rebuild_elsewhere(tmp_path, kernel_cache):
    """sm_90a cubins and compute_90a PTX run on sm_90 only (wgmma is not in newer GPUs): an engine
    built for sm_90a alone is refused on sm_100 with the rebuild message, and one built with the
    portable targets too runs on sm_100 through compute_90's PTX."""
    import ember
    from tests.codegen.test_mma import matmul
    module = matmul((64, 64), (64, 64)).build()
    only = ember.compile(module, targets=("sm_90a",), cache_dir=kernel_cache)
    only.save(tmp_path / "only.engine")
    Engine.load(tmp_path / "only.engine", arch="sm_90")
    message = refusal(tmp_path / "only.engine", arch="sm_100")
    assert "built for sm_90a (PTX compute_90a)" in message and "rebuild with --target sm_100" in message
    refusal(tmp_path / "only.engine", arch="sm_89")
    both = ember.compile(module, targets=("sm_80", "sm_90", "sm_90a"), cache_dir=kernel_cache)
    assert {k.ptx_arch for k in both.kernels.values()} == {"compute_90"}
    both.save(tmp_path / "both.engine")
    for arch in ("sm_80", "sm_90", "sm_100"):
        Engine.load(tmp_path / "both.engine", arch=arch)
