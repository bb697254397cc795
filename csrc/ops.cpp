// ops.cpp: argument checks and dispatch for every op, in one place.
//
// Checks here cover what the kernels rely on (ranks, matching sizes, positive strides, output
// sizes that fit); they raise ValueError naming the op, the argument and the shapes. The Python
// layer (nanocnn.functional) turns friendly arguments ("same", pairs, numpy arrays) into these.
#include "ops.h"

#include <cmath>
#include <initializer_list>

#include "core/device.h"
#include "core/error.h"
#include "cpu/kernels.h"
#ifdef NANOCNN_WITH_CUDA
#include "cuda/kernels.h"
#endif

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

// Which kernel family runs an op: the CPU production kernels, the CPU reference loops, or the
// GPU kernels of the tensor's device (which becomes the current device for the launch).
enum class Backend { Cpu, Ref, Cuda };

Backend backend_for(const Tensor& t, Algo algo, const char* op) {
  if (t.device().is_cpu()) return algo == Algo::Reference ? Backend::Ref : Backend::Cpu;
  NC_CHECK(algo == Algo::Fast, op, ": algo=\"reference\" runs the CPU reference loops, but the "
           "tensors are on ", t.device().str(), "; move them to the CPU first");
#ifdef NANOCNN_WITH_CUDA
  cuda::use_device(t.device().index);
  return Backend::Cuda;
#else
  throw ValueError(detail::concat(op, ": no kernel for device ", t.device().str()));
#endif
}

}  // namespace

// NC_DISPATCH(backend, kernel, args...) calls cpu::kernel, ref::kernel or cuda::kernel.
#ifdef NANOCNN_WITH_CUDA
#define NC_CUDA_CASE(kernel, ...) \
  case Backend::Cuda:             \
    cuda::kernel(__VA_ARGS__);    \
    break;
#else
#define NC_CUDA_CASE(kernel, ...) \
  case Backend::Cuda:             \
    break;
#endif
#define NC_DISPATCH(backend, kernel, ...) \
  switch (backend) {                      \
    case Backend::Cpu:                    \
      cpu::kernel(__VA_ARGS__);           \
      break;                              \
    case Backend::Ref:                    \
      ref::kernel(__VA_ARGS__);           \
      break;                              \
      NC_CUDA_CASE(kernel, __VA_ARGS__)   \
  }

namespace {

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
              Algo algo, bool relu) {
  const Conv2dShape s = conv_shape("conv2d", x, w, g);
  check_bias(b, s.K, "conv2d", w, x);
  const Backend backend = backend_for(x, algo, "conv2d");
  Tensor y = Tensor::empty({s.N, s.K, g.out_h, g.out_w}, x.device());
  const float* bias = b.defined() ? b.data() : nullptr;
  if (backend == Backend::Cpu) {
    cpu::conv2d_forward_fused(s, x.data(), w.data(), bias, relu, y.data(), nullptr);
    return y;
  }
  // Elsewhere the ReLU is its own pass over y, in place.
  NC_DISPATCH(backend, conv2d_forward, s, x.data(), w.data(), bias, y.data());
  if (relu) NC_DISPATCH(backend, relu_forward, y.numel(), y.data(), y.data());
  return y;
}

Conv2dGrads conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                            const Conv2dGeometry& g, Algo algo, const Tensor& relu_y,
                            bool input_grad) {
  const Conv2dShape s = conv_shape("conv2d_backward", x, w, g);
  check_rank(dy, 4, "conv2d_backward", "dy", "(N, K, P, Q)");
  check_same_device(dy, x, "conv2d_backward", "dy", "x");
  const Shape y_shape{s.N, s.K, g.out_h, g.out_w};
  NC_CHECK(dy.shape() == y_shape, "conv2d_backward: dy must have the output's shape ",
           shape_str(y_shape), ", got ", shape_str(dy.shape()));
  if (relu_y.defined()) {
    check_same_device(relu_y, x, "conv2d_backward", "relu_y", "x");
    NC_CHECK(relu_y.shape() == y_shape, "conv2d_backward: relu_y must have the output's shape ",
             shape_str(y_shape), ", got ", shape_str(relu_y.shape()));
  }
  const Backend backend = backend_for(x, algo, "conv2d_backward");
  Conv2dGrads grads{Tensor::empty(x.shape(), x.device()), Tensor::empty(w.shape(), x.device()),
                    Tensor::empty({s.K}, x.device())};
  if (backend == Backend::Cpu) {
    cpu::conv2d_backward_fused(s, dy.data(), relu_y.defined() ? relu_y.data() : nullptr, nullptr,
                               x.data(), w.data(), input_grad ? grads.dx.data() : nullptr,
                               grads.dw.data(), grads.db.data());
  } else {
    // Elsewhere: the ReLU backward as its own pass, and dx computed anyway (then dropped).
    Tensor masked = dy;
    if (relu_y.defined()) {
      masked = Tensor::empty(dy.shape(), dy.device());
      NC_DISPATCH(backend, relu_backward, dy.numel(), dy.data(), relu_y.data(), masked.data());
    }
    NC_DISPATCH(backend, conv2d_backward, s, masked.data(), x.data(), w.data(), grads.dx.data(),
                grads.dw.data(), grads.db.data());
  }
  if (!input_grad) grads.dx = Tensor();
  return grads;
}

// ---- conv2d + relu + max_pool2d(2) ----------------------------------------------------------

namespace {
Pool2dGeometry pool2x2(const char* op, const Conv2dGeometry& g) {
  NC_CHECK(g.out_h >= 2 && g.out_w >= 2, op, ": the 2x2 pool needs a convolution output of at ",
           "least 2x2, got ", g.out_h, "x", g.out_w);
  return cpu::pool2x2_geometry(g.out_h, g.out_w);
}
}  // namespace

ConvPoolOutputs conv2d_relu_pool(const Tensor& x, const Tensor& w, const Tensor& b,
                                 const Conv2dGeometry& g, Algo algo, bool for_backward) {
  const Conv2dShape s = conv_shape("conv2d_relu_pool", x, w, g);
  check_bias(b, s.K, "conv2d_relu_pool", w, x);
  const Pool2dGeometry pg = pool2x2("conv2d_relu_pool", g);
  const Backend backend = backend_for(x, algo, "conv2d_relu_pool");
  if (backend != Backend::Cpu) {
    Tensor y = conv2d(x, w, b, g, algo, true);
    return {max_pool2d(y, pg, algo), for_backward ? y : Tensor()};
  }
  const Shape pooled_shape{s.N, s.K, pg.out_h, pg.out_w};
  ConvPoolOutputs out{Tensor::empty(pooled_shape, x.device()),
                      for_backward ? Tensor::empty(pooled_shape, x.device()) : Tensor()};
  cpu::conv2d_forward_fused(s, x.data(), w.data(), b.defined() ? b.data() : nullptr, true,
                            nullptr, out.pooled.data(),
                            for_backward ? out.saved.data() : nullptr);
  return out;
}

Conv2dGrads conv2d_relu_pool_backward(const Tensor& dpooled, const Tensor& x, const Tensor& w,
                                      const Tensor& saved, const Conv2dGeometry& g, Algo algo,
                                      bool input_grad) {
  const char* op = "conv2d_relu_pool_backward";
  const Conv2dShape s = conv_shape(op, x, w, g);
  const Pool2dGeometry pg = pool2x2(op, g);
  check_rank(dpooled, 4, op, "dpooled", "(N, K, P/2, Q/2)");
  check_same_device(dpooled, x, op, "dpooled", "x");
  NC_CHECK(saved.defined(), op, ": saved is empty (the forward ran with for_backward=False)");
  check_same_device(saved, x, op, "saved", "x");
  const Shape y_shape{s.N, s.K, g.out_h, g.out_w}, p_shape{s.N, s.K, pg.out_h, pg.out_w};
  NC_CHECK(dpooled.shape() == p_shape, op, ": dpooled must have the pooled shape ",
           shape_str(p_shape), ", got ", shape_str(dpooled.shape()));
  const Backend backend = backend_for(x, algo, op);
  if (backend != Backend::Cpu) {
    NC_CHECK(saved.shape() == y_shape, op, ": saved must be the forward's relu(conv) output ",
             shape_str(y_shape), " here, got ", shape_str(saved.shape()));
    return conv2d_backward(max_pool2d_backward(dpooled, saved, pg, algo), x, w, g, algo, saved,
                           input_grad);
  }
  NC_CHECK(saved.shape() == p_shape, op, ": saved must be the forward's winner codes ",
           shape_str(p_shape), " here, got ", shape_str(saved.shape()));
  Conv2dGrads grads{Tensor::empty(x.shape(), x.device()), Tensor::empty(w.shape(), x.device()),
                    Tensor::empty({s.K}, x.device())};
  cpu::conv2d_backward_fused(s, dpooled.data(), nullptr, saved.data(), x.data(), w.data(),
                             input_grad ? grads.dx.data() : nullptr, grads.dw.data(),
                             grads.db.data());
  if (!input_grad) grads.dx = Tensor();
  return grads;
}

// ---- max_pool2d ----------------------------------------------------------------------------

Tensor max_pool2d(const Tensor& x, const Pool2dGeometry& g, Algo algo) {
  const Pool2dShape s = pool_shape("max_pool2d", x, g);
  const Backend backend = backend_for(x, algo, "max_pool2d");
  Tensor y = Tensor::empty({s.N, s.C, g.out_h, g.out_w}, x.device());
  NC_DISPATCH(backend, max_pool2d_forward, s, x.data(), y.data());
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
  const Backend backend = backend_for(x, algo, "max_pool2d_backward");
  Tensor dx = Tensor::empty(x.shape(), x.device());
  NC_DISPATCH(backend, max_pool2d_backward, s, dy.data(), x.data(), dx.data());
  return dx;
}

// ---- layout --------------------------------------------------------------------------------

Tensor from_channels_last(const float* x, int64_t N, int64_t H, int64_t W, int64_t C) {
  Tensor y = Tensor::empty({N, C, H, W}, Device{});
  cpu::nhwc_to_nchw(N, H, W, C, x, y.data());
  return y;
}

// ---- element-wise activations --------------------------------------------------------------

Tensor relu(const Tensor& x, Algo algo) {
  check_defined(x, "relu", "x");
  const Backend backend = backend_for(x, algo, "relu");
  Tensor y = Tensor::empty(x.shape(), x.device());
  NC_DISPATCH(backend, relu_forward, x.numel(), x.data(), y.data());
  return y;
}

Tensor relu_backward(const Tensor& dy, const Tensor& y, Algo algo) {
  check_defined(dy, "relu_backward", "dy");
  check_defined(y, "relu_backward", "y");
  check_same_shape(dy, y, "relu_backward", "dy", "y");
  check_same_device(dy, y, "relu_backward", "dy", "y");
  const Backend backend = backend_for(y, algo, "relu_backward");
  Tensor dx = Tensor::empty(y.shape(), y.device());
  NC_DISPATCH(backend, relu_backward, y.numel(), dy.data(), y.data(), dx.data());
  return dx;
}

Tensor sigmoid(const Tensor& x, Algo algo) {
  check_defined(x, "sigmoid", "x");
  const Backend backend = backend_for(x, algo, "sigmoid");
  Tensor y = Tensor::empty(x.shape(), x.device());
  NC_DISPATCH(backend, sigmoid_forward, x.numel(), x.data(), y.data());
  return y;
}

Tensor sigmoid_backward(const Tensor& dy, const Tensor& y, Algo algo) {
  check_defined(dy, "sigmoid_backward", "dy");
  check_defined(y, "sigmoid_backward", "y");
  check_same_shape(dy, y, "sigmoid_backward", "dy", "y");
  check_same_device(dy, y, "sigmoid_backward", "dy", "y");
  const Backend backend = backend_for(y, algo, "sigmoid_backward");
  Tensor dx = Tensor::empty(y.shape(), y.device());
  NC_DISPATCH(backend, sigmoid_backward, y.numel(), dy.data(), y.data(), dx.data());
  return dx;
}

Tensor softmax(const Tensor& x, Algo algo) {
  check_rank(x, 2, "softmax", "x", "(N, C)");
  const Backend backend = backend_for(x, algo, "softmax");
  Tensor y = Tensor::empty(x.shape(), x.device());
  NC_DISPATCH(backend, softmax_forward, x.size(0), x.size(1), x.data(), y.data());
  return y;
}

Tensor softmax_backward(const Tensor& dy, const Tensor& y, Algo algo) {
  check_rank(y, 2, "softmax_backward", "y", "(N, C)");
  check_defined(dy, "softmax_backward", "dy");
  check_same_shape(dy, y, "softmax_backward", "dy", "y");
  check_same_device(dy, y, "softmax_backward", "dy", "y");
  const Backend backend = backend_for(y, algo, "softmax_backward");
  Tensor dx = Tensor::empty(y.shape(), y.device());
  NC_DISPATCH(backend, softmax_backward, y.size(0), y.size(1), dy.data(), y.data(), dx.data());
  return dx;
}

Tensor mul(const Tensor& a, const Tensor& b, Algo algo) {
  check_defined(a, "mul", "a");
  check_defined(b, "mul", "b");
  check_same_shape(a, b, "mul", "a", "b");
  check_same_device(a, b, "mul", "a", "b");
  const Backend backend = backend_for(a, algo, "mul");
  Tensor y = Tensor::empty(a.shape(), a.device());
  NC_DISPATCH(backend, mul, a.numel(), a.data(), b.data(), y.data());
  return y;
}

Tensor dropout_mask(const Shape& shape, double rate, uint64_t seed, const Device& device,
                    Algo algo) {
  NC_CHECK(rate >= 0.0 && rate < 1.0, "dropout: rate must be in [0, 1), got ", rate);
  Tensor mask = Tensor::empty(shape, device);
  const Backend backend = backend_for(mask, algo, "dropout_mask");
  NC_DISPATCH(backend, dropout_mask, mask.numel(), static_cast<float>(rate), seed, mask.data());
  return mask;
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
  const Backend backend = backend_for(x, algo, "linear");
  const int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  Tensor y = Tensor::empty({N, out}, x.device());
  const float* bias = b.defined() ? b.data() : nullptr;
  NC_DISPATCH(backend, linear_forward, N, in, out, x.data(), w.data(), bias, y.data());
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
  const Backend backend = backend_for(x, algo, "linear_backward");
  LinearGrads grads{Tensor::empty(x.shape(), x.device()), Tensor::empty(w.shape(), x.device()),
                    Tensor::empty({out}, x.device())};
  NC_DISPATCH(backend, linear_backward, N, in, out, dy.data(), x.data(), w.data(),
              grads.dx.data(), grads.dw.data(), grads.db.data());
  return grads;
}

// ---- fused losses and metrics --------------------------------------------------------------
//
// The CPU kernels return the loss as a double; the GPU kernels write it to a device float. Either
// way the op returns it as a tensor of shape () on the logits' device.

namespace {

Tensor scalar_on_cpu(double value) {
  Tensor t = Tensor::empty({}, Device{});
  t.data()[0] = static_cast<float>(value);
  return t;
}

void check_class_ids(const char* op, const Tensor& scores, const int64_t* labels,
                     int64_t n_labels) {
  check_rank(scores, 2, op, "logits", "(N, num_classes)");
  check_nonempty(scores, op, "logits");
  const int64_t N = scores.size(0), C = scores.size(1);
  NC_CHECK(n_labels == N, op, ": labels must have shape (", N, ",) to match logits ",
           shape_str(scores.shape()), ", got (", n_labels, ",)");
  for (int64_t i = 0; i < N; ++i) {
    NC_CHECK(labels[i] >= 0 && labels[i] < C, op, ": labels must be class ids in [0, ", C,
             ") for logits ", shape_str(scores.shape()), ", got labels[", i, "] = ", labels[i]);
  }
}

#ifdef NANOCNN_WITH_CUDA
// The host's (checked) class ids, copied to `device` for a GPU kernel.
std::shared_ptr<Storage> labels_on(const Device& device, const int64_t* labels, int64_t n) {
  const size_t bytes = static_cast<size_t>(n) * sizeof(int64_t);
  auto storage = std::make_shared<Storage>(bytes, device);
  copy_bytes(storage->data(), device, labels, Device{}, bytes);
  return storage;
}
#endif

}  // namespace

LossAndGrad softmax_cross_entropy(const Tensor& logits, const int64_t* labels, int64_t n_labels,
                                  Algo algo) {
  const char* op = "softmax_cross_entropy";
  check_class_ids(op, logits, labels, n_labels);
  const Backend backend = backend_for(logits, algo, op);
  const int64_t N = logits.size(0), C = logits.size(1);
  LossAndGrad out{Tensor(), Tensor::empty(logits.shape(), logits.device())};
  if (backend == Backend::Cuda) {
#ifdef NANOCNN_WITH_CUDA
    auto device_labels = labels_on(logits.device(), labels, N);
    out.loss = Tensor::empty({}, logits.device());
    cuda::softmax_cross_entropy(N, C, logits.data(), static_cast<int64_t*>(device_labels->data()),
                                out.dlogits.data(), out.loss.data());
#endif
  } else {
    auto kernel = backend == Backend::Ref ? ref::softmax_cross_entropy : cpu::softmax_cross_entropy;
    out.loss = scalar_on_cpu(kernel(N, C, logits.data(), labels, out.dlogits.data()));
  }
  return out;
}

LossAndGrad softmax_cross_entropy_soft(const Tensor& logits, const Tensor& targets, Algo algo) {
  const char* op = "softmax_cross_entropy";
  check_rank(logits, 2, op, "logits", "(N, num_classes)");
  check_nonempty(logits, op, "logits");
  check_defined(targets, op, "targets");
  check_same_shape(logits, targets, op, "logits", "targets");
  check_same_device(logits, targets, op, "logits", "targets");
  const Backend backend = backend_for(logits, algo, op);
  const int64_t N = logits.size(0), C = logits.size(1);
  LossAndGrad out{Tensor(), Tensor::empty(logits.shape(), logits.device())};
  if (backend == Backend::Cuda) {
#ifdef NANOCNN_WITH_CUDA
    out.loss = Tensor::empty({}, logits.device());
    cuda::softmax_cross_entropy_soft(N, C, logits.data(), targets.data(), out.dlogits.data(),
                                     out.loss.data());
#endif
  } else {
    auto kernel = backend == Backend::Ref ? ref::softmax_cross_entropy_soft
                                          : cpu::softmax_cross_entropy_soft;
    out.loss = scalar_on_cpu(kernel(N, C, logits.data(), targets.data(), out.dlogits.data()));
  }
  return out;
}

LossAndGrad sigmoid_binary_cross_entropy(const Tensor& logits, const Tensor& targets, Algo algo) {
  const char* op = "sigmoid_binary_cross_entropy";
  check_defined(logits, op, "logits");
  check_nonempty(logits, op, "logits");
  check_defined(targets, op, "targets");
  check_same_shape(logits, targets, op, "logits", "targets");
  check_same_device(logits, targets, op, "logits", "targets");
  const Backend backend = backend_for(logits, algo, op);
  LossAndGrad out{Tensor(), Tensor::empty(logits.shape(), logits.device())};
  if (backend == Backend::Cuda) {
#ifdef NANOCNN_WITH_CUDA
    out.loss = Tensor::empty({}, logits.device());
    cuda::sigmoid_binary_cross_entropy(logits.numel(), logits.data(), targets.data(),
                                       out.dlogits.data(), out.loss.data());
#endif
  } else {
    auto kernel = backend == Backend::Ref ? ref::sigmoid_binary_cross_entropy
                                          : cpu::sigmoid_binary_cross_entropy;
    out.loss =
        scalar_on_cpu(kernel(logits.numel(), logits.data(), targets.data(), out.dlogits.data()));
  }
  return out;
}

Tensor count_correct(const Tensor& scores, const int64_t* labels, int64_t n_labels, Algo algo) {
  const char* op = "count_correct";
  check_class_ids(op, scores, labels, n_labels);
  const Backend backend = backend_for(scores, algo, op);
  const int64_t N = scores.size(0), C = scores.size(1);
  if (backend == Backend::Cuda) {
    Tensor count = Tensor::empty({}, scores.device());
#ifdef NANOCNN_WITH_CUDA
    auto device_labels = labels_on(scores.device(), labels, N);
    cuda::count_correct_sparse(N, C, scores.data(), static_cast<int64_t*>(device_labels->data()),
                               count.data());
#endif
    return count;
  }
  auto kernel = backend == Backend::Ref ? ref::count_correct_sparse : cpu::count_correct_sparse;
  return scalar_on_cpu(static_cast<double>(kernel(N, C, scores.data(), labels)));
}

Tensor count_correct(const Tensor& scores, const Tensor& targets, double threshold, Algo algo) {
  const char* op = "count_correct";
  check_defined(scores, op, "scores");
  check_nonempty(scores, op, "scores");
  check_defined(targets, op, "targets");
  check_same_shape(scores, targets, op, "scores", "targets");
  check_same_device(scores, targets, op, "scores", "targets");
  NC_CHECK(scores.dim() <= 2, op, ": scores must be (N,) or (N, C), got shape ",
           shape_str(scores.shape()));
  const Backend backend = backend_for(scores, algo, op);
  const int64_t N = scores.dim() == 0 ? 1 : scores.size(0);
  const int64_t C = scores.numel() / N;
  const float t = static_cast<float>(threshold);
  if (backend == Backend::Cuda) {
    Tensor count = Tensor::empty({}, scores.device());
#ifdef NANOCNN_WITH_CUDA
    cuda::count_correct_dense(N, C, scores.data(), targets.data(), t, count.data());
#endif
    return count;
  }
  auto kernel = backend == Backend::Ref ? ref::count_correct_dense : cpu::count_correct_dense;
  return scalar_on_cpu(static_cast<double>(kernel(N, C, scores.data(), targets.data(), t)));
}

// ---- optimizer updates ---------------------------------------------------------------------

namespace {
void check_state(const char* op, const Tensor& param, const Tensor& state, const char* name) {
  NC_CHECK(state.defined(), op, ": ", name, " is required with these settings");
  check_same_shape(param, state, op, "param", name);
  check_same_device(param, state, op, "param", name);
}
void check_hyper(const char* op, const char* name, double value, double lo, double hi) {
  NC_CHECK(value >= lo && value <= hi, op, ": ", name, " must be in [", lo, ", ", hi, "], got ",
           value);
}
}  // namespace

void sgd_update(Tensor& param, const Tensor& grad, Tensor& velocity, double lr, double momentum,
                bool nesterov, Algo algo) {
  const char* op = "sgd_update";
  check_defined(param, op, "param");
  check_state(op, param, grad, "grad");
  check_hyper(op, "momentum", momentum, 0.0, 1.0);
  NC_CHECK(std::isfinite(lr), op, ": learning_rate must be finite, got ", lr);
  const bool with_momentum = momentum > 0.0;
  NC_CHECK(with_momentum || !nesterov, op, ": nesterov needs momentum > 0");
  if (with_momentum) check_state(op, param, velocity, "velocity");
  const Backend backend = backend_for(param, algo, op);
  float* v = with_momentum ? velocity.data() : nullptr;
  NC_DISPATCH(backend, sgd_update, param.numel(), param.data(), grad.data(), v,
              static_cast<float>(lr), static_cast<float>(momentum), nesterov);
}

void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1,
                 double beta2, double epsilon, int64_t step, Algo algo) {
  const char* op = "adam_update";
  check_defined(param, op, "param");
  check_state(op, param, grad, "grad");
  check_state(op, param, m, "m");
  check_state(op, param, v, "v");
  check_hyper(op, "beta_1", beta1, 0.0, 1.0 - 1e-12);
  check_hyper(op, "beta_2", beta2, 0.0, 1.0 - 1e-12);
  NC_CHECK(epsilon >= 0.0, op, ": epsilon must be >= 0, got ", epsilon);
  NC_CHECK(std::isfinite(lr), op, ": learning_rate must be finite, got ", lr);
  NC_CHECK(step >= 1, op, ": step must be >= 1, got ", step);
  const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const Backend backend = backend_for(param, algo, op);
  NC_DISPATCH(backend, adam_update, param.numel(), param.data(), grad.data(), m.data(), v.data(),
              static_cast<float>(lr), static_cast<float>(beta1), static_cast<float>(beta2),
              static_cast<float>(epsilon), static_cast<float>(bias1), static_cast<float>(bias2));
}

void rmsprop_update(Tensor& param, const Tensor& grad, Tensor& ms, Tensor& mom, Tensor& mg,
                    double lr, double rho, double momentum, double epsilon, bool centered,
                    Algo algo) {
  const char* op = "rmsprop_update";
  check_defined(param, op, "param");
  check_state(op, param, grad, "grad");
  check_state(op, param, ms, "ms");
  check_hyper(op, "rho", rho, 0.0, 1.0);
  check_hyper(op, "momentum", momentum, 0.0, 1.0);
  NC_CHECK(epsilon >= 0.0, op, ": epsilon must be >= 0, got ", epsilon);
  NC_CHECK(std::isfinite(lr), op, ": learning_rate must be finite, got ", lr);
  if (momentum > 0.0) check_state(op, param, mom, "mom");
  if (centered) check_state(op, param, mg, "mg");
  const Backend backend = backend_for(param, algo, op);
  NC_DISPATCH(backend, rmsprop_update, param.numel(), param.data(), grad.data(), ms.data(),
              momentum > 0.0 ? mom.data() : nullptr, centered ? mg.data() : nullptr,
              static_cast<float>(lr), static_cast<float>(rho), static_cast<float>(momentum),
              static_cast<float>(epsilon));
}

}  // namespace nanocnn
