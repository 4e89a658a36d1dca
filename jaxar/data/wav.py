"""``wav:DIR``: every ``.wav`` file under a folder, as an :class:`~jaxar.data.audio.AudioSource`.

Files are read with soundfile, recursively and sorted by path; they go to the test split by a
fixed permutation of the sorted paths (:func:`~jaxar.data.audio.split_items`). Everything after
reading (mono, resampling, trimming, mu-law, windows, features) is :mod:`jaxar.data.audio`.
"""

from __future__ import annotations

import os

import numpy as np

from jaxar.data.audio import AudioItem, AudioSource, audio_options, split_items
from jaxar.data.sources import register_loader

__all__ = ["wav"]


def _read(path: str) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise ValueError(f"cannot read WAV file {path}: {type(e).__name__}: {e}") from e
    return audio, int(rate)


def _wav_item(path: str) -> AudioItem:
    def read():
        audio, rate = _read(path)
        return audio, rate, None

    return path, read


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


def wav(directory: str, split: str, *, test_fraction: float = 0.1, **options) -> AudioSource:
    """The ``wav:DIR`` source: every ``.wav`` under ``directory`` (recursively, sorted by path),
    split by :func:`split_items`, as an :class:`AudioSource` with ``options`` (``length`` and
    ``sample_rate`` required, from ``config.data``)."""
    paths = _list_wavs(directory)
    if len(paths) < 2:
        raise ValueError(
            f"wav:{directory}: expected at least 2 .wav files (one per split), found {len(paths)}"
        )
    items = [_wav_item(paths[i]) for i in split_items(len(paths), split, test_fraction)]
    return AudioSource(f"wav:{directory}", split, items, **audio_options(options))


register_loader("wav", wav)
