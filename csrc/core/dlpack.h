// dlpack.h: the DLPack data-exchange ABI (the unversioned, pre-1.0 form), as laid out by the
// DLPack specification, for zero-copy exchange with PyTorch, NumPy, CuPy, JAX, ...
//
// A producer hands out a ManagedTensor inside a Python capsule named "dltensor"; the consumer
// renames the capsule "used_dltensor" and calls `deleter` when it no longer needs the memory.
// Only the layout matters here (these structs cross library boundaries), so the field order and
// types follow the specification exactly.
#pragma once

#include <cstdint>

namespace nanocnn::dlpack {

enum DeviceKind : int32_t { kCPU = 1, kCUDA = 2, kCUDAHost = 3 };
enum TypeCode : uint8_t { kInt = 0, kUInt = 1, kFloat = 2, kBfloat = 4 };

struct Device {
  int32_t device_type;  // DeviceKind
  int32_t device_id;
};

struct DataType {
  uint8_t code;  // TypeCode
  uint8_t bits;
  uint16_t lanes;
};

struct TensorView {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null means compact row-major
  uint64_t byte_offset;
};

struct ManagedTensor {
  TensorView dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

constexpr const char* kCapsuleName = "dltensor";
constexpr const char* kUsedCapsuleName = "used_dltensor";

}  // namespace nanocnn::dlpack
