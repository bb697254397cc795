// ops.h: the op table. One declaration per op and direction.
//
// Each op checks its arguments (raising ValueError/TypeError with the argument names and shapes),
// allocates its outputs on the inputs' device, and dispatches, in ops.cpp and nowhere else, to
//   cpu::   the production CPU kernels (csrc/cpu/*.cpp: OpenMP + SIMD, GEMM-based)
//   ref::   the plain reference loops (csrc/cpu/reference.cpp: the readable spec)
//   cuda::  the GPU kernels (csrc/cuda/*.cu, declared in cuda/kernels.h), when the tensors live
//           on a GPU; Algo::Reference always runs the CPU reference loops, so on a GPU it
//           raises
// Backward ops return fresh gradient tensors (see core/tensor.h for the conventions); the
// optimizer updates are the one exception: they write in place into the parameter and its
// state, which is what an update is.
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
  Tensor loss;     // shape (), on the logits' device: mean over the batch (over all elements for
                   // the binary loss). Kept on the device so a training step need not wait for it.
  Tensor dlogits;  // d loss / d logits, same shape as logits
};

// x is (N,C,H,W), w is (K,C,R,S), b is (K) or undefined; returns y (N,K,P,Q), or relu(y) when
// `relu` (fused into the output pass on the CPU).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dGeometry& g,
              Algo algo, bool relu = false);
// dy is (N,K,P,Q); returns dx (N,C,H,W), dw (K,C,R,S), db (K).
// relu_y (optional, the output of conv2d(..., relu=true)): dy is first masked to dy * (relu_y > 0),
// i.e. the gradient flows back through the fused ReLU too.
// input_grad = false leaves dx undefined and skips its work where the backend can (the first layer
// of a network needs no input gradient).
Conv2dGrads conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                            const Conv2dGeometry& g, Algo algo, const Tensor& relu_y = Tensor(),
                            bool input_grad = true);

// Conv2D + ReLU + MaxPooling2D(2) as one op (the seed networks' block): returns pooled =
// max_pool2d(relu(conv2d(x, w, b))) with a 2x2 window and stride 2, (N,K,P/2,Q/2), and `saved`,
// what its backward pass needs (empty unless for_backward). Opaque to callers: on the CPU it is
// each window's winner code (pooled's shape; the full relu(conv) output is never stored), on
// other backends relu(conv) itself, (N,K,P,Q).
struct ConvPoolOutputs {
  Tensor pooled, saved;
};
ConvPoolOutputs conv2d_relu_pool(const Tensor& x, const Tensor& w, const Tensor& b,
                                 const Conv2dGeometry& g, Algo algo, bool for_backward = true);
// Its backward: dpooled is (N,K,P/2,Q/2), saved the forward's. On the CPU the gradient is routed
// to each window's winner (through the ReLU) image by image: no full-size dy tensor either.
Conv2dGrads conv2d_relu_pool_backward(const Tensor& dpooled, const Tensor& x, const Tensor& w,
                                      const Tensor& saved, const Conv2dGeometry& g, Algo algo,
                                      bool input_grad = true);

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

// ---- layout ---------------------------------------------------------------------------------

// A host buffer of N channels-last images (N, H, W, C), C-contiguous, as a new CPU tensor
// (N, C, H, W): the conversion at a model's input (Sequential with data_format channels_last).
Tensor from_channels_last(const float* x, int64_t N, int64_t H, int64_t W, int64_t C);

// ---- more activations and element-wise ops ---------------------------------------------------

// Any shape: y = 1 / (1 + exp(-x)); sigmoid_backward takes the forward output: dx = dy * y (1 - y).
Tensor sigmoid(const Tensor& x, Algo algo);
Tensor sigmoid_backward(const Tensor& dy, const Tensor& y, Algo algo);
// x is (N, C): softmax over each row; softmax_backward takes the forward output:
// dx = y * (dy - sum_j dy_j y_j) per row.
Tensor softmax(const Tensor& x, Algo algo);
Tensor softmax_backward(const Tensor& dy, const Tensor& y, Algo algo);
// Element-wise product of two tensors of one shape (dropout applies its mask with it).
Tensor mul(const Tensor& a, const Tensor& b, Algo algo);
// Inverted-dropout mask of `shape` on `device`: each element is 0 with probability `rate`, else
// 1 / (1 - rate). Element i is a pure function of (seed, i) (a counter-based hash), so every
// device and thread count draws the same mask. rate in [0, 1).
Tensor dropout_mask(const Shape& shape, double rate, uint64_t seed, const Device& device,
                    Algo algo);

// ---- metrics ---------------------------------------------------------------------------------

// Number of rows of scores (N, C) whose first maximum is at labels[i]; shape (), scores' device.
Tensor count_correct(const Tensor& scores, const int64_t* labels, int64_t n_labels, Algo algo);
// targets of the scores' shape. C > 1: rows where argmax(scores) == argmax(targets) (first
// maximum). C == 1 (or 1-D): elements where (score > threshold) == (target > 0.5).
Tensor count_correct(const Tensor& scores, const Tensor& targets, double threshold, Algo algo);

// ---- optimizer updates (in place; all tensors of the parameter's shape and device) ----------

// SGD as in Keras (and PyTorch without dampening): with momentum m > 0,
//   v = m v - lr g;  p += v              (nesterov: p += m v - lr g)
// velocity is required when momentum > 0 and ignored (may be undefined) otherwise.
void sgd_update(Tensor& param, const Tensor& grad, Tensor& velocity, double lr, double momentum,
                bool nesterov, Algo algo);
// Adam, `step` = t >= 1 counting this update:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
// (epsilon added to the bias-corrected sqrt(v), as in the Adam paper and PyTorch; Keras adds it
// before the correction, a difference only when sqrt(v) is near eps).
void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1,
                 double beta2, double epsilon, int64_t step, Algo algo);
// RMSprop as in PyTorch / Keras 2:
//   ms = rho ms + (1-rho) g^2;  centered: mg = rho mg + (1-rho) g, denom = sqrt(ms - mg^2) + eps,
//   else denom = sqrt(ms) + eps;  momentum > 0: buf = momentum buf + g / denom, p -= lr buf,
//   else p -= lr g / denom.
// mom is required when momentum > 0, mg when centered; otherwise they may be undefined.
void rmsprop_update(Tensor& param, const Tensor& grad, Tensor& ms, Tensor& mom, Tensor& mg,
                    double lr, double rho, double momentum, double epsilon, bool centered,
                    Algo algo);

}  // namespace nanocnn
