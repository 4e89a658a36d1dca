"""Fixed-point (parallel) sampling against the cached sampler on a trained run.

For each batch size: the number of whole-image passes ``method="fixed_point"`` takes (out of
D = 784 steps for 28x28 grey images), its wall-clock time and the cached sampler's, medians and
minima over ``--repeats`` (compilation excluded: one warm-up call first), the two alternating.
Both return the same samples (checked). ``--fixed-batches`` limits the batches on which the
fixed-point sampler is timed (a large batch may not fit its time budget; say so when reporting).

Run:
    python experiments/fixed_point.py --workdir /work/runs/pixelcnn_fm_cpu --batches 1,16,256
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import numpy as np

from jaxar import train

__all__ = ["main"]


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--checkpoint", default="best")
    p.add_argument("--batches", default="1,16,256")
    p.add_argument("--fixed-batches", default="", help="default: all of --batches")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    _, model, params, _, step, _ = train.load_run(args.workdir, args.checkpoint)
    batches = [int(b) for b in args.batches.split(",")]
    fixed_batches = {int(b) for b in (args.fixed_batches or args.batches).split(",")}
    rows = []
    for batch in batches:
        cond = model.sample_cond(batch)
        key = jax.random.key(args.seed)
        cached = lambda k: model.sample(params, k, batch, cond, method="cached")
        fixed = lambda k: model.sample(
            params, k, batch, cond, method="fixed_point", with_passes=True
        )
        run_fixed = batch in fixed_batches
        cached(key).block_until_ready()  # compile
        if run_fixed:
            jax.block_until_ready(fixed(key))
        t_cached, t_fixed, passes = [], [], []
        for r in range(args.repeats):
            k = jax.random.fold_in(key, r)
            dt, want = _timed(lambda k=k: cached(k))
            t_cached.append(dt)
            if run_fixed:
                dt, (got, n) = _timed(lambda k=k: fixed(k))
                t_fixed.append(dt)
                passes.append(int(n))
                if not np.array_equal(np.asarray(got), np.asarray(want)):
                    raise AssertionError(f"fixed_point != cached at batch {batch}, repeat {r}")
        row = {
            "workdir": args.workdir,
            "step": int(step),
            "model": model.name,
            "batch": batch,
            "steps": model.num_dims // model.distribution.dims_per_step,
            "passes": passes,
            "cached_s_median": statistics.median(t_cached),
            "cached_s_min": min(t_cached),
        }
        if run_fixed:
            row["fixed_point_s_median"] = statistics.median(t_fixed)
            row["fixed_point_s_min"] = min(t_fixed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
