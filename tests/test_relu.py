"""F.relu / F.relu_backward (from the forward output y) against torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nanocnn as nc
import nanocnn.functional as F
from helpers import assert_close, host, randn

SHAPES = [
    ("1d_7", (7,)),
    ("2d_3x5", (3, 5)),
    ("4d_2x3x7x9", (2, 3, 7, 9)),
    ("4d_batch1_17x13x5", (1, 17, 13, 5)),
    ("5d_2x3x4x5x6", (2, 3, 4, 5, 6)),
    ("scalar_0d", ()),
    ("large_parallel_100003", (100003,)),
    ("cifar_64x16x32x32", (64, 16, 32, 32)),
]


def _ids(cases):
    return [c[0] for c in cases]


def _input(rng, shape):
    x = randn(rng, shape)
    flat = x.reshape(-1)
    flat[:: 5] = 0.0  # exact zeros: y == 0 must block the gradient, as in torch
    return x


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", SHAPES, ids=_ids(SHAPES))
def test_relu_matches_torch(case, algo, device, rng):
    _, shape = case
    x = _input(rng, shape)
    dy = randn(rng, shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.tensor(dy))

    y = F.relu(nc.tensor(x, device=device), algo=algo)
    assert tuple(y.shape) == shape
    assert_close(y, yt, "relu")
    dx = F.relu_backward(nc.tensor(dy, device=device), y, algo=algo)
    assert tuple(dx.shape) == shape
    assert_close(dx, xt.grad, "relu_backward")


@pytest.mark.parametrize("case", SHAPES[:5], ids=_ids(SHAPES[:5]))
def test_relu_reference_agrees_with_fast(case, rng):
    _, shape = case
    x = _input(rng, shape)
    dy = randn(rng, shape)
    np.testing.assert_array_equal(host(F.relu(x)), host(F.relu(x, algo="reference")))
    y = F.relu(x)
    np.testing.assert_array_equal(host(F.relu_backward(dy, y)),
                                  host(F.relu_backward(dy, y, algo="reference")))


@pytest.mark.parametrize("algo", ["fast", "reference"])
def test_relu_backward_uses_the_output_not_the_input(algo):
    """relu_backward(dy, y): passing y (>= 0 everywhere) decides by y > 0."""
    y = np.array([0.0, 0.5, 0.0, 3.0], np.float32)
    dy = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    np.testing.assert_array_equal(host(F.relu_backward(dy, y, algo=algo)), [0, 2, 0, 4])


@pytest.mark.parametrize("algo", ["fast", "reference"])
def test_relu_nan(algo, device):
    x = np.array([np.nan, -1.0, 2.0, -np.inf, np.inf], np.float32)
    y = host(F.relu(nc.tensor(x, device=device), algo=algo))
    np.testing.assert_array_equal(y, host(torch.relu(torch.tensor(x))))
    assert np.isnan(y[0])
    # A NaN output passes dy through, as torch's threshold_backward (y <= 0 is false for NaN).
    dy = np.array([5.0, 6.0, 7.0, 8.0, 9.0], np.float32)
    xt = torch.tensor(x, requires_grad=True)
    torch.relu(xt).backward(torch.tensor(dy))
    np.testing.assert_array_equal(host(F.relu_backward(dy, y, algo=algo)), xt.grad.numpy())


def test_relu_large_nan_and_fast_path(rng):
    """The vectorised loop keeps NaN at every position (not just in the scalar tail)."""
    x = randn(rng, (4099,))
    x[::7] = np.nan
    y = host(F.relu(x))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_array_equal(y, host(F.relu(x, algo="reference")))


def test_relu_does_not_modify_its_input(rng):
    x = nc.tensor(randn(rng, (3, 4)))
    before = host(x)
    F.relu(x)
    np.testing.assert_array_equal(host(x), before)
