// Resident CTAs of a kernel on a whole GPU, and the split-K launch, for the launchers that size
// split-K by it (csrc/gemm_mid.cu, csrc/gemm_wgmma.cu).
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

namespace nvfp4 {

// SMs x CTAs per SM of `kernel` on `device` (after its shared-memory opt-in), cached: host
// queries, no stream work, so it is safe under CUDA-graph capture. `what` names the kernel in
// the errors.
inline int resident_ctas(const char* what, const void* kernel, int threads, size_t smem,
                         int device) {
  static std::mutex lock;
  static std::unordered_map<const void*, int> cache[64];
  const std::lock_guard<std::mutex> hold(lock);
  auto& per_device = cache[device & 63];
  auto it = per_device.find(kernel);
  if (it != per_device.end()) return it->second;
  int smem_optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                        device));
  TORCH_CHECK(static_cast<size_t>(smem_optin) >= smem, what, ": this launch shape needs ", smem,
              " bytes of shared memory per block, the GPU allows ", smem_optin,
              " (an SM90 GPU has enough)");
  if (smem > 48 * 1024)
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  int ctas = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, threads, smem));
  TORCH_CHECK(ctas >= 1, what, ": the launch shape does not fit on an SM");
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  per_device.emplace(kernel, ctas * sms);
  return ctas * sms;
}

// Launches kernel(params, partials, arrivals) on a (tiles x splits) grid. With splits > 1 the
// CTAs of a tile write cta_elems float32 partials each and count their arrivals per tile (the
// last adds the partials in split order); both buffers come from the caching allocator on the
// launch stream: no host sync, capturable.
template <class Kernel, class Params>
void launch_split_k(Kernel kernel, const Params& params, int64_t tiles, int splits,
                    int64_t cta_elems, int threads, size_t smem, const at::Tensor& like,
                    cudaStream_t stream) {
  float* partials = nullptr;
  int* arrivals = nullptr;
  at::Tensor workspace, counters;
  if (splits > 1) {
    workspace = at::empty({tiles * splits * cta_elems}, like.options().dtype(at::kFloat));
    counters = at::zeros({tiles}, like.options().dtype(at::kInt));
    partials = workspace.data_ptr<float>();
    arrivals = counters.data_ptr<int>();
  }
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(splits));
  kernel<<<grid, threads, smem, stream>>>(params, partials, arrivals);
}

}  // namespace nvfp4
