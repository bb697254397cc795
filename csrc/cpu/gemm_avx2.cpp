// cpu/gemm_avx2.cpp: the AVX2 + FMA kernel set of sgemm: micro-kernels, packing routines and
// dot-product kernels (see gemm.cpp for the algorithm and gemm_kernels.h for the contracts).
// Compiled with -mavx2 -mfma; only called after __builtin_cpu_supports said yes. Uses nothing but
// intrinsics (see the portability rule in gemm_kernels.h).
//
// Micro-tile: up to MR = 6 rows x NR = 16 columns = 6 x 2 ymm accumulators (12 of the 16
// registers), 2 registers for the B row, 1 for the broadcast A value. Per step k: 2 vector loads +
// 6 broadcasts feed 12 FMAs; 12 independent chains cover 2 FMA pipes x 4 cycles of latency.
// Measured on Zen 5: ~124 GFLOP/s on 512^3..2000^3 with one thread (half the AVX-512 rate, as
// the vectors are half as wide).
#include <immintrin.h>

#include <cstdint>

#include "cpu/gemm_kernels.h"

namespace nanocnn::cpu::gemm_detail {
namespace {

constexpr int kMR = 6;    // rows of a micro-tile, at most
constexpr int kNR = 16;   // columns of a micro-tile = width of a B micro-panel
constexpr int kVL = 8;    // floats per ymm register
constexpr int64_t kPrefetchMinK = 64;  // prefetch the C tile only for k loops this long

// Lane mask with the first n lanes set (1 <= n <= 8), for vmaskmovps.
alignas(32) const int32_t kMaskSource[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                             0,  0,  0,  0,  0,  0,  0,  0};
inline __m256i first_lanes(int64_t n) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskSource + 8 - n));
}

// C[0:R, 0:cols] = alpha * A_panel(R x kc) * B_panel(kc x cols) + beta * C; cols in
// (8 (V-1), 8 V].
template <int R, int V>
void kernel(int64_t kc, const float* __restrict a, const float* __restrict b, int64_t b_stride,
            float* __restrict c, int64_t ldc, int64_t cols, float alpha, float beta) {
  __m256 acc[R][V];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[i][v] = _mm256_setzero_ps();

  // Bring the C tile towards L1 while the FMAs run (not worth it for short loops).
  if (kc >= kPrefetchMinK) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + (cols - 1)), _MM_HINT_T0);
    }
  }

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = _mm256_loadu_ps(b + kVL * v);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += R;
    b += b_stride;
  }

  // Store: alpha * acc (+ beta * C). A partial last vector goes through vmaskmovps, with the
  // same arithmetic as a full one.
  const __m256 va = _mm256_set1_ps(alpha);
  const __m256i tail = first_lanes(cols - kVL * (V - 1));
  const bool full = cols == kVL * V;
  if (beta == 0.0f) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
#pragma GCC unroll 2
      for (int v = 0; v < V - 1; ++v) _mm256_storeu_ps(ci + kVL * v, _mm256_mul_ps(va, acc[i][v]));
      const __m256 r = _mm256_mul_ps(va, acc[i][V - 1]);
      if (full)
        _mm256_storeu_ps(ci + kVL * (V - 1), r);
      else
        _mm256_maskstore_ps(ci + kVL * (V - 1), tail, r);
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
#pragma GCC unroll 2
      for (int v = 0; v < V - 1; ++v) {
        const __m256 old = _mm256_mul_ps(vb, _mm256_loadu_ps(ci + kVL * v));
        _mm256_storeu_ps(ci + kVL * v, _mm256_fmadd_ps(va, acc[i][v], old));
      }
      float* cl = ci + kVL * (V - 1);
      if (full) {
        const __m256 old = _mm256_mul_ps(vb, _mm256_loadu_ps(cl));
        _mm256_storeu_ps(cl, _mm256_fmadd_ps(va, acc[i][V - 1], old));
      } else {
        const __m256 old = _mm256_mul_ps(vb, _mm256_maskload_ps(cl, tail));
        _mm256_maskstore_ps(cl, tail, _mm256_fmadd_ps(va, acc[i][V - 1], old));
      }
    }
  }
}

// ---- packing ----------------------------------------------------------------------------------

// In-place transpose of an 8 x 8 block held in 8 registers: r[i] lane j <-> r[j] lane i.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4h + c] half q: rows 4h..4h+3 of column 4q + c.
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

// Loads 8 consecutive floats (the first n, n <= 8, zeros elsewhere) of `rows` rows
// src + t * stride, t < rows, zeros for rows rows..7, and transposes: r[c] = element c of each row.
inline void load_transpose8(const float* src, int64_t stride, int64_t rows, int64_t n,
                            __m256 r[8]) {
  if (n == 8) {
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t)
      r[t] = t < rows ? _mm256_loadu_ps(src + t * stride) : _mm256_setzero_ps();
  } else {
    const __m256i m = first_lanes(n);
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t)
      r[t] = t < rows ? _mm256_maskload_ps(src + t * stride, m) : _mm256_setzero_ps();
  }
  transpose8(r);
}

// Stores of h <= 8 values go out as full 8-float stores in increasing address order: each one
// overwrites the junk lanes of the one before, and the last one spills at most 7 floats past the
// panel (allowed by the PackA contract).
void pack_a(const float* a, int64_t rs, int64_t cs, int64_t h, int64_t kc, float* dst) {
  if (cs == 1) {  // row i of the panel is contiguous in k: transpose 8 x 8 blocks
    __m256 r[8];
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
      const int64_t n = kc - k0 < 8 ? kc - k0 : 8;
      load_transpose8(a + k0, rs, h, n, r);
      for (int64_t c = 0; c < n; ++c) _mm256_storeu_ps(dst + (k0 + c) * h, r[c]);
    }
  } else {  // the h values of step k are contiguous
    const __m256i hm = first_lanes(h);
    for (int64_t k = 0; k < kc; ++k)
      _mm256_storeu_ps(dst + k * h, _mm256_maskload_ps(a + k * cs, hm));
  }
}

// One micro-panel of w <= kNR columns, padded with zeros to ws (see PackB).
void pack_b_panel(const float* b, int64_t rs, int64_t cs, int64_t w, int64_t ws, int64_t kc,
                  float* dst) {
  if (cs == 1) {  // row k of the panel is contiguous in B
    if (w == kNR) {
      for (int64_t k = 0; k < kc; ++k) {
        _mm256_storeu_ps(dst + k * kNR, _mm256_loadu_ps(b + k * rs));
        _mm256_storeu_ps(dst + k * kNR + 8, _mm256_loadu_ps(b + k * rs + 8));
      }
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t j0 = 0; j0 < ws; j0 += 8) {
          const __m256 v =
              w > j0 ? _mm256_maskload_ps(b + k * rs + j0, first_lanes(w - j0 < 8 ? w - j0 : 8))
                     : _mm256_setzero_ps();
          _mm256_storeu_ps(dst + k * ws + j0, v);
        }
    }
  } else {  // column j of the panel is contiguous in B: transpose 8 x 8 blocks
    __m256 r[8];
    for (int64_t j0 = 0; j0 < ws; j0 += 8) {
      const int64_t rows = w - j0 < 8 ? w - j0 : 8;  // >= 1: ws = round_up(w, 8)
      for (int64_t k0 = 0; k0 < kc; k0 += 8) {
        const int64_t n = kc - k0 < 8 ? kc - k0 : 8;
        load_transpose8(b + j0 * cs + k0, cs, rows, n, r);
        for (int64_t c = 0; c < n; ++c) _mm256_storeu_ps(dst + (k0 + c) * ws + j0, r[c]);
      }
    }
  }
}

void pack_b(const float* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, float* dst,
            int64_t ps) {
  const int64_t nfull = nc / kNR * kNR;  // columns in full panels
  if (cs == 1) {
    // Row k of op(B) is contiguous: sweep B row by row, scattering each row over the panels.
    // Reading panel by panel instead would walk down columns of B, and when ldb is a multiple of
    // 1024 floats all the rows of a panel fall into the same L1 set (measured 2x slower).
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = b + k * rs;
      float* d = dst + k * kNR;
      for (int64_t j0 = 0; j0 < nfull; j0 += kNR, d += ps) {
        _mm256_storeu_ps(d, _mm256_loadu_ps(src + j0));
        _mm256_storeu_ps(d + kVL, _mm256_loadu_ps(src + j0 + kVL));
      }
    }
  } else {
    for (int64_t j0 = 0; j0 < nfull; j0 += kNR)
      pack_b_panel(b + j0 * cs, rs, cs, kNR, kNR, kc, dst + j0 / kNR * ps);
  }
  if (nfull < nc) {
    const int64_t w = nc - nfull;
    pack_b_panel(b + nfull * cs, rs, cs, w, (w + kVL - 1) / kVL * kVL, kc, dst + nfull / kNR * ps);
  }
}

// ---- dot-product kernels (trans_b, thin C, long K) --------------------------------------------
// Up to DM = 3 rows of A x DN = 3 rows of B: 9 accumulators + 3 B + 1 A register; per 8 steps of
// k, 6 loads feed 9 FMAs.
constexpr int kDM = 3;
constexpr int kDN = 3;

// Sum of the 8 lanes (in lane 0) in a fixed order: halves, pairs, neighbours.
inline __m128 lane_sum(__m256 v) {
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_add_ss(p, _mm_movehdup_ps(p));
}

template <int RM, int RN>
void dot_kernel(int64_t K, const float* __restrict a, int64_t lda, const float* __restrict b,
                int64_t ldb, float* __restrict c, int64_t ldc, float alpha, float beta) {
  __m256 acc[RM][RN];
#pragma GCC unroll 4
  for (int i = 0; i < RM; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + kVL <= K; k += kVL) {
    __m256 bv[RN];
#pragma GCC unroll 4
    for (int j = 0; j < RN; ++j) bv[j] = _mm256_loadu_ps(b + j * ldb + k);
#pragma GCC unroll 4
    for (int i = 0; i < RM; ++i) {
      const __m256 av = _mm256_loadu_ps(a + i * lda + k);
#pragma GCC unroll 4
      for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (k < K) {
    const __m256i m = first_lanes(K - k);
    __m256 bv[RN];
#pragma GCC unroll 4
    for (int j = 0; j < RN; ++j) bv[j] = _mm256_maskload_ps(b + j * ldb + k, m);
#pragma GCC unroll 4
    for (int i = 0; i < RM; ++i) {
      const __m256 av = _mm256_maskload_ps(a + i * lda + k, m);
#pragma GCC unroll 4
      for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < RM; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < RN; ++j) {
      // Scalar intrinsics, so that the compiler cannot fuse differently in different variants.
      const __m128 s = _mm_mul_ss(_mm_set_ss(alpha), lane_sum(acc[i][j]));
      float* cij = c + i * ldc + j;
      _mm_store_ss(cij, beta == 0.0f ? s : _mm_fmadd_ss(_mm_set_ss(beta), _mm_load_ss(cij), s));
    }
}

#define NC_DOT_ROW(R) &dot_kernel<R, 1>, &dot_kernel<R, 2>, &dot_kernel<R, 3>
const DotKernel kDotTable[] = {NC_DOT_ROW(1), NC_DOT_ROW(2), NC_DOT_ROW(3)};
#undef NC_DOT_ROW
static_assert(sizeof(kDotTable) / sizeof(kDotTable[0]) == kDM * kDN, "dot table size");

#define NC_GEMM_ROW(R) &kernel<R, 1>, &kernel<R, 2>
const MicroKernel kTable[] = {
    NC_GEMM_ROW(1), NC_GEMM_ROW(2), NC_GEMM_ROW(3), NC_GEMM_ROW(4), NC_GEMM_ROW(5), NC_GEMM_ROW(6),
};
#undef NC_GEMM_ROW
static_assert(sizeof(kTable) / sizeof(kTable[0]) == kMR * (kNR / kVL), "kernel table size");

}  // namespace

// Block sizes: see "Cache blocking" in gemm.cpp.
extern const KernelSet kAvx2Kernels = {
    "avx2", kMR, kNR, kVL, /*mc=*/144, /*kc=*/256, /*nc=*/2048,
    kTable, &pack_a, &pack_b, kDM, kDN, kDotTable};

}  // namespace nanocnn::cpu::gemm_detail
