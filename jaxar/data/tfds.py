"""``tfds:NAME``: prepared tfds data (array_record) without TensorFlow at run time. Image
datasets go through ``tfds.data_source``; audio datasets (``ljspeech``, ``vctk``, ...) are read
from their array_record files by :mod:`jaxar.data.tfds_audio`."""

from __future__ import annotations

import numpy as np

from jaxar.data import tfds_audio
from jaxar.data.sources import DataInfo, check_split, register_loader

__all__ = ["tfds_source"]


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
    check_split(split)
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


def _tfds(name: str, split: str, data_dir: str | None = None, **options):
    """``tfds:NAME``: a prepared audio dataset or an image one through ``tfds.data_source``."""
    if tfds_audio.is_audio(name, data_dir):
        return tfds_audio.tfds_audio(name, split, data_dir=data_dir, **options)
    return tfds_source(name, split, data_dir)


register_loader("tfds", _tfds)
