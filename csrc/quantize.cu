// Launcher of the quantize kernel (csrc/include/nvfp4/quantize.cuh; dequantize: dequantize.cu).
// Compiled for every target arch; the kernel itself picks the hardware E2M1 conversion on
// sm_100a/sm_120a.
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

}  // namespace nvfp4
