#!/usr/bin/env bash
# Issues 10/11 on the lent H100, one call: build the extension (and memcheck the CUDA kernel tests,
# via .ci/device_cuda.sh), CUDA-graph capture tests, KV-cache and quantize tests, then the
# per-call, quantize and KV-cache benchmarks. Everything lands under $OUT; keeps going after a
# failing step and exits non-zero at the end if any failed.
#
#   OUT=/some/dir bash benchmarks/run_issue11.sh          (carry: [".whl"] for the CUTLASS headers)
#   SKIP_BUILD=1 ...                                      Triton/reference only, no extension
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-issue11_results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
failed=()
step() {  # step NAME COMMAND...
    local name="$1"; shift
    echo "== $name: $*"
    local start=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "   rc=$rc, $(( SECONDS - start )) s"
    tail -n 3 "$OUT/$name.log"
    [ "$rc" -eq 0 ] || failed+=("$name")
}

if [ -z "${SKIP_BUILD:-}" ]; then
    step cuda_extension env OUT="$OUT/cuda_extension" bash .ci/device_cuda.sh
    cat "$OUT/cuda_extension/summary.txt" 2>/dev/null
fi
# device_cuda.sh puts _site (CUTLASS headers) first; the built extension sits in the repo.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step pytest_issue11 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_cuda_graph.py \
    tests/test_kv_cache.py tests/test_scales.py tests/test_ops.py tests/test_registry.py \
    tests/backends/cuda tests/backends/triton/test_triton_kv_cache.py \
    tests/backends/triton/test_triton_quantize.py
step per_call "$PY" benchmarks/bench_per_call.py --out "$OUT"
step per_call_stub "$PY" benchmarks/bench_per_call.py --stub --out "$OUT/stub"
step bench_quantize "$PY" benchmarks/bench_quantize.py --graph --sweep --backends triton cuda \
    --out "$OUT"
step bench_kv_cache "$PY" benchmarks/bench_kv_cache.py --graph --sweep --backends triton cuda \
    --out "$OUT"

if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED steps: ${failed[*]}"
    exit 1
fi
echo "all steps passed; results in $OUT"
