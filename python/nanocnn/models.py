"""The Keras-style model: :class:`Sequential`.

    model = nc.Sequential([
        nc.layers.Conv2D(16, 3, padding="same", activation="relu", input_shape=(32, 32, 3)),
        nc.layers.MaxPooling2D(2),
        nc.layers.Flatten(),
        nc.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=5, batch_size=32, validation_split=0.1)
    model.evaluate(x_test, y_test); model.predict(x_test)

Devices. The model lives on one device (``model.to("cuda")``, or ``compile(device=...)``):
parameters, activations, gradients and optimizer state stay there through ``fit``,
``evaluate`` and ``predict``. Per step only the input batch goes up (numpy NHWC -> one
transposing copy to NCHW -> the device) and the loss and accuracy stay on the device as shape-()
tensors until the progress bar (or a callback that asks for per-batch logs) needs them. Every
transfer is in :meth:`Sequential._input` (up) and :func:`_host` (down).

Images are channels-last (N, H, W, C) at the model's boundary (Keras's default), NCHW inside;
``data_format="channels_first"`` on the layers (or on ``nc.layers.Input``) opts out. A
``nanocnn.Tensor`` passed as ``x`` is taken as already in the internal NCHW layout (no copy on
the model's device), which suits benchmarks and GPU-resident data.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time

import numpy as np

from . import _C, callbacks as callbacks_module, initializers, layers as layers_module
from . import losses as losses_module, optimizers as optimizers_module, tensor
from ._C import Tensor
from .layers import InputLayer, Layer

__all__ = ["Sequential"]

_ACCURACY_NAMES = {
    "accuracy": None, "acc": None,
    "categorical_accuracy": "categorical_crossentropy",
    "sparse_categorical_accuracy": "sparse_categorical_crossentropy",
    "binary_accuracy": "binary_crossentropy",
}


def _host(t: Tensor) -> np.ndarray:
    """A host numpy view (CPU) or copy (GPU) of a tensor: the one place results come down."""
    return t.numpy() if t.device == "cpu" else t.to("cpu").numpy()


def _scalar(t: Tensor) -> float:
    return float(_host(t))


def _positive_int(owner: str, name: str, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


def _verbosity(owner: str, verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, float):
        raise ValueError(f"{owner}: verbose must be 0, 1, 2 or \"auto\", got {verbose!r}")
    return int(verbose)


class _Running:
    """Running loss/accuracy of an epoch, kept as device tensors until someone asks."""

    def __init__(self, with_accuracy: bool):
        self.with_accuracy = with_accuracy
        self.pending = []  # (loss Tensor, correct Tensor | None, examples, accuracy count)
        self.loss_sum = 0.0
        self.examples = 0
        self.correct = 0.0
        self.counted = 0

    def add(self, loss, correct, n, count):
        self.pending.append((loss, correct, n, count))

    def resolve(self) -> dict:
        for loss, correct, n, count in self.pending:
            self.loss_sum += _scalar(loss) * n
            self.examples += n
            if correct is not None:
                self.correct += _scalar(correct)
                self.counted += count
        self.pending.clear()
        logs = {"loss": self.loss_sum / self.examples if self.examples else float("nan")}
        if self.with_accuracy:
            logs["accuracy"] = self.correct / self.counted if self.counted else float("nan")
        return logs


class _Progress:
    """The tqdm bar of one epoch (verbose=1), one line per epoch (verbose=2), or nothing."""

    REFRESH_S = 0.25

    def __init__(self, verbose, title, total):
        self.verbose = verbose
        self.start = time.perf_counter()
        self.last = self.start
        self.bar = None
        self.title = title
        if verbose == 1:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=title, unit="batch", file=sys.stdout,
                            dynamic_ncols=True, leave=True, mininterval=self.REFRESH_S)

    def due(self) -> bool:
        if self.bar is None:
            return False
        now = time.perf_counter()
        if now - self.last >= self.REFRESH_S:
            self.last = now
            return True
        return False

    def text(self, logs, images) -> str:
        parts = [f"{k}={v:.4f}" for k, v in logs.items()]
        elapsed = time.perf_counter() - self.start
        if images and elapsed > 0:
            parts.append(f"{images / elapsed:,.0f} img/s")
        return " ".join(parts)

    def step(self, logs=None, images=0):
        if self.bar is None:
            return
        if logs is not None:
            self.bar.set_postfix_str(self.text(logs, images), refresh=False)
        self.bar.update(1)

    def close(self, logs, images):
        text = self.text(logs, images)
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.close()
        elif self.verbose == 2:
            print(f"{self.title}: {text} ({time.perf_counter() - self.start:.1f} s)", flush=True)


class _InterruptGuard:
    """During fit: the first Ctrl-C (SIGINT) asks the loop to stop after the current step; a
    second one raises KeyboardInterrupt at once. Only installable from the main thread;
    elsewhere a KeyboardInterrupt raised between steps is still handled as a request to stop."""

    def __init__(self):
        self.requested = False
        self.forced = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step (press again to abort at once)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class _ArrayBatches:
    """Batches from arrays: x in the boundary layout, y already prepared by the loss."""

    def __init__(self, model, x, y, batch_size, shuffle=False, rng=None):
        self.model, self.x, self.y = model, x, y
        self.batch_size, self.shuffle, self.rng = batch_size, shuffle, rng
        self.n = x.shape[0]

    @property
    def steps(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def epoch(self):
        model, loss, device = self.model, self.model.loss, self.model._device
        order = self.rng.permutation(self.n) if self.shuffle else None
        for start in range(0, self.n, self.batch_size):
            end = min(start + self.batch_size, self.n)
            if order is None:
                xb = self.x[start:end]
                yb = None if self.y is None else self.y[start:end]
            else:
                idx = order[start:end]
                xb = self.x[idx]
                yb = None if self.y is None else self.y[idx]
            yield model._input(xb, checked=True), (None if yb is None else loss.batch(yb, device)), \
                end - start


class _IteratorBatches:
    """Batches from an iterator or re-iterable of (x, y) pairs (nanocnn.data's flow()
    iterators, a keras-like Sequence, a list, a generator)."""

    def __init__(self, model, source, steps, with_targets, owner):
        self.model, self.source, self.with_targets, self.owner = model, source, with_targets, owner
        self.steps = steps if steps is not None else (len(source) if hasattr(source, "__len__")
                                                      else None)
        self._iterator = None

    def epoch(self):
        source = self.source
        if self._iterator is None or iter(source) is not source:
            self._iterator = iter(source)  # re-iterables start over; iterators carry on
        step = 0
        while self.steps is None or step < self.steps:
            try:
                item = next(self._iterator)
            except StopIteration:
                self._iterator = None
                return
            step += 1
            yield self._convert(item)
        if hasattr(source, "on_epoch_end"):
            source.on_epoch_end()

    def _convert(self, item):
        if isinstance(item, (tuple, list)):
            if len(item) == 3 and item[2] is not None:
                raise ValueError(f"{self.owner}: sample weights are not supported (the iterator "
                                 f"yields (x, y, sample_weight))")
            if not 1 <= len(item) <= 3:
                raise ValueError(f"{self.owner}: the iterator must yield (x, y) pairs, got a "
                                 f"{type(item).__name__} of length {len(item)}")
            xb, yb = item[0], (item[1] if len(item) > 1 else None)
        else:
            xb, yb = item, None
        if self.with_targets and yb is None:
            raise ValueError(f"{self.owner}: the iterator must yield (x, y) pairs; got x only")
        model = self.model
        xt = model._input(xb)
        if not self.with_targets:
            return xt, None, xt.shape[0]
        y = model.loss.prepare(yb, xt.shape[0], model._out)
        return xt, model.loss.batch(y, model._device), xt.shape[0]


class Sequential:
    """A linear stack of layers, Keras's ``Sequential(layers=None, name=None)``.

    Attributes: ``layers`` (the layers, without an Input), ``optimizer``, ``loss``,
    ``metrics_names``, ``device``, ``built``, ``history`` (the last fit's History),
    ``stop_training`` (set by callbacks to end fit after the current epoch).
    """

    def __init__(self, layers=None, name: str | None = None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Sequential: name must be a string, got {name!r}")
        self.name = name or "sequential"
        self.layers: list[Layer] = []
        self.built = False
        self.optimizer = None
        self.loss = None
        self.metrics_names = []
        self.stop_training = False
        self.history = None
        self._input_shape = None   # boundary shape without the batch (user's layout)
        self._input_format = None  # data_format given by an Input layer
        self.data_format = "channels_last"
        self._device = "cpu"
        self._plan = None          # [(layer, activate, pool)]: see _training_plan; None: rebuild
        self._fuse_last = False
        self._with_accuracy = False
        if layers is not None:
            if isinstance(layers, Layer):
                layers = [layers]
            for layer in layers:
                self.add(layer)

    # ---- construction ------------------------------------------------------------------------

    def add(self, layer: Layer) -> None:
        """Appends a layer (Keras's ``model.add``). An ``nc.layers.Input(shape)`` may come first;
        otherwise give the first layer ``input_shape=`` (channels-last (H, W, C) for images), or
        the model is built from the first data it sees."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a nanocnn.layers.Layer, got "
                            f"{type(layer).__name__}")
        if isinstance(layer, InputLayer):
            if self.layers or self._input_shape is not None:
                raise ValueError("Sequential.add: an Input layer must come first")
            self._input_shape = layer.input_shape_arg
            self._input_format = layer.data_format_arg
            return
        if layer.built or any(layer is other for other in self.layers):
            raise ValueError(f"Sequential.add: layer {layer.name!r} already belongs to a model")
        names = {other.name for other in self.layers}
        if layer.name is None:
            base, i = layer._default_name, 0
            layer.name = base
            while layer.name in names:
                i += 1
                layer.name = f"{base}_{i}"
        elif layer.name in names:
            raise ValueError(f"Sequential.add: a layer named {layer.name!r} is already in the model")
        if layer.input_shape_arg is not None:
            if self.layers:
                raise ValueError(f"Sequential.add: input_shape is only allowed on the first layer, "
                                 f"got it on {layer.name!r}")
            if self._input_shape is None:
                self._input_shape = layer.input_shape_arg
        if self.built and layer.data_format_arg not in (None, self.data_format):
            raise ValueError(f"Sequential.add: all layers of a model must use one data_format; "
                             f"the model uses {self.data_format}, layer {layer.name!r} asks for "
                             f"{layer.data_format_arg}")
        self.layers.append(layer)
        self._plan = None
        if self.built:
            layer.build(self.layers[-2]._out if len(self.layers) > 1 else self._internal_shape(),
                        self.data_format, self._device)
            self._out = layer._out
        elif self._input_shape is not None:
            self.build()

    def _model_data_format(self) -> str:
        given = [(self._input_format, "Input")] if self._input_format else []
        given += [(l.data_format_arg, l.name) for l in self.layers if l.data_format_arg]
        formats = {f for f, _ in given}
        if len(formats) > 1:
            raise ValueError("all layers of a model must use one data_format, got "
                             + ", ".join(f"{f} ({who})" for f, who in given))
        return formats.pop() if formats else "channels_last"

    def _internal_shape(self) -> tuple:
        shape = self._input_shape
        if len(shape) == 3 and self.data_format == "channels_last":
            return (shape[2], shape[0], shape[1])
        return shape

    def build(self, input_shape=None) -> None:
        """Creates every layer's weights for inputs of ``input_shape`` (Keras's convention: with
        the batch, e.g. ``(None, 32, 32, 3)``); without it, uses the declared input shape."""
        if input_shape is not None:
            shape = tuple(input_shape)
            if len(shape) < 2:
                raise ValueError(f"build: input_shape includes the batch, e.g. (None, 32, 32, 3); "
                                 f"got {input_shape!r}")
            self._input_shape = layers_module._shape_tuple("build", "input_shape", shape[1:])
        if self._input_shape is None:
            raise ValueError("the model has no input shape: give the first layer input_shape=..., "
                             "start with nc.layers.Input(shape), or call build(input_shape)")
        if not self.layers:
            raise ValueError("the model has no layers; add some first")
        self.data_format = self._model_data_format()
        shape = self._internal_shape()
        for layer in self.layers:
            if layer.built:
                raise ValueError(f"layer {layer.name!r} is already built")
            shape = layer.build(shape, self.data_format, self._device)
        self._out = shape
        self.built = True
        self._plan = None

    def _ensure_built(self, x_shape, owner):
        if not self.built:
            if self._input_shape is None:
                self._input_shape = layers_module._shape_tuple(owner, "x.shape[1:]", x_shape)
            self.build()

    # ---- devices -----------------------------------------------------------------------------

    @property
    def device(self) -> str:
        """The device holding the parameters, optimizer state and activations."""
        return self._device

    def to(self, device: str) -> "Sequential":
        """Moves the parameters (and optimizer state) to ``device`` ("cpu", "cuda", "cuda:N");
        later batches are sent there. Returns the model."""
        if not isinstance(device, str):
            raise TypeError(f"to: device must be a string such as \"cuda\", got {device!r}")
        resolved = _C.zeros([1], device).device  # raises ValueError for an unusable device
        for layer in self.layers:
            if layer.built:
                layer.to(resolved)
        if self.optimizer is not None:
            self.optimizer.to(resolved)
        self._device = resolved
        return self

    # ---- compile -----------------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, device=None) -> None:
        """Keras's ``compile(optimizer="rmsprop", loss=None, metrics=None)``, plus ``device``.

        ``optimizer``: "sgd" | "adam" | "rmsprop" or an nc.optimizers instance. ``loss``:
        "categorical_crossentropy" | "sparse_categorical_crossentropy" |
        "binary_crossentropy" or an nc.losses instance; it must pair with the last layer's
        activation (softmax for the categorical losses, sigmoid for binary; no activation with
        ``from_logits=True``), the pair being computed by one fused kernel. ``metrics``:
        ["accuracy"] (or None).
        """
        if device is not None:
            self.to(device)
        if loss is None:
            raise ValueError("compile: loss is required, e.g. loss=\"sparse_categorical_crossentropy\"")
        loss = losses_module.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, str):
            metrics = [metrics]
        metrics = list(metrics)
        for m in metrics:
            if not isinstance(m, str) or m not in _ACCURACY_NAMES:
                raise ValueError(f"compile: metrics must name an accuracy ({sorted(_ACCURACY_NAMES)}), "
                                 f"got {m!r}")
            if _ACCURACY_NAMES[m] not in (None, loss.name):
                raise ValueError(f"compile: metric {m!r} does not go with loss {loss.name!r}; "
                                 f"use \"accuracy\"")
        if not self.layers:
            raise ValueError("compile: the model has no layers")
        last = self.layers[-1]
        if loss.from_logits:
            if last.activation != "linear":
                raise ValueError(
                    f"compile: {loss.name} with from_logits=True expects the last layer "
                    f"{last.name!r} to output logits (no activation), but it has activation "
                    f"{last.activation!r}")
            fuse = False
        elif last.activation != loss.activation:
            raise ValueError(
                f"compile: {loss.name} is computed fused with a {loss.activation} output, but the "
                f"last layer {last.name!r} has activation {last.activation!r}; use "
                f"activation=\"{loss.activation}\" on the last layer, or a linear last layer with "
                f"nc.losses.{type(loss).__name__}(from_logits=True)")
        else:
            fuse = True
        self.optimizer = optimizers_module.get(optimizer)
        if self.optimizer._slots:
            self.optimizer.to(self._device)
        self.loss = loss
        self._fuse_last = fuse
        self._metric_keys = metrics
        self._with_accuracy = bool(metrics)
        self.metrics_names = ["loss"] + metrics
        self._plan = None

    def _require_compiled(self, owner):
        if self.loss is None:
            raise RuntimeError(f"{owner}: compile the model first, e.g. model.compile(optimizer="
                               f"\"adam\", loss=\"sparse_categorical_crossentropy\", metrics="
                               f"[\"accuracy\"])")

    def _training_plan(self):
        """[(layer, activate, pool)]: each layer in order, whether to apply its activation (not
        the last one's when the loss fuses it), and the MaxPooling2D fused into it (a
        Conv2D(relu) followed by a 2x2 pool runs as one op: Conv2D.forward_pooled), or None; a
        fused pool has no entry of its own. Also the backward order, self._reversed."""
        if self._plan is None:
            last = len(self.layers) - 1
            plan, fused = [], set()
            for i, layer in enumerate(self.layers):
                if i in fused:
                    continue
                nxt = self.layers[i + 1] if i < last else None
                pool = None
                if (isinstance(layer, layers_module.Conv2D) and nxt is not None
                        and layer._fuses_with(nxt) and not (self._fuse_last and i + 1 == last)):
                    pool = nxt
                    fused.add(i + 1)
                plan.append((layer, not (self._fuse_last and i == last), pool))
            self._plan = plan
            # Backward stops at the first layer with weights: the ones before it have nothing to
            # learn, and that layer needs no input gradient (the first conv's is a third of its
            # backward).
            first = next((i for i, layer in enumerate(self.layers) if layer.weights), 0)
            for i, layer in enumerate(self.layers):
                layer._needs_input_grad = i != first
            first_layer = self.layers[first]
            steps = [(layer, pool) for layer, _, pool in plan]
            start = next((j for j, (layer, _) in enumerate(steps) if layer is first_layer), 0)
            self._reversed = steps[start:][::-1]
        return self._plan

    # ---- inputs ------------------------------------------------------------------------------

    def _expected_shape(self) -> tuple:
        return (None,) + tuple(self._input_shape)

    def _input(self, x, checked=False) -> Tensor:
        """One batch -> an internal-layout (NCHW) Tensor on the model's device (the one upload)."""
        if isinstance(x, Tensor):
            if not self.built:
                raise ValueError("pass a numpy batch first (or build the model): a Tensor input "
                                 "is taken in the internal layout")
            expected = self.layers[0]._in
            if tuple(x.shape[1:]) != expected:
                raise ValueError(f"input of layer {self.layers[0].name!r}: a Tensor input is taken "
                                 f"in the internal (N, C, H, W) layout, expected (N,)+{expected}, "
                                 f"got {tuple(x.shape)}")
            return x if x.device == self._device else x.to(self._device)
        if not checked:
            x = self._check_x(x, "input")
        if len(self._input_shape) == 3 and self.data_format == "channels_last":
            if x.dtype == np.float32 and x.flags.c_contiguous:  # the common case: one C++ copy
                t = _C.from_channels_last(x)
                return t if self._device == "cpu" else t.to(self._device)
            x = x.transpose(0, 3, 1, 2)
        return tensor(x, device=self._device)

    def _check_x(self, x, owner) -> np.ndarray:
        """The array of a batch or data set, checked against the model's input shape."""
        if isinstance(x, (str, bytes)) or x is None:
            raise TypeError(f"{owner}: x must be an array of shape (N, ...), got {x!r}")
        try:
            x = np.asarray(x)
        except ValueError as err:
            raise ValueError(f"{owner}: x must be an array of shape (N, ...) (a list of (x, y) "
                             f"batches goes in iter(...)): {err}") from None
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{owner}: x must hold numbers (float32 or uint8 images), got dtype "
                            f"{x.dtype}")
        if x.ndim < 1:
            raise ValueError(f"{owner}: x must have a batch dimension, got shape {x.shape}")
        self._ensure_built(x.shape[1:], owner)
        expected = tuple(self._input_shape)
        if tuple(x.shape[1:]) != expected:
            if (len(expected) == 3 and expected[-1] == 1 and self.data_format == "channels_last"
                    and tuple(x.shape[1:]) == expected[:2]):
                return x[..., None]  # (N, H, W) grey images: add the channel axis
            raise ValueError(f"{owner}: the model expects input of shape "
                             f"{self._expected_shape()}, got {x.shape}")
        return x

    def _check_y(self, y, n, owner):
        if y is None:
            raise ValueError(f"{owner}: y is required with array inputs (targets of shape ({n}, ...))")
        try:
            return self.loss.prepare(y, n, self._out)
        except ValueError as err:
            raise ValueError(f"{owner}: {err}") from None

    # ---- one step ----------------------------------------------------------------------------

    def _train_step(self, x, targets):
        for layer, activate, pool in self._plan:
            x = layer.forward_pooled(x, True) if pool else layer.forward(x, True, activate)
        loss, dy = self.loss.compute(x, targets)
        correct = self.loss.correct(x, targets) if self._with_accuracy else None
        count = self.loss.accuracy_count(x)
        for layer, pool in self._reversed:
            dy = layer.backward_pooled(dy) if pool else layer.backward(dy)
        params, grads = [], []
        for layer in self.layers:
            params += layer.weights
            grads += layer.grads
        self.optimizer.apply(params, grads)
        return loss, correct, count

    def _test_step(self, x, targets):
        for layer, activate, pool in self._plan:
            x = layer.forward_pooled(x, False) if pool else layer.forward(x, False, activate)
        loss, _ = self.loss.compute(x, targets)
        correct = self.loss.correct(x, targets) if self._with_accuracy else None
        return loss, correct, self.loss.accuracy_count(x)

    def _forward(self, x, keep_outputs=False):
        if not keep_outputs:  # the fused plan, with every activation (the last one's included)
            for layer, _, pool in self._training_plan():
                x = layer.forward_pooled(x, False) if pool else layer.forward(x, False, True)
            return x
        outputs = []
        for layer in self.layers:
            x = layer.forward(x, False, True)
            if keep_outputs:
                outputs.append(x)
        return outputs if keep_outputs else x

    def _release(self):
        for layer in self.layers:
            layer.release()

    def _logs(self, raw: dict, prefix="") -> dict:
        logs = {prefix + "loss": raw["loss"]}
        for key in self._metric_keys:
            logs[prefix + key] = raw["accuracy"]
        return logs

    def train_on_batch(self, x, y) -> list | float:
        """One training step on one batch (no progress bar, no callbacks): forward, fused loss,
        backward, optimizer update. Returns [loss, accuracy] (loss alone without metrics)."""
        self._require_compiled("train_on_batch")
        xt = self._input(x)
        targets = self.loss.batch(self._check_y(y, xt.shape[0], "train_on_batch"), self._device)
        self._training_plan()
        loss, correct, count = self._train_step(xt, targets)
        return self._batch_result(loss, correct, count)

    def test_on_batch(self, x, y) -> list | float:
        """Loss (and accuracy) of one batch in inference mode: [loss, accuracy]."""
        self._require_compiled("test_on_batch")
        xt = self._input(x)
        targets = self.loss.batch(self._check_y(y, xt.shape[0], "test_on_batch"), self._device)
        self._training_plan()
        result = self._batch_result(*self._test_step(xt, targets))
        self._release()
        return result

    def _batch_result(self, loss, correct, count):
        if not self._with_accuracy:
            return _scalar(loss)
        return [_scalar(loss)] + [_scalar(correct) / count] * len(self._metric_keys)

    def predict_on_batch(self, x) -> np.ndarray:
        """The model's output for one batch, as numpy (images channels-last)."""
        out = self._boundary(self._forward(self._input(x)))
        self._release()
        return out

    def _boundary(self, t: Tensor) -> np.ndarray:
        """A layer output as a host numpy array in the boundary layout (a copy)."""
        array = np.array(_host(t), copy=True)
        if array.ndim == 4 and self.data_format == "channels_last":
            array = np.ascontiguousarray(array.transpose(0, 2, 3, 1))
        return array

    # ---- fit / evaluate / predict ------------------------------------------------------------

    def _batches(self, x, y, batch_size, shuffle, rng, steps, owner, with_targets=True):
        """Array or iterator input -> a batch source."""
        if _is_iterator_input(x):
            if y is not None:
                raise ValueError(f"{owner}: y must be None when x is an iterator of (x, y) batches")
            return _IteratorBatches(self, x, steps, with_targets, owner)
        x = self._check_x(x, owner)
        yp = self._check_y(y, x.shape[0], owner) if with_targets else None
        return _ArrayBatches(self, x, yp, batch_size, shuffle, rng)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            steps_per_epoch=None):
        """Trains the model, Keras's ``fit``. Returns a History (``history.history["loss"]``,
        ``["accuracy"]``, ``["val_loss"]``, ``["val_accuracy"]``: one value per epoch).

        ``x``: images (N, H, W, C) float32 or uint8 (or the first layer's input shape), with
        targets ``y`` (see nanocnn.losses); or an iterator of (x_batch, y_batch) pairs with
        ``len()`` = batches per epoch (then ``y=None``; ``steps_per_epoch`` overrides the length).
        ``batch_size`` (default 32), ``epochs``, ``shuffle`` (each epoch, arrays only).
        ``validation_split``: fraction of the arrays, taken from the end before shuffling, held
        out for validation; ``validation_data``: (x_val, y_val) or an iterator.
        ``verbose``: 0 silent, 1 progress bar (loss, accuracy, images/s), 2 one line per epoch.
        ``callbacks``: nc.callbacks instances.

        Ctrl-C stops training cleanly after the current step: the model keeps the weights of
        the last completed step and the History of the completed epochs is returned.
        """
        owner = "fit"
        self._require_compiled(owner)
        verbose = _verbosity(owner, verbose)
        batch_size = _positive_int(owner, "batch_size", 32 if batch_size is None else batch_size)
        epochs = _positive_int(owner, "epochs", epochs)
        steps_per_epoch = _positive_int(owner, "steps_per_epoch", steps_per_epoch, True)
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, np.integer)) \
                or not 0 <= initial_epoch < epochs:
            raise ValueError(f"fit: initial_epoch must be an int in [0, epochs), got {initial_epoch!r}")
        if not isinstance(validation_split, (int, float)) or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
        rng = np.random.default_rng(initializers.global_rng().integers(0, 2**63))

        val = None
        if validation_split and validation_data is not None:
            raise ValueError("fit: give validation_split or validation_data, not both")
        if validation_split:
            if _is_iterator_input(x):
                raise ValueError("fit: validation_split needs arrays; with an iterator pass "
                                 "validation_data instead")
            x = self._check_x(x, owner)
            if y is None:
                raise ValueError("fit: y is required with array inputs")
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"fit: x and y must have the same number of examples, got "
                                 f"{len(x)} and {len(y)}")
            split = int(len(x) * (1.0 - validation_split))
            if split < 1 or split == len(x):
                raise ValueError(f"fit: validation_split={validation_split} of {len(x)} examples "
                                 f"leaves an empty training or validation set")
            x, y, xv, yv = x[:split], y[:split], x[split:], y[split:]
            val = self._batches(xv, yv, batch_size, False, None, None, "fit (validation)")
        elif validation_data is not None:
            if _is_iterator_input(validation_data):
                val = self._batches(validation_data, None, batch_size, False, None, None,
                                    "fit (validation_data)")
            elif isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
                if len(validation_data) == 3 and validation_data[2] is not None:
                    raise ValueError("fit: sample weights in validation_data are not supported")
                val = None  # built after the training data (which may build the model)
            else:
                raise ValueError("fit: validation_data must be (x_val, y_val) or an iterator of "
                                 "(x, y) batches")
        train = self._batches(x, y, batch_size, shuffle, rng, steps_per_epoch, owner)
        if val is None and validation_data is not None:
            val = self._batches(validation_data[0], validation_data[1], batch_size, False, None,
                                None, "fit (validation_data)")
        steps = train.steps if steps_per_epoch is None else steps_per_epoch
        if isinstance(train, _ArrayBatches) and steps_per_epoch is not None:
            raise ValueError("fit: steps_per_epoch applies to iterator inputs; with arrays the "
                             "epoch is all of x")

        history = callbacks_module.History()
        cbs = callbacks_module.CallbackList(
            [history] + list(callbacks or []), self,
            {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
        self.history = history
        self.stop_training = False
        self._training_plan()
        cbs.call("on_train_begin", None)
        epoch, step = initial_epoch, 0
        interrupted = False
        with _InterruptGuard() as guard:
            try:
                for epoch in range(initial_epoch, epochs):
                    cbs.call("on_epoch_begin", epoch, None)
                    progress = _Progress(verbose, f"Epoch {epoch + 1}/{epochs}", steps)
                    running = _Running(self._with_accuracy)
                    images = 0
                    step = 0
                    for xt, targets, n in train.epoch():
                        if cbs.wants_batch_begin:
                            cbs.call("on_train_batch_begin", step, None)
                        loss, correct, count = self._train_step(xt, targets)
                        running.add(loss, correct, n, count)
                        images += n
                        step += 1
                        logs = None
                        if cbs.wants_batch_end or progress.due():
                            logs = self._logs(running.resolve())
                        progress.step(logs, images)
                        if cbs.wants_batch_end:
                            cbs.call("on_train_batch_end", step - 1, logs)
                        if guard.requested or self.stop_training:
                            break
                    if guard.requested:
                        interrupted = True
                        if progress.bar is not None:
                            progress.bar.close()
                        break
                    if step == 0:
                        raise ValueError("fit: the training data gave no batches")
                    logs = self._logs(running.resolve())
                    if val is not None:
                        logs.update(self._logs(self._run_test(val), "val_"))
                    progress.close(logs, images)
                    cbs.call("on_epoch_end", epoch, logs)
                    if self.stop_training:
                        break
            except KeyboardInterrupt:
                if guard.forced:
                    raise
                interrupted = True
            finally:
                self._release()
        if interrupted:
            print(f"Training interrupted during epoch {epoch + 1}/{epochs} after {step} step(s); "
                  f"the model keeps the weights of the last completed step.", file=sys.stderr,
                  flush=True)
        cbs.call("on_train_end", None)
        return history

    def _run_test(self, batches, progress=None) -> dict:
        """Mean loss (and accuracy) over a batch source in inference mode."""
        self._training_plan()
        running = _Running(self._with_accuracy)
        images = 0
        for xt, targets, n in batches.epoch():
            loss, correct, count = self._test_step(xt, targets)
            running.add(loss, correct, n, count)
            images += n
            if progress is not None:
                progress.step(self._logs(running.resolve()) if progress.due() else None, images)
        self._release()
        if images == 0:
            raise ValueError("the evaluation data gave no batches")
        return running.resolve()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", steps=None,
                 return_dict=False):
        """Loss (and accuracy) over the data, in inference mode (dropout off): returns
        [loss, accuracy] (or the loss alone without metrics; a dict with return_dict=True).
        Same inputs as fit; ``steps`` limits the batches taken from an iterator."""
        owner = "evaluate"
        self._require_compiled(owner)
        verbose = _verbosity(owner, verbose)
        batch_size = _positive_int(owner, "batch_size", 32 if batch_size is None else batch_size)
        steps = _positive_int(owner, "steps", steps, True)
        batches = self._batches(x, y, batch_size, False, None, steps, owner)
        progress = _Progress(verbose, "Evaluate", batches.steps if steps is None else steps)
        logs = self._logs(self._run_test(batches, progress))
        progress.close(logs, 0)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose=0, steps=None) -> np.ndarray:
        """The model's outputs (N, units) as a numpy array (images channels-last), in inference
        mode, with the last activation applied (probabilities for softmax/sigmoid). ``x``:
        array, or an iterator of batches (x or (x, y)); ``steps`` limits the batches taken."""
        owner = "predict"
        verbose = _verbosity(owner, verbose)
        batch_size = _positive_int(owner, "batch_size", 32 if batch_size is None else batch_size)
        steps = _positive_int(owner, "steps", steps, True)
        batches = self._batches(x, None, batch_size, False, None, steps, owner, with_targets=False)
        progress = _Progress(verbose, "Predict", batches.steps if steps is None else steps)
        outputs = []
        images = 0
        for xt, _, n in batches.epoch():
            outputs.append(self._boundary(self._forward(xt)))
            images += n
            progress.step(None, images)
        self._release()
        progress.close({}, images)
        if not outputs:
            raise ValueError("predict: the data gave no batches")
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def __call__(self, x) -> np.ndarray:
        """``model(x)``: predict_on_batch."""
        return self.predict_on_batch(x)

    def activations(self, x, batch_size=None) -> list:
        """Every layer's output for ``x`` (inference mode), as numpy arrays, one per layer in
        ``model.layers`` order; image outputs channels-last (N, H, W, C) (the layout the model
        takes), e.g. to draw feature maps."""
        batch_size = _positive_int("activations", "batch_size",
                                   32 if batch_size is None else batch_size)
        x = self._check_x(x, "activations")
        per_layer = [[] for _ in self.layers]
        for start in range(0, x.shape[0], batch_size):
            outputs = self._forward(self._input(x[start:start + batch_size], checked=True),
                                    keep_outputs=True)
            for i, t in enumerate(outputs):
                per_layer[i].append(self._boundary(t))
        self._release()
        return [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in per_layer]

    # ---- weights -----------------------------------------------------------------------------

    @property
    def weights(self) -> list:
        """All parameter Tensors, layer by layer (on the model's device)."""
        return [w for layer in self.layers for w in layer.weights]

    def get_weights(self) -> list:
        """Every layer's weights as numpy arrays, in PyTorch layouts: for each Conv2D its kernel
        (filters, in_channels, kh, kw) then bias (filters,); for each Dense its kernel
        (units, in_features) then bias (units,). (Keras's layouts differ: (kh, kw, in, filters)
        and (in, units).) Copies, safe to keep."""
        self._require_built("get_weights")
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Sets all weights from a list like get_weights's (same order, shapes and layouts)."""
        self._require_built("set_weights")
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"set_weights: the model has {expected} weight arrays, got "
                             f"{len(weights)}")
        i = 0
        for layer in self.layers:
            k = len(layer.weights)
            layer.set_weights(weights[i:i + k])
            i += k

    def count_params(self) -> int:
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def _require_built(self, owner):
        if not self.built:
            raise ValueError(f"{owner}: the model is not built yet; give the first layer "
                             f"input_shape=..., or call build() or fit() first")

    # ---- summary -----------------------------------------------------------------------------

    def summary(self, line_length=None, print_fn=None, batch_size: int = 32) -> None:
        """Prints Keras's table (layer name and type, output shape, parameters) with the forward
        FLOPs of each layer for one example, then the totals and the memory the activations of
        one ``batch_size`` batch take while training."""
        self._require_built("summary")
        print_fn = print_fn or print
        rows = []
        for layer in self.layers:
            rows.append((f"{layer.name} ({type(layer).__name__})", str(layer.output_shape),
                         f"{layer.count_params():,}", _human(layer.flops())))
        headers = ("Layer (type)", "Output Shape", "Param #", "FLOPs")
        widths = [max(len(headers[i]), *(len(r[i]) for r in rows)) + 3 for i in range(4)]
        width = line_length or sum(widths) + 1

        def line(cells):
            return " " + "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

        total = self.count_params()
        flops = sum(layer.flops() for layer in self.layers)
        activation_bytes = 4 * batch_size * sum(int(np.prod(l._out)) for l in self.layers)
        input_bytes = 4 * batch_size * int(np.prod(self._input_shape))
        out = [f'Model: "{self.name}"', "_" * width, line(headers), "=" * width]
        for i, row in enumerate(rows):
            out.append(line(row))
            if i + 1 < len(rows):
                out.append("")
        out += ["=" * width,
                f"Total params: {total:,} ({_bytes(4 * total)})",
                f"Trainable params: {total:,} ({_bytes(4 * total)})",
                "Non-trainable params: 0 (0.00 B)",
                f"Forward FLOPs per example: {_human(flops)} (a multiply-add counts 2)",
                f"Activation memory for a batch of {batch_size}: {_bytes(activation_bytes)} "
                f"(layer outputs kept for backward; input {_bytes(input_bytes)})",
                "_" * width]
        for text in out:
            print_fn(text)

    # ---- config and saving -------------------------------------------------------------------

    def get_config(self) -> dict:
        return {"name": self.name,
                "input_shape": None if self._input_shape is None else list(self._input_shape),
                "data_format": self._input_format,
                "layers": [layers_module.serialize(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        model = cls(name=config.get("name"))
        if config.get("input_shape") is not None:
            model.add(InputLayer(shape=tuple(config["input_shape"]),
                                 data_format=config.get("data_format")))
        for layer_config in config["layers"]:
            model.add(layers_module.get(layer_config))
        return model

    def save(self, filepath, include_optimizer: bool = True, metadata=None) -> None:
        """Writes the model to one safetensors file: weights (PyTorch layouts, named
        "<layer>.kernel" / "<layer>.bias"), the architecture and compile settings as JSON in its
        metadata and, with ``include_optimizer``, the optimizer state to resume training.
        ``metadata`` (str -> str) adds entries of your own to the file's metadata. The write is
        atomic: a crash mid-save leaves any previous file at that path untouched. Read it back
        with ``nc.load_model(filepath)``."""
        from .saving import save_model
        save_model(self, filepath, include_optimizer=include_optimizer, metadata=metadata)

    def save_weights(self, filepath) -> None:
        """``save(filepath, include_optimizer=False)``; load with ``load_weights``."""
        self.save(filepath, include_optimizer=False)

    def load_weights(self, filepath) -> None:
        """Loads the weights of a file written by save/save_weights into this (built) model,
        which must have the same weight shapes in the same order."""
        from .saving import load_weights
        load_weights(self, filepath)

    def __repr__(self):
        return f"<Sequential name={self.name!r} layers={len(self.layers)} device={self._device!r}>"


def _is_iterator_input(x) -> bool:
    if isinstance(x, (np.ndarray, Tensor, list, tuple)) or x is None:
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__") or hasattr(x, "__getitem__") and \
        hasattr(x, "__len__") and not hasattr(x, "__array__")


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{int(n)}"


def _bytes(n: float) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.2f} B"
