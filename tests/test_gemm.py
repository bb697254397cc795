"""nanocnn._C.sgemm, C = alpha * op(A) @ op(B) + beta * C in place, for every micro-kernel the CPU
supports, against numpy in float64."""
from __future__ import annotations

import numpy as np
import pytest

import nanocnn as nc
import nanocnn.functional as F
from helpers import assert_bitwise_equal, assert_close, conv2d_magnitude, host, linear_magnitude, randn

_C = nc._C
ISAS = ["avx512", "avx2", "generic"]


def _use_isa(isa: str) -> None:
    """Forces a micro-kernel, skipping the test where this CPU cannot run it. conftest's autouse
    fixture puts "auto" back afterwards. (Whether sgemm_set_isa really switches is checked once,
    by test_sgemm_set_isa_forces_each_supported_isa, instead of failing every test here.)"""
    try:
        _C.sgemm_set_isa(isa)
    except ValueError as err:
        pytest.skip(f"{isa} not supported here: {err}")
    if _C.sgemm_isa() != isa:
        pytest.skip(f"sgemm_set_isa({isa!r}) did not take effect (sgemm_isa() is "
                    f"{_C.sgemm_isa()!r}); see test_sgemm_set_isa_forces_each_supported_isa")


def _cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (None where there is no such file)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _cpu_supports(isa, flags):
    if isa == "generic":
        return True
    needs = {"avx2": {"avx2", "fma"}, "avx512": {"avx2", "fma", "avx512f", "avx512dq", "avx512bw",
                                                  "avx512vl"}}[isa]
    return needs <= flags


# (id, M, N, K): odd sizes around the micro-tiles (6/12 rows, 8/16/32 columns), K across the
# KC = 256 blocking, M across MC (144 / 288), and a thin C with a K long enough for the dot
# path's reduction blocks (4096).
SHAPES = [
    ("1x1x1", 1, 1, 1),
    ("2x3x4", 2, 3, 4),
    ("7x13x5", 7, 13, 5),
    ("6x16x8_one_tile", 6, 16, 8),
    ("12x32x3", 12, 32, 3),
    ("13x33x17", 13, 33, 17),
    ("5x7x600_k_blocks", 5, 7, 600),
    ("301x19x11_m_blocks", 301, 19, 11),
    ("17x65x257", 17, 65, 257),
    ("1x200x9_row", 1, 200, 9),
    ("200x1x9_column", 200, 1, 9),
    ("64x100x70_parallel", 64, 100, 70),
    ("7x9x9001_dot_k_blocks", 7, 9, 9001),
]

TRANS = [(False, False), (True, False), (False, True), (True, True)]
TRANS_IDS = ["NN", "TN", "NT", "TT"]


def _operands(rng, M, N, K, ta, tb):
    a = randn(rng, (K, M) if ta else (M, K))
    b = randn(rng, (N, K) if tb else (K, N))
    return a, b


def _expected(a, b, c, ta, tb, alpha, beta, absolute=False):
    """alpha * op(A) @ op(B) + beta * C in float64; with absolute=True the same over absolute
    values, the per-element magnitude the error is measured against."""
    f = np.abs if absolute else (lambda v: v)
    a64 = f(a.astype(np.float64).T if ta else a.astype(np.float64))
    b64 = f(b.astype(np.float64).T if tb else b.astype(np.float64))
    out = f(alpha) * (a64 @ b64)
    if beta != 0.0:
        out = out + f(beta) * f(c.astype(np.float64))
    return out


def _run(a, b, c, ta, tb, alpha, beta):
    C = nc.tensor(c)
    _C.sgemm(nc.tensor(a), nc.tensor(b), C, ta, tb, alpha, beta)
    return host(C)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("trans", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_sgemm_matches_numpy(shape, trans, isa, rng):
    _use_isa(isa)
    _, M, N, K = shape
    ta, tb = trans
    a, b = _operands(rng, M, N, K, ta, tb)
    c = randn(rng, (M, N))
    for alpha, beta in [(1.0, 0.0), (1.0, 1.0), (-0.5, 2.0)]:
        got = _run(a, b, c, ta, tb, alpha, beta)
        assert_close(got, _expected(a, b, c, ta, tb, alpha, beta), "sgemm",
                     _expected(a, b, c, ta, tb, alpha, beta, absolute=True),
                     err_msg=f"alpha={alpha} beta={beta}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("trans", TRANS, ids=TRANS_IDS)
def test_sgemm_beta_zero_ignores_nan_in_c(trans, isa, rng):
    _use_isa(isa)
    ta, tb = trans
    for M, N, K in [(7, 13, 5), (30, 40, 300), (1, 1, 1)]:
        a, b = _operands(rng, M, N, K, ta, tb)
        c = np.full((M, N), np.nan, np.float32)
        c[::2, 1::3] = np.inf
        got = _run(a, b, c, ta, tb, 1.0, 0.0)
        assert np.isfinite(got).all(), f"NaN/inf in C leaked through beta=0 for {(M, N, K)}"
        assert_close(got, _expected(a, b, c, ta, tb, 1.0, 0.0), "sgemm",
                     _expected(a, b, c, ta, tb, 1.0, 0.0, absolute=True))


@pytest.mark.parametrize("isa", ISAS)
def test_sgemm_k_zero_scales_c(isa, rng):
    _use_isa(isa)
    a = nc.tensor(np.zeros((3, 0), np.float32))
    b = nc.tensor(np.zeros((0, 4), np.float32))
    c = randn(rng, (3, 4))
    C = nc.tensor(c)
    _C.sgemm(a, b, C, False, False, 1.0, 0.5)
    np.testing.assert_array_equal(host(C), c * np.float32(0.5))
    C = nc.tensor(np.full((3, 4), np.nan, np.float32))
    _C.sgemm(a, b, C, False, False, 1.0, 0.0)
    np.testing.assert_array_equal(host(C), np.zeros((3, 4), np.float32))


@pytest.mark.parametrize("isa", ISAS)
def test_sgemm_alpha_zero_does_not_read_a_and_b(isa, rng):
    _use_isa(isa)
    a = np.full((4, 5), np.nan, np.float32)
    b = np.full((5, 6), np.nan, np.float32)
    c = randn(rng, (4, 6))
    np.testing.assert_array_equal(_run(a, b, c, False, False, 0.0, 2.0), c * np.float32(2.0))


@pytest.mark.parametrize("isa", ISAS)
def test_sgemm_works_in_place_on_the_given_tensor(isa, rng):
    _use_isa(isa)
    a, b = randn(rng, (5, 4)), randn(rng, (4, 3))
    C = nc.zeros([5, 3])
    view = C.numpy()
    assert _C.sgemm(nc.tensor(a), nc.tensor(b), C) is None
    assert_close(view, a.astype(np.float64) @ b, "sgemm", np.abs(a) @ np.abs(b))  # defaults: NN, 1, 0


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads_n", [2, 3])
def test_sgemm_bitwise_independent_of_thread_count(isa, threads_n, threads, rng):
    _use_isa(isa)
    for (M, N, K), (ta, tb) in zip([(64, 100, 70), (301, 37, 129), (9, 530, 300), (130, 130, 40),
                                    (20, 45, 8200)],
                                   TRANS + [(False, True)]):
        a, b = _operands(rng, M, N, K, ta, tb)
        c = randn(rng, (M, N))
        threads(1)
        one = _run(a, b, c, ta, tb, 1.5, 0.5)
        threads(threads_n)
        many = _run(a, b, c, ta, tb, 1.5, 0.5)
        assert_bitwise_equal(one, many, f"sgemm {(M, N, K, ta, tb)} 1 vs {threads_n} threads")


@pytest.mark.parametrize("isa", ISAS)
def test_ops_under_each_isa_match_reference(isa, rng):
    """conv2d and linear (both on sgemm) under a forced micro-kernel."""
    _use_isa(isa)
    x, w, b = randn(rng, (3, 5, 9, 7)), randn(rng, (17, 5, 3, 3)), randn(rng, 17)
    dy = randn(rng, (3, 17, 9, 7))
    mags = conv2d_magnitude(x, w, b, 1, "same", 1, dy)
    assert_close(F.conv2d(x, w, b, padding="same"), F.conv2d(x, w, b, padding="same", algo="reference"),
                 "conv2d", mags[0])
    for name, a_, e, m in zip(("dx", "dw", "db"), F.conv2d_backward(dy, x, w, padding="same"),
                              F.conv2d_backward(dy, x, w, padding="same", algo="reference"), mags[1:]):
        assert_close(a_, e, "conv2d_backward", m, err_msg=name)
    xl, wl = randn(rng, (13, 33)), randn(rng, (19, 33))
    assert_close(F.linear(xl, wl), F.linear(xl, wl, algo="reference"), "linear", linear_magnitude(xl, wl))


def test_sgemm_isa_names_and_auto():
    assert _C.sgemm_isa() in ISAS
    _C.sgemm_set_isa("generic")
    assert _C.sgemm_isa() == "generic"
    _C.sgemm_set_isa("auto")
    assert _C.sgemm_isa() in ISAS


@pytest.mark.skipif(_cpu_flags() is None, reason="no /proc/cpuinfo to say what the CPU supports")
def test_sgemm_set_isa_forces_each_supported_isa():
    """Every ISA the CPU has (per /proc/cpuinfo) can be forced and is then in use; the others raise
    ValueError; "auto" picks the best one the CPU has."""
    flags = _cpu_flags()
    supported = [isa for isa in ISAS if _cpu_supports(isa, flags)]
    for isa in ISAS:
        if isa in supported:
            _C.sgemm_set_isa(isa)
            assert _C.sgemm_isa() == isa, f"sgemm_set_isa({isa!r}) left sgemm_isa() = {_C.sgemm_isa()!r}"
        else:
            with pytest.raises(ValueError, match=isa):
                _C.sgemm_set_isa(isa)
    _C.sgemm_set_isa("auto")
    assert _C.sgemm_isa() == supported[0], f"auto chose {_C.sgemm_isa()}, CPU supports {supported}"


def test_sgemm_set_isa_rejects_unknown_name():
    with pytest.raises(ValueError, match="isa"):
        _C.sgemm_set_isa("sse9")
    assert _C.sgemm_isa() in ISAS


@pytest.mark.parametrize(
    "a_shape,b_shape,c_shape,ta,tb",
    [((3, 4), (5, 6), (3, 6), False, False), ((3, 4), (4, 6), (3, 5), False, False),
     ((4, 3), (4, 6), (4, 6), True, False), ((3,), (3, 4), (1, 4), False, False)],
    ids=["inner_mismatch", "c_wrong", "c_wrong_transposed", "a_not_2d"],
)
def test_sgemm_shape_errors(a_shape, b_shape, c_shape, ta, tb):
    with pytest.raises(ValueError, match="sgemm"):
        _C.sgemm(nc.zeros(a_shape), nc.zeros(b_shape), nc.zeros(c_shape), ta, tb, 1.0, 0.0)
