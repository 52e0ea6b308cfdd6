// FP8 (e4m3) paged KV cache, layout [num_blocks, block_size, heads, head_dim] (vLLM's flash
// layout), torch-free. Scales are one float32 per tensor or one per head.
#pragma once

#include "nvfp4/common.cuh"

namespace nvfp4 {

struct KvShape {
  int64_t tokens;      // rows of key/value (write) or of the output (gather)
  int64_t heads, head_dim;
  int64_t block_size, num_blocks;
  bool per_head_k, per_head_v;
};

// e4m3(clamp(x / scale, -448, 448)) with IEEE division. Compares rather than fminf/fmaxf so
// that NaN stays NaN, as torch.clamp keeps it.
__device__ __forceinline__ uint8_t e4m3_div_clamp(float x, float scale) {
  float q = __fdiv_rn(x, scale);
  q = q > 448.0f ? 448.0f : (q < -448.0f ? -448.0f : q);
  return e4m3_from_float(q);
}

// cache = e4m3_satfinite(x / scale). Grid: (tokens, ceil(heads*head_dim / blockDim)).
// Slots were range-checked by the caller; -1 skips the token.
template <class T, class SlotT>
__global__ void kv_cache_write_kernel(const T* __restrict__ key, const T* __restrict__ value,
                                      uint8_t* __restrict__ key_cache,
                                      uint8_t* __restrict__ value_cache,
                                      const SlotT* __restrict__ slot_mapping,
                                      const float* __restrict__ k_scale,
                                      const float* __restrict__ v_scale, KvShape s) {
  const int64_t t = blockIdx.x;
  const int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const int64_t row = s.heads * s.head_dim;
  if (i >= row) return;
  const int64_t slot = static_cast<int64_t>(slot_mapping[t]);
  if (slot < 0 || slot >= s.num_blocks * s.block_size) return;
  const int64_t h = i / s.head_dim;
  const float ks = k_scale[s.per_head_k ? h : 0], vs = v_scale[s.per_head_v ? h : 0];
  key_cache[slot * row + i] = e4m3_div_clamp(to_float(key[t * row + i]), ks);
  value_cache[slot * row + i] = e4m3_div_clamp(to_float(value[t * row + i]), vs);
}

// out[t] = float(cache[slot(t)]) * scale, sequences concatenated. cu_seqlens is the int64
// exclusive prefix sum of seq_lens with batch+1 entries. Grid: (tokens, ceil(row / blockDim)).
template <class T, class BlockT>
__global__ void kv_cache_gather_kernel(const uint8_t* __restrict__ key_cache,
                                       const uint8_t* __restrict__ value_cache,
                                       const BlockT* __restrict__ block_table,
                                       int64_t block_table_cols,
                                       const int64_t* __restrict__ cu_seqlens, int64_t batch,
                                       const float* __restrict__ k_scale,
                                       const float* __restrict__ v_scale, T* __restrict__ key_out,
                                       T* __restrict__ value_out, KvShape s) {
  const int64_t t = blockIdx.x;
  const int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const int64_t row = s.heads * s.head_dim;
  if (i >= row) return;
  // The sequence holding token t: last seq with cu_seqlens[seq] <= t (binary search).
  int64_t lo = 0, hi = batch - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (cu_seqlens[mid] <= t) lo = mid; else hi = mid - 1;
  }
  const int64_t pos = t - cu_seqlens[lo];
  const int64_t col = pos / s.block_size;
  int64_t block = col < block_table_cols ? static_cast<int64_t>(block_table[lo * block_table_cols + col]) : -1;
  const int64_t h = i / s.head_dim;
  float k = 0.0f, v = 0.0f;
  // Block ids were range-checked by the caller; the guard keeps a bad table from reading
  // outside the cache (the output is then zero).
  if (block >= 0 && block < s.num_blocks) {
    const int64_t src = (block * s.block_size + pos % s.block_size) * row + i;
    k = __fmul_rn(e4m3_to_float(key_cache[src]), k_scale[s.per_head_k ? h : 0]);
    v = __fmul_rn(e4m3_to_float(value_cache[src]), v_scale[s.per_head_v ? h : 0]);
  }
  key_out[t * row + i] = from_float<T>(k);
  value_out[t * row + i] = from_float<T>(v);
}

}  // namespace nvfp4
