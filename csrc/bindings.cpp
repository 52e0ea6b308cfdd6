// Python module nvfp4_kernels._C: plain functions that the cuda/cutlass backend modules call
// (the nvfp4::* custom-op schemas are defined in Python). Per-arch entry points that this build
// left out are stubs whose error names what is missing.
#include <torch/extension.h>

#include "gemm/launcher.h"
#include "ops.h"

// Set by CMakeLists.txt: the compiled targets, comma-separated ("sm_90a,sm_100a,sm_120a"), and
// (NVFP4_WITH_GEMM_SM1x0) which per-arch source groups were built.
#ifndef NVFP4_COMPILED_ARCHS
#define NVFP4_COMPILED_ARCHS ""
#endif

namespace {

std::vector<std::string> compiled_archs() {
  std::vector<std::string> out;
  std::string s = NVFP4_COMPILED_ARCHS, item;
  std::stringstream ss(s);
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string archs_text() {
  auto archs = compiled_archs();
  std::string out;
  for (const auto& a : archs) out += (out.empty() ? "" : ", ") + a;
  return out.empty() ? "no CUDA archs" : out;
}

[[noreturn]] void missing(const char* arch) {
  TORCH_CHECK(false, "cutlass backend needs SM100/SM120 and an extension built with ", arch,
              "; this build has: ", archs_text(), " (rebuild with NVFP4_CUDA_ARCHS including ",
              arch, ", see docs/building.md)");
}

}  // namespace

#ifndef NVFP4_WITH_GEMM_SM120
namespace nvfp4 {
at::Tensor gemm_sm120(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                      const at::Tensor&, at::ScalarType) { missing("sm_120a"); }
std::string gemm_sm120_config(int64_t, int64_t, int64_t, at::ScalarType) { missing("sm_120a"); }
}  // namespace nvfp4
#endif
#ifndef NVFP4_WITH_GEMM_SM100
namespace nvfp4 {
at::Tensor gemm_sm100(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                      const at::Tensor&, at::ScalarType) { missing("sm_100a"); }
std::string gemm_sm100_config(int64_t, int64_t, int64_t, at::ScalarType) { missing("sm_100a"); }
}  // namespace nvfp4
#endif

#ifndef NVFP4_WITH_GEMM_WGMMA
namespace nvfp4 {
at::Tensor gemm_wgmma(const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&,
                      const at::Tensor&, bool, const at::Tensor&, const std::optional<at::Tensor>&,
                      at::ScalarType, int64_t) {
  TORCH_CHECK(false, "the wgmma GEMM (gemm_wgmma) needs an extension built with sm_90a; this "
              "build has: ", archs_text());
}
int64_t gemm_wgmma_splits(int64_t, int64_t, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "gemm_wgmma_splits: the wgmma GEMM is not in this build (", archs_text(),
              ")");
}
}  // namespace nvfp4
#endif

#ifndef NVFP4_WITH_DECODE_GEMM
namespace nvfp4 {
at::Tensor gemm_decode(const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&,
                       const at::Tensor&, bool, const at::Tensor&,
                       const std::optional<at::Tensor>&, at::ScalarType, int64_t) {
  TORCH_CHECK(false, "the decode GEMM (gemm_decode) needs an extension built with an SM80-SM90 "
              "target (e.g. sm_90a); this build has: ", archs_text());
}
at::Tensor gemm_mid(const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&,
                    const at::Tensor&, bool, const at::Tensor&, const std::optional<at::Tensor>&,
                    at::ScalarType, int64_t) {
  TORCH_CHECK(false, "the mid-size GEMM (gemm_mid) needs an extension built with an SM80-SM90 "
              "target (e.g. sm_90a); this build has: ", archs_text());
}
int64_t gemm_mid_splits(int64_t, int64_t, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "gemm_mid_splits: the mid-size GEMM is not in this build (", archs_text(),
              ")");
}
}  // namespace nvfp4
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "nvfp4_kernels C++/CUDA kernels (see nvfp4_kernels/backends/cuda.py, cutlass.py)";
  m.attr("COMPILED_ARCHS") = compiled_archs();
#ifdef NVFP4_WITH_GEMM_SM120
  m.attr("HAS_GEMM_SM120") = true;
#else
  m.attr("HAS_GEMM_SM120") = false;
#endif
#ifdef NVFP4_WITH_GEMM_SM100
  m.attr("HAS_GEMM_SM100") = true;
#else
  m.attr("HAS_GEMM_SM100") = false;
#endif
#ifdef NVFP4_WITH_DECODE_GEMM
  m.attr("HAS_DECODE_GEMM") = true;
  m.attr("DECODE_GEMM_VARIANTS") = nvfp4::kDecodeGemmVariants;
  m.attr("HAS_MID_GEMM") = true;
  m.attr("MID_GEMM_VARIANTS") = nvfp4::kMidGemmVariants;
#else
  m.attr("HAS_DECODE_GEMM") = false;
  m.attr("HAS_MID_GEMM") = false;
#endif
#ifdef NVFP4_WITH_GEMM_WGMMA
  m.attr("HAS_WGMMA_GEMM") = true;
  m.attr("WGMMA_GEMM_VARIANTS") = nvfp4::kWgmmaGemmVariants;
#else
  m.attr("HAS_WGMMA_GEMM") = false;
#endif
  using namespace pybind11::literals;
  m.def("quantize", &nvfp4::quantize, "x"_a, "global_scale"_a, "swizzled"_a);
  m.def("quantize_computed_scale", &nvfp4::quantize_computed_scale, "x"_a, "swizzled"_a,
        "weight_alpha"_a = pybind11::none());
  m.def("dequantize", &nvfp4::dequantize, "data"_a, "scale"_a, "global_scale"_a, "swizzled"_a,
        "dtype"_a);
  m.def("dequantize_scaled", &nvfp4::dequantize_scaled, "data"_a, "scale"_a, "factor"_a,
        "swizzled"_a, "out"_a);
  m.def("kv_cache_write", &nvfp4::kv_cache_write, "key"_a, "value"_a, "key_cache"_a,
        "value_cache"_a, "slot_mapping"_a, "k_scale"_a, "v_scale"_a);
  m.def("kv_cache_gather", &nvfp4::kv_cache_gather, "key_cache"_a, "value_cache"_a,
        "block_table"_a, "seq_lens"_a, "k_scale"_a, "v_scale"_a, "total_tokens"_a, "dtype"_a);
  m.def("gemm_decode", &nvfp4::gemm_decode, "a"_a, "a_scale"_a, "b"_a, "b_scale"_a,
        "b_scale_swizzled"_a, "alpha"_a, "bias"_a, "out_dtype"_a, "variant"_a = 0);
  m.def("gemm_mid", &nvfp4::gemm_mid, "a"_a, "a_scale"_a, "b"_a, "b_scale"_a,
        "b_scale_swizzled"_a, "alpha"_a, "bias"_a, "out_dtype"_a, "variant"_a = 0);
  m.def("gemm_mid_splits", &nvfp4::gemm_mid_splits, "m"_a, "n"_a, "k"_a, "slots"_a,
        "variant"_a = 0);
  m.def("gemm_wgmma", &nvfp4::gemm_wgmma, "a"_a, "a_scale"_a, "b"_a, "b_scale"_a,
        "b_scale_swizzled"_a, "alpha"_a, "bias"_a, "out_dtype"_a, "variant"_a = 0);
  m.def("gemm_wgmma_splits", &nvfp4::gemm_wgmma_splits, "m"_a, "n"_a, "k"_a, "slots"_a,
        "variant"_a = 0);
  m.def("gemm_sm120", &nvfp4::gemm_sm120, "a"_a, "b"_a, "a_scale"_a, "b_scale"_a, "alpha"_a,
        "out_dtype"_a);
  m.def("gemm_sm100", &nvfp4::gemm_sm100, "a"_a, "b"_a, "a_scale"_a, "b_scale"_a, "alpha"_a,
        "out_dtype"_a);
  m.def("gemm_sm120_config", &nvfp4::gemm_sm120_config, "m"_a, "n"_a, "k"_a, "out_dtype"_a);
  m.def("gemm_sm100_config", &nvfp4::gemm_sm100_config, "m"_a, "n"_a, "k"_a, "out_dtype"_a);
  m.def("gemm_check_args", [](const at::Tensor& a, const at::Tensor& b, const at::Tensor& a_scale,
                              const at::Tensor& b_scale, const at::Tensor& alpha,
                              at::ScalarType out_dtype) {
    auto p = nvfp4::gemm::check_args("argument check", a, b, a_scale, b_scale, alpha, out_dtype);
    return std::make_tuple(p.m, p.n, p.k);
  }, "a"_a, "b"_a, "a_scale"_a, "b_scale"_a, "alpha"_a, "out_dtype"_a,
  "The GEMM launchers' argument checks alone (host only): returns (M, N, K) or raises.");
  m.def("gemm_scale_offsets", &nvfp4::gemm_scale_offsets, "rows"_a, "k"_a, "operand_b"_a);
}
