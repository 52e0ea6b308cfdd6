// Entry points of the extension, as plain C++ functions on ATen tensors. bindings.cpp exposes
// them to Python; the nvfp4::* custom-op schemas live in Python (nvfp4_kernels/ops.py) and the
// cuda/cutlass backend modules call these.
#pragma once

#include <optional>
#include <string>
#include <tuple>

#include <ATen/core/Tensor.h>

namespace nvfp4 {

// quantize.cu: generic CUDA (bit manipulation) on every arch, hardware E2M1 on sm_100a/sm_120a.
std::tuple<at::Tensor, at::Tensor> quantize(const at::Tensor& x, const at::Tensor& global_scale,
                                            bool swizzled);
// quantize.cu too: the global scale computed from x on the device (reference.global_scale: finite
// amax, min(2688 / amax, FLT_MAX), 1 when amax is 0), then the quantize; two launches, no host
// round trip. Returns (data, scale, global_scale [0-dim], alpha): alpha = weight_alpha /
// global_scale elementwise when weight_alpha is given (the W4A4 GEMM's alpha), else empty.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> quantize_computed_scale(
    const at::Tensor& x, bool swizzled, const std::optional<at::Tensor>& weight_alpha);
// dequantize.cu: every arch; bit-exact lut * s / gs.
at::Tensor dequantize(const at::Tensor& data, const at::Tensor& scale,
                      const at::Tensor& global_scale, bool swizzled, at::ScalarType dtype);
// The prefill GEMM route's variant: RN(lut * s * factor[row]) in float32, cast into `out`
// ([rows, cols] bf16/fp16/e4m3/float32, contiguous, 16-byte aligned); factor: float32 with 1
// or `rows` values. Bit-identical with the Triton backend's dequantize_scaled. Returns out.
at::Tensor dequantize_scaled(const at::Tensor& data, const at::Tensor& scale,
                             const at::Tensor& factor, bool swizzled, at::Tensor& out);

// kv_cache.cu
void kv_cache_write(const at::Tensor& key, const at::Tensor& value, at::Tensor& key_cache,
                    at::Tensor& value_cache, const at::Tensor& slot_mapping,
                    const at::Tensor& k_scale, const at::Tensor& v_scale);
std::tuple<at::Tensor, at::Tensor> kv_cache_gather(
    const at::Tensor& key_cache, const at::Tensor& value_cache, const at::Tensor& block_table,
    const at::Tensor& seq_lens, const at::Tensor& k_scale, const at::Tensor& v_scale,
    int64_t total_tokens, at::ScalarType dtype);

// gemm_decode.cu (builds with an SM80-SM90 target; bindings.cpp stubs it otherwise): the
// decode-size GEMM, 1 <= M <= 16, K % 32 == 0. `a` is fp16/bf16 (W4A16) or packed E2M1 with
// swizzled a_scale (W4A4); b_scale swizzled or linear; alpha has 1 or N values.
at::Tensor gemm_decode(const at::Tensor& a, const std::optional<at::Tensor>& a_scale,
                       const at::Tensor& b, const at::Tensor& b_scale, bool b_scale_swizzled,
                       const at::Tensor& alpha, const std::optional<at::Tensor>& bias,
                       at::ScalarType out_dtype, int64_t variant = 0);
// How many launch shapes `variant` selects from (0 = the default).
constexpr int kDecodeGemmVariants = 6;
// gemm_mid.cu (same build group and operands as gemm_decode): the mid-size GEMM, 1 <= M <= 64
// (the cuda backend uses it for 16 < M <= 64), split-K with an ordered reduction; b_scale (and
// a_scale) 4-byte aligned. Needs up to ~210 KB of shared memory per block (SM90).
at::Tensor gemm_mid(const at::Tensor& a, const std::optional<at::Tensor>& a_scale,
                    const at::Tensor& b, const at::Tensor& b_scale, bool b_scale_swizzled,
                    const at::Tensor& alpha, const std::optional<at::Tensor>& bias,
                    at::ScalarType out_dtype, int64_t variant = 0);
constexpr int kMidGemmVariants = 5;
// The split-K count gemm_mid picks for (M, N, K) on a GPU with `slots` resident CTAs (host only).
int64_t gemm_mid_splits(int64_t m, int64_t n, int64_t k, int64_t slots, int64_t variant = 0);

// gemm_wgmma.cu (only in builds with sm_90a; bindings.cpp stubs it otherwise): the Hopper
// warpgroup-MMA GEMM, 16-bit activations (W4A16; a_scale must be None), 1 <= M <= 256, operands
// and split-K as gemm_mid. Not in the automatic backend choice yet.
at::Tensor gemm_wgmma(const at::Tensor& a, const std::optional<at::Tensor>& a_scale,
                      const at::Tensor& b, const at::Tensor& b_scale, bool b_scale_swizzled,
                      const at::Tensor& alpha, const std::optional<at::Tensor>& bias,
                      at::ScalarType out_dtype, int64_t variant = 0);
constexpr int kWgmmaGemmVariants = 12;
// The split-K count gemm_wgmma picks (host only), as gemm_mid_splits.
int64_t gemm_wgmma_splits(int64_t m, int64_t n, int64_t k, int64_t slots, int64_t variant = 0);

// gemm_sm120.cu / gemm_sm100.cu (only in builds with sm_120a / sm_100a; bindings.cpp provides
// stubs that explain what is missing otherwise). D = alpha * A @ B^T, out bf16 or fp16.
at::Tensor gemm_sm120(const at::Tensor& a, const at::Tensor& b, const at::Tensor& a_scale,
                      const at::Tensor& b_scale, const at::Tensor& alpha, at::ScalarType out_dtype);
at::Tensor gemm_sm100(const at::Tensor& a, const at::Tensor& b, const at::Tensor& a_scale,
                      const at::Tensor& b_scale, const at::Tensor& alpha, at::ScalarType out_dtype);
// The tile configuration each GEMM picks for a problem (host only, for tests and docs).
std::string gemm_sm120_config(int64_t m, int64_t n, int64_t k, at::ScalarType out_dtype);
std::string gemm_sm100_config(int64_t m, int64_t n, int64_t k, at::ScalarType out_dtype);

// gemm_layout.cpp: CUTLASS's scale-factor offsets for a [rows, k] operand (host only), so tests
// can prove the swizzled layout equals what the kernel reads without running it.
at::Tensor gemm_scale_offsets(int64_t rows, int64_t k, bool operand_b);

}  // namespace nvfp4
