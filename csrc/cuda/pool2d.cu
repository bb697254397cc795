// pool2d.cu: max pooling on the GPU, forward and backward. The GPU twin of cpu/pool2d.cpp.
//
// Layout: x is (N,C,H,W), y and dy are (N,C,P,Q). Window (p, q) covers rows p*sh - pt .. +kh-1
// and columns q*sw - pl .. +kw-1, clipped to the input (padding never wins; ops.cpp guarantees
// every window holds at least one cell).
// Winner of a window: the first maximum in row-major order, and a NaN wins over anything before
// it (`v > best || isnan(v)`, PyTorch's CPU rule), exactly the CPU kernel's rule, so both
// devices pick the same cell and forward results are bit-identical.
// Forward: one thread per output element, grid-stride; reads its window, writes one value.
// Backward, deterministic without atomics: one thread per *input* element (n, c, h, w) gathers
// from the windows that contain it, in row-major (p, q) order, recomputing each window's winner
// from x and adding dy[p, q] when the winner is (h, w). That is the order in which the CPU
// kernel scatters its `+=`, so dx matches the CPU bit for bit. Cost per input element: (number
// of windows containing it) x kh x kw comparisons, i.e. 4 for the common 2x2/stride-2 pooling.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace nanocnn::cuda {

namespace {

// The pooling geometry as plain values for a kernel argument.
struct PoolArgs {
  int64_t N, C, H, W, P, Q;
  int64_t kh, kw, sh, sw, pt, pl;
};

PoolArgs pool_args(const Pool2dShape& s) {
  const Pool2dGeometry& g = s.g;
  return PoolArgs{s.N,        s.C,        s.H,        s.W,       g.out_h,  g.out_w,
                  g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_top, g.pad_left};
}

// Offset (h*W + w) in its plane of the winner of window (p, q).
__device__ inline int64_t window_argmax(const PoolArgs& a, const float* plane, int64_t p,
                                        int64_t q) {
  const int64_t h = p * a.sh - a.pt, w = q * a.sw - a.pl;
  const int64_t h0 = h > 0 ? h : 0, h1 = h + a.kh < a.H ? h + a.kh : a.H;
  const int64_t w0 = w > 0 ? w : 0, w1 = w + a.kw < a.W ? w + a.kw : a.W;
  int64_t best = h0 * a.W + w0;
  float best_value = plane[best];
  for (int64_t r = h0; r < h1; ++r)
    for (int64_t c = w0; c < w1; ++c) {
      const float v = plane[r * a.W + c];
      if (v > best_value || isnan(v)) {
        best = r * a.W + c;
        best_value = v;
      }
    }
  return best;
}

// y is (N,C,P,Q): element i = ((n*C + c)*P + p)*Q + q.
__global__ void max_pool2d_forward_kernel(PoolArgs a, const float* __restrict__ x,
                                          float* __restrict__ y) {
  const int64_t total = a.N * a.C * a.P * a.Q;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t q = i % a.Q, p = (i / a.Q) % a.P, nc = i / (a.P * a.Q);
    const float* plane = x + nc * a.H * a.W;
    y[i] = plane[window_argmax(a, plane, p, q)];
  }
}

// Windows along one axis that contain input index `h`: p*stride - pad <= h < p*stride - pad + k,
// clipped to [0, out). Returns false when there are none.
__device__ inline bool windows_containing(int64_t h, int64_t k, int64_t stride, int64_t pad,
                                          int64_t out, int64_t* first, int64_t* last) {
  const int64_t lo = h + pad - k + 1;  // p*stride >= lo
  *first = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  const int64_t hi = (h + pad) / stride;  // h + pad >= 0
  *last = hi < out - 1 ? hi : out - 1;
  return *first <= *last;
}

// dx is (N,C,H,W): element i = ((n*C + c)*H + h)*W + w.
__global__ void max_pool2d_backward_kernel(PoolArgs a, const float* __restrict__ dy,
                                           const float* __restrict__ x, float* __restrict__ dx) {
  const int64_t total = a.N * a.C * a.H * a.W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = i % a.W, h = (i / a.W) % a.H, nc = i / (a.H * a.W);
    const float* plane = x + nc * a.H * a.W;
    const float* grad = dy + nc * a.P * a.Q;
    const int64_t self = h * a.W + w;
    float acc = 0.f;
    int64_t p0, p1, q0, q1;
    if (windows_containing(h, a.kh, a.sh, a.pt, a.P, &p0, &p1) &&
        windows_containing(w, a.kw, a.sw, a.pl, a.Q, &q0, &q1)) {
      for (int64_t p = p0; p <= p1; ++p)
        for (int64_t q = q0; q <= q1; ++q)
          if (window_argmax(a, plane, p, q) == self) acc += grad[p * a.Q + q];
    }
    dx[i] = acc;
  }
}

}  // namespace

void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y) {
  const PoolArgs a = pool_args(s);
  const int64_t total = a.N * a.C * a.P * a.Q;
  if (total == 0) return;
  max_pool2d_forward_kernel<<<blocks_for(total), kThreads>>>(a, x, y);
  NC_CUDA_LAUNCH_CHECK("max_pool2d");
}

void max_pool2d_backward(const Pool2dShape& s, const float* dy, const float* x, float* dx) {
  const PoolArgs a = pool_args(s);
  const int64_t total = a.N * a.C * a.H * a.W;
  if (total == 0) return;
  max_pool2d_backward_kernel<<<blocks_for(total), kThreads>>>(a, dy, x, dx);
  NC_CUDA_LAUNCH_CHECK("max_pool2d_backward");
}

}  // namespace nanocnn::cuda
