// Launcher of the dequantize kernel (csrc/include/nvfp4/dequantize.cuh), every target arch.
// c10 headers only (see quantize.cu).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>

#include "checks.h"
#include "nvfp4/dequantize.cuh"
#include "ops.h"

namespace nvfp4 {
namespace {

template <class T, bool SCALED>
void launch(const dequant::Params& p, cudaStream_t stream) {
  const int64_t row_strips = (p.rows + dequant::kRowsPerCta - 1) / dequant::kRowsPerCta;
  const int64_t col_strips = (p.words_per_row + dequant::kWordsPerCta - 1) / dequant::kWordsPerCta;
  TORCH_CHECK(col_strips <= INT32_MAX, "dequantize: rows too long for one launch");
  // Rows beyond 65535 strips are covered by the kernel's grid-stride loop over strips.
  const dim3 grid(static_cast<unsigned>(col_strips),
                  static_cast<unsigned>(std::min<int64_t>(row_strips, 65535)));
  const int threads = dequant::kWarps * 32;
  // 32-bit offsets while every element index fits (scales and words are smaller).
  const bool small = p.rows * p.words_per_row * 8 < (int64_t{1} << 31);
  if (p.swizzled && small)
    dequant::dequantize_kernel<T, true, SCALED, int32_t><<<grid, threads, 0, stream>>>(p);
  else if (p.swizzled)
    dequant::dequantize_kernel<T, true, SCALED, int64_t><<<grid, threads, 0, stream>>>(p);
  else if (small)
    dequant::dequantize_kernel<T, false, SCALED, int32_t><<<grid, threads, 0, stream>>>(p);
  else
    dequant::dequantize_kernel<T, false, SCALED, int64_t><<<grid, threads, 0, stream>>>(p);
}

// rows x cols of packed data and its scales, checked as dequantize and dequantize_scaled take
// them.
void check_inputs(const at::Tensor& data, const at::Tensor& scale, bool swizzled) {
  check_tensor("data", data, 2);
  check_dtype("data", data, {at::kByte});
  check_dtype("scale", scale, {at::kFloat8_e4m3fn});
  TORCH_CHECK(scale.is_contiguous(), "scale: must be contiguous, got ", describe(scale));
  const int64_t rows = data.size(0), cols = data.size(1) * 2;
  TORCH_CHECK(cols % kBlock == 0, "data: the logical last dim (2 * ", data.size(1),
              ") must be a multiple of 16");
  const int64_t scale_rows = swizzled ? ceil_to(rows, 128) : rows;
  const int64_t scale_cols = swizzled ? ceil_to(cols / kBlock, 4) : cols / kBlock;
  TORCH_CHECK(scale.numel() == scale_rows * scale_cols, "scale: ",
              swizzled ? "swizzled" : "linear", " scales for a ", rows, "x", cols, " matrix need ",
              scale_rows, "x", scale_cols, " elements, got ", describe(scale));
}

dequant::Params params(const at::Tensor& words, const at::Tensor& scale, const float* gs,
                       const at::Tensor& out, bool swizzled) {
  const int64_t rows = words.size(0), cols = words.size(1) * 2;
  return dequant::Params{reinterpret_cast<const uint32_t*>(words.data_ptr()),
                         reinterpret_cast<const uint8_t*>(scale.data_ptr()),
                         gs,
                         out.data_ptr(),
                         rows,
                         cols / 8,
                         ceil_to(cols / kBlock, 4) / 4,
                         swizzled ? 1 : 0};
}

// The kernel reads 32-bit words; a view starting off a 4-byte boundary is copied first.
at::Tensor aligned_words(const at::Tensor& data) {
  return reinterpret_cast<uintptr_t>(data.data_ptr()) % 4 ? data.clone() : data;
}

template <bool SCALED>
void launch_for(const dequant::Params& p, at::ScalarType dtype) {
  auto stream = c10::cuda::getCurrentCUDAStream();
  switch (dtype) {
    case at::kBFloat16:
      launch<__nv_bfloat16, SCALED>(p, stream);
      break;
    case at::kHalf:
      launch<__half, SCALED>(p, stream);
      break;
    case at::kFloat8_e4m3fn:  // the scaled variant only (the FP8 prefill mode)
      if constexpr (SCALED) launch<__nv_fp8_e4m3, SCALED>(p, stream);
      break;
    default:
      launch<float, SCALED>(p, stream);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

at::Tensor dequantize(const at::Tensor& data, const at::Tensor& scale,
                      const at::Tensor& global_scale, bool swizzled, at::ScalarType dtype) {
  check_inputs(data, scale, swizzled);
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf || dtype == at::kFloat,
              "dtype: must be bfloat16, float16 or float32, got ", dtype);
  check_f32_scalar("global_scale", global_scale);
  check_cuda("data", data, data);
  check_cuda("scale", scale, data);
  check_cuda("global_scale", global_scale, data);

  const c10::cuda::CUDAGuard guard(data.device());
  auto out = at::empty({data.size(0), data.size(1) * 2}, data.options().dtype(dtype));
  if (out.numel() == 0) return out;
  const at::Tensor words = aligned_words(data);
  launch_for<false>(params(words, scale, global_scale.data_ptr<float>(), out, swizzled), dtype);
  return out;
}

at::Tensor dequantize_scaled(const at::Tensor& data, const at::Tensor& scale,
                             const at::Tensor& factor, bool swizzled, at::Tensor& out) {
  check_inputs(data, scale, swizzled);
  const int64_t rows = data.size(0), cols = data.size(1) * 2;
  check_f32_scalar("factor", factor, rows);
  check_tensor("out", out, 2);
  check_dtype("out", out, {at::kBFloat16, at::kHalf, at::kFloat8_e4m3fn, at::kFloat});
  TORCH_CHECK(out.size(0) == rows && out.size(1) == cols, "out: expected shape [", rows, ", ",
              cols, "], got ", describe(out));
  // Each thread stores the 8 values of one word with one vector store.
  TORCH_CHECK(reinterpret_cast<uintptr_t>(out.data_ptr()) % 16 == 0,
              "out: must start on a 16-byte boundary, got ", describe(out));
  check_cuda("data", data, data);
  check_cuda("scale", scale, data);
  check_cuda("factor", factor, data);
  check_cuda("out", out, data);

  const c10::cuda::CUDAGuard guard(data.device());
  if (out.numel() == 0) return out;
  const at::Tensor words = aligned_words(data);
  auto p = params(words, scale, nullptr, out, swizzled);
  p.factor = factor.data_ptr<float>();
  p.factor_per_row = factor.numel() > 1 ? 1 : 0;
  launch_for<true>(p, out.scalar_type());
  return out;
}

}  // namespace nvfp4
