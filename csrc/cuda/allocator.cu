// allocator.cu: GPU memory for tensors, one caching allocator per device.
//
// Why a cache: cudaMalloc and cudaFree cost tens of microseconds to milliseconds each, and
// cudaFree waits for the whole device; a training step allocates and frees the same sizes every
// time, so freed blocks are kept and handed out again. In a steady training loop no op calls
// cudaMalloc or cudaFree.
//
// Policy. A request is rounded up to a block size (512 B granularity below 1 MiB, 128 KiB below
// 32 MiB, 2 MiB above: at most 1/8 wasted in the middle range, 1/16 above), and a freed block
// goes onto the free list of its block size. A request takes a free block of exactly its block
// size if there is one, else cudaMalloc's a new one. When cudaMalloc fails, every cached block of
// the device is freed and the request retried once; if it fails again, MemoryError says how much
// was asked for, how much the GPU has free and in total, and how much nanocnn holds.
//
// Why reuse is safe without events. Every nanocnn kernel, copy and memset runs on the legacy
// default stream of its device (see device.cu), so GPU work executes in the order it was
// queued. A block freed on the host while kernels that read or write it are still queued is
// handed only to later ops, whose kernels are queued behind those and run after them. The
// invariant breaks only for memory shared with another library through DLPack that the other
// library uses on a non-default stream of its own; device.cu and bindings.cpp synchronise at
// that boundary.
//
// Lifetime: the allocators are never destroyed (Python may free tensors during interpreter
// shutdown, after static destructors would have run); deallocate makes no CUDA call, so it is
// safe however late it comes. Thread-safe: ops release the GIL.
#include <cuda_runtime.h>

#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace nanocnn {

namespace {

std::string human_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 5) {
    value /= 1024.0;
    ++unit;
  }
  std::ostringstream out;
  out.precision(unit == 0 ? 0 : 2);
  out << std::fixed << value << " " << units[unit];
  return out.str();
}

// Restores the calling thread's current device when it goes out of scope.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
    }
    cuda::use_device(index);
  }
  ~DeviceGuard() {
    if (previous_ >= 0 && cudaSetDevice(previous_) != cudaSuccess) cudaGetLastError();
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int index) : index_(index) {}

  void* allocate(size_t bytes) override {
    const size_t size = block_size(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* ptr = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        in_use_ += size;
        return ptr;
      }
    }
    cuda::use_device(index_);
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cache();
      status = cudaMalloc(&ptr, size);
    }
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) cudaGetLastError();
      throw MemoryError(detail::concat(
          "CUDA out of memory on cuda:", index_, ": could not allocate ", bytes, " bytes (",
          human_bytes(bytes), "); the GPU has ", human_bytes(free_bytes), " free of ",
          human_bytes(total_bytes), ", of which nanocnn's tensors hold ",
          human_bytes(allocated())));
    }
    if (status != cudaSuccess) cuda::raise_cuda_error(status, "allocate GPU memory", "cudaMalloc");
    std::lock_guard<std::mutex> lock(mutex_);
    in_use_ += size;
    return ptr;
  }

  void deallocate(void* ptr, size_t bytes) override {
    const size_t size = block_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    free_[size].push_back(ptr);
    in_use_ -= size;
    cached_ += size;
  }

  // Frees every cached block (cudaFree waits for the device, so nothing still uses them).
  void release_cache() {
    std::unordered_map<size_t, std::vector<void*>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      cached_ = 0;
    }
    if (blocks.empty()) return;
    DeviceGuard guard(index_);
    for (auto& entry : blocks)
      for (void* ptr : entry.second) NC_CUDA_CHECK(cudaFree(ptr), "empty_cache");
  }

  size_t allocated() {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_use_;
  }
  size_t reserved() {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_use_ + cached_;
  }

  // The size of the block serving a request of `bytes` (at least 512 B, so that every tensor,
  // even an empty one, has its own address).
  static size_t block_size(size_t bytes) {
    constexpr size_t kMiB = size_t(1) << 20;
    const size_t granularity = bytes < kMiB ? 512 : bytes < 32 * kMiB ? 128 * 1024 : 2 * kMiB;
    const size_t rounded = (bytes + granularity - 1) / granularity * granularity;
    return rounded == 0 ? granularity : rounded;
  }

 private:
  const int index_;
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // block size -> free blocks
  size_t in_use_ = 0;                                     // bytes in blocks held by tensors
  size_t cached_ = 0;                                     // bytes in free blocks
};

// One allocator per visible device, made on first use; never destroyed.
struct Registry {
  std::mutex mutex;
  std::vector<CudaCachingAllocator*> allocators;  // index -> allocator, null until used
};

Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

// The allocator of cuda:index if it has been made (index already checked), else null.
CudaCachingAllocator* existing(int index) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return index < static_cast<int>(r.allocators.size()) ? r.allocators[index] : nullptr;
}

void check_index(int index) {
  const int count = cuda_device_count();
  NC_CHECK(index >= 0 && (count == 0 || index < count), "cuda:", index,
           " requested but only ", count, count == 1 ? " CUDA device is" : " CUDA devices are",
           " visible");
}

}  // namespace

namespace cuda {

Allocator* cuda_allocator(int index) {
  check_device(index);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (r.allocators.size() <= static_cast<size_t>(index)) r.allocators.resize(index + 1, nullptr);
  if (r.allocators[index] == nullptr) r.allocators[index] = new CudaCachingAllocator(index);
  return r.allocators[index];
}

}  // namespace cuda

size_t cuda_memory_allocated(int index) {
  check_index(index);
  CudaCachingAllocator* a = existing(index);
  return a == nullptr ? 0 : a->allocated();
}

size_t cuda_memory_reserved(int index) {
  check_index(index);
  CudaCachingAllocator* a = existing(index);
  return a == nullptr ? 0 : a->reserved();
}

void release_cuda_cache() {
  std::vector<CudaCachingAllocator*> all;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    all = r.allocators;
  }
  for (CudaCachingAllocator* a : all)
    if (a != nullptr) a->release_cache();
}

}  // namespace nanocnn
