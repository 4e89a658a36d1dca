"""``wav:DIR``: every ``.wav`` file under a folder, as an :class:`~jaxar.data.audio.AudioSource`.

Files are read with soundfile, recursively (following links) and sorted by path; they go to the
test split by a fixed permutation of the sorted paths (:func:`~jaxar.data.audio.split_items`).
Everything after reading (mono, resampling, trimming, mu-law, windows, features) is
:mod:`jaxar.data.audio`.

**Speakers.** A folder that holds no ``.wav`` itself but two or more sub-folders (or links to
folders) that do is a multi-speaker corpus: each clip's label is the index of its top sub-folder
in sorted order (``info.num_classes`` of them), so ``config.data.conditional = True``
conditions a model on the speaker. ``experiments/data/asterisk_voices`` is one: links named
``en es fr it ru`` to Debian's five voices (``asterisk-core-sounds-{en,es,fr,it,ru}-wav``).
"""

from __future__ import annotations

import os

import numpy as np

from jaxar.data.audio import AudioItem, AudioSource, audio_options, split_items
from jaxar.data.sources import register_loader

__all__ = ["wav"]


def _check_riff_size(path: str) -> None:
    """Raise ValueError if a RIFF WAV's ``data`` chunk says more bytes than the file holds
    (a truncated file, which soundfile reads silently as a shorter clip). Files that are not
    plain RIFF, or whose sizes are unset (streamed: 0 or 0xFFFFFFFF), are not checked."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                if declared in (0, 0xFFFFFFFF):
                    return
                have = size - pos - 8
                if have < declared:
                    raise ValueError(
                        f"WAV file {path} is truncated: its data chunk declares {declared} "
                        f"bytes but the file holds {have}"
                    )
                return
            pos += 8 + declared + (declared & 1)


def _read(path: str) -> tuple[np.ndarray, int]:
    import soundfile

    _check_riff_size(path)
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise ValueError(f"cannot read WAV file {path}: {type(e).__name__}: {e}") from e
    return audio, int(rate)


def _wav_item(path: str, label: int | None = None) -> AudioItem:
    def read():
        audio, rate = _read(path)
        return audio, rate, label

    return path, read


def _list_wavs(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"wav:{directory}: no such directory. For real speech install Debian's "
            "asterisk-core-sounds-en-wav (files in /usr/share/asterisk/sounds/en_US_f_Allison)"
        )
    found = []
    for root, _, names in os.walk(directory, followlinks=True):
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
    speakers = _speakers(directory)
    top = lambda p: os.path.relpath(p, directory).split(os.sep)[0]
    label = lambda p: speakers.index(top(p)) if speakers else None
    items = [
        _wav_item(paths[i], label(paths[i])) for i in split_items(len(paths), split, test_fraction)
    ]
    return AudioSource(
        f"wav:{directory}", split, items, num_classes=len(speakers), **audio_options(options)
    )


def _speakers(directory: str) -> list[str]:
    """The speakers of ``wav:DIR``, sorted: its sub-folders (or links to folders) when DIR holds
    no ``.wav`` of its own and at least two of them do; label ``k`` is the ``k``-th. Else []:
    the clips are unlabelled (a sub-folder then is just part of one speaker's corpus)."""
    entries = sorted(os.listdir(directory))
    if any(n.lower().endswith(".wav") for n in entries):
        return []
    subs = [n for n in entries if os.path.isdir(os.path.join(directory, n))]
    speakers = [n for n in subs if _list_wavs(os.path.join(directory, n))]
    return speakers if len(speakers) >= 2 else []


register_loader("wav", wav)
