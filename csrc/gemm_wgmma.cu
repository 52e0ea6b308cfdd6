// Launcher of the Hopper warpgroup-MMA NVFP4 GEMM (csrc/include/nvfp4/wgmma_gemm.cuh). Built only
// when sm_90a is a target (CMakeLists.txt, group "gemm_wgmma": wgmma exists only in the
// arch-specific sm_90a target). W4A16 (fp16/bf16 activations), 1 <= M <= 256 tokens (meant for
// 17..256); same operands and checks as gemm_mid (csrc/decode_args.h). The cuda backend calls it
// for 16 < M <= 128 with the launch shape measured best there (backends/cuda.py: _wgmma_variant).
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "decode_args.h"
#include "nvfp4/wgmma_gemm.cuh"
#include "ops.h"
#include "resident_ctas.h"

namespace nvfp4 {
namespace {

using decode_gemm::Act;
using wgmma_gemm::Layout;
using wgmma_gemm::Shape;

// Shape::PREPERMUTED: the activations in the MMA's slot order, into a workspace from the
// caching allocator on the launch stream (no host sync, capturable). Packed activations
// (p.a_scale set) come out decoded, as bf16.
at::Tensor prepermuted(const decode_gemm::Params& p, const at::Tensor& like, cudaStream_t stream) {
  const int kp = wgmma_gemm::padded_k(p.k);
  auto out = at::empty({int64_t{p.m}, int64_t{kp}},
                       like.options().dtype(p.a_scale != nullptr ? at::kBFloat16
                                                                 : like.scalar_type()));
  constexpr int kBlock = 256;
  const int64_t items = int64_t{p.m} * (kp / decode_gemm::kChunk) * 4;
  const auto blocks = static_cast<unsigned>((items + kBlock - 1) / kBlock);
  wgmma_gemm::prepermute_kernel<kBlock><<<blocks, kBlock, 0, stream>>>(
      static_cast<const uint8_t*>(p.a), p.a_scale, static_cast<uint8_t*>(out.data_ptr()), p.m,
      p.k);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// The split-K count of shape S: mid_gemm's traffic model, or wgmma_gemm::splits_by_waves.
template <class S, bool kByWaves>
int pick_splits(int64_t tiles, int64_t k, int m_pad, int slots) {
  return kByWaves ? wgmma_gemm::splits_by_waves(tiles, k, slots, S::MAX_SPLITS)
                  : mid_gemm::choose_splits(tiles, k, m_pad, slots, S::MAX_SPLITS);
}

template <Act A, int NT, class S, bool kByWaves = false>
void launch(const decode_gemm::Params& p_in, const at::Tensor& like, cudaStream_t stream) {
  using L = Layout<NT, S>;
  decode_gemm::Params p = p_in;
  at::Tensor permuted_a;
  if constexpr (S::PREPERMUTED) {
    permuted_a = prepermuted(p, like, stream);
    p.a = permuted_a.data_ptr();
  }
  auto* kernel = wgmma_gemm::wgmma_gemm_kernel<A, NT, S>;
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  const int slots = resident_ctas("wgmma GEMM", reinterpret_cast<const void*>(kernel),
                                  S::kThreads, L::kSmemBytes, device);
  const int64_t tiles = (p.n + S::kRows - 1) / S::kRows;
  const int splits = pick_splits<S, kByWaves>(tiles, p.k, NT, slots);
  launch_split_k(kernel, p, tiles, splits, L::kCtaElems, S::kThreads, L::kSmemBytes, like,
                 stream);
}

// Launch shapes (the `variant` argument, 0 <= variant < kWgmmaGemmVariants;
// benchmarks/sweep_decode_gemm.py --kernel wgmma times them, tests/backends/cuda/
// test_wgmma_gemm.py checks every one). 0 is what an out-of-range variant runs; the backend picks
// 7 or 10 from the H100 sweep (docs/performance.md).
template <int V>
struct Variant {
  // Two warpgroups (128 weight rows) share each staged activation chunk; split-K up to 8 to
  // fill the SMs on N = 5376 layers.
  using type = Shape<2, 1, 8>;
};
// The default without split-K.
template <> struct Variant<1> { using type = Shape<2, 1, 1>; };
// Two 64-row tiles per warpgroup (256 rows per CTA): half the activation bytes staged from L2
// per weight byte (at M = 128 every 128-row CTA reading all activations moves ~3.5x the weight
// bytes through L2), for twice the accumulators. Token tiles up to 128 (at 256 the
// accumulators alone would take every register): M > 128 runs the default.
template <> struct Variant<2> { using type = Shape<2, 2, 8>; };
// The default with the MMAs of a chunk overlapping the next chunk's barrier (Shape::OVERLAP);
// token tiles up to 128 (at 256 the ring has 3 stages: M > 128 runs the default).
template <> struct Variant<3> { using type = Shape<2, 1, 8, true>; };
// Variants 4-11 test where the per-chunk serialization is (wgmma_gemm.cuh, "Launch variants 4-11"
// in the header: what each changes and its SASS figures). 4: the default shape with all 8 MMAs
// of a chunk in flight (DEPTH 7: no wait_group inside a chunk, one drain at its end), the weight
// slot read and the first two MMAs issued before the next refill's copies.
template <> struct Variant<4> { using type = Shape<2, 1, 8, false, 7>; };
// 5: 4 without the chunk-end drain (OVERLAP): a warpgroup never waits for an MMA except to keep
// at most 7 groups in flight; at M > 128 the ring has 3 stages, so it runs as 4.
template <> struct Variant<5> { using type = Shape<2, 1, 8, true, 7>; };
// 6: variant 2's two tiles per warpgroup with MMAs queued 3 steps deep and no chunk-end drain;
// token tiles up to 128 (M > 128 runs variant 5).
template <> struct Variant<6> { using type = Shape<2, 2, 8, true, 3>; };
// 7: three warpgroups (384 threads, at most 168 registers each): 384 rows per CTA (two tiles
// per warpgroup) for token tiles up to 64, 192 (one tile) at 128, M > 128 the default. Tests
// waves and warps: gate_up's 43008 rows are 112 CTAs (one wave on 132 SMs) at M <= 64 and 224
// at M = 128, instead of variant 2's 168 (1.27 waves); 3 warps per scheduler instead of 2.
template <> struct Variant<7> { using type = Shape<3, 2, 8>; };
using ThreeGroupsOneTile = Shape<3, 1, 8>;
// 8-10: the activations pre-permuted into the MMA's slot order by a separate kernel (Shape::
// PREPERMUTED): no CTA-wide permute pass. 8: the default shape so (the permute's cost alone);
// 9: with variant 5's MMA queue (DEPTH 7, OVERLAP); 10: variant 6 so (M > 128 runs 9).
template <> struct Variant<8> { using type = Shape<2, 1, 8, false, 1, true>; };
template <> struct Variant<9> { using type = Shape<2, 1, 8, true, 7, true>; };
template <> struct Variant<10> { using type = Shape<2, 2, 8, true, 3, true>; };
// 11: variant 2's kernels (M > 128: variant 0's) with the split-K count chosen by
// wgmma_gemm::splits_by_waves: tests the wave tail (gate_up at M = 128: 2 splits, 336 CTAs in
// 3 waves of 21 chunks instead of 168 in 2 of 42; at M = 64 2 splits instead of 3; the other
// layers split as variant 2 on 132 SMs).
template <> struct Variant<11> { using type = Shape<2, 2, 8>; };
static_assert(kWgmmaGemmVariants == 12, "one Variant<> per variant");

template <Act A, int NT>
void launch_variant(const decode_gemm::Params& p, int variant, const at::Tensor& like,
                    cudaStream_t stream) {
  switch (variant) {
    case 1: launch<A, NT, Variant<1>::type>(p, like, stream); break;
    case 2:
      if constexpr (NT <= 128) launch<A, NT, Variant<2>::type>(p, like, stream);
      else launch<A, NT, Variant<0>::type>(p, like, stream);
      break;
    case 3:
      if constexpr (NT <= 128) launch<A, NT, Variant<3>::type>(p, like, stream);
      else launch<A, NT, Variant<0>::type>(p, like, stream);
      break;
    case 4: launch<A, NT, Variant<4>::type>(p, like, stream); break;
    case 5: launch<A, NT, Variant<5>::type>(p, like, stream); break;
    case 6:
      if constexpr (NT <= 128) launch<A, NT, Variant<6>::type>(p, like, stream);
      else launch<A, NT, Variant<5>::type>(p, like, stream);
      break;
    case 7:
      if constexpr (NT <= 64) launch<A, NT, Variant<7>::type>(p, like, stream);
      else if constexpr (NT == 128) launch<A, NT, ThreeGroupsOneTile>(p, like, stream);
      else launch<A, NT, Variant<0>::type>(p, like, stream);
      break;
    case 8: launch<A, NT, Variant<8>::type>(p, like, stream); break;
    case 9: launch<A, NT, Variant<9>::type>(p, like, stream); break;
    case 10:
      if constexpr (NT <= 128) launch<A, NT, Variant<10>::type>(p, like, stream);
      else launch<A, NT, Variant<9>::type>(p, like, stream);
      break;
    case 11:
      if constexpr (NT <= 128) launch<A, NT, Variant<11>::type, true>(p, like, stream);
      else launch<A, NT, Variant<0>::type, true>(p, like, stream);
      break;
    default: launch<A, NT, Variant<0>::type>(p, like, stream);
  }
}

// The token tile (wgmma's N) for M tokens: 32, 64, 128 or 256 (fewer kernels to build; the
// padding costs tensor-core time only, and weight decode does not depend on it).
int token_tile(int64_t m) { return m <= 32 ? 32 : m <= 64 ? 64 : m <= 128 ? 128 : 256; }

template <Act A>
void launch_for_m(const decode_gemm::Params& p, int variant, const at::Tensor& like,
                  cudaStream_t stream) {
  switch (token_tile(p.m)) {
    case 32: launch_variant<A, 32>(p, variant, like, stream); break;
    case 64: launch_variant<A, 64>(p, variant, like, stream); break;
    case 128: launch_variant<A, 128>(p, variant, like, stream); break;
    default: launch_variant<A, 256>(p, variant, like, stream);
  }
}

template <class S, bool kByWaves = false>
int64_t splits_for(int64_t m, int64_t n, int64_t k, int64_t slots) {
  return pick_splits<S, kByWaves>((n + S::kRows - 1) / S::kRows, k, token_tile(m),
                                  static_cast<int>(slots));
}

}  // namespace

at::Tensor gemm_wgmma(const at::Tensor& a, const std::optional<at::Tensor>& a_scale,
                      const at::Tensor& b, const at::Tensor& b_scale, bool b_scale_swizzled,
                      const at::Tensor& alpha, const std::optional<at::Tensor>& bias,
                      at::ScalarType out_dtype, int64_t variant) {
  const int v = variant >= 0 && variant < kWgmmaGemmVariants ? static_cast<int>(variant) : 0;
  const bool a_nvfp4 = a.scalar_type() == at::kByte;
  // Packed activations: only the shapes whose pre-permuting pass decodes them (8-10).
  TORCH_CHECK(!a_nvfp4 || (v >= 8 && v <= 10),
              "wgmma GEMM: packed activations (W4A4) need a pre-permuting launch shape "
              "(variant 8, 9 or 10), got variant ", variant, " with a ", describe(a));
  TORCH_CHECK(a_nvfp4 || !a_scale.has_value(),
              "wgmma GEMM: a_scale is for packed activations, but a is ", describe(a));
  decode_gemm::Params p =
      decode_params("wgmma GEMM", wgmma_gemm::kMaxTokens, a, a_scale, b, b_scale,
                    b_scale_swizzled, alpha, bias, out_dtype);
  // The ring copies scales as aligned 4-byte words.
  TORCH_CHECK(aligned_to(b_scale, 4), "wgmma GEMM: b_scale must be 4-byte aligned, got a view at ",
              b_scale.data_ptr());
  const c10::cuda::CUDAGuard guard(a.device());
  auto out = at::empty({int64_t{p.m}, int64_t{p.n}}, a.options().dtype(out_dtype));
  if (p.n == 0) return out;
  p.out = out.data_ptr();
  auto stream = c10::cuda::getCurrentCUDAStream();
  // Packed activations reach the GEMM as the bf16 its pre-permuting pass decoded.
  if (a.scalar_type() == at::kHalf) launch_for_m<Act::kHalf>(p, v, a, stream);
  else launch_for_m<Act::kBFloat16>(p, v, a, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

int64_t gemm_wgmma_splits(int64_t m, int64_t n, int64_t k, int64_t slots, int64_t variant) {
  TORCH_CHECK(m >= 1 && m <= wgmma_gemm::kMaxTokens && n >= 1 && k >= 32,
              "gemm_wgmma_splits: expected 1 <= M <= 256, N >= 1, K >= 32, got ", m, ", ", n,
              ", ", k);
  switch (variant) {
    case 1: return splits_for<Variant<1>::type>(m, n, k, slots);
    case 2:
      return token_tile(m) <= 128 ? splits_for<Variant<2>::type>(m, n, k, slots)
                                  : splits_for<Variant<0>::type>(m, n, k, slots);
    case 3: return splits_for<Variant<3>::type>(m, n, k, slots);
    case 4: return splits_for<Variant<4>::type>(m, n, k, slots);
    case 5: return splits_for<Variant<5>::type>(m, n, k, slots);
    case 6:
      return token_tile(m) <= 128 ? splits_for<Variant<6>::type>(m, n, k, slots)
                                  : splits_for<Variant<5>::type>(m, n, k, slots);
    case 7:
      return token_tile(m) <= 64    ? splits_for<Variant<7>::type>(m, n, k, slots)
             : token_tile(m) == 128 ? splits_for<ThreeGroupsOneTile>(m, n, k, slots)
                                    : splits_for<Variant<0>::type>(m, n, k, slots);
    case 8: return splits_for<Variant<8>::type>(m, n, k, slots);
    case 9: return splits_for<Variant<9>::type>(m, n, k, slots);
    case 10:
      return token_tile(m) <= 128 ? splits_for<Variant<10>::type>(m, n, k, slots)
                                  : splits_for<Variant<9>::type>(m, n, k, slots);
    case 11:
      return token_tile(m) <= 128 ? splits_for<Variant<11>::type, true>(m, n, k, slots)
                                  : splits_for<Variant<0>::type, true>(m, n, k, slots);
    default: return splits_for<Variant<0>::type>(m, n, k, slots);
  }
}

}  // namespace nvfp4
