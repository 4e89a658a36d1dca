"""The contract of models the runner trains by their own objective (autoencoders: the VQ-VAE).

An autoregressive model (:mod:`jaxar.models.base`) is trained on its exact negative
log-likelihood. An :class:`Autoencoder` instead brings its loss, may carry non-gradient state
(EMA codebook statistics, code usage) that the runner keeps in the train state and checkpoints,
and reports its own test metrics; :meth:`Autoencoder.objective` hands them to the runner as a
:class:`jaxar.objectives.OwnLoss`. The runner and :mod:`jaxar.two_stage` call only the methods
below; everything else (data, mesh, optimizer, checkpoints, resume) is shared with the
autoregressive path. Two-stage generation needs a *discrete* autoencoder: :meth:`encode` maps
images to integer code grids of ``code_shape`` with ``num_codes`` values.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import jax

from jaxar import objectives

__all__ = ["Autoencoder"]


class Autoencoder(abc.ABC):
    """A model of integer events ``event_shape`` trained by :meth:`loss`.

    Attributes: ``name``, ``event_shape``, ``num_levels``, ``num_classes`` (0), ``hparams``,
    as for autoregressive models; ``best_metric``: the test metric (lower is better) that
    picks the best checkpoint, ``train_curve`` and ``test_curve``: the metrics plotted;
    ``num_codes`` and ``code_shape``: the values and the grid shape of the codes.
    ``variables`` below means what :meth:`variables` builds from the parameters and the state.
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

    num_codes: int
    code_shape: tuple[int, ...]

    def cond_from_batch(self, batch: dict):
        return None

    def dummy_cond(self, batch: int):
        """No conditioning (the autoregressive contract's initialisation input)."""
        return None

    def objective(self) -> objectives.Objective:
        """How the runner trains and evaluates this model: by its own loss."""
        return objectives.OwnLoss(self)

    init_needs_data = False

    def init_from_data(self, rng: jax.Array, x, cond=None) -> Any:
        """The parameters, given a data batch (unused here: no data-dependent init)."""
        return self.init(rng)

    def reconstruct(self, variables, x):
        """The decoder's images for the codes of images ``x``."""
        return self.decode_mean(variables, self.encode(variables, x))

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

    @abc.abstractmethod
    def variables(self, params, state) -> Any:
        """Everything :meth:`encode`, :meth:`decode_mean` and :meth:`nll` read, from the
        parameters and the non-gradient state."""

    @abc.abstractmethod
    def encode(self, variables, x):
        """Integer code grids ``(B, *code_shape)`` of integer images ``x``."""

    @abc.abstractmethod
    def decode_mean(self, variables, codes):
        """Integer images ``(B, *event_shape)`` (the decoder's mean, rounded) of code grids."""

    @abc.abstractmethod
    def nll(self, variables, x):
        """``(-log p(x | codes(x)) in nats, mean squared error)``, each ``(B,)``."""
