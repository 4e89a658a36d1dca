"""Two processes on localhost joined by jax.distributed.initialize (CPU collectives)."""

import os
import socket
import subprocess
import sys

import numpy as np

from jaxar.data import load

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_identically_and_share_the_epoch(tmp_path):
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
    # Only process 0 wrote logs.
    assert (tmp_path / "run" / "metrics.jsonl").exists()
