"""What a run leaves for people to look at: sample grids, learning curves, audio files."""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["image_grid", "save_curves", "save_pairs", "save_samples", "write_wav"]


def image_grid(images: np.ndarray, num_levels: int, pad: int = 1, scale: int = 0) -> np.ndarray:
    """Tile integer images ``(N, H, W, C)`` with levels ``0..num_levels-1`` into one uint8 image.

    Grey images give ``(rows, cols)``, RGB ``(rows, cols, 3)``. Small images are enlarged by an
    integer ``scale`` (default: to at least 64 pixels a side) so that they can be seen.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected images (N, H, W, 1 or 3), got shape {images.shape}")
    n, h, w, c = images.shape
    scale = scale or max(1, 64 // max(h, w))
    pixels = (images.astype(np.float64) * (255.0 / (num_levels - 1))).round().astype(np.uint8)
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid[..., 0] if c == 1 else grid


def write_wav(path: str, levels: np.ndarray, num_levels: int, sample_rate: int) -> None:
    """Write mu-law levels ``(T,)`` as 16-bit PCM WAV."""
    import soundfile as sf

    from jaxar.distributions import mu_law_decode

    audio = np.asarray(mu_law_decode(np.asarray(levels), num_levels))
    sf.write(path, audio, int(sample_rate), subtype="PCM_16")


def save_samples(samples: np.ndarray, info, stem: str) -> list[str]:
    """Save samples as ``STEM.npy`` plus ``STEM.png`` (images) or ``STEM_K.wav`` (audio).

    Returns the paths written.
    """
    from PIL import Image

    samples = np.asarray(samples)
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    paths = [stem + ".npy"]
    np.save(paths[0], samples)
    if info.kind == "audio":
        for k, s in enumerate(samples):
            paths.append(f"{stem}_{k}.wav")
            write_wav(paths[-1], s, info.num_levels, info.sample_rate)
    else:
        paths.append(stem + ".png")
        Image.fromarray(image_grid(samples, info.num_levels)).save(paths[-1])
    return paths


def save_pairs(left: np.ndarray, right: np.ndarray, num_levels: int, stem: str) -> list[str]:
    """Two sets of integer images side by side (e.g. inputs and their reconstructions):
    ``STEM.png`` (two grids with a white gap) and ``STEM.npy`` ``(2, N, H, W, C)``."""
    from PIL import Image

    a, b = image_grid(left, num_levels), image_grid(right, num_levels)
    gap = np.full((a.shape[0], 8, *a.shape[2:]), 255, np.uint8)
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    np.save(stem + ".npy", np.stack([left, right]))
    Image.fromarray(np.concatenate([a, gap, b], axis=1)).save(stem + ".png")
    return [stem + ".npy", stem + ".png"]


def save_curves(records: list[dict], path: str, keys=("train/bits_per_dim", "test/bits_per_dim")):
    """Plot the given metrics against the step (log-scaled step axis off) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if key in r]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("bits per dimension")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
