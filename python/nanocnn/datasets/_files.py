"""Where datasets live, how they are fetched and checked, and the IDX reader.

Cache directory: ``$NANOCNN_HOME/datasets`` if ``NANOCNN_HOME`` is set, else
``$XDG_CACHE_HOME/nanocnn/datasets``, else ``~/.cache/nanocnn/datasets``; every loader also takes
``cache_dir=`` to use another one.

A download goes to a temporary file in the target directory, is checked against its published
SHA-256 while it streams in, and only then is renamed into place with ``os.replace`` (atomic on
POSIX and Windows): an interrupted or corrupt download never leaves a file under the final name.
A cached file whose checksum no longer matches is downloaded again.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


class ChecksumError(OSError):
    """A file's SHA-256 is not the published one (a corrupt or substituted download)."""


class DownloadError(OSError):
    """A dataset file could not be downloaded from any of its addresses."""


def default_cache_dir() -> Path:
    """The directory datasets are cached in (see the module docstring for the rule)."""
    home = os.environ.get("NANOCNN_HOME")
    if home:
        return Path(home).expanduser() / "datasets"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "nanocnn" / "datasets"


def sha256_of(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def get_file(
    fname: str,
    urls: Sequence[str],
    sha256: str,
    subdir: str,
    cache_dir: Optional[PathLike] = None,
    verbose: bool = True,
) -> Path:
    """The path of ``fname`` in ``cache_dir/subdir``, downloading it first if it is missing.

    ``urls`` are tried in order (any scheme urllib knows, ``file://`` included). The file must
    have SHA-256 ``sha256``: a cached copy that does not is fetched again; a download that does
    not raises :class:`ChecksumError` and leaves nothing behind. When no address answers this
    raises :class:`DownloadError`, which says where to put the file by hand.
    """
    if not isinstance(fname, str) or not fname or os.sep in fname or "/" in fname:
        raise ValueError(f"get_file: fname must be a plain file name, got {fname!r}")
    if isinstance(urls, str):
        urls = [urls]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / subdir
    target = folder / fname
    if target.is_file():
        actual = sha256_of(target)
        if actual == sha256:
            return target
        if verbose:
            print(f"nanocnn: cached {target} has SHA-256 {actual}, expected {sha256}; "
                  "downloading it again")
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _download(url, target, sha256, verbose)
            return target
        except ChecksumError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as err:  # no network, 404, bad URL
            failures.append(f"{url}: {err}")
    raise DownloadError(
        f"could not download {fname} (is the network reachable?). Tried:\n  "
        + "\n  ".join(failures)
        + f"\nYou can also download it yourself and put it at {target} "
        f"(SHA-256 {sha256})."
    )


def _download(url: str, target: Path, sha256: str, verbose: bool) -> None:
    """Streams ``url`` into a temporary file beside ``target``, checks it, renames it into place."""
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            bar = _progress(total, f"downloading {target.name}") if verbose else None
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
        actual = digest.hexdigest()
        if actual != sha256:
            raise ChecksumError(
                f"{url} downloaded with SHA-256 {actual}, expected {sha256}: the file is corrupt "
                "or not the published one; nothing was saved"
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _progress(total, desc):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but a download must not need it
        return None
    return tqdm(total=int(total) if total else None, desc=desc, unit="B", unit_scale=True,
                leave=False)


# ---- IDX (the MNIST file format) ---------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: PathLike) -> np.ndarray:
    """Reads an IDX file (gzip-compressed if its name ends in .gz) into a numpy array.

    IDX: two zero bytes, a type byte (0x08 = uint8, ...), the number of dimensions d, d
    big-endian uint32 sizes, then the data in row-major order. MNIST images are (N, 28, 28)
    uint8, labels (N,) uint8. A damaged file raises ValueError naming it.
    """
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as err:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise ValueError(f"{path} is not a readable gzip file: {err}") from err
    return parse_idx(raw, str(path))


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parses the bytes of an (uncompressed) IDX file; see :func:`read_idx`."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{name} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: IDX header cut short ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{name}: IDX header says shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(raw) - header} bytes after the header"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable copy in native byte order
