// cpu/kernels.h: the CPU kernels behind the op table, on raw float pointers.
//
// Each kernel exists twice with the same signature:
//   nanocnn::cpu::  production (conv2d.cpp, pool2d.cpp, activation.cpp, dense.cpp, loss.cpp)
//   nanocnn::ref::  the plain loops they are tested against (reference.cpp)
// The arguments are already checked (ops.cpp); outputs are written in full (`=`, never `+=`).
#pragma once

#include <cstdint>

#include "ops.h"

namespace nanocnn {

// Sizes of one convolution: x is (N,C,H,W), w is (K,C,R,S), y is (N,K,P,Q) with P = g.out_h,
// Q = g.out_w.
struct Conv2dShape {
  int64_t N, C, H, W, K, R, S;
  Conv2dGeometry g;
};

// Sizes of one pooling: x is (N,C,H,W), y is (N,C,P,Q) with P = g.out_h, Q = g.out_w.
struct Pool2dShape {
  int64_t N, C, H, W;
  Pool2dGeometry g;
};

#define NANOCNN_CPU_KERNELS                                                                      \
  void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b,      \
                      float* y);                                                                 \
  void conv2d_backward(const Conv2dShape& s, const float* dy, const float* x, const float* w,    \
                       float* dx, float* dw, float* db);                                         \
  void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y);                       \
  void max_pool2d_backward(const Pool2dShape& s, const float* dy, const float* x, float* dx);    \
  void relu_forward(int64_t n, const float* x, float* y);                                        \
  void relu_backward(int64_t n, const float* dy, const float* y, float* dx);                     \
  void linear_forward(int64_t N, int64_t in, int64_t out, const float* x, const float* w,        \
                      const float* b, float* y);                                                 \
  void linear_backward(int64_t N, int64_t in, int64_t out, const float* dy, const float* x,      \
                       const float* w, float* dx, float* dw, float* db);                         \
  double softmax_cross_entropy(int64_t N, int64_t C, const float* logits, const int64_t* labels, \
                               float* dlogits);                                                  \
  double softmax_cross_entropy_soft(int64_t N, int64_t C, const float* logits,                   \
                                    const float* targets, float* dlogits);                       \
  double sigmoid_binary_cross_entropy(int64_t n, const float* logits, const float* targets,      \
                                      float* dlogits);

namespace cpu {
NANOCNN_CPU_KERNELS
}  // namespace cpu
namespace ref {
NANOCNN_CPU_KERNELS
}  // namespace ref

#undef NANOCNN_CPU_KERNELS

}  // namespace nanocnn
