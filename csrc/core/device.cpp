#include "core/device.h"

// With NANOCNN_WITH_CUDA the definitions live in cuda/device.cu, which asks the CUDA runtime.
#ifndef NANOCNN_WITH_CUDA
namespace nanocnn {
int cuda_device_count() { return 0; }
bool built_with_cuda() { return false; }
std::string cuda_unavailable_reason() {
  return "this nanocnn was built without CUDA (no nvcc was found, or NANOCNN_CUDA=OFF)";
}
}  // namespace nanocnn
#endif
