"""Test helpers: the one comparison function, torch references and small utilities.

The torch references here are written independently of nanocnn.functional: padding strings are
turned into explicit amounts by this file's own code (Keras's "same" rule), never by calling the
library under test.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as TF

import nanocnn as nc
from conftest import TOL

# ---- comparing ----------------------------------------------------------------------------------


def host(t) -> np.ndarray:
    """A numpy copy of a nanocnn Tensor (from any device), or of an array."""
    if isinstance(t, nc.Tensor):
        if t.device != "cpu":
            t = t.to("cpu")
        return np.array(t.numpy(), copy=True)
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def assert_close(actual, expected, op: str, magnitude=None, err_msg: str = ""):
    """Checks actual against expected with TOL[op] (see conftest.py for the rule):

        |actual - expected| <= rtol * |expected| + atol * magnitude

    element-wise. ``magnitude`` is an array (per element: the same sum taken over absolute values,
    see the *_magnitude helpers) or a scalar; by default max|expected| over the finite entries.
    NaNs must sit in the same places.
    """
    tol = TOL[op]
    actual = np.asarray(host(actual), dtype=np.float64)
    expected = np.asarray(host(expected), dtype=np.float64)
    assert actual.shape == expected.shape, (
        f"{op}: shape {actual.shape} != expected {expected.shape} {err_msg}"
    )
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    if not np.array_equal(nan_a, nan_e):
        where = np.argwhere(nan_a != nan_e)[:5].tolist()
        raise AssertionError(f"{op} {err_msg}: NaN in different places, e.g. at {where}")
    if magnitude is None:
        finite = expected[np.isfinite(expected)]
        magnitude = float(np.max(np.abs(finite))) if finite.size else 0.0
    magnitude = np.nan_to_num(np.broadcast_to(np.asarray(host(magnitude), np.float64), expected.shape),
                              nan=0.0)
    allowed = tol["rtol"] * np.abs(expected) + tol["atol"] * magnitude
    with np.errstate(invalid="ignore"):
        err = np.abs(actual - expected)
        # inf == inf (same sign) is fine; otherwise the error must be within bounds
        ok = nan_e | (actual == expected) | (err <= allowed)
    if not ok.all():
        bad = np.argwhere(~ok)
        i = tuple(bad[0])
        worst = tuple(np.unravel_index(np.argmax(np.where(ok, 0, err / np.maximum(allowed, 1e-300))),
                                       ok.shape))
        raise AssertionError(
            f"{op} {err_msg}: {bad.shape[0]} of {ok.size} elements out of tolerance "
            f"(rtol {tol['rtol']}, atol {tol['atol']} x magnitude); first at {i}: actual "
            f"{actual[i]!r}, expected {expected[i]!r}, allowed error {allowed[i]:.3g}; worst at "
            f"{worst}: actual {actual[worst]!r}, expected {expected[worst]!r}, error "
            f"{err[worst]:.3g} > allowed {allowed[worst]:.3g}"
        )


def assert_bitwise_equal(a, b, what: str = ""):
    """Same bits, NaNs included (results that must not depend on threads)."""
    a, b = host(a), host(b)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} != {b.shape}"
    assert a.dtype == b.dtype
    same = a.view(np.uint32) == b.view(np.uint32) if a.dtype == np.float32 else a == b
    if not np.all(same):
        bad = np.argwhere(~same)
        i = tuple(bad[0])
        raise AssertionError(
            f"{what}: {bad.shape[0]} of {a.size} elements differ, first at {i}: {a[i]!r} vs {b[i]!r}"
        )


# ---- inputs -------------------------------------------------------------------------------------


def randn(rng, shape, scale=1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def t64(a) -> torch.Tensor:
    """float64 torch tensor of a (float32) array."""
    return torch.tensor(np.asarray(host(a), dtype=np.float64))


def t32(a) -> torch.Tensor:
    return torch.tensor(np.asarray(host(a), dtype=np.float32))


# ---- padding, computed independently of nanocnn -------------------------------------------------


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def keras_same(size: int, kernel: int, stride: int, dilation: int = 1):
    """Keras/TensorFlow "same": out = ceil(size / stride), total pad = max((out - 1) * stride +
    dilation * (kernel - 1) + 1 - size, 0), top/left = total // 2, the rest bottom/right."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def explicit_pads(padding, kernel, stride, dilation, spatial):
    """Any padding form -> ((top, bottom), (left, right))."""
    kernel, stride, dilation = pair(kernel), pair(stride), pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        assert padding == "same"
        return tuple(keras_same(spatial[i], kernel[i], stride[i], dilation[i]) for i in range(2))
    if isinstance(padding, (tuple, list)) and isinstance(padding[0], (tuple, list)):
        return tuple(tuple(p) for p in padding)
    ph, pw = pair(padding)
    return (ph, ph), (pw, pw)


def out_size(size, before, after, kernel, stride, dilation=1):
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


# ---- torch references ---------------------------------------------------------------------------


def torch_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, dy=None, dtype=torch.float64):
    """y (and with dy: dx, dw, db) from torch autograd, with any padding form made explicit."""
    xt = torch.tensor(np.asarray(x), dtype=dtype, requires_grad=True)
    wt = torch.tensor(np.asarray(w), dtype=dtype, requires_grad=True)
    bt = None if b is None else torch.tensor(np.asarray(b), dtype=dtype, requires_grad=True)
    (top, bottom), (left, right) = explicit_pads(
        padding, (w.shape[2], w.shape[3]), stride, dilation, (x.shape[2], x.shape[3])
    )
    if top == bottom and left == right:
        y = TF.conv2d(xt, wt, bt, stride=pair(stride), padding=(top, left), dilation=pair(dilation))
    else:
        xp = TF.pad(xt, (left, right, top, bottom))
        y = TF.conv2d(xp, wt, bt, stride=pair(stride), padding=0, dilation=pair(dilation))
    if dy is None:
        return y.detach().numpy()
    y.backward(torch.tensor(np.asarray(dy), dtype=dtype))
    db = bt.grad.numpy() if bt is not None else None
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), db


def conv2d_magnitude(x, w, b=None, stride=1, padding=0, dilation=1, dy=None):
    """The conv (and with dy its gradients) over absolute values: per element, sum_j |t_j| of the
    terms t_j summed into it, the scale of its floating-point error (see conftest.TOL)."""
    absb = None if b is None else np.abs(b)
    return torch_conv2d(np.abs(x), np.abs(w), absb, stride, padding, dilation,
                        None if dy is None else np.abs(dy))


def linear_magnitude(x, w, b=None, dy=None):
    """y, (dx, dw, db) of linear over absolute values (see conv2d_magnitude)."""
    ax, aw = np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(w, np.float64))
    y = ax @ aw.T + (0.0 if b is None else np.abs(np.asarray(b, np.float64)))
    if dy is None:
        return y
    ady = np.abs(np.asarray(dy, np.float64))
    ax2 = ax.reshape(-1, ax.shape[-1])
    ady2 = ady.reshape(-1, ady.shape[-1])
    return y, (ady @ aw, ady2.T @ ax2, ady2.sum(axis=0))


def torch_max_pool2d(x, kernel, stride=None, padding=0, dy=None, dtype=torch.float32):
    """y (and with dy: dx) from torch; string padding becomes an explicit -inf pad."""
    stride = kernel if stride is None else stride
    xt = torch.tensor(np.asarray(x), dtype=dtype, requires_grad=True)
    if isinstance(padding, str):
        (top, bottom), (left, right) = explicit_pads(
            padding, kernel, stride, 1, (x.shape[2], x.shape[3])
        )
        xp = TF.pad(xt, (left, right, top, bottom), value=-math.inf)
        y = TF.max_pool2d(xp, pair(kernel), pair(stride), 0)
    else:
        y = TF.max_pool2d(xt, pair(kernel), pair(stride), pair(padding))
    if dy is None:
        return y.detach().numpy()
    y.backward(torch.tensor(np.asarray(dy), dtype=dtype))
    return y.detach().numpy(), xt.grad.numpy()


def torch_cross_entropy(logits, labels, dtype=torch.float64):
    """(loss, dlogits) of torch's F.cross_entropy (mean), class ids or probability targets."""
    lt = torch.tensor(np.asarray(logits), dtype=dtype, requires_grad=True)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        target = torch.tensor(labels, dtype=dtype)
    else:
        target = torch.tensor(labels.astype(np.int64))
    loss = TF.cross_entropy(lt, target)
    loss.backward()
    return loss.item(), lt.grad.numpy()


def torch_bce_with_logits(logits, targets, dtype=torch.float64):
    lt = torch.tensor(np.asarray(logits), dtype=dtype, requires_grad=True)
    tt = torch.tensor(np.asarray(targets), dtype=dtype).reshape(lt.shape)
    loss = TF.binary_cross_entropy_with_logits(lt, tt)
    loss.backward()
    return loss.item(), lt.grad.numpy()


def loss_scale(loss: float, logits) -> float:
    """Magnitude a scalar loss is compared at: its own size, and that of the logits (the loss is
    a difference of terms as large as the largest logit)."""
    return max(abs(loss), 1.0) * (1.0 + float(np.max(np.abs(np.nan_to_num(logits)))))


def assert_loss_close(actual: float, expected: float, op: str, logits):
    assert isinstance(actual, float), f"{op}: loss must be a Python float, got {type(actual)}"
    assert_close(np.float64(actual), np.float64(expected), op + "_loss",
                 magnitude=loss_scale(expected, logits))
