// device.h: what this build and this machine offer besides the CPU, and moving bytes between
// devices. Without CUDA (device.cpp) only the host exists; with it, cuda/device.cu defines these.
#pragma once

#include <cstddef>
#include <string>

#include "core/allocator.h"

namespace nanocnn {

// Number of usable CUDA devices: 0 when the module was built without CUDA, when there is no
// driver, or when there is no GPU. Never throws.
int cuda_device_count();

// Whether tensors can live on a GPU here: built with CUDA, a driver and a GPU present, and the
// build holds code for cuda:0's architecture. Never throws.
bool cuda_available();

// Why "cuda" cannot be used here, in words for an error message ("" when it can).
std::string cuda_unavailable_reason();

// The name of cuda:`index` ("NVIDIA H100 80GB HBM3"); ValueError if there is no such device.
std::string cuda_device_name(int index);

// Whether this module holds compiled CUDA code.
bool built_with_cuda();

// Copies `bytes` bytes from src (on src_device) to dst (on dst_device), for any pair of devices.
// A copy to the host returns when the bytes have arrived (after the work queued on the GPU
// before it); a copy to a GPU is queued on its default stream, ordered before later kernels, and
// returns once the source may be reused.
void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device,
                size_t bytes);

// Sets `bytes` bytes at dst (on device) to zero (on a GPU: queued on its default stream).
void zero_bytes(void* dst, const Device& device, size_t bytes);

// Waits until every kernel and copy queued on `device` has finished (nothing to do on the CPU).
// Raises the error of a failed kernel, if any.
void synchronize(const Device& device);

}  // namespace nanocnn
