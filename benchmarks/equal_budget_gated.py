"""Equal-budget Gated PixelCNN training against anordertoreclaim/PixelCNN, same images.

    python benchmarks/equal_budget_gated.py --peer CHECKOUT --peer-python PY \\
        [--seeds 0,1,2] [--steps 600] [--out FILE.jsonl]

Both sides train a Gated PixelCNN of the same shape (a first layer of ``--first-kernel``
reach and ``--layers`` more gated layers of ``--kernel`` reach, vertical and horizontal
stacks of ``--features`` channels with skip connections, a ``--out-features``-wide hidden
layer in the head, a 256-way softmax per pixel; the parameter counts are printed) on the same
first ``--train`` Fashion-MNIST training images in the same batch order (a permutation per
epoch from the seed; :func:`equal_budget._orders`), batch ``--batch``, Adam at a constant
``--lr``, ``--steps`` steps; each seed also seeds the initial weights. The test figure of both
sides is the exact bits/dim over the first ``--test`` test images. The peer's network is RGB
only: its driver (``benchmarks/peers/gated_pixelcnn_torch.py``) feeds each grey image as three
equal channels, as the peer's own data loader does for MNIST, and scores and trains the first
channel, whose conditionals are the grey image's exact likelihood under the peer's model.
jaxar's side is the library's ``gated_pixelcnn``, ``log_prob`` and the runner's loss (mean
nats per dimension) with optax. ``--peer-recipe own --no-jaxar`` trains the peer with its own
``train.py`` optimizer settings instead (Adam 1e-4 with weight decay, clipping, a cyclic rate),
to check that the common recipe is not what holds it back.

The peer runs in a subprocess (one thread) after jaxar's run of the same seed. Pin the whole
command to one core (``taskset -c 1``) for per-step times that compare (medians over the steps
after the first five; compilation excluded). Each run appends one JSON line to ``--out``; the
summary table is printed at the end.
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
from equal_budget import _orders, _warm, emit, summary, train_adam

from jaxar import models
from jaxar.data import sources

__all__ = ["main"]

DRIVER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "peers", "gated_pixelcnn_torch.py"
)


def run_jaxar(args, seed: int, train, test, order) -> dict:
    model = models.create(
        "gated_pixelcnn",
        image_shape=train.shape[1:],
        features=args.features,
        num_layers=args.layers + 1,
        first_kernel=args.first_kernel,
        kernel=args.kernel,
        output_features=args.out_features,
    )
    key = jax.random.key(seed)
    params = model.init(key)
    params, losses, times, _ = train_adam(model, params, (train[i] for i in order), args.lr)
    lp = jax.jit(lambda p, x: jnp.sum(model.log_prob(p, x)))
    nats = -sum(
        float(lp(params, jnp.asarray(test[i : i + 200], jnp.int32)))
        for i in range(0, len(test), 200)
    )
    return {
        "side": "jaxar",
        "init": "default",
        "seed": seed,
        "test_bits_per_dim": nats / test.size / math.log(2.0),
        "train_bits_last_50": float(np.mean(losses[-50:]) / math.log(2.0)),
        "step_s_median": statistics.median(_warm(times)),
        "step_s_min": min(_warm(times)),
        "num_params": int(sum(v.size for v in jax.tree.leaves(params))),
    }


def run_peer(args, seed: int, data_dir: str, test) -> dict:
    out = os.path.join(data_dir, f"peer_{seed}.npz")
    cmd = [
        args.peer_python, DRIVER, "--peer", args.peer, "--data", data_dir,
        "--seed", str(seed), "--out", out, "--features", str(args.features),
        "--out-features", str(args.out_features), "--layers", str(args.layers),
        "--first-kernel", str(args.first_kernel), "--kernel", str(args.kernel),
        "--lr", str(args.lr), "--recipe", args.peer_recipe,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    r = np.load(out)
    if r["test_nats"].shape != (len(test),):
        raise SystemExit(f"the peer scored {r['test_nats'].shape} images, expected {len(test)}")
    times = r["step_seconds"]
    return {
        "side": "peer" if args.peer_recipe == "equal" else "peer, its own recipe",
        "init": "peer",
        "seed": seed,
        "test_bits_per_dim": float(r["test_nats"].sum()) / test.size / math.log(2.0),
        "train_bits_last_50": float(np.mean(r["train_loss"][-50:]) / math.log(2.0)),
        "step_s_median": float(np.median(_warm(times))),
        "step_s_min": float(np.min(_warm(times))),
        "num_params": int(r["num_params"]),
        "command": shlex.join(cmd),
    }


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", default="", help="a checkout of anordertoreclaim/PixelCNN")
    ap.add_argument("--peer-python", default="python", help="a Python that has torch")
    ap.add_argument("--data", default="idx:/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--out-features", type=int, default=30)
    ap.add_argument("--layers", type=int, default=4, help="gated layers after the first")
    ap.add_argument("--first-kernel", type=int, default=7)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--no-jaxar", action="store_true", help="run the peer's side only")
    ap.add_argument(
        "--peer-recipe",
        choices=["equal", "own"],
        default="equal",
        help="own: the peer trains with its train.py's optimizer settings instead (a check)",
    )
    ap.add_argument("--out", default="", help="append one JSON line per run")
    args = ap.parse_args(argv)
    if args.peer and not os.path.isfile(os.path.join(args.peer, "pixelcnn", "model.py")):
        raise SystemExit(
            f"--peer must be a checkout of anordertoreclaim/PixelCNN, got {args.peer!r}"
        )
    train = np.asarray(sources.load(args.data, "train").x[: args.train], np.uint8)
    test = np.asarray(sources.load(args.data, "test").x[: args.test], np.uint8)
    if train.shape[-1] != 1:
        raise SystemExit(f"expected grey images (H, W, 1), got {train.shape[1:]} from {args.data}")
    print(
        f"# {host.processor()}, {len(os.sched_getaffinity(0))} CPUs "
        f"usable; jax {jax.__version__}; `{shlex.join([sys.executable, *sys.argv])}`",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        np.save(os.path.join(data_dir, "train.npy"), train)
        np.save(os.path.join(data_dir, "test.npy"), test)
        for seed in map(int, args.seeds.split(",")):
            order = _orders(len(train), args.batch, args.steps, seed)
            np.save(os.path.join(data_dir, f"order_{seed}.npy"), order)
            runs = [] if args.no_jaxar else [lambda: run_jaxar(args, seed, train, test, order)]
            if args.peer:
                runs.append(lambda: run_peer(args, seed, data_dir, test))
            for run in runs:
                emit(run(), args.out, rows)
    print(summary(rows))
    return rows


if __name__ == "__main__":
    main()
