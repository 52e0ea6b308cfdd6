// NVFP4 quantize kernels (torch-free; dequantize is nvfp4/dequantize.cuh). One thread owns one
// 16-element block at a time (kRowsPerThread of them, kRowThreads rows apart): it reads 16
// inputs, writes 8 packed bytes and one e4m3 scale, so every float32 operation of DESIGN §2
// happens in one thread in the specified order.
//
// Instruction budget (issue 11: the previous kernel was issue-bound). Offline sm_90a SASS counts
// (nvcc 13.0 -O3, cuobjdump; not timed), instructions per element one thread executes on the
// common path from entry to exit, bf16 with 16-byte loads, linear / swizzled scales:
//   quantize_kernel                  before 37.7 / 38.7, now 16.4 / 17.2
//   quantize_computed_scale_kernel   before 39.4 / 40.4, now 17.0 / 17.8
// What changed: the encode of nvfp4/e2m1_encode.h (two clamps, a mask and one FFMA that rounds
// onto the E2M1 grid, the code from the sum's bits, packing by shift-and-add and PRMT) replaces
// seven threshold compares with a select each; the signs come from the raw inputs with PRMT;
// block amax and NaN test are packed bf16x2/half2 max/min; bf16 converts with one shift or mask;
// rows and columns are 32-bit on a 2-D grid (no division); each thread takes two blocks, so the
// per-thread setup (gs, 1/gs, indices) is shared. Details: docs/performance.md, "Quantize".
#pragma once

#include <type_traits>

#include "nvfp4/common.cuh"
#include "nvfp4/e2m1.cuh"

namespace nvfp4 {

// 32-bit sizes (the launcher checks that they fit): rows and columns are compared and counted
// in 32-bit registers; only the element offsets row * cols are 64-bit.
struct QuantizeShape {
  int32_t rows, cols;      // logical input [rows, cols], cols % 16 == 0
  int32_t scale_rows;      // rows of the scale output (ceil128(rows) when swizzled)
  int32_t scale_cols;      // columns of the scale output (ceil4(cols/16) when swizzled)
  bool swizzled;
};

// Thread block shape of both quantize kernels: kColThreads consecutive scale columns (one warp:
// 32 blocks of one row, 1 KiB of bf16 read contiguously) x kRowThreads rows; each thread takes
// kRowsPerThread rows (r, r + kRowThreads, ...), so a thread block covers kRowsPerBlock rows. The
// grid is 2-D, x: column groups (adjacent thread blocks read adjacent memory), y: row groups, at
// most kMaxRowGroups of them, looping when there are more: no division to find (row, column).
constexpr int kColThreads = 32;
constexpr int kRowThreads = 8;
constexpr int kRowsPerThread = 2;
constexpr int kRowsPerBlock = kRowThreads * kRowsPerThread;
constexpr int64_t kMaxRowGroups = 65535;  // gridDim.y limit

__device__ __forceinline__ int64_t scale_index(const QuantizeShape& s, int r, int c) {
  return s.swizzled ? swizzled_offset(r, c, s.scale_cols)
                    : static_cast<int64_t>(r) * s.scale_cols + c;
}

// The 16 inputs of one block as raw words: 2 x 16 bytes for bf16/fp16, 4 x 16 bytes for float32.
template <class T>
struct RawBlock {
  static constexpr int kWords = kBlock * static_cast<int>(sizeof(T)) / 4;
  uint32_t w[kWords];

  // Element i as float32. bf16 is the high half of a float32, so its conversion is one shift
  // or one mask of the raw word (no extract-then-convert).
  __device__ __forceinline__ float at(int i) const {
    if constexpr (sizeof(T) == 4) {
      return __uint_as_float(w[i]);
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      return __uint_as_float(i % 2 ? w[i / 2] & 0xffff0000u : w[i / 2] << 16);
    } else {
      const __half2 h = *reinterpret_cast<const __half2*>(&w[i / 2]);
      return __half2float(i % 2 ? h.y : h.x);
    }
  }
};

// VEC: 16-byte loads (the launcher checks that x is 16-byte aligned, and a block starts
// 16*sizeof(T) bytes into a row whose pitch is a multiple of that, so every block is aligned).
template <bool VEC, class T>
__device__ __forceinline__ void load_block(const T* __restrict__ in, RawBlock<T>& b) {
  if constexpr (VEC) {
#pragma unroll
    for (int j = 0; j < RawBlock<T>::kWords / 4; ++j) {
      const uint4 u = reinterpret_cast<const uint4*>(in)[j];
      b.w[4 * j] = u.x;
      b.w[4 * j + 1] = u.y;
      b.w[4 * j + 2] = u.z;
      b.w[4 * j + 3] = u.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kBlock; ++i) reinterpret_cast<T*>(b.w)[i] = in[i];
  }
}

// max |x| over the block as float32, NaN when any input is NaN (the reference's amax propagates
// it). bf16/fp16: packed NaN-propagating max and min of the raw pairs (exact), then
// max(max, -min): about half an instruction per element; float32: one max.NaN per element.
__device__ __forceinline__ float max_nan(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

template <class Pair, class T>
__device__ __forceinline__ float packed_amax(const RawBlock<T>& b) {
  const Pair* p = reinterpret_cast<const Pair*>(b.w);
  Pair hi = p[0], lo = p[0];
#pragma unroll
  for (int j = 1; j < RawBlock<T>::kWords; ++j) {
    hi = __hmax2_nan(hi, p[j]);
    lo = __hmin2_nan(lo, p[j]);
  }
  const Pair m = __hmax2_nan(hi, __hneg2(lo));
  // |.|: an all-zero block may give -0 here (max of -0 and +0 may be either), and a -0 amax
  // would make the scale the e4m3 -0 (0x80) where the reference has 0x00.
  return max_nan(fabsf(to_float(m.x)), fabsf(to_float(m.y)));
}

__device__ __forceinline__ float block_amax(const RawBlock<__nv_bfloat16>& b) {
  return packed_amax<__nv_bfloat162>(b);
}
__device__ __forceinline__ float block_amax(const RawBlock<__half>& b) {
  return packed_amax<__half2>(b);
}
__device__ __forceinline__ float block_amax(const RawBlock<float>& b) {
  float m = fabsf(b.at(0));
#pragma unroll
  for (int i = 1; i < kBlock; ++i) m = max_nan(m, fabsf(b.at(i)));
  return m;
}

// The sign bits of x[8h .. 8h+7] at bits 4i+3, gathered from the raw inputs (e2m1_encode.h).
// inv > 0, so x * inv has x's sign; a value that rounds to code 0 may keep its sign (0x8, -0),
// which DESIGN §2 allows.
template <class T>
__device__ __forceinline__ uint32_t input_signs(const RawBlock<T>& b, int h) {
  if constexpr (sizeof(T) == 2)
    return sign_bits_of_halves(&b.w[4 * h]);
  else
    return sign_bits_of_floats(&b.w[8 * h]);
}

// The block's 16 values x * inv -> two packed words (values 0-7, 8-15). With a positive, finite
// inv no product is NaN and e2m1_encode.h applies; otherwise (a NaN block, s == 0, or inv = inf
// from an extreme global scale) the threshold encode of e2m1.cuh, which maps NaN to code 0. One
// branch per block, not per word.
template <class T>
__device__ __forceinline__ uint2 encode_block(const RawBlock<T>& b, float inv) {
  uint32_t words[2];
#if NVFP4_HW_E2M1
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    words[h] = 0u;
#pragma unroll
    for (int i = 0; i < 8; i += 2) {
      const int k = 8 * h + i;
      words[h] |= e2m1x2(__fmul_rn(b.at(k), inv), __fmul_rn(b.at(k + 1), inv)) << (4 * i);
    }
  }
#else
  if (inv > 0.0f && inv < __int_as_float(0x7f800000)) {  // false for NaN
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float q[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) q[i] = __fmul_rn(b.at(8 * h + i), inv);
      words[h] = e2m1x8_magnitudes(q) + input_signs(b, h);
    }
  } else {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      words[h] = 0u;
#pragma unroll
      for (int i = 0; i < 8; ++i)
        words[h] |= e2m1_code_soft(__fmul_rn(b.at(8 * h + i), inv)) << (4 * i);
    }
  }
#endif
  return make_uint2(words[0], words[1]);
}

// The block's e4m3 scale and inv = 1 / (s * (1/gs)) (DESIGN §2, same float32 operations in the
// same order): s = e4m3(min(gs * (amax * (1/6)), 448)); __fmul_rn keeps each product a separate
// rounding, the reciprocal is IEEE round-to-nearest as the reference divides. A NaN in the
// block makes s the e4m3 NaN (0x7F), as the reference's amax and clamp propagate it (fminf would
// drop it); then inv is NaN and every code 0 (docs/format.md).
struct BlockScale {
  uint8_t s8;
  float inv;
};

__device__ __forceinline__ BlockScale block_scale(float amax, float gs, float inv_gs) {
  const bool nan = amax != amax;
  const float scaled = nan ? __int_as_float(0x7fffffff)
                           : fminf(__fmul_rn(gs, __fmul_rn(amax, 1.0f / 6.0f)), 448.0f);
  const uint8_t s8 = e4m3_from_float(scaled);
  const float s32 = e4m3_to_float(s8);
  // The reciprocal is taken unconditionally and then discarded for s == 0 (1/0 = inf, no trap):
  // a select instead of a branch around it.
  const float r = __frcp_rn(__fmul_rn(s32, inv_gs));
  return {s8, s32 == 0.0f ? 0.0f : r};
}

// Scale rows r0, r0 + kRowThreads, ... of scale column c (rows past scale_rows skipped): the
// inputs of all of them are loaded first, so each thread has its loads in flight together, then
// each block -> 8 packed bytes and one e4m3 scale. Padding slots (swizzled layout) get scale 0 so
// the swizzled output never holds stale memory. gs and inv_gs = 1/gs (IEEE, as the reference
// divides) are the thread's, computed once.
template <bool VEC, class T>
__device__ __forceinline__ void quantize_rows(const T* __restrict__ x, int r0, int c,
                                              uint8_t* __restrict__ data,
                                              uint8_t* __restrict__ scale,
                                              const QuantizeShape& s, float gs, float inv_gs) {
  if (c >= s.scale_cols) return;
  // c < cols / 16 (c * 16 < cols could overflow near 2^31); unsigned: a shift, no sign fix-up.
  const bool real_col = static_cast<uint32_t>(c) < static_cast<uint32_t>(s.cols) / kBlock;
  RawBlock<T> b[kRowsPerThread];
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int r = r0 + k * kRowThreads;
    if (real_col && r < s.rows)
      load_block<VEC>(x + static_cast<int64_t>(r) * s.cols + c * kBlock, b[k]);
  }
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int r = r0 + k * kRowThreads;
    if (r >= s.scale_rows) break;
    if (!real_col || r >= s.rows) {
      scale[scale_index(s, r, c)] = 0;
      continue;
    }
    const BlockScale bs = block_scale(block_amax(b[k]), gs, inv_gs);
    const uint2 packed = encode_block(b[k], bs.inv);
    // data row r holds cols/2 bytes, a multiple of 8 (cols % 16 == 0), and data is the
    // launcher's own fresh allocation: this block's 8 bytes at c*8 are 8-byte aligned.
    *reinterpret_cast<uint2*>(data + static_cast<int64_t>(r) * (s.cols / 2) + c * (kBlock / 2)) =
        packed;
    scale[scale_index(s, r, c)] = bs.s8;
  }
}

// Grid: x = ceil(scale_cols / kColThreads), y = min(ceil(scale_rows / kRowsPerBlock),
// kMaxRowGroups), block (kColThreads, kRowThreads); padding slots included.
template <class T, bool VEC = false>
__global__ void __launch_bounds__(kColThreads * kRowThreads)
    quantize_kernel(const T* __restrict__ x, const float* __restrict__ global_scale,
                    uint8_t* __restrict__ data, uint8_t* __restrict__ scale, QuantizeShape s) {
  const int c = blockIdx.x * kColThreads + threadIdx.x;
  const float gs = *global_scale, inv_gs = __frcp_rn(gs);
  for (int64_t g = blockIdx.y; g * kRowsPerBlock < s.scale_rows; g += gridDim.y)
    quantize_rows<VEC>(x, static_cast<int>(g * kRowsPerBlock) + threadIdx.y, c, data, scale, s,
                       gs, inv_gs);
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

// Grid: as quantize_kernel, at least one block (block (0, 0) writes the global scale and alpha
// even when x is empty). Row groups go from the last one up: the amax pass walked x front to
// back, so x's tail is what L2 still holds when this kernel starts, and the blocks that run
// first read it from there (as the Triton quantize does after its amax pass).
template <class T, bool VEC = false>
__global__ void __launch_bounds__(kColThreads * kRowThreads)
    quantize_computed_scale_kernel(const T* __restrict__ x, uint8_t* __restrict__ data,
                                   uint8_t* __restrict__ scale, QuantizeShape s,
                                   ComputedScaleOut o) {
  const float gs = global_scale_from_amax(__uint_as_float(*o.amax_bits));
  if (blockIdx.x == 0 && blockIdx.y == 0) {
    const int tid = threadIdx.y * kColThreads + threadIdx.x;
    if (tid == 0) *o.global_scale = gs;
    for (int64_t j = tid; j < o.alpha_n; j += kColThreads * kRowThreads)
      o.alpha[j] = __fdiv_rn(o.weight_alpha[j], gs);
  }
  const float inv_gs = __frcp_rn(gs);
  const int c = blockIdx.x * kColThreads + threadIdx.x;
  const int64_t last = (static_cast<int64_t>(s.scale_rows) + kRowsPerBlock - 1) / kRowsPerBlock - 1;
  for (int64_t g = blockIdx.y; g <= last; g += gridDim.y)
    quantize_rows<VEC>(x, static_cast<int>((last - g) * kRowsPerBlock) + threadIdx.y, c, data,
                       scale, s, gs, inv_gs);
}

}  // namespace nvfp4
