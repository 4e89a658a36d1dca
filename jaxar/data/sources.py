"""Random-access data sources and the registry that resolves a dataset spec to one.

A *source* has ``__len__`` and ``__getitem__(i)`` returning a dict with ``"x"`` (one event of
integer levels: ``(H, W, C)`` for images, ``(T,)`` for audio) and, where the data has them,
``"label"`` (an int). Each source carries a :class:`DataInfo` as ``source.info``.

Specs: ``digits`` (scikit-learn's bundled 8x8 digits, 17 levels, the embedded default),
``idx:DIR`` (MNIST-format gzipped IDX files, e.g. Fashion-MNIST from Debian's
``dataset-fashion-mnist``), ``tfds:NAME`` (``tfds.data_source`` over prepared array_record
data; audio datasets such as ``ljspeech`` and ``vctk`` through :mod:`jaxar.data.tfds_audio`).
Other modules add loaders with :func:`register_loader`.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Callable

import numpy as np

__all__ = [
    "ArraySource",
    "DataInfo",
    "digits",
    "idx",
    "load",
    "loader_names",
    "register_loader",
    "tfds_source",
]

SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a dataset.

    Attributes:
      name: the spec it was loaded from.
      event_shape: shape of one example's ``"x"``.
      num_levels: values per dimension, ``0 .. num_levels - 1``.
      num_classes: number of labels (0 if unlabelled).
      kind: ``"image"`` or ``"audio"``.
      sample_rate: samples per second, for audio.
      feature_shape: ``(frames, features)`` of each example's ``"features"`` (local
        conditioning such as a log-mel spectrogram), or ``()`` when there are none.
      feature_hop: samples per feature frame (0 when there are no features).
    """

    name: str
    event_shape: tuple[int, ...]
    num_levels: int
    num_classes: int = 0
    kind: str = "image"
    sample_rate: int = 0
    feature_shape: tuple[int, ...] = ()
    feature_hop: int = 0


class ArraySource:
    """A source over in-memory arrays: ``x`` ``(N, *event_shape)`` and optional labels."""

    def __init__(self, x: np.ndarray, labels: np.ndarray | None, info: DataInfo):
        if labels is not None and len(labels) != len(x):
            raise ValueError(f"{len(x)} examples but {len(labels)} labels")
        self.x, self.labels, self.info = x, labels, info

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        out = {"x": self.x[i]}
        if self.labels is not None:
            out["label"] = np.int32(self.labels[i])
        return out

    def __repr__(self) -> str:
        return f"ArraySource({self.info.name!r}, {len(self)} examples)"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")


# ---------------------------------------------------------------------------- digits
DIGITS_TEST_SIZE = 297  # of 1797: a fixed 1500 / 297 split


def digits(split: str) -> ArraySource:
    """scikit-learn's 1,797 bundled 8x8 digits, values 0..16 (17 levels), labels 0..9.

    The split is fixed: a permutation with seed 0, the last 297 examples are the test split.
    """
    _check_split(split)
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
    with opener(path, "rb") as f:
        data = f.read()
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
    _check_split(split)
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
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"idx:{directory}: expected images (N, H, W) and labels (N,), got "
            f"{images.shape} and {labels.shape}"
        )
    info = DataInfo(f"idx:{directory}", (*images.shape[1:], 1), 256, int(labels.max()) + 1)
    return ArraySource(images[..., None].astype(np.uint8), labels.astype(np.int32), info)


# ---------------------------------------------------------------------------- tfds
_TFDS_LEVELS = {"binarized_mnist": 2}


class _TfdsSource:
    """Adapts a ``tfds.data_source`` to the ``{"x", "label"}`` element format."""

    def __init__(self, ds, info: DataInfo, image_key: str, label_key: str | None):
        self._ds, self.info, self._image_key, self._label_key = ds, info, image_key, label_key

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i: int) -> dict:
        ex = self._ds[i]
        out = {"x": np.asarray(ex[self._image_key], np.uint8)}
        if self._label_key is not None:
            out["label"] = np.int32(ex[self._label_key])
        return out


def tfds_source(name: str, split: str, data_dir: str | None = None) -> _TfdsSource:
    """``tfds.data_source(name)`` over prepared array_record data; no TensorFlow needed."""
    _check_split(split)
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
        ds = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as e:  # tfds raises many kinds when data is not prepared
        raise FileNotFoundError(
            f"tfds:{name}: no prepared array_record data found ({type(e).__name__}: {e}). "
            f"Prepare it on a machine with internet: "
            f"tfds build {name} --file_format=array_record"
            + (f" --data_dir={data_dir}" if data_dir else "")
        ) from e
    features = builder.info.features
    image_key = "image" if "image" in features else next(iter(features))
    label_key = "label" if "label" in features else None
    shape = tuple(features[image_key].shape)
    num_classes = features[label_key].num_classes if label_key else 0
    info = DataInfo(f"tfds:{name}", shape, _TFDS_LEVELS.get(name, 256), num_classes)
    return _TfdsSource(ds, info, image_key, label_key)


# ---------------------------------------------------------------------------- registry
_LOADERS: dict[str, Callable[..., object]] = {}


def register_loader(prefix: str, loader: Callable[..., object]) -> None:
    """Register ``loader(arg, split, **options)`` for specs ``prefix`` or ``prefix:ARG``."""
    _LOADERS[prefix] = loader


def loader_names() -> list[str]:
    return sorted(_LOADERS)


register_loader("digits", lambda arg, split, **_: digits(split))
register_loader("idx", lambda arg, split, **_: idx(arg, split))


def _tfds(name: str, split: str, data_dir: str | None = None, **options):
    """``tfds:NAME``: a prepared audio dataset (read without TensorFlow, see
    :mod:`jaxar.data.tfds_audio`) or an image one through ``tfds.data_source``."""
    from jaxar.data import tfds_audio

    if tfds_audio.is_audio(name, data_dir):
        return tfds_audio.tfds_audio(name, split, data_dir=data_dir, **options)
    return tfds_source(name, split, data_dir)


register_loader("tfds", _tfds)


def load(spec: str, split: str, **options):
    """Resolve a dataset spec (``digits``, ``idx:DIR``, ``tfds:NAME``, ...) to a source."""
    prefix, _, arg = spec.partition(":")
    if prefix not in _LOADERS:
        raise ValueError(
            f"unknown dataset {spec!r}; expected one of "
            f"{[p if p == 'digits' else p + ':ARG' for p in loader_names()]}"
        )
    if prefix != "digits" and not arg:
        raise ValueError(f"dataset spec {spec!r} needs an argument: {prefix}:ARG")
    return _LOADERS[prefix](arg, split, **options)
