// float32 -> E2M1 code (bit 3 sign, bits 0-2 index of [0, .5, 1, 1.5, 2, 3, 4, 6]), round half
// to even, saturating to +-6. Callers pass x * inv unclamped: both versions saturate, and both
// map NaN to code 0 as the reference (clamp, then threshold compares) does.
#pragma once

#include "nvfp4/common.cuh"
#include "nvfp4/e2m1_encode.h"

namespace nvfp4 {

// Bit-manipulation version, any arch: count the rounding boundaries below |v|. A boundary that
// is a tie rounds to the even code, so it counts with >= when the upper neighbour is even.
__device__ __forceinline__ uint32_t e2m1_code_soft(float v) {
  const float a = fabsf(v);
  uint32_t code = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) +
                  (a >= 3.5f) + (a > 5.0f);
  return code | (v < 0.0f ? 8u : 0u);
}

// Two values -> one byte: `lo` in the low nibble, `hi` in the high nibble.
__device__ __forceinline__ uint32_t e2m1x2(float lo, float hi) {
#if NVFP4_HW_E2M1
  // cvt.rn.satfinite rounds to nearest even and saturates; only NaN needs care (the reference
  // gives code 0). The first source operand lands in the high nibble.
  lo = (lo != lo) ? 0.0f : lo;
  hi = (hi != hi) ? 0.0f : hi;
  uint32_t out;
  asm("{\n .reg .b8 t;\n cvt.rn.satfinite.e2m1x2.f32 t, %2, %1;\n cvt.u32.u8 %0, t;\n}"
      : "=r"(out)
      : "f"(lo), "f"(hi));
  return out;
#else
  return e2m1_code_soft(lo) | (e2m1_code_soft(hi) << 4);
#endif
}

}  // namespace nvfp4
