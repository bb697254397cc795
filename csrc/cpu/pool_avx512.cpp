// cpu/pool_avx512.cpp: the 2x2 / stride 2 max pooling of pool2d.cpp, 16 windows at a time.
// Compiled with -mavx512f ...; only called after the CPU said yes; intrinsics only (the
// portability rule of gemm_kernels.h).
//
// A pair of input rows holds 16 windows in 32 + 32 floats; two permutes split each row into its
// even and odd columns, giving the windows' four cells a, b, c, d (row-major) in four registers.
// The winner follows the scalar rule exactly (max4 in pool2d.cpp): the first maximum in row-major
// order, a NaN winning over everything before it. The backward pass sends each window's gradient
// to the winner's lane and zero to the other three, and interleaves them back into two rows.
// The last block of a row is masked (Q need not be a multiple of 16).
#include <immintrin.h>

#include <cstdint>

#include "cpu/pool_kernels.h"

namespace nanocnn::cpu::pool_detail {
namespace {

inline __mmask16 lanes_below(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF)
                 : static_cast<__mmask16>(n <= 0 ? 0u : (1u << n) - 1u);
}

// Lane i of even/odd: element 2i / 2i+1 of the 32 floats (lo, hi). Interleaving e and o back:
// lo = e0 o0 e1 o1 ... e7 o7, hi = e8 o8 ... e15 o15. (Functions, not globals: a global would be
// built by AVX-512 code when the module loads, on any CPU.)
inline __m512i even_lanes() {
  return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}
inline __m512i odd_lanes() {
  return _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}
inline __m512i interleave_lo() {
  return _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}
inline __m512i interleave_hi() {
  return _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
}

struct Cells {
  __m512 a, b, c, d;
};

// The four cells of windows q0 .. q0 + n - 1 (n <= 16) of rows r0, r1; masked lanes read 0.
inline Cells load_cells(const float* r0, const float* r1, int64_t q0, int64_t n) {
  const __mmask16 lo = lanes_below(2 * n), hi = lanes_below(2 * n - 16);
  const __m512 t0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * q0);
  const __m512 t1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * q0 + 16);
  const __m512 u0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * q0);
  const __m512 u1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * q0 + 16);
  return Cells{_mm512_permutex2var_ps(t0, even_lanes(), t1), _mm512_permutex2var_ps(t0, odd_lanes(), t1),
               _mm512_permutex2var_ps(u0, even_lanes(), u1), _mm512_permutex2var_ps(u0, odd_lanes(), u1)};
}

// take = v > m or v is NaN; then m = take ? v : m.
inline __mmask16 challenge(__m512 v, __m512* m) {
  const __mmask16 take = _mm512_cmp_ps_mask(v, *m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  *m = _mm512_mask_mov_ps(*m, take, v);
  return take;
}

void forward(const float* plane, int64_t W, int64_t P, int64_t Q, float* out) {
  for (int64_t p = 0; p < P; ++p) {
    const float* r0 = plane + 2 * p * W;
    const float* r1 = r0 + W;
    for (int64_t q0 = 0; q0 < Q; q0 += 16) {
      const Cells x = load_cells(r0, r1, q0, Q - q0);
      __m512 m = x.a;
      challenge(x.b, &m);
      challenge(x.c, &m);
      challenge(x.d, &m);
      _mm512_mask_storeu_ps(out + p * Q + q0, lanes_below(Q - q0), m);
    }
  }
}

void backward(const float* plane, const float* grad, int64_t W, int64_t P, int64_t Q,
              float* out) {
  for (int64_t p = 0; p < P; ++p) {
    const float* r0 = plane + 2 * p * W;
    const float* r1 = r0 + W;
    float* o0 = out + 2 * p * W;
    float* o1 = o0 + W;
    for (int64_t q0 = 0; q0 < Q; q0 += 16) {
      const int64_t n = Q - q0;
      const Cells x = load_cells(r0, r1, q0, n);
      __m512 m = x.a;
      const __mmask16 tb = challenge(x.b, &m);
      const __mmask16 tc = challenge(x.c, &m);
      const __mmask16 td = challenge(x.d, &m);
      // winner d if td, else c if tc, else b if tb, else a
      const __mmask16 wd = td, wc = tc & ~td, wb = tb & ~tc & ~td;
      const __mmask16 wa = static_cast<__mmask16>(~(tb | tc | td));
      const __m512 g = _mm512_maskz_loadu_ps(lanes_below(n), grad + p * Q + q0);
      const __m512 ga = _mm512_maskz_mov_ps(wa, g), gb = _mm512_maskz_mov_ps(wb, g);
      const __m512 gc = _mm512_maskz_mov_ps(wc, g), gd = _mm512_maskz_mov_ps(wd, g);
      const __mmask16 lo = lanes_below(2 * n), hi = lanes_below(2 * n - 16);
      _mm512_mask_storeu_ps(o0 + 2 * q0, lo, _mm512_permutex2var_ps(ga, interleave_lo(), gb));
      _mm512_mask_storeu_ps(o0 + 2 * q0 + 16, hi, _mm512_permutex2var_ps(ga, interleave_hi(), gb));
      _mm512_mask_storeu_ps(o1 + 2 * q0, lo, _mm512_permutex2var_ps(gc, interleave_lo(), gd));
      _mm512_mask_storeu_ps(o1 + 2 * q0 + 16, hi, _mm512_permutex2var_ps(gc, interleave_hi(), gd));
    }
  }
}

}  // namespace

extern const PoolKernelSet kAvx512PoolKernels = {"avx512", &forward, &backward};

}  // namespace nanocnn::cpu::pool_detail
