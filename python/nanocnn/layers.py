"""Keras-style layers: Conv2D, MaxPooling2D, Flatten, Dense, Dropout, ReLU, Softmax, Activation.

Layers are put together with :class:`nanocnn.Sequential`; each one's forward and backward pass is
one call into the native module (plus one for a fused activation), on whatever device the model
lives on, with the geometry worked out once when the layer is built.

Layouts. At the model's boundary images are channels-last (N, H, W, C) as in Keras (or
(N, C, H, W) with ``data_format="channels_first"``); inside, activations are NCHW. So:

* ``output_shape`` is Keras's, e.g. ``(None, 16, 16, 32)`` for 32 channels of 16x16.
* :class:`Flatten` flattens the internal NCHW tensor in (C, H, W) order, exactly like
  ``torch.nn.Flatten`` (Keras flattens (H, W, C)); a Dense layer after it therefore takes
  the same weights as the equal PyTorch module.
* Weights (``get_weights``/``set_weights``, saved files) use PyTorch's layouts, not Keras's:
  Conv2D kernel (filters, in_channels, kh, kw) and bias (filters,); Dense kernel
  (units, in_features) and bias (units,). A Keras kernel converts with
  ``k.transpose(3, 2, 0, 1)`` (Conv2D) or ``k.T`` (Dense).

Activations (``activation=`` on Conv2D and Dense, or the ReLU/Softmax/Activation layers):
"relu", "sigmoid", "softmax" (over the features of a 2-D output) and None/"linear".
"""
from __future__ import annotations

import numpy as np

from . import _C, initializers, tensor
from . import functional as F
from ._C import Tensor

__all__ = [
    "Layer",
    "InputLayer",
    "Input",
    "Conv2D",
    "MaxPooling2D",
    "MaxPool2D",
    "Flatten",
    "Dense",
    "Dropout",
    "ReLU",
    "Softmax",
    "Activation",
    "get",
]

ACTIVATIONS = ("relu", "sigmoid", "softmax", "linear")
DATA_FORMATS = ("channels_last", "channels_first")


def _activation_name(owner: str, activation) -> str:
    if activation is None:
        return "linear"
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise ValueError(
            f"{owner}: activation must be one of {ACTIVATIONS} or None, got {activation!r}"
        )
    return activation.lower()


def _activate(name: str, z: Tensor) -> Tensor:
    if name == "relu":
        return _C.relu(z, "fast")
    if name == "sigmoid":
        return _C.sigmoid(z, "fast")
    if name == "softmax":
        return _C.softmax(z, "fast")
    return z


def _activate_backward(name: str, dy: Tensor, y: Tensor) -> Tensor:
    if name == "relu":
        return _C.relu_backward(dy, y, "fast")
    if name == "sigmoid":
        return _C.sigmoid_backward(dy, y, "fast")
    if name == "softmax":
        return _C.softmax_backward(dy, y, "fast")
    return dy


def _check_data_format(owner: str, data_format):
    """None (the model decides; channels_last unless told otherwise) or one of DATA_FORMATS."""
    if data_format is not None and data_format not in DATA_FORMATS:
        raise ValueError(f"{owner}: data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    return data_format


def _padding_mode(owner: str, padding) -> str:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"{owner}: padding must be \"valid\" or \"same\", got {padding!r}")
    return padding.lower()


def _shape_tuple(owner: str, name: str, shape) -> tuple:
    if shape is None:
        return None
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{owner}: {name} must be a tuple of ints, got {shape!r}") from None
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
                           for d in dims):
        raise ValueError(f"{owner}: {name} must be a tuple of positive ints, got {shape!r}")
    return tuple(int(d) for d in dims)


class Layer:
    """Base class of the layers.

    Life cycle: constructed with its hyper-parameters; ``build(input_shape, data_format,
    device)`` (done by the model) fixes the input shape, works out the geometry and creates the
    parameters; then ``forward(x, training)`` and ``backward(dy)`` run one native call each (plus
    the activation). Shapes given to build and kept inside (``_in``, ``_out``) are the internal
    ones without the batch: (C, H, W) for images, (features,) for flat data.

    Attributes: ``name``, ``built``, ``weights`` (Tensors, in ``weight_names`` order), ``grads``
    (the gradients of the last backward pass), ``output_shape`` / ``input_shape`` (Keras's,
    with ``None`` for the batch).
    """

    _default_name = "layer"
    weight_names: tuple = ()
    #: the activation applied at the layer's end ("linear" when none); the model may ask the last
    #: layer to skip it (activate=False) when the loss fuses it (softmax/sigmoid + cross-entropy).
    activation = "linear"

    def __init__(self, name: str | None = None, input_shape=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected argument(s) {sorted(kwargs)}")
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string without "
                             f"'.', got {name!r}")
        self.name = name
        self.input_shape_arg = _shape_tuple(type(self).__name__, "input_shape", input_shape)
        self.built = False
        self.data_format = "channels_last"  # the model's, set by build
        self.data_format_arg = None  # what the user asked for (None: whatever the model uses)
        # False for the model's first layer with weights: nothing needs the gradient of its input,
        # so backward() may skip computing it (and return None). Set by the model.
        self._needs_input_grad = True
        self.weights: list[Tensor] = []
        self.grads: list[Tensor] = []
        self._in = self._out = None
        self._activated = True

    # ---- building ----------------------------------------------------------------------------

    def build(self, input_shape: tuple, data_format: str = "channels_last",
              device: str = "cpu") -> tuple:
        """Fixes the internal input shape (no batch) and creates the weights on ``device``.
        Returns the internal output shape."""
        self.data_format = data_format
        self._in = tuple(input_shape)
        self._out = tuple(self._build(self._in))
        shapes = self.weight_shapes()
        self.weights = [tensor(init(shape), device=device)
                        for init, shape in zip(self._initializers(), shapes)]
        self.grads = [None] * len(self.weights)
        self.built = True
        return self._out

    def _build(self, in_shape: tuple) -> tuple:
        return in_shape

    def weight_shapes(self) -> list:
        return []

    def _initializers(self) -> list:
        return []

    # ---- running -----------------------------------------------------------------------------

    def forward(self, x: Tensor, training: bool = False, activate: bool = True) -> Tensor:
        """One forward pass on an internal-layout batch; keeps what backward needs."""
        raise NotImplementedError

    def backward(self, dy: Tensor) -> Tensor:
        """Gradient of the input from that of the output; sets ``self.grads``."""
        raise NotImplementedError

    def release(self) -> None:
        """Drops the tensors kept for backward."""

    # ---- weights -----------------------------------------------------------------------------

    def get_weights(self) -> list:
        """The weights as numpy arrays (copies), in PyTorch layouts (see the module doc)."""
        return [np.array(w.to("cpu").numpy(), copy=True) for w in self.weights]

    def set_weights(self, weights) -> None:
        """Replaces the weights; ``weights`` is a list of arrays of the shapes get_weights gives."""
        if not self.built:
            raise ValueError(f"layer {self.name!r} is not built yet; build the model first")
        weights = list(weights)
        if len(weights) != len(self.weights):
            raise ValueError(f"layer {self.name!r} has {len(self.weights)} weights "
                             f"{self.weight_names}, got {len(weights)} arrays")
        new = []
        for wname, old, value in zip(self.weight_names, self.weights, weights):
            array = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
            if tuple(array.shape) != tuple(old.shape):
                raise ValueError(f"layer {self.name!r}: {wname} must have shape {tuple(old.shape)} "
                                 f"(PyTorch layout), got {tuple(array.shape)}")
            if array.dtype.kind not in "fiu":
                raise TypeError(f"layer {self.name!r}: {wname} must be numeric, got {array.dtype}")
            new.append(tensor(array, device=old.device))
        self.weights = new

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"layer {self.name!r} is not built yet, so its size is unknown")
        return int(sum(int(np.prod(w.shape)) for w in self.weights))

    def to(self, device: str) -> None:
        self.weights = [w.to(device) for w in self.weights]
        self.grads = [None] * len(self.weights)

    # ---- description -------------------------------------------------------------------------

    def _keras_shape(self, shape):
        if shape is None:
            return None
        if len(shape) == 3 and self.data_format == "channels_last":
            c, h, w = shape
            return (None, h, w, c)
        return (None,) + tuple(shape)

    @property
    def output_shape(self):
        """Keras-style output shape, e.g. (None, 16, 16, 32); needs the layer built."""
        if not self.built:
            raise AttributeError(f"layer {self.name!r} is not built yet, so it has no output_shape")
        return self._keras_shape(self._out)

    @property
    def input_shape(self):
        if not self.built:
            raise AttributeError(f"layer {self.name!r} is not built yet, so it has no input_shape")
        return self._keras_shape(self._in)

    def flops(self) -> int:
        """Floating-point operations of the forward pass for one example (a multiply-add is 2;
        a comparison, exp or max counts 1)."""
        return 0

    def get_config(self) -> dict:
        config = {"name": self.name}
        if self.input_shape_arg is not None:
            config["input_shape"] = list(self.input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


def _activation_flops(name: str, shape) -> int:
    n = int(np.prod(shape))
    return {"linear": 0, "relu": n, "sigmoid": 4 * n, "softmax": 5 * n}[name]


class InputLayer(Layer):
    """Declares the input shape (without the batch), Keras's ``keras.Input(shape=...)``.

    As the first entry of a Sequential it sets the model's input shape, like ``input_shape=`` on
    the first layer; it is not listed in ``model.layers``.
    """

    _default_name = "input"

    def __init__(self, shape=None, input_shape=None, name=None, data_format=None):
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ValueError("InputLayer: shape is required, e.g. shape=(32, 32, 3)")
        super().__init__(name=name, input_shape=shape)
        self.data_format_arg = _check_data_format("InputLayer", data_format)

    def get_config(self):
        return {"name": self.name, "shape": list(self.input_shape_arg),
                "data_format": self.data_format_arg}


def Input(shape, name=None, data_format=None) -> InputLayer:  # noqa: N802 (Keras's name)
    """``keras.Input``: an :class:`InputLayer` to put first in a Sequential."""
    return InputLayer(shape=shape, name=name, data_format=data_format)


class Conv2D(Layer):
    """2-D convolution, Keras's ``Conv2D(filters, kernel_size, strides=1, padding="valid",
    data_format=None, dilation_rate=1, activation=None, use_bias=True,
    kernel_initializer="glorot_uniform", bias_initializer="zeros")``.

    Input images (N, H, W, C) at the model's boundary ((N, C, H, W) inside); output
    (N, H', W', filters). ``padding="same"`` keeps ceil(H / stride) rows, the odd extra row and
    column padded at the bottom/right (as in Keras and PyTorch). Weights: kernel
    (filters, C, kh, kw) and bias (filters,), PyTorch's layout (Keras's kernel is (kh, kw, C,
    filters)). ``activation="softmax"`` is not available on a convolution (use it on Dense).
    """

    _default_name = "conv2d"

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        op = "Conv2D"
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"{op}: filters must be a positive int, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = F._pair(op, "kernel_size", kernel_size, 1)
        self.strides = F._pair(op, "strides", strides, 1)
        self.dilation_rate = F._pair(op, "dilation_rate", dilation_rate, 1)
        self.padding = _padding_mode(op, padding)
        self.data_format_arg = _check_data_format(op, data_format)
        self.activation = _activation_name(op, activation)
        if self.activation == "softmax":
            raise ValueError("Conv2D: activation=\"softmax\" is not supported on a convolution's "
                             "4-D output; use it on a Dense layer (after Flatten)")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.weight_names = ("kernel", "bias") if self.use_bias else ("kernel",)

    def _build(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"Conv2D {self.name!r}: expects images, got input of shape "
                             f"{self._keras_shape(in_shape)}")
        c, h, w = in_shape
        self._w_shape = (self.filters, c) + self.kernel_size
        g = F._Conv2dGeometry(f"Conv2D {self.name!r}", (1, c, h, w), self._w_shape, self.strides,
                              self.padding, self.dilation_rate)
        self._geometry = g.args()  # stride, (top, left) padding, dilation, output size
        return (self.filters,) + tuple(g.out_size)

    def weight_shapes(self):
        return [self._w_shape] + ([(self.filters,)] if self.use_bias else [])

    def _initializers(self):
        return [self.kernel_initializer] + ([self.bias_initializer] if self.use_bias else [])

    def forward(self, x, training=False, activate=True):
        b = self.weights[1] if self.use_bias else None
        # A ReLU is fused into the convolution's output pass (and its backward into the
        # convolution's backward), saving a pass over the output each way.
        fused = activate and self.activation == "relu"
        z = _C.conv2d(x, self.weights[0], b, *self._geometry, "fast", fused)
        y = z if fused or not activate else _activate(self.activation, z)
        self._x, self._y, self._activated = x, y, activate
        return y

    def backward(self, dy):
        fused = self._activated and self.activation == "relu"
        if self._activated and not fused:
            dy = _activate_backward(self.activation, dy, self._y)
        dx, dw, db = _C.conv2d_backward(dy, self._x, self.weights[0], *self._geometry, "fast",
                                        self._y if fused else None, self._needs_input_grad)
        self.grads = [dw, db] if self.use_bias else [dw]
        self._x = self._y = None
        return dx

    # ---- fused with a following MaxPooling2D(2) (used by Sequential) --------------------------

    def _fuses_with(self, pool) -> bool:
        """Whether this layer and `pool` (the next layer) can run as one op: ReLU, then a 2x2
        window with stride 2 and no padding over this layer's whole output (but for an odd last
        row or column, which no window reads)."""
        if self.activation != "relu" or not isinstance(pool, MaxPooling2D) or not pool.built:
            return False
        kernel, stride, padding, out_size = pool._geometry
        _, h, w = self._out
        return (tuple(kernel) == (2, 2) and tuple(stride) == (2, 2) and tuple(padding) == (0, 0)
                and tuple(out_size) == (h // 2, w // 2) and h >= 2 and w >= 2)

    def forward_pooled(self, x, training=False):
        """relu(conv(x)) pooled 2x2 in one op. In training it keeps what backward_pooled needs
        (on the CPU each window's winner, not the full-size output)."""
        b = self.weights[1] if self.use_bias else None
        pooled, saved = _C.conv2d_relu_pool(x, self.weights[0], b, *self._geometry, "fast",
                                            training)
        self._x, self._y, self._activated = (x, saved, True) if training else (None, None, True)
        return pooled

    def backward_pooled(self, dpooled):
        dx, dw, db = _C.conv2d_relu_pool_backward(dpooled, self._x, self.weights[0], self._y,
                                                  *self._geometry, "fast",
                                                  self._needs_input_grad)
        self.grads = [dw, db] if self.use_bias else [dw]
        self._x = self._y = None
        return dx

    def release(self):
        self._x = self._y = None

    def flops(self):
        k, p, q = self._out
        c = self._in[0]
        macs = 2 * k * p * q * c * self.kernel_size[0] * self.kernel_size[1]
        return macs + (k * p * q if self.use_bias else 0) + _activation_flops(self.activation,
                                                                              self._out)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format_arg,
                "dilation_rate": list(self.dilation_rate), "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


class MaxPooling2D(Layer):
    """Max pooling, Keras's ``MaxPooling2D(pool_size=(2, 2), strides=None, padding="valid",
    data_format=None)``; ``strides`` defaults to ``pool_size``. ``"same"`` keeps
    ceil(H / stride) rows; padded cells never win a window. The gradient goes to each window's
    first maximum (row-major), as in PyTorch.
    """

    _default_name = "max_pooling2d"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        op = "MaxPooling2D"
        self.pool_size = F._pair(op, "pool_size", pool_size, 1)
        self.strides = self.pool_size if strides is None else F._pair(op, "strides", strides, 1)
        self.padding = _padding_mode(op, padding)
        self.data_format_arg = _check_data_format(op, data_format)

    def _build(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"MaxPooling2D {self.name!r}: expects images, got input of shape "
                             f"{self._keras_shape(in_shape)}")
        c, h, w = in_shape
        g = F._Pool2dGeometry(f"MaxPooling2D {self.name!r}", (1, c, h, w), self.pool_size,
                              self.strides, self.padding)
        self._geometry = (g.kernel, g.stride, g.padding, g.out_size)
        return (c,) + tuple(g.out_size)

    def forward(self, x, training=False, activate=True):
        self._x = x
        return _C.max_pool2d(x, *self._geometry, "fast")

    def backward(self, dy):
        dx = _C.max_pool2d_backward(dy, self._x, *self._geometry, "fast")
        self._x = None
        return dx

    def release(self):
        self._x = None

    def flops(self):
        return int(np.prod(self._out)) * self.pool_size[0] * self.pool_size[1]

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format_arg}


MaxPool2D = MaxPooling2D


class Flatten(Layer):
    """Flattens each example to a vector, in (C, H, W) order of the internal NCHW tensor (as
    ``torch.nn.Flatten`` does; Keras flattens channels-last (H, W, C)). Costs nothing: the
    output shares the input's memory."""

    _default_name = "flatten"

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format_arg = _check_data_format("Flatten", data_format)

    def _build(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x, training=False, activate=True):
        self._x_shape = list(x.shape)
        return x.reshape([self._x_shape[0], -1])

    def backward(self, dy):
        return dy.reshape(self._x_shape)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format_arg}


class Dense(Layer):
    """Fully connected layer, Keras's ``Dense(units, activation=None, use_bias=True,
    kernel_initializer="glorot_uniform", bias_initializer="zeros")``.

    Input (N, in_features) (put a Flatten before it after images); output (N, units).
    Weights: kernel (units, in_features) and bias (units,), PyTorch's layout (Keras's kernel is
    (in_features, units)).
    """

    _default_name = "dense"

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        self.units = int(units)
        self.activation = _activation_name("Dense", activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.weight_names = ("kernel", "bias") if self.use_bias else ("kernel",)

    def _build(self, in_shape):
        if len(in_shape) != 1:
            raise ValueError(f"Dense {self.name!r}: expects a flat input (N, features), got "
                             f"{self._keras_shape(in_shape)}; put a Flatten() layer before it")
        return (self.units,)

    def weight_shapes(self):
        return [(self.units, self._in[0])] + ([(self.units,)] if self.use_bias else [])

    def _initializers(self):
        return [self.kernel_initializer] + ([self.bias_initializer] if self.use_bias else [])

    def forward(self, x, training=False, activate=True):
        b = self.weights[1] if self.use_bias else None
        z = _C.linear(x, self.weights[0], b, "fast")
        y = _activate(self.activation, z) if activate else z
        self._x, self._y, self._activated = x, y, activate
        return y

    def backward(self, dy):
        if self._activated:
            dy = _activate_backward(self.activation, dy, self._y)
        dx, dw, db = _C.linear_backward(dy, self._x, self.weights[0], "fast")
        self.grads = [dw, db] if self.use_bias else [dw]
        self._x = self._y = None
        return dx

    def release(self):
        self._x = self._y = None

    def flops(self):
        return (2 * self._in[0] * self.units + (self.units if self.use_bias else 0)
                + _activation_flops(self.activation, self._out))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


class Dropout(Layer):
    """Inverted dropout, Keras's ``Dropout(rate, seed=None)``: in training each element is
    zeroed with probability ``rate`` and the rest scaled by 1 / (1 - rate); at inference it is
    the identity. The mask is drawn on the model's device by the native ``dropout_mask`` from a
    per-step seed, itself drawn from this layer's generator (seeded with ``seed``, or from the
    global generator, see ``nc.set_random_seed``)."""

    _default_name = "dropout"

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)) \
                or not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate must be a float in [0, 1), got {rate!r}")
        if noise_shape is not None:
            raise ValueError("Dropout: noise_shape is not supported (the mask is per element)")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"Dropout: seed must be an int or None, got {seed!r}")
        self.rate = float(rate)
        self.seed = None if seed is None else int(seed)
        self._rng = None
        self._mask = None

    def _build(self, in_shape):
        seed = self.seed if self.seed is not None else int(
            initializers.global_rng().integers(0, 2**63))
        self._rng = np.random.default_rng(seed)
        return in_shape

    def forward(self, x, training=False, activate=True):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        seed = int(self._rng.integers(0, 2**63))
        self._mask = _C.dropout_mask(list(x.shape), self.rate, seed, x.device, "fast")
        return _C.mul(x, self._mask, "fast")

    def backward(self, dy):
        if self._mask is None:
            return dy
        dx = _C.mul(dy, self._mask, "fast")
        self._mask = None
        return dx

    def release(self):
        self._mask = None

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Activation(Layer):
    """Applies an activation: ``Activation("relu" | "sigmoid" | "softmax" | "linear")``.
    Softmax needs a 2-D (N, features) input."""

    _default_name = "activation"

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activation_name(type(self).__name__, activation)

    def _build(self, in_shape):
        if self.activation == "softmax" and len(in_shape) != 1:
            raise ValueError(f"{type(self).__name__} {self.name!r}: softmax needs a flat input "
                             f"(N, features), got {self._keras_shape(in_shape)}")
        return in_shape

    def forward(self, x, training=False, activate=True):
        y = _activate(self.activation, x) if activate else x
        self._y, self._activated = y, activate
        return y

    def backward(self, dy):
        dx = _activate_backward(self.activation, dy, self._y) if self._activated else dy
        self._y = None
        return dx

    def release(self):
        self._y = None

    def flops(self):
        return _activation_flops(self.activation, self._out)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class ReLU(Activation):
    """``max(x, 0)``, Keras's ``ReLU()`` (its max_value/negative_slope/threshold options are not
    supported)."""

    _default_name = "re_lu"

    def __init__(self, **kwargs):
        super().__init__("relu", **kwargs)

    def get_config(self):
        return Layer.get_config(self)


class Softmax(Activation):
    """Softmax over the features of a (N, features) input, Keras's ``Softmax()``."""

    _default_name = "softmax"

    def __init__(self, axis=-1, **kwargs):
        if axis not in (-1, 1):
            raise ValueError(f"Softmax: only the feature axis (-1) is supported, got axis={axis!r}")
        super().__init__("softmax", **kwargs)

    def get_config(self):
        return Layer.get_config(self)


_CLASSES = {c.__name__: c for c in (InputLayer, Conv2D, MaxPooling2D, Flatten, Dense, Dropout,
                                    Activation, ReLU, Softmax)}


def get(config: dict) -> Layer:
    """A layer from ``{"class_name": ..., "config": {...}}`` (as written by ``save``)."""
    if not isinstance(config, dict) or config.get("class_name") not in _CLASSES:
        name = config.get("class_name") if isinstance(config, dict) else config
        raise ValueError(f"unknown layer class {name!r}; expected one of {sorted(_CLASSES)}")
    return _CLASSES[config["class_name"]].from_config(dict(config.get("config", {})))


def serialize(layer: Layer) -> dict:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}
