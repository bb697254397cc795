"""Shared loader for the MNIST-format datasets (MNIST, Fashion-MNIST): four gzip IDX files."""
from __future__ import annotations

import gzip
import hashlib
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ._files import PathLike, get_file, parse_idx, read_idx

# The four files, in the order load_data returns them.
SPLITS = ("train_images", "train_labels", "test_images", "test_labels")


def load_idx_dataset(
    name: str,
    files: Dict[str, Tuple[str, str]],
    base_urls: Sequence[str],
    raw_sha256: Optional[Dict[str, str]] = None,
    local_dirs: Sequence[PathLike] = (),
    cache_dir: Optional[PathLike] = None,
    verbose: bool = True,
):
    """((x_train, y_train), (x_test, y_test)) from four gzip IDX files.

    ``files`` maps each of SPLITS to (file name, SHA-256 of the published .gz). A file is read
    from the first of ``local_dirs`` that has it, if its decompressed bytes have the SHA-256 in
    ``raw_sha256`` (a redistributed copy may be compressed anew, so its .gz differs while the
    data is the same) or the .gz itself has the published one; otherwise it is fetched into the
    cache (``get_file``). x is (N, 28, 28) uint8 and y is (N,) uint8, as in Keras.
    """
    arrays = {}
    for split in SPLITS:
        fname, sha256 = files[split]
        array = _from_local_copy(fname, sha256, (raw_sha256 or {}).get(fname), local_dirs)
        if array is None:
            urls = [base.rstrip("/") + "/" + fname for base in base_urls]
            path = get_file(fname, urls, sha256, subdir=name, cache_dir=cache_dir, verbose=verbose)
            array = read_idx(path)
        arrays[split] = array
    for part in ("train", "test"):
        x, y = arrays[part + "_images"], arrays[part + "_labels"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{name}: {part} images have shape {x.shape} and labels {y.shape}; expected "
                "(N, rows, cols) and (N,) with the same N"
            )
    return ((arrays["train_images"], arrays["train_labels"]),
            (arrays["test_images"], arrays["test_labels"]))


def _from_local_copy(fname, sha256, raw_sha256, local_dirs):
    for folder in local_dirs:
        path = Path(folder) / fname
        if not path.is_file():
            continue
        packed = path.read_bytes()
        try:
            raw = gzip.decompress(packed)
        except (OSError, EOFError) as err:
            warnings.warn(f"ignoring {path}: not a valid gzip file ({err})", stacklevel=3)
            continue
        if hashlib.sha256(packed).hexdigest() == sha256 or (
            raw_sha256 is not None and hashlib.sha256(raw).hexdigest() == raw_sha256
        ):
            return parse_idx(raw, str(path))
        warnings.warn(f"ignoring {path}: its checksum is not the published one", stacklevel=3)
    return None
