// SM120 NVFP4 GEMM, fp16 out, 128x128x128 tile for every M: one fp16 configuration keeps the
// build time down (each one costs minutes); bf16 is the serving dtype that gets two.
#include "gemm/blockscaled_gemm.cuh"
NVFP4_DEFINE_GEMM_CONFIG(sm120_fp16_128x128x128, cutlass::arch::Sm120,
                         cute::Shape<cute::_128, cute::_128, cute::_128>,
                         cute::Shape<cute::_1, cute::_1, cute::_1>, cutlass::half_t)
