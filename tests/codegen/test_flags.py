"""EMBER_FLAGS (codegen/flags.py): the switches of kernel forms waiting on a device check, set
by a build (build.compile) from the environment of a fresh process, and clear errors for flags
it does not know."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ember.codegen import flags
from ember.errors import UsageError

PROBE = ("import sys, ember; from ember.ir.parser import parse; "
         "ember.compile(parse('func @main(%x: f32[4]) -> (y: f32[4]) {\\n  %y = ember.relu %x : f32[4]\\n  return %y\\n}\\n'), "
         "targets=('sm_90',), cache_dir=sys.argv[1]); "
         "import ember.codegen.ops.heavy as h, ember.codegen.ops.movement as m; "
         "print(h.SPLIT_K, h.MMA_DYNAMIC_STAGES, m.CONCAT_ONE_LAUNCH)")


def probe(value: str | None, cache) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != flags.ENV}
    if value is not None:
        env[flags.ENV] = value
    return subprocess.run([sys.executable, "-c", PROBE, str(cache)], capture_output=True, text=True, env=env,
                          timeout=300)


def test_a_build_turns_the_environments_switches_on(kernel_cache):
    off = probe(None, kernel_cache)
    assert off.stdout.split() == ["False", "0", "False"], off.stderr[-2000:]
    on = probe("--split-k --mma-dynamic-stages=4 --concat-one-launch", kernel_cache)
    assert on.stdout.split() == ["True", "4", "True"], on.stderr[-2000:]
    assert probe("--split-k=off", kernel_cache).stdout.split()[0] == "False"
    bad = probe("--fast", kernel_cache)
    assert bad.returncode != 0 and "EMBER_FLAGS: unknown flag '--fast'" in bad.stderr


@pytest.mark.parametrize("text,message", [
    ("--fast", "unknown flag '--fast'; known: --split-k, --mma-dynamic-stages, --concat-one-launch, --norm-registers, --depthwise-vector"),
    ("split-k", "unknown flag 'split-k'"),
    ("--mma-dynamic-stages", "'--mma-dynamic-stages' needs a count"),
    ("--split-k=maybe", "'--split-k=maybe' needs on or off"),
])
def test_bad_flags_are_named(text, message):
    with pytest.raises(UsageError, match="EMBER_FLAGS: " + message.replace("(", r"\(").replace("'", "'")):
        flags.parse(text)


def test_a_build_for_no_target_is_refused():
    import ember
    from ember.build import BuildError
    from ember.ir.parser import parse
    module = parse("func @main(%x: f32[4]) -> (y: f32[4]) {\n  %y = ember.relu %x : f32[4]\n  return %y\n}\n")
    for targets in ((), "sm_90"):
        with pytest.raises(BuildError, match="give a sequence of one or more architectures"):
            ember.compile(module, targets=targets)
