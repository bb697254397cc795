#include "core/tensor.h"

#include <cstring>
#include <limits>

#include "core/device.h"
#include "core/error.h"

namespace nanocnn {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    NC_CHECK(d >= 0, "tensor dimensions must be >= 0, got shape ", shape_str(shape));
    NC_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / 4 / d,
             "tensor of shape ", shape_str(shape), " is too large");
    n *= d;
  }
  return n;
}

Tensor Tensor::empty(const Shape& shape, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(numel_of(shape)) * sizeof(float),
                                         device);
  return t;
}

Tensor Tensor::borrow(float* data, const Shape& shape, Device device,
                      std::function<void()> release) {
  Tensor t;
  t.shape_ = shape;
  t.storage_ = std::make_shared<Storage>(
      data, static_cast<size_t>(numel_of(shape)) * sizeof(float), device, std::move(release));
  return t;
}

Tensor Tensor::zeros(const Shape& shape, Device device) {
  Tensor t = empty(shape, device);
  zero_bytes(t.data(), device, t.storage_->bytes());
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  NC_CHECK(numel_of(shape) == numel(), "cannot reshape a tensor of shape ", shape_str(shape_),
           " (", numel(), " elements) to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::to(const Device& target) const {
  Tensor t = empty(shape_, target);
  copy_bytes(t.data(), target, data(), device(), static_cast<size_t>(numel()) * sizeof(float));
  return t;
}

}  // namespace nanocnn
