// cpu/conv_kernels.h: internal contract between the direct convolution (conv2d.cpp) and its SIMD
// micro-kernels (conv_avx512.cpp). Nothing else uses it. The portability rule of gemm_kernels.h
// applies: the SIMD file exports nothing but the plain-data kernel set below.
//
// Both kernels see an image through a "flat padded grid": the image zero-padded to (C, Hp, Wp)
// and each channel read as one row of Hp*Wp floats. Output pixel (p, q) is flat position
// i = p * Wp + q, and its input for kernel tap (r, s) is at i + r * Wp + s of the channel. So one
// tap of one channel is a *contiguous* row shifted by a constant offset, and a convolution is a
// GEMM whose B rows are such shifted rows (no im2col): positions with q >= Q are computed too and
// thrown away (Wp - Q of every Wp, e.g. 1 in 33 for a 2x2 "same" conv at 32x32).
#pragma once

#include <cstdint>

namespace nanocnn::cpu::conv_detail {

// Where a forward tile puts its outputs. Tile row i (output channel row0 + i) goes to the plane
// at y + (row0 + i) * plane. The tile's vectors are the 16-position vectors v0, v0 + 1 of the
// flat grid (or of its row tiles, conv2d.cpp's FlatConv::choose_split: then every lane is kept);
// vector v lands at y + at[v] of the plane, its lanes set in keep[v] packed together
// in lane order (the grid's dropped columns, q >= Q, and the positions past its last row close
// up, so the output is (P, Q) with no pass to crop it); at and keep have `vectors` entries.
// at == nullptr: the flat grid itself, vector v at 16 v, every lane kept. Then bias[row0 + i] is
// added (when bias is not null), and with relu max(0, .) taken (a NaN stays NaN).
struct FwdOut {
  float* y;
  int64_t plane;
  const int64_t* at;
  const uint16_t* keep;
  int64_t vectors;
  const float* bias;
  bool relu;
};

// Outer-product tile: rows x (16 * V) outputs, V in {1, 2}.
//   acc[i][j] = sum over t = 0..kc-1, in this order, of a[t * rows + i] * b[off[t] + j]
// for i < rows <= mr, j < 16 * V, stored as `out` says (above), rows from row0, vectors from v0.
// a: packed weights (kc x rows, t-major); b + off[t]: the shifted input row of reduction step t
// (16 V readable floats).
using FwdTile = void (*)(int64_t kc, const float* a, const float* b, const int64_t* off,
                         const FwdOut& out, int64_t row0, int64_t v0);

// Two tiles for weight gradients; conv2d.cpp picks one per layer (flat_weight_grads).
//
// Lane tile: channels x taps dot products over `images` images of `len` floats, positions along
// the vector lanes.
//   dwT[j * ldw + i] (+)= sum over images m, positions l < len with bit l % 16 of keep[l / 16] of
//                           g[m * g_img + i * g_row + l] * x[m * x_img + off[j] + l]
// for i < rows <= lane_rows, j < cols <= lane_cols. len is a multiple of 16; each lane
// accumulates its positions in order over all images, then the lanes are added in a fixed tree.
// keep marks the grid's output positions (FlatConv::out_keep): g is zero elsewhere, but x there
// is whatever the shifted row reaches (the next row's first columns, the next plane), and
// 0 * NaN is NaN, so those positions must not count (up to the sign of a zero sum, counting
// them as 0 is the same).
using DwLaneTile = void (*)(int64_t images, int64_t len, const float* g, int64_t g_img,
                            int64_t g_row, const float* x, int64_t x_img, const int64_t* off,
                            const uint16_t* keep, float* dwT, int64_t ldw, bool accumulate);

// Outer-product tile: taps x (16 KV) channels, positions as the reduction.
//   dwT[t * ldw + k] (+)= sum over images m < images, then rows p0 <= p < p1, then columns
//                         q < Q, one running sum in this order, of
//                           x[m * x_img + off[t] + i] * gT[m * g_img + i * ldg + k],  i = p Wr + q
// for t < taps <= outer_taps[KV - 1], k < 16 KV. gT holds the output gradient transposed, a row
// of channels per position of the grid (ldg a multiple of 16). Only output positions (q < Q)
// are read, so whatever the grid holds in its dropped columns never counts. With accumulate the
// running sums start from dwT's values: a sum taken in several calls over consecutive rows (or
// images) is the same, to the bit, as one call over them all.
using DwOuterTile = void (*)(int64_t images, int64_t p0, int64_t p1, int64_t Q, int64_t Wr,
                             const float* gT, int64_t g_img, int64_t ldg, const float* x,
                             int64_t x_img, const int64_t* off, float* dwT, int64_t ldw,
                             bool accumulate);

// Copies around the tiles (16 lanes at a time, masked at the edges):
//   PadPlanes: for each plane c < planes, dst + c * dst_plane receives `top` zero rows of ld
//             floats, then `rows` rows with row r, column j = (pl <= j < pl + w) ?
//             src[c * src_plane + r * src_ld + j - pl] : 0, then zeros up to dst_plane floats.
//             With a mask (laid out as src), src elements whose mask is not above 0 read as 0.
using PadPlanes = void (*)(const float* src, const float* mask, int64_t planes, int64_t src_plane,
                           int64_t src_ld, int64_t rows, int64_t w, float* dst, int64_t dst_plane,
                           int64_t top, int64_t ld, int64_t pl);

// Packs one block of weights for the forward tile: rows (<= 16) x n (<= 16) values, element
// (i, t) read at src[i * stride + t] (reversed: src[i * stride + n - 1 - t]), written to
// dst[t * rows + i].
using PackBlock = void (*)(const float* src, int64_t stride, int64_t rows, int64_t n,
                           bool reversed, float* dst);

// Transpose with zero rows appended: dst[j * ldd + i] = (i < rows ? src[i * lds + j] : 0) for
// j < cols, i < rows_out (rows_out >= rows).
using Transpose = void (*)(const float* src, int64_t lds, int64_t rows, int64_t cols,
                           int64_t rows_out, float* dst, int64_t ldd);

// Sum of v[0..n) in a fixed order (any n >= 0): the same bits for the same values, wherever the
// sum is cut into calls by images or threads around it.
using Sum = float (*)(const float* v, int64_t n);

struct ConvKernelSet {
  const char* name;
  int mr;                 // most rows of a forward tile
  const FwdTile* fwd;     // fwd[(rows - 1) * 2 + (V - 1)]
  int lane_rows, lane_cols;   // most channels / taps of a lane tile
  const DwLaneTile* lane;     // lane[(rows - 1) * lane_cols + (cols - 1)]
  int outer_kv;               // most 16-channel vectors of an outer-product tile
  const int* outer_taps;      // outer_taps[kv - 1]: most taps of a tile kv vectors wide; [0] the
                              // largest
  const DwOuterTile* outer;   // outer[(kv - 1) * outer_taps[0] + (taps - 1)]
  PadPlanes pad_planes;
  PackBlock pack_block;
  Transpose transpose;
  Sum sum;
};

// Defined in conv_avx512.cpp (x86-64 builds only); use only after checking the CPU.
extern const ConvKernelSet kAvx512ConvKernels;

}  // namespace nanocnn::cpu::conv_detail
