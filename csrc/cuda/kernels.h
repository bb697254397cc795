// cuda/kernels.h: the GPU kernels behind the op table, on raw device pointers.
//
// Plain C++ (no CUDA types), so ops.cpp, compiled by the host compiler, can call them. Every
// function mirrors its nanocnn::cpu:: namesake in cpu/kernels.h (same arguments, same results
// within the tolerances of tests/conftest.py), with these differences:
//   - every pointer is device memory on the current device (ops.cpp selects it with
//     use_device() before the call);
//   - kernels are queued on that device's default stream and return without waiting; errors of
//     the launch are raised at once (NC_CUDA_CHECK in common.cuh), errors of the execution at
//     the next synchronising call;
//   - scalar results (a loss, a count) are written to a device float instead of returned, so a
//     training step never waits for the GPU;
//   - labels of the hard-label loss and metric are device int64 class ids already checked to
//     lie in [0, C) (ops.cpp checks them on the host before copying them up).
// Kernel files mirror csrc/cpu/ file for file: conv2d.cu, pool2d.cu, activation.cu, dense.cu,
// loss.cu, optim.cu, gemm.cu.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/kernels.h"  // Conv2dShape, Pool2dShape, dropout_uniform

namespace nanocnn::cuda {

// Makes `index` the calling thread's current device (cheap when it already is).
void use_device(int index);

// conv2d.cu: x is (N,C,H,W), w is (K,C,R,S), b is (K) or null, y is (N,K,P,Q).
void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b,
                    float* y);
void conv2d_backward(const Conv2dShape& s, const float* dy, const float* x, const float* w,
                     float* dx, float* dw, float* db);

// pool2d.cu
void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y);
void max_pool2d_backward(const Pool2dShape& s, const float* dy, const float* x, float* dx);

// activation.cu (element-wise and row-wise)
void relu_forward(int64_t n, const float* x, float* y);
void relu_backward(int64_t n, const float* dy, const float* y, float* dx);
void sigmoid_forward(int64_t n, const float* x, float* y);
void sigmoid_backward(int64_t n, const float* dy, const float* y, float* dx);
void softmax_forward(int64_t N, int64_t C, const float* x, float* y);
void softmax_backward(int64_t N, int64_t C, const float* dy, const float* y, float* dx);
void mul(int64_t n, const float* a, const float* b, float* y);
void dropout_mask(int64_t n, float rate, uint64_t seed, float* mask);

// dense.cu: x is (N,in), w is (out,in), b is (out) or null, y is (N,out).
void linear_forward(int64_t N, int64_t in, int64_t out, const float* x, const float* w,
                    const float* b, float* y);
void linear_backward(int64_t N, int64_t in, int64_t out, const float* dy, const float* x,
                     const float* w, float* dx, float* dw, float* db);

// loss.cu: the loss (mean) goes to *loss, a device float.
void softmax_cross_entropy(int64_t N, int64_t C, const float* logits, const int64_t* labels,
                           float* dlogits, float* loss);
void softmax_cross_entropy_soft(int64_t N, int64_t C, const float* logits, const float* targets,
                                float* dlogits, float* loss);
void sigmoid_binary_cross_entropy(int64_t n, const float* logits, const float* targets,
                                  float* dlogits, float* loss);
void count_correct_sparse(int64_t N, int64_t C, const float* scores, const int64_t* labels,
                          float* count);
void count_correct_dense(int64_t N, int64_t C, const float* scores, const float* targets,
                         float threshold, float* count);

// optim.cu (in place)
void sgd_update(int64_t n, float* p, const float* g, float* velocity, float lr, float momentum,
                bool nesterov);
void adam_update(int64_t n, float* p, const float* g, float* m, float* v, float lr, float beta1,
                 float beta2, float epsilon, float bias1, float bias2);
void rmsprop_update(int64_t n, float* p, const float* g, float* ms, float* mom, float* mg,
                    float lr, float rho, float momentum, float epsilon);

}  // namespace nanocnn::cuda
