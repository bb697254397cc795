#include "core/allocator.h"

#include <cstdlib>
#include <cstring>

#include "core/device.h"
#include "core/error.h"

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

class AlignedHostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    // aligned_alloc wants a size that is a multiple of the alignment; 0 bytes still gets a block
    // so that every Storage has a valid, distinct pointer.
    const size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
    void* ptr = std::aligned_alloc(kHostAlignment, rounded == 0 ? kHostAlignment : rounded);
    if (ptr == nullptr) {
      throw MemoryError(detail::concat("out of host memory: could not allocate ", bytes,
                                       " bytes"));
    }
    return ptr;
  }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
};

}  // namespace

Allocator* cpu_allocator() {
  static AlignedHostAllocator allocator;
  return &allocator;
}

Allocator* allocator_for(const Device& device) {
  if (device.is_cpu()) return cpu_allocator();
  // GPU memory arrives with the CUDA backend; until then every tensor lives on the host.
  throw ValueError(detail::concat("device \"", device.str(), "\" is not supported: ",
                                  cuda_unavailable_reason()));
}

Storage::Storage(size_t bytes, Device device)
    : bytes_(bytes), device_(device), allocator_(allocator_for(device)) {
  data_ = allocator_->allocate(bytes);
}

Storage::~Storage() { allocator_->deallocate(data_, bytes_); }

}  // namespace nanocnn
