// cpu/gemm_avx512.cpp: the AVX-512 kernel set of sgemm: micro-kernels, packing routines and
// dot-product kernels (see gemm.cpp for the algorithm and gemm_kernels.h for the contracts).
// Compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma; only called after
// __builtin_cpu_supports said yes. Uses nothing but intrinsics (see the portability rule in
// gemm_kernels.h).
//
// Micro-tile: up to MR = 12 rows x NR = 32 columns = 12 x 2 zmm accumulators (24 of the 32
// registers), 2 registers for the B row, A values broadcast from memory (vbroadcastss). Per step
// k: 2 vector loads + 12 broadcast loads feed 24 FMAs (12 cycles on Zen 5's two 512-bit FMA
// pipes), well within the load ports' limit, and the 24 independent accumulator chains cover the
// 2 pipes x 4 cycles of FMA latency (even the 8-row variant has 16). The k loop is unrolled 4x;
// GCC keeps everything in registers (no spills; checked in the disassembly). Measured on Zen 5:
// ~235 GFLOP/s on 512^3..1024^3 with one thread, about the measured FMA peak.
#include <immintrin.h>

#include <cstdint>

#include "cpu/avx512_util.h"
#include "cpu/gemm_kernels.h"

namespace nanocnn::cpu::gemm_detail {
namespace {

constexpr int kMR = 12;   // rows of a micro-tile, at most
constexpr int kNR = 32;   // columns of a micro-tile = width of a B micro-panel
constexpr int kVL = 16;   // floats per zmm register
constexpr int64_t kPrefetchMinK = 64;  // prefetch the C tile only for k loops this long


// C[0:R, 0:cols] = alpha * A_panel(R x kc) * B_panel(kc x cols) + beta * C; cols in
// (16 (V-1), 16 V]. R, V compile-time so the accumulators live in registers.
template <int R, int V>
void kernel(int64_t kc, const float* __restrict a, const float* __restrict b, int64_t b_stride,
            float* __restrict c, int64_t ldc, int64_t cols, float alpha, float beta) {
  __m512 acc[R][V];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();

  // Bring the C tile towards L1 while the FMAs run (it is read or written only at the end).
  // Not worth it for short loops: the lines would not arrive much earlier, and with a power-of-2
  // ldc they all land in the same two L1 sets and evict the A and B lines still in use.
  if (kc >= kPrefetchMinK) {
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + (cols - 1)), _MM_HINT_T0);
    }
  }

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_ps(b + kVL * v);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += R;
    b += b_stride;
  }

  // Store: alpha * acc (+ beta * C). The last vector of a row is masked when cols < 16 V; the
  // arithmetic is the same either way.
  const __m512 va = _mm512_set1_ps(alpha);
  const __mmask16 tail = first_lanes(cols - kVL * (V - 1));
  const bool full = cols == kVL * V;
  if (beta == 0.0f) {
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
#pragma GCC unroll 2
      for (int v = 0; v < V - 1; ++v) _mm512_storeu_ps(ci + kVL * v, _mm512_mul_ps(va, acc[i][v]));
      const __m512 r = _mm512_mul_ps(va, acc[i][V - 1]);
      if (full)
        _mm512_storeu_ps(ci + kVL * (V - 1), r);
      else
        _mm512_mask_storeu_ps(ci + kVL * (V - 1), tail, r);
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
#pragma GCC unroll 2
      for (int v = 0; v < V - 1; ++v) {
        const __m512 old = _mm512_mul_ps(vb, _mm512_loadu_ps(ci + kVL * v));
        _mm512_storeu_ps(ci + kVL * v, _mm512_fmadd_ps(va, acc[i][v], old));
      }
      float* cl = ci + kVL * (V - 1);
      if (full) {
        const __m512 old = _mm512_mul_ps(vb, _mm512_loadu_ps(cl));
        _mm512_storeu_ps(cl, _mm512_fmadd_ps(va, acc[i][V - 1], old));
      } else {
        const __m512 old = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(tail, cl));
        _mm512_mask_storeu_ps(cl, tail, _mm512_fmadd_ps(va, acc[i][V - 1], old));
      }
    }
  }
}

// ---- packing ----------------------------------------------------------------------------------

void pack_a(const float* a, int64_t rs, int64_t cs, int64_t h, int64_t kc, float* dst) {
  const __mmask16 hm = first_lanes(h);
  if (cs == 1) {  // row i of the panel is contiguous in k: transpose 16 x 16 blocks
    __m512 r[16];
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int64_t n = kc - k0 < 16 ? kc - k0 : 16;
      load_transpose16(a + k0, rs, h, n, r);
      for (int64_t c = 0; c < n; ++c) _mm512_mask_storeu_ps(dst + (k0 + c) * h, hm, r[c]);
    }
  } else {  // the h values of step k are contiguous
    for (int64_t k = 0; k < kc; ++k)
      _mm512_mask_storeu_ps(dst + k * h, hm, _mm512_maskz_loadu_ps(hm, a + k * cs));
  }
}

// One micro-panel of w <= kNR columns, padded with zeros to ws (see PackB).
void pack_b_panel(const float* b, int64_t rs, int64_t cs, int64_t w, int64_t ws, int64_t kc,
                  float* dst) {
  if (cs == 1) {  // row k of the panel is contiguous in B
    if (w == kNR) {
      for (int64_t k = 0; k < kc; ++k) {
        _mm512_storeu_ps(dst + k * kNR, _mm512_loadu_ps(b + k * rs));
        _mm512_storeu_ps(dst + k * kNR + kVL, _mm512_loadu_ps(b + k * rs + kVL));
      }
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t j0 = 0; j0 < ws; j0 += 16) {
          const __m512 v = w > j0 ? _mm512_maskz_loadu_ps(first_lanes(w - j0 < 16 ? w - j0 : 16),
                                                          b + k * rs + j0)
                                  : _mm512_setzero_ps();
          _mm512_storeu_ps(dst + k * ws + j0, v);
        }
    }
  } else {  // column j of the panel is contiguous in B: transpose 16 x 16 blocks
    __m512 r[16];
    for (int64_t j0 = 0; j0 < ws; j0 += 16) {
      const int64_t rows = w - j0 < 16 ? w - j0 : 16;  // >= 1: ws = round_up(w, 16)
      for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        const int64_t n = kc - k0 < 16 ? kc - k0 : 16;
        load_transpose16(b + j0 * cs + k0, cs, rows, n, r);
        for (int64_t c = 0; c < n; ++c) _mm512_storeu_ps(dst + (k0 + c) * ws + j0, r[c]);
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
        _mm512_storeu_ps(d, _mm512_loadu_ps(src + j0));
        _mm512_storeu_ps(d + kVL, _mm512_loadu_ps(src + j0 + kVL));
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
// Up to DM = 6 rows of A x DN = 4 rows of B: 24 accumulators; per 16 steps of k, 10 loads feed
// 24 FMAs. The caller keeps the same rows of A (6 x K floats, in L1) over all the rows of B.
constexpr int kDM = 6;
constexpr int kDN = 4;

// The sums of the 16 lanes of a, b, c and d, in lanes 0..3, each in a fixed order of its own lanes
// only (so a variant with fewer columns, zeros for the rest, gives the same bits): in each
// quarter (lanes 0 + 2) + (lanes 1 + 3), then quarters (0 + 2) + (1 + 3). Four sums for about
// the instructions of one 16-lane sum done alone: on the CIFAR dense layer's forward
// (64 x 500 x 1024), one sum per element had taken ~12% of the time. (The full-mask extract avoids GCC 12's
// _mm*_undefined_* warnings.)
inline __m128 lane_sums4(__m512 a, __m512 b, __m512 c, __m512 d) {
  // ab, per quarter: a0+a2 b0+b2 a1+a3 b1+b3; cd likewise.
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  // Per quarter: the quarter's sums of a, b, c, d.
  const __m512d abd = _mm512_castps_pd(ab), cdd = _mm512_castps_pd(cd);
  __m512 v = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)),
                           _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
  v = _mm512_add_ps(v, shuffle_quarters<0x4E>(v, v));  // quarters 2 3 0 1
  v = _mm512_add_ps(v, shuffle_quarters<0xB1>(v, v));  // quarters 1 0 3 2
  return _mm512_mask_extractf32x4_ps(_mm_setzero_ps(), 0xF, v, 0);
}

template <int RM, int RN>
void dot_kernel(int64_t K, const float* __restrict a, int64_t lda, const float* __restrict b,
                int64_t ldb, float* __restrict c, int64_t ldc, float alpha, float beta) {
  __m512 acc[RM][RN];
#pragma GCC unroll 8
  for (int i = 0; i < RM; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < RN; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + kVL <= K; k += kVL) {
    __m512 bv[RN];
#pragma GCC unroll 4
    for (int j = 0; j < RN; ++j) bv[j] = _mm512_loadu_ps(b + j * ldb + k);
#pragma GCC unroll 8
    for (int i = 0; i < RM; ++i) {
      const __m512 av = _mm512_loadu_ps(a + i * lda + k);
#pragma GCC unroll 4
      for (int j = 0; j < RN; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (k < K) {
    const __mmask16 m = first_lanes(K - k);
    __m512 bv[RN];
#pragma GCC unroll 4
    for (int j = 0; j < RN; ++j) bv[j] = _mm512_maskz_loadu_ps(m, b + j * ldb + k);
#pragma GCC unroll 8
    for (int i = 0; i < RM; ++i) {
      const __m512 av = _mm512_maskz_loadu_ps(m, a + i * lda + k);
#pragma GCC unroll 4
      for (int j = 0; j < RN; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
  const __mmask8 cols = static_cast<__mmask8>((1u << RN) - 1u);
#pragma GCC unroll 8
  for (int i = 0; i < RM; ++i) {
    // Explicit multiply and FMA intrinsics, so that the compiler cannot fuse differently in
    // different variants.
    // (j % RN keeps the index of a column the variant lacks in bounds; zero is taken instead.)
    const __m128 s = _mm_mul_ps(_mm_set1_ps(alpha),
                                lane_sums4(acc[i][0], RN > 1 ? acc[i][1 % RN] : zero,
                                           RN > 2 ? acc[i][2 % RN] : zero,
                                           RN > 3 ? acc[i][3 % RN] : zero));
    float* ci = c + i * ldc;
    _mm_mask_storeu_ps(ci, cols, beta == 0.0f ? s
                                              : _mm_fmadd_ps(_mm_set1_ps(beta),
                                                             _mm_maskz_loadu_ps(cols, ci), s));
  }
}

#define NC_DOT_ROW(R) &dot_kernel<R, 1>, &dot_kernel<R, 2>, &dot_kernel<R, 3>, &dot_kernel<R, 4>
const DotKernel kDotTable[] = {NC_DOT_ROW(1), NC_DOT_ROW(2), NC_DOT_ROW(3),
                               NC_DOT_ROW(4), NC_DOT_ROW(5), NC_DOT_ROW(6)};
#undef NC_DOT_ROW
static_assert(sizeof(kDotTable) / sizeof(kDotTable[0]) == kDM * kDN, "dot table size");

#define NC_GEMM_ROW(R) &kernel<R, 1>, &kernel<R, 2>
const MicroKernel kTable[] = {
    NC_GEMM_ROW(1), NC_GEMM_ROW(2), NC_GEMM_ROW(3),   NC_GEMM_ROW(4),
    NC_GEMM_ROW(5), NC_GEMM_ROW(6), NC_GEMM_ROW(7),   NC_GEMM_ROW(8),
    NC_GEMM_ROW(9), NC_GEMM_ROW(10), NC_GEMM_ROW(11), NC_GEMM_ROW(12),
};
#undef NC_GEMM_ROW
static_assert(sizeof(kTable) / sizeof(kTable[0]) == kMR * (kNR / kVL), "kernel table size");

}  // namespace

// Block sizes: see "Cache blocking" in gemm.cpp.
extern const KernelSet kAvx512Kernels = {
    "avx512", kMR, kNR, kVL, /*mc=*/288, /*kc=*/384, /*nc=*/2048,
    kTable, &pack_a, &pack_b, kDM, kDN, kDotTable};

}  // namespace nanocnn::cpu::gemm_detail
