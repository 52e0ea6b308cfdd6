// float32 -> E2M1 magnitude codes with one fused multiply-add and a few integer operations per
// value, written so that the host compiler builds the very same functions:
// tests/csrc/test_e2m1_encode.py checks them against the reference's rule for every float32 of
// magnitude up to 8 (and samples of all other exponents), and the packing on random words. No
// CUDA or torch headers: plain C++ on the host.
//
// Why it is exact. The E2M1 magnitudes [0, .5, 1, 1.5, 2, 3, 4, 6] are a float format with one
// mantissa bit: spacing 0.5 below 2, 1 in [2, 4), 2 from 4 on. For a = min(|q|, 6) (the
// reference's clamp) let p = 2^e' be the power of two of max(a, 1), e' in {0, 1, 2}. M = p * 2^22
// is a float32 whose spacing (ulp) is p / 2, exactly the E2M1 spacing at a, and M's mantissa is
// zero, so the one rounding of fma(p, 2^22, a) = a + M rounds a onto the E2M1 grid with ties to
// the even multiple of the spacing. The sum stays in M's binade (a <= 6 < M), so its bits are
// bits(M) + k with k = rounded(a) / spacing <= 4 in the low 3 bits. The code is 2 e' + k (e' = 0:
// k = 0..4 for 0..2; e' = 1: k = 2..4 for 2, 3, 4; e' = 2: k = 2, 3 for 4, 6), whose parity is
// k's, so "even multiple" is the reference's "even code"; and 2 e' = (bits(p) >> 22) - 254.
//
// NaN is NOT handled here (min(NaN, 6) is 6) and signs are not either: callers give NaN blocks
// code 0 and add the sign bits themselves.
#pragma once

#include <cstdint>
#include <cstring>
#include <cmath>

#if defined(__CUDACC__)
#define NVFP4_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define NVFP4_HOST_DEVICE inline
#endif

namespace nvfp4 {

NVFP4_HOST_DEVICE uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

NVFP4_HOST_DEVICE float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// __byte_perm (PRMT) on the device; the same selection on the host: byte k of the result is
// byte (sel >> 4k) & 7 of the eight bytes b:a (sign-replication modes are not used).
NVFP4_HOST_DEVICE uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t sel) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(a, b, sel);
#else
  const uint64_t bytes = (static_cast<uint64_t>(b) << 32) | a;
  uint32_t out = 0u;
  for (int k = 0; k < 4; ++k)
    out |= static_cast<uint32_t>((bytes >> (8 * ((sel >> (4 * k)) & 7u))) & 0xffu) << (8 * k);
  return out;
#endif
}

// The two halves of the encode of one value q (non-NaN): `pow2` = bits of p = 2^e' (1, 2 or 4;
// low 23 bits zero) and `sum` = bits of a + p * 2^22 (low byte = k, bits 3-21 zero).
struct E2M1Parts {
  uint32_t pow2, sum;
};

NVFP4_HOST_DEVICE E2M1Parts e2m1_parts(float q) {
  const float a = fminf(fabsf(q), 6.0f);
  const uint32_t pow2 = float_bits(fmaxf(a, 1.0f)) & 0x7f800000u;
  return {pow2, float_bits(fmaf(bits_float(pow2), 4194304.0f, a))};
}

// pow2 >> 22 = 254 + 2 e'.
constexpr uint32_t kE2M1ExponentBias = 254;

// The E2M1 magnitude code (bits 0-2: |q| rounded half to even onto [0, .5, 1, 1.5, 2, 3, 4, 6],
// saturating at 6) of one non-NaN value: 2 e' + k.
NVFP4_HOST_DEVICE uint32_t e2m1_magnitude(float q) {
  const E2M1Parts e = e2m1_parts(q);
  return (e.pow2 >> 22) - kE2M1ExponentBias + (e.sum & 7u);
}

// Eight non-NaN values -> their magnitude codes packed (value i in bits 4i..4i+2, DESIGN §2's
// nibble order), sign bits clear. Packing is addition of disjoint nibbles, so the two halves of
// every code are added in separately: 2 e' + 254 straight from pow2 (its low 23 bits are zero,
// so pow2 >> 22 << 4i is one shift of pow2, and the 254s of all eight are one subtraction mod
// 2^32), and the k bytes gathered with three PRMT for the even values and three for the odd.
NVFP4_HOST_DEVICE uint32_t e2m1x8_magnitudes(const float (&q)[8]) {
  uint32_t exponents = 0u, sums[8];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i < 8; ++i) {
    const E2M1Parts e = e2m1_parts(q[i]);
    sums[i] = e.sum;
    exponents += 4 * i <= 22 ? e.pow2 >> (22 - 4 * i) : e.pow2 << (4 * i - 22);
  }
  const uint32_t even = byte_perm(byte_perm(sums[0], sums[2], 0x40),
                                  byte_perm(sums[4], sums[6], 0x40), 0x5410);  // k0 k2 k4 k6
  const uint32_t odd = byte_perm(byte_perm(sums[1], sums[3], 0x40),
                                 byte_perm(sums[5], sums[7], 0x40), 0x5410);  // k1 k3 k5 k7
  return exponents - kE2M1ExponentBias * 0x11111111u + even + (odd << 4);
}

// The sign bits of eight inputs at bits 4i+3 (the E2M1 sign position), from their raw words
// with PRMT. 16-bit inputs (bf16/fp16), four words of pairs: the even element's sign is bit 7 of
// byte 1, the odd one's bit 7 of byte 3. float32 inputs, eight words: bit 7 of byte 3.
NVFP4_HOST_DEVICE uint32_t sign_bits_of_halves(const uint32_t* w) {
  const uint32_t p01 = byte_perm(w[0], w[1], 0x7351), p23 = byte_perm(w[2], w[3], 0x7351);
  const uint32_t even = byte_perm(p01, p23, 0x5410), odd = byte_perm(p01, p23, 0x7632);
  return ((even & 0x80808080u) >> 4) | (odd & 0x80808080u);
}

NVFP4_HOST_DEVICE uint32_t sign_bits_of_floats(const uint32_t* w) {
  const uint32_t even = byte_perm(byte_perm(w[0], w[2], 0x73), byte_perm(w[4], w[6], 0x73), 0x5410);
  const uint32_t odd = byte_perm(byte_perm(w[1], w[3], 0x73), byte_perm(w[5], w[7], 0x73), 0x5410);
  return ((even & 0x80808080u) >> 4) | (odd & 0x80808080u);
}

}  // namespace nvfp4
