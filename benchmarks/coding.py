"""Coding speed: encode + decode N Fashion-MNIST test images vs sampling N with the cached sampler.

    python benchmarks/coding.py --config experiments/configs/gated_pixelcnn_fashion_mnist_cpu.py
    python benchmarks/coding.py --workdir /work/runs/pixelcnn_pp_fm_cpu --num 1000 --repeats 3

The model is a run's (``--workdir``, its best checkpoint) or a config's at random weights
(``--config``; the time per step does not depend on the weights). The images are the first
``--num`` test images of the config's data. Sampling draws ``--num`` images in batches of
``--batch`` with ``model.sample`` (cached); coding uses ``--batch`` lanes. Every timed call is
preceded by one untimed call on the same shapes (compilation); the three are timed in turn,
``--repeats`` times, and the medians and minima are printed with the ratio the issue asks to
stay at most 3: (encode + decode) / sample.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import time

import host
import jax
import numpy as np

from jaxar import coding, train


def _config(path):
    spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _load(args):
    if args.workdir:
        config, model, params, info, step, test_src = train.load_run(args.workdir)
        return config, model, params, test_src, f"{args.workdir} (step {step})"
    config = _config(args.config)
    _, test_src, info = train.load_data(config)
    model = train.build_model(config, info)
    return config, model, model.init(jax.random.key(0)), test_src, f"{args.config} (random weights)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir")
    ap.add_argument("--config")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if bool(args.workdir) == bool(args.config):
        ap.error("give exactly one of --workdir and --config")
    if args.num < 1 or args.batch < 1 or args.repeats < 1:
        ap.error("--num, --batch and --repeats must be positive")
    config, model, params, source, what = _load(args)
    if model.num_classes:
        ap.error(f"{model.name} is class-conditional; use an unconditional run")
    x = np.stack([source[i]["x"] for i in range(args.num)]).astype(np.int32)
    lanes = min(args.batch, args.num)

    def sample():
        out = [
            model.sample(params, jax.random.key(i), min(lanes, args.num - i))
            for i in range(0, args.num, lanes)
        ]
        return jax.block_until_ready(out)

    stream = coding.encode(model, params, x, lanes=lanes)
    runs = {
        "encode": lambda: coding.encode(model, params, x, lanes=lanes),
        "decode": lambda: coding.decode(model, params, stream),
        "sample": sample,
    }
    times = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # compile
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    np.testing.assert_array_equal(coding.decode(model, params, stream), x)
    cpu = host.processor()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"{model.name} from {what}; {args.num} images, batch/lanes {lanes}, {args.repeats} "
        f"repeats; {cpu}, jax {jax.__version__}, commit {commit}"
    )
    print(
        f"coded size {len(stream):,} bytes = {8 * len(stream) / x.size:.4f} bits/dim; "
        f"exact {coding.exact_bits(model, params, x) / x.size:.4f}"
    )
    print("| | median s | min s | images/s (median) |")
    print("|---|---|---|---|")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"| {k} | {med:.2f} | {min(v):.2f} | {args.num / med:.1f} |")
    both = [e + d for e, d in zip(times["encode"], times["decode"])]
    ratio = statistics.median(both) / statistics.median(times["sample"])
    print(f"(encode + decode) / sample = {ratio:.2f} (median; goal <= 3)")
    del config


if __name__ == "__main__":
    main()
