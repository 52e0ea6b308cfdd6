#!/usr/bin/env bash
# CI: compile the C++/CUDA extension in place for sm_90a, sm_100a and sm_120a (no GPU needed;
# nvcc must be on PATH). Runs inside the CI virtual environment after `pip install -e .[test,...]`.
# About 9 minutes on the 2-core CI machine, most of it the six CUTLASS GEMM files (docs/building.md).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# Build tools and the CUTLASS headers; cuobjdump/nvdisasm for the SASS test (tests/csrc).
# The build runs in this environment (not an isolated one), so it needs pyproject's setuptools.
python -m pip install -q "setuptools>=77" wheel
# nvidia-cutlass with --no-deps: only its headers are used.
python -m pip install -q --no-deps "nvidia-cutlass==4.2.0.0"
python -m pip install -q "nvidia-cuda-cuobjdump==13.5.37" \
    "nvidia-cuda-nvdisasm==13.5.37" ninja "cmake>=3.24"
echo "extension tools installed: $(( $(date +%s) - start )) s"

export NVFP4_CUDA_ARCHS="${NVFP4_CUDA_ARCHS:-sm_90a;sm_100a;sm_120a}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
NVFP4_BUILD_EXT=1 python setup.py build_ext --inplace
python -c "import nvfp4_kernels._C as C; print('nvfp4_kernels._C archs:', list(C.COMPILED_ARCHS))"
echo "extension built: $(( $(date +%s) - start )) s"
