"""Where the bits go: bits per dimension at every position of an event.

For images, :func:`write_bits_maps` writes ``bits_map_mean.png`` (the bits of every pixel,
averaged over the split and the colour channels) and ``bits_map_examples.png`` (a few test
images beside their own maps), plus the arrays in ``bits_map.npz``; for audio,
``bits_map_audio.png``: a test clip's waveform above its bits per sample. The bits are the
model's exact conditionals ``-log2 p(x_i | x_<i)`` (``log_prob(per_dim=True)``).
"""

from __future__ import annotations

import math
import os

import numpy as np

from jaxar.data.pipeline import eval_batches

__all__ = [
    "bits_per_position",
    "mean_bits_map",
    "save_audio_bits_plot",
    "save_image_bits_maps",
    "write_bits_maps",
]


def bits_per_position(model, params, x, cond=None) -> np.ndarray:
    """``-log2 p(x_i | x_<i)`` of every dimension: ``(N, *event_shape)`` float64."""
    lp = model.log_prob(params, x, cond, per_dim=True)
    return -np.asarray(lp, np.float64) / math.log(2.0)


def mean_bits_map(
    model, params, source, *, batch_size: int, binarize: str = "", seed: int = 0, keep: int = 0
):
    """Bits at every position averaged over every example of ``source``: ``(mean (*event_shape),
    first examples (keep, *event_shape) int, their maps (keep, *event_shape))``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of examples, got {batch_size}")
    if len(source) == 0:
        raise ValueError(f"{source!r} has no examples to average over")
    total = np.zeros(model.event_shape, np.float64)
    count = 0
    kept_x, kept_bits = [], []
    for batch in eval_batches(source, batch_size=batch_size, binarize=binarize, seed=seed):
        mask = batch["mask"] > 0
        bits = bits_per_position(model, params, batch["x"], model.cond_from_batch(batch))
        total += bits[mask].sum(axis=0)
        count += int(mask.sum())
        if sum(map(len, kept_x)) < keep:
            kept_x.append(np.asarray(batch["x"])[mask])
            kept_bits.append(bits[mask])
    shape = (0, *model.event_shape)
    kx = np.concatenate(kept_x)[:keep] if kept_x else np.zeros(shape, np.int32)
    kb = np.concatenate(kept_bits)[:keep] if kept_bits else np.zeros(shape)
    return total / count, kx, kb


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_image_bits_maps(
    outdir: str, mean_map: np.ndarray, images: np.ndarray, maps: np.ndarray, num_levels: int
) -> list[str]:
    """Write ``bits_map_mean.png`` and ``bits_map_examples.png`` (images beside their maps,
    bits averaged over colour channels) into ``outdir``; return the paths."""
    mean_map, images, maps = np.asarray(mean_map), np.asarray(images), np.asarray(maps)
    if mean_map.ndim != 3 or images.ndim != 4 or maps.shape != images.shape:
        raise ValueError(
            f"expected a mean map (H, W, C) and images and maps (N, H, W, C) of one shape, got "
            f"{mean_map.shape}, {images.shape} and {maps.shape}"
        )
    plt = _plt()
    os.makedirs(outdir, exist_ok=True)
    paths = [
        os.path.join(outdir, "bits_map_mean.png"),
        os.path.join(outdir, "bits_map_examples.png"),
    ]
    fig, ax = plt.subplots(figsize=(4.5, 4), dpi=100)
    im = ax.imshow(mean_map.mean(axis=-1), cmap="magma")
    ax.set_title(f"bits/dim per pixel, mean {mean_map.mean():.3f}")
    ax.axis("off")
    fig.colorbar(im, ax=ax)
    fig.savefig(paths[0], bbox_inches="tight")
    plt.close(fig)
    n = len(images)
    fig, axes = plt.subplots(2, max(n, 1), figsize=(2 * max(n, 1), 4.2), dpi=100, squeeze=False)
    vmax = float(maps.mean(axis=-1).max()) if n else 1.0
    for i in range(n):
        pix = images[i].astype(np.float64) / (num_levels - 1)
        axes[0, i].imshow(pix[..., 0] if pix.shape[-1] == 1 else pix, cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(f"{maps[i].mean():.2f} bits/dim", fontsize=8)
        axes[1, i].imshow(maps[i].mean(axis=-1), cmap="magma", vmin=0, vmax=vmax)
    for a in axes.ravel():
        a.axis("off")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def save_audio_bits_plot(
    path: str, levels: np.ndarray, bits: np.ndarray, num_levels: int, sample_rate: int
) -> str:
    """A clip's waveform (mu-law levels ``(T,)`` decoded) above its bits per sample ``(T,)``."""
    from jaxar.distributions import mu_law_decode

    levels, bits = np.asarray(levels).reshape(-1), np.asarray(bits).reshape(-1)
    if levels.shape != bits.shape:
        raise ValueError(f"expected levels and bits of one shape, got {levels.shape}, {bits.shape}")
    if sample_rate <= 0:
        raise ValueError(f"expected a positive sample rate, got {sample_rate}")
    plt = _plt()
    t = np.arange(len(levels)) / sample_rate
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 4.5), dpi=100, sharex=True)
    a.plot(t, np.asarray(mu_law_decode(levels, num_levels)), lw=0.5)
    a.set_ylabel("amplitude")
    b.plot(t, bits, lw=0.4, alpha=0.5, label="bits per sample")
    win = max(1, sample_rate // 100)
    if len(bits) >= win:
        b.plot(
            t[win - 1 :], np.convolve(bits, np.ones(win) / win, "valid"), lw=1.2, label="10 ms mean"
        )
    b.set_ylabel("bits")
    b.set_xlabel("seconds")
    b.set_title(f"mean {bits.mean():.3f} bits/sample")
    b.legend(loc="upper right", fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def write_bits_maps(
    model,
    params,
    source,
    info,
    outdir: str,
    *,
    batch_size: int,
    binarize: str = "",
    seed: int = 0,
    num_examples: int = 8,
) -> list[str]:
    """The bits maps of ``source`` (a test split) into ``outdir`` (see the module docstring)."""
    mean, xs, bits = mean_bits_map(
        model,
        params,
        source,
        batch_size=batch_size,
        binarize=binarize,
        seed=seed,
        keep=num_examples,
    )
    os.makedirs(outdir, exist_ok=True)
    npz = os.path.join(outdir, "bits_map.npz")
    np.savez(npz, mean=mean, examples=xs, example_bits=bits)
    if info.kind == "audio":
        path = os.path.join(outdir, "bits_map_audio.png")
        return [npz, save_audio_bits_plot(path, xs[0], bits[0], info.num_levels, info.sample_rate)]
    return [npz, *save_image_bits_maps(outdir, mean, xs, bits, info.num_levels)]
