"""Train-step (or sampling) time of two or more jaxar checkouts, alternating step by step.

    taskset -c 1 python benchmarks/step_ab.py --side head=/tmp/jaxar-head --side new=. \\
        --config experiments/configs/pixelcnn_fashion_mnist_cpu.py [--batch 32] [--steps 40]
    taskset -c 1 python benchmarks/step_ab.py --side head=/tmp/jaxar-head --side new=. \\
        --config experiments/configs/transformer_fashion_mnist.py --sample cached --batch 1

Each ``--side NAME=PATH`` is a jaxar checkout, imported (through ``PYTHONPATH``) by a worker
process of its own that builds the config's model, optimiser and EMA and jits the runner's
train step (:func:`jaxar.train.make_train_step`, state donated) on one fixed batch of random
data of the config's image shape (``--image`` overrides), exactly as ``benchmarks/train.py``
does. Once every worker has compiled, the driver asks them in turn for one step each,
``--steps`` times: side A, side B, ..., A, B, ... so that a machine whose speed drifts over
seconds (this project's shared 2-core VM drifts by 2x) slows both sides alike. Pin the
command to one core so the workers take turns on it.

Prints, per side: XLA's FLOPs per step, the loss of the first step (the sides must agree to
rounding), the median and minimum step time after ``--warmup`` steps, and against the first
side the median of the per-step ratios (step i of a side against step i of the first) and the
share of steps in which it was faster.

With ``--sample METHOD`` a "step" is one call of the jitted sampler instead (``model.sample``
with that method, ``--batch`` events, default 1, from one fixed key, on parameters initialised
from the config's model), and the first loss is replaced by a checksum of the samples (the sum
of their values): sides that compute the same samples print the same checksum.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import host
import numpy as np

__all__ = ["main"]

HERE = os.path.dirname(os.path.abspath(__file__))


def _worker(args) -> None:
    """One side: compile, report, then run one step per line read from stdin."""
    sys.path.insert(0, HERE)
    import jax
    import train as bench_train

    from jaxar import config as jaxar_config
    from jaxar import train
    from jaxar.data.sources import DataInfo

    config = jaxar_config.load(args.config).copy_and_resolve_references()
    if args.batch:
        config.batch_size = args.batch
    shape = bench_train._event_shape(config.model_name, args, config)
    num_classes = 10 if config.data.conditional else 0
    model = train.build_model(config, DataInfo(config.data.name, shape, 256, num_classes))
    if args.sample:
        return _sample_worker(args, model, num_classes)
    tx, _ = train.make_optimizer(config)
    state = train.create_train_state(model, tx, jax.random.key(0), config.ema_decay > 0)
    b = int(config.batch_size)
    kx, kc = jax.random.split(jax.random.key(1))
    batch = {
        "x": jax.random.randint(kx, (b, *shape), 0, model.num_levels),
        "label": jax.random.randint(kc, (b,), 0, max(num_classes, 1)),
    }
    step = jax.jit(train.make_train_step(model, tx, ema_decay=config.ema_decay), donate_argnums=0)
    compiled = step.lower(state, batch).compile()
    state, metrics = compiled(state, batch)

    def run():
        nonlocal state
        state, _ = compiled(state, batch)
        jax.block_until_ready(state)

    _serve(compiled, float(metrics["loss"]), run)


def _sample_worker(args, model, num_classes: int) -> None:
    """One side of ``--sample``: the jitted sampler, one call per line read from stdin."""
    import jax
    import jax.numpy as jnp

    if args.sample not in model.all_sample_methods:
        raise SystemExit(
            f"--sample expects one of {list(model.all_sample_methods)} for {model.name}, "
            f"got {args.sample!r}"
        )
    b = args.batch or 1
    kx, kc = jax.random.split(jax.random.key(1))
    x = jax.random.randint(kx, (b, *model.event_shape), 0, model.num_levels)
    cond = jax.random.randint(kc, (b,), 0, num_classes) if num_classes else None
    params = model.init_from_data(jax.random.key(0), x, cond)
    sample = jax.jit(lambda p, key: model.sample(p, key, b, cond=cond, method=args.sample))
    compiled = sample.lower(params, jax.random.key(2)).compile()
    run = lambda: jax.block_until_ready(compiled(params, jax.random.key(2)))
    _serve(compiled, int(jnp.sum(run())), run)


def _serve(compiled, first, run) -> None:
    """Report the compiled program's FLOPs, ``first`` (a loss or checksum) and where jaxar was
    imported from, then time one ``run()`` per line read from stdin."""
    from jaxar import models

    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    ready = {"flops": float(cost.get("flops", float("nan"))), "loss": first}
    ready["jaxar"] = os.path.dirname(os.path.dirname(models.__file__))
    print(json.dumps(ready), flush=True)
    for _ in sys.stdin:
        t0 = time.perf_counter()
        run()
        print(time.perf_counter() - t0, flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", action="append", default=[], help="NAME=PATH of a jaxar checkout")
    ap.add_argument("--config", required=True, help="an experiments/configs file")
    ap.add_argument("--batch", type=int, default=0, help="override the config's batch size")
    ap.add_argument("--image", default="", help="H,W,C instead of the dataset's shape")
    ap.add_argument("--length", type=int, default=1024, help="audio models: samples per clip")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sample", default="", help="time this sampling method, not the train step")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args)
    sides = []
    for s in args.side:
        name, sep, path = s.partition("=")
        if not sep or not os.path.isdir(os.path.join(path, "jaxar")):
            ap.error(f"--side expects NAME=PATH of a jaxar checkout, got {s!r}")
        sides.append((name, os.path.abspath(path)))
    if len(sides) < 2:
        ap.error(f"expected at least two --side, got {len(sides)}")
    if not os.path.isfile(args.config):
        ap.error(f"--config expects a config file, got {args.config!r} (no such file)")
    if args.steps <= args.warmup:
        ap.error(f"--steps must exceed --warmup ({args.warmup}), got {args.steps}")
    own = ["--config", args.config, "--batch", str(args.batch), "--image", args.image]
    own += ["--length", str(args.length), "--sample", args.sample]
    workers, ready = [], []
    for name, path in sides:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", *own]
        env = dict(os.environ, PYTHONPATH=path)
        w = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = w.stdout.readline()
        if not line:
            raise SystemExit(f"side {name} ({path}) exited before compiling its step")
        workers.append(w)
        ready.append(json.loads(line))
    times = [[] for _ in sides]
    for _ in range(args.steps):
        for w, t in zip(workers, times, strict=True):
            w.stdin.write("s\n")
            w.stdin.flush()
            t.append(float(w.stdout.readline()))
    for w in workers:
        w.stdin.close()
        w.wait()
    times = np.array(times)[:, args.warmup :]
    print(f"# {host.processor()}, {os.cpu_count()} cores visible")
    print(f"# python {' '.join(shlex.quote(a) for a in sys.argv)}")
    for (name, _), r in zip(sides, ready, strict=True):
        print(f"# side {name}: jaxar imported from {r['jaxar']}")
    first = "sample checksum" if args.sample else "first loss"
    print(f"| side | GFLOP/step | {first} | median s | min s | ratio to first | faster |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (name, _), r, t in zip(sides, ready, times, strict=True):
        ratio = t / times[0]
        loss = r["loss"] if args.sample else f"{r['loss']:.6f}"
        print(
            f"| {name} | {r['flops'] / 1e9:.3f} | {loss} | {np.median(t):.4f} "
            f"| {t.min():.4f} | {np.median(ratio):.3f} | {np.mean(ratio < 1):.0%} |"
        )


if __name__ == "__main__":
    main()
