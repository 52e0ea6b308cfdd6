// Small helpers shared by the torch-free kernels: element conversions and the scale layouts.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace nvfp4 {

constexpr int kBlock = 16;  // E2M1 values sharing one e4m3 scale

// The E2M1 hardware conversion (cvt ... e2m1x2) exists only in the arch-specific SM100/SM120
// targets (sm_100a/sm_120a, or the sm_100f/sm_120f families); every other target, and the host
// pass, uses the bit-manipulation version.
#if defined(__CUDA_ARCH__) &&                                                   \
    (defined(__CUDA_ARCH_FEAT_SM100_ALL) || defined(__CUDA_ARCH_FEAT_SM120_ALL) || \
     defined(__CUDA_ARCH_FEAT_SM121_ALL) ||                                     \
     (defined(__CUDA_ARCH_FAMILY_SPECIFIC__) &&                                 \
      (__CUDA_ARCH_FAMILY_SPECIFIC__ == 1000 || __CUDA_ARCH_FAMILY_SPECIFIC__ == 1200)))
#define NVFP4_HW_E2M1 1
#else
#define NVFP4_HW_E2M1 0
#endif

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Round-to-nearest-even casts, as torch's .to(dtype) does.
template <class T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// float -> e4m3 byte, round to nearest even, out-of-range saturating to +-448 (callers clamp
// first, so saturation only matters for infinities).
__device__ __forceinline__ uint8_t e4m3_from_float(float v) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

__device__ __forceinline__ float e4m3_to_float(uint8_t b) {
  __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(b), __NV_E4M3);
  return __half2float(__half(h));  // e4m3 -> fp16 is exact, fp16 -> fp32 too
}

// Byte offset of scale (r, c) in the 128x4 swizzled layout of a [rows_p, cols_p] padded scale
// matrix (DESIGN §2): ((r/128)*(cols_p/4) + c/4)*512 + (r%32)*16 + ((r/32)%4)*4 + c%4.
__host__ __device__ __forceinline__ int64_t swizzled_offset(int64_t r, int64_t c, int64_t cols_p) {
  return ((r >> 7) * (cols_p >> 2) + (c >> 2)) * 512 + (r & 31) * 16 + ((r >> 5) & 3) * 4 + (c & 3);
}

__host__ __device__ __forceinline__ int64_t ceil_to(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

}  // namespace nvfp4
