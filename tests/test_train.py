"""The runner: training lowers test bits/dim, resume is exact, failures lose nothing, CLI."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxar import config as jaxar_config
from jaxar import train
from jaxar.checkpointing import Checkpointer
from jaxar.runner import loop


def tiny_config(**overrides):
    c = jaxar_config.default()
    c.data.name = "digits"
    c.model.features = 8
    c.model.num_blocks = 1
    c.model.output_features = 8
    c.model.first_kernel = 3
    c.batch_size = 32
    c.eval_batch_size = 100
    c.num_steps = 12
    c.log_every = 4
    c.eval_every = 6
    c.checkpoint_every = 6
    c.optim.warmup_steps = 2
    c.num_samples = 0
    for key, value in overrides.items():
        node = c
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return c


def _params(workdir, checkpoint="latest"):
    *_, params, _, step, _ = train.load_run(workdir, checkpoint)
    return params, step


@pytest.mark.slow
def test_training_lowers_test_bits_per_dim(tmp_path):
    c = tiny_config(num_steps=60, eval_every=60, checkpoint_every=60)
    c.optim.learning_rate = 3e-3
    info = train.load_data(c)[2]
    model = train.build_model(c, info)
    before = train.evaluate(
        model, model.init(jax.random.key(c.seed)), train.load_data(c)[1], batch_size=100
    )
    after = train.train_and_evaluate(c, str(tmp_path))
    assert after["test/bits_per_dim"] < before["test/bits_per_dim"] - 0.3
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert {"train/bits_per_dim", "train/steps_per_sec"} <= set(records[0])
    assert os.listdir(tmp_path / "tensorboard")
    assert (tmp_path / "curves.png").exists()


def test_resume_gives_the_same_params_as_not_stopping(tmp_path, monkeypatch):
    c = tiny_config(ema_decay=0.9)
    straight = tmp_path / "straight"
    train.train_and_evaluate(c, str(straight))

    # Kill a second run after 8 steps (its last checkpoint is at step 6), then resume it.
    real = loop.train_batches

    def dying(*args, **kwargs):
        it = real(*args, **kwargs)
        for k, batch in enumerate(it):
            if kwargs["start_step"] == 0 and k == 8:
                raise KeyboardInterrupt("killed")
            yield batch

    monkeypatch.setattr(loop, "train_batches", dying)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(c, str(resumed))
    assert Checkpointer(str(resumed)).latest_step() == 6
    train.train_and_evaluate(c, str(resumed))

    a, step_a = _params(straight)
    b, step_b = _params(resumed)
    assert step_a == step_b == 12
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7), a, b)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    c = tiny_config(num_steps=4, checkpoint_every=4, eval_every=100)
    train.train_and_evaluate(c, str(tmp_path))
    # Resume with a learning rate that blows the weights up within a few steps.
    c.num_steps, c.log_every, c.checkpoint_every = 40, 1, 1
    c.optim.learning_rate, c.optim.schedule, c.optim.grad_clip = 1e30, "constant", 1e30
    with pytest.raises(FloatingPointError, match=r"non-finite loss or gradient at step \d+"):
        train.train_and_evaluate(c, str(tmp_path))
    params, step = _params(str(tmp_path))
    assert step >= 4
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(params))


def test_half_written_checkpoint_is_ignored(tmp_path):
    c = tiny_config(num_steps=6)
    train.train_and_evaluate(c, str(tmp_path))
    # What a run killed while saving step 8 leaves behind: orbax's temporary directory.
    partial = tmp_path / "checkpoints" / "8.orbax-checkpoint-tmp-1234567890"
    partial.mkdir()
    (partial / "garbage").write_bytes(b"\x00" * 10)
    assert Checkpointer(str(tmp_path)).latest_step() == 6
    c.num_steps = 8
    train.train_and_evaluate(c, str(tmp_path))  # resumes from 6, not from the debris
    assert _params(str(tmp_path))[1] == 8


def test_best_checkpoint_is_lowest_test_bits_per_dim(tmp_path):
    c = tiny_config(num_steps=12, eval_every=4, checkpoint_every=4)
    train.train_and_evaluate(c, str(tmp_path))
    tests = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    tests = [r for r in tests if "test/bits_per_dim" in r]
    best = min(tests, key=lambda r: r["test/bits_per_dim"])["step"]
    assert Checkpointer(str(tmp_path)).best_step() == best


def test_bad_config_values(tmp_path):
    with pytest.raises(ValueError, match="batch_size=30 is not divisible by the 4 devices"):
        train.train_and_evaluate(tiny_config(batch_size=30), str(tmp_path))
    with pytest.raises(ValueError, match="unknown optim.schedule 'linear'"):
        train.train_and_evaluate(tiny_config(**{"optim.schedule": "linear"}), str(tmp_path))


def _cli(*args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "jaxar.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_end_to_end(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = os.path.join(repo, "experiments", "configs", "quickstart.py")
    workdir = str(tmp_path / "run")
    overrides = [
        "--config.num_steps=4",
        "--config.eval_every=4",
        "--config.checkpoint_every=4",
        "--config.model.num_blocks=1",
        "--config.model.features=8",
        "--config.model.output_features=8",
        "--config.num_samples=4",
    ]
    r = _cli("train", f"--config={cfg}", f"--workdir={workdir}", *overrides, cwd=repo)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("samples.png", "samples.npy", "curves.png", "metrics.jsonl", "config.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    r = _cli("eval", f"--workdir={workdir}", cwd=repo)
    assert r.returncode == 0 and "test bits/dim" in r.stdout, r.stderr[-3000:]
    r = _cli("sample", f"--workdir={workdir}", "--num=3", f"--out={tmp_path}/s", cwd=repo)
    assert r.returncode == 0, r.stderr[-3000:]
    assert np.load(f"{tmp_path}/s.npy").shape == (3, 8, 8, 1)
    r = _cli("sample", f"--workdir={workdir}", "--class=3", cwd=repo)
    assert r.returncode != 0 and "unconditional" in r.stderr
    # Bits maps, and lossless coding of the first test images with the run's model.
    r = _cli("eval", f"--workdir={workdir}", "--bits-map", cwd=repo)
    assert r.returncode == 0 and os.path.exists(os.path.join(workdir, "bits_map")), r.stderr[-3000:]
    coded = str(tmp_path / "digits.jxr")
    r = _cli("compress", f"--workdir={workdir}", "--num=8", f"--output={coded}", cwd=repo)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "decoded"
    r = _cli("decompress", coded, f"--workdir={workdir}", f"--output={out}", cwd=repo)
    assert r.returncode == 0, r.stderr[-3000:]
    test_x = np.stack([e["x"] for e in (train.load_data(tiny_config())[1][i] for i in range(8))])
    np.testing.assert_array_equal(np.load(out / "decoded.npy"), test_x)
    data = bytearray(open(coded, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(coded, "wb").write(bytes(data))
    r = _cli("decompress", coded, f"--workdir={workdir}", f"--output={out}", cwd=repo)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-3000:]
    r = _cli("train", f"--config={cfg}", f"--workdir={workdir}", "--config.model.widht=3", cwd=repo)
    assert r.returncode != 0 and "unknown config key 'model.widht'" in r.stderr
    assert "num_blocks" in r.stderr
