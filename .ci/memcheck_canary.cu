// A deliberate out-of-bounds write: .ci/device_cuda.sh runs it under compute-sanitizer first to
// show that memcheck reports errors on this machine, so its "0 errors" over the tests means
// something.
#include <cstdio>

__global__ void write_past_end(int* data, int n) { data[n + threadIdx.x] = 1; }

int main() {
  int* data = nullptr;
  cudaMalloc(&data, 4 * sizeof(int));
  write_past_end<<<1, 32>>>(data, 1 << 20);
  cudaDeviceSynchronize();
  std::printf("canary ran\n");
  return 0;
}
