"""Fashion-MNIST: 70,000 28x28 grayscale images of Zalando articles in 10 classes (MIT licence).

    (x_train, y_train), (x_test, y_test) = nanocnn.datasets.fashion_mnist.load_data()
    # x_train (60000, 28, 28) uint8, y_train (60000,) uint8; x_test (10000, 28, 28), y_test (10000,)

Same shapes and dtypes as ``keras.datasets.fashion_mnist.load_data()``. The files are read from
the Debian package ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist) when it is
installed, else downloaded once into the cache (see nanocnn.datasets._files). Source:
https://github.com/zalandoresearch/fashion-mnist (Xiao, Rasul and Vollgraf, 2017).
"""
from __future__ import annotations

from typing import Optional

from ._files import PathLike
from ._idx import load_idx_dataset

class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

BASE_URLS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's own
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # Keras's copy
]
# SHA-256 of the published .gz files, as recorded by independent projects that verify their
# downloads (Zalando's README lists MD5s: 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...).
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"),
}
# SHA-256 of the decompressed IDX data. Debian compresses the files anew (other gzip header,
# same data), so a local copy is checked by its content.
RAW_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
LOCAL_DIRS = ["/usr/share/datasets/fashion-mnist"]


def load_data(cache_dir: Optional[PathLike] = None, verbose: bool = True):
    """((x_train, y_train), (x_test, y_test)): x uint8 (N, 28, 28), y uint8 (N,) in 0..9.

    ``cache_dir`` overrides where a download is kept (default: ``$NANOCNN_HOME/datasets`` or
    ``~/.cache/nanocnn/datasets``). Raises DownloadError without network when there is neither
    a local copy nor a cached one, ChecksumError when a download is not the published file.
    """
    return load_idx_dataset("fashion-mnist", FILES, BASE_URLS, RAW_SHA256, LOCAL_DIRS,
                            cache_dir=cache_dir, verbose=verbose)
