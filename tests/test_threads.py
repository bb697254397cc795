"""Results do not depend on nc.set_num_threads: bitwise equality for every op and direction.

The shapes are chosen so that each parallel path actually runs (images split over threads, a
parallel GEMM under a single image, conv weight-gradient chunks, pooling planes, the loss row and
chunk sums), while staying small enough for two cores.
"""
from __future__ import annotations

import numpy as np
import pytest

import nanocnn as nc
import nanocnn.functional as F
from helpers import assert_bitwise_equal, randn

THREAD_COUNTS = [2, 3]

# (id, x shape, w shape, stride, padding)
CONV_CASES = [
    ("batch1_gemm_parallel", (1, 17, 33, 33), (33, 17, 3, 3), 1, 1),
    ("batch5_images_parallel", (5, 3, 32, 32), (16, 3, 2, 2), 1, "same"),
    ("batch9_weight_chunks", (9, 5, 13, 11), (7, 5, 3, 3), 2, "same"),
    ("batch2_pointwise", (2, 33, 20, 20), (17, 33, 1, 1), 1, 0),
    ("cifar_conv1_batch64", (64, 3, 32, 32), (16, 3, 2, 2), 1, "same"),
]


def _with_threads(threads, n, fn):
    threads(n)
    out = fn()
    return [np.array(o.numpy(), copy=True) if isinstance(o, nc.Tensor) else o
            for o in (out if isinstance(out, tuple) else (out,))]


def _compare(threads, fn, what):
    one = _with_threads(threads, 1, fn)
    for n in THREAD_COUNTS:
        many = _with_threads(threads, n, fn)
        for i, (a, b) in enumerate(zip(one, many)):
            if isinstance(a, float):
                assert a == b or (np.isnan(a) and np.isnan(b)), f"{what}[{i}] 1 vs {n} threads: {a!r} vs {b!r}"
            else:
                assert_bitwise_equal(a, b, f"{what}[{i}] 1 vs {n} threads")


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv2d_independent_of_thread_count(case, threads, rng):
    _, xs, ws, stride, padding = case
    x, w, b = nc.tensor(randn(rng, xs)), nc.tensor(randn(rng, ws, 0.2)), nc.tensor(randn(rng, ws[0]))
    y = F.conv2d(x, w, b, stride=stride, padding=padding)
    dy = nc.tensor(randn(rng, tuple(y.shape)))
    _compare(threads, lambda: F.conv2d(x, w, b, stride=stride, padding=padding), "conv2d")
    _compare(threads, lambda: F.conv2d_backward(dy, x, w, stride=stride, padding=padding),
             "conv2d_backward")


@pytest.mark.parametrize("x_shape,w_shape", [((1, 17, 34, 34), (37, 17, 3, 3)),
                                             ((2, 16, 16, 16), (64, 16, 3, 3))],
                         ids=["batch1_wide_pool", "batch2_narrow_pool"])
def test_conv2d_relu_pool_independent_of_thread_count(x_shape, w_shape, threads, rng):
    # Fewer images than threads: the output channels are split over the threads (batch 1 with
    # the pool read from the conv's grid; batch 2 at 3 threads with the packed pool).
    x, w = nc.tensor(randn(rng, x_shape)), nc.tensor(randn(rng, w_shape, 0.2))
    b = nc.tensor(randn(rng, w_shape[0]))
    geometry = F._Conv2dGeometry("conv2d", x_shape, w_shape, 1, 1, 1).args()
    pooled, codes = nc._C.conv2d_relu_pool(x, w, b, *geometry, "fast")
    dp = nc.tensor(randn(rng, tuple(pooled.shape)))
    _compare(threads, lambda: nc._C.conv2d_relu_pool(x, w, b, *geometry, "fast"),
             "conv2d_relu_pool")
    _compare(threads,
             lambda: nc._C.conv2d_relu_pool_backward(dp, x, w, codes, *geometry, "fast", True),
             "conv2d_relu_pool_backward")


@pytest.mark.parametrize(
    "n,fan_in,out",
    [(70, 300, 33), (64, 1024, 500), (1, 257, 129), (3, 1001, 517), (3000, 17, 12)],
    ids=["70x300_to_33", "cifar_dense1", "batch1", "batch3_five_row_blocks", "tall_3000x17"],
)
def test_linear_independent_of_thread_count(n, fan_in, out, threads, rng):
    x, w, b = nc.tensor(randn(rng, (n, fan_in))), nc.tensor(randn(rng, (out, fan_in))), nc.tensor(randn(rng, out))
    dy = nc.tensor(randn(rng, (n, out)))
    _compare(threads, lambda: F.linear(x, w, b), "linear")
    _compare(threads, lambda: F.linear_backward(dy, x, w), "linear_backward")


@pytest.mark.parametrize(
    "shape,kernel,stride,padding",
    [((2, 17, 33, 33), 2, None, 0), ((3, 5, 31, 29), 3, 1, 1), ((64, 16, 32, 32), 2, None, 0)],
    ids=["k2_fastpath", "k3_s1_p1_overlap", "cifar_pool1"],
)
def test_max_pool2d_independent_of_thread_count(shape, kernel, stride, padding, threads, rng):
    x = nc.tensor(np.maximum(randn(rng, shape), 0))
    y = F.max_pool2d(x, kernel, stride, padding)
    dy = nc.tensor(randn(rng, tuple(y.shape)))
    _compare(threads, lambda: F.max_pool2d(x, kernel, stride, padding), "max_pool2d")
    _compare(threads, lambda: F.max_pool2d_backward(dy, x, kernel, stride, padding), "max_pool2d_backward")


def test_relu_independent_of_thread_count(threads, rng):
    x = nc.tensor(randn(rng, (3, 7, 41, 43)))
    dy = nc.tensor(randn(rng, (3, 7, 41, 43)))
    y = F.relu(x)
    _compare(threads, lambda: F.relu(x), "relu")
    _compare(threads, lambda: F.relu_backward(dy, y), "relu_backward")


@pytest.mark.parametrize("n,c", [(512, 10), (1000, 37)], ids=["512x10", "1000x37"])
def test_softmax_cross_entropy_independent_of_thread_count(n, c, threads, rng):
    logits = nc.tensor(randn(rng, (n, c), 3.0))
    labels = rng.integers(0, c, n)
    e = np.exp(randn(rng, (n, c)))
    probs = nc.tensor(e / e.sum(axis=1, keepdims=True))
    _compare(threads, lambda: F.softmax_cross_entropy(logits, labels), "softmax_cross_entropy ids")
    _compare(threads, lambda: F.softmax_cross_entropy(logits, probs), "softmax_cross_entropy probs")


@pytest.mark.parametrize("n", [3 * 4096 + 5, 100_003], ids=["3x4096+5", "100003"])
def test_sigmoid_bce_independent_of_thread_count(n, threads, rng):
    logits = nc.tensor(randn(rng, (n,), 3.0))
    targets = nc.tensor(rng.uniform(0, 1, n))
    _compare(threads, lambda: F.sigmoid_binary_cross_entropy(logits, targets), "sigmoid_bce")


def test_thread_count_is_restored_between_tests():
    """conftest's autouse fixture: every test starts at the default thread count."""
    import conftest

    assert nc.get_num_threads() == conftest._DEFAULT_THREADS


def test_ops_from_several_python_threads_at_once(rng):
    """The GIL is released around every kernel, so ops may run concurrently from Python threads
    (a data loader beside training): per-thread scratch and packing buffers must not be shared.
    Each thread's results must equal the ones computed alone."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = []
    for i in range(8):
        x = randn(rng, (3 + i % 3, 5, 11 + i, 9))
        w = randn(rng, (7 + i, 5, 3, 3), 0.2)
        dy_shape = F.conv2d_output_shape(x.shape, w.shape, 1 + i % 2, "same")
        jobs.append((x, w, 1 + i % 2, randn(rng, dy_shape), randn(rng, (40 + i, 70)),
                     randn(rng, (30, 70))))

    def work(job):
        x, w, stride, dy, xl, wl = job
        out = [F.conv2d(x, w, stride=stride, padding="same")]
        out += list(F.conv2d_backward(dy, x, w, stride=stride, padding="same"))
        out.append(F.linear(xl, wl))
        out.append(F.max_pool2d(x, 2))
        return [np.array(t.numpy(), copy=True) for t in out]

    alone = [work(job) for job in jobs]
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=4) as pool:
            together = list(pool.map(work, jobs))
        for i, (a, b) in enumerate(zip(alone, together)):
            for j, (u, v) in enumerate(zip(a, b)):
                assert_bitwise_equal(u, v, f"job {i} output {j}: concurrent vs alone")
