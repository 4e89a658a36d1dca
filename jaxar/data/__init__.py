"""Data: random-access sources resolved from a spec, and grain pipelines over them."""

from jaxar.data import codes, wav  # noqa: F401  (register "codes:RUN_DIR", "wav:DIR")
from jaxar.data.sources import ArraySource, DataInfo, load, loader_names, register_loader

__all__ = ["ArraySource", "DataInfo", "load", "loader_names", "register_loader"]
