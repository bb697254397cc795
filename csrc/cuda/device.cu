// device.cu: the CUDA runtime side of nanocnn: which GPUs are usable, selecting one, moving
// bytes, waiting, and turning CUDA errors into Python exceptions.
//
// The runtime is linked statically, so this module imports on machines without a driver: there
// cudaGetDeviceCount returns cudaErrorInsufficientDriver (or cudaErrorNoDevice) and nanocnn runs
// on the CPU only.
//
// The one stream. Every kernel, memset and copy of nanocnn runs on the legacy default stream of
// its device, so work on one device executes in the order it was queued. Two things rely on it:
// the caching allocator (allocator.cu) hands a freed block to the next op while kernels reading
// it may still be queued (they run first), and copy_bytes to the host waits for every kernel
// queued before it (so `t.to("cpu")` sees finished results).
//
// Architectures. A GPU older than every architecture compiled in (see CMakeLists.txt) has no
// kernel image; instead of a baffling "invalid device function" at the first op, the first use
// of each device launches nothing but asks for the attributes of a tiny kernel, which fails the
// same way, and reports the GPU, its compute capability and how to rebuild.
#include <cuda_runtime.h>

#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/device.h"
#include "core/error.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

#define NC_STRINGIFY_(...) #__VA_ARGS__
#define NC_STRINGIFY(...) NC_STRINGIFY_(__VA_ARGS__)  // the list holds commas
#ifdef __CUDA_ARCH_LIST__
#define NC_COMPILED_ARCHS NC_STRINGIFY(__CUDA_ARCH_LIST__)  // e.g. "750,800,900,1000,1200"
#else
#define NC_COMPILED_ARCHS "unknown"
#endif

namespace nanocnn {

namespace {

// cudaGetDeviceCount, asked once: the set of visible devices does not change in a process.
struct DeviceCount {
  cudaError_t status = cudaSuccess;
  int count = 0;
};

const DeviceCount& device_count() {
  static const DeviceCount result = [] {
    DeviceCount r;
    r.status = cudaGetDeviceCount(&r.count);
    if (r.status != cudaSuccess) {
      r.count = 0;
      cudaGetLastError();  // clear the error so later calls start clean
    }
    return r;
  }();
  return result;
}

// The outcome of probing one device for a kernel image, computed on its first use.
struct DeviceProbe {
  std::once_flag once;
  std::string problem;  // empty: usable
};

__global__ void probe_kernel() {}

std::string name_and_capability(int index, int* major, int* minor) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    *major = *minor = 0;
    return "unknown GPU";
  }
  *major = prop.major;
  *minor = prop.minor;
  return prop.name;
}

// Makes `index` current and asks for probe_kernel's attributes. Returns "" when this build has
// code the device can run, else the reason in words. Leaves `index` as the current device.
std::string probe_device(int index) {
  cudaError_t status = cudaSetDevice(index);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return detail::concat("cuda:", index, " cannot be used: ", cudaGetErrorName(status), " (",
                          cudaGetErrorString(status), ")");
  }
  cudaFuncAttributes attributes{};
  status = cudaFuncGetAttributes(&attributes, probe_kernel);
  if (status == cudaSuccess) return "";
  cudaGetLastError();
  int major = 0, minor = 0;
  const std::string name = name_and_capability(index, &major, &minor);
  if (status == cudaErrorNoKernelImageForDevice || status == cudaErrorInvalidDeviceFunction) {
    return detail::concat(
        "cuda:", index, " (", name, ", compute capability ", major, ".", minor,
        ") cannot run this build of nanocnn, which holds GPU code for compute capabilities ",
        NC_COMPILED_ARCHS, " only; rebuild for this GPU, e.g. CUDAARCHS=", major, minor,
        " pip install --no-build-isolation .  (", cudaGetErrorName(status), ")");
  }
  return detail::concat("cuda:", index, " (", name, ") cannot be used: ",
                        cudaGetErrorName(status), " (", cudaGetErrorString(status), ")");
}

// The probe result of device `index` (0 <= index < count), probing it the first time.
const std::string& probe_result(int index) {
  static DeviceProbe* probes = new DeviceProbe[device_count().count > 0 ? device_count().count
                                                                          : 1];  // never freed
  DeviceProbe& p = probes[index];
  std::call_once(p.once, [&] {
    int previous = -1;
    if (cudaGetDevice(&previous) != cudaSuccess) {
      cudaGetLastError();
      previous = -1;
    }
    p.problem = probe_device(index);
    if (previous >= 0 && previous != index) {
      if (cudaSetDevice(previous) != cudaSuccess) cudaGetLastError();
    }
  });
  return p.problem;
}

std::string plural_devices(int count) {
  return detail::concat(count, count == 1 ? " CUDA device" : " CUDA devices");
}

// Errors after which the CUDA context of the process is unusable (the "sticky" ones).
bool is_sticky(cudaError_t status) {
  switch (status) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchTimeout:
      return true;
    default:
      return false;
  }
}

}  // namespace

bool built_with_cuda() { return true; }

int cuda_device_count() { return device_count().count; }

bool cuda_available() { return device_count().count > 0 && probe_result(0).empty(); }

std::string cuda_unavailable_reason() {
  const DeviceCount& dc = device_count();
  if (dc.status != cudaSuccess) {
    return std::string("no usable CUDA device (") + cudaGetErrorName(dc.status) + ": " +
           cudaGetErrorString(dc.status) + ")";
  }
  if (dc.count == 0) return "no CUDA device was found";
  const std::string& problem = probe_result(0);
  if (!problem.empty()) return problem;
  return "";  // available
}

namespace cuda {

void check_device(int index) {
  const DeviceCount& dc = device_count();
  if (dc.count == 0) {
    throw ValueError(detail::concat("device \"cuda:", index, "\" is not supported: ",
                                    cuda_unavailable_reason()));
  }
  if (index < 0 || index >= dc.count) {
    throw ValueError(detail::concat("cuda:", index, " requested but only ",
                                    plural_devices(dc.count), " (cuda:0",
                                    dc.count > 1 ? detail::concat(" .. cuda:", dc.count - 1) : "",
                                    ") ", dc.count == 1 ? "is" : "are", " visible"));
  }
  const std::string& problem = probe_result(index);
  if (!problem.empty()) throw ValueError(problem);
}

void use_device(int index) {
  check_device(index);  // after the first call for a device: a bounds check and a flag
  int current = -1;
  NC_CUDA_CHECK(cudaGetDevice(&current), "use_device");
  if (current != index) NC_CUDA_CHECK(cudaSetDevice(index), "use_device");
}

int current_device() {
  int current = 0;
  NC_CUDA_CHECK(cudaGetDevice(&current), "current_device");
  return current;
}

[[noreturn]] void raise_cuda_error(cudaError_t status, const char* op, const char* what) {
  cudaGetLastError();  // clear a non-sticky error so that the next call starts clean
  std::string message = detail::concat(op, ": CUDA error ", cudaGetErrorName(status), " (",
                                       cudaGetErrorString(status), ") in ", what);
  if (status == cudaErrorMemoryAllocation) throw MemoryError(message);
  if (status == cudaErrorNoKernelImageForDevice || status == cudaErrorInvalidDeviceFunction) {
    message += detail::concat("; this build holds GPU code for compute capabilities ",
                              NC_COMPILED_ARCHS, " only: rebuild with CUDAARCHS=<your GPU's>");
  }
  if (is_sticky(status)) {
    message += "; the GPU context of this process is now unusable: restart Python";
  }
  throw std::runtime_error(message);
}

}  // namespace cuda

std::string cuda_device_name(int index) {
  cuda::check_device(index);
  cudaDeviceProp prop{};
  NC_CUDA_CHECK(cudaGetDeviceProperties(&prop, index), "cuda_get_device_name");
  return prop.name;
}

// ---- moving bytes ------------------------------------------------------------------------------

void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device,
                size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (dst_device.is_cuda() && src_device.is_cuda() && dst_device.index != src_device.index) {
    // Ordered after the work queued on both devices (and on the current one).
    cuda::use_device(dst_device.index);
    cuda::check_device(src_device.index);
    NC_CUDA_CHECK(cudaMemcpyPeer(dst, dst_device.index, src, src_device.index, bytes),
                  "copy between devices");
    return;
  }
  // Host <-> device, or within one device: on the device's default stream, so ordered after
  // the kernels queued there. To the host, cudaMemcpy returns when the bytes have arrived; from
  // pageable host memory, once they are staged (the source may then be reused).
  const Device& gpu = dst_device.is_cuda() ? dst_device : src_device;
  cuda::use_device(gpu.index);
  const cudaMemcpyKind kind = dst_device.is_cpu()   ? cudaMemcpyDeviceToHost
                              : src_device.is_cpu() ? cudaMemcpyHostToDevice
                                                    : cudaMemcpyDeviceToDevice;
  NC_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind), "copy");
}

void zero_bytes(void* dst, const Device& device, size_t bytes) {
  if (bytes == 0) return;
  if (device.is_cpu()) {
    std::memset(dst, 0, bytes);
    return;
  }
  cuda::use_device(device.index);
  NC_CUDA_CHECK(cudaMemset(dst, 0, bytes), "zeros");
}

void synchronize(const Device& device) {
  if (device.is_cpu()) return;
  cuda::use_device(device.index);
  NC_CUDA_CHECK(cudaDeviceSynchronize(), "synchronize");
}

}  // namespace nanocnn
