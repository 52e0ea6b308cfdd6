// Host side shared by gemm_sm120.cu and gemm_sm100.cu: argument checks and running one CUTLASS
// configuration. Torch-aware, but includes no CUTLASS kernel, so it compiles in seconds.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

#include "gemm/gemm_entry.h"

namespace nvfp4::gemm {

struct Config {
  const char* name;
  size_t (*workspace)(const GemmProblem&);
  int (*run)(const GemmProblem&, void*, cudaStream_t);
};

// Shapes and dtypes first, devices last: the checks run (and are tested) without a GPU.
// Returns the problem with null pointers; `arch` names the caller in messages ("sm_120a").
GemmProblem check_args(const char* arch, const at::Tensor& a, const at::Tensor& b,
                       const at::Tensor& a_scale, const at::Tensor& b_scale,
                       const at::Tensor& alpha, at::ScalarType out_dtype);

// Allocates D and the workspace, runs `config` on the current stream.
at::Tensor run(const char* arch, const Config& config, const at::Tensor& a, const at::Tensor& b,
               const at::Tensor& a_scale, const at::Tensor& b_scale, const at::Tensor& alpha,
               at::ScalarType out_dtype);

}  // namespace nvfp4::gemm
