"""tfds:NAME for prepared audio datasets, read without TensorFlow.

The fixture writes a prepared dataset the way ``tfds build --file_format=array_record`` lays
it out: ``dataset_info.json`` and ``features.json`` from tfds' own protos, and records
serialized by tfds' own ``ExampleSerializer`` (an Audio feature without a file format is
serialized as a Tensor of its dtype, which is what the fixture encodes it as).
"""

import io
import json
import os

import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

import jaxar.data
from jaxar.data import tfds_audio
from jaxar.data.audio import mu_law_encode_np

tfds = pytest.importorskip("tensorflow_datasets")


def _tone(n, rate, freq):
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def _prepare(root, name="fake_speech", splits=("train",), file_format="", shards=2, n=9,
             audio_dtype="int16"):  # fmt: skip
    """A prepared ``name`` under ``root``: ``n`` utterances per split at 16 kHz, int16 PCM or
    float32 in [-1, 1] (``audio_dtype``; WAV bytes of int16 when ``file_format`` is "wav"), a
    3-speaker ClassLabel and a text id, dealt round-robin over ``shards`` shards. Returns each
    split's (stored audio, speaker) in record order."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from google.protobuf import json_format
    from tensorflow_datasets.core import example_serializer
    from tensorflow_datasets.core.proto import dataset_info_pb2, feature_pb2

    directory = os.path.join(root, name, "1.0.0")
    os.makedirs(directory)
    stored = (
        tfds.features.Tensor(shape=(), dtype=np.object_)
        if file_format
        else tfds.features.Tensor(shape=(None,), dtype=np.dtype(audio_dtype))
    )
    f = tfds.features.FeaturesDict(
        {"speech": stored, "speaker": tfds.features.ClassLabel(num_classes=3),
         "id": tfds.features.Text()}
    )  # fmt: skip
    proto = f.to_proto()
    proto.features_dict.features["speech"].CopyFrom(
        feature_pb2.Feature(
            python_class_name=f"{tfds.features.Audio.__module__}.{tfds.features.Audio.__name__}",
            audio=feature_pb2.AudioFeature(
                shape=feature_pb2.Shape(dimensions=[-1]),
                dtype=audio_dtype,
                sample_rate=16000,
                file_format=file_format,
                encoding="none",
            ),
        )
    )
    with open(os.path.join(directory, "features.json"), "w") as fh:
        json.dump(json_format.MessageToDict(proto), fh)
    serializer = example_serializer.ExampleSerializer(f.get_serialized_info())
    clips, split_infos = {}, []
    for split in splits:
        clips[split] = []
        per_shard = [list(range(n))[s::shards] for s in range(shards)]
        for s, idxs in enumerate(per_shard):
            path = os.path.join(directory, f"{name}-{split}.array_record-{s:05d}-of-{shards:05d}")
            w = ArrayRecordWriter(path, "group_size:1")
            for i in idxs:
                pcm = _tone(3000 + 500 * i, 16000, 200 + 50 * i)
                pcm = pcm.astype(np.float32) if audio_dtype == "float32" else pcm * 32767
                pcm = pcm.astype(audio_dtype)
                if file_format:
                    buf = io.BytesIO()
                    soundfile.write(buf, pcm, 16000, format="WAV", subtype="PCM_16")
                    value = buf.getvalue()
                else:
                    value = pcm
                ex = {"speech": value, "speaker": i % 3, "id": f"{split}{i}"}
                w.write(serializer.serialize_example(f.encode_example(ex)))
                clips[split].append((pcm, i % 3))  # in record (shard) order
            w.close()
        split_infos.append(
            dataset_info_pb2.SplitInfo(name=split, shard_lengths=[len(x) for x in per_shard])
        )
    info = dataset_info_pb2.DatasetInfo(
        name=name, version="1.0.0", file_format="array_record", splits=split_infos
    )
    with open(os.path.join(directory, "dataset_info.json"), "w") as fh:
        json.dump(json_format.MessageToDict(info), fh)
    return clips


OPTS = dict(length=800, sample_rate=8000)


@pytest.mark.parametrize(
    "file_format, audio_dtype", [("", "int16"), ("wav", "int16"), ("", "float32")]
)
def test_audio_dataset_with_only_a_train_split(tmp_path, file_format, audio_dtype):
    clips = _prepare(tmp_path, file_format=file_format, audio_dtype=audio_dtype)["train"]
    assert tfds_audio.is_audio("fake_speech", str(tmp_path))
    train = jaxar.data.load("tfds:fake_speech", "train", data_dir=str(tmp_path), **OPTS)
    test = jaxar.data.load("tfds:fake_speech", "test", data_dir=str(tmp_path), **OPTS)
    assert train.info == test.info
    info = train.info
    assert (info.kind, info.sample_rate, info.num_classes, info.event_shape) == (
        "audio",
        8000,
        3,
        (800,),
    )
    # A fixed 5% (at least one) of the 9 utterances is the test split; no overlap.
    assert len(test.files) == 1 and len(train.files) == 8
    assert set(train.files).isdisjoint(test.files)
    assert train.stats.resampled == 8
    # Records are read in shard order; each clip's label and audio come through.
    for src in (train, test):
        for k, name in enumerate(src.files):
            i = int(name.split("[")[1][:-1])
            pcm, speaker = clips[i]
            el = next(src[j] for j in range(len(src)) if int(src[j]["file"]) == k)
            assert int(el["label"]) == speaker
            pcm = pcm / 32768.0 if audio_dtype == "int16" else pcm
            want = mu_law_encode_np(resample_poly(pcm, 1, 2)[:800])
            assert np.abs(el["x"] - want).max() <= 1  # float32 vs float64 resampling


def test_log_mel_features_and_the_runner_fill_speaker_conditioning(tmp_path):
    _prepare(tmp_path)
    src = jaxar.data.load(
        "tfds:fake_speech", "train", data_dir=str(tmp_path), features="log_mel",
        feature_hop=80, num_mels=16, fft_size=256, **OPTS,
    )  # fmt: skip
    assert src[0]["features"].shape == (10, 16) and src.info.feature_hop == 80

    from jaxar import config as jaxar_config
    from jaxar import train

    c = jaxar_config.default()
    c.data.name = "tfds:fake_speech"
    c.data.data_dir = str(tmp_path)
    c.data.length, c.data.sample_rate, c.data.conditional = 800, 8000, True
    c.data.update(dict(features="log_mel", feature_hop=80, num_mels=16, fft_size=256))
    c.model_name = "wavenet"
    c.model = jaxar_config.ml_collections.ConfigDict(
        dict(residual_channels=8, gate_channels=8, skip_channels=8, num_cycles=1,
             layers_per_cycle=2)
    )  # fmt: skip
    model = train.build_model(c, train.load_data(c)[2])
    assert model.num_classes == 3 and model.local_features == 16


def test_a_prepared_test_split_is_used_as_is(tmp_path):
    _prepare(tmp_path, splits=("train", "test"), n=4)
    test = jaxar.data.load("tfds:fake_speech", "test", data_dir=str(tmp_path), **OPTS)
    assert len(test.files) == 4


def test_missing_or_unprepared_data_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build ljspeech --file_format=array_record"):
        tfds_audio.tfds_audio("ljspeech", "train", data_dir=str(tmp_path), **OPTS)
    _prepare(tmp_path)
    os.remove(tmp_path / "fake_speech" / "1.0.0" / "fake_speech-train.array_record-00001-of-00002")
    with pytest.raises(FileNotFoundError, match="shard .*00001-of-00002 of split 'train'"):
        jaxar.data.load("tfds:fake_speech", "train", data_dir=str(tmp_path), **OPTS)


def test_a_record_that_does_not_decode_is_named(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    _prepare(tmp_path, n=4, shards=1)
    path = tmp_path / "fake_speech" / "1.0.0" / "fake_speech-train.array_record-00000-of-00001"
    os.remove(path)
    w = ArrayRecordWriter(str(path), "group_size:1")
    for _ in range(4):
        w.write(b"\x08not a tf.train.Example")
    w.close()
    with pytest.raises(ValueError, match=r"record \d+ of .* cannot be decoded"):
        jaxar.data.load("tfds:fake_speech", "train", data_dir=str(tmp_path), **OPTS)


def test_find_prepared_takes_the_newest_version_a_named_one_or_a_config(tmp_path, monkeypatch):
    def prepared(*parts):
        d = tmp_path.joinpath(*parts)
        d.mkdir(parents=True)
        (d / "dataset_info.json").write_text("{}")
        return str(d)

    for version in ("1.2.0", "1.10.0", "1.9.3"):
        prepared("speech", version)
    newest = str(tmp_path / "speech" / "1.10.0")
    glob = tfds_audio.glob.glob
    for order in (sorted, lambda paths: sorted(paths, reverse=True)):  # whatever glob lists
        monkeypatch.setattr(tfds_audio.glob, "glob", lambda pattern: order(glob(pattern)))
        assert tfds_audio.find_prepared("speech", str(tmp_path)) == newest  # 10 > 9 > 2
    monkeypatch.setattr(tfds_audio.glob, "glob", glob)
    assert tfds_audio.find_prepared("speech:1.2.0", str(tmp_path)) == str(tmp_path / "speech/1.2.0")
    assert tfds_audio.find_prepared("speech:3.0.0", str(tmp_path)) is None
    config = prepared("other", "clean", "2.0.0")  # NAME/CONFIG/VERSION
    assert tfds_audio.find_prepared("other", str(tmp_path)) == config
    # The data dir: the argument, else $TFDS_DATA_DIR, else ~/tensorflow_datasets.
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert tfds_audio.find_prepared("speech") == newest
    monkeypatch.delenv("TFDS_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = prepared("home", "tensorflow_datasets", "speech", "1.0.0")
    assert tfds_audio.find_prepared("speech") == home


def test_shard_names_follow_the_splits_template_and_the_format_is_checked(tmp_path):
    clips = _prepare(tmp_path, n=4, shards=2)["train"]
    directory = tmp_path / "fake_speech" / "1.0.0"
    info = json.loads((directory / "dataset_info.json").read_text())
    template = "{DATASET}-{SPLIT}-{SHARD_INDEX}-{NUM_SHARDS}.{FILEFORMAT}"
    info["splits"][0]["filepathTemplate"] = template
    for i in range(2):
        old = directory / f"fake_speech-train.array_record-{i:05d}-of-00002"
        old.rename(directory / f"fake_speech-train-{i:05d}-00002.array_record")
    (directory / "dataset_info.json").write_text(json.dumps(info))
    src = jaxar.data.load("tfds:fake_speech", "train", data_dir=str(tmp_path), **OPTS)
    assert len(src.files) + 1 == len(clips)  # one of the four is the test split
    del info["fileFormat"]  # tfds' default format, tfrecord, is refused
    (directory / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="prepared as tfrecord; jaxar reads array_record"):
        jaxar.data.load("tfds:fake_speech", "train", data_dir=str(tmp_path), **OPTS)
