// SM120 NVFP4 GEMM, bf16 out, 128x128x128 tile: CUTLASS's default SM120 block-scaled shape,
// used when M > 128 (compute-bound side).
#include "gemm/blockscaled_gemm.cuh"
NVFP4_DEFINE_GEMM_CONFIG(sm120_bf16_128x128x128, cutlass::arch::Sm120,
                         cute::Shape<cute::_128, cute::_128, cute::_128>,
                         cute::Shape<cute::_1, cute::_1, cute::_1>, cutlass::bfloat16_t)
