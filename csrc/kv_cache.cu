// Launchers of the FP8 paged KV-cache kernels (csrc/include/nvfp4/kv_cache.cuh), SM80+.
// c10 headers only: ATen/cuda/CUDAContext.h pulls in cuBLAS/cuSPARSE headers that a minimal
// CUDA toolkit lacks.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>

#include "checks.h"
#include "nvfp4/kv_cache.cuh"
#include "ops.h"

namespace nvfp4 {
namespace {

constexpr int kThreads = 128;

void check_caches(const at::Tensor& key_cache, const at::Tensor& value_cache) {
  for (auto [name, c] : {std::pair{"key_cache", &key_cache}, std::pair{"value_cache", &value_cache}}) {
    check_tensor(name, *c, 4);
    check_dtype(name, *c, {at::kFloat8_e4m3fn, at::kByte});
  }
  TORCH_CHECK(key_cache.sizes() == value_cache.sizes(), "key_cache and value_cache differ: ",
              describe(key_cache), " vs ", describe(value_cache));
}

KvShape make_shape(int64_t tokens, const at::Tensor& cache, const at::Tensor& k_scale,
                   const at::Tensor& v_scale) {
  const int64_t heads = cache.size(2);
  check_f32_scalar("k_scale", k_scale, heads);
  check_f32_scalar("v_scale", v_scale, heads);
  return {tokens, heads, cache.size(3), cache.size(1), cache.size(0), k_scale.numel() > 1,
          v_scale.numel() > 1};
}

// Tokens go on grid.x (the kernels stride over them, so any count works), chunks of one token's
// row on grid.y. Capping grid.x keeps huge prefills from launching millions of tiny blocks.
constexpr int64_t kMaxTokenBlocks = 1 << 16;

dim3 grid_for(const KvShape& s, int vec) {
  const int64_t chunk = static_cast<int64_t>(kThreads) * vec;
  const int64_t chunks = (s.heads * s.head_dim + chunk - 1) / chunk;
  TORCH_CHECK(chunks <= 65535, "nvfp4 kv cache: heads * head_dim = ", s.heads * s.head_dim,
              " is too large for one launch");
  return dim3(static_cast<unsigned>(std::min(s.tokens, kMaxTokenBlocks)),
              static_cast<unsigned>(chunks));
}

bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

// 8 elements per thread (16-byte bf16/fp16 loads, 8-byte e4m3 stores) when head_dim and every
// pointer allow it; 1 otherwise (odd head_dim or a sliced, misaligned view).
template <class T>
int vec_for(int64_t head_dim, std::initializer_list<const void*> wide,
            std::initializer_list<const void*> bytes) {
  constexpr int kVec = 8;
  if (head_dim % kVec) return 1;
  for (auto* p : wide)
    if (!aligned(p, sizeof(T) * kVec)) return 1;
  for (auto* p : bytes)
    if (!aligned(p, kVec)) return 1;
  return kVec;
}

// Runs f(T{}) with T the CUDA element type of `dtype`.
template <class F>
void with_float_type(at::ScalarType dtype, F&& f) {
  switch (dtype) {
    case at::kBFloat16: f(__nv_bfloat16{}); break;
    case at::kHalf: f(__half{}); break;
    default: f(float{});
  }
}

template <class F>
void with_index_type(at::ScalarType dtype, F&& f) {
  if (dtype == at::kInt) f(int32_t{}); else f(int64_t{});
}

}  // namespace

void kv_cache_write(const at::Tensor& key, const at::Tensor& value, at::Tensor& key_cache,
                    at::Tensor& value_cache, const at::Tensor& slot_mapping,
                    const at::Tensor& k_scale, const at::Tensor& v_scale) {
  check_caches(key_cache, value_cache);
  for (auto [name, t] : {std::pair{"key", &key}, std::pair{"value", &value}}) {
    check_tensor(name, *t, 3);
    check_dtype(name, *t, {at::kBFloat16, at::kHalf, at::kFloat});
    TORCH_CHECK(t->size(1) == key_cache.size(2) && t->size(2) == key_cache.size(3), name,
                ": expected [tokens, ", key_cache.size(2), ", ", key_cache.size(3),
                "] to match the cache ", describe(key_cache), ", got ", describe(*t));
  }
  TORCH_CHECK(key.sizes() == value.sizes() && key.scalar_type() == value.scalar_type(),
              "key and value differ: ", describe(key), " vs ", describe(value));
  check_tensor("slot_mapping", slot_mapping, 1);
  check_dtype("slot_mapping", slot_mapping, {at::kInt, at::kLong});
  TORCH_CHECK(slot_mapping.size(0) == key.size(0), "slot_mapping: expected one slot per token (",
              key.size(0), "), got ", describe(slot_mapping));
  const KvShape s = make_shape(key.size(0), key_cache, k_scale, v_scale);
  check_cuda("key", key, key);
  check_cuda("value", value, key);
  check_cuda("key_cache", key_cache, key);
  check_cuda("value_cache", value_cache, key);
  check_cuda("slot_mapping", slot_mapping, key);
  check_cuda("k_scale", k_scale, key);
  check_cuda("v_scale", v_scale, key);
  if (s.tokens == 0 || s.heads * s.head_dim == 0) return;

  const c10::cuda::CUDAGuard guard(key.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto* kc = reinterpret_cast<uint8_t*>(key_cache.data_ptr());
  auto* vc = reinterpret_cast<uint8_t*>(value_cache.data_ptr());
  with_float_type(key.scalar_type(), [&](auto t) {
    using T = decltype(t);
    const auto* k = reinterpret_cast<const T*>(key.data_ptr());
    const auto* v = reinterpret_cast<const T*>(value.data_ptr());
    const int vec = vec_for<T>(s.head_dim, {k, v}, {kc, vc});
    const dim3 grid = grid_for(s, vec);
    with_index_type(slot_mapping.scalar_type(), [&](auto i) {
      using I = decltype(i);
      const auto* slots = reinterpret_cast<const I*>(slot_mapping.data_ptr());
      if (vec == 8)
        kv_cache_write_kernel<T, I, 8><<<grid, kThreads, 0, stream>>>(
            k, v, kc, vc, slots, k_scale.data_ptr<float>(), v_scale.data_ptr<float>(), s);
      else
        kv_cache_write_kernel<T, I, 1><<<grid, kThreads, 0, stream>>>(
            k, v, kc, vc, slots, k_scale.data_ptr<float>(), v_scale.data_ptr<float>(), s);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> kv_cache_gather(
    const at::Tensor& key_cache, const at::Tensor& value_cache, const at::Tensor& block_table,
    const at::Tensor& seq_lens, const at::Tensor& k_scale, const at::Tensor& v_scale,
    int64_t total_tokens, at::ScalarType dtype) {
  check_caches(key_cache, value_cache);
  check_tensor("block_table", block_table, 2);
  check_dtype("block_table", block_table, {at::kInt, at::kLong});
  check_tensor("seq_lens", seq_lens, 1);
  check_dtype("seq_lens", seq_lens, {at::kInt, at::kLong});
  TORCH_CHECK(seq_lens.size(0) == block_table.size(0),
              "seq_lens: expected one length per block_table row (", block_table.size(0),
              "), got ", describe(seq_lens));
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf || dtype == at::kFloat,
              "dtype: must be bfloat16, float16 or float32, got ", dtype);
  TORCH_CHECK(total_tokens >= 0, "total_tokens: must be >= 0, got ", total_tokens);
  const KvShape s = make_shape(total_tokens, key_cache, k_scale, v_scale);
  check_cuda("key_cache", key_cache, key_cache);
  for (auto [name, t] : {std::pair{"value_cache", &value_cache},
                         std::pair{"block_table", &block_table}, std::pair{"seq_lens", &seq_lens},
                         std::pair{"k_scale", &k_scale}, std::pair{"v_scale", &v_scale}})
    check_cuda(name, *t, key_cache);

  const c10::cuda::CUDAGuard guard(key_cache.device());
  auto opts = key_cache.options().dtype(dtype);
  auto key = at::empty({total_tokens, s.heads, s.head_dim}, opts);
  auto value = at::empty({total_tokens, s.heads, s.head_dim}, opts);
  const int64_t batch = seq_lens.size(0);
  if (total_tokens == 0 || s.heads * s.head_dim == 0) return {key, value};
  if (batch == 0) {  // no sequences: every requested row reads as zero (no token to find)
    key.zero_();
    value.zero_();
    return {key, value};
  }
  // Exclusive prefix sum [0, l0, l0+l1, ...] on the device. total_tokens need not equal
  // sum(seq_lens): rows past the sum are zero-filled by the kernel, so nothing here reads values.
  auto cu = at::zeros({batch + 1}, seq_lens.options().dtype(at::kLong));
  auto tail = cu.narrow(0, 1, batch);
  at::cumsum_out(tail, seq_lens, 0, at::kLong);
  auto stream = c10::cuda::getCurrentCUDAStream();
  const auto* kc = reinterpret_cast<const uint8_t*>(key_cache.data_ptr());
  const auto* vc = reinterpret_cast<const uint8_t*>(value_cache.data_ptr());
  with_float_type(dtype, [&](auto t) {
    using T = decltype(t);
    auto* ko = reinterpret_cast<T*>(key.data_ptr());
    auto* vo = reinterpret_cast<T*>(value.data_ptr());
    const int vec = vec_for<T>(s.head_dim, {ko, vo}, {kc, vc});
    const dim3 grid = grid_for(s, vec);
    with_index_type(block_table.scalar_type(), [&](auto i) {
      using I = decltype(i);
      const auto* table = reinterpret_cast<const I*>(block_table.data_ptr());
      if (vec == 8)
        kv_cache_gather_kernel<T, I, 8><<<grid, kThreads, 0, stream>>>(
            kc, vc, table, block_table.size(1), cu.data_ptr<int64_t>(), batch,
            k_scale.data_ptr<float>(), v_scale.data_ptr<float>(), ko, vo, s);
      else
        kv_cache_gather_kernel<T, I, 1><<<grid, kThreads, 0, stream>>>(
            kc, vc, table, block_table.size(1), cu.data_ptr<int64_t>(), batch,
            k_scale.data_ptr<float>(), v_scale.data_ptr<float>(), ko, vo, s);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {key, value};
}

}  // namespace nvfp4
