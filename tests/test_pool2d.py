"""F.max_pool2d / F.max_pool2d_backward against torch, including the tie and NaN rules."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import nanocnn as nc
import nanocnn.functional as F
from helpers import assert_close, host, randn, torch_max_pool2d

# (id, x shape, kernel_size, stride, padding)
CASES = [
    ("k2_8x8", (2, 3, 8, 8), 2, None, 0),
    ("k2_odd_7x9_batch1", (1, 5, 7, 9), 2, None, 0),
    ("k2_c17_13x13", (2, 17, 13, 13), 2, None, 0),
    ("k2_stride2_explicit", (2, 3, 6, 6), 2, 2, 0),
    ("k2_stride1_overlap", (2, 4, 6, 5), 2, 1, 0),
    ("k3_stride1_overlap", (1, 3, 7, 9), 3, 1, 0),
    ("k3_stride2_pad1", (2, 3, 13, 5), 3, 2, 1),
    ("k3x2_stride_2x1_pad_1x1", (1, 3, 9, 7), (3, 2), (2, 1), (1, 1)),
    ("k1_stride2", (2, 3, 7, 9), 1, 2, 0),
    ("k5_stride3_pad2", (1, 3, 13, 11), 5, 3, 2),
    ("k4_stride2_pad2", (2, 2, 9, 10), 4, 2, 2),
    ("k2_stride3_gt_kernel", (2, 3, 13, 5), 2, 3, 0),
    ("k2_pad1", (1, 3, 5, 6), 2, None, 1),
    ("k3_input2x2_pad1", (1, 2, 2, 2), 3, 1, 1),
    ("same_k2_odd_7x9", (1, 3, 7, 9), 2, None, "same"),
    ("same_k2_stride1", (2, 3, 5, 6), 2, 1, "same"),
    ("same_k3_stride2", (2, 3, 8, 9), 3, 2, "same"),
    ("same_k3_stride3", (1, 5, 13, 5), 3, 3, "same"),
    ("same_k2x3_stride_2x1", (1, 3, 7, 8), (2, 3), (2, 1), "same"),
    ("valid_k3_stride2", (2, 3, 9, 8), 3, 2, "valid"),
    ("valid_k2_odd", (1, 3, 5, 7), 2, None, "valid"),
]

CIFAR_CASES = [
    ("cifar_pool1_16x32x32", (64, 16, 32, 32), 2, None, 0),
    ("cifar_pool2_32x16x16", (64, 32, 16, 16), 2, None, 0),
    ("cifar_pool3_64x8x8", (64, 64, 8, 8), 2, None, 0),
]


def _ids(cases):
    return [c[0] for c in cases]


def pool_magnitude(x, kernel, stride, padding, dy):
    """Per cell of dx, the sum of |dy| routed to it (the windows it wins)."""
    return torch_max_pool2d(x, kernel, stride, padding, np.abs(dy))[1]


def _check(x, kernel, stride, padding, device, algo, rng, dtype_dy=np.float32):
    xn = nc.tensor(x, device=device)
    y = F.max_pool2d(xn, kernel, stride, padding, algo=algo)
    y_t = torch_max_pool2d(x, kernel, stride, padding)
    assert tuple(y.shape) == y_t.shape
    assert F.max_pool2d_output_shape(x.shape, kernel, stride, padding) == y_t.shape
    assert_close(y, y_t, "max_pool2d")
    dy = randn(rng, y_t.shape)
    _, dx_t = torch_max_pool2d(x, kernel, stride, padding, dy)
    dx = F.max_pool2d_backward(nc.tensor(dy, device=device), xn, kernel, stride, padding, algo=algo)
    assert tuple(dx.shape) == x.shape
    assert_close(dx, dx_t, "max_pool2d_backward", pool_magnitude(x, kernel, stride, padding, dy))


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_max_pool2d_matches_torch(case, algo, device, rng):
    _, shape, kernel, stride, padding = case
    _check(randn(rng, shape), kernel, stride, padding, device, algo, rng)


@pytest.mark.parametrize("case", CIFAR_CASES, ids=_ids(CIFAR_CASES))
def test_max_pool2d_cifar(case, device, rng):
    _, shape, kernel, stride, padding = case
    x = np.maximum(randn(rng, shape), 0)  # after a ReLU: about half the cells are tied zeros
    _check(x, kernel, stride, padding, device, "fast", rng)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_max_pool2d_reference_agrees_with_fast(case, rng):
    _, shape, kernel, stride, padding = case
    x = np.floor(randn(rng, shape) * 2)  # integer values: many ties
    y_ref = F.max_pool2d(x, kernel, stride, padding, algo="reference")
    np.testing.assert_array_equal(host(F.max_pool2d(x, kernel, stride, padding)), host(y_ref))
    dy = randn(rng, tuple(y_ref.shape))
    assert_close(F.max_pool2d_backward(dy, x, kernel, stride, padding),
                 F.max_pool2d_backward(dy, x, kernel, stride, padding, algo="reference"),
                 "max_pool2d_backward", pool_magnitude(x, kernel, stride, padding, dy))


# ---- ties: the first maximum in row-major order wins ------------------------------------------


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize(
    "kernel,stride,padding",
    [(2, None, 0), (2, 1, 0), (3, 1, 1), (3, 2, 1), (3, 2, 0), ((2, 3), (1, 2), (1, 1)), (2, None, "same"),
     (3, 1, "same")],
    ids=["k2", "k2_s1_overlap", "k3_s1_p1_overlap", "k3_s2_p1_overlap", "k3_s2", "k2x3_s1x2_p1",
         "k2_same", "k3_s1_same"],
)
@pytest.mark.parametrize("values", ["integers_0_to_2", "relu_zeros", "all_equal"])
def test_max_pool2d_ties_match_torch(values, kernel, stride, padding, algo, device, rng):
    shape = (2, 3, 7, 9)
    if values == "integers_0_to_2":
        x = rng.integers(0, 3, shape).astype(np.float32)
    elif values == "relu_zeros":
        x = np.maximum(randn(rng, shape) - 1.0, 0)  # mostly zero, like activations after ReLU
    else:
        x = np.full(shape, 0.5, np.float32)
    _check(x, kernel, stride, padding, device, algo, rng)


@pytest.mark.parametrize("algo", ["fast", "reference"])
def test_max_pool2d_backward_all_zero_windows_by_hand(algo, device):
    """Zero windows (common after ReLU): the top-left cell of each window gets the gradient."""
    x = np.zeros((1, 1, 4, 4), np.float32)
    dy = np.array([[[[1, 2], [3, 4]]]], np.float32)
    dx = host(F.max_pool2d_backward(nc.tensor(dy, device=device), nc.tensor(x, device=device), 2,
                                    algo=algo))
    expected = np.zeros((4, 4), np.float32)
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("algo", ["fast", "reference"])
def test_max_pool2d_backward_overlapping_windows_add_by_hand(algo):
    """kernel 2, stride 1 on zeros: window (p, q) sends its gradient to cell (p, q); where windows
    share a winner (here: a single large cell) the contributions add."""
    x = np.zeros((1, 1, 3, 3), np.float32)
    dy = np.array([[[[1, 2], [4, 8]]]], np.float32)
    dx = host(F.max_pool2d_backward(dy, x, 2, 1, algo=algo))[0, 0]
    np.testing.assert_array_equal(dx, [[1, 2, 0], [4, 8, 0], [0, 0, 0]])
    x[0, 0, 1, 1] = 5.0  # the centre is in all four windows
    dx = host(F.max_pool2d_backward(dy, x, 2, 1, algo=algo))[0, 0]
    np.testing.assert_array_equal(dx, [[0, 0, 0], [0, 15, 0], [0, 0, 0]])


@pytest.mark.parametrize("algo", ["fast", "reference"])
def test_max_pool2d_padding_never_wins(algo, device):
    """Padded cells take no part: an all-negative input pools to negative values, not 0."""
    x = -np.arange(1, 26, dtype=np.float32).reshape(1, 1, 5, 5)
    for padding in (1, "same"):
        y = host(F.max_pool2d(nc.tensor(x, device=device), 3, 2, padding, algo=algo))
        np.testing.assert_array_equal(y, torch_max_pool2d(x, 3, 2, padding))
        assert (y < 0).all()
        dx = host(F.max_pool2d_backward(np.ones(y.shape), x, 3, 2, padding, algo=algo))
        assert dx.sum() == y.size  # every window's gradient landed inside x


def test_max_pool2d_stride_defaults_to_kernel(rng):
    x = randn(rng, (1, 2, 9, 7))
    np.testing.assert_array_equal(host(F.max_pool2d(x, 3)), host(F.max_pool2d(x, 3, 3)))
    np.testing.assert_array_equal(host(F.max_pool2d(x, (3, 2))), host(F.max_pool2d(x, (3, 2), (3, 2))))


# ---- NaN ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize(
    "kernel,stride,padding", [(2, None, 0), (3, 1, 1), (3, 2, "same")], ids=["k2", "k3_s1_p1", "k3_s2_same"]
)
def test_max_pool2d_nan_in_window_gives_nan(kernel, stride, padding, algo, device, rng):
    x = randn(rng, (2, 3, 8, 7))
    x[0, 1, 3, 4] = np.nan
    x[1, 2, 0, 0] = np.nan
    x[1, 0, 7, 6] = np.nan
    _check(x, kernel, stride, padding, device, algo, rng)
    y = host(F.max_pool2d(x, kernel, stride, padding, algo=algo))
    assert np.isnan(y[0, 1]).any() and np.isnan(y[1, 2]).any() and not np.isnan(y[0, 0]).any()


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("kernel,stride", [(2, None), (3, None), (3, 1)], ids=["k2_fastpath", "k3", "k3_s1"])
def test_max_pool2d_backward_several_nans_in_one_window_matches_torch(kernel, stride, algo):
    """Two NaNs in one window: torch (and reference.cpp, the spec) send the gradient to the LAST
    NaN in row-major order (`val > max || isnan(val)` updates on every NaN)."""
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan
    y_t = torch_max_pool2d(x, kernel, stride, 0)
    dy = np.arange(1, y_t.size + 1, dtype=np.float32).reshape(y_t.shape)
    _, dx_t = torch_max_pool2d(x, kernel, stride, 0, dy)
    dx = F.max_pool2d_backward(dy, x, kernel, stride, algo=algo)
    np.testing.assert_array_equal(host(dx), dx_t)


# ---- ceil_mode (PyTorch's rounding up, with partial windows at the end) -------------------------

CEIL_CASES = [  # (H, W, kernel, stride, padding)
    (7, 9, 2, 2, 0),
    (5, 5, 3, 2, 1),
    (6, 7, 3, 3, 0),
    (8, 5, 2, 3, 1),
    (4, 4, 3, 2, 0),
]


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("h,w,k,s,p", CEIL_CASES, ids=[f"{c[0]}x{c[1]}_k{c[2]}_s{c[3]}_p{c[4]}" for c in CEIL_CASES])
def test_max_pool2d_ceil_mode_matches_torch(h, w, k, s, p, algo, rng):
    x = rng.standard_normal((2, 3, h, w), dtype=np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = TF.max_pool2d(xt, k, s, p, ceil_mode=True)
    dy = rng.standard_normal(tuple(yt.shape), dtype=np.float32)
    yt.backward(torch.tensor(dy))
    y = F.max_pool2d(x, k, s, p, ceil_mode=True, algo=algo)
    assert F.max_pool2d_output_shape(x.shape, k, s, p, ceil_mode=True) == tuple(yt.shape)
    assert_close(y, yt, "max_pool2d")
    dx = F.max_pool2d_backward(dy, x, k, s, p, ceil_mode=True, algo=algo)
    assert_close(dx, xt.grad, "max_pool2d_backward")


def test_max_pool2d_ceil_mode_must_be_bool():
    with pytest.raises(TypeError, match="ceil_mode"):
        F.max_pool2d(np.zeros((1, 1, 4, 4), np.float32), 2, ceil_mode="yes")


@pytest.mark.parametrize("h,k,s", [(3, 4, 2), (5, 6, 3), (2, 3, 1)])
def test_max_pool2d_ceil_mode_kernel_larger_than_input_matches_torch(h, k, s, rng):
    x = rng.standard_normal((1, 2, h, h), dtype=np.float32)
    expected = TF.max_pool2d(torch.tensor(x), k, s, k // 2, ceil_mode=True)
    assert_close(F.max_pool2d(x, k, s, k // 2, ceil_mode=True), expected, "max_pool2d")


def test_max_pool2d_ceil_mode_with_valid_padding_rounds_up():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    assert F.max_pool2d(x, 2, padding="valid", ceil_mode=True).shape == (1, 1, 3, 3)
    with pytest.raises(ValueError, match="ceil_mode"):
        F.max_pool2d(x, 2, padding="same", ceil_mode=True)


# ---- the SIMD and the scalar 2x2 / stride 2 code --------------------------------------------------
# On an AVX-512 CPU the 2x2 / stride 2 window runs 16 windows at a time (pool_avx512.cpp);
# forcing another ISA runs the scalar code. Both must give the same bits, ties and NaNs included.


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 2, 7, 9), (3, 1, 2, 35), (1, 1, 66, 3),
                                   (2, 2, 17, 50),
                                   # small planes, 16 windows over several rows (Q = 8, 4, 2, 1),
                                   # window counts that are not multiples of 16
                                   (3, 5, 8, 8), (2, 3, 16, 16), (5, 1, 4, 4), (7, 3, 2, 2),
                                   (1, 1, 16, 8), (3, 2, 6, 4)])
def test_max_pool2d_2x2_simd_and_scalar_agree_bit_for_bit(shape, rng):
    x = randn(rng, shape)
    x[rng.random(shape) < 0.4] = 0.0  # whole windows of ReLU zeros: ties
    x[rng.random(shape) < 0.02] = np.nan
    dy = randn(rng, (shape[0], shape[1], shape[2] // 2, shape[3] // 2))
    results = {}
    for isa in ("auto", "generic"):
        nc._C.sgemm_set_isa(isa)
        y = F.max_pool2d(x, 2)
        dx = F.max_pool2d_backward(dy, x, 2)
        results[isa] = (host(y), host(dx))
    nc._C.sgemm_set_isa("auto")
    for a, b in zip(results["auto"], results["generic"]):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    expected = torch_max_pool2d(x, 2, 2, 0, dy)
    np.testing.assert_array_equal(np.isnan(results["auto"][0]), np.isnan(expected[0]))
