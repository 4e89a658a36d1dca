"""``codes:RUN_DIR``: the code grids a trained VQ-VAE run wrote with ``jaxar encode``.

:func:`jaxar.two_stage.encode_run` writes ``RUN_DIR/codes/train.npz`` and ``test.npz`` (arrays
``codes (N, h, w)`` and ``labels (N,)``) and ``RUN_DIR/codes/meta.json`` (the codebook size K,
the image data they came from, and the VQ-VAE's reconstruction figures on the test split). This
loader serves them as images of shape ``(h, w, 1)`` with ``num_levels = K``, so any registered
image model trains on them as a prior.
"""

from __future__ import annotations

import json
import os

import numpy as np

from jaxar.data.sources import ArraySource, DataInfo, register_loader

__all__ = ["codes_source", "read_meta"]


def read_meta(run_dir: str) -> dict:
    """The ``meta.json`` of a run's codes; FileNotFoundError naming the command if absent."""
    path = os.path.join(run_dir, "codes", "meta.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"codes:{run_dir}: expected code grids in {os.path.join(run_dir, 'codes')} "
            f"(meta.json, train.npz, test.npz), found none; write them with "
            f"`jaxar encode --workdir {run_dir}` after training a VQ-VAE there"
        )
    with open(path) as f:
        return json.load(f)


def codes_source(run_dir: str, split: str) -> ArraySource:
    """The ``split`` code grids of the VQ-VAE run in ``run_dir`` as a source of (h, w, 1) images."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected one of ['train', 'test']")
    meta = read_meta(run_dir)
    path = os.path.join(run_dir, "codes", f"{split}.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"codes:{run_dir}: expected {path}; run `jaxar encode` again")
    with np.load(path) as data:
        codes, labels = data["codes"], data["labels"]
    k = int(meta["num_codes"])
    if codes.ndim != 3 or (codes.size and (codes.min() < 0 or codes.max() >= k)):
        raise ValueError(f"{path}: expected codes (N, h, w) in [0, {k}), got shape {codes.shape}")
    num_classes = int(meta.get("num_classes", 0))
    info = DataInfo(f"codes:{run_dir}", (*codes.shape[1:], 1), k, num_classes)
    return ArraySource(codes[..., None].astype(np.int32), labels if num_classes else None, info)


register_loader("codes", lambda arg, split, **_: codes_source(arg, split))
