// common.cuh: what every CUDA kernel file shares: error checks that raise, launch sizes.
//
// Conventions of csrc/cuda/ (see cuda/kernels.h for the interface):
//   - kernels run on the current device's default stream, queued without waiting;
//   - every runtime call and every launch is checked: NC_CUDA_CHECK(call, "op") raises a Python
//     exception naming the op (MemoryError for out-of-memory, RuntimeError otherwise);
//   - index arithmetic is int64 wherever a product of sizes can pass 2^31;
//   - results are deterministic: no float atomics unless the order of accumulation is fixed.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nanocnn::cuda {

// Raises the Python exception for a failed CUDA call or launch (defined in device.cu).
[[noreturn]] void raise_cuda_error(cudaError_t status, const char* op, const char* what);

// Threads per block for the simple element-wise kernels.
constexpr int kThreads = 256;

// Blocks for one thread per element of n, capped so grid-stride loops cover the rest.
inline unsigned int blocks_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  const int64_t cap = int64_t(1) << 20;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace nanocnn::cuda

// NC_CUDA_CHECK(cudaMemcpy(...), "tensor.to") raises if the call failed.
#define NC_CUDA_CHECK(call, op)                                                  \
  do {                                                                           \
    cudaError_t nc_status_ = (call);                                             \
    if (nc_status_ != cudaSuccess) ::nanocnn::cuda::raise_cuda_error(nc_status_, op, #call); \
  } while (0)

// After a kernel launch: raises if the launch failed (bad configuration, no kernel image for
// this GPU, ...). Errors during execution surface at the next synchronising call.
#define NC_CUDA_LAUNCH_CHECK(op) NC_CUDA_CHECK(cudaGetLastError(), op)
