// conv2d.cpp: 2-D convolution on the CPU, forward and backward.
//
// Layout: x is (N,C,H,W), w is (K,C,R,S), y is (N,K,P,Q), all NCHW / row-major.
//
// Two algorithms, chosen per call:
//
// 1. Direct (stride 1, dilation 1, padding below the kernel size on every side -- every Keras
//    "same"/"valid" conv -- on an AVX-512 CPU). No im2col: each image is copied once into a
//    zero-padded (C, Hp, Wp) buffer read as a "flat padded grid" (conv_kernels.h): output pixel
//    (p, q) is position i = p*Wp + q, and its input under tap (c, r, s) is position
//    i + off(c,r,s) of the buffer, off = c*Hp*Wp + r*Wp + s. A row of outputs is thus a GEMM with
//    the packed weights as A and *shifted rows of the padded image* as B.
//      forward      yf (K, L) = w (K, CRS) @ [xp shifted by off(t)]_t,   L = P*Wp
//                   stored as y[k,p,q] = yf[k, p*Wp + q] + b[k] (ReLU) by the tiles themselves
//                   (columns q >= Q dropped in registers, FwdOut in conv_kernels.h)
//      input grad   the same kernel on the padded dy: dx = conv(dy padded by (R-1-pt, S-1-pl),
//                   w flipped and transposed to (C, K, R, S))
//      weight grad  dw[k, t] = sum_n sum_i g_n[k, i] * xp_n[i + off(t)], with g_n = dy_n on the
//                   flat grid (zero in the dropped columns), over output positions i only:
//                   dot products along the positions (lane tiles: many positions per group), or
//                   outer products of a position's taps and channels, summed over the positions,
//                   from g_n transposed (a batch-1 image of many channels); see
//                   direct_backward_chunk
//    Small images (8x8, 16x16), where the dropped columns would be 6-25% of the work, use S
//    copies of the padded image shifted by one column each instead (FlatConv): same kernels,
//    offsets, nothing dropped. Where the copies do not pay but the dropped columns are 2% or
//    more, the grid is tiled row by row in whole vectors (the CIFAR net's 3->16 2x2 @32, the
//    cats-vs-dogs 32->64 3x3 @36 with a strip for its last 2 columns: FlatConv::choose_split).
//    Cost: 2*K*CRS*P*Wr flops per direction (Wr = Wp or Q) plus one copy (or S) of x and dy per
//    image; the micro-kernels run at the GEMM's speed (the same 12 x 32 register tile), and small
//    layers (the seed networks' 2x2 convs, a K=12 reduction for conv1) no longer pay for writing
//    and re-reading an im2col matrix, which cost as much as their arithmetic (bench/results).
//    Fusions: bias + ReLU in the tiles' stores, ReLU backward in the copies of dy, and a following
//    2x2 max pool (conv2d_relu_pool in ops.h) image by image while the output is in cache.
//
// 2. im2col + GEMM (everything else: strides, dilation, CPUs without AVX-512), one image at a
//    time.
//   col (C*R*S, P*Q):  col[(c*R + r)*S + s][p*Q + q] = x[c][p*sh - pt + r*dh][q*sw - pl + s*dw]
//                      (zero where that falls in the padding)
//   forward             y_n (K, PQ)    = w (K, CRS) @ col_n          (+ b[k] on row k)
//   backward, weights   dw (K, CRS)   += dy_n (K, PQ) @ col_n^T
//   backward, input     dcol (CRS, PQ) = w^T (CRS, K) @ dy_n,  then dx_n = col2im(dcol)
//   backward, bias      db[k]          = sum_{n,p,q} dy[n,k,p,q]
// A 1x1 kernel with stride 1 and no padding needs no im2col: col_n is x_n itself.
// Cost: 2*N*K*CRS*PQ flops per GEMM direction; im2col moves CRS*PQ floats per image through a
// per-thread scratch buffer (no allocation in steady state).
//
// Threads: with at least as many images as threads, images are split over threads. With fewer
// (batch 1), a layer under kMinParallelConvFlops runs on one thread; a larger one splits its
// output channels over the threads (direct forward), or the work inside each image (GEMM, the
// direct backward's tiles).
// Determinism: dw is summed in a fixed number of image chunks (kWeightChunks, independent of the
// thread count) reduced in chunk order, so results are bit-identical for any thread count.
//
// Directions weighed (measured with bench/, results in bench/results):
//  - Layout: NCHW inside the model, channels-last only at its boundary (Sequential converts each
//    input batch once). The shifted-row scheme wants every channel as contiguous rows, which
//    NCHW is; its tiles run at 85-95% of the measured FP32 peak on the large 3x3 layers, so a
//    blocked layout (NCHW16c) had little to win there, and what the seed networks spend besides
//    the tiles (copies, pooling, dense layers) no layout changes.
//  - Winograd F(2,3): not done: 3x3 only (the CIFAR network is 2x2), other rounding, and the 3x3
//    layers are already at 0.9-1.0x oneDNN from batch 32 up.
//  - Tried and dropped, A/B in one session: the forward tile's reduction cut into 48-tap steps so
//    that a position block's input rows stay in L1 (128->128 @28, one core: 110 -> 101 GFLOP/s).
//  - One shuffle tree for the 24 lane sums of a lane tile (lane_sums16 in conv_avx512.cpp) won
//    1-2% at 8x8, where a tile sums many images, 10-15% of a batch-1 backward at 14x14-16x16,
//    where it sums a single image of 256 positions. Those layers now take outer-product tiles,
//    which have no lanes to add (and were 7-15% faster still); the tree stays for the rest.
#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv_kernels.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"

namespace nanocnn::cpu {

namespace {

constexpr int64_t kWeightChunks = 8;

// Padded-image bytes a block of lane tiles reads (lane_weight_grads): half of L2.
constexpr int64_t kTapBlockBytes = int64_t{512} << 10;

// Sum of v[0..n) in 16 interleaved partial sums (lane l takes i = l, l + 16, ...) added in a fixed
// tree: the compiler vectorises it (a single running sum cannot be, without reordering), and the
// order never depends on the thread count.
float lane_sum(const float* v, int64_t n) {
  float part[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) part[l] += v[i + l];
  for (int l = 0; i < n; ++i, ++l) part[l] += v[i];
  for (int width = 8; width >= 1; width /= 2)
    for (int l = 0; l < width; ++l) part[l] += part[l + width];
  return part[0];
}

// Fewer images than threads (a lone image, mostly) and under this many flops per direction: the
// whole op runs on the calling thread (SerialScope). Measured on the 2-core Zen 4 at batch 1: the
// CIFAR network's 2x2 convs (0.4-1 MFLOP) took 13-60 us on two threads against 7-17 on one;
// 4 MFLOP gained 1.0-1.3x from the second thread, 19 MFLOP 1.6x.
constexpr double kMinParallelConvFlops = 4.0e6;

bool small_and_alone(const Conv2dShape& sh) {
  const double flops = 2.0 * sh.N * sh.K * sh.C * sh.R * sh.S * sh.g.out_h * sh.g.out_w;
  return sh.N < get_num_threads() && flops < kMinParallelConvFlops;
}

bool is_pointwise(const Conv2dShape& s) {
  const Conv2dGeometry& g = s.g;
  return s.R == 1 && s.S == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 &&
         g.pad_left == 0 && g.out_h == s.H && g.out_w == s.W;
}

// Row stride of the column buffer: P*Q, padded by 16 floats when it is a multiple of 512, where
// rows 2 KiB apart would all fall into the same L1 cache sets during the GEMM (measured: 16 x
// 1024 x 75 at ~172 GFLOP/s unpadded, ~240 padded).
int64_t col_stride(const Conv2dShape& sh) {
  const int64_t PQ = sh.g.out_h * sh.g.out_w;
  return PQ % 512 == 0 ? PQ + 16 : PQ;
}

// For kernel column s: the input column of output column q is w0 + q * stride_w, with
// w0 = s * dilation_w - pad_left. Output columns [*q_begin, *q_end) read inside [0, W); the ones
// before and after read padding.
void valid_columns(const Conv2dShape& sh, int64_t s, int64_t* w0, int64_t* q_begin,
                   int64_t* q_end) {
  const Conv2dGeometry& g = sh.g;
  const int64_t Q = g.out_w;
  *w0 = s * g.dilation_w - g.pad_left;
  *q_begin = std::min(Q, *w0 >= 0 ? 0 : (-*w0 + g.stride_w - 1) / g.stride_w);
  *q_end = std::max(*q_begin,
                    std::min(Q, sh.W - *w0 <= 0 ? 0 : (sh.W - *w0 - 1) / g.stride_w + 1));
}

// x_n is (C,H,W); col is (C*R*S, P*Q) with row stride ld.
void im2col(const Conv2dShape& sh, const float* x_n, float* col, int64_t ld) {
  const Conv2dGeometry& g = sh.g;
  const int64_t P = g.out_h, Q = g.out_w;
  for (int64_t c = 0; c < sh.C; ++c)
    for (int64_t r = 0; r < sh.R; ++r)
      for (int64_t s = 0; s < sh.S; ++s) {
        float* out = col + ((c * sh.R + r) * sh.S + s) * ld;
        int64_t w0, q_begin, q_end;
        valid_columns(sh, s, &w0, &q_begin, &q_end);
        for (int64_t p = 0; p < P; ++p, out += Q) {
          const int64_t h = p * g.stride_h - g.pad_top + r * g.dilation_h;
          if (h < 0 || h >= sh.H) {
            std::memset(out, 0, Q * sizeof(float));
            continue;
          }
          const float* row = x_n + (c * sh.H + h) * sh.W;
          for (int64_t q = 0; q < q_begin; ++q) out[q] = 0.f;
          if (g.stride_w == 1) {
            std::memcpy(out + q_begin, row + w0 + q_begin, (q_end - q_begin) * sizeof(float));
          } else {
            for (int64_t q = q_begin; q < q_end; ++q) out[q] = row[w0 + q * g.stride_w];
          }
          for (int64_t q = q_end; q < Q; ++q) out[q] = 0.f;
        }
      }
}

// The adjoint of im2col: dx_n (C,H,W) = sum of dcol's entries (row stride ld) over the places
// they came from.
void col2im(const Conv2dShape& sh, const float* dcol, int64_t ld, float* dx_n) {
  const Conv2dGeometry& g = sh.g;
  const int64_t P = g.out_h, Q = g.out_w;
  std::memset(dx_n, 0, sh.C * sh.H * sh.W * sizeof(float));
  for (int64_t c = 0; c < sh.C; ++c)
    for (int64_t r = 0; r < sh.R; ++r)
      for (int64_t s = 0; s < sh.S; ++s) {
        const float* in = dcol + ((c * sh.R + r) * sh.S + s) * ld;
        int64_t w0, q_begin, q_end;
        valid_columns(sh, s, &w0, &q_begin, &q_end);
        for (int64_t p = 0; p < P; ++p, in += Q) {
          const int64_t h = p * g.stride_h - g.pad_top + r * g.dilation_h;
          if (h < 0 || h >= sh.H) continue;
          float* row = dx_n + (c * sh.H + h) * sh.W;
          for (int64_t q = q_begin; q < q_end; ++q) row[w0 + q * g.stride_w] += in[q];
        }
      }
}

// The columns of image n, (C*R*S, P*Q) with row stride *ld: x_n itself for a pointwise conv,
// else im2col into its scratch buffer.
const float* columns(const Conv2dShape& sh, const float* x_n, int64_t* ld) {
  if (is_pointwise(sh)) {
    *ld = sh.H * sh.W;
    return x_n;
  }
  *ld = col_stride(sh);
  float* col = thread_scratch(kScratchColumns, sh.C * sh.R * sh.S * *ld);
  im2col(sh, x_n, col, *ld);
  return col;
}

// Runs body(n) for every image: split over threads when there are enough images, else in order
// on this thread (the GEMMs inside then use the threads).
template <class Body>
void for_each_image(int64_t N, const Body& body) {
  if (N >= get_num_threads() && get_num_threads() > 1) {
    parallel_for(N, 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) body(n);
    });
  } else {
    for (int64_t n = 0; n < N; ++n) body(n);
  }
}

// ---- direct path ---------------------------------------------------------------------------------

using conv_detail::ConvKernelSet;

// The direct kernels for this CPU, or nullptr (then im2col + GEMM). Follows sgemm's ISA choice,
// so that tests forcing "avx2" or "generic" exercise the im2col path on the same machine.
const ConvKernelSet* direct_kernels() {
#if defined(NANOCNN_X86_SIMD)
  if (std::strcmp(sgemm_isa(), "avx512") == 0) return &conv_detail::kAvx512ConvKernels;
#endif
  return nullptr;
}

// Bottom and right padding implied by the output size (stride 1, dilation 1).
int64_t pad_bottom(const Conv2dShape& sh) { return sh.g.out_h + sh.R - 1 - sh.H - sh.g.pad_top; }
int64_t pad_right(const Conv2dShape& sh) { return sh.g.out_w + sh.S - 1 - sh.W - sh.g.pad_left; }

// Stride 1, dilation 1, and every padding in [0, kernel - 1], so that the input gradient is a
// convolution of the same kind (its padding is kernel - 1 - the forward one).
bool direct_applies(const Conv2dShape& sh) {
  const Conv2dGeometry& g = sh.g;
  auto within = [](int64_t pad, int64_t k) { return pad >= 0 && pad <= k - 1; };
  return g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1 &&
         within(g.pad_top, sh.R) && within(g.pad_left, sh.S) && within(pad_bottom(sh), sh.R) &&
         within(pad_right(sh), sh.S);
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Where flat_conv puts a convolution's output: the (K, P, Q) planes (plus bias and ReLU), or the
// flat grid (K rows of L, no bias) a pool reads.
struct ConvOut {
  float* y;
  bool grid;
  const float* bias;  // planes only; nullable
  bool relu;          // planes only
};

// One stride-1 convolution of a (C, H, W) image into (K, P, Q) as a GEMM over shifted rows.
// The image, zero-padded to (C, Hp, Wp), is laid out as `copies` images of rows of Wr floats:
//   1 copy, Wr = Wp ("flat padded grid"): output (p, q) is position i = p*Wp + q, its input under
//       tap (c, r, s) is i + (c*Hp + r)*Wp + s. Columns q >= Q of each row are computed and
//       dropped: (S-1)/Q of the work (3% for a 2x2 kernel at 32x32, 12% at 8x8).
//   S copies, Wr = Q ("shifted copies"): copy s holds columns s .. s+Q-1 of the padded image, and
//       tap (c, r, s) is i + ((s*C + c)*Hp + r)*Q with i = p*Q + q: nothing is dropped, for S
//       times the copying.
// Either way every tap reads one contiguous row per tile. choose_copies() picks the layout.
struct FlatConv {
  int64_t C, H, W, pt, pl;  // input channels and size, top and left padding
  int64_t K, R, S, P, Q;    // output channels, kernel, output size
  int64_t Hp, Wp;           // padded image: P + R - 1 rows of Q + S - 1
  int64_t copies, Wr;       // copies of the image and their row length (see above)
  int64_t L;                // positions computed per channel: P * Wr rounded up to 16
  int64_t image_floats;     // all copies plus slack: the last tap's reads end at most S + 13
                            // floats past them
  // Per 16-position vector of the grid: where its outputs start in the (P, Q) plane, and which
  // of its lanes are outputs (q < Q, p < P). The forward tiles store through these (FwdOut), and
  // the weight-gradient tiles count only the kept lanes (DwLaneTile).
  std::vector<int64_t> out_at;
  std::vector<uint16_t> out_keep;

  // Row tiling of a flat grid (copies == 1), when it computes at least 2% fewer positions than
  // tiling it 16 positions at a time (choose_split): each output row p is tiled in whole
  // vectors over its first Qm = 16 floor(Q / 16) columns (grid positions p Wp + 16 u, u < Qm / 16,
  // in tiles of two vectors, the last of an odd row one), so no dropped column is computed; the
  // last Q - Qm columns of every row are `strip`, a convolution of those columns of the grid
  // (with their S - 1 neighbours), (C, Hp, Q - Qm + S - 1), laid out as S shifted copies (S (Q -
  // Qm) floats of every grid row), computed to a grid of its own and scattered into place
  // (flat_conv).
  // Measured on the 2-core Zen 4: see flat_conv.
  struct RowTile {
    int64_t i0, v0;  // first grid position, first vector (index into row_at_*)
    int v;           // vectors: 1 or 2
  };
  int64_t Qm = 0;  // 0: no row tiling
  std::vector<RowTile> row_tiles;
  std::vector<int64_t> row_at_planes, row_at_grid;  // per vector: its place in y, in the grid
  std::vector<uint16_t> row_keep;                   // all lanes, every vector
  std::shared_ptr<const FlatConv> strip;            // null when Qm == Q

  // forced_copies: the layout of a strip (S copies), never itself row-tiled.
  FlatConv(int64_t C_, int64_t H_, int64_t W_, int64_t pt_, int64_t pl_, int64_t K_, int64_t R_,
           int64_t S_, int64_t P_, int64_t Q_, int64_t forced_copies = 0)
      : C(C_), H(H_), W(W_), pt(pt_), pl(pl_), K(K_), R(R_), S(S_), P(P_), Q(Q_),
        Hp(P_ + R_ - 1), Wp(Q_ + S_ - 1) {
    copies = forced_copies > 0 ? forced_copies : choose_copies();
    Wr = copies == 1 ? Wp : Q;
    L = round_up(P * Wr, 16);
    image_floats = round_up(copies * C * Hp * Wr + S + 16, 16);
    map_outputs();
    if (forced_copies == 0) choose_split();
  }

  void choose_split() {
    if (copies != 1 || S == 1 || Q < 16) return;
    const int64_t qm = Q / 16 * 16, qs = Q - qm, nv = qm / 16;
    const int64_t saved = L - P * qm - round_up(P * qs, 16);  // positions
    if (50 * saved < L) return;
    // The strip costs its copies and its scatter, ~1.5 cycles a float, ~24 lanes of FMA: it must
    // save twice that. Measured (one core, batch 32, A/B): cats-vs-dogs 32->64 3x3 @36 (saves
    // 1.2 M lane-FMAs an image for 11 K floats moved) -3%, 16->32 3x3 @74 (0.66 M for 47 K) +5%.
    const int64_t moved = (S * C * Hp + K * P) * qs;
    if (saved * K * C * R * S < 2 * 24 * moved) return;
    Qm = qm;
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t u = 0; u < nv; ++u) {
        row_at_planes.push_back(p * Q + 16 * u);
        row_at_grid.push_back(p * Wr + 16 * u);
      }
      for (int64_t u = 0; u < nv; u += 2)
        row_tiles.push_back({p * Wr + 16 * u, p * nv + u, u + 1 < nv ? 2 : 1});
    }
    row_keep.assign(row_at_planes.size(), 0xFFFF);
    if (qs > 0)
      strip = std::make_shared<const FlatConv>(C, Hp, qs + S - 1, 0, 0, K, R, S, P, qs, S);
  }

  void map_outputs() {
    const int64_t vectors = L / 16, last = P * Wr;
    out_at.resize(vectors);
    out_keep.resize(vectors);
    int64_t kept = 0, col = 0;  // col: the flat-row column of position 16 v
    for (int64_t v = 0; v < vectors; ++v, col = (col + 16) % Wr) {
      const int64_t i = 16 * v;
      uint16_t keep = 0;
      if (col + 16 <= Q && i + 16 <= last) {
        keep = 0xFFFF;
      } else {
        for (int64_t l = 0, c = col; l < 16; ++l, c = c + 1 == Wr ? 0 : c + 1)
          if (i + l < last && c < Q) keep |= static_cast<uint16_t>(1u << l);
      }
      out_at[v] = kept;
      out_keep[v] = keep;
      kept += __builtin_popcount(keep);
    }
  }

  // The output: the (channels, P, Q) planes at y, plus bias (nullable) and ReLU.
  ConvOut to_planes(float* y, const float* bias, bool relu) const { return {y, false, bias, relu}; }
  // The output: the flat grid itself, rows of L at yf (positions p Wr + q, q < Q written).
  ConvOut to_grid(float* yf) const { return {yf, true, nullptr, false}; }

  // What the tiles are told (FwdOut in conv_kernels.h): vector by vector of the flat grid, or of
  // the row tiles.
  conv_detail::FwdOut tile_out(const ConvOut& o) const {
    if (Qm > 0) {
      const int64_t vectors = static_cast<int64_t>(row_keep.size());
      return o.grid ? conv_detail::FwdOut{o.y, L, row_at_grid.data(), row_keep.data(), vectors,
                                          nullptr, false}
                    : conv_detail::FwdOut{o.y, P * Q, row_at_planes.data(), row_keep.data(),
                                          vectors, o.bias, o.relu};
    }
    return o.grid ? conv_detail::FwdOut{o.y, L, nullptr, nullptr, 0, nullptr, false}
                  : conv_detail::FwdOut{o.y, P * Q, out_at.data(), out_keep.data(), L / 16,
                                        o.bias, o.relu};
  }

  // Shifted copies when they save at least 5% of the tile work (measured: conv3 of the CIFAR net
  // at 8x8 computes 64 positions instead of 80, -8 to -10% time; 128->128 3x3 at 28x28 7% fewer,
  // 0.89 -> 0.97 of PyTorch's time), unless the copies would take over 4 MiB. A "valid"
  // convolution (no padding) reads its flat grid in place (input_grid), so there the copies
  // must save 10%: cats-vs-dogs 32->64 3x3 @36, 5.5% fewer positions, ran as fast on the flat
  // grid read in place as on the copies (batch 32, one and two cores).
  int64_t choose_copies() const {
    if (S == 1) return 1;
    const int64_t flat = round_up(P * Wp, 16), shifted = round_up(P * Q, 16);
    const bool fits = S * C * Hp * Q * int64_t{sizeof(float)} <= (int64_t{4} << 20);
    return fits && (valid() ? 10 * shifted <= 9 * flat : 20 * shifted <= 19 * flat) ? S : 1;
  }

  // No padding: the padded image is the image itself.
  bool valid() const { return Hp == H && Wp == W; }

  int64_t tap(int64_t c, int64_t r, int64_t s) const {
    return copies == 1 ? (c * Hp + r) * Wp + s : ((s * C + c) * Hp + r) * Q;
  }
};

// dst <- the copies of src (C, H, W) placed at (pt, pl): copy j, channel c, row h' holds columns
// j .. j + Wr - 1 of the padded row h' (j = 0 for the flat grid); zeros elsewhere and in the slack.
// With a mask (laid out as src), src reads as 0 where the mask is not above 0. src's planes are
// src_plane floats apart and its rows src_ld (0: packed, H * W and W).
void pad_image(const FlatConv& f, const ConvKernelSet& ks, const float* src, const float* mask,
               float* dst, int64_t src_plane = 0, int64_t src_ld = 0) {
  if (src_plane == 0) src_plane = f.H * f.W;
  if (src_ld == 0) src_ld = f.W;
  // Over (copy, channel) planes, split over threads when not inside a parallel region already (a
  // lone image: batch 1), in one region for all the copies.
  parallel_for(f.copies * f.C, f.Hp * f.Wr, [&](int64_t begin, int64_t end) {
    while (begin < end) {
      // Copy j: dst column q takes src column q + j - pl, so skip `cut` source columns, or start
      // `lead` columns into the row.
      const int64_t j = begin / f.C, c0 = begin % f.C, c1 = std::min(f.C, c0 + end - begin);
      const int64_t cut = std::max<int64_t>(0, j - f.pl), lead = std::max<int64_t>(0, f.pl - j);
      const int64_t at = c0 * src_plane + cut;
      ks.pad_planes(src + at, mask != nullptr ? mask + at : nullptr, c1 - c0, src_plane, src_ld,
                    f.H, f.W - cut, dst + (j * f.C + c0) * f.Hp * f.Wr, f.Hp * f.Wr, f.pt, f.Wr,
                    lead);
      begin += c1 - c0;
    }
  });
  const int64_t used = f.copies * f.C * f.Hp * f.Wr;
  std::memset(dst + used, 0, (f.image_floats - used) * sizeof(float));
}

// g (K, L) <- dy (K, P, Q) at the output positions: g[k][p*Wr + q] = dy[k][p][q], zero in the
// dropped columns q >= Q and past P*Wr. With a mask (the fused ReLU's output), dy reads as 0
// where the mask is not above 0.
void flatten_grads(const FlatConv& f, const ConvKernelSet& ks, const float* dy, const float* mask,
                   float* g) {
  parallel_for(f.K, f.L, [&](int64_t begin, int64_t end) {
    const int64_t at = begin * f.P * f.Q;
    ks.pad_planes(dy + at, mask != nullptr ? mask + at : nullptr, end - begin, f.P * f.Q, f.Q,
                  f.P, f.Q, g + begin * f.L, f.L, 0, f.Wr, 0);
  });
}

// The weights as the forward tile wants them: output channels dealt out in near-equal panels of
// at most mr rows (16 -> 8 + 8, 64 -> 11 x 4 + 10 x 2), each packed kc x rows, t-major, and the
// input offset of every reduction step t.
struct PackedWeights {
  int64_t kc = 0;
  float* a = nullptr;  // K x kc, in the calling thread's scratch (kScratchPackedWeights): at
                       // batch 1 a fresh zeroed vector of 256 x 2304 floats took 10% of a call
  std::vector<int64_t> off, k0, rows, start;  // off per step; k0, rows, start per panel
  std::vector<int64_t> strip_off;  // per step: its input offset in the grid's strip (if any)
};

// Packs K x kc weights for tiles over f, step t reading its input at offset off[t] (f.tap(c, r,
// s)): panel by panel, fill(k0, rows, dst) writing rows k0 .. k0 + rows - 1 (kc x rows, t-major)
// to dst, with the kernel set's transposing pack_block.
template <class Fill>
PackedWeights pack_weights(const FlatConv& f, int64_t K, int mr, std::vector<int64_t> off,
                           const Fill& fill) {
  PackedWeights pw;
  const int64_t kc = static_cast<int64_t>(off.size());
  pw.kc = kc;
  pw.a = thread_scratch(kScratchPackedWeights, K * kc);
  if (f.strip != nullptr) {  // the same tap (c, r, s) in the strip's copies
    const int64_t plane = f.Hp * f.Wp;
    for (const int64_t o : off)
      pw.strip_off.push_back(f.strip->tap(o / plane, o % plane / f.Wp, o % f.Wp));
  }
  pw.off = std::move(off);
  const int64_t panels = (K + mr - 1) / mr;
  int64_t k0 = 0;
  for (int64_t j = 0; j < panels; ++j) {
    const int64_t rows = K / panels + (j < K % panels ? 1 : 0);
    pw.k0.push_back(k0);
    pw.rows.push_back(rows);
    pw.start.push_back(k0 * kc);
    k0 += rows;
  }
  // Split over threads: at batch 1 a large layer's packing (256 x 2304 floats) otherwise takes
  // as long as the convolution itself.
  parallel_for(panels, kc * mr, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) fill(pw.k0[j], pw.rows[j], pw.a + pw.start[j]);
  });
  return pw;
}

// The convolution of the padded image xp (f's layout) into `out` (the channels of pw), tile by
// tile: 32 positions (16 for an odd last one) by one weight panel. Parallel over position blocks
// when called outside a parallel region.
// A row-tiled grid (FlatConv::choose_split) takes its row tiles, then the strip's: the strip's
// columns copied from xp into S shifted copies, its tiles computed into a grid of their own, and
// that scattered into the last Q - Qm columns of every row. Measured on the 2-core Zen 4, A/B
// against flat tiles, medians of 3-4 rounds: CIFAR 3->16 2x2 @32 at batch 64 0.395 -> 0.352 ms
// on one core, 0.194 -> 0.175 on two; cats-vs-dogs 32->64 3x3 @36 at batch 32 13.24 -> 12.87
// and 6.67 -> 6.52, at batch 1 0.412 -> 0.399 on one core.
void flat_conv(const FlatConv& f, const ConvKernelSet& ks, const PackedWeights& pw,
               const float* xp, const ConvOut& out) {
  const conv_detail::FwdOut fo = f.tile_out(out);
  const int64_t panels = static_cast<int64_t>(pw.rows.size());
  const int64_t cost = 64 * pw.rows[0] * pw.kc;
  auto tile = [&](int64_t j, int v, const float* b, const int64_t* off,
                  const conv_detail::FwdOut& o, int64_t v0) {
    ks.fwd[(pw.rows[j] - 1) * 2 + (v - 1)](pw.kc, pw.a + pw.start[j], b, off, o, pw.k0[j], v0);
  };
  if (f.Qm == 0) {
    // Tiles in order (position block, panel): a thread's range shares the input rows of a block
    // across its panels, and a lone image (batch 1) still splits evenly over the threads.
    const int64_t blocks = (f.L + 31) / 32;
    parallel_for(blocks * panels, cost, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t i0 = t / panels * 32, j = t % panels;
        tile(j, f.L - i0 >= 32 ? 2 : 1, xp + i0, pw.off.data(), fo, i0 / 16);
      }
    });
    return;
  }
  // Row tiles, then (while xp's rows are in cache) the strip: its copies, its 32-position
  // blocks, each by every panel, and its outputs scattered into place.
  const int64_t row_tiles = static_cast<int64_t>(f.row_tiles.size());
  parallel_for(row_tiles * panels, cost, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const FlatConv::RowTile& rt = f.row_tiles[t / panels];
      tile(t % panels, rt.v, xp + rt.i0, pw.off.data(), fo, rt.v0);
    }
  });
  const FlatConv* st = f.strip.get();
  if (st == nullptr) return;
  const int64_t rows = pw.k0.back() + pw.rows.back();
  const int64_t qs = st->Q, plane = st->Hp * qs;
  float* sx = thread_scratch(kScratchStrip, st->image_floats + rows * st->L);
  float* sy = sx + st->image_floats;  // the strip's output grid, rows of st->L
  // Copy j, channel c: columns Qm + j .. Qm + j + qs - 1 of xp's rows. Plain loops: rows this
  // short cost pad_planes' 16-lane masks more than their data (3% of cats-vs-dogs' conv3).
  parallel_for(st->copies * f.C, plane, [&](int64_t begin, int64_t end) {
    for (int64_t jc = begin; jc < end; ++jc) {
      const float* src = xp + jc % f.C * f.Hp * f.Wp + f.Qm + jc / f.C;
      float* dst = sx + jc * plane;
      for (int64_t q = 0; q < qs; ++q)  // columns outer: long loops, no memcpy of a few floats
        for (int64_t h = 0; h < f.Hp; ++h) dst[h * qs + q] = src[h * f.Wp + q];
    }
  });
  const int64_t used = st->copies * f.C * plane;
  std::memset(sx + used, 0, (st->image_floats - used) * sizeof(float));
  const conv_detail::FwdOut so = st->tile_out(st->to_grid(sy));
  parallel_for((st->L + 31) / 32 * panels, cost, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i0 = t / panels * 32;
      tile(t % panels, st->L - i0 >= 32 ? 2 : 1, sx + i0, pw.strip_off.data(), so, i0 / 16);
    }
  });
  // The strip's outputs into place: plane row p, columns Qm .., with the bias and ReLU as the
  // tiles apply them (FwdOut); raw into the grid.
  parallel_for(rows, f.P * qs, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const float* src = sy + k * st->L;
      const int64_t ld = out.grid ? f.Wr : f.Q;
      float* dst = out.y + k * (out.grid ? f.L : f.P * f.Q) + f.Qm;
      const float bias = out.bias != nullptr ? out.bias[k] : 0.f;
      for (int64_t q = 0; q < qs; ++q) {  // columns outer, as in the copies
        if (out.relu) {
          for (int64_t p = 0; p < f.P; ++p) {
            const float v = src[p * qs + q] + bias;
            dst[p * ld + q] = 0.f > v ? 0.f : v;  // max(0, v) as the tiles take it: NaN stays
          }
        } else if (out.bias != nullptr) {
          for (int64_t p = 0; p < f.P; ++p) dst[p * ld + q] = src[p * qs + q] + bias;
        } else {
          for (int64_t p = 0; p < f.P; ++p) dst[p * ld + q] = src[p * qs + q];
        }
      }
    }
  });
}

// dwT (CRS, Kp) (+)= sum over `images` images of xp_m shifted by off(t) . g_m (K, L), with lane
// tiles of lane_rows channels x lane_cols taps (DwLaneTile). Parallel over tiles when called
// outside a parallel region.
// Tiles go in tap blocks: the taps of as many input channels as keep their rows of all `images`
// images within kTapBlockBytes (L2), every channel block sweeping them in turn. So the padded
// images are read from memory about once and the gradient rows once per tap block. Channel
// block by channel block over all taps instead, a large layer re-read all its padded images per
// block: 256->256 3x3 @14 at batch 256 streamed ~800 MB per 19 images. Its backward pass went
// from 1.93 to 1.39 s on one core, 0.88 to 0.69 s on two (128->128 @28: -2 to -6%, the CIFAR
// network's layers, whose images fit in one tap block, unchanged).
void lane_weight_grads(const FlatConv& f, const ConvKernelSet& ks, int64_t images,
                       const float* g, int64_t Kp, const float* xs, const int64_t* off,
                       float* dwT, bool accumulate) {
  const int64_t CRS = f.C * f.R * f.S;
  const int64_t kb = (f.K + ks.lane_rows - 1) / ks.lane_rows;
  const int64_t tb = (CRS + ks.lane_cols - 1) / ks.lane_cols;
  const int64_t channel_bytes = images * f.copies * f.Hp * f.Wr * int64_t{sizeof(float)};
  const int64_t channels = std::max<int64_t>(1, kTapBlockBytes / channel_bytes);
  const int64_t block = std::max<int64_t>(1, channels * f.R * f.S / ks.lane_cols);  // t-blocks
  parallel_for(kb * tb, 2 * ks.lane_rows * ks.lane_cols * images * f.L,
               [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      // tile -> (tap block, channel block, t-block within the tap block)
      const int64_t b = tile / (block * kb), in_block = tile - b * block * kb;
      const int64_t size = std::min(block, tb - b * block);
      const int64_t k0 = in_block / size * ks.lane_rows;
      const int64_t t0 = (b * block + in_block % size) * ks.lane_cols;
      const int64_t rows = std::min<int64_t>(ks.lane_rows, f.K - k0);
      const int64_t cols = std::min<int64_t>(ks.lane_cols, CRS - t0);
      ks.lane[(rows - 1) * ks.lane_cols + (cols - 1)](
          images, f.L, g + k0 * f.L, f.K * f.L, f.L, xs, f.image_floats, off + t0,
          f.out_keep.data(), dwT + t0 * Kp + k0, Kp, accumulate);
    }
  });
}

// Bytes of transposed gradients (all channels) a block of positions spans in outer_weight_grads.
constexpr int64_t kDwBlockBytes = int64_t{256} << 10;

// dwT (CRS, Kp) (+)= sum over `images` images m of xp_m shifted by off(t), times gT_m, the
// output gradient transposed ((positions, Kp) per image, f.L * Kp floats apart), with outer-
// product tiles of taps x 16 KV channels (DwOuterTile). The positions go in blocks whose
// gradients stay in L2 (kDwBlockBytes: a few images, or rows of one), and in each block the tiles
// go tap block by tap block, the channel blocks inner, so the input rows a tap block reads come
// from L1 for all its channel blocks. Every tile sums its positions in order, carrying its sums
// from block to block, so the result does not depend on how blocks or tiles are split (or over
// how many threads).
void outer_weight_grads(const FlatConv& f, const ConvKernelSet& ks, int64_t images,
                        const float* gT, int64_t Kp, const float* xs, const int64_t* off,
                        float* dwT, bool accumulate) {
  const int64_t CRS = f.C * f.R * f.S;
  const int64_t kv_all = Kp / 16;
  // Channel blocks: kv_full of ks.outer_kv vectors, then one of kv_last (maybe none).
  const int64_t kv_full = kv_all / ks.outer_kv, kv_last = kv_all % ks.outer_kv;
  const int64_t kblocks = kv_full + (kv_last > 0 ? 1 : 0);
  // Taps in near-equal blocks, no more than the narrowest tile takes, and at least 2 tiles per
  // thread where the taps allow (a batch-1 layer with few channels would leave threads idle).
  const int max_taps = ks.outer_taps[(kv_full > 0 ? ks.outer_kv : kv_last) - 1];
  int64_t tblocks = (CRS + max_taps - 1) / max_taps;
  if (!in_parallel())
    tblocks = std::min(CRS, std::max(tblocks, (2 * get_num_threads() + kblocks - 1) / kblocks));
  // Positions per block: whole images when one has fewer than `span`, else rows of one image.
  const int64_t span = std::max<int64_t>(f.Q, kDwBlockBytes / int64_t{sizeof(float)} / Kp);
  const int64_t per_image = f.P * f.Q;
  const int64_t block_images = per_image >= span ? 1 : std::min(images, span / per_image);
  const int64_t block_rows = per_image >= span ? std::max<int64_t>(1, span / f.Q) : f.P;
  for (int64_t m0 = 0; m0 < images; m0 += block_images) {
    const int64_t mn = std::min(block_images, images - m0);
    for (int64_t p0 = 0; p0 < f.P; p0 += block_rows) {
      const int64_t p1 = std::min(f.P, p0 + block_rows);
      const bool acc = accumulate || m0 > 0 || p0 > 0;
      parallel_for(tblocks * kblocks, 2 * 16 * ks.outer_kv * max_taps * mn * (p1 - p0) * f.Q,
                   [&](int64_t begin, int64_t end) {
        for (int64_t tile = begin; tile < end; ++tile) {
          const int64_t tb = tile / kblocks, kb = tile % kblocks;
          const int64_t t0 = CRS * tb / tblocks, taps = CRS * (tb + 1) / tblocks - t0;
          const int64_t kv = kb < kv_full ? ks.outer_kv : kv_last;
          const int64_t k0 = kb * ks.outer_kv * 16;
          ks.outer[(kv - 1) * ks.outer_taps[0] + (taps - 1)](
              mn, p0, p1, f.Q, f.Wr, gT + m0 * f.L * Kp + k0, f.L * Kp, Kp,
              xs + m0 * f.image_floats, f.image_floats, off + t0, dwT + t0 * Kp + k0, Kp, acc);
        }
      });
    }
  }
}

FlatConv forward_grid(const Conv2dShape& sh) {
  return FlatConv(sh.C, sh.H, sh.W, sh.g.pad_top, sh.g.pad_left, sh.K, sh.R, sh.S, sh.g.out_h,
                  sh.g.out_w);
}

// Image n of x as the forward tiles read it (f's layout). A "valid" convolution (no padding)
// on the flat grid needs no copy at all: the padded image *is* x_n, (C, H, W) with Hp = H and
// Wp = W, and the tiles read it in place. Their reads run up to f.image_floats past x_n (the
// dropped columns read the next row, the last vector the next image: lanes never stored), so the
// last image, whose reads would leave x, is copied as usual. Measured on the 2-core Zen 4, one
// core, A/B, batch 32: cats-vs-dogs 16->32 3x3 @74 (the copy was 4% of its samples) best of
// ~200 calls 14.8-15.0 -> 14.6-14.7 ms, 3->16 @150 6.55 -> 6.30-6.35; medians within noise.
const float* input_grid(const Conv2dShape& sh, const FlatConv& f, const ConvKernelSet& ks,
                        const float* x, int64_t n) {
  const int64_t CHW = sh.C * sh.H * sh.W;
  const bool in_place = f.copies == 1 && f.valid() && n * CHW + f.image_floats <= sh.N * CHW;
  if (in_place) return x + n * CHW;
  float* xp = thread_scratch(kScratchColumns, f.image_floats);
  pad_image(f, ks, x + n * CHW, nullptr, xp);
  return xp;
}

// Output channels [k0, k1) of images [n0, n1): y and/or the pooled output and codes, through
// packed weights pw of those channels (panel rows counted from k0).
void direct_forward_part(const Conv2dShape& sh, const ConvKernelSet& ks, const FlatConv& f,
                         const PackedWeights& pw, int64_t k0, int64_t k1, int64_t n0, int64_t n1,
                         const float* x, const float* b, bool relu, float* y, float* pooled,
                         float* codes) {
  const int64_t kn = k1 - k0, PQ = f.P * f.Q;
  const Pool2dShape ps{1, kn, f.P, f.Q, pool2x2_geometry(f.P, f.Q)};
  const int64_t PPQ = ps.g.out_h * ps.g.out_w;
  const float* b_part = b != nullptr ? b + k0 : nullptr;
  for (int64_t n = n0; n < n1; ++n) {
    const float* xp = input_grid(sh, f, ks, x, n);
    const int64_t at = (n * sh.K + k0) * PPQ;
    float* codes_n = codes != nullptr ? codes + at : nullptr;
    if (pooled != nullptr && y == nullptr && relu && ps.g.out_w >= 8) {
      // Only the pooled output is wanted: pool straight from the flat grid, with the bias and
      // ReLU applied as the cells are read (y is never written). Narrower planes take the
      // packed pool below, 16 windows across rows.
      float* yf = thread_scratch(kScratchFlatOutput, kn * f.L);
      flat_conv(f, ks, pw, xp, f.to_grid(yf));
      max_pool2x2_forward_codes_relu(ps, yf, f.Wr, f.L, b_part, pooled + at, codes_n);
      continue;
    }
    // y_n stays in a scratch buffer when only the pooled output (and the codes) are wanted.
    float* y_n = y != nullptr ? y + (n * sh.K + k0) * PQ
                              : thread_scratch(kScratchUnpooled, kn * PQ);
    flat_conv(f, ks, pw, xp, f.to_planes(y_n, b_part, relu));
    if (pooled != nullptr) max_pool2x2_forward_codes(ps, y_n, pooled + at, codes_n);
  }
}

// The weights of output channels [k0, k1), packed for the forward tile: w (K, C, R, S) read as
// (K, CRS), step t = (c, r, s) at input offset f.tap(c, r, s).
PackedWeights pack_forward_weights(const Conv2dShape& sh, const ConvKernelSet& ks,
                                   const FlatConv& f, const float* w, int64_t k0, int64_t k1) {
  const int64_t CRS = sh.C * sh.R * sh.S;
  std::vector<int64_t> off(CRS);
  for (int64_t t = 0; t < CRS; ++t) off[t] = f.tap(t / (sh.R * sh.S), t / sh.S % sh.R, t % sh.S);
  return pack_weights(f, k1 - k0, ks.mr, std::move(off), [&](int64_t k, int64_t rows, float* a) {
    for (int64_t t0 = 0; t0 < CRS; t0 += 16)
      ks.pack_block(w + (k0 + k) * CRS + t0, CRS, rows, std::min<int64_t>(16, CRS - t0), false,
                    a + t0 * rows);
  });
}

void direct_forward(const Conv2dShape& sh, const ConvKernelSet& ks, const float* x,
                    const float* w, const float* b, bool relu, float* y, float* pooled,
                    float* codes) {
  const FlatConv f = forward_grid(sh);
  const int T = get_num_threads();
  if (sh.N >= T || T == 1 || in_parallel() || sh.K < 2 * T) {
    // Images split over threads (or one thread): every thread uses all channels.
    const PackedWeights pw = pack_forward_weights(sh, ks, f, w, 0, sh.K);
    for_each_image(sh.N, [&](int64_t n) {
      direct_forward_part(sh, ks, f, pw, 0, sh.K, n, n + 1, x, b, relu, y, pooled, codes);
    });
    return;
  }
  // Fewer images than threads (batch 1): each thread takes an equal share of the output
  // channels, packs their weights and pads the image itself, and writes only its channels, so
  // no cache line moves between cores (the image is padded once per thread, a few percent of
  // the work of a layer this large). Measured on the 2-core Zen 4, batch 1, against tiles split
  // over both threads: cats-vs-dogs 32->64 3x3 @36 0.25-0.28 -> 0.22 ms, 16->32 @74 0.25-0.28
  // -> 0.24-0.25; 128->128 @16 and 256->256 @14 unchanged (packing their weights twice as
  // many per thread costs what the sharing did).
  parallel_for(T, int64_t{1} << 30, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const int64_t k0 = sh.K * j / T, k1 = sh.K * (j + 1) / T;
      const PackedWeights pw = pack_forward_weights(sh, ks, f, w, k0, k1);
      direct_forward_part(sh, ks, f, pw, k0, k1, 0, sh.N, x, b, relu, y, pooled, codes);
    }
  });
}

// dw (transposed: dwT_j, (CRS, Kp)) and db of the images [n_begin, n_end) into dwT_j and db_j,
// and their dx unless dx is nullptr. relu_y (nullable) masks dy.
void direct_backward_chunk(const Conv2dShape& sh, const ConvKernelSet& ks, const FlatConv& f,
                           const FlatConv& fb, const PackedWeights& pwb,
                           const std::vector<int64_t>& taps, int64_t n_begin, int64_t n_end,
                           const float* dy, const float* relu_y, const float* codes,
                           const float* x, float* dx, float* dwT_j, float* db_j) {
  const int64_t CHW = sh.C * sh.H * sh.W, KPQ = sh.K * f.P * f.Q, Kp = round_up(sh.K, 16);
  const Pool2dShape ps{1, sh.K, f.P, f.Q, pool2x2_geometry(f.P, f.Q)};
  // Images go in groups of about 4096 positions: each weight-gradient tile then sums a group in
  // its registers (small images: many per group, one lane reduction for all) while the group's
  // copies stay in cache (large images: one at a time; a tile re-reads only that image).
  const int64_t group = std::min(n_end - n_begin, std::max<int64_t>(1, 4096 / f.L));
  float* xs = thread_scratch(kScratchColumns, group * f.image_floats);
  float* gs = thread_scratch(kScratchColumnGrads, group * sh.K * f.L);
  // The weight gradient's tiles (conv_kernels.h). Lane tiles pay ~120 cycles per tile and group
  // to add their lanes, which a group of few positions (a batch-1 image of 16 x 16) does not
  // repay; outer-product tiles need the gradient transposed first, ~90 cycles per 16 x 16 block,
  // which a layer with few taps (CRS) does not repay. Relative to the FMAs that is
  // ~80 / (group positions) against ~6 / CRS, so outer-product tiles when a group has fewer than
  // 16 CRS positions. The choice depends on the shape only, never on the thread count.
  // Measured on the 2-core Zen 4 (outer against lane tiles, dw only, batch 1 unless said):
  // 128->128 3x3 @16 -7 to -12%, 256->256 @14 -2 to -15%, cats-vs-dogs 32->64 3x3 @36 at batch
  // 32 -3 to -4% and the CIFAR net's 32->64 2x2 @8 at 64 -2%; but its 3->16 @32 +14 to +19% and
  // 16->32 @16 +6 to +8%.
  const bool outer = group * f.L < 16 * sh.C * sh.R * sh.S;
  float* gts = outer ? thread_scratch(kScratchTransposedGrads, group * f.L * Kp) : nullptr;
  for (int64_t g0 = n_begin; g0 < n_end; g0 += group) {
    const int64_t g1 = std::min(n_end, g0 + group);
    for (int64_t n = g0; n < g1; ++n) {
      const float* mask = relu_y != nullptr ? relu_y + n * KPQ : nullptr;
      float* g_n = gs + (n - g0) * sh.K * f.L;
      pad_image(f, ks, x + n * CHW, nullptr, xs + (n - g0) * f.image_floats);
      if (codes != nullptr) {
        // The pool's gradient routed to the winners straight into the flat grid: g_n is this
        // image's dy (K rows of L, P rows of Wr), and the input gradient reads it from there.
        const int64_t at = n * sh.K * ps.g.out_h * ps.g.out_w;
        max_pool2x2_unpool_rows(ps, codes + at, dy + at, g_n, f.Wr, f.L);
      } else {
        flatten_grads(f, ks, dy + n * KPQ, mask, g_n);
      }
      if (outer) {  // transposed: a row of channels per position
        float* gt_n = gts + (n - g0) * f.L * Kp;
        parallel_for(f.L / 16, 16 * Kp, [&](int64_t begin, int64_t end) {
          ks.transpose(g_n + 16 * begin, f.L, sh.K, 16 * (end - begin), Kp,
                       gt_n + 16 * begin * Kp, Kp);
        });
      }
      if (dx != nullptr) {
        float* dyp = thread_scratch(kScratchPaddedGrads, fb.image_floats);
        if (codes != nullptr)
          pad_image(fb, ks, g_n, nullptr, dyp, f.L, f.Wr);
        else
          pad_image(fb, ks, dy + n * KPQ, mask, dyp);
        flat_conv(fb, ks, pwb, dyp, fb.to_planes(dx + n * CHW, nullptr, false));
      }
    }
    const bool accumulate = g0 != n_begin;
    if (outer)
      outer_weight_grads(f, ks, g1 - g0, gts, Kp, xs, taps.data(), dwT_j, accumulate);
    else
      lane_weight_grads(f, ks, g1 - g0, gs, Kp, xs, taps.data(), dwT_j, accumulate);
    // db_j[k] (+)= the sum of the group's (masked) gradient rows; dropped columns are zero.
    parallel_for(sh.K, (g1 - g0) * f.L, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        float acc = 0.f;
        for (int64_t i = 0; i < g1 - g0; ++i) acc += ks.sum(gs + (i * sh.K + k) * f.L, f.L);
        db_j[k] = accumulate ? db_j[k] + acc : acc;
      }
    });
  }
}

}  // namespace

Pool2dGeometry pool2x2_geometry(int64_t H, int64_t W) {
  Pool2dGeometry g;
  g.kernel_h = g.kernel_w = g.stride_h = g.stride_w = 2;
  g.out_h = H / 2;
  g.out_w = W / 2;
  return g;
}

void conv2d_forward_fused(const Conv2dShape& sh, const float* x, const float* w, const float* b,
                          bool relu, float* y, float* pooled, float* codes) {
  const SerialScope serial(small_and_alone(sh));
  if (const ConvKernelSet* ks = direct_kernels(); ks != nullptr && direct_applies(sh)) {
    direct_forward(sh, *ks, x, w, b, relu, y, pooled, codes);
    return;
  }
  std::vector<float> y_only;  // im2col path: y in full, then the pool
  if (y == nullptr) {
    y_only.resize(sh.N * sh.K * sh.g.out_h * sh.g.out_w);
    y = y_only.data();
  }
  const int64_t PQ = sh.g.out_h * sh.g.out_w, CRS = sh.C * sh.R * sh.S;
  for_each_image(sh.N, [&](int64_t n) {
    int64_t ld;
    const float* col = columns(sh, x + n * sh.C * sh.H * sh.W, &ld);
    float* y_n = y + n * sh.K * PQ;
    // y_n (K, PQ) = w (K, CRS) @ col (CRS, PQ)
    sgemm(false, false, sh.K, PQ, CRS, 1.f, w, CRS, col, ld, 0.f, y_n, PQ);
    for (int64_t k = 0; k < sh.K; ++k) {
      float* row = y_n + k * PQ;
      const float bias = b != nullptr ? b[k] : 0.f;
      if (relu) {
        for (int64_t i = 0; i < PQ; ++i) {
          const float v = row[i] + bias;
          row[i] = v > 0.f || v != v ? v : 0.f;  // NaN stays NaN, as in relu_forward
        }
      } else if (b != nullptr) {
        for (int64_t i = 0; i < PQ; ++i) row[i] += bias;
      }
    }
  });
  if (pooled != nullptr)
    max_pool2x2_forward_codes(Pool2dShape{sh.N, sh.K, sh.g.out_h, sh.g.out_w,
                                          pool2x2_geometry(sh.g.out_h, sh.g.out_w)},
                              y, pooled, codes);
}

void conv2d_forward(const Conv2dShape& sh, const float* x, const float* w, const float* b,
                    float* y) {
  conv2d_forward_fused(sh, x, w, b, false, y, nullptr, nullptr);
}

void conv2d_backward_fused(const Conv2dShape& sh, const float* dy, const float* relu_y,
                           const float* codes, const float* x, const float* w, float* dx,
                           float* dw, float* db) {
  const SerialScope serial(small_and_alone(sh));
  const int64_t PQ = sh.g.out_h * sh.g.out_w, CRS = sh.C * sh.R * sh.S, CHW = sh.C * sh.H * sh.W;
  const int64_t KCRS = sh.K * CRS;
  const int64_t chunks = std::min(sh.N, kWeightChunks);
  const ConvKernelSet* ks = direct_kernels();
  const bool direct = ks != nullptr && direct_applies(sh);

  // The im2col path reads a masked copy of dy (routed through the pool first); the direct one
  // does both image by image while copying dy anyway.
  std::vector<float> unpooled, masked;
  if (codes != nullptr && !direct) {
    unpooled.resize(sh.N * sh.K * PQ);
    max_pool2x2_unpool(Pool2dShape{sh.N, sh.K, sh.g.out_h, sh.g.out_w,
                                   pool2x2_geometry(sh.g.out_h, sh.g.out_w)},
                       codes, dy, unpooled.data());
    dy = unpooled.data();
    codes = nullptr;
  }
  if (relu_y != nullptr && !direct) {
    masked.resize(sh.N * sh.K * PQ);
    relu_backward(static_cast<int64_t>(masked.size()), dy, relu_y, masked.data());
    dy = masked.data();
    relu_y = nullptr;
  }

  // Chunk j's partial sums. The direct path writes every chunk to the scratch, dw transposed
  // ((CRS, Kp), as its tiles make it) and then db, reduces them there and then transposes. The
  // im2col path writes chunk 0's dw straight into dw, chunk j > 0's at partial + (j - 1) * part
  // (its db is summed at the end).
  const int64_t Kp = round_up(sh.K, 16);
  const int64_t part = direct ? CRS * Kp + sh.K : KCRS;
  const int64_t in_place = direct ? 0 : 1;  // chunks written straight into dw
  float* partial = chunks > in_place
                       ? thread_scratch(kScratchWeightPartials, (chunks - in_place) * part)
                       : nullptr;
  auto dw_of_chunk = [&](int64_t j) {
    return j < in_place ? dw : partial + (j - in_place) * part;
  };

  std::function<void(int64_t)> run_chunk;
  // Direct path: the forward grid (for dw) and the input gradient's grid: dy (K, P, Q) padded by
  // (R - 1 - pad_top, S - 1 - pad_left) convolved with w flipped and transposed, (C, K, R, S).
  const FlatConv f = forward_grid(sh);
  const FlatConv fb(sh.K, f.P, f.Q, sh.R - 1 - sh.g.pad_top, sh.S - 1 - sh.g.pad_left, sh.C, sh.R,
                    sh.S, sh.H, sh.W);
  PackedWeights pwb;
  std::vector<int64_t> taps;
  if (direct) {
    const int64_t RS = sh.R * sh.S;
    for (int64_t t = 0; t < CRS; ++t) taps.push_back(f.tap(t / RS, t / sh.S % sh.R, t % sh.S));
    if (dx != nullptr) {
      // Rows c, steps t = (k, r, s) of the flipped kernel: w[k, c, R-1-r, S-1-s], i.e. the RS
      // values of w[k, c] reversed.
      std::vector<int64_t> off(sh.K * RS);
      for (int64_t t = 0; t < sh.K * RS; ++t) off[t] = fb.tap(t / RS, t / sh.S % sh.R, t % sh.S);
      pwb = pack_weights(fb, sh.C, ks->mr, std::move(off), [&](int64_t c, int64_t rows, float* a) {
        for (int64_t k = 0; k < sh.K; ++k)
          for (int64_t u0 = 0; u0 < RS; u0 += 16) {  // steps k*RS + u0 .. + n - 1
            const int64_t n = std::min<int64_t>(16, RS - u0);
            ks->pack_block(w + (k * sh.C + c) * RS + (RS - u0 - n), RS, rows, n, true,
                           a + (k * RS + u0) * rows);
          }
      });
    }
    run_chunk = [&](int64_t j) {
      direct_backward_chunk(sh, *ks, f, fb, pwb, taps, sh.N * j / chunks, sh.N * (j + 1) / chunks,
                            dy, relu_y, codes, x, dx, dw_of_chunk(j), dw_of_chunk(j) + CRS * Kp);
    };
  } else {
    run_chunk = [&](int64_t j) {
      const int64_t n_begin = sh.N * j / chunks, n_end = sh.N * (j + 1) / chunks;
      float* dw_j = dw_of_chunk(j);
      for (int64_t n = n_begin; n < n_end; ++n) {
        const float* dy_n = dy + n * sh.K * PQ;
        int64_t ld;
        const float* col = columns(sh, x + n * CHW, &ld);
        // dw_j (K, CRS) += dy_n (K, PQ) @ col^T (PQ, CRS)
        sgemm(false, true, sh.K, CRS, PQ, 1.f, dy_n, PQ, col, ld, n == n_begin ? 0.f : 1.f, dw_j,
              CRS);
        if (dx == nullptr) continue;
        if (is_pointwise(sh)) {
          // dx_n (C, HW) = w^T (C, K) @ dy_n (K, HW)
          sgemm(true, false, CRS, PQ, sh.K, 1.f, w, CRS, dy_n, PQ, 0.f, dx + n * CHW, PQ);
        } else {
          const int64_t dld = col_stride(sh);
          float* dcol = thread_scratch(kScratchColumnGrads, CRS * dld);
          // dcol (CRS, PQ) = w^T (CRS, K) @ dy_n (K, PQ)
          sgemm(true, false, CRS, PQ, sh.K, 1.f, w, CRS, dy_n, PQ, 0.f, dcol, dld);
          col2im(sh, dcol, dld, dx + n * CHW);
        }
      }
    };
  }
  if (chunks >= get_num_threads() && get_num_threads() > 1) {
    parallel_for(chunks, 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) run_chunk(j);
    });
  } else {
    for (int64_t j = 0; j < chunks; ++j) run_chunk(j);
  }

  // dw and db = the sum of the chunks' partials, in chunk order.
  if (direct) {
    if (chunks > 1) {
      parallel_for(part, chunks, [&](int64_t begin, int64_t end) {
        for (int64_t j = 1; j < chunks; ++j) {
          const float* p = partial + j * part;
          for (int64_t i = begin; i < end; ++i) partial[i] += p[i];
        }
      });
    }
    // dw (K, CRS) <- the sum, (CRS, Kp), transposed; 16 taps at a time.
    parallel_for((CRS + 15) / 16, 16 * sh.K, [&](int64_t begin, int64_t end) {
      const int64_t rows = std::min(CRS, 16 * end) - 16 * begin;
      ks->transpose(partial + 16 * begin * Kp, Kp, rows, sh.K, rows, dw + 16 * begin, CRS);
    });
    std::memcpy(db, partial + CRS * Kp, sh.K * sizeof(float));
    return;
  }
  if (chunks > 1) {
    parallel_for(KCRS, chunks, [&](int64_t begin, int64_t end) {
      for (int64_t j = 1; j < chunks; ++j) {
        const float* part_j = dw_of_chunk(j);
        for (int64_t i = begin; i < end; ++i) dw[i] += part_j[i];
      }
    });
  }

  // db[k] = sum over images and pixels of dy[n,k,:,:]
  parallel_for(sh.K, sh.N * PQ, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      float acc = 0.f;
      for (int64_t n = 0; n < sh.N; ++n) acc += lane_sum(dy + (n * sh.K + k) * PQ, PQ);
      db[k] = acc;
    }
  });
}

void conv2d_backward(const Conv2dShape& sh, const float* dy, const float* x, const float* w,
                     float* dx, float* dw, float* db) {
  conv2d_backward_fused(sh, dy, nullptr, nullptr, x, w, dx, dw, db);
}

}  // namespace nanocnn::cpu
