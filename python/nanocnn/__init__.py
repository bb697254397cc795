"""nanocnn: a small, fast CNN library with hand-written native kernels.

    import nanocnn as nc
    import nanocnn.functional as F

    x = nc.tensor(images)                 # float32 copy, NCHW
    y = F.relu(F.conv2d(x, w, b, padding="same"))

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
    converted to float32 C-contiguous in a single copy. ``device`` is "cpu", "cuda" or "cuda:N".
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as \"cpu\", got {type(device).__name__}")
    if hasattr(data, "detach") and hasattr(data, "cpu"):  # a torch.Tensor, perhaps on a GPU
        data = data.detach().cpu()
    if isinstance(data, Tensor):
        copy = _C.empty(list(data.shape), data.device)
        np.copyto(copy.numpy(), data.numpy())
        return copy.to(device)
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


def from_dlpack(obj) -> Tensor:
    """A Tensor sharing the memory of ``obj`` (no copy), through the DLPack protocol.

    ``obj`` is any array that implements ``__dlpack__`` (a ``torch.Tensor``, a numpy array,
    ...) or a DLPack capsule. It must be float32, C-contiguous and in CPU memory; otherwise this
    raises ValueError (use :func:`tensor` for a converting copy). Writes through either side are
    seen by the other. The other way round, ``torch.from_dlpack(t)`` and ``np.from_dlpack(t)``
    share a nanocnn Tensor's memory.
    """
    if isinstance(obj, Tensor):
        return obj
    if hasattr(obj, "__dlpack__"):
        if hasattr(obj, "detach") and getattr(obj, "requires_grad", False):
            obj = obj.detach()  # torch refuses to export tensors that require grad
        return _C.from_dlpack_capsule(obj.__dlpack__())
    return _C.from_dlpack_capsule(obj)


def cuda_available() -> bool:
    """Whether nanocnn can run on a GPU here: built with CUDA, and a driver and GPU are present."""
    return _C.cuda_device_count() > 0


def empty_cache() -> None:
    """Returns the memory nanocnn keeps for reuse to the system.

    Freed tensors of 256 KiB or more are kept (up to 1 GiB in all) and handed out again for the
    next tensor of the same size, which spares a training step the page faults of fresh memory.
    Call this after a large one-off computation to give that memory back. Not released: each
    thread's scratch buffers (im2col columns, GEMM packing), which keep the largest size a
    kernel has needed so far.
    """
    _C.release_host_cache()


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
