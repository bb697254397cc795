// cpu/dense_kernels.h: internal contract between the dense layer (dense.cpp) and its SIMD kernel
// (dense_avx512.cpp) for the backward pass at a small batch. Nothing else uses it; the
// portability rule of gemm_kernels.h applies.
#pragma once

#include <cstdint>

namespace nanocnn::cpu::dense_detail {

// The most batch rows the kernel below takes.
constexpr int64_t kThinMaxBatch = 4;

// Both gradients of y = x w^T at once, one pass over `rows` rows of w and dw (a block of the
// layer's outputs): x and dx are (N, in), w and dw (rows, in), and dy[n * ldy + o] is the output
// gradient of batch row n, output o of the block (N <= kThinMaxBatch, rows >= 1):
//   dx[n, j] = sum over o = 0, 1, ..., rows-1 (in this order, from 0) of dy[n, o] * w[o, j]
//   dw[o, j] = sum over n = 0, 1, ..., N-1 (in this order) of dy[n, o] * x[n, j]
using ThinBackward = void (*)(int64_t N, int64_t in, int64_t rows, const float* dy, int64_t ldy,
                              const float* x, const float* w, float* dx, float* dw);

struct DenseKernelSet {
  const char* name;
  ThinBackward thin_backward;
};

// Defined in dense_avx512.cpp (x86-64 builds only); use only after checking the CPU.
extern const DenseKernelSet kAvx512DenseKernels;

}  // namespace nanocnn::cpu::dense_detail
