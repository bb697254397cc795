// activation.cu: ReLU, sigmoid, softmax and the element-wise helpers of dropout on the GPU.
// The GPU twin of cpu/activation.cpp, with the same formulas and the same NaN behaviour:
//   relu:     y = x < 0 ? 0 : x (NaN stays NaN);  dx = y <= 0 ? 0 : dy (a NaN y passes dy)
//   sigmoid:  e = exp(-|x|), y = x >= 0 ? 1 / (1 + e) : e / (1 + e) (exp never overflows);
//             dx = dy y (1 - y)
//   softmax:  per row of (N, C), exp(x - max) / sum; dx = y (dy - sum_j dy_j y_j)
//   dropout:  mask_i = dropout_uniform(seed, i) < rate ? 0 : 1 / (1 - rate), the very function
//             the CPU uses (cpu/kernels.h), so both devices draw bit-identical masks.
// Element-wise kernels: one thread per element in a grid-stride loop, coalesced, memory-bound.
// Row-wise kernels: one warp per row (rows spread over blocks of 8 warps); the lanes stride over
// the row's columns and combine with a fixed butterfly, so results do not depend on timing.
// A row with any NaN becomes all NaN, as on the CPU.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/reduce.cuh"

namespace nanocnn::cuda {

namespace {

constexpr int kWarpsPerBlock = kThreads / 32;

// Blocks for one warp per row of N rows, capped (the kernels loop over the rest).
unsigned int blocks_for_rows(int64_t N) { return blocks_for(N, kWarpsPerBlock); }

__global__ void relu_forward_kernel(int64_t n, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    y[i] = v < 0.f ? 0.f : v;
  }
}

__global__ void relu_backward_kernel(int64_t n, const float* __restrict__ dy,
                                     const float* __restrict__ y, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = y[i] <= 0.f ? 0.f : dy[i];
}

__global__ void sigmoid_forward_kernel(int64_t n, const float* __restrict__ x,
                                       float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    const float e = expf(-fabsf(v));  // in (0, 1]
    y[i] = v >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
  }
}

__global__ void sigmoid_backward_kernel(int64_t n, const float* __restrict__ dy,
                                        const float* __restrict__ y, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dy[i] * y[i] * (1.f - y[i]);
}

// x and y are (N, C); warp w of the grid handles rows w, w + warps, ...
__global__ void softmax_forward_kernel(int64_t N, int64_t C, const float* __restrict__ x,
                                       float* __restrict__ y) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; i < N; i += warps) {
    const float* row = x + i * C;
    float* out = y + i * C;
    float m = -INFINITY;
    for (int64_t j = lane; j < C; j += 32) m = fmaxf(m, row[j]);
    m = warp_max(m);
    float sum = 0.f;
    for (int64_t j = lane; j < C; j += 32) sum += expf(row[j] - m);
    sum = warp_sum(sum);
    const float inv = 1.f / sum;
    for (int64_t j = lane; j < C; j += 32) out[j] = expf(row[j] - m) * inv;
  }
}

// dy, y and dx are (N, C); one warp per row as above.
__global__ void softmax_backward_kernel(int64_t N, int64_t C, const float* __restrict__ dy,
                                        const float* __restrict__ y, float* __restrict__ dx) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; i < N; i += warps) {
    const float* g = dy + i * C;
    const float* p = y + i * C;
    float dot = 0.f;
    for (int64_t j = lane; j < C; j += 32) dot += g[j] * p[j];
    dot = warp_sum(dot);
    for (int64_t j = lane; j < C; j += 32) dx[i * C + j] = p[j] * (g[j] - dot);
  }
}

__global__ void mul_kernel(int64_t n, const float* __restrict__ a, const float* __restrict__ b,
                           float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] * b[i];
}

// `keep` = 1 / (1 - rate), computed once on the host exactly as the CPU kernel does.
__global__ void dropout_mask_kernel(int64_t n, float rate, float keep, uint64_t seed,
                                    float* __restrict__ mask) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    mask[i] = dropout_uniform(seed, static_cast<uint64_t>(i)) < rate ? 0.f : keep;
}

}  // namespace

void relu_forward(int64_t n, const float* x, float* y) {
  if (n == 0) return;
  relu_forward_kernel<<<blocks_for(n), kThreads>>>(n, x, y);
  NC_CUDA_LAUNCH_CHECK("relu");
}

void relu_backward(int64_t n, const float* dy, const float* y, float* dx) {
  if (n == 0) return;
  relu_backward_kernel<<<blocks_for(n), kThreads>>>(n, dy, y, dx);
  NC_CUDA_LAUNCH_CHECK("relu_backward");
}

void sigmoid_forward(int64_t n, const float* x, float* y) {
  if (n == 0) return;
  sigmoid_forward_kernel<<<blocks_for(n), kThreads>>>(n, x, y);
  NC_CUDA_LAUNCH_CHECK("sigmoid");
}

void sigmoid_backward(int64_t n, const float* dy, const float* y, float* dx) {
  if (n == 0) return;
  sigmoid_backward_kernel<<<blocks_for(n), kThreads>>>(n, dy, y, dx);
  NC_CUDA_LAUNCH_CHECK("sigmoid_backward");
}

void softmax_forward(int64_t N, int64_t C, const float* x, float* y) {
  if (N == 0 || C == 0) return;
  softmax_forward_kernel<<<blocks_for_rows(N), kThreads>>>(N, C, x, y);
  NC_CUDA_LAUNCH_CHECK("softmax");
}

void softmax_backward(int64_t N, int64_t C, const float* dy, const float* y, float* dx) {
  if (N == 0 || C == 0) return;
  softmax_backward_kernel<<<blocks_for_rows(N), kThreads>>>(N, C, dy, y, dx);
  NC_CUDA_LAUNCH_CHECK("softmax_backward");
}

void mul(int64_t n, const float* a, const float* b, float* y) {
  if (n == 0) return;
  mul_kernel<<<blocks_for(n), kThreads>>>(n, a, b, y);
  NC_CUDA_LAUNCH_CHECK("mul");
}

void dropout_mask(int64_t n, float rate, uint64_t seed, float* mask) {
  if (n == 0) return;
  const float keep = 1.f / (1.f - rate);  // the CPU kernel's expression, on the host
  dropout_mask_kernel<<<blocks_for(n), kThreads>>>(n, rate, keep, seed, mask);
  NC_CUDA_LAUNCH_CHECK("dropout_mask");
}

}  // namespace nanocnn::cuda
