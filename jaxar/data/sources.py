"""Random-access data sources: their element format, :class:`DataInfo`, and the registry that
resolves a dataset spec to a source. This module imports no loader; each loader module
registers itself (``jaxar.data`` imports them all).

A *source* has ``__len__`` and ``__getitem__(i)`` returning a dict with ``"x"`` (one event of
integer levels: ``(H, W, C)`` for images, ``(T,)`` for audio) and, where the data has them,
``"label"`` (an int). Each source carries a :class:`DataInfo` as ``source.info``.

Specs: ``digits`` and ``idx:DIR`` (:mod:`jaxar.data.images`), ``tfds:NAME``
(:mod:`jaxar.data.tfds`), ``wav:DIR`` (:mod:`jaxar.data.wav`), ``codes:RUN``
(:mod:`jaxar.data.codes`). A fork adds its own with :func:`register_loader`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

__all__ = [
    "SPLITS",
    "ArraySource",
    "DataInfo",
    "check_split",
    "load",
    "loader_names",
    "register_loader",
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


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")


# ---------------------------------------------------------------------------- registry
_LOADERS: dict[str, Callable[..., object]] = {}


def register_loader(prefix: str, loader: Callable[..., object]) -> None:
    """Register ``loader(arg, split, **options)`` for specs ``prefix`` or ``prefix:ARG``."""
    _LOADERS[prefix] = loader


def loader_names() -> list[str]:
    return sorted(_LOADERS)


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
