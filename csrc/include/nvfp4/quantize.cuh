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

// The block scale and the reciprocal that quantizes with it, from the block's max |v| (NaN flag
// separate: fmaxf drops NaN). s = e4m3(min(gs * (amax * (1/6)), 448)); __fmul_rn keeps each
// product a separate rounding. A NaN in the block makes s the e4m3 NaN (0x7F), as the
// reference's amax and clamp propagate it; then inv is NaN and every code 0 (docs/format.md).
// inv = 1 / (s * (1/gs)), both reciprocals IEEE round-to-nearest as the reference divides.
__device__ __forceinline__ uint8_t block_scale(float amax, bool nan, float gs, float& inv) {
  const float scaled = nan ? __int_as_float(0x7fffffff)
                           : fminf(__fmul_rn(gs, __fmul_rn(amax, 1.0f / 6.0f)), 448.0f);
  const uint8_t s8 = e4m3_from_float(scaled);
  const float s32 = e4m3_to_float(s8);
  inv = s32 == 0.0f ? 0.0f : __frcp_rn(__fmul_rn(s32, __frcp_rn(gs)));
  return s8;
}

// N inputs times inv -> N/2 packed E2M1 bytes, element 2i in the low nibble of byte i.
template <int N>
__device__ __forceinline__ void pack_codes(const float (&v)[N], float inv,
                                           uint32_t (&packed)[N / 8]) {
#pragma unroll
  for (int i = 0; i < N / 8; ++i) packed[i] = 0u;
#pragma unroll
  for (int i = 0; i < N; i += 2) {
    const uint32_t byte = e2m1x2(__fmul_rn(v[i], inv), __fmul_rn(v[i + 1], inv));
    packed[i / 8] |= byte << ((i % 8) * 4);
  }
}

// The work of one scale slot (slot = r * scale_cols + c) in one thread (unaligned inputs): its
// 16 inputs -> 8 packed bytes and one e4m3 scale. Padding slots (swizzled layout) are written as
// zero so the swizzled output never holds stale memory. `global_scale()` is called after the
// loads are issued, so the scale's own load overlaps them.
template <class T, class GlobalScale>
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
#pragma unroll
  for (int i = 0; i < kBlock; ++i) v[i] = to_float(in[i]);
  float amax = 0.0f;
  bool nan = false;
#pragma unroll
  for (int i = 0; i < kBlock; ++i) {
    amax = fmaxf(amax, fabsf(v[i]));
    nan |= v[i] != v[i];
  }
  float inv;
  const uint8_t s8 = block_scale(amax, nan, global_scale(), inv);
  uint32_t packed[2];
  pack_codes(v, inv, packed);
  uint8_t* out = data + r * (s.cols / 2) + c * (kBlock / 2);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(packed[i / 4] >> ((i % 4) * 8));
  scale[scale_index(s, r, c)] = s8;
}

// The aligned path: two threads per scale slot (thread t: slot t / 2, inputs 8 * (t % 2) ..
// + 7), so one 16-byte load per thread (bf16/fp16) and a warp reads 512 contiguous bytes per
// load; with one thread per slot each load instruction touched 1 KB half-used (the previous
// kernel: 68-70 % of copy bandwidth on the H100). The two halves meet with one shuffle for the
// block's max and NaN flag and compute the same scale bit for bit; each writes 4 packed bytes,
// the even one the scale. Every lane reaches the shuffles (no early return before them).
// Needs x 16-byte aligned with rows a multiple of 16 bytes (the launcher's `vec` check).
template <class T, class GlobalScale>
__device__ __forceinline__ void quantize_half_slot(const T* __restrict__ x, int64_t thread,
                                                   int64_t slots, uint8_t* __restrict__ data,
                                                   uint8_t* __restrict__ scale,
                                                   const QuantizeShape& s,
                                                   GlobalScale global_scale) {
  constexpr int kHalf = kBlock / 2;
  constexpr int kPer = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte load
  const int64_t slot = thread >> 1;
  const int half = static_cast<int>(thread & 1);
  const int64_t r = slot / s.scale_cols, c = slot % s.scale_cols;
  const bool in_range = slot < slots;
  const bool real = in_range && r < s.rows && c * kBlock < s.cols;
  float v[kHalf];
  if (real) {
    const uint4* in = reinterpret_cast<const uint4*>(x + r * s.cols + c * kBlock + half * kHalf);
#pragma unroll
    for (int j = 0; j < kHalf / kPer; ++j) {
      const uint4 u = in[j];
      const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
      for (int k = 0; k < kPer; ++k) v[j * kPer + k] = to_float(e[k]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kHalf; ++i) v[i] = 0.0f;
  }
  float amax = 0.0f;
  bool nan = false;
#pragma unroll
  for (int i = 0; i < kHalf; ++i) {
    amax = fmaxf(amax, fabsf(v[i]));
    nan |= v[i] != v[i];
  }
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
  nan = (__shfl_xor_sync(0xffffffffu, static_cast<int>(nan), 1) != 0) || nan;
  if (!in_range) return;
  if (!real) {
    if (half == 0) scale[scale_index(s, r, c)] = 0;
    return;
  }
  float inv;
  const uint8_t s8 = block_scale(amax, nan, global_scale(), inv);
  uint32_t packed[1];
  pack_codes(v, inv, packed);
  // data row r holds cols/2 bytes (a multiple of 8): this half's 4 bytes are 4-byte aligned.
  *reinterpret_cast<uint32_t*>(data + r * (s.cols / 2) + c * (kBlock / 2) + half * 4) = packed[0];
  if (half == 0) scale[scale_index(s, r, c)] = s8;
}

// One thread per slot, or (VEC) two: the launcher's thread count.
template <bool VEC>
__host__ __device__ constexpr int64_t threads_per_slot() { return VEC ? 2 : 1; }

// A kernel thread's share of the work: quantize_half_slot (VEC) or quantize_slot.
template <bool VEC, class T, class GlobalScale>
__device__ __forceinline__ void quantize_thread(const T* __restrict__ x, int64_t thread,
                                                uint8_t* __restrict__ data,
                                                uint8_t* __restrict__ scale,
                                                const QuantizeShape& s, GlobalScale global_scale) {
  const int64_t slots = s.scale_rows * s.scale_cols;
  if constexpr (VEC) {
    quantize_half_slot(x, thread, slots, data, scale, s, global_scale);
  } else {
    if (thread >= slots) return;
    quantize_slot(x, thread, data, scale, s, global_scale);
  }
}

// Grid: one thread per scale slot, padding slots included. Consecutive threads own consecutive
// blocks of a row, so a warp reads 32 * 16 contiguous elements.
template <class T, bool VEC = false>
__global__ void quantize_kernel(const T* __restrict__ x, const float* __restrict__ global_scale,
                                uint8_t* __restrict__ data, uint8_t* __restrict__ scale,
                                QuantizeShape s) {
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  quantize_thread<VEC>(x, thread, data, scale, s, [&] { return *global_scale; });
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
  quantize_thread<VEC>(x, block * blockDim.x + threadIdx.x, data, scale, s, [&] { return gs; });
}

}  // namespace nvfp4
