"""How much a locally conditioned run relies on its features: the exact test bits per sample
of the same weights given the true frames, frames shuffled between windows, and zeroed frames.

    python experiments/feature_ablation.py --workdir runs/wavenet_vocoder_speech_cpu --batches 3
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxar import train
from jaxar.data.pipeline import eval_batches


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--checkpoint", default="latest")
    ap.add_argument("--batches", type=int, default=0, help="test batches of 64 (0: all)")
    args = ap.parse_args(argv)
    _, model, params, _, step, test_src = train.load_run(args.workdir, args.checkpoint)
    if not getattr(model, "local_features", 0):
        raise ValueError(f"{args.workdir}: the model takes no local features")
    log_prob = jax.jit(lambda x, cond: model.log_prob(params, x, cond))
    rng = np.random.default_rng(0)
    nats = {"true": 0.0, "shuffled": 0.0, "zeroed": 0.0}
    count = 0
    for i, batch in enumerate(eval_batches(test_src, batch_size=64)):
        if args.batches and i >= args.batches:
            break
        mask = jnp.asarray(batch["mask"])
        cond = model.cond_from_batch(batch)
        f = cond["features"]
        for name, frames in (("true", f), ("shuffled", f[rng.permutation(len(f))]),
                             ("zeroed", np.zeros_like(f))):  # fmt: skip
            lp = log_prob(jnp.asarray(batch["x"]), {**cond, "features": jnp.asarray(frames)})
            nats[name] -= float(jnp.sum(lp * mask))
        count += int(mask.sum())
    print(f"step {step}, {count} test windows of {model.event_shape[0]} samples:")
    for name, total in nats.items():
        print(f"  {name:8s} frames: {total / count / model.num_dims / math.log(2):.4f} bits/sample")


if __name__ == "__main__":
    main()
