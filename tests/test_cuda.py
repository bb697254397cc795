"""The CUDA backend: device runtime, tensors on the GPU, the caching allocator, DLPack with torch,
and every GPU kernel of activation.cu, pool2d.cu, loss.cu and optim.cu against the CPU kernels
(bit for bit where the op is exact) and against torch on the GPU.

On a machine without a usable GPU only the first section runs: nanocnn must say so clearly.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import nanocnn as nc
import nanocnn.functional as F
from helpers import assert_bitwise_equal, assert_close, host, randn, torch_max_pool2d

HAS_CUDA = nc.cuda_available()
TORCH_CUDA = HAS_CUDA and torch.cuda.is_available()

gpu = pytest.mark.skipif(not HAS_CUDA, reason=f"no usable GPU: {nc._C.cuda_unavailable_reason()}")
torch_gpu = pytest.mark.skipif(not TORCH_CUDA, reason="needs a GPU and a torch with CUDA")


@pytest.fixture(autouse=True, scope="module")
def _no_tf32():
    """torch on the GPU computes in true float32 here (TF32 would lose 13 bits of mantissa)."""
    if not TORCH_CUDA:
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


# ---- without a GPU ------------------------------------------------------------------------------


@pytest.mark.skipif(HAS_CUDA, reason="a GPU is available here")
def test_without_gpu_cuda_is_unavailable_with_a_reason():
    assert nc.cuda_available() is False
    reason = nc._C.cuda_unavailable_reason()
    assert reason, "cuda_unavailable_reason() must say why"
    assert re.search(r"CUDA|cuda", reason), reason
    for make in (lambda: nc.zeros([2], device="cuda"),
                 lambda: nc.tensor(np.ones(3), device="cuda:0"),
                 lambda: nc.tensor(np.ones(3)).to("cuda")):
        with pytest.raises(ValueError, match=r"cuda") as info:
            make()
        assert reason in str(info.value), str(info.value)
    with pytest.raises(ValueError, match="cuda"):
        nc.cuda_get_device_name(0)
    with pytest.raises(ValueError, match="cuda"):
        nc.cuda_synchronize()
    assert nc.cuda_memory_allocated() == 0 and nc.cuda_memory_reserved() == 0
    nc.empty_cache()  # releases the (empty) GPU cache without complaint


def test_memory_stats_reject_bad_devices():
    with pytest.raises(ValueError, match="device"):
        nc.cuda_memory_allocated("gpu")
    with pytest.raises(TypeError, match="device"):
        nc.cuda_memory_reserved(None)


# ---- device runtime -----------------------------------------------------------------------------


@gpu
def test_devices_are_listed_and_named():
    count = nc.cuda_device_count()
    assert count >= 1
    assert isinstance(nc.cuda_get_device_name(0), str) and nc.cuda_get_device_name(0)
    assert nc._C.cuda_unavailable_reason() == ""
    with pytest.raises(ValueError, match=rf"cuda:{count} requested but only {count} CUDA device"):
        nc.zeros([1], device=f"cuda:{count}")
    with pytest.raises(ValueError, match="requested but only"):
        nc.cuda_get_device_name(count)


@gpu
def test_round_trip_cpu_cuda_cpu_is_exact(rng):
    for shape in [(7,), (3, 5), (2, 3, 7, 9), (), (0, 4), (1000, 1001)]:
        a = randn(rng, shape)
        t = nc.tensor(a, device="cuda")
        assert t.device == "cuda:0" and t.shape == shape
        assert t.to("cuda").device == "cuda:0" and t.to("cuda:0").shape == shape
        back = t.to("cpu")
        assert back.device == "cpu"
        assert_bitwise_equal(back.numpy(), a, f"round trip {shape}")
        # a copy on the same device, and nc.tensor of a GPU tensor, are new tensors
        again = nc.tensor(t, device="cuda")
        assert again.device == "cuda:0"
        assert_bitwise_equal(host(again), a, "nc.tensor(gpu tensor)")
        assert_bitwise_equal(nc.tensor(t).numpy(), a, "nc.tensor(gpu tensor) to cpu")


@gpu
def test_numpy_refuses_gpu_tensors_and_asarray_copies(rng):
    a = randn(rng, (4, 5))
    t = nc.tensor(a, device="cuda")
    with pytest.raises(TypeError, match=r'to\("cpu"\)'):
        t.numpy()
    c = np.asarray(t)
    assert c.dtype == np.float32 and c.shape == (4, 5)
    assert_bitwise_equal(c, a, "np.asarray")
    c[0, 0] = 123.0  # a copy: the tensor is unchanged
    assert host(t)[0, 0] == a[0, 0]
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    if int(np.__version__.split(".")[0]) >= 2:  # NumPy 2's copy=False: never copy
        with pytest.raises(ValueError, match="copy"):
            np.asarray(t, copy=False)


@gpu
def test_zeros_on_gpu_are_zero_even_in_reused_memory(rng):
    shape = (256, 1024)
    garbage = nc.tensor(np.full(shape, np.nan, np.float32), device="cuda")
    del garbage  # its block goes back to the cache and is handed to the next request
    z = nc.zeros(shape, device="cuda")
    assert z.device == "cuda:0"
    assert np.all(host(z) == 0.0)


@gpu
def test_loss_is_a_device_scalar_and_float_works(rng):
    logits = nc.tensor(randn(rng, (8, 5)), device="cuda")
    loss, dlogits = nc._C.softmax_cross_entropy(logits, np.arange(8) % 5)
    assert loss.shape == () and loss.device == "cuda:0" and dlogits.device == "cuda:0"
    value = float(np.asarray(loss))
    assert np.isfinite(value) and value > 0.0
    loss_f, _ = F.softmax_cross_entropy(logits, np.arange(8) % 5)
    assert loss_f == value


@gpu
def test_reference_algo_and_mixed_devices_are_refused(rng):
    x = nc.tensor(randn(rng, (2, 3)), device="cuda")
    with pytest.raises(ValueError, match="reference"):
        F.relu(x, algo="reference")
    with pytest.raises(ValueError, match="same device"):
        F.relu_backward(nc.tensor(randn(rng, (2, 3))), F.relu(x))


@gpu
def test_synchronize():
    nc.cuda_synchronize()
    nc.cuda_synchronize("cuda:0")
    with pytest.raises(ValueError, match="cuda"):
        nc.cuda_synchronize("cpu")


# ---- the caching allocator ----------------------------------------------------------------------


def _training_like_step(x, w_dy):
    y = F.relu(x)
    dx = F.relu_backward(w_dy, y)
    p = F.max_pool2d(dx, 2)
    loss, dlogits = F.softmax_cross_entropy(p.reshape([p.shape[0], -1]), np.zeros(p.shape[0], np.int64))
    return loss, dlogits


@gpu
def test_allocator_reuses_blocks_in_a_steady_loop(rng):
    x = nc.tensor(randn(rng, (16, 8, 32, 32)), device="cuda")
    dy = nc.tensor(randn(rng, (16, 8, 32, 32)), device="cuda")
    for _ in range(3):
        _training_like_step(x, dy)
    nc.cuda_synchronize()
    allocated, reserved = nc.cuda_memory_allocated(), nc.cuda_memory_reserved()
    assert allocated >= 2 * x.size * 4  # x and dy at least
    for _ in range(20):
        _training_like_step(x, dy)
    nc.cuda_synchronize()
    assert nc.cuda_memory_allocated() == allocated
    assert nc.cuda_memory_reserved() == reserved, "a steady loop must not grow the cache"
    nc.empty_cache()
    assert nc.cuda_memory_reserved() == nc.cuda_memory_allocated()
    del x, dy
    assert nc.cuda_memory_allocated() < allocated


@gpu
def test_out_of_memory_raises_memory_error_with_sizes():
    pib = 2**50
    with pytest.raises(MemoryError) as info:
        nc.zeros([pib // 4], device="cuda")
    message = str(info.value)
    assert str(pib) in message and "free of" in message and "cuda:0" in message, message
    # the device is still usable afterwards
    t = nc.tensor(np.arange(5, dtype=np.float32), device="cuda")
    assert_bitwise_equal(host(F.relu(t)), np.arange(5, dtype=np.float32), "after OOM")


# ---- DLPack -------------------------------------------------------------------------------------


@gpu
def test_dlpack_device_of_gpu_tensor():
    t = nc.zeros([3], device="cuda")
    assert t.__dlpack_device__() == (2, 0)
    capsule = t.__dlpack__(stream=None)
    back = nc.from_dlpack(capsule)
    assert back.device == "cuda:0" and back.shape == (3,)


@torch_gpu
def test_dlpack_shares_memory_with_torch_cuda(rng):
    a = randn(rng, (6, 7))
    n = nc.tensor(a, device="cuda")
    t = torch.from_dlpack(n)
    assert t.is_cuda and t.dtype == torch.float32 and tuple(t.shape) == (6, 7)
    np.testing.assert_array_equal(t.cpu().numpy(), a)
    t.mul_(2.0)  # torch's default stream is CUDA's legacy default stream, where nanocnn runs
    np.testing.assert_array_equal(host(n), 2.0 * a)

    x = torch.randn(4, 9, device="cuda", requires_grad=True)
    m = nc.from_dlpack(x)
    assert m.device == f"cuda:{x.device.index or 0}"
    assert_bitwise_equal(host(F.relu(m)), torch.relu(x).detach().cpu().numpy(), "relu on torch memory")
    with torch.no_grad():
        x.fill_(3.0)
    assert np.all(host(m) == 3.0)


@torch_gpu
def test_dlpack_from_torch_gpu_refuses_bad_dtype():
    with pytest.raises(ValueError, match="float32"):
        nc.from_dlpack(torch.zeros(3, dtype=torch.float64, device="cuda"))


# ---- kernels: GPU against CPU -------------------------------------------------------------------


def _both(a):
    """(cpu tensor, cuda tensor) of one array."""
    return nc.tensor(a), nc.tensor(a, device="cuda")


ELEMENTWISE_SHAPES = [(1,), (7,), (33, 65), (2, 3, 7, 9), (), (100003,), (64, 16, 32, 32)]


@gpu
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
def test_relu_mul_match_cpu_bitwise(shape, rng):
    x = randn(rng, shape)
    flat = x.reshape(-1)
    flat[::5] = 0.0
    flat[1::7] = -0.0
    if flat.size > 3:
        flat[3] = np.nan
    dy = randn(rng, shape)
    xc, xg = _both(x)
    dyc, dyg = _both(dy)
    yc, yg = F.relu(xc), F.relu(xg)
    assert_bitwise_equal(host(yg), host(yc), "relu")
    assert_bitwise_equal(host(F.relu_backward(dyg, yg)), host(F.relu_backward(dyc, yc)), "relu_backward")
    assert_bitwise_equal(host(nc._C.mul(xg, dyg)), host(nc._C.mul(xc, dyc)), "mul")


@gpu
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
def test_sigmoid_matches_cpu(shape, rng):
    x = randn(rng, shape, scale=5.0)
    flat = x.reshape(-1)
    if flat.size > 4:
        flat[:4] = [100.0, -100.0, 0.0, np.nan]
    dy = randn(rng, shape)
    xc, xg = _both(x)
    yc, yg = nc._C.sigmoid(xc), nc._C.sigmoid(xg)
    assert_close(yg, yc, "sigmoid")
    dyc, dyg = _both(dy)
    # the same y on both sides, so only the backward kernel is compared
    y_same = nc.tensor(host(yc), device="cuda")
    assert_close(nc._C.sigmoid_backward(dyg, y_same), nc._C.sigmoid_backward(dyc, yc), "sigmoid")


SOFTMAX_SHAPES = [(1, 1), (1, 10), (64, 10), (3, 31), (5, 33), (7, 1000), (2, 5000), (1000, 3)]


@gpu
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
def test_softmax_matches_cpu_and_is_deterministic(shape, rng):
    x = randn(rng, shape, scale=4.0)
    dy = randn(rng, shape)
    xc, xg = _both(x)
    yc, yg = nc._C.softmax(xc), nc._C.softmax(xg)
    assert_close(yg, yc, "softmax")
    assert_bitwise_equal(host(nc._C.softmax(xg)), host(yg), "softmax twice")
    dyc, dyg = _both(dy)
    y_same = nc.tensor(host(yc), device="cuda")
    assert_close(nc._C.softmax_backward(dyg, y_same), nc._C.softmax_backward(dyc, yc),
                 "softmax_backward")


@gpu
def test_softmax_rows_with_nan_and_inf_match_cpu():
    x = np.array([[1.0, np.nan, 2.0], [np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf],
                  [1e4, -1e4, 0.0]], np.float32)
    xc, xg = _both(x)
    assert_close(nc._C.softmax(xg), nc._C.softmax(xc), "softmax")


@gpu
@pytest.mark.parametrize("shape", [(1,), (1000,), (3, 5, 7), (3_000_001,)], ids=str)
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_mask_is_bit_identical_to_cpu(shape, rate):
    for seed in (0, 12345, 2**63 + 7):
        cpu = nc._C.dropout_mask(list(shape), rate, seed, "cpu")
        gpu_mask = nc._C.dropout_mask(list(shape), rate, seed, "cuda")
        assert gpu_mask.device == "cuda:0"
        assert_bitwise_equal(host(gpu_mask), host(cpu), f"dropout rate {rate} seed {seed}")


POOL_CASES = [
    # (x shape, kernel, stride, padding, ceil_mode)
    ((2, 3, 8, 8), 2, None, 0, False),
    ((2, 3, 9, 7), 2, None, 0, False),  # odd sizes: last row/column in no window
    ((1, 2, 9, 9), 3, 1, 1, False),  # overlapping windows, padding
    ((2, 2, 10, 11), 3, 2, 1, True),  # ceil mode: windows past the edge
    ((1, 1, 7, 5), (3, 2), (2, 1), (1, 0), False),
    ((64, 16, 32, 32), 2, None, 0, False),
    ((1, 1, 1, 1), 1, None, 0, False),
]


@gpu
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("values", ["random", "ties", "nan"])
def test_max_pool2d_matches_cpu_bitwise(case, values, rng):
    shape, kernel, stride, padding, ceil_mode = case
    if values == "random":
        x = randn(rng, shape)
    elif values == "ties":  # after ReLU: many windows of equal values
        x = np.maximum(np.round(randn(rng, shape)), 0.0).astype(np.float32)
    else:
        x = randn(rng, shape)
        x.reshape(-1)[rng.integers(0, x.size, size=max(1, x.size // 13))] = np.nan
    xc, xg = _both(x)
    yc = F.max_pool2d(xc, kernel, stride, padding, ceil_mode)
    yg = F.max_pool2d(xg, kernel, stride, padding, ceil_mode)
    assert_bitwise_equal(host(yg), host(yc), "max_pool2d")
    dy = randn(rng, yc.shape)
    dyc, dyg = _both(dy)
    dxc = F.max_pool2d_backward(dyc, xc, kernel, stride, padding, ceil_mode)
    dxg = F.max_pool2d_backward(dyg, xg, kernel, stride, padding, ceil_mode)
    assert_bitwise_equal(host(dxg), host(dxc), "max_pool2d_backward")


LOSS_SHAPES = [(1, 2), (8, 10), (64, 10), (3, 1000), (1000, 7), (5, 33)]


@gpu
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_softmax_cross_entropy_matches_cpu_and_is_deterministic(shape, targets, rng):
    N, C = shape
    logits = randn(rng, shape, scale=3.0)
    if targets == "labels":
        labels = rng.integers(0, C, size=N)
        lab_c = lab_g = labels
    else:
        p = rng.random(shape).astype(np.float32)
        labels = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
        lab_c, lab_g = _both(labels)
    lc, gc = F.softmax_cross_entropy(nc.tensor(logits), lab_c)
    xg = nc.tensor(logits, device="cuda")
    lg, gg = F.softmax_cross_entropy(xg, lab_g)
    assert gg.device == "cuda:0"
    assert_close(np.float64(lg), np.float64(lc), "softmax_cross_entropy_loss",
                 magnitude=max(abs(lc), 1.0) * (1.0 + np.abs(logits).max()))
    assert_close(gg, gc, "softmax_cross_entropy")
    lg2, gg2 = F.softmax_cross_entropy(xg, lab_g)
    assert lg2 == lg
    assert_bitwise_equal(host(gg2), host(gg), "softmax_cross_entropy twice")


@gpu
@pytest.mark.parametrize("shape", [(1,), (7, 1), (64, 10), (4097,), (3, 5000), (200003,)], ids=str)
def test_sigmoid_bce_matches_cpu_and_is_deterministic(shape, rng):
    logits = randn(rng, shape, scale=4.0)
    logits.reshape(-1)[:1] = 80.0
    t = rng.random(shape).astype(np.float32)
    lc, gc = F.sigmoid_binary_cross_entropy(nc.tensor(logits), nc.tensor(t))
    xg, tg = nc.tensor(logits, device="cuda"), nc.tensor(t, device="cuda")
    lg, gg = F.sigmoid_binary_cross_entropy(xg, tg)
    assert_close(np.float64(lg), np.float64(lc), "sigmoid_binary_cross_entropy_loss",
                 magnitude=max(abs(lc), 1.0) * (1.0 + np.abs(logits).max()))
    assert_close(gg, gc, "sigmoid_binary_cross_entropy")
    lg2, gg2 = F.sigmoid_binary_cross_entropy(xg, tg)
    assert lg2 == lg
    assert_bitwise_equal(host(gg2), host(gg), "bce twice")


@gpu
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (300, 10), (1000, 1), (7, 1000)], ids=str)
def test_count_correct_matches_cpu(shape, rng):
    N, C = shape
    scores = np.round(randn(rng, shape)).astype(np.float32)  # many ties: the first max wins
    scores[0, 0] = np.nan
    labels = rng.integers(0, C, size=N)
    onehot = np.eye(C, dtype=np.float32)[rng.integers(0, C, size=N)]
    sc, sg = _both(scores)
    tc, tg = _both(onehot if C > 1 else rng.random(shape).astype(np.float32))
    for cpu_count, gpu_count in [
        (nc._C.count_correct(sc, labels), nc._C.count_correct(sg, labels)),
        (nc._C.count_correct_dense(sc, tc, 0.25), nc._C.count_correct_dense(sg, tg, 0.25)),
    ]:
        assert gpu_count.shape == () and gpu_count.device == "cuda:0"
        assert float(np.asarray(gpu_count)) == float(np.asarray(cpu_count))


def _run_updates(update, device, arrays, steps):
    tensors = {k: (None if v is None else nc.tensor(v, device=device)) for k, v in arrays.items()}
    for step in range(1, steps + 1):
        update(tensors, step)
    return {k: host(v) for k, v in tensors.items() if v is not None}


OPTIMIZERS = {
    "sgd": (lambda t, s: nc._C.sgd_update(t["p"], t["g"], None, learning_rate=0.1), ()),
    "sgd_momentum": (lambda t, s: nc._C.sgd_update(t["p"], t["g"], t["a"], learning_rate=0.1,
                                                   momentum=0.9), ("a",)),
    "sgd_nesterov": (lambda t, s: nc._C.sgd_update(t["p"], t["g"], t["a"], learning_rate=0.1,
                                                   momentum=0.9, nesterov=True), ("a",)),
    "adam": (lambda t, s: nc._C.adam_update(t["p"], t["g"], t["a"], t["b"], learning_rate=1e-3,
                                            beta_1=0.9, beta_2=0.999, epsilon=1e-7, step=s),
             ("a", "b")),
    "rmsprop": (lambda t, s: nc._C.rmsprop_update(t["p"], t["g"], t["a"], None, None,
                                                  learning_rate=1e-3, rho=0.9, momentum=0.0,
                                                  epsilon=1e-7, centered=False), ("a",)),
    "rmsprop_centered_momentum": (
        lambda t, s: nc._C.rmsprop_update(t["p"], t["g"], t["a"], t["b"], t["c"],
                                          learning_rate=1e-3, rho=0.9, momentum=0.5,
                                          epsilon=1e-7, centered=True), ("a", "b", "c")),
}


@gpu
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("n", [1, 1000, 100003])
def test_optimizer_updates_match_cpu(name, n, rng):
    update, states = OPTIMIZERS[name]
    arrays = {"p": randn(rng, (n,)), "g": randn(rng, (n,))}
    for s in ("a", "b", "c"):
        arrays[s] = np.zeros(n, np.float32) if s in states else None
    cpu = _run_updates(update, "cpu", arrays, steps=5)
    gpu_result = _run_updates(update, "cuda", arrays, steps=5)
    for key in cpu:
        assert_close(gpu_result[key], cpu[key], "optimizer_update", err_msg=f"{name}: {key}")


# ---- kernels: GPU against torch on the GPU ------------------------------------------------------


@torch_gpu
def test_against_torch_cuda(rng):
    x = randn(rng, (16, 8, 12, 12))
    xt = torch.tensor(x, device="cuda")
    xg = nc.tensor(x, device="cuda")
    assert_close(F.relu(xg), torch.relu(xt), "relu")
    y = torch_max_pool2d(x, 2)
    assert_close(F.max_pool2d(xg, 2), torch.nn.functional.max_pool2d(xt, 2), "max_pool2d")
    assert_close(F.max_pool2d(xg, 2), y, "max_pool2d")
    logits = randn(rng, (32, 10), scale=3.0)
    lt = torch.tensor(logits, device="cuda")
    assert_close(nc._C.softmax(nc.tensor(logits, device="cuda")), torch.softmax(lt, dim=1), "softmax")
    labels = rng.integers(0, 10, size=32)
    lt.requires_grad_(True)
    loss_t = torch.nn.functional.cross_entropy(lt, torch.tensor(labels, device="cuda"))
    loss_t.backward()
    loss, dlogits = F.softmax_cross_entropy(nc.tensor(logits, device="cuda"), labels)
    assert_close(np.float64(loss), np.float64(loss_t.item()), "softmax_cross_entropy_loss",
                 magnitude=max(abs(loss_t.item()), 1.0) * (1.0 + np.abs(logits).max()))
    assert_close(dlogits, lt.grad, "softmax_cross_entropy")
