"""grain pipelines over random-access sources.

The training stream is a pure function of ``(seed, step)``: batch ``k`` is the same whether a
run got there without stopping or resumed from a checkpoint at any step before ``k``. Each epoch
is a fresh permutation (grain reseeds the shuffle with the epoch), dynamic binarization draws
fresh bits per epoch, and a source's own random ``train_transform`` (e.g. audio crops) is seeded
per (seed, epoch, index) too.

Per-process sharding (multi-host): process ``i`` of ``n`` reads examples ``i::n`` of the source
and produces ``batch_size // n`` examples of every global batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import grain
import numpy as np

from jaxar.data.sources import DataInfo

__all__ = ["BINARIZE_MODES", "binarized_info", "eval_batches", "train_batches"]

BINARIZE_MODES = ("", "dynamic", "static")


def binarized_info(info: DataInfo, binarize: str) -> DataInfo:
    """The data info after binarization (2 levels), or unchanged when ``binarize`` is ""."""
    if binarize not in BINARIZE_MODES:
        raise ValueError(f"unknown binarize mode {binarize!r}; expected one of {BINARIZE_MODES}")
    if not binarize or info.num_levels == 2:
        return info
    if info.kind != "image":
        raise ValueError(f"binarization applies to images, not {info.kind} data")
    return dataclasses.replace(info, num_levels=2)


def _bernoulli(x: np.ndarray, num_levels: int, rng: np.random.Generator) -> np.ndarray:
    """Draw every dimension ~ Bernoulli(level / (num_levels - 1))."""
    p = x.astype(np.float32) * np.float32(1.0 / (num_levels - 1))
    return (rng.random(p.shape, dtype=np.float32) < p).astype(np.uint8)


class _DynamicBinarize(grain.transforms.RandomMap):
    """A fresh draw every time (grain seeds the rng per seed, epoch and index)."""

    def __init__(self, num_levels: int):
        self.num_levels = num_levels

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        return {**element, "x": _bernoulli(element["x"], self.num_levels, rng)}


def _static_binarize(ds: grain.MapDataset, num_levels: int, seed: int) -> grain.MapDataset:
    """One fixed draw per source example, whatever the epoch or the order it is read in."""

    n = len(ds)

    def draw(index: int, element: dict) -> dict:
        # Repeated datasets pass indices past the end (epoch * n + i): key on i alone.
        rng = np.random.default_rng([seed, index % n])
        return {**element, "x": _bernoulli(element["x"], num_levels, rng)}

    return ds.map_with_index(draw)


def train_batches(
    source,
    *,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    binarize: str = "",
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 2,
) -> Iterator[dict]:
    """An endless iterator of training batches from ``start_step`` on.

    Each batch is a dict of numpy arrays with a leading axis of ``batch_size // process_count``
    (the examples of this process).
    """
    binarized_info(source.info, binarize)  # validates the mode
    if batch_size % process_count:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {process_count} processes"
        )
    local_batch = batch_size // process_count
    levels = source.info.num_levels
    ds = grain.MapDataset.source(source)
    if binarize == "static" and levels != 2:
        ds = _static_binarize(ds, levels, seed)
    ds = ds[process_index::process_count]
    if len(ds) < local_batch:
        raise ValueError(
            f"{source.info.name}: {len(ds)} training examples per process, fewer than the "
            f"per-process batch of {local_batch}"
        )
    ds = ds.shuffle(seed=seed).repeat(None)  # grain reseeds the shuffle every epoch
    if binarize == "dynamic" and levels != 2:
        ds = ds.random_map(_DynamicBinarize(levels), seed=seed + 1)
    transform = getattr(source, "train_transform", None)
    if transform is not None:
        ds = ds.random_map(transform, seed=seed + 2)
    ds = ds.batch(local_batch, drop_remainder=True)[start_step:]
    opts = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4)
    return iter(ds.to_iter_dataset(opts))


def eval_batches(source, *, batch_size: int, binarize: str = "", seed: int = 0) -> Iterator[dict]:
    """The whole split in order, in batches of ``batch_size``; the last is zero-padded.

    Every batch has a float32 ``"mask"`` (1 for real examples, 0 for padding), so sums over
    ``mask`` count every example exactly once. Binarized evaluation data uses one fixed draw.
    """
    binarized_info(source.info, binarize)  # validates the mode
    ds = grain.MapDataset.source(source)
    if binarize and source.info.num_levels != 2:
        ds = _static_binarize(ds, source.info.num_levels, seed)
    ds = ds.batch(batch_size, drop_remainder=False)
    for batch in ds:
        n = len(next(iter(batch.values())))
        pad = batch_size - n
        out = {
            k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()
        }
        out["mask"] = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
        yield out
