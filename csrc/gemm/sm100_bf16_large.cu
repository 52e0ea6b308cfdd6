// SM100 NVFP4 GEMM, bf16 out, 256x128x256 MMA tile over a 2-SM cluster (tcgen05 2-CTA MMA),
// used when M > 128.
#include "gemm/blockscaled_gemm.cuh"
NVFP4_DEFINE_GEMM_CONFIG(sm100_bf16_2sm_256x128x256, cutlass::arch::Sm100,
                         cute::Shape<cute::_256, cute::_128, cute::_256>,
                         cute::Shape<cute::_2, cute::_1, cute::_1>, cutlass::bfloat16_t)
