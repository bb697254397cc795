#!/usr/bin/env python3
"""Builds python/nanocnn/datasets/fashion_mnist_subset.npz, nanocnn's embedded default dataset.

    python tools/make_default_dataset.py [--source /usr/share/datasets/fashion-mnist] [--out PATH]

A class-balanced subset of Fashion-MNIST (Zalando, MIT licence): the first TRAIN_PER_CLASS
images of each class from the official training set and the first TEST_PER_CLASS of each class
from the official test set, in their original order (no random numbers, so nothing depends on a
generator's version). The source is the Debian package dataset-fashion-mnist; its files are
checked against the SHA-256 of their content before use.

The output is byte-identical from run to run: the .npz (a zip of .npy files, which np.load
reads) is written by hand with fixed timestamps and permissions, LZMA-compressed (about 15%
smaller than numpy's own deflate). Arrays: x_train (N, 28, 28, 1) uint8, y_train (N,) uint8,
x_test, y_test likewise, class_names (10,) unicode, train_index/test_index (N,) int32 (the
images' positions in the official files).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from nanocnn.datasets import _idx, fashion_mnist  # noqa: E402  (needs the path above)

TRAIN_PER_CLASS = 1200
TEST_PER_CLASS = 200
OUT = ROOT / "python" / "nanocnn" / "datasets" / "fashion_mnist_subset.npz"


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Positions of the first ``per_class`` items of each class, in ascending order."""
    picks = []
    for c in range(10):
        where = np.flatnonzero(labels == c)[:per_class]
        if len(where) < per_class:
            raise ValueError(f"class {c} has only {len(where)} items, {per_class} needed")
        picks.append(where)
    return np.sort(np.concatenate(picks)).astype(np.int32)


def write_npz(path: Path, arrays: dict) -> None:
    """An .npz whose bytes depend only on ``arrays``: fixed zip metadata, one member each."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_LZMA
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, whatever system runs this
            zf.writestr(info, member.getvalue())
    tmp = path.with_suffix(".npz.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=fashion_mnist.LOCAL_DIRS[0],
                        help="folder with the four Fashion-MNIST .gz files")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = _idx.load_idx_dataset(
        "fashion-mnist", fashion_mnist.FILES, base_urls=[], raw_sha256=fashion_mnist.RAW_SHA256,
        local_dirs=[args.source], cache_dir=None, verbose=False)
    train_index = first_per_class(y_train, TRAIN_PER_CLASS)
    test_index = first_per_class(y_test, TEST_PER_CLASS)
    arrays = {
        "x_train": x_train[train_index][..., None],
        "y_train": y_train[train_index],
        "x_test": x_test[test_index][..., None],
        "y_test": y_test[test_index],
        "class_names": np.array(fashion_mnist.class_names),
        "train_index": train_index,
        "test_index": test_index,
    }
    write_npz(args.out, arrays)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out}: {len(train_index)} train + {len(test_index)} test images, "
          f"{args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
