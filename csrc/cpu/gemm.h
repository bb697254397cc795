// cpu/gemm.h: single-precision matrix multiply, the engine under conv2d and linear.
#pragma once

#include <cstdint>

namespace nanocnn::cpu {

// C = alpha * op(A) * op(B) + beta * C, all row-major:
//   op(A) is (M, K): A is (M, K) with row stride lda, or (K, M) when trans_a
//   op(B) is (K, N): B is (K, N) with row stride ldb, or (N, K) when trans_b
//   C is (M, N) with row stride ldc.
// beta == 0 never reads C (it may hold garbage or NaN). K == 0 gives C = beta * C. As in BLAS,
// alpha == 0 also gives C = beta * C without reading A or B. M == 0 or N == 0: nothing happens.
// Raises ValueError for negative sizes or a leading dimension below the row length.
// Called outside a parallel region it splits the work over nanocnn's threads (from about
// 1 MFLOP on); called inside one, it runs on the calling thread. Safe to call from several
// threads at once. Results never depend on the thread count (bit for bit), only on the ISA.
// Performance: leading dimensions that are a multiple of 512 floats (2 KiB) are slower for some
// shapes (cache-set conflicts); see "Power-of-2 leading dimensions" in gemm.cpp.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// The micro-kernel in use: "avx512", "avx2" or "generic". By default the best one this CPU
// supports, chosen once at run time with __builtin_cpu_supports.
const char* sgemm_isa();

// Forces a micro-kernel ("avx512", "avx2", "generic" or "auto"), so that tests can check every
// one of them on one machine. Raises ValueError for an unknown name or one this CPU cannot run.
void sgemm_set_isa(const char* name);

}  // namespace nanocnn::cpu
