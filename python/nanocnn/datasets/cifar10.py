"""CIFAR-10: 60,000 32x32 colour images in 10 classes (Krizhevsky, 2009).

    (x_train, y_train), (x_test, y_test) = nanocnn.datasets.cifar10.load_data()
    # x_train (50000, 32, 32, 3) uint8, y_train (50000, 1) uint8
    # x_test  (10000, 32, 32, 3) uint8, y_test  (10000, 1) uint8

Same shapes and dtypes as ``keras.datasets.cifar10.load_data()`` (channels-last, labels as a
column). The "python version" archive (163 MB) is downloaded once into the cache (see
nanocnn.datasets._files) and read straight from the tar.gz, nothing extracted. It holds, under
``cifar-10-batches-py/``, the pickles ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``
(each a dict with ``data``, an (N, 3072) uint8 array of rows R(1024) G(1024) B(1024), and
``labels``, a list of N ints) and ``batches.meta`` (``label_names``).
"""
from __future__ import annotations

import importlib
import io
import pickle
import tarfile
from typing import Optional

import numpy as np

from ._files import PathLike, get_file

class_names = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")

URLS = ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
FNAME = "cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"  # MD5 c58f3010...
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


def load_data(cache_dir: Optional[PathLike] = None, verbose: bool = True):
    """((x_train, y_train), (x_test, y_test)): x uint8 (N, 32, 32, 3), y uint8 (N, 1) in 0..9.

    ``cache_dir`` overrides where the archive is kept (default: ``$NANOCNN_HOME/datasets`` or
    ``~/.cache/nanocnn/datasets``). Raises DownloadError without network when nothing is
    cached, ChecksumError when the download is not the published archive, ValueError when the
    archive does not have the structure above.
    """
    path = get_file(FNAME, URLS, SHA256, subdir="cifar-10", cache_dir=cache_dir, verbose=verbose)
    return read_archive(path)


def read_archive(path: PathLike):
    """Reads a cifar-10-python.tar.gz; see :func:`load_data` for what it returns."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            train = [_read_batch(archive, name, path) for name in TRAIN_BATCHES]
            test = _read_batch(archive, TEST_BATCH, path)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable CIFAR-10 tar.gz archive: {err}") from err
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), test


def _read_batch(archive: tarfile.TarFile, name: str, path):
    member = f"{FOLDER}/{name}"
    try:
        handle = archive.extractfile(member)
    except KeyError:
        raise ValueError(f"{path}: the archive has no {member}") from None
    if handle is None:
        raise ValueError(f"{path}: {member} is not a regular file")
    try:
        batch = _SafeUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: {member} is not a CIFAR-10 batch pickle: {err}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path}: {member} lacks the 'data' and 'labels' entries")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(
            f"{path}: {member} has data of shape {data.shape} and {len(labels)} labels; "
            "expected (N, 3072) and N"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: {member} has labels outside 0..9")
    # rows are (R 32x32, G 32x32, B 32x32): to (N, 3, 32, 32), then channels-last
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return x, labels.astype(np.uint8).reshape(-1, 1)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds (dicts, lists, numbers, bytes, numpy arrays).

    Pickle can run arbitrary code; the checksum already vouches for the downloaded archive,
    and this keeps a substituted or hand-made archive from doing more than failing to load.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray"),
        ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "numpy.core.multiarray"),
        ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "numpy.core.multiarray"),
        ("numpy", "ndarray"): ("numpy",),
        ("numpy", "dtype"): ("numpy",),
        ("_codecs", "encode"): ("_codecs",),  # how protocol 2 stores bytes from Python 3
    }

    def find_class(self, module, name):
        candidates = self._ALLOWED.get((module, name))
        if candidates is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        for candidate in candidates:  # numpy 2 renamed numpy.core to numpy._core
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")
