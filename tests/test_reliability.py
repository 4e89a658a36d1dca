"""Reliability (issue 14): verified checkpoints with fallback, the run lock, preemption, config
validation and comparison, config-file errors, bad data named."""

import gzip
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from jaxar import config as jaxar_config
from jaxar import validation
from jaxar.checkpointing import CHECKSUM_FILE, Checkpointer, CheckpointError
from jaxar.data import load
from jaxar.preemption import PREEMPTED_EXIT_CODE, PreemptionGuard
from jaxar.runlock import LOCK_FILE, RunLock, RunLockedError


# ---------------------------------------------------------------------------- checkpoints
def _state(k):
    return {"w": jnp.arange(256.0) + k, "b": {"c": jnp.full((3, 4), float(k))}}


def _largest_file(step_dir):
    files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs]
    files = [f for f in files if not f.endswith(CHECKSUM_FILE)]
    return max(files, key=os.path.getsize)


def _saved(tmp_path, steps=(1, 2, 3)):
    ckpt = Checkpointer(str(tmp_path), keep=5)
    for s in steps:
        ckpt.save(s, _state(s))
    ckpt.close()
    return Checkpointer(str(tmp_path), keep=5)


def test_checkpoints_are_sealed_and_damaged_ones_skipped_by_name(tmp_path, caplog):
    ckpt = _saved(tmp_path)
    steps_dir = tmp_path / "checkpoints"
    assert all((steps_dir / str(s) / CHECKSUM_FILE).exists() for s in (1, 2, 3))
    state, step = ckpt.restore(_state(0))
    assert step == 3
    np.testing.assert_array_equal(state["w"], _state(3)["w"])

    # One flipped bit in step 3's data, step 2 truncated, an empty step folder 9, a foreign one.
    target = _largest_file(steps_dir / "3")
    data = bytearray(open(target, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(target, "wb").write(bytes(data))
    target2 = _largest_file(steps_dir / "2")
    with open(target2, "r+b") as f:
        f.truncate(os.path.getsize(target2) // 2)
    (steps_dir / "9").mkdir()
    (steps_dir / "backup").mkdir()
    (steps_dir / "backup" / "junk").write_text("x")
    ckpt.close()
    ckpt = Checkpointer(str(tmp_path), keep=5)
    with caplog.at_level(logging.WARNING, logger="jaxar"):
        state, step = ckpt.restore(_state(0), "latest")
    assert step == 1
    np.testing.assert_array_equal(state["w"], _state(1)["w"])
    skipped = [r.getMessage() for r in caplog.records if "skipping checkpoint" in r.getMessage()]
    assert len(skipped) == 3, skipped
    assert "step 9" in skipped[0] and "empty folder" in skipped[0]
    assert "step 3" in skipped[1] and "sha256 differs" in skipped[1]
    assert "step 2" in skipped[2] and "truncated" in skipped[2]
    # An explicitly requested damaged step: one line naming it; nothing is deleted.
    for s, what in ((3, "sha256 differs"), (2, "truncated"), (9, "empty folder")):
        with pytest.raises(CheckpointError, match=f"checkpoint step {s} .*{what}") as e:
            ckpt.restore(_state(0), s)
        assert "\n" not in str(e.value)
        assert (steps_dir / str(s)).is_dir()
    # A run continuing from step 1 moves the damaged newer steps aside (kept) and saves anew.
    assert ckpt.restore(_state(0), move_skipped=True)[1] == 1
    aside = sorted(p.name.split(".")[0] for p in (tmp_path / "checkpoints.damaged").iterdir())
    assert aside == ["2", "3", "9"] and ckpt.all_steps() == [1]
    ckpt.save(2, _state(22))
    ckpt.close()
    ckpt = Checkpointer(str(tmp_path), keep=5)
    state, step = ckpt.restore(_state(0))
    assert step == 2
    np.testing.assert_array_equal(state["w"], _state(22)["w"])
    # A deleted file, and every step damaged.
    os.remove(_largest_file(steps_dir / "1"))
    with pytest.raises(CheckpointError, match=r"step 1 in .* misses its file default/"):
        ckpt.restore(_state(0), 1)
    os.remove(_largest_file(steps_dir / "2"))
    with pytest.raises(CheckpointError, match=r"no checkpoint in .* restores: step 2 .*; step 1"):
        ckpt.restore(_state(0))
    ckpt.close()


def test_unsealed_checkpoint_restores_unverified_or_is_skipped(tmp_path):
    ckpt = _saved(tmp_path, (1, 2))
    steps_dir = tmp_path / "checkpoints"
    # Killed between orbax's rename and the seal: no checksum file. Still restored.
    for s in (1, 2):
        os.remove(steps_dir / str(s) / CHECKSUM_FILE)
    state, _ = ckpt.restore(_state(0), 1)
    np.testing.assert_array_equal(state["w"], _state(1)["w"])
    # The same, with a truncated file (not read before: tensorstore caches what it read):
    # skipped because it does not restore.
    for root, _, files in os.walk(steps_dir / "2"):
        for name in files if os.path.basename(root) == "d" else ():
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(10)
    assert ckpt.restore(_state(0))[1] == 1
    with pytest.raises(CheckpointError, match="checkpoint step 2 .* does not restore"):
        ckpt.restore(_state(0), 2)
    # A target whose tree differs is the caller's error, not damage: orbax's error is raised.
    with pytest.raises(ValueError, match="tree structures do not match"):
        ckpt.restore({"other": jnp.zeros(3)}, 1)
    ckpt.close()


# ---------------------------------------------------------------------------- run lock
def test_run_lock_refuses_a_second_run_and_takes_over_from_a_dead_one(tmp_path):
    with RunLock(str(tmp_path)) as lock:
        held = json.loads((tmp_path / LOCK_FILE).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(RunLockedError, match=f"in use by another run \\(pid {os.getpid()}"):
            RunLock(str(tmp_path)).acquire()
        assert lock.held
    assert not (tmp_path / LOCK_FILE).exists()  # released on leaving, also on an exception
    with pytest.raises(ZeroDivisionError), RunLock(str(tmp_path)):
        1 / 0  # noqa: B018
    assert not (tmp_path / LOCK_FILE).exists()
    # A lock left by a process that is gone is taken over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": dead.pid, "host": socket.gethostname(), "time": time.time() - 5}
    (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
    with RunLock(str(tmp_path)):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    # One on another host cannot be checked: refused. A disabled lock (process > 0) takes none.
    (tmp_path / LOCK_FILE).write_text(json.dumps({**stale, "host": "elsewhere"}))
    with pytest.raises(RunLockedError, match="on elsewhere"):
        RunLock(str(tmp_path)).acquire()
    with RunLock(str(tmp_path), enabled=False) as lock:
        assert not lock.held


def test_run_lock_is_released_when_the_process_dies_of_an_error(tmp_path):
    code = f"from jaxar.runlock import RunLock; RunLock({str(tmp_path)!r}).acquire(); 1/0"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "ZeroDivisionError" in r.stderr
    assert not (tmp_path / LOCK_FILE).exists()


# ---------------------------------------------------------------------------- preemption
def test_first_signal_sets_the_flag_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with PreemptionGuard(process_count=1) as guard:
        assert not guard.should_stop(1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert guard.requested and guard.signal_name == "SIGTERM" and guard.should_stop(2)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert PREEMPTED_EXIT_CODE == 75
    with pytest.raises(ValueError, match="sync_every must be an integer >= 1, got 0"):
        PreemptionGuard(sync_every=0)


def test_second_signal_exits_at_once():
    code = (
        "import os, signal, time\n"
        "from jaxar.preemption import PreemptionGuard\n"
        "with PreemptionGuard(process_count=1):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.05)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "print('not reached')\n"
    )
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - t < 20
    assert r.returncode == 128 + signal.SIGTERM and "not reached" not in r.stdout
    assert r.stderr.strip() == "jaxar: second SIGTERM: exiting at once, without a checkpoint"


def test_hosts_agree_on_the_stop_step(monkeypatch):
    from jax.experimental import multihost_utils

    gathered = []

    def allgather(flag):
        gathered.append(int(flag))
        return np.array([int(flag), 1])  # the other process got the signal

    asked = []

    def platform(step):  # JAX's preemption sync point: the platform's notice, agreed at step 7
        asked.append(step)
        return step == 7

    monkeypatch.setattr(multihost_utils, "process_allgather", allgather)
    monkeypatch.setattr(multihost_utils, "reached_preemption_sync_point", platform)
    guard = PreemptionGuard(sync_every=5, process_count=2)
    assert not any(guard.should_stop(s) for s in range(1, 5))  # no exchange between syncs
    assert gathered == [] and asked == [1, 2, 3, 4]  # the platform is asked every step
    assert guard.should_stop(5) and gathered == [0]
    assert not PreemptionGuard(sync_every=5, process_count=2).should_stop(6)
    assert PreemptionGuard(sync_every=5, process_count=2).should_stop(7)

    def unavailable(step):
        raise RuntimeError("Preemption sync manager has not been initialized.")

    monkeypatch.setattr(multihost_utils, "reached_preemption_sync_point", unavailable)
    guard = PreemptionGuard(sync_every=5, process_count=2)
    assert not guard.should_stop(4) and not guard._platform_sync  # asked once, then not again


# ---------------------------------------------------------------------------- config
BAD_VALUES = [
    ("num_steps", 0, "config.num_steps must be an integer >= 1, got 0"),
    ("num_steps", -5, "config.num_steps must be an integer >= 1, got -5"),
    ("log_every", 0, "config.log_every must be an integer >= 1, got 0"),
    ("eval_every", 0, "config.eval_every must be an integer >= 1"),
    ("checkpoint_every", 0, "config.checkpoint_every must be an integer >= 1"),
    ("keep_checkpoints", 0, "config.keep_checkpoints must be an integer >= 1"),
    ("batch_size", 0, "config.batch_size must be an integer >= 1"),
    ("eval_batch_size", 0, "config.eval_batch_size must be an integer >= 1, got 0"),
    ("grad_accum_steps", 0, "config.grad_accum_steps must be an integer >= 1"),
    ("compute_dtype", "float7", "config.compute_dtype must be one of 'float32', 'bfloat16'"),
    ("optim.learning_rate", 0.0, "config.optim.learning_rate must be a finite number > 0"),
    ("optim.learning_rate", float("nan"), "config.optim.learning_rate must be a finite"),
    ("ema_decay", 1.0, r"config.ema_decay must be a number in \[0, 1\), got 1.0"),
    ("optim.schedule", "linear", "config.optim.schedule must be one of 'constant'"),
    ("num_samples", -1, "config.num_samples must be an integer >= 0, got -1"),
    ("model.features", 0, "model.features must be an integer >= 1, got 0"),
    ("model_name", "pixelcnnn", "model_name must be one of"),
    ("model.widht", 3, "model.widht is not a hyperparameter of pixelcnn"),
]


@pytest.mark.parametrize("key, value, message", BAD_VALUES)
def test_each_bad_config_value_is_one_line(key, value, message):
    c = jaxar_config.default()
    node = c
    *path, last = key.split(".")
    for p in path:
        node = node[p]
    node[last] = value
    with pytest.raises(validation.ConfigError, match=message) as e:
        validation.validate_config(c)
    assert "\n" not in str(e.value)


def test_every_shipped_config_is_valid():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(repo, "experiments", "configs")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            validation.validate_config(jaxar_config.load(os.path.join(folder, name)))
    c = jaxar_config.default()
    c.batch_size, c.grad_accum_steps = 30, 4
    with pytest.raises(validation.ConfigError, match="batch_size must be a multiple of"):
        validation.validate_config(c)


def test_compare_configs_refuses_shape_and_data_changes():
    saved = jaxar_config.default()
    saved.model.image_shape = (8, 8, 1)
    new = jaxar_config.default()
    new.model.image_shape = (8, 8, 1)
    # A config.json round trip (tuples become lists) changes nothing.
    assert validation.compare_configs(json.loads(saved.to_json_best_effort()), new) == ([], [])
    new.optim.learning_rate, new.num_steps = 3e-3, 5000
    new.model.features, new.data.name, new.ema_decay = 32, "idx:/x", 0.999
    refused, changed = validation.compare_configs(saved, new)
    assert refused == ["data.name", "ema_decay", "model.features"]
    assert changed == ["num_steps", "optim.learning_rate"]
    saved.ema_decay, new.ema_decay = 0.9, 0.99  # on in both: only a changed value
    changed = validation.compare_configs(saved, new)[1]
    assert changed == ["ema_decay", "num_steps", "optim.learning_rate"]
    # A key missing from an older saved config counts as its default.
    older = json.loads(saved.to_json_best_effort())
    del older["data"]["fft_size"]
    assert "data.fft_size" not in validation.compare_configs(older, saved, defaults=saved)[0]
    assert "data.fft_size" in validation.compare_configs(older, saved)[0]


def test_config_file_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "syntax.py").write_text("from jaxar import config\ndef get_config(:\n    pass\n")
    (tmp_path / "name.py").write_text(
        "from jaxar import config\n\n\ndef get_config():\n    c = config.default()\n"
        "    c.num_steps = undefined_name\n    return c\n"
    )
    (tmp_path / "variant.py").write_text(
        "from jaxar import config\n\n\ndef get_config():\n"
        "    return config.load('name.py', __file__)\n"
    )
    cases = [
        ("syntax.py", r"syntax.py, line 2: SyntaxError"),
        ("name.py", r"name.py, line 6: NameError: name 'undefined_name' is not defined"),
        ("variant.py", r"name.py, line 6: NameError"),  # the base file's own line
    ]
    for name, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            jaxar_config.load(str(tmp_path / name))
        assert str(e.value).startswith(f"config file {tmp_path}")
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------- bad data
def _tone(n, rate=8000):
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)


def test_non_finite_and_truncated_wavs_are_named(tmp_path):
    for name in ("a", "b", "c"):
        soundfile.write(tmp_path / f"{name}.wav", _tone(800), 8000, subtype="FLOAT")
    opts = {"length": 400, "sample_rate": 8000}
    assert len(load(f"wav:{tmp_path}", "train", **opts)) > 0
    bad = _tone(800)
    bad[100:110] = np.nan
    bad[5] = np.inf
    for split in ("train", "test"):
        for name in ("a", "b", "c"):
            soundfile.write(tmp_path / f"{name}.wav", _tone(800), 8000, subtype="FLOAT")
        victim = load(f"wav:{tmp_path}", split, **opts).files[0]
        soundfile.write(victim, bad, 8000, subtype="FLOAT")
        with pytest.raises(ValueError, match=f"{victim} holds 11 non-finite samples"):
            load(f"wav:{tmp_path}", split, **opts)
    soundfile.write(victim, _tone(800), 8000, subtype="FLOAT")
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) - 1000)
    with pytest.raises(ValueError, match=f"WAV file {victim} is truncated: its data chunk"):
        load(f"wav:{tmp_path}", split, **opts)


def _write_idx_pair(directory, images, labels, prefix="train"):
    stems = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")}[prefix]
    for stem, array in zip(stems, (images, labels)):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(
            int(d).to_bytes(4, "big") for d in array.shape
        )
        with gzip.open(directory / f"{stem}.gz", "wb") as f:
            f.write(header + array.tobytes())
    return directory / f"{stems[0]}.gz"


def test_broken_gzip_and_empty_idx_files_are_named(tmp_path):
    images = np.zeros((4, 3, 3), np.uint8)
    path = _write_idx_pair(tmp_path, images, np.arange(4, dtype=np.uint8))
    assert len(load(f"idx:{tmp_path}", "train")) == 4
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 12])  # a cut-off stream
    with pytest.raises(ValueError, match=f"{path}: not a complete gzip stream"):
        load(f"idx:{tmp_path}", "train")
    path.write_bytes(b"this is no gzip file at all")
    with pytest.raises(ValueError, match=f"{path}: not a complete gzip stream.*BadGzipFile"):
        load(f"idx:{tmp_path}", "train")
    path = _write_idx_pair(tmp_path, np.zeros((0, 3, 3), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match=f"{path}: holds no examples"):
        load(f"idx:{tmp_path}", "train")
