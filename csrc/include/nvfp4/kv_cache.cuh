// FP8 (e4m3) paged KV cache, layout [num_blocks, block_size, heads, head_dim] (vLLM's flash
// layout), torch-free. Scales are one float32 per tensor or one per head.
//
// Launch shape (both kernels): grid.x strides over tokens, grid.y over chunks of one token's row
// (heads * head_dim elements), blockDim.x threads per chunk, VEC contiguous elements per thread.
// VEC must divide head_dim (so one vector never straddles two heads' scales) and every pointer
// must be aligned to a whole vector; the launcher picks VEC = 8 when it can (16-byte loads of
// bf16/fp16, 8-byte stores of e4m3) and 1 otherwise.
//
// Memory safety does not depend on the caller: slot ids outside [0, num_slots) are skipped,
// tokens past sum(seq_lens) and block ids outside [0, num_blocks) read as zero. The host never
// has to look at index values, so the launchers never synchronise and capture in CUDA graphs.
#pragma once

#include "nvfp4/common.cuh"

namespace nvfp4 {

struct KvShape {
  int64_t tokens;      // rows of key/value (write) or of the output (gather)
  int64_t heads, head_dim;
  int64_t block_size, num_blocks;
  bool per_head_k, per_head_v;
};

// VEC elements moved with one load/store (alignment = the whole vector).
template <class T, int VEC>
struct alignas(sizeof(T) * VEC) KvVec {
  T v[VEC];
};

// e4m3(clamp(x / scale, -448, 448)) with IEEE division. Compares rather than fminf/fmaxf so
// that NaN stays NaN, as torch.clamp keeps it.
__device__ __forceinline__ uint8_t e4m3_div_clamp(float x, float scale) {
  float q = __fdiv_rn(x, scale);
  q = q > 448.0f ? 448.0f : (q < -448.0f ? -448.0f : q);
  return e4m3_from_float(q);
}

template <int VEC, class T>
__device__ __forceinline__ void kv_quantize_vec(const T* src, uint8_t* dst, float scale) {
  const KvVec<T, VEC> x = *reinterpret_cast<const KvVec<T, VEC>*>(src);
  KvVec<uint8_t, VEC> q;
#pragma unroll
  for (int j = 0; j < VEC; ++j) q.v[j] = e4m3_div_clamp(to_float(x.v[j]), scale);
  *reinterpret_cast<KvVec<uint8_t, VEC>*>(dst) = q;
}

// src == nullptr stores zeros (a token or block outside the cache).
template <int VEC, class T>
__device__ __forceinline__ void kv_dequantize_vec(const uint8_t* src, T* dst, float scale) {
  KvVec<T, VEC> out;
  if (src != nullptr) {
    const KvVec<uint8_t, VEC> q = *reinterpret_cast<const KvVec<uint8_t, VEC>*>(src);
#pragma unroll
    for (int j = 0; j < VEC; ++j) out.v[j] = from_float<T>(__fmul_rn(e4m3_to_float(q.v[j]), scale));
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) out.v[j] = from_float<T>(0.0f);
  }
  *reinterpret_cast<KvVec<T, VEC>*>(dst) = out;
}

// cache[slot_mapping[t]] = e4m3_satfinite(x[t] / scale); slots outside [0, num_slots) (-1 is
// vLLM's "padding token") are skipped.
template <class T, class SlotT, int VEC>
__global__ void kv_cache_write_kernel(const T* __restrict__ key, const T* __restrict__ value,
                                      uint8_t* __restrict__ key_cache,
                                      uint8_t* __restrict__ value_cache,
                                      const SlotT* __restrict__ slot_mapping,
                                      const float* __restrict__ k_scale,
                                      const float* __restrict__ v_scale, KvShape s) {
  const int64_t row = s.heads * s.head_dim;
  const int64_t i = (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * VEC;
  if (i >= row) return;
  const int64_t num_slots = s.num_blocks * s.block_size;
  const int64_t h = i / s.head_dim;
  const float ks = k_scale[s.per_head_k ? h : 0], vs = v_scale[s.per_head_v ? h : 0];
  for (int64_t t = blockIdx.x; t < s.tokens; t += gridDim.x) {
    const int64_t slot = static_cast<int64_t>(slot_mapping[t]);
    if (slot < 0 || slot >= num_slots) continue;
    kv_quantize_vec<VEC>(key + t * row + i, key_cache + slot * row + i, ks);
    kv_quantize_vec<VEC>(value + t * row + i, value_cache + slot * row + i, vs);
  }
}

// out[t] = float(cache[slot(t)]) * scale, sequences concatenated (flash-attn varlen order).
// cu_seqlens is the int64 exclusive prefix sum of seq_lens with batch+1 entries (batch >= 1).
// Output rows past sum(seq_lens), positions past the block table and block ids outside
// [0, num_blocks) are written as zero.
template <class T, class BlockT, int VEC>
__global__ void kv_cache_gather_kernel(const uint8_t* __restrict__ key_cache,
                                       const uint8_t* __restrict__ value_cache,
                                       const BlockT* __restrict__ block_table,
                                       int64_t block_table_cols,
                                       const int64_t* __restrict__ cu_seqlens, int64_t batch,
                                       const float* __restrict__ k_scale,
                                       const float* __restrict__ v_scale, T* __restrict__ key_out,
                                       T* __restrict__ value_out, KvShape s) {
  const int64_t row = s.heads * s.head_dim;
  const int64_t i = (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * VEC;
  if (i >= row) return;
  const int64_t h = i / s.head_dim;
  const float ks = k_scale[s.per_head_k ? h : 0], vs = v_scale[s.per_head_v ? h : 0];
  for (int64_t t = blockIdx.x; t < s.tokens; t += gridDim.x) {
    // The sequence holding token t: the last seq with cu_seqlens[seq] <= t (binary search).
    int64_t lo = 0, hi = batch - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (cu_seqlens[mid] <= t) lo = mid; else hi = mid - 1;
    }
    const int64_t start = cu_seqlens[lo];
    const int64_t pos = t - start;
    const bool in_seq = pos >= 0 && pos < cu_seqlens[lo + 1] - start;
    const int64_t col = in_seq ? pos / s.block_size : 0;
    const int64_t block = in_seq && col < block_table_cols
                              ? static_cast<int64_t>(block_table[lo * block_table_cols + col])
                              : -1;
    const bool ok = block >= 0 && block < s.num_blocks;
    const int64_t src = ok ? (block * s.block_size + pos % s.block_size) * row + i : 0;
    kv_dequantize_vec<VEC>(ok ? key_cache + src : nullptr, key_out + t * row + i, ks);
    kv_dequantize_vec<VEC>(ok ? value_cache + src : nullptr, value_out + t * row + i, vs);
  }
}

}  // namespace nvfp4
