// cpu/gemm_kernels.h: internal contract between the SGEMM driver (gemm.cpp) and its micro-kernels
// (gemm.cpp's generic one, gemm_avx2.cpp, gemm_avx512.cpp). Nothing outside those files uses it.
//
// Portability rule for the *_avx2 / *_avx512 files: they are compiled with extra instruction sets
// while the rest of nanocnn is baseline x86-64. An inline function or template that both kinds of
// translation unit instantiate (std::min, std::vector<float>::..., anything defined in a shared
// header) is emitted in both, and the linker keeps one copy at random, possibly the AVX-512 one,
// which would then crash baseline code on an older CPU. So the SIMD files use only <immintrin.h>
// (its functions are always inlined), keep their own code in anonymous namespaces, and export
// nothing but the constant KernelSet objects below, which are plain data (no code runs to build
// them, so merely linking them is safe on any CPU). This header therefore declares, never defines,
// anything with code.
#pragma once

#include <cstdint>

namespace nanocnn::cpu::gemm_detail {

// One micro-kernel computes one tile of C, rows x cols (rows <= KernelSet::mr,
// cols <= nvec * KernelSet::vl <= KernelSet::nr):
//
//   for i < rows, j < cols:
//     acc      = sum over k = 0, 1, ..., kc-1 (in this order, one accumulator, starting at 0) of
//                a[k * rows + i] * b[k * b_stride + j]
//     C[i, j]  = alpha * acc + beta * C[i, j]   (beta == 0: alpha * acc, C not read)
//
//   a: a packed micro-panel of A, kc x rows, k-major (the `rows` values of step k are adjacent).
//   b: kc rows of B, row k at b + k * b_stride, holding nvec * vl readable floats (zero padding
//      past `cols`); usually a packed micro-panel (b_stride = nvec * vl), 64-byte aligned.
//   c: C[0, 0] of the tile, row stride ldc. Only the rows x cols elements are read or written.
//
// Every kernel variant of one KernelSet performs exactly the same floating-point operations per
// element of C, whatever rows/cols/nvec, so the result for an element does not depend on which
// tile it falls in (hence not on how the work was split over threads).
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, int64_t b_stride,
                             float* c, int64_t ldc, int64_t cols, float alpha, float beta);

// Packs one micro-panel of op(A): h rows (h <= mr) by kc steps, element (i, k) read at
// a[i * rs + k * cs], written to dst[k * h + i]. One of rs, cs is 1 (which one tells the layout).
// May write up to 16 floats past the end of the panel (the driver leaves room; panels are packed
// in increasing order, so the spill lands on a panel that is written afterwards).
using PackA = void (*)(const float* a, int64_t rs, int64_t cs, int64_t h, int64_t kc, float* dst);

// Packs a block of op(B), kc steps by nc columns, element (k, j) read at b[k * rs + j * cs] (one
// of rs, cs is 1), into micro-panels of nr columns: panel q (columns j0 = q nr .., w = min(nr,
// nc - j0) of them) starts at dst + q * panel_stride (panel_stride >= kc * nr, a multiple of 16)
// and holds element (k, j0 + j) at [k * ws + j], where ws = round_up(w, vl); columns w..ws-1 are
// set to 0.
using PackB = void (*)(const float* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc,
                       float* dst, int64_t panel_stride);

// Dot-product micro-kernel, for op(A) = A (rows x K, row stride lda) and op(B) = B^T (B is cols
// x K, row stride ldb), i.e. trans_a = false, trans_b = true: both operands are read in place,
// nothing is packed.
//   C[i, j] = alpha * dot(a + i * lda, b + j * ldb) + beta * C[i, j]   (beta == 0: C not read)
// for i < rows <= dot_mr, j < cols <= dot_nr. dot(): SIMD lane l accumulates the products
// k = l, l + vl, l + 2 vl, ... in this order (the last, partial vector masked), then the lanes
// are added in a fixed tree. Every variant does the same operations for every element.
using DotKernel = void (*)(int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                           float* c, int64_t ldc, float alpha, float beta);

struct KernelSet {
  const char* name;  // "avx512" | "avx2" | "generic"
  int mr;            // most rows of a micro-tile
  int nr;            // columns of a full micro-tile = width of a packed B micro-panel
  int vl;            // SIMD width in floats; a partial B panel is padded to a multiple of it
  int64_t mc;        // rows of A per packed block        (multiple of mr)
  int64_t kc;        // depth per packed block (upper bound; the driver balances it over K)
  int64_t nc;        // columns of B per packed block     (multiple of nr)
  // table[(rows - 1) * (nr / vl) + (nvec - 1)] for rows in 1..mr, nvec in 1..nr/vl.
  const MicroKernel* table;
  PackA pack_a;
  PackB pack_b;
  // Dot-product kernels, dot_table[(rows - 1) * dot_nr + (cols - 1)]; nullptr when none.
  int dot_mr, dot_nr;
  const DotKernel* dot_table;
};

// Defined in gemm_avx512.cpp / gemm_avx2.cpp, which x86-64 builds only compile (NANOCNN_X86_SIMD).
// Only call their kernels after checking the CPU.
extern const KernelSet kAvx512Kernels;
extern const KernelSet kAvx2Kernels;

}  // namespace nanocnn::cpu::gemm_detail
