// TEMPORARY scaffold, replaced by the packed SIMD SGEMM: correct, slow.
#include "cpu/gemm.h"

#include <vector>

namespace nanocnn::cpu {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    std::vector<float> row(N, 0.f);
    for (int64_t k = 0; k < K; ++k) {
      const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
      for (int64_t j = 0; j < N; ++j) row[j] += a * (trans_b ? B[j * ldb + k] : B[k * ldb + j]);
    }
    for (int64_t j = 0; j < N; ++j)
      C[i * ldc + j] = beta == 0.f ? alpha * row[j] : alpha * row[j] + beta * C[i * ldc + j];
  }
}

const char* sgemm_isa() { return "generic"; }
void sgemm_set_isa(const char*) {}

}  // namespace nanocnn::cpu
