// device.h: what this build and this machine offer besides the CPU.
#pragma once

#include <string>

namespace nanocnn {

// Number of usable CUDA devices: 0 when the module was built without CUDA, when there is no
// driver, or when there is no GPU. Never throws.
int cuda_device_count();

// Why "cuda" cannot be used here, in words for an error message.
std::string cuda_unavailable_reason();

// Whether this module holds compiled CUDA code.
bool built_with_cuda();

}  // namespace nanocnn
