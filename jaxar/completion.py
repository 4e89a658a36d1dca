"""Completing test examples from a prompt, for ``jaxar sample --prompt-rows / --prompt-seconds``.

:func:`prompt_dims` turns "the first K rows" or "the first S seconds" into the number of flat
dimensions :meth:`jaxar.models.AutoregressiveModel.sample` keeps; :func:`complete` draws several
completions of each example; :func:`completion_grid` lays images out one example per row:
original | prompt (the rest grey) | completions; :func:`save_completions` writes the PNG (images)
or the WAVs (audio: the original clip, and each continuation).
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np

from jaxar import reporting, train

__all__ = ["complete", "completion_grid", "prompt_dims", "run_completion", "save_completions"]


def prompt_dims(info, *, rows: int = 0, seconds: float = 0.0) -> int:
    """Flat dimensions kept for a prompt of ``rows`` image rows or ``seconds`` of audio (one of
    them), checked against ``info`` (a :class:`jaxar.data.DataInfo`)."""
    if (rows > 0) == (seconds > 0):
        raise ValueError(
            f"expected one of --prompt-rows or --prompt-seconds > 0, got rows={rows}, "
            f"seconds={seconds}"
        )
    shape = tuple(info.event_shape)
    if rows > 0:
        if info.kind == "audio" or len(shape) != 3:
            raise ValueError(f"--prompt-rows is for image runs; {info.name} is {info.kind}")
        if rows >= shape[0]:
            raise ValueError(f"expected --prompt-rows in [1, {shape[0] - 1}], got {rows}")
        return int(rows * shape[1] * shape[2])
    if info.kind != "audio":
        raise ValueError(f"--prompt-seconds is for audio runs; {info.name} is {info.kind}")
    n = round(float(seconds) * info.sample_rate)
    if not 1 <= n < shape[0]:
        raise ValueError(
            f"expected --prompt-seconds in (0, {shape[0] / info.sample_rate:g}) (the clip "
            f"length, {shape[0]} samples at {info.sample_rate} Hz), got {seconds}"
        )
    return n


def complete(model, params, rng, x, dims: int, per_example: int, cond=None, **sample_kw):
    """``per_example`` completions of every example of ``x`` ``(N, ...)`` from its first
    ``dims`` flat dimensions: ``(N, per_example, ...)``. One batch of ``N * per_example``."""
    x = np.asarray(x)
    n = x.shape[0]
    prompt = np.repeat(x, per_example, axis=0).astype(np.int32)
    if cond is not None:
        cond = jax.tree.map(lambda c: np.repeat(np.asarray(c), per_example, axis=0), cond)
    out = model.sample(
        params, rng, n * per_example, cond=cond, prompt=prompt, prompt_dims=dims, **sample_kw
    )
    return np.asarray(out).reshape(n, per_example, *x.shape[1:])


def completion_grid(x, completions, dims: int, num_levels: int) -> np.ndarray:
    """Images ``(N * (2 + K), H, W, C)`` for :func:`jaxar.reporting.image_grid` with ``2 + K``
    columns: each example's original, its prompt (the dimensions after ``dims`` set to the
    middle level, grey) and its ``K`` completions."""
    x, completions = np.asarray(x), np.asarray(completions)
    n = x.shape[0]
    flat = x.reshape(n, -1).copy()
    flat[:, dims:] = num_levels // 2
    rows = np.concatenate([x[:, None], flat.reshape(x.shape)[:, None], completions], axis=1)
    return rows.reshape(-1, *x.shape[1:])


def _grid(images: np.ndarray, cols: int, num_levels: int) -> np.ndarray:
    """Like :func:`reporting.image_grid` but with ``cols`` columns (one example per row)."""
    n = images.shape[0]
    rows = math.ceil(n / cols)
    tiles = [reporting.image_grid(images[i : i + 1], num_levels, pad=0) for i in range(n)]
    h, w = tiles[0].shape[:2]
    pad = 2
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *tiles[0].shape[2:]), 255)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top : top + h, left : left + w] = tile
    return grid.astype(np.uint8)


def save_completions(x, completions, dims: int, info, stem: str) -> list[str]:
    """Write ``STEM.npy`` (``(N, K, ...)`` completions) and ``STEM.png`` (the grid of
    :func:`completion_grid`) for images; for audio ``STEM_I_original.wav`` and
    ``STEM_I_K.wav`` (example ``I``, completion ``K``). Returns the paths written."""
    from PIL import Image

    x, completions = np.asarray(x), np.asarray(completions)
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    paths = [stem + ".npy"]
    np.save(paths[0], completions)
    if info.kind == "audio":
        for i in range(x.shape[0]):
            paths.append(f"{stem}_{i}_original.wav")
            reporting.write_wav(paths[-1], x[i], info.num_levels, info.sample_rate)
            for k, clip in enumerate(completions[i]):
                paths.append(f"{stem}_{i}_{k}.wav")
                reporting.write_wav(paths[-1], clip, info.num_levels, info.sample_rate)
        return paths
    images = completion_grid(x, completions, dims, info.num_levels)
    grid = _grid(images, 2 + completions.shape[1], info.num_levels)
    paths.append(stem + ".png")
    Image.fromarray(grid).save(paths[-1])
    return paths


def run_completion(
    workdir: str,
    *,
    checkpoint: str = "best",
    rows: int = 0,
    seconds: float = 0.0,
    num: int = 8,
    per_example: int = 4,
    seed: int = 0,
    method: str | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    out: str = "",
) -> list[str]:
    """``jaxar sample --prompt-rows K`` / ``--prompt-seconds S``: complete the first ``num``
    test examples of a run ``per_example`` times each from their first ``rows`` rows (images)
    or ``seconds`` (audio), with the run's conditioning of those examples; write them with
    :func:`save_completions` to ``out`` (default ``WORKDIR/completions_STEP``)."""
    _, model, params, info, step, test_src = train.load_run(workdir, checkpoint)
    dims = prompt_dims(info, rows=rows, seconds=seconds)
    if not 1 <= num <= len(test_src):
        raise ValueError(f"expected --num in [1, {len(test_src)}] test examples, got {num}")
    elements = [test_src[i] for i in range(num)]
    batch = {k: np.stack([e[k] for e in elements]) for k in elements[0]}
    cond = model.cond_from_batch(batch)
    completions = complete(
        model,
        params,
        jax.random.key(seed),
        batch["x"],
        dims,
        per_example,
        cond,
        method=method or None,
        temperature=temperature,
        top_p=top_p,
    )
    stem = out or os.path.join(workdir, f"completions_{step}")
    return save_completions(batch["x"], completions, dims, info, stem)
