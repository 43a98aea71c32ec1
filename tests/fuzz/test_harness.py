"""The harness catches what it claims to: every kind of failure, on purpose-made cases, so a
fuzz run that reports nothing means nothing was found, not that nothing was looked at."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from harness import MEMORY_HEADROOM, Record, message_problem, run

from ember.errors import EmberError


def one(call, **kw):
    record = Record("self-test")
    failure = run(record, "case", call, **kw)
    return failure, record


def test_a_clean_refusal_and_a_success_pass():
    failure, record = one(lambda: (_ for _ in ()).throw(EmberError("model.onnx: node 'x': bad attribute")))
    assert failure is None and record.refused == 1
    failure, record = one(lambda: 42, check=lambda result: None if result == 42 else "wrong")
    assert failure is None and record.passed == 1


@pytest.mark.parametrize("message, problem", [
    ("", "empty first line"),
    ("\nthe details", "empty first line"),
    ("  indented", "starts with blanks"),
    ("model.onnx: the model has problems:\n  one\n  two", "ends in ':'"),
    ("KeyError", "says too little"),
    ("model.onnx: node 'x': attribute 'axis' is INTS; Softmax takes INT", None),
])
def test_messages_that_do_not_stand_alone(message, problem):
    got = message_problem(EmberError(message))
    assert (got is None) if problem is None else (problem in got), got
    if problem:
        failure, _ = one(lambda: (_ for _ in ()).throw(EmberError(message)))
        assert failure is not None and failure.kind == "message"


def test_other_exceptions_are_crashes_with_their_place():
    def call():
        return {}["missing"]
    failure, record = one(call)
    assert failure is not None and failure.kind == "crash" and "KeyError" in failure.detail
    assert "test_harness.py" in failure.detail and record.failures == [failure]


def test_a_case_past_its_time_is_a_hang():
    start = time.monotonic()
    failure, _ = one(lambda: time.sleep(10), timeout=0.2)
    assert failure is not None and failure.kind == "hang"
    assert time.monotonic() - start < 5


def test_a_hang_is_caught_through_except_exception():
    def stubborn():
        while True:
            try:
                time.sleep(10)
            except Exception:  # noqa: BLE001 - what careless code under test does
                pass
    failure, _ = one(stubborn, timeout=0.2)
    assert failure is not None and failure.kind == "hang"


def test_an_allocation_past_the_headroom_is_memory():
    failure, _ = one(lambda: np.ones(2 * MEMORY_HEADROOM, dtype=np.uint8))
    assert failure is not None and failure.kind == "memory"
    np.ones(1 << 20)  # the limit is lifted after the case


def test_writes_outside_the_output_folder_fail_and_are_blocked(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    failure, _ = one(lambda: (out / "ok.bin").write_bytes(b"x"), writes=[out])
    assert failure is None and (out / "ok.bin").exists()
    for name, call in {
        "open": lambda: (elsewhere / "a.bin").write_bytes(b"x"),
        "os.open": lambda: os.close(os.open(elsewhere / "b.bin", os.O_WRONLY | os.O_CREAT)),
        "rename": lambda: os.replace(out / "ok.bin", elsewhere / "moved.bin"),
        "remove": lambda: os.remove(elsewhere / "keep.bin"),
        "mkdir": lambda: os.mkdir(elsewhere / "d"),
        "symlink": lambda: os.symlink("/etc/passwd", elsewhere / "l"),
    }.items():
        (elsewhere / "keep.bin").write_bytes(b"k")
        failure, _ = one(call, writes=[out])
        assert failure is not None and failure.kind == "write", name
        assert str(elsewhere) in failure.detail, name
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.bin"]  # every one was blocked
    assert (out / "ok.bin").exists()


def test_reads_outside_the_model_folder_fail(tmp_path):
    model, outside = tmp_path / "model", tmp_path / "outside.bin"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    outside.write_bytes(b"secret")
    (model / "link.bin").symlink_to(outside)
    failure, _ = one(lambda: (model / "w.bin").read_bytes(), reads=[model])
    assert failure is None
    for call in (lambda: outside.read_bytes(), lambda: (model / "link.bin").read_bytes(),
                 lambda: open("/etc/passwd", "rb").read(), lambda: np.memmap(outside, mode="r")):
        failure, _ = one(call, reads=[model])
        assert failure is not None and failure.kind == "read" and failure.detail.startswith("read /"), failure


def test_the_system_may_be_read_and_the_hook_idles_between_cases(tmp_path):
    import json
    import sysconfig
    failure, _ = one(lambda: open(json.__file__, "rb").read(), reads=[tmp_path])
    assert failure is None
    failure, _ = one(lambda: open(os.path.join(sysconfig.get_paths()["purelib"], "numpy", "__init__.py")).read(),
                     reads=[tmp_path])
    assert failure is None
    (tmp_path / "after.bin").write_bytes(b"no case is running: nothing is watched")


def test_a_legitimate_file_that_is_refused_fails():
    failure, _ = one(lambda: (_ for _ in ()).throw(EmberError("model.onnx: refused for no good reason")),
                     must_succeed=True)
    assert failure is not None and failure.kind == "refused"


def test_a_success_that_fails_its_check():
    failure, _ = one(lambda: 1, check=lambda result: "the module does not verify")
    assert failure is not None and failure.kind == "check"


def test_known_failures_are_kept_out_of_the_record():
    record = Record("self-test")
    failure = run(record, "case", lambda: {}["x"], known=lambda f: f.kind == "crash")
    assert failure is not None and record.failures == []
