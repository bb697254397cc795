"""Weight initialisers, with Keras's names and defaults, for nanocnn's (PyTorch) weight layouts.

An initialiser is called with a shape and returns a float32 numpy array::

    nc.initializers.GlorotUniform(seed=1)((16, 3, 3, 3))

Fans are computed from nanocnn's layouts (the ones ``get_weights`` uses), which differ from
Keras's but give the same numbers:

    Dense kernel (out, in):          fan_in = in,          fan_out = out
    Conv2D kernel (K, C, R, S):      fan_in = C * R * S,   fan_out = K * R * S
    a bias (n,):                     fan_in = fan_out = n

Seeding: an initialiser with ``seed=`` draws the same values on every call (Keras's rule); one
without draws from nanocnn's global generator, which :func:`set_random_seed` resets (it also
seeds dropout masks and the shuffling in ``fit``), so a script that calls
``nc.set_random_seed(0)`` first builds the same model every time.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "Initializer",
    "GlorotUniform",
    "GlorotNormal",
    "HeUniform",
    "HeNormal",
    "Zeros",
    "Ones",
    "Constant",
    "get",
    "set_random_seed",
]

_GLOBAL = [np.random.default_rng()]


def set_random_seed(seed: int) -> None:
    """Seeds nanocnn's global generator: weight initialisers without their own seed, dropout
    masks and ``fit``'s shuffling then repeat from run to run (like ``keras.utils.set_random_seed``).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_random_seed: seed must be a non-negative int, got {seed!r}")
    _GLOBAL[0] = np.random.default_rng(int(seed))


def global_rng() -> np.random.Generator:
    """The generator behind unseeded initialisers, dropout and shuffling."""
    return _GLOBAL[0]


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape`` in nanocnn's layouts (see the module doc)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


class Initializer:
    """Base class: ``init(shape) -> np.ndarray`` (float32)."""

    def __init__(self, seed: int | None = None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"{type(self).__name__}: seed must be an int or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed) if self.seed is not None else global_rng()

    def __call__(self, shape) -> np.ndarray:
        return self.generate(tuple(int(d) for d in shape), self._rng()).astype(np.float32)

    def generate(self, shape: tuple, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"seed": self.seed}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class GlorotUniform(Initializer):
    """Uniform in [-limit, limit], limit = sqrt(6 / (fan_in + fan_out)) (Keras's default kernel
    initialiser, "glorot_uniform", a.k.a. Xavier uniform)."""

    def generate(self, shape, rng):
        fan_in, fan_out = fans(shape)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape)


class GlorotNormal(Initializer):
    """Truncated normal (cut at 2 standard deviations), stddev = sqrt(2 / (fan_in + fan_out))."""

    def generate(self, shape, rng):
        fan_in, fan_out = fans(shape)
        return _truncated_normal(rng, shape, math.sqrt(2.0 / (fan_in + fan_out)))


class HeUniform(Initializer):
    """Uniform in [-limit, limit], limit = sqrt(6 / fan_in) (Keras "he_uniform")."""

    def generate(self, shape, rng):
        limit = math.sqrt(6.0 / fans(shape)[0])
        return rng.uniform(-limit, limit, shape)


class HeNormal(Initializer):
    """Truncated normal (cut at 2 standard deviations), stddev = sqrt(2 / fan_in) (Keras
    "he_normal"); the usual choice before ReLU."""

    def generate(self, shape, rng):
        return _truncated_normal(rng, shape, math.sqrt(2.0 / fans(shape)[0]))


class Constant(Initializer):
    """Every element ``value``."""

    def __init__(self, value: float = 0.0):
        super().__init__(None)
        self.value = float(value)

    def generate(self, shape, rng):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class Zeros(Constant):
    """All zeros (Keras's default bias initialiser)."""

    def __init__(self):
        super().__init__(0.0)

    def get_config(self):
        return {}


class Ones(Constant):
    def __init__(self):
        super().__init__(1.0)

    def get_config(self):
        return {}


def _truncated_normal(rng, shape, stddev):
    """Normal(0, stddev) values, redrawing those beyond 2 standard deviations (as Keras does)."""
    values = rng.standard_normal(shape)
    bad = np.abs(values) > 2.0
    while bad.any():
        values[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(values) > 2.0
    return values * stddev


_BY_NAME = {
    "glorot_uniform": GlorotUniform,
    "xavier_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "xavier_normal": GlorotNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "zeros": Zeros,
    "ones": Ones,
}
_CLASSES = {c.__name__: c for c in (GlorotUniform, GlorotNormal, HeUniform, HeNormal, Zeros,
                                    Ones, Constant)}


def get(identifier) -> Initializer:
    """An initialiser from a Keras name ("glorot_uniform", "he_normal", "zeros", ...), a config
    dict {"class_name": ..., "config": {...}}, or an Initializer (returned as is)."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(
                f"unknown initializer {identifier!r}; expected one of {sorted(_BY_NAME)}"
            )
        return cls()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    raise TypeError(
        f"initializer must be a name such as \"glorot_uniform\", a config dict or an "
        f"Initializer, got {identifier!r}"
    )


def serialize(init: Initializer) -> dict:
    return {"class_name": type(init).__name__, "config": init.get_config()}
