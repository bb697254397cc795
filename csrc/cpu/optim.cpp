// optim.cpp: the optimizer updates on the CPU, in place, one pass over each parameter.
//
// p is the parameter, g its gradient; the state tensors (velocity, m, v, ms, mom, mg) have p's
// shape. Element-wise and memory-bound (SGD with momentum reads 3 and writes 2 floats per
// element), split over threads in contiguous chunks; the formulas are in ops.h.
#include <cmath>

#include "core/parallel.h"
#include "cpu/kernels.h"

namespace nanocnn::cpu {

void sgd_update(int64_t n, float* p, const float* g, float* velocity, float lr, float momentum,
                bool nesterov) {
  parallel_for(n, 2, [&](int64_t begin, int64_t end) {
    if (velocity == nullptr) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) p[i] -= lr * g[i];
      return;
    }
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float v = momentum * velocity[i] - lr * g[i];
      velocity[i] = v;
      p[i] += nesterov ? momentum * v - lr * g[i] : v;
    }
  });
}

void adam_update(int64_t n, float* p, const float* g, float* m, float* v, float lr, float beta1,
                 float beta2, float epsilon, float bias1, float bias2) {
  const float step = lr / bias1;
  const float inv_sqrt_bias2 = 1.f / std::sqrt(bias2);
  parallel_for(n, 8, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float gi = g[i];
      const float mi = beta1 * m[i] + (1.f - beta1) * gi;
      const float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] -= step * mi / (std::sqrt(vi) * inv_sqrt_bias2 + epsilon);
    }
  });
}

void rmsprop_update(int64_t n, float* p, const float* g, float* ms, float* mom, float* mg,
                    float lr, float rho, float momentum, float epsilon) {
  parallel_for(n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float gi = g[i];
      const float msi = rho * ms[i] + (1.f - rho) * gi * gi;
      ms[i] = msi;
      float var = msi;
      if (mg != nullptr) {
        const float mgi = rho * mg[i] + (1.f - rho) * gi;
        mg[i] = mgi;
        var = msi - mgi * mgi;
      }
      const float step = gi / (std::sqrt(var) + epsilon);
      if (mom != nullptr) {
        mom[i] = momentum * mom[i] + step;
        p[i] -= lr * mom[i];
      } else {
        p[i] -= lr * step;
      }
    }
  });
}

}  // namespace nanocnn::cpu
