"""Zero-copy exchange through DLPack: nc.from_dlpack(obj) and Tensor.__dlpack__."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

import nanocnn as nc
import nanocnn.functional as F


def test_from_torch_shares_memory():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    n = nc.from_dlpack(t)
    assert n.shape == (3, 4) and n.device == "cpu"
    t[1, 2] = -5.0
    assert np.asarray(n)[1, 2] == -5.0
    np.asarray(n)[0, 0] = 42.0
    assert t[0, 0].item() == 42.0


def test_to_torch_and_numpy_share_memory():
    n = nc.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    t = torch.from_dlpack(n)
    a = np.from_dlpack(n)
    assert tuple(t.shape) == (2, 3) and t.dtype == torch.float32
    np.asarray(n)[1, 1] = 9.0
    assert t[1, 1].item() == 9.0 and a[1, 1] == 9.0
    assert n.__dlpack_device__() == (1, 0)


def test_from_numpy_and_from_a_capsule():
    a = np.linspace(0, 1, 10, dtype=np.float32)
    n = nc.from_dlpack(a)
    a[3] = 7.0
    assert np.asarray(n)[3] == 7.0
    m = nc.from_dlpack(torch.ones(2, 2).__dlpack__())
    assert np.asarray(m).sum() == 4.0


def test_exported_memory_outlives_the_nanocnn_tensor():
    n = nc.tensor(np.full((64, 1024), 3.0, np.float32))  # large: its block is cached when freed
    t = torch.from_dlpack(n)
    del n
    gc.collect()
    filler = nc.zeros([64, 1024])  # would reuse the block if it had been freed
    assert torch.all(t == 3.0)
    del filler, t


def test_imported_memory_outlives_the_producer():
    t = torch.full((256, 256), 2.0)
    n = nc.from_dlpack(t)
    del t
    gc.collect()
    assert float(np.asarray(n).sum()) == 2.0 * 256 * 256


def test_ops_run_on_shared_memory():
    x = torch.randn(2, 3, 6, 6)
    w = torch.randn(4, 3, 3, 3)
    y = F.conv2d(nc.from_dlpack(x), nc.from_dlpack(w), padding=1)
    expected = torch.nn.functional.conv2d(x, w, padding=1)
    np.testing.assert_allclose(np.asarray(y), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_round_trip_through_torch_keeps_the_same_memory():
    n = nc.tensor(np.ones((4, 4), np.float32))
    back = nc.from_dlpack(torch.from_dlpack(n))
    assert back.numpy().ctypes.data == n.numpy().ctypes.data


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: torch.zeros(3, dtype=torch.float64), "float32"),
        (lambda: torch.zeros(3, dtype=torch.int32), "float32"),
        (lambda: torch.zeros(3, 4).t(), "contiguous"),
        (lambda: np.zeros((4, 4), np.float32)[:, ::2], "contiguous"),
    ],
    ids=["float64", "int32", "transposed", "strided-numpy"],
)
def test_refuses_what_it_cannot_share(make, match):
    with pytest.raises(ValueError, match=match):
        nc.from_dlpack(make())


def test_a_refused_capsule_stays_with_its_producer_and_a_used_one_is_rejected():
    capsule = torch.zeros(3, dtype=torch.float64).__dlpack__()
    with pytest.raises(ValueError, match="float32"):
        nc.from_dlpack(capsule)
    capsule = torch.zeros(3).__dlpack__()
    nc.from_dlpack(capsule)
    with pytest.raises(ValueError, match="already consumed"):
        nc.from_dlpack(capsule)


def test_not_an_array():
    with pytest.raises(TypeError, match="DLPack capsule"):
        nc.from_dlpack([1.0, 2.0])


def test_torch_tensor_requiring_grad_is_shared_detached():
    t = torch.ones(3, requires_grad=True)
    n = nc.from_dlpack(t)
    with torch.no_grad():
        t[0] = 5.0
    assert np.asarray(n)[0] == 5.0


def test_empty_tensors_are_shared_whatever_their_strides():
    assert nc.from_dlpack(torch.empty(3, 0)).shape == (3, 0)
    assert nc.from_dlpack(np.empty((3, 0), np.float32)).shape == (3, 0)
