"""The objectives' own contract: the metrics they plot and rank by are metrics they report,
abstract methods are enforced, the likelihood trains in training mode, logs bits and samples
with the method it is asked for."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxar import models, objectives


def _ones(tree):
    return jax.tree.map(lambda s: np.ones(s.shape, s.dtype), tree)


class _Fork(objectives.Objective):
    """A fork's objective that keeps every default the base class has."""

    def loss(self, params, state, batch, rng):
        return jnp.mean(batch["x"].astype(jnp.float32)), (state, {})

    def eval_sums(self, params, state, batch):
        return {"loss": jnp.sum(batch["x"].astype(jnp.float32)), "count": jnp.sum(batch["mask"])}

    def summarize(self, sums):
        return {"test/loss": float(sums["loss"]) / float(sums["count"])}

    def write_artefacts(self, params, state, stem, *, rng, num, source, info, method=None):
        return []


def _check_names(obj, params, state, batch, rng):
    loss_shape, (_, metrics) = jax.eval_shape(obj.loss, params, state, batch, rng)
    assert loss_shape.shape == ()
    record = obj.train_record(1.0, _ones(metrics))
    summary = obj.summarize(_ones(jax.eval_shape(obj.eval_sums, params, state, batch)))
    assert obj.curves[0] in record, (obj.curves, sorted(record))
    assert obj.curves[1] in summary, (obj.curves, sorted(summary))
    assert obj.best_metric in summary, (obj.best_metric, sorted(summary))


@pytest.mark.parametrize("name", models.names())
def test_every_objective_plots_and_ranks_by_metrics_it_reports(name):
    # curves.png reads the curves' names from the logs and the checkpointer ranks by
    # best_metric: a name no record carries leaves a curve empty or no best checkpoint.
    # Shapes only (jax.eval_shape): nothing is compiled.
    model = models.create_tiny(name)
    key = jax.random.key(0)
    x = jnp.zeros((2, *model.event_shape), jnp.int32)
    init = (lambda k: model.init(k, x)) if model.init_needs_data else model.init
    params = jax.eval_shape(init, key)
    obj = model.objective()
    state = jax.eval_shape(obj.init_state, key)
    _check_names(obj, params, state, {"x": x, "mask": jnp.ones((2,), jnp.float32)}, key)


def test_a_fork_objective_with_the_base_defaults_is_consistent():
    obj = _Fork(model=None)
    x = jnp.zeros((2, 3), jnp.int32)
    key = jax.random.key(0)
    _check_names(obj, {}, None, {"x": x, "mask": jnp.ones((2,), jnp.float32)}, key)
    assert obj.init_state(key) is None
    assert isinstance(obj.artefact_stem, str) and obj.artefact_stem  # WORKDIR/STEM.*


@pytest.mark.parametrize("missing", ["loss", "eval_sums", "summarize", "write_artefacts"])
def test_an_objective_without_one_of_its_abstract_methods_cannot_be_made(missing):
    cls = type("Partial", (_Fork,), {missing: objectives.Objective.__dict__[missing]})
    with pytest.raises(TypeError, match=missing):
        cls(model=None)


class _DropoutModel:
    """A stand-in whose log-likelihood differs in training mode (an rng-drawn offset, as
    dropout would move it)."""

    num_dims = 2

    def cond_from_batch(self, batch):
        return None

    def log_prob(self, params, x, cond=None, *, train=False, rng=None):
        lp = -jnp.sum(jnp.square(params["w"] - x.astype(jnp.float32)), axis=-1)
        if train:
            lp = lp - jax.random.uniform(rng, lp.shape)
        return lp


def test_the_likelihood_loss_runs_the_model_in_training_mode_with_the_step_key():
    model = _DropoutModel()
    obj = objectives.Likelihood(model)
    params = {"w": jnp.array([0.5, -0.5], jnp.float32)}
    x = jnp.array([[1, 2], [3, 0]], jnp.int32)
    rng = jax.random.key(3)
    loss, (state, metrics) = obj.loss(params, None, {"x": x}, rng)
    want = -jnp.mean(model.log_prob(params, x, train=True, rng=rng)) / 2
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert abs(float(loss) + float(jnp.mean(model.log_prob(params, x))) / 2) > 1e-3
    assert state is None and metrics == {}


def test_the_likelihood_logs_training_loss_in_bits_per_dimension():
    obj = objectives.Likelihood(_DropoutModel())
    record = obj.train_record(2.0 * np.log(2.0), {})  # a mean loss of 2 bits, in nats
    assert record == {"train/bits_per_dim": pytest.approx(2.0, rel=1e-12)}


class _Sampler:
    """A stand-in that records how it is asked to sample and has conditioning examples."""

    def __init__(self):
        self.calls = []

    def sampling_examples(self, source, num):
        return {"x": np.full((num, 4, 4, 1), 2, np.int32)}

    def sample_cond(self, num, class_label=None, examples=None):
        return examples["x"]

    def sample(self, params, rng, num, cond=None, method=None):
        self.calls.append((num, method, cond.shape))
        return np.ones((num, 4, 4, 1), np.int32)


@pytest.mark.parametrize("method", ["naive", None])
def test_likelihood_artefacts_use_the_asked_method_and_list_every_file(tmp_path, method):
    from jaxar.data import DataInfo

    model = _Sampler()
    info = DataInfo("toy", (4, 4, 1), 4)
    stem = str(tmp_path / "samples")
    paths = objectives.Likelihood(model).write_artefacts(
        {}, None, stem, rng=jax.random.key(0), num=3, source=None, info=info, method=method
    )
    assert model.calls == [(3, method, (3, 4, 4, 1))]
    ref = str(tmp_path / "reference")
    assert paths == [stem + ".npy", stem + ".png", ref + ".npy", ref + ".png"]
    assert all(os.path.isfile(p) for p in paths)
    np.testing.assert_array_equal(np.load(ref + ".npy"), model.sampling_examples(None, 3)["x"])
