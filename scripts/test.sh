#!/usr/bin/env bash
# The test command (README quick start, and what CI runs): a fresh virtual
# environment, a non-editable install of Ember with its test extras, the suite.
# GPU tests (-m gpu) are skipped here; scripts/gpu_check.sh runs them on a GPU.
# The suite runs on every core (pytest-xdist; tests/conftest.py says what the workers
# share); arguments go to pytest after ours, so `bash scripts/test.sh -n 0` runs it in
# one process and `bash scripts/test.sh tests/ir` runs one folder.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=${EMBER_TEST_VENV:-.venv-test}
"$python" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"Ember needs Python 3.11 or newer; {sys.executable} is {sys.version.split()[0]}")
PY
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ".[test]"
# Triton Inference Server for tests/serve, as PyTriton ships it; --no-deps: it pins numpy<2 and
# Ember uses only its server files (serve/server.py says why)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps nvidia-pytriton==0.7.0
echo "scripts/test.sh: fresh environment with Ember and its test extras in ${SECONDS} s"
"$venv/bin/python" -m pytest -m "not gpu" -n auto "$@"
