"""GPU-only checks of conv2d and linear (csrc/cuda/gemm.cuh, conv2d.cu, dense.cu) beyond the
device-parametrised op tests: shapes large enough to use every tile shape and the split weight
gradient, against torch in float64, and bit-identical results from run to run."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nanocnn as nc
import nanocnn.functional as F
from conftest import _cuda_skip_reason
from helpers import (
    assert_bitwise_equal,
    assert_close,
    conv2d_magnitude,
    linear_magnitude,
    randn,
    t64,
    torch_conv2d,
)


@pytest.fixture(autouse=True)
def _needs_cuda():
    reason = _cuda_skip_reason()
    if reason:
        pytest.skip(reason)


def cuda(a):
    return nc.tensor(a, device="cuda")


# (id, x shape, w shape, stride, padding, dilation): each runs forward and backward on the GPU.
# Comments name the GEMMs' shapes (M x N x K) where they pick a tile or a split.
CONV_CASES = [
    # cats-vs-dogs conv1: y is 16 x 438048 x 27 (16 x 256 tiles); dw 16 x 27 x 438048 (split)
    ("catsdogs_conv1_3to16_150", (20, 3, 150, 150), (16, 3, 3, 3), 1, 0, 1),
    # cats-vs-dogs conv2 after pooling: dw 32 x 144 x 20736 (wide tile, split)
    ("catsdogs_conv2_16to32_74", (4, 16, 74, 74), (32, 16, 3, 3), 1, 0, 1),
    # 64 -> 64 at 56x56 (square tiles everywhere), batch 2 to keep the float64 reference quick
    ("resnet_64to64_56", (2, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    ("resnet_256to256_14", (2, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1),
    # partial tiles in every dimension, strides, dilation and asymmetric padding at once
    ("odd_stride_dilation", (3, 37, 29, 23), (70, 37, 3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2)),
    ("stride3_k5_c1", (5, 1, 40, 33), (1, 1, 5, 5), 3, 2, 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv2d_large_matches_torch(case, rng):
    _, xs, ws, stride, padding, dilation = case
    x = randn(rng, xs)
    w = randn(rng, ws, 1.0 / math.sqrt(ws[1] * ws[2] * ws[3]))
    b = randn(rng, ws[0])
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y = F.conv2d(cuda(x), cuda(w), cuda(b), **kw)
    dy = randn(rng, tuple(y.shape))
    y_t, dx_t, dw_t, db_t = torch_conv2d(x, w, b, stride, padding, dilation, dy)
    y_m, dx_m, dw_m, db_m = conv2d_magnitude(x, w, b, stride, padding, dilation, dy)
    assert_close(y, y_t, "conv2d", y_m)
    dx, dw, db = F.conv2d_backward(cuda(dy), cuda(x), cuda(w), **kw)
    assert_close(dx, dx_t, "conv2d_backward", dx_m, err_msg="dx")
    assert_close(dw, dw_t, "conv2d_backward", dw_m, err_msg="dw")
    assert_close(db, db_t, "conv2d_backward", db_m, err_msg="db")


LINEAR_CASES = [
    ("catsdogs_flatten", 20, 18496, 64),  # dx/dw long in one dimension
    ("batch_4096", 4096, 512, 10),        # dw reduction over 4096 rows: split
    ("odd", 67, 129, 65),
    ("one", 1, 1, 1),
]


@pytest.mark.parametrize("case", LINEAR_CASES, ids=[c[0] for c in LINEAR_CASES])
def test_linear_large_matches_torch(case, rng):
    _, n, fin, fout = case
    x, w, b = randn(rng, (n, fin)), randn(rng, (fout, fin), 1.0 / math.sqrt(fin)), randn(rng, fout)
    dy = randn(rng, (n, fout))
    y = F.linear(cuda(x), cuda(w), cuda(b))
    y_m, (dx_m, dw_m, db_m) = linear_magnitude(x, w, b, dy)
    expected = (t64(x) @ t64(w).T + t64(b)).numpy()
    assert_close(y, expected, "linear", y_m)
    dx, dw, db = F.linear_backward(cuda(dy), cuda(x), cuda(w))
    assert_close(dx, (t64(dy) @ t64(w)).numpy(), "linear_backward", dx_m, err_msg="dx")
    assert_close(dw, (t64(dy).T @ t64(x)).numpy(), "linear_backward", dw_m, err_msg="dw")
    assert_close(db, t64(dy).sum(0).numpy(), "linear_backward", db_m, err_msg="db")


def test_gradients_are_bit_identical_run_to_run(rng):
    """The weight and bias gradients sum long reductions in fixed chunks and a fixed order: two
    runs give the same bits (no float atomics)."""
    x, w = randn(rng, (20, 16, 74, 74)), randn(rng, (32, 16, 3, 3), 0.1)
    dy = randn(rng, (20, 32, 72, 72))
    first = F.conv2d_backward(cuda(dy), cuda(x), cuda(w))
    second = F.conv2d_backward(cuda(dy), cuda(x), cuda(w))
    for name, a, b in zip(("dx", "dw", "db"), first, second):
        assert_bitwise_equal(a, b, f"conv2d_backward {name}")
    xl, wl, dyl = randn(rng, (4096, 512)), randn(rng, (10, 512)), randn(rng, (4096, 10))
    first = F.linear_backward(cuda(dyl), cuda(xl), cuda(wl))
    second = F.linear_backward(cuda(dyl), cuda(xl), cuda(wl))
    for name, a, b in zip(("dx", "dw", "db"), first, second):
        assert_bitwise_equal(a, b, f"linear_backward {name}")
