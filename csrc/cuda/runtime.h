// cuda/runtime.h: the device runtime of the CUDA backend (device.cu, allocator.cu), for the
// host-compiled core (allocator.cpp) and the kernel files. Plain C++, no CUDA types.
#pragma once

#include "core/allocator.h"

namespace nanocnn::cuda {

// Raises ValueError unless cuda:`index` exists and can run this build's kernels (the first call
// for a device probes it; later calls are a bounds check and a flag).
void check_device(int index);

// The calling thread's current device.
int current_device();

// The caching allocator of cuda:`index` (checked with check_device); never destroyed.
Allocator* cuda_allocator(int index);

}  // namespace nanocnn::cuda
