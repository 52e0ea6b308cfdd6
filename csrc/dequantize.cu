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

template <class T>
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
    dequant::dequantize_kernel<T, true, int32_t><<<grid, threads, 0, stream>>>(p);
  else if (p.swizzled)
    dequant::dequantize_kernel<T, true, int64_t><<<grid, threads, 0, stream>>>(p);
  else if (small)
    dequant::dequantize_kernel<T, false, int32_t><<<grid, threads, 0, stream>>>(p);
  else
    dequant::dequantize_kernel<T, false, int64_t><<<grid, threads, 0, stream>>>(p);
}

}  // namespace

at::Tensor dequantize(const at::Tensor& data, const at::Tensor& scale,
                      const at::Tensor& global_scale, bool swizzled, at::ScalarType dtype) {
  check_tensor("data", data, 2);
  check_dtype("data", data, {at::kByte});
  check_dtype("scale", scale, {at::kFloat8_e4m3fn});
  TORCH_CHECK(scale.is_contiguous(), "scale: must be contiguous, got ", describe(scale));
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf || dtype == at::kFloat,
              "dtype: must be bfloat16, float16 or float32, got ", dtype);
  const int64_t rows = data.size(0), cols = data.size(1) * 2;
  TORCH_CHECK(cols % kBlock == 0, "data: the logical last dim (2 * ", data.size(1),
              ") must be a multiple of 16");
  const int64_t scale_rows = swizzled ? ceil_to(rows, 128) : rows;
  const int64_t scale_cols = swizzled ? ceil_to(cols / kBlock, 4) : cols / kBlock;
  TORCH_CHECK(scale.numel() == scale_rows * scale_cols, "scale: ",
              swizzled ? "swizzled" : "linear", " scales for a ", rows, "x", cols, " matrix need ",
              scale_rows, "x", scale_cols, " elements, got ", describe(scale));
  check_f32_scalar("global_scale", global_scale);
  check_cuda("data", data, data);
  check_cuda("scale", scale, data);
  check_cuda("global_scale", global_scale, data);

  const c10::cuda::CUDAGuard guard(data.device());
  auto out = at::empty({rows, cols}, data.options().dtype(dtype));
  if (rows == 0 || cols == 0) return out;
  // The kernel reads 32-bit words; a view starting off a 4-byte boundary is copied first.
  const at::Tensor words = reinterpret_cast<uintptr_t>(data.data_ptr()) % 4 ? data.clone() : data;
  dequant::Params p{reinterpret_cast<const uint32_t*>(words.data_ptr()),
                    reinterpret_cast<const uint8_t*>(scale.data_ptr()),
                    global_scale.data_ptr<float>(),
                    out.data_ptr(),
                    rows,
                    cols / 8,
                    ceil_to(cols / kBlock, 4) / 4,
                    swizzled ? 1 : 0};
  auto stream = c10::cuda::getCurrentCUDAStream();
  switch (dtype) {
    case at::kBFloat16:
      launch<__nv_bfloat16>(p, stream);
      break;
    case at::kHalf:
      launch<__half>(p, stream);
      break;
    default:
      launch<float>(p, stream);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace nvfp4
