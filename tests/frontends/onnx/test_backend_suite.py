"""onnx's own backend test suite (onnx.backend.test, onnx 1.23) run on Ember.

Every case must pass, or be listed in expected_failures.txt with a reason; a
listed case that starts passing fails here, so the list only shrinks. The pass
counts per group are printed at the end of the run (tests/conftest.py, from the
test reports, so that they add up under pytest-xdist too).
"""

from pathlib import Path

import pytest

from onnx_suite import cases, run_case

LIST = Path(__file__).with_name("expected_failures.txt")


def read_list() -> tuple[dict[str, str], dict[str, str]]:
    """(expected failures, exclusions): case key -> reason."""
    expected, excluded = {}, {}
    for n, raw in enumerate(LIST.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, rest = line.partition(" ")
        key, sep, reason = rest.partition(":")
        if kind not in ("fail", "exclude") or not sep or not reason.strip():
            raise ValueError(f"{LIST.name}:{n}: expected 'fail GROUP/CASE: reason' or 'exclude GROUP/CASE: reason'")
        (expected if kind == "fail" else excluded)[key.strip()] = reason.strip()
    return expected, excluded


EXPECTED, EXCLUDED = read_list()
CASES = cases()


def test_the_list_names_only_real_cases():
    known = {f"{g}/{n}" for g, n in CASES}
    stale = sorted(k for k in {**EXPECTED, **EXCLUDED} if k not in known)
    assert not stale, f"{LIST.name} names cases the suite does not have: {stale}"


@pytest.mark.parametrize("group,name", CASES, ids=[f"{g}/{n}" for g, n in CASES])
def test_case(group, name):
    key = f"{group}/{name}"
    if key in EXCLUDED:
        pytest.skip(EXCLUDED[key])
    status, message = run_case(group, name)
    if key in EXPECTED:
        if status == "pass":
            pytest.fail(f"{key} passes now: remove it from {LIST.name}")
        pytest.xfail(EXPECTED[key])
    assert status == "pass", message
