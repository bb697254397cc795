// ops.cpp: argument checks and dispatch for every op, in one place.
//
// Checks here cover what the kernels rely on (ranks, matching sizes, positive strides, output
// sizes that fit); they raise ValueError naming the op, the argument and the shapes. The Python
// layer (nanocnn.functional) turns friendly arguments ("same", pairs, numpy arrays) into these.
#include "ops.h"

#include <cmath>
#include <initializer_list>

#include "core/error.h"
#include "cpu/kernels.h"

namespace nanocnn {

Algo parse_algo(const std::string& name) {
  if (name == "fast") return Algo::Fast;
  if (name == "reference") return Algo::Reference;
  throw ValueError("algo must be \"fast\" or \"reference\", got \"" + name + "\"");
}

namespace {

// Bound on every size, stride, padding and dilation: products of two such values (the index
// arithmetic in the kernels) then fit in int64 with room to spare.
constexpr int64_t kMaxExtent = int64_t(1) << 30;

void check_extents(const char* op, std::initializer_list<int64_t> values) {
  for (int64_t v : values)
    NC_CHECK(v <= kMaxExtent, op, ": sizes, strides, padding and dilation must be <= 2^30, got ",
             v);
}

void check_defined(const Tensor& t, const char* op, const char* arg) {
  NC_CHECK(t.defined(), op, ": ", arg, " is required");
}

void check_rank(const Tensor& t, int64_t rank, const char* op, const char* arg,
                const char* layout) {
  check_defined(t, op, arg);
  NC_CHECK(t.dim() == rank, op, ": ", arg, " must have ", rank, " dimensions ", layout,
           ", got shape ", shape_str(t.shape()));
}

void check_nonempty(const Tensor& t, const char* op, const char* arg) {
  NC_CHECK(t.numel() > 0, op, ": ", arg, " must not be empty, got shape ", shape_str(t.shape()));
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op, const char* a_name,
                      const char* b_name) {
  NC_CHECK(a.shape() == b.shape(), op, ": ", a_name, " and ", b_name,
           " must have the same shape, got ", shape_str(a.shape()), " and ",
           shape_str(b.shape()));
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op, const char* a_name,
                       const char* b_name) {
  NC_CHECK(a.device() == b.device(), op, ": ", a_name, " and ", b_name,
           " must be on the same device, got ", a.device().str(), " and ", b.device().str());
}

// The ops below run on the CPU; the CUDA backend adds its branch to each dispatch.
void check_cpu(const Tensor& t, const char* op) {
  NC_CHECK(t.device().is_cpu(), op, ": no kernel for device ", t.device().str());
}

Conv2dShape conv_shape(const char* op, const Tensor& x, const Tensor& w,
                       const Conv2dGeometry& g) {
  check_rank(x, 4, op, "x", "(N, C, H, W)");
  check_rank(w, 4, op, "w", "(K, C, R, S)");
  check_same_device(x, w, op, "x", "w");
  check_nonempty(x, op, "x");
  check_nonempty(w, op, "w");
  NC_CHECK(x.size(1) == w.size(1), op, ": x has ", x.size(1), " channels but w expects ",
           w.size(1), " (x is ", shape_str(x.shape()), ", w is ", shape_str(w.shape()), ")");
  check_extents(op, {x.size(2), x.size(3), w.size(2), w.size(3), g.stride_h, g.stride_w,
                     g.pad_top, g.pad_left, g.dilation_h, g.dilation_w, g.out_h, g.out_w});
  NC_CHECK(g.stride_h >= 1 && g.stride_w >= 1, op, ": stride must be >= 1, got (", g.stride_h,
           ", ", g.stride_w, ")");
  NC_CHECK(g.dilation_h >= 1 && g.dilation_w >= 1, op, ": dilation must be >= 1, got (",
           g.dilation_h, ", ", g.dilation_w, ")");
  NC_CHECK(g.pad_top >= 0 && g.pad_left >= 0, op, ": padding must be >= 0, got (", g.pad_top,
           ", ", g.pad_left, ")");
  NC_CHECK(g.out_h >= 1 && g.out_w >= 1, op, ": the (dilated) kernel ",
           shape_str({w.size(2), w.size(3)}), " does not fit the padded input; x is ",
           shape_str(x.shape()), ", output size would be ", shape_str({g.out_h, g.out_w}));
  return Conv2dShape{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3),
                     g};
}

Pool2dShape pool_shape(const char* op, const Tensor& x, const Pool2dGeometry& g) {
  check_rank(x, 4, op, "x", "(N, C, H, W)");
  check_nonempty(x, op, "x");
  check_extents(op, {x.size(2), x.size(3), g.kernel_h, g.kernel_w, g.stride_h, g.stride_w,
                     g.pad_top, g.pad_left, g.out_h, g.out_w});
  NC_CHECK(g.kernel_h >= 1 && g.kernel_w >= 1, op, ": kernel_size must be >= 1, got (",
           g.kernel_h, ", ", g.kernel_w, ")");
  NC_CHECK(g.stride_h >= 1 && g.stride_w >= 1, op, ": stride must be >= 1, got (", g.stride_h,
           ", ", g.stride_w, ")");
  NC_CHECK(g.pad_top >= 0 && g.pad_left >= 0 && g.pad_top < g.kernel_h &&
               g.pad_left < g.kernel_w,
           op, ": padding must be >= 0 and smaller than the kernel, got padding (", g.pad_top,
           ", ", g.pad_left, ") for kernel (", g.kernel_h, ", ", g.kernel_w, ")");
  NC_CHECK(g.out_h >= 1 && g.out_w >= 1, op, ": kernel (", g.kernel_h, ", ", g.kernel_w,
           ") is larger than the padded input; x is ", shape_str(x.shape()));
  // Every window must hold at least one input cell.
  NC_CHECK((g.out_h - 1) * g.stride_h - g.pad_top < x.size(2) &&
               (g.out_w - 1) * g.stride_w - g.pad_left < x.size(3),
           op, ": output size ", shape_str({g.out_h, g.out_w}),
           " has windows entirely outside x ", shape_str(x.shape()));
  return Pool2dShape{x.size(0), x.size(1), x.size(2), x.size(3), g};
}

void check_bias(const Tensor& b, int64_t n, const char* op, const Tensor& w, const Tensor& x) {
  if (!b.defined()) return;
  check_same_device(x, b, op, "x", "b");
  NC_CHECK(b.dim() == 1 && b.size(0) == n, op, ": b must have shape (", n, ",) to match w ",
           shape_str(w.shape()), ", got ", shape_str(b.shape()));
}

}  // namespace

// ---- conv2d --------------------------------------------------------------------------------

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dGeometry& g,
              Algo algo) {
  const Conv2dShape s = conv_shape("conv2d", x, w, g);
  check_bias(b, s.K, "conv2d", w, x);
  check_cpu(x, "conv2d");
  Tensor y = Tensor::empty({s.N, s.K, g.out_h, g.out_w}, x.device());
  const float* bias = b.defined() ? b.data() : nullptr;
  if (algo == Algo::Reference) ref::conv2d_forward(s, x.data(), w.data(), bias, y.data());
  else cpu::conv2d_forward(s, x.data(), w.data(), bias, y.data());
  return y;
}

Conv2dGrads conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                            const Conv2dGeometry& g, Algo algo) {
  const Conv2dShape s = conv_shape("conv2d_backward", x, w, g);
  check_rank(dy, 4, "conv2d_backward", "dy", "(N, K, P, Q)");
  check_same_device(dy, x, "conv2d_backward", "dy", "x");
  const Shape y_shape{s.N, s.K, g.out_h, g.out_w};
  NC_CHECK(dy.shape() == y_shape, "conv2d_backward: dy must have the output's shape ",
           shape_str(y_shape), ", got ", shape_str(dy.shape()));
  check_cpu(x, "conv2d_backward");
  Conv2dGrads grads{Tensor::empty(x.shape(), x.device()), Tensor::empty(w.shape(), x.device()),
                    Tensor::empty({s.K}, x.device())};
  auto kernel = algo == Algo::Reference ? ref::conv2d_backward : cpu::conv2d_backward;
  kernel(s, dy.data(), x.data(), w.data(), grads.dx.data(), grads.dw.data(), grads.db.data());
  return grads;
}

// ---- max_pool2d ----------------------------------------------------------------------------

Tensor max_pool2d(const Tensor& x, const Pool2dGeometry& g, Algo algo) {
  const Pool2dShape s = pool_shape("max_pool2d", x, g);
  check_cpu(x, "max_pool2d");
  Tensor y = Tensor::empty({s.N, s.C, g.out_h, g.out_w}, x.device());
  auto kernel = algo == Algo::Reference ? ref::max_pool2d_forward : cpu::max_pool2d_forward;
  kernel(s, x.data(), y.data());
  return y;
}

Tensor max_pool2d_backward(const Tensor& dy, const Tensor& x, const Pool2dGeometry& g,
                           Algo algo) {
  const Pool2dShape s = pool_shape("max_pool2d_backward", x, g);
  check_rank(dy, 4, "max_pool2d_backward", "dy", "(N, C, P, Q)");
  check_same_device(dy, x, "max_pool2d_backward", "dy", "x");
  const Shape y_shape{s.N, s.C, g.out_h, g.out_w};
  NC_CHECK(dy.shape() == y_shape, "max_pool2d_backward: dy must have the output's shape ",
           shape_str(y_shape), ", got ", shape_str(dy.shape()));
  check_cpu(x, "max_pool2d_backward");
  Tensor dx = Tensor::empty(x.shape(), x.device());
  auto kernel = algo == Algo::Reference ? ref::max_pool2d_backward : cpu::max_pool2d_backward;
  kernel(s, dy.data(), x.data(), dx.data());
  return dx;
}

// ---- relu ----------------------------------------------------------------------------------

Tensor relu(const Tensor& x, Algo algo) {
  check_defined(x, "relu", "x");
  check_cpu(x, "relu");
  Tensor y = Tensor::empty(x.shape(), x.device());
  auto kernel = algo == Algo::Reference ? ref::relu_forward : cpu::relu_forward;
  kernel(x.numel(), x.data(), y.data());
  return y;
}

Tensor relu_backward(const Tensor& dy, const Tensor& y, Algo algo) {
  check_defined(dy, "relu_backward", "dy");
  check_defined(y, "relu_backward", "y");
  check_same_shape(dy, y, "relu_backward", "dy", "y");
  check_same_device(dy, y, "relu_backward", "dy", "y");
  check_cpu(y, "relu_backward");
  Tensor dx = Tensor::empty(y.shape(), y.device());
  auto kernel = algo == Algo::Reference ? ref::relu_backward : cpu::relu_backward;
  kernel(y.numel(), dy.data(), y.data(), dx.data());
  return dx;
}

// ---- linear --------------------------------------------------------------------------------

namespace {
void check_linear(const char* op, const Tensor& x, const Tensor& w) {
  check_rank(x, 2, op, "x", "(N, in_features)");
  check_rank(w, 2, op, "w", "(out_features, in_features)");
  check_same_device(x, w, op, "x", "w");
  check_nonempty(x, op, "x");
  check_nonempty(w, op, "w");
  NC_CHECK(x.size(1) == w.size(1), op, ": x has ", x.size(1), " features but w expects ",
           w.size(1), " (x is ", shape_str(x.shape()), ", w is ", shape_str(w.shape()), ")");
}
}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, Algo algo) {
  check_linear("linear", x, w);
  check_bias(b, w.size(0), "linear", w, x);
  check_cpu(x, "linear");
  const int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  Tensor y = Tensor::empty({N, out}, x.device());
  const float* bias = b.defined() ? b.data() : nullptr;
  auto kernel = algo == Algo::Reference ? ref::linear_forward : cpu::linear_forward;
  kernel(N, in, out, x.data(), w.data(), bias, y.data());
  return y;
}

LinearGrads linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Algo algo) {
  check_linear("linear_backward", x, w);
  check_rank(dy, 2, "linear_backward", "dy", "(N, out_features)");
  check_same_device(dy, x, "linear_backward", "dy", "x");
  const int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  NC_CHECK(dy.size(0) == N && dy.size(1) == out,
           "linear_backward: dy must have the output's shape ", shape_str({N, out}), ", got ",
           shape_str(dy.shape()));
  check_cpu(x, "linear_backward");
  LinearGrads grads{Tensor::empty(x.shape(), x.device()), Tensor::empty(w.shape(), x.device()),
                    Tensor::empty({out}, x.device())};
  auto kernel = algo == Algo::Reference ? ref::linear_backward : cpu::linear_backward;
  kernel(N, in, out, dy.data(), x.data(), w.data(), grads.dx.data(), grads.dw.data(),
         grads.db.data());
  return grads;
}

// ---- fused losses --------------------------------------------------------------------------

LossAndGrad softmax_cross_entropy(const Tensor& logits, const int64_t* labels, int64_t n_labels,
                                  Algo algo) {
  const char* op = "softmax_cross_entropy";
  check_rank(logits, 2, op, "logits", "(N, num_classes)");
  check_nonempty(logits, op, "logits");
  const int64_t N = logits.size(0), C = logits.size(1);
  NC_CHECK(n_labels == N, op, ": labels must have shape (", N, ",) to match logits ",
           shape_str(logits.shape()), ", got (", n_labels, ",)");
  for (int64_t i = 0; i < N; ++i) {
    NC_CHECK(labels[i] >= 0 && labels[i] < C, op, ": labels must be class ids in [0, ", C,
             ") for logits ", shape_str(logits.shape()), ", got labels[", i, "] = ", labels[i]);
  }
  check_cpu(logits, op);
  LossAndGrad out{0.0, Tensor::empty(logits.shape(), logits.device())};
  auto kernel = algo == Algo::Reference ? ref::softmax_cross_entropy : cpu::softmax_cross_entropy;
  out.loss = kernel(N, C, logits.data(), labels, out.dlogits.data());
  return out;
}

LossAndGrad softmax_cross_entropy_soft(const Tensor& logits, const Tensor& targets, Algo algo) {
  const char* op = "softmax_cross_entropy";
  check_rank(logits, 2, op, "logits", "(N, num_classes)");
  check_nonempty(logits, op, "logits");
  check_defined(targets, op, "targets");
  check_same_shape(logits, targets, op, "logits", "targets");
  check_same_device(logits, targets, op, "logits", "targets");
  check_cpu(logits, op);
  LossAndGrad out{0.0, Tensor::empty(logits.shape(), logits.device())};
  auto kernel =
      algo == Algo::Reference ? ref::softmax_cross_entropy_soft : cpu::softmax_cross_entropy_soft;
  out.loss = kernel(logits.size(0), logits.size(1), logits.data(), targets.data(),
                    out.dlogits.data());
  return out;
}

LossAndGrad sigmoid_binary_cross_entropy(const Tensor& logits, const Tensor& targets, Algo algo) {
  const char* op = "sigmoid_binary_cross_entropy";
  check_defined(logits, op, "logits");
  check_nonempty(logits, op, "logits");
  check_defined(targets, op, "targets");
  check_same_shape(logits, targets, op, "logits", "targets");
  check_same_device(logits, targets, op, "logits", "targets");
  check_cpu(logits, op);
  LossAndGrad out{0.0, Tensor::empty(logits.shape(), logits.device())};
  auto kernel = algo == Algo::Reference ? ref::sigmoid_binary_cross_entropy
                                        : cpu::sigmoid_binary_cross_entropy;
  out.loss = kernel(logits.numel(), logits.data(), targets.data(), out.dlogits.data());
  return out;
}

}  // namespace nanocnn
