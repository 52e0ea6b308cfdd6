// Launcher of the mid-size NVFP4 GEMM (csrc/include/nvfp4/mid_gemm.cuh). Built with the decode
// GEMM (SM80-SM90 targets); runs where a block may use its shared memory (up to ~210 KB: SM90).
// W4A16 (fp16/bf16 activations) and W4A4 (packed activations) for 1 <= M <= 64 tokens (the
// Python backend sends it 16 < M <= 64; M <= 16 goes to the decode kernel). Same operands and
// checks as gemm_decode (csrc/decode_args.h).
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "decode_args.h"
#include "nvfp4/mid_gemm.cuh"
#include "ops.h"
#include "resident_ctas.h"

namespace nvfp4 {
namespace {

using decode_gemm::Act;
using mid_gemm::Layout;
using mid_gemm::Shape;

template <Act A, int MT, class S>
void launch(const decode_gemm::Params& p, const at::Tensor& like, cudaStream_t stream) {
  using L = Layout<A, MT, S>;
  auto* kernel = mid_gemm::mid_gemm_kernel<A, MT, S>;
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  const int slots = resident_ctas("mid GEMM", reinterpret_cast<const void*>(kernel), S::kThreads,
                                  L::kSmemBytes, device);
  const int64_t tiles = (p.n + S::kRows - 1) / S::kRows;
  const int splits = mid_gemm::choose_splits(tiles, p.k, MT * 8, slots, S::MAX_SPLITS);
  launch_split_k(kernel, p, tiles, splits, L::kCtaElems, S::kThreads, L::kSmemBytes, like,
                 stream);
}

// Launch shapes (the `variant` argument, 0 <= variant < kMidGemmVariants;
// benchmarks/sweep_decode_gemm.py --kernel mid times them, tests/backends/cuda/test_mid_gemm.py
// checks every one). 0 is the default, chosen by reasoning (not yet by an H100 sweep).
template <int V>
struct Variant {
  // Default: 8 warps x 2 row tiles = 256 rows per CTA share each activation chunk (L2 reads of
  // activations ~ the weight bytes at M = 64), 4 stages (3 x 20 KB of weights in flight per
  // CTA), split-K up to 8 to fill the SMs on N = 5376.
  using type = Shape<8, 2, 4, 8>;
};
// The default without split-K: one CTA per 256-row tile.
template <> struct Variant<1> { using type = Shape<8, 2, 4, 1>; };
// Half the CTA (4 warps, 128 rows): twice the activation reads from L2, two CTAs per SM.
template <> struct Variant<2> { using type = Shape<4, 2, 4, 8>; };
// One 16-row tile per warp (fewer registers), a deeper ring.
template <> struct Variant<3> { using type = Shape<8, 1, 6, 8>; };
// The default with 16-bit activations byte-permuted once per CTA (Shape::PERMUTE_AHEAD; one more
// stage of shared memory): fewer instructions per warp (sm_90a, bf16, 64 tokens: 730 -> see
// mid_gemm.cuh), one CTA per SM at every M. W4A4 runs exactly the default.
template <> struct Variant<4> { using type = Shape<8, 2, 4, 8, true>; };
static_assert(kMidGemmVariants == 5, "one Variant<> per variant");

template <Act A, int MT>
void launch_variant(const decode_gemm::Params& p, int variant, const at::Tensor& like,
                    cudaStream_t stream) {
  switch (variant) {
    case 1: launch<A, MT, Variant<1>::type>(p, like, stream); break;
    case 2: launch<A, MT, Variant<2>::type>(p, like, stream); break;
    case 3: launch<A, MT, Variant<3>::type>(p, like, stream); break;
    case 4:
      // Packed activations are decoded ahead in every shape: variant 4 is the default for them.
      if constexpr (A == Act::kNvfp4) launch<A, MT, Variant<0>::type>(p, like, stream);
      else launch<A, MT, Variant<4>::type>(p, like, stream);
      break;
    default: launch<A, MT, Variant<0>::type>(p, like, stream);
  }
}

// Token tiles of 8, rounded up to 3, 4, 6 or 8 (fewer kernels to build; the padding costs MMAs
// only, and the kernel is bound by the weight stream below M = 64).
int token_tiles(int64_t m) { return m <= 24 ? 3 : m <= 32 ? 4 : m <= 48 ? 6 : 8; }

template <Act A>
void launch_for_m(const decode_gemm::Params& p, int variant, const at::Tensor& like,
                  cudaStream_t stream) {
  switch (token_tiles(p.m)) {
    case 3: launch_variant<A, 3>(p, variant, like, stream); break;
    case 4: launch_variant<A, 4>(p, variant, like, stream); break;
    case 6: launch_variant<A, 6>(p, variant, like, stream); break;
    default: launch_variant<A, 8>(p, variant, like, stream);
  }
}

}  // namespace

at::Tensor gemm_mid(const at::Tensor& a, const std::optional<at::Tensor>& a_scale,
                    const at::Tensor& b, const at::Tensor& b_scale, bool b_scale_swizzled,
                    const at::Tensor& alpha, const std::optional<at::Tensor>& bias,
                    at::ScalarType out_dtype, int64_t variant) {
  decode_gemm::Params p =
      decode_params("mid GEMM", 8 * mid_gemm::kMaxTokenTiles, a, a_scale, b, b_scale,
                    b_scale_swizzled, alpha, bias, out_dtype);
  // The ring copies scales as aligned 4-byte words.
  TORCH_CHECK(aligned_to(b_scale, 4), "mid GEMM: b_scale must be 4-byte aligned, got a view at ",
              b_scale.data_ptr());
  if (a_scale.has_value())
    TORCH_CHECK(aligned_to(*a_scale, 4), "mid GEMM: a_scale must be 4-byte aligned");
  const c10::cuda::CUDAGuard guard(a.device());
  auto out = at::empty({int64_t{p.m}, int64_t{p.n}}, a.options().dtype(out_dtype));
  if (p.n == 0) return out;
  p.out = out.data_ptr();
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int v = variant >= 0 && variant < kMidGemmVariants ? static_cast<int>(variant) : 0;
  if (a.scalar_type() == at::kByte) launch_for_m<Act::kNvfp4>(p, v, a, stream);
  else if (a.scalar_type() == at::kHalf) launch_for_m<Act::kHalf>(p, v, a, stream);
  else launch_for_m<Act::kBFloat16>(p, v, a, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

namespace {
template <class S>
int64_t splits_for(int64_t m, int64_t n, int64_t k, int64_t slots) {
  return mid_gemm::choose_splits((n + S::kRows - 1) / S::kRows, k, token_tiles(m) * 8,
                                 static_cast<int>(slots), S::MAX_SPLITS);
}
}  // namespace

// Host only: the split-K count the launcher picks for a problem, given the GPU's resident CTA
// slots (SMs x CTAs per SM), so tests and docs can read the policy without a GPU.
int64_t gemm_mid_splits(int64_t m, int64_t n, int64_t k, int64_t slots, int64_t variant) {
  TORCH_CHECK(m >= 1 && m <= 8 * mid_gemm::kMaxTokenTiles && n >= 1 && k >= 32,
              "gemm_mid_splits: expected 1 <= M <= 64, N >= 1, K >= 32, got ", m, ", ", n, ", ", k);
  switch (variant) {
    case 1: return splits_for<Variant<1>::type>(m, n, k, slots);
    case 2: return splits_for<Variant<2>::type>(m, n, k, slots);
    case 3: return splits_for<Variant<3>::type>(m, n, k, slots);
    case 4: return splits_for<Variant<4>::type>(m, n, k, slots);
    default: return splits_for<Variant<0>::type>(m, n, k, slots);
  }
}

}  // namespace nvfp4
