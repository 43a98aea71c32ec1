#!/usr/bin/env bash
# benchmarks/serve.py on the lent device (no network there). Carry .serve-carry/, made here by
#   bash scripts/serve_bench.sh --prepare
# which holds Triton as nvidia-pytriton ships it, slimmed to the device's Python (3.12: one
# backend stub, 35 MB as tar.xz; the wheel is 55 MB and a device call carries 64 MiB), and the
# client wheels (tritonclient 2.69, python-rapidjson; grpcio and protobuf are on the device).
#   device:  bash scripts/serve_bench.sh [benchmark args]       (carry .whl and .serve-carry)
set -euo pipefail
cd "$(dirname "$0")/.."
carry=.serve-carry
if [ "${1:-}" = "--prepare" ]; then
  python=${PYTHON:-.venv/bin/python}
  tmp=$(mktemp -d)
  mkdir -p "$carry" "$tmp/site"
  "$python" -m pip download -q --no-deps -d "$tmp" nvidia-pytriton==0.7.0 tritonclient==2.69.0
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$carry" python-rapidjson==1.25
  cp "$tmp"/tritonclient-2.69.0-*.whl "$carry"/
  (cd "$tmp/site" && unzip -q "$tmp"/nvidia_pytriton-0.7.0-*.whl 'pytriton/tritonserver/*' 'nvidia_pytriton.libs/*' \
     && find pytriton/tritonserver/python_backend_stubs -mindepth 1 -maxdepth 1 ! -name 3.12 -exec rm -r {} + \
     && touch pytriton/__init__.py)
  tar -cJf "$carry/triton-py312.tar.xz" -C "$tmp/site" .
  rm -rf "$tmp"
  du -sh "$carry"
  exit 0
fi
OUT=${OUT:-/tmp/ember-gpu-out}
mkdir -p "$OUT" /tmp/ember-site
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ember-site .whl/*.whl "$carry"/*.whl
tar -xJf "$carry/triton-py312.tar.xz" -C /tmp/ember-site
mkdir -p /tmp/ember-pkg && ln -sfn "$PWD" /tmp/ember-pkg/ember
PYTHONPATH=/tmp/ember-pkg:/tmp/ember-site timeout 560 python3 benchmarks/serve.py --out "$OUT" "$@"
