// tensor.h: the one tensor type of nanocnn.
//
// A Tensor is a dense, C-contiguous float32 array on one device: a shape plus a shared Storage.
// Copies of a Tensor (and reshape) share the storage; Tensor::empty/zeros make new storage.
// Layout conventions used by every op:
//   activations  (N, C, H, W)  "NCHW", row-major, W fastest
//   conv weights (K, C, R, S)  K output channels, C input channels, R x S kernel
//   dense        x is (N, in), w is (out, in), y is (N, out)
// Gradient convention: a backward op returns fresh tensors (it writes with `=`, never `+=` into
// caller memory); accumulation across steps is the caller's business.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/allocator.h"

namespace nanocnn {

using Shape = std::vector<int64_t>;

int64_t numel_of(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (no storage), used for "no bias"

  static Tensor empty(const Shape& shape, Device device = Device{});
  static Tensor zeros(const Shape& shape, Device device = Device{});
  // A tensor over existing contiguous float32 memory (see Storage's borrowing constructor).
  static Tensor borrow(float* data, const Shape& shape, Device device,
                       std::function<void()> release);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t i) const { return shape_.at(i < 0 ? i + dim() : i); }
  int64_t numel() const { return numel_of(shape_); }
  const Device& device() const { return storage_->device(); }

  float* data() { return static_cast<float*>(storage_->data()); }
  const float* data() const { return static_cast<const float*>(storage_->data()); }

  // Same storage, new shape with the same number of elements.
  Tensor reshape(const Shape& shape) const;
  // A copy on `device` (a new tensor even when the device is the same).
  Tensor to(const Device& device) const;

  const std::shared_ptr<Storage>& storage() const { return storage_; }

 private:
  Shape shape_;
  std::shared_ptr<Storage> storage_;
};

}  // namespace nanocnn
