// Argument checks and the run wrapper shared by the SM100 and SM120 GEMM launchers.
// c10 headers only: ATen/cuda/CUDAContext.h pulls in cuBLAS/cuSPARSE headers that a minimal
// CUDA toolkit lacks.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>

#include "checks.h"
#include "cutlass/cutlass.h"
#include "gemm/launcher.h"

namespace nvfp4::gemm {

GemmProblem check_args(const char* arch, const at::Tensor& a, const at::Tensor& b,
                       const at::Tensor& a_scale, const at::Tensor& b_scale,
                       const at::Tensor& alpha, at::ScalarType out_dtype) {
  check_tensor("a", a, 2);
  check_tensor("b", b, 2);
  check_dtype("a", a, {at::kByte});
  check_dtype("b", b, {at::kByte});
  const int64_t m = a.size(0), n = b.size(0), k = a.size(1) * 2;
  TORCH_CHECK(b.size(1) * 2 == k, "a and b disagree on K: a is ", describe(a), " (K=", k,
              "), b is ", describe(b), " (K=", b.size(1) * 2, ")");
  // 32 E2M1 values (16 bytes) is the TMA alignment of A and B rows; N is the row pitch of D and
  // is asked to be a multiple of 32 too, which also keeps D's 16-byte rows aligned.
  TORCH_CHECK(k % 32 == 0, "NVFP4 GEMM (", arch, "): K must be a multiple of 32, got K=", k,
              " (a is ", describe(a), ")");
  TORCH_CHECK(n % 32 == 0, "NVFP4 GEMM (", arch, "): N must be a multiple of 32, got N=", n,
              " (b is ", describe(b), ")");
  TORCH_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX, "NVFP4 GEMM (", arch,
              "): sizes must fit in int32, got M=", m, " N=", n, " K=", k);
  const int64_t sf_cols = (k / 16 + 3) / 4 * 4;
  for (auto [name, t, rows] : {std::tuple{"a_scale", &a_scale, m}, std::tuple{"b_scale", &b_scale, n}}) {
    check_dtype(name, *t, {at::kFloat8_e4m3fn});
    TORCH_CHECK(t->is_contiguous(), name, ": must be contiguous, got ", describe(*t));
    const int64_t rows_p = (rows + 127) / 128 * 128;
    TORCH_CHECK(t->numel() == rows_p * sf_cols, name, ": swizzled scales for a ", rows, "x", k,
                " operand need ", rows_p, "x", sf_cols, " = ", rows_p * sf_cols,
                " elements, got ", describe(*t));
  }
  TORCH_CHECK(alpha.scalar_type() == at::kFloat && alpha.numel() == 1, "NVFP4 GEMM (", arch,
              "): alpha must be one float32 value (per-column alpha is applied by the"
              " caller), got ", describe(alpha));
  TORCH_CHECK(out_dtype == at::kBFloat16 || out_dtype == at::kHalf, "NVFP4 GEMM (", arch,
              "): out_dtype must be bfloat16 or float16, got ", out_dtype);
  check_cuda("a", a, a);
  for (auto [name, t] : {std::pair{"b", &b}, std::pair{"a_scale", &a_scale},
                         std::pair{"b_scale", &b_scale}, std::pair{"alpha", &alpha}})
    check_cuda(name, *t, a);
  return {static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), nullptr, nullptr,
          nullptr, nullptr, nullptr, nullptr};
}

at::Tensor run(const char* arch, const Config& config, const at::Tensor& a, const at::Tensor& b,
               const at::Tensor& a_scale, const at::Tensor& b_scale, const at::Tensor& alpha,
               at::ScalarType out_dtype) {
  GemmProblem p = check_args(arch, a, b, a_scale, b_scale, alpha, out_dtype);
  const c10::cuda::CUDAGuard guard(a.device());
  auto d = at::empty({p.m, p.n}, a.options().dtype(out_dtype));
  if (p.m == 0 || p.n == 0) return d;
  TORCH_CHECK(p.k > 0, "NVFP4 GEMM (", arch, "): K must be positive");
  p.a = a.data_ptr();
  p.b = b.data_ptr();
  p.a_scale = a_scale.data_ptr();
  p.b_scale = b_scale.data_ptr();
  p.alpha = alpha.data_ptr<float>();
  p.d = d.data_ptr();
  const size_t ws_bytes = config.workspace(p);
  at::Tensor ws = at::empty({static_cast<int64_t>(ws_bytes)}, a.options().dtype(at::kByte));
  const int status = config.run(p, ws_bytes ? ws.data_ptr() : nullptr,
                                c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(status == 0, "NVFP4 GEMM (", arch, ", ", config.name, ") failed for M=", p.m,
              " N=", p.n, " K=", p.k, ": ",
              cutlass::cutlassGetStatusString(static_cast<cutlass::Status>(status)));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return d;
}

}  // namespace nvfp4::gemm
