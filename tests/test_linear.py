"""F.linear / F.linear_backward against torch (float64 autograd), x (N, in) and (*, in)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import nanocnn as nc
import nanocnn.functional as F
from helpers import assert_close, host, linear_magnitude, randn

# (id, x shape (*, in), out_features, with bias)
CASES = [
    ("1x1_to_1", (1, 1), 1, True),
    ("3x5_to_7", (3, 5), 7, True),
    ("batch1_33_to_17", (1, 33), 17, False),
    ("17x33_to_10", (17, 33), 10, True),
    ("70x300_to_33_kc_blocks", (70, 300), 33, True),
    ("5x17_to_1", (5, 17), 1, True),
    ("3d_2x3x5_to_4", (2, 3, 5), 4, True),
    ("4d_4x1x2x7_to_3", (4, 1, 2, 7), 3, False),
    ("1d_single_sample_9_to_5", (9,), 5, True),
    # Batches of at most 4 take the one-sweep backward (dense.cpp), in blocks of 128 output rows:
    # several blocks, an input width that is no multiple of 16, a last block of 45 / 2 rows.
    ("batch2_37_to_301_row_blocks", (2, 37), 301, True),
    ("batch4_1000_to_130_row_blocks", (4, 1000), 130, False),
]

CIFAR_CASES = [
    ("cifar_dense1_64x1024_to_500", (64, 1024), 500, True),
    ("cifar_dense2_64x500_to_10", (64, 500), 10, True),
    ("cifar_dense1_batch1_1024_to_500", (1, 1024), 500, True),
]


def _ids(cases):
    return [c[0] for c in cases]


def _make(rng, case):
    _, x_shape, out, bias = case
    fan_in = x_shape[-1]
    x = randn(rng, x_shape)
    w = randn(rng, (out, fan_in), 1.0 / math.sqrt(fan_in))
    b = randn(rng, out) if bias else None
    return x, w, b


def _torch(x, w, b, dy):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(np.zeros(w.shape[0]) if b is None else b, dtype=torch.float64, requires_grad=True)
    y = TF.linear(xt, wt, bt)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def _check(x, w, b, device, algo, rng):
    out, fan_in = w.shape
    y_shape = x.shape[:-1] + (out,)
    dy = randn(rng, y_shape)
    y_t, dx_t, dw_t, db_t = _torch(x, w, b, dy)
    xn, wn = nc.tensor(x, device=device), nc.tensor(w, device=device)
    bn = None if b is None else nc.tensor(b, device=device)
    y = F.linear(xn, wn, bn, algo=algo)
    assert tuple(y.shape) == y_shape
    y_m, (dx_m, dw_m, db_m) = linear_magnitude(x, w, b, dy)
    assert_close(y, y_t, "linear", y_m)
    dx, dw, db = F.linear_backward(nc.tensor(dy, device=device), xn, wn, algo=algo)
    assert tuple(dx.shape) == x.shape and tuple(dw.shape) == w.shape and tuple(db.shape) == (out,)
    assert_close(dx, dx_t, "linear_backward", dx_m, err_msg="dx")
    assert_close(dw, dw_t, "linear_backward", dw_m, err_msg="dw")
    assert_close(db, db_t, "linear_backward", db_m, err_msg="db")


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_linear_matches_torch(case, algo, device, rng):
    _check(*_make(rng, case), device, algo, rng)


@pytest.mark.parametrize("case", CIFAR_CASES, ids=_ids(CIFAR_CASES))
def test_linear_cifar(case, device, rng):
    _check(*_make(rng, case), device, "fast", rng)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_linear_reference_agrees_with_fast(case, rng):
    x, w, b = _make(rng, case)
    y_ref = F.linear(x, w, b, algo="reference")
    dy = randn(rng, tuple(y_ref.shape))
    y_m, grad_m = linear_magnitude(x, w, b, dy)
    assert_close(F.linear(x, w, b), y_ref, "linear", y_m)
    for name, a, e, m in zip(("dx", "dw", "db"), F.linear_backward(dy, x, w),
                             F.linear_backward(dy, x, w, algo="reference"), grad_m):
        assert_close(a, e, "linear_backward", m, err_msg=name)


def test_linear_nan_propagates_by_row(rng):
    x, w = randn(rng, (4, 6)), randn(rng, (3, 6))
    x[2, 1] = np.nan
    y = host(F.linear(x, w))
    assert np.isnan(y[2]).all() and not np.isnan(np.delete(y, 2, axis=0)).any()


def test_linear_backward_returns_fresh_tensors(rng):
    x, w, dy = randn(rng, (5, 6)), randn(rng, (3, 6)), randn(rng, (5, 3))
    first = [host(g) for g in F.linear_backward(dy, x, w)]
    second = [host(g) for g in F.linear_backward(dy, x, w)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
