"""Equal-budget training against a public implementation, on the same data, same machine.

    python benchmarks/equal_budget.py --peer CHECKOUT --peer-python PY \\
        [--seeds 0,1,2] [--inits unit,data,fan_in] [--steps 600] [--out FILE.jsonl]

PixelCNN++ against pclucas14/pixel-cnn-pp (PyTorch; ``--peer`` is a checkout of it, never
part of this repository; ``--peer-python`` a Python with torch). Both sides train the same
architecture (``--resnets`` blocks per stage, ``--filters``, ``--mixtures`` logistics, weight
norm, dropout ``--dropout``; the parameter counts are printed) on the same ``--train`` first
Fashion-MNIST training images, in the same batch order (a permutation per epoch drawn from
the seed), batch ``--batch``, Adam at a constant ``--lr``, for ``--steps`` steps; each seed
also seeds the initial weights. The test figure of both sides is jaxar's exact discretized
logistic mixture (:class:`jaxar.distributions.DiscretizedLogisticMixture`) over the first
``--test`` test images, in bits/dim: the peer's network outputs are scored by the same
function (its own loss is printed beside, as a check). jaxar's side is the library's model,
``log_prob`` and the runner's loss (mean nats per dimension) with optax; one run per seed and
per ``--inits`` entry (``weight_init``: ``unit``, ``data``, ``fan_in``; see
:mod:`jaxar.nn.shifted`).

The peer runs in a subprocess (``benchmarks/peers/pixel_cnn_pp_torch.py``, one thread) after
jaxar's runs of the same seed. Pin the whole command to one core (``taskset -c 1``) for
per-step times that compare (medians over the steps after the first five; compilation
excluded on both sides). Each run appends one JSON line to ``--out``; the summary table (mean,
spread and per-seed figures of each side) is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxar import models
from jaxar.data import sources
from jaxar.distributions import DiscretizedLogisticMixture

__all__ = ["main"]

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "pixel_cnn_pp_torch.py")


def _orders(num_train: int, batch: int, steps: int, seed: int) -> np.ndarray:
    """``(steps, batch)`` indices: a fresh permutation per epoch, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    per_epoch = num_train // batch
    epochs = -(-steps // per_epoch)
    perms = [rng.permutation(num_train)[: per_epoch * batch] for _ in range(epochs)]
    return np.concatenate(perms).reshape(-1, batch)[:steps]


def _test_bits(dist, outputs: np.ndarray, x: np.ndarray, chunk: int = 200) -> float:
    lp = jax.jit(lambda o, xx: jnp.sum(dist.log_prob(o, xx)))
    nats = sum(float(lp(outputs[i : i + chunk], x[i : i + chunk])) for i in range(0, len(x), chunk))
    return -nats / x.size / math.log(2.0)


def run_jaxar(args, seed: int, init: str, train, test, order) -> dict:
    model = models.create(
        "pixelcnn_pp",
        image_shape=train.shape[1:],
        num_resnets=args.resnets,
        features=args.filters,
        num_mixtures=args.mixtures,
        dropout=args.dropout,
        weight_norm=True,
        weight_init=init,
    )
    key = jax.random.key(seed)
    first = jnp.asarray(train[order[0]], jnp.int32)
    params = model.init(key, first) if model.init_needs_data else model.init(key)
    tx = optax.adam(args.lr)
    opt_state = tx.init(params)

    def loss_fn(p, x, rng):
        return -jnp.mean(model.log_prob(p, x, train=True, rng=rng)) / model.num_dims

    @jax.jit
    def step(p, s, x, rng):
        loss, g = jax.value_and_grad(loss_fn)(p, x, rng)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    losses, times = [], []
    for i, idx in enumerate(order):
        t0 = time.perf_counter()
        x = jnp.asarray(train[idx], jnp.int32)
        params, opt_state, loss = step(params, opt_state, x, jax.random.fold_in(key, i))
        losses.append(float(loss))  # blocks: the step is timed whole
        times.append(time.perf_counter() - t0)
    lp = jax.jit(lambda p, x: jnp.sum(model.log_prob(p, x)))
    chunks = [jnp.asarray(test[i : i + 200], jnp.int32) for i in range(0, len(test), 200)]
    nats = sum(float(lp(params, x)) for x in chunks)
    return {
        "side": "jaxar",
        "init": init,
        "seed": seed,
        "test_bits_per_dim": -nats / test.size / math.log(2.0),
        "train_bits_last_50": float(np.mean(losses[-50:]) / math.log(2.0)),
        "step_s_median": statistics.median(times[5:]),
        "step_s_min": min(times[5:]),
        "num_params": int(sum(v.size for v in jax.tree.leaves(params))),
    }


def run_peer(args, seed: int, data_dir: str, test) -> dict:
    out = os.path.join(data_dir, f"peer_{seed}.npz")
    cmd = [
        args.peer_python, DRIVER, "--peer", args.peer, "--data", data_dir, "--seed", str(seed),
        "--out", out, "--resnets", str(args.resnets), "--filters", str(args.filters),
        "--mixtures", str(args.mixtures), "--dropout", str(args.dropout), "--lr", str(args.lr),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    r = np.load(out)
    dist = DiscretizedLogisticMixture(args.mixtures, 256, 1)
    times = r["step_seconds"]
    return {
        "side": "peer",
        "init": "peer",
        "seed": seed,
        "test_bits_per_dim": _test_bits(dist, r["outputs"], test),
        "peer_own_test_bits_per_dim": float(r["peer_test_nats"]) / test.size / math.log(2.0),
        "train_bits_last_50": float(np.mean(r["train_loss"][-50:]) / math.log(2.0)),
        "step_s_median": float(np.median(times[5:])),
        "step_s_min": float(np.min(times[5:])),
        "num_params": int(r["num_params"]),
        "command": shlex.join(cmd),
    }


def summary(rows: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["side"] if r["side"] == "peer" else f"jaxar {r['init']}", []).append(r)
    lines = [
        "| side | test bits/dim, mean (spread) | per seed | step s, median | parameters |",
        "|---|---|---|---|---|",
    ]
    for name, rs in groups.items():
        bits = [r["test_bits_per_dim"] for r in rs]
        spread = f"{min(bits):.3f}-{max(bits):.3f}"
        per_seed = ", ".join(f"{r['seed']}: {r['test_bits_per_dim']:.3f}" for r in rs)
        step = statistics.median(r["step_s_median"] for r in rs)
        lines.append(
            f"| {name} | {statistics.mean(bits):.3f} ({spread}) | {per_seed} | {step:.3f} "
            f"| {rs[0]['num_params']:,} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", default="", help="a checkout of pclucas14/pixel-cnn-pp")
    ap.add_argument("--peer-python", default="python", help="a Python that has torch")
    ap.add_argument("--data", default="idx:/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--inits", default="unit,data,fan_in")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--resnets", type=int, default=1)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--mixtures", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--out", default="", help="append one JSON line per run")
    args = ap.parse_args(argv)
    if args.peer and not os.path.isfile(os.path.join(args.peer, "model.py")):
        raise SystemExit(f"--peer must be a checkout of pclucas14/pixel-cnn-pp, got {args.peer!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    inits = [s for s in args.inits.split(",") if s]
    train = np.asarray(sources.load(args.data, "train").x[: args.train], np.uint8)
    test = np.asarray(sources.load(args.data, "test").x[: args.test], np.uint8)
    if train.shape[-1] != 1:
        raise SystemExit(f"expected grey images (H, W, 1), got {train.shape[1:]} from {args.data}")
    print(
        f"# {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs "
        f"usable; jax {jax.__version__}; `{shlex.join([sys.executable, *sys.argv])}`",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        np.save(os.path.join(data_dir, "train.npy"), train)
        np.save(os.path.join(data_dir, "test.npy"), test)
        for seed in seeds:
            order = _orders(len(train), args.batch, args.steps, seed)
            np.save(os.path.join(data_dir, f"order_{seed}.npy"), order)
            runs = [lambda i=i: run_jaxar(args, seed, i, train, test, order) for i in inits]
            if args.peer:
                runs.append(lambda: run_peer(args, seed, data_dir, test))
            for run in runs:
                row = run()
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
                rows.append(row)
    print(summary(rows))
    return rows


if __name__ == "__main__":
    main()
