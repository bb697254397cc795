// reduce.cuh: deterministic reductions for the row-wise and loss kernels.
//
// Every reduction here adds in an order fixed by the launch shape alone (never by timing): each
// lane or thread sums a fixed, strided subset in index order, then the partial sums meet in a
// fixed tree. Repeated runs give the same bits; no float atomics.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nanocnn::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// Butterfly sum over the 32 lanes of a warp. Partner lanes add the same two values in swapped
// order, and a + b == b + a exactly, so every lane ends with the same bits.
template <class T>
__device__ inline T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// Maximum over a warp's lanes; NaN is ignored unless every lane holds NaN (fmaxf's rule).
__device__ inline float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum over the threads of a block of kThreadsPerBlock threads (a power of two, <= 1024),
// returned to every thread. `scratch` is shared memory of kThreadsPerBlock elements; every
// thread of the block must call it, and a second use of the same scratch needs a
// __syncthreads() first.
template <int kThreadsPerBlock, class T>
__device__ inline T block_sum(T v, T* scratch) {
  static_assert((kThreadsPerBlock & (kThreadsPerBlock - 1)) == 0, "power of two");
  const int t = threadIdx.x;
  scratch[t] = v;
  __syncthreads();
  for (int half = kThreadsPerBlock / 2; half > 0; half >>= 1) {
    if (t < half) scratch[t] += scratch[t + half];
    __syncthreads();
  }
  return scratch[0];
}

}  // namespace nanocnn::cuda
