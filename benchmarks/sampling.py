"""Sampling benchmark: images/s of naive and cached sampling for every image model.

    python benchmarks/sampling.py                      # every image model, batches 1, 16, 256
    python benchmarks/sampling.py --models pixelcnn --batches 16 --write

Each model is built at a small CPU size (``--hparams`` overrides it, as JSON per model) for
``--image H,W,C`` images with 256 levels. Compile time (the first call) is reported apart from
sampling time (the best of ``--repeats`` timed calls after it). Naive sampling runs a full
forward pass per step; where that would take long (``batch * steps`` above
``--naive-budget``), it is timed over ``--naive-steps`` steps and extrapolated to the whole
image, and the table says so. ``--write`` appends the table to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial

import host
import jax
import jax.numpy as jnp

import jaxar
from jaxar import sampling

IMAGE_MODELS = (
    "pixelcnn",
    "gated_pixelcnn",
    "row_lstm",
    "diagonal_bilstm",
    "pixelcnn_pp",
    "transformer",
)
SMALL = {
    "pixelcnn": dict(features=64, num_blocks=7, output_features=128),
    "gated_pixelcnn": dict(features=32, num_layers=7, output_features=64),
    "row_lstm": dict(hidden=32, num_layers=3, output_features=64),
    "diagonal_bilstm": dict(hidden=32, num_layers=3, output_features=64),
    "pixelcnn_pp": dict(num_resnets=1, features=32, num_mixtures=5),
    "transformer": dict(num_layers=4, num_heads=4, embed_dim=64),
}


def hardware() -> str:
    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"CPU ({host.processor()}, {os.cpu_count()} cores)"
    return f"{d.device_kind} ({d.platform})"


def _time(fn, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return compile_s, best


def bench_model(name, hparams, image, batches, args):
    model = jaxar.create(name, image_shape=image, num_levels=256, **hparams)
    params = model.init(jax.random.key(0))
    steps = model.num_dims // model.distribution.dims_per_step
    rows = []
    for batch in batches:
        for method in model.sample_methods:
            key = jax.random.key(batch)
            note = ""
            if method == "naive" and batch * steps > args.naive_budget:
                k = min(args.naive_steps, steps)
                step_fn = sampling.naive_step_fn(
                    partial(model.apply, params, cond=None), model.distribution, model.event_shape
                )
                fn = jax.jit(
                    lambda key, step_fn=step_fn, k=k: sampling.scan_sample(
                        step_fn, (), model.distribution, key, batch, model.num_dims, num_steps=k
                    )
                )
                compile_s, t = _time(lambda fn=fn, key=key: fn(key), args.repeats)
                t *= steps / k
                note = f"extrapolated from {k} of {steps} steps"
            else:
                compile_s, t = _time(
                    lambda method=method, key=key: model.sample(params, key, batch, method=method),
                    args.repeats,
                )
            rows.append((name, batch, method, batch / t, t, compile_s, note))
            print(
                f"{name:16s} batch {batch:4d} {method:7s} {batch / t:10.2f} images/s "
                f"{t:9.3f} s  compile {compile_s:6.1f} s  {note}",
                flush=True,
            )
    return rows


def table(rows, image, header) -> str:
    lines = [
        header,
        "",
        "| model | batch | method | images/s | sampling s | compile s | cached speed-up | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    times = {(r[0], r[1], r[2]): r[4] for r in rows}
    for name, batch, method, ips, t, comp, note in rows:
        speedup = ""
        if method == "cached" and (name, batch, "naive") in times:
            speedup = f"{times[(name, batch, 'naive')] / t:.0f}x"
        lines.append(
            f"| {name} | {batch} | {method} | {ips:.2f} | {t:.3f} | {comp:.1f} | "
            f"{speedup} | {note} |"
        )
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(IMAGE_MODELS))
    p.add_argument("--batches", default="1,16,256")
    p.add_argument("--image", default="28,28,1")
    p.add_argument("--hparams", default="{}", help='JSON: {"pixelcnn": {"features": 32}, ...}')
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--naive-steps", type=int, default=32)
    p.add_argument("--naive-budget", type=int, default=20_000, help="batch x steps timed fully")
    p.add_argument("--write", action="store_true", help="append the table to BENCHMARKS.md")
    args = p.parse_args()
    image = tuple(int(v) for v in args.image.split(","))
    batches = [int(b) for b in args.batches.split(",")]
    extra = json.loads(args.hparams)
    rows = []
    for name in args.models.split(","):
        if name not in jaxar.models.names():
            print(f"skipping {name}: not registered")
            continue
        rows += bench_model(
            name, {**SMALL.get(name, {}), **extra.get(name, {})}, image, batches, args
        )
    header = (
        f"### Sampling, {image[0]}x{image[1]}x{image[2]} images, 256 levels — "
        f"{hardware()}, jax {jax.__version__}, {time.strftime('%Y-%m-%d')}\n\n"
        f"Command: `python benchmarks/sampling.py --models {args.models} --batches "
        f"{args.batches} --image {args.image} --repeats {args.repeats} --naive-steps "
        f"{args.naive_steps} --naive-budget {args.naive_budget}`. Model sizes: "
        + "; ".join(
            f"{n} {json.dumps({**SMALL.get(n, {}), **extra.get(n, {})})}"
            for n in args.models.split(",")
        )
    )
    out = table(rows, image, header)
    print(out)
    if args.write:
        with open(os.path.join(os.path.dirname(__file__), "..", "BENCHMARKS.md"), "a") as f:
            f.write("\n" + out)


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing
    main()
