// Argument checks shared by the decode-size GEMM launchers (csrc/gemm_decode.cu for M <= 16,
// csrc/gemm_mid.cu for M <= 64): both take the same operands and fill the same Params.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "checks.h"
#include "nvfp4/common.cuh"
#include "nvfp4/decode_gemm.cuh"

namespace nvfp4 {

inline bool aligned_to(const at::Tensor& t, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % bytes == 0;
}

// Checks the operands (errors name the kernel `what`, the argument, its shape and dtype; device
// checks last, so the host tests reach the others without a GPU), allocates the output and
// returns the kernel parameters; the caller sets p.out once it has made the output (under its
// device guard, which needs a CUDA tensor).
inline decode_gemm::Params decode_params(const char* what, int64_t max_m, const at::Tensor& a,
                                         const std::optional<at::Tensor>& a_scale,
                                         const at::Tensor& b, const at::Tensor& b_scale,
                                         bool b_scale_swizzled, const at::Tensor& alpha,
                                         const std::optional<at::Tensor>& bias,
                                         at::ScalarType out_dtype) {
  check_tensor("a", a, 2);
  check_tensor("b", b, 2);
  check_dtype("a", a, {at::kHalf, at::kBFloat16, at::kByte});
  check_dtype("b", b, {at::kByte});
  const bool a_nvfp4 = a.scalar_type() == at::kByte;
  const int64_t m = a.size(0), n = b.size(0), k = b.size(1) * 2;
  const int64_t a_k = a_nvfp4 ? a.size(1) * 2 : a.size(1);
  TORCH_CHECK(a_k == k, "a and b disagree on K: a is ", describe(a), ", b is ", describe(b));
  TORCH_CHECK(m >= 1 && m <= max_m, what, ": M must be in [1, ", max_m, "], got ", m);
  TORCH_CHECK(k >= 32 && k % 32 == 0, what, ": K must be a positive multiple of 32, got ", k);
  TORCH_CHECK(n <= INT32_MAX && k <= INT32_MAX, what, ": N and K must fit in int32");
  TORCH_CHECK(aligned_to(a, 16) && aligned_to(b, 16), what, ": a and b must be 16-byte aligned");
  const int64_t sf_cols = k / 16;
  const int64_t b_scales = b_scale_swizzled ? ceil_to(n, 128) * ceil_to(sf_cols, 4) : n * sf_cols;
  check_dtype("b_scale", b_scale, {at::kFloat8_e4m3fn, at::kByte});
  TORCH_CHECK(b_scale.is_contiguous() && b_scale.numel() == b_scales, "b_scale: expected ",
              b_scales, " contiguous elements, got ", describe(b_scale));
  if (a_nvfp4) {
    TORCH_CHECK(a_scale.has_value(), what, ": packed a needs a_scale");
    check_dtype("a_scale", *a_scale, {at::kFloat8_e4m3fn, at::kByte});
    const int64_t a_scales = ceil_to(m, 128) * ceil_to(sf_cols, 4);
    TORCH_CHECK(a_scale->is_contiguous() && a_scale->numel() == a_scales,
                "a_scale: expected ", a_scales, " contiguous (swizzled) elements, got ",
                describe(*a_scale));
  }
  check_f32_scalar("alpha", alpha, n);
  TORCH_CHECK(out_dtype == at::kHalf || out_dtype == at::kBFloat16,
              "out_dtype: must be float16 or bfloat16, got ", out_dtype);
  int bias_kind = decode_gemm::kNoBias;
  if (bias.has_value()) {
    check_tensor("bias", *bias, 1);
    TORCH_CHECK(bias->size(0) == n, "bias: expected shape (", n, "), got ", describe(*bias));
    switch (bias->scalar_type()) {
      case at::kHalf: bias_kind = decode_gemm::kBiasHalf; break;
      case at::kBFloat16: bias_kind = decode_gemm::kBiasBFloat16; break;
      case at::kFloat: bias_kind = decode_gemm::kBiasFloat; break;
      default: TORCH_CHECK(false, "bias: dtype must be float16, bfloat16 or float32, got ",
                           describe(*bias));
    }
  }
  check_cuda("a", a, a);
  check_cuda("b", b, a);
  check_cuda("b_scale", b_scale, a);
  check_cuda("alpha", alpha, a);
  if (a_nvfp4) check_cuda("a_scale", *a_scale, a);
  if (bias.has_value()) check_cuda("bias", *bias, a);

  decode_gemm::Params p{};
  p.a = a.data_ptr();
  p.a_scale = a_nvfp4 ? reinterpret_cast<const uint8_t*>(a_scale->data_ptr()) : nullptr;
  p.b = b.data_ptr<uint8_t>();
  p.b_scale = reinterpret_cast<const uint8_t*>(b_scale.data_ptr());
  p.alpha = alpha.data_ptr<float>();
  p.bias = bias.has_value() ? bias->data_ptr() : nullptr;
  p.m = static_cast<int>(m);
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.b_scale_swizzled = b_scale_swizzled;
  p.alpha_per_row = alpha.numel() > 1;
  p.bias_kind = bias_kind;
  p.out_bf16 = out_dtype == at::kBFloat16;
  return p;
}

}  // namespace nvfp4
