"""The contract of models the runner trains by their own objective (autoencoders: the VQ-VAE).

An autoregressive model (:mod:`jaxar.models.base`) is trained on its exact negative
log-likelihood. An :class:`Autoencoder` instead brings its loss, may carry non-gradient state
(EMA codebook statistics, code usage) that the runner keeps in the train state and checkpoints,
and reports its own test metrics. The runner calls only the methods below; everything else
(data, mesh, optimizer, checkpoints, resume) is shared with the autoregressive path.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import jax

__all__ = ["Autoencoder"]


class Autoencoder(abc.ABC):
    """A model of integer events ``event_shape`` trained by :meth:`loss`.

    Attributes: ``name``, ``event_shape``, ``num_levels``, ``num_classes`` (0), ``hparams``,
    as for autoregressive models, and ``best_metric``: the test metric (lower is better) that
    picks the best checkpoint, ``train_curve`` and ``test_curve``: the metrics plotted.
    """

    num_classes = 0
    best_metric = "test/loss"
    train_curve = "train/loss"
    test_curve = "test/loss"

    def __init__(self, *, name: str, event_shape, num_levels: int, hparams: dict | None = None):
        self.name = name
        self.event_shape = tuple(int(d) for d in event_shape)
        self.num_levels = int(num_levels)
        self.hparams = dict(hparams or {})

    @property
    def num_dims(self) -> int:
        return math.prod(self.event_shape)

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in sorted(self.hparams.items()))
        return f"{type(self).__name__}({self.name!r}, {hp})"

    def cond_from_batch(self, batch: dict):
        return None

    @abc.abstractmethod
    def init(self, rng: jax.Array) -> Any:
        """The parameters (what the optimizer trains)."""

    @abc.abstractmethod
    def init_state(self, rng: jax.Array) -> Any:
        """The initial non-gradient state (a pytree of arrays), from the same ``rng`` as init."""

    @abc.abstractmethod
    def loss(self, params, state, batch: dict, rng: jax.Array):
        """``(scalar loss, new state, dict of scalar metrics)`` on a training batch (pure)."""

    @abc.abstractmethod
    def eval_sums(self, params, state, batch: dict) -> dict:
        """Sums over the real examples of an evaluation batch (``batch["mask"]`` marks them);
        must include ``"count"``, the number of real examples. Pure, jittable."""

    @abc.abstractmethod
    def summarize(self, sums: dict) -> dict:
        """The test metrics (``"test/..."`` floats) from the sums over the whole split."""
