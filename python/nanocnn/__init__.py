"""nanocnn: a small, fast CNN library with hand-written native kernels.

    import nanocnn as nc
    import nanocnn.functional as F

    x = nc.tensor(images)                 # float32 copy, NCHW
    y = F.relu(F.conv2d(x, w, b, padding="same"))
    xg = nc.tensor(images, device="cuda") # on the GPU (if nc.cuda_available())

    model = nc.Sequential([nc.layers.Conv2D(16, 3, activation="relu", input_shape=(32, 32, 3)),
                           nc.layers.MaxPooling2D(2), nc.layers.Flatten(),
                           nc.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5)   # images channels-last (N, H, W, C), like Keras

See README.md for the overview, nanocnn.functional for the ops and nanocnn.models for the
Keras-style model.
"""
from __future__ import annotations

import numpy as np

from . import _C
from ._C import Tensor

__version__: str = _C.__version__

__all__ = [
    "Tensor",
    "tensor",
    "zeros",
    "from_dlpack",
    "cuda_available",
    "cuda_device_count",
    "cuda_get_device_name",
    "cuda_synchronize",
    "cuda_memory_allocated",
    "cuda_memory_reserved",
    "set_num_threads",
    "get_num_threads",
    "empty_cache",
    "functional",
    "data",
    "datasets",
    "layers",
    "losses",
    "optimizers",
    "initializers",
    "callbacks",
    "models",
    "Sequential",
    "load_model",
    "set_random_seed",
    "__version__",
]

_REAL_KINDS = "fiu"  # float, signed and unsigned integer dtypes convert to float32


def tensor(data, device: str = "cpu") -> Tensor:
    """A float32 copy of ``data`` (an array-like or a Tensor) on ``device``.

    ``data`` may be any real dtype (float64, integers, ...) and any memory layout; it is
    converted to float32 C-contiguous in a single copy. ``device`` is "cpu", "cuda" or "cuda:N";
    for a GPU the data goes up in one host-to-device copy.
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as \"cpu\", got {type(device).__name__}")
    if hasattr(data, "detach") and hasattr(data, "cpu"):  # a torch.Tensor, perhaps on a GPU
        data = data.detach().cpu()
    if isinstance(data, Tensor):
        return _C.copy_to(data, device)  # a new tensor, whatever the two devices
    array = np.asarray(data)
    if array.dtype.kind not in _REAL_KINDS:
        raise TypeError(
            f"data must hold real numbers (float or integer dtype), got dtype {array.dtype}"
        )
    out = _C.empty(list(array.shape), "cpu")
    np.copyto(out.numpy(), array, casting="unsafe")  # the one copy (and the dtype conversion)
    return out if device == "cpu" else out.to(device)


def zeros(shape, device: str = "cpu") -> Tensor:
    """A float32 tensor of zeros; ``shape`` is an int or a sequence of ints."""
    dims = [shape] if isinstance(shape, (int, np.integer)) else list(shape)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"zeros: shape must be an int or a sequence of ints, got {shape!r}")
    return _C.zeros([int(d) for d in dims], device)


_DLPACK_CUDA = 2
_LEGACY_DEFAULT_STREAM = 1  # DLPack's name for CUDA's legacy default stream, which nanocnn uses


def from_dlpack(obj) -> Tensor:
    """A Tensor sharing the memory of ``obj`` (no copy), through the DLPack protocol.

    ``obj`` is any array that implements ``__dlpack__`` (a ``torch.Tensor`` on the CPU or a GPU,
    a numpy array, a CuPy array, ...) or a DLPack capsule. It must be float32 and C-contiguous,
    in CPU or CUDA memory; otherwise this raises ValueError (use :func:`tensor` for a converting
    copy). Writes through either side are seen by the other. For GPU memory, nanocnn asks the
    producer to make the data ready on the default stream, where nanocnn's kernels run. The other
    way round, ``torch.from_dlpack(t)`` and ``np.from_dlpack(t)`` share a nanocnn Tensor's memory
    (a GPU tensor is exported once its device has finished the work queued on it).
    """
    if isinstance(obj, Tensor):
        return obj
    if hasattr(obj, "__dlpack__"):
        if hasattr(obj, "detach") and getattr(obj, "requires_grad", False):
            obj = obj.detach()  # torch refuses to export tensors that require grad
        on_gpu = hasattr(obj, "__dlpack_device__") and int(obj.__dlpack_device__()[0]) == _DLPACK_CUDA
        if on_gpu:
            return _C.from_dlpack_capsule(obj.__dlpack__(stream=_LEGACY_DEFAULT_STREAM))
        return _C.from_dlpack_capsule(obj.__dlpack__())
    return _C.from_dlpack_capsule(obj)


def cuda_available() -> bool:
    """Whether nanocnn can run on a GPU here: built with CUDA, a driver and a GPU are present, and
    the build holds code for the GPU's architecture (``nc._C.cuda_unavailable_reason()`` says why
    not). The first call on a GPU machine initialises CUDA on cuda:0."""
    return _C.cuda_available()


def cuda_device_count() -> int:
    """Number of CUDA devices visible to nanocnn (0 without CUDA, a driver or a GPU)."""
    return _C.cuda_device_count()


def cuda_get_device_name(index: int = 0) -> str:
    """The name of GPU ``index``, e.g. "NVIDIA H100 80GB HBM3"."""
    return _C.cuda_device_name(_device_index(index))


def cuda_synchronize(device: str = "cuda") -> None:
    """Waits until ``device`` has finished every kernel and copy queued on it.

    Ops on the GPU return as soon as their kernels are queued; time them only after this. An
    error of a kernel that ran meanwhile is raised here.
    """
    _C.cuda_synchronize(device)


def cuda_memory_allocated(device="cuda") -> int:
    """Bytes of GPU memory held by live tensors on ``device`` ("cuda", "cuda:N" or an index)."""
    return _C.cuda_memory_allocated(_device_index(device))


def cuda_memory_reserved(device="cuda") -> int:
    """Bytes of GPU memory nanocnn holds on ``device``: live tensors plus freed blocks it keeps
    for reuse (its caching allocator); :func:`empty_cache` gives the latter back."""
    return _C.cuda_memory_reserved(_device_index(device))


def _device_index(device) -> int:
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
        return int(device)
    if isinstance(device, str):
        if device == "cuda":
            return 0
        if device.startswith("cuda:") and device[5:].isdigit():
            return int(device[5:])
        raise ValueError(f"device must be \"cuda\", \"cuda:N\" or an index, got {device!r}")
    raise TypeError(f"device must be a string such as \"cuda:0\" or an int, got {type(device).__name__}")


def empty_cache() -> None:
    """Returns the memory nanocnn keeps for reuse to the system (host and GPU).

    Host: freed tensors of 256 KiB or more are kept (up to 1 GiB in all) and handed out again
    for the next tensor of the same size, which spares a training step the page faults of fresh
    memory. GPU: every freed block is kept for reuse (no cudaMalloc/cudaFree in a steady training
    step). Call this after a large one-off computation to give that memory back. Not released:
    each thread's scratch buffers (im2col columns, GEMM packing), which keep the largest size a
    kernel has needed so far.
    """
    _C.release_host_cache()
    _C.release_cuda_cache()


def set_num_threads(n: int) -> None:
    """Sets how many CPU threads nanocnn's kernels use (default: all cores, or OMP_NUM_THREADS).

    It does not affect other libraries that use OpenMP in the same process (PyTorch keeps its
    own setting), and results do not depend on it.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    if n > 1024:  # past the OS's limits, OpenMP exits the process instead of raising
        raise ValueError(f"set_num_threads: n must be <= 1024, got {n}")
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    """How many CPU threads nanocnn's kernels use."""
    return _C.get_num_threads()


from . import functional  # noqa: E402  (needs tensor() above)
from . import data, datasets  # noqa: E402
from . import callbacks, initializers, layers, losses, optimizers  # noqa: E402
from . import models  # noqa: E402
from .initializers import set_random_seed  # noqa: E402
from .models import Sequential  # noqa: E402
from .saving import load_model  # noqa: E402
