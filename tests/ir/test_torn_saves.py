"""Saving a module over an existing pair: a kill or a failure at any step leaves a pair that
loads as exactly the old module or exactly the new one (text and every weight bit for bit).

A kill is real: the save runs in a forked child that SIGKILLs itself right before or right
after the k-th fsync, rename or removal (before an fsync is after the write it syncs), for
every k. No exec, so each case costs a fork, not an interpreter start. The fsyncs are still
points but do nothing here: they matter for a power cut, not for a kill, and cost ~25 ms each
on a disk.
"""

import os
import re
import signal

import numpy as np
import pytest

import ember
from ember import ir
from ember.cli import main
from ember.errors import WeightsFileError
from ember.ir.files import weights_path

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

HOOKED = ("fsync", "replace", "unlink")
EMBER_SIBLING = re.compile(r"m\.(ir|weights)\.ember-\d+-[0-9a-f]{8}-[0-9a-f]{8}\.(tmp|old)")


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def build(name, weights, *, op="add", with_data=True):
    b = ir.Builder(name)
    x = b.input("x", ir.f32[2, 3])
    y = x
    for k, v in weights.items():
        y = getattr(b, op)(y, b.weight(k, v))
    b.output("y", y)
    m = b.build()
    if not with_data:
        for w in m.weights.values():
            w.data = None
    return m


W0 = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
W1 = {"w": -np.arange(6, dtype=np.float32).reshape(2, 3)}  # same declarations, other bytes
W2 = {"u": np.full((2, 3), 0.5, np.float32), "v": np.ones((2, 3), np.float32)}

SCENARIOS = {
    "same text, other weights": (lambda: build("m", W0), lambda: build("m", W1)),
    "other text, other weights": (lambda: build("m", W0), lambda: build("n", W2, op="mul")),
    "weights -> text only": (lambda: build("m", W0), lambda: build("m", W0, with_data=False)),
    "text only -> weights": (lambda: build("m", W0, with_data=False), lambda: build("m", W1)),
    "nothing -> weights": (None, lambda: build("m", W1)),
}


def snapshot(m):
    """What must survive: the text and each weight's bytes (None: declared without data)."""
    return str(m), {k: (None if w.data is None else (w.data.dtype.str, w.data.shape, w.data.tobytes()))
                    for k, w in m.weights.items()}


def install(hook):
    """Call hook() before and after every os.fsync/replace/unlink (in this process)."""
    for name in HOOKED:
        real = getattr(os, name)

        def wrapped(*args, _real=real, **kwargs):
            hook()
            out = _real(*args, **kwargs)
            hook()
            return out
        setattr(os, name, wrapped)


def count_points(tmp_path, old, new, monkeypatch):
    folder = tmp_path / "count"
    folder.mkdir()
    if old is not None:
        old().save(folder / "m.ir")
    calls = []
    with monkeypatch.context() as mp:
        for name in HOOKED:
            real = getattr(os, name)
            mp.setattr(os, name, lambda *a, _real=real, **k: (calls.append(1), _real(*a, **k))[1])
        new().save(folder / "m.ir")
    return 2 * len(calls)


def killed_save(new_module, path, k):
    """Save in a child that kills itself at point k; True if it was killed (False: it finished)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            seen = [0]

            def hook():
                seen[0] += 1
                if seen[0] == k:
                    os.kill(os.getpid(), signal.SIGKILL)
            install(hook)
            new_module.save(path)
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the save raised in the child"
    return False


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_kill_at_any_step_leaves_the_old_or_the_new_module(tmp_path, monkeypatch, scenario):
    old, new = SCENARIOS[scenario]
    old_snap = snapshot(old()) if old is not None else None
    new_module = new()
    new_snap = snapshot(new_module)
    points = count_points(tmp_path, old, new, monkeypatch)
    assert points >= 8
    outcomes = []
    for k in range(1, points + 1):
        folder = tmp_path / f"k{k}"
        folder.mkdir()
        path = folder / "m.ir"
        if old is not None:
            old().save(path)
        assert killed_save(new_module, path, k), f"point {k} of {points} was not reached"
        leftovers = [p.name for p in folder.iterdir() if p.name not in ("m.ir", "m.weights")]
        assert all(EMBER_SIBLING.fullmatch(n) for n in leftovers), leftovers
        if not path.exists():
            assert old is None, f"kill at point {k}: m.ir is gone"
            outcomes.append("old")
        else:
            got = snapshot(ember.load(path))
            assert got in (old_snap, new_snap), f"kill at point {k}: a module that is neither"
            outcomes.append("old" if got == old_snap else "new")
        # the next save finishes off the killed one: nothing of it is left
        third = build("third", {"t": np.full((2, 3), 7, np.float32)})
        third.save(path)
        assert sorted(p.name for p in folder.iterdir()) == ["m.ir", "m.weights"]
        assert snapshot(ember.load(path)) == snapshot(third)
    assert outcomes[0] == "old" and outcomes[-1] == "new"


class Injected(Exception):
    pass


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_failure_at_any_step_rolls_back_or_completes_and_leaves_nothing_behind(tmp_path, monkeypatch,
                                                                                  scenario):
    old, new = SCENARIOS[scenario]
    old_snap = snapshot(old()) if old is not None else None
    new_module = new()
    new_snap = snapshot(new_module)
    points = count_points(tmp_path, old, new, monkeypatch)
    for k in range(1, points + 1):
        folder = tmp_path / f"k{k}"
        folder.mkdir()
        path = folder / "m.ir"
        if old is not None:
            old().save(path)
        seen = [0]

        def hook():
            seen[0] += 1
            if seen[0] == k:
                raise Injected(f"point {k}")
        with monkeypatch.context() as mp:
            for name in HOOKED:
                real = getattr(os, name)

                def wrapped(*args, _real=real, **kwargs):
                    hook()
                    out = _real(*args, **kwargs)
                    hook()
                    return out
                mp.setattr(os, name, wrapped)
            with pytest.raises(Injected):
                new_module.save(path)
        names = sorted(p.name for p in folder.iterdir())
        if not path.exists():
            assert old is None and names == [], (k, names)
            continue
        got = snapshot(ember.load(path))
        assert got in (old_snap, new_snap), f"failure at point {k}: a module that is neither"
        has_data = any(v is not None for v in got[1].values())
        assert names == (["m.ir", "m.weights"] if has_data else ["m.ir"]), (k, names)


def test_the_old_weights_are_found_while_a_save_is_under_way(tmp_path):
    """Killed between renaming the new weights in and the new text: old text, new weights in
    m.weights, old weights kept aside. Loading takes the kept ones (read-only: nothing moves)."""
    path = tmp_path / "m.ir"
    old, new = build("m", W0), build("m", W1)
    old.save(path)
    calls = {"replace": 0}
    real_replace = os.replace
    pid = os.fork()
    if pid == 0:
        def replace(src, dst):
            real_replace(src, dst)
            calls["replace"] += 1
            if calls["replace"] == 2:  # aside, then the new weights in
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace
        new.save(path)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    kept = [p.name for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert len(kept) == 1
    before = sorted(p.name for p in tmp_path.iterdir())
    assert snapshot(ember.load(path)) == snapshot(old)
    assert main(["verify", str(path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_text_only_module_saved_over_a_pair_removes_its_weights(tmp_path):
    path = tmp_path / "m.ir"
    build("m", W0).save(path)
    text_only = build("m", W0, with_data=False)
    text_only.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ir"]
    assert path.read_text().startswith("// weights: none\n")
    # weights put back beside it by hand are not read: the text says it has none
    build("m", W0).save(tmp_path / "other.ir")
    os.replace(tmp_path / "other.weights", weights_path(path))
    again = ember.load(path)
    assert again.weights["w"].data is None
    assert snapshot(again) == snapshot(text_only)


def test_a_weights_file_from_another_save_is_refused_naming_both_files(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    build("m", W0).save(a / "m.ir")
    build("m", W1).save(b / "m.ir")  # same names, types and shapes: only the record tells them apart
    os.replace(b / "m.weights", a / "m.weights")
    with pytest.raises(WeightsFileError, match=r"m\.ir: its weights file .*m\.weights is not the one it was "
                                               r"saved with") as err:
        ember.load(a / "m.ir")
    assert "\n" not in str(err.value)
    assert main(["verify", str(a / "m.ir")]) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "m.ir" in out and "m.weights" in out and "not the one" in out
    # deleting the record accepts the weights as they are (what the message offers)
    text = (a / "m.ir").read_text()
    (a / "m.ir").write_text(text.split("\n", 1)[1])
    assert ember.load(a / "m.ir").weights["w"].data.tobytes() == W1["w"].tobytes()


def test_a_text_without_a_record_loads_the_weights_beside_it(tmp_path):
    """Texts written by hand or by an older Ember record nothing: the weights file is read as before."""
    from ember.ir.weights_file import write_weights
    m = build("m", W0)
    (tmp_path / "m.ir").write_text(str(m))
    write_weights(tmp_path / "m.weights", W0)
    assert snapshot(ember.load(tmp_path / "m.ir")) == snapshot(m)


def test_concurrent_saves_and_loads_of_one_pair_see_whole_modules(tmp_path):
    """Two processes save different modules to one path while this one loads it: every load
    is one of the two, and the end is one complete pair with nothing left beside it."""
    path = tmp_path / "m.ir"
    modules = [build("m", W0), build("n", W2, op="mul")]
    expected = [snapshot(m) for m in modules]
    modules[0].save(path)
    children = []
    for m in modules:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for _ in range(40):
                    m.save(path)
            except BaseException:
                code = 3
            os._exit(code)
        children.append(pid)
    loads = 0
    running = set(children)
    while running:
        assert snapshot(ember.load(path)) in expected
        loads += 1
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert loads > 0
    assert snapshot(ember.load(path)) in expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ir", "m.weights"]


def test_a_loaded_module_saved_in_place_keeps_its_weights(tmp_path):
    """`ember opt m.ir -o m.ir --in-place`: the weights being written are mapped from the file
    being replaced; the old file is renamed aside, never written over, so they stay intact."""
    path = tmp_path / "m.ir"
    build("m", W2, op="mul").save(path)
    loaded = ember.load(path)
    loaded.save(path)
    loaded.save(path)
    assert snapshot(ember.load(path)) == snapshot(build("m", W2, op="mul"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ir", "m.weights"]
