#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (the device tool; README "GPU check"). Before the call, here:
#   bash bench/gpu-deps.sh        # fills .deps/ (Eigen, nlohmann_json, GoogleTest source) and .whl/ (the pinned
#                                 # peft and transformers wheels): that machine has no network
# then run it there with `carry: [".deps", ".whl"]`:  bash bench/gpu-check.sh
# It builds the CUDA kernels, their tests and the Python module; runs the kernel tests (float64 references, sentinels,
# 20-run bitwise determinism), the same under compute-sanitizer memcheck and racecheck, the cuda pytest suite
# (numerics of every adapter × dtype against the float64 reference under DESIGN.md §4, float64 finite differences on
# the device, op determinism, gg.fast_path + gg.check on a bf16 Llama) and the GPU benchmark; writes
# $OUT/gpu-report.json (+ .md), the benchmark JSON and a log. Every stage runs (under a time limit) even when an
# earlier one failed, so one call yields everything; exit 1 when any stage failed.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
PY=${PYTHON:-python3}
T0=$(date +%s)
STAGES="$OUT/stages.txt"  # in $OUT: if the call is cut short, what ran still comes back
: >"$STAGES"
export PYTHONUNBUFFERED=1

stage() {  # stage NAME LIMIT_SECONDS COMMAND...: runs it, records "NAME rc seconds"
  local name=$1 limit=$2
  shift 2
  echo
  echo "=== [$(($(date +%s) - T0))s] $name"
  local t=$(date +%s)
  # SIGINT first, so pytest still writes its JUnit file and summary of what ran; SIGKILL 15 s later if that hangs.
  # bash -c: stages may be the functions exported below.
  timeout --signal=INT --kill-after=15 "$limit" bash -c '"$@"' _ "$@"
  local rc=$?
  echo "=== $name: exit $rc after $(($(date +%s) - t))s"
  echo "$name $rc $(($(date +%s) - t))" >>"$STAGES"
  return $rc
}

environment() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu --format=csv
  nvcc --version | tail -2
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  "$PY" -c "import peft, transformers; print('peft', peft.__version__, 'transformers', transformers.__version__)"
  "$PY" -c "import sysconfig, os; i = sysconfig.get_paths()['include']; print('Python.h', os.path.exists(i + '/Python.h'), i)"
  command -v cmake ninja compute-sanitizer
  [ -d .deps ] || { echo ".deps missing: run bench/gpu-deps.sh before the call and name .deps in carry"; return 2; }
}

build() {
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$ROOT/.deps/usr" \
    -DGG_GTEST_SOURCE_DIR="$ROOT/.deps/googletest" -DGG_BUILD_BENCH=OFF -DGG_CUDA_ARCHS=90 -DGG_USE_CCACHE="${GG_USE_CCACHE:-OFF}" \
    -DPython3_EXECUTABLE="$(command -v "$PY")" >build-gpu-configure.log 2>&1 || { tail -40 build-gpu-configure.log; return 1; }
  cmake --build build-gpu -j "$(nproc)" --target _C gg_cuda_kernel_tests || return 1
  cp build-gpu/_C*.so src/python/gradguard/
}

# The pinned pure-Python packages (.ci/requirements.txt), carried as wheels by bench/gpu-deps.sh (the machine has
# other versions and no network); torch and the rest are the machine's own.
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gg-site .whl/*.whl &&
    export PYTHONPATH="/tmp/gg-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export -f environment build
export ROOT OUT PY
export PATH="$PATH:/usr/local/cuda/bin"  # compute-sanitizer, nvcc
KERNEL_TESTS=build-gpu/tests/cpp/gg_cuda_kernel_tests
stage environment 60 environment
stage build 300 build
export PYTHONPATH="$ROOT/src/python${PYTHONPATH:+:$PYTHONPATH}"
stage kernel-tests 60 "$KERNEL_TESTS" --gtest_output="json:$OUT/kernel-tests.json"
stage pytest-cuda 240 "$PY" -m pytest -q -rs -p no:cacheprovider tests/python/test_cuda.py tests/python/test_fast_path.py \
  --junitxml="$OUT/pytest-cuda.xml"
stage bench 200 "$PY" bench/bench_gpu.py --reps 25 --warmup 3 --llama --json "$OUT/gpu-bench.json"
export GG_SANITIZER=1
stage memcheck 100 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 1 "$KERNEL_TESTS"
stage racecheck 100 compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 1 "$KERNEL_TESTS"
unset GG_SANITIZER
stage report 30 "$PY" bench/gpu_report.py "$OUT" "$STAGES"
echo
echo "=== done in $(($(date +%s) - T0))s"
cat "$STAGES"
! grep -qv " 0 [0-9]*$" "$STAGES"
