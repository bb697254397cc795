// dense.cu: the fully connected layer on the GPU, as three products of gemm.cuh.
//
// Layout: x is (N,in), w is (out,in) (PyTorch's layout), b is (out), y is (N,out).
//   forward:  y  (N, out)  = x (N, in) @ w^T (in, out) + b     bias fused into the store
//   backward: dx (N, in)   = dy (N, out) @ w (out, in)
//             dw (out, in) = dy^T (out, N) @ x (N, in)         long reduction: fixed chunks
//             db (out)     = column sums of dy                  (bias_gradient, fixed order)
// The transposes cost nothing: a loader reads either layout (MatrixAlongK / MatrixAlongI).
// Rows of the batch go in groups of at most 2^30 per launch (one group in practice).
#include <algorithm>
#include <vector>

#include "cuda/gemm.cuh"
#include "cuda/kernels.h"

namespace nanocnn::cuda {

void linear_forward(int64_t N, int64_t in, int64_t out, const float* x, const float* w,
                    const float* b, float* y) {
  for (int64_t n0 = 0; n0 < N; n0 += kMaxGemmExtent) {
    const int64_t rows = std::min(kMaxGemmExtent, N - n0);
    launch_gemm("linear", rows, out, in, no_split(in), MatrixAlongK{x + n0 * in, in},
                MatrixAlongK{w, in}, StoreMatrix{y + n0 * out, out, 0, b});
  }
}

void linear_backward(int64_t N, int64_t in, int64_t out, const float* dy, const float* x,
                     const float* w, float* dx, float* dw, float* db) {
  const char* op = "linear_backward";
  // dx (rows, in) = dy (rows, out) @ w (out, in)
  for (int64_t n0 = 0; n0 < N; n0 += kMaxGemmExtent) {
    const int64_t rows = std::min(kMaxGemmExtent, N - n0);
    launch_gemm(op, rows, in, out, no_split(out), MatrixAlongK{dy + n0 * out, out},
                MatrixAlongI{w, in}, StoreMatrix{dx + n0 * in, in, 0, nullptr});
  }

  // dw (out, in) = sum over row groups of dy_g^T (out, rows) @ x_g (rows, in)
  std::vector<int64_t> group_k;
  for (int64_t n0 = 0; n0 < N; n0 += kMaxGemmExtent)
    group_k.push_back(std::min(kMaxGemmExtent, N - n0));
  PartialSums sums(op, out, in, group_k, dw);
  for (size_t g = 0; g < group_k.size(); ++g) {
    const int64_t n0 = int64_t(g) * kMaxGemmExtent;
    launch_gemm(op, out, in, group_k[g], sums.plan(g), MatrixAlongI{dy + n0 * out, out},
                MatrixAlongI{x + n0 * in, in}, sums.store(g));
  }
  sums.finish();

  // db[o] = sum over n of dy[n, o]
  bias_gradient(op, N, out, 1, dy, db);
}

}  // namespace nanocnn::cuda
