// SM120/SM121 (RTX 50xx, RTX PRO 6000) NVFP4 GEMM launcher: picks a CUTLASS configuration by M
// and output dtype. Built only when sm_120a is a target (CMakeLists.txt, group "gemm_sm120").
#include "checks.h"
#include "gemm/launcher.h"
#include "ops.h"

NVFP4_DECLARE_GEMM_CONFIG(sm120_bf16_128x128x256)
NVFP4_DECLARE_GEMM_CONFIG(sm120_bf16_128x128x128)
NVFP4_DECLARE_GEMM_CONFIG(sm120_fp16_128x128x128)

namespace nvfp4 {
namespace {

#define NVFP4_CONFIG(NAME) gemm::Config{#NAME, gemm::NAME##_workspace, gemm::NAME##_run}

gemm::Config pick(int64_t m, at::ScalarType out_dtype) {
  if (out_dtype == at::kHalf) return NVFP4_CONFIG(sm120_fp16_128x128x128);
  return m <= 128 ? NVFP4_CONFIG(sm120_bf16_128x128x256) : NVFP4_CONFIG(sm120_bf16_128x128x128);
}

}  // namespace

std::string gemm_sm120_config(int64_t m, int64_t, int64_t, at::ScalarType out_dtype) {
  return pick(m, out_dtype).name;
}

at::Tensor gemm_sm120(const at::Tensor& a, const at::Tensor& b, const at::Tensor& a_scale,
                      const at::Tensor& b_scale, const at::Tensor& alpha,
                      at::ScalarType out_dtype) {
  return gemm::run("sm_120a", pick(a.size(0), out_dtype), a, b, a_scale, b_scale, alpha,
                   out_dtype);
}

}  // namespace nvfp4
