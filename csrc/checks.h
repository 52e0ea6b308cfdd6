// TORCH_CHECK helpers whose messages name the argument, its shape, dtype and device.
#pragma once

#include <sstream>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace nvfp4 {

inline std::string describe(const at::Tensor& t) {
  std::ostringstream os;
  os << "shape " << t.sizes() << ", dtype " << t.scalar_type() << ", device " << t.device();
  return os.str();
}

inline void check_tensor(const char* name, const at::Tensor& t, int64_t ndim) {
  TORCH_CHECK(t.dim() == ndim, name, ": expected a ", ndim, "-D tensor, got ", describe(t));
  TORCH_CHECK(t.is_contiguous(), name, ": must be contiguous, got ", describe(t));
}

inline void check_dtype(const char* name, const at::Tensor& t,
                        std::initializer_list<at::ScalarType> dtypes) {
  for (auto d : dtypes)
    if (t.scalar_type() == d) return;
  std::ostringstream os;
  for (auto d : dtypes) os << d << " ";
  TORCH_CHECK(false, name, ": dtype must be one of ( ", os.str(), "), got ", describe(t));
}

// Checked last, so that shape/dtype errors are reported (and testable) without a GPU.
inline void check_cuda(const char* name, const at::Tensor& t, const at::Tensor& like) {
  TORCH_CHECK(t.is_cuda(), name, ": must be a CUDA tensor, got ", describe(t));
  TORCH_CHECK(t.device() == like.device(), name, ": is on ", t.device(), " but the first input is on ",
              like.device());
}

inline void check_f32_scalar(const char* name, const at::Tensor& t, int64_t allowed_numel = 1) {
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, ": must be float32, got ", describe(t));
  TORCH_CHECK(t.numel() == 1 || t.numel() == allowed_numel, name, ": expected 1",
              allowed_numel != 1 ? " or " + std::to_string(allowed_numel) : std::string(),
              " element(s), got ", describe(t));
  TORCH_CHECK(t.is_contiguous(), name, ": must be contiguous, got ", describe(t));
}

}  // namespace nvfp4
