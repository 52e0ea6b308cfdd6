// Plain-C++ view of the GEMM configurations: what a launcher needs without CUTLASS kernels.
#pragma once

#include <cstddef>
#include <cuda_runtime.h>

#include "cutlass/detail/sm100_blockscaled_layout.hpp"

namespace nvfp4::gemm {

// Scale-factor layout of NVFP4 (one e4m3 per 16 values) on SM100 and SM120 alike.
using ScaleConfig = cutlass::detail::Sm1xxBlockScaledConfig<16>;

// Device pointers and sizes of one GEMM; all tensors contiguous, checked by the launcher.
struct GemmProblem {
  int m, n, k;
  const void* a;        // uint8 [m, k/2]
  const void* b;        // uint8 [n, k/2]
  const void* a_scale;  // e4m3, swizzled [ceil128(m), ceil4(k/16)]
  const void* b_scale;  // e4m3, swizzled [ceil128(n), ceil4(k/16)]
  const float* alpha;   // one float32 on the device
  void* d;              // bf16/fp16 [m, n]
};

}  // namespace nvfp4::gemm

#define NVFP4_DECLARE_GEMM_CONFIG(NAME)                                    \
  namespace nvfp4::gemm {                                                  \
  size_t NAME##_workspace(const GemmProblem& p);                           \
  int NAME##_run(const GemmProblem& p, void* ws, cudaStream_t s);          \
  }
