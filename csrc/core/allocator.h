// allocator.h: where tensor memory comes from.
//
// A Storage owns one block of bytes on one device, obtained from that device's Allocator and
// handed back to it when the last Tensor referring to it goes away. Ops never call malloc/free or
// cudaMalloc/cudaFree themselves: they ask for Tensors, so a device's memory policy (64-byte
// aligned host blocks here; a caching allocator on the GPU) lives in exactly one place.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace nanocnn {

enum class DeviceType { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;  // "cpu", "cuda:0"

  // Parses "cpu", "cuda", "cuda:N"; raises ValueError naming `argument` otherwise.
  static Device parse(const std::string& text, const char* argument = "device");
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns a block of at least `bytes` bytes (never nullptr; raises MemoryError on failure).
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
};

// Host memory, aligned to 64 bytes (one cache line, one AVX-512 register). Large freed blocks
// are cached for reuse by the next request of the same size (see allocator.cpp).
constexpr size_t kHostAlignment = 64;
Allocator* cpu_allocator();
size_t host_cache_bytes();  // bytes held in the cache, free for reuse
void release_host_cache();  // gives every cached block back to the system

// GPU memory (cuda/allocator.cu): a caching allocator per device. Bytes held by live tensors,
// and those plus the freed blocks kept for reuse (both 0 in a CPU-only build, or for a device
// not used yet); release_cuda_cache() gives every cached block of every device back to CUDA.
size_t cuda_memory_allocated(int index);
size_t cuda_memory_reserved(int index);
void release_cuda_cache();

// The allocator for `device`; raises ValueError if that device is not available in this build
// or on this machine.
Allocator* allocator_for(const Device& device);

class Storage {
 public:
  // A new block of `bytes` bytes from the device's allocator.
  Storage(size_t bytes, Device device);
  // Memory owned by someone else (a DLPack producer): `release` is called once, when the last
  // Tensor using it goes away.
  Storage(void* data, size_t bytes, Device device, std::function<void()> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  const Device& device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;  // null for borrowed memory
  std::function<void()> release_;
};

}  // namespace nanocnn
