"""nc.tensor / nc.Tensor / nc.zeros, devices and the thread-count setters."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import nanocnn as nc
import nanocnn.functional as F


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.float16, np.int8, np.int32, np.int64, np.uint8, np.uint16]
)
def test_tensor_from_real_dtypes(dtype, rng):
    a = (rng.standard_normal((3, 4)) * 50).astype(dtype)
    t = nc.tensor(a)
    assert isinstance(t, nc.Tensor)
    assert t.dtype == "float32"
    assert t.numpy().dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), a.astype(np.float32))


@pytest.mark.parametrize(
    "layout", ["fortran", "transposed", "strided", "negative_stride", "broadcast"]
)
def test_tensor_from_non_contiguous_arrays(layout, rng):
    base = rng.standard_normal((6, 8)).astype(np.float32)
    a = {
        "fortran": np.asfortranarray(base),
        "transposed": base.T,
        "strided": base[::2, 1::3],
        "negative_stride": base[::-1, ::-2],
        "broadcast": np.broadcast_to(base[0], (5, 8)),
    }[layout]
    t = nc.tensor(a)
    assert t.shape == a.shape
    assert t.numpy().flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(t.numpy(), a)


def test_tensor_from_python_lists_and_scalars():
    t = nc.tensor([[1, 2, 3], [4, 5, 6]])
    assert t.shape == (2, 3)
    np.testing.assert_array_equal(t.numpy(), [[1, 2, 3], [4, 5, 6]])
    s = nc.tensor(2.5)
    assert s.shape == () and s.ndim == 0 and s.size == 1
    assert float(np.asarray(s)) == 2.5


def test_tensor_is_a_copy_of_the_array(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    t = nc.tensor(a)
    a[0, 0] = 123.0
    assert t.numpy()[0, 0] != 123.0


def test_tensor_of_a_tensor_is_a_copy(rng):
    t = nc.tensor(rng.standard_normal((2, 3)))
    u = nc.tensor(t)
    np.testing.assert_array_equal(u.numpy(), t.numpy())
    u.numpy()[0, 0] = 7.0
    assert t.numpy()[0, 0] != 7.0


def test_tensor_attributes(rng):
    t = nc.tensor(rng.standard_normal((2, 3, 4)))
    assert t.shape == (2, 3, 4) and isinstance(t.shape, tuple)
    assert t.device == "cpu"
    assert t.ndim == 3 and t.size == 24 and len(t) == 2
    r = repr(t)
    assert "(2, 3, 4)" in r and "cpu" in r and "Tensor" in r
    with pytest.raises(TypeError, match="0-d"):
        len(nc.tensor(1.0))


def test_numpy_and_asarray_are_zero_copy_views(rng):
    t = nc.tensor(rng.standard_normal((3, 5)))
    v1, v2 = t.numpy(), np.asarray(t)
    assert v1.dtype == np.float32 and v2.dtype == np.float32
    assert np.shares_memory(v1, v2)
    v2[1, 2] = 42.0
    assert t.numpy()[1, 2] == 42.0  # the tensor's own memory changed
    assert np.asarray(t, dtype=np.float64).dtype == np.float64


def test_numpy_view_keeps_the_tensor_alive(rng):
    a = rng.standard_normal((64, 64)).astype(np.float32)
    view = nc.tensor(a).numpy()  # the tensor itself is dropped at once
    _ = [nc.tensor(np.zeros((64, 64))) for _ in range(10)]  # reuse freed memory if it were freed
    np.testing.assert_array_equal(view, a)


def test_reshape_shares_memory(rng):
    t = nc.tensor(rng.standard_normal((2, 3, 4)))
    r = t.reshape([6, 4])
    assert r.shape == (6, 4)
    assert np.shares_memory(r.numpy(), t.numpy())
    assert t.reshape([-1]).shape == (24,)
    assert t.reshape([4, -1, 2]).shape == (4, 3, 2)
    np.testing.assert_array_equal(r.numpy(), t.numpy().reshape(6, 4))


@pytest.mark.parametrize("shape", [[5, 5], [-1, -1], [7, -1], [-2, 12]], ids=str)
def test_reshape_bad_shape_raises_value_error(shape):
    t = nc.zeros([2, 3, 4])
    with pytest.raises(ValueError, match="reshape"):
        t.reshape(shape)


def test_zeros():
    z = nc.zeros([2, 3])
    assert z.shape == (2, 3) and z.device == "cpu"
    np.testing.assert_array_equal(z.numpy(), np.zeros((2, 3), np.float32))
    assert nc.zeros((4,)).shape == (4,)
    assert nc.zeros([0, 3]).shape == (0, 3)


def test_empty_tensor_roundtrip():
    t = nc.tensor(np.zeros((0, 3)))
    assert t.shape == (0, 3) and t.size == 0
    assert t.numpy().shape == (0, 3)


@pytest.mark.parametrize(
    "data",
    [np.array([1 + 2j, 3j]), np.array([object(), 1], dtype=object), np.array(["a", "b"]),
     np.array([True, False]), np.array([b"x"]), "hello"],
    ids=["complex", "object", "str", "bool", "bytes", "python_str"],
)
def test_tensor_of_non_real_data_raises_type_error(data):
    with pytest.raises(TypeError, match="dtype"):
        nc.tensor(data)


def test_to_cpu_is_identity_and_cpu_device_accepted(rng):
    t = nc.tensor(rng.standard_normal(3), device="cpu")
    assert t.to("cpu").device == "cpu"
    np.testing.assert_array_equal(t.to("cpu").numpy(), t.numpy())


@pytest.mark.skipif(nc.cuda_available(), reason="a GPU is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_device_without_gpu_raises_clear_value_error(device):
    with pytest.raises(ValueError, match="cuda") as info:
        nc.tensor(np.zeros(3), device=device)
    message = str(info.value)
    assert "not supported" in message or "CUDA" in message or "available" in message, message
    with pytest.raises(ValueError, match="cuda"):
        nc.zeros([2], device=device)
    with pytest.raises(ValueError, match="cuda"):
        nc.tensor(np.zeros(3)).to(device)


@pytest.mark.parametrize("device", ["gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "", "cpu:0", "tpu"])
def test_bad_device_string_raises_value_error(device):
    with pytest.raises(ValueError, match="device"):
        nc.tensor(np.zeros(3), device=device)
    with pytest.raises(ValueError, match="device"):
        nc.zeros([3], device=device)


@pytest.mark.parametrize("device", [None, 0, b"cpu"], ids=["None", "int", "bytes"])
def test_non_string_device_raises_type_error(device):
    with pytest.raises(TypeError, match="device"):
        nc.tensor(np.zeros(3), device=device)


def test_cuda_available_is_bool():
    assert isinstance(nc.cuda_available(), bool)
    assert isinstance(nc.__version__, str) and nc.__version__


def test_set_and_get_num_threads(threads):
    threads(1)
    assert nc.get_num_threads() == 1
    threads(3)
    assert nc.get_num_threads() == 3
    threads(np.int64(2))
    assert nc.get_num_threads() == 2


@pytest.mark.parametrize("n", [0, -1])
def test_set_num_threads_below_one_raises_value_error(n, threads):
    before = nc.get_num_threads()
    with pytest.raises(ValueError, match="n must be >= 1"):
        nc.set_num_threads(n)
    assert nc.get_num_threads() == before


def test_set_num_threads_absurdly_large_raises_value_error(threads):
    before = nc.get_num_threads()
    with pytest.raises(ValueError, match="n must be <= 1024"):
        nc.set_num_threads(10**12)
    assert nc.get_num_threads() == before


@pytest.mark.parametrize("n", ["2", 2.0, None, True], ids=["str", "float", "None", "bool"])
def test_set_num_threads_non_int_raises_type_error(n, threads):
    with pytest.raises(TypeError, match="n must be an int"):
        nc.set_num_threads(n)


def test_functional_accepts_torch_tensors_that_require_grad(rng):
    """Users benchmarking against PyTorch pass torch tensors straight in (autograd ones too)."""
    x = torch.tensor(rng.standard_normal((2, 3, 5, 5), dtype=np.float32), requires_grad=True)
    w = torch.tensor(rng.standard_normal((4, 3, 3, 3), dtype=np.float32), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    expected = TF.conv2d(x.detach(), w.detach(), padding=1)
    np.testing.assert_allclose(np.asarray(y), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_large_freed_tensors_are_reused_and_empty_cache_releases_them():
    nc.empty_cache()
    assert nc._C.host_cache_bytes() == 0
    t = nc.zeros([1 << 18])  # 1 MiB: cached when freed
    address = t.numpy().ctypes.data
    del t
    assert nc._C.host_cache_bytes() == 1 << 20
    u = nc.zeros([1 << 18])  # same size: the same block, zeroed again
    assert u.numpy().ctypes.data == address
    assert not np.asarray(u).any()
    assert nc._C.host_cache_bytes() == 0
    del u
    nc.empty_cache()
    assert nc._C.host_cache_bytes() == 0


def test_cache_keeps_the_most_recently_freed_blocks():
    """Past its 1 GiB the cache lets go of the blocks freed longest ago, not of the newcomer.
    (The blocks are never written, so no memory is touched.)"""
    nc.empty_cache()
    old = nc._C.empty([150 << 20], "cpu")  # 600 MiB
    new = nc._C.empty([(150 << 20) + 1024], "cpu")  # 600 MiB + 1 page: another size
    new_address = new.numpy().ctypes.data
    del old
    assert nc._C.host_cache_bytes() == 600 << 20
    del new  # 1.2 GiB in all: the first block goes
    assert nc._C.host_cache_bytes() == (600 << 20) + 4096
    again = nc._C.empty([(150 << 20) + 1024], "cpu")
    assert again.numpy().ctypes.data == new_address
    del again
    nc.empty_cache()
    assert nc._C.host_cache_bytes() == 0


def test_reused_block_does_not_leak_into_a_differently_sized_tensor():
    nc.empty_cache()
    a = nc.tensor(np.full(1 << 18, 7.0, np.float32))
    del a
    b = nc.zeros([(1 << 18) + 4096])  # another page count: not the cached block
    assert not np.asarray(b).any()
    nc.empty_cache()


def test_tensor_copies_torch_tensors_that_require_grad_and_zeros_takes_an_int():
    t = nc.tensor(torch.ones(2, requires_grad=True))
    assert np.asarray(t).tolist() == [1.0, 1.0]
    assert nc.zeros(3).shape == (3,)
    with pytest.raises(TypeError, match="shape"):
        nc.zeros((2.7,))
