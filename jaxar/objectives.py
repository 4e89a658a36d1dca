"""Training objectives: what a model kind changes in the runner, chosen once per model.

The runner (:mod:`jaxar.runner`) asks ``model.objective()`` for an :class:`Objective` and calls
only its methods: the loss, the non-gradient state, the evaluation sums and their summary, the
metric that picks the best checkpoint, the curves, the progress line and the end-of-run
artefacts. Two objectives ship:

* :class:`Likelihood` (every :class:`~jaxar.models.AutoregressiveModel`): the exact negative
  log-likelihood per dimension in nats; test figures in bits per dimension and nats per
  example; ends with samples.
* :class:`OwnLoss` (every :class:`~jaxar.models.autoencoder.Autoencoder`): the model's own loss
  and non-gradient state (e.g. EMA codebook statistics) and test metrics; ends with inputs beside
  their reconstructions.

A fork with a new kind of model returns its own :class:`Objective` from ``model.objective()``;
nothing in the runner changes. This module imports no model and no runner code.
"""

from __future__ import annotations

import abc
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxar import reporting

__all__ = ["Likelihood", "Objective", "OwnLoss"]


class Objective(abc.ABC):
    """The model-kind-specific part of training and evaluation.

    Attributes: ``model``; ``best_metric``, the test metric (lower is better) that picks the
    best checkpoint; ``curves``, the (train, test) metrics plotted in ``curves.png``.
    """

    best_metric: str = "test/loss"
    curves: tuple[str, str] = ("train/loss", "test/loss")
    artefact_stem: str = "artefacts"  # WORKDIR/STEM.* holds the end-of-run artefacts

    def __init__(self, model):
        self.model = model

    def init_state(self, rng: jax.Array) -> Any:
        """The initial non-gradient state (checkpointed with the parameters); None if none."""
        return None

    @abc.abstractmethod
    def loss(self, params, state, batch: dict, rng: jax.Array):
        """``(scalar loss, (new state, dict of scalar metrics))`` on a training batch (pure)."""

    @abc.abstractmethod
    def eval_sums(self, params, state, batch: dict) -> dict:
        """Sums over the real examples of an evaluation batch (``batch["mask"]`` marks them),
        including ``"count"``. Pure and jittable."""

    @abc.abstractmethod
    def summarize(self, sums: dict) -> dict:
        """The test metrics (``"test/..."`` floats) from the sums over the whole split."""

    def train_record(self, mean_loss: float, metrics: dict) -> dict:
        """The logged training record from the mean loss since the last log and the last
        step's metrics (model-specific ones; ``loss`` and ``grad_norm`` are taken out)."""
        return {"train/loss": mean_loss, **{f"train/{k}": float(v) for k, v in metrics.items()}}

    def progress(self, record: dict) -> dict:
        """What the progress bar shows of a training record."""
        return {"loss": f"{record['train/loss']:.4f}"}

    def format(self, metrics: dict) -> str:
        """One line for a test evaluation (the training log's)."""
        return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())

    def report(self, metrics: dict, info, num_examples: int) -> str:
        """What ``jaxar eval`` prints after ``MODEL step N``."""
        return f" on {info.name}: {self.format(metrics)}"

    @abc.abstractmethod
    def write_artefacts(
        self, params, state, stem: str, *, rng, num: int, source, info, method=None
    ) -> list[str]:
        """Write the end-of-run artefacts of ``num`` examples under ``stem`` (samples, or
        reconstructions of ``source``'s first examples); returns the paths written."""


class Likelihood(Objective):
    """Exact negative log-likelihood per dimension, in nats (reported as bits/dim)."""

    best_metric = "test/bits_per_dim"
    curves = ("train/bits_per_dim", "test/bits_per_dim")
    artefact_stem = "samples"

    def loss(self, params, state, batch, rng):
        m = self.model
        lp = m.log_prob(params, batch["x"], m.cond_from_batch(batch), train=True, rng=rng)
        return -jnp.mean(lp) / m.num_dims, (state, {})

    def eval_sums(self, params, state, batch):
        m = self.model
        lp = m.log_prob(params, batch["x"], m.cond_from_batch(batch))
        mask = batch["mask"]
        return {"nll": -jnp.sum(lp * mask), "count": jnp.sum(mask)}

    def summarize(self, sums):
        nats = float(sums["nll"]) / float(sums["count"])
        return {
            "test/bits_per_dim": nats / (self.model.num_dims * math.log(2.0)),
            "test/nll_nats": nats,
        }

    def train_record(self, mean_loss, metrics):
        return {"train/bits_per_dim": mean_loss / math.log(2.0)}

    def progress(self, record):
        return {"bpd": f"{record['train/bits_per_dim']:.4f}"}

    def format(self, metrics):
        return (
            f"test bits/dim {metrics['test/bits_per_dim']:.4f}"
            f" ({metrics['test/nll_nats']:.2f} nats per example)"
        )

    def report(self, metrics, info, num_examples):
        unit = "bits/sample" if info.kind == "audio" else "bits/dim"  # per dimension, either way
        return (
            f": test {unit} {metrics['test/bits_per_dim']:.5f}, {metrics['test/nll_nats']:.3f} "
            f"nats per example over {num_examples} examples of {info.name}"
        )

    def write_artefacts(self, params, state, stem, *, rng, num, source, info, method=None):
        m = self.model
        examples = m.sampling_examples(source, num)
        cond = m.sample_cond(num, examples=examples)
        samples = m.sample(params, rng, num, cond=cond, method=method or None)
        paths = reporting.save_samples(np.asarray(samples), info, stem)
        if examples is not None:  # what the samples were conditioned on, to compare
            stem_ref = os.path.join(os.path.dirname(stem), "reference")
            paths += reporting.save_samples(examples["x"], info, stem_ref)
        return paths


class OwnLoss(Objective):
    """An autoencoder's own loss, non-gradient state and test metrics."""

    artefact_stem = "reconstructions"

    def __init__(self, model):
        super().__init__(model)
        self.best_metric = model.best_metric
        self.curves = (model.train_curve, model.test_curve)

    def init_state(self, rng):
        return self.model.init_state(rng)

    def loss(self, params, state, batch, rng):
        loss, new_state, metrics = self.model.loss(params, state, batch, rng)
        return loss, (new_state, metrics)

    def eval_sums(self, params, state, batch):
        return self.model.eval_sums(params, state, batch)

    def summarize(self, sums):
        return self.model.summarize(sums)

    def write_artefacts(self, params, state, stem, *, rng, num, source, info, method=None):
        """The first ``num`` images of ``source`` (left) beside their reconstructions (right):
        ``STEM.png``, and both as ``STEM.npy`` ``(2, num, H, W, C)``."""
        m = self.model
        num = min(int(num), len(source))
        x = np.stack([source[i]["x"] for i in range(num)]).astype(np.int32)
        recon = np.asarray(m.reconstruct(m.variables(params, state), x))
        return reporting.save_pairs(x, recon, m.num_levels, stem)
