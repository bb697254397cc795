// conv2d.cpp: 2-D convolution on the CPU, forward and backward.
//
// Layout: x is (N,C,H,W), w is (K,C,R,S), y is (N,K,P,Q), all NCHW / row-major.
// Algorithm: im2col + GEMM, one image at a time.
//   col (C*R*S, P*Q):  col[(c*R + r)*S + s][p*Q + q] = x[c][p*sh - pt + r*dh][q*sw - pl + s*dw]
//                      (zero where that falls in the padding)
//   forward             y_n (K, PQ)    = w (K, CRS) @ col_n          (+ b[k] on row k)
//   backward, weights   dw (K, CRS)   += dy_n (K, PQ) @ col_n^T
//   backward, input     dcol (CRS, PQ) = w^T (CRS, K) @ dy_n,  then dx_n = col2im(dcol)
//   backward, bias      db[k]          = sum_{n,p,q} dy[n,k,p,q]
// A 1x1 kernel with stride 1 and no padding needs no im2col: col_n is x_n itself.
// Cost: 2*N*K*CRS*PQ flops per GEMM direction; im2col moves CRS*PQ floats per image through a
// per-thread scratch buffer (no allocation in steady state).
// Threads: with at least as many images as threads, images are split over threads and each GEMM
// runs on its thread; otherwise images go one by one and the GEMM itself is parallel.
// Determinism: dw is summed in a fixed number of image chunks (kWeightChunks, independent of the
// thread count) reduced in chunk order, so results are bit-identical for any thread count.
#include <algorithm>
#include <cstring>

#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"

namespace nanocnn::cpu {

namespace {

constexpr int64_t kWeightChunks = 8;

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

}  // namespace

void conv2d_forward(const Conv2dShape& sh, const float* x, const float* w, const float* b,
                    float* y) {
  const int64_t PQ = sh.g.out_h * sh.g.out_w, CRS = sh.C * sh.R * sh.S;
  for_each_image(sh.N, [&](int64_t n) {
    int64_t ld;
    const float* col = columns(sh, x + n * sh.C * sh.H * sh.W, &ld);
    float* y_n = y + n * sh.K * PQ;
    // y_n (K, PQ) = w (K, CRS) @ col (CRS, PQ)
    sgemm(false, false, sh.K, PQ, CRS, 1.f, w, CRS, col, ld, 0.f, y_n, PQ);
    if (b != nullptr)
      for (int64_t k = 0; k < sh.K; ++k) {
        float* row = y_n + k * PQ;
        const float bias = b[k];
        for (int64_t i = 0; i < PQ; ++i) row[i] += bias;
      }
  });
}

void conv2d_backward(const Conv2dShape& sh, const float* dy, const float* x, const float* w,
                     float* dx, float* dw, float* db) {
  const int64_t PQ = sh.g.out_h * sh.g.out_w, CRS = sh.C * sh.R * sh.S, CHW = sh.C * sh.H * sh.W;
  const int64_t KCRS = sh.K * CRS;
  const int64_t chunks = std::min(sh.N, kWeightChunks);
  // Chunk j's partial dw lives at partial + j*KCRS; chunk 0 writes straight into dw.
  float* partial = chunks > 1 ? thread_scratch(kScratchWeightPartials, (chunks - 1) * KCRS) : nullptr;
  auto dw_of_chunk = [&](int64_t j) { return j == 0 ? dw : partial + (j - 1) * KCRS; };

  auto run_chunk = [&](int64_t j) {
    const int64_t n_begin = sh.N * j / chunks, n_end = sh.N * (j + 1) / chunks;
    float* dw_j = dw_of_chunk(j);
    for (int64_t n = n_begin; n < n_end; ++n) {
      const float* dy_n = dy + n * sh.K * PQ;
      int64_t ld;
      const float* col = columns(sh, x + n * CHW, &ld);
      // dw_j (K, CRS) += dy_n (K, PQ) @ col^T (PQ, CRS)
      sgemm(false, true, sh.K, CRS, PQ, 1.f, dy_n, PQ, col, ld, n == n_begin ? 0.f : 1.f, dw_j,
            CRS);
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
  if (chunks >= get_num_threads() && get_num_threads() > 1) {
    parallel_for(chunks, 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) run_chunk(j);
    });
  } else {
    for (int64_t j = 0; j < chunks; ++j) run_chunk(j);
  }

  // dw = sum of the chunks' partials, in chunk order for every element.
  if (chunks > 1) {
    parallel_for(KCRS, chunks, [&](int64_t begin, int64_t end) {
      for (int64_t j = 1; j < chunks; ++j) {
        const float* part = dw_of_chunk(j);
        for (int64_t i = begin; i < end; ++i) dw[i] += part[i];
      }
    });
  }

  // db[k] = sum over images and pixels of dy[n,k,:,:]
  parallel_for(sh.K, sh.N * PQ, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      float acc = 0.f;
      for (int64_t n = 0; n < sh.N; ++n) {
        const float* plane = dy + (n * sh.K + k) * PQ;
        float plane_sum = 0.f;
        for (int64_t i = 0; i < PQ; ++i) plane_sum += plane[i];
        acc += plane_sum;
      }
      db[k] = acc;
    }
  });
}

}  // namespace nanocnn::cpu
