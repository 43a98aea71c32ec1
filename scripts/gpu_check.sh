#!/usr/bin/env bash
# The GPU checks, run on the lent device (no network there: only carried wheels are installed).
#
#   bash scripts/gpu_check.sh tests [--dry-run] [PYTEST ARGS]   pytest -m gpu: every kernel, the fixtures,
#                                                               full-size models (ARGS narrow it: paths, -k)
#   bash scripts/gpu_check.sh bench [--dry-run]                 benchmarks/gpu_*.py: build time, latency, GEMM
#   bash scripts/gpu_check.sh bench NAME [ARGS]                 one of them with its arguments, one device call
#                                                               each: bench gpu_models --model resnet50
#
# Each stage has a timeout well inside the device's 10-minute command limit (STAGE_TIMEOUT, 480 s by default). Files (at most 8)
# go to $OUT: the log, a JUnit XML, and a summary (device, driver, NVRTC, counts) to commit.
# The run fails on any failed or skipped GPU test. --dry-run rehearses here: it checks the
# wheels and collects the GPU tests without running them.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
shift || true
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
selection=("$@")
given=${#selection[@]}
[ $given -eq 0 ] && selection=(tests)
case "$mode" in tests|bench) ;; *) echo "usage: $0 tests|bench [--dry-run]" >&2; exit 2 ;; esac
OUT=${OUT:-/tmp/ember-gpu-out}
mkdir -p "$OUT"
python=${PYTHON:-python3}

# Ember and its carried wheels (lark is not on the device image; ml_dtypes at our pin), importable without installing.
ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: see README.md, GPU checks (carry lark and ml_dtypes)" >&2; exit 2; }
if [ $dry = 0 ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ember-site .whl/*.whl || exit 2
  # tests/serve on the GPU: carry .serve-carry too (scripts/serve_bench.sh --prepare makes it)
  if [ -f .serve-carry/triton-py312.tar.xz ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ember-site \
      .serve-carry/*.whl || exit 2
    tar -xJf .serve-carry/triton-py312.tar.xz -C /tmp/ember-site || exit 2
  fi
  # benchmarks/gpu_yolov8.py: carry .yolo-carry (the pinned ultralytics wheel, installed --no-deps)
  if ls .yolo-carry/*.whl >/dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ember-site \
      .yolo-carry/*.whl || exit 2
  fi
  mkdir -p /tmp/ember-pkg && ln -sfn "$PWD" /tmp/ember-pkg/ember
  export PYTHONPATH=/tmp/ember-pkg:/tmp/ember-site${PYTHONPATH:+:$PYTHONPATH}
  export PYTHONUNBUFFERED=1  # a stage cut by its timeout still leaves what it printed in the log
fi

# GPU tests poison every execution context's arena (0xFF, NaN) before each run.
[ "$mode" = tests ] && export EMBER_POISON_ARENA=1
summary="$OUT/gpu-$mode-summary.md"
{
  echo "# scripts/gpu_check.sh $mode ($(date -u +%Y-%m-%d))"
  echo
  if [ $dry = 0 ]; then
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
    echo "- CUDA driver API: $("$python" -c 'from cuda.bindings import driver as d; d.cuInit(0); print(d.cuDriverGetVersion()[1])' 2>/dev/null)"
    echo "- NVRTC: $("$python" -c 'from ember.codegen.nvrtc import nvrtc_version; print(nvrtc_version())' 2>&1 | tail -1)"
    echo "- python $("$python" -c 'import sys; print(sys.version.split()[0])'), torch $("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null), onnxruntime $("$python" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null)"
  fi
} > "$summary"

status=0
if [ "$mode" = tests ]; then
  if [ $dry = 1 ]; then
    timeout 300 "$python" -m pytest -m gpu --collect-only -q -p no:cacheprovider "${selection[@]}" | tail -3
    status=${PIPESTATUS[0]}
  else
    timeout "${STAGE_TIMEOUT:-480}" "$python" -m pytest -m gpu -q -rfEs -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" "${selection[@]}" \
      > "$OUT/gpu-tests.log" 2>&1
    status=$?
    echo "- selection: ${selection[*]}" >> "$summary"
    tail -25 "$OUT/gpu-tests.log"
    "$python" - "$OUT/gpu-tests.xml" >> "$summary" <<'PY' || status=1
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
print(f"- GPU tests: {count['tests']} run, {count['failures']} failed, {count['errors']} errors, "
      f"{count['skipped']} skipped")
if count["skipped"]:
    print("- FAIL: GPU tests must not be skipped on the device")
    sys.exit(1)
PY
  fi
else
  benches=(benchmarks/gpu_*.py)
  args=()
  if [ $given -gt 0 ]; then  # one benchmark, by name, and its own arguments
    name=${selection[0]%.py}
    benches=("benchmarks/${name#benchmarks/}.py")
    args=("${selection[@]:1}")
    [ -f "${benches[0]}" ] || { echo "no benchmark ${benches[0]}" >&2; exit 2; }
  fi
  for bench in "${benches[@]}"; do
    [ -e "$bench" ] || continue
    if [ $dry = 1 ]; then
      echo "would run: timeout ${STAGE_TIMEOUT:-480} $python $bench ${args[*]} --out $OUT"
      "$python" -m py_compile "$bench" || status=1
    else
      echo "- benchmark: $bench ${args[*]}" >> "$summary"
      timeout "${STAGE_TIMEOUT:-480}" "$python" "$bench" "${args[@]}" --out "$OUT" >> "$OUT/gpu-bench.log" 2>&1 || status=1
    fi
  done
  [ $dry = 1 ] || tail -40 "$OUT/gpu-bench.log"
  # a timing cache the benchmarks were given (--timing-cache .bench-cache/timing.json) comes back
  # with the results, so the next call (carry .bench-cache) reuses the tuning
  [ $dry = 1 ] || [ ! -f .bench-cache/timing.json ] || cp .bench-cache/timing.json "$OUT/timing.json"
fi
echo "- exit status: $status" >> "$summary"
cat "$summary"
exit $status
