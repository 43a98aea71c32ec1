#!/usr/bin/env bash
# One device call of the ONNX backend suite through GPU engines (benchmarks/backend_gpu.py),
# with the kernel cache built beforehand on a CPU machine and carried in as .kcache.tar.xz:
#
#   here:       python benchmarks/backend_gpu.py --no-gpu --cache-dir .kcache --jobs 2 --out /tmp/lowering
#               tar -cJf .kcache.tar.xz .kcache           (ignored by git; carry it with .whl)
#   device:     bash scripts/backend_gpu_chunk.sh 1 2     (then 2 2; each well inside one 10-minute call)
#   here:       python benchmarks/backend_gpu.py --merge backend_gpu_1.json backend_gpu_2.json \
#                   --out benchmarks/results/backend_gpu
#
# The cache entries are keyed by kernel source, NVRTC version and Ember's headers: build them at
# the commit that runs. Writes $OUT/backend_gpu_<i>.json and .md.
set -uo pipefail
cd "$(dirname "$0")/.."
i=${1:?chunk index}; n=${2:?chunk count}
OUT=${OUT:-/tmp/ember-gpu-out}
mkdir -p "$OUT" /tmp/ember-kernels
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ember-site .whl/*.whl || exit 2
mkdir -p /tmp/ember-pkg && ln -sfn "$PWD" /tmp/ember-pkg/ember
if [ -f .kcache.tar.xz ]; then
  tar -xJf .kcache.tar.xz -C /tmp && cp -r /tmp/.kcache/. /tmp/ember-kernels/ 2>/dev/null || true
fi
PYTHONPATH=/tmp/ember-pkg:/tmp/ember-site timeout 540 python3 benchmarks/backend_gpu.py \
  --cache-dir /tmp/ember-kernels --chunk "$i/$n" --jobs "${JOBS:-14}" --time-limit "${TIME_LIMIT:-420}" --case-timeout "${CASE_TIMEOUT:-30}" --out "$OUT/backend_gpu_$i"
