"""Collects the ONNX backend suite's results and prints the pass counts per group."""

from onnx_suite import RESULTS as SUITE_RESULTS


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001, ARG001
    if not SUITE_RESULTS:
        return
    terminalreporter.write_sep("=", "ONNX backend suite on Ember (onnx 1.23 test cases)")
    for group, counts in SUITE_RESULTS.items():
        total = sum(counts.values())
        line = f"{group}: {counts['pass']}/{total} pass"
        extra = ", ".join(f"{counts[k]} {k}" for k in ("expected failure", "excluded") if counts[k])
        terminalreporter.write_line(line + (f" ({extra})" if extra else ""))
