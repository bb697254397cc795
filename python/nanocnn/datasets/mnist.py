"""MNIST: 70,000 28x28 grayscale images of handwritten digits (LeCun, Cortes and Burges).

    (x_train, y_train), (x_test, y_test) = nanocnn.datasets.mnist.load_data()
    # x_train (60000, 28, 28) uint8, y_train (60000,) uint8; x_test (10000, 28, 28), y_test (10000,)

Same shapes and dtypes as ``keras.datasets.mnist.load_data()``. The four IDX files are
downloaded once into the cache (see nanocnn.datasets._files) from the mirrors PyTorch and
TensorFlow use (the original site, yann.lecun.com, no longer serves them reliably).
"""
from __future__ import annotations

from typing import Optional

from ._files import PathLike
from ._idx import load_idx_dataset

class_names = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")

BASE_URLS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
# SHA-256 of the original .gz files (the ones first published at yann.lecun.com/exdb/mnist).
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
LOCAL_DIRS: list = []  # no distribution packages MNIST itself


def load_data(cache_dir: Optional[PathLike] = None, verbose: bool = True):
    """((x_train, y_train), (x_test, y_test)): x uint8 (N, 28, 28), y uint8 (N,) in 0..9.

    ``cache_dir`` overrides where the download is kept (default: ``$NANOCNN_HOME/datasets`` or
    ``~/.cache/nanocnn/datasets``). Raises DownloadError without network when nothing is
    cached, ChecksumError when a download is not the published file.
    """
    return load_idx_dataset("mnist", FILES, BASE_URLS, None, LOCAL_DIRS,
                            cache_dir=cache_dir, verbose=verbose)
