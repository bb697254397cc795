// bindings.cpp: the Python module nanocnn._C.
//
// Exposes the Tensor type and one function per op and direction, taking Tensors and plain
// integers. Friendlier argument forms ("same" padding, pairs, numpy arrays) are handled by
// nanocnn.functional, which is the public API; _C is its engine. The GIL is released around
// every kernel, so other Python threads (data loading) run meanwhile.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "core/device.h"
#include "core/dlpack.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/tensor.h"
#include "cpu/gemm.h"
#include "cpu/peak.h"
#include "ops.h"

namespace py = pybind11;
using namespace nanocnn;

namespace {

using Pair = std::array<int64_t, 2>;

// A numpy view of a host tensor's memory; the view keeps the tensor (and so its storage) alive.
py::array host_view(const py::object& owner, const Tensor& t) {
  NC_CHECK_TYPE(t.device().is_cpu(), "numpy(): this tensor is on ", t.device().str(),
                "; call .to(\"cpu\") first (np.asarray(t) copies it to the host)");
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = sizeof(float);
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i] > 0 ? shape[i] : 1;
  }
  return py::array(py::dtype::of<float>(), shape, strides, const_cast<float*>(t.data()), owner);
}

Tensor optional_tensor(const std::optional<Tensor>& t) { return t ? *t : Tensor(); }

// ---- DLPack ------------------------------------------------------------------------------------

// What a consumer holds while it uses one of our tensors: the tensor (keeping its storage alive)
// and the shape/strides arrays the DLPack view points into.
struct DLPackExport {
  Tensor tensor;
  std::vector<int64_t> shape, strides;
  dlpack::ManagedTensor managed;
};

// Runs when the capsule is garbage-collected. A consumer that took the tensor renamed the
// capsule and calls the deleter itself later; otherwise nobody took it and it is freed here.
void dlpack_capsule_destructor(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, dlpack::kCapsuleName)) return;
  auto* managed =
      static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule, dlpack::kCapsuleName));
  if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
}

// A GPU tensor is exported after the device has finished every queued kernel, so a consumer on
// any stream sees finished data. (The exported memory returns to nanocnn's allocator when the
// consumer lets go; a consumer still using it on a stream other than the device's default
// stream must synchronise before it lets go, as with any DLPack exchange.)
py::object to_dlpack(const Tensor& t) {
  if (t.device().is_cuda()) {
    py::gil_scoped_release release;
    synchronize(t.device());
  }
  auto* exported = new DLPackExport{t, t.shape(), std::vector<int64_t>(t.shape().size()), {}};
  int64_t stride = 1;
  for (size_t i = exported->shape.size(); i-- > 0;) {
    exported->strides[i] = stride;
    stride *= exported->shape[i];
  }
  dlpack::ManagedTensor& m = exported->managed;
  m.dl_tensor.data = const_cast<float*>(t.data());
  m.dl_tensor.device = t.device().is_cpu() ? dlpack::Device{dlpack::kCPU, 0}
                                           : dlpack::Device{dlpack::kCUDA, t.device().index};
  m.dl_tensor.ndim = static_cast<int32_t>(exported->shape.size());
  m.dl_tensor.dtype = {dlpack::kFloat, 32, 1};
  m.dl_tensor.shape = exported->shape.data();
  m.dl_tensor.strides = exported->strides.data();
  m.dl_tensor.byte_offset = 0;
  m.manager_ctx = exported;
  // May be called by the consumer without the GIL: it touches no Python object.
  m.deleter = [](dlpack::ManagedTensor* self) {
    delete static_cast<DLPackExport*>(self->manager_ctx);
  };
  PyObject* capsule = PyCapsule_New(&m, dlpack::kCapsuleName, dlpack_capsule_destructor);
  if (capsule == nullptr) {
    delete exported;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(capsule);
}

// Takes the memory behind a "dltensor" capsule without copying. Checks everything before taking
// ownership, so a capsule that is refused stays with its producer.
Tensor from_dlpack_capsule(const py::object& capsule) {
  PyObject* cap = capsule.ptr();
  NC_CHECK_TYPE(PyCapsule_CheckExact(cap), "from_dlpack: expected a DLPack capsule, got ",
                std::string(py::str(py::type::of(capsule).attr("__name__"))));
  NC_CHECK(PyCapsule_IsValid(cap, dlpack::kCapsuleName),
           "from_dlpack: the capsule was already consumed, or is not an unversioned DLPack "
           "\"dltensor\" capsule");
  auto* managed =
      static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(cap, dlpack::kCapsuleName));
  const dlpack::TensorView& v = managed->dl_tensor;
  const int32_t kind = v.device.device_type;
  NC_CHECK(kind == dlpack::kCPU || kind == dlpack::kCUDAHost || kind == dlpack::kCUDA,
           "from_dlpack: only CPU and CUDA memory can be shared, got DLPack device type ", kind,
           " (use nanocnn.tensor() for a copy)");
  const Device device = kind == dlpack::kCUDA ? Device{DeviceType::CUDA, v.device.device_id}
                                              : Device{};
  if (device.is_cuda()) allocator_for(device);  // ValueError unless that GPU is usable here
  NC_CHECK(v.dtype.code == dlpack::kFloat && v.dtype.bits == 32 && v.dtype.lanes == 1,
           "from_dlpack: nanocnn tensors are float32, got DLPack dtype code ", int(v.dtype.code),
           " with ", int(v.dtype.bits), " bits; use nanocnn.tensor() for a converting copy");
  NC_CHECK(v.ndim >= 0 && (v.ndim == 0 || v.shape != nullptr), "from_dlpack: invalid shape");
  Shape shape(v.shape, v.shape + v.ndim);
  for (int64_t d : shape) NC_CHECK(d >= 0, "from_dlpack: invalid shape ", shape_str(shape));
  numel_of(shape);  // raises if the size overflows
  if (v.strides != nullptr && numel_of(shape) > 0) {
    int64_t expected = 1;
    for (int32_t i = v.ndim; i-- > 0;) {
      NC_CHECK(shape[i] == 1 || v.strides[i] == expected,
               "from_dlpack: nanocnn needs C-contiguous memory, got shape ", shape_str(shape),
               " with strides ", shape_str(Shape(v.strides, v.strides + v.ndim)),
               "; pass a contiguous copy (e.g. t.contiguous()) or use nanocnn.tensor()");
      expected *= shape[i];
    }
  }
  auto* data = reinterpret_cast<float*>(static_cast<char*>(v.data) + v.byte_offset);
  NC_CHECK(reinterpret_cast<uintptr_t>(data) % alignof(float) == 0,
           "from_dlpack: the data is not aligned for float32");
  // Ownership moves to nanocnn: mark the capsule used, release through the producer's deleter.
  if (PyCapsule_SetName(cap, dlpack::kUsedCapsuleName) != 0) throw py::error_already_set();
  return Tensor::borrow(data, shape, device, [managed, device]() {
    if (managed->deleter == nullptr) return;
    // Producers such as NumPy release a Python object here: hold the GIL while they do.
    if (Py_IsInitialized()) {
      if (device.is_cuda()) {
        // nanocnn's kernels on this memory may still be queued on the legacy default stream, and
        // the producer may reuse the memory at once on a stream of its own (torch's side streams
        // are non-blocking, so not ordered after ours): let those kernels finish first. A failed
        // kernel is reported by the next op; a destructor must not throw.
        try {
          synchronize(device);
        } catch (...) {
        }
      }
      py::gil_scoped_acquire gil;
      managed->deleter(managed);
    }
  });
}

Conv2dGeometry conv_geometry(Pair stride, Pair padding, Pair dilation, Pair out_size) {
  return Conv2dGeometry{stride[0],   stride[1],   padding[0],  padding[1],
                        dilation[0], dilation[1], out_size[0], out_size[1]};
}

Pool2dGeometry pool_geometry(Pair kernel, Pair stride, Pair padding, Pair out_size) {
  return Pool2dGeometry{kernel[0],  kernel[1],  stride[0],   stride[1],
                        padding[0], padding[1], out_size[0], out_size[1]};
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "nanocnn native kernels (use nanocnn / nanocnn.functional, not this module)";
  m.attr("__version__") = NANOCNN_VERSION;

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const MemoryError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });

  // ---- Tensor --------------------------------------------------------------------------------
  py::class_<Tensor>(m, "Tensor", R"doc(
A dense float32 array on one device (NCHW for activations).

Make one with nanocnn.tensor(array, device="cpu"). On the CPU, t.numpy() and np.asarray(t)
return a view of the tensor's memory (no copy), as torch.Tensor.numpy() does.
)doc")
      .def_property_readonly("shape",
                             [](const Tensor& t) {
                               py::tuple shape(t.dim());
                               for (int64_t i = 0; i < t.dim(); ++i) shape[i] = t.size(i);
                               return shape;
                             })
      .def_property_readonly("device", [](const Tensor& t) { return t.device().str(); })
      .def_property_readonly("dtype", [](const Tensor&) { return "float32"; })
      .def_property_readonly("ndim", &Tensor::dim)
      .def_property_readonly("size", &Tensor::numel, "Number of elements.")
      .def("__len__",
           [](const Tensor& t) {
             NC_CHECK_TYPE(t.dim() > 0, "len() of a 0-d tensor");
             return t.size(0);
           })
      .def(
          "numpy", [](py::object self) { return host_view(self, self.cast<const Tensor&>()); },
          "A numpy view of this (CPU) tensor's memory. On a GPU tensor: TypeError (call "
          ".to(\"cpu\") first, or np.asarray(t), which copies).")
      .def(
          "__array__",
          [](py::object self, py::object dtype, py::object copy) {
            // NumPy 2's protocol: copy=True always copies, copy=False never does (ValueError
            // where a dtype conversion would need one), None copies only to convert.
            py::module_ np = py::module_::import("numpy");
            const bool want_copy = !copy.is_none() && copy.cast<bool>();
            const bool no_copy = !copy.is_none() && !copy.cast<bool>();
            const Tensor& t = self.cast<const Tensor&>();
            if (t.device().is_cuda()) {
              // A GPU tensor reaches numpy only as a copy in host memory.
              NC_CHECK(!no_copy, "__array__: this tensor is on ", t.device().str(),
                       " and needs a copy to the host, but copy=False");
              Tensor on_host;
              {
                py::gil_scoped_release release;
                on_host = t.to(Device{});
              }
              py::array view = host_view(py::cast(on_host), on_host);
              if (dtype.is_none()) return view;
              return py::array(np.attr("asarray")(view, dtype));
            }
            py::array view = host_view(self, t);
            const bool converts =
                !dtype.is_none() && !np.attr("dtype")(dtype).equal(py::dtype::of<float>());
            NC_CHECK(!(no_copy && converts), "__array__: converting a float32 tensor to ",
                     std::string(py::str(dtype)), " needs a copy, but copy=False");
            if (converts || want_copy)
              return py::array(np.attr("array")(view, dtype, py::arg("copy") = true));
            return view;
          },
          py::arg("dtype") = py::none(), py::arg("copy") = py::none())
      .def(
          "reshape",
          [](const Tensor& t, const std::vector<int64_t>& shape) {
            std::vector<int64_t> resolved = shape;
            int64_t known = 1, infer = -1;
            for (size_t i = 0; i < shape.size(); ++i) {
              if (shape[i] == -1) {
                NC_CHECK(infer < 0, "reshape: only one dimension can be -1, got ",
                         shape_str(shape));
                infer = static_cast<int64_t>(i);
              } else {
                NC_CHECK(shape[i] >= 0, "reshape: invalid shape ", shape_str(shape));
                known *= shape[i];
              }
            }
            if (infer >= 0) {
              NC_CHECK(known > 0 && t.numel() % known == 0, "cannot reshape a tensor of shape ",
                       shape_str(t.shape()), " to ", shape_str(shape));
              resolved[infer] = t.numel() / known;
            }
            return t.reshape(resolved);
          },
          py::arg("shape"), "A tensor sharing this one's memory, with a new shape.")
      .def(
          "to",
          [](const Tensor& t, const std::string& device) {
            const Device target = Device::parse(device);
            if (target == t.device()) return t;
            py::gil_scoped_release release;
            return t.to(target);
          },
          py::arg("device"), "This tensor on `device` (itself if already there).")
      .def(
          "__dlpack__",
          [](const Tensor& t, py::object stream, py::object max_version, py::object dl_device,
             py::object copy) {
            // stream: the consumer's stream. Export synchronises the whole device (see
            // to_dlpack), which serves any stream.
            const bool want_copy = !copy.is_none() && copy.cast<bool>();
            if (!dl_device.is_none()) {
              auto dev = dl_device.cast<std::pair<int, int>>();
              const Device wanted = dev.first == dlpack::kCPU ? Device{}
                                    : dev.first == dlpack::kCUDA
                                        ? Device{DeviceType::CUDA, dev.second}
                                        : Device{DeviceType::CUDA, -1};
              NC_CHECK(wanted.index >= 0, "__dlpack__: unsupported dl_device (", dev.first, ", ",
                       dev.second, ")");
              if (wanted != t.device()) {
                NC_CHECK(want_copy, "__dlpack__: this tensor is on ", t.device().str(),
                         ", dl_device asks for ", wanted.str(), "; pass copy=True to copy it");
                Tensor moved;
                {
                  py::gil_scoped_release release;
                  moved = t.to(wanted);
                }
                return to_dlpack(moved);
              }
            }
            if (want_copy) {
              Tensor copied;
              {
                py::gil_scoped_release release;
                copied = t.to(t.device());
              }
              return to_dlpack(copied);
            }
            return to_dlpack(t);
          },
          py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
          py::arg("dl_device") = py::none(), py::arg("copy") = py::none(),
          "A DLPack capsule sharing this tensor's memory (zero-copy), for torch.from_dlpack, "
          "np.from_dlpack, ...")
      .def("__dlpack_device__",
           [](const Tensor& t) {
             return std::make_pair(t.device().is_cpu() ? int(dlpack::kCPU) : int(dlpack::kCUDA),
                                   t.device().index);
           })
      .def("__repr__", [](const Tensor& t) {
        return "nanocnn.Tensor(shape=" + shape_str(t.shape()) + ", device=\"" +
               t.device().str() + "\")";
      });

  // Tensors come from nanocnn.tensor / zeros / ops; a bare Tensor.__new__ would hold no storage.
  m.attr("Tensor").attr("__new__") = py::staticmethod(py::cpp_function(
      [](py::args, py::kwargs) -> py::object {
        throw TypeError("nanocnn.Tensor cannot be created directly; use nanocnn.tensor(array)");
      }));

  m.def(
      "empty",
      [](const std::vector<int64_t>& shape, const std::string& device) {
        return Tensor::empty(shape, Device::parse(device));
      },
      py::arg("shape"), py::arg("device") = "cpu", "An uninitialised float32 tensor.");
  m.def(
      "from_channels_last",
      [](const py::array_t<float, py::array::c_style>& x) {
        NC_CHECK(x.ndim() == 4, "from_channels_last: x must have shape (N, H, W, C), got ",
                 x.ndim(), " dimension(s)");
        const float* data = x.data();
        py::gil_scoped_release release;
        return from_channels_last(data, x.shape(0), x.shape(1), x.shape(2), x.shape(3));
      },
      py::arg("x"),
      "A float32 C-contiguous numpy batch (N, H, W, C) as a new CPU tensor (N, C, H, W), the "
      "copy split over threads.");
  m.def(
      "zeros",
      [](const std::vector<int64_t>& shape, const std::string& device) {
        return Tensor::zeros(shape, Device::parse(device));
      },
      py::arg("shape"), py::arg("device") = "cpu");

  m.def("from_dlpack_capsule", &from_dlpack_capsule, py::arg("capsule"),
        "A tensor over the memory behind a DLPack capsule (no copy).");
  m.def(
      "copy_to",
      [](const Tensor& t, const std::string& device) {
        const Device target = Device::parse(device);
        py::gil_scoped_release release;
        return t.to(target);
      },
      py::arg("t"), py::arg("device"), "A new tensor on `device` with t's values (always a copy).");

  // ---- machine -------------------------------------------------------------------------------
  m.def("host_cache_bytes", &host_cache_bytes);
  m.def("release_host_cache", &release_host_cache);
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("cuda_device_count", &cuda_device_count);
  m.def("cuda_available", &cuda_available);
  m.def("cuda_unavailable_reason", &cuda_unavailable_reason);
  m.def("built_with_cuda", &built_with_cuda);
  m.def("cuda_device_name", &cuda_device_name, py::arg("index"));
  m.def(
      "cuda_synchronize",
      [](const std::string& device) {
        const Device d = Device::parse(device);
        NC_CHECK(d.is_cuda(), "cuda_synchronize: device must be \"cuda\" or \"cuda:N\", got \"",
                 device, "\"");
        allocator_for(d);  // ValueError unless that GPU is usable here
        py::gil_scoped_release release;
        synchronize(d);
      },
      py::arg("device") = "cuda");
  m.def("cuda_memory_allocated", &cuda_memory_allocated, py::arg("index"));
  m.def("cuda_memory_reserved", &cuda_memory_reserved, py::arg("index"));
  m.def("release_cuda_cache", [] {
    py::gil_scoped_release release;
    release_cuda_cache();
  });
  m.def("sgemm_isa", &cpu::sgemm_isa);
  m.def("sgemm_set_isa", &cpu::sgemm_set_isa, py::arg("name"));

  // ---- measured machine peak (for nanocnn.benchmark; see cpu/peak.cpp) --------------------------
  m.def(
      "cpu_peak_gflops",
      [](int threads, double seconds) {
        py::gil_scoped_release release;
        return cpu::peak_fma_gflops(threads, seconds);
      },
      py::arg("threads"), py::arg("seconds") = 0.2,
      "FP32 FMA throughput in GFLOP/s of `threads` threads running at once (measured).");
  m.def("cpu_peak_isa", &cpu::peak_fma_isa, "The ISA cpu_peak_gflops uses.");
  m.def(
      "cpu_copy_gbs",
      [](int threads, int64_t bytes, double seconds) {
        py::gil_scoped_release release;
        return cpu::peak_copy_gbs(threads, bytes, seconds);
      },
      py::arg("threads"), py::arg("bytes") = int64_t{256} << 20, py::arg("seconds") = 0.2,
      "Memory bandwidth (read + write) in GB/s of y = x + 1 over `bytes`, best pass (measured).");
  // ---- end of measured machine peak -------------------------------------------------------------

  // C = alpha * op(A) @ op(B) + beta * C on 2-D host tensors, in place (for tests and benches).
  m.def(
      "sgemm",
      [](const Tensor& A, const Tensor& B, Tensor& C, bool trans_a, bool trans_b, float alpha,
         float beta) {
        NC_CHECK(A.dim() == 2 && B.dim() == 2 && C.dim() == 2, "sgemm: A, B and C must be 2-D, got ",
                 shape_str(A.shape()), ", ", shape_str(B.shape()), ", ", shape_str(C.shape()));
        NC_CHECK(A.device().is_cpu() && B.device().is_cpu() && C.device().is_cpu(),
                 "sgemm: A, B and C must be CPU tensors");
        const int64_t M = trans_a ? A.size(1) : A.size(0), K = trans_a ? A.size(0) : A.size(1);
        const int64_t Kb = trans_b ? B.size(1) : B.size(0), N = trans_b ? B.size(0) : B.size(1);
        NC_CHECK(K == Kb && C.size(0) == M && C.size(1) == N, "sgemm: shapes do not match: A ",
                 shape_str(A.shape()), ", B ", shape_str(B.shape()), ", C ", shape_str(C.shape()));
        py::gil_scoped_release release;
        cpu::sgemm(trans_a, trans_b, M, N, K, alpha, A.data(), A.size(1), B.data(), B.size(1),
                   beta, C.data(), C.size(1));
      },
      py::arg("A"), py::arg("B"), py::arg("C"), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f);

  // ---- ops -----------------------------------------------------------------------------------
  m.def(
      "conv2d",
      [](const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, Pair stride,
         Pair padding, Pair dilation, Pair out_size, const std::string& algo, bool relu) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        return conv2d(x, w, optional_tensor(b), conv_geometry(stride, padding, dilation, out_size),
                      a, relu);
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("out_size"), py::arg("algo") = "fast",
      py::arg("relu") = false);
  m.def(
      "conv2d_backward",
      [](const Tensor& dy, const Tensor& x, const Tensor& w, Pair stride, Pair padding,
         Pair dilation, Pair out_size, const std::string& algo,
         const std::optional<Tensor>& relu_y, bool input_grad) {
        const Algo a = parse_algo(algo);
        Conv2dGrads g;
        {
          py::gil_scoped_release release;
          g = conv2d_backward(dy, x, w, conv_geometry(stride, padding, dilation, out_size), a,
                              optional_tensor(relu_y), input_grad);
        }
        py::object dx = g.dx.defined() ? py::cast(g.dx) : py::none();
        return py::make_tuple(dx, g.dw, g.db);
      },
      py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("out_size"), py::arg("algo") = "fast",
      py::arg("relu_y") = py::none(), py::arg("input_grad") = true);
  m.def(
      "conv2d_relu_pool",
      [](const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, Pair stride,
         Pair padding, Pair dilation, Pair out_size, const std::string& algo, bool for_backward) {
        const Algo a = parse_algo(algo);
        ConvPoolOutputs o;
        {
          py::gil_scoped_release release;
          o = conv2d_relu_pool(x, w, optional_tensor(b),
                               conv_geometry(stride, padding, dilation, out_size), a,
                               for_backward);
        }
        py::object saved = o.saved.defined() ? py::cast(o.saved) : py::none();
        return py::make_tuple(o.pooled, saved);
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("out_size"), py::arg("algo") = "fast",
      py::arg("for_backward") = true,
      "max_pool2d(relu(conv2d(x, w, b)), 2) and what its backward needs (opaque; None unless "
      "for_backward).");
  m.def(
      "conv2d_relu_pool_backward",
      [](const Tensor& dpooled, const Tensor& x, const Tensor& w, const Tensor& saved,
         Pair stride, Pair padding, Pair dilation, Pair out_size, const std::string& algo,
         bool input_grad) {
        const Algo a = parse_algo(algo);
        Conv2dGrads g;
        {
          py::gil_scoped_release release;
          g = conv2d_relu_pool_backward(dpooled, x, w, saved,
                                        conv_geometry(stride, padding, dilation, out_size), a,
                                        input_grad);
        }
        py::object dx = g.dx.defined() ? py::cast(g.dx) : py::none();
        return py::make_tuple(dx, g.dw, g.db);
      },
      py::arg("dpooled"), py::arg("x"), py::arg("w"), py::arg("saved"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("out_size"), py::arg("algo") = "fast",
      py::arg("input_grad") = true);
  m.def(
      "max_pool2d",
      [](const Tensor& x, Pair kernel, Pair stride, Pair padding, Pair out_size,
         const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        return max_pool2d(x, pool_geometry(kernel, stride, padding, out_size), a);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("out_size"), py::arg("algo") = "fast");
  m.def(
      "max_pool2d_backward",
      [](const Tensor& dy, const Tensor& x, Pair kernel, Pair stride, Pair padding,
         Pair out_size, const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        return max_pool2d_backward(dy, x, pool_geometry(kernel, stride, padding, out_size), a);
      },
      py::arg("dy"), py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("out_size"), py::arg("algo") = "fast");
  m.def(
      "relu",
      [](const Tensor& x, const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        return relu(x, a);
      },
      py::arg("x"), py::arg("algo") = "fast");
  m.def(
      "relu_backward",
      [](const Tensor& dy, const Tensor& y, const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        return relu_backward(dy, y, a);
      },
      py::arg("dy"), py::arg("y"), py::arg("algo") = "fast");
  m.def(
      "linear",
      [](const Tensor& x, const Tensor& w, const std::optional<Tensor>& b,
         const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        return linear(x, w, optional_tensor(b), a);
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("algo") = "fast");
  m.def(
      "linear_backward",
      [](const Tensor& dy, const Tensor& x, const Tensor& w, const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        LinearGrads g = linear_backward(dy, x, w, a);
        return std::make_tuple(g.dx, g.dw, g.db);
      },
      py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("algo") = "fast");
  m.def(
      "softmax_cross_entropy",
      [](const Tensor& logits, py::array_t<int64_t, py::array::c_style | py::array::forcecast>
                                   labels,
         const std::string& algo) {
        const Algo a = parse_algo(algo);
        NC_CHECK(labels.ndim() == 1, "softmax_cross_entropy: labels must be 1-D class ids, got ",
                 labels.ndim(), " dimensions");
        const int64_t* ids = labels.data();
        const int64_t n = labels.shape(0);
        py::gil_scoped_release release;
        LossAndGrad r = softmax_cross_entropy(logits, ids, n, a);
        return std::make_tuple(r.loss, r.dlogits);
      },
      py::arg("logits"), py::arg("labels"), py::arg("algo") = "fast");
  m.def(
      "softmax_cross_entropy_soft",
      [](const Tensor& logits, const Tensor& targets, const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        LossAndGrad r = softmax_cross_entropy_soft(logits, targets, a);
        return std::make_tuple(r.loss, r.dlogits);
      },
      py::arg("logits"), py::arg("targets"), py::arg("algo") = "fast");
  m.def(
      "sigmoid_binary_cross_entropy",
      [](const Tensor& logits, const Tensor& targets, const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        LossAndGrad r = sigmoid_binary_cross_entropy(logits, targets, a);
        return std::make_tuple(r.loss, r.dlogits);
      },
      py::arg("logits"), py::arg("targets"), py::arg("algo") = "fast");

  // ---- more activations, dropout, metrics --------------------------------------------------
  using UnaryOp = Tensor (*)(const Tensor&, Algo);
  using BinaryOp = Tensor (*)(const Tensor&, const Tensor&, Algo);
  const std::pair<const char*, UnaryOp> unary_ops[] = {{"sigmoid", &sigmoid},
                                                       {"softmax", &softmax}};
  for (const auto& [name, op] : unary_ops) {
    m.def(
        name,
        [op = op](const Tensor& x, const std::string& algo) {
          const Algo a = parse_algo(algo);
          py::gil_scoped_release release;
          return op(x, a);
        },
        py::arg("x"), py::arg("algo") = "fast");
  }
  const std::tuple<const char*, BinaryOp, const char*, const char*> binary_ops[] = {
      {"sigmoid_backward", &sigmoid_backward, "dy", "y"},
      {"softmax_backward", &softmax_backward, "dy", "y"},
      {"mul", &mul, "a", "b"}};
  for (const auto& [name, op, a_name, b_name] : binary_ops) {
    m.def(
        name,
        [op = op](const Tensor& a, const Tensor& b, const std::string& algo) {
          const Algo al = parse_algo(algo);
          py::gil_scoped_release release;
          return op(a, b, al);
        },
        py::arg(a_name), py::arg(b_name), py::arg("algo") = "fast");
  }
  m.def(
      "dropout_mask",
      [](const Shape& shape, double rate, uint64_t seed, const std::string& device,
         const std::string& algo) {
        const Algo a = parse_algo(algo);
        const Device d = Device::parse(device);
        py::gil_scoped_release release;
        return dropout_mask(shape, rate, seed, d, a);
      },
      py::arg("shape"), py::arg("rate"), py::arg("seed"), py::arg("device") = "cpu",
      py::arg("algo") = "fast");
  m.def(
      "count_correct",
      [](const Tensor& scores, py::array_t<int64_t, py::array::c_style | py::array::forcecast>
                                   labels,
         const std::string& algo) {
        const Algo a = parse_algo(algo);
        NC_CHECK(labels.ndim() == 1, "count_correct: labels must be 1-D class ids, got ",
                 labels.ndim(), " dimensions");
        const int64_t* ids = labels.data();
        const int64_t n = labels.shape(0);
        py::gil_scoped_release release;
        return count_correct(scores, ids, n, a);
      },
      py::arg("scores"), py::arg("labels"), py::arg("algo") = "fast");
  m.def(
      "count_correct_dense",
      [](const Tensor& scores, const Tensor& targets, double threshold, const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        return count_correct(scores, targets, threshold, a);
      },
      py::arg("scores"), py::arg("targets"), py::arg("threshold") = 0.0,
      py::arg("algo") = "fast");

  // ---- optimizer updates: in place on param and its state -----------------------------------
  m.def(
      "sgd_update",
      [](Tensor& param, const Tensor& grad, std::optional<Tensor> velocity, double lr,
         double momentum, bool nesterov, const std::string& algo) {
        const Algo a = parse_algo(algo);
        Tensor v = optional_tensor(velocity);
        py::gil_scoped_release release;
        sgd_update(param, grad, v, lr, momentum, nesterov, a);
      },
      py::arg("param"), py::arg("grad"), py::arg("velocity"), py::arg("learning_rate"),
      py::arg("momentum") = 0.0, py::arg("nesterov") = false, py::arg("algo") = "fast");
  m.def(
      "adam_update",
      [](Tensor& param, const Tensor& grad, Tensor& m_state, Tensor& v_state, double lr,
         double beta1, double beta2, double epsilon, int64_t step, const std::string& algo) {
        const Algo a = parse_algo(algo);
        py::gil_scoped_release release;
        adam_update(param, grad, m_state, v_state, lr, beta1, beta2, epsilon, step, a);
      },
      py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"), py::arg("learning_rate"),
      py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), py::arg("step"),
      py::arg("algo") = "fast");
  m.def(
      "rmsprop_update",
      [](Tensor& param, const Tensor& grad, Tensor& ms, std::optional<Tensor> mom,
         std::optional<Tensor> mg, double lr, double rho, double momentum, double epsilon,
         bool centered, const std::string& algo) {
        const Algo a = parse_algo(algo);
        Tensor mom_t = optional_tensor(mom), mg_t = optional_tensor(mg);
        py::gil_scoped_release release;
        rmsprop_update(param, grad, ms, mom_t, mg_t, lr, rho, momentum, epsilon, centered, a);
      },
      py::arg("param"), py::arg("grad"), py::arg("ms"), py::arg("mom"), py::arg("mg"),
      py::arg("learning_rate"), py::arg("rho"), py::arg("momentum"), py::arg("epsilon"),
      py::arg("centered"), py::arg("algo") = "fast");
}
