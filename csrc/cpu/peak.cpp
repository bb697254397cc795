// cpu/peak.cpp: the machine's measured peak, for the benchmarks' "fraction of peak" columns.
//
// peak_fma_gflops: every thread runs independent chains of FP32 fused multiply-adds on registers
// (no memory traffic), with the widest FMA the CPU has: peak_avx512.cpp or peak_avx2.cpp, picked
// at run time with __builtin_cpu_supports like the GEMM kernels; elsewhere a portable loop of
// separate multiplies and adds (an honest lower bound, not the machine's peak). All threads run
// at once in one parallel region, so the figure includes what a core loses when its sibling is
// busy (shared FPUs, lower all-core clocks). Each thread warms up (clocks ramp up), then times
// itself; the result is the sum of the threads' rates.
//
// peak_copy_gbs: y[i] = x[i] + 1 over arrays far bigger than the caches, each thread on its own
// part (first touched by that thread), bytes read + bytes written per second, best pass. This is
// the traffic pattern of relu or pooling, so it is the ceiling for the memory-bound ops.
#include "cpu/peak.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "core/error.h"

namespace nanocnn::cpu {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The portable loop: 32 chains of acc = acc * a + b (2 FLOP each). The compiler vectorises it
// for the baseline ISA (SSE2 on x86-64: 8 registers of 4 chains); without FMA in that ISA it
// stays a multiply and an add, as the C++ says.
int64_t fma_chains_generic(int64_t iterations, float* sink) {
  constexpr int kChains = 32;
  float acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = static_cast<float>(c);
  const float a = 0.999999f, b = 1e-6f;
  for (int64_t i = 0; i < iterations; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b;
  float sum = 0.0f;
  for (int c = 0; c < kChains; ++c) sum += acc[c];
  *sink = sum;
  return iterations * kChains * 2;
}

using FmaLoop = int64_t (*)(int64_t, float*);

struct FmaChoice {
  const char* isa;
  FmaLoop loop;
};

FmaChoice best_fma_loop() {
#ifdef NANOCNN_X86_SIMD
  __builtin_cpu_init();
  const bool fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (fma && __builtin_cpu_supports("avx512f")) return {"avx512", &peak_detail::fma_chains_avx512};
  if (fma) return {"avx2", &peak_detail::fma_chains_avx2};
#endif
  return {"generic", &fma_chains_generic};
}

void check_arguments(const char* op, int threads, double seconds) {
  NC_CHECK(threads >= 1 && threads <= 1024, op, ": threads must be in [1, 1024], got ", threads);
  NC_CHECK(seconds > 0.0 && seconds <= 60.0, op, ": seconds must be in (0, 60], got ", seconds);
}

}  // namespace

const char* peak_fma_isa() { return best_fma_loop().isa; }

double peak_fma_gflops(int threads, double seconds) {
  check_arguments("peak_fma_gflops", threads, seconds);
  const FmaLoop loop = best_fma_loop().loop;
  // ~30 MFLOP per chunk with AVX-512 (about 0.15 ms on one core): short enough to stop on time.
  constexpr int64_t kChunk = 1 << 16;
  std::vector<double> rate(threads, 0.0);
  std::vector<float> sink(threads * 16, 0.0f);  // one cache line per thread
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    float* my_sink = &sink[t * 16];
    const Clock::time_point warm_start = Clock::now();
    while (seconds_since(warm_start) < 0.25 * seconds) loop(kChunk, my_sink);
#pragma omp barrier
    int64_t flops = 0;
    const Clock::time_point start = Clock::now();
    double elapsed = 0.0;
    do {
      flops += loop(kChunk, my_sink);
      elapsed = seconds_since(start);
    } while (elapsed < seconds);
    rate[t] = static_cast<double>(flops) / elapsed;
  }
  double total = 0.0;
  for (double r : rate) total += r;
  return total / 1e9;
}

double peak_copy_gbs(int threads, int64_t bytes, double seconds) {
  check_arguments("peak_copy_gbs", threads, seconds);
  NC_CHECK(bytes >= (1 << 20) && bytes <= (int64_t{1} << 36),
           "peak_copy_gbs: bytes must be in [1 MiB, 64 GiB], got ", bytes);
  const int64_t n = bytes / static_cast<int64_t>(sizeof(float));
  std::unique_ptr<float[]> x(new float[n]), y(new float[n]);
  double best = 0.0;  // seconds of the fastest pass
  bool done = false;
  Clock::time_point pass_start;
  const Clock::time_point start = Clock::now();
#pragma omp parallel num_threads(threads)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
    float* __restrict xs = x.get();
    float* __restrict ys = y.get();
    for (int64_t i = begin; i < end; ++i) xs[i] = static_cast<float>(i & 1023), ys[i] = 0.0f;
    for (int pass = 0; !done; ++pass) {
#pragma omp barrier
#pragma omp master
      pass_start = Clock::now();
#pragma omp barrier
      for (int64_t i = begin; i < end; ++i) ys[i] = xs[i] + 1.0f;
#pragma omp barrier
#pragma omp master
      {
        const double took = seconds_since(pass_start);
        if (pass > 0 && (best == 0.0 || took < best)) best = took;  // pass 0 is the warm-up
        done = pass >= 3 && seconds_since(start) >= seconds;
      }
#pragma omp barrier
    }
  }
  return 2.0 * static_cast<double>(n) * sizeof(float) / best / 1e9;
}

}  // namespace nanocnn::cpu
