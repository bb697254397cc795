// activation.cpp: ReLU, sigmoid, softmax and the element-wise helpers of dropout on the CPU.
// Element-wise and memory-bound: one pass, split over threads in contiguous chunks (softmax: over
// rows), with loops simple enough for the compiler to vectorise. For ReLU both operands are
// loaded unconditionally so that the select compiles to a SIMD blend: a `y > 0 ? dy[i] : 0`
// that loads dy only when needed stays a scalar branch, mispredicted half the time after ReLU
// (measured 35x slower on 1M elements).
//   forward:   y = max(x, 0), NaN stays NaN (x < 0 is false for NaN)
//   backward:  dx = dy where y > 0, else 0 (from the forward *output*; a NaN y passes dy)
// sigmoid: y = 1 / (1 + exp(-x)), computed as exp(x) / (1 + exp(x)) for x < 0 so exp never
// overflows; dx = dy y (1 - y). softmax per row of (N, C), after subtracting the row maximum;
// dx = y (dy - sum_j dy_j y_j).
#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "cpu/kernels.h"

namespace nanocnn::cpu {

namespace {

// The ReLU loops are compiled for AVX-512, AVX2 and baseline x86-64, and the loader picks the
// best one this CPU runs (GCC function multi-versioning; elsewhere: the plain loop). Measured on
// 64x16x32x32 activation (4 MiB), one thread, forward: 189 us with SSE2, 92 us with AVX-512.
#if defined(NANOCNN_X86_SIMD) && defined(__GNUC__) && !defined(__clang__)
#define NC_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NC_SIMD_CLONES
#endif

NC_SIMD_CLONES void relu_span(const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : x[i];
}

NC_SIMD_CLONES void relu_backward_span(const float* dy, const float* y, float* dx, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i];
    dx[i] = y[i] <= 0.f ? 0.f : g;
  }
}

}  // namespace

void relu_forward(int64_t n, const float* x, float* y) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    relu_span(x + begin, y + begin, end - begin);
  });
}

void relu_backward(int64_t n, const float* dy, const float* y, float* dx) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    relu_backward_span(dy + begin, y + begin, dx + begin, end - begin);
  });
}

void sigmoid_forward(int64_t n, const float* x, float* y) {
  parallel_for(n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float e = std::exp(-std::fabs(x[i]));  // in (0, 1]
      y[i] = x[i] >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
    }
  });
}

void sigmoid_backward(int64_t n, const float* dy, const float* y, float* dx) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * y[i] * (1.f - y[i]);
  });
}

void softmax_forward(int64_t N, int64_t C, const float* x, float* y) {
  parallel_for(N, 8 * C, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = x + i * C;
      float* out = y + i * C;
      const float m = *std::max_element(row, row + C);
      float sum = 0.f;
      for (int64_t j = 0; j < C; ++j) sum += out[j] = std::exp(row[j] - m);
      const float inv = 1.f / sum;
      for (int64_t j = 0; j < C; ++j) out[j] *= inv;
    }
  });
}

void softmax_backward(int64_t N, int64_t C, const float* dy, const float* y, float* dx) {
  parallel_for(N, 4 * C, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* g = dy + i * C;
      const float* p = y + i * C;
      float dot = 0.f;
      for (int64_t j = 0; j < C; ++j) dot += g[j] * p[j];
      for (int64_t j = 0; j < C; ++j) dx[i * C + j] = p[j] * (g[j] - dot);
    }
  });
}

void mul(int64_t n, const float* a, const float* b, float* y) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = a[i] * b[i];
  });
}

void dropout_mask(int64_t n, float rate, uint64_t seed, float* mask) {
  const float keep = 1.f / (1.f - rate);
  parallel_for(n, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      mask[i] = dropout_uniform(seed, static_cast<uint64_t>(i)) < rate ? 0.f : keep;
  });
}

}  // namespace nanocnn::cpu
