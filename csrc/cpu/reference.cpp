// reference.cpp: the plain loops. This file is the specification of every op.
//
// Each function is the textbook definition, written for reading rather than speed: one loop per
// index, accumulation in double, no blocking, no threads, no SIMD. The production kernels in
// conv2d.cpp, pool2d.cpp, activation.cpp, dense.cpp, loss.cpp and optim.cpp (and the GPU kernels
// in csrc/cuda/) must agree with these (the
// tests check it on random shapes), and F.<op>(..., algo="reference") runs them directly.
//
// Index conventions (see ops.h): x is (N,C,H,W), w is (K,C,R,S), y is (N,K,P,Q); output pixel
// (p, q) with kernel tap (r, s) reads input pixel
//   h = p * stride_h - pad_top  + r * dilation_h
//   w = q * stride_w - pad_left + s * dilation_w
// and taps outside the input read zero (conv) or take no part (pooling).
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/kernels.h"

namespace nanocnn::ref {

namespace {
inline int64_t at4(int64_t i0, int64_t i1, int64_t i2, int64_t i3, int64_t d1, int64_t d2,
                   int64_t d3) {
  return ((i0 * d1 + i1) * d2 + i2) * d3 + i3;
}
}  // namespace

// ---- conv2d --------------------------------------------------------------------------------

// y[n,k,p,q] = b[k] + sum_{c,r,s} x[n, c, h(p,r), w(q,s)] * w[k,c,r,s]
void conv2d_forward(const Conv2dShape& sh, const float* x, const float* w, const float* b,
                    float* y) {
  const Conv2dGeometry& g = sh.g;
  const int64_t P = g.out_h, Q = g.out_w;
  for (int64_t n = 0; n < sh.N; ++n)
    for (int64_t k = 0; k < sh.K; ++k)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          double acc = b ? b[k] : 0.0;
          for (int64_t c = 0; c < sh.C; ++c)
            for (int64_t r = 0; r < sh.R; ++r)
              for (int64_t s = 0; s < sh.S; ++s) {
                const int64_t h = p * g.stride_h - g.pad_top + r * g.dilation_h;
                const int64_t ww = q * g.stride_w - g.pad_left + s * g.dilation_w;
                if (h < 0 || h >= sh.H || ww < 0 || ww >= sh.W) continue;
                acc += double(x[at4(n, c, h, ww, sh.C, sh.H, sh.W)]) *
                       w[at4(k, c, r, s, sh.C, sh.R, sh.S)];
              }
          y[at4(n, k, p, q, sh.K, P, Q)] = float(acc);
        }
}

// The forward pass read x[n,c,h,w] * w[k,c,r,s] into y[n,k,p,q]; the backward pass sends dy
// back along exactly those edges:
//   dx[n,c,h,w] += dy[n,k,p,q] * w[k,c,r,s]
//   dw[k,c,r,s] += dy[n,k,p,q] * x[n,c,h,w]
//   db[k]       += dy[n,k,p,q]
void conv2d_backward(const Conv2dShape& sh, const float* dy, const float* x, const float* w,
                     float* dx, float* dw, float* db) {
  const Conv2dGeometry& g = sh.g;
  const int64_t P = g.out_h, Q = g.out_w;
  std::vector<double> dx_acc(sh.N * sh.C * sh.H * sh.W, 0.0);
  std::vector<double> dw_acc(sh.K * sh.C * sh.R * sh.S, 0.0);
  std::vector<double> db_acc(sh.K, 0.0);
  for (int64_t n = 0; n < sh.N; ++n)
    for (int64_t k = 0; k < sh.K; ++k)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          const double grad = dy[at4(n, k, p, q, sh.K, P, Q)];
          db_acc[k] += grad;
          for (int64_t c = 0; c < sh.C; ++c)
            for (int64_t r = 0; r < sh.R; ++r)
              for (int64_t s = 0; s < sh.S; ++s) {
                const int64_t h = p * g.stride_h - g.pad_top + r * g.dilation_h;
                const int64_t ww = q * g.stride_w - g.pad_left + s * g.dilation_w;
                if (h < 0 || h >= sh.H || ww < 0 || ww >= sh.W) continue;
                const int64_t xi = at4(n, c, h, ww, sh.C, sh.H, sh.W);
                const int64_t wi = at4(k, c, r, s, sh.C, sh.R, sh.S);
                dx_acc[xi] += grad * w[wi];
                dw_acc[wi] += grad * x[xi];
              }
        }
  for (size_t i = 0; i < dx_acc.size(); ++i) dx[i] = float(dx_acc[i]);
  for (size_t i = 0; i < dw_acc.size(); ++i) dw[i] = float(dw_acc[i]);
  for (size_t i = 0; i < db_acc.size(); ++i) db[i] = float(db_acc[i]);
}

// ---- max_pool2d ----------------------------------------------------------------------------

namespace {
// Index (h * W + w) of the winning cell of window (p, q): the first maximum in row-major order.
// A NaN wins over anything before it (NaN propagates; PyTorch's CPU rule).
int64_t window_argmax(const Pool2dShape& sh, const float* plane, int64_t p, int64_t q) {
  const Pool2dGeometry& g = sh.g;
  int64_t best = -1;
  float best_value = 0.f;
  for (int64_t i = 0; i < g.kernel_h; ++i)
    for (int64_t j = 0; j < g.kernel_w; ++j) {
      const int64_t h = p * g.stride_h - g.pad_top + i;
      const int64_t w = q * g.stride_w - g.pad_left + j;
      if (h < 0 || h >= sh.H || w < 0 || w >= sh.W) continue;
      const float v = plane[h * sh.W + w];
      if (best < 0 || v > best_value || std::isnan(v)) {
        best = h * sh.W + w;
        best_value = v;
      }
    }
  return best;  // ops.cpp guarantees every window holds at least one cell
}
}  // namespace

void max_pool2d_forward(const Pool2dShape& sh, const float* x, float* y) {
  const int64_t P = sh.g.out_h, Q = sh.g.out_w;
  for (int64_t nc = 0; nc < sh.N * sh.C; ++nc) {
    const float* plane = x + nc * sh.H * sh.W;
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q) y[(nc * P + p) * Q + q] = plane[window_argmax(sh, plane, p, q)];
  }
}

void max_pool2d_backward(const Pool2dShape& sh, const float* dy, const float* x, float* dx) {
  const int64_t P = sh.g.out_h, Q = sh.g.out_w;
  for (int64_t i = 0; i < sh.N * sh.C * sh.H * sh.W; ++i) dx[i] = 0.f;
  for (int64_t nc = 0; nc < sh.N * sh.C; ++nc) {
    const float* plane = x + nc * sh.H * sh.W;
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q)
        dx[nc * sh.H * sh.W + window_argmax(sh, plane, p, q)] += dy[(nc * P + p) * Q + q];
  }
}

// ---- relu ----------------------------------------------------------------------------------

// y = max(x, 0), NaN stays NaN.
void relu_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::isnan(x[i]) ? x[i] : std::max(x[i], 0.f);
}

// From the forward output y: dx = 0 where y <= 0, else dy (a NaN y passes dy, as in PyTorch).
void relu_backward(int64_t n, const float* dy, const float* y, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] <= 0.f ? 0.f : dy[i];
}

// ---- linear --------------------------------------------------------------------------------

// x is (N,in), w is (out,in): y[n,o] = b[o] + sum_i x[n,i] * w[o,i]
void linear_forward(int64_t N, int64_t in, int64_t out, const float* x, const float* w,
                    const float* b, float* y) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < out; ++o) {
      double acc = b ? b[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += double(x[n * in + i]) * w[o * in + i];
      y[n * out + o] = float(acc);
    }
}

// dx[n,i] = sum_o dy[n,o] w[o,i];  dw[o,i] = sum_n dy[n,o] x[n,i];  db[o] = sum_n dy[n,o]
void linear_backward(int64_t N, int64_t in, int64_t out, const float* dy, const float* x,
                     const float* w, float* dx, float* dw, float* db) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < in; ++i) {
      double acc = 0.0;
      for (int64_t o = 0; o < out; ++o) acc += double(dy[n * out + o]) * w[o * in + i];
      dx[n * in + i] = float(acc);
    }
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) {
      double acc = 0.0;
      for (int64_t n = 0; n < N; ++n) acc += double(dy[n * out + o]) * x[n * in + i];
      dw[o * in + i] = float(acc);
    }
    double acc = 0.0;
    for (int64_t n = 0; n < N; ++n) acc += dy[n * out + o];
    db[o] = float(acc);
  }
}

// ---- losses --------------------------------------------------------------------------------

namespace {
// log(sum_j exp(x_j)), shifted by the maximum so that logits of 1e4 do not overflow.
double log_sum_exp(const float* row, int64_t C) {
  double m = row[0];
  for (int64_t j = 1; j < C; ++j) m = std::max(m, double(row[j]));
  double sum = 0.0;
  for (int64_t j = 0; j < C; ++j) sum += std::exp(double(row[j]) - m);
  return m + std::log(sum);
}
}  // namespace

// loss = (1/N) sum_i [logsumexp(x_i) - x_i[y_i]];  dlogits_ij = (softmax(x_i)_j - [j == y_i]) / N
double softmax_cross_entropy(int64_t N, int64_t C, const float* logits, const int64_t* labels,
                             float* dlogits) {
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    const float* row = logits + i * C;
    const double lse = log_sum_exp(row, C);
    total += lse - row[labels[i]];
    for (int64_t j = 0; j < C; ++j)
      dlogits[i * C + j] = float((std::exp(row[j] - lse) - (j == labels[i] ? 1.0 : 0.0)) / N);
  }
  return total / N;
}

// loss = (1/N) sum_ij t_ij [logsumexp(x_i) - x_ij];  dlogits_ij = (p_ij sum_j t_ij - t_ij) / N
double softmax_cross_entropy_soft(int64_t N, int64_t C, const float* logits,
                                  const float* targets, float* dlogits) {
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    const float* row = logits + i * C;
    const float* t = targets + i * C;
    const double lse = log_sum_exp(row, C);
    double t_sum = 0.0;
    for (int64_t j = 0; j < C; ++j) {
      total += t[j] * (lse - row[j]);
      t_sum += t[j];
    }
    for (int64_t j = 0; j < C; ++j)
      dlogits[i * C + j] = float((std::exp(row[j] - lse) * t_sum - t[j]) / N);
  }
  return total / N;
}

// Per element: max(x, 0) - x t + log(1 + exp(-|x|)) (= -t log s - (1-t) log(1-s), s = sigmoid(x),
// without ever forming log(0)); gradient (s - t) / n.
double sigmoid_binary_cross_entropy(int64_t n, const float* logits, const float* targets,
                                    float* dlogits) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double x = logits[i], t = targets[i];
    total += std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::fabs(x)));
    const double s = x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
    dlogits[i] = float((s - t) / n);
  }
  return total / n;
}

// ---- more activations and dropout ----------------------------------------------------------

void sigmoid_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = float(1.0 / (1.0 + std::exp(-double(x[i]))));
}

void sigmoid_backward(int64_t n, const float* dy, const float* y, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = float(double(dy[i]) * y[i] * (1.0 - y[i]));
}

void softmax_forward(int64_t N, int64_t C, const float* x, float* y) {
  for (int64_t i = 0; i < N; ++i) {
    const double lse = log_sum_exp(x + i * C, C);
    for (int64_t j = 0; j < C; ++j) y[i * C + j] = float(std::exp(x[i * C + j] - lse));
  }
}

void softmax_backward(int64_t N, int64_t C, const float* dy, const float* y, float* dx) {
  for (int64_t i = 0; i < N; ++i) {
    double dot = 0.0;
    for (int64_t j = 0; j < C; ++j) dot += double(dy[i * C + j]) * y[i * C + j];
    for (int64_t j = 0; j < C; ++j) dx[i * C + j] = float(y[i * C + j] * (dy[i * C + j] - dot));
  }
}

void mul(int64_t n, const float* a, const float* b, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void dropout_mask(int64_t n, float rate, uint64_t seed, float* mask) {
  for (int64_t i = 0; i < n; ++i)
    mask[i] = dropout_uniform(seed, uint64_t(i)) < rate ? 0.f : 1.f / (1.f - rate);
}

// ---- metrics --------------------------------------------------------------------------------

namespace {
// First index of the largest value of row[0..C).
int64_t argmax_row(const float* row, int64_t C) {
  int64_t best = 0;
  for (int64_t j = 1; j < C; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}
}  // namespace

int64_t count_correct_sparse(int64_t N, int64_t C, const float* scores, const int64_t* labels) {
  int64_t correct = 0;
  for (int64_t i = 0; i < N; ++i)
    if (argmax_row(scores + i * C, C) == labels[i]) ++correct;
  return correct;
}

int64_t count_correct_dense(int64_t N, int64_t C, const float* scores, const float* targets,
                            float threshold) {
  int64_t correct = 0;
  for (int64_t i = 0; i < N; ++i) {
    const bool right = C == 1 ? (scores[i] > threshold) == (targets[i] > 0.5f)
                              : argmax_row(scores + i * C, C) == argmax_row(targets + i * C, C);
    if (right) ++correct;
  }
  return correct;
}

// ---- optimizer updates (the formulas of ops.h, in double) ----------------------------------

void sgd_update(int64_t n, float* p, const float* g, float* velocity, float lr, float momentum,
                bool nesterov) {
  for (int64_t i = 0; i < n; ++i) {
    if (velocity == nullptr) {
      p[i] = float(p[i] - double(lr) * g[i]);
      continue;
    }
    const double v = double(momentum) * velocity[i] - double(lr) * g[i];
    velocity[i] = float(v);
    p[i] = float(p[i] + (nesterov ? momentum * v - double(lr) * g[i] : v));
  }
}

void adam_update(int64_t n, float* p, const float* g, float* m, float* v, float lr, float beta1,
                 float beta2, float epsilon, float bias1, float bias2) {
  for (int64_t i = 0; i < n; ++i) {
    const double mi = double(beta1) * m[i] + (1.0 - beta1) * g[i];
    const double vi = double(beta2) * v[i] + (1.0 - beta2) * double(g[i]) * g[i];
    m[i] = float(mi);
    v[i] = float(vi);
    p[i] = float(p[i] - double(lr) * (mi / bias1) / (std::sqrt(vi / bias2) + epsilon));
  }
}

void rmsprop_update(int64_t n, float* p, const float* g, float* ms, float* mom, float* mg,
                    float lr, float rho, float momentum, float epsilon) {
  for (int64_t i = 0; i < n; ++i) {
    const double msi = double(rho) * ms[i] + (1.0 - rho) * double(g[i]) * g[i];
    ms[i] = float(msi);
    double var = msi;
    if (mg != nullptr) {
      const double mgi = double(rho) * mg[i] + (1.0 - rho) * g[i];
      mg[i] = float(mgi);
      var = msi - mgi * mgi;
    }
    const double step = g[i] / (std::sqrt(var) + epsilon);
    if (mom != nullptr) {
      mom[i] = float(double(momentum) * mom[i] + step);
      p[i] = float(p[i] - double(lr) * mom[i]);
    } else {
      p[i] = float(p[i] - double(lr) * step);
    }
  }
}

}  // namespace nanocnn::ref
