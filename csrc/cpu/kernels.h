// cpu/kernels.h: the CPU kernels behind the op table, on raw float pointers.
//
// Each kernel exists twice with the same signature:
//   nanocnn::cpu::  production (conv2d.cpp, pool2d.cpp, activation.cpp, dense.cpp, loss.cpp,
//                   optim.cpp)
//   nanocnn::ref::  the plain loops they are tested against (reference.cpp)
// The arguments are already checked (ops.cpp); outputs are written in full (`=`, never `+=`),
// except the optimizer updates, which update p and their state in place.
//   dropout_mask: element i is 0 when dropout_uniform(seed, i) < rate, else 1 / (1 - rate)
//                 (dropout_uniform is below, shared with the GPU: every device draws one mask).
//   count_correct_dense: C > 1 compares first-argmax of scores and targets per row; C == 1
//                 compares (score > threshold) with (target > 0.5).
//   adam_update: bias1 = 1 - beta1^t, bias2 = 1 - beta2^t.
//   rmsprop_update: mom is null when momentum == 0, mg null unless centered.
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
                                      float* dlogits);                                           \
  void sigmoid_forward(int64_t n, const float* x, float* y);                                     \
  void sigmoid_backward(int64_t n, const float* dy, const float* y, float* dx);                  \
  void softmax_forward(int64_t N, int64_t C, const float* x, float* y);                          \
  void softmax_backward(int64_t N, int64_t C, const float* dy, const float* y, float* dx);       \
  void mul(int64_t n, const float* a, const float* b, float* y);                                 \
  void dropout_mask(int64_t n, float rate, uint64_t seed, float* mask);                          \
  int64_t count_correct_sparse(int64_t N, int64_t C, const float* scores, const int64_t* labels); \
  int64_t count_correct_dense(int64_t N, int64_t C, const float* scores, const float* targets,   \
                              float threshold);                                                  \
  void sgd_update(int64_t n, float* p, const float* g, float* velocity, float lr, float momentum,\
                  bool nesterov);                                                                \
  void adam_update(int64_t n, float* p, const float* g, float* m, float* v, float lr,            \
                   float beta1, float beta2, float epsilon, float bias1, float bias2);           \
  void rmsprop_update(int64_t n, float* p, const float* g, float* ms, float* mom, float* mg,     \
                      float lr, float rho, float momentum, float epsilon);

namespace cpu {
NANOCNN_CPU_KERNELS
// The production convolution with its fusions (conv2d_forward/backward above are these with
// relu = false / relu_y = nullptr):
//   relu:   y = max(conv + b, 0) in the same pass that writes y
//   relu_y: dy is read as dy * (relu_y > 0) (the ReLU backward folded into the copies of dy)
//   dx == nullptr: no input gradient (nothing of its work is done)
//   pooled (forward): also max_pool2d(y) with a 2x2 window and stride 2, (N, K, P/2, Q/2),
//           computed image by image while y is in cache, and when codes is not null each
//           window's winner code (max_pool2x2_forward_codes); y may then be nullptr: it is not
//           stored at all
//   codes (backward): dy is the gradient of that pooled output, (N, K, P/2, Q/2), routed to each
//           window's winning cell by the codes (which carry the ReLU's mask too), image by image
void conv2d_forward_fused(const Conv2dShape& s, const float* x, const float* w, const float* b,
                          bool relu, float* y, float* pooled = nullptr, float* codes = nullptr);
void conv2d_backward_fused(const Conv2dShape& s, const float* dy, const float* relu_y,
                           const float* codes, const float* x, const float* w, float* dx,
                           float* dw, float* db);
// The 2x2 / stride 2 max pool (pool2d.cpp) with each window's winner code: its cell, 0..3 in
// row-major order, or 4 when the winner is not above 0 (NaN included), and the backward pass from
// those codes alone: dx gets dy at each coded cell, 0 elsewhere (4: nowhere).
void max_pool2x2_forward_codes(const Pool2dShape& s, const float* x, float* y, float* codes);
void max_pool2x2_unpool(const Pool2dShape& s, const float* codes, const float* dy, float* dx);
// The same into planes with longer rows: plane i of dx starts at dx + i * plane and holds H rows
// of ld >= W floats; every float of it is written (zero outside the windows, in the columns past
// W and after the H rows). The direct convolution's backward unpools straight into its flat grid.
void max_pool2x2_unpool_rows(const Pool2dShape& s, const float* codes, const float* dy, float* dx,
                             int64_t ld, int64_t plane);
// max_pool2x2_forward_codes of relu(x + b[c]) (b may be null: 0), read where a convolution left
// it: plane i (channel i % C) starts at x + i * plane and has H rows of ld >= W floats. The bias
// and ReLU are the same instructions as the direct convolution's tile stores (conv_avx512.cpp
// fwd_tile), so this equals storing y first and pooling after, bit for bit, without y.
// AVX-512 only, like that convolution (raises elsewhere).
void max_pool2x2_forward_codes_relu(const Pool2dShape& s, const float* x, int64_t ld,
                                    int64_t plane, const float* b, float* y, float* codes);
// y (N, C, H, W) <- x (N, H, W, C): a channels-last batch into the internal layout (layout.cpp).
void nhwc_to_nchw(int64_t N, int64_t H, int64_t W, int64_t C, const float* x, float* y);
// The 2x2 / stride 2 / unpadded pooling geometry of an (H, W) input.
Pool2dGeometry pool2x2_geometry(int64_t H, int64_t W);
}  // namespace cpu
namespace ref {
NANOCNN_CPU_KERNELS
}  // namespace ref

#undef NANOCNN_CPU_KERNELS

// The dropout draw for element i: a uniform number in [0, 1) from a counter-based hash
// (splitmix64 finaliser) of the seed and the index, so that it needs no state and every device
// and thread count gives the same mask. Defined inline so CUDA code can share it.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline float dropout_uniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // top 24 bits
}

}  // namespace nanocnn
