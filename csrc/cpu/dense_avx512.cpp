// cpu/dense_avx512.cpp: the AVX-512 kernel of the dense layer's backward pass at a small batch
// (see dense.cpp for when it runs, dense_kernels.h for the contract). Compiled with -mavx512f
// ...; only called after the CPU said yes. Uses nothing but intrinsics (the portability rule of
// gemm_kernels.h).
//
// With a batch of a few rows both GEMMs of the backward pass are matrix-vector products: each
// reads or writes every element of w once for a handful of flops, so the time is the traffic of
// w and dw (the GEMM path also packed w: another read and write of it). One sweep does both here:
// rows of w are taken R = 4 at a time, and for each 16 columns the dx vectors of the N batch rows
// (from L1 or L2, where dx stays) take the R rows' contributions while the R rows of dw are
// written from the x vectors. So w is read once, dw written once, and dx read and written once
// per 4 rows of w.
#include <immintrin.h>

#include <cstdint>

#include "cpu/dense_kernels.h"

namespace nanocnn::cpu::dense_detail {
namespace {

constexpr int kVL = 16;
constexpr int kRows = 4;

inline __mmask16 lanes_below(int64_t n) {  // the first min(n, 16) lanes
  return n >= kVL ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// Rows o .. o + R - 1 of w and dw, all columns, batch rows 0 .. NB - 1. first: o == 0 (dx starts
// from 0 instead of being read).
template <int NB, int R>
void rows_block(int64_t in, const float* __restrict dy, int64_t ldy, const float* __restrict x,
                const float* __restrict w, float* __restrict dx, float* __restrict dw, int64_t o,
                bool first) {
  __m512 g[NB][R];  // dy[n, o + r], broadcast
#pragma GCC unroll 4
  for (int n = 0; n < NB; ++n)
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) g[n][r] = _mm512_set1_ps(dy[n * ldy + o + r]);
  const float* wo = w + o * in;
  float* dwo = dw + o * in;
  for (int64_t j = 0; j < in; j += kVL) {
    const __mmask16 m = lanes_below(in - j);
    __m512 xv[NB], acc[NB];
#pragma GCC unroll 4
    for (int n = 0; n < NB; ++n) {
      xv[n] = _mm512_maskz_loadu_ps(m, x + n * in + j);
      acc[n] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, dx + n * in + j);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_maskz_loadu_ps(m, wo + r * in + j);
#pragma GCC unroll 4
      for (int n = 0; n < NB; ++n) acc[n] = _mm512_fmadd_ps(g[n][r], wv, acc[n]);
      __m512 d = _mm512_mul_ps(g[0][r], xv[0]);
#pragma GCC unroll 4
      for (int n = 1; n < NB; ++n) d = _mm512_fmadd_ps(g[n][r], xv[n], d);
      _mm512_mask_storeu_ps(dwo + r * in + j, m, d);
    }
#pragma GCC unroll 4
    for (int n = 0; n < NB; ++n) _mm512_mask_storeu_ps(dx + n * in + j, m, acc[n]);
  }
}

template <int NB>
void thin_rows(int64_t in, int64_t rows, const float* dy, int64_t ldy, const float* x,
               const float* w, float* dx, float* dw) {
  int64_t o = 0;
  for (; o + kRows <= rows; o += kRows) rows_block<NB, kRows>(in, dy, ldy, x, w, dx, dw, o, o == 0);
  switch (rows - o) {
    case 3: rows_block<NB, 3>(in, dy, ldy, x, w, dx, dw, o, o == 0); break;
    case 2: rows_block<NB, 2>(in, dy, ldy, x, w, dx, dw, o, o == 0); break;
    case 1: rows_block<NB, 1>(in, dy, ldy, x, w, dx, dw, o, o == 0); break;
    default: break;
  }
}

void thin_backward(int64_t N, int64_t in, int64_t rows, const float* dy, int64_t ldy,
                   const float* x, const float* w, float* dx, float* dw) {
  switch (N) {
    case 1: thin_rows<1>(in, rows, dy, ldy, x, w, dx, dw); break;
    case 2: thin_rows<2>(in, rows, dy, ldy, x, w, dx, dw); break;
    case 3: thin_rows<3>(in, rows, dy, ldy, x, w, dx, dw); break;
    case 4: thin_rows<4>(in, rows, dy, ldy, x, w, dx, dw); break;
    default: break;
  }
}

}  // namespace

extern const DenseKernelSet kAvx512DenseKernels = {"avx512", &thin_backward};

}  // namespace nanocnn::cpu::dense_detail
