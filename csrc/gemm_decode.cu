// Launcher of the decode-size NVFP4 GEMM (csrc/include/nvfp4/decode_gemm.cuh), SM80-SM90.
// W4A16 (fp16/bf16 activations) and W4A4 (packed activations) for 1 <= M <= 16 tokens; the
// Python backend (nvfp4_kernels/backends/cuda.py) sends other shapes to the Triton kernels.
#include <atomic>

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>

#include "decode_args.h"
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
    // The default's shapes with the word decode (decode_gemm.cuh, word_pairs) and the lean ring
    // loop (Shape::LEAN): same results bit for bit, fewer instructions per chunk (sm_90a, bf16
    // K loop: 264 -> 226 at one token tile, 517 -> 473 at two; see decode_gemm.cuh).
    case 4:
      if constexpr (MT == 1) launch<A, MT, Shape<8, 4, 4, 1, true, true, true, true>>(p, stream);
      else launch<A, MT, Shape<8, 3, 2, 2, true, true, true, true>>(p, stream);
      break;
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

}  // namespace

at::Tensor gemm_decode(const at::Tensor& a, const std::optional<at::Tensor>& a_scale,
                       const at::Tensor& b, const at::Tensor& b_scale, bool b_scale_swizzled,
                       const at::Tensor& alpha, const std::optional<at::Tensor>& bias,
                       at::ScalarType out_dtype, int64_t variant) {
  decode_gemm::Params p =
      decode_params("decode GEMM", 8 * decode_gemm::kMaxTokenTiles, a, a_scale, b, b_scale,
                    b_scale_swizzled, alpha, bias, out_dtype);
  const c10::cuda::CUDAGuard guard(a.device());
  auto out = at::empty({int64_t{p.m}, int64_t{p.n}}, a.options().dtype(out_dtype));
  if (p.n == 0) return out;
  p.out = out.data_ptr();
  const bool a_nvfp4 = a.scalar_type() == at::kByte;
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
