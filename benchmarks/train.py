"""Training-throughput benchmark: train steps/s and images/s of every registered model.

    python benchmarks/train.py                               # every model, small sizes, f32+bf16
    python benchmarks/train.py --models pixelcnn_pp --batch 16 --steps 5
    python benchmarks/train.py --config experiments/configs/pixelcnn_pp_cifar10.py --batch 64
    python benchmarks/train.py ... --write                  # also append the table to BENCHMARKS.md

The step is the runner's own (:func:`jaxar.train.make_train_step`: value_and_grad of the
negative log-likelihood, the optax update, the EMA and the non-finite guard) under one
``jax.jit``, with the state donated, on a fixed device-resident batch of random data, so the
figures measure compute, not the input pipeline. The first call (trace, compile and one step)
is timed apart from the ``--steps`` timed steps after ``--warmup`` untimed ones.

Without ``--config`` each model is built at a small default size (``SMALL``, overridable with
``--hparams`` as JSON per model) on ``--image`` images (or ``--length`` samples for audio
models) with 256 levels. With ``--config`` the model, its hyperparameters, the optimiser and
the EMA come from that config file and the input shape from its dataset (CIFAR-10: 32x32x3;
(Fashion-)MNIST: 28x28x1) unless ``--image`` is given; e.g. PixelCNN++ at the paper's size on
CIFAR-shaped input. ``--dtypes`` lists the compute dtypes to measure (the model's ``dtype``
hyperparameter; parameters, optimiser state and the likelihood stay float32).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import shlex
import sys
import time

import host
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxar import compilation, models, parallel, train
from jaxar import config as jaxar_config
from jaxar.data.sources import DataInfo

SMALL = {
    "pixelcnn": dict(features=48, num_blocks=4, output_features=96),
    "gated_pixelcnn": dict(features=48, num_layers=5, output_features=96),
    "row_lstm": dict(hidden=48, num_layers=2, output_features=96),
    "diagonal_bilstm": dict(hidden=24, num_layers=2, output_features=48),
    "pixelcnn_pp": dict(num_resnets=1, features=32, num_mixtures=5, dropout=0.5),
    "wavenet": dict(
        residual_channels=32, gate_channels=64, skip_channels=64, head_channels=64,
        num_cycles=1, layers_per_cycle=6,
    ),
}  # fmt: skip
KNOWN_SHAPES = {"cifar10": (32, 32, 3), "mnist": (28, 28, 1), "fashion": (28, 28, 1)}


def hardware() -> str:
    d = jax.devices()[0]
    cpus = os.cpu_count()
    if d.platform == "cpu":
        return f"CPU ({host.processor()}), {cpus} cores visible"
    return f"{d.device_kind} ({d.platform}, {jax.device_count()} device(s)), host {cpus} cores"


def _event_shape(name, args, config=None):
    accepted = models.hparam_names(name)
    if "image_shape" not in accepted:
        return (args.length,)
    if args.image:
        return tuple(int(v) for v in args.image.split(","))
    if config is not None:
        data = config.data.name.lower()
        for key, shape in KNOWN_SHAPES.items():
            if key in data:
                return shape
        raise ValueError(f"no known image shape for data {config.data.name!r}: pass --image H,W,C")
    return (16, 16, 3)


def _config_for(name, args):
    """(config, event shape, label) for one model: its config file or the small default."""
    if args.config:
        config = jaxar_config.load(args.config)
        label = os.path.basename(args.config)
    else:
        config = jaxar_config.default()
        config.model_name = name
        config.model = ml_collections.ConfigDict(SMALL.get(name, {}))
        config.optim.warmup_steps = 0
        label = "small (SMALL)"
    overrides = json.loads(args.hparams).get(config.model_name, {}) if args.hparams else {}
    for k, v in overrides.items():
        config.model[k] = v
    if args.batch:
        config.batch_size = args.batch
    return config, _event_shape(config.model_name, args, config if args.config else None), label


def bench(config, event_shape, dtype, args):
    """Compile time and timed steps of one model/dtype; a result row (dict)."""
    config = config.copy_and_resolve_references()
    config.num_steps = max(int(config.num_steps), 1)
    config.compute_dtype = dtype
    num_classes = 10 if config.data.conditional else 0
    info = DataInfo(config.data.name, tuple(event_shape), 256, num_classes)
    model = train.build_model(config, info)
    tx, _ = train.make_optimizer(config)
    state = train.create_train_state(model, tx, jax.random.key(0), config.ema_decay > 0)
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    b = int(config.batch_size)
    key_x, key_c = jax.random.split(jax.random.key(1))
    batch = {
        "x": jax.random.randint(key_x, (b, *event_shape), 0, 256, jnp.int32),
        "label": jax.random.randint(key_c, (b,), 0, max(num_classes, 1), jnp.int32),
    }
    step = jax.jit(train.make_train_step(model, tx, ema_decay=config.ema_decay), donate_argnums=0)
    if args.host_data:
        # Host batches (numpy, as the data pipeline yields them) put on the device by
        # parallel.prefetch_to_device with --prefetch batches in flight (0: at each step).
        mesh = parallel.make_mesh(jax.devices()[:1])
        host_batches = [jax.tree.map(np.asarray, batch)] + [
            {k: np.random.default_rng(i).permutation(np.asarray(v)) for k, v in batch.items()}
            for i in range(7)
        ]
        feed = parallel.prefetch_to_device(itertools.cycle(host_batches), args.prefetch, mesh)
    else:
        feed = itertools.repeat(batch)

    t0 = time.perf_counter()
    state, metrics = step(state, next(feed))
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        state, metrics = step(state, next(feed))
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = step(state, next(feed))
    jax.block_until_ready(state)
    elapsed = time.perf_counter() - t0
    loss = float(metrics["loss"])
    return dict(
        model=config.model_name,
        shape="x".join(map(str, event_shape)),
        batch=b,
        dtype=dtype,
        params=num_params,
        compile_s=compile_s,
        steps_per_s=args.steps / elapsed,
        examples_per_s=args.steps * b / elapsed,
        loss=loss,
    )


def table(rows, label_of) -> str:
    lines = [
        "| model | config | input | batch | dtype | params | compile+1st step (s) "
        "| steps/s | images/s | loss (nats/dim) |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {label_of[r['model']]} | {r['shape']} | {r['batch']} | "
            f"{r['dtype']} | {r['params'] / 1e6:.2f}M | {r['compile_s']:.1f} | "
            f"{r['steps_per_s']:.2f} | {r['examples_per_s']:.1f} | {r['loss']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--config", default="", help="a config file (its model only)")
    parser.add_argument("--hparams", default="", help='JSON {"model": {hparam: value}}')
    parser.add_argument("--image", default="", help="H,W,C of image models")
    parser.add_argument("--length", type=int, default=4096, help="samples, audio models")
    parser.add_argument("--batch", type=int, default=0, help="batch size (default: config's)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compile")
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    parser.add_argument("--note", default="", help="a line printed under the table")
    parser.add_argument(
        "--compilation-cache", default="", help="cache directory, or off (default: jaxar's)"
    )
    parser.add_argument(
        "--host-data", action="store_true", help="feed numpy batches through device prefetch"
    )
    parser.add_argument("--prefetch", type=int, default=2, help="batches in flight (--host-data)")
    args = parser.parse_args(argv)
    cache = compilation.enable_compilation_cache(args.compilation_cache or None)

    if args.config:
        names = [jaxar_config.load(args.config).model_name]
    else:
        names = [n for n in args.models.split(",") if n] or models.names()
    unknown = sorted(set(names) - set(models.names()))
    if unknown:
        raise ValueError(f"unknown models {unknown}; registered: {models.names()}")

    rows, label_of = [], {}
    for name in names:
        config, shape, label = _config_for(name, args)
        label_of[config.model_name] = label
        for dtype in [d for d in args.dtypes.split(",") if d]:
            try:
                row = bench(config, shape, dtype, args)
            except Exception as e:  # report and go on with the other models
                print(f"{name} {dtype}: FAILED: {type(e).__name__}: {e}", flush=True)
                continue
            rows.append(row)
            print(
                f"{name} {dtype}: compile {row['compile_s']:.1f} s, "
                f"{row['steps_per_s']:.2f} steps/s, {row['examples_per_s']:.1f} images/s",
                flush=True,
            )
            if not math.isfinite(row["loss"]):
                print(f"warning: {name} {dtype} loss is not finite")

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"### Training throughput, {when}\n\n"
        f"Hardware: {hardware()}; jax {jax.__version__}. Command: "
        f"`python benchmarks/train.py {shlex.join(argv if argv is not None else sys.argv[1:])}`"
        f". {args.steps} timed steps after {args.warmup} untimed; the first call (trace, "
        "compile, one step) is timed apart. One jitted step: value_and_grad, optax update, "
        "EMA. Random data, fixed batch. Images/s = batch x steps/s (audio: clips/s). "
        f"Compilation cache: {cache or 'off'}."
        + (
            f" Host batches through prefetch_to_device, {args.prefetch} in flight."
            if args.host_data
            else ""
        )
    )
    text = header + ("\n" + args.note if args.note else "") + "\n\n" + table(rows, label_of)
    print("\n" + text)
    if args.write:
        with open("BENCHMARKS.md", "a") as f:
            f.write("\n" + text + "\n")
    return rows


if __name__ == "__main__":
    main()
