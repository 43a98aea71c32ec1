"""The `ember` command: each subcommand on real files, and clear errors (exit 2) on bad ones."""

import subprocess
import sys

import numpy as np
import pytest

from ember.cli import main
from ember.ir.examples import attention_block, cnn_block


@pytest.fixture()
def saved(tmp_path):
    path = tmp_path / "cnn.ir"
    cnn_block().save(path)
    return path


def test_inspect(saved, capsys, tmp_path):
    assert main(["inspect", str(saved), "--dot", str(tmp_path / "g.dot")]) == 0
    out = capsys.readouterr().out
    assert "image" in out and "f32[N,3,32,32]" in out and "ember.conv x3" in out
    assert "weights: 15 (15 with data" in out
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


def test_inspect_prints_full_types_with_lowercase_symbols(capsys):
    """rich reads `[batch,sequence]` as markup unless the cell is plain text (issue 14)."""
    from pathlib import Path
    model = Path(__file__).parent / "fixtures" / "onnx" / "bert_small.onnx"
    assert main(["inspect", str(model)]) == 0
    out = capsys.readouterr().out
    assert "i64[batch,sequence]" in out and "f32[batch,sequence,32]" in out


def test_inspect_ir_prints_the_text(saved, capsys):
    assert main(["inspect", str(saved), "--ir"]) == 0
    record, text = saved.read_text().split("\n", 1)  # a saved text starts with the weights it goes with
    assert record.startswith("// weights: ") and capsys.readouterr().out == text


def test_run_random_and_from_files(saved, capsys, tmp_path):
    assert main(["run", str(saved), "--random", "--dim", "N=3", "-o", str(tmp_path / "out.npz")]) == 0
    out = np.load(tmp_path / "out.npz")
    assert out["features"].shape == (3, 8)
    image = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    assert main(["run", str(saved), "-i", f"image={tmp_path / 'image.npy'}"]) == 0
    assert "features" in capsys.readouterr().out


def test_verify(saved, capsys):
    assert main(["verify", str(saved)]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")


@pytest.mark.parametrize("args,message", [
    (["inspect", "missing.ir"], "no such model: missing.ir"),
    (["run", "{bad}"], "1:1: unexpected"),
    (["run", "{saved}"], "inputs image not given"),
    (["run", "{saved}", "-i", "image=nope.npy"], "cannot read nope.npy"),
    (["run", "{saved}", "-i", "image"], "expected NAME=FILE.npy"),
    (["inspect", "{model.onnx}"], "empty file, not an ONNX model"),
    (["import", "{saved}", "-o", "{saved}"], "would overwrite the model"),
])
def test_errors_are_one_clear_line(saved, tmp_path, capsys, args, message):
    (tmp_path / "bad.ir").write_text("garbage")
    (tmp_path / "model.onnx").write_bytes(b"")
    args = [a.replace("{saved}", str(saved)).replace("{bad}", str(tmp_path / "bad.ir"))
            .replace("{model.onnx}", str(tmp_path / "model.onnx")) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ember {args[0]}: error: ") and message in err
    assert "Traceback" not in err


def test_python_dash_m_and_demo(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ember", "demo", "--quiet"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cnn_block on the reference interpreter" in result.stdout
    assert "attention_block on the reference interpreter" in result.stdout


def test_examples_have_symbolic_batch_and_run():
    from ember import ir
    m = attention_block()
    assert str(m.main.inputs[0].type) == "f32[N,S,32]"
    x = np.random.default_rng(1).standard_normal((2, 5, 32)).astype(np.float32)
    assert ir.interpret(m, {"tokens": x})["hidden"].shape == (2, 5, 32)


def test_opt_lists_the_passes_their_options_and_pipelines(capsys, tmp_path):
    assert main(["opt", "--list-passes"]) == 0
    out = capsys.readouterr().out
    assert "fuse-elementwise" in out and "max-ops=32 (min 1)" in out and "pipeline default:" in out
    plugin = tmp_path / "my_pass.py"
    plugin.write_text("from ember.passes.manager import register_pass\n\n"
                      "@register_pass('my-noop')\n"
                      "def my_noop(module, ctx):\n"
                      "    \"\"\"Does nothing, for the listing.\"\"\"\n"
                      "    return False\n")
    assert main(["opt", "--list-passes", "--load", str(plugin)]) == 0
    assert "my-noop" in capsys.readouterr().out



def test_opt_to_an_onnx_file_writes_onnx(tmp_path):
    """`-o x.onnx` exports the optimized module to ONNX (not the text IR under an .onnx name),
    and onnxruntime runs it to the interpreter's result (issue 14)."""
    import onnx
    import onnxruntime
    from pathlib import Path
    import ember
    model = Path(__file__).parent / "fixtures" / "onnx" / "resnet50_small.onnx"
    out = tmp_path / "opt.onnx"
    assert main(["opt", str(model), "-p", "canonicalize,cse", "-o", str(out)]) == 0
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    feeds = dict(np.load(model.with_name("resnet50_small.inputs.npz")))
    got = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feeds)
    want = ember.interpret(ember.load(str(model)), feeds)
    from ember.tolerance import compare
    for (name, ref), value in zip(want.items(), got):
        assert compare(np.asarray(value), np.asarray(ref)), name
    assert not (tmp_path / "opt.weights").exists()
    import ember.frontends.onnx.export  # noqa: F401  (the submodule, as other tests import it)
    from ember.frontends.onnx import export
    assert callable(export)  # the function, whatever was imported before
    assert main(["opt", str(model), "-p", "canonicalize", "-o", str(tmp_path / "again.onnx")]) == 0


def test_inspect_and_verify_an_engine(tmp_path, capsys):
    """`ember inspect X.engine`: its inputs with symbolic ranges, profiles and a layer per step
    (kernel, source ops and locations, tactic, launch shape); `verify` loads and checks it; a
    truncated one is refused in one line (issue 14)."""
    from pathlib import Path
    model = Path(__file__).parent / "fixtures" / "onnx" / "resnet50_small.onnx"
    engine = tmp_path / "r.bin"  # found by its magic bytes, whatever its name
    assert main(["compile", str(model), "-o", str(engine), "--profile", "image:1x3x64x64:2x3x64x64:4x3x64x64"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(engine)]) == 0
    out = capsys.readouterr().out
    assert "image" in out and "batch=1..4" in out and "profile 0: image:1x3x64x64:2x3x64x64:4x3x64x64" in out
    assert "ember.fused @" in out and "implicit-gemm" in out and "layers (" in out
    assert main(["verify", str(engine)]) == 0 and "ok" in capsys.readouterr().out
    broken = tmp_path / "broken.engine"
    broken.write_bytes(engine.read_bytes()[:4096])
    assert main(["verify", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.engine" in err and len(err.strip().splitlines()) == 1


def test_opt_reads_stdin_writes_stdout_and_edits_in_place(capsys, monkeypatch, tmp_path):
    """`ember opt - -p ...` reads IR text from stdin, `-o -` writes stdout, `--in-place` alone
    rewrites the input file (issue 14)."""
    import io
    from ember.ir.parser import parse
    text = "func @main(%x: f32[4]) -> (y: f32[4]) {\n  %a = ember.neg %x : f32[4]\n  %b = ember.neg %a : f32[4]\n" \
           "  return %b\n}\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["opt", "-", "-p", "canonicalize", "-o", "-"]) == 0
    out = capsys.readouterr().out
    assert "ember.neg" not in out and parse(out).main.outputs  # -(-x) folded away, the result parses
    path = tmp_path / "twice.ir"
    path.write_text(text)
    assert main(["opt", str(path), "-p", "canonicalize", "--in-place"]) == 0
    assert capsys.readouterr().out == "" and "ember.neg" not in path.read_text()
    assert parse(path.read_text().split("\n", 1)[1]).main.outputs  # the saved module, after its weights line
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["opt", "-", "-p", "canonicalize", "--in-place"]) == 2
    assert "--in-place edits a file" in capsys.readouterr().err


def test_verbose_logs_the_build_and_quiet_prints_nothing(tmp_path, capsys):
    """`ember -v compile` logs its stages on stderr through Python's logging (the `ember` logger);
    `ember -q compile` prints nothing but errors (issue 14)."""
    from pathlib import Path
    model = Path(__file__).parent / "fixtures" / "onnx" / "mobilenet_v2_small.onnx"
    assert main(["-v", "compile", str(model), "-o", str(tmp_path / "a.engine"), "--shapes", "image:1x3x64x64"]) == 0
    err = capsys.readouterr().err
    assert "ember: passes" in err and "ember: lowered for 1 profile(s)" in err and "ember: NVRTC" in err
    assert main(["-q", "compile", str(model), "-o", str(tmp_path / "b.engine"), "--shapes", "image:1x3x64x64"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
