#!/usr/bin/env bash
# On the lent H100 (SM90): build the extension for sm_90a against the machine's own torch, run the
# CUDA tests, then the same tests under compute-sanitizer memcheck. Results go under $OUT.
#
# The machine has no network: carry the nvidia-cutlass wheel (headers only), e.g.
#   python3 -m pip download --no-deps -d .whl nvidia-cutlass==4.2.0.0    # here, git-ignored
#   run: bash .ci/device_cuda.sh      (carry: [".whl"])
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device_out}"
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/summary.txt"; }

if ls .whl/nvidia_cutlass-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target _site .whl/nvidia_cutlass-*.whl
    export PYTHONPATH="$PWD/_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda)" > "$OUT/versions.txt" 2>&1

start=$(date +%s)
NVFP4_CUDA_ARCHS="${NVFP4_CUDA_ARCHS:-sm_90a}" NVFP4_BUILD_EXT=1 MAX_JOBS="$(nproc)" \
    python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1
log "build rc=$? in $(( $(date +%s) - start )) s"

TESTS="tests/backends/cuda tests/csrc"
python3 -m pytest -q -rs $TESTS > "$OUT/pytest.txt" 2>&1
log "pytest rc=$? ($(tail -1 "$OUT/pytest.txt"))"

# memcheck over the kernel tests (out-of-bounds and misaligned accesses; slow, so one file set).
if command -v compute-sanitizer >/dev/null; then
    # Positive control: memcheck must flag a deliberate out-of-bounds write here.
    canary="$OUT/memcheck_canary"
    nvcc -o "$canary" .ci/memcheck_canary.cu > "$OUT/memcheck_canary.txt" 2>&1 &&
        compute-sanitizer --tool memcheck "$canary" >> "$OUT/memcheck_canary.txt" 2>&1
    log "memcheck canary (must report errors): $(grep -E 'ERROR SUMMARY' "$OUT/memcheck_canary.txt" | tail -1)"
    rm -f "$canary"
    compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all \
        python3 -m pytest -q -x tests/backends/cuda > "$OUT/memcheck.txt" 2>&1
    log "memcheck rc=$? ($(grep -E 'ERROR SUMMARY' "$OUT/memcheck.txt" | tail -1))"
else
    log "compute-sanitizer not found: memcheck not run"
fi

# Non-zero when any step above failed, so a calling script counts it.
if grep -q "rc=[1-9]" "$OUT/summary.txt"; then exit 1; fi
