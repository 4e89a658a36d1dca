"""``tfds:NAME`` for prepared audio datasets (``ljspeech``, ``vctk``, ...), without TensorFlow.

tfds' ``Audio`` feature imports TensorFlow as soon as it is built, so ``tfds.data_source`` cannot
open a prepared audio dataset where TensorFlow is absent. This module reads what
``tfds build NAME --file_format=array_record`` wrote instead:

* ``dataset_info.json`` for the splits and their shards,
* ``features.json`` for the feature that holds the audio (its sample rate, and whether it is
  stored as integers or as encoded WAV/FLAC bytes) and for a speaker or class label,
* each record, a serialized ``tf.train.Example``, parsed with the protobuf classes that tfds
  ships (``tensorflow_datasets.proto.tf_example_pb2``), through ``array_record``'s reader.

The clips then go through :class:`jaxar.data.audio.AudioSource` like a folder of WAV files:
resampling, mu-law, fixed windows, log-mel features. A dataset with only a ``train`` split (both
LJSpeech and VCTK) gets its test split carved out of it by :func:`jaxar.data.audio.split_items`
(a fixed ``test_fraction`` of the utterances). Integer audio is read as 16-bit PCM (divided by
32768). The label is the ``ClassLabel`` feature named ``speaker`` (VCTK's 110 speakers), else
one named ``label``, else none; ``config.data.conditional`` feeds it to the model as global
conditioning.

``NAME`` may name a config and a version, ``vctk/mic2:0.2.0``; without them the only or newest
one under ``data_dir/NAME`` is used. ``data_dir`` is ``config.data.data_dir``, else
``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``. All clips are read into memory once
(LJSpeech, 24 h at 16 kHz as 8-bit levels, is about 1.4 GB).
"""

from __future__ import annotations

import glob
import io
import json
import os

import numpy as np

from jaxar.data.audio import AudioItem, AudioSource, audio_options, split_items

__all__ = ["AudioSpec", "find_prepared", "is_audio", "tfds_audio"]

_AUDIO_CLASS = "tensorflow_datasets.core.features.audio_feature.Audio"
_LABEL_CLASS = "tensorflow_datasets.core.features.class_label_feature.ClassLabel"
_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


def _data_dir(data_dir: str | None) -> str:
    return os.path.expanduser(
        data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    )


def _version_key(path: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in os.path.basename(path).split("."))


def find_prepared(name: str, data_dir: str | None = None) -> str | None:
    """The directory holding ``dataset_info.json`` of prepared ``NAME[/CONFIG][:VERSION]``
    under the data dir (the newest version, if several), or None."""
    base, _, version = name.partition(":")
    root = os.path.join(_data_dir(data_dir), base)
    found = glob.glob(os.path.join(root, "*", "dataset_info.json"))  # NAME/VERSION
    found += glob.glob(os.path.join(root, "*", "*", "dataset_info.json"))  # NAME/CONFIG/VERSION
    dirs = [os.path.dirname(p) for p in found]
    if version:
        dirs = [d for d in dirs if os.path.basename(d) == version]
    if not dirs:
        return None
    return max(dirs, key=_version_key)


def _features(directory: str) -> dict:
    with open(os.path.join(directory, "features.json")) as f:
        root = json.load(f)
    return root.get("featuresDict", {}).get("features", {})


def is_audio(name: str, data_dir: str | None = None) -> bool:
    """Whether ``NAME`` is prepared under the data dir and has an Audio feature."""
    directory = find_prepared(name, data_dir)
    if directory is None or not os.path.exists(os.path.join(directory, "features.json")):
        return False
    return any(f.get("pythonClassName") == _AUDIO_CLASS for f in _features(directory).values())


class AudioSpec:
    """What ``features.json`` says about the audio and label features of a dataset."""

    def __init__(self, directory: str):
        features = _features(directory)
        audio = [k for k, f in features.items() if f.get("pythonClassName") == _AUDIO_CLASS]
        if len(audio) != 1:
            raise ValueError(
                f"{directory}: expected exactly one Audio feature in features.json, found "
                f"{audio or 'none'}"
            )
        self.audio_key = audio[0]
        spec = features[self.audio_key].get("audio", {})
        self.sample_rate = int(spec.get("sampleRate", 0))
        if self.sample_rate < 1:
            raise ValueError(
                f"{directory}: the Audio feature {self.audio_key!r} has no sample rate"
            )
        self.dtype = np.dtype(spec.get("dtype", "int64"))
        self.file_format = spec.get("fileFormat") or ""
        labels = {
            k: int(f["classLabel"]["numClasses"])
            for k, f in features.items()
            if f.get("pythonClassName") == _LABEL_CLASS and "classLabel" in f
        }
        self.label_key = next((k for k in ("speaker", "label") if k in labels), None)
        self.num_classes = labels.get(self.label_key, 0)

    def decode(self, example) -> tuple[np.ndarray, int, int | None]:
        """One parsed ``tf.train.Example`` -> (float audio (n, channels), rate, label)."""
        feature = example.features.feature[self.audio_key]
        if self.file_format:
            import soundfile

            (data,) = feature.bytes_list.value
            audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
            return audio, int(rate), self._label(example)
        if self.dtype.kind == "f":
            audio = np.asarray(feature.float_list.value, np.float32)
        else:
            audio = np.asarray(feature.int64_list.value, np.float32) / 32768.0
        return audio.reshape(len(audio), -1), self.sample_rate, self._label(example)

    def _label(self, example) -> int | None:
        if self.label_key is None:
            return None
        return int(example.features.feature[self.label_key].int64_list.value[0])


def _shards(directory: str, split: str) -> list[str]:
    with open(os.path.join(directory, "dataset_info.json")) as f:
        info = json.load(f)
    fmt = info.get("fileFormat", "tfrecord")
    if fmt != "array_record":
        raise ValueError(
            f"{directory}: prepared as {fmt}; jaxar reads array_record (tfds build "
            f"{info.get('name', 'NAME')} --file_format=array_record)"
        )
    splits = {s["name"]: s for s in info.get("splits", [])}
    if split not in splits:
        raise ValueError(f"{directory}: no split {split!r}; it has {sorted(splits)}")
    s = splits[split]
    n = len(s.get("shardLengths", [])) or int(s.get("numShards", 1))
    template = s.get("filepathTemplate") or _TEMPLATE
    paths = []
    for i in range(n):
        rel = template.format(
            DATASET=info["name"], SPLIT=split, FILEFORMAT=fmt,
            SHARD_X_OF_Y=f"{i:05d}-of-{n:05d}", SHARD_INDEX=f"{i:05d}", NUM_SHARDS=f"{n:05d}",
        )  # fmt: skip
        path = os.path.join(directory, rel)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{directory}: shard {rel} of split {split!r} is missing")
        paths.append(path)
    return paths


def tfds_audio(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    test_fraction: float = 0.05,
    **options,
) -> AudioSource:
    """The clips of ``split`` of a prepared tfds audio dataset as an :class:`AudioSource` with
    ``options`` (those of ``wav:DIR``, from ``config.data``)."""
    directory = find_prepared(name, data_dir)
    if directory is None:
        raise FileNotFoundError(
            f"tfds:{name}: not prepared under {_data_dir(data_dir)}. Prepare it on a machine "
            f"with TensorFlow and internet: tfds build {name} --file_format=array_record"
        )
    from array_record.python.array_record_data_source import ArrayRecordDataSource
    from tensorflow_datasets.proto import tf_example_pb2

    spec = AudioSpec(directory)
    with open(os.path.join(directory, "dataset_info.json")) as f:
        has_test = any(s["name"] == "test" for s in json.load(f).get("splits", []))
    records = ArrayRecordDataSource(_shards(directory, split if has_test else "train"))
    indices = range(len(records)) if has_test else split_items(len(records), split, test_fraction)

    def item(i: int) -> AudioItem:
        def read():
            try:
                return spec.decode(tf_example_pb2.Example.FromString(records[i]))
            except Exception as e:  # protobuf, soundfile and shape errors alike
                raise ValueError(
                    f"tfds:{name}: record {i} of {directory} cannot be decoded as an example "
                    f"with Audio feature {spec.audio_key!r}: {type(e).__name__}: {e}"
                ) from e

        return f"{name}[{i}]", read

    items = [item(int(i)) for i in indices]
    opts = audio_options(options)
    return AudioSource(f"tfds:{name}", split, items, num_classes=spec.num_classes, **opts)
