"""nanocnn.data: ImageDataGenerator, flow(), flow_from_directory() and the prefetch thread."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from nanocnn.data import ImageDataGenerator, augment

PIL = pytest.importorskip("PIL.Image")

AUGMENTING = dict(rotation_range=20, width_shift_range=0.15, height_shift_range=3,
                  shear_range=10, zoom_range=0.2, horizontal_flip=True, vertical_flip=True)


def test_identity_and_integer_shift_are_exact(rng):
    x = rng.integers(0, 256, (3, 6, 7, 2)).astype(np.float32)
    identity = np.tile(np.array([[1.0, 0, 0], [0, 1, 0]]), (3, 1, 1))
    for order in (0, 1):
        np.testing.assert_array_equal(augment.apply_affine(x, identity, order=order), x)
    shift = identity.copy()
    shift[:, 0, 2], shift[:, 1, 2] = 2, -1  # output (r, c) reads input (r + 2, c - 1)
    out = augment.apply_affine(x, shift, fill_mode="constant", cval=-5)
    np.testing.assert_array_equal(out[:, :4, 1:], x[:, 2:, :6])
    assert (out[:, 4:] == -5).all() and (out[:, :, 0] == -5).all()
    nearest = augment.apply_affine(x, shift, fill_mode="nearest")
    np.testing.assert_array_equal(nearest[:, 5, 3], x[:, 5, 2])  # clamped to the last row


def test_quarter_turn_is_rot90(rng):
    x = rng.random((2, 5, 5, 3)).astype(np.float32)
    m = augment.affine_matrices(2, 5, 5, np.random.default_rng(0), rotation_range=0)
    # output (r, c) reads input (c, 4 - r): np.rot90 (counter-clockwise)
    m[:, :2, :2] = [[0, 1], [-1, 0]]
    m[:, 0, 2], m[:, 1, 2] = 0, 4
    np.testing.assert_allclose(augment.apply_affine(x, m), np.rot90(x, k=1, axes=(1, 2)),
                               atol=1e-6)


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "wrap"])
def test_augmentation_keeps_value_range_and_labels(fill_mode, rng):
    x = rng.integers(10, 200, (40, 12, 10, 3)).astype(np.uint8)
    y = np.arange(40)
    gen = ImageDataGenerator(rescale=1 / 255, fill_mode=fill_mode, **AUGMENTING)
    it = gen.flow(x, y, batch_size=8, shuffle=True, seed=3)
    for xb, yb in itertools.islice(it, len(it)):
        assert xb.dtype == np.float32 and xb.shape[1:] == (12, 10, 3)
        assert xb.min() >= 10 / 255 - 1e-6 and xb.max() <= 199 / 255 + 1e-6
        # every image keeps its own label: its mean stays close to the source's
        # (a transformed image draws all its pixels from the source image)
        for image, label in zip(xb, yb):
            src = x[label].astype(np.float32) / 255
            assert src.min() - 1e-6 <= image.min() and image.max() <= src.max() + 1e-6
    assert not np.array_equal(gen.transform_batch(x, 1), x.astype(np.float32) / 255)


def test_flow_without_augmentation_is_the_data(rng):
    x = rng.integers(0, 256, (10, 4, 4, 1)).astype(np.uint8)
    it = ImageDataGenerator().flow(x, np.arange(10), batch_size=4, shuffle=False)
    assert len(it) == 3
    batches = list(itertools.islice(it, 3))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x.astype(np.float32))
    np.testing.assert_array_equal(next(it)[1], [0, 1, 2, 3])  # forever: the next epoch begins


def test_flow_x_only_and_grayscale_without_channel_axis(rng):
    x = rng.integers(0, 256, (5, 6, 6)).astype(np.uint8)
    batch = next(ImageDataGenerator(rescale=0.5).flow(x, batch_size=5, shuffle=False))
    assert isinstance(batch, np.ndarray) and batch.shape == (5, 6, 6, 1)
    np.testing.assert_array_equal(batch[..., 0], x * np.float32(0.5))


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_every_sample_once_per_epoch(prefetch, rng):
    x = np.arange(103, dtype=np.float32).reshape(103, 1, 1, 1)
    it = ImageDataGenerator().flow(x, np.arange(103), batch_size=10, seed=5, prefetch=prefetch)
    assert len(it) == 11
    for _ in range(3):  # three epochs, each a new permutation
        epoch = [next(it) for _ in range(len(it))]
        ids = np.concatenate([y for _, y in epoch])
        assert sorted(ids.tolist()) == list(range(103))
        np.testing.assert_array_equal(np.concatenate([xb for xb, _ in epoch]).ravel(), ids)
    it.close()


def test_seeded_runs_repeat_with_and_without_prefetch(rng):
    x = rng.integers(0, 256, (30, 9, 9, 1)).astype(np.uint8)
    gen = ImageDataGenerator(**AUGMENTING)

    def run(prefetch, seed):
        it = gen.flow(x, np.arange(30), batch_size=7, seed=seed, prefetch=prefetch)
        return [next(it) for _ in range(9)]

    a, b, c = run(2, 11), run(0, 11), run(2, 12)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not all(np.array_equal(p[0], q[0]) for p, q in zip(a, c))


def test_reset_restarts_the_sequence(rng):
    x = rng.random((20, 5, 5, 1)).astype(np.float32)
    it = ImageDataGenerator(rotation_range=30).flow(x, batch_size=6, seed=4)
    first = [next(it) for _ in range(5)]
    it.reset()
    np.testing.assert_array_equal(next(it), first[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="fill_mode"):
        ImageDataGenerator(fill_mode="mirror")
    with pytest.raises(ValueError, match="rotation_range must be >= 0"):
        ImageDataGenerator(rotation_range=-1)
    with pytest.raises(TypeError, match="zoom_range must be a number"):
        ImageDataGenerator(zoom_range="big")
    with pytest.raises(ValueError, match="batch_size"):
        ImageDataGenerator().flow(np.zeros((4, 2, 2, 1)), batch_size=0)
    with pytest.raises(ValueError, match="same length"):
        ImageDataGenerator().flow(np.zeros((4, 2, 2, 1)), np.zeros(3))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        ImageDataGenerator().flow(np.zeros((4, 2)))


# ---- flow_from_directory ---------------------------------------------------------------------


@pytest.fixture
def image_tree(tmp_path, rng):
    """root/{cat,dog,emu}/ with PNG and JPEG files of various sizes; each image's colour is
    its class (cat red, dog green, emu blue), so a label can be checked from the pixels."""
    root = tmp_path / "images"
    colours = {"cat": (220, 20, 20), "dog": (20, 220, 20), "emu": (20, 20, 220)}
    counts = {"cat": 4, "dog": 3, "emu": 5}
    for name, count in counts.items():
        (root / name / "more").mkdir(parents=True)
        for i in range(count):
            size = (int(rng.integers(8, 20)), int(rng.integers(8, 20)))
            image = PIL.new("RGB", size, colours[name])
            folder = root / name / ("more" if i == 0 else "")
            ext = ".png" if i % 2 else ".jpg"
            image.save(folder / f"{name}{i}{ext}")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root, counts


@pytest.mark.parametrize("class_mode", ["categorical", "sparse", None])
def test_flow_from_directory(image_tree, class_mode):
    root, counts = image_tree
    it = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
        root, target_size=(6, 5), class_mode=class_mode, batch_size=4, seed=0)
    assert it.class_indices == {"cat": 0, "dog": 1, "emu": 2}
    assert it.samples == 12 and len(it) == 3
    assert it.classes.tolist() == [0] * 4 + [1] * 3 + [2] * 5
    assert it.filenames[0].startswith("cat") and not any(f.endswith(".txt") for f in it.filenames)
    seen = []
    for batch in itertools.islice(it, len(it)):
        x, y = (batch, None) if class_mode is None else batch
        assert x.shape[1:] == (6, 5, 3) and x.dtype == np.float32
        assert 0 <= x.min() and x.max() <= 1
        colour = x.mean(axis=(1, 2)).argmax(axis=1)  # which channel dominates = the class
        if class_mode == "categorical":
            assert y.shape == (len(x), 3) and y.dtype == np.float32
            np.testing.assert_array_equal(y.argmax(axis=1), colour)
            assert (y.sum(axis=1) == 1).all()
        elif class_mode == "sparse":
            assert y.shape == (len(x),)
            np.testing.assert_array_equal(y, colour)
        seen.extend(colour.tolist())
    assert sorted(seen) == it.classes.tolist()


def test_flow_from_directory_binary_grayscale(image_tree):
    root, _ = image_tree
    it = ImageDataGenerator().flow_from_directory(
        root, target_size=(4, 4), color_mode="grayscale", classes=["dog", "emu"],
        class_mode="binary", batch_size=16, shuffle=False)
    x, y = next(it)
    assert x.shape == (8, 4, 4, 1)
    assert y.tolist() == [0.0] * 3 + [1.0] * 5
    with pytest.raises(ValueError, match='binary.*exactly 2 classes'):
        ImageDataGenerator().flow_from_directory(root, class_mode="binary")


def test_flow_from_directory_errors(tmp_path, image_tree):
    gen = ImageDataGenerator()
    with pytest.raises(ValueError, match="does not exist"):
        gen.flow_from_directory(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        gen.flow_from_directory(tmp_path / "empty")
    (tmp_path / "empty" / "a").mkdir()
    with pytest.raises(ValueError, match="found no image files"):
        gen.flow_from_directory(tmp_path / "empty")
    root, _ = image_tree
    with pytest.raises(ValueError, match="color_mode"):
        gen.flow_from_directory(root, color_mode="cmyk")
    with pytest.raises(ValueError, match="target_size"):
        gen.flow_from_directory(root, target_size=32)
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    it = gen.flow_from_directory(root, target_size=(4, 4), batch_size=64)
    with pytest.raises(ValueError, match="broken.png is not an image file"):
        next(it)  # raised in the prefetch thread, reported here
