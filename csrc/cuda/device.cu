// device.cu: asks the CUDA runtime which GPUs are usable.
//
// The runtime is linked statically, so this module imports on machines without a driver: there
// cudaGetDeviceCount returns cudaErrorInsufficientDriver (or cudaErrorNoDevice) and nanocnn runs
// on the CPU only.
#include <cuda_runtime.h>

#include <string>

#include "core/device.h"

namespace nanocnn {

namespace {
cudaError_t query_device_count(int* count) {
  *count = 0;
  cudaError_t status = cudaGetDeviceCount(count);
  if (status != cudaSuccess) {
    *count = 0;
    cudaGetLastError();  // clear the sticky error so later calls start clean
  }
  return status;
}
}  // namespace

bool built_with_cuda() { return true; }

int cuda_device_count() {
  int count = 0;
  query_device_count(&count);
  return count;
}

std::string cuda_unavailable_reason() {
  int count = 0;
  cudaError_t status = query_device_count(&count);
  if (status != cudaSuccess) {
    return std::string("no usable CUDA device (") + cudaGetErrorName(status) + ": " +
           cudaGetErrorString(status) + ")";
  }
  if (count == 0) return "no CUDA device was found";
  return "this version of nanocnn has no CUDA kernels yet; tensors live on the CPU";
}

}  // namespace nanocnn
