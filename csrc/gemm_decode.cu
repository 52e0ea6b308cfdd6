// Launcher of the decode-size NVFP4 GEMM (csrc/include/nvfp4/decode_gemm.cuh), SM80-SM90.
// W4A16 (fp16/bf16 activations) and W4A4 (packed activations) for 1 <= M <= 16 tokens; the
// Python backend (nvfp4_kernels/backends/cuda.py) sends other shapes to the Triton kernels.
#include <atomic>

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>

#include "checks.h"
#include "nvfp4/decode_gemm.cuh"
#include "ops.h"

namespace nvfp4 {
namespace {

using decode_gemm::Act;

template <Act A, int MT, class S>
void launch(const decode_gemm::Params& p, cudaStream_t stream) {
  constexpr int kRows = 16 * S::WT;
  const dim3 grid((p.n + kRows - 1) / kRows);
  constexpr size_t kSmem = S::kRingBytes + sizeof(float) * S::KW * S::WT * MT * 4 * 32;
  auto* kernel = decode_gemm::decode_gemm_kernel<A, MT, S>;
  if constexpr (kSmem > 48 * 1024) {
    // Past 48 KB a kernel must opt in, once per device.
    static std::atomic<uint64_t> opted{0};
    int device = 0;
    C10_CUDA_CHECK(cudaGetDevice(&device));
    const uint64_t bit = uint64_t{1} << (device & 63);
    if (!(opted.load(std::memory_order_relaxed) & bit)) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(kSmem)));
      opted.fetch_or(bit);
    }
  }
  kernel<<<grid, S::kThreads, kSmem, stream>>>(p);
}

// Launch shapes (the `variant` argument, 0 <= variant < kDecodeGemmVariants;
// benchmarks/sweep_decode_gemm.py times them, tests/backends/cuda/test_decode_gemm.py checks
// every one). 0 is the default.
template <Act A, int MT>
void launch_variant(const decode_gemm::Params& p, int variant, cudaStream_t stream) {
  using decode_gemm::Shape;
  switch (variant) {
    // Register ring, 2 stages, one 16-row tile per warp (also the path for scale views that are
    // not 4-byte aligned).
    case 1: launch<A, MT, Shape<8, 2, MT == 1 ? 3 : 2>>(p, stream); break;
    // The default's shapes with the activations loaded in the iteration that uses them.
    case 2:
      if constexpr (MT == 1) launch<A, MT, Shape<8, 4, 4, 1, true>>(p, stream);
      else launch<A, MT, Shape<8, 3, 2, 2, true>>(p, stream);
      break;
    // Shared-memory ring, 4 warps per CTA, two row tiles per warp.
    case 3: launch<A, MT, Shape<4, 4, MT == 1 ? 5 : 3, 2, true>>(p, stream); break;
    // The default, from the H100 sweep of eight shapes (docs/performance.md): one token tile
    // (M <= 8) streams one 16-row tile per warp through a 4-stage shared-memory ring, 4 CTAs
    // per SM; two token tiles reuse each activation register over two row tiles (at M = 16 the
    // activations a CTA reads from L2 otherwise dominate), 3 stages, 2 CTAs per SM. Both load
    // the next chunk's activations one chunk ahead.
    default:
      if constexpr (MT == 1) launch<A, MT, Shape<8, 4, 4, 1, true, true>>(p, stream);
      else launch<A, MT, Shape<8, 3, 2, 2, true, true>>(p, stream);
  }
}

template <Act A>
void launch_for_m(const decode_gemm::Params& p, int variant, cudaStream_t stream) {
  // Token tiles of 8: one or two.
  if (p.m <= 8) launch_variant<A, 1>(p, variant, stream);
  else launch_variant<A, 2>(p, variant, stream);
}

bool aligned16(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

}  // namespace

at::Tensor gemm_decode(const at::Tensor& a, const std::optional<at::Tensor>& a_scale,
                       const at::Tensor& b, const at::Tensor& b_scale, bool b_scale_swizzled,
                       const at::Tensor& alpha, const std::optional<at::Tensor>& bias,
                       at::ScalarType out_dtype, int64_t variant) {
  check_tensor("a", a, 2);
  check_tensor("b", b, 2);
  check_dtype("a", a, {at::kHalf, at::kBFloat16, at::kByte});
  check_dtype("b", b, {at::kByte});
  const bool a_nvfp4 = a.scalar_type() == at::kByte;
  const int64_t m = a.size(0), n = b.size(0), k = b.size(1) * 2;
  const int64_t a_k = a_nvfp4 ? a.size(1) * 2 : a.size(1);
  TORCH_CHECK(a_k == k, "a and b disagree on K: a is ", describe(a), ", b is ", describe(b));
  TORCH_CHECK(m >= 1 && m <= 8 * decode_gemm::kMaxTokenTiles, "decode GEMM: M must be in [1, ",
              8 * decode_gemm::kMaxTokenTiles, "], got ", m);
  TORCH_CHECK(k >= 32 && k % 32 == 0, "decode GEMM: K must be a positive multiple of 32, got ", k);
  TORCH_CHECK(n <= INT32_MAX && k <= INT32_MAX, "decode GEMM: N and K must fit in int32");
  TORCH_CHECK(aligned16(a) && aligned16(b), "decode GEMM: a and b must be 16-byte aligned");
  const int64_t sf_cols = k / 16;
  const int64_t b_scales = b_scale_swizzled ? ceil_to(n, 128) * ceil_to(sf_cols, 4) : n * sf_cols;
  check_dtype("b_scale", b_scale, {at::kFloat8_e4m3fn, at::kByte});
  TORCH_CHECK(b_scale.is_contiguous() && b_scale.numel() == b_scales, "b_scale: expected ",
              b_scales, " contiguous elements, got ", describe(b_scale));
  if (a_nvfp4) {
    TORCH_CHECK(a_scale.has_value(), "decode GEMM: packed a needs a_scale");
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

  const c10::cuda::CUDAGuard guard(a.device());
  auto out = at::empty({m, n}, a.options().dtype(out_dtype));
  if (n == 0) return out;
  decode_gemm::Params p{};
  p.a = a.data_ptr();
  p.a_scale = a_nvfp4 ? reinterpret_cast<const uint8_t*>(a_scale->data_ptr()) : nullptr;
  p.b = b.data_ptr<uint8_t>();
  p.b_scale = reinterpret_cast<const uint8_t*>(b_scale.data_ptr());
  p.alpha = alpha.data_ptr<float>();
  p.bias = bias.has_value() ? bias->data_ptr() : nullptr;
  p.out = out.data_ptr();
  p.m = static_cast<int>(m);
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.b_scale_swizzled = b_scale_swizzled;
  p.alpha_per_row = alpha.numel() > 1;
  p.bias_kind = bias_kind;
  p.out_bf16 = out_dtype == at::kBFloat16;
  auto stream = c10::cuda::getCurrentCUDAStream();
  // Out-of-range variants run the default; the shared-memory ring copies scales in aligned
  // 4-byte words, so a scale view that is not 4-byte aligned takes the register ring instead.
  int v = variant >= 0 && variant < kDecodeGemmVariants ? static_cast<int>(variant) : 0;
  if (reinterpret_cast<uintptr_t>(b_scale.data_ptr()) % 4 != 0) v = 1;
  if (a_nvfp4) launch_for_m<Act::kNvfp4>(p, v, stream);
  else if (a.scalar_type() == at::kHalf) launch_for_m<Act::kHalf>(p, v, stream);
  else launch_for_m<Act::kBFloat16>(p, v, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace nvfp4
