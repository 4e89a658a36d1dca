"""Audio as fixed-length windows of mu-law levels: the pieces every audio loader shares.

:class:`AudioSource` does the work for every audio dataset; ``wav:DIR`` (:mod:`jaxar.data.wav`)
and ``tfds:NAME`` for audio datasets (:mod:`jaxar.data.tfds_audio`) only list the clips of a
split.
Every clip is mixed down to mono, resampled to ``sample_rate`` with a polyphase filter
(:func:`scipy.signal.resample_poly`), optionally trimmed of leading and trailing silence, and
mu-law encoded to ``num_levels`` levels. ``wav:DIR`` reads every ``.wav`` file under ``DIR``
(recursively, sorted by path) with soundfile; files go to the test split by a fixed permutation
of the sorted paths (seed 0, :func:`split_items`): ``max(1, round(test_fraction * N))`` of them,
the rest train, so no file is in both.

Examples are windows of ``length`` samples. Each clip yields ``ceil(n / length)`` windows:
non-overlapping from its start, the last one ending at the clip's end (so it may overlap the one
before); a clip shorter than ``length`` is padded at its end with digital silence. The test
split reads exactly these windows, so evaluation is deterministic and covers every test sample.
Training reads the same number of elements, but :meth:`AudioSource.train_transform` (which the
training pipeline applies with a per-(seed, epoch, index) generator) replaces each by a random
crop of the same clip, so long clips are sampled in proportion to their length.

Local conditioning features (``features="log_mel"``): a log-mel spectrogram with one frame per
``feature_hop`` samples (:func:`jaxar.data.features.log_mel_spectrogram`), computed once per
clip from its audio after resampling and trimming. Clips are padded at the end to a whole number
of frames and every window (test or random crop) starts on a frame boundary, so an element's
``"features"`` are exactly the ``length // feature_hop`` frames of its samples, as a WaveNet
vocoder expects.

Nothing is dropped silently: padding, trimming, down-mixing and empty clips (the only ones left
out) are counted, logged and kept in :attr:`AudioSource.stats`. A file soundfile cannot read,
a truncated WAV and a clip holding NaN or infinite samples raise ``ValueError`` naming it (never
dropped: a bad file is a bad dataset, not a smaller one).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

from jaxar.data.features import FEATURE_KINDS, log_mel_spectrogram
from jaxar.data.sources import SPLITS, DataInfo

__all__ = [
    "AUDIO_OPTIONS",
    "AudioItem",
    "AudioSource",
    "WavStats",
    "audio_options",
    "mu_law_encode_np",
    "split_items",
]

log = logging.getLogger("jaxar.data.audio")

_TRIM_FRAME_S = 0.01  # silence trimming works on 10 ms frames


def mu_law_encode_np(audio: np.ndarray, num_levels: int = 256) -> np.ndarray:
    """NumPy twin of :func:`jaxar.distributions.mu_law_encode` (float audio -> int levels)."""
    mu = num_levels - 1
    x = np.clip(np.asarray(audio, np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.clip(np.round((y + 1.0) / 2.0 * mu), 0, mu).astype(np.int32)


@dataclasses.dataclass
class WavStats:
    """What loading did to the files of one split (also logged)."""

    files: int = 0
    seconds: float = 0.0  # after trimming, before padding
    resampled: int = 0
    downmixed: int = 0
    trimmed_files: int = 0
    trimmed_seconds: float = 0.0
    padded_files: list[str] = dataclasses.field(default_factory=list)  # shorter than a window
    frame_padded_files: int = 0  # padded at the end to a whole feature frame
    dropped_files: list[str] = dataclasses.field(default_factory=list)  # empty ones


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def _trim(audio: np.ndarray, rate: int, db: float) -> np.ndarray:
    """Drop leading and trailing 10 ms frames whose RMS is ``db`` below the loudest frame's."""
    n = max(1, round(rate * _TRIM_FRAME_S))
    frames = len(audio) // n
    if frames == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: frames * n].reshape(frames, n) ** 2, axis=1))
    peak = rms.max()
    if peak == 0.0:
        return audio  # all-zero file: nothing to measure against; kept as is
    loud = np.flatnonzero(rms >= peak * 10.0 ** (-db / 20.0))
    start = loud[0] * n
    stop = len(audio) if loud[-1] == frames - 1 else (loud[-1] + 1) * n
    return audio[start:stop]


def split_items(num_items: int, split: str, test_fraction: float) -> np.ndarray:
    """The sorted item indices of ``split``: a fixed permutation (seed 0) of ``num_items`` puts
    ``max(1, round(test_fraction * num_items))`` in the test split and the rest in train."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(0).permutation(num_items)
    num_test = max(1, round(test_fraction * num_items))
    return np.sort(order[:num_test] if split == "test" else order[num_test:])


# An item: (name, read) where read() -> (float audio (n, channels), sample rate, label or None).
AudioItem = tuple[str, Callable[[], tuple[np.ndarray, int, "int | None"]]]


class AudioSource:
    """Windows of ``length`` mu-law samples from the clips of one split (see module doc).

    ``items`` are the split's clips, each read once here. Elements are ``{"x": int32
    (length,), "file": int32}``, plus ``"label"`` (int32) when ``num_classes > 0`` and
    ``"features"`` (float32 ``(length // feature_hop, num_mels)``) when ``features`` is
    ``"log_mel"``; ``files`` lists the items' names.
    """

    def __init__(
        self,
        name: str,
        split: str,
        items: Sequence[AudioItem],
        *,
        length: int = 0,
        sample_rate: int = 0,
        num_levels: int = 256,
        num_classes: int = 0,
        trim_silence_db: float = 0.0,
        features: str = "",
        num_mels: int = 80,
        feature_hop: int = 0,
        fft_size: int = 0,
    ):
        if int(length) < 1:
            raise ValueError(
                f"{name}: expected a crop length >= 1 samples (config.data.length), got {length}"
            )
        if int(sample_rate) < 1:
            raise ValueError(
                f"{name}: expected a sample rate >= 1 Hz (config.data.sample_rate), "
                f"got {sample_rate}"
            )
        if features not in FEATURE_KINDS:
            raise ValueError(
                f"{name}: unknown features {features!r} (config.data.features); expected one "
                f"of {FEATURE_KINDS}"
            )
        hop = int(feature_hop) if features else 1
        if features and (hop < 1 or int(length) % hop):
            raise ValueError(
                f"{name}: the crop length ({length}) must be a positive multiple of "
                f"config.data.feature_hop ({feature_hop}) for {features} features"
            )
        self.length, self.num_levels, self.hop = int(length), int(num_levels), hop
        self.features = features
        stats = WavStats()
        clips, frames, labels, self.files = [], [], [], []
        for item_name, read in items:
            audio, rate, label = read()
            bad = int(np.size(audio) - np.count_nonzero(np.isfinite(audio)))
            if bad:
                raise ValueError(
                    f"{name}: {item_name} holds {bad} non-finite samples (NaN or inf) of "
                    f"{np.size(audio)}; expected finite audio, fix or remove the file"
                )
            if audio.shape[1] > 1:
                stats.downmixed += 1
            audio = audio.mean(axis=1)
            if rate != sample_rate:
                audio = _resample(audio, rate, sample_rate)
                stats.resampled += 1
            if trim_silence_db > 0 and len(audio):
                trimmed = _trim(audio, sample_rate, trim_silence_db)
                if len(trimmed) < len(audio):
                    stats.trimmed_files += 1
                    stats.trimmed_seconds += (len(audio) - len(trimmed)) / sample_rate
                audio = trimmed
            if len(audio) == 0:
                stats.dropped_files.append(item_name)
                log.warning("%s: %s holds no audio; left out", name, item_name)
                continue
            stats.seconds += len(audio) / sample_rate
            if len(audio) < self.length:
                stats.padded_files.append(item_name)
            # At least one window, and whole frames (so every window starts on a frame).
            size = max(self.length, -(-len(audio) // hop) * hop)
            if size > len(audio) >= self.length:
                stats.frame_padded_files += 1
            audio = np.pad(audio, (0, size - len(audio)))
            if features:
                frames.append(log_mel_spectrogram(audio, sample_rate, hop, num_mels, fft_size))
            clips.append(mu_law_encode_np(audio, num_levels).astype(np.int16))
            labels.append(-1 if label is None else int(label))
            self.files.append(item_name)
        if not clips:
            raise ValueError(f"{name}: no {split} clip holds any audio")
        if num_classes and not all(0 <= y < num_classes for y in labels):
            raise ValueError(f"{name}: expected labels in [0, {num_classes}) on every clip")
        stats.files = len(self.files)
        self.stats = stats
        self.sample_rate = int(sample_rate)
        self.num_classes = int(num_classes)
        self._labels = np.asarray(labels, np.int32)

        self._audio = np.concatenate(clips)
        sizes = np.array([len(c) for c in clips], np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._sizes = sizes
        if features:
            self._frames = np.concatenate(frames)
            self._frame_offsets = self._offsets // hop
        counts = -(-sizes // self.length)  # ceil
        self._file_of = np.repeat(np.arange(len(clips)), counts)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        window = np.arange(len(self._file_of)) - first[self._file_of]
        self._starts = np.minimum(window * self.length, sizes[self._file_of] - self.length)
        self.info = DataInfo(
            name,
            (self.length,),
            self.num_levels,
            self.num_classes,
            "audio",
            self.sample_rate,
            feature_shape=(self.length // hop, int(num_mels)) if features else (),
            feature_hop=hop if features else 0,
        )
        log.info(
            "%s %s: %d clips, %.1f s of audio at %d Hz, %d windows of %d samples; "
            "resampled %d, down-mixed %d, trimmed %.1f s of silence from %d clips, padded %d "
            "clips shorter than a window and %d to a whole frame, left out %d empty clips",
            name, split, stats.files, stats.seconds, self.sample_rate, len(self),
            self.length, stats.resampled, stats.downmixed, stats.trimmed_seconds,
            stats.trimmed_files, len(stats.padded_files), stats.frame_padded_files,
            len(stats.dropped_files),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self._file_of)

    def _element(self, f: int, start: int) -> dict:
        begin = self._offsets[f] + start
        out = {"x": self._audio[begin : begin + self.length].astype(np.int32), "file": np.int32(f)}
        if self.num_classes:
            out["label"] = self._labels[f]
        if self.features:
            first = self._frame_offsets[f] + start // self.hop
            out["features"] = self._frames[first : first + self.length // self.hop]
        return out

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        i %= len(self)
        f = int(self._file_of[i])
        return self._element(f, int(self._starts[i]))

    def train_transform(self, element: dict, rng: np.random.Generator) -> dict:
        """A uniformly random crop of ``length`` samples from the element's clip (starting on
        a frame boundary when the source has features)."""
        f = int(element["file"])
        start = self.hop * int(rng.integers(0, (self._sizes[f] - self.length) // self.hop + 1))
        return self._element(f, start)

    def __repr__(self) -> str:
        return f"AudioSource({self.info.name!r}, {len(self.files)} clips, {len(self)} windows)"


# The AudioSource options a loader takes from config.data (see data_options in jaxar.train).
AUDIO_OPTIONS = (
    "length", "sample_rate", "num_levels", "trim_silence_db", "features", "num_mels",
    "feature_hop", "fft_size",
)  # fmt: skip


def audio_options(options: dict) -> dict:
    """The :class:`AudioSource` keyword arguments among a loader's ``options``; options meant
    for other loaders (e.g. ``data_dir``) are dropped."""
    return {k: v for k, v in options.items() if k in AUDIO_OPTIONS}
