// optim.cu: the optimizer updates on the GPU, in place, one pass over each parameter. The GPU
// twin of cpu/optim.cpp: the same float expressions in the same order (formulas in ops.h), so
// CPU and GPU agree to a few ulps (nvcc may fuse a multiply and an add into one FMA, which
// rounds once instead of twice). Element-wise and memory-bound: one thread per element in a
// grid-stride loop, coalesced. p, g and the state tensors (velocity, m, v, ms, mom, mg) have
// p's shape; no __restrict__, since an update is in place.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace nanocnn::cuda {

namespace {

// velocity null: plain SGD.
__global__ void sgd_kernel(int64_t n, float* p, const float* g, float* velocity, float lr,
                           float momentum, bool nesterov) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (velocity == nullptr) {
      p[i] -= lr * g[i];
      continue;
    }
    const float v = momentum * velocity[i] - lr * g[i];
    velocity[i] = v;
    p[i] += nesterov ? momentum * v - lr * g[i] : v;
  }
}

// step = lr / bias1 and inv_sqrt_bias2 = 1 / sqrt(bias2), computed on the host as on the CPU.
__global__ void adam_kernel(int64_t n, float* p, const float* g, float* m, float* v, float beta1,
                            float beta2, float epsilon, float step, float inv_sqrt_bias2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = beta1 * m[i] + (1.f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step * mi / (sqrtf(vi) * inv_sqrt_bias2 + epsilon);
  }
}

// mom null without momentum, mg null unless centered.
__global__ void rmsprop_kernel(int64_t n, float* p, const float* g, float* ms, float* mom,
                               float* mg, float lr, float rho, float momentum, float epsilon) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float msi = rho * ms[i] + (1.f - rho) * gi * gi;
    ms[i] = msi;
    float var = msi;
    if (mg != nullptr) {
      const float mgi = rho * mg[i] + (1.f - rho) * gi;
      mg[i] = mgi;
      var = msi - mgi * mgi;
    }
    const float step = gi / (sqrtf(var) + epsilon);
    if (mom != nullptr) {
      const float b = momentum * mom[i] + step;
      mom[i] = b;
      p[i] -= lr * b;
    } else {
      p[i] -= lr * step;
    }
  }
}

}  // namespace

void sgd_update(int64_t n, float* p, const float* g, float* velocity, float lr, float momentum,
                bool nesterov) {
  if (n == 0) return;
  sgd_kernel<<<blocks_for(n), kThreads>>>(n, p, g, velocity, lr, momentum, nesterov);
  NC_CUDA_LAUNCH_CHECK("sgd_update");
}

void adam_update(int64_t n, float* p, const float* g, float* m, float* v, float lr, float beta1,
                 float beta2, float epsilon, float bias1, float bias2) {
  if (n == 0) return;
  const float step = lr / bias1;  // as cpu::adam_update computes them
  const float inv_sqrt_bias2 = 1.f / std::sqrt(bias2);
  adam_kernel<<<blocks_for(n), kThreads>>>(n, p, g, m, v, beta1, beta2, epsilon, step,
                                           inv_sqrt_bias2);
  NC_CUDA_LAUNCH_CHECK("adam_update");
}

void rmsprop_update(int64_t n, float* p, const float* g, float* ms, float* mom, float* mg,
                    float lr, float rho, float momentum, float epsilon) {
  if (n == 0) return;
  rmsprop_kernel<<<blocks_for(n), kThreads>>>(n, p, g, ms, mom, mg, lr, rho, momentum, epsilon);
  NC_CUDA_LAUNCH_CHECK("rmsprop_update");
}

}  // namespace nanocnn::cuda
