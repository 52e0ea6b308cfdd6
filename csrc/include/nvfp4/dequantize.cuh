// NVFP4 dequantize at memory speed (torch-free): x_hat = lut[q] * s / gs in float32, then cast,
// bit-exact with the reference.
//
// Work unit: one 32-bit word of packed data (8 values). A warp takes 32 consecutive words of a
// row (one 128-byte load per row) in each of 4 rows, so every load and every store of a warp is
// contiguous (128 bytes of packed data in, 512 bytes of bf16 out per row) and each thread has 4
// independent loads in flight. A CTA of 8 warps covers 32 rows x 32 words.
//
// Per word: nibbles (P, P+4) -> fp16x2 pairs reading lut * 2^-14 (e2m1_words.cuh), one packed
// multiply by the block scale (exact), then RN(p / gs) per value without a division
// (div_small_exact below): gs * 2^-14 is the divisor, which folds the 2^-14 away.
//
// Scaled variant (Params::factor set; the prefill GEMM route): RN(lut * s * factor[row]) in
// float32 instead of the division, as two multiplies (by 2^14, exact, then by the factor), so the
// result is bit-identical with the Triton kernel's dequantize_scaled; e4m3 output added for the
// FP8 prefill mode (RN, saturating to +-448 like the native conversion Triton emits).
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "nvfp4/common.cuh"
#include "nvfp4/e2m1_words.cuh"

namespace nvfp4::dequant {

struct Params {
  const uint32_t* words;     // [rows, W] packed data as 32-bit words (W = cols / 8)
  const uint8_t* scale;      // e4m3 bytes, swizzled (128x4) or linear [rows, cols/16]
  const float* global_scale; // gs, 1 value (encode direction)
  void* out;                 // [rows, cols] bf16, fp16, float32 (or e4m3: scaled variant)
  int64_t rows;
  int64_t words_per_row;     // W; cols = 8 * W
  int64_t scale_cols_p4;     // swizzled: ceil4(cols / 16) / 4
  int swizzled;
  const float* factor = nullptr;  // scaled variant: 1 value (all rows) or one per row
  int factor_per_row = 0;
};

// What a decoded value p = lut * s * 2^-14 becomes before the cast.
enum class Op {
  kFastDiv,  // RN(p / (gs 2^-14)) by div_small_exact
  kDiv,      // IEEE division by gs (gs outside the fast identity's range)
  kFactor,   // RN(p 2^14 * factor): the scaled variant
};

constexpr int kWarps = 8;          // per CTA
constexpr int kRowsPerWarp = 4;    // rows per thread
constexpr int kRowsPerCta = kWarps * kRowsPerWarp;
constexpr int kWordsPerCta = 32;

// gs within [2^-100, 2^100]: every quantity of div_small_exact is then a normal float32.
constexpr float kFastMin = 0x1p-100f, kFastMax = 0x1p100f;

// RN(p / d) for p with at most 6 significant bits (every lut * s product) and r = RN(1 / d):
// q0 = RN(p * r) is within about an ulp of p / d, the residual q0 * d - p is exact in one FMA,
// and q0 - residual * r rounds to RN(p / d). Checked against IEEE division for every product
// significand and all 2^23 significands of d (tests/test_exact_division.py, full mode); needs
// every value normal. The residual is formed as q0 * d - p and subtracted so that p = -0
// gives -0 as the reference's division does.
__device__ __forceinline__ float div_small_exact(float p, float d, float r) {
  const float q0 = __fmul_rn(p, r);
  const float e = __fmaf_rn(q0, d, -p);
  return __fmaf_rn(-e, r, q0);
}

template <class T>
__device__ __forceinline__ void store8(T* o, const float (&v)[8]);

template <>
__device__ __forceinline__ void store8<__nv_bfloat16>(__nv_bfloat16* o, const float (&v)[8]) {
  uint4 u;
  uint32_t* w = reinterpret_cast<uint32_t*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __nv_bfloat162 b = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
    w[i] = *reinterpret_cast<const uint32_t*>(&b);
  }
  *reinterpret_cast<uint4*>(o) = u;
}

template <>
__device__ __forceinline__ void store8<__half>(__half* o, const float (&v)[8]) {
  uint4 u;
  uint32_t* w = reinterpret_cast<uint32_t*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __half2 h = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
    w[i] = *reinterpret_cast<const uint32_t*>(&h);
  }
  *reinterpret_cast<uint4*>(o) = u;
}

// RN to e4m3, saturating (cvt.rn.satfinite on SM89+; cuda_fp8.h emulates it on older archs).
template <>
__device__ __forceinline__ void store8<__nv_fp8_e4m3>(__nv_fp8_e4m3* o, const float (&v)[8]) {
  uint2 u;
  uint16_t* w = reinterpret_cast<uint16_t*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i)  // the first value of each pair lands in the low byte
    w[i] = __nv_cvt_float2_to_fp8x2(make_float2(v[2 * i], v[2 * i + 1]), __NV_SATFINITE,
                                    __NV_E4M3);
  *reinterpret_cast<uint2*>(o) = u;
}

template <>
__device__ __forceinline__ void store8<float>(float* o, const float (&v)[8]) {
  reinterpret_cast<float4*>(o)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(o)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ __forceinline__ float2 half2_bits_to_float2(uint32_t bits) {
  __half2 h;
  *reinterpret_cast<uint32_t*>(&h) = bits;
  return __half22float2(h);
}

// The 8 values of word q with block scale `scale16` (fp16 s in both halves) as float32
// lut * s * 2^-14 (exact), in element order: pair P holds elements P and P + 4.
template <int P>
__device__ __forceinline__ void decode_pair(uint32_t q, uint32_t scale16, float (&v)[8]) {
  const float2 f = half2_bits_to_float2(hmul2_bits(e2m1_pair_half<P>(q), scale16, false));
  v[P] = f.x;
  v[P + 4] = f.y;
}

__device__ __forceinline__ void decode_word(uint32_t q, uint32_t scale16, float (&v)[8]) {
  decode_pair<0>(q, scale16, v);
  decode_pair<1>(q, scale16, v);
  decode_pair<2>(q, scale16, v);
  decode_pair<3>(q, scale16, v);
}

// e4m3 byte -> fp16x2 bits holding the value twice (exact).
__device__ __forceinline__ uint32_t scale_half2(uint32_t byte) {
  uint32_t s0, s1;
  scale_pair(byte, false, s0, s1);
  return s0;
}

// Grid: (ceil(W / 32), min(ceil(rows / 32), 65535)); kWarps * 32 threads. Warp w of a CTA takes
// rows 4w..4w+3 of the CTA's 32-row strip (strips stride by gridDim.y), lane l takes word l of
// the CTA's 32-word column strip. OP: see Op (kFastDiv: the identity of div_small_exact holds
// for this gs; kFactor: d is the single factor unless p.factor_per_row).
// Index: int32_t when every element offset fits (the launcher checks rows * cols < 2^31), which
// halves the address arithmetic; int64_t otherwise.
template <class T, bool SWIZZLED, Op OP, class Index>
__device__ __forceinline__ void dequantize_rows(const Params& p, float d, float r) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const Index words_per_row = static_cast<Index>(p.words_per_row);
  const Index word = static_cast<Index>(blockIdx.x) * kWordsPerCta + lane;
  if (word >= words_per_row) return;
  const Index rows = static_cast<Index>(p.rows);
  const Index cols = words_per_row * 8;
  const Index block = word >> 1;  // two words per 16-value scale block
  const Index scol = SWIZZLED ? (block >> 2) * 512 + (block & 3) : block;
  // The 4 rows of a thread start at a multiple of 4, so they share one 32-row group of the
  // swizzled layout: their scale offsets step by 16 bytes (linear: by one scale row).
  const Index sstep = SWIZZLED ? 16 : cols / kBlock;
  const Index scale_tile = static_cast<Index>(p.scale_cols_p4) * 512;
  T* out = static_cast<T*>(p.out);
  for (Index r0 = static_cast<Index>(blockIdx.y) * kRowsPerCta + warp * kRowsPerWarp; r0 < rows;
       r0 += static_cast<Index>(gridDim.y) * kRowsPerCta) {
    const Index qoff = r0 * words_per_row + word;
    const Index soff =
        (SWIZZLED ? (r0 >> 7) * scale_tile + (r0 & 31) * 16 + ((r0 >> 5) & 3) * 4 : r0 * sstep) +
        scol;
    // All loads first: kRowsPerWarp independent words (and scale bytes) in flight per thread.
    uint32_t q[kRowsPerWarp], sc[kRowsPerWarp];
    float f[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const bool live = r0 + i < rows;
      q[i] = live ? __ldg(p.words + qoff + i * words_per_row) : 0u;
      sc[i] = live ? __ldg(p.scale + soff + i * sstep) : 0u;
      if constexpr (OP == Op::kFactor)  // one row per warp: a broadcast load
        f[i] = p.factor_per_row ? (live ? __ldg(p.factor + r0 + i) : 0.0f) : d;
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      if (r0 + i >= rows) break;
      float v[8];
      decode_word(q[i], scale_half2(sc[i]), v);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if constexpr (OP == Op::kFastDiv)
          v[j] = div_small_exact(v[j], d, r);
        else if constexpr (OP == Op::kDiv)
          v[j] = __fdiv_rn(__fmul_rn(v[j], 16384.0f), d);  // here d is gs itself
        else  // exact rescale, then the one rounding (as Triton's (p * 2^14) * f)
          v[j] = __fmul_rn(__fmul_rn(v[j], 16384.0f), f[i]);
      }
      store8<T>(out + (r0 + i) * cols + word * 8, v);
    }
  }
}

// SCALED: the scaled variant (p.factor), else lut * s / gs. A template parameter so that the
// plain kernel compiles exactly as before.
template <class T, bool SWIZZLED, bool SCALED, class Index>
__global__ void __launch_bounds__(kWarps * 32) dequantize_kernel(const Params p) {
  if constexpr (SCALED) {
    dequantize_rows<T, SWIZZLED, Op::kFactor, Index>(
        p, p.factor_per_row ? 1.0f : __ldg(p.factor), 1.0f);
  } else {
    // gs lives on the device (no host sync): every thread reads it and takes the same branch.
    const float gs = __ldg(p.global_scale);
    if (gs >= kFastMin && gs <= kFastMax) {
      const float d = __fmul_rn(gs, 0x1p-14f);  // exact in this range
      dequantize_rows<T, SWIZZLED, Op::kFastDiv, Index>(p, d, __frcp_rn(d));
    } else {
      dequantize_rows<T, SWIZZLED, Op::kDiv, Index>(p, gs, 1.0f);
    }
  }
}

}  // namespace nvfp4::dequant
