#!/usr/bin/env bash
# One call on the GPU machine: GPU tests, the Triton interpreter tests, then every benchmark.
# Everything lands under $OUT (logs, CSV/JSON/PNG). Keeps going after a failing step and exits
# non-zero at the end if any step failed, so one run always brings back all the evidence.
#
#   OUT=/some/dir bash benchmarks/run_device.sh            # full run (several minutes)
#   QUICK=1 bash benchmarks/run_device.sh                  # decode sizes only (M = 1, 16),
#                                                          # prefill routes at M = 1024 on gate_up
#   SWEEP=1 bash benchmarks/run_device.sh                  # also time every plan/tile candidate
#   TESTS_ONLY=1 bash benchmarks/run_device.sh             # build, memcheck and tests, no benchmarks
#   JOBS=4 ...                                             # pytest processes sharing the GPU
#
# Needs python3 with torch and triton (the H100 machine: Python 3.12, torch 2.11, Triton 3.6).
# The Triton backend needs no build step: the repository is put on PYTHONPATH. The C++/CUDA
# extension is built first for the GPU's own arch by .ci/device_cuda.sh, which also runs the CUDA
# tests under compute-sanitizer; the GPU machine has no network, so carry the nvidia-cutlass wheel
# in .whl/ (see .ci/device_cuda.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"  # absolute: sub-scripts run from other directories
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
failed=()

step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember failures
    local name="$1"; shift
    echo "== $name: $*"
    local start=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "   rc=$rc, $(( SECONDS - start )) s (log: $OUT/$name.log)"
    tail -n 5 "$OUT/$name.log"
    [ "$rc" -eq 0 ] || failed+=("$name")
}

pytest_sharded() {  # pytest_sharded JOBS DIR: one pytest per shard of DIR's test files
    local jobs="$1" dir="$2" i pids=() rc=0
    mapfile -t files < <(find "$dir" -name 'test_*.py' | sort)
    for (( i = 0; i < jobs; i++ )); do
        local shard=()
        for (( j = i; j < ${#files[@]}; j += jobs )); do shard+=("${files[j]}"); done
        "$PY" -m pytest -q -rfEs --maxfail=50 -p no:cacheprovider "${shard[@]}" \
            > "$OUT/pytest_shard$i.log" 2>&1 &
        pids+=($!)
    done
    for (( i = 0; i < jobs; i++ )); do
        wait "${pids[i]}" || rc=1
        echo "shard $i: $(tail -n 1 "$OUT/pytest_shard$i.log")"
    done
    return $rc
}

"$PY" - > "$OUT/environment.txt" 2>&1 <<'PYEOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
try:
    import triton; print("triton", triton.__version__)
except ImportError:
    print("triton missing")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(torch.cuda.get_device_name(), "SMs", p.multi_processor_count, "capability", p.major, p.minor)
PYEOF
cat "$OUT/environment.txt"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

step cuda_extension env OUT="$OUT/cuda_extension" bash .ci/device_cuda.sh

if "$PY" -c "import pytest" 2>/dev/null; then
    # Compiled kernels on the GPU (the whole suite, cuda device parametrizations included).
    # The suite is compile-bound (Triton JIT on the host), so JOBS pytest processes share the
    # GPU, each over every JOBS-th test file; the step fails if any shard fails.
    step pytest_gpu pytest_sharded "${JOBS:-4}" tests
    # The same Triton tests through the interpreter on CPU tensors, as CI runs them.
    step pytest_triton_interpreter env TRITON_INTERPRET=1 "$PY" -m pytest -q \
        tests/backends/triton -p no:cacheprovider
else
    echo "pytest is not installed here: tests skipped" | tee "$OUT/pytest_missing.txt"
    failed+=("pytest_missing")
fi

finish() {
    if [ "${#failed[@]}" -gt 0 ]; then
        echo "FAILED steps: ${failed[*]}"
        exit 1
    fi
    echo "all steps passed; results in $OUT"
    exit 0
}
[ -n "${TESTS_ONLY:-}" ] && finish

M_LIST=(1 2 4 8 16 32 64 128 1024 8192)
[ -n "${QUICK:-}" ] && M_LIST=(1 16)
SWEEP_ARG=()
[ -n "${SWEEP:-}" ] && SWEEP_ARG=(--sweep)
step bench_gemm "$PY" benchmarks/bench_gemm.py --out "$OUT" --m "${M_LIST[@]}" "${SWEEP_ARG[@]}"
# The decode and mid-size GEMMs' launch shapes (`variant` of csrc/gemm_decode.cu, gemm_mid.cu),
# when the extension has them.
[ -n "${SWEEP:-}" ] && step sweep_decode_gemm "$PY" benchmarks/sweep_decode_gemm.py \
    --m 1 8 16 32 64 --out "$OUT"
step bench_quantize "$PY" benchmarks/bench_quantize.py --graph --backends triton cuda \
    "${SWEEP_ARG[@]}" --out "$OUT"
step bench_dequantize "$PY" benchmarks/bench_dequantize.py --backends triton cuda \
    "${SWEEP_ARG[@]}" --out "$OUT"
PREFILL_ARGS=()
[ -n "${QUICK:-}" ] && PREFILL_ARGS=(--m 1024 --layers gate_up)
step bench_prefill "$PY" benchmarks/bench_prefill.py "${PREFILL_ARGS[@]}" --out "$OUT"
step bench_kv_cache "$PY" benchmarks/bench_kv_cache.py --graph --backends triton cuda \
    "${SWEEP_ARG[@]}" --out "$OUT"
step bench_per_call "$PY" benchmarks/bench_per_call.py --out "$OUT"
# Decode attention alone (bandwidth fraction, vs gather + SDPA), then the Gemma-4-31B step.
step bench_decode_attention "$PY" benchmarks/bench_decode_step.py --kernel-only \
    "${SWEEP_ARG[@]}" --out "$OUT"
DECODE_ARGS=()
[ -n "${QUICK:-}" ] && DECODE_ARGS=(--batches 1 8 --contexts 4096)
step bench_decode_step "$PY" benchmarks/bench_decode_step.py "${DECODE_ARGS[@]}" --out "$OUT"

finish
