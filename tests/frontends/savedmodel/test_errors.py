"""Bad SavedModels get one clear error naming the problem and where it is; no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import ember
from ember.cli import main
from ember.errors import EmberError, UnsupportedOpError
from ember.frontends.savedmodel import CheckpointError, SavedModelError


def _copy(saved_models: Any, name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(saved_models[name][0], dst)
    return dst


def _cli_error(args: list[str], capsys: Any) -> str:
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_folder_without_saved_model_pb(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "variables").mkdir()
    with pytest.raises(SavedModelError, match="no saved_model.pb in this folder: not a SavedModel"):
        ember.load(tmp_path)
    err = _cli_error(["import", str(tmp_path)], capsys)
    assert f"{tmp_path}: no saved_model.pb" in err


def test_unknown_signature_lists_the_ones_there(saved_models: Any, capsys: Any) -> None:
    path, _ = saved_models["two_signatures"]
    listed = r"no signature 'predict'; the SavedModel has 'scores', 'serving_default'"
    with pytest.raises(SavedModelError, match=listed):
        ember.load(path, signature="predict")
    err = _cli_error(["import", str(path), "--signature", "predict"], capsys)
    assert "'scores', 'serving_default'" in err


def test_missing_variables_shard(saved_models: Any, tmp_path: Path, capsys: Any) -> None:
    path = _copy(saved_models, "small_resnet", tmp_path)
    shard = path / "variables" / "variables.data-00000-of-00001"
    shard.unlink()
    with pytest.raises(CheckpointError, match=r"variables.data-00000-of-00001: variables shard 0 of 1 is missing"):
        ember.load(path)
    err = _cli_error(["import", str(path), "-o", str(tmp_path / "out.ir")], capsys)
    assert "is missing" in err and not (tmp_path / "out.ir").exists()


def test_missing_index(saved_models: Any, tmp_path: Path) -> None:
    path = _copy(saved_models, "small_resnet", tmp_path)
    (path / "variables" / "variables.index").unlink()
    with pytest.raises(CheckpointError, match="variables.index: the checkpoint index is missing"):
        ember.load(path)


def test_truncated_index(saved_models: Any, tmp_path: Path) -> None:
    path = _copy(saved_models, "small_resnet", tmp_path)
    index = path / "variables" / "variables.index"
    index.write_bytes(index.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match="not a checkpoint index"):
        ember.load(path)


def test_corrupted_index_block(saved_models: Any, tmp_path: Path) -> None:
    path = _copy(saved_models, "small_resnet", tmp_path)
    index = path / "variables" / "variables.index"
    data = bytearray(index.read_bytes())
    data[10] ^= 0x40
    index.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ember.load(path)


def test_flipped_byte_in_a_shard_names_the_variable(saved_models: Any, tmp_path: Path) -> None:
    from ember.frontends.savedmodel.reader import SavedModelDir
    path = _copy(saved_models, "small_resnet", tmp_path)
    saved = SavedModelDir(path)
    key = sorted(saved.handle_keys().values())[0]  # a variable the signature reads
    entry = saved.checkpoint.entries[key]
    saved.checkpoint.close()
    shard = path / "variables" / "variables.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[entry.offset + entry.size // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"variable '{key}': checksum mismatch \(the shard is corrupted\)"):
        ember.load(path)


def test_truncated_shard(saved_models: Any, tmp_path: Path) -> None:
    path = _copy(saved_models, "small_resnet", tmp_path)
    shard = path / "variables" / "variables.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="past the end of the shard .* the shard is truncated"):
        ember.load(path)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_saved_model_pb(saved_models: Any, tmp_path: Path, keep: float, capsys: Any) -> None:
    path = _copy(saved_models, "small_resnet", tmp_path)
    pb = path / "saved_model.pb"
    data = pb.read_bytes()
    pb.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(EmberError) as info:
        ember.load(path)
    assert str(path) in str(info.value).splitlines()[0]
    _cli_error(["import", str(path), "-o", str(tmp_path / "x.ir")], capsys)


def test_unsupported_ops_are_listed_at_once_with_node_names(saved_models: Any, capsys: Any) -> None:
    path, _ = saved_models["unsupported_ops"]
    with pytest.raises(UnsupportedOpError) as info:
        ember.load(path)
    text = str(info.value)
    first, *rest = text.splitlines()
    assert "3 node(s) use ops Ember does not import: ComplexAbs, RFFT, Svd" in first  # abs of the complex rfft
    for op in ("ComplexAbs", "RFFT", "Svd"):
        assert sum(line.strip().startswith(f"{op} node '") and "in function '" in line for line in rest) == 1
    err = _cli_error(["import", str(path)], capsys)
    assert "RFFT" in err and "Svd" in err


def test_a_loop_whose_trip_count_is_data_is_reported(saved_models: Any) -> None:
    path, _ = saved_models["data_dependent_loop"]
    with pytest.raises(UnsupportedOpError) as info:
        ember.load(path)
    first = str(info.value).splitlines()[0]
    assert "While node" in first and "the loop's condition must be known at build time" in first


def test_import_never_overwrites_the_model(saved_models: Any, tmp_path: Path, capsys: Any) -> None:
    path = _copy(saved_models, "two_signatures", tmp_path)
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    _cli_error(["import", str(path), "-o", str(path / "saved_model.pb")], capsys)
    assert before == {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
