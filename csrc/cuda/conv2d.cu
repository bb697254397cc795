// conv2d.cu: 2-D convolution on the GPU, forward and backward, as implicit GEMMs.
//
// Layout: x is (N,C,H,W), w is (K,C,R,S), y and dy are (N,K,P,Q), all NCHW / row-major.
// Output pixel (p, q) with kernel tap (r, s) reads input pixel (ops.h)
//   h = p * stride_h - pad_top  + r * dilation_h,   w = q * stride_w - pad_left + s * dilation_w
// and taps outside the input read zero.
//
// Each direction is one product of gemm.cuh, whose loaders gather the operands straight from
// the tensors (no im2col buffer in any direction):
//
//   forward      y  (K, N*P*Q)   = w (K, C*R*S) @ cols (C*R*S, N*P*Q)        (+ b[k] on row k)
//                cols[(c,r,s)][(n,p,q)] = x[n, c, h, w]       gathered by ImageByPixel
//   input grad   dx (C, N*H*W)   = w^T (C, K*R*S) @ dcols (K*R*S, N*H*W)
//                dcols[(k,r,s)][(n,h,w)] = dy[n, k, p, q] where p*stride_h = h + pad_top
//                - r*dilation_h exactly and 0 <= p < P (same for q), else 0  (OutputGradGather)
//   weight grad  dw (K, C*R*S)   = dy (K, N*P*Q) @ cols^T (N*P*Q, C*R*S)
//   bias grad    db[k]           = sum_{n,p,q} dy[n,k,p,q]                   (bias_gradient)
//
// The input gradient gathers rather than scatters: every dx element is written once, by the
// thread that owns it, so there are no atomics and no col2im pass, for any stride, dilation and
// padding. (With stride > 1 most gathered taps are zero; the seed networks use stride 1.)
// The weight gradient sums over every pixel of the batch: it is split into a fixed number of
// chunks summed in order (PartialSums in gemm.cuh), deterministic on every GPU.
//
// Index arithmetic: the GEMM indices are `int` (at most 2^30 per launch; a batch too large for
// that runs in groups of images), decomposed with Divmod (gemm.cuh); coordinates inside an image
// are `int` (conv_dims checks that they fit), offsets into the tensors int64.
// Cost: 2*N*K*C*R*S*P*Q flops per direction (the input gradient K*C*R*S*N*H*W multiply-adds,
// some of them on zeros when the stride is > 1); each operand is read from L2 about
// (its tile count along the other dimension) times.
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "cuda/gemm.cuh"
#include "cuda/kernels.h"

namespace nanocnn::cuda {

namespace {

// The sizes of one convolution as the kernels use them: int extents (checked to fit), int64
// plane and image sizes, and divisors for the index decompositions.
struct ConvDims {
  int C, H, W, K, R, S, P, Q;
  int stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w;
  int64_t HW, CHW, PQ, KPQ, CRS;
  Divmod by_HW, by_W, by_PQ, by_Q, by_RS, by_S, by_stride_h, by_stride_w;
};

ConvDims conv_dims(const char* op, const Conv2dShape& s) {
  const Conv2dGeometry& g = s.g;
  const int64_t P = g.out_h, Q = g.out_w;
  // ops.cpp bounds every size, stride, padding and dilation by 2^30; what remains to check is
  // that the products the kernels form in `int` stay below 2^30 too.
  check_gemm_extent(op, "H*W", s.H * s.W);
  check_gemm_extent(op, "P*Q", P * Q);
  check_gemm_extent(op, "R*S", s.R * s.S);
  check_gemm_extent(op, "C", s.C);
  check_gemm_extent(op, "K", s.K);
  // Input rows touched: (P-1)*stride_h + (R-1)*dilation_h - pad_top (and columns likewise).
  check_gemm_extent(op, "(P-1)*stride_h + (R-1)*dilation_h",
                    (P - 1) * g.stride_h + (s.R - 1) * g.dilation_h);
  check_gemm_extent(op, "(Q-1)*stride_w + (S-1)*dilation_w",
                    (Q - 1) * g.stride_w + (s.S - 1) * g.dilation_w);
  ConvDims d;
  d.C = int(s.C), d.H = int(s.H), d.W = int(s.W);
  d.K = int(s.K), d.R = int(s.R), d.S = int(s.S);
  d.P = int(P), d.Q = int(Q);
  d.stride_h = int(g.stride_h), d.stride_w = int(g.stride_w);
  d.pad_top = int(g.pad_top), d.pad_left = int(g.pad_left);
  d.dilation_h = int(g.dilation_h), d.dilation_w = int(g.dilation_w);
  d.HW = s.H * s.W, d.CHW = s.C * d.HW, d.PQ = P * Q, d.KPQ = s.K * d.PQ;
  d.CRS = s.C * s.R * s.S;
  d.by_HW = Divmod(int(d.HW)), d.by_W = Divmod(d.W);
  d.by_PQ = Divmod(int(d.PQ)), d.by_Q = Divmod(d.Q);
  d.by_RS = Divmod(d.R * d.S), d.by_S = Divmod(d.S);
  d.by_stride_h = Divmod(d.stride_h), d.by_stride_w = Divmod(d.stride_w);
  return d;
}

// Images per launch, so that N_group * max(P*Q, H*W) stays within kMaxGemmExtent.
int64_t images_per_launch(const ConvDims& d, int64_t N) {
  const int64_t per_image = std::max(d.PQ, d.HW);
  return std::max<int64_t>(1, std::min(N, kMaxGemmExtent / per_image));
}

// ---- gathering x: an output pixel (the window's corner) and a kernel tap -----------------------

struct Pixel {
  int64_t image;  // n * C*H*W
  int h0, w0;     // input row and column of tap (0, 0): p * stride_h - pad_top, ...
};
struct Tap {
  int64_t channel;  // c * H*W
  int dh, dw;       // r * dilation_h, s * dilation_w
};

// j = (n * P + p) * Q + q
__device__ Pixel pixel_of(const ConvDims& d, int j) {
  int n, pq, p, q;
  d.by_PQ.divmod(j, n, pq);
  d.by_Q.divmod(pq, p, q);
  return {int64_t(n) * d.CHW, p * d.stride_h - d.pad_top, q * d.stride_w - d.pad_left};
}

// kk = (c * R + r) * S + s
__device__ Tap tap_of(const ConvDims& d, int kk) {
  int c, rs, r, s;
  d.by_RS.divmod(kk, c, rs);
  d.by_S.divmod(rs, r, s);
  return {int64_t(c) * d.HW, r * d.dilation_h, s * d.dilation_w};
}

__device__ float gather_x(const float* x, const ConvDims& d, const Pixel& px, const Tap& t) {
  const int h = px.h0 + t.dh, w = px.w0 + t.dw;
  if (h < 0 || h >= d.H || w < 0 || w >= d.W) return 0.f;  // padding
  return x[px.image + t.channel + int64_t(h) * d.W + w];
}

// ---- forward: y (K, NPQ) = w (K, CRS) @ cols (CRS, NPQ) --------------------------------------------

// B(kk, j) = cols[kk][j]: contiguous along the pixel j (neighbouring q read neighbouring w).
struct ImageByPixel {
  static constexpr bool kAlongK = false;
  const float* x;
  ConvDims d;
  using Fixed = Pixel;
  using Red = Tap;
  __device__ Pixel fixed(int j) const { return pixel_of(d, j); }
  __device__ Tap red(int kk) const { return tap_of(d, kk); }
  __device__ float load(const Pixel& px, const Tap& t) const { return gather_x(x, d, px, t); }
};

// C(k, j) -> y[n, k, p, q] (+ b[k]).
struct StoreOutput {
  float* y;
  const float* b;  // or null
  ConvDims d;
  __device__ void operator()(int k, int j, float value) const {
    int n, pq;
    d.by_PQ.divmod(j, n, pq);
    y[int64_t(n) * d.KPQ + int64_t(k) * d.PQ + pq] = b != nullptr ? value + b[k] : value;
  }
};

// ---- input gradient: dx (C, NHW) = w^T (C, KRS) @ dcols (KRS, NHW) ---------------------------------

// A(c, kk) = w[k, c, r, s] with kk = (k * R + r) * S + s: contiguous along kk within one k.
struct WeightTransposed {
  static constexpr bool kAlongK = true;
  const float* w;
  ConvDims d;
  struct Fixed {
    int64_t channel;  // c * R*S
  };
  struct Red {
    int64_t offset;  // k * C*R*S + (r * S + s)
  };
  __device__ Fixed fixed(int c) const { return {int64_t(c) * d.R * d.S}; }
  __device__ Red red(int kk) const {
    int k, rs;
    d.by_RS.divmod(kk, k, rs);
    return {int64_t(k) * d.CRS + rs};
  }
  __device__ float load(const Fixed& f, const Red& r) const { return w[r.offset + f.channel]; }
};

// B(kk, j) = dy[n, k, p, q] for kk = (k, r, s) and j = (n, h, w), where the forward pass read
// x[n, ., h, w] through tap (r, s) of output pixel (p, q): p * stride_h = h + pad_top - r *
// dilation_h exactly, with 0 <= p < P (and the same for q); zero where no such pixel exists.
struct OutputGradGather {
  static constexpr bool kAlongK = false;
  const float* dy;
  ConvDims d;
  struct Fixed {
    int64_t image;  // n * K*P*Q
    int hp, wp;     // h + pad_top, w + pad_left
  };
  struct Red {
    int64_t channel;  // k * P*Q
    int dh, dw;       // r * dilation_h, s * dilation_w
  };
  __device__ Fixed fixed(int j) const {  // j = (n * H + h) * W + w
    int n, hw, h, w;
    d.by_HW.divmod(j, n, hw);
    d.by_W.divmod(hw, h, w);
    return {int64_t(n) * d.KPQ, h + d.pad_top, w + d.pad_left};
  }
  __device__ Red red(int kk) const {  // kk = (k * R + r) * S + s
    int k, rs, r, s;
    d.by_RS.divmod(kk, k, rs);
    d.by_S.divmod(rs, r, s);
    return {int64_t(k) * d.PQ, r * d.dilation_h, s * d.dilation_w};
  }
  __device__ float load(const Fixed& f, const Red& t) const {
    const int ph = f.hp - t.dh, qw = f.wp - t.dw;  // p * stride_h and q * stride_w
    if (ph < 0 || qw < 0) return 0.f;
    int p, p_rem, q, q_rem;
    d.by_stride_h.divmod(ph, p, p_rem);
    d.by_stride_w.divmod(qw, q, q_rem);
    if (p_rem != 0 || q_rem != 0 || p >= d.P || q >= d.Q) return 0.f;
    return dy[f.image + t.channel + int64_t(p) * d.Q + q];
  }
};

// C(c, j) -> dx[n, c, h, w].
struct StoreInputGrad {
  float* dx;
  ConvDims d;
  __device__ void operator()(int c, int j, float value) const {
    int n, hw;
    d.by_HW.divmod(j, n, hw);
    dx[int64_t(n) * d.CHW + int64_t(c) * d.HW + hw] = value;
  }
};

// ---- weight gradient: dw (K, CRS) = dy (K, NPQ) @ cols^T (NPQ, CRS) --------------------------------

// A(k, j) = dy[n, k, p, q] with j = (n, p, q): contiguous along j within one image.
struct OutputGradByChannel {
  static constexpr bool kAlongK = true;
  const float* dy;
  ConvDims d;
  struct Fixed {
    int64_t channel;  // k * P*Q
  };
  struct Red {
    int64_t pixel;  // n * K*P*Q + p * Q + q
  };
  __device__ Fixed fixed(int k) const { return {int64_t(k) * d.PQ}; }
  __device__ Red red(int j) const {
    int n, pq;
    d.by_PQ.divmod(j, n, pq);
    return {int64_t(n) * d.KPQ + pq};
  }
  __device__ float load(const Fixed& f, const Red& r) const { return dy[r.pixel + f.channel]; }
};

// B(j, kk) = cols[kk][j]: the forward's gather with the roles swapped (the tap is fixed per
// thread, the pixel is the reduction index); contiguous along j.
struct ImageByTap {
  static constexpr bool kAlongK = true;
  const float* x;
  ConvDims d;
  using Fixed = Tap;
  using Red = Pixel;
  __device__ Tap fixed(int kk) const { return tap_of(d, kk); }
  __device__ Pixel red(int j) const { return pixel_of(d, j); }
  __device__ float load(const Tap& t, const Pixel& px) const { return gather_x(x, d, px, t); }
};

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b,
                    float* y) {
  const ConvDims d = conv_dims("conv2d", s);
  const int64_t group = images_per_launch(d, s.N);
  for (int64_t n0 = 0; n0 < s.N; n0 += group) {
    const int64_t images = std::min(group, s.N - n0);
    launch_gemm("conv2d", d.K, images * d.PQ, d.CRS, no_split(d.CRS), MatrixAlongK{w, d.CRS},
                ImageByPixel{x + n0 * d.CHW, d}, StoreOutput{y + n0 * d.KPQ, b, d});
  }
}

void conv2d_backward(const Conv2dShape& s, const float* dy, const float* x, const float* w,
                     float* dx, float* dw, float* db) {
  const char* op = "conv2d_backward";
  const ConvDims d = conv_dims(op, s);
  const int64_t KRS = int64_t(d.K) * d.R * d.S;
  const int64_t group = images_per_launch(d, s.N);

  // dx (C, N*H*W) = w^T (C, K*R*S) @ dcols (K*R*S, N*H*W), group by group.
  for (int64_t n0 = 0; n0 < s.N; n0 += group) {
    const int64_t images = std::min(group, s.N - n0);
    launch_gemm(op, d.C, images * d.HW, KRS, no_split(KRS), WeightTransposed{w, d},
                OutputGradGather{dy + n0 * d.KPQ, d}, StoreInputGrad{dx + n0 * d.CHW, d});
  }

  // dw (K, C*R*S) = sum over groups of dy_g (K, images*P*Q) @ cols_g^T, in fixed chunks.
  std::vector<int64_t> group_k;
  for (int64_t n0 = 0; n0 < s.N; n0 += group) group_k.push_back(std::min(group, s.N - n0) * d.PQ);
  PartialSums sums(op, d.K, d.CRS, group_k, dw);
  for (size_t g = 0; g < group_k.size(); ++g) {
    const int64_t n0 = int64_t(g) * group;
    launch_gemm(op, d.K, d.CRS, group_k[g], sums.plan(g), OutputGradByChannel{dy + n0 * d.KPQ, d},
                ImageByTap{x + n0 * d.CHW, d}, sums.store(g));
  }
  sums.finish();

  // db[k] = sum over n, p, q of dy[n, k, p, q].
  bias_gradient(op, s.N, s.K, d.PQ, dy, db);
}

}  // namespace nanocnn::cuda
