// CUTLASS's scale-factor layout evaluated on the host: offsets[r, j] is where CUTLASS's
// block-scaled GEMM (SM100 and SM120 share Sm1xxBlockScaledConfig<16>) reads the scale of row r,
// K-block j. Tests compare it with nvfp4_kernels' swizzled layout, which proves the two agree
// without running a kernel.
#include <ATen/ops/empty.h>

#include "gemm/gemm_entry.h"
#include "ops.h"

namespace nvfp4 {

at::Tensor gemm_scale_offsets(int64_t rows, int64_t k, bool operand_b) {
  TORCH_CHECK(rows > 0 && k > 0 && k % 32 == 0, "gemm_scale_offsets: need rows > 0 and K a "
              "positive multiple of 32, got rows=", rows, " K=", k);
  const int r = static_cast<int>(rows), kk = static_cast<int>(k);
  // The A layout is built from (M, N, K, L) with M = rows; the B layout with N = rows.
  auto layout = operand_b
      ? gemm::ScaleConfig::tile_atom_to_shape_SFB(cute::make_shape(1, r, kk, 1))
      : gemm::ScaleConfig::tile_atom_to_shape_SFA(cute::make_shape(r, 1, kk, 1));
  auto out = at::empty({rows, k / 16}, at::kLong);
  auto* o = out.data_ptr<int64_t>();
  for (int i = 0; i < r; ++i)
    for (int j = 0; j < kk / 16; ++j)
      o[i * (kk / 16) + j] = layout(cute::make_coord(i, j * 16, 0));
  return out;
}

}  // namespace nvfp4
