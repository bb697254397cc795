"""Dataset loaders: built on small archives of the real formats, made here; no network."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from nanocnn import datasets
from nanocnn.datasets import _files, cifar10, fashion_mnist, mnist


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of a uint8 array: magic 0x00000803 for 3-d, 0x00000801 for 1-d, sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def idx_source(tmp_path, rng):
    """Four tiny gzip IDX files (7 train, 3 test images of 28x28) in tmp/source."""
    source = tmp_path / "source"
    source.mkdir()
    arrays = {
        "train_images": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 7, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    files = {}
    for split, array in arrays.items():
        fname = mnist.FILES[split][0]
        (source / fname).write_bytes(gzip.compress(idx_bytes(array), mtime=0))
        files[split] = (fname, sha256(source / fname))
    return source, files, arrays


def point_at(monkeypatch, module, source, files):
    monkeypatch.setattr(module, "BASE_URLS", [source.as_uri() + "/"])
    monkeypatch.setattr(module, "FILES", files)
    monkeypatch.setattr(module, "LOCAL_DIRS", [])


@pytest.mark.parametrize("module", [mnist, fashion_mnist])
def test_idx_download_into_cache(module, idx_source, tmp_path, monkeypatch):
    source, files, arrays = idx_source
    point_at(monkeypatch, module, source, files)
    cache = tmp_path / "cache"
    (x_train, y_train), (x_test, y_test) = module.load_data(cache_dir=cache, verbose=False)
    assert x_train.shape == (7, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (7,) and y_train.dtype == np.uint8
    assert x_test.shape == (3, 28, 28) and y_test.shape == (3,)
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])
    cached = sorted(p.name for p in (cache / ("mnist" if module is mnist else "fashion-mnist")).iterdir())
    assert cached == sorted(f for f, _ in files.values())  # no temporary files left behind
    # a second call reads the cache: the source may be gone
    for f in source.iterdir():
        f.unlink()
    (again, _), _ = module.load_data(cache_dir=cache, verbose=False)
    np.testing.assert_array_equal(again, x_train)


def test_nanocnn_home_sets_the_cache(idx_source, tmp_path, monkeypatch):
    source, files, _ = idx_source
    point_at(monkeypatch, mnist, source, files)
    monkeypatch.setenv("NANOCNN_HOME", str(tmp_path / "home"))
    mnist.load_data(verbose=False)
    assert (tmp_path / "home" / "datasets" / "mnist" / files["train_images"][0]).is_file()


def test_checksum_mismatch_saves_nothing(idx_source, tmp_path, monkeypatch):
    source, files, _ = idx_source
    bad = dict(files)
    bad["train_labels"] = (files["train_labels"][0], "0" * 64)
    point_at(monkeypatch, mnist, source, bad)
    cache = tmp_path / "cache"
    with pytest.raises(datasets.ChecksumError, match="expected 0000"):
        mnist.load_data(cache_dir=cache, verbose=False)
    assert not (cache / "mnist" / files["train_labels"][0]).exists()
    assert not list((cache / "mnist").glob("*.part"))


def test_corrupt_cached_file_is_fetched_again(idx_source, tmp_path, monkeypatch):
    source, files, arrays = idx_source
    point_at(monkeypatch, mnist, source, files)
    cache = tmp_path / "cache"
    target = cache / "mnist" / files["train_images"][0]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    (x_train, _), _ = mnist.load_data(cache_dir=cache, verbose=False)
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    assert sha256(target) == files["train_images"][1]


def test_no_network_is_a_clear_error(idx_source, tmp_path, monkeypatch):
    source, files, _ = idx_source
    point_at(monkeypatch, mnist, tmp_path / "nowhere", files)  # file:// URLs that do not exist
    with pytest.raises(datasets.DownloadError, match="could not download .*network"):
        mnist.load_data(cache_dir=tmp_path / "cache", verbose=False)


def test_interrupted_download_leaves_no_file(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        headers = {}

        def read(self, n=-1):
            raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(_files.urllib.request, "urlopen", lambda url, timeout: Broken())
    with pytest.raises(datasets.DownloadError, match="connection reset"):
        _files.get_file("f.bin", ["http://example.invalid/f.bin"], "0" * 64, "x",
                        cache_dir=tmp_path, verbose=False)
    assert list((tmp_path / "x").iterdir()) == []


def test_corrupt_idx_content(tmp_path):
    path = tmp_path / "bad-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") * 3 + b"\0" * 10))
    with pytest.raises(ValueError, match="shape \\(5, 5, 5\\)"):
        _files.read_idx(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="not a readable gzip"):
        _files.read_idx(path)


def test_local_copy_is_checked_by_content(idx_source, tmp_path, monkeypatch):
    source, files, arrays = idx_source
    # a redistributor compressed the files anew: other .gz bytes, same content
    local = tmp_path / "local"
    local.mkdir()
    raw = {}
    for split, (fname, _) in files.items():
        content = gzip.decompress((source / fname).read_bytes())
        (local / fname).write_bytes(gzip.compress(content, compresslevel=1, mtime=12345))
        raw[fname] = hashlib.sha256(content).hexdigest()
    monkeypatch.setattr(fashion_mnist, "BASE_URLS", [])  # no download possible
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    monkeypatch.setattr(fashion_mnist, "RAW_SHA256", raw)
    monkeypatch.setattr(fashion_mnist, "LOCAL_DIRS", [local])
    (x_train, _), (_, y_test) = fashion_mnist.load_data(cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])


@pytest.mark.skipif(not Path(fashion_mnist.LOCAL_DIRS[0]).is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(cache_dir=tmp_path)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert not any(tmp_path.iterdir())  # read in place, nothing downloaded


# ---- CIFAR-10 -------------------------------------------------------------------------------------


def make_cifar_archive(path: Path, rng, per_batch=4, test=5):
    """A cifar-10-python.tar.gz with the real structure, holding few images."""
    images = {}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, obj):
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in [*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH]:
            n = test if name == cifar10.TEST_BATCH else per_batch
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, n)]
            images[name] = (data, labels)
            add(name, {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                       b"filenames": [b"x.png"] * n})
        add("batches.meta", {b"label_names": [c.encode() for c in cifar10.class_names],
                             b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return images


def test_cifar10_from_a_small_archive(tmp_path, rng, monkeypatch):
    archive = tmp_path / "src" / cifar10.FNAME
    archive.parent.mkdir()
    images = make_cifar_archive(archive, rng)
    monkeypatch.setattr(cifar10, "URLS", [archive.as_uri()])
    monkeypatch.setattr(cifar10, "SHA256", sha256(archive))
    (x_train, y_train), (x_test, y_test) = cifar10.load_data(cache_dir=tmp_path / "c", verbose=False)
    assert x_train.shape == (20, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (20, 1) and y_train.dtype == np.uint8
    assert x_test.shape == (5, 32, 32, 3) and y_test.shape == (5, 1)
    # pixel (row 2, col 3) of image 1 of data_batch_2: R at 2*32+3, G at +1024, B at +2048
    data, labels = images["data_batch_2"]
    np.testing.assert_array_equal(x_train[4 + 1, 2, 3], data[1, [67, 1024 + 67, 2048 + 67]])
    assert y_train[4:8, 0].tolist() == labels
    assert y_test[:, 0].tolist() == images["test_batch"][1]


def test_cifar10_corrupt_archives(tmp_path, rng):
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match="not a readable CIFAR-10"):
        cifar10.read_archive(path)
    with tarfile.open(path, "w:gz") as tar:  # the right container, a batch missing
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = 0
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="data_batch_1 is not a CIFAR-10 batch|has no"):
        cifar10.read_archive(path)


def test_cifar10_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="refusing to load (__builtin__|builtins).print"):
        cifar10.read_archive(path)


def test_class_names():
    assert len(cifar10.class_names) == len(mnist.class_names) == len(fashion_mnist.class_names) == 10
    assert cifar10.class_names[0] == "airplane" and fashion_mnist.class_names[9] == "Ankle boot"


# ---- the embedded default dataset ----------------------------------------------------------------


def test_load_default():
    (x_train, y_train), (x_test, y_test), class_names = datasets.load_default()
    assert x_train.shape == (12000, 28, 28, 1) and x_train.dtype == np.uint8
    assert y_train.shape == (12000,) and y_train.dtype == np.uint8
    assert x_test.shape == (2000, 28, 28, 1) and x_test.dtype == np.uint8
    assert y_test.shape == (2000,) and y_test.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [1200] * 10
    assert np.bincount(y_test).tolist() == [200] * 10
    assert class_names == datasets.default_class_names == fashion_mnist.class_names
    assert x_train.max() == 255 and x_train.min() == 0
    assert len({x.tobytes() for x in x_train[:500]}) == 500  # real, distinct images


@pytest.mark.skipif(not Path(fashion_mnist.LOCAL_DIRS[0]).is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_default_dataset_is_the_documented_subset():
    (x_train, y_train), (x_test, y_test), _ = datasets.load_default()
    with np.load(datasets.DEFAULT_PATH) as f:
        train_index, test_index = f["train_index"], f["test_index"]
    (fx_train, fy_train), (fx_test, fy_test) = fashion_mnist.load_data()
    np.testing.assert_array_equal(x_train[..., 0], fx_train[train_index])
    np.testing.assert_array_equal(y_test, fy_test[test_index])
    first = np.flatnonzero(fy_train == 3)[:1200]  # the first 1,200 of a class, in order
    np.testing.assert_array_equal(np.sort(train_index[y_train == 3]), first)
