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

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile
from test_train import tiny_config

from jaxar import config as jaxar_config
from jaxar import models, train, validation
from jaxar.checkpointing import CHECKSUM_FILE, Checkpointer, CheckpointError
from jaxar.data import load
from jaxar.metrics import truncate_jsonl
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


def test_a_damaged_step_saved_again_is_moved_aside_first(tmp_path):
    """Restored past a damaged step without ``move_skipped`` (a caller of the class, not the
    runner), then saving that step again: the damaged one is kept aside and the new one saved."""
    ckpt = _saved(tmp_path, (1, 2))
    target = _largest_file(tmp_path / "checkpoints" / "2")
    with open(target, "r+b") as f:
        f.truncate(os.path.getsize(target) // 2)
    assert ckpt.restore(_state(0))[1] == 1
    assert ckpt.all_steps() == [1, 2]  # not moved by the restore
    ckpt.save(2, _state(22))
    ckpt.close()
    aside = [p.name.split(".")[0] for p in (tmp_path / "checkpoints.damaged").iterdir()]
    assert aside == ["2"]
    ckpt = Checkpointer(str(tmp_path), keep=5)
    state, step = ckpt.restore(_state(0))
    assert step == 2
    np.testing.assert_array_equal(state["w"], _state(22)["w"])
    ckpt.close()


@pytest.mark.parametrize("process", [0, 1])
def test_moving_a_damaged_step_aside_is_a_barrier_for_every_process(tmp_path, monkeypatch, process):
    """In a job of 2 processes, process 0 alone moves the damaged step and every process waits
    at one named barrier before reading the steps again (else process 1 could still see it)."""
    import types

    from jax.experimental import multihost_utils

    from jaxar import checkpointing

    ckpt = _saved(tmp_path, (1, 2))
    waits = []
    monkeypatch.setattr(multihost_utils, "sync_global_devices", waits.append)
    fake_jax = types.SimpleNamespace(process_count=lambda: 2, process_index=lambda: process)
    with monkeypatch.context() as m:
        m.setattr(checkpointing, "jax", fake_jax)
        ckpt._move_aside(2)
    assert waits == ["jaxar_move_aside_2"]
    moved = (tmp_path / "checkpoints.damaged").exists()
    assert moved == (process == 0) and (tmp_path / "checkpoints" / "2").exists() == (process == 1)
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
    # skipped, found by reading its values before orbax is asked to restore it (a restore that
    # fails halfway leaves reads in flight on orbax's closed event loop).
    for root, _, files in os.walk(steps_dir / "2"):
        for name in files if os.path.basename(root) == "d" else ():
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(10)
    orbax_restores = []
    restore = ckpt._latest.restore
    ckpt._latest.restore = lambda step, **kw: orbax_restores.append(step) or restore(step, **kw)
    assert ckpt.restore(_state(0))[1] == 1
    assert orbax_restores == [1]
    unreadable = "checkpoint step 2 .* has an unreadable value in default/ .*OUT_OF_RANGE"
    with pytest.raises(CheckpointError, match=unreadable):
        ckpt.restore(_state(0), 2)
    assert orbax_restores == [1]
    ckpt._latest.restore = restore
    # A target whose tree differs is the caller's error, not damage: orbax's error is raised
    # (not a CheckpointError, which subclasses ValueError and would quote orbax's line).
    for which in (1, "latest"):
        with pytest.raises(ValueError, match="tree structures do not match") as raised:
            ckpt.restore({"other": jnp.zeros(3)}, which)
        assert type(raised.value) is not CheckpointError
    ckpt.close()


def test_best_keeps_one_checkpoint_the_lowest(tmp_path):
    ckpt = Checkpointer(str(tmp_path), keep=2)
    for step, bpd in ((1, 2.0), (2, 1.0), (3, 3.0), (4, 1.5)):
        ckpt.save(step, _state(step), {"test/bits_per_dim": bpd})
    ckpt.wait()
    assert ckpt.best_step() == 2
    assert sorted(n for n in os.listdir(tmp_path / "best") if n.isdigit()) == ["2"]
    assert ckpt.all_steps() == [3, 4]
    state, step = ckpt.restore(_state(0), "best")
    assert step == 2
    np.testing.assert_array_equal(state["w"], _state(2)["w"])
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
    ("compute_dtype", "float7", "unknown compute_dtype 'float7'; expected one of 'float32', 'bf"),
    ("optim.learning_rate", 0.0, "config.optim.learning_rate must be a finite number > 0"),
    ("optim.learning_rate", float("nan"), "config.optim.learning_rate must be a finite"),
    ("ema_decay", 1.0, r"config.ema_decay must be a number in \[0, 1\), got 1.0"),
    ("optim.schedule", "linear", "unknown optim.schedule 'linear'; expected one of 'constant'"),
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


def test_every_documented_choice_validates():
    c = jaxar_config.default()
    for key, choices in [
        ("data.binarize", ("", "dynamic", "static")),
        ("data.features", ("", "log_mel")),
        ("optim.schedule", ("constant", "cosine", "exponential")),
        ("compute_dtype", ("float32", "bfloat16")),
    ]:
        *path, last = key.split(".")
        node = c[path[0]] if path else c
        for choice in choices:
            node[last] = choice
            validation.validate_config(c)


def test_every_shipped_config_is_valid():
    validation.validate_config(jaxar_config.default())  # the defaults every config overrides
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(repo, "experiments", "configs")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            validation.validate_config(jaxar_config.load(os.path.join(folder, name)))
    c = jaxar_config.default()
    c.batch_size, c.grad_accum_steps = 30, 4
    with pytest.raises(validation.ConfigError, match="batch_size must be a multiple of"):
        validation.validate_config(c)


def test_each_hyperparameter_validation_lets_be_zero_builds_at_zero():
    """``MODEL_INT_ZERO_OK`` (integers that may be 0) names only hyperparameters that some
    registered model takes, every model taking one validates and builds with it at 0, and
    every integer hyperparameter whose default is 0 is in it (a config may write out a
    default)."""
    import inspect

    import ml_collections

    from jaxar.models import registry

    for name in models.names():
        for key, p in inspect.signature(registry._get(name)).parameters.items():
            if type(p.default) is int and p.default == 0:
                assert key in validation.MODEL_INT_ZERO_OK, f"{name}'s default {key}=0 refused"
    for key in sorted(validation.MODEL_INT_ZERO_OK):
        takers = [n for n in models.names() if key in models.hparam_names(n)]
        assert takers, f"no registered model takes {key}"
        for name in takers:
            spec = models.tiny_spec(name)
            hparams = {**spec.hparams_for(next(iter(spec.shapes.values()))), key: 0}
            c = jaxar_config.default()
            c.model_name, c.model = name, ml_collections.ConfigDict(hparams)
            validation.validate_config(c)
            model = models.create(name, **hparams)
            jax.eval_shape(model.init, jax.random.key(0))  # builds: shapes only, no compile


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


# ---------------------------------------------------------------------------- the CLI, end to end
TESTS = os.path.dirname(os.path.abspath(__file__))
N, EVERY = 60, 20  # steps of the tiny CLI runs, and their checkpoint interval
CLI_CONFIG = dict(num_steps=N, log_every=1, eval_every=N, checkpoint_every=EVERY)


def _cli(*args, wait=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "jaxar.cli", *args]
    kw = dict(cwd=os.path.dirname(TESTS), env=env, text=True)
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    return subprocess.run(cmd, capture_output=True, timeout=300, **kw)


def _error_line(r):
    """The one line a user error prints (stderr's last line), checked to be alone."""
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def cli_config(tmp_path_factory):
    """A config file for the CLI: test_train's tiny_config, N steps, a record every step."""
    path = tmp_path_factory.mktemp("cfg") / "tiny.py"
    path.write_text(
        f"import sys\nsys.path.insert(0, {TESTS!r})\nfrom test_train import tiny_config\n\n\n"
        f"def get_config():\n    return tiny_config(**{CLI_CONFIG!r})\n"
    )
    return str(path)


def _train_steps(workdir):
    records = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    return [r["step"] for r in records if "train/grad_norm" in r]


def _last_step(workdir):
    try:
        steps = _train_steps(workdir)
    except (OSError, ValueError):
        return 0
    return steps[-1] if steps else 0


def _tensorboard_steps(workdir, tag="train/grad_norm"):
    """The steps of ``tag`` as TensorBoard shows them: the event files in name (time) order, and
    a SessionLog START at step s drops every event read so far at step s or later."""
    from tensorboardX.proto import event_pb2

    steps = []
    for name in sorted(os.listdir(os.path.join(workdir, "tensorboard"))):
        data = open(os.path.join(workdir, "tensorboard", name), "rb").read()
        at = 0
        while at < len(data):
            (length,) = np.frombuffer(data[at : at + 8], "<u8")
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + int(length)])
            at += 16 + int(length)
            if event.session_log.status == event_pb2.SessionLog.START:
                steps = [s for s in steps if s < event.step]
            steps += [event.step for v in event.summary.value if v.tag == tag]
    return steps


def test_a_resumed_run_hides_the_killed_attempts_tensorboard_records(tmp_path):
    from jaxar.metrics import MetricWriter

    first = MetricWriter(str(tmp_path))
    for step in range(1, 6):
        first.write(step, {"train/grad_norm": step})
    first.close()
    resumed = MetricWriter(str(tmp_path), purge_step=3)  # resumed from a checkpoint of step 2
    for step in (3, 4):
        resumed.write(step, {"train/grad_norm": step})
    resumed.close()
    assert _tensorboard_steps(str(tmp_path)) == [1, 2, 3, 4]


def _weights(workdir, checkpoint="latest"):
    *_, state, _, step, _ = train.restore_run(workdir, checkpoint)
    return state, step


def test_sigterm_lock_and_damaged_checkpoint_end_to_end(tmp_path, cli_config):
    straight, run = str(tmp_path / "straight"), str(tmp_path / "run")
    train.train_and_evaluate(tiny_config(**CLI_CONFIG), straight)  # the uninterrupted run

    # A run, frozen (SIGSTOP: alive, holding the lock) a few steps in.
    p = _cli("train", f"--config={cli_config}", f"--workdir={run}", wait=False)
    t = time.perf_counter()
    while _last_step(run) < 3:
        assert p.poll() is None and time.perf_counter() - t < 120, p.communicate()[1][-3000:]
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGSTOP)
    try:
        logged = _train_steps(run)
        # A second run on the busy workdir is refused at once, naming the holder.
        t = time.perf_counter()
        q = _cli("train", f"--config={cli_config}", f"--workdir={run}")
        assert time.perf_counter() - t < 60
        line = _error_line(q)
        assert f"is in use by another run (pid {p.pid} on {socket.gethostname()}" in line, line
        assert _train_steps(run) == logged  # it touched nothing
    finally:
        os.kill(p.pid, signal.SIGCONT)
    # SIGTERM: the step reached is saved, one line, exit 75, within seconds.
    t = time.perf_counter()
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert time.perf_counter() - t < 30
    assert p.returncode == PREEMPTED_EXIT_CODE, err[-3000:]
    line = err.strip().splitlines()[-1]
    stopped = int(line.split("stopped at step ")[1].split()[0])
    assert line.startswith("jaxar train: SIGTERM: stopped at step") and 3 <= stopped < N, line
    assert Checkpointer(run).latest_step() == stopped and "Traceback" not in err

    # The restart ends with exactly the uninterrupted run's weights; no step is logged twice.
    r = _cli("train", f"--config={cli_config}", f"--workdir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _weights(straight)[0], _weights(run)[0]
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert _train_steps(run) == list(range(1, N + 1))

    # One flipped byte in the newest checkpoint: eval names it in one line; train resumes from
    # the previous intact one (warning), keeps the old config beside a changed one, finishes.
    target = _largest_file(os.path.join(run, "checkpoints", str(N)))
    data = bytearray(open(target, "rb").read())
    data[len(data) // 3] ^= 0xFF
    open(target, "wb").write(bytes(data))
    line = _error_line(_cli("eval", f"--workdir={run}", f"--checkpoint={N}"))
    assert f"checkpoint step {N} in " in line and "sha256 differs" in line, line
    r = _cli("train", f"--config={cli_config}", f"--workdir={run}", "--config.log_every=2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"skipping checkpoint step {N}" in r.stderr and "sha256 differs" in r.stderr
    kept = os.path.join(run, f"config.{N - EVERY}.json")
    assert "log_every (1 -> 2)" in r.stderr and json.load(open(kept))["log_every"] == 1
    assert json.load(open(os.path.join(run, "config.json")))["log_every"] == 2
    jax.tree.map(np.testing.assert_array_equal, a, _weights(run)[0])
    steps = _train_steps(run)
    assert steps == list(range(1, N - EVERY + 1)) + list(range(N - EVERY + 2, N + 1, 2))
    assert os.listdir(os.path.join(run, "checkpoints.damaged"))[0].startswith(f"{N}.")

    # A change of shapes on resume is refused, naming the key; the run is untouched.
    before = open(os.path.join(run, "config.json")).read()
    with pytest.raises(validation.ConfigError, match=r"model.features \(8 -> 16\)") as e:
        train.train_and_evaluate(tiny_config(**CLI_CONFIG, **{"model.features": 16}), run)
    assert "\n" not in str(e.value)
    assert open(os.path.join(run, "config.json")).read() == before


CRASH_CONFIG = dict(num_steps=100, log_every=1, eval_every=20, checkpoint_every=10)


def test_kills_inside_saves_and_at_a_random_step_resume_bit_identically(tmp_path):
    """SIGKILL while orbax writes a latest and a best checkpoint, before a complete step is
    sealed, and at a random moment; SIGTERM as a save begins. Every restart continues; the last
    one ends with exactly the uninterrupted run's weights, each step logged once."""
    config = tmp_path / "crash.py"
    config.write_text(
        f"import sys\nsys.path.insert(0, {TESTS!r})\nfrom test_train import tiny_config\n\n\n"
        f"def get_config():\n    return tiny_config(**{CRASH_CONFIG!r})\n"
    )
    straight, run = str(tmp_path / "straight"), str(tmp_path / "run")
    train.train_and_evaluate(tiny_config(**CRASH_CONFIG), straight)
    args = ["train", f"--config={config}", f"--workdir={run}"]

    def crash(where, step):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXAR_CRASH": f"{where}@{step}"}
        worker = [sys.executable, os.path.join(TESTS, "crash_worker.py"), *args]
        return subprocess.run(worker, capture_output=True, text=True, timeout=300, env=env)

    for where, step in (("orbax", 10), ("seal", 20), ("best", 40)):
        r = crash(where, step)
        assert r.returncode == -signal.SIGKILL, (where, r.returncode, r.stderr[-3000:])
        assert _last_step(run) >= step  # it got there before dying
    r = crash("sigterm", 50)
    assert r.returncode == PREEMPTED_EXIT_CODE, r.stderr[-3000:]
    assert "SIGTERM: stopped at step 50" in r.stderr.strip().splitlines()[-1]
    # An external SIGKILL at a random step (the process is polled: it may be a step later).
    at = int(np.random.default_rng(14).integers(55, 80))
    p = _cli(*args, wait=False)
    t = time.perf_counter()
    while _last_step(run) < at:
        assert p.poll() is None and time.perf_counter() - t < 120, p.communicate()[1][-3000:]
        time.sleep(0.01)
    p.kill()
    p.communicate()
    assert p.returncode == -signal.SIGKILL and _last_step(run) < CRASH_CONFIG["num_steps"]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    jax.tree.map(np.testing.assert_array_equal, _weights(straight)[0], _weights(run)[0])
    assert _train_steps(run) == list(range(1, CRASH_CONFIG["num_steps"] + 1))
    assert _tensorboard_steps(run) == _train_steps(run)


def test_bad_input_is_one_line_and_creates_nothing(tmp_path, cli_config):
    fresh = str(tmp_path / "fresh")
    # (each bad value's message: test_each_bad_config_value_is_one_line)
    line = _error_line(
        _cli("train", f"--config={cli_config}", f"--workdir={fresh}", "--config.num_steps=0")
    )
    assert "config.num_steps must be an integer >= 1, got 0" in line, line
    assert not os.path.exists(fresh)
    (tmp_path / "bad.py").write_text("def get_config(:\n")
    line = _error_line(_cli("train", f"--config={tmp_path / 'bad.py'}", f"--workdir={fresh}"))
    assert f"config file {tmp_path / 'bad.py'}, line 1: SyntaxError" in line, line
    (tmp_path / "afile").write_text("")
    line = _error_line(_cli("train", f"--config={cli_config}", f"--workdir={tmp_path / 'afile'}"))
    assert "afile" in line and "not a directory" in line, line


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs sysfs")
def test_a_workdir_that_cannot_be_written_is_one_error_even_for_root():
    """sysfs refuses new files and folders to every user, root included (whom os.access
    would have let through)."""
    with pytest.raises(PermissionError, match=r"^workdir /sys/kernel is not writable: \w"):
        train.train_and_evaluate(tiny_config(), "/sys/kernel")
    with pytest.raises(PermissionError, match=r"^workdir /sys/kernel/jaxar_run cannot be created"):
        train.train_and_evaluate(tiny_config(), "/sys/kernel/jaxar_run")


def test_truncate_jsonl_drops_records_past_the_restored_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = "".join(json.dumps({"step": s, "v": s}) + "\n" for s in (1, 2, 3, 4))
    path.write_text(records + '{"step": 5, "v')  # killed while writing step 5
    assert truncate_jsonl(str(path), 2) == 3
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2]
    assert truncate_jsonl(str(path), 2) == 0
    assert truncate_jsonl(str(tmp_path / "none.jsonl"), 0) == 0


# ---------------------------------------------------------------------------- the library
def test_log_prob_refuses_an_empty_batch_and_names_non_finite_parameters():
    model = models.create_tiny("pixelcnn", role="grey")
    params = model.init(jax.random.key(0))
    x = jnp.zeros((2, *model.event_shape), jnp.int32)
    with pytest.raises(ValueError, match="expected a batch of at least 1 example, got 0"):
        model.log_prob(params, x[:0])
    leaves, tree = jax.tree.flatten(params)
    bad = jax.tree.unflatten(tree, [leaves[0].at[(0,) * leaves[0].ndim].set(jnp.nan), *leaves[1:]])
    with pytest.raises(ValueError, match="holds NaN or inf"):
        model.log_prob(bad, x)
    with pytest.raises(ValueError, match="holds NaN or inf"):
        model.sample(bad, jax.random.key(0), 2)
    for num in (2.5, 0, True):
        with pytest.raises(ValueError, match="num must be a positive whole number"):
            model.sample(params, jax.random.key(0), num)


def test_verify_step_reports_sealed_and_each_kind_of_damage(tmp_path):
    """``verify_step``'s ``(sealed, problem)`` on folders built by hand: the restore trusts a
    sealed step that verifies (its restore failure is the target's fault and raises), so
    ``sealed`` must be exact as well as the problem."""
    from jaxar.checkpointing import _first_line, file_checksums, seal_step, verify_step

    step = tmp_path / "7"
    assert verify_step(str(step)) == (False, "is not a folder")
    (step / "sub").mkdir(parents=True)
    assert verify_step(str(step)) == (False, "is an empty folder")
    (step / "sub" / "a").write_bytes(b"12345")
    (step / "b").write_bytes(b"xyz")
    assert verify_step(str(step)) == (
        False,
        "is incomplete (no orbax _CHECKPOINT_METADATA and no checksum)",
    )
    (step / "_CHECKPOINT_METADATA").write_text("{}")
    assert verify_step(str(step)) == (False, None)  # unsealed: restored unverified

    seal_step(str(step))
    sums = json.loads((step / CHECKSUM_FILE).read_text())
    assert sums["algorithm"] == "sha256" and sorted(sums["files"]) == [
        "_CHECKPOINT_METADATA", "b", os.path.join("sub", "a")
    ]  # fmt: skip
    assert sums["files"]["b"] == [
        3,
        "3608bca1e44ea6c4d268eb6db02260269892c0b42b86bbf1e77a6fa16c3c9282",
    ]
    assert file_checksums(str(step)) == sums["files"]  # the checksum file leaves itself out
    assert verify_step(str(step)) == (True, None)

    (step / "sub" / "a").write_bytes(b"123")
    assert verify_step(str(step)) == (
        True,
        f"has {os.path.join('sub', 'a')} of 3 bytes, 5 when saved (truncated?)",
    )
    (step / "sub" / "a").write_bytes(b"12346")
    assert verify_step(str(step)) == (
        True,
        f"has {os.path.join('sub', 'a')} whose sha256 differs from the one saved (damaged bytes)",
    )
    (step / "sub" / "a").unlink()
    assert verify_step(str(step)) == (True, f"misses its file {os.path.join('sub', 'a')}")
    (step / "sub" / "a").write_bytes(b"12345")
    for name in ("z1", "z2", "z3", "z4"):
        (step / name).write_bytes(b"")
    assert verify_step(str(step)) == (True, "has files that were not saved with it: z1, z2, z3")
    (step / CHECKSUM_FILE).write_text("{not json")
    assert verify_step(str(step)) == (True, f"has an unreadable {CHECKSUM_FILE} (JSONDecodeError)")

    assert _first_line(OSError("disk\nmore")) == "OSError: disk"
    assert _first_line(ValueError("")) == "ValueError"
    long = _first_line(RuntimeError("x" * 161))
    assert long == "RuntimeError: " + "x" * 157 + "..." and len(long) == len("RuntimeError: ") + 160
    assert _first_line(RuntimeError("x" * 160)) == "RuntimeError: " + "x" * 160
