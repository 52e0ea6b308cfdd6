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

// The work of one scale slot (slot = r * scale_cols + c): its 16 inputs -> 8 packed bytes and one
// e4m3 scale. Padding slots (swizzled layout) are written as zero so the swizzled output never
// holds stale memory. `global_scale()` is called after the loads are issued, so the scale's own
// load overlaps them.
template <bool VEC, class T, class GlobalScale>
__device__ __forceinline__ void quantize_slot(const T* __restrict__ x, int64_t slot,
                                              uint8_t* __restrict__ data,
                                              uint8_t* __restrict__ scale,
                                              const QuantizeShape& s, GlobalScale global_scale) {
  const int64_t r = slot / s.scale_cols, c = slot % s.scale_cols;
  if (r >= s.rows || c * kBlock >= s.cols) {
    scale[scale_index(s, r, c)] = 0;
    return;
  }
  const T* in = x + r * s.cols + c * kBlock;
  float v[kBlock];
  load_block<VEC>(in, v);
  float amax = 0.0f;
  bool nan = false;
#pragma unroll
  for (int i = 0; i < kBlock; ++i) {
    amax = fmaxf(amax, fabsf(v[i]));
    nan |= v[i] != v[i];
  }
  const float gs = global_scale();
  // s = e4m3(min(gs * (amax * (1/6)), 448)); __fmul_rn keeps each product a separate rounding.
  // A NaN in the block makes s the e4m3 NaN (0x7F), as the reference's amax and clamp propagate
  // it (fmaxf/fminf would drop it); then inv is NaN and every code 0 (docs/format.md).
  const float scaled = nan ? __int_as_float(0x7fffffff)
                           : fminf(__fmul_rn(gs, __fmul_rn(amax, 1.0f / 6.0f)), 448.0f);
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

// Grid: one thread per scale slot, padding slots included. Consecutive threads own consecutive
// blocks of a row, so a warp reads 32 * 16 contiguous elements.
template <class T, bool VEC = false>
__global__ void quantize_kernel(const T* __restrict__ x, const float* __restrict__ global_scale,
                                uint8_t* __restrict__ data, uint8_t* __restrict__ scale,
                                QuantizeShape s) {
  const int64_t slot = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (slot >= s.scale_rows * s.scale_cols) return;
  quantize_slot<VEC>(x, slot, data, scale, s, [&] { return *global_scale; });
}

// ---------------------------------------------------------------------------------------------
// Quantize with a global scale computed from x (reference.global_scale): two launches, no host
// round trip. amax_kernel folds max |x| over the finite elements into one word; the quantize
// kernel then derives the global scale from that word in every thread (the same few float32
// operations, so every thread gets the same bits) and its first block also writes the scale
// and the W4A4 GEMM's alpha out. Maximum is exact and order-free: the result does not depend on
// how the grid is split or in which order blocks finish.
// ---------------------------------------------------------------------------------------------

// |v| for finite v, else 0: NaN and +-inf are ignored (NaN < inf is false, inf < inf too).
__device__ __forceinline__ float finite_magnitude(float v) {
  const float a = fabsf(v);
  return a < __int_as_float(0x7f800000) ? a : 0.0f;  // +inf
}

// Maximum of `best` over the thread block, in thread 0; every thread of the block must call it.
__device__ __forceinline__ float block_max(float best) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
    best = fmaxf(best, __shfl_xor_sync(0xffffffffu, best, off));
  __shared__ float warp_max[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = best;
  __syncthreads();
  best = 0.0f;
  if (warp == 0) {
    best = lane < static_cast<int>(blockDim.x >> 5) ? warp_max[lane] : 0.0f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
      best = fmaxf(best, __shfl_xor_sync(0xffffffffu, best, off));
  }
  return best;  // valid in thread 0
}

// amax_bits: one zeroed word. Each block walks x in a grid-stride loop (VEC: 16-byte loads, four
// in flight per thread) and folds its maximum in with atomicMax on the float's bits, which for
// non-negative floats order exactly as the floats do. blockDim.x: a multiple of 32, <= 1024.
template <class T, bool VEC>
__global__ void amax_kernel(const T* __restrict__ x, int64_t numel,
                            unsigned int* __restrict__ amax_bits) {
  float best = 0.0f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;  // elements before the tail handled by the scalar loop
  if constexpr (VEC) {
    constexpr int kPer = 16 / static_cast<int>(sizeof(T));
    const int64_t vectors = numel / kPer;
    const uint4* xv = reinterpret_cast<const uint4*>(x);
    int64_t j = first;
    for (; j + 3 * stride < vectors; j += 4 * stride) {
      uint4 u[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) u[q] = xv[j + q * stride];
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const T* e = reinterpret_cast<const T*>(&u[q]);
#pragma unroll
        for (int k = 0; k < kPer; ++k) best = fmaxf(best, finite_magnitude(to_float(e[k])));
      }
    }
    for (; j < vectors; j += stride) {
      const uint4 u = xv[j];
      const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
      for (int k = 0; k < kPer; ++k) best = fmaxf(best, finite_magnitude(to_float(e[k])));
    }
    tail = vectors * kPer;
  }
  for (int64_t j = tail + first; j < numel; j += stride)
    best = fmaxf(best, finite_magnitude(to_float(x[j])));
  best = block_max(best);
  if (threadIdx.x == 0 && best > 0.0f) atomicMax(amax_bits, __float_as_uint(best));
}

// reference.global_scale from the finite amax: min(2688 / amax, FLT_MAX) with an IEEE division,
// 1 when amax is 0 (all zero, empty, or nothing finite).
__device__ __forceinline__ float global_scale_from_amax(float amax) {
  if (amax == 0.0f) return 1.0f;
  return fminf(__fdiv_rn(448.0f * 6.0f, amax), 3.40282346638528859812e38f);
}

// The outputs beside data and scale: the global scale (0-dim) and, when alpha_n > 0,
// alpha[j] = weight_alpha[j] / global_scale (the W4A4 GEMM's alpha, as torch divides: IEEE).
struct ComputedScaleOut {
  const unsigned int* amax_bits;
  float* global_scale;
  const float* weight_alpha;
  float* alpha;
  int64_t alpha_n;
};

// Grid: as quantize_kernel, at least one block (block 0 writes the global scale and alpha even
// when x is empty). Blocks take the slots from the last one down: the amax pass walked x front
// to back, so x's tail is what L2 still holds when this kernel starts, and the blocks that run
// first read it from there (as the Triton quantize does after its amax pass).
template <class T, bool VEC = false>
__global__ void quantize_computed_scale_kernel(const T* __restrict__ x,
                                               uint8_t* __restrict__ data,
                                               uint8_t* __restrict__ scale, QuantizeShape s,
                                               ComputedScaleOut o) {
  const float gs = global_scale_from_amax(__uint_as_float(*o.amax_bits));
  if (blockIdx.x == 0) {
    if (threadIdx.x == 0) *o.global_scale = gs;
    for (int64_t j = threadIdx.x; j < o.alpha_n; j += blockDim.x)
      o.alpha[j] = __fdiv_rn(o.weight_alpha[j], gs);
  }
  const int64_t block = static_cast<int64_t>(gridDim.x) - 1 - blockIdx.x;
  const int64_t slot = block * blockDim.x + threadIdx.x;
  if (slot >= s.scale_rows * s.scale_cols) return;
  quantize_slot<VEC>(x, slot, data, scale, s, [&] { return gs; });
}

}  // namespace nvfp4
