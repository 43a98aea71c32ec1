"""EMBER_FLAGS (codegen/flags.py): the switches of kernel forms waiting on a device check, set
from the environment in a fresh process, and clear errors for flags it does not know."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ember.codegen import flags
from ember.errors import UsageError

PROBE = ("import ember.codegen.ops.heavy as h, ember.codegen.ops.movement as m; "
         "print(h.SPLIT_K, h.MMA_DYNAMIC_STAGES, m.CONCAT_ONE_LAUNCH)")


def probe(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != flags.ENV}
    if value is not None:
        env[flags.ENV] = value
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)


def test_the_environment_turns_the_switches_on_in_a_fresh_process():
    assert probe(None).stdout.split() == ["False", "0", "False"]
    on = probe("--split-k --mma-dynamic-stages=4 --concat-one-launch")
    assert on.returncode == 0, on.stderr
    assert on.stdout.split() == ["True", "4", "True"]
    assert probe("--split-k=off").stdout.split()[0] == "False"


@pytest.mark.parametrize("text,message", [
    ("--fast", "unknown flag '--fast'; known: --split-k, --mma-dynamic-stages, --concat-one-launch"),
    ("split-k", "unknown flag 'split-k'"),
    ("--mma-dynamic-stages", "'--mma-dynamic-stages' needs a count"),
    ("--split-k=maybe", "'--split-k=maybe' needs on or off"),
])
def test_bad_flags_are_named(text, message):
    with pytest.raises(UsageError, match="EMBER_FLAGS: " + message.replace("(", r"\(").replace("'", "'")):
        flags.parse(text)
