"""The fused losses against torch: F.softmax_cross_entropy (F.cross_entropy, mean) and
F.sigmoid_binary_cross_entropy (F.binary_cross_entropy_with_logits, mean)."""
from __future__ import annotations

import numpy as np
import pytest

import nanocnn as nc
import nanocnn.functional as F
from helpers import (
    assert_close,
    assert_loss_close,
    host,
    randn,
    torch_bce_with_logits,
    torch_cross_entropy,
)

SCE = "softmax_cross_entropy"
BCE = "sigmoid_binary_cross_entropy"

# (id, N, C)
SCE_SHAPES = [
    ("batch1_10", 1, 10),
    ("7x3", 7, 3),
    ("33x17", 33, 17),
    ("5x1_single_class", 5, 1),
    ("2x2", 2, 2),
    ("cifar_64x10", 64, 10),
    ("512x10_parallel_rows", 512, 10),
]


def _ids(cases):
    return [c[0] for c in cases]


def _check_sce(logits, labels, device, algo, pass_labels=None):
    loss_t, grad_t = torch_cross_entropy(logits, labels)
    labels_in = labels if pass_labels is None else pass_labels
    if isinstance(labels_in, np.ndarray) and labels_in.ndim == 2:
        labels_in = nc.tensor(labels_in, device=device)
    loss, dlogits = F.softmax_cross_entropy(nc.tensor(logits, device=device), labels_in, algo=algo)
    assert isinstance(dlogits, nc.Tensor) and tuple(dlogits.shape) == logits.shape
    assert_loss_close(loss, loss_t, SCE, logits)
    assert_close(dlogits, grad_t, SCE)


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", SCE_SHAPES, ids=_ids(SCE_SHAPES))
def test_softmax_cross_entropy_int_labels_match_torch(case, algo, device, rng):
    _, n, c = case
    logits = randn(rng, (n, c), 3.0)
    labels = rng.integers(0, c, n)
    _check_sce(logits, labels, device, algo)


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", SCE_SHAPES, ids=_ids(SCE_SHAPES))
@pytest.mark.parametrize("targets", ["probabilities", "one_hot", "unnormalised"])
def test_softmax_cross_entropy_probability_targets_match_torch(targets, case, algo, device, rng):
    _, n, c = case
    logits = randn(rng, (n, c), 3.0)
    if targets == "one_hot":
        t = np.eye(c, dtype=np.float32)[rng.integers(0, c, n)]
    else:
        e = np.exp(randn(rng, (n, c)))
        t = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        if targets == "unnormalised":  # rows that do not sum to 1: grad = p * sum(t) - t
            t = t * rng.uniform(0.2, 2.0, (n, 1)).astype(np.float32)
    _check_sce(logits, t, device, algo)


@pytest.mark.parametrize(
    "kind", ["int64", "int32", "uint8", "float_integral", "list", "tensor"],
)
def test_softmax_cross_entropy_label_types(kind, rng):
    logits = randn(rng, (6, 4))
    labels = rng.integers(0, 4, 6)
    converted = {
        "int64": labels.astype(np.int64),
        "int32": labels.astype(np.int32),
        "uint8": labels.astype(np.uint8),
        "float_integral": labels.astype(np.float32),
        "list": [int(v) for v in labels],
        "tensor": nc.tensor(labels),
    }[kind]
    _check_sce(logits, labels, "cpu", "fast", pass_labels=converted)


def test_softmax_cross_entropy_one_hot_equals_class_ids(rng):
    logits = randn(rng, (9, 5), 2.0)
    labels = rng.integers(0, 5, 9)
    loss_i, g_i = F.softmax_cross_entropy(logits, labels)
    loss_p, g_p = F.softmax_cross_entropy(logits, np.eye(5, dtype=np.float32)[labels])
    assert abs(loss_i - loss_p) <= 1e-6 * max(1.0, abs(loss_i))
    assert_close(g_p, g_i, SCE)


@pytest.mark.parametrize("case", SCE_SHAPES, ids=_ids(SCE_SHAPES))
def test_softmax_cross_entropy_reference_agrees_with_fast(case, rng):
    _, n, c = case
    logits = randn(rng, (n, c), 3.0)
    labels = rng.integers(0, c, n)
    loss_f, g_f = F.softmax_cross_entropy(logits, labels)
    loss_r, g_r = F.softmax_cross_entropy(logits, labels, algo="reference")
    assert_loss_close(loss_f, loss_r, SCE, logits)
    assert_close(g_f, g_r, SCE)


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("targets", ["ids", "probabilities"])
def test_softmax_cross_entropy_stable_for_huge_logits(targets, algo, device):
    logits = np.array(
        [[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [0.0, 1e4, -1e4], [-1e4, 0.0, 1e4]],
        np.float32,
    )
    labels = np.array([0, 1, 2, 0, 2])
    if targets == "probabilities":
        labels = np.eye(3, dtype=np.float32)[labels] * 0.8 + 0.2 / 3
    loss_t, grad_t = torch_cross_entropy(logits, labels)
    loss, dlogits = F.softmax_cross_entropy(
        nc.tensor(logits, device=device),
        nc.tensor(labels, device=device) if labels.ndim == 2 else labels, algo=algo)
    assert np.isfinite(loss) and np.isfinite(host(dlogits)).all()
    assert_loss_close(loss, loss_t, SCE, logits)
    assert_close(dlogits, grad_t, SCE)


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("where", ["first_column", "middle", "label_column"])
def test_softmax_cross_entropy_nan_logits_give_nan(where, algo, rng):
    logits = randn(rng, (4, 5))
    labels = np.array([3, 1, 0, 2])
    col = {"first_column": 0, "middle": 2, "label_column": 1}[where]
    logits[1, col] = np.nan
    loss, dlogits = F.softmax_cross_entropy(logits, labels, algo=algo)
    loss_t, grad_t = torch_cross_entropy(logits, labels)
    assert np.isnan(loss) and np.isnan(loss_t)
    g = host(dlogits)
    assert np.isnan(g[1]).all()
    np.testing.assert_array_equal(np.isnan(g), np.isnan(grad_t))
    assert_close(g, grad_t, SCE)


# ---- sigmoid + binary cross-entropy -------------------------------------------------------------

# (id, logits shape, targets shape or None for the same)
BCE_SHAPES = [
    ("vector_5", (5,), None),
    ("7x3", (7, 3), None),
    ("4d_2x3x4x5", (2, 3, 4, 5), None),
    ("column_Nx1_with_N_targets", (9, 1), (9,)),
    ("column_Nx1_with_Nx1_targets", (9, 1), None),
    ("single_1x1", (1, 1), None),
    ("chunked_3x4096_plus_5", (3 * 4096 + 5,), None),
]


@pytest.mark.parametrize("algo", ["fast", "reference"])
@pytest.mark.parametrize("case", BCE_SHAPES, ids=_ids(BCE_SHAPES))
@pytest.mark.parametrize("targets", ["soft", "hard"])
def test_sigmoid_bce_matches_torch(targets, case, algo, device, rng):
    _, shape, t_shape = case
    logits = randn(rng, shape, 3.0)
    t_shape = shape if t_shape is None else t_shape
    if targets == "soft":
        t = rng.uniform(0, 1, t_shape).astype(np.float32)
    else:
        t = rng.integers(0, 2, t_shape).astype(np.float32)
    loss_t, grad_t = torch_bce_with_logits(logits, t)
    loss, dlogits = F.sigmoid_binary_cross_entropy(
        nc.tensor(logits, device=device), nc.tensor(t, device=device), algo=algo)
    assert tuple(dlogits.shape) == shape
    assert_loss_close(loss, loss_t, BCE, logits)
    assert_close(dlogits, grad_t, BCE)


@pytest.mark.parametrize("case", BCE_SHAPES, ids=_ids(BCE_SHAPES))
def test_sigmoid_bce_reference_agrees_with_fast(case, rng):
    _, shape, t_shape = case
    logits = randn(rng, shape, 3.0)
    t = rng.uniform(0, 1, shape if t_shape is None else t_shape).astype(np.float32)
    loss_f, g_f = F.sigmoid_binary_cross_entropy(logits, t)
    loss_r, g_r = F.sigmoid_binary_cross_entropy(logits, t, algo="reference")
    assert_loss_close(loss_f, loss_r, BCE, logits)
    assert_close(g_f, g_r, BCE)


@pytest.mark.parametrize("algo", ["fast", "reference"])
def test_sigmoid_bce_stable_for_huge_logits(algo, device):
    logits = np.array([1e4, -1e4, 1e4, -1e4, 100.0, -100.0, 0.0, 1e4], np.float32)
    t = np.array([1, 0, 0, 1, 0.5, 0.5, 1, 0.25], np.float32)
    loss_t, grad_t = torch_bce_with_logits(logits, t)
    loss, dlogits = F.sigmoid_binary_cross_entropy(
        nc.tensor(logits, device=device), nc.tensor(t, device=device), algo=algo)
    assert np.isfinite(loss) and np.isfinite(host(dlogits)).all()
    assert_loss_close(loss, loss_t, BCE, logits)
    assert_close(dlogits, grad_t, BCE)


@pytest.mark.parametrize("algo", ["fast", "reference"])
def test_sigmoid_bce_nan_logits_give_nan(algo, rng):
    logits = randn(rng, (6,))
    logits[3] = np.nan
    t = rng.uniform(0, 1, 6).astype(np.float32)
    loss, dlogits = F.sigmoid_binary_cross_entropy(logits, t, algo=algo)
    loss_t, grad_t = torch_bce_with_logits(logits, t)
    assert np.isnan(loss) and np.isnan(loss_t)
    np.testing.assert_array_equal(np.isnan(host(dlogits)), np.isnan(grad_t))
    assert_close(dlogits, grad_t, BCE)


def test_losses_return_python_float_and_tensor(rng):
    loss, g = F.softmax_cross_entropy(randn(rng, (3, 4)), [0, 1, 2])
    assert type(loss) is float and isinstance(g, nc.Tensor)
    loss, g = F.sigmoid_binary_cross_entropy(randn(rng, (3, 1)), [0, 1, 1])
    assert type(loss) is float and isinstance(g, nc.Tensor) and tuple(g.shape) == (3, 1)
