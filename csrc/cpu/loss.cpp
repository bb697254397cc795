// loss.cpp: the fused, numerically stable losses on the CPU: loss and d loss / d logits in one
// pass over the logits.
//   softmax cross-entropy (logits (N,C)):  with m_i = max_j x_ij and lse_i = m_i + log sum_j
//     exp(x_ij - m_i), loss = mean_i (lse_i - x_i,y_i) and dlogits = (exp(x - lse) - onehot) / N.
//     Subtracting the row maximum keeps exp() <= 1, so logits of 1e4 are fine.
//   sigmoid binary cross-entropy (any shape): per element max(x,0) - x t + log1p(exp(-|x|)),
//     gradient (sigmoid(x) - t) / n; never forms log(0).
// Rows are split over threads; each row's loss goes to its own slot and the slots are summed in
// order afterwards, so the loss does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "cpu/kernels.h"

namespace nanocnn::cpu {

namespace {

// Softmax cross-entropy of one row against targets given either as a class id (label >= 0) or
// as probabilities t (label < 0). Writes the row's gradient (times 1/N) and returns its loss.
double softmax_row(int64_t C, const float* x, int64_t label, const float* t, float inv_n,
                   float* d) {
  float m = x[0];
  for (int64_t j = 1; j < C; ++j) m = std::max(m, x[j]);
  if (std::isnan(m)) m = 0.f;  // any NaN in the row propagates through exp() below
  double sum = 0.0;
  for (int64_t j = 0; j < C; ++j) {
    d[j] = std::exp(x[j] - m);  // d holds exp(x - m) until it is scaled below
    sum += d[j];
  }
  const double lse = m + std::log(sum);
  const float inv_sum = float(1.0 / sum);
  if (label >= 0) {
    for (int64_t j = 0; j < C; ++j) d[j] = d[j] * inv_sum * inv_n;
    d[label] -= inv_n;
    return lse - x[label];
  }
  double loss = 0.0, t_sum = 0.0;
  for (int64_t j = 0; j < C; ++j) {
    loss += double(t[j]) * (lse - x[j]);
    t_sum += t[j];
  }
  for (int64_t j = 0; j < C; ++j) d[j] = (d[j] * inv_sum * float(t_sum) - t[j]) * inv_n;
  return loss;
}

// sum_i part(i) for i in [0, count): parts computed in parallel, added up in index order.
template <class Part>
double sum_in_order(int64_t count, int64_t cost_per_part, const Part& part) {
  std::vector<double> parts(count);
  parallel_for(count, cost_per_part, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) parts[i] = part(i);
  });
  double total = 0.0;
  for (double p : parts) total += p;
  return total;
}

}  // namespace

double softmax_cross_entropy(int64_t N, int64_t C, const float* logits, const int64_t* labels,
                             float* dlogits) {
  const float inv_n = 1.f / float(N);
  return sum_in_order(N, 8 * C, [&](int64_t i) {
           return softmax_row(C, logits + i * C, labels[i], nullptr, inv_n, dlogits + i * C);
         }) / N;
}

double softmax_cross_entropy_soft(int64_t N, int64_t C, const float* logits,
                                  const float* targets, float* dlogits) {
  const float inv_n = 1.f / float(N);
  return sum_in_order(N, 8 * C, [&](int64_t i) {
           return softmax_row(C, logits + i * C, -1, targets + i * C, inv_n, dlogits + i * C);
         }) / N;
}

double sigmoid_binary_cross_entropy(int64_t n, const float* logits, const float* targets,
                                    float* dlogits) {
  // Chunks of a fixed size (not per thread) keep the summation order thread-independent.
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const float inv_n = 1.f / float(n);
  return sum_in_order(chunks, 8 * kChunk, [&](int64_t c) {
    double loss = 0.0;
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) {
      const float x = logits[i], t = targets[i];
      const float e = std::exp(-std::fabs(x));  // in (0, 1]
      loss += std::max(x, 0.f) - x * t + std::log1p(e);
      const float s = x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
      dlogits[i] = (s - t) * inv_n;
    }
    return loss;
  }) / n;
}

// ---- metrics: how many predictions are right ----------------------------------------------

namespace {
// Index of the first maximum of row[0..C) (NaN never wins).
int64_t first_argmax(const float* row, int64_t C) {
  int64_t best = 0;
  for (int64_t j = 1; j < C; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}
}  // namespace

int64_t count_correct_sparse(int64_t N, int64_t C, const float* scores, const int64_t* labels) {
  int64_t correct = 0;
  for (int64_t i = 0; i < N; ++i) correct += first_argmax(scores + i * C, C) == labels[i];
  return correct;
}

int64_t count_correct_dense(int64_t N, int64_t C, const float* scores, const float* targets,
                            float threshold) {
  int64_t correct = 0;
  if (C == 1) {
    for (int64_t i = 0; i < N; ++i) correct += (scores[i] > threshold) == (targets[i] > 0.5f);
    return correct;
  }
  for (int64_t i = 0; i < N; ++i)
    correct += first_argmax(scores + i * C, C) == first_argmax(targets + i * C, C);
  return correct;
}

}  // namespace nanocnn::cpu
