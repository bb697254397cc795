// cpu/pool_kernels.h: internal contract between max pooling (pool2d.cpp) and its SIMD kernels
// (pool_avx512.cpp) for the 2x2 / stride 2 / unpadded window. Nothing else uses it; the
// portability rule of gemm_kernels.h applies.
#pragma once

#include <cstdint>

namespace nanocnn::cpu::pool_detail {

// One (H, W) plane with row stride W, P x Q windows (2P <= H, 2Q <= W):
//   forward:  out[p*Q + q] = the winner of window (p, q)  (the rule of pool2d.cpp), and when
//             codes is not null codes[p*Q + q] = its cell, 0..3 row-major, or 4 if the winner is
//             not above 0 (NaN included)
//   backward: rows 0 .. 2P-1, columns 0 .. 2Q-1 of out get grad[p*Q + q] at the winner of each
//             window and 0 elsewhere; columns 2Q .. W-1 of those rows get 0 (rows from 2P on are
//             not written)
//   unpool:   the same from the codes instead of the plane (a code of 4 sends nothing)
using Pool2x2Forward = void (*)(const float* plane, int64_t W, int64_t P, int64_t Q, float* out,
                                float* codes);
// The forward pass (with codes) over max(0, cell + bias) instead of the cells: the direct
// convolution's bias and ReLU, with the same two instructions as its tile stores, so the result
// is bit-identical to storing the conv's output first and pooling after.
using Pool2x2ForwardReLU = void (*)(const float* plane, int64_t W, int64_t P, int64_t Q,
                                    float bias, float* out, float* codes);
using Pool2x2Backward = void (*)(const float* plane, const float* grad, int64_t W, int64_t P,
                                 int64_t Q, float* out);
using Pool2x2Unpool = void (*)(const float* codes, const float* grad, int64_t W, int64_t P,
                               int64_t Q, float* out);

// Whole tensors of planes that are exactly 2P x 2Q with Q in {1, 2, 4, 8}, as `windows` =
// N*C*P*Q windows in order: out[j] / codes[j] / the gradient of window j, the same rules.
using Pool2x2ForwardPacked = void (*)(const float* x, int64_t windows, int64_t Q, float* out,
                                      float* codes);
using Pool2x2BackwardPacked = void (*)(const float* x, const float* grad, int64_t windows,
                                       int64_t Q, float* out);
using Pool2x2UnpoolPacked = void (*)(const float* codes, const float* grad, int64_t windows,
                                     int64_t Q, float* out);

struct PoolKernelSet {
  const char* name;
  Pool2x2Forward forward;
  Pool2x2ForwardReLU forward_relu;
  Pool2x2Backward backward;
  Pool2x2Unpool unpool;
  Pool2x2ForwardPacked forward_packed;
  Pool2x2BackwardPacked backward_packed;
  Pool2x2UnpoolPacked unpool_packed;
};

// Defined in pool_avx512.cpp (x86-64 builds only); use only after checking the CPU.
extern const PoolKernelSet kAvx512PoolKernels;

}  // namespace nanocnn::cpu::pool_detail
