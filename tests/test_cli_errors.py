"""Ordinary mistakes on the command line end in one line that names what is wrong (exit 2),
never a traceback, and nothing the user had is replaced: outputs that exist are kept unless
`--force` (or, for `ember opt`, `--in-place`) says otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from ember.cli import main
from ember.ir import Builder, f32

SYMBOLIC = """module @m {
  symbol N in [1, inf]
  func @main(%x: f32[N,4]) -> (y: f32[N,4]) {
    %0 = ember.relu %x : f32[N,4] loc("act")
    return %0
  }
}
"""


def small_module():
    b = Builder("small")
    x = b.input("x", f32["N", 4])
    w = b.weight("w", np.arange(4, dtype=np.float32))
    b.output("y", b.relu(b.add(x, w)))
    return b.build()


@pytest.fixture(scope="module")
def engine_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine")
    path = folder / "m.engine"
    model = folder / "m.ir"
    small_module().save(model)
    assert main(["compile", str(model), "-o", str(path), "--shapes", "x:2x4",
                 "--cache-dir", str(folder / "cache")]) == 0
    return path


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "m.ir"
    small_module().save(model)
    (tmp_path / "sym.ir").write_text(SYMBOLIC)
    (tmp_path / "empty.ir").write_text("module @empty {\n}\n")
    (tmp_path / "existing.npz").write_bytes(b"keep me")
    (tmp_path / "existing.engine").write_bytes(b"keep me")
    (tmp_path / "existing.ir").write_bytes(b"keep me")
    (tmp_path / "a_file").write_bytes(b"keep me")
    (tmp_path / "folder").mkdir()
    (tmp_path / "syntax.py").write_text("def broken(:\n    pass\n")
    (tmp_path / "twice.py").write_text("from ember.passes import register_pass\n\n"
                                       "@register_pass('canonicalize')\ndef mine(module, ctx):\n    return False\n")
    (tmp_path / "raises.py").write_text("import os\n\nraise RuntimeError('not today')\n")
    return tmp_path


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


CASES = [
    (["run", "{d}/m.ir", "--random", "--dim", "N=abc"], "--dim 'N=abc': the value must be an integer"),
    (["run", "{d}/m.ir", "--random", "--dim", "N"], "expected SYMBOL=VALUE"),
    (["run", "{d}/m.ir", "--random", "--dim", "N=-2"], "must not be negative"),
    (["run", "{d}/m.ir", "--random", "--dim", "Q=4"], "the model has no symbol 'Q' (its symbols: N)"),
    (["run", "{d}/m.ir", "--random", "--reference", "-o", "{d}"], "is a folder"),
    (["run", "{d}/m.ir", "--random", "--reference", "-o", "{d}/existing.npz"], "exists; pass --force"),
    (["run", "{d}/m.ir", "--random", "--reference", "-o", "{d}/nowhere/out.npz"], "does not exist"),
    (["run", "{d}/m.ir", "--random", "--reference", "--function", "nope"], "no such function"),
    (["run", "{d}/sym.ir", "--random", "--reference", "--dim", "N=1000000000000"], "than the limit"),
    (["import", "{d}/m.ir", "-o", "{d}/folder"], "is a folder"),
    (["import", "{d}/m.ir", "-o", "{d}/out.weights"], "name the module's text"),
    (["import", "{d}/m.ir", "-o", "{d}/existing.ir"], "exists; pass --force"),
    (["compile", "{d}/m.ir", "-o", "{d}/folder"], "is a folder"),
    (["compile", "{d}/m.ir", "-o", "{d}/existing.engine"], "exists; pass --force"),
    (["compile", "{d}/m.ir", "-o", "{d}/new.engine", "--dump-cuda", "{d}/a_file"], "is a file"),
    (["compile", "{d}/m.ir", "-o", "{d}/new.engine", "--shapes", "x:2xq"], "dims must be integers"),
    (["compile", "{d}/m.ir", "-o", "{d}/new.engine", "--shapes", "x:-1x4"], "dim -1 is negative"),
    (["compile", "{d}/sym.ir", "-o", "{d}/new.engine", "--shapes", "x:1000000000000x4"], "than the limit"),
    (["compile", "{d}/m.ir", "-o", "{d}/new.engine"], "symbolic dims (N: x [N,4])"),
    (["compile", "{d}/m.ir", "-o", "{d}/new.engine", "--profile", "x:1x4"], "expected NAME:MIN:OPT:MAX"),
    (["compile", "{d}/m.ir", "-o", "{d}/new.engine", "--profile", "x:4x4:2x4:8x4"], "MIN <= OPT <= MAX"),
    (["compile", "{d}/m.ir", "-o", "{d}/new.engine", "--profile", "x:1x4:2x4:8x4,x:1x4:8x4"], "given twice"),
    (["compile", "{d}/m.ir", "-o", "{d}/new.engine", "--profile", "x:1x4:8x4", "--shapes", "x:2x4"], "not both"),
    (["compile", "{d}/m.ir", "-o", "{d}/new.engine", "--profile", "y:1x4:8x4"], "names no input of the model"),
    (["opt", "{d}/m.ir", "-p", "canonicalize", "-o", "{d}/existing.ir"], "exists; pass --force"),
    (["opt", "{d}/m.ir", "-p", "canonicalize", "-o", "{d}/m.ir"], "is the input; pass --in-place"),
    (["opt", "{d}/m.ir", "-p", "fuse-elementwise{max-ops=-5}"], "max-ops=-5 is below its minimum 1"),
    (["opt", "{d}/m.ir", "-p", "fold-constants{growth=nan}"], "growth=nan is not a finite number"),
    (["opt", "{d}/m.ir", "-p", "convert-precision{to=f8}"], "is not one of f16, bf16"),
    (["opt", "{d}/m.ir", "-p", "canonicalize", "--load", "{d}/syntax.py"], "syntax.py: syntax error at line 1"),
    (["opt", "{d}/m.ir", "-p", "canonicalize", "--load", "{d}/twice.py"],
     "twice.py: pass 'canonicalize' is registered twice"),
    (["opt", "{d}/m.ir", "-p", "canonicalize", "--load", "{d}/raises.py"],
     "raises.py: importing it raised RuntimeError (line 3): not today"),
    (["opt", "{d}/m.ir", "-p", "canonicalize", "--load", "{d}/missing.py"], "no such file"),
    (["verify", "{d}/missing.ir"], "no such model"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a[:1] + a[2:]).replace("{d}/", "")
                                                      for a, _ in CASES])
def test_mistakes_give_one_line_and_change_nothing(files, capsys, argv, message):
    before = snapshot(files)
    line = one_line_error([a.replace("{d}", str(files)) for a in argv], capsys)
    assert message in line
    assert snapshot(files) == before


def test_engine_mistakes(engine_path, tmp_path, capsys):
    line = one_line_error(["run", str(engine_path), "--random", "--dim", "Q=4"], capsys)
    assert "no symbol 'Q'" in line
    line = one_line_error(["run", str(engine_path), "--random", "--dim", "N=x"], capsys)
    assert "must be an integer" in line


def test_fp16_and_bf16_together_are_refused(files, capsys):
    with pytest.raises(SystemExit) as info:
        main(["compile", str(files / "m.ir"), "-o", str(files / "new.engine"), "--fp16", "--bf16"])
    assert info.value.code == 2
    assert "not allowed with argument --fp16" in capsys.readouterr().err
    assert not (files / "new.engine").exists()


def test_force_replaces_and_in_place_rewrites(files, engine_path, capsys):
    out = files / "existing.npz"
    assert main(["run", str(files / "m.ir"), "--random", "--reference", "-o", str(out), "--force"]) == 0
    with np.load(out) as data:
        assert data["y"].shape == (1, 4)
    assert main(["import", str(files / "m.ir"), "-o", str(files / "existing.ir"), "--force"]) == 0
    assert "ember.relu" in (files / "existing.ir").read_text()
    assert main(["opt", str(files / "m.ir"), "-p", "canonicalize", "-o", str(files / "m.ir"), "--in-place"]) == 0
    capsys.readouterr()


def test_a_profile_engine_from_the_command_line(tmp_path, capsys):
    model, engine = tmp_path / "m.ir", tmp_path / "m.engine"
    small_module().save(model)
    assert main(["compile", str(model), "-o", str(engine), "--profile", "x:1x4:2x4:8x4",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "profile 0 arena: MIN" in capsys.readouterr().out
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(engine), "-i", f"x={tmp_path / 'x.npy'}", "-o", str(tmp_path / "y.npz"),
                 "--device", "cpu"]) == 0
    with np.load(tmp_path / "y.npz") as out:
        assert np.allclose(out["y"], np.maximum(x + np.arange(4, dtype=np.float32), 0))
    capsys.readouterr()
    np.save(tmp_path / "big.npy", np.zeros((9, 4), np.float32))
    assert main(["run", str(engine), "-i", f"x={tmp_path / 'big.npy'}", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "outside every optimization profile" in line and "x [9, 4]" in line and "x:1x4:2x4:8x4" in line


def test_device_index_is_for_a_gpu(tmp_path, capsys):
    """`ember run --device-index N` picks the GPU; on the host arena it is refused in one line."""
    from ember.ir.examples import cnn_block
    path = tmp_path / "cnn.ir"
    cnn_block().save(path)
    assert main(["run", str(path), "--random", "--dim", "N=1", "--device", "cpu", "--device-index", "1"]) == 2
    err = capsys.readouterr().err
    assert "--device-index 1: a GPU's index" in err and len(err.strip().splitlines()) == 1
