"""Losses, Keras's names: categorical, sparse categorical and binary cross-entropy.

Each loss is computed together with its activation by one fused, numerically stable native
kernel, from the last layer's *logits*:

    ===================================  =====================  ================================
    loss                                 last activation        kernel
    ===================================  =====================  ================================
    "categorical_crossentropy"           "softmax"              softmax_cross_entropy_soft
    "sparse_categorical_crossentropy"    "softmax"              softmax_cross_entropy
    "binary_crossentropy"                "sigmoid"              sigmoid_binary_cross_entropy
    ===================================  =====================  ================================

So a model that ends in ``Dense(10, activation="softmax")`` computes that layer's logits while
training and evaluating, and applies the softmax only in ``predict``. With ``from_logits=True``
(Keras's flag) the last layer must have no activation instead. Any other pairing is refused at
``compile`` with a ValueError. All losses are means over the batch (binary: over all elements).

Targets: sparse takes integer class ids (N,) (or (N, 1)); categorical takes (N, classes) rows of
probabilities (one-hot); binary takes (N,) or the output's shape, values in [0, 1].
"""
from __future__ import annotations

import numpy as np

from . import _C, tensor
from . import functional as F

__all__ = [
    "Loss",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "BinaryCrossentropy",
    "get",
]


class Loss:
    """Base class. ``activation`` is the last-layer activation the loss fuses with."""

    name = "loss"
    activation = "linear"

    def __init__(self, from_logits: bool = False):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}: from_logits must be a bool, got {from_logits!r}")
        self.from_logits = bool(from_logits)

    def prepare(self, y, n: int, out_shape: tuple) -> np.ndarray:
        """Checks and converts a whole target array once (n examples, model output ``out_shape``
        without the batch). Returns an array whose row slices :meth:`batch` takes."""
        raise NotImplementedError

    def batch(self, y: np.ndarray, device: str):
        """The targets of one batch (a slice of what prepare returned), ready for the kernels."""
        raise NotImplementedError

    def compute(self, logits, targets):
        """(loss Tensor of shape () on the logits' device, dlogits)."""
        raise NotImplementedError

    def correct(self, logits, targets):
        """Number of correct predictions, a Tensor of shape () on the logits' device."""
        raise NotImplementedError

    def accuracy_count(self, logits) -> int:
        """How many predictions ``correct`` counts over for this batch."""
        return logits.shape[0]

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


def _check_rows(name: str, y: np.ndarray, n: int):
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"{name}: y must have one row per example ({n}), got shape {y.shape}")


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer class ids (N,) as targets; fuses with a softmax output."""

    name = "sparse_categorical_crossentropy"
    activation = "softmax"

    def prepare(self, y, n, out_shape):
        y = np.asarray(y)
        _check_rows(self.name, y, n)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{self.name}: y must be integer class ids of shape ({n},), got shape "
                             f"{y.shape} (one-hot targets go with categorical_crossentropy)")
        ids = F._class_ids(self.name, y)
        classes = out_shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= classes):
            bad = ids[(ids < 0) | (ids >= classes)][0]
            raise ValueError(f"{self.name}: class ids must be in [0, {classes}) for an output of "
                             f"{classes} units, got {bad}")
        return np.ascontiguousarray(ids)

    def batch(self, y, device):
        return np.ascontiguousarray(y)

    def compute(self, logits, targets):
        return _C.softmax_cross_entropy(logits, targets, "fast")

    def correct(self, logits, targets):
        return _C.count_correct(logits, targets, "fast")


class CategoricalCrossentropy(Loss):
    """Cross-entropy with (N, classes) probability (one-hot) targets; fuses with a softmax."""

    name = "categorical_crossentropy"
    activation = "softmax"

    def prepare(self, y, n, out_shape):
        y = np.asarray(y)
        _check_rows(self.name, y, n)
        if y.shape[1:] != tuple(out_shape):
            raise ValueError(f"{self.name}: y must be one-hot rows of shape ({n}, {out_shape[0]}) "
                             f"for this model's output, got {y.shape} (integer class ids go with "
                             f"sparse_categorical_crossentropy)")
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: y must be numeric, got dtype {y.dtype}")
        return np.ascontiguousarray(y, dtype=np.float32)

    def batch(self, y, device):
        return tensor(y, device=device)

    def compute(self, logits, targets):
        return _C.softmax_cross_entropy_soft(logits, targets, "fast")

    def correct(self, logits, targets):
        return _C.count_correct_dense(logits, targets, 0.0, "fast")


class BinaryCrossentropy(Loss):
    """Binary cross-entropy with targets in [0, 1] of the output's shape (or (N,) for one output
    unit); fuses with a sigmoid. Accuracy counts elements where (p > 0.5) == (target > 0.5)."""

    name = "binary_crossentropy"
    activation = "sigmoid"

    def prepare(self, y, n, out_shape):
        y = np.asarray(y)
        _check_rows(self.name, y, n)
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: y must be numeric, got dtype {y.dtype}")
        if y.shape[1:] != tuple(out_shape):
            if y.ndim == 1 and tuple(out_shape) == (1,):
                y = y.reshape(n, 1)
            else:
                raise ValueError(f"{self.name}: y must have shape ({n},) or {(n,) + tuple(out_shape)} "
                                 f"for this model's output, got {y.shape}")
        return np.ascontiguousarray(y, dtype=np.float32)

    def batch(self, y, device):
        return tensor(y, device=device)

    def compute(self, logits, targets):
        return _C.sigmoid_binary_cross_entropy(logits, targets, "fast")

    def correct(self, logits, targets):
        return _C.count_correct_dense(logits.reshape([-1]), targets.reshape([-1]), 0.0, "fast")

    def accuracy_count(self, logits):
        return int(np.prod(logits.shape))


_BY_NAME = {c.name: c for c in (CategoricalCrossentropy, SparseCategoricalCrossentropy,
                                BinaryCrossentropy)}
_CLASSES = {c.__name__: c for c in _BY_NAME.values()}


def get(identifier) -> Loss:
    """A loss from its Keras name, a Loss instance, or ``{"class_name", "config"}``."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    raise ValueError(f"loss must be one of {sorted(_BY_NAME)} or a nanocnn.losses.Loss, got "
                     f"{identifier!r}")


def serialize(loss: Loss) -> dict:
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
