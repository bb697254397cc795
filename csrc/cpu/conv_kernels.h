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

// Outer-product tile: rows x (16 * V) outputs, V in {1, 2}.
//   acc[i][j] = sum over t = 0..kc-1, in this order, of a[t * rows + i] * b[off[t] + j]
//   c[i * ldc + j] = acc[i][j]                       for i < rows <= mr, j < 16 * V
// a: packed weights (kc x rows, t-major); b + off[t]: the shifted input row of reduction step t
// (16 V readable floats). All 16 V columns are written (the caller's buffer has room).
using FwdTile = void (*)(int64_t kc, const float* a, const float* b, const int64_t* off, float* c,
                         int64_t ldc);

// Dot-product tile for weight gradients: rows x cols sums over `images` images of `len` floats.
//   dw[i * ldw + j] (+)= sum over images m, positions l < len of
//                        g[m * g_img + i * g_row + l] * x[m * x_img + off[j] + l]
// for i < rows <= dot_mr, j < cols <= dot_nc. len is a multiple of 16; each lane accumulates its
// positions in order over all images, then the lanes are added in a fixed tree.
using DwTile = void (*)(int64_t images, int64_t len, const float* g, int64_t g_img, int64_t g_row,
                        const float* x, int64_t x_img, const int64_t* off, float* dw, int64_t ldw,
                        bool accumulate);

// Copies around the tiles (16 lanes at a time, masked at the edges):
//   PadPlanes: for each plane c < planes, dst + c * dst_plane receives `top` zero rows of ld
//             floats, then `rows` rows with row r, column j = (pl <= j < pl + w) ?
//             src[c * src_plane + r * src_ld + j - pl] : 0, then zeros up to dst_plane floats.
//             With a mask (laid out as src), src elements whose mask is not above 0 read as 0.
//   CropRows: for r < rows: dst[r * q + j] = src[r * ld + j] + bias, j < q; then 0 when relu and
//             the sum is not above 0
using PadPlanes = void (*)(const float* src, const float* mask, int64_t planes, int64_t src_plane,
                           int64_t src_ld, int64_t rows, int64_t w, float* dst, int64_t dst_plane,
                           int64_t top, int64_t ld, int64_t pl);
using CropRows = void (*)(const float* src, int64_t rows, int64_t ld, int64_t q, float bias,
                          bool relu, float* dst);

struct ConvKernelSet {
  const char* name;
  int mr;                 // most rows of a forward tile
  const FwdTile* fwd;     // fwd[(rows - 1) * 2 + (V - 1)]
  int dot_mr, dot_nc;     // most rows / columns of a weight-gradient tile
  const DwTile* dw;       // dw[(rows - 1) * dot_nc + (cols - 1)]
  PadPlanes pad_planes;
  CropRows crop_rows;
};

// Defined in conv_avx512.cpp (x86-64 builds only); use only after checking the CPU.
extern const ConvKernelSet kAvx512ConvKernels;

}  // namespace nanocnn::cpu::conv_detail
