#include "core/device.h"

#include <cstring>

#include "core/error.h"

// With NANOCNN_WITH_CUDA the definitions live in cuda/device.cu, which asks the CUDA runtime.
#ifndef NANOCNN_WITH_CUDA
namespace nanocnn {

int cuda_device_count() { return 0; }
bool built_with_cuda() { return false; }
bool cuda_available() { return false; }
std::string cuda_unavailable_reason() {
  return "this nanocnn was built without CUDA (no nvcc was found, or NANOCNN_CUDA=OFF)";
}
std::string cuda_device_name(int index) {
  throw ValueError(detail::concat("device \"cuda:", index, "\" is not supported: ",
                                  cuda_unavailable_reason()));
}

// Only host memory exists in this build (Storage refuses other devices), so these are plain.
void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device,
                size_t bytes) {
  NC_CHECK(dst_device.is_cpu() && src_device.is_cpu(), "copy between ", src_device.str(),
           " and ", dst_device.str(), ": ", cuda_unavailable_reason());
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

void zero_bytes(void* dst, const Device& device, size_t bytes) {
  NC_CHECK(device.is_cpu(), "zeros on ", device.str(), ": ", cuda_unavailable_reason());
  if (bytes > 0) std::memset(dst, 0, bytes);
}

void synchronize(const Device&) {}

}  // namespace nanocnn
#endif
