"""F.conv2d / F.conv2d_backward against torch (float64 autograd), every padding form."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import nanocnn as nc
import nanocnn.functional as F
from helpers import (
    assert_close,
    explicit_pads,
    host,
    keras_same,
    out_size,
    pair,
    conv2d_magnitude,
    randn,
    torch_conv2d,
)

# (id, x shape (N,C,H,W), w shape (K,C,R,S), stride, padding, dilation, with bias)
CASES = [
    ("k3_c3_7x9_valid_batch1", (1, 3, 7, 9), (5, 3, 3, 3), 1, 0, 1, True),
    ("pointwise_1x1", (2, 5, 6, 7), (4, 5, 1, 1), 1, 0, 1, True),
    ("1x1_stride2", (2, 3, 7, 9), (4, 3, 1, 1), 2, 0, 1, False),
    ("1x1_pad1", (1, 3, 5, 4), (2, 3, 1, 1), 1, 1, 1, True),
    ("1x1_asym_pad_bottom_right", (2, 3, 5, 4), (2, 3, 1, 1), 1, ((0, 1), (0, 2)), 1, True),
    ("k2_same_8x8", (2, 3, 8, 8), (16, 3, 2, 2), 1, "same", 1, True),
    ("k2_same_odd_7x9", (1, 3, 7, 9), (5, 3, 2, 2), 1, "same", 1, False),
    ("k2x2_input2x2_valid", (3, 2, 2, 2), (3, 2, 2, 2), 1, "valid", 1, True),
    ("k3_same_c17_k33_13x5", (2, 17, 13, 5), (33, 17, 3, 3), 1, "same", 1, True),
    ("k3_pad1_c33_k17_batch1", (1, 33, 9, 7), (17, 33, 3, 3), 1, 1, 1, False),
    ("k5_pad2_stride2", (2, 3, 13, 11), (5, 3, 5, 5), 2, 2, 1, True),
    ("k5_valid_13x5", (1, 5, 13, 5), (3, 5, 5, 5), 1, "valid", 1, True),
    ("k3_stride3_pad_pair", (1, 5, 13, 5), (3, 5, 3, 3), 3, (1, 2), 1, True),
    ("k3_stride_pair_2x3", (2, 3, 11, 13), (4, 3, 3, 3), (2, 3), 1, 1, True),
    ("k2x3_nonsquare_same", (2, 3, 7, 9), (4, 3, 2, 3), 1, "same", 1, True),
    ("k3x1_stride_2x1_pad_1x0", (2, 3, 9, 6), (4, 3, 3, 1), (2, 1), (1, 0), 1, False),
    ("k1x5_valid", (1, 3, 4, 9), (6, 3, 1, 5), 1, "valid", 1, True),
    ("k3_dilation2_pad2", (2, 3, 9, 9), (4, 3, 3, 3), 1, 2, 2, True),
    ("k3_dilation_2x1_same", (1, 3, 11, 8), (5, 3, 3, 3), 1, "same", (2, 1), True),
    ("k2_dilation2_stride2_valid", (2, 5, 13, 5), (3, 5, 2, 2), 2, 0, 2, True),
    ("k3_pads_of_pairs", (2, 3, 7, 9), (4, 3, 3, 3), 1, ((1, 0), (2, 1)), 1, True),
    ("k2_pads_of_pairs_stride2", (1, 3, 8, 7), (4, 3, 2, 2), 2, ((0, 3), (3, 0)), 1, True),
    ("k2_same_stride2_odd_7x9", (1, 3, 7, 9), (4, 3, 2, 2), 2, "same", 1, True),
    ("k3_same_stride2_8x8", (2, 3, 8, 8), (4, 3, 3, 3), 2, "same", 1, True),
    ("k4_same_stride3_13x5", (1, 5, 13, 5), (3, 5, 4, 4), 3, "same", 1, True),
    ("k2_same_stride2_dilation2", (2, 3, 9, 8), (4, 3, 2, 2), 2, "same", 2, True),
    ("k5_same_stride_2x3_c17", (1, 17, 10, 11), (5, 17, 5, 5), (2, 3), "same", 1, True),
    ("kernel_equals_input_5x5", (2, 3, 5, 5), (4, 3, 5, 5), 1, "valid", 1, True),
    ("kernel3_input2_pad1", (1, 3, 2, 2), (2, 3, 3, 3), 1, 1, 1, True),
    ("k2_stride3_gt_kernel", (2, 3, 13, 5), (4, 3, 2, 2), 3, 0, 1, True),
    ("batch9_chunks_k3", (9, 3, 6, 5), (5, 3, 3, 3), 1, 1, 1, True),
    ("k3_c1_k1", (2, 1, 6, 6), (1, 1, 3, 3), 1, 1, 1, True),
    # Wide outputs (>= 16 columns: the fused pool reads the direct conv's grid in place), odd
    # sizes, on the flat grid and with shifted copies.
    ("k3_valid_odd_21x35", (2, 4, 21, 35), (6, 4, 3, 3), 1, "valid", 1, True),
    ("k3_same_18x18_copies", (1, 5, 18, 18), (7, 5, 3, 3), 1, "same", 1, False),
    # Shifted copies padded as whole planes (row length dividing 16, or a multiple of it): four
    # 4-wide rows to a vector, and 32-wide rows with two masks in turn.
    ("k2_same_8x4_rows_share_vectors", (2, 3, 8, 4), (4, 3, 2, 2), 1, "same", 1, True),
    ("k3_same_6x32_copies", (2, 3, 6, 32), (4, 3, 3, 3), 1, "same", 1, True),
]

# The seed CIFAR network's convolutions (batch 64): fast path only, the reference is too slow.
CIFAR_CASES = [
    ("cifar_conv1_3to16_2x2_same_32", (64, 3, 32, 32), (16, 3, 2, 2), 1, "same", 1, True),
    ("cifar_conv2_16to32_2x2_same_16", (64, 16, 16, 16), (32, 16, 2, 2), 1, "same", 1, True),
    ("cifar_conv3_32to64_2x2_same_8", (64, 32, 8, 8), (64, 32, 2, 2), 1, "same", 1, True),
]

# The direct path's outer-product weight-gradient tiles (conv2d.cpp) in several position blocks
# (about 819 positions each with 80 channels): one image cut into blocks of 25 and 7 rows, and
# chunks of 4 images cut into blocks of 3 and 1; channels in tiles of 64 and 16. Fast path only.
DW_BLOCK_CASES = [
    ("dw_outer_row_blocks_k80_32x32", (1, 32, 32, 32), (80, 32, 3, 3), 1, "same", 1, True),
    ("dw_outer_image_blocks_k80_16x16", (32, 32, 16, 16), (80, 32, 3, 3), 1, "same", 1, True),
]


# Row-tiled flat grids (FlatConv::choose_split in conv2d.cpp): whole 16-position vectors per
# output row, no strip (32 and 48 columns, the latter with a one-vector tile per row), and with a
# strip of the last 2 columns (the cats-vs-dogs conv3 forward; at 50x50 the input gradient's grid
# too); batch 2 runs inside the image loop's threads, batch 1 splits each image's tiles, the
# strip's copies and its scatter over the threads. Fast path only.
ROW_TILE_CASES = [
    ("rows_2x2_same_32", (2, 3, 32, 32), (16, 3, 2, 2), 1, "same", 1, True),
    ("rows_odd_vectors_3x3_same_48", (1, 4, 48, 48), (8, 4, 3, 3), 1, "same", 1, True),
    ("rows_strip_3x3_valid_36", (2, 32, 36, 36), (64, 32, 3, 3), 1, "valid", 1, True),
    ("rows_strip_3x3_same_50", (1, 32, 50, 50), (64, 32, 3, 3), 1, "same", 1, False),
]


def _ids(cases):
    return [c[0] for c in cases]


def _make(rng, case):
    _, xs, ws, stride, padding, dilation, bias = case
    x = randn(rng, xs)
    w = randn(rng, ws, 1.0 / math.sqrt(ws[1] * ws[2] * ws[3]))
    b = randn(rng, ws[0]) if bias else None
    return x, w, b, stride, padding, dilation


def _out_shape(x_shape, w_shape, stride, padding, dilation):
    (t, bo), (l, r) = explicit_pads(padding, w_shape[2:], stride, dilation, x_shape[2:])
    st, dl = pair(stride), pair(dilation)
    return (
        x_shape[0],
        w_shape[0],
        out_size(x_shape[2], t, bo, w_shape[2], st[0], dl[0]),
        out_size(x_shape[3], l, r, w_shape[3], st[1], dl[1]),
    )


def _check_forward(x, w, b, stride, padding, dilation, device, algo):
    xn = nc.tensor(x, device=device)
    wn = nc.tensor(w, device=device)
    bn = None if b is None else nc.tensor(b, device=device)
    y = F.conv2d(xn, wn, bn, stride=stride, padding=padding, dilation=dilation, algo=algo)
    assert isinstance(y, nc.Tensor)
    assert y.device == xn.device
    expected = torch_conv2d(x, w, b, stride, padding, dilation)
    assert tuple(y.shape) == expected.shape == _out_shape(x.shape, w.shape, stride, padding, dilation)
    assert F.conv2d_output_shape(x.shape, w.shape, stride, padding, dilation) == expected.shape
    assert_close(y, expected, "conv2d", conv2d_magnitude(x, w, b, stride, padding, dilation))


def _check_backward(rng, x, w, stride, padding, dilation, device, algo):
    y_shape = _out_shape(x.shape, w.shape, stride, padding, dilation)
    dy = randn(rng, y_shape)
    b = np.zeros(w.shape[0], np.float32)
    _, dx_t, dw_t, db_t = torch_conv2d(x, w, b, stride, padding, dilation, dy)
    dx, dw, db = F.conv2d_backward(
        nc.tensor(dy, device=device), nc.tensor(x, device=device), nc.tensor(w, device=device),
        stride=stride, padding=padding, dilation=dilation, algo=algo,
    )
    assert tuple(dx.shape) == x.shape and tuple(dw.shape) == w.shape and tuple(db.shape) == (w.shape[0],)
    _, dx_m, dw_m, db_m = conv2d_magnitude(x, w, b, stride, padding, dilation, dy)
    assert_close(dx, dx_t, "conv2d_backward", dx_m, err_msg="dx")
    assert_close(dw, dw_t, "conv2d_backward", dw_m, err_msg="dw")
    assert_close(db, db_t, "conv2d_backward", db_m, err_msg="db")


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_conv2d_forward_matches_torch(case, algo, device, rng):
    _check_forward(*_make(rng, case), device, algo)


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_conv2d_backward_matches_torch(case, algo, device, rng):
    x, w, _, stride, padding, dilation = _make(rng, case)
    _check_backward(rng, x, w, stride, padding, dilation, device, algo)


@pytest.mark.parametrize("case", CIFAR_CASES + ROW_TILE_CASES,
                         ids=_ids(CIFAR_CASES + ROW_TILE_CASES))
def test_conv2d_fast_path_forward_backward(case, device, rng):
    x, w, b, stride, padding, dilation = _make(rng, case)
    _check_forward(x, w, b, stride, padding, dilation, device, "fast")
    _check_backward(rng, x, w, stride, padding, dilation, device, "fast")


@pytest.mark.parametrize("case", DW_BLOCK_CASES, ids=_ids(DW_BLOCK_CASES))
def test_conv2d_backward_weight_grad_blocks(case, device, rng):
    x, w, _, stride, padding, dilation = _make(rng, case)
    _check_backward(rng, x, w, stride, padding, dilation, device, "fast")


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_conv2d_reference_agrees_with_fast(case, rng):
    x, w, b, stride, padding, dilation = _make(rng, case)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y_fast = F.conv2d(x, w, b, **kw)
    y_ref = F.conv2d(x, w, b, algo="reference", **kw)
    assert_close(y_fast, y_ref, "conv2d", conv2d_magnitude(x, w, b, stride, padding, dilation))
    dy = randn(rng, tuple(y_ref.shape))
    fast = F.conv2d_backward(dy, x, w, **kw)
    ref = F.conv2d_backward(dy, x, w, algo="reference", **kw)
    mags = conv2d_magnitude(x, w, None, stride, padding, dilation, dy)[1:]
    mags = mags[:2] + (np.abs(dy).sum(axis=(0, 2, 3)),)
    for name, a, e, m in zip(("dx", "dw", "db"), fast, ref, mags):
        assert_close(a, e, "conv2d_backward", m, err_msg=name)


# ---- padding conventions ------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["fast", "reference"])
def test_conv2d_same_even_kernel_by_hand(algo, device):
    """2x2 kernel of ones, "same": y[i, j] = x[i, j] + x[i, j+1] + x[i+1, j] + x[i+1, j+1], the
    extra row and column of zero padding at the bottom/right."""
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    w = np.ones((1, 1, 2, 2), np.float32)
    xp = np.pad(x[0, 0], ((0, 1), (0, 1)))
    expected = xp[:-1, :-1] + xp[:-1, 1:] + xp[1:, :-1] + xp[1:, 1:]
    y = F.conv2d(nc.tensor(x, device=device), nc.tensor(w, device=device), padding="same", algo=algo)
    np.testing.assert_array_equal(host(y)[0, 0], expected)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    "x_shape,kernel,dilation",
    [((1, 2, 7, 9), (2, 2), 1), ((2, 3, 6, 5), (4, 3), 1), ((1, 2, 9, 8), (2, 4), (2, 3)),
     ((1, 3, 5, 5), (1, 2), 1)],
    ids=["k2_7x9", "k4x3_6x5", "k2x4_dil2x3", "k1x2_5x5"],
)
def test_conv2d_same_stride1_matches_torch_padding_same(x_shape, kernel, dilation, rng):
    """For stride 1 torch's own padding="same" exists; even kernels put the extra row/column at the
    bottom/right in both libraries."""
    x = randn(rng, x_shape)
    w = randn(rng, (3, x_shape[1]) + kernel)
    expected = TF.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
                         padding="same", dilation=dilation).numpy()
    y = F.conv2d(x, w, padding="same", dilation=dilation)
    assert_close(y, expected, "conv2d", conv2d_magnitude(x, w, None, 1, "same", dilation))


@pytest.mark.parametrize("size", [1, 2, 5, 7, 8, 9, 13, 32])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv2d_same_output_shape_is_ceil(size, kernel, stride):
    """Keras "same": out = ceil(H / stride), for any kernel, even with a kernel larger than H."""
    shape = F.conv2d_output_shape((1, 1, size, size + 1), (1, 1, kernel, kernel), stride, "same")
    assert shape == (1, 1, math.ceil(size / stride), math.ceil((size + 1) / stride))


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize(
    "size,kernel,stride,dilation",
    [(7, 2, 2, 1), (8, 2, 2, 1), (9, 4, 2, 1), (13, 4, 3, 1), (5, 2, 3, 1), (10, 3, 2, 2),
     (11, 6, 4, 1)],
    ids=lambda v: str(v),
)
def test_conv2d_same_strided_keras_rule_explicit_pad(size, kernel, stride, dilation, algo, rng):
    """Keras's "same" for stride > 1 (total pad max((out-1)*s + d*(k-1) + 1 - H, 0), the odd one at
    the bottom/right), checked against torch on an explicitly padded input."""
    x = randn(rng, (2, 3, size, size + 2))
    w = randn(rng, (4, 3, kernel, kernel))
    top, bottom = keras_same(size, kernel, stride, dilation)
    left, right = keras_same(size + 2, kernel, stride, dilation)
    xp = TF.pad(torch.tensor(x, dtype=torch.float64), (left, right, top, bottom))
    expected = TF.conv2d(xp, torch.tensor(w, dtype=torch.float64), stride=stride,
                         dilation=dilation).numpy()
    y = F.conv2d(x, w, stride=stride, padding="same", dilation=dilation, algo=algo)
    assert_close(y, expected, "conv2d", conv2d_magnitude(x, w, None, stride, "same", dilation))


def test_conv2d_padding_forms_are_equivalent(rng):
    x, w = randn(rng, (1, 2, 6, 7)), randn(rng, (3, 2, 3, 3))
    y_int = host(F.conv2d(x, w, padding=1))
    for form in [(1, 1), [1, 1], ((1, 1), (1, 1)), [[1, 1], [1, 1]], np.int64(1)]:
        np.testing.assert_array_equal(host(F.conv2d(x, w, padding=form)), y_int, err_msg=str(form))
    np.testing.assert_array_equal(host(F.conv2d(x, w, padding="valid")), host(F.conv2d(x, w)))
    np.testing.assert_array_equal(host(F.conv2d(x, w, padding="same")), y_int)
    y_pair = host(F.conv2d(x, w, padding=(1, 0)))
    np.testing.assert_array_equal(host(F.conv2d(x, w, padding=((1, 1), (0, 0)))), y_pair)


def test_conv2d_accepts_tensors_and_arrays_alike(rng):
    x, w, b = randn(rng, (2, 3, 5, 5)), randn(rng, (4, 3, 3, 3)), randn(rng, 4)
    y1 = host(F.conv2d(x, w, b, padding=1))
    y2 = host(F.conv2d(nc.tensor(x), nc.tensor(w), nc.tensor(b), padding=1))
    y3 = host(F.conv2d(x.astype(np.float64), w, list(b), padding=1))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, y3)


def test_conv2d_backward_returns_fresh_tensors(rng):
    """Gradients are written with `=`: calling twice gives the same result, not a sum."""
    x, w = randn(rng, (2, 3, 5, 5)), randn(rng, (4, 3, 3, 3))
    dy = randn(rng, (2, 4, 5, 5))
    first = [host(g) for g in F.conv2d_backward(dy, x, w, padding=1)]
    second = [host(g) for g in F.conv2d_backward(dy, x, w, padding=1)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


# ---- NaN ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize(
    "stride,padding,dilation", [(1, 1, 1), (2, "same", 1), (1, 0, 2)], ids=["pad1", "same_s2", "dil2"]
)
def test_conv2d_nan_propagates_to_the_outputs_it_touches(stride, padding, dilation, algo, device, rng):
    x = randn(rng, (2, 3, 9, 8))
    w = randn(rng, (4, 3, 3, 3))
    x[1, 2, 4, 3] = np.nan
    y = host(F.conv2d(nc.tensor(x, device=device), nc.tensor(w, device=device), stride=stride,
                      padding=padding, dilation=dilation, algo=algo))
    expected = torch_conv2d(x, w, None, stride, padding, dilation)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    assert np.isnan(y[1]).any() and not np.isnan(y[0]).any()
    assert_close(y, expected, "conv2d", conv2d_magnitude(x, w, None, stride, padding, dilation))

    dy = randn(rng, y.shape)
    dx, dw, db = (host(g) for g in F.conv2d_backward(dy, x, w, stride=stride, padding=padding,
                                                       dilation=dilation, algo=algo))
    _, dx_t, dw_t, db_t = torch_conv2d(x, w, np.zeros(4, np.float32), stride, padding, dilation, dy)
    assert not np.isnan(dx).any()  # dx = w^T dy does not read x
    assert not np.isnan(db).any()
    assert np.isnan(dw[:, 2]).any() and not np.isnan(dw[:, :2]).any()
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(dw_t))
    dx_m = conv2d_magnitude(x, w, np.zeros(4, np.float32), stride, padding, dilation, dy)[1]
    assert_close(dx, dx_t, "conv2d_backward", dx_m)


EDGE_NAN_CASES = [
    ("k3_valid_odd_21x35", (3, 4, 21, 35), 3, 0),
    ("cats_conv3_k3_valid_36", (4, 32, 36, 36), 3, 0),
    ("k3_same_18x18_copies", (2, 5, 18, 18), 3, "same"),
    ("cifar_k2_same_32", (3, 3, 32, 32), 2, "same"),
]


@pytest.mark.parametrize("case", EDGE_NAN_CASES, ids=_ids(EDGE_NAN_CASES))
def test_conv2d_nan_at_row_and_image_edges_stays_put(case, device, rng):
    """The direct path reads shifted rows: the grid columns it drops read the next row's first
    floats, the last vector of an image the next image's (a valid convolution reads its images
    in place, input_grid in conv2d.cpp). NaN put exactly there must reach only the outputs and
    weight gradients torch says: the dropped lanes are never stored, and the weight-gradient
    tiles do not read them (0 * NaN would be NaN)."""
    _, shape, k, padding = case
    x = randn(rng, shape)
    w = randn(rng, (6, shape[1], k, k))
    b = randn(rng, (6,))
    x[1:, 0, 0, :2] = np.nan  # the first floats of every image but the first
    x[0, shape[1] - 1, 7, 0] = np.nan  # column 0 of a row: the previous row's drops read it
    xn, wn, bn = (nc.tensor(a, device=device) for a in (x, w, b))
    y = F.conv2d(xn, wn, bn, padding=padding)
    dy = randn(rng, tuple(y.shape))
    expected, dx_t, dw_t, db_t = torch_conv2d(x, w, b, 1, padding, 1, dy)
    assert_close(y, expected, "conv2d", conv2d_magnitude(x, w, b, 1, padding))
    dx, dw, db = F.conv2d_backward(nc.tensor(dy, device=device), xn, wn, padding=padding)
    np.testing.assert_array_equal(np.isnan(host(dw)), np.isnan(dw_t))
    assert not np.isnan(host(dx)).any() and not np.isnan(host(db)).any()
    geometry = F._Conv2dGeometry("conv2d", x.shape, w.shape, 1, padding, 1).args()
    pooled, _ = nc._C.conv2d_relu_pool(xn, wn, bn, *geometry, "fast")
    relu = np.where(np.isnan(expected), np.nan, np.maximum(expected, 0))
    pooled_t = host(TF.max_pool2d(torch.tensor(relu), 2))
    np.testing.assert_array_equal(np.isnan(host(pooled)), np.isnan(pooled_t))


# ---- the CPU's two algorithms, and the fused ReLU / skipped input gradient ----------------------
# On an AVX-512 CPU, stride-1 undilated convolutions take the direct path (conv2d.cpp); forcing
# another ISA sends them through im2col + GEMM, which other CPUs use, so both are checked here.


@pytest.mark.parametrize("isa", ["avx2", "generic"])
@pytest.mark.parametrize("case", CASES + CIFAR_CASES[:1], ids=_ids(CASES + CIFAR_CASES[:1]))
def test_conv2d_im2col_path_matches_torch(case, isa, rng):
    try:
        nc._C.sgemm_set_isa(isa)
    except ValueError as err:
        pytest.skip(f"{isa} not supported here: {err}")
    x, w, b, stride, padding, dilation = _make(rng, case)
    _check_forward(x, w, b, stride, padding, dilation, "cpu", "fast")
    _check_backward(rng, x, w, stride, padding, dilation, "cpu", "fast")


def _fused_case(rng, case, device, algo):
    x, w, b, stride, padding, dilation = _make(rng, case)
    if b is None:
        b = np.zeros(w.shape[0], np.float32)
    geometry = F._Conv2dGeometry("conv2d", x.shape, w.shape, stride, padding, dilation).args()
    xn, wn, bn = (nc.tensor(a, device=device) for a in (x, w, b))
    y = nc._C.conv2d(xn, wn, bn, *geometry, algo, True)
    expected = np.maximum(torch_conv2d(x, w, b, stride, padding, dilation), 0)
    assert_close(y, expected, "conv2d", conv2d_magnitude(x, w, b, stride, padding, dilation))
    assert (host(y) >= 0).all()
    return x, w, b, stride, padding, dilation, geometry, xn, wn, y


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", CASES + CIFAR_CASES, ids=_ids(CASES + CIFAR_CASES))
def test_conv2d_fused_relu_and_skipped_input_grad(case, algo, device, rng):
    if algo == "reference" and case in CIFAR_CASES:
        pytest.skip("the reference loops are too slow at batch 64")
    x, w, b, stride, padding, dilation, geometry, xn, wn, y = _fused_case(rng, case, device, algo)
    dy = randn(rng, tuple(y.shape))
    # The gradient through the fused ReLU, with the mask of *this* output (torch's float64 output
    # may differ in sign where it is within rounding of 0).
    masked = dy * (host(y) > 0)
    _, dx_t, dw_t, db_t = torch_conv2d(x, w, b, stride, padding, dilation, masked)
    _, dx_m, dw_m, db_m = conv2d_magnitude(x, w, b, stride, padding, dilation, masked)
    dyn = nc.tensor(dy, device=device)
    for input_grad in (True, False):
        dx, dw, db = nc._C.conv2d_backward(dyn, xn, wn, *geometry, algo, y, input_grad)
        if input_grad:
            assert_close(dx, dx_t, "conv2d_backward", dx_m, err_msg="dx")
        else:
            assert dx is None
        assert_close(dw, dw_t, "conv2d_backward", dw_m, err_msg="dw")
        assert_close(db, db_t, "conv2d_backward", db_m, err_msg="db")


def test_conv2d_backward_checks_relu_y(rng):
    x, w = randn(rng, (2, 3, 6, 6)), randn(rng, (4, 3, 3, 3))
    geometry = F._Conv2dGeometry("conv2d", x.shape, w.shape, 1, 1, 1).args()
    dy = nc.tensor(randn(rng, (2, 4, 6, 6)))
    with pytest.raises(ValueError, match=r"relu_y must have the output's shape \(2, 4, 6, 6\)"):
        nc._C.conv2d_backward(dy, nc.tensor(x), nc.tensor(w), *geometry, "fast",
                              nc.tensor(randn(rng, (2, 4, 6, 5))), True)


# ---- conv2d + ReLU + 2x2 max pool as one op (Conv2D followed by MaxPooling2D(2) in a model) ----

# Pooled outputs 8 windows wide, which the fused pool takes two row pairs at a time
# (pool_avx512.cpp): an odd number of row pairs (the last one alone), and grid rows wider than
# the 16 floats the windows read.
POOL_Q8_CASES = [
    ("pool8_odd_rows_3x3_same_15x16", (2, 5, 15, 16), (6, 5, 3, 3), 1, "same", 1, True),
    ("pool8_wide_rows_2x2_valid_17", (3, 4, 17, 17), (7, 4, 2, 2), 1, "valid", 1, False),
]

POOL_CASES = [c for c in CASES + CIFAR_CASES + ROW_TILE_CASES + POOL_Q8_CASES
              if min(_out_shape(c[1], c[2], c[3], c[4], c[5])[2:]) >= 2]


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", POOL_CASES, ids=_ids(POOL_CASES))
def test_conv2d_relu_pool_equals_its_parts(case, algo, device, rng):
    """The fused op gives the same bits as conv2d(relu) -> max_pool2d, and its backward the same
    bits as max_pool2d_backward -> conv2d_backward(relu_y) (the same kernels, fused or not)."""
    if algo == "reference" and case in CIFAR_CASES + ROW_TILE_CASES:
        pytest.skip("the reference loops are too slow at these sizes")
    x, w, b, stride, padding, dilation = _make(rng, case)
    geometry = F._Conv2dGeometry("conv2d", x.shape, w.shape, stride, padding, dilation).args()
    xn, wn = nc.tensor(x, device=device), nc.tensor(w, device=device)
    bn = None if b is None else nc.tensor(b, device=device)
    pooled, saved = nc._C.conv2d_relu_pool(xn, wn, bn, *geometry, algo)
    y = nc._C.conv2d(xn, wn, bn, *geometry, algo, True)
    np.testing.assert_array_equal(host(pooled), host(F.max_pool2d(y, 2, algo=algo)))
    inference, none = nc._C.conv2d_relu_pool(xn, wn, bn, *geometry, algo, False)
    assert none is None
    np.testing.assert_array_equal(host(inference), host(pooled))
    # Ties (whole windows of ReLU zeros) and NaN-free data both occur here: the gradient must
    # reach exactly the cells the unfused pool backward picks.
    dpooled = nc.tensor(randn(rng, tuple(pooled.shape)), device=device)
    dy = F.max_pool2d_backward(dpooled, y, 2, algo=algo)
    for input_grad in (True, False):
        fused = nc._C.conv2d_relu_pool_backward(dpooled, xn, wn, saved, *geometry, algo,
                                                input_grad)
        parts = nc._C.conv2d_backward(dy, xn, wn, *geometry, algo, y, input_grad)
        for name, a, e in zip(("dx", "dw", "db"), fused, parts):
            if e is None:
                assert a is None, name
            else:
                np.testing.assert_array_equal(host(a), host(e), err_msg=name)


def test_conv2d_relu_pool_checks_its_arguments(rng):
    x, w = nc.tensor(randn(rng, (2, 3, 6, 6))), nc.tensor(randn(rng, (4, 3, 3, 3)))
    geometry = F._Conv2dGeometry("conv2d", (2, 3, 6, 6), (4, 3, 3, 3), 1, 1, 1).args()
    pooled, saved = nc._C.conv2d_relu_pool(x, w, None, *geometry)
    assert tuple(pooled.shape) == (2, 4, 3, 3)
    with pytest.raises(ValueError, match=r"dpooled must have the pooled shape \(2, 4, 3, 3\)"):
        nc._C.conv2d_relu_pool_backward(nc.tensor(randn(rng, (2, 4, 6, 6))), x, w, saved,
                                        *geometry)
    with pytest.raises(ValueError, match=r"saved must be the forward's winner codes"):
        nc._C.conv2d_relu_pool_backward(pooled, x, w, nc.tensor(randn(rng, (2, 4, 6, 6))),
                                        *geometry)
    tiny = F._Conv2dGeometry("conv2d", (2, 3, 3, 3), (4, 3, 3, 3), 1, 0, 1).args()
    with pytest.raises(ValueError, match="at least 2x2, got 1x1"):
        nc._C.conv2d_relu_pool(nc.tensor(randn(rng, (2, 3, 3, 3))), w, None, *tiny)


@pytest.mark.parametrize("isa", ["avx2", "generic"])
@pytest.mark.parametrize("case", POOL_CASES[::4] + CIFAR_CASES[:1],
                         ids=_ids(POOL_CASES[::4] + CIFAR_CASES[:1]))
def test_conv2d_relu_pool_on_the_im2col_path_and_scalar_pool(case, isa, rng):
    """Other CPUs: im2col convolution and the scalar pool's winner codes, the same contract."""
    try:
        nc._C.sgemm_set_isa(isa)
    except ValueError as err:
        pytest.skip(f"{isa} not supported here: {err}")
    test_conv2d_relu_pool_equals_its_parts(case, "fast", "cpu", rng)
