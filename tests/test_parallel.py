"""Data parallelism on 4 fake CPU devices, gradient accumulation, bf16, re-sharded restore."""

import jax
import numpy as np
import pytest
from test_train import _params, tiny_config

from jaxar import train
from jaxar.checkpointing import Checkpointer


def _allclose(a, b, rtol=2e-5, atol=1e-6):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=rtol, atol=atol), a, b)


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one")
    train.train_and_evaluate(tiny_config(num_steps=6), str(workdir), devices=jax.devices()[:1])
    return workdir


def test_four_devices_match_one(one_device_run, tmp_path):
    assert len(jax.devices()) == 4
    train.train_and_evaluate(tiny_config(num_steps=6), str(tmp_path))
    _allclose(_params(str(one_device_run))[0], _params(str(tmp_path))[0])


def test_checkpoint_from_four_devices_restores_and_continues_on_one(tmp_path):
    train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
    assert Checkpointer(str(tmp_path)).latest_step() == 4
    train.train_and_evaluate(tiny_config(num_steps=6), str(tmp_path), devices=jax.devices()[:1])
    params, step = _params(str(tmp_path))
    assert step == 6 and all(np.isfinite(v).all() for v in jax.tree.leaves(params))


def test_bfloat16_compute_trains_like_float32(tmp_path):
    result = {}
    for dtype in ("float32", "bfloat16"):
        c = tiny_config(num_steps=40, eval_every=40, checkpoint_every=40, compute_dtype=dtype)
        c.optim.learning_rate = 3e-3
        result[dtype] = train.train_and_evaluate(c, str(tmp_path / dtype))["test/bits_per_dim"]
        # Params stay float32 whatever the compute dtype.
        params, _ = _params(str(tmp_path / dtype))
        assert {v.dtype for v in jax.tree.leaves(params)} == {np.dtype("float32")}
    c = tiny_config()
    _, test_src, info = train.load_data(c)
    model = train.build_model(c, info)
    init = train.evaluate(model, model.init(jax.random.key(c.seed)), test_src, batch_size=100)
    assert result["bfloat16"] < init["test/bits_per_dim"] - 0.2
    assert abs(result["bfloat16"] - result["float32"]) < 0.05


def test_batch_that_does_not_divide(tmp_path):
    with pytest.raises(ValueError, match="micro-batches that each divide over the 4 devices"):
        train.train_and_evaluate(tiny_config(grad_accum_steps=4, batch_size=24), str(tmp_path))
