"""Shared test set-up: device parametrisation, seeds, thread/ISA hygiene and THE tolerance table.

Layout of the suite (see the shared ARCHITECTURE.md design doc):
    conftest.py     fixtures (device, rng, threads) and TOL, the one tolerance table
    helpers.py      assert_close, torch references (explicit padding), small utilities
    test_<area>.py  one file per op / area

PyTorch is the reference. It runs single-threaded (set here, once) and, unless a test says
otherwise, in float64 on the same float32 inputs, so the reference is as exact as the inputs
allow and the whole tolerance budget belongs to nanocnn.
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
import torch

import nanocnn as nc

torch.set_num_threads(1)

# ---- THE tolerance table ------------------------------------------------------------------------
#
# helpers.assert_close(actual, expected, op, magnitude) checks, element by element,
#
#     |actual - expected| <= rtol * |expected| + atol * magnitude
#
# For ops that sum products (conv2d, linear, sgemm, and their gradients) `magnitude` is, per
# output element, the same sum taken over absolute values, sum_j |t_j| (the op applied to |x|,
# |w|, |b|, |dy|: see helpers.conv2d_magnitude / linear_magnitude). That is the classical scale
# of floating-point summation error: float32 rounding errors of random sign give about
# eps * sum_j |t_j| (eps = 6e-8), whatever the blocking or the thread split. It keeps the check
# tight where nothing cancels (then magnitude ~ |expected| and the bound is ~1.1e-5 relative)
# and fair where a sum cancels to ~0 (a single bias gradient summing 18 values of either sign,
# say), where no relative tolerance can hold. atol = 1e-6 is ~17 float32 ulps of the magnitude;
# measured errors over several seeds stay below 0.2 of the bound (a 5-10x margin). Both
# coefficients are far inside the acceptance bound (relative error 1e-4 for float32).
#
# Other ops use magnitude = max|expected| over the array (the default):
#   max_pool2d / relu forward copy input values: exact (0, 0).
#   max_pool2d_backward adds at most kh*kw gradient values into one cell; its magnitude is the
#     sum of |dy| routed to that cell (same pooling, fed |dy|); relu_backward is exact.
#   losses: "*_loss" is the scalar, compared at magnitude max(|loss|, 1) * (1 + max|logit|)
#     (the loss is a difference of terms as large as the largest logit); dlogits are compared
#     element-wise at the gradient's magnitude (a few float32 roundings per element, and the
#     cancellation in p - 1 for the target class).
TOL = {
    "conv2d": dict(rtol=1e-5, atol=1e-6),
    "conv2d_backward": dict(rtol=1e-5, atol=1e-6),
    "max_pool2d": dict(rtol=0.0, atol=0.0),
    "max_pool2d_backward": dict(rtol=1e-6, atol=1e-7),
    "relu": dict(rtol=0.0, atol=0.0),
    "relu_backward": dict(rtol=0.0, atol=0.0),
    "linear": dict(rtol=1e-5, atol=1e-6),
    "linear_backward": dict(rtol=1e-5, atol=1e-6),
    "softmax_cross_entropy": dict(rtol=1e-5, atol=1e-6),  # dlogits
    "softmax_cross_entropy_loss": dict(rtol=1e-6, atol=1e-6),  # the scalar loss
    "sigmoid_binary_cross_entropy": dict(rtol=1e-5, atol=1e-6),  # dlogits
    "sigmoid_binary_cross_entropy_loss": dict(rtol=1e-6, atol=1e-6),  # the scalar loss
    "sgemm": dict(rtol=1e-5, atol=1e-6),
    # sigmoid: one expf (<= 2 ulp) and one division; atol covers outputs that underflow to
    # float32 denormals (x < -87), compared at magnitude max|y| <= 1.
    "sigmoid": dict(rtol=1e-6, atol=1e-7),
    # dy * y * (1 - y): three roundings (1 - y is exact for y >= 0.5).
    "sigmoid_backward": dict(rtol=1e-6, atol=1e-7),
    # exp of (x - max) per element, a sum over the row and one division: a few ulps plus the
    # sum's rounding, which scales every element of the row alike.
    "softmax": dict(rtol=1e-5, atol=1e-7),
    # y * (dy - sum_j dy_j y_j): the dot product cancels against dy; magnitude per element is
    # y * (|dy| + sum_j |dy_j| y_j) (helpers.softmax_backward_magnitude).
    "softmax_backward": dict(rtol=1e-5, atol=1e-6),
    # x * mask: one float32 multiplication, reproduced exactly by numpy.
    "mul": dict(rtol=0.0, atol=0.0),
    # An optimizer step against torch.optim in float64 on the same float32 parameters and
    # gradients: a handful of float32 roundings per step, compounded over the steps taken;
    # magnitude is max|param|. The acceptance bound (issue 3) is 1e-5 relative.
    "optimizer_step": dict(rtol=1e-5, atol=1e-6),
    # Whole models against equal torch.nn modules (float64): every layer stays inside its own
    # bound above, and the errors pass through the later layers; compared at max|expected|.
    "model_forward": dict(rtol=1e-5, atol=1e-5),
    # Parameters after a few SGD steps of a whole model, compared at max|param| per tensor.
    "model_train_step": dict(rtol=1e-5, atol=1e-5),
    # GPU against CPU (test_cuda.py) uses the entries above where the two differ by a different
    # exp() (CUDA's expf is within 2 ulps), summation order, or a multiply-add fused by nvcc: a
    # few float32 ulps. relu, mul, dropout masks, max pooling and the counts must match bit for
    # bit instead. An optimizer update on the GPU against the same update on the CPU:
    "optimizer_update": dict(rtol=1e-5, atol=1e-6),
}

# Every op forward and backward must be at least as strict as the acceptance bound.
ACCEPTANCE_RTOL = 1e-4
assert all(t["rtol"] <= ACCEPTANCE_RTOL and t["atol"] <= ACCEPTANCE_RTOL for t in TOL.values())


# ---- devices ------------------------------------------------------------------------------------


_CUDA_SKIP = []  # cached reason (or None) for skipping "cuda", computed on first use


def _cuda_skip_reason():
    if not _CUDA_SKIP:
        reason = None
        if not nc.cuda_available():
            reason = f"CUDA not available: {nc._C.cuda_unavailable_reason()}"
        else:
            try:  # a GPU is there, but this build may not have CUDA tensors yet
                nc.zeros([1], device="cuda")
            except ValueError as err:
                reason = f"this build cannot make CUDA tensors yet: {err}"
        _CUDA_SKIP.append(reason)
    return _CUDA_SKIP[0]


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Runs a test once per device. "cuda" is skipped where nanocnn has no usable GPU, or where
    this build cannot allocate tensors on it yet; once it can, every op test runs there too."""
    if request.param == "cuda":
        reason = _cuda_skip_reason()
        if reason:
            pytest.skip(reason)
        callspec = getattr(request.node, "callspec", None)
        if callspec is not None and callspec.params.get("algo") == "reference":
            pytest.skip("algo=\"reference\" runs the CPU reference loops only (test_cuda.py "
                        "checks that it refuses GPU tensors)")
    return request.param


# ---- seeds --------------------------------------------------------------------------------------

# One base seed for the run (override with NANOCNN_TEST_SEED=...); every test gets its own
# generator derived from the base seed and the test's id, so a failing test reproduces alone.
BASE_SEED = int(os.environ.get("NANOCNN_TEST_SEED", "20240607"))


@pytest.fixture
def seed(request) -> int:
    return (BASE_SEED * 1_000_003 + zlib.crc32(request.node.nodeid.encode())) % 2**32


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---- process-wide state -------------------------------------------------------------------------

_DEFAULT_THREADS = nc.get_num_threads()


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Whatever a test does, nanocnn's thread count and GEMM micro-kernel are put back after it."""
    yield
    nc.set_num_threads(_DEFAULT_THREADS)
    nc._C.sgemm_set_isa("auto")


@pytest.fixture
def threads():
    """A setter for nanocnn's thread count; the previous count is restored after the test."""
    before = nc.get_num_threads()
    yield nc.set_num_threads
    nc.set_num_threads(before)
