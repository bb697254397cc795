"""Keras-style ImageDataGenerator: augmentation, flow() over arrays, flow_from_directory().

    gen = ImageDataGenerator(rescale=1 / 255, rotation_range=10, width_shift_range=0.1,
                             height_shift_range=0.1, zoom_range=0.1, horizontal_flip=True)
    it = gen.flow(x_train, y_train, batch_size=32, seed=0)       # x (N, H, W, C)
    it = gen.flow_from_directory("photos/", target_size=(64, 64), class_mode="sparse")
    model.fit(it, epochs=5)                                       # len(it) batches per epoch

Batches are float32 channels-last (N, H, W, C). Iterators run forever (see
nanocnn.data.iterators). A random transform is drawn per image: rotation, shift, shear and zoom
compose into one affine map sampled with ``interpolation_order`` (1 = bilinear, as Keras; 0 =
nearest), then the flips; ``rescale`` multiplies last.
"""
from __future__ import annotations

import os
from numbers import Real
from pathlib import Path

import numpy as np

from . import augment
from .iterators import BatchIterator

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp")
COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3), "rgba": ("RGBA", 4)}
CLASS_MODES = ("categorical", "binary", "sparse", "input", None)


def _number(name, value, minimum=0.0):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return float(value)


def _shift(name, value):
    """Keras's rule: a float below 1 is a fraction of the size, an int (or float >= 1) pixels."""
    pixels = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    value = _number(name, value)
    return value, (not pixels and value < 1)


class ImageDataGenerator:
    """Random augmentation and batching of images, with Keras's argument names and defaults.

    Args:
        rescale: multiply every pixel by this after augmentation (e.g. 1/255); None: no scaling.
        rotation_range: degrees; each image rotates by a uniform angle in [-r, r].
        width_shift_range, height_shift_range: float < 1: fraction of the width/height; int or
            float >= 1: pixels; each image shifts uniformly within [-r, r].
        shear_range: shear angle in degrees, uniform in [-r, r].
        zoom_range: float z: row and column zoom each uniform in [1 - z, 1 + z]; or [lower, upper].
        horizontal_flip, vertical_flip: flip each image with probability 1/2.
        fill_mode: how points outside the input are filled: "nearest" (default), "constant"
            (with ``cval``), "reflect" or "wrap".
        cval: the value for fill_mode="constant".
        interpolation_order: 1 bilinear (default), 0 nearest neighbour.
        dtype: of the batches, "float32".
    """

    def __init__(self, rescale=None, rotation_range=0.0, width_shift_range=0.0,
                 height_shift_range=0.0, shear_range=0.0, zoom_range=0.0, horizontal_flip=False,
                 vertical_flip=False, fill_mode="nearest", cval=0.0, interpolation_order=1,
                 dtype="float32"):
        self.rescale = None if rescale is None else _number("rescale", rescale, -np.inf)
        self.rotation_range = _number("rotation_range", rotation_range)
        self.width_shift_range = _shift("width_shift_range", width_shift_range)
        self.height_shift_range = _shift("height_shift_range", height_shift_range)
        self.shear_range = _number("shear_range", shear_range)
        if isinstance(zoom_range, (list, tuple)):
            if len(zoom_range) != 2:
                raise ValueError(f"zoom_range must be a float or [lower, upper], got {zoom_range!r}")
            lower, upper = (_number("zoom_range", z) for z in zoom_range)
        else:
            z = _number("zoom_range", zoom_range)
            lower, upper = 1 - z, 1 + z
        if not 0 < lower <= upper:
            raise ValueError(f"zoom_range must give 0 < lower <= upper, got {(lower, upper)}")
        self.zoom_range = (lower, upper)
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        if fill_mode not in augment.FILL_MODES:
            raise ValueError(f"fill_mode must be one of {augment.FILL_MODES}, got {fill_mode!r}")
        self.fill_mode = fill_mode
        self.cval = _number("cval", cval, -np.inf)
        if interpolation_order not in (0, 1):
            raise ValueError(f"interpolation_order must be 0 or 1, got {interpolation_order!r}")
        self.interpolation_order = interpolation_order
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"dtype must be float32, got {dtype!r}")
        self.dtype = np.float32

    @property
    def _affine(self) -> bool:
        return bool(self.rotation_range or self.width_shift_range[0] or self.height_shift_range[0]
                    or self.shear_range or self.zoom_range != (1.0, 1.0))

    def transform_batch(self, x, rng=None):
        """Augments and rescales a batch: x (N, H, W, C) -> float32 (N, H, W, C).

        ``rng`` is a numpy Generator or a seed (None: fresh randomness). Labels are untouched:
        every transform moves pixels within one image.
        """
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"x must be a batch of images (N, H, W, C), got shape {x.shape}")
        n, h, w, _ = x.shape
        if self._affine:
            matrices = augment.affine_matrices(
                n, h, w, rng, self.rotation_range, self.height_shift_range,
                self.width_shift_range, self.shear_range, self.zoom_range)
            out = augment.apply_affine(x, matrices, self.fill_mode, self.cval,
                                       self.interpolation_order)
        else:
            out = x.astype(np.float32, copy=True)
        if self.horizontal_flip:
            flip = rng.random(n) < 0.5
            out[flip] = out[flip, :, ::-1]
        if self.vertical_flip:
            flip = rng.random(n) < 0.5
            out[flip] = out[flip, ::-1]
        if self.rescale is not None:
            out *= np.float32(self.rescale)
        return out

    def random_transform(self, x, seed=None):
        """One image (H, W, C) through :meth:`transform_batch` (without ``rescale``)."""
        rescale, self.rescale = self.rescale, None
        try:
            return self.transform_batch(np.asarray(x)[None], seed)[0]
        finally:
            self.rescale = rescale

    def flow(self, x, y=None, batch_size=32, shuffle=True, seed=None, prefetch=2):
        """An iterator over (x_batch, y_batch) from arrays, augmented; see NumpyArrayIterator."""
        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                  prefetch=prefetch)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb",
                            classes=None, class_mode="categorical", batch_size=32, shuffle=True,
                            seed=None, interpolation="nearest", prefetch=2):
        """An iterator over images in class sub-folders of ``directory``; see DirectoryIterator."""
        return DirectoryIterator(directory, self, target_size=target_size, color_mode=color_mode,
                                 classes=classes, class_mode=class_mode, batch_size=batch_size,
                                 shuffle=shuffle, seed=seed, interpolation=interpolation,
                                 prefetch=prefetch)


class NumpyArrayIterator(BatchIterator):
    """Batches of ``generator.transform_batch(x[i])`` and ``y[i]``.

    x: (N, H, W, C) images, any real dtype ((N, H, W) is taken as one channel). y: None (then
    batches are x alone, as in Keras) or an array with N rows, returned as given.
    """

    def __init__(self, x, y, generator, batch_size=32, shuffle=True, seed=None, prefetch=2):
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.dtype.kind not in "fiu":
            raise ValueError(f"x must be real images (N, H, W, C) or (N, H, W), got shape "
                             f"{x.shape} dtype {x.dtype}")
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        self.x, self.y, self.image_data_generator = x, y, generator
        super().__init__(len(x), batch_size, shuffle, seed, prefetch)

    def _batch(self, index_array, rng):
        x = self.image_data_generator.transform_batch(self.x[index_array], rng)
        return x if self.y is None else (x, self.y[index_array])


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest"):
    """A Pillow image from a file, converted to ``color_mode`` and resized to (height, width)."""
    try:
        from PIL import Image
    except ImportError as err:  # Pillow is a dependency; say so if it is missing
        raise ImportError("reading image files needs Pillow: pip install Pillow") from err
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {tuple(COLOR_MODES)}, got {color_mode!r}")
    resample = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
    if interpolation not in resample:
        raise ValueError(f"interpolation must be one of {tuple(resample)}, got {interpolation!r}")
    try:
        with Image.open(path) as image:
            image = image.convert(COLOR_MODES[color_mode][0])
    except FileNotFoundError:
        raise
    except OSError as err:  # Pillow's UnidentifiedImageError is an OSError
        raise ValueError(f"{path} is not an image file Pillow can read: {err}") from err
    if target_size is not None:
        height, width = target_size
        if image.size != (width, height):
            image = image.resize((width, height), resample[interpolation])
    return image


def img_to_array(image) -> np.ndarray:
    """A Pillow image as float32 (H, W, C)."""
    array = np.asarray(image, dtype=np.float32)
    return array[..., None] if array.ndim == 2 else array


class DirectoryIterator(BatchIterator):
    """Batches of the images in the class sub-folders of ``directory``.

    ``directory/<class>/...`` holds each class's images (PNG, JPEG, BMP, GIF, TIFF, WebP; sub-
    folders are searched too). Classes are the sub-folder names in sorted order unless
    ``classes`` lists them; images are resized to ``target_size`` (height, width) and converted
    to ``color_mode`` ("rgb": C=3, "grayscale": C=1, "rgba": C=4).

    Attributes (as Keras): ``class_indices`` {name: index}, ``classes`` (samples,) int32 labels,
    ``filenames`` paths relative to ``directory``, ``samples``, ``num_classes``, ``image_shape``.

    class_mode sets the labels of a batch: "categorical" one-hot float32 (N, num_classes);
    "binary" float32 (N,) of 0/1 (exactly two classes); "sparse" float32 (N,) class ids;
    "input" the images themselves; None yields images alone.
    """

    def __init__(self, directory, image_data_generator, target_size=(256, 256), color_mode="rgb",
                 classes=None, class_mode="categorical", batch_size=32, shuffle=True, seed=None,
                 interpolation="nearest", prefetch=2):
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"directory {str(directory)!r} does not exist or is not a folder")
        if (not isinstance(target_size, (tuple, list)) or len(target_size) != 2
                or not all(isinstance(s, (int, np.integer)) and s > 0 for s in target_size)):
            raise ValueError(f"target_size must be (height, width) of positive ints, got {target_size!r}")
        if color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {tuple(COLOR_MODES)}, got {color_mode!r}")
        if class_mode not in CLASS_MODES:
            raise ValueError(f"class_mode must be one of {CLASS_MODES}, got {class_mode!r}")
        if classes is None:
            classes = sorted(p.name for p in directory.iterdir() if p.is_dir())
        else:
            missing = [c for c in classes if not (directory / c).is_dir()]
            if missing:
                raise ValueError(f"classes {missing} have no folder in {directory}")
        if not classes:
            raise ValueError(f"{directory} has no class sub-folders (expected {directory}/<class>/<image files>)")
        if class_mode == "binary" and len(classes) != 2:
            raise ValueError(f'class_mode="binary" needs exactly 2 classes, {directory} has '
                             f"{len(classes)}: {classes}")
        self.directory = directory
        self.image_data_generator = image_data_generator
        self.target_size = (int(target_size[0]), int(target_size[1]))
        self.color_mode = color_mode
        self.class_mode = class_mode
        self.interpolation = interpolation
        self.class_indices = {name: i for i, name in enumerate(classes)}
        self.num_classes = len(classes)
        self.image_shape = self.target_size + (COLOR_MODES[color_mode][1],)
        filenames, labels = [], []
        for name in classes:
            for root, dirs, files in os.walk(directory / name, followlinks=True):
                dirs.sort()
                for fname in sorted(files):
                    if fname.lower().endswith(IMAGE_EXTENSIONS):
                        filenames.append(os.path.relpath(os.path.join(root, fname), directory))
                        labels.append(self.class_indices[name])
        if not filenames:
            raise ValueError(f"found no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class "
                             f"folders of {directory}")
        self.filenames = filenames
        self.classes = np.array(labels, dtype=np.int32)
        self.samples = len(filenames)
        super().__init__(self.samples, batch_size, shuffle, seed, prefetch)

    @property
    def filepaths(self):
        return [str(self.directory / f) for f in self.filenames]

    def _batch(self, index_array, rng):
        x = np.empty((len(index_array),) + self.image_shape, dtype=np.float32)
        for row, i in enumerate(index_array):
            image = load_img(self.directory / self.filenames[i], self.color_mode,
                             self.target_size, self.interpolation)
            x[row] = img_to_array(image)
        x = self.image_data_generator.transform_batch(x, rng)
        labels = self.classes[index_array]
        if self.class_mode is None:
            return x
        if self.class_mode == "input":
            return x, x.copy()
        if self.class_mode == "categorical":
            y = np.zeros((len(index_array), self.num_classes), dtype=np.float32)
            y[np.arange(len(index_array)), labels] = 1.0
            return x, y
        return x, labels.astype(np.float32)  # "binary" and "sparse", as Keras
