"""Does a speaker-conditioned run use its label? Exact test bits per sample of the same weights
over every test window, given each window's true speaker and given a wrong one (speaker
``(k + shift) mod K``; every shift ``1 .. K-1`` is reported, and their mean).

    python experiments/speaker_ablation.py --workdir runs/wavenet_speakers_cpu
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
    args = ap.parse_args(argv)
    _, model, params, _, step, test_src = train.load_run(args.workdir, args.checkpoint)
    k = model.num_classes
    if k < 2:
        raise ValueError(f"{args.workdir}: expected a model conditioned on >= 2 speakers, got {k}")
    log_prob = jax.jit(lambda x, labels: model.log_prob(params, x, labels))
    nats = np.zeros(k)  # index 0: the true speaker; s: the speaker shifted by s
    count = 0
    for batch in eval_batches(test_src, batch_size=args.batch_size):
        mask = jnp.asarray(batch["mask"])
        x, labels = jnp.asarray(batch["x"]), np.asarray(batch["label"])
        for shift in range(k):
            lp = log_prob(x, jnp.asarray((labels + shift) % k, jnp.int32))
            nats[shift] -= float(jnp.sum(lp * mask))
        count += int(mask.sum())
    bits = nats / count / model.num_dims / math.log(2)
    out = {"step": int(step), "windows": count, "true": bits[0], "wrong": bits[1:].tolist()}
    print(f"step {step}, {count} test windows of {model.event_shape[0]} samples:")
    print(f"  true speaker:  {bits[0]:.4f} bits/sample")
    for shift in range(1, k):
        print(f"  speaker + {shift}:   {bits[shift]:.4f} bits/sample")
    print(f"  wrong (mean):  {bits[1:].mean():.4f} bits/sample")
    return out


if __name__ == "__main__":
    main()
