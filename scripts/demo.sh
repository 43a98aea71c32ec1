#!/usr/bin/env bash
# The main job (README quick start): set up a virtual environment with Ember, compile a
# bundled ONNX model (a small ResNet-50-style network) into an engine, and run it: on the
# GPU where there is one, else on the host (the engine's own plan on a host arena).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=${EMBER_VENV:-.venv}
if [ ! -x "$venv/bin/ember" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check .
mkdir -p .demo
"$venv/bin/ember" compile tests/fixtures/onnx/resnet50_small.onnx -o .demo/resnet.engine --shapes image:4x3x64x64 --force
"$venv/bin/ember" run .demo/resnet.engine --random -o .demo/outputs.npz --force
"$venv/bin/ember" demo --quiet
