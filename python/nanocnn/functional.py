"""nanocnn.functional: the ops, mirroring ``torch.nn.functional``.

Every function accepts numpy arrays (any real dtype, converted to float32) or nanocnn Tensors and
returns Tensors. Layouts follow PyTorch: activations (N, C, H, W), conv weights (K, C, R, S),
dense weights (out_features, in_features).

Backward functions take the upstream gradient ``dy`` (same shape as the op's output) and return
the gradients of the op's inputs, so a training step is a chain of explicit calls::

    y = F.conv2d(x, w, b, padding="same")            # forward
    dx, dw, db = F.conv2d_backward(dy, x, w, padding="same")

Each function takes ``algo="reference"`` to run the plain reference loop (csrc/cpu/reference.cpp)
instead of the production kernel: slow, but the readable definition of the op.

Bad arguments raise ``ValueError`` or ``TypeError`` naming the argument and the shapes.
"""
from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from . import _C, tensor
from ._C import Tensor

__all__ = [
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "dropout",
    "mul",
    "linear",
    "linear_backward",
    "softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "conv2d_output_shape",
    "max_pool2d_output_shape",
]

_ALGOS = ("fast", "reference")


# ---- argument handling --------------------------------------------------------------------------


def _as_tensor(op: str, name: str, value) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if value is None:
        raise TypeError(f"{op}: {name} is required, got None")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor, perhaps on a GPU
        value = value.detach().cpu()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{op}: {name} must be an array or a nanocnn.Tensor ({err})") from None
    if array.dtype.kind not in "fiu":
        raise TypeError(
            f"{op}: {name} must hold real numbers (float32 preferred), got dtype {array.dtype}"
        )
    return tensor(array)


def _check_algo(op: str, algo) -> str:
    if algo not in _ALGOS:
        raise ValueError(f"{op}: algo must be one of {_ALGOS}, got {algo!r}")
    return algo


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def _pair(op: str, name: str, value, minimum: int) -> tuple[int, int]:
    if _is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    if max(pair) > 2**30:
        raise ValueError(f"{op}: {name} must be <= 2**30, got {value!r}")
    return pair


def _check_rank(op: str, name: str, t: Tensor, rank: int, layout: str) -> None:
    if t.ndim != rank:
        raise ValueError(f"{op}: {name} must have {rank} dimensions {layout}, got shape {t.shape}")


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """Keras/TensorFlow "same": output ceil(size / stride), the odd extra pad at the end.

    For stride 1 this is also PyTorch's padding="same" (total dilation * (kernel - 1)).
    Returns (pad_before, pad_after, out).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2, out


def _padding_amounts(op: str, padding, kernel, stride, dilation, spatial):
    """Padding argument -> ((top, bottom), (left, right)) for the given kernel/stride/input size."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            (top, bottom, _), (left, right, _) = (
                _same_padding(spatial[i], kernel[i], stride[i], dilation[i]) for i in range(2)
            )
            return (top, bottom), (left, right)
        raise ValueError(f"{op}: padding must be \"same\", \"valid\", an int or a pair, got {padding!r}")
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        (top, bottom), (left, right) = (_pair(op, "padding", p, 0) for p in padding)
        return (top, bottom), (left, right)
    ph, pw = _pair(op, "padding", padding, 0)
    return (ph, ph), (pw, pw)


def _out_size(size: int, before: int, after: int, kernel: int, stride: int, dilation: int) -> int:
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


class _Conv2dGeometry:
    """Explicit top/left padding and output size of one convolution, for the native kernels."""

    def __init__(self, op, x_shape, w_shape, stride, padding, dilation):
        self.stride = _pair(op, "stride", stride, 1)
        self.dilation = _pair(op, "dilation", dilation, 1)
        kernel = (w_shape[2], w_shape[3])
        spatial = (x_shape[2], x_shape[3])
        pads = _padding_amounts(op, padding, kernel, self.stride, self.dilation, spatial)
        self.padding = (pads[0][0], pads[1][0])
        self.out_size = tuple(
            _out_size(spatial[i], pads[i][0], pads[i][1], kernel[i], self.stride[i], self.dilation[i])
            for i in range(2)
        )
        if min(self.out_size) < 1:
            padded = tuple(spatial[i] + sum(pads[i]) for i in range(2))
            effective = tuple(self.dilation[i] * (kernel[i] - 1) + 1 for i in range(2))
            raise ValueError(
                f"{op}: the kernel {kernel} (dilated extent {effective}) is larger than the padded "
                f"input {padded}; x is {tuple(x_shape)}, w is {tuple(w_shape)}"
            )

    def args(self):
        return self.stride, self.padding, self.dilation, self.out_size


# The geometry's native arguments, remembered per (op, shapes, arguments): working them out in
# Python took 4-8 us a call, more than a batch-1 pooling or small convolution itself. Only
# arguments made of exact ints, strings, None, bools and tuples or lists of those are
# remembered, so a key equals another only when the arguments mean the same (1 and True are told
# apart); a call whose arguments raise is never remembered, so it raises again.
_GEOMETRY_CACHE: dict = {}
_GEOMETRY_CACHE_SIZE = 512
_UNKEYED = object()


def _frozen(value):
    kind = type(value)
    if kind is int or kind is str or value is None:
        return value
    if kind is bool:
        return (bool, value)
    if kind is tuple or kind is list:
        items = tuple(_frozen(v) for v in value)
        if _UNKEYED not in items:
            return items
    return _UNKEYED


def _geometry_args(cls, op, *params):
    """cls(op, *params).args(), remembered (see _GEOMETRY_CACHE)."""
    key = _frozen(params)
    if key is _UNKEYED:
        return cls(op, *params).args()
    key = (cls, op, key)
    args = _GEOMETRY_CACHE.get(key)
    if args is None:
        args = cls(op, *params).args()
        if len(_GEOMETRY_CACHE) >= _GEOMETRY_CACHE_SIZE:
            _GEOMETRY_CACHE.clear()
        _GEOMETRY_CACHE[key] = args
    return args


def _conv_inputs(op, x, w):
    x = _as_tensor(op, "x", x)
    w = _as_tensor(op, "w", w)
    _check_rank(op, "x", x, 4, "(N, C, H, W)")
    _check_rank(op, "w", w, 4, "(K, C, R, S)")
    return x, w


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1) -> tuple:
    """The shape (N, K, P, Q) that conv2d gives for these input and weight shapes."""
    g = _Conv2dGeometry("conv2d", tuple(x_shape), tuple(w_shape), stride, padding, dilation)
    return (x_shape[0], w_shape[0]) + g.out_size


# ---- convolution --------------------------------------------------------------------------------


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, *, algo: str = "fast") -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch).

    x is (N, C, H, W), w is (K, C, R, S), b is (K,) or None; returns (N, K, P, Q).
    ``padding``: an int, a pair (pad_h, pad_w), a pair of pairs ((top, bottom), (left, right)),
    "valid" (none) or "same" (output size ceil(H / stride); with an even kernel the extra row and
    column go at the bottom and right, as in PyTorch and Keras).
    """
    op = "conv2d"
    _check_algo(op, algo)
    x, w = _conv_inputs(op, x, w)
    b = None if b is None else _as_tensor(op, "b", b)
    args = _geometry_args(_Conv2dGeometry, op, x.shape, w.shape, stride, padding, dilation)
    return _C.conv2d(x, w, b, *args, algo)


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, *, algo: str = "fast"):
    """Gradients of conv2d: returns (dx, dw, db) with the shapes of x, w and (K,).

    ``dy`` is the gradient of the output (N, K, P, Q); the other arguments are those of the
    forward call.
    """
    op = "conv2d_backward"
    _check_algo(op, algo)
    x, w = _conv_inputs(op, x, w)
    dy = _as_tensor(op, "dy", dy)
    args = _geometry_args(_Conv2dGeometry, op, x.shape, w.shape, stride, padding, dilation)
    return _C.conv2d_backward(dy, x, w, *args, algo)


# ---- max pooling --------------------------------------------------------------------------------


class _Pool2dGeometry:
    def __init__(self, op, x_shape, kernel_size, stride, padding, ceil_mode=False):
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"{op}: ceil_mode must be a bool, got {ceil_mode!r}")
        self.kernel = _pair(op, "kernel_size", kernel_size, 1)
        self.stride = self.kernel if stride is None else _pair(op, "stride", stride, 1)
        spatial = (x_shape[2], x_shape[3])
        if isinstance(padding, str):
            pads = _padding_amounts(op, padding, self.kernel, self.stride, (1, 1), spatial)
        else:
            ph, pw = _pair(op, "padding", padding, 0)
            if ph > self.kernel[0] // 2 or pw > self.kernel[1] // 2:
                raise ValueError(
                    f"{op}: padding must be at most half the kernel size, got padding "
                    f"{(ph, pw)} for kernel_size {self.kernel}"
                )
            pads = ((ph, ph), (pw, pw))
        self.padding = (pads[0][0], pads[1][0])
        self.out_size = tuple(
            _out_size(spatial[i], pads[i][0], pads[i][1], self.kernel[i], self.stride[i], 1)
            for i in range(2)
        )
        if ceil_mode and isinstance(padding, str) and padding.lower() == "same":
            raise ValueError(f"{op}: ceil_mode applies to numeric padding, not \"same\"")
        if ceil_mode:
            # PyTorch's rule: round the window count up, but the last window must start inside
            # the input or its left/top padding.
            out = []
            for i in range(2):
                span = spatial[i] + 2 * pads[i][0] - self.kernel[i]
                n = -(-span // self.stride[i]) + 1
                if n > 0 and (n - 1) * self.stride[i] >= spatial[i] + pads[i][0]:
                    n -= 1
                out.append(n)
            self.out_size = tuple(out)
        if min(self.out_size) < 1:
            raise ValueError(
                f"{op}: kernel_size {self.kernel} is larger than the padded input "
                f"{tuple(spatial[i] + sum(pads[i]) for i in range(2))}; x is {tuple(x_shape)}"
            )

    def args(self):
        return self.kernel, self.stride, self.padding, self.out_size


def max_pool2d_output_shape(x_shape, kernel_size, stride=None, padding=0, ceil_mode=False) -> tuple:
    """The shape (N, C, P, Q) that max_pool2d gives for this input shape."""
    g = _Pool2dGeometry("max_pool2d", tuple(x_shape), kernel_size, stride, padding, ceil_mode)
    return (x_shape[0], x_shape[1]) + g.out_size


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, *, algo: str = "fast") -> Tensor:
    """2-D max pooling. x is (N, C, H, W); ``stride`` defaults to ``kernel_size``.

    ``padding``: an int or a pair (at most half the kernel, as in PyTorch; padded cells never
    win), "valid", or "same" (Keras: output ceil(H / stride)). ``ceil_mode`` rounds the number
    of windows up instead of down, as in PyTorch (partial windows at the end).
    """
    op = "max_pool2d"
    _check_algo(op, algo)
    x = _as_tensor(op, "x", x)
    _check_rank(op, "x", x, 4, "(N, C, H, W)")
    args = _geometry_args(_Pool2dGeometry, op, x.shape, kernel_size, stride, padding, ceil_mode)
    return _C.max_pool2d(x, *args, algo)


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0, ceil_mode=False, *,
                        algo: str = "fast") -> Tensor:
    """Gradient of max_pool2d with respect to x.

    Each window's gradient goes to its first maximum in row-major order (PyTorch's rule); where
    windows overlap, the contributions add up.
    """
    op = "max_pool2d_backward"
    _check_algo(op, algo)
    x = _as_tensor(op, "x", x)
    dy = _as_tensor(op, "dy", dy)
    _check_rank(op, "x", x, 4, "(N, C, H, W)")
    args = _geometry_args(_Pool2dGeometry, op, x.shape, kernel_size, stride, padding, ceil_mode)
    return _C.max_pool2d_backward(dy, x, *args, algo)


# ---- ReLU ---------------------------------------------------------------------------------------


def relu(x, *, algo: str = "fast") -> Tensor:
    """max(x, 0) element-wise (NaN propagates)."""
    _check_algo("relu", algo)
    return _C.relu(_as_tensor("relu", "x", x), algo)


def relu_backward(dy, y, *, algo: str = "fast") -> Tensor:
    """Gradient of relu from its *output* y: dy where y > 0, else 0."""
    op = "relu_backward"
    _check_algo(op, algo)
    return _C.relu_backward(_as_tensor(op, "dy", dy), _as_tensor(op, "y", y), algo)


def sigmoid(x, *, algo: str = "fast") -> Tensor:
    """1 / (1 + exp(-x)) element-wise, computed without overflow for large |x|."""
    _check_algo("sigmoid", algo)
    return _C.sigmoid(_as_tensor("sigmoid", "x", x), algo)


def sigmoid_backward(dy, y, *, algo: str = "fast") -> Tensor:
    """Gradient of sigmoid from its *output* y: dy * y * (1 - y)."""
    op = "sigmoid_backward"
    _check_algo(op, algo)
    return _C.sigmoid_backward(_as_tensor(op, "dy", dy), _as_tensor(op, "y", y), algo)


def softmax(x, *, algo: str = "fast") -> Tensor:
    """Softmax over the last axis of x (N, C), i.e. ``torch.softmax(x, dim=1)``; stable (the
    row maximum is subtracted first)."""
    op = "softmax"
    _check_algo(op, algo)
    x = _as_tensor(op, "x", x)
    _check_rank(op, "x", x, 2, "(N, C)")
    return _C.softmax(x, algo)


def softmax_backward(dy, y, *, algo: str = "fast") -> Tensor:
    """Gradient of softmax from its *output* y (N, C): y * (dy - sum_j dy_j y_j) per row."""
    op = "softmax_backward"
    _check_algo(op, algo)
    dy, y = _as_tensor(op, "dy", dy), _as_tensor(op, "y", y)
    _check_rank(op, "y", y, 2, "(N, C)")
    return _C.softmax_backward(dy, y, algo)


def dropout(x, rate: float, seed: int, *, algo: str = "fast"):
    """Inverted dropout: returns ``(y, mask)`` with y = x * mask, where each mask element is 0
    with probability ``rate`` and 1 / (1 - rate) otherwise. The mask is a pure function of
    (seed, element index), the same on every device and thread count. The backward pass is
    ``dx = dy * mask`` (``mul(dy, mask)``)."""
    op = "dropout"
    _check_algo(op, algo)
    x = _as_tensor(op, "x", x)
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) \
            or not 0.0 <= rate < 1.0:
        raise ValueError(f"{op}: rate must be in [0, 1), got {rate!r}")
    if not _is_int(seed) or not 0 <= seed < 2**64:
        raise ValueError(f"{op}: seed must be an int in [0, 2**64), got {seed!r}")
    mask = _C.dropout_mask(list(x.shape), float(rate), int(seed), x.device, algo)
    return _C.mul(x, mask, algo), mask


def mul(a, b, *, algo: str = "fast") -> Tensor:
    """Element-wise product of two tensors of one shape."""
    _check_algo("mul", algo)
    return _C.mul(_as_tensor("mul", "a", a), _as_tensor("mul", "b", b), algo)


# ---- dense --------------------------------------------------------------------------------------


def _flatten_features(op: str, name: str, t: Tensor) -> Tensor:
    """(*, features) -> (N, features); a 1-D input is one sample."""
    if t.ndim == 0:
        raise ValueError(f"{op}: {name} must have at least 1 dimension, got shape {t.shape}")
    return t.reshape([-1 if t.size else 0, t.shape[-1]]) if t.ndim != 2 else t


def linear(x, w, b=None, *, algo: str = "fast") -> Tensor:
    """y = x @ w.T + b. x is (*, in_features), w is (out_features, in_features), b is (out,)."""
    op = "linear"
    _check_algo(op, algo)
    x = _as_tensor(op, "x", x)
    w = _as_tensor(op, "w", w)
    b = None if b is None else _as_tensor(op, "b", b)
    _check_rank(op, "w", w, 2, "(out_features, in_features)")
    y = _C.linear(_flatten_features(op, "x", x), w, b, algo)
    return y if x.ndim == 2 else y.reshape(list(x.shape[:-1]) + [w.shape[0]])


def linear_backward(dy, x, w, *, algo: str = "fast"):
    """Gradients of linear: returns (dx, dw, db) with the shapes of x, w and (out_features,)."""
    op = "linear_backward"
    _check_algo(op, algo)
    x = _as_tensor(op, "x", x)
    w = _as_tensor(op, "w", w)
    dy = _as_tensor(op, "dy", dy)
    _check_rank(op, "w", w, 2, "(out_features, in_features)")
    if x.ndim != 2:
        expected = tuple(x.shape[:-1]) + (w.shape[0],)
        if tuple(dy.shape) != expected:
            raise ValueError(
                f"{op}: dy must have the output's shape {expected}, got {dy.shape} "
                f"(x is {x.shape}, w is {w.shape})"
            )
        dy = _flatten_features(op, "dy", dy)
    dx, dw, db = _C.linear_backward(dy, _flatten_features(op, "x", x), w, algo)
    return (dx if x.ndim == 2 else dx.reshape(list(x.shape))), dw, db


# ---- fused losses -------------------------------------------------------------------------------


def _class_ids(op: str, labels) -> np.ndarray:
    array = np.asarray(labels)  # a GPU Tensor comes down as a copy; a CPU one as a view
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind == "f":
        # Non-finite values are refused before the cast (which would warn on them); the cast
        # round-trip then catches fractions and values outside int64.
        ids = array.astype(np.int64) if np.all(np.isfinite(array)) else None
        if ids is None or not np.array_equal(ids, array):
            raise TypeError(
                f"{op}: labels must be integer class ids, got non-integer values of dtype {array.dtype}"
            )
        return ids
    raise TypeError(f"{op}: labels must be integer class ids, got dtype {array.dtype}")


def _loss_pair(result):
    """(loss Tensor of shape (), dlogits) from a native loss -> (loss as a Python float, dlogits).

    The native ops leave the loss on the logits' device (so a training step need not wait for
    it); the functional API returns it as a float, which waits for it.
    """
    loss, dlogits = result
    return float(np.asarray(loss)), dlogits


def softmax_cross_entropy(logits, labels, *, algo: str = "fast"):
    """Softmax followed by cross-entropy, fused and numerically stable.

    ``logits`` is (N, C). ``labels`` is either (N,) integer class ids in [0, C), or (N, C) class
    probabilities (e.g. one-hot rows). Returns ``(loss, dlogits)``: the mean loss over the batch
    as a Python float, and its gradient with respect to the logits, a Tensor (N, C).
    Equivalent to ``torch.nn.functional.cross_entropy(logits, labels)`` and its gradient.
    """
    op = "softmax_cross_entropy"
    _check_algo(op, algo)
    logits = _as_tensor(op, "logits", logits)
    _check_rank(op, "logits", logits, 2, "(N, num_classes)")
    shape = labels.shape if isinstance(labels, Tensor) else np.shape(labels)
    if len(shape) == 2:
        if tuple(shape) != logits.shape:
            raise ValueError(
                f"{op}: labels given as class probabilities must have the same shape as "
                f"logits {logits.shape}, got {tuple(shape)}"
            )
        targets = _as_tensor(op, "labels", labels)
        return _loss_pair(_C.softmax_cross_entropy_soft(logits, targets, algo))
    if len(shape) != 1:
        raise ValueError(
            f"{op}: labels must be (N,) class ids or (N, C) probabilities, got shape {tuple(shape)} "
            f"for logits {logits.shape}"
        )
    return _loss_pair(_C.softmax_cross_entropy(logits, _class_ids(op, labels), algo))


def sigmoid_binary_cross_entropy(logits, targets, *, algo: str = "fast"):
    """Sigmoid followed by binary cross-entropy, fused and numerically stable.

    ``logits`` and ``targets`` have the same shape (an (N, 1) logit column also pairs with (N,)
    targets, as in Keras); targets are in [0, 1]. Returns ``(loss, dlogits)``: the mean over all
    elements as a Python float, and the gradient with respect to the logits (logits' shape).
    Equivalent to ``torch.nn.functional.binary_cross_entropy_with_logits``.
    """
    op = "sigmoid_binary_cross_entropy"
    _check_algo(op, algo)
    logits = _as_tensor(op, "logits", logits)
    targets = _as_tensor(op, "targets", targets)
    if logits.shape != targets.shape:
        if logits.ndim == 2 and logits.shape[1] == 1 and targets.shape == (logits.shape[0],):
            targets = targets.reshape(list(logits.shape))
        else:
            raise ValueError(
                f"{op}: logits and targets must have the same shape, got {logits.shape} and "
                f"{targets.shape}"
            )
    return _loss_pair(_C.sigmoid_binary_cross_entropy(logits, targets, algo))
