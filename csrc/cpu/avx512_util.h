// cpu/avx512_util.h: small AVX-512 helpers shared by the *_avx512.cpp files, and included only by
// them (it needs their instruction sets). Everything here has internal linkage (an anonymous
// namespace), so each file keeps its own copy and the portability rule of gemm_kernels.h holds:
// no AVX-512 code can be merged into a baseline translation unit.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace nanocnn::cpu {
namespace {

// Mask of the first n lanes (0 <= n <= 16).
inline __mmask16 first_lanes(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// GCC 12's unpack/shuffle intrinsics pass _mm512_undefined_ps() as the unused merge source, which
// -Wmaybe-uninitialized reports once inlined; the full-mask forms below say the same without it.
inline __m512 unpacklo(__m512 a, __m512 b) { return _mm512_mask_unpacklo_ps(a, 0xFFFF, a, b); }
inline __m512 unpackhi(__m512 a, __m512 b) { return _mm512_mask_unpackhi_ps(a, 0xFFFF, a, b); }
inline __m512d unpacklo(__m512d a, __m512d b) { return _mm512_mask_unpacklo_pd(a, 0xFF, a, b); }
inline __m512d unpackhi(__m512d a, __m512d b) { return _mm512_mask_unpackhi_pd(a, 0xFF, a, b); }
template <int Imm>
inline __m512 shuffle_quarters(__m512 a, __m512 b) {
  return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, Imm);
}

// In-place transpose of a 16 x 16 block held in 16 registers: r[i] lane j <-> r[j] lane i.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  // t[2i] lanes (per 128-bit quarter q): r[2i][4q], r[2i+1][4q], r[2i][4q+1], r[2i+1][4q+1].
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = unpacklo(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = unpackhi(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + c] quarter q: rows 4i..4i+3 of column 4q + c.
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm512_castpd_ps(unpacklo(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(unpackhi(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(unpacklo(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(unpackhi(b, d));
  }
  // 4 x 4 transpose of 128-bit quarters: column 4q + c = quarter q of r[c], r[4+c], r[8+c],
  // r[12+c].
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512 u0 = shuffle_quarters<0x44>(r[c], r[4 + c]);
    const __m512 u1 = shuffle_quarters<0xEE>(r[c], r[4 + c]);
    const __m512 u2 = shuffle_quarters<0x44>(r[8 + c], r[12 + c]);
    const __m512 u3 = shuffle_quarters<0xEE>(r[8 + c], r[12 + c]);
    t[c] = shuffle_quarters<0x88>(u0, u2);
    t[4 + c] = shuffle_quarters<0xDD>(u0, u2);
    t[8 + c] = shuffle_quarters<0x88>(u1, u3);
    t[12 + c] = shuffle_quarters<0xDD>(u1, u3);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Loads 16 consecutive floats (the first n of them, n <= 16, zeros elsewhere) of `rows` rows
// src + t * stride, t < rows, and zeros for rows rows..15; then transposes, so that r[c] holds
// element c of each row. Reversed: r[c] holds element n - 1 - c of each row.
inline void load_transpose16(const float* src, int64_t stride, int64_t rows, int64_t n,
                             __m512 r[16], bool reversed = false) {
  const __mmask16 m = first_lanes(n);
  const __m512i back = _mm512_sub_epi32(_mm512_set1_epi32(static_cast<int>(n) - 1),
                                        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                          12, 13, 14, 15));
#pragma GCC unroll 16
  for (int t = 0; t < 16; ++t) {
    r[t] = t < rows ? _mm512_maskz_loadu_ps(m, src + t * stride) : _mm512_setzero_ps();
    if (reversed) r[t] = _mm512_maskz_permutexvar_ps(m, back, r[t]);
  }
  transpose16(r);
}

}  // namespace
}  // namespace nanocnn::cpu
