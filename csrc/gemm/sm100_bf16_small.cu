// SM100 NVFP4 GEMM, bf16 out, 128x128x256 MMA tile on one SM (no cluster), used when
// M <= 128: small problems get the most CTAs.
#include "gemm/blockscaled_gemm.cuh"
NVFP4_DEFINE_GEMM_CONFIG(sm100_bf16_1sm_128x128x256, cutlass::arch::Sm100,
                         cute::Shape<cute::_128, cute::_128, cute::_256>,
                         cute::Shape<cute::_1, cute::_1, cute::_1>, cutlass::bfloat16_t)
