#!/usr/bin/env bash
# The main job (README quick start): set up a virtual environment with Ember
# installed, then build the README's example network, print its IR and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=${EMBER_VENV:-.venv}
if [ ! -x "$venv/bin/ember" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check .
"$venv/bin/ember" demo "$@"
