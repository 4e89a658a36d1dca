"""Equal-budget WaveNet training against r9y9/wavenet_vocoder, same speech, same machine.

    python benchmarks/equal_budget_wavenet.py --peer CHECKOUT --peer-python PY \\
        [--seeds 0,1,2] [--steps 1000] [--out FILE.jsonl]

Both sides train an unconditional WaveNet of the same size (``--stacks`` cycles of
``--layers`` / ``--stacks`` layers with dilations 1, 2, 4, ..., kernel ``--kernel``,
``--residual`` / ``--gate`` / ``--skip`` channels, a ``--skip``-wide hidden layer in the
output head, a 256-way softmax over mu-law levels; the parameter counts are printed) on the
same crops: ``--steps`` batches of ``--batch`` random ``--length``-sample crops of the
training files of ``--data`` (the runner's split and mu-law coding, :class:`jaxar.data.audio.
AudioSource`), drawn once per seed and fed to both sides in the same order, with Adam at a
constant ``--lr`` and no clipping (the peer's ``train.py`` defaults). Each seed also seeds
the initial weights. The test figure of both sides is the exact bits per sample over every
``--length``-sample window of the test files, positions 1..T-1 of each window: the peer's
network cannot predict a window's first sample (it trains on ``y_hat[:-1]`` against
``x[1:]``), so that position is left out of both. jaxar's side is the library's model,
``log_prob`` and the runner's loss (mean nats per sample) with optax.

The peer runs in a subprocess (``benchmarks/peers/wavenet_vocoder_torch.py``, one thread)
after jaxar's run of the same seed. Pin the whole command to one core (``taskset -c 1``) for
per-step times that compare (medians over the steps after the first five; compilation
excluded). Each run appends one JSON line to ``--out``; the summary table is printed at the
end (its "bits/dim" column is bits per sample).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

import host
import jax
import jax.numpy as jnp
import numpy as np
from equal_budget import _warm, emit, summary, train_adam

from jaxar import models
from jaxar.data import sources

__all__ = ["main"]

DRIVER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "peers", "wavenet_vocoder_torch.py"
)


def train_crops(src, batch: int, steps: int, seed: int) -> np.ndarray:
    """``(steps, batch, length)`` int16 levels: each epoch visits the windows in a fresh
    permutation and crops each window's file at a uniformly random start (the runner's
    :meth:`AudioSource.train_transform`), all drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < steps * batch:
        for i in rng.permutation(len(src)):
            out.append(src.train_transform(src[int(i)], rng)["x"].astype(np.int16))
    return np.stack(out[: steps * batch]).reshape(steps, batch, -1)


def run_jaxar(args, seed: int, crops: np.ndarray, test: np.ndarray) -> dict:
    model = models.create(
        "wavenet",
        length=args.length,
        residual_channels=args.residual,
        gate_channels=args.gate,
        skip_channels=args.skip,
        kernel_size=args.kernel,
        num_cycles=args.stacks,
        layers_per_cycle=args.layers // args.stacks,
    )
    key = jax.random.key(seed)
    params = model.init(key)
    params, losses, times, _ = train_adam(model, params, crops, args.lr)
    lp = jax.jit(lambda p, x: jnp.sum(model.log_prob(p, x, per_dim=True)[:, 1:]))
    nats = -sum(
        float(lp(params, jnp.asarray(test[i : i + args.eval_batch], jnp.int32)))
        for i in range(0, len(test), args.eval_batch)
    )
    return {
        "side": "jaxar",
        "init": "default",
        "seed": seed,
        "test_bits_per_dim": nats / (len(test) * (test.shape[1] - 1)) / math.log(2.0),
        "train_bits_last_50": float(np.mean(losses[-50:]) / math.log(2.0)),
        "step_s_median": statistics.median(_warm(times)),
        "step_s_min": min(_warm(times)),
        "num_params": int(sum(v.size for v in jax.tree.leaves(params))),
    }


def run_peer(args, seed: int, data_dir: str, test: np.ndarray) -> dict:
    out = os.path.join(data_dir, f"peer_{seed}.npz")
    cmd = [
        args.peer_python, DRIVER, "--peer", args.peer, "--data", data_dir,
        "--seed", str(seed), "--out", out, "--layers", str(args.layers),
        "--stacks", str(args.stacks), "--residual", str(args.residual),
        "--gate", str(args.gate), "--skip", str(args.skip), "--kernel", str(args.kernel),
        "--lr", str(args.lr), "--eval-batch", str(args.eval_batch),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    r = np.load(out)
    if r["test_nats"].shape != (len(test),):
        raise SystemExit(f"the peer scored {r['test_nats'].shape} windows, expected {len(test)}")
    times = r["step_seconds"]
    return {
        "side": "peer",
        "init": "peer",
        "seed": seed,
        "test_bits_per_dim": float(r["test_nats"].sum())
        / (len(test) * (test.shape[1] - 1))
        / math.log(2.0),
        "train_bits_last_50": float(np.mean(r["train_loss"][-50:]) / math.log(2.0)),
        "step_s_median": float(np.median(_warm(times))),
        "step_s_min": float(np.min(_warm(times))),
        "num_params": int(r["num_params"]),
        "command": shlex.join(cmd),
    }


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", default="", help="a checkout of r9y9/wavenet_vocoder")
    ap.add_argument("--peer-python", default="python", help="a Python that has torch")
    ap.add_argument("--data", default="wav:/usr/share/asterisk/sounds/en_US_f_Allison")
    ap.add_argument("--sample-rate", type=int, default=8000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--stacks", type=int, default=2)
    ap.add_argument("--residual", type=int, default=32)
    ap.add_argument("--gate", type=int, default=64)
    ap.add_argument("--skip", type=int, default=32)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--test-windows", type=int, default=0, help="0: every test window")
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--no-jaxar", action="store_true", help="run the peer's side only")
    ap.add_argument("--out", default="", help="append one JSON line per run")
    args = ap.parse_args(argv)
    if args.peer and not os.path.isfile(os.path.join(args.peer, "wavenet_vocoder", "wavenet.py")):
        raise SystemExit(f"--peer must be a checkout of r9y9/wavenet_vocoder, got {args.peer!r}")
    if args.layers % args.stacks:
        raise SystemExit(f"--layers ({args.layers}) must be a multiple of --stacks ({args.stacks})")
    opts = dict(length=args.length, sample_rate=args.sample_rate)
    train = sources.load(args.data, "train", **opts)
    test_src = sources.load(args.data, "test", **opts)
    n = len(test_src) if args.test_windows <= 0 else min(args.test_windows, len(test_src))
    test = np.stack([test_src[i]["x"] for i in range(n)]).astype(np.int16)
    print(
        f"# {host.processor()}, {len(os.sched_getaffinity(0))} CPUs "
        f"usable; jax {jax.__version__}; {len(train)} train and {n} test windows of "
        f"{args.length}; `{shlex.join([sys.executable, *sys.argv])}`",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        np.save(os.path.join(data_dir, "test.npy"), test)
        for seed in map(int, args.seeds.split(",")):
            crops = train_crops(train, args.batch, args.steps, seed)
            np.save(os.path.join(data_dir, f"train_{seed}.npy"), crops)
            runs = [] if args.no_jaxar else [lambda: run_jaxar(args, seed, crops, test)]
            if args.peer:
                runs.append(lambda: run_peer(args, seed, data_dir, test))
            for run in runs:
                emit(run(), args.out, rows)
    print(summary(rows))
    return rows


if __name__ == "__main__":
    main()
