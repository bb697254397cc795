// ops.h: the op table. One declaration per op and direction.
//
// Each op checks its arguments (raising ValueError/TypeError with the argument names and shapes),
// allocates its outputs on the inputs' device, and dispatches, in ops.cpp and nowhere else, to
//   cpu::   the production CPU kernels (csrc/cpu/*.cpp: OpenMP + SIMD, GEMM-based)
//   ref::   the plain reference loops (csrc/cpu/reference.cpp: the readable spec)
//   cuda::  the GPU kernels (csrc/cuda/*.cu), when the tensors live on a GPU (to come: until
//           then a tensor cannot be created on a GPU, and check_cpu() guards each op)
// Backward ops return fresh gradient tensors (see core/tensor.h for the conventions).
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace nanocnn {

// Which implementation runs: the production kernel, or the reference loop it is tested against.
enum class Algo { Fast, Reference };
Algo parse_algo(const std::string& name);  // "fast" | "reference"

// Convolution geometry. Padding is explicit top/left plus the output size, so asymmetric padding
// ("same" with an even kernel pads the extra row/column at the bottom/right) needs no special
// case: input row of output row p, kernel row r is  h = p * stride_h - pad_top + r * dilation_h,
// and rows outside [0, H) read as zero.
struct Conv2dGeometry {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;
};

// Max-pooling geometry, same convention; cells outside the input never win a window.
struct Pool2dGeometry {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0;
  int64_t out_h = 0, out_w = 0;
};

struct Conv2dGrads {
  Tensor dx, dw, db;
};
struct LinearGrads {
  Tensor dx, dw, db;
};
struct LossAndGrad {
  double loss;     // mean over the batch (over all elements for the binary loss)
  Tensor dlogits;  // d loss / d logits, same shape as logits
};

// x is (N,C,H,W), w is (K,C,R,S), b is (K) or undefined; returns y (N,K,P,Q).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dGeometry& g,
              Algo algo);
// dy is (N,K,P,Q); returns dx (N,C,H,W), dw (K,C,R,S), db (K).
Conv2dGrads conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                            const Conv2dGeometry& g, Algo algo);

// x is (N,C,H,W); returns y (N,C,P,Q).
Tensor max_pool2d(const Tensor& x, const Pool2dGeometry& g, Algo algo);
// dy is (N,C,P,Q); returns dx (N,C,H,W): each window's gradient goes to its first maximum in
// row-major order (PyTorch's rule), summed where windows overlap.
Tensor max_pool2d_backward(const Tensor& dy, const Tensor& x, const Pool2dGeometry& g, Algo algo);

// Any shape. relu_backward takes the forward *output* y: dx = dy where y > 0, else 0.
Tensor relu(const Tensor& x, Algo algo);
Tensor relu_backward(const Tensor& dy, const Tensor& y, Algo algo);

// x is (N,in), w is (out,in), b is (out) or undefined; returns y (N,out).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, Algo algo);
// dy is (N,out); returns dx (N,in), dw (out,in), db (out).
LinearGrads linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Algo algo);

// logits (N,C) and integer class ids labels[N] in [0, C): loss = mean_i -log softmax(x_i)[y_i].
LossAndGrad softmax_cross_entropy(const Tensor& logits, const int64_t* labels, int64_t n_labels,
                                  Algo algo);
// logits (N,C) and class probabilities targets (N,C): loss = mean_i -sum_j t_ij log p_ij.
LossAndGrad softmax_cross_entropy_soft(const Tensor& logits, const Tensor& targets, Algo algo);
// logits and targets of one shape, targets in [0,1]: mean of the element-wise
// -(t log sigmoid(x) + (1-t) log(1 - sigmoid(x))), computed stably from x.
LossAndGrad sigmoid_binary_cross_entropy(const Tensor& logits, const Tensor& targets, Algo algo);

}  // namespace nanocnn
