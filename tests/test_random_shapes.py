"""Sweeps over random geometries (drawn once, with a fixed seed, at collection time), fast and
reference paths against torch: conv2d and max_pool2d with every padding form, linear."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nanocnn as nc
import nanocnn.functional as F
from helpers import (
    assert_close,
    conv2d_magnitude,
    explicit_pads,
    linear_magnitude,
    out_size,
    pair,
    randn,
    torch_conv2d,
    torch_max_pool2d,
)

_GEN = np.random.default_rng(987654321)  # fixed: the list of cases is the same on every run


def _padding_form(gen, kernel, max_pad=None):
    kind = gen.choice(["int", "pair", "pairs", "same", "valid"])
    limit = [2, 2] if max_pad is None else list(max_pad)
    if kind == "int":
        return int(gen.integers(0, min(limit) + 1))
    if kind == "pair":
        return (int(gen.integers(0, limit[0] + 1)), int(gen.integers(0, limit[1] + 1)))
    if kind == "pairs":
        return tuple(tuple(int(v) for v in gen.integers(0, limit[i] + 2, 2)) for i in range(2))
    return str(kind)


def _fmt(v):
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    return "x".join(_fmt(u) if not isinstance(u, tuple) else "-".join(map(str, u)) for u in v)


def _conv_cases(count):
    cases = []
    while len(cases) < count:
        n, c, k = int(_GEN.integers(1, 4)), int(_GEN.choice([1, 2, 3, 5, 17])), int(_GEN.choice([1, 3, 4, 7]))
        h, w = int(_GEN.integers(1, 14)), int(_GEN.integers(1, 14))
        r, s = int(_GEN.integers(1, 6)), int(_GEN.integers(1, 6))
        stride = (int(_GEN.integers(1, 4)), int(_GEN.integers(1, 4)))
        dilation = (int(_GEN.integers(1, 3)), int(_GEN.integers(1, 3)))
        if _GEN.random() < 0.5:
            stride = stride[0]
        if _GEN.random() < 0.6:
            dilation = 1
        padding = _padding_form(_GEN, (r, s))
        (t, b), (lp, rp) = explicit_pads(padding, (r, s), stride, dilation, (h, w))
        st, dl = pair(stride), pair(dilation)
        if out_size(h, t, b, r, st[0], dl[0]) < 1 or out_size(w, lp, rp, s, st[1], dl[1]) < 1:
            continue
        cid = (f"r{len(cases):02d}_x{n}x{c}x{h}x{w}_w{k}x{c}x{r}x{s}_s{_fmt(stride)}_p{_fmt(padding)}"
               f"_d{_fmt(dilation)}")
        cases.append(pytest.param((n, c, h, w), (k, c, r, s), stride, padding, dilation, id=cid))
    return cases


def _pool_cases(count):
    cases = []
    while len(cases) < count:
        n, c = int(_GEN.integers(1, 3)), int(_GEN.choice([1, 3, 5, 17]))
        h, w = int(_GEN.integers(1, 14)), int(_GEN.integers(1, 14))
        kernel = (int(_GEN.integers(1, 5)), int(_GEN.integers(1, 5)))
        if _GEN.random() < 0.5:
            kernel = kernel[0]
        stride = None if _GEN.random() < 0.3 else int(_GEN.integers(1, 4))
        kind = _GEN.choice(["int", "pair", "same", "valid"])
        kh, kw = pair(kernel)
        if kind == "int":
            padding = int(_GEN.integers(0, min(kh, kw) // 2 + 1))
        elif kind == "pair":
            padding = (int(_GEN.integers(0, kh // 2 + 1)), int(_GEN.integers(0, kw // 2 + 1)))
        else:
            padding = str(kind)
        st = pair(kernel if stride is None else stride)
        (t, b), (lp, rp) = explicit_pads(padding, kernel, st, 1, (h, w))
        if out_size(h, t, b, kh, st[0]) < 1 or out_size(w, lp, rp, kw, st[1]) < 1:
            continue
        ties = bool(_GEN.random() < 0.5)
        cid = (f"r{len(cases):02d}_x{n}x{c}x{h}x{w}_k{_fmt(kernel)}_s{_fmt(stride) if stride else 'None'}"
               f"_p{_fmt(padding)}{'_ties' if ties else ''}")
        cases.append(pytest.param((n, c, h, w), kernel, stride, padding, ties, id=cid))
    return cases


CONV = _conv_cases(80)
POOL = _pool_cases(60)


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation", CONV)
def test_conv2d_random_geometry(x_shape, w_shape, stride, padding, dilation, algo, device, rng):
    x = randn(rng, x_shape)
    w = randn(rng, w_shape, 1.0 / math.sqrt(np.prod(w_shape[1:])))
    b = randn(rng, w_shape[0])
    kw = dict(stride=stride, padding=padding, dilation=dilation, algo=algo)
    xn, wn = nc.tensor(x, device=device), nc.tensor(w, device=device)
    y = F.conv2d(xn, wn, nc.tensor(b, device=device), **kw)
    dy = randn(rng, tuple(y.shape))
    y_t, dx_t, dw_t, db_t = torch_conv2d(x, w, b, stride, padding, dilation, dy)
    y_m, dx_m, dw_m, db_m = conv2d_magnitude(x, w, b, stride, padding, dilation, dy)
    assert_close(y, y_t, "conv2d", y_m)
    dx, dw, db = F.conv2d_backward(nc.tensor(dy, device=device), xn, wn, **kw)
    assert_close(dx, dx_t, "conv2d_backward", dx_m, err_msg="dx")
    assert_close(dw, dw_t, "conv2d_backward", dw_m, err_msg="dw")
    assert_close(db, db_t, "conv2d_backward", db_m, err_msg="db")


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("x_shape,kernel,stride,padding,ties", POOL)
def test_max_pool2d_random_geometry(x_shape, kernel, stride, padding, ties, algo, device, rng):
    x = rng.integers(0, 3, x_shape).astype(np.float32) if ties else randn(rng, x_shape)
    xn = nc.tensor(x, device=device)
    y = F.max_pool2d(xn, kernel, stride, padding, algo=algo)
    dy = randn(rng, tuple(y.shape))
    y_t, dx_t = torch_max_pool2d(x, kernel, stride, padding, dy)
    assert_close(y, y_t, "max_pool2d")
    dx = F.max_pool2d_backward(nc.tensor(dy, device=device), xn, kernel, stride, padding, algo=algo)
    dx_m = torch_max_pool2d(x, kernel, stride, padding, np.abs(dy))[1]
    assert_close(dx, dx_t, "max_pool2d_backward", dx_m)


LINEAR = [
    pytest.param(int(n), int(i), int(o), id=f"r{j:02d}_{n}x{i}_to_{o}")
    for j, (n, i, o) in enumerate(zip(_GEN.integers(1, 80, 30), _GEN.integers(1, 300, 30),
                                      _GEN.integers(1, 70, 30)))
]


@pytest.mark.parametrize("n,fan_in,out", LINEAR)
def test_linear_random_shapes(n, fan_in, out, device, rng):
    import torch
    import torch.nn.functional as TF

    x, w, b = randn(rng, (n, fan_in)), randn(rng, (out, fan_in), fan_in ** -0.5), randn(rng, out)
    dy = randn(rng, (n, out))
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    yt = TF.linear(xt, wt, bt)
    yt.backward(torch.tensor(dy, dtype=torch.float64))
    xn, wn = nc.tensor(x, device=device), nc.tensor(w, device=device)
    y_m, (dx_m, dw_m, db_m) = linear_magnitude(x, w, b, dy)
    assert_close(F.linear(xn, wn, nc.tensor(b, device=device)), yt, "linear", y_m)
    dx, dw, db = F.linear_backward(nc.tensor(dy, device=device), xn, wn)
    assert_close(dx, xt.grad, "linear_backward", dx_m, err_msg="dx")
    assert_close(dw, wt.grad, "linear_backward", dw_m, err_msg="dw")
    assert_close(db, bt.grad, "linear_backward", db_m, err_msg="db")
