// SM120 NVFP4 GEMM, bf16 out, 128x128x256 tile, used when M <= 128 (decode): the GEMM then
// streams B, and a deeper K step halves the mainloop iterations per byte of B. Not measured
// on SM120 hardware (none is available to the project).
#include "gemm/blockscaled_gemm.cuh"
NVFP4_DEFINE_GEMM_CONFIG(sm120_bf16_128x128x256, cutlass::arch::Sm120,
                         cute::Shape<cute::_128, cute::_128, cute::_256>,
                         cute::Shape<cute::_1, cute::_1, cute::_1>, cutlass::bfloat16_t)
