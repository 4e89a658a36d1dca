"""``wav:DIR``: a folder of WAV files as fixed-length crops of mu-law audio.

Every ``.wav`` file under ``DIR`` (recursively, sorted by path) is read with soundfile, mixed
down to mono, resampled to ``sample_rate`` with a polyphase filter
(:func:`scipy.signal.resample_poly`), optionally trimmed of leading and trailing silence, and
mu-law encoded to ``num_levels`` levels. Files go to the test split by a fixed permutation of
the sorted paths (seed 0): ``max(1, round(test_fraction * N))`` of them, the rest train, so no
file is in both.

Examples are windows of ``length`` samples. Each file yields ``ceil(n / length)`` windows:
non-overlapping from its start, the last one ending at the file's end (so it may overlap the one
before); a file shorter than ``length`` is padded at its end with digital silence. The test
split reads exactly these windows, so evaluation is deterministic and covers every test sample.
Training reads the same number of elements, but :meth:`WavSource.train_transform` (which the
training pipeline applies with a per-(seed, epoch, index) generator) replaces each by a random
crop of the same file, so long files are sampled in proportion to their length.

Nothing is dropped silently: padding, trimming, down-mixing and empty files (the only ones left
out) are counted, logged and kept in :attr:`WavSource.stats`. A file soundfile cannot read
raises ``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os

import numpy as np

from jaxar.data.sources import SPLITS, DataInfo, register_loader

__all__ = ["WavSource", "WavStats", "mu_law_encode_np", "wav"]

log = logging.getLogger(__name__)

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
    padded_files: list[str] = dataclasses.field(default_factory=list)
    dropped_files: list[str] = dataclasses.field(default_factory=list)  # empty ones


def _read(path: str) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise ValueError(f"cannot read WAV file {path}: {type(e).__name__}: {e}") from e
    return audio, int(rate)


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


class WavSource:
    """Windows of ``length`` mu-law samples from the WAV files of one split (see module doc).

    Elements are ``{"x": int32 (length,), "file": int32}``; ``files`` lists the paths.
    """

    def __init__(
        self,
        directory: str,
        split: str,
        *,
        length: int,
        sample_rate: int,
        num_levels: int = 256,
        test_fraction: float = 0.1,
        trim_silence_db: float = 0.0,
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        if int(length) < 1:
            raise ValueError(
                f"wav:{directory}: expected a crop length >= 1 samples (config.data.length), "
                f"got {length}"
            )
        if int(sample_rate) < 1:
            raise ValueError(
                f"wav:{directory}: expected a sample rate >= 1 Hz (config.data.sample_rate), "
                f"got {sample_rate}"
            )
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.length, self.num_levels = int(length), int(num_levels)
        paths = _list_wavs(directory)
        if len(paths) < 2:
            raise ValueError(
                f"wav:{directory}: expected at least 2 .wav files (one per split), "
                f"found {len(paths)}"
            )
        order = np.random.default_rng(0).permutation(len(paths))
        num_test = max(1, round(test_fraction * len(paths)))
        chosen = order[:num_test] if split == "test" else order[num_test:]
        paths = [paths[i] for i in sorted(chosen)]

        stats = WavStats()
        clips, self.files = [], []
        for path in paths:
            audio, rate = _read(path)
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
                stats.dropped_files.append(path)
                log.warning("wav:%s: %s holds no audio; left out", directory, path)
                continue
            stats.seconds += len(audio) / sample_rate
            if len(audio) < self.length:
                stats.padded_files.append(path)
                audio = np.pad(audio, (0, self.length - len(audio)))
            clips.append(mu_law_encode_np(audio, num_levels).astype(np.int16))
            self.files.append(path)
        if not clips:
            raise ValueError(f"wav:{directory}: no {split} file holds any audio")
        stats.files = len(self.files)
        self.stats = stats
        self.sample_rate = int(sample_rate)

        self._audio = np.concatenate(clips)
        sizes = np.array([len(c) for c in clips], np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._sizes = sizes
        counts = -(-sizes // self.length)  # ceil
        self._file_of = np.repeat(np.arange(len(clips)), counts)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        window = np.arange(len(self._file_of)) - first[self._file_of]
        self._starts = np.minimum(window * self.length, sizes[self._file_of] - self.length)
        self.info = DataInfo(
            f"wav:{directory}", (self.length,), self.num_levels, 0, "audio", self.sample_rate
        )
        log.info(
            "wav:%s %s: %d files, %.1f s of audio at %d Hz, %d windows of %d samples; "
            "resampled %d, down-mixed %d, trimmed %.1f s of silence from %d files, padded %d "
            "files shorter than a window, left out %d empty files",
            directory, split, stats.files, stats.seconds, self.sample_rate, len(self),
            self.length, stats.resampled, stats.downmixed, stats.trimmed_seconds,
            stats.trimmed_files, len(stats.padded_files), len(stats.dropped_files),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self._file_of)

    def _crop(self, f: int, start: int) -> np.ndarray:
        begin = self._offsets[f] + start
        return self._audio[begin : begin + self.length].astype(np.int32)

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        i %= len(self)
        f = int(self._file_of[i])
        return {"x": self._crop(f, int(self._starts[i])), "file": np.int32(f)}

    def train_transform(self, element: dict, rng: np.random.Generator) -> dict:
        """A uniformly random crop of ``length`` samples from the element's file."""
        f = int(element["file"])
        start = int(rng.integers(0, self._sizes[f] - self.length + 1))
        return {**element, "x": self._crop(f, start)}

    def __repr__(self) -> str:
        return f"WavSource({self.info.name!r}, {len(self.files)} files, {len(self)} windows)"


def _list_wavs(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"wav:{directory}: no such directory. For real speech install Debian's "
            "asterisk-core-sounds-en-wav (files in /usr/share/asterisk/sounds/en_US_f_Allison)"
        )
    found = []
    for root, _, names in os.walk(directory):
        found += [os.path.join(root, n) for n in names if n.lower().endswith(".wav")]
    return sorted(found)


def wav(
    directory: str,
    split: str,
    *,
    length: int = 0,
    sample_rate: int = 0,
    num_levels: int = 256,
    test_fraction: float = 0.1,
    trim_silence_db: float = 0.0,
    **_,
) -> WavSource:
    """The ``wav:DIR`` loader; ``length`` and ``sample_rate`` (both required) come from
    ``config.data``. Options meant for other loaders are ignored."""
    return WavSource(
        directory, split, length=length, sample_rate=sample_rate, num_levels=num_levels,
        test_fraction=test_fraction, trim_silence_db=trim_silence_db,
    )  # fmt: skip


register_loader("wav", wav)
