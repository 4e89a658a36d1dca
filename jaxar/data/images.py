"""Image datasets on disk or bundled: ``digits`` (scikit-learn's 8x8 digits, the embedded
default) and ``idx:DIR`` (MNIST-format IDX files, e.g. Debian's ``dataset-fashion-mnist``)."""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from jaxar.data.sources import ArraySource, DataInfo, check_split, register_loader

__all__ = ["digits", "idx", "read_idx"]


# ---------------------------------------------------------------------------- digits
DIGITS_TEST_SIZE = 297  # of 1797: a fixed 1500 / 297 split


def digits(split: str) -> ArraySource:
    """scikit-learn's 1,797 bundled 8x8 digits, values 0..16 (17 levels), labels 0..9.

    The split is fixed: a permutation with seed 0, the last 297 examples are the test split.
    """
    check_split(split)
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.images))
    cut = len(order) - DIGITS_TEST_SIZE
    idxs = order[:cut] if split == "train" else order[cut:]
    x = d.images[idxs].astype(np.uint8)[..., None]
    info = DataInfo("digits", (8, 8, 1), 17, 10)
    return ArraySource(x, d.target[idxs].astype(np.int32), info)


# ---------------------------------------------------------------------------- IDX
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array, checking its header and size."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(
            f"{path}: not a complete gzip stream ({type(e).__name__}: {e}); the file is "
            "truncated or corrupt"
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    body = data[4 + 4 * ndim :]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(body) != expected:
        raise ValueError(
            f"{path}: header says shape {tuple(dims)} ({expected} bytes) but the file holds "
            f"{len(body)} bytes; it is truncated or corrupt"
        )
    return np.frombuffer(body, dtype).reshape(dims)


def _find(directory: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def idx(directory: str, split: str) -> ArraySource:
    """MNIST-format IDX files in ``directory`` (train-/t10k-images-idx3-ubyte[.gz], labels)."""
    check_split(split)
    stems = _IDX_FILES[split]
    paths = [_find(directory, s) for s in stems]
    if None in paths:
        missing = [s for s, p in zip(stems, paths) if p is None]
        raise FileNotFoundError(
            f"idx:{directory}: missing {missing} (.gz or plain). For Fashion-MNIST install "
            "Debian's package: apt-get install dataset-fashion-mnist "
            "(files in /usr/share/datasets/fashion-mnist)"
        )
    images, labels = (read_idx(p) for p in paths)
    if len(images) == 0:
        raise ValueError(f"{paths[0]}: holds no examples (shape {images.shape})")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"idx:{directory}: expected images (N, H, W) and labels (N,), got "
            f"{images.shape} and {labels.shape}"
        )
    info = DataInfo(f"idx:{directory}", (*images.shape[1:], 1), 256, int(labels.max()) + 1)
    return ArraySource(images[..., None].astype(np.uint8), labels.astype(np.int32), info)


register_loader("digits", lambda arg, split, **_: digits(split))
register_loader("idx", lambda arg, split, **_: idx(arg, split))
