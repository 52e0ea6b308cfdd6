// NVFP4 quantize kernel (torch-free; dequantize is nvfp4/dequantize.cuh). One thread owns one
// 16-element block: it reads 16 inputs, writes 8 packed bytes and one e4m3 scale, so every
// float32 operation of DESIGN §2 happens in one thread in the specified order.
#pragma once

#include "nvfp4/common.cuh"
#include "nvfp4/e2m1.cuh"

namespace nvfp4 {

struct QuantizeShape {
  int64_t rows, cols;      // logical input [rows, cols], cols % 16 == 0
  int64_t scale_rows;      // rows of the scale output (ceil128(rows) when swizzled)
  int64_t scale_cols;      // columns of the scale output (ceil4(cols/16) when swizzled)
  bool swizzled;
};

__device__ __forceinline__ int64_t scale_index(const QuantizeShape& s, int64_t r, int64_t c) {
  return s.swizzled ? swizzled_offset(r, c, s.scale_cols) : r * s.scale_cols + c;
}

// The 16 inputs of one block as float. VEC: with 16-byte loads (2 for bf16/fp16, 4 for float32;
// the launcher checks that x is 16-byte aligned, and a block starts 16*sizeof(T) bytes into a
// row whose pitch is a multiple of that, so every block is aligned then). The old kernel issued
// 16 scalar loads per thread; wide loads cut the load instructions 8x (bf16).
template <bool VEC, class T>
__device__ __forceinline__ void load_block(const T* __restrict__ in, float (&v)[kBlock]) {
  if constexpr (VEC) {
    constexpr int kPer = 16 / static_cast<int>(sizeof(T));
#pragma unroll
    for (int j = 0; j < kBlock / kPer; ++j) {
      const uint4 u = reinterpret_cast<const uint4*>(in)[j];
      const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
      for (int k = 0; k < kPer; ++k) v[j * kPer + k] = to_float(e[k]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kBlock; ++i) v[i] = to_float(in[i]);
  }
}

// Grid: one thread per scale slot, padding slots included (they are written as zero so the
// swizzled output never holds stale memory). Consecutive threads own consecutive blocks of a
// row, so a warp reads 32 * 16 contiguous elements.
template <class T, bool VEC = false>
__global__ void quantize_kernel(const T* __restrict__ x, const float* __restrict__ global_scale,
                                uint8_t* __restrict__ data, uint8_t* __restrict__ scale,
                                QuantizeShape s) {
  const int64_t slot = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (slot >= s.scale_rows * s.scale_cols) return;
  const int64_t r = slot / s.scale_cols, c = slot % s.scale_cols;
  if (r >= s.rows || c * kBlock >= s.cols) {
    scale[scale_index(s, r, c)] = 0;
    return;
  }
  const T* in = x + r * s.cols + c * kBlock;
  float v[kBlock];
  load_block<VEC>(in, v);
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < kBlock; ++i) amax = fmaxf(amax, fabsf(v[i]));
  const float gs = *global_scale;
  // s = e4m3(min(gs * (amax * (1/6)), 448)); __fmul_rn keeps each product a separate rounding.
  const float scaled = fminf(__fmul_rn(gs, __fmul_rn(amax, 1.0f / 6.0f)), 448.0f);
  const uint8_t s8 = e4m3_from_float(scaled);
  const float s32 = e4m3_to_float(s8);
  // inv = 1 / (s * (1/gs)), both reciprocals IEEE round-to-nearest as the reference divides.
  const float inv = s32 == 0.0f ? 0.0f : __frcp_rn(__fmul_rn(s32, __frcp_rn(gs)));
  uint32_t packed[2] = {0u, 0u};
#pragma unroll
  for (int i = 0; i < kBlock; i += 2) {
    const uint32_t byte = e2m1x2(__fmul_rn(v[i], inv), __fmul_rn(v[i + 1], inv));
    packed[i / 8] |= byte << ((i % 8) * 4);
  }
  // data row r holds cols/2 bytes; this block's 8 bytes start at c*8, 8-byte aligned whenever
  // the row pitch is (the launcher falls back to byte stores otherwise).
  uint8_t* out = data + r * (s.cols / 2) + c * (kBlock / 2);
  if ((reinterpret_cast<uintptr_t>(out) & 7u) == 0) {
    *reinterpret_cast<uint2*>(out) = make_uint2(packed[0], packed[1]);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(packed[i / 4] >> ((i % 4) * 8));
  }
  scale[scale_index(s, r, c)] = s8;
}

}  // namespace nvfp4
