// gemm.cu: the host side of the GPU matrix product (gemm.cuh holds the kernel, which is a
// template instantiated by its users), and the two deterministic reductions that go with it:
//   - summing the partial products of a split reduction, slot after slot;
//   - the bias gradient, db[k] = sum of dy over the batch and the positions of channel k.
// Both read every input once; they are memory-bound and small next to the products.
#include <algorithm>

#include "core/error.h"
#include "cuda/gemm.cuh"

namespace nanocnn::cuda {

void check_gemm_extent(const char* op, const char* what, int64_t value) {
  NC_CHECK(value <= kMaxGemmExtent, op, ": the GPU kernels handle products with extents up to ",
           kMaxGemmExtent, ", but ", what, " is ", value);
}

namespace {

// Split plan: aim at about kTargetBlocks blocks (a few waves on any current GPU, but a constant,
// so the order of summation never depends on the GPU), keep every chunk at least kMinChunk deep
// (32 steps of the main loop), and at most kMaxChunks slots.
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMinChunk = 512;
constexpr int64_t kMaxChunks = 32;

SplitPlan plan_split(int64_t M, int64_t N, int64_t K) {
  auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  const bool wide = use_wide_tile(M, N);
  const int64_t BM = wide ? TileWide::BM : TileSquare::BM;
  const int64_t BN = wide ? TileWide::BN : TileSquare::BN;
  const int64_t BK = TileSquare::BK;
  const int64_t tiles = ceil_div(M, BM) * ceil_div(N, BN);
  int64_t chunks = std::min(ceil_div(kTargetBlocks, tiles), ceil_div(K, kMinChunk));
  chunks = std::max<int64_t>(1, std::min(chunks, kMaxChunks));
  const int64_t len = ceil_div(ceil_div(K, chunks), BK) * BK;  // whole steps
  SplitPlan plan;
  plan.chunks = static_cast<int>(ceil_div(K, len));  // no empty chunk at the end
  plan.chunk_len = static_cast<int>(len);
  return plan;
}

// out[i] = partials[i] + partials[n + i] + partials[2n + i] + ..., in slot order.
__global__ void sum_slots_kernel(int64_t n, int slots, const float* partials, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (int s = 0; s < slots; ++s) sum += partials[s * n + i];
    out[i] = sum;
  }
}

// One block per channel k. Warp w sums images w, w + 8, ...; lane l sums positions l, l + 32, ...
// of each (consecutive lanes read consecutive floats). The 256 partial sums are then added in a
// fixed tree, so the result is the same on every run.
constexpr int kBiasThreads = 256;

__global__ void __launch_bounds__(kBiasThreads)
    bias_gradient_kernel(int64_t N, int64_t K, int64_t L, const float* dy, float* db) {
  __shared__ float partial[kBiasThreads];
  const int64_t k = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  constexpr int kWarps = kBiasThreads / 32;
  float sum = 0.f;
  for (int64_t i = warp; i < N; i += kWarps) {
    const float* plane = dy + (i * K + k) * L;
    for (int64_t j = lane; j < L; j += 32) sum += plane[j];
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kBiasThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) db[k] = partial[0];
}

int current_device_index(const char* op) {
  int device = 0;
  NC_CUDA_CHECK(cudaGetDevice(&device), op);
  return device;
}

}  // namespace

// ---- PartialSums ---------------------------------------------------------------------------------

PartialSums::PartialSums(const char* op, int64_t M, int64_t N, const std::vector<int64_t>& group_k,
                         float* out)
    : op_(op), N_(N), mn_(M * N), out_(out) {
  for (int64_t K : group_k) {
    plans_.push_back(plan_split(M, N, K));
    first_slot_.push_back(slots_);
    slots_ += plans_.back().chunks;
  }
  if (slots_ > 1) {
    const Device device{DeviceType::CUDA, current_device_index(op)};
    scratch_ = std::make_unique<Storage>(size_t(slots_) * size_t(mn_) * sizeof(float), device);
  }
}

StoreMatrix PartialSums::store(size_t group) const {
  float* base = slots_ > 1 ? static_cast<float*>(scratch_->data()) + first_slot_[group] * mn_
                           : out_;
  return StoreMatrix{base, N_, mn_, nullptr};
}

void PartialSums::finish() {
  if (slots_ <= 1) return;
  sum_slots_kernel<<<blocks_for(mn_), kThreads>>>(mn_, slots_,
                                                  static_cast<const float*>(scratch_->data()), out_);
  NC_CUDA_LAUNCH_CHECK(op_);
  // scratch_ goes back to the caching allocator with this object; the kernels queued above run
  // first, since anything that reuses the block is queued after them on the same stream.
}

// ---- bias gradient ---------------------------------------------------------------------------------

void bias_gradient(const char* op, int64_t N, int64_t K, int64_t L, const float* dy, float* db) {
  check_gemm_extent(op, "the number of channels", K);
  bias_gradient_kernel<<<static_cast<unsigned int>(K), kBiasThreads>>>(N, K, L, dy, db);
  NC_CUDA_LAUNCH_CHECK(op);
}

}  // namespace nanocnn::cuda
