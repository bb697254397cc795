"""Optimizers with Keras's argument names and defaults; each update is one native call per
parameter, in place, on the parameter's device.

    SGD(learning_rate=0.01, momentum=0.0, nesterov=False)
    Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False)

The formulas (see csrc/ops.h) are PyTorch's, so that ``torch.optim`` with matched
hyper-parameters gives the same steps (to float32 rounding):

* SGD: ``v = momentum * v - lr * g; p += v`` (nesterov: ``p += momentum * v - lr * g``), i.e.
  ``torch.optim.SGD(lr, momentum, nesterov)`` with no dampening.
* Adam: epsilon is added to the *bias-corrected* ``sqrt(v_hat)``:
  ``p -= lr * m_hat / (sqrt(v_hat) + epsilon)``, as in the Adam paper and ``torch.optim.Adam``
  (``eps=epsilon``). Keras adds epsilon to the uncorrected ``sqrt(v)``; the two differ only
  while ``sqrt(v)`` is comparable to epsilon (the first few steps of a parameter whose gradient
  is ~1e-7).
* RMSprop: ``ms = rho ms + (1 - rho) g^2``, ``p -= lr * g / (sqrt(ms) + epsilon)`` with epsilon
  outside the square root, as in ``torch.optim.RMSprop(alpha=rho, eps=epsilon)`` (Keras 2 put
  it inside); ``centered`` subtracts the mean gradient squared, ``momentum`` accumulates the
  step in a buffer.

State (``m``, ``v``, velocities, ...) is created lazily on the parameters' device at the first
step and can be saved with the model (``model.save(path)``, ``include_optimizer=True``) to
resume training. ``optimizer.learning_rate`` may be changed between steps (schedules, callbacks).
"""
from __future__ import annotations

import math

import numpy as np

from . import _C, tensor

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "get"]


def _check_float(owner: str, name: str, value, lo: float, hi: float, hi_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < lo or value > hi or (hi_open and value == hi):
        interval = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")
    return value


class Optimizer:
    """Base class. ``apply(params, grads)`` updates each parameter Tensor in place.

    ``iterations`` counts the steps taken. State is a list aligned with the parameter list given
    to the first ``apply`` (the model's weights in layer order); ``slot_names`` names its tensors.
    """

    slot_names: tuple = ()

    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate
        self.iterations = 0
        self._slots: list = []  # per parameter: dict slot name -> Tensor

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = _check_float(type(self).__name__, "learning_rate", value, 0.0,
                                           math.inf)

    def active_slots(self) -> tuple:
        """The state tensors these hyper-parameters use (e.g. no velocity without momentum)."""
        return self.slot_names

    def _ensure_slots(self, params) -> None:
        if self._slots:
            raise ValueError(f"{type(self).__name__}: this optimizer already holds state for "
                             f"{len(self._slots)} other parameters, got {len(params)}; use a new "
                             f"optimizer for a different model")
        names = self.active_slots()
        self._slots = [{n: _C.zeros(list(p.shape), p.device) for n in names} for p in params]

    def apply(self, params, grads) -> None:
        """One step: updates every parameter Tensor in place from its gradient."""
        if len(self._slots) != len(params):
            self._ensure_slots(params)
        self.iterations += 1
        for p, g, slots in zip(params, grads, self._slots):
            self._update(p, g, slots)

    def _update(self, p, g, slots) -> None:
        raise NotImplementedError

    # ---- state, for saving and moving ------------------------------------------------------

    def to(self, device: str) -> None:
        self._slots = [{n: t.to(device) for n, t in s.items()} for s in self._slots]

    def get_state(self) -> dict:
        """{"<param index>.<slot>": numpy array} plus nothing else (iterations is in the config)."""
        return {f"{i}.{n}": np.array(t.to("cpu").numpy(), copy=True)
                for i, s in enumerate(self._slots) for n, t in s.items()}

    def set_state(self, state: dict, params) -> None:
        """Restores what get_state returned, onto the parameters' devices."""
        names = self.active_slots()
        slots = []
        for i, p in enumerate(params):
            s = {}
            for n in names:
                key = f"{i}.{n}"
                if key not in state:
                    raise ValueError(f"optimizer state is missing {key!r}")
                if tuple(state[key].shape) != tuple(p.shape):
                    raise ValueError(f"optimizer state {key!r} has shape {tuple(state[key].shape)}, "
                                     f"expected {tuple(p.shape)}")
                s[n] = tensor(state[key], device=p.device)
            slots.append(s)
        self._slots = slots

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, ``SGD(learning_rate=0.01, momentum=0.0, nesterov=False)``:
    ``v = momentum v - lr g; p += v`` (nesterov: ``p += momentum v - lr g``); plain
    ``p -= lr g`` without momentum. Same steps as ``torch.optim.SGD(lr, momentum, nesterov)``."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = _check_float("SGD", "momentum", momentum, 0.0, 1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"SGD: nesterov must be a bool, got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    def active_slots(self):
        return ("velocity",) if self.momentum > 0.0 else ()

    def _update(self, p, g, slots):
        _C.sgd_update(p, g, slots.get("velocity"), self._learning_rate, self.momentum,
                      self.nesterov, "fast")

    def get_config(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam, ``Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)``, with epsilon
    added to the bias-corrected ``sqrt(v_hat)`` as in PyTorch (see the module doc):
    ``torch.optim.Adam(lr, betas=(beta_1, beta_2), eps=epsilon)`` gives the same steps."""

    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1 = _check_float("Adam", "beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check_float("Adam", "beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _check_float("Adam", "epsilon", epsilon, 0.0, math.inf)

    def apply(self, params, grads):
        if len(self._slots) != len(params):
            self._ensure_slots(params)
        self.iterations += 1
        step = self.iterations
        for p, g, s in zip(params, grads, self._slots):
            _C.adam_update(p, g, s["m"], s["v"], self._learning_rate, self.beta_1, self.beta_2,
                           self.epsilon, step, "fast")

    def get_config(self):
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop, ``RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
    centered=False)``, epsilon outside the square root as in PyTorch (see the module doc):
    ``torch.optim.RMSprop(lr, alpha=rho, eps=epsilon, momentum=momentum, centered=centered)``
    gives the same steps."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
        super().__init__(learning_rate)
        self.rho = _check_float("RMSprop", "rho", rho, 0.0, 1.0)
        self.momentum = _check_float("RMSprop", "momentum", momentum, 0.0, 1.0)
        self.epsilon = _check_float("RMSprop", "epsilon", epsilon, 0.0, math.inf)
        if not isinstance(centered, (bool, np.bool_)):
            raise TypeError(f"RMSprop: centered must be a bool, got {centered!r}")
        self.centered = bool(centered)

    def active_slots(self):
        return (("ms",) + (("momentum",) if self.momentum > 0.0 else ())
                + (("mg",) if self.centered else ()))

    def _update(self, p, g, slots):
        _C.rmsprop_update(p, g, slots["ms"], slots.get("momentum"), slots.get("mg"),
                          self._learning_rate, self.rho, self.momentum, self.epsilon,
                          self.centered, "fast")

    def get_config(self):
        return {"learning_rate": self.learning_rate, "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


_BY_NAME = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}
_CLASSES = {c.__name__: c for c in _BY_NAME.values()}


def get(identifier) -> Optimizer:
    """An optimizer from "sgd" / "adam" / "rmsprop" (Keras defaults), an Optimizer instance, or
    ``{"class_name", "config"}``."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    raise ValueError(f"optimizer must be one of {sorted(_BY_NAME)} or a nanocnn.optimizers."
                     f"Optimizer, got {identifier!r}")


def serialize(opt: Optimizer) -> dict:
    return {"class_name": type(opt).__name__, "config": opt.get_config(),
            "iterations": opt.iterations}
