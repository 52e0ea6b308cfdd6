// One CUTLASS block-scaled NVFP4 GEMM configuration (SM100 or SM120), torch-free.
//
// D[M, N] = alpha * (A * SFA) @ (B * SFB)^T with A [M, K] and B [N, K] both K-major packed E2M1
// (element 2i in the low nibble), SFA/SFB e4m3 scales in the 128x4 swizzled layout that
// CUTLASS's Sm1xxBlkScaledConfig describes (it is the layout nvfp4_kernels calls "swizzled").
// alpha is read from device memory so that no host sync is needed for 1/(gs_a*gs_b).
//
// Each instantiation takes minutes to compile, so every configuration lives in its own
// translation unit (csrc/gemm/sm1x0_*.cu) that includes this header and defines one
// NVFP4_GEMM_CONFIG entry point; the launcher (gemm_sm1x0.cu) only sees plain declarations.
#pragma once

#include "cutlass/cutlass.h"
#include "cute/tensor.hpp"
#include "cutlass/detail/sm100_blockscaled_layout.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"

#include "gemm/gemm_entry.h"

namespace nvfp4::gemm {

template <class ArchTag, class TileShape, class ClusterShape, class ElementD>
struct BlockScaledGemm {
  using ElementAB = cutlass::nv_float4_t<cutlass::float_e2m1_t>;
  using Accum = float;
  using OpClass = cutlass::arch::OpClassBlockScaledTensorOp;
  // 32 E2M1 values = 16 bytes: the TMA alignment, hence "K must be a multiple of 32".
  static constexpr int kAlignAB = 32;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<ElementD>::value;

  // C is void: no source tensor is read (beta is always 0; bias is added by the caller).
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      ArchTag, OpClass, TileShape, ClusterShape, cutlass::epilogue::collective::EpilogueTileAuto,
      Accum, Accum, void, cutlass::layout::RowMajor, kAlignD, ElementD, cutlass::layout::RowMajor,
      kAlignD, cutlass::epilogue::collective::EpilogueScheduleAuto>::CollectiveOp;

  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      ArchTag, OpClass, ElementAB, cutlass::layout::RowMajor, kAlignAB, ElementAB,
      cutlass::layout::ColumnMajor, kAlignAB, Accum, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::collective::KernelScheduleAuto>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop,
                                                      Epilogue, void>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  // The launcher builds and checks scale layouts with the 16-element config; make sure it is
  // the one this kernel reads.
  static_assert(std::is_same_v<typename Mainloop::Sm1xxBlkScaledConfig, ScaleConfig>,
                "kernel scale-factor layout differs from the one the launcher assumes");

  static typename Gemm::Arguments arguments(const GemmProblem& p) {
    using SfA = typename Mainloop::ElementSF;
    auto shape = cute::make_shape(p.m, p.n, p.k, 1);
    typename Gemm::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {p.m, p.n, p.k, 1},
        {static_cast<const typename ElementAB::DataType*>(p.a),
         cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, {p.m, p.k, 1}),
         static_cast<const typename ElementAB::DataType*>(p.b),
         cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, {p.n, p.k, 1}),
         static_cast<const SfA*>(p.a_scale), ScaleConfig::tile_atom_to_shape_SFA(shape),
         static_cast<const SfA*>(p.b_scale), ScaleConfig::tile_atom_to_shape_SFB(shape)},
        {{},
         nullptr,
         cutlass::make_cute_packed_stride(typename Kernel::StrideC{}, {p.m, p.n, 1}),
         static_cast<ElementD*>(p.d),
         cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, {p.m, p.n, 1})}};
    args.epilogue.thread.alpha_ptr = p.alpha;
    args.epilogue.thread.beta = 0.0f;
    return args;
  }

  static size_t workspace_size(const GemmProblem& p) {
    return Gemm::get_workspace_size(arguments(p));
  }

  // 0 on success, else a CUTLASS status code (cutlassGetStatusString names it).
  static int run(const GemmProblem& p, void* workspace, cudaStream_t stream) {
    Gemm gemm;
    auto args = arguments(p);
    cutlass::Status status = gemm.can_implement(args);
    if (status != cutlass::Status::kSuccess) return static_cast<int>(status);
    status = gemm.initialize(args, workspace, stream);
    if (status != cutlass::Status::kSuccess) return static_cast<int>(status);
    return static_cast<int>(gemm.run(stream));
  }
};

}  // namespace nvfp4::gemm

// Defines the two C entry points a launcher declares with NVFP4_DECLARE_GEMM_CONFIG.
#define NVFP4_DEFINE_GEMM_CONFIG(NAME, ...)                                                \
  namespace nvfp4::gemm {                                                                  \
  using NAME##_t = BlockScaledGemm<__VA_ARGS__>;                                           \
  size_t NAME##_workspace(const GemmProblem& p) { return NAME##_t::workspace_size(p); }    \
  int NAME##_run(const GemmProblem& p, void* ws, cudaStream_t s) {                         \
    return NAME##_t::run(p, ws, s);                                                        \
  }                                                                                        \
  }
