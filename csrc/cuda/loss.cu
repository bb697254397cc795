// loss.cu: the fused, numerically stable losses and the accuracy counts on the GPU. The GPU
// twin of cpu/loss.cpp, with the same formulas:
//   softmax cross-entropy (logits (N,C)): m_i = max_j x_ij, s_i = sum_j exp(x_ij - m_i) (in
//     double), lse_i = m_i + log s_i; hard labels: row loss lse_i - x_i,y_i and dlogits
//     exp(x - m) / s_i / N - onehot / N; soft targets t: row loss sum_j t_ij (lse_i - x_ij),
//     dlogits (exp(x - m) / s_i * sum_j t_ij - t_ij) / N.
//   sigmoid binary cross-entropy (any shape): per element max(x,0) - x t + log1p(exp(-|x|)),
//     gradient (sigmoid(x) - t) / n.
// Layout of the work: the softmax losses use one warp per row (as softmax in activation.cu) and
// write each row's loss (double) to a scratch array; the binary loss sums fixed chunks of 4096
// elements, one block per chunk, into a scratch array of chunk sums (the CPU kernel's chunking).
// A single block then adds the scratch array in a fixed order and writes the mean, as a float,
// to the device. No atomics: the loss is the same bits on every run.
// The counts (accuracy) run in one block: thread t takes rows t, t + 256, ..., applying the CPU's
// first-argmax loop to each row, and the per-thread integer counts are added in a block tree.
#include "core/allocator.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/reduce.cuh"
#include "cuda/runtime.h"

namespace nanocnn::cuda {

namespace {

constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int64_t kChunk = 4096;  // elements per partial sum of the binary loss

// Device scratch from the caching allocator for `count` doubles. Freed at the end of the calling
// function while the kernels using it may still be queued: safe, see allocator.cu.
Storage scratch_doubles(int64_t count) {
  return Storage(static_cast<size_t>(count) * sizeof(double),
                 Device{DeviceType::CUDA, current_device()});
}

// One warp per row. labels: class ids (hard) or null; targets: probabilities (soft) or null.
// row_loss[i] gets row i's loss; dlogits row i its gradient (already divided by N).
__global__ void softmax_cross_entropy_kernel(int64_t N, int64_t C, const float* __restrict__ x,
                                             const int64_t* __restrict__ labels,
                                             const float* __restrict__ targets, float inv_n,
                                             float* __restrict__ dlogits,
                                             double* __restrict__ row_loss) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; i < N; i += warps) {
    const float* row = x + i * C;
    float* d = dlogits + i * C;
    float m = -INFINITY;
    for (int64_t j = lane; j < C; j += 32) m = fmaxf(m, row[j]);
    m = warp_max(m);
    if (isnan(m)) m = 0.f;  // as on the CPU; a NaN anywhere in the row propagates through exp()
    double sum = 0.0;
    for (int64_t j = lane; j < C; j += 32) sum += double(expf(row[j] - m));
    sum = warp_sum(sum);
    const double lse = double(m) + log(sum);
    const float inv_sum = float(1.0 / sum);
    if (labels != nullptr) {
      const int64_t label = labels[i];
      for (int64_t j = lane; j < C; j += 32) {
        float g = expf(row[j] - m) * inv_sum * inv_n;
        if (j == label) g -= inv_n;
        d[j] = g;
      }
      if (lane == 0) row_loss[i] = lse - double(row[label]);
    } else {
      const float* t = targets + i * C;
      double loss = 0.0, t_sum = 0.0;
      for (int64_t j = lane; j < C; j += 32) {
        loss += double(t[j]) * (lse - double(row[j]));
        t_sum += double(t[j]);
      }
      loss = warp_sum(loss);
      t_sum = warp_sum(t_sum);
      const float t_sum_f = float(t_sum);
      for (int64_t j = lane; j < C; j += 32)
        d[j] = (expf(row[j] - m) * inv_sum * t_sum_f - t[j]) * inv_n;
      if (lane == 0) row_loss[i] = loss;
    }
  }
}

// Chunk c of kChunk elements: block b handles chunks b, b + gridDim.x, ...; each thread adds its
// elements t, t + kThreads, ... of the chunk, then the block adds the threads' sums.
__global__ void sigmoid_bce_kernel(int64_t n, const float* __restrict__ logits,
                                   const float* __restrict__ targets, float inv_n,
                                   float* __restrict__ dlogits, double* __restrict__ chunk_loss) {
  __shared__ double scratch[kThreads];
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    double loss = 0.0;
    const int64_t end = (c + 1) * kChunk < n ? (c + 1) * kChunk : n;
    for (int64_t i = c * kChunk + threadIdx.x; i < end; i += kThreads) {
      const float x = logits[i], t = targets[i];
      const float e = expf(-fabsf(x));  // in (0, 1]
      loss += double(fmaxf(x, 0.f) - x * t + log1pf(e));
      const float s = x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
      dlogits[i] = (s - t) * inv_n;
    }
    const double total = block_sum<kThreads>(loss, scratch);
    if (threadIdx.x == 0) chunk_loss[c] = total;
    __syncthreads();  // scratch is reused by the next chunk
  }
}

// One block: *out = float(sum_i parts[i] / divisor), summed in a fixed order.
__global__ void mean_kernel(int64_t count, const double* __restrict__ parts, double divisor,
                            float* __restrict__ out) {
  __shared__ double scratch[kThreads];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kThreads) sum += parts[i];
  const double total = block_sum<kThreads>(sum, scratch);
  if (threadIdx.x == 0) *out = float(total / divisor);
}

// Index of the first maximum of row[0..C) (NaN never wins): the CPU's loop, one thread per row.
__device__ inline int64_t first_argmax(const float* row, int64_t C) {
  int64_t best = 0;
  for (int64_t j = 1; j < C; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}

// One block. labels: class ids (sparse) or null; then targets: scores' shape (dense).
__global__ void count_correct_kernel(int64_t N, int64_t C, const float* __restrict__ scores,
                                     const int64_t* __restrict__ labels,
                                     const float* __restrict__ targets, float threshold,
                                     float* __restrict__ count) {
  __shared__ long long scratch[kThreads];
  long long correct = 0;
  for (int64_t i = threadIdx.x; i < N; i += kThreads) {
    bool right;
    if (labels != nullptr) {
      right = first_argmax(scores + i * C, C) == labels[i];
    } else if (C == 1) {
      right = (scores[i] > threshold) == (targets[i] > 0.5f);
    } else {
      right = first_argmax(scores + i * C, C) == first_argmax(targets + i * C, C);
    }
    correct += right ? 1 : 0;
  }
  const long long total = block_sum<kThreads>(correct, scratch);
  if (threadIdx.x == 0) *count = float(total);
}

void softmax_loss(int64_t N, int64_t C, const float* logits, const int64_t* labels,
                  const float* targets, float* dlogits, float* loss, const char* op) {
  Storage row_loss = scratch_doubles(N);
  double* rows = static_cast<double*>(row_loss.data());
  const float inv_n = 1.f / float(N);
  softmax_cross_entropy_kernel<<<blocks_for(N, kWarpsPerBlock), kThreads>>>(
      N, C, logits, labels, targets, inv_n, dlogits, rows);
  NC_CUDA_LAUNCH_CHECK(op);
  mean_kernel<<<1, kThreads>>>(N, rows, double(N), loss);
  NC_CUDA_LAUNCH_CHECK(op);
}

}  // namespace

void softmax_cross_entropy(int64_t N, int64_t C, const float* logits, const int64_t* labels,
                           float* dlogits, float* loss) {
  softmax_loss(N, C, logits, labels, nullptr, dlogits, loss, "softmax_cross_entropy");
}

void softmax_cross_entropy_soft(int64_t N, int64_t C, const float* logits, const float* targets,
                                float* dlogits, float* loss) {
  softmax_loss(N, C, logits, nullptr, targets, dlogits, loss, "softmax_cross_entropy");
}

void sigmoid_binary_cross_entropy(int64_t n, const float* logits, const float* targets,
                                  float* dlogits, float* loss) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  Storage chunk_loss = scratch_doubles(chunks);
  double* parts = static_cast<double*>(chunk_loss.data());
  const float inv_n = 1.f / float(n);
  sigmoid_bce_kernel<<<blocks_for(chunks, 1), kThreads>>>(n, logits, targets, inv_n, dlogits,
                                                          parts);
  NC_CUDA_LAUNCH_CHECK("sigmoid_binary_cross_entropy");
  mean_kernel<<<1, kThreads>>>(chunks, parts, double(n), loss);
  NC_CUDA_LAUNCH_CHECK("sigmoid_binary_cross_entropy");
}

void count_correct_sparse(int64_t N, int64_t C, const float* scores, const int64_t* labels,
                          float* count) {
  count_correct_kernel<<<1, kThreads>>>(N, C, scores, labels, nullptr, 0.f, count);
  NC_CUDA_LAUNCH_CHECK("count_correct");
}

void count_correct_dense(int64_t N, int64_t C, const float* scores, const float* targets,
                         float threshold, float* count) {
  count_correct_kernel<<<1, kThreads>>>(N, C, scores, nullptr, targets, threshold, count);
  NC_CUDA_LAUNCH_CHECK("count_correct");
}

}  // namespace nanocnn::cuda
