"""Bugs the fuzz suite found in code it does not fix, one minimal reproducer each, run under
the harness (short time limit): each test fails until its bug is fixed. Their cases are
kept out of the corpus so that the fuzz tests keep looking for new bugs meanwhile.
"""

from __future__ import annotations

import os

from harness import Record, run

import ember

WEIGHTED_IR = """module {
  weight "w" : f32[2]
  func @main(%x: f32[2]) -> (y: f32[2]) {
    %w = ember.weight {name = "w"} : f32[2]
    %y = ember.add %x, %w : f32[2]
    return %y
  }
}
"""


def test_ir_weights_file_that_is_a_fifo(tmp_path):
    """x.weights a FIFO: `ember.load(x.ir)` waits forever in ir/weights_file.py map_weights, which
    opens the file without checking it is a regular file (owner: ir/files.py, ir/weights_file.py).
    Expected: a WeightsFileError naming the path."""
    (tmp_path / "x.ir").write_text(WEIGHTED_IR)
    os.mkfifo(tmp_path / "x.weights")
    record = Record("ir")
    failure = run(record, "x.weights is a FIFO", lambda: ember.load(tmp_path / "x.ir"), reads=[tmp_path], timeout=1)
    assert failure is None, str(failure)
