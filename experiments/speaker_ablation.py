"""Does a speaker-conditioned run use its label? Exact test bits per sample of the same weights
over every test window, given each window's true speaker and given a wrong one (speaker
``(k + shift) mod K`` for each ``--shifts``, default every shift ``1 .. K-1``, and their mean).

    python experiments/speaker_ablation.py --workdir runs/wavenet_speakers_cpu [--shifts 1]
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxar import train
from jaxar.data.pipeline import eval_batches

__all__ = ["main"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--checkpoint", default="best")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shifts", default="", help="comma-separated; default 1..K-1")
    args = ap.parse_args(argv)
    _, model, params, _, step, test_src = train.load_run(args.workdir, args.checkpoint)
    k = model.num_classes
    if k < 2:
        raise ValueError(f"{args.workdir}: expected a model conditioned on >= 2 speakers, got {k}")
    shifts = [0] + ([int(s) for s in args.shifts.split(",")] if args.shifts else list(range(1, k)))
    if not all(0 < s < k for s in shifts[1:]):
        raise ValueError(f"expected --shifts in [1, {k - 1}], got {args.shifts}")
    log_prob = jax.jit(lambda x, labels: model.log_prob(params, x, labels))
    nats = np.zeros(len(shifts))  # index 0: the true speaker; then each shift
    count = 0
    for batch in eval_batches(test_src, batch_size=args.batch_size):
        mask = jnp.asarray(batch["mask"])
        x, labels = jnp.asarray(batch["x"]), np.asarray(batch["label"])
        for i, shift in enumerate(shifts):
            lp = log_prob(x, jnp.asarray((labels + shift) % k, jnp.int32))
            nats[i] -= float(jnp.sum(lp * mask))
        count += int(mask.sum())
    bits = nats / count / model.num_dims / math.log(2)
    out = {"step": int(step), "windows": count, "true": bits[0], "wrong": bits[1:].tolist()}
    print(f"step {step}, {count} test windows of {model.event_shape[0]} samples:")
    print(f"  true speaker:  {bits[0]:.4f} bits/sample")
    for i, shift in enumerate(shifts[1:], 1):
        print(f"  speaker + {shift}:   {bits[i]:.4f} bits/sample")
    print(f"  wrong (mean):  {bits[1:].mean():.4f} bits/sample")
    return out


if __name__ == "__main__":
    main()
