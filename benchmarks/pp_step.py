"""PixelCNN++ train-step time of jaxar checkouts and of pclucas14/pixel-cnn-pp, alternating.

    python benchmarks/pp_step.py --side new=. --side old=/tmp/jaxar-old \\
        [--peer CHECKOUT --peer-python PY] [--rounds 3] [--steps 40] [--out FILE.jsonl]

Each ``--side NAME=PATH`` is a jaxar checkout (``PATH/jaxar`` is imported, through
``PYTHONPATH``, in a fresh process); ``--peer`` adds the public PyTorch implementation
(``benchmarks/peers/pixel_cnn_pp_torch.py`` runs it, one thread). Every round runs each side
once, in the order given, each a fresh process timing ``--steps`` train steps of the
equal-budget size of ``benchmarks/equal_budget.py`` (28x28x1 Fashion-MNIST, batch 16, 1 resnet
per stage, 32 filters, 5 logistics, weight norm, no dropout, Adam at a constant 1e-3) on the
same batches; a side's figure is the median (and min) of its steps after the first five
(compilation excluded). Pin the command to one core (``taskset -c 0``) so the sides compare.
Prints one JSON line per side and round (and appends them to ``--out``), then a table of the
median over rounds of each side's per-round medians and minima.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile

import numpy as np

__all__ = ["main"]

HERE = os.path.dirname(os.path.abspath(__file__))


def _worker(data_dir: str) -> None:
    """One jaxar side: time the steps and print one JSON line (run in a fresh process)."""
    sys.path.insert(0, HERE)
    import equal_budget
    import jax

    import jaxar
    from jaxar import models

    train = np.load(os.path.join(data_dir, "train.npy"))
    order = np.load(os.path.join(data_dir, "order_0.npy"))
    model = models.create(
        "pixelcnn_pp", image_shape=train.shape[1:], num_resnets=1, features=32,
        num_mixtures=5, dropout=0.0, weight_norm=True, weight_init="fan_in",
    )  # fmt: skip
    key = jax.random.key(0)
    params = model.init(key)
    _, _, times, _ = equal_budget.train_adam(model, params, (train[i] for i in order), 1e-3, key)
    print(json.dumps({"step_s": times, "jaxar": os.path.dirname(jaxar.__file__)}))


def _time_side(name: str, path: str, data_dir: str) -> list[float]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", data_dir]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"side {name} ({path}) failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    want = os.path.realpath(os.path.join(path, "jaxar"))
    if os.path.realpath(res["jaxar"]) != want:
        raise SystemExit(f"side {name}: expected jaxar from {want}, imported {res['jaxar']}")
    return res["step_s"]


def _time_peer(args, data_dir: str) -> list[float]:
    npz = os.path.join(data_dir, "peer_0.npz")
    cmd = [
        args.peer_python, os.path.join(HERE, "peers", "pixel_cnn_pp_torch.py"), "--peer",
        args.peer, "--data", data_dir, "--seed", "0", "--out", npz,
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return [float(t) for t in np.load(npz)["step_seconds"]]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", action="append", default=[], help="NAME=PATH of a jaxar checkout")
    ap.add_argument("--peer", default="", help="a checkout of pclucas14/pixel-cnn-pp")
    ap.add_argument("--peer-python", default="python", help="a Python that has torch")
    ap.add_argument("--data", default="idx:/usr/share/datasets/fashion-mnist")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", default="", help="append one JSON line per side and round")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args.worker)
    sides = []
    for s in args.side:
        name, sep, path = s.partition("=")
        if not (sep and name and os.path.isdir(os.path.join(path, "jaxar"))):
            raise SystemExit(f"--side takes NAME=PATH of a jaxar checkout, got {s!r}")
        sides.append((name, path))
    if args.peer and not os.path.isfile(os.path.join(args.peer, "model.py")):
        raise SystemExit(f"--peer must be a checkout of pclucas14/pixel-cnn-pp, got {args.peer!r}")
    if not sides and not args.peer:
        raise SystemExit("give at least one --side NAME=PATH or --peer CHECKOUT, got neither")
    if args.steps < 10:
        raise SystemExit(f"--steps must be at least 10 (5 are not timed), got {args.steps}")

    from jaxar.data import sources

    train = np.asarray(sources.load(args.data, "train").x[:800], np.uint8)
    print(
        f"# {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs "
        f"usable; `{shlex.join([sys.executable, *sys.argv])}`",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        np.save(os.path.join(data_dir, "train.npy"), train)
        np.save(os.path.join(data_dir, "test.npy"), train[:100])
        order = np.random.default_rng(0).permutation(len(train))[: 16 * args.steps]
        np.save(os.path.join(data_dir, "order_0.npy"), order.reshape(args.steps, 16))
        for r in range(args.rounds):
            runs = [(n, lambda p=p, n=n: _time_side(n, p, data_dir)) for n, p in sides]
            if args.peer:
                runs.append(("pclucas14/pixel-cnn-pp", lambda: _time_peer(args, data_dir)))
            for name, run in runs:
                warm = run()[5:]
                row = dict(side=name, round=r, median=statistics.median(warm), min=min(warm))
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
                rows.append(row)
    print("| side | s/step, median of rounds (per-round medians) | min |\n|---|---|---|")
    for name in dict.fromkeys(r["side"] for r in rows):
        rs = [r for r in rows if r["side"] == name]
        meds = ", ".join(f"{r['median']:.3f}" for r in rs)
        med = statistics.median(r["median"] for r in rs)
        print(f"| {name} | {med:.3f} ({meds}) | {min(r['min'] for r in rs):.3f} |")
    return rows


if __name__ == "__main__":
    main()
