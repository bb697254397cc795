"""F.sigmoid / F.softmax (and their backward), F.dropout and F.mul against torch and numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nanocnn as nc
import nanocnn.functional as F
from helpers import assert_bitwise_equal, assert_close, host, randn, t64

SHAPES = [("1", (1,)), ("7x3", (7, 3)), ("2x3x5x4", (2, 3, 5, 4)), ("64x500", (64, 500))]
ROWS = [("1x1", (1, 1)), ("7x3", (7, 3)), ("64x10", (64, 10)), ("5x1000", (5, 1000))]


def _ids(cases):
    return [c[0] for c in cases]


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", SHAPES, ids=_ids(SHAPES))
def test_sigmoid_matches_torch(case, algo, device, rng):
    x = randn(rng, case[1], 6.0)
    dy = randn(rng, case[1])
    xt = t64(x).requires_grad_()
    yt = torch.sigmoid(xt)
    yt.backward(t64(dy))
    y = F.sigmoid(nc.tensor(x, device=device), algo=algo)
    assert_close(y, yt.detach().numpy(), "sigmoid")
    dx = F.sigmoid_backward(nc.tensor(dy, device=device), y, algo=algo)
    # The backward takes our float32 y, so its reference is exact on that same y (torch's
    # float64 gradient uses the unrounded y: where y is near 1, 1 - y carries y's rounding
    # error, ~eps / (1 - y) relative, a property of the inputs, not of the op).
    y32 = host(y).astype(np.float64)
    assert_close(dx, dy * y32 * (1 - y32), "sigmoid_backward")
    near = np.abs(x) < 2  # well-conditioned there: agrees with autograd too
    assert_close(host(dx)[near], xt.grad.numpy()[near], "sigmoid_backward",
                 magnitude=np.abs(dy[near]) * 0.25 * 8)


def test_sigmoid_extremes_do_not_overflow():
    x = np.array([-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0, np.nan], np.float32)
    y = host(F.sigmoid(x))
    assert np.all(np.isfinite(y[:-1])) and np.isnan(y[-1])
    assert y[0] == 0.0 and y[-2] == 1.0 and y[3] == 0.5
    assert np.all(np.diff(y[:-1]) >= 0)


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", ROWS, ids=_ids(ROWS))
def test_softmax_matches_torch(case, algo, device, rng):
    x = randn(rng, case[1], 5.0)
    dy = randn(rng, case[1])
    xt = t64(x).requires_grad_()
    yt = torch.softmax(xt, dim=1)
    yt.backward(t64(dy))
    y = F.softmax(nc.tensor(x, device=device), algo=algo)
    assert_close(y, yt.detach().numpy(), "softmax")
    np.testing.assert_allclose(host(y).sum(axis=1), 1.0, rtol=1e-5)
    dx = F.softmax_backward(nc.tensor(dy, device=device), y, algo=algo)
    y32 = host(y).astype(np.float64)
    magnitude = y32 * (np.abs(dy) + (np.abs(dy) * y32).sum(axis=1, keepdims=True))
    exact = y32 * (dy - (dy * y32).sum(axis=1, keepdims=True))
    assert_close(dx, exact, "softmax_backward", magnitude)


def test_softmax_large_logits_are_stable():
    y = host(F.softmax(np.array([[1000.0, 0.0, -1000.0], [88.0, 89.0, 90.0]], np.float32)))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0], [1.0, 0.0, 0.0])
    assert_close(y[1], torch.softmax(torch.tensor([88.0, 89.0, 90.0], dtype=torch.float64), 0),
                 "softmax")


def test_softmax_needs_rows():
    with pytest.raises(ValueError, match=r"softmax: x must have 2 dimensions"):
        F.softmax(np.zeros((2, 3, 4), np.float32))


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_mask_statistics_and_scaling(rate, device):
    x = np.ones((200, 500), np.float32)
    y, mask = F.dropout(nc.tensor(x, device=device), rate, seed=1234)
    m = host(mask)
    kept = m != 0
    keep = np.float32(1.0) / (np.float32(1.0) - np.float32(rate))  # as the kernel computes it
    np.testing.assert_array_equal(np.unique(m[kept]), keep)
    n = m.size
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs((1 - kept.mean()) - rate) <= 6 * sd + 1e-12, (kept.mean(), rate)
    assert_bitwise_equal(host(y), x * m, "dropout output")


def test_dropout_is_a_function_of_the_seed(rng):
    x = randn(rng, (4, 3, 8, 8))
    _, a = F.dropout(x, 0.5, seed=7)
    _, b = F.dropout(x, 0.5, seed=7)
    _, c = F.dropout(x, 0.5, seed=8)
    _, ref = F.dropout(x, 0.5, seed=7, algo="reference")
    assert_bitwise_equal(a, b, "same seed")
    assert_bitwise_equal(a, ref, "fast vs reference")
    assert not np.array_equal(host(a), host(c))


def test_dropout_mask_does_not_depend_on_threads(threads, rng):
    x = randn(rng, (64, 512))
    threads(1)
    _, one = F.dropout(x, 0.3, seed=99)
    threads(2)
    _, two = F.dropout(x, 0.3, seed=99)
    assert_bitwise_equal(one, two, "1 vs 2 threads")


@pytest.mark.parametrize("rate", [-0.1, 1.0, 2.0])
def test_dropout_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match="rate must be in"):
        F.dropout(np.ones(3, np.float32), rate, seed=0)


def test_mul_is_exact(device, rng):
    a, b = randn(rng, (3, 4, 5)), randn(rng, (3, 4, 5))
    assert_close(F.mul(nc.tensor(a, device=device), nc.tensor(b, device=device)), a * b, "mul")
    with pytest.raises(ValueError, match=r"mul: a and b must have the same shape"):
        F.mul(a, b[:2])
