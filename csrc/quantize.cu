// Launchers of the quantize/dequantize kernels (csrc/include/nvfp4/quantize.cuh). Compiled for
// every target arch; the kernel itself picks the hardware E2M1 conversion on sm_100a/sm_120a.
// c10 headers only: ATen/cuda/CUDAContext.h pulls in cuBLAS/cuSPARSE headers that a minimal
// CUDA toolkit lacks.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>
#include <type_traits>

#include "checks.h"
#include "nvfp4/quantize.cuh"
#include "ops.h"

namespace nvfp4 {
namespace {

constexpr int kThreads = 256;

QuantizeShape make_shape(int64_t rows, int64_t cols, bool swizzled) {
  const int64_t scale_cols = cols / kBlock;
  return {rows, cols, swizzled ? ceil_to(rows, 128) : rows,
          swizzled ? ceil_to(scale_cols, 4) : scale_cols, swizzled};
}

unsigned int grid_for(int64_t threads) {
  const int64_t blocks = (threads + kThreads - 1) / kThreads;
  TORCH_CHECK(blocks <= INT32_MAX, "nvfp4: problem too large for one launch (", threads,
              " threads)");
  return static_cast<unsigned int>(blocks);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> quantize(const at::Tensor& x, const at::Tensor& global_scale,
                                            bool swizzled) {
  check_tensor("x", x, 2);
  check_dtype("x", x, {at::kBFloat16, at::kHalf, at::kFloat});
  TORCH_CHECK(x.size(1) % kBlock == 0, "x: the last dim must be a multiple of 16, got ",
              describe(x));
  check_f32_scalar("global_scale", global_scale);
  check_cuda("x", x, x);
  check_cuda("global_scale", global_scale, x);

  const c10::cuda::CUDAGuard guard(x.device());
  const QuantizeShape s = make_shape(x.size(0), x.size(1), swizzled);
  auto data = at::empty({s.rows, s.cols / 2}, x.options().dtype(at::kByte));
  auto scale = at::empty({s.scale_rows, s.scale_cols}, x.options().dtype(at::kFloat8_e4m3fn));
  const int64_t slots = s.scale_rows * s.scale_cols;
  if (slots == 0) return {data, scale};
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto* d = data.data_ptr<uint8_t>();
  auto* sc = reinterpret_cast<uint8_t*>(scale.data_ptr());
  const float* gs = global_scale.data_ptr<float>();
  // 16-byte loads need x 16-byte aligned (always, for a fresh allocation; not for every view).
  const bool vec = reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
  auto launch = [&](auto* in) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    if (vec)
      quantize_kernel<T, true><<<grid_for(slots), kThreads, 0, stream>>>(in, gs, d, sc, s);
    else
      quantize_kernel<T, false><<<grid_for(slots), kThreads, 0, stream>>>(in, gs, d, sc, s);
  };
  switch (x.scalar_type()) {
    case at::kBFloat16:
      launch(reinterpret_cast<const __nv_bfloat16*>(x.data_ptr()));
      break;
    case at::kHalf:
      launch(reinterpret_cast<const __half*>(x.data_ptr()));
      break;
    default:
      launch(x.data_ptr<float>());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {data, scale};
}

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
  const QuantizeShape s = make_shape(rows, cols, swizzled);
  TORCH_CHECK(scale.numel() == s.scale_rows * s.scale_cols, "scale: ",
              swizzled ? "swizzled" : "linear", " scales for a ", rows, "x", cols, " matrix need ",
              s.scale_rows, "x", s.scale_cols, " elements, got ", describe(scale));
  check_f32_scalar("global_scale", global_scale);
  check_cuda("data", data, data);
  check_cuda("scale", scale, data);
  check_cuda("global_scale", global_scale, data);

  const c10::cuda::CUDAGuard guard(data.device());
  auto out = at::empty({rows, cols}, data.options().dtype(dtype));
  const int64_t blocks = rows * (cols / kBlock);
  if (blocks == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  const auto* d = data.data_ptr<uint8_t>();
  const auto* sc = reinterpret_cast<const uint8_t*>(scale.data_ptr());
  const float* gs = global_scale.data_ptr<float>();
  switch (dtype) {
    case at::kBFloat16:
      dequantize_kernel<<<grid_for(blocks), kThreads, 0, stream>>>(
          d, sc, gs, reinterpret_cast<__nv_bfloat16*>(out.data_ptr()), s);
      break;
    case at::kHalf:
      dequantize_kernel<<<grid_for(blocks), kThreads, 0, stream>>>(
          d, sc, gs, reinterpret_cast<__half*>(out.data_ptr()), s);
      break;
    default:
      dequantize_kernel<<<grid_for(blocks), kThreads, 0, stream>>>(d, sc, gs,
                                                                   out.data_ptr<float>(), s);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace nvfp4
