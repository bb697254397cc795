#include "core/allocator.h"

#include <cstdlib>
#include <cstring>
#ifdef __linux__
#include <sys/mman.h>
#endif
#include <iterator>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#ifdef NANOCNN_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace nanocnn {

std::string Device::str() const {
  if (is_cpu()) return "cpu";
  return "cuda:" + std::to_string(index);
}

Device Device::parse(const std::string& text, const char* argument) {
  if (text == "cpu") return Device{DeviceType::CPU, 0};
  if (text == "cuda") return Device{DeviceType::CUDA, 0};
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    const std::string digits = text.substr(5);
    bool all_digits = digits.size() <= 4;
    for (char c : digits) all_digits = all_digits && c >= '0' && c <= '9';
    if (all_digits) return Device{DeviceType::CUDA, std::stoi(digits)};
  }
  throw ValueError(detail::concat(argument, " must be \"cpu\", \"cuda\" or \"cuda:N\", got \"",
                                  text, "\""));
}

namespace {

// Blocks of at least kMinHugeBytes are aligned to 2 MiB and asked to be backed by transparent
// huge pages (Linux; a hint the kernel may ignore, as it does when THP is off). A pass over a
// large activation otherwise walks one 4 KiB page, and often a TLB miss, per 1024 floats.
// Measured on the 2-core Zen 4 (THP "madvise"), one thread, A/B: ReLU backward over
// 32x32x72x72 3.2 -> 2.2 ms, 2x2 max pool over 32x16x148x148 5.7 -> 4.9 ms, cats-vs-dogs 16->32
// 3x3 @74 at batch 32 16.5 -> 15.3 ms. At most 2 MiB - 4 KiB per block is rounded away.
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kMinHugeBytes = size_t(4) << 20;

void* aligned_block(size_t bytes) {
#ifdef __linux__
  if (bytes >= kMinHugeBytes) {
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* ptr = std::aligned_alloc(kHugePage, rounded);
    if (ptr != nullptr) madvise(ptr, rounded, MADV_HUGEPAGE);
    return ptr;
  }
#endif
  // aligned_alloc wants a size that is a multiple of the alignment; 0 bytes still gets a block so
  // that every Storage has a valid, distinct pointer.
  const size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  return std::aligned_alloc(kHostAlignment, rounded == 0 ? kHostAlignment : rounded);
}

// Host memory: 64-byte aligned blocks, with a cache for large ones.
//
// Why a cache: a large block from malloc is mapped fresh from the OS and unmapped again on free,
// so every op writing a new multi-megabyte output pays a page fault per 4 KiB page and the
// kernel's zeroing of it: for a ReLU over 64x16x32x32 floats that doubled the time (0.11 ms of
// faults on 0.11 ms of work). A training step allocates the same sizes every time, so freed
// blocks of at least kMinCachedBytes are kept, keyed by their size rounded up to whole pages,
// and handed out again for the same size. The cache holds at most kMaxCachedBytes: a freed block
// that would take it past that pushes out the blocks freed longest ago (the sizes in use now are
// the ones a step will ask for again; a cache that kept its first-come sizes instead left a
// 150x150 network at batch 256 faulting on every output: ReLU at 6 GB/s). The cache is
// emptied, and the request retried, before an allocation fails.
class HostAllocator final : public Allocator {
 public:
  static constexpr size_t kPage = 4096;
  static constexpr size_t kMinCachedBytes = 256 * 1024;
  static constexpr size_t kMaxCachedBytes = size_t(1) << 30;

  void* allocate(size_t bytes) override {
    const bool cacheable = bytes >= kMinCachedBytes;
    const size_t size = cacheable ? round_to_page(bytes) : bytes;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = by_size_.find(size);
      if (it != by_size_.end() && !it->second.empty()) {
        const auto block = it->second.back();  // the most recently freed block of this size
        it->second.pop_back();
        void* ptr = block->ptr;
        blocks_.erase(block);
        cached_bytes_ -= size;
        return ptr;
      }
    }
    void* ptr = aligned_block(size);
    if (ptr == nullptr) {
      release_cache();
      ptr = aligned_block(size);
    }
    if (ptr == nullptr) {
      throw MemoryError(detail::concat("out of host memory: could not allocate ", bytes,
                                       " bytes"));
    }
    return ptr;
  }

  void deallocate(void* ptr, size_t bytes) override {
    if (bytes < kMinCachedBytes) {
      std::free(ptr);
      return;
    }
    const size_t size = round_to_page(bytes);
    if (size > kMaxCachedBytes) {
      std::free(ptr);
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    while (cached_bytes_ + size > kMaxCachedBytes) evict_oldest();
    blocks_.push_back(Block{ptr, size});
    by_size_[size].push_back(std::prev(blocks_.end()));
    cached_bytes_ += size;
  }

  void release_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Block& block : blocks_) std::free(block.ptr);
    blocks_.clear();
    by_size_.clear();
    cached_bytes_ = 0;
  }

  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_bytes_;
  }

 private:
  struct Block {
    void* ptr;
    size_t size;
  };
  using BlockList = std::list<Block>;

  static size_t round_to_page(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }

  // Frees the block freed longest ago (the front of blocks_; the front of its size's list too).
  void evict_oldest() {
    const Block oldest = blocks_.front();
    std::vector<BlockList::iterator>& same = by_size_[oldest.size];
    same.erase(same.begin());
    if (same.empty()) by_size_.erase(oldest.size);
    blocks_.pop_front();
    cached_bytes_ -= oldest.size;
    std::free(oldest.ptr);
  }

  std::mutex mutex_;
  BlockList blocks_;  // cached blocks, freed longest ago first
  std::unordered_map<size_t, std::vector<BlockList::iterator>> by_size_;  // oldest first
  size_t cached_bytes_ = 0;
};

HostAllocator& host_allocator() {
  // Never destroyed: tensors may still be freed by Python during interpreter shutdown.
  static HostAllocator* allocator = new HostAllocator();
  return *allocator;
}

}  // namespace

Allocator* cpu_allocator() { return &host_allocator(); }

size_t host_cache_bytes() { return host_allocator().cached_bytes(); }

void release_host_cache() { host_allocator().release_cache(); }

Allocator* allocator_for(const Device& device) {
  if (device.is_cpu()) return cpu_allocator();
#ifdef NANOCNN_WITH_CUDA
  return cuda::cuda_allocator(device.index);  // raises ValueError for an unusable device
#else
  throw ValueError(detail::concat("device \"", device.str(), "\" is not supported: ",
                                  cuda_unavailable_reason()));
#endif
}

#ifndef NANOCNN_WITH_CUDA
size_t cuda_memory_allocated(int) { return 0; }
size_t cuda_memory_reserved(int) { return 0; }
void release_cuda_cache() {}
#endif

Storage::Storage(size_t bytes, Device device)
    : bytes_(bytes), device_(device), allocator_(allocator_for(device)) {
  data_ = allocator_->allocate(bytes);
}

Storage::Storage(void* data, size_t bytes, Device device, std::function<void()> release)
    : data_(data), bytes_(bytes), device_(device), release_(std::move(release)) {}

Storage::~Storage() {
  if (allocator_ != nullptr) allocator_->deallocate(data_, bytes_);
  else if (release_) release_();
}

}  // namespace nanocnn
