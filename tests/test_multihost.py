"""Two processes on localhost joined by jax.distributed.initialize (CPU collectives)."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
from test_train import tiny_config

from jaxar import train
from jaxar.data import load
from jaxar.metrics import read_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))


def _config():
    """The workers' config (multihost_worker.py): one epoch of the digits, 25 steps of 60."""
    return tiny_config(num_steps=25, batch_size=60, eval_every=25, checkpoint_every=25)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_identically_and_share_the_epoch(tmp_path, monkeypatch):
    port = _free_port()
    procs = []
    for pid in range(2):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(pid),
            "JAXAR_DISTRIBUTED": "1",
            "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        cmd = [
            sys.executable,
            os.path.join(HERE, "multihost_worker.py"),
            str(tmp_path / "run"),
            str(tmp_path / f"p{pid}.npz"),
        ]
        procs.append(
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    a, b = (np.load(tmp_path / f"p{pid}.npz") for pid in range(2))
    assert float(a["bpd"]) == float(b["bpd"])
    names = [k for k in a.files if k not in ("fed", "bpd")]
    assert names
    for k in names:
        np.testing.assert_array_equal(a[k], b[k])
    # Each process was fed half of every global batch; together, each example exactly once.
    fed = np.concatenate([a["fed"], b["fed"]])
    src = load("digits", "train")
    assert len(fed) == len(src) == 1500
    every = np.stack([src[i]["x"] for i in range(len(src))])
    assert sorted(map(bytes, fed.reshape(1500, -1))) == sorted(map(bytes, every.reshape(1500, -1)))
    # Only process 0 wrote logs: every record once (a second writer would repeat them), one
    # TensorBoard event file.
    records = read_jsonl(str(tmp_path / "run" / "metrics.jsonl"))
    train_steps = [r["step"] for r in records if "train/bits_per_dim" in r]
    assert train_steps == [4, 8, 12, 16, 20, 24, 25]
    test = [r for r in records if "test/bits_per_dim" in r]
    assert [r["step"] for r in test] == [25]
    assert test[0]["test/bits_per_dim"] == float(a["bpd"])
    events = [f for f in os.listdir(tmp_path / "run" / "tensorboard") if "tfevents" in f]
    assert len(events) == 1, events

    # The same run in one process (4 devices) fed the same global batches (each process's half
    # of every step, in process order) ends with the same weights. (With the same seed alone
    # the batches differ: each process shuffles its own shard.)
    halves = [f.reshape(25, 30, *f.shape[1:]) for f in (a["fed"], b["fed"])]
    steps = [np.concatenate([h[k] for h in halves]) for k in range(25)]

    def same_batches(*args, **kwargs):
        for x in steps:
            yield {"x": x, "label": np.zeros(len(x), np.int32)}

    runner = sys.modules[train.train_and_evaluate.__module__]
    monkeypatch.setattr(runner, "train_batches", same_batches)
    single = train.train_and_evaluate(_config(), str(tmp_path / "single"))
    params = train.load_run(str(tmp_path / "single"))[2]
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}
    assert sorted(flat) == sorted(names)
    for k in names:
        np.testing.assert_allclose(a[k], flat[k], rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(single["test/bits_per_dim"], float(a["bpd"]), rtol=1e-5)
