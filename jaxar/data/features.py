"""Log-mel spectrograms: the local conditioning features of a WaveNet vocoder (NumPy, no JAX).

Frame ``f`` of a clip describes its samples ``f * hop .. (f + 1) * hop - 1``: it is the
magnitude spectrum of a Hann window of ``fft_size`` samples centred on the middle of those
samples (the clip is zero-padded at both ends), divided by the window's sum (a full-scale sine
then peaks at 0.5), averaged in each of ``num_mels`` triangular mel bands, in decibels, and
scaled so that ``min_db`` .. 0 dB maps to 0 .. 1 (clipped). A clip
of ``n`` samples (``n`` a multiple of ``hop``) has ``n // hop`` frames, so a window of
``length`` samples starting at a multiple of ``hop`` has exactly the frames
``start // hop .. (start + length) // hop - 1``.

Mel scale: ``m = 2595 log10(1 + f / 700)`` (HTK). Filter ``i`` rises from mel point ``i`` to
``i + 1`` and falls to ``i + 2``, the ``num_mels + 2`` points evenly spaced in mel between
``fmin`` and ``fmax``; each filter's weights sum to 1, so a band's value is a weighted average
of its bins and a flat spectrum gives the same value in every band.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEATURE_KINDS", "default_fft_size", "log_mel_spectrogram", "mel_filterbank"]

FEATURE_KINDS = ("", "log_mel")


def default_fft_size(hop: int) -> int:
    """The least power of two >= 4 hops (e.g. 512 for a 10 ms hop at 8 kHz)."""
    return 1 << max(0, int(4 * hop - 1).bit_length())


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, fft_size: int, num_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters ``(fft_size // 2 + 1, num_mels)`` over the rFFT bins."""
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(
            f"expected 0 <= fmin < fmax <= sample_rate / 2 = {sample_rate / 2}, got "
            f"fmin={fmin}, fmax={fmax}"
        )
    if num_mels < 1:
        raise ValueError(f"num_mels must be >= 1, got {num_mels}")
    bins = np.fft.rfftfreq(fft_size, 1.0 / sample_rate)  # (fft_size // 2 + 1,)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), num_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (bins[None] - lo) / (mid - lo)
    fall = (hi - bins[None]) / (hi - mid)
    tri = np.maximum(0.0, np.minimum(rise, fall))  # (num_mels, bins)
    sums = tri.sum(axis=1, keepdims=True)
    if np.any(sums == 0):
        raise ValueError(
            f"{int(np.sum(sums == 0))} of the {num_mels} mel bands hold no FFT bin; use fewer "
            f"mels or a larger fft_size than {fft_size}"
        )
    return (tri / sums).T.astype(np.float32)


def log_mel_spectrogram(
    audio: np.ndarray,
    sample_rate: int,
    hop: int,
    num_mels: int = 80,
    fft_size: int = 0,
    fmin: float = 0.0,
    fmax: float | None = None,
    min_db: float = -100.0,
) -> np.ndarray:
    """Frames ``(len(audio) // hop, num_mels)`` float32 in [0, 1] of float ``audio`` ``(n,)``.

    ``len(audio)`` must be a multiple of ``hop``; ``fft_size`` 0 means
    :func:`default_fft_size`. See the module docstring for the exact definition.
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (n,), got shape {audio.shape}")
    if hop < 1 or len(audio) % hop:
        raise ValueError(f"the audio length ({len(audio)}) must be a multiple of hop ({hop})")
    if min_db >= 0:
        raise ValueError(f"min_db must be negative, got {min_db}")
    n_fft = int(fft_size) or default_fft_size(hop)
    frames = len(audio) // hop
    # Frame f's window is centred at f * hop + hop / 2: it starts n_fft // 2 - hop // 2
    # samples before the frame's first sample.
    left = n_fft // 2 - hop // 2
    padded = np.pad(audio, (max(left, 0), n_fft))
    offset = max(left, 0) - left
    starts = offset + hop * np.arange(frames)
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[starts]
    window = np.hanning(n_fft).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(windows * window, axis=-1)) / window.sum()
    mel = spectrum @ mel_filterbank(sample_rate, n_fft, num_mels, fmin, fmax)
    db = 20.0 * np.log10(np.maximum(mel, 10.0 ** (min_db / 20.0)))
    return np.clip((db - min_db) / -min_db, 0.0, 1.0).astype(np.float32)
