"""Data: random-access sources resolved from a spec, and grain pipelines over them.

Importing this package registers every loader: ``digits`` and ``idx:DIR``
(:mod:`jaxar.data.images`), ``tfds:NAME`` (:mod:`jaxar.data.tfds`), ``wav:DIR``
(:mod:`jaxar.data.wav`) and ``codes:RUN`` (:mod:`jaxar.data.codes`).
"""

from jaxar.data import codes, images, tfds, wav  # noqa: F401  (each registers its loader)
from jaxar.data.sources import ArraySource, DataInfo, load, loader_names, register_loader

__all__ = ["ArraySource", "DataInfo", "load", "loader_names", "register_loader"]
