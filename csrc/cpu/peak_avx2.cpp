// cpu/peak_avx2.cpp: the AVX2 + FMA throughput loop behind peak_fma_gflops (see peak.cpp).
// Compiled with -mavx2 -mfma, called only after __builtin_cpu_supports said yes. Follows the
// portability rule of gemm_kernels.h: only <immintrin.h> and code of its own.
//
// 12 independent chains: enough for 2 FMA pipes x 4-5 cycles of latency (Haswell to Zen 5), and
// 12 of the 16 ymm registers, so nothing spills.
#include <immintrin.h>

#include <cstdint>

#include "cpu/peak.h"

namespace nanocnn::cpu::peak_detail {

int64_t fma_chains_avx2(int64_t iterations, float* sink) {
  constexpr int kChains = 12, kLanes = 8;
  // acc = acc * a + b converges to b / (1 - a): finite and normal for any number of rounds.
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  alignas(32) float lanes[kLanes];
  _mm256_store_ps(lanes, sum);
  float total = 0.0f;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  *sink = total;
  return iterations * kChains * kLanes * 2;
}

}  // namespace nanocnn::cpu::peak_detail
