// bench/lab/gemm_lab.cpp: correctness checks and GFLOP/s of nanocnn::cpu::sgemm, standalone.
//
// Build (from the repository root; one command per line; the SIMD files need their own flags, as
// CMake gives them; gnu++17 as CMake uses by default; add -Wall -Wextra to see warnings):
//   g++ -O3 -std=gnu++17 -fopenmp -Icsrc -c csrc/cpu/gemm_avx2.cpp -mavx2 -mfma -o /tmp/gemm_avx2.o
//   g++ -O3 -std=gnu++17 -fopenmp -Icsrc -c csrc/cpu/gemm_avx512.cpp -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma -o /tmp/gemm_avx512.o
//   g++ -O3 -std=gnu++17 -fopenmp -DNANOCNN_X86_SIMD -Icsrc bench/lab/gemm_lab.cpp csrc/cpu/gemm.cpp csrc/core/parallel.cpp /tmp/gemm_avx2.o /tmp/gemm_avx512.o -o /tmp/gemm_lab
// Run:
//   /tmp/gemm_lab            checks, then benchmarks (each timing a fraction of a second)
//   /tmp/gemm_lab check      checks only
//   /tmp/gemm_lab bench      benchmarks only
//   /tmp/gemm_lab bench ISA [FILTER [ROUNDS]]    ISA: avx512 | avx2 | generic | all; FILTER: a
//                            substring of the shape labels ("" for all); ROUNDS: measure the
//                            table that many times and keep each cell's best (default 1)
//
// Checks, for every ISA this CPU supports (sgemm_set_isa):
//   - 1500 random shapes per ISA: all four trans_a / trans_b combinations, M, N, K in 1..300
//     (mostly small, any parity), lda / ldb / ldc from the minimum up to minimum + 9, alpha in
//     {1, 0.5, -1.25, 2, 0}, beta in {0, 1, 0.5, -2}; C is pre-filled with NaN when beta == 0;
//   - special shapes: K == 0, M or N == 0, alpha == 0, K > KC (several KC blocks), M > MC,
//     N > NC, M = 1 or N = 1, the B-in-place and dot-product paths, and 4 large shapes (up to
//     2500 x 1700 x 3100, checked on 3000 sampled elements);
//   - tolerance, against a double-precision triple loop:
//       |C - C_ref| <= 1e-5 * (|alpha| * sum_k |a_ik b_kj| + |beta c_ij|) + 1e-6
//   - elements of C outside the M x N matrix (the ldc padding and a guard zone after it) are
//     never written;
//   - the result with 2 threads is bit-identical to the one with 1 thread, and so is the result
//     of calls made from inside an OpenMP parallel region (which run single-threaded);
//   - sgemm_set_isa rejects unknown names.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "cpu/gemm.h"

using nanocnn::cpu::sgemm;
using nanocnn::cpu::sgemm_isa;
using nanocnn::cpu::sgemm_set_isa;

namespace {

std::mt19937_64 rng(12345);

int64_t rand_int(int64_t lo, int64_t hi) {  // inclusive
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

void fill_random(std::vector<float>& v) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (float& x : v) x = d(rng);
}

struct Case {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
};

std::string describe(const Case& c) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "ta=%d tb=%d M=%" PRId64 " N=%" PRId64 " K=%" PRId64 " lda=%" PRId64
                " ldb=%" PRId64 " ldc=%" PRId64 " alpha=%g beta=%g",
                c.ta, c.tb, c.M, c.N, c.K, c.lda, c.ldb, c.ldc, c.alpha, c.beta);
  return buf;
}

constexpr float kSentinel = 12345.5f;
constexpr int64_t kGuard = 64;  // floats after the last row of C that must stay untouched

struct Data {
  std::vector<float> A, B, C0;  // C0: C before the call
};

Data make_data(const Case& c) {
  Data d;
  const int64_t a_rows = c.ta ? c.K : c.M, b_rows = c.tb ? c.N : c.K;
  d.A.resize(static_cast<size_t>(std::max<int64_t>(1, a_rows * c.lda)));
  d.B.resize(static_cast<size_t>(std::max<int64_t>(1, b_rows * c.ldb)));
  fill_random(d.A);
  fill_random(d.B);
  d.C0.assign(static_cast<size_t>(c.M * c.ldc + kGuard), kSentinel);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j)
      d.C0[i * c.ldc + j] = c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN()
                                           : std::uniform_real_distribution<float>(-1, 1)(rng);
  return d;
}

std::vector<float> run(const Case& c, const Data& d) {
  std::vector<float> C = d.C0;
  sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, d.A.data(), c.lda, d.B.data(), c.ldb, c.beta,
        C.data(), c.ldc);
  return C;
}

// Checks element (i, j) of C against the double-precision reference; "" when within tolerance.
std::string verify_element(const Case& c, const Data& d, const std::vector<float>& C, int64_t i,
                           int64_t j) {
  double sum = 0.0, mag = 0.0;
  for (int64_t k = 0; k < c.K; ++k) {
    const double a = c.ta ? d.A[k * c.lda + i] : d.A[i * c.lda + k];
    const double b = c.tb ? d.B[j * c.ldb + k] : d.B[k * c.ldb + j];
    sum += a * b;
    mag += std::fabs(a * b);
  }
  const double c0 = d.C0[i * c.ldc + j];
  double ref = c.alpha == 0.0f ? 0.0 : static_cast<double>(c.alpha) * sum;
  double tol_mag = std::fabs(static_cast<double>(c.alpha)) * mag;
  if (c.beta != 0.0f) {
    ref += static_cast<double>(c.beta) * c0;
    tol_mag += std::fabs(static_cast<double>(c.beta) * c0);
  }
  const double got = C[i * c.ldc + j];
  const double tol = 1e-5 * tol_mag + 1e-6;
  if (std::fabs(got - ref) <= tol) return "";
  char buf[200];
  std::snprintf(buf, sizeof buf, "C[%" PRId64 ",%" PRId64 "] = %.9g, expected %.9g (tol %.3g)", i,
                j, got, ref, tol);
  return buf;
}

// Returns an empty string when C is within tolerance of the double-precision reference (every
// element, or `samples` random ones when samples > 0) and nothing outside M x N was written.
std::string verify(const Case& c, const Data& d, const std::vector<float>& C, int samples = 0) {
  if (samples > 0) {
    for (int s = 0; s < samples; ++s) {
      const std::string err = verify_element(c, d, C, rand_int(0, c.M - 1), rand_int(0, c.N - 1));
      if (!err.empty()) return err;
    }
  } else {
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) {
        const std::string err = verify_element(c, d, C, i, j);
        if (!err.empty()) return err;
      }
  }
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < c.ldc; ++j)
      if (C[i * c.ldc + j] != kSentinel)
        return "wrote into the ldc padding of row " + std::to_string(i);
  for (int64_t g = 0; g < kGuard; ++g)
    if (C[c.M * c.ldc + g] != kSentinel) return "wrote past the end of C";
  return "";
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

int64_t rand_dim() {
  const int64_t r = rand_int(0, 99);
  if (r < 50) return rand_int(1, 40);
  if (r < 85) return rand_int(1, 130);
  return rand_int(1, 300);
}

Case random_case() {
  static const float alphas[] = {1.0f, 0.5f, -1.25f, 2.0f, 1.0f, 0.0f};
  static const float betas[] = {0.0f, 1.0f, 0.5f, -2.0f, 0.0f};
  Case c;
  c.ta = rand_int(0, 1);
  c.tb = rand_int(0, 1);
  c.M = rand_dim();
  c.N = rand_dim();
  c.K = rand_dim();
  c.lda = (c.ta ? c.M : c.K) + (rand_int(0, 2) ? 0 : rand_int(1, 9));
  c.ldb = (c.tb ? c.K : c.N) + (rand_int(0, 2) ? 0 : rand_int(1, 9));
  c.ldc = c.N + (rand_int(0, 2) ? 0 : rand_int(1, 9));
  c.alpha = alphas[rand_int(0, 5)];
  c.beta = betas[rand_int(0, 4)];
  return c;
}

Case make_case(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
               int64_t pad = 0) {
  Case c{ta, tb, M, N, K, 0, 0, 0, alpha, beta};
  c.lda = (ta ? M : K) + pad;
  c.ldb = (tb ? K : N) + pad;
  c.ldc = N + pad;
  if (c.lda == 0) c.lda = 1;
  if (c.ldb == 0) c.ldb = 1;
  if (c.ldc == 0) c.ldc = 1;
  return c;
}

// Checks one case on the current ISA (all elements, or `samples` random ones); returns the number
// of failures (0 or 1).
int check_case(const Case& c, int samples = 0, bool verbose_fail = true) {
  const Data d = make_data(c);
  nanocnn::set_num_threads(1);
  const std::vector<float> c1 = run(c, d);
  nanocnn::set_num_threads(2);
  const std::vector<float> c2 = run(c, d);
  std::string err = verify(c, d, c1, samples);
  if (err.empty() && !same_bits(c1, c2)) err = "2 threads differ from 1 thread";
  if (!err.empty() && verbose_fail)
    std::printf("  FAIL [%s] %s: %s\n", sgemm_isa(), describe(c).c_str(), err.c_str());
  return err.empty() ? 0 : 1;
}

// Several different sgemm calls from inside one parallel region must equal the serial results.
int check_inside_parallel() {
  std::vector<Case> cases;
  for (int t = 0; t < 8; ++t)
    cases.push_back(make_case(t & 1, t & 2, 60 + t, 200 + 7 * t, 150 + t, 1.0f,
                              t % 3 == 0 ? 0.0f : 0.5f, t % 2));
  cases.push_back(make_case(false, true, 16, 12, 1024, 1.0f, 0.0f));  // dot path
  cases.push_back(make_case(false, true, 64, 10, 500, 1.0f, 1.0f));   // dot path
  cases.push_back(make_case(false, false, 16, 1024, 75, 1.0f, 0.0f)); // B read in place
  std::vector<Data> data;
  std::vector<std::vector<float>> serial, inside(cases.size());
  nanocnn::set_num_threads(1);
  for (const Case& c : cases) {
    data.push_back(make_data(c));
    serial.push_back(run(c, data.back()));
  }
  nanocnn::set_num_threads(2);
#pragma omp parallel for num_threads(2) schedule(dynamic, 1)
  for (int64_t t = 0; t < static_cast<int64_t>(cases.size()); ++t)
    inside[t] = run(cases[t], data[t]);
  int fails = 0;
  for (size_t t = 0; t < cases.size(); ++t) {
    if (!same_bits(serial[t], inside[t])) {
      std::printf("  FAIL [%s] inside a parallel region differs: %s\n", sgemm_isa(),
                  describe(cases[t]).c_str());
      ++fails;
    }
  }
  return fails;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> isas;
  for (const char* name : {"avx512", "avx2", "generic"}) {
    try {
      sgemm_set_isa(name);
      isas.push_back(name);
    } catch (const nanocnn::ValueError& e) {
      std::printf("(skipping %s: %s)\n", name, e.what());
    }
  }
  sgemm_set_isa("auto");
  return isas;
}

int run_checks(const std::vector<std::string>& isas) {
  int total_fails = 0;
  // Bad ISA names must raise ValueError.
  for (const char* bad : {"sse9", "", "AVX2"}) {
    bool raised = false;
    try {
      sgemm_set_isa(bad);
    } catch (const nanocnn::ValueError&) {
      raised = true;
    }
    if (!raised) {
      std::printf("  FAIL sgemm_set_isa(\"%s\") did not raise ValueError\n", bad);
      ++total_fails;
    }
  }
  for (const std::string& isa : isas) {
    sgemm_set_isa(isa.c_str());
    int fails = 0, count = 0;
    std::vector<Case> cases;
    // Special shapes.
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (float beta : {0.0f, 0.5f}) {
        cases.push_back(make_case(ta, tb, 7, 9, 0, 1.0f, beta, 3));        // K == 0
        cases.push_back(make_case(ta, tb, 0, 9, 5, 1.0f, beta, 1));        // M == 0
        cases.push_back(make_case(ta, tb, 9, 0, 5, 1.0f, beta, 1));        // N == 0
        cases.push_back(make_case(ta, tb, 13, 17, 11, 0.0f, beta, 2));     // alpha == 0
        cases.push_back(make_case(ta, tb, 1, 1, 1, 1.0f, beta));
        cases.push_back(make_case(ta, tb, 1, 333, 77, 1.0f, beta));        // one row
        cases.push_back(make_case(ta, tb, 301, 1, 77, 1.0f, beta));        // one column
        cases.push_back(make_case(ta, tb, 37, 45, 1100, 1.0f, beta, 5));   // several KC blocks
        cases.push_back(make_case(ta, tb, 700, 40, 20, -1.0f, beta, 1));   // several MC blocks
        cases.push_back(make_case(ta, tb, 13, 4500, 9, 0.5f, beta, 3));    // several NC blocks
        cases.push_back(make_case(ta, tb, 64, 1024, 12, 1.0f, beta));      // conv-like
        cases.push_back(make_case(ta, tb, 130, 257, 300, 1.0f, beta, 16)); // threaded, edges
        cases.push_back(make_case(ta, tb, 100, 512, 40, 1.0f, beta));      // B packed (ldb % 512)
        cases.push_back(make_case(ta, tb, 20, 1000, 40, 1.0f, beta));      // B read in place
        cases.push_back(make_case(ta, tb, 33, 1536, 7, 1.0f, beta, 16));   // B in place, K < 16
        cases.push_back(make_case(ta, tb, 16, 12, 1024, 1.0f, beta, 1));   // dot path (tb)
        cases.push_back(make_case(ta, tb, 64, 10, 500, 2.0f, beta));       // dot path (tb)
        cases.push_back(make_case(ta, tb, 13, 7, 700, 1.0f, beta, 5));     // dot path, edges
        cases.push_back(make_case(ta, tb, 200, 23, 333, 1.0f, beta, 2));   // dot path, threaded
      }
    }
    for (int t = 0; t < 1500; ++t) cases.push_back(random_case());
    int threaded = 0;  // cases big enough for sgemm to use 2 threads (>= 1 MFLOP)
    for (const Case& c : cases) {
      fails += check_case(c);
      ++count;
      if (2.0 * static_cast<double>(c.M * c.N) * static_cast<double>(c.K) >= 1e6) ++threaded;
    }
    // Large shapes (several MC, KC and NC blocks, both threads busy), checked on 3000 sampled
    // elements each.
    const int64_t big[4][3] = {{2500, 1700, 3100}, {1100, 4500, 800}, {3001, 333, 1500},
                               {50, 2100, 2900}};
    for (int t = 0; t < 4; ++t) {
      const Case c = make_case(t & 1, t & 2, big[t][0], big[t][1], big[t][2], 0.75f,
                               t == 2 ? 0.0f : -0.5f, t);
      fails += check_case(c, 3000);
      ++count;
      ++threaded;
    }
    fails += check_inside_parallel();
    std::printf("[%s] %d cases (%d of them >= 1 MFLOP, run on 2 threads) + parallel-region "
                "check: %s (%d failures)\n",
                isa.c_str(), count, threaded, fails ? "FAILED" : "ok", fails);
    total_fails += fails;
  }
  sgemm_set_isa("auto");
  return total_fails;
}

// ---- benchmark ----------------------------------------------------------------------------------

struct Shape {
  const char* label;
  bool ta, tb;
  int64_t M, N, K;
};

// Small-CNN workloads (conv via im2col: M = output channels, N = output pixels, K = C R S; dense:
// M = batch) and large square GEMMs.
const Shape kShapes[] = {
    {"square 512", false, false, 512, 512, 512},
    {"square 1024", false, false, 1024, 1024, 1024},
    {"conv 16x1024x12", false, false, 16, 1024, 12},
    {"conv 16x1024x75", false, false, 16, 1024, 75},
    {"conv 32x256x64", false, false, 32, 256, 64},
    {"conv 32x256x144", false, false, 32, 256, 144},
    {"conv 64x64x128", false, false, 64, 64, 128},
    {"conv 64x64x288", false, false, 64, 64, 288},
    {"dense 64x500x1024", false, false, 64, 500, 1024},
    {"dense tb 64x500x1024", false, true, 64, 500, 1024},
    {"dense 64x10x500", false, false, 64, 10, 500},
    {"dense tb 64x10x500", false, true, 64, 10, 500},
    {"dense 64x1024x500", false, false, 64, 1024, 500},
    {"bwd tb 16x12x1024", false, true, 16, 12, 1024},
    {"bwd tb 16x75x1024", false, true, 16, 75, 1024},
    {"bwd tb 32x144x256", false, true, 32, 144, 256},
    {"bwd ta 1024x500x64", true, false, 1024, 500, 64},
    {"bwd ta 500x1024x64", true, false, 500, 1024, 64},
    {"bwd ta 75x1024x16", true, false, 75, 1024, 16},
    {"bwd ta 144x256x32", true, false, 144, 256, 32},
};

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best GFLOP/s over 20 batches of about 10 ms (about 0.2 s in all). The best batch rather than
// the mean, so that other processes sharing the 2 cores perturb the figure less.
double bench_shape(const Shape& s) {
  const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
  std::vector<float> A((s.ta ? s.K : s.M) * lda), B((s.tb ? s.N : s.K) * ldb), C(s.M * ldc);
  fill_random(A);
  fill_random(B);
  fill_random(C);
  auto once = [&] {
    sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), ldc);
  };
  once();
  double t0 = seconds_now();
  int64_t reps = 0;
  while (seconds_now() - t0 < 0.02 || reps < 2) {
    once();
    ++reps;
  }
  const double per_call = (seconds_now() - t0) / static_cast<double>(reps);
  const int64_t batch = std::max<int64_t>(1, static_cast<int64_t>(0.01 / per_call));
  double best = 1e30;
  for (int b = 0; b < 20; ++b) {
    t0 = seconds_now();
    for (int64_t r = 0; r < batch; ++r) once();
    best = std::min(best, (seconds_now() - t0) / static_cast<double>(batch));
  }
  const double flops =
      2.0 * static_cast<double>(s.M) * static_cast<double>(s.N) * static_cast<double>(s.K);
  return flops / best * 1e-9;
}

// Prints the GFLOP/s table. With rounds > 1 the whole table is measured that many times and each
// cell keeps its best round: other processes on the 2 cores come and go, and the best round is
// the closest to what the code does on an idle machine.
void run_bench(const std::vector<std::string>& isas, const char* filter, int rounds) {
  std::vector<const Shape*> shapes;
  for (const Shape& s : kShapes)
    if (filter == nullptr || std::strstr(s.label, filter) != nullptr) shapes.push_back(&s);
  const size_t cols = isas.size() * 2;
  std::vector<double> best(shapes.size() * cols, 0.0);
  for (int round = 0; round < rounds; ++round) {
    for (size_t r = 0; r < shapes.size(); ++r)
      for (size_t i = 0; i < isas.size(); ++i) {
        sgemm_set_isa(isas[i].c_str());
        for (int t = 0; t < 2; ++t) {
          nanocnn::set_num_threads(t + 1);
          double& cell = best[r * cols + i * 2 + t];
          cell = std::max(cell, bench_shape(*shapes[r]));
        }
      }
    if (rounds > 1) std::fprintf(stderr, "round %d of %d done\n", round + 1, rounds);
  }
  sgemm_set_isa("auto");
  nanocnn::set_num_threads(2);
  std::printf("\nGFLOP/s (best of 20 batches of ~10 ms%s; alpha = 1, beta = 0)\n",
              rounds > 1 ? (", best of " + std::to_string(rounds) + " rounds").c_str() : "");
  std::printf("%-24s", "shape (M x N x K)");
  for (const std::string& isa : isas) std::printf(" %9s-1t %9s-2t", isa.c_str(), isa.c_str());
  std::printf("\n");
  for (size_t r = 0; r < shapes.size(); ++r) {
    std::printf("%-24s", shapes[r]->label);
    for (size_t c = 0; c < cols; ++c) std::printf(" %12.1f", best[r * cols + c]);
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "all";
  std::vector<std::string> isas = supported_isas();
  std::printf("default ISA: %s, OpenMP max threads: %d\n", sgemm_isa(), omp_get_max_threads());
  if (argc > 2 && std::string(argv[2]) != "all") isas = {argv[2]};
  int fails = 0;
  if (mode == "all" || mode == "check") {
    fails = run_checks(isas);
    std::printf("%s\n", fails ? "CHECKS FAILED" : "all checks passed");
  }
  if (mode == "all" || mode == "bench") {
    const char* filter = argc > 3 && argv[3][0] != '\0' ? argv[3] : nullptr;
    run_bench(isas, filter, argc > 4 ? std::max(1, std::atoi(argv[4])) : 1);
  }
  return fails ? 1 : 0;
}
