"""Datasets: Keras's loaders, and a small Fashion-MNIST subset shipped inside the package.

    from nanocnn import datasets
    (x_train, y_train), (x_test, y_test), class_names = datasets.load_default()
    # x_train (12000, 28, 28, 1) uint8, y_train (12000,) uint8 in 0..9 (1,200 per class)
    # x_test  (2000, 28, 28, 1)  uint8, y_test  (2000,)  uint8 (200 per class)

    (x_train, y_train), (x_test, y_test) = datasets.fashion_mnist.load_data()  # (60000, 28, 28)
    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()          # (60000, 28, 28)
    (x_train, y_train), (x_test, y_test) = datasets.cifar10.load_data()        # (50000, 32, 32, 3), y (N, 1)

Each of those modules has ``class_names``. The full datasets are read from a local copy where
there is one (Fashion-MNIST: the Debian package dataset-fashion-mnist) or downloaded once into
``$NANOCNN_HOME/datasets`` (default ``~/.cache/nanocnn/datasets``; ``cache_dir=`` overrides it)
and checked against their published SHA-256.

The embedded subset is Fashion-MNIST by Zalando Research, MIT licence: see NOTICE.md beside
this file. ``tools/make_default_dataset.py`` rebuilds it byte for byte.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import cifar10, fashion_mnist, mnist
from ._files import ChecksumError, DownloadError, default_cache_dir

__all__ = ["load_default", "default_class_names", "cifar10", "mnist", "fashion_mnist",
           "ChecksumError", "DownloadError", "default_cache_dir", "DEFAULT_PATH"]

DEFAULT_PATH = Path(__file__).with_name("fashion_mnist_subset.npz")

#: The class names of load_default(), index = label.
default_class_names = tuple(fashion_mnist.class_names)


def load_default():
    """The embedded Fashion-MNIST subset: ((x_train, y_train), (x_test, y_test), class_names).

    x_train (12000, 28, 28, 1) and x_test (2000, 28, 28, 1) are uint8 in 0..255, channels-last;
    y_train (12000,) and y_test (2000,) are uint8 class ids 0..9, balanced (1,200 and 200 per
    class); class_names is a tuple of 10 strings ("T-shirt/top", ..., "Ankle boot"), also
    available as ``default_class_names``. No network, no cache: the file ships in the package.
    """
    if not DEFAULT_PATH.is_file():
        raise FileNotFoundError(
            f"the embedded dataset {DEFAULT_PATH} is missing from this installation; rebuild it "
            "with tools/make_default_dataset.py or reinstall nanocnn"
        )
    with np.load(DEFAULT_PATH, allow_pickle=False) as f:
        x_train, y_train = f["x_train"], f["y_train"]
        x_test, y_test = f["x_test"], f["y_test"]
        class_names = tuple(str(name) for name in f["class_names"])
    return (x_train, y_train), (x_test, y_test), class_names
