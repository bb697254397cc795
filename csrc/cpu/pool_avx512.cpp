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
//
// Winner codes (the fused Conv2D + ReLU + pool, ops.h conv2d_relu_pool): the forward pass can
// also write, per window, the cell that won (0..3, row-major) or 4 when the winner is not above 0
// (a ReLU output of 0: no gradient flows). That is all the backward pass needs ("unpool"), so the
// full-size ReLU output never has to be stored.
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

// The cells of 16 windows from their top rows' 32 floats (t0, t1) and bottom rows' (u0, u1).
inline Cells split_cells(__m512 t0, __m512 t1, __m512 u0, __m512 u1) {
  return Cells{_mm512_permutex2var_ps(t0, even_lanes(), t1),
               _mm512_permutex2var_ps(t0, odd_lanes(), t1),
               _mm512_permutex2var_ps(u0, even_lanes(), u1),
               _mm512_permutex2var_ps(u0, odd_lanes(), u1)};
}

// The four cells of windows q0 .. q0 + n - 1 (n <= 16) of rows r0, r1; masked lanes read 0.
inline Cells load_cells(const float* r0, const float* r1, int64_t q0, int64_t n) {
  __m512 t0, t1, u0, u1;
  if (n >= 16) {  // all 16 windows: plain loads
    t0 = _mm512_loadu_ps(r0 + 2 * q0);
    t1 = _mm512_loadu_ps(r0 + 2 * q0 + 16);
    u0 = _mm512_loadu_ps(r1 + 2 * q0);
    u1 = _mm512_loadu_ps(r1 + 2 * q0 + 16);
  } else {
    const __mmask16 lo = lanes_below(2 * n), hi = lanes_below(2 * n - 16);
    t0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * q0);
    t1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * q0 + 16);
    u0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * q0);
    u1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * q0 + 16);
  }
  return split_cells(t0, t1, u0, u1);
}

// take = v > m or v is NaN; then m = take ? v : m.
inline __mmask16 challenge(__m512 v, __m512* m) {
  const __mmask16 take = _mm512_cmp_ps_mask(v, *m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  *m = _mm512_mask_mov_ps(*m, take, v);
  return take;
}

// The winner of each lane's window as masks, one per cell, and the maximum.
struct Winners {
  __m512 max;
  __mmask16 a, b, c, d;
};

// As a tree: (a, b) and (c, d) side by side, then the pairs' winners, two dependent steps
// instead of three. The same winner as challenging a with b, c and d in turn (max4 in pool2d.cpp):
// a later cell takes only when strictly greater or NaN, within a pair as between the pairs.
inline Winners winners(const Cells& x) {
  __m512 ab = x.a, cd = x.c;
  const __mmask16 tb = challenge(x.b, &ab);
  const __mmask16 td = challenge(x.d, &cd);
  __m512 m = ab;
  const __mmask16 t2 = challenge(cd, &m);
  return Winners{m, static_cast<__mmask16>(~t2 & ~tb), static_cast<__mmask16>(~t2 & tb),
                 static_cast<__mmask16>(t2 & ~td), static_cast<__mmask16>(t2 & td)};
}

// 0..3 for the winning cell, 4 where the maximum is not above 0 (NaN included).
inline __m512 codes_of(const Winners& w) {
  __m512 code = _mm512_setzero_ps();
  code = _mm512_mask_mov_ps(code, w.b, _mm512_set1_ps(1.f));
  code = _mm512_mask_mov_ps(code, w.c, _mm512_set1_ps(2.f));
  code = _mm512_mask_mov_ps(code, w.d, _mm512_set1_ps(3.f));
  const __mmask16 positive = _mm512_cmp_ps_mask(w.max, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_mask_mov_ps(code, static_cast<__mmask16>(~positive), _mm512_set1_ps(4.f));
}

inline Winners winners_of_codes(__m512 code) {
  auto is = [&](float v) { return _mm512_cmp_ps_mask(code, _mm512_set1_ps(v), _CMP_EQ_OQ); };
  return Winners{code, is(0.f), is(1.f), is(2.f), is(3.f)};
}

// The gradient of each window on its winner's cell, zero on the other three.
struct CellGrads {
  __m512 a, b, c, d;
};

inline CellGrads route(const Winners& w, __m512 g) {
  return CellGrads{_mm512_maskz_mov_ps(w.a, g), _mm512_maskz_mov_ps(w.b, g),
                   _mm512_maskz_mov_ps(w.c, g), _mm512_maskz_mov_ps(w.d, g)};
}

// Writes windows q0 .. q0 + n - 1 of a row pair back as two rows (the inverse of load_cells).
inline void store_rows(const CellGrads& g, float* o0, float* o1, int64_t q0, int64_t n) {
  if (n >= 16) {  // all 16 windows: plain stores
    _mm512_storeu_ps(o0 + 2 * q0, _mm512_permutex2var_ps(g.a, interleave_lo(), g.b));
    _mm512_storeu_ps(o0 + 2 * q0 + 16, _mm512_permutex2var_ps(g.a, interleave_hi(), g.b));
    _mm512_storeu_ps(o1 + 2 * q0, _mm512_permutex2var_ps(g.c, interleave_lo(), g.d));
    _mm512_storeu_ps(o1 + 2 * q0 + 16, _mm512_permutex2var_ps(g.c, interleave_hi(), g.d));
    return;
  }
  const __mmask16 lo = lanes_below(2 * n), hi = lanes_below(2 * n - 16);
  _mm512_mask_storeu_ps(o0 + 2 * q0, lo, _mm512_permutex2var_ps(g.a, interleave_lo(), g.b));
  _mm512_mask_storeu_ps(o0 + 2 * q0 + 16, hi, _mm512_permutex2var_ps(g.a, interleave_hi(), g.b));
  _mm512_mask_storeu_ps(o1 + 2 * q0, lo, _mm512_permutex2var_ps(g.c, interleave_lo(), g.d));
  _mm512_mask_storeu_ps(o1 + 2 * q0 + 16, hi, _mm512_permutex2var_ps(g.c, interleave_hi(), g.d));
}

template <bool kReLU>
void forward_impl(const float* plane, int64_t W, int64_t P, int64_t Q, float bias, float* out,
                  float* codes) {
  const __m512 vb = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
  // The windows at out + p*Q + q0 .. + 15 (masked to the first n), from cells x.
  auto finish = [&](Cells x, int64_t at, int64_t n) {
    if (kReLU) {  // as fwd_tile in conv_avx512.cpp: max(0, v + bias), a NaN stays NaN
      x.a = _mm512_max_ps(zero, _mm512_add_ps(x.a, vb));
      x.b = _mm512_max_ps(zero, _mm512_add_ps(x.b, vb));
      x.c = _mm512_max_ps(zero, _mm512_add_ps(x.c, vb));
      x.d = _mm512_max_ps(zero, _mm512_add_ps(x.d, vb));
    }
    const Winners w = winners(x);
    if (n >= 16) {
      _mm512_storeu_ps(out + at, w.max);
      if (codes != nullptr) _mm512_storeu_ps(codes + at, codes_of(w));
    } else {
      _mm512_mask_storeu_ps(out + at, lanes_below(n), w.max);
      if (codes != nullptr) _mm512_mask_storeu_ps(codes + at, lanes_below(n), codes_of(w));
    }
  };
  int64_t p = 0;
  if (Q == 8) {
    // Two row pairs per vector (rows 2p .. 2p + 3; their 8 + 8 windows are out[8p .. 8p + 15]):
    // one pass instead of two half-empty ones. The CIFAR network's 16x16 conv, pooled straight
    // from its grid: fused forward at batch 64 on one core 0.793 -> 0.717 ms (2-core Zen 4, A/B,
    // medians of 5).
    for (; p + 2 <= P; p += 2) {
      const float* r0 = plane + 2 * p * W;
      finish(split_cells(_mm512_loadu_ps(r0), _mm512_loadu_ps(r0 + 2 * W),
                         _mm512_loadu_ps(r0 + W), _mm512_loadu_ps(r0 + 3 * W)),
             p * Q, 16);
    }
  }
  for (; p < P; ++p) {
    const float* r0 = plane + 2 * p * W;
    for (int64_t q0 = 0; q0 < Q; q0 += 16)
      finish(load_cells(r0, r0 + W, q0, Q - q0), p * Q + q0, Q - q0);
  }
}

void forward(const float* plane, int64_t W, int64_t P, int64_t Q, float* out, float* codes) {
  forward_impl<false>(plane, W, P, Q, 0.f, out, codes);
}

void forward_relu(const float* plane, int64_t W, int64_t P, int64_t Q, float bias, float* out,
                  float* codes) {
  forward_impl<true>(plane, W, P, Q, bias, out, codes);
}

// Columns 2Q .. W - 1 of a row pair, past its last whole window, to zero: masked stores, where
// the scalar loop they replaced became two memset calls per row pair (5% of the CIFAR network's
// first conv backward, whose grid rows have one such column).
inline void zero_tails(float* o0, float* o1, int64_t Q, int64_t W) {
  for (int64_t j = 2 * Q; j < W; j += 16) {
    const __mmask16 m = lanes_below(W - j);
    _mm512_mask_storeu_ps(o0 + j, m, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(o1 + j, m, _mm512_setzero_ps());
  }
}

void backward(const float* plane, const float* grad, int64_t W, int64_t P, int64_t Q,
              float* out) {
  for (int64_t p = 0; p < P; ++p) {
    const float* r0 = plane + 2 * p * W;
    float* o0 = out + 2 * p * W;
    for (int64_t q0 = 0; q0 < Q; q0 += 16) {
      const int64_t n = Q - q0;
      const Winners w = winners(load_cells(r0, r0 + W, q0, n));
      const __m512 g = _mm512_maskz_loadu_ps(lanes_below(n), grad + p * Q + q0);
      store_rows(route(w, g), o0, o0 + W, q0, n);
    }
    zero_tails(o0, o0 + W, Q, W);
  }
}

void unpool(const float* codes, const float* grad, int64_t W, int64_t P, int64_t Q, float* out) {
  for (int64_t p = 0; p < P; ++p) {
    float* o0 = out + 2 * p * W;
    for (int64_t q0 = 0; q0 < Q; q0 += 16) {
      const int64_t n = Q - q0;
      const __mmask16 keep = lanes_below(n);
      const Winners w = winners_of_codes(_mm512_maskz_loadu_ps(keep, codes + p * Q + q0));
      const __m512 g = _mm512_maskz_loadu_ps(keep, grad + p * Q + q0);
      store_rows(route(w, g), o0, o0 + W, q0, n);
    }
    zero_tails(o0, o0 + W, Q, W);
  }
}

// ---- small planes: 16 windows spanning several row pairs ----------------------------------------
// When every plane is exactly 2P x 2Q with Q in {1, 2, 4, 8}, the windows of the whole tensor in
// order (plane, p, q) read consecutive blocks of 4 floats' worth of input: window j's top-left
// cell is at 4j - 2 (j mod Q), so 16 windows from a multiple of 16 read exactly the 64 floats at
// 4 j0, the first 8 windows the first 32 of them. Two permutes per cell gather the windows'
// cells from those 4 registers, and the backward pass scatters the gradients back the same way.

struct PackedLayout {
  alignas(64) int32_t cell[4][16];     // cell[x][jj]: offset (mod 32) of window jj's cell x
  alignas(64) int32_t ab[4][16];       // output register k, lane l: window jj (+16 if cell b)
  alignas(64) int32_t cd[4][16];       //                             window jj (+16 if cell d)
  __mmask16 from_cd[4];                // lanes of output register k taken from cells c/d

  explicit PackedLayout(int64_t Q) {
    for (int jj = 0; jj < 16; ++jj) {
      const int a = 4 * jj - 2 * (jj % static_cast<int>(Q));
      const int offsets[4] = {a, a + 1, a + 2 * static_cast<int>(Q), a + 2 * static_cast<int>(Q) + 1};
      for (int x = 0; x < 4; ++x) cell[x][jj] = offsets[x] & 31;
    }
    for (int k = 0; k < 4; ++k) {
      from_cd[k] = 0;
      for (int l = 0; l < 16; ++l) {
        const int pos = 16 * k + l, pair = pos / (4 * static_cast<int>(Q));
        const int in_pair = pos % (4 * static_cast<int>(Q));
        const int row = in_pair / (2 * static_cast<int>(Q)), col = in_pair % (2 * static_cast<int>(Q));
        const int jj = pair * static_cast<int>(Q) + col / 2, odd = col % 2;
        ab[k][l] = cd[k][l] = jj + 16 * odd;
        if (row == 1) from_cd[k] = static_cast<__mmask16>(from_cd[k] | (1u << l));
      }
    }
  }
};

inline Cells load_packed(const PackedLayout& lay, const float* x, int64_t n) {
  __m512 v[4];
  for (int k = 0; k < 4; ++k) v[k] = _mm512_maskz_loadu_ps(lanes_below(4 * n - 16 * k), x + 16 * k);
  __m512 c[4];
  for (int cell = 0; cell < 4; ++cell) {
    const __m512i idx = _mm512_load_si512(lay.cell[cell]);
    c[cell] = _mm512_mask_blend_ps(static_cast<__mmask16>(0xFF00),
                                   _mm512_permutex2var_ps(v[0], idx, v[1]),
                                   _mm512_permutex2var_ps(v[2], idx, v[3]));
  }
  return Cells{c[0], c[1], c[2], c[3]};
}

inline void store_packed(const PackedLayout& lay, const CellGrads& g, float* out, int64_t n) {
  for (int k = 0; k < 4; ++k) {
    const __m512 top = _mm512_permutex2var_ps(g.a, _mm512_load_si512(lay.ab[k]), g.b);
    const __m512 bottom = _mm512_permutex2var_ps(g.c, _mm512_load_si512(lay.cd[k]), g.d);
    _mm512_mask_storeu_ps(out + 16 * k, lanes_below(4 * n - 16 * k),
                          _mm512_mask_blend_ps(lay.from_cd[k], top, bottom));
  }
}

void forward_packed(const float* x, int64_t windows, int64_t Q, float* out, float* codes) {
  const PackedLayout lay(Q);
  for (int64_t j0 = 0; j0 < windows; j0 += 16) {
    const int64_t n = windows - j0;
    const Winners w = winners(load_packed(lay, x + 4 * j0, n));
    _mm512_mask_storeu_ps(out + j0, lanes_below(n), w.max);
    if (codes != nullptr) _mm512_mask_storeu_ps(codes + j0, lanes_below(n), codes_of(w));
  }
}

void backward_packed(const float* x, const float* grad, int64_t windows, int64_t Q, float* out) {
  const PackedLayout lay(Q);
  for (int64_t j0 = 0; j0 < windows; j0 += 16) {
    const int64_t n = windows - j0;
    const Winners w = winners(load_packed(lay, x + 4 * j0, n));
    const __m512 g = _mm512_maskz_loadu_ps(lanes_below(n), grad + j0);
    store_packed(lay, route(w, g), out + 4 * j0, n);
  }
}

void unpool_packed(const float* codes, const float* grad, int64_t windows, int64_t Q,
                   float* out) {
  const PackedLayout lay(Q);
  for (int64_t j0 = 0; j0 < windows; j0 += 16) {
    const int64_t n = windows - j0;
    const __mmask16 keep = lanes_below(n);
    const Winners w = winners_of_codes(_mm512_maskz_loadu_ps(keep, codes + j0));
    store_packed(lay, route(w, _mm512_maskz_loadu_ps(keep, grad + j0)), out + 4 * j0, n);
  }
}

}  // namespace

extern const PoolKernelSet kAvx512PoolKernels = {
    "avx512", &forward, &forward_relu, &backward, &unpool, &forward_packed, &backward_packed,
    &unpool_packed};

}  // namespace nanocnn::cpu::pool_detail
