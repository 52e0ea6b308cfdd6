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

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "checks.h"
#include "nvfp4/quantize.cuh"
#include "ops.h"

namespace nvfp4 {
namespace {

constexpr int kThreads = 256;  // amax pass (the quantize kernels have their own shape)

// The kernels count rows and columns in 32 bits (quantize.cuh); x's element offsets may exceed
// that.
QuantizeShape make_shape(const at::Tensor& x, bool swizzled) {
  const int64_t rows = x.size(0), cols = x.size(1), scale_cols = cols / kBlock;
  const int64_t scale_rows = swizzled ? ceil_to(rows, 128) : rows;
  // The margin keeps row + kRowsPerBlock and the padded column count below 2^31 too.
  constexpr int64_t kMaxDim = INT32_MAX - 1024;
  TORCH_CHECK(scale_rows <= kMaxDim && cols <= kMaxDim,
              "x: rows (rounded up to 128 for swizzled scales) and columns must each be at most ",
              kMaxDim, ", got ", describe(x));
  return {static_cast<int32_t>(rows), static_cast<int32_t>(cols),
          static_cast<int32_t>(scale_rows),
          static_cast<int32_t>(swizzled ? ceil_to(scale_cols, 4) : scale_cols), swizzled};
}

// Blocks of the amax pass: a few per SM, each walking its share of x (its loads in flight cover
// HBM latency); more would only add atomics on the one result word.
constexpr int kAmaxBlocksPerSm = 8;

int sm_count(int device) {
  static int counts[64] = {};  // per device index; a racing first call writes the same value
  if (device < 0 || device >= 64) device = 0;
  if (counts[device] == 0) {
    int n = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    counts[device] = n;
  }
  return counts[device];
}

// The quantize kernels' 2-D grid (quantize.cuh): column groups in x, row groups in y (capped;
// the kernels loop over the rest). At least one block: the computed-scale kernel's block (0, 0)
// writes the global scale even for an empty x.
dim3 quantize_grid(const QuantizeShape& s) {
  const int64_t col_groups =
      std::max<int64_t>((int64_t{s.scale_cols} + kColThreads - 1) / kColThreads, 1);
  const int64_t row_groups = (int64_t{s.scale_rows} + kRowsPerBlock - 1) / kRowsPerBlock;
  return dim3(static_cast<unsigned int>(col_groups),
              static_cast<unsigned int>(std::clamp<int64_t>(row_groups, 1, kMaxRowGroups)));
}

const dim3 kQuantizeBlock(kColThreads, kRowThreads);

}  // namespace

void check_x(const at::Tensor& x) {
  check_tensor("x", x, 2);
  check_dtype("x", x, {at::kBFloat16, at::kHalf, at::kFloat});
  TORCH_CHECK(x.size(1) % kBlock == 0, "x: the last dim must be a multiple of 16, got ",
              describe(x));
}

// Calls f(const T* x, vec) with x's element type; vec: 16-byte loads are possible (x 16-byte
// aligned: always for a fresh allocation, not for every view).
template <class F>
void with_input(const at::Tensor& x, F&& f) {
  const bool vec = reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
  switch (x.scalar_type()) {
    case at::kBFloat16:
      f(reinterpret_cast<const __nv_bfloat16*>(x.data_ptr()), vec);
      break;
    case at::kHalf:
      f(reinterpret_cast<const __half*>(x.data_ptr()), vec);
      break;
    default:
      f(x.data_ptr<float>(), vec);
  }
}

std::tuple<at::Tensor, at::Tensor> quantize(const at::Tensor& x, const at::Tensor& global_scale,
                                            bool swizzled) {
  check_x(x);
  check_f32_scalar("global_scale", global_scale);
  check_cuda("x", x, x);
  check_cuda("global_scale", global_scale, x);

  const c10::cuda::CUDAGuard guard(x.device());
  const QuantizeShape s = make_shape(x, swizzled);
  auto data = at::empty({s.rows, s.cols / 2}, x.options().dtype(at::kByte));
  auto scale = at::empty({s.scale_rows, s.scale_cols}, x.options().dtype(at::kFloat8_e4m3fn));
  if (s.scale_rows == 0 || s.scale_cols == 0) return {data, scale};
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto* d = data.data_ptr<uint8_t>();
  auto* sc = reinterpret_cast<uint8_t*>(scale.data_ptr());
  const float* gs = global_scale.data_ptr<float>();
  with_input(x, [&](auto* in, bool vec) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    const dim3 grid = quantize_grid(s);
    if (vec)
      quantize_kernel<T, true><<<grid, kQuantizeBlock, 0, stream>>>(in, gs, d, sc, s);
    else
      quantize_kernel<T, false><<<grid, kQuantizeBlock, 0, stream>>>(in, gs, d, sc, s);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {data, scale};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> quantize_computed_scale(
    const at::Tensor& x, bool swizzled, const std::optional<at::Tensor>& weight_alpha) {
  check_x(x);
  if (weight_alpha.has_value()) {
    const at::Tensor& wa = *weight_alpha;
    TORCH_CHECK(wa.scalar_type() == at::kFloat, "weight_alpha: must be float32, got ",
                describe(wa));
    TORCH_CHECK(wa.numel() >= 1, "weight_alpha: expected at least 1 element, got ", describe(wa));
    TORCH_CHECK(wa.is_contiguous(), "weight_alpha: must be contiguous, got ", describe(wa));
  }
  check_cuda("x", x, x);
  if (weight_alpha.has_value()) check_cuda("weight_alpha", *weight_alpha, x);

  const c10::cuda::CUDAGuard guard(x.device());
  const QuantizeShape s = make_shape(x, swizzled);
  const auto f32 = x.options().dtype(at::kFloat);
  auto data = at::empty({s.rows, s.cols / 2}, x.options().dtype(at::kByte));
  auto scale = at::empty({s.scale_rows, s.scale_cols}, x.options().dtype(at::kFloat8_e4m3fn));
  auto global_scale = at::empty({}, f32);
  // alpha: weight_alpha's shape (what the fake kernel promises), empty without one.
  auto alpha = weight_alpha.has_value() ? at::empty(weight_alpha->sizes(), f32)
                                        : at::empty({0}, f32);
  // The amax word starts at zero: a memset node (capturable in a CUDA graph), no fill kernel.
  auto amax_bits = at::empty({1}, x.options().dtype(at::kInt));
  auto stream = c10::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(cudaMemsetAsync(amax_bits.data_ptr(), 0, sizeof(unsigned int), stream));
  auto* bits = reinterpret_cast<unsigned int*>(amax_bits.data_ptr());
  const ComputedScaleOut out{bits, global_scale.data_ptr<float>(),
                             weight_alpha.has_value() ? weight_alpha->data_ptr<float>() : nullptr,
                             alpha.data_ptr<float>(), alpha.numel()};
  auto* d = data.data_ptr<uint8_t>();
  auto* sc = reinterpret_cast<uint8_t*>(scale.data_ptr());
  const int64_t numel = x.numel();
  with_input(x, [&](auto* in, bool vec) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    if (numel > 0) {
      // One thread per 16-byte vector (or element), four vectors per thread per loop step at
      // most, capped at a few blocks per SM.
      const int64_t per_thread = vec ? 4 * (16 / static_cast<int64_t>(sizeof(T))) : 4;
      const int64_t wanted = (numel + kThreads * per_thread - 1) / (kThreads * per_thread);
      const int64_t cap = static_cast<int64_t>(kAmaxBlocksPerSm) * sm_count(x.get_device());
      const auto blocks = static_cast<unsigned int>(std::min(wanted, cap));
      if (vec)
        amax_kernel<T, true><<<blocks, kThreads, 0, stream>>>(in, numel, bits);
      else
        amax_kernel<T, false><<<blocks, kThreads, 0, stream>>>(in, numel, bits);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const dim3 grid = quantize_grid(s);
    if (vec)
      quantize_computed_scale_kernel<T, true><<<grid, kQuantizeBlock, 0, stream>>>(in, d, sc, s,
                                                                                 out);
    else
      quantize_computed_scale_kernel<T, false><<<grid, kQuantizeBlock, 0, stream>>>(in, d, sc, s,
                                                                                  out);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {data, scale, global_scale, alpha};
}

}  // namespace nvfp4
