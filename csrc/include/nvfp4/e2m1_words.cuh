// Word-level E2M1 decode shared by the decode GEMM and the dequantize kernel (torch-free).
//
// From a 32-bit word of 8 packed nibbles (element 2i in the low nibble of byte i), nibbles
// (P, P+4) become one fp16x2 or bf16x2 pair (e2m1_pair: a select, a shift and a mask): the sign
// bit is kept and the exponent/mantissa bits are moved under the target's exponent field, so the pair
// reads as lut * 2^-14 (fp16) or lut * 2^-126 (bf16), subnormal codes included. One packed
// multiply by the block scale then gives an exact product (at most 6 significant bits, in range);
// the caller undoes the power of two where it is cheapest.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace nvfp4 {

// Nibbles (P, P+4) of q -> one packed pair, sign bits at 15/31 and the exponent/mantissa bits
// (e1 e0 m) at kEm/kEm + 16 (low half = nibble P). The sign moves further than e1 e0 m (it sits 3
// bits above them in a nibble, 15 - kEm - 2 bits above them in the target), so it is taken from
// a copy of q shifted by that difference: one select, one shift and one mask per pair (the two
// copies are shared by the four pairs of a word; sm_90a SASS: 13 integer operations per 8 values
// instead of 16 for two shifts and two logic ops per pair).
template <int P, int kEm>
__device__ __forceinline__ uint32_t e2m1_pair(uint32_t q) {
  constexpr int kGap = 12 - kEm;  // how much further the sign moves
  constexpr uint32_t kKeep = 0x80008000u | (0x00070007u << kEm);
  // Shift of the e1 e0 m bits of nibble P; when it would be negative, shift the sign instead
  // and take e1 e0 m from q >> kGap.
  constexpr int kShift = kEm - 4 * P >= 0 ? kEm - 4 * P : 12 - 4 * P;
  constexpr uint32_t kSign = 0x80008000u >> kShift;  // sign positions before the shift
  const uint32_t u = kEm - 4 * P >= 0 ? (((q << kGap) & kSign) | (q & ~kSign))
                                      : ((q & kSign) | ((q >> kGap) & ~kSign));
  return (u << kShift) & kKeep;
}

// fp16x2 bits reading lut * 2^-14 (e1 e0 m at bits 9..11: a subnormal for code 1, as in E2M1).
template <int P>
__device__ __forceinline__ uint32_t e2m1_pair_half(uint32_t q) {
  return e2m1_pair<P, 9>(q);
}

// bf16x2 bits reading lut * 2^-126 (e1 e0 m at bits 6..8).
template <int P>
__device__ __forceinline__ uint32_t e2m1_pair_bf16(uint32_t q) {
  return e2m1_pair<P, 6>(q);
}

__device__ __forceinline__ uint32_t hmul2_bits(uint32_t a, uint32_t b, bool bf16) {
  uint32_t d;
  if (bf16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
#else
    // sm_80: no bf16 mul; fma with -0 adds nothing and keeps the product's sign of zero.
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
#endif
  } else {
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  }
  return d;
}

// Two adjacent e4m3 scale bytes (low byte = first block) -> two packed operands, each the
// block's scale broadcast to both halves: fp16 s (exact), or bf16 s * 2^118 (exact; the bf16
// weight bits carry 2^-126, so the product is lut * s * 2^-8).
__device__ __forceinline__ void scale_pair(uint32_t two_bytes, bool bf16, uint32_t& s0,
                                           uint32_t& s1) {
  // e4m3 -> fp16 is exact (one cvt of both bytes on SM89+), as e4m3_to_float in common.cuh.
  const __half2 h(__nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two_bytes),
                                             __NV_E4M3));
  if (!bf16) {
    const uint32_t v = *reinterpret_cast<const uint32_t*>(&h);
    s0 = __byte_perm(v, v, 0x1010);
    s1 = __byte_perm(v, v, 0x3232);
    return;
  }
  const float2 f = __half22float2(h);
  const float k2p118 = 0x1p118f;
  const __nv_bfloat162 b = __floats2bfloat162_rn(f.x * k2p118, f.y * k2p118);
  const uint32_t v = *reinterpret_cast<const uint32_t*>(&b);
  s0 = __byte_perm(v, v, 0x1010);
  s1 = __byte_perm(v, v, 0x3232);
}

}  // namespace nvfp4
