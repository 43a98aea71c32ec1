"""External data is untrusted: a model's locations may name only files inside its own folder.

An initializer whose location climbs out with `..`, is absolute, or reaches out through
a symlink must be refused with one line naming the tensor and the path, before a byte
of the outside file is read; legitimate locations (a sub-folder included) keep loading.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ember
from ember.cli import main
from ember.errors import EmberError
from ember.frontends.onnx import import_model, load

F = TensorProto.FLOAT
SECRET = b"root:x:0:0:secret\n" * 8  # 144 bytes: what an attacker wants in the weights


def external_model(location: str, *, count: int = 4, offset: str | None = None,
                   length: str | None = None, dtype: int = F) -> onnx.ModelProto:
    w = TensorProto(name="w", data_type=dtype, dims=[count])
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    if offset is not None:
        w.external_data.add(key="offset", value=offset)
    if length is not None:
        w.external_data.add(key="length", value=length)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", dtype, [count])],
                              [helper.make_tensor_value_info("y", dtype, [count])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def layout(tmp_path):
    """tmp/outside/secret.bin (not the model's), tmp/model/ (the model's folder)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(SECRET)
    folder = tmp_path / "model"
    folder.mkdir()
    return folder, outside / "secret.bin"


def save(folder, proto, name="m.onnx"):
    path = folder / name
    path.write_bytes(proto.SerializeToString())
    return path


def refused(path, *pieces):
    with pytest.raises(EmberError) as info:
        load(path)
    first = str(info.value).splitlines()[0]
    assert "initializer 'w'" in first, first
    for piece in pieces:
        assert piece in first, first
    return first


@pytest.mark.parametrize("location", ["../outside/secret.bin", "../../../../../../../../etc/passwd",
                                      "sub/../../outside/secret.bin", ".."])
def test_dot_dot_locations_are_refused(layout, location):
    folder, _ = layout
    (folder / "sub").mkdir()
    refused(save(folder, external_model(location)), "outside the model's folder", repr(location))


def test_absolute_locations_are_refused(layout):
    folder, secret = layout
    for location in (str(secret), "/etc/passwd", "C:\\Windows\\win.ini", "\\\\server\\share\\w.bin"):
        refused(save(folder, external_model(location)), "absolute path")


def test_a_symlink_leaving_the_folder_is_refused(layout):
    folder, secret = layout
    os.symlink(secret, folder / "w.bin")
    refused(save(folder, external_model("w.bin")), "through a symlink")
    os.symlink(secret.parent, folder / "linked")
    refused(save(folder, external_model("linked/secret.bin")), "through a symlink")


def test_a_symlink_inside_the_folder_still_loads(layout):
    folder, _ = layout
    data = np.arange(4, dtype=np.float32)
    (folder / "real.bin").write_bytes(data.tobytes())
    os.symlink("real.bin", folder / "alias.bin")
    np.testing.assert_array_equal(load(save(folder, external_model("alias.bin"))).weights["w"].data, data)


def test_a_location_in_a_sub_folder_loads(layout):
    folder, _ = layout
    (folder / "sub").mkdir()
    data = np.array([1.5, -2.0, 3.25, 7.0], np.float32)
    (folder / "sub" / "w.bin").write_bytes(b"\0" * 8 + data.tobytes())
    path = save(folder, external_model("sub/w.bin", offset="8", length="16"))
    module = load(path)
    np.testing.assert_array_equal(module.weights["w"].data, data)
    x = np.ones(4, np.float32)
    np.testing.assert_array_equal(ember.interpret(module, {"x": x})["y"], x + data)


def test_odd_offsets_and_folders_are_refused(layout):
    folder, _ = layout
    (folder / "w.bin").write_bytes(np.zeros(4, np.float32).tobytes())
    (folder / "adir").mkdir()
    refused(save(folder, external_model("w.bin", offset="-4")), "offset -4 is negative")
    refused(save(folder, external_model("w.bin", offset="four")), "is not an integer")
    refused(save(folder, external_model("w.bin", length="-1")), "length -1 is negative")
    refused(save(folder, external_model("w.bin", offset=str(10**30))), "truncated")
    refused(save(folder, external_model("adir")), "not a regular file")
    refused(save(folder, external_model("missing.bin")), "does not exist")
    refused(save(folder, external_model("")), "empty")


def test_huge_declared_shapes_are_refused(layout):
    folder, _ = layout
    (folder / "w.bin").write_bytes(np.zeros(4, np.float32).tobytes())
    refused(save(folder, external_model("w.bin", count=10**15)), "than the limit")


def test_packed_types_are_held_to_the_same_rules(layout):
    folder, secret = layout
    refused(save(folder, external_model("../outside/secret.bin", dtype=TensorProto.INT4)), "outside")
    (folder / "w.bin").write_bytes(bytes([0x21, 0x43]))
    module = load(save(folder, external_model("w.bin", dtype=TensorProto.INT4)))
    np.testing.assert_array_equal(module.weights["w"].data.astype(np.int8), [1, 2, 3, 4])


def test_a_model_not_read_from_a_folder_cannot_use_external_data():
    with pytest.raises(EmberError, match="was not read from a folder"):
        import_model(external_model("w.bin"), source="bytes")


def test_cli_import_refuses_and_writes_nothing(layout, capsys):
    folder, _ = layout
    path = save(folder, external_model("../outside/secret.bin"))
    out = folder / "m.ir"
    assert main(["import", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "outside the model's folder" in err
    assert not out.exists() and not out.with_suffix(".weights").exists()
