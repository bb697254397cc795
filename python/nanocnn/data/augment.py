"""Random affine augmentation of image batches, vectorised in numpy.

One 2x3 affine map per image takes every output pixel (row, col) to the input position it is
sampled from (an inverse map, so no holes); the input is then read there by nearest-neighbour
or bilinear interpolation, all images of a batch in a handful of array operations. Bilinear
weights are a convex combination of input pixels, so outputs stay within the input's value
range (except where fill_mode="constant" brings in cval).
"""
from __future__ import annotations

import numpy as np

FILL_MODES = ("nearest", "constant", "reflect", "wrap")


def affine_matrices(n, height, width, rng, rotation_range=0.0, height_shift=(0.0, False),
                    width_shift=(0.0, False), shear_range=0.0, zoom_range=(1.0, 1.0)):
    """n random inverse maps, (n, 2, 3) float64, in (row, col) pixel coordinates.

    Angles are in degrees; a shift is (amount, is_fraction_of_size) and is drawn uniformly in
    [-amount, amount]; zoom factors for rows and columns are drawn independently in
    zoom_range (a factor above 1 samples a larger area: the content looks smaller). The map is
    rotation @ shear @ zoom about the image centre, then the shift.
    """
    theta = np.deg2rad(rng.uniform(-rotation_range, rotation_range, n)) if rotation_range else np.zeros(n)
    shear = np.deg2rad(rng.uniform(-shear_range, shear_range, n)) if shear_range else np.zeros(n)
    lo, hi = zoom_range
    zr, zc = (rng.uniform(lo, hi, (2, n)) if (lo, hi) != (1.0, 1.0) else np.ones((2, n)))

    def shifts(spec, size):
        amount, fraction = spec
        if not amount:
            return np.zeros(n)
        if fraction:
            return rng.uniform(-amount, amount, n) * size
        return rng.integers(-int(amount), int(amount) + 1, n).astype(np.float64)

    tr, tc = shifts(height_shift, height), shifts(width_shift, width)
    cos, sin = np.cos(theta), np.sin(theta)
    # rotation [[cos, -sin], [sin, cos]] @ shear [[1, -sin s], [0, cos s]] @ diag(zr, zc)
    a00 = cos * zr
    a01 = (-cos * np.sin(shear) - sin * np.cos(shear)) * zc
    a10 = sin * zr
    a11 = (-sin * np.sin(shear) + cos * np.cos(shear)) * zc
    cr, cc = (height - 1) / 2.0, (width - 1) / 2.0
    m = np.empty((n, 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = a00, a01, a10, a11
    # input = A @ (out - centre) + centre + shift
    m[:, 0, 2] = cr - a00 * cr - a01 * cc + tr
    m[:, 1, 2] = cc - a10 * cr - a11 * cc + tc
    return m


def _fold(index, size, mode):
    """Integer indices mapped into [0, size) by the fill mode (constant: clipped, masked later)."""
    if mode == "reflect":  # d c b a | a b c d | d c b a  (half-sample symmetric, as scipy)
        period = index % (2 * size)
        return np.where(period < size, period, 2 * size - 1 - period)
    if mode == "wrap":
        return index % size
    return np.clip(index, 0, size - 1)


def apply_affine(x, matrices, fill_mode="nearest", cval=0.0, order=1):
    """Samples each image of ``x`` (N, H, W, C) through its map in ``matrices`` (N, 2, 3).

    ``order`` is 0 (nearest neighbour) or 1 (bilinear). Returns float32 (N, H, W, C).
    """
    n, h, w, _ = x.shape
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                             indexing="ij")
    m = matrices[:, :, :, None, None]  # broadcast over (H, W)
    src_r = m[:, 0, 0] * rows + m[:, 0, 1] * cols + m[:, 0, 2]  # (N, H, W)
    src_c = m[:, 1, 0] * rows + m[:, 1, 1] * cols + m[:, 1, 2]
    image = np.arange(n)[:, None, None]
    if order == 0:
        corners = [(np.floor(src_r + 0.5).astype(np.int64), np.floor(src_c + 0.5).astype(np.int64),
                    None)]
    else:
        r0, c0 = np.floor(src_r), np.floor(src_c)
        fr, fc = (src_r - r0)[..., None], (src_c - c0)[..., None]
        r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
        corners = [(r0, c0, (1 - fr) * (1 - fc)), (r0, c0 + 1, (1 - fr) * fc),
                   (r0 + 1, c0, fr * (1 - fc)), (r0 + 1, c0 + 1, fr * fc)]
    out = np.zeros(x.shape, dtype=np.float64)
    for r, c, weight in corners:
        value = x[image, _fold(r, h, fill_mode), _fold(c, w, fill_mode)].astype(np.float64)
        if fill_mode == "constant":
            inside = ((r >= 0) & (r < h) & (c >= 0) & (c < w))[..., None]
            value = np.where(inside, value, cval)
        out += value if weight is None else weight * value
    return out.astype(np.float32)
