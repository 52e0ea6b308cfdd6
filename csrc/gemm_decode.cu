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

// Warps per CTA that share a row tile's K range as evenly as possible: a CTA waits at its
// final reduction for its busiest warp, so K = 5376 (42 chunks of 128) on 8 warps (six get 5
// chunks, two get 6) idles 12.5 % of its warp time; 7 or 6 warps split 42 evenly. Measure: the
// warps' chunk slots (warps x the busiest warp's chunks), of which `chunks` hold a chunk; the
// fewer win, ties keep 8 warps.
inline bool fewer_warps_split_better(int k, int kw8, int kw) {
  const int chunks = (k + decode_gemm::kChunk - 1) / decode_gemm::kChunk;
  auto slots = [chunks](int w) { return w * ((chunks + w - 1) / w); };
  return slots(kw) < slots(kw8);
}

// Launch S8 (8 warps) or SB (fewer), whichever splits the K chunks more evenly over its warps.
template <Act A, int MT, class S8, class SB>
void launch_balanced(const decode_gemm::Params& p, cudaStream_t stream) {
  if (fewer_warps_split_better(p.k, S8::KW, SB::KW)) launch<A, MT, SB>(p, stream);
  else launch<A, MT, S8>(p, stream);
}

// Launch shapes (the `variant` argument, 0 <= variant < kDecodeGemmVariants;
// benchmarks/sweep_decode_gemm.py times them, tests/backends/cuda/test_decode_gemm.py checks
// every one). 0 is the default.
template <Act A, int MT>
void launch_variant(const decode_gemm::Params& p, int variant, cudaStream_t stream) {
  using decode_gemm::Shape;
  // One token tile (M <= 8): one 16-row tile per warp streamed through a 4-stage shared-memory
  // ring, 4 CTAs per SM, the word decode and the lean ring loop. Two token tiles: each
  // activation register reused over two row tiles (at M = 16 the activations a CTA reads from
  // L2 otherwise dominate), 3 stages, 2 CTAs per SM. Both load the next chunk's activations one
  // chunk ahead.
  using OneTile8 = Shape<8, 4, 4, 1, true, true, true, true>;
  using TwoTiles8 = Shape<8, 3, 2, 2, true, true>;
  switch (variant) {
    // Register ring, 2 stages, one 16-row tile per warp (also the path for scale views that are
    // not 4-byte aligned).
    case 1: launch<A, MT, Shape<8, 2, MT == 1 ? 3 : 2>>(p, stream); break;
    // 8 warps, the activations loaded in the iteration that uses them, no word decode.
    case 2:
      if constexpr (MT == 1) launch<A, MT, Shape<8, 4, 4, 1, true>>(p, stream);
      else launch<A, MT, Shape<8, 3, 2, 2, true>>(p, stream);
      break;
    // Shared-memory ring, 4 warps per CTA, two row tiles per warp.
    case 3: launch<A, MT, Shape<4, 4, MT == 1 ? 5 : 3, 2, true>>(p, stream); break;
    // Always 8 warps per CTA (the default before the balanced warp count): bitwise what 5 gives.
    case 4:
      if constexpr (MT == 1) launch<A, MT, OneTile8>(p, stream);
      else launch<A, MT, TwoTiles8>(p, stream);
      break;
    // 4 without the word decode and the lean loop (the default until 2026-11-27): the same
    // operands, fewer instructions in 4 (sm_90a, bf16 K loop: 264 -> 226 at one token tile).
    case 5:
      if constexpr (MT == 1) launch<A, MT, Shape<8, 4, 4, 1, true, true>>(p, stream);
      else launch<A, MT, TwoTiles8>(p, stream);
      break;
    // The default: 4's shapes with the warps per CTA chosen by how evenly they split the K
    // chunks (launch_balanced): 8 or 7 warps at one token tile (7 at 4 CTAs per SM may use 72
    // registers), 8 or 6 at two. K = 5376 takes 7 and 6. H100 (docs/performance.md): gate_up
    // M = 1 0.0598 ms against 0.0665 for 4 and 0.0676 for 5 in the same run.
    default:
      if constexpr (MT == 1)
        launch_balanced<A, MT, OneTile8, Shape<7, 4, 4, 1, true, true, true, true>>(p, stream);
      else
        launch_balanced<A, MT, TwoTiles8, Shape<6, 3, 2, 2, true, true>>(p, stream);
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
