// layout.cpp: the one layout conversion of a model's input, channels-last images (as Keras users
// hold them) into the NCHW layout every kernel works in.
//
// x is (N,H,W,C), y is (N,C,H,W): y[n][c][h][w] = x[n][h][w][c]. One task per image row (n, h):
// it reads W*C contiguous floats and writes W floats into each of C planes. Split over threads:
// numpy's single-threaded strided copy took 0.12-0.23 ms of a 4.5 ms CIFAR training step at
// batch 64 (64x32x32x3), 0.4-0.8 ms at 150x150x3 x 20.
#include "core/parallel.h"
#include "cpu/kernels.h"

namespace nanocnn::cpu {

namespace {

// One image row: in (W, C) -> C rows of W floats, kC apart by plane (kC = C when known at
// compile time, 0 for any C: RGB and grey images get a loop the compiler unrolls).
template <int kC>
void split_row(const float* in, int64_t W, int64_t C, int64_t plane, float* out) {
  const int64_t channels = kC > 0 ? kC : C;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t w = 0; w < W; ++w) out[c * plane + w] = in[w * channels + c];
}

}  // namespace

void nhwc_to_nchw(int64_t N, int64_t H, int64_t W, int64_t C, const float* x, float* y) {
  parallel_for(N * H, W * C, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, h = row % H;
      const float* in = x + row * W * C;
      float* out = y + (n * C * H + h) * W;  // plane c at out + c * H * W
      if (C == 3)
        split_row<3>(in, W, C, H * W, out);
      else if (C == 1)
        split_row<1>(in, W, C, H * W, out);
      else
        split_row<0>(in, W, C, H * W, out);
    }
  });
}

}  // namespace nanocnn::cpu
