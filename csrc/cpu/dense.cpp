// dense.cpp: the fully connected layer on the CPU, as GEMMs (a small batch's backward: one sweep).
// Layout: x is (N,in), w is (out,in) (PyTorch's layout), b is (out), y is (N,out).
//   forward:  y  (N, out) = x (N, in) @ w^T (in, out) + b
//   backward: dx (N, in)  = dy (N, out) @ w (out, in)
//             dw (out,in) = dy^T (out, N) @ x (N, in)
//             db (out)    = column sums of dy
// The transposes cost nothing: the GEMM's packing reads either layout.
// Threads: with exactly two, the backward pass runs its two GEMMs side by side, one per thread
// (they have the same flop count, N*in*out each, and a GEMM of these shapes on one thread runs
// closer to peak than split in two); otherwise each GEMM is split over all threads in turn.
//
// Small batches (N <= 4, with AVX-512) take another path: both gradients in one sweep over w and
// dw (dense_avx512.cpp), which halves the memory traffic of the two GEMMs, whose time it is at
// these sizes. Its work is cut into blocks of 128 output rows (w's rows), dealt out to the
// threads; block b > 0 sums its part of dx into its own buffer, added to dx in block order at the
// end, so the result does not depend on the thread count. Cutting w's columns instead (no partial
// sums) ran two threads slower than one (1024 -> 500 at batch 1: 0.08-0.10 ms against 0.055),
// most likely because each thread's 2 KiB of every 4 KiB row of w and dw lies next to the
// other's, and the lines the prefetchers pull across the border bounce between the cores.
// Measured on the 2-core Zen 4 (`F.linear_backward`, median of 500-1000 calls, ms), two GEMMs ->
// one sweep:
//   1024 -> 500, batch 1:   one thread 0.144 -> 0.055, two 0.111 -> 0.032
//   1024 -> 500, batch 4:   one thread 0.165 -> 0.090, two 0.087 -> 0.052
//   18496 -> 512, batch 1:  one thread 5.7 -> 2.4,     two 4.2 -> 1.55
#include <algorithm>
#include <cstring>

#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/dense_kernels.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"

namespace nanocnn::cpu {
namespace {

// Output rows per block of the small-batch path (a multiple of the kernel's 4).
constexpr int64_t kThinBlockRows = 128;

// The small-batch kernel for this CPU, or nullptr. Follows sgemm's ISA choice, so that tests
// forcing another ISA check the GEMM path on the same machine.
const dense_detail::DenseKernelSet* simd_kernels() {
#if defined(NANOCNN_X86_SIMD)
  if (std::strcmp(sgemm_isa(), "avx512") == 0) return &dense_detail::kAvx512DenseKernels;
#endif
  return nullptr;
}

// dx and dw by the one-sweep kernel, in blocks of output rows (see the top of the file).
void backward_thin(const dense_detail::DenseKernelSet& ks, int64_t N, int64_t in, int64_t out,
                   const float* dy, const float* x, const float* w, float* dx, float* dw) {
  const int64_t blocks = (out + kThinBlockRows - 1) / kThinBlockRows;
  const int64_t size = N * in;  // of dx and of each partial sum
  float* partial = blocks > 1 ? thread_scratch(kScratchDensePartials, (blocks - 1) * size)
                              : nullptr;
  parallel_for(blocks, 2 * N * in * kThinBlockRows, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b * kThinBlockRows;
      ks.thin_backward(N, in, std::min(kThinBlockRows, out - o), dy + o, out, x, w + o * in,
                       b == 0 ? dx : partial + (b - 1) * size, dw + o * in);
    }
  });
  if (blocks == 1) return;
  parallel_for(size, blocks, [&](int64_t begin, int64_t end) {
    for (int64_t b = 1; b < blocks; ++b) {
      const float* p = partial + (b - 1) * size;
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) dx[i] += p[i];
    }
  });
}

// dx and dw as two GEMMs.
void backward_gemms(int64_t N, int64_t in, int64_t out, const float* dy, const float* x,
                    const float* w, float* dx, float* dw) {
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
}

}  // namespace

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
  const dense_detail::DenseKernelSet* simd = simd_kernels();
  if (simd != nullptr && N >= 1 && N <= dense_detail::kThinMaxBatch && out >= 1) {
    backward_thin(*simd, N, in, out, dy, x, w, dx, dw);
  } else {
    backward_gemms(N, in, out, dy, x, w, dx, dw);
  }
  for (int64_t o = 0; o < out; ++o) db[o] = 0.f;
  for (int64_t n = 0; n < N; ++n) {
    const float* row = dy + n * out;
#pragma omp simd
    for (int64_t o = 0; o < out; ++o) db[o] += row[o];
  }
}

}  // namespace nanocnn::cpu
