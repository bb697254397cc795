// cpu/peak_avx512.cpp: the AVX-512 FMA-throughput loop behind peak_fma_gflops (see peak.cpp).
// Compiled with AVX-512 flags, called only after __builtin_cpu_supports said yes. Follows the
// portability rule of gemm_kernels.h: only <immintrin.h> and code of its own.
//
// Throughput = FMA pipes / cycle; each FMA waits for the previous one of its chain (latency 4
// cycles on Zen 4/5 and Intel), so covering latency x pipes = 4 x 2 = 8 chains is the minimum;
// 16 chains leave margin for longer latencies and use 16 of the 32 zmm registers (no spills).
#include <immintrin.h>

#include <cstdint>

#include "cpu/peak.h"

namespace nanocnn::cpu::peak_detail {

int64_t fma_chains_avx512(int64_t iterations, float* sink) {
  constexpr int kChains = 16, kLanes = 16;
  // acc = acc * a + b with a slightly below 1 and b small: values stay finite for any number of
  // rounds (they converge to b / (1 - a)), so no denormals or infinities slow the loop down.
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  *sink = _mm512_reduce_add_ps(sum);
  return iterations * kChains * kLanes * 2;
}

}  // namespace nanocnn::cpu::peak_detail
