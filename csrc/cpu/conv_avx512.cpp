// cpu/conv_avx512.cpp: AVX-512 micro-kernels of the direct convolution (see conv2d.cpp for the
// algorithm, conv_kernels.h for the contracts). Compiled with -mavx512f ...; only called after
// the CPU said yes. Uses nothing but intrinsics (the portability rule of gemm_kernels.h).
//
// Forward tile: up to 12 rows (output channels) x 32 flat positions = 24 zmm accumulators, the
// shape of the GEMM micro-kernel (gemm_avx512.cpp), but reduction step t reads its input row at
// b + off[t] (a shifted row of the padded image) instead of a packed panel: per step 2 vector
// loads + 12 broadcast weights feed 24 FMAs. Its outputs go straight to their (P, Q) places, with
// the bias and ReLU (FwdOut in conv_kernels.h).
// Weight-gradient tiles, two ways round (conv2d.cpp picks one per layer):
//  - lane tile: 4 output channels x 6 taps = 24 zmm accumulators of dot products, positions along
//    the lanes; per 16 positions 4 gradient vectors + 6 shifted input vectors feed 24 FMAs. The
//    accumulators run over all images of a group and are summed across lanes once at the end.
//  - outer-product tile: 6 taps x 64 output channels (or 8 x 48, 12 x 32, 12 x 16) = 24
//    accumulators, the positions as the reduction; per position 4 vectors of the transposed
//    gradient + 6 broadcast input values feed 24 FMAs, and nothing is left to add at the end.
#include <immintrin.h>

#include <cstdint>

#include "cpu/avx512_util.h"
#include "cpu/conv_kernels.h"

namespace nanocnn::cpu::conv_detail {
namespace {

constexpr int kVL = 16;
constexpr int kMR = 12;
constexpr int kLaneRows = 4;
constexpr int kLaneCols = 6;
constexpr int kOuterKV = 4;

inline __mmask16 lanes_below(int64_t n) {  // the first min(n, 16) lanes
  return first_lanes(n < kVL ? n : kVL);
}

template <int R, int V>
void fwd_tile(int64_t kc, const float* __restrict a, const float* __restrict b,
              const int64_t* __restrict off, const FwdOut& out, int64_t row0, int64_t v0) {
  __m512 acc[R][V];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t t = 0; t < kc; ++t) {
    const float* bt = b + off[t];
    __m512 bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_ps(bt + kVL * v);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += R;
  }
  // Store: straight into the output planes, the grid's dropped lanes squeezed out in registers
  // (vcompressps, then a store of the kept count; the compressing store to memory is microcoded
  // on Zen 4), then a prefetch for writing of the lines these rows' next tile (two vectors on)
  // will store, a sweep of the weight panels ahead. This replaced a flat output buffer cropped in
  // a second pass (measured on the 2-core Zen 4, one core, A/B: cats-vs-dogs 3->16 3x3 @150 at
  // batch 32 8.5 -> 7.0 ms, CIFAR 3->16 2x2 @32 at batch 256 2.4 -> 1.9, 16->32 3x3 @74 15.9
  // -> 15.3; without the prefetch the stores' misses made 16->32 @74 1.5% slower, 4% on two).
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) {
    const int64_t at = out.at != nullptr ? out.at[v0 + v] : (v0 + v) * kVL;
    const __mmask16 keep = out.at != nullptr ? out.keep[v0 + v] : static_cast<__mmask16>(0xFFFF);
    if (keep == 0) continue;
    const __mmask16 packed = lanes_below(__builtin_popcount(keep));
    float* y = out.y + row0 * out.plane + at;
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      __m512 r = acc[i][v];
      // With ReLU the bias is added even when it is 0, as the pool over the flat grid does
      // (max_pool2x2_forward_codes_relu): -0 + 0 is +0, so the two agree to the bit.
      if (out.bias != nullptr || out.relu)
        r = _mm512_add_ps(r, _mm512_set1_ps(out.bias != nullptr ? out.bias[row0 + i] : 0.f));
      if (out.relu) r = _mm512_max_ps(zero, r);  // NaN stays NaN
      if (keep == 0xFFFF)
        _mm512_storeu_ps(y + i * out.plane, r);
      else
        _mm512_mask_storeu_ps(y + i * out.plane, packed, _mm512_maskz_compress_ps(keep, r));
    }
  }
  if (out.at != nullptr && v0 + 2 < out.vectors) {
    const float* next = out.y + row0 * out.plane + out.at[v0 + 2];  // up to 32 floats, 3 lines
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      __builtin_prefetch(next + i * out.plane, 1, 3);
      __builtin_prefetch(next + i * out.plane + 16, 1, 3);
      __builtin_prefetch(next + i * out.plane + 31, 1, 3);
    }
  }
}

// Reads src (and the mask) only on the lanes it keeps: masked loads never touch memory outside.
inline __m512 load_kept(const float* src, const float* mask, __mmask16 m) {
  const __m512 v = _mm512_maskz_loadu_ps(m, src);
  if (mask == nullptr) return v;
  const __m512 mv = _mm512_maskz_loadu_ps(m, mask);
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(mv, _mm512_setzero_ps(), _CMP_GT_OQ), v);
}

inline void zero_span(float* dst, int64_t n) {
  for (int64_t j = 0; j < n; j += kVL)
    _mm512_mask_storeu_ps(dst + j, lanes_below(n - j), _mm512_setzero_ps());
}

void pad_planes(const float* src, const float* mask, int64_t planes, int64_t src_plane,
                int64_t src_ld, int64_t rows, int64_t w, float* dst, int64_t dst_plane,
                int64_t top, int64_t ld, int64_t pl) {
  // Source rows as far apart as the destination's (the shifted copies of "same" convolutions):
  // a plane's rows are then one span, destination float i reading source float i - pl, on the
  // lanes whose column i mod ld lies in [pl, pl + w). With ld dividing 16, or 16 dividing ld,
  // those lanes form one of at most 4 masks per vector (by its position mod ld), so 8-wide rows
  // go two to a vector and the masks are worked out once, not per row (measured: padding took
  // 13% of the CIFAR network's 8x8 conv backward, at ~9 cycles a row).
  // (Whole rows, pl = 0 and w = ld, take every lane whatever ld.)
  const bool whole_rows = pl == 0 && w == ld;
  const int64_t period = !whole_rows && ld % kVL == 0 ? ld / kVL : 1;
  const bool spans =
      src_ld == ld && (whole_rows || kVL % ld == 0 || (ld % kVL == 0 && period <= 4));
  __mmask16 span_mask[4] = {};
  if (spans) {
    for (int64_t v = 0; v < period; ++v)
      for (int l = 0; l < kVL; ++l) {
        const int64_t col = (v * kVL + l) % ld;
        if (col >= pl && col < pl + w) span_mask[v] |= static_cast<__mmask16>(1u << l);
      }
  }
  for (int64_t c = 0; c < planes; ++c) {
    const float* s = src + c * src_plane;
    const float* m = mask != nullptr ? mask + c * src_plane : nullptr;
    float* d = dst + c * dst_plane;
    zero_span(d, top * ld);
    d += top * ld;
    if (spans) {
      const int64_t n = rows * ld;
      const float* sp = s - pl;  // lane j of the span reads sp[j]
      const float* mp = m != nullptr ? m - pl : nullptr;
      int64_t j = 0, v = 0;
      for (; j + kVL <= n; j += kVL, v = v + 1 == period ? 0 : v + 1)
        _mm512_storeu_ps(d + j, load_kept(sp + j, mp != nullptr ? mp + j : nullptr,
                                          span_mask[v]));
      if (j < n) {
        const __mmask16 all = lanes_below(n - j);
        _mm512_mask_storeu_ps(d + j, all, load_kept(sp + j, mp != nullptr ? mp + j : nullptr,
                                                     all & span_mask[v]));
      }
    } else {
      for (int64_t r = 0; r < rows; ++r) {
        const float* sr = s + r * src_ld - pl;  // lane j of the row reads sr[j]
        const float* mr = m != nullptr ? m + r * src_ld - pl : nullptr;
        float* dr = d + r * ld;
        for (int64_t j0 = 0; j0 < ld; j0 += kVL) {
          const int64_t lo = pl - j0, hi = pl + w - j0;  // lanes [lo, hi) read src
          __mmask16 k = lanes_below(hi > 0 ? hi : 0);
          if (lo > 0) k &= static_cast<__mmask16>(~lanes_below(lo));
          _mm512_mask_storeu_ps(dr + j0, lanes_below(ld - j0),
                                load_kept(sr + j0, mr != nullptr ? mr + j0 : nullptr, k));
        }
      }
    }
    zero_span(d + rows * ld, dst_plane - (top + rows) * ld);
  }
}

// acc[i][j] = per-lane sums of g row i times x shifted by off[j], over all images (DwLaneTile);
// with Masked, only the lanes keep marks take part.
template <int R, int J, bool Masked>
inline __attribute__((always_inline)) void lane_dots(
    __m512 (&acc)[R][J], int64_t images, int64_t len, const float* __restrict g, int64_t g_img,
    int64_t g_row, const float* __restrict x, int64_t x_img, const int64_t* __restrict off,
    const uint16_t* __restrict keep) {
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 6
    for (int j = 0; j < J; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t m = 0; m < images; ++m) {
    const float* gm = g + m * g_img;
    const float* xm = x + m * x_img;
    for (int64_t l = 0; l < len; l += kVL) {
      const __mmask16 k = Masked ? keep[l / kVL] : static_cast<__mmask16>(0xFFFF);
      __m512 gv[R];
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) gv[i] = _mm512_loadu_ps(gm + i * g_row + l);
#pragma GCC unroll 6
      for (int j = 0; j < J; ++j) {
        const __m512 xv = _mm512_loadu_ps(xm + off[j] + l);
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i)
          acc[i][j] = Masked ? _mm512_mask3_fmadd_ps(gv[i], xv, acc[i][j], k)
                             : _mm512_fmadd_ps(gv[i], xv, acc[i][j]);
      }
    }
  }
}

// The lane sums of 16 vectors at once: lane i of the result is the 16 lanes of v[i] added in the
// tree _mm512_reduce_add_ps uses (lanes l and l + 8 first, then l and l + 4, l and l + 2, l and
// l + 1), so the sums are the same to the bit, but each level works on all the vectors at once:
// 15 pairs of shuffles and 15 adds in all, against 16 x 7 instructions one vector at a time.
// (A lane tile over one small image, 256 positions at 16x16, spent about a third of its FMAs'
// time on 24 separate reductions; such layers now take outer-product tiles.)
inline __m512 lane_sums16(const __m512 (&v)[16]) {
  __m512 t[8], u[4], w[2];
  // Level 1, 256-bit halves: t[p] = (v[2p] lanes l + l+8 | v[2p+1] lanes l + l+8), l < 8.
#pragma GCC unroll 8
  for (int p = 0; p < 8; ++p)
    t[p] = _mm512_add_ps(shuffle_quarters<_MM_SHUFFLE(1, 0, 1, 0)>(v[2 * p], v[2 * p + 1]),
                         shuffle_quarters<_MM_SHUFFLE(3, 2, 3, 2)>(v[2 * p], v[2 * p + 1]));
  // Level 2, 128-bit quarters: 128-bit chunk k of u[p] holds vector 4p + k, lanes l + l+4, l < 4.
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p)
    u[p] = _mm512_add_ps(shuffle_quarters<_MM_SHUFFLE(2, 0, 2, 0)>(t[2 * p], t[2 * p + 1]),
                         shuffle_quarters<_MM_SHUFFLE(3, 1, 3, 1)>(t[2 * p], t[2 * p + 1]));
  // Level 3, pairs within a chunk: chunk k of w[p] holds vector 8p + k in lanes 0-1 and
  // 8p + 4 + k in lanes 2-3.
#pragma GCC unroll 2
  for (int p = 0; p < 2; ++p)
    w[p] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * p], u[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(u[2 * p], u[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // Level 4: lane m of chunk k is the sum of vector 4m + k; put vector i in lane i.
  const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order =
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, z);
}

// The lanes off the outputs hold g = 0, so there each product is 0 (x finite) or NaN (x inf or
// NaN): sums taken over every lane equal the kept-lane sums (up to the sign of a zero) unless a
// lane came out NaN. So the tile sums every lane, and only then, rarely, again with the mask
// (which cost 2-4% when always on: cats-vs-dogs 16->32 3x3 @74 backward at batch 32, one core,
// 31.3 -> 32.2 ms).
template <int R, int J>
void lane_tile(int64_t images, int64_t len, const float* __restrict g, int64_t g_img,
               int64_t g_row, const float* __restrict x, int64_t x_img,
               const int64_t* __restrict off, const uint16_t* __restrict keep,
               float* __restrict dwT, int64_t ldw, bool accumulate) {
  constexpr int kSums = R * J, kGroups = (kSums + 15) / 16;
  __m512 acc[R][J];
  float sum[kGroups * 16];  // sum[i * J + j]: the lanes of acc[i][j] added
  auto lane_sums = [&] {    // fills sum; true if one is NaN
    bool nan = false;
#pragma GCC unroll 2
    for (int grp = 0; grp < kGroups; ++grp) {
      __m512 v[16];
#pragma GCC unroll 16
      for (int e = 0; e < 16; ++e) {
        const int a = grp * 16 + e;
        v[e] = a < kSums ? acc[a / J][a % J] : _mm512_setzero_ps();
      }
      const __m512 s = lane_sums16(v);
      nan |= _mm512_cmp_ps_mask(s, s, _CMP_UNORD_Q) != 0;
      _mm512_storeu_ps(sum + grp * 16, s);
    }
    return nan;
  };
  lane_dots<R, J, false>(acc, images, len, g, g_img, g_row, x, x_img, off, keep);
  if (lane_sums()) {
    lane_dots<R, J, true>(acc, images, len, g, g_img, g_row, x, x_img, off, keep);
    lane_sums();
  }
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 6
    for (int j = 0; j < J; ++j)
      dwT[j * ldw + i] = accumulate ? dwT[j * ldw + i] + sum[i * J + j] : sum[i * J + j];
}

// Per output position: KV vector loads of the transposed gradient (16 KV channels) and one
// broadcast input value per tap feed taps x KV FMAs into as many accumulators, each a running sum
// over the positions (the GEMM micro-kernel's outer product, with the positions as its k). So
// nothing is left to add across lanes at the end, and a tile is as fast for one small image
// (batch 1) as for many.
template <int KV, int NT>
void outer_tile(int64_t images, int64_t p0, int64_t p1, int64_t Q, int64_t Wr,
             const float* __restrict gT, int64_t g_img, int64_t ldg, const float* __restrict x,
             int64_t x_img, const int64_t* __restrict off, float* __restrict dwT, int64_t ldw,
             bool accumulate) {
  __m512 acc[NT][KV];
#pragma GCC unroll 12
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int v = 0; v < KV; ++v)
      acc[t][v] = accumulate ? _mm512_loadu_ps(dwT + t * ldw + kVL * v) : _mm512_setzero_ps();
  // Rows of Q positions Wr apart; one run of them all when there are no dropped columns.
  const int64_t runs = Wr == Q ? 1 : p1 - p0, run = Wr == Q ? (p1 - p0) * Q : Q;
  for (int64_t m = 0; m < images; ++m) {
    for (int64_t r = 0; r < runs; ++r) {
      const int64_t i0 = (p0 + r) * Wr;
      const float* g = gT + m * g_img + i0 * ldg;
      const float* xs = x + m * x_img + i0;
      for (int64_t q = 0; q < run; ++q, g += ldg) {
        __m512 gv[KV];
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) gv[v] = _mm512_loadu_ps(g + kVL * v);
#pragma GCC unroll 12
        for (int t = 0; t < NT; ++t) {
          const __m512 xb = _mm512_set1_ps(xs[off[t] + q]);
#pragma GCC unroll 4
          for (int v = 0; v < KV; ++v) acc[t][v] = _mm512_fmadd_ps(xb, gv[v], acc[t][v]);
        }
      }
    }
  }
#pragma GCC unroll 12
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int v = 0; v < KV; ++v) _mm512_storeu_ps(dwT + t * ldw + kVL * v, acc[t][v]);
}

void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, int64_t rows_out,
               float* dst, int64_t ldd) {
  __m512 r[16];
  for (int64_t i0 = 0; i0 < rows_out; i0 += kVL) {
    const __mmask16 kept = lanes_below(rows_out - i0);
    for (int64_t j0 = 0; j0 < cols; j0 += kVL) {
      const int64_t n = cols - j0 < kVL ? cols - j0 : kVL;
      load_transpose16(src + i0 * lds + j0, lds, rows - i0, n, r);
      for (int64_t c = 0; c < n; ++c) _mm512_mask_storeu_ps(dst + (j0 + c) * ldd + i0, kept, r[c]);
    }
  }
}

// A 16 x 16 transpose in registers (avx512_util.h) per block: the scalar loop it replaced, one
// strided load per weight, took 5-7% of a 128->128 3x3 @16 conv at batch 1 on two threads.
void pack_block(const float* src, int64_t stride, int64_t rows, int64_t n, bool reversed,
                float* dst) {
  __m512 r[16];
  load_transpose16(src, stride, rows, n, r, reversed);
  const __mmask16 kept = first_lanes(rows);
  for (int64_t t = 0; t < n; ++t) _mm512_mask_storeu_ps(dst + t * rows, kept, r[t]);
}

// 64 interleaved partial sums in 4 vectors (lane l of vector j takes i = 16 j + l, + 64, ...),
// then vectors 0 + 2, 1 + 3, those two, and the 16 lanes in _mm512_reduce_add_ps's fixed tree.
// Four running sums, not one: a single vector of sums waits on each add (the bias gradients'
// sums took 12% of the CIFAR network's first conv backward on one core with SSE's 4 chains).
float sum(const float* v, int64_t n) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 4 * kVL <= n; i += 4 * kVL)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_loadu_ps(v + i + kVL * j));
  for (int j = 0; i < n; i += kVL, ++j)
    acc[j] = _mm512_add_ps(acc[j], _mm512_maskz_loadu_ps(lanes_below(n - i), v + i));
  return _mm512_reduce_add_ps(
      _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3])));
}

constexpr FwdTile kFwd[kMR * 2] = {
    &fwd_tile<1, 1>,  &fwd_tile<1, 2>,  &fwd_tile<2, 1>,  &fwd_tile<2, 2>,  &fwd_tile<3, 1>,
    &fwd_tile<3, 2>,  &fwd_tile<4, 1>,  &fwd_tile<4, 2>,  &fwd_tile<5, 1>,  &fwd_tile<5, 2>,
    &fwd_tile<6, 1>,  &fwd_tile<6, 2>,  &fwd_tile<7, 1>,  &fwd_tile<7, 2>,  &fwd_tile<8, 1>,
    &fwd_tile<8, 2>,  &fwd_tile<9, 1>,  &fwd_tile<9, 2>,  &fwd_tile<10, 1>, &fwd_tile<10, 2>,
    &fwd_tile<11, 1>, &fwd_tile<11, 2>, &fwd_tile<12, 1>, &fwd_tile<12, 2>};

#define NC_LANE_ROW(R)                                                                          \
  &lane_tile<R, 1>, &lane_tile<R, 2>, &lane_tile<R, 3>, &lane_tile<R, 4>, &lane_tile<R, 5>,       \
      &lane_tile<R, 6>
constexpr DwLaneTile kLane[kLaneRows * kLaneCols] = {NC_LANE_ROW(1), NC_LANE_ROW(2),
                                                     NC_LANE_ROW(3), NC_LANE_ROW(4)};
#undef NC_LANE_ROW

// Most taps per outer-product tile for KV = 1..4 vectors: 24 accumulators where the channels
// allow (12 with one vector: 13 loads per 12 FMAs already).
constexpr int kOuterTaps[kOuterKV] = {12, 12, 8, 6};
#define NC_OUTER_ROW(KV, ...)                                                                   \
  &outer_tile<KV, 1>, &outer_tile<KV, 2>, &outer_tile<KV, 3>, &outer_tile<KV, 4>,               \
      &outer_tile<KV, 5>, &outer_tile<KV, 6>, __VA_ARGS__
constexpr DwOuterTile kOuter[kOuterKV * 12] = {
    NC_OUTER_ROW(1, &outer_tile<1, 7>, &outer_tile<1, 8>, &outer_tile<1, 9>, &outer_tile<1, 10>,
                 &outer_tile<1, 11>, &outer_tile<1, 12>),
    NC_OUTER_ROW(2, &outer_tile<2, 7>, &outer_tile<2, 8>, &outer_tile<2, 9>, &outer_tile<2, 10>,
                 &outer_tile<2, 11>, &outer_tile<2, 12>),
    NC_OUTER_ROW(3, &outer_tile<3, 7>, &outer_tile<3, 8>, nullptr, nullptr, nullptr, nullptr),
    NC_OUTER_ROW(4, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr)};
#undef NC_OUTER_ROW

}  // namespace

extern const ConvKernelSet kAvx512ConvKernels = {
    "avx512", kMR,    kFwd,        kLaneRows,   kLaneCols, kLane,
    kOuterKV, kOuterTaps, kOuter, &pad_planes, &pack_block, &transpose, &sum};

}  // namespace nanocnn::cpu::conv_detail
