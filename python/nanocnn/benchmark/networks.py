"""The networks the benchmarks measure, described once for the op benchmark and the end-to-end one.

Both are the project's seed networks (Keras examples), with ReLU after every convolution and
hidden dense layer:

* ``cifar``: 32x32x3 images; Conv2D 16/32/64 with 2x2 kernels and "same" padding, each followed
  by MaxPooling2D(2); Flatten; Dense 1024->500; Dense 500->10 with softmax + categorical
  cross-entropy (528,054 parameters).
* ``cats_vs_dogs``: 150x150x3 images; Conv2D 16/32/64 with 3x3 kernels and "valid" padding, each
  followed by MaxPooling2D(2); Flatten; Dense 18496->512; Dense 512->1 with sigmoid + binary
  cross-entropy (9,494,561 parameters).

Shapes are channels-first (C, H, W) here, as the ops take them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Conv:
    filters: int
    kernel: int
    padding: str  # "same" | "valid"


@dataclass(frozen=True)
class Pool:
    size: int


@dataclass(frozen=True)
class Dense:
    units: int


@dataclass(frozen=True)
class Net:
    name: str
    input_chw: tuple  # (C, H, W)
    layers: tuple  # Conv / Pool / Dense, in order; Flatten is implied before the first Dense
    loss: str  # "softmax" (categorical cross-entropy) | "sigmoid" (binary cross-entropy)
    seed_batch: int  # the batch size the network is trained with in its tutorial

    @property
    def classes(self) -> int:
        return self.layers[-1].units


CIFAR = Net("cifar", (3, 32, 32),
            (Conv(16, 2, "same"), Pool(2), Conv(32, 2, "same"), Pool(2), Conv(64, 2, "same"),
             Pool(2), Dense(500), Dense(10)), "softmax", seed_batch=64)

CATS_VS_DOGS = Net("cats_vs_dogs", (3, 150, 150),
                   (Conv(16, 3, "valid"), Pool(2), Conv(32, 3, "valid"), Pool(2),
                    Conv(64, 3, "valid"), Pool(2), Dense(512), Dense(1)), "sigmoid",
                   seed_batch=20)

NETS = {net.name: net for net in (CIFAR, CATS_VS_DOGS)}


def walk(net: Net):
    """Yields (layer, input_shape, output_shape, is_last) with shapes (C, H, W) or (features,)."""
    shape = net.input_chw
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Conv):
            c, h, w = shape
            if layer.padding == "same":
                out = (layer.filters, h, w)
            else:
                out = (layer.filters, h - layer.kernel + 1, w - layer.kernel + 1)
        elif isinstance(layer, Pool):
            c, h, w = shape
            out = (c, h // layer.size, w // layer.size)
        else:
            features = 1
            for d in shape:
                features *= d
            shape = (features,)
            out = (layer.units,)
        yield layer, shape, out, i == len(net.layers) - 1
        shape = out


def parameter_count(net: Net) -> int:
    total = 0
    for layer, shape_in, _, _ in walk(net):
        if isinstance(layer, Conv):
            total += layer.filters * (shape_in[0] * layer.kernel ** 2 + 1)
        elif isinstance(layer, Dense):
            total += layer.units * (shape_in[0] + 1)
    return total
