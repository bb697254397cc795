// dense.cpp: the fully connected layer on the CPU, as three GEMMs.
// Layout: x is (N,in), w is (out,in) (PyTorch's layout), b is (out), y is (N,out).
//   forward:  y  (N, out) = x (N, in) @ w^T (in, out) + b
//   backward: dx (N, in)  = dy (N, out) @ w (out, in)
//             dw (out,in) = dy^T (out, N) @ x (N, in)
//             db (out)    = column sums of dy
// The transposes cost nothing: the GEMM's packing reads either layout.
// Threads: with exactly two, the backward pass runs its two GEMMs side by side, one per thread
// (they have the same flop count, N*in*out each, and a GEMM of these shapes on one thread runs
// closer to peak than split in two); otherwise each GEMM is split over all threads in turn.
#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"

namespace nanocnn::cpu {

void linear_forward(int64_t N, int64_t in, int64_t out, const float* x, const float* w,
                    const float* b, float* y) {
  sgemm(false, true, N, out, in, 1.f, x, in, w, in, 0.f, y, out);
  if (b == nullptr) return;
  parallel_for(N, out, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      float* row = y + n * out;
#pragma omp simd
      for (int64_t o = 0; o < out; ++o) row[o] += b[o];
    }
  });
}

void linear_backward(int64_t N, int64_t in, int64_t out, const float* dy, const float* x,
                     const float* w, float* dx, float* dw, float* db) {
  auto input_grad = [&] { sgemm(false, false, N, in, out, 1.f, dy, out, w, in, 0.f, dx, in); };
  auto weight_grad = [&] { sgemm(true, false, out, in, N, 1.f, dy, out, x, in, 0.f, dw, in); };
  if (get_num_threads() == 2 && !in_parallel() && 2.0 * N * in * out >= 4.0e6) {
    parallel_for(2, int64_t{1} << 20, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) i == 0 ? input_grad() : weight_grad();
    });
  } else {
    input_grad();
    weight_grad();
  }
  for (int64_t o = 0; o < out; ++o) db[o] = 0.f;
  for (int64_t n = 0; n < N; ++n) {
    const float* row = dy + n * out;
#pragma omp simd
    for (int64_t o = 0; o < out; ++o) db[o] += row[o];
  }
}

}  // namespace nanocnn::cpu
