// SM100 NVFP4 GEMM, fp16 out, 128x128x256 on one SM for every M (one fp16 configuration keeps
// the build time down; bf16 is the serving dtype that gets two).
#include "gemm/blockscaled_gemm.cuh"
NVFP4_DEFINE_GEMM_CONFIG(sm100_fp16_1sm_128x128x256, cutlass::arch::Sm100,
                         cute::Shape<cute::_128, cute::_128, cute::_256>,
                         cute::Shape<cute::_1, cute::_1, cute::_1>, cutlass::half_t)
