"""nc.layers: geometry against torch, arguments and errors, initialisers, configs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import nanocnn as nc
from helpers import assert_close, explicit_pads

L = nc.layers


def one_layer(layer, input_shape):
    return nc.Sequential([L.Input(input_shape), layer])


@pytest.mark.parametrize("kernel, strides, padding, size", [
    (3, 1, "valid", (9, 7)), (2, 1, "same", (8, 8)), (3, 2, "same", (9, 10)),
    ((1, 3), (2, 1), "valid", (6, 5)), (4, 3, "same", (11, 11))])
def test_conv2d_layer_matches_torch(kernel, strides, padding, size, rng):
    layer = L.Conv2D(5, kernel, strides=strides, padding=padding, activation="relu")
    model = one_layer(layer, size + (3,))
    x = rng.normal(size=(2,) + size + (3,)).astype(np.float32)
    w, b = model.get_weights()
    (top, bottom), (left, right) = explicit_pads(padding, w.shape[2:], strides, 1, size)
    xt = TF.pad(torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2), (left, right, top, bottom))
    expected = TF.relu(TF.conv2d(xt, torch.tensor(w, dtype=torch.float64),
                                 torch.tensor(b, dtype=torch.float64), stride=strides))
    out = model.predict(x)
    assert out.shape[1:] == layer.output_shape[1:]
    assert_close(out, expected.permute(0, 2, 3, 1).numpy(), "model_forward")


@pytest.mark.parametrize("pool, strides, padding, size", [
    (2, None, "valid", (8, 8)), (2, None, "valid", (7, 9)), (3, 2, "same", (7, 8)),
    (2, None, "same", (5, 5)), ((2, 3), (1, 2), "valid", (6, 7))])
def test_max_pooling_layer_matches_torch(pool, strides, padding, size, rng):
    layer = L.MaxPooling2D(pool, strides=strides, padding=padding)
    model = one_layer(layer, size + (2,))
    x = rng.normal(size=(3,) + size + (2,)).astype(np.float32)
    k = (pool, pool) if isinstance(pool, int) else pool
    s = k if strides is None else ((strides, strides) if isinstance(strides, int) else strides)
    (top, bottom), (left, right) = explicit_pads(padding, k, s, 1, size)
    xt = TF.pad(torch.tensor(x).permute(0, 3, 1, 2), (left, right, top, bottom), value=-np.inf)
    expected = TF.max_pool2d(xt, k, s).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(model.predict(x), expected)
    assert layer.output_shape == (None,) + expected.shape[1:]


def test_flatten_uses_channels_first_order(rng):
    model = one_layer(L.Flatten(), (2, 3, 4))
    x = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), x.transpose(0, 3, 1, 2).reshape(2, -1))


@pytest.mark.parametrize("layer, fn", [
    (L.ReLU(), lambda x: np.maximum(x, 0)),
    (L.Activation("sigmoid"), lambda x: 1 / (1 + np.exp(-x))),
    (L.Softmax(), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    (L.Activation("linear"), lambda x: x),
    (L.Dense(4, activation="softmax", kernel_initializer="ones", use_bias=False),
     lambda x: np.full((x.shape[0], 4), 0.25)),
])
def test_activation_layers(layer, fn, rng):
    x = rng.normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_allclose(one_layer(layer, (6,)).predict(x), fn(x.astype(np.float64)),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make, error, message", [
    (lambda: L.Conv2D(0, 3), ValueError, "filters must be a positive int, got 0"),
    (lambda: L.Conv2D(4, 3, padding="full"), ValueError, "padding must be \"valid\" or \"same\""),
    (lambda: L.Conv2D(4, 3, activation="tanh"), ValueError, "activation must be one of"),
    (lambda: L.Conv2D(4, 3, activation="softmax"), ValueError, "not supported on a convolution"),
    (lambda: L.Conv2D(4, (3, 3, 3)), TypeError, "kernel_size must be an int or a pair"),
    (lambda: L.Dense(3, kernel_initializer="lecun"), ValueError, "unknown initializer"),
    (lambda: L.Dense(3, units2=4), TypeError, r"unexpected argument\(s\) \['units2'\]"),
    (lambda: L.Dropout(1.0), ValueError, r"rate must be a float in \[0, 1\)"),
    (lambda: L.MaxPooling2D(2, data_format="nhwc"), ValueError, "data_format must be one of"),
    (lambda: nc.Sequential([L.Conv2D(4, 3, input_shape=(8, 8, 1)), L.Dense(2)]), ValueError,
     r"Dense 'dense': expects a flat input.*\(None, 6, 6, 4\); put a Flatten"),
    (lambda: nc.Sequential([L.Conv2D(4, 5, input_shape=(3, 3, 1))]), ValueError,
     "larger than the padded input"),
    (lambda: nc.Sequential([L.Dense(2, input_shape=(3,)), L.Dense(2, input_shape=(2,))]),
     ValueError, "input_shape is only allowed on the first layer"),
    (lambda: nc.Sequential([L.Dense(2, name="a", input_shape=(3,)), L.Dense(2, name="a")]),
     ValueError, "a layer named 'a' is already in the model"),
    (lambda: nc.Sequential([L.Dense(2, input_shape=(3, 0))]), ValueError,
     "input_shape must be a tuple of positive ints"),
])
def test_bad_layer_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_layer_belongs_to_one_model():
    layer = L.Dense(2)
    nc.Sequential([L.Input((3,)), layer])
    with pytest.raises(ValueError, match="already belongs to a model"):
        nc.Sequential([L.Input((3,)), layer])


def test_initializers_statistics_and_seeds():
    k = nc.initializers.GlorotUniform(seed=1)((64, 32, 3, 3))
    limit = np.sqrt(6 / (32 * 9 + 64 * 9))
    assert k.dtype == np.float32 and np.abs(k).max() <= limit and np.abs(k).max() > 0.95 * limit
    np.testing.assert_array_equal(k, nc.initializers.GlorotUniform(seed=1)((64, 32, 3, 3)))
    he = nc.initializers.HeNormal(seed=2)((256, 400))
    assert abs(he.std() - np.sqrt(2 / 400) * 0.8796) < 0.02 * np.sqrt(2 / 400)  # truncated at 2 sd
    assert np.abs(he).max() <= 2 * np.sqrt(2 / 400)
    assert np.all(nc.initializers.get("zeros")((3,)) == 0)
    nc.set_random_seed(7)
    a = nc.Sequential([L.Dense(3, input_shape=(4,)), L.Dense(2)]).get_weights()
    nc.set_random_seed(7)
    b = nc.Sequential([L.Dense(3, input_shape=(4,)), L.Dense(2)]).get_weights()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a[0][:2, :2], a[2][:2, :2])
    assert np.all(a[1] == 0)  # zero biases by default


def test_layer_configs_round_trip():
    layers = [L.Conv2D(8, (3, 2), strides=2, padding="same", activation="relu", use_bias=False,
                       kernel_initializer="he_normal", name="c"),
              L.MaxPooling2D(3, strides=1, padding="same"), L.Flatten(), L.Dropout(0.3, seed=4),
              L.Dense(5, activation="sigmoid"), L.ReLU(), L.Softmax()]
    for layer in layers:
        config = nc.layers.serialize(layer)
        copy = nc.layers.get(config)
        assert type(copy) is type(layer) and nc.layers.serialize(copy) == config
