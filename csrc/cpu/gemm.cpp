// cpu/gemm.cpp: single-precision GEMM, C = alpha * op(A) * op(B) + beta * C (row-major), in the
// GotoBLAS / BLIS style: cache blocking, packing, a register-blocked SIMD micro-kernel.
//
// ---- The algorithm ------------------------------------------------------------------------------
// (Sizes for the AVX-512 kernel set: MR x NR = 12 x 32, MC = 288, KC = 384, NC = 2048. The AVX2
// set is 6 x 16 with MC = 144, KC = 256; the generic one 4 x 8 with MC = 144, KC = 256.)
//
//   for jc in N, step NC                       B block: KC x NC floats (3 MiB), L3
//     for pc in K, step KC                     the only loop that splits the sum over k
//       pack op(B)[pc:+KC, jc:+NC] -> Bp       NC/NR micro-panels of KC x NR: row k of a panel
//                                              holds NR consecutive columns of op(B); the last
//                                              panel is zero-padded to a multiple of 16 (SIMD)
//       for ic in M, step MC
//         pack op(A)[ic:+MC, pc:+KC] -> Ap     A block: MC x KC floats (432 KiB), L2; micro-panels
//                                              of <= MR rows, KC x rows, k-major
//         for jr in NC, step NR                one B micro-panel (KC x NR = 48 KiB), L1/L2
//           for each A micro-panel (rows)      streams from L2
//             micro-kernel: C[rows x NR] tile = sum over KC steps of (one B row: 2 zmm loads) x
//             (rows A values, each broadcast from memory into an FMA), in 2 x rows zmm
//             accumulators; then C = alpha * acc + beta * C (beta = 1 after the first KC block)
//
// When the B block is small (KC x NC <= 64K floats, e.g. conv shapes with K <= ~60) the two
// innermost loops are swapped: C is then swept row strip by row strip, so consecutive tiles write
// different cache sets of C; with a power-of-2 ldc (conv outputs: N = P Q) the column-strip order
// lands every tile of the strip in the same two L1 sets (measured 2x faster on 64x1024x12).
//
// Packing takes care of the transposes: op(A)(i, k) is A[i * lda + k], or A[k * lda + i] when
// trans_a, and likewise for B, and the packing routines (16 x 16 register transposes in the
// AVX-512 set) read with those strides, so the micro-kernel sees one layout, reads both operands
// sequentially and never looks at trans_a / trans_b. A non-transposed B is packed row by row
// (B is read sequentially whatever ldb), and the packed B micro-panels are 64 bytes further apart
// than their size, so that rows written in turn to all panels do not collide in one cache set.
//
// Edges. B panels are zero-padded to the SIMD width; the kernel stores a partial last vector of
// each row with a mask. A panels are not padded at all: the rows of an MC block are dealt out in
// near-equal micro-panels (16 rows -> 8 + 8, 64 -> 11+11+11+11+10+10, never 12 + 4), each handled
// by a kernel instantiated for that row count (a table of 12 x 2 variants), so no FMA is spent on
// padding rows and short panels still have enough independent accumulators. K may be anything.
//
// Two shortcuts, both exact (the same operations for every element of C as above, or, for the
// dot path, a fixed order of its own):
//   - op(B) read in place. Without trans_b the rows of op(B) are contiguous, and the kernel can
//     read a B micro-panel straight from B (row stride ldb) instead of from Bp, which saves
//     copying B; see read_b_in_place for when that pays (measured).
//   - dot-product kernels for trans_b with a thin C and a long K (conv weight gradients
//     dW = dY col^T, dense forward y = x W^T with few outputs): both A and B rows are contiguous
//     in k, so each C element is a dot product of two contiguous rows, computed 6 x 4 at a time
//     with no packing at all; see use_dot.
//
// Cost. The micro-kernel does 2 MR NR flops per MR + NR floats loaded (A values re-used NR times,
// B rows MR times): per k step 24 FMAs against 2 vector + 12 broadcast loads. Packing copies B
// once per (jc, pc) and A once per (jc, pc, ic), i.e. K N + K M ceil(N / NC) copies against
// M N K multiply-adds: a few percent once M and N are a few dozen. C is read and written once
// per KC block (2 KC flops per C element in between).
//
// ---- Cache blocking for AMD Zen 5 (48 KiB L1d, 1 MiB L2 per core, 32 MiB L3 for the 2 cores) ---
//   MR x NR = 12 x 32: 24 of the 32 zmm registers hold the accumulators, enough independent FMA
//             chains (>= 2 pipes x 4 cycles latency) with room for the B row; see gemm_avx512.cpp.
//   KC = 384: the textbook choice keeps the B micro-panel (KC x NR x 4 B = 128 KC bytes) in L1,
//             i.e. KC ~ 256 (32 KiB + 12 KiB of A micro-panel). But the kernel needs only 176
//             bytes per 12 cycles from the panels, far below what L2 delivers to L1 (64 B/cycle),
//             so L1 residency of B is not the limit here, while a larger KC halves the C traffic
//             per flop and the number of KC blocks. Measured (1 thread, GFLOP/s): KC 192 / 256 /
//             384 / 512 all within ~3% on 1024^3; 384 best on 2000^3 (223 vs 216 at 256).
//             K is cut into equal blocks <= KC (K = 500 -> 250 + 250, not 384 + 116); the block
//             size depends on K only, never on the thread count.
//   MC = 288: the A block, 288 x 384 x 4 B = 432 KiB, sits in L2 (1 MiB) with room for the B
//             micro-panel being used and the C tiles. 288 = 24 micro-panels of 12 rows.
//   NC = 2048: the B block, 384 x 2048 x 4 B = 3 MiB, is read from L3 (32 MiB; one block per
//             thread). A is re-packed once per 2048 columns: negligible. NC = 4096 measured the
//             same, and 2048 halves the per-thread buffer.
// AVX2 (6 x 16 tile, 16 ymm registers): KC = 256 keeps its B micro-panel (16 KiB) in L1 and MC =
// 144 its A block (144 KiB) in L2; KC 256 / 384 measured equal.
//
// ---- Threads -----------------------------------------------------------------------------------
// Outside a parallel region, a problem of at least kMinParallelFlops flops is cut into a grid of
// rectangles of C (rows at multiples of MR, columns at multiples of NR), one per thread, each
// computed by the serial algorithm above with that thread's own packing buffers. The grid (1 x T,
// T x 1, ...) is the one with the least estimated per-thread time (multiply-adds plus duplicated
// packing: splitting N re-packs A in every thread, splitting M re-packs B). K is never split, KC
// depends on K only, the dot / packed choice on (M, N, K) only, and every kernel variant does the
// same operations for every element, so each element of C sees the same sequence of roundings
// whatever the thread count: results are bit-identical for 1, 2, ... threads. Inside a parallel
// region (conv2d calls sgemm once per image from its own region) sgemm runs on the calling thread.
//
// Packing buffers are thread_local, 64-byte aligned, grown on demand and reused across calls (at
// most MC KC + KC NC floats, about 3.5 MiB per thread with AVX-512), so concurrent calls from
// different threads never share them and a call allocates nothing once its thread has warmed up.
//
// Power-of-2 leading dimensions. Rows of a matrix 1024 floats apart all map to the same L1 set,
// which costs what this file cannot fully avoid when it is C (conv2d: ldc = P Q): 16x1024x75 runs
// at ~175 GFLOP/s with ldb = ldc = 1024 and ~240 with 1040. Callers that choose their own leading
// dimension (an im2col buffer) gain by padding it when it is a multiple of 512.
#include "cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/error.h"
#include "core/parallel.h"
#include "cpu/gemm_kernels.h"

namespace nanocnn::cpu {
namespace gemm_detail {
namespace {

// Below this many flops (2 M N K) the GEMM runs on one thread. Measured on the 2-core Zen 5 with
// the cores otherwise idle: a parallel region costs ~1 us to open and close, and two threads
// gain little (0.95x to 1.1x) around 0.5 MFLOP, ~1.35x at 1 MFLOP, ~1.7x at 4 MFLOP.
constexpr double kMinParallelFlops = 1.0e6;

// B blocks (KC x NC) of at most this many floats (256 KiB: a quarter of L2) are swept with the
// row panels in the outer loop (see gemm_rect). Measured on Zen 5: 64x1024x12 91 -> 191 GFLOP/s,
// 75x1024x16 (trans_a) 149 -> 200; no change on larger problems for thresholds 32K..256K.
constexpr int64_t kRowsOuterMaxFloats = 65536;

// Extra floats between packed B micro-panels (64 bytes; see gemm_rect).
constexpr int64_t kPanelSkew = 16;

// Floats of room after the packed A block (see PackA in gemm_kernels.h).
constexpr int64_t kPackSlack = 16;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// ---- generic micro-kernel ----------------------------------------------------------------------
// Plain C++, MR = 4 rows x NR = 8 columns. At baseline x86-64 (SSE2) GCC keeps the 4 x 8
// accumulators in 8 of the 16 SSE registers and vectorises the column loop (about 40 GFLOP/s on
// Zen 5; a 6 x 8 tile spills and is slower); with -march=native it uses whatever is there.
constexpr int kGenericMR = 4;
constexpr int kGenericNR = 8;

template <int R>
void generic_kernel(int64_t kc, const float* __restrict a, const float* __restrict b,
                    int64_t b_stride, float* __restrict c, int64_t ldc, int64_t cols, float alpha,
                    float beta) {
  float acc[R][kGenericNR];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < kGenericNR; ++j) acc[i][j] = 0.0f;
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < R; ++i) {
      const float ai = a[i];
      for (int j = 0; j < kGenericNR; ++j) acc[i][j] += ai * b[j];
    }
    a += R;
    b += b_stride;
  }
  // The arithmetic runs over all kGenericNR columns (through a copy of the row of C), so that
  // every element goes through the same code whatever `cols` (no vector body / scalar tail split
  // that a compiler could contract into FMAs differently).
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    float row[kGenericNR];
    if (beta == 0.0f) {
      for (int j = 0; j < kGenericNR; ++j) row[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < kGenericNR; ++j) row[j] = j < cols ? ci[j] : 0.0f;
      for (int j = 0; j < kGenericNR; ++j) row[j] = alpha * acc[i][j] + beta * row[j];
    }
    for (int64_t j = 0; j < cols; ++j) ci[j] = row[j];
  }
}

const MicroKernel kGenericTable[] = {&generic_kernel<1>, &generic_kernel<2>, &generic_kernel<3>,
                                     &generic_kernel<4>};

// ---- packing buffers ----------------------------------------------------------------------------

struct AlignedBuffer {
  float* data = nullptr;
  int64_t capacity = 0;  // floats

  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data); }

  float* get(int64_t floats) {
    if (floats > capacity) {
      std::free(data);
      data = nullptr;
      capacity = 0;
      const size_t bytes = static_cast<size_t>(round_up(floats * int64_t{4}, 64));
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (data == nullptr) throw std::bad_alloc();
      capacity = floats;
    }
    return data;
  }
};

struct PackBuffers {
  AlignedBuffer a, b;
};

PackBuffers& thread_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

// ---- packing ------------------------------------------------------------------------------------

// Near-equal split of `mc` rows into ceil(mc / mr) micro-panels: panel p has base + (p < extra)
// rows and starts at row p * base + min(p, extra).
struct RowPanels {
  int64_t count, base, extra;
  RowPanels(int64_t mc, int mr) : count(ceil_div(mc, mr)), base(mc / count), extra(mc % count) {}
  int64_t rows(int64_t p) const { return base + (p < extra ? 1 : 0); }
  int64_t start(int64_t p) const { return p * base + std::min(p, extra); }
};

// Generic packing of one micro-panel (contracts: PackA / PackB in gemm_kernels.h).
void generic_pack_a(const float* a, int64_t rs, int64_t cs, int64_t h, int64_t kc, float* dst) {
  if (cs == 1) {  // rows contiguous in k: transpose h rows
    for (int64_t i = 0; i < h; ++i) {
      const float* s = a + i * rs;
      for (int64_t k = 0; k < kc; ++k) dst[k * h + i] = s[k];
    }
  } else {  // the h values of one k are contiguous
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = a + k * cs;
      for (int64_t i = 0; i < h; ++i) dst[k * h + i] = s[i];
    }
  }
}

// One micro-panel of w <= kGenericNR columns, padded with zeros to ws.
void generic_pack_b_panel(const float* b, int64_t rs, int64_t cs, int64_t w, int64_t ws,
                          int64_t kc, float* dst) {
  if (cs == 1) {  // row k of the panel is contiguous in B
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = b + k * rs;
      float* d = dst + k * ws;
      for (int64_t j = 0; j < w; ++j) d[j] = s[j];
      for (int64_t j = w; j < ws; ++j) d[j] = 0.0f;
    }
  } else {  // column j of the panel is contiguous in B
    for (int64_t j = 0; j < w; ++j) {
      const float* s = b + j * cs;
      for (int64_t k = 0; k < kc; ++k) dst[k * ws + j] = s[k];
    }
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t j = w; j < ws; ++j) dst[k * ws + j] = 0.0f;
  }
}

void generic_pack_b(const float* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, float* dst,
                    int64_t ps) {
  const int64_t nr = kGenericNR, nfull = nc / nr * nr;
  if (cs == 1) {  // sweep B row by row (see the AVX-512 pack_b for why)
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = b + k * rs;
      for (int64_t j0 = 0; j0 < nfull; j0 += nr) {
        float* d = dst + j0 / nr * ps + k * nr;
        for (int64_t j = 0; j < nr; ++j) d[j] = src[j0 + j];
      }
    }
  } else {
    for (int64_t j0 = 0; j0 < nfull; j0 += nr)
      generic_pack_b_panel(b + j0 * cs, rs, cs, nr, nr, kc, dst + j0 / nr * ps);
  }
  if (nfull < nc)
    generic_pack_b_panel(b + nfull * cs, rs, cs, nc - nfull, nr, kc, dst + nfull / nr * ps);
}

// The 4 x 8 tile: A and B micro-panels of 256 x 4 and 256 x 8 floats = 12 KiB of L1.
const KernelSet kGenericKernels = {"generic", kGenericMR, kGenericNR, kGenericNR,
                                   /*mc=*/144, /*kc=*/256, /*nc=*/2048, kGenericTable,
                                   &generic_pack_a, &generic_pack_b, 0, 0, nullptr};

// ---- ISA selection ------------------------------------------------------------------------------

// The SIMD kernel sets exist only in x86-64 builds (CMake compiles gemm_avx2.cpp and
// gemm_avx512.cpp there and defines NANOCNN_X86_SIMD); elsewhere the generic set serves alone.
#ifdef NANOCNN_X86_SIMD
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

const KernelSet* avx2_kernels() { return &kAvx2Kernels; }
const KernelSet* avx512_kernels() { return &kAvx512Kernels; }
#else
bool cpu_has_avx2() { return false; }
bool cpu_has_avx512() { return false; }
const KernelSet* avx2_kernels() { return nullptr; }
const KernelSet* avx512_kernels() { return nullptr; }
#endif

const KernelSet* best_kernels() {
  if (cpu_has_avx512()) return avx512_kernels();
  if (cpu_has_avx2()) return avx2_kernels();
  return &kGenericKernels;
}

std::atomic<const KernelSet*> g_kernels{nullptr};

const KernelSet& kernels() {
  const KernelSet* ks = g_kernels.load(std::memory_order_acquire);
  if (ks == nullptr) {
    ks = best_kernels();
    g_kernels.store(ks, std::memory_order_release);
  }
  return *ks;
}

// Packs op(A)[0:mc, 0:kc], element (i, k) at a[i * rs + k * cs], into `dst`: panel p (rows r0..,
// h of them) at dst + r0 * kc, holding element (r0 + i, k) at [k * h + i].
void pack_a_block(const KernelSet& ks, const float* a, int64_t rs, int64_t cs, int64_t mc,
                  int64_t kc, float* dst) {
  const RowPanels panels(mc, ks.mr);
  for (int64_t p = 0; p < panels.count; ++p) {
    const int64_t r0 = panels.start(p);
    ks.pack_a(a + r0 * rs, rs, cs, panels.rows(p), kc, dst + r0 * kc);
  }
}

// ---- the serial algorithm on one rectangle of C -------------------------------------------------

struct Problem {
  int64_t K;
  float alpha, beta;
  const float* A;
  int64_t a_rs, a_cs;  // op(A)(i, k) = A[i * a_rs + k * a_cs]
  const float* B;
  int64_t b_rs, b_cs;  // op(B)(k, j) = B[k * b_rs + j * b_cs]
  float* C;
  int64_t ldc;
};

// KC actually used: K cut into equal blocks of at most ks.kc. Depends on K only (determinism).
int64_t kc_step(const KernelSet& ks, int64_t K) { return ceil_div(K, ceil_div(K, ks.kc)); }

// Whether the micro-kernel reads op(B) where it is instead of from a packed copy. Possible when
// not trans_b (rows of op(B) contiguous); a partial last panel is still packed, for its zero
// padding. Copying B is pure overhead when its rows spread over the cache sets: measured on Zen 5
// with AVX-512, reading in place is 5-20% faster for M up to a few hundred (e.g. 32x256x64 204
// vs 180 GFLOP/s, 64x500x1024 226 vs 195) and equal beyond, where packing is the safer classic.
// But when ldb is a multiple of 512 floats (2 KiB; conv's N = P Q often is), the rows of a B
// micro-panel fall into only one or two L1 sets and evict each other on every pass; the packed
// copy is then as fast or faster (e.g. 32x1024x64: 210 vs 180).
bool read_b_in_place(const Problem& p, int64_t m) {
  return p.b_cs == 1 && p.b_rs % 512 != 0 && m <= 512;
}

// C[m0:m1, n0:n1] of problem p.
void gemm_rect(const KernelSet& ks, const Problem& p, int64_t m0, int64_t m1, int64_t n0,
               int64_t n1) {
  const int64_t m = m1 - m0, n = n1 - n0, K = p.K;
  const int64_t kcs = kc_step(ks, K);
  const int64_t mcs = round_up(ceil_div(m, ceil_div(m, ks.mc)), ks.mr);
  const int64_t ncs = round_up(ceil_div(n, ceil_div(n, ks.nc)), ks.nr);
  const bool direct_b = read_b_in_place(p, m);
  PackBuffers& buf = thread_buffers();
  // + kPackSlack: PackA may write a few floats past the last panel.
  float* Ap = buf.a.get(std::min(mcs, round_up(m, ks.mr)) * kcs + kPackSlack);
  float* Bp = buf.b.get(ceil_div(std::min(ncs, n), ks.nr) * (kcs * ks.nr + kPanelSkew));
  const int nvec_full = ks.nr / ks.vl;

  for (int64_t jc = n0; jc < n1; jc += ncs) {
    const int64_t nc = std::min(ncs, n1 - jc);
    const int64_t nc_full = nc / ks.nr * ks.nr;  // columns in full micro-panels
    for (int64_t pc = 0; pc < K; pc += kcs) {
      const int64_t kc = std::min(kcs, K - pc);
      // Packed B micro-panels start kc nr + kPanelSkew floats apart, not kc nr: with kc nr a
      // multiple of 1024 the panels would all start in the same L1 set, and packing, which writes
      // one row of every panel in turn, would evict its own lines.
      const int64_t ps = kc * ks.nr + kPanelSkew;
      const float* Bsrc = p.B + pc * p.b_rs + jc * p.b_cs;
      if (!direct_b)
        ks.pack_b(Bsrc, p.b_rs, p.b_cs, kc, nc, Bp, ps);
      else if (nc_full < nc)
        ks.pack_b(Bsrc + nc_full, p.b_rs, 1, kc, nc - nc_full, Bp + nc_full / ks.nr * ps, ps);
      const float beta = pc == 0 ? p.beta : 1.0f;
      for (int64_t ic = m0; ic < m1; ic += mcs) {
        const int64_t mc = std::min(mcs, m1 - ic);
        pack_a_block(ks, p.A + ic * p.a_rs + pc * p.a_cs, p.a_rs, p.a_cs, mc, kc, Ap);
        const RowPanels panels(mc, ks.mr);
        float* Cblock = p.C + ic * p.ldc + jc;
        // One micro-tile: A micro-panel q (rows r0.., h of them) x the B micro-panel at column jr.
        auto tile = [&](int64_t q, int64_t jr) {
          const int64_t r0 = panels.start(q), h = panels.rows(q);
          const int64_t w = std::min<int64_t>(ks.nr, nc - jr);
          const int64_t nvec = ceil_div(w, ks.vl);
          const bool in_place = direct_b && jr < nc_full;
          const float* bpanel = in_place ? Bsrc + jr : Bp + jr / ks.nr * ps;
          const int64_t b_stride = in_place ? p.b_rs : nvec * ks.vl;
          ks.table[(h - 1) * nvec_full + (nvec - 1)](kc, Ap + r0 * kc, bpanel, b_stride,
                                                     Cblock + r0 * p.ldc + jr, p.ldc, w, p.alpha,
                                                     beta);
        };
        if (kc * nc <= kRowsOuterMaxFloats) {
          // Small B block (it stays in L2): sweep C row strip by row strip, so that consecutive
          // tiles write different cache sets of C even when ldc is a power of 2.
          for (int64_t q = 0; q < panels.count; ++q)
            for (int64_t jr = 0; jr < nc; jr += ks.nr) tile(q, jr);
        } else {
          // The classic order: each B micro-panel stays in L1 while the A block streams past.
          for (int64_t jr = 0; jr < nc; jr += ks.nr)
            for (int64_t q = 0; q < panels.count; ++q) tile(q, jr);
        }
      }
    }
  }
}

// The dot path's reduction is cut into blocks of at most kDotKC: each block of rows of B is then
// read from memory once and re-used from L2 by every block of rows of A (the dense forward pass
// of the cats-vs-dogs network, 20 x 18496 @ (512 x 18496)^T: 38 MB of weights, streamed once per
// block of A rows without the blocks; 2 threads, Zen 4: 5.5-6.2 ms -> 2.7-3.1 ms; 4096 measured
// like 2048 and 8192). The blocks are equal multiples of 16 floats and depend on K only (never on
// the thread count); C accumulates them in order.
constexpr int64_t kDotKC = 4096;

int64_t dot_kc_step(int64_t K) {
  return K <= kDotKC ? K : round_up(ceil_div(K, ceil_div(K, kDotKC)), 16);
}

// C[m0:m1, n0:n1] of problem p with the dot-product kernels (p must have trans_a = false,
// trans_b = true). Rows and columns are dealt out in near-equal groups of at most dot_mr / dot_nr;
// per reduction block, the tiles go column block by column block (rows of B), row blocks (rows
// of A) inside.
void dot_rect(const KernelSet& ks, const Problem& p, int64_t m0, int64_t m1, int64_t n0,
              int64_t n1) {
  const RowPanels rows(m1 - m0, ks.dot_mr), cols(n1 - n0, ks.dot_nr);
  const int64_t kcs = dot_kc_step(p.K);
  for (int64_t pc = 0; pc < p.K; pc += kcs) {
    const int64_t kc = std::min(kcs, p.K - pc);
    const float beta = pc == 0 ? p.beta : 1.0f;
    for (int64_t jb = 0; jb < cols.count; ++jb) {
      const int64_t j0 = n0 + cols.start(jb), rn = cols.rows(jb);
      for (int64_t ib = 0; ib < rows.count; ++ib) {
        const int64_t i0 = m0 + rows.start(ib), rm = rows.rows(ib);
        ks.dot_table[(rm - 1) * ks.dot_nr + (rn - 1)](kc, p.A + i0 * p.a_rs + pc, p.a_rs,
                                                       p.B + j0 * p.b_cs + pc, p.b_cs,
                                                       p.C + i0 * p.ldc + j0, p.ldc, p.alpha,
                                                       beta);
      }
    }
  }
}

// Whether to use dot_rect rather than gemm_rect (only for trans_a = false, trans_b = true, where
// the rows of A and of B are both contiguous in k). The dot kernels need no packing but spend
// cycles per element of C on the final lane sum (~10; the AVX-512 set sums four at once, ~3
// each), so they win when K is long and C is thin: packing then costs (M + N) K copies for few
// flops per copy, and the packed kernels waste part of their MR x NR tile. Thresholds measured
// on Zen 5 (AVX-512 and AVX2 alike, with one sum at a time), e.g. 16x12x1024:
// 183 vs 84 GFLOP/s, 64x10x500: 135 vs 84, 32x144x256: 176 vs 191 (packed kept). On the Zen 4,
// thin <= 64 from K = 1024 (the CIFAR dense layer's forward, 64 x 500 x 1024, 0.72 -> 0.65 ms on
// one core; 64 x 2048 x 2048 -13%), not at K = 512 (64 x 512 x 512 +10%).
// Decided from the whole problem, never from a thread's part of it: the two paths differ in
// summation order, and results must not depend on the thread count.
bool use_dot(const KernelSet& ks, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K) {
  if (ks.dot_table == nullptr || trans_a || !trans_b) return false;
  const int64_t thin = std::min(M, N);
  return (K >= 128 && N <= 8) || (K >= 256 && (N <= 24 || M <= 8)) || (K >= 512 && thin <= 32) ||
         (K >= 1024 && thin <= 64);
}

// ---- splitting over threads ---------------------------------------------------------------------

struct Grid {
  int tm = 1, tn = 1;  // threads along M and along N
};

// Picks the grid of at most T rectangles with the least estimated time per thread: multiply-adds
// of the largest rectangle plus, when `packs`, its packing (each packed element weighs about
// kPackCost multiply-adds). Rectangles are cut at multiples of unit_m rows and unit_n columns.
Grid choose_grid(const KernelSet& ks, int64_t M, int64_t N, int64_t K, int T, int64_t unit_m,
                 int64_t unit_n, bool packs) {
  const double kPackCost = packs ? 16.0 : 0.0;
  const int64_t mu = ceil_div(M, unit_m), nu = ceil_div(N, unit_n);  // units of work
  Grid best;
  double best_cost = -1.0;
  for (int tm = 1; tm <= T; ++tm) {
    const int tn = T / tm;
    if (tm > mu || tn > nu) continue;
    const double rows = static_cast<double>(std::min(M, ceil_div(mu, tm) * unit_m));
    const double cols = static_cast<double>(std::min(N, ceil_div(nu, tn) * unit_n));
    const double kd = static_cast<double>(K);
    const double a_packs = rows * kd * std::ceil(cols / static_cast<double>(ks.nc));
    const double cost = rows * cols * kd + kPackCost * (a_packs + cols * kd);
    if (best_cost < 0.0 || cost < best_cost) {
      best_cost = cost;
      best.tm = tm;
      best.tn = tn;
    }
  }
  return best;
}

// Rows [begin, end) of part `part` of `parts`, cut at multiples of `unit`.
void split(int64_t total, int64_t unit, int parts, int part, int64_t* begin, int64_t* end) {
  const int64_t units = ceil_div(total, unit);
  *begin = std::min(total, units * part / parts * unit);
  *end = std::min(total, units * (part + 1) / parts * unit);
}

// C = beta * C (beta == 0: zeros, C not read).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* ci = C + i * ldc;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < N; ++j) ci[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < N; ++j) ci[j] *= beta;
    }
  }
}

}  // namespace
}  // namespace gemm_detail

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  using namespace gemm_detail;
  NC_CHECK(M >= 0 && N >= 0 && K >= 0, "sgemm: M, N, K must be >= 0, got ", M, ", ", N, ", ", K);
  if (M == 0 || N == 0) return;
  NC_CHECK(ldc >= N, "sgemm: ldc must be >= N = ", N, ", got ", ldc);
  if (K == 0 || alpha == 0.0f) {  // as in BLAS: A and B are not read
    scale_c(M, N, beta, C, ldc);
    return;
  }
  NC_CHECK(lda >= (trans_a ? M : K), "sgemm: lda must be >= ", (trans_a ? M : K), ", got ", lda);
  NC_CHECK(ldb >= (trans_b ? K : N), "sgemm: ldb must be >= ", (trans_b ? K : N), ", got ", ldb);

  const KernelSet& ks = kernels();
  Problem p;
  p.K = K;
  p.alpha = alpha;
  p.beta = beta;
  p.A = A;
  p.a_rs = trans_a ? 1 : lda;
  p.a_cs = trans_a ? lda : 1;
  p.B = B;
  p.b_rs = trans_b ? 1 : ldb;
  p.b_cs = trans_b ? ldb : 1;
  p.C = C;
  p.ldc = ldc;

  const bool dot = use_dot(ks, trans_a, trans_b, M, N, K);
  // Units of work: rows and columns of C are split among threads at multiples of these.
  const int64_t unit_m = dot ? ks.dot_mr : ks.mr, unit_n = dot ? ks.dot_nr : ks.nr;
  auto rect = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (dot)
      dot_rect(ks, p, m0, m1, n0, n1);
    else
      gemm_rect(ks, p, m0, m1, n0, n1);
  };

  const double flops =
      2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const int T = in_parallel() ? 1 : get_num_threads();
  Grid grid;
  if (T > 1 && flops >= kMinParallelFlops) grid = choose_grid(ks, M, N, K, T, unit_m, unit_n, !dot);
  const int parts = grid.tm * grid.tn;
  if (parts <= 1) {
    try {
      rect(0, M, 0, N);
    } catch (const std::bad_alloc&) {
      throw MemoryError("sgemm: out of memory for the packing buffers");
    }
    return;
  }

  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(parts)
  {
    const int nt = omp_get_num_threads();
    for (int r = omp_get_thread_num(); r < parts; r += nt) {
      int64_t m0, m1, n0, n1;
      split(M, unit_m, grid.tm, r / grid.tn, &m0, &m1);
      split(N, unit_n, grid.tn, r % grid.tn, &n0, &n1);
      if (m0 >= m1 || n0 >= n1) continue;
      try {
        rect(m0, m1, n0, n1);
      } catch (...) {  // nothing may leave an OpenMP region
        failed.store(true);
      }
    }
  }
  if (failed.load()) throw MemoryError("sgemm: out of memory for the packing buffers");
}

const char* sgemm_isa() { return gemm_detail::kernels().name; }

void sgemm_set_isa(const char* name) {
  using namespace gemm_detail;
  const std::string isa = name == nullptr ? std::string("(null)") : std::string(name);
  const KernelSet* ks = nullptr;
  if (isa == "auto") {
    ks = best_kernels();
  } else if (isa == "avx512") {
    NC_CHECK(cpu_has_avx512(), "sgemm_set_isa: this CPU does not support avx512 (needs AVX-512 "
             "F/DQ/BW/VL, AVX2 and FMA)");
    ks = avx512_kernels();
  } else if (isa == "avx2") {
    NC_CHECK(cpu_has_avx2(), "sgemm_set_isa: this CPU does not support avx2 (needs AVX2 and FMA)");
    ks = avx2_kernels();
  } else if (isa == "generic") {
    ks = &kGenericKernels;
  } else {
    NC_CHECK(false, "sgemm_set_isa: isa must be 'avx512', 'avx2', 'generic' or 'auto', got '",
             isa, "'");
  }
  g_kernels.store(ks, std::memory_order_release);
}

}  // namespace nanocnn::cpu
