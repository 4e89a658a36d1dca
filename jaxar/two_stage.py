"""Two-stage generation: a VQ-VAE compresses images to code grids, an autoregressive prior
models the codes, and the VQ-VAE's decoder turns sampled codes back into images.

1. Train a VQ-VAE (``jaxar train --config experiments/configs/vqvae_*.py --workdir RUN``).
2. :func:`encode_run` (``jaxar encode --workdir RUN``) encodes the run's training and test
   images once, into ``RUN/codes/{train,test}.npz`` and ``RUN/codes/meta.json``; the meta
   records the checkpoint it used and the decoder's test ``-log p(x | z)``.
3. Train any image model on ``data.name = "codes:RUN"`` (:mod:`jaxar.data.codes`): events
   ``(h, w, 1)`` with ``num_levels = K``, class-conditional with ``data.conditional``.
4. ``jaxar sample`` on the prior decodes its samples (:func:`decode_codes`); ``jaxar eval``
   reports the prior's bits/dim over codes and :func:`image_bound`.

**The bound.** For any code grid ``z``, ``p(x) = sum_z' p(x | z') p(z') >= p(x | z) p(z)``, so
with ``z = z_q(x)`` (the encoder's codes) ``-log p(x | z) - log p(z)`` is an upper bound on the
image's ``-log p(x)``; divided by ``D ln 2`` (``D = H W C`` image dimensions) it bounds the
bits/dim, as reported by van den Oord et al. (2017). Its test-set mean is the decoder's mean
``-log p(x | z)`` (measured at encoding) plus the prior's mean ``-log p(z)`` over the same test
images, since the mean of a sum is the sum of the means.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from jaxar.data.codes import read_meta
from jaxar.data.pipeline import eval_batches
from jaxar.models.autoencoder import Autoencoder
from jaxar.runner import load_data, restore_run

__all__ = [
    "decode_codes",
    "encode_run",
    "image_bound",
    "load_decoder",
    "prior_run_dir",
    "read_meta",
]

CODES_PREFIX = "codes:"


def _load_autoencoder(workdir: str, checkpoint="best"):
    config, model, state, info, step, _ = restore_run(workdir, checkpoint)
    if not isinstance(model, Autoencoder):
        raise ValueError(
            f"{workdir} is a run of {model.name!r}; expected a run of an autoencoder (vqvae)"
        )
    return config, model, model.variables(state.eval_params, state.model_state), info, step


def _encode_split(model, variables, source, batch_size: int, binarize: str, seed: int, nll: bool):
    """Codes, labels and, with ``nll``, the summed -log p(x|z) and squared error (else 0)."""
    codes, labels, nll_sum, sq = [], [], 0.0, 0.0
    n_left = len(source)
    for batch in eval_batches(source, batch_size=batch_size, binarize=binarize, seed=seed):
        n = min(n_left, batch_size)
        n_left -= n
        x = batch["x"][:n].astype(np.int32)
        codes.append(np.asarray(model.encode(variables, x)))
        labels.append(batch["label"][:n] if "label" in batch else np.zeros(n, np.int32))
        if nll:
            b_nll, b_sq = model.nll(variables, x)
            nll_sum += float(np.sum(np.asarray(b_nll, np.float64)))
            sq += float(np.sum(np.asarray(b_sq, np.float64)))
    return np.concatenate(codes), np.concatenate(labels).astype(np.int32), nll_sum, sq


def encode_run(workdir: str, checkpoint: str = "best", batch_size: int = 500) -> dict:
    """Encode both splits of the VQ-VAE run in ``workdir`` with its ``checkpoint``.

    Writes ``workdir/codes/{train,test}.npz`` and ``meta.json``; returns the meta: codebook
    size, code and image shapes, the checkpoint step, and the test split's mean
    ``-log p(x | z)`` in nats (``test_recon_nll_nats``), its bits/dim and mean squared error.
    """
    config, model, variables, info, step = _load_autoencoder(workdir, checkpoint)
    train_src, test_src, _ = load_data(config)
    out = os.path.join(workdir, "codes")
    os.makedirs(out, exist_ok=True)
    meta = {
        "num_codes": model.num_codes,
        "code_shape": list(model.code_shape),
        "image_shape": list(model.event_shape),
        "image_num_levels": model.num_levels,
        "num_classes": int(info.num_classes),
        "source": config.data.name,
        "checkpoint": checkpoint,
        "step": int(step),
    }
    for split, src in (("train", train_src), ("test", test_src)):
        codes, labels, nll, sq = _encode_split(
            model, variables, src, batch_size, config.data.binarize, config.seed, split == "test"
        )
        np.savez(os.path.join(out, f"{split}.npz"), codes=codes.astype(np.int32), labels=labels)
        meta[f"{split}_size"] = len(codes)
        if split == "test":
            meta["test_recon_nll_nats"] = nll / len(codes)
            meta["test_recon_bits_per_dim"] = nll / len(codes) / (model.num_dims * math.log(2.0))
            meta["test_mse"] = sq / len(codes)
    tmp = os.path.join(out, "meta.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, os.path.join(out, "meta.json"))  # last: its presence means complete
    return meta


def prior_run_dir(data_name: str) -> str | None:
    """The VQ-VAE run a prior's data spec ``codes:RUN`` points at, or None for other data."""
    return data_name[len(CODES_PREFIX) :] if data_name.startswith(CODES_PREFIX) else None


def load_decoder(vqvae_dir: str):
    """``(model, variables, meta)`` of the VQ-VAE whose codes are in ``vqvae_dir/codes``.

    Restores the checkpoint the codes were made with; a ValueError if it has changed since.
    """
    meta = read_meta(vqvae_dir)
    _, model, variables, _, step = _load_autoencoder(vqvae_dir, meta["checkpoint"])
    if step != meta["step"]:
        raise ValueError(
            f"{vqvae_dir}: the codes were encoded at step {meta['step']} but its "
            f"{meta['checkpoint']!r} checkpoint is now step {step}; run `jaxar encode` again "
            "and retrain the prior"
        )
    return model, variables, meta


def decode_codes(model, variables, codes, batch_size: int = 500) -> np.ndarray:
    """Images ``(N, H, W, C)`` int32 (the decoder's mean, rounded) of codes ``(N, h, w[, 1])``."""
    codes = np.asarray(codes)
    if codes.ndim == 4 and codes.shape[-1] == 1:
        codes = codes[..., 0]
    out = [
        np.asarray(model.decode_mean(variables, codes[i : i + batch_size]))
        for i in range(0, len(codes), batch_size)
    ]
    return np.concatenate(out)


def image_bound(prior_nll_nats: float, meta: dict) -> dict:
    """The bound on the images' bits/dim from the prior's mean test ``-log p(z)`` in nats.

    Returns ``{"test/image_bound_bits_per_dim", "test/image_bound_nats",
    "test/recon_nll_nats"}`` (the last is the decoder's ``-log p(x | z)`` term).
    """
    dims = math.prod(meta["image_shape"])
    nats = float(meta["test_recon_nll_nats"]) + float(prior_nll_nats)
    return {
        "test/image_bound_bits_per_dim": nats / (dims * math.log(2.0)),
        "test/image_bound_nats": nats,
        "test/recon_nll_nats": float(meta["test_recon_nll_nats"]),
    }
