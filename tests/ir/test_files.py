"""Modules on disk: text plus weights, bit for bit; bad files give clear errors."""

import os

import ml_dtypes
import numpy as np
import pytest

import ember
from ember import ir
from ember.errors import ParseError, WeightsFileError
from ember.ir.atomic_file import FileWriteError
from ember.ir.weights_file import read_weights, write_weights


def module_with_weights():
    rng = np.random.default_rng(1)
    b = ir.Builder("w")
    x = b.input("x", ir.f32[2, 3])
    w = {
        "a.weight": rng.standard_normal((2, 3)).astype(np.float32),
        "b/bias:0": np.array([np.nan, -0.0, np.inf], np.float32),
        "half": rng.standard_normal(5).astype(np.float16),
        "bf": rng.standard_normal(4).astype(ml_dtypes.bfloat16),
        "int4": np.array([-8, 7, 0], dtype=ml_dtypes.int4),
        "fp8": np.array([1.5, -448], dtype=ml_dtypes.float8_e4m3fn),
        "names": np.array(["a", "ünï", ""], dtype=object),
        "scalar": np.array(3, np.int64),
        "empty": np.zeros((0, 4), np.float32),
    }
    w["b/bias:0"].view(np.uint32)[0] = 0x7FC00123  # a NaN with a payload
    values = [b.weight(k, v) for k, v in w.items()]
    b.output("y", b.add(x, values[0]))
    for i, v in enumerate(values[1:]):
        b.output(f"w{i}", v)
    return b.build(), w


def test_save_and_load_keep_every_weight_bit_for_bit(tmp_path):
    m, w = module_with_weights()
    m.save(tmp_path / "m.ir")
    assert (tmp_path / "m.weights").exists()
    again = ember.load(tmp_path / "m.ir")
    assert ir.structural_diff(m, again) == []
    for k, v in w.items():
        got = again.weights[k].data
        assert got.dtype == v.dtype and got.shape == v.shape
        if v.dtype == object:
            assert got.tolist() == v.tolist()
        else:
            assert got.tobytes() == v.tobytes()
    assert str(again) == str(m)


def test_weights_are_aligned_and_mapped(tmp_path):
    m, _ = module_with_weights()
    m.save(tmp_path / "m.ir")
    arrays = read_weights(tmp_path / "m.weights")
    a = arrays["a.weight"]
    assert not a.flags.writeable
    raw = open(tmp_path / "m.weights", "rb").read()
    offset = raw.index(a.tobytes())
    assert offset % 64 == 0


def test_text_only_module_keeps_declarations(tmp_path):
    m, _ = module_with_weights()
    (tmp_path / "t.ir").write_text(str(m))
    again = ember.load(tmp_path / "t.ir")
    assert again.weights["half"].data is None
    assert ir.structural_diff(m, again, weight_data=False) == []


def first_tensor_byte(data):
    import json
    import struct
    (header_len,) = struct.unpack_from("<Q", data, 16)
    header = json.loads(bytes(data[24:24 + header_len]))
    return min(e["offset"] for e in header["tensors"] if e["nbytes"]) + 1


def corrupt(path, fn):
    data = bytearray(path.read_bytes())
    fn(data)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,message", [
    (lambda d: d.__delitem__(slice(len(d) - 10, None)), "truncated"),
    (lambda d: d.__delitem__(slice(10, None)), "truncated"),
    (lambda d: d.__setitem__(slice(0, 8), b"NOTEMBER"), "not an Ember weights file"),
    (lambda d: d.__setitem__(8, 99), "format version 99 is newer"),
    (lambda d: d.__setitem__(first_tensor_byte(d), d[first_tensor_byte(d)] ^ 0xFF),
     "corrupted \\(checksum mismatch\\)"),
    (lambda d: d.__setitem__(24, ord("]")), "corrupted header"),
])
def test_damaged_weights_files_are_refused(tmp_path, damage, message):
    m, _ = module_with_weights()
    m.save(tmp_path / "m.ir")
    corrupt(tmp_path / "m.weights", damage)
    with pytest.raises(WeightsFileError, match=message):
        ember.load(tmp_path / "m.ir")


def test_failed_save_leaves_old_files(tmp_path, monkeypatch):
    m, _ = module_with_weights()
    m.save(tmp_path / "m.ir")
    before = (tmp_path / "m.ir").read_text(), (tmp_path / "m.weights").read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", explode)
    m.main.body.ops[-1].loc = ir.Location(("changed",))
    with pytest.raises(FileWriteError, match=r"cannot write .*m\.ir: disk full"):
        m.save(tmp_path / "m.ir")
    assert ((tmp_path / "m.ir").read_text(), (tmp_path / "m.weights").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ir", "m.weights"]


def test_bad_text_files(tmp_path):
    (tmp_path / "bad.ir").write_bytes(b"\xff\xfe module")
    with pytest.raises(ParseError, match="not UTF-8"):
        ember.load(tmp_path / "bad.ir")
    with pytest.raises(FileNotFoundError, match="no such model"):
        ember.load(tmp_path / "missing.ir")
    (tmp_path / "model.xyz").write_text("")
    with pytest.raises(ValueError, match="unknown model format"):
        ember.load(tmp_path / "model.xyz")


def test_the_format_is_found_by_content_whatever_the_name(tmp_path):
    """An ONNX file or IR text under another suffix (or none) loads by what it is; an engine or
    anything else is refused in one line naming the file (issue 14)."""
    import shutil
    from pathlib import Path
    fixtures = Path(__file__).parent.parent / "fixtures" / "onnx"
    shutil.copy(fixtures / "resnet50_small.onnx", tmp_path / "resnet.bin")
    shutil.copy(fixtures / "resnet50_small.onnx", tmp_path / "resnet")
    want = str(ember.load(fixtures / "resnet50_small.onnx"))
    assert str(ember.load(tmp_path / "resnet.bin")) == want and str(ember.load(tmp_path / "resnet")) == want
    module = ember.load(fixtures / "resnet50_small.onnx")
    module.save(tmp_path / "m.ir")
    shutil.copy(tmp_path / "m.ir", tmp_path / "m.model")  # text IR: its weights file is m.weights either way
    assert str(ember.load(tmp_path / "m.model")) == str(ember.load(tmp_path / "m.ir"))
    (tmp_path / "engine.dat").write_bytes(b"EMBERENG" + bytes(64))
    with pytest.raises(ValueError, match=r"engine\.dat: an Ember engine, not a model"):
        ember.load(tmp_path / "engine.dat")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    with pytest.raises(ValueError, match=r"image\.png: unknown model format \(suffix '\.png', and its content"):
        ember.load(tmp_path / "image.png")


def test_write_weights_round_trips_empty_store(tmp_path):
    write_weights(tmp_path / "e.weights", {})
    assert read_weights(tmp_path / "e.weights") == {}


def test_saving_text_under_the_weights_suffix_is_refused(tmp_path):
    from ember.errors import ModelFormatError
    m, _ = module_with_weights()
    with pytest.raises(ModelFormatError, match=r"m\.weights: the module text needs another suffix"):
        m.save(tmp_path / "m.weights")
    assert list(tmp_path.iterdir()) == []
