"""Bad arguments raise ValueError/TypeError naming the argument (never a crash); convertible inputs
(float64, integers, non-contiguous arrays) just work."""
from __future__ import annotations

import numpy as np
import pytest

import nanocnn as nc
import nanocnn.functional as F
from helpers import assert_close, conv2d_magnitude, host, torch_conv2d

f32 = np.float32
X = np.ones((2, 3, 8, 8), f32)  # (N, C, H, W)
W = np.ones((4, 3, 3, 3), f32)  # (K, C, R, S)
Y = np.ones((2, 4, 6, 6), f32)  # conv2d(X, W) output
XP = np.ones((2, 3, 8, 8), f32)
YP = np.ones((2, 3, 4, 4), f32)  # max_pool2d(XP, 2) output
XL = np.ones((5, 6), f32)
WL = np.ones((3, 6), f32)
YL = np.ones((5, 3), f32)
LOGITS = np.zeros((4, 3), f32)

# (id, call, exception, regex the message must match)
CASES = [
    # ---- conv2d
    ("conv_x_rank3", lambda: F.conv2d(X[0], W), ValueError, r"x must have 4 dimensions"),
    ("conv_w_rank2", lambda: F.conv2d(X, W[0, 0]), ValueError, r"w must have 4 dimensions"),
    ("conv_channels_mismatch", lambda: F.conv2d(np.ones((2, 4, 8, 8), f32), W), ValueError, r"channels"),
    ("conv_kernel_larger_than_input", lambda: F.conv2d(np.ones((1, 3, 2, 2), f32), W), ValueError,
     r"kernel.*larger than the padded input"),
    ("conv_kernel_larger_than_padded_input_dilated", lambda: F.conv2d(X, W, dilation=4), ValueError,
     r"kernel"),
    ("conv_stride_0", lambda: F.conv2d(X, W, stride=0), ValueError, r"stride must be >= 1"),
    ("conv_stride_negative", lambda: F.conv2d(X, W, stride=-1), ValueError, r"stride"),
    ("conv_stride_pair_0", lambda: F.conv2d(X, W, stride=(1, 0)), ValueError, r"stride"),
    ("conv_stride_triple", lambda: F.conv2d(X, W, stride=(1, 1, 1)), TypeError, r"stride"),
    ("conv_stride_float", lambda: F.conv2d(X, W, stride=1.5), TypeError, r"stride"),
    ("conv_stride_bool", lambda: F.conv2d(X, W, stride=True), TypeError, r"stride"),
    ("conv_padding_negative", lambda: F.conv2d(X, W, padding=-1), ValueError, r"padding must be >= 0"),
    ("conv_padding_pair_negative", lambda: F.conv2d(X, W, padding=(0, -2)), ValueError, r"padding"),
    ("conv_padding_pairs_negative", lambda: F.conv2d(X, W, padding=((1, 1), (-1, 0))), ValueError,
     r"padding"),
    ("conv_padding_bad_string", lambda: F.conv2d(X, W, padding="full"), ValueError, r"padding"),
    ("conv_padding_float", lambda: F.conv2d(X, W, padding=1.0), TypeError, r"padding"),
    ("conv_padding_none", lambda: F.conv2d(X, W, padding=None), TypeError, r"padding"),
    ("conv_dilation_0", lambda: F.conv2d(X, W, dilation=0), ValueError, r"dilation must be >= 1"),
    ("conv_dilation_negative", lambda: F.conv2d(X, W, dilation=(1, -1)), ValueError, r"dilation"),
    ("conv_bias_wrong_length", lambda: F.conv2d(X, W, np.ones(3, f32)), ValueError, r"\bb must have shape"),
    ("conv_bias_2d", lambda: F.conv2d(X, W, np.ones((4, 1), f32)), ValueError, r"\bb must have shape"),
    ("conv_x_none", lambda: F.conv2d(None, W), TypeError, r"\bx\b"),
    ("conv_x_strings", lambda: F.conv2d(np.array([["a"]]), W), TypeError, r"\bx\b"),
    ("conv_w_complex", lambda: F.conv2d(X, W.astype(complex)), TypeError, r"\bw\b"),
    ("conv_x_empty_batch", lambda: F.conv2d(np.ones((0, 3, 8, 8), f32), W), ValueError, r"\bx\b.*empty"),
    ("conv_x_empty_channels", lambda: F.conv2d(np.ones((2, 0, 8, 8), f32), np.ones((4, 0, 3, 3), f32)),
     ValueError, r"empty"),
    ("conv_w_empty_filters", lambda: F.conv2d(X, np.ones((0, 3, 3, 3), f32)), ValueError, r"\bw\b.*empty"),
    ("conv_algo_bogus", lambda: F.conv2d(X, W, algo="bogus"), ValueError, r"algo"),
    # ---- conv2d_backward
    ("conv_bwd_dy_wrong_shape", lambda: F.conv2d_backward(np.ones((2, 4, 5, 6), f32), X, W), ValueError,
     r"dy must have the output's shape"),
    ("conv_bwd_dy_wrong_channels", lambda: F.conv2d_backward(np.ones((2, 3, 6, 6), f32), X, W), ValueError,
     r"dy"),
    ("conv_bwd_dy_rank3", lambda: F.conv2d_backward(Y[0], X, W), ValueError, r"dy"),
    ("conv_bwd_channels_mismatch", lambda: F.conv2d_backward(Y, np.ones((2, 4, 8, 8), f32), W), ValueError,
     r"channels"),
    ("conv_bwd_stride_0", lambda: F.conv2d_backward(Y, X, W, stride=0), ValueError, r"stride"),
    ("conv_bwd_algo_bogus", lambda: F.conv2d_backward(Y, X, W, algo="bogus"), ValueError, r"algo"),
    # ---- max_pool2d
    ("pool_x_rank3", lambda: F.max_pool2d(XP[0], 2), ValueError, r"x must have 4 dimensions"),
    ("pool_kernel_0", lambda: F.max_pool2d(XP, 0), ValueError, r"kernel_size must be >= 1"),
    ("pool_kernel_larger_than_input", lambda: F.max_pool2d(XP, 9), ValueError, r"kernel_size"),
    ("pool_stride_0", lambda: F.max_pool2d(XP, 2, 0), ValueError, r"stride must be >= 1"),
    ("pool_stride_negative", lambda: F.max_pool2d(XP, 2, -2), ValueError, r"stride"),
    ("pool_padding_negative", lambda: F.max_pool2d(XP, 2, 2, -1), ValueError, r"padding"),
    ("pool_padding_more_than_half_kernel", lambda: F.max_pool2d(XP, 2, 2, 2), ValueError,
     r"padding must be at most half"),
    ("pool_padding_pair_more_than_half", lambda: F.max_pool2d(XP, (3, 2), 1, (1, 2)), ValueError,
     r"padding"),
    ("pool_padding_bad_string", lambda: F.max_pool2d(XP, 2, padding="full"), ValueError, r"padding"),
    ("pool_kernel_float", lambda: F.max_pool2d(XP, 2.0), TypeError, r"kernel_size"),
    ("pool_x_empty", lambda: F.max_pool2d(np.ones((2, 3, 0, 8), f32), 2), ValueError, r"empty|kernel_size"),
    ("pool_x_empty_batch", lambda: F.max_pool2d(np.ones((0, 3, 8, 8), f32), 2), ValueError, r"\bx\b.*empty"),
    ("pool_algo_bogus", lambda: F.max_pool2d(XP, 2, algo="bogus"), ValueError, r"algo"),
    ("pool_bwd_dy_wrong_shape", lambda: F.max_pool2d_backward(np.ones((2, 3, 4, 3), f32), XP, 2), ValueError,
     r"dy must have the output's shape"),
    ("pool_bwd_dy_rank3", lambda: F.max_pool2d_backward(YP[0], XP, 2), ValueError, r"dy"),
    ("pool_bwd_x_rank3", lambda: F.max_pool2d_backward(YP, XP[0], 2), ValueError, r"\bx\b"),
    ("pool_bwd_padding_more_than_half", lambda: F.max_pool2d_backward(YP, XP, 2, 2, 2), ValueError,
     r"padding"),
    ("pool_bwd_algo_bogus", lambda: F.max_pool2d_backward(YP, XP, 2, algo="bogus"), ValueError, r"algo"),
    # ---- relu
    ("relu_x_none", lambda: F.relu(None), TypeError, r"\bx\b"),
    ("relu_x_bool", lambda: F.relu(np.array([True])), TypeError, r"\bx\b"),
    ("relu_algo_bogus", lambda: F.relu(X, algo="bogus"), ValueError, r"algo"),
    ("relu_bwd_dy_wrong_shape", lambda: F.relu_backward(np.ones((2, 3), f32), np.ones((3, 2), f32)),
     ValueError, r"dy"),
    ("relu_bwd_dy_wrong_rank", lambda: F.relu_backward(np.ones((6,), f32), np.ones((3, 2), f32)),
     ValueError, r"dy"),
    ("relu_bwd_algo_bogus", lambda: F.relu_backward(X, X, algo="bogus"), ValueError, r"algo"),
    # ---- linear
    ("linear_x_0d", lambda: F.linear(np.float32(1.0), WL), ValueError, r"\bx\b"),
    ("linear_w_rank3", lambda: F.linear(XL, np.ones((3, 6, 1), f32)), ValueError, r"w must have 2 dimensions"),
    ("linear_w_rank1", lambda: F.linear(XL, np.ones(6, f32)), ValueError, r"\bw\b"),
    ("linear_features_mismatch", lambda: F.linear(XL, np.ones((3, 5), f32)), ValueError, r"features"),
    ("linear_features_mismatch_3d", lambda: F.linear(np.ones((2, 5, 7), f32), WL), ValueError, r"features"),
    ("linear_bias_wrong_length", lambda: F.linear(XL, WL, np.ones(4, f32)), ValueError, r"\bb must have shape"),
    ("linear_x_empty", lambda: F.linear(np.ones((0, 6), f32), WL), ValueError, r"\bx\b.*empty"),
    ("linear_x_empty_3d", lambda: F.linear(np.ones((2, 0, 6), f32), WL), ValueError, r"empty"),
    ("linear_w_empty", lambda: F.linear(XL, np.ones((0, 6), f32)), ValueError, r"\bw\b.*empty"),
    ("linear_algo_bogus", lambda: F.linear(XL, WL, algo="bogus"), ValueError, r"algo"),
    ("linear_bwd_dy_wrong_shape", lambda: F.linear_backward(np.ones((5, 4), f32), XL, WL), ValueError,
     r"dy must have the output's shape"),
    ("linear_bwd_dy_wrong_batch", lambda: F.linear_backward(np.ones((4, 3), f32), XL, WL), ValueError,
     r"dy"),
    ("linear_bwd_dy_rank1", lambda: F.linear_backward(np.ones(3, f32), XL, WL), ValueError, r"dy"),
    ("linear_bwd_dy_wrong_shape_3d", lambda: F.linear_backward(np.ones((2, 5, 4), f32),
                                                               np.ones((2, 5, 6), f32), WL),
     ValueError, r"dy must have the output's shape"),
    ("linear_bwd_dy_flat_for_3d", lambda: F.linear_backward(np.ones((10, 3), f32),
                                                            np.ones((2, 5, 6), f32), WL),
     ValueError, r"dy"),
    ("linear_bwd_algo_bogus", lambda: F.linear_backward(YL, XL, WL, algo="bogus"), ValueError, r"algo"),
    # ---- softmax_cross_entropy
    ("sce_label_too_large", lambda: F.softmax_cross_entropy(LOGITS, [0, 1, 3, 2]), ValueError, r"labels"),
    ("sce_label_negative", lambda: F.softmax_cross_entropy(LOGITS, [0, -1, 1, 2]), ValueError, r"labels"),
    ("sce_labels_too_short", lambda: F.softmax_cross_entropy(LOGITS, [0, 1, 2]), ValueError, r"labels"),
    ("sce_labels_too_long", lambda: F.softmax_cross_entropy(LOGITS, [0, 1, 2, 0, 1]), ValueError, r"labels"),
    ("sce_labels_non_integer_floats", lambda: F.softmax_cross_entropy(LOGITS, [0.5, 1, 2, 0]), TypeError,
     r"labels"),
    ("sce_labels_nan", lambda: F.softmax_cross_entropy(LOGITS, [np.nan, 1, 2, 0]), TypeError, r"labels"),
    ("sce_labels_bool", lambda: F.softmax_cross_entropy(LOGITS, np.array([True, False, True, False])),
     TypeError, r"labels"),
    ("sce_labels_strings", lambda: F.softmax_cross_entropy(LOGITS, ["a", "b", "c", "d"]), TypeError,
     r"labels"),
    ("sce_labels_3d", lambda: F.softmax_cross_entropy(LOGITS, np.zeros((4, 3, 1))), ValueError, r"labels"),
    ("sce_labels_scalar", lambda: F.softmax_cross_entropy(LOGITS, 1), ValueError, r"labels"),
    ("sce_targets_shape_mismatch", lambda: F.softmax_cross_entropy(LOGITS, np.zeros((4, 2), f32)),
     ValueError, r"same shape"),
    ("sce_targets_transposed", lambda: F.softmax_cross_entropy(LOGITS, np.zeros((3, 4), f32)),
     ValueError, r"targets|labels"),
    ("sce_logits_rank1", lambda: F.softmax_cross_entropy(np.zeros(4, f32), [0, 1, 2, 0]), ValueError,
     r"logits must have 2 dimensions"),
    ("sce_logits_rank3", lambda: F.softmax_cross_entropy(np.zeros((4, 3, 1), f32), [0, 1, 2, 0]),
     ValueError, r"logits"),
    ("sce_logits_empty", lambda: F.softmax_cross_entropy(np.zeros((0, 3), f32), np.zeros(0, int)),
     ValueError, r"logits.*empty"),
    ("sce_logits_no_classes", lambda: F.softmax_cross_entropy(np.zeros((4, 0), f32), [0, 0, 0, 0]),
     ValueError, r"logits"),
    ("sce_algo_bogus", lambda: F.softmax_cross_entropy(LOGITS, [0, 1, 2, 0], algo="bogus"), ValueError,
     r"algo"),
    # ---- sigmoid_binary_cross_entropy
    ("bce_shape_mismatch", lambda: F.sigmoid_binary_cross_entropy(np.zeros((4, 2), f32), np.zeros(4, f32)),
     ValueError, r"same shape"),
    ("bce_shape_mismatch_1d", lambda: F.sigmoid_binary_cross_entropy(np.zeros(4, f32), np.zeros(5, f32)),
     ValueError, r"same shape"),
    ("bce_column_with_wrong_length", lambda: F.sigmoid_binary_cross_entropy(np.zeros((4, 1), f32),
                                                                            np.zeros(3, f32)),
     ValueError, r"same shape"),
    ("bce_empty", lambda: F.sigmoid_binary_cross_entropy(np.zeros((0,), f32), np.zeros((0,), f32)),
     ValueError, r"logits.*empty"),
    ("bce_targets_none", lambda: F.sigmoid_binary_cross_entropy(np.zeros(4, f32), None), TypeError,
     r"targets"),
    ("bce_algo_bogus", lambda: F.sigmoid_binary_cross_entropy(np.zeros(4, f32), np.zeros(4, f32),
                                                              algo="bogus"), ValueError, r"algo"),
]


# NaN labels: numpy warns while casting them before the TypeError; the TypeError is what counts.
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("call,exc,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_error_message_names_the_shapes():
    with pytest.raises(ValueError) as info:
        F.conv2d(np.ones((2, 4, 8, 8), f32), W)
    message = str(info.value)
    assert "conv2d" in message and "(2, 4, 8, 8)" in message and "(4, 3, 3, 3)" in message


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_errors_leave_the_library_usable():
    """After every bad call, a good call still works (no corrupted state)."""
    for _, call, exc, _ in CASES:
        with pytest.raises(exc):
            call()
    np.testing.assert_array_equal(host(F.conv2d(X, W)), np.full((2, 4, 6, 6), 27, f32))


# ---- inputs that are converted and work -----------------------------------------------------------


def _conv_expected(x, w, b):
    return torch_conv2d(np.asarray(x, np.float32), np.asarray(w, np.float32),
                        None if b is None else np.asarray(b, np.float32), 1, 1, 1)


@pytest.mark.parametrize(
    "kind", ["float64", "int32", "int64", "uint8", "fortran_order", "transposed_view", "strided_view"]
)
def test_conv2d_converted_inputs_work(kind, rng):
    base_x = rng.integers(-3, 4, (2, 3, 7, 6))
    base_w = rng.integers(-2, 3, (4, 3, 3, 3))
    b = rng.integers(-2, 3, 4)
    if kind == "float64":
        x, w, b = base_x.astype(np.float64), base_w.astype(np.float64), b.astype(np.float64)
    elif kind in ("int32", "int64", "uint8"):
        off = 3 if kind == "uint8" else 0  # unsigned: shift to non-negative values
        x, w, b = (base_x + off).astype(kind), (base_w + off).astype(kind), (b + off).astype(kind)
    elif kind == "fortran_order":
        x, w = np.asfortranarray(base_x.astype(f32)), np.asfortranarray(base_w.astype(f32))
    elif kind == "transposed_view":
        x = np.ascontiguousarray(base_x.astype(f32).transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
        w = np.ascontiguousarray(base_w.astype(f32).transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)
    else:
        big = np.zeros((4, 3, 14, 12), f32)
        big[::2, :, ::2, ::2] = base_x
        x, w = big[::2, :, ::2, ::2], base_w.astype(f32)
    mag = conv2d_magnitude(np.asarray(x, np.float32), np.asarray(w, np.float32), np.asarray(b, np.float32), 1, 1, 1)
    assert_close(F.conv2d(x, w, b, padding=1), _conv_expected(x, w, b), "conv2d", mag)


def test_other_ops_accept_float64_int_and_non_contiguous(rng):
    x = rng.standard_normal((2, 3, 6, 8))  # float64
    xs = x[:, :, ::-1, ::2]  # non-contiguous view
    np.testing.assert_array_equal(host(F.max_pool2d(xs, 2)),
                                  host(F.max_pool2d(np.ascontiguousarray(xs, np.float32), 2)))
    np.testing.assert_array_equal(host(F.relu(xs)), np.maximum(xs, 0).astype(f32))
    xi = rng.integers(-5, 5, (4, 6))
    wi = rng.integers(-5, 5, (3, 6))
    np.testing.assert_array_equal(host(F.linear(xi, wi)), (xi @ wi.T).astype(f32))
    np.testing.assert_array_equal(host(F.linear(xi.T.copy().T, wi)), (xi @ wi.T).astype(f32))
    loss, g = F.softmax_cross_entropy(rng.standard_normal((3, 4)), np.array([1, 2, 3], np.int8))
    assert np.isfinite(loss)
    loss, g = F.sigmoid_binary_cross_entropy(rng.integers(-2, 2, (5,)), rng.integers(0, 2, (5,)))
    assert np.isfinite(loss)


def test_relu_of_empty_array_is_empty_or_value_error():
    """An empty activation is no crash: either an empty result (as torch) or a ValueError."""
    try:
        y = F.relu(np.zeros((0, 3), f32))
    except ValueError as err:
        assert "x" in str(err)
    else:
        assert tuple(y.shape) == (0, 3)


def test_softmax_cross_entropy_probability_labels_error_names_labels():
    """The Python argument is `labels` (class ids or (N, C) probabilities); a shape mismatch of
    probability labels should name it, not an internal `targets`."""
    with pytest.raises(ValueError, match=r"\blabels\b"):
        F.softmax_cross_entropy(LOGITS, np.zeros((4, 2), f32))


# ---- regressions from review: each of these once crashed or misbehaved -------------------------


def test_bare_tensor_new_is_refused_instead_of_crashing():
    with pytest.raises(TypeError, match="nanocnn.tensor"):
        nc.Tensor.__new__(nc.Tensor)


def test_native_pool_geometry_that_would_overflow_is_refused():
    s = (2**64 + 2) // 3  # 3 * s wraps around in int64
    x = nc.tensor(np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="2\\^30"):
        nc._C.max_pool2d(x, [2, 2], [s, 1], [0, 0], [4, 3], "fast")


def test_huge_stride_is_a_clear_value_error():
    with pytest.raises(ValueError, match="stride"):
        F.conv2d(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 2, 2), np.float32), stride=2**70)


def test_array_protocol_copies_when_asked_and_refuses_a_forbidden_copy():
    t = nc.tensor(np.zeros(4, np.float32))
    copied = np.array(t, dtype=np.float32)  # numpy passes copy=True
    copied[0] = 1.0
    assert np.asarray(t)[0] == 0.0
    assert np.shares_memory(np.asarray(t), t.numpy())
    with pytest.raises(ValueError, match="copy=False"):
        np.asarray(t, dtype=np.float64, copy=False)


def test_remembered_geometry_still_refuses_what_means_something_else():
    # functional remembers each call's geometry; arguments equal to a remembered call's in Python
    # (1 == True, 2 == 2.0) but wrong in meaning must still raise, every time.
    x = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((3, 2, 2, 2), np.float32)
    for _ in range(2):
        F.max_pool2d(x, 2, ceil_mode=True)
        F.max_pool2d(x, [2, 2], stride=(2, 2))
        F.conv2d(x, w, stride=1, padding="same", dilation=1)
        with pytest.raises(TypeError, match="ceil_mode"):
            F.max_pool2d(x, 2, ceil_mode=1)
        with pytest.raises(TypeError, match="kernel_size"):
            F.max_pool2d(x, 2.0)
        with pytest.raises(TypeError, match="stride"):
            F.conv2d(x, w, stride=True, padding="same")
        with pytest.raises(TypeError, match="dilation"):
            F.conv2d(x, w, dilation=1.0, padding="same")
    # A list and a tuple of the same ints mean the same geometry.
    np.testing.assert_array_equal(np.asarray(F.max_pool2d(x, [2, 2])),
                                  np.asarray(F.max_pool2d(x, (2, 2))))
    # Another input size is another geometry.
    assert F.max_pool2d(np.ones((1, 2, 6, 6), np.float32), 2).shape == (1, 2, 3, 3)
