"""One process of the two-process test (tests/test_multihost.py); not a test module itself.

Usage: python multihost_worker.py WORKDIR OUT.npz   (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID and JAXAR_DISTRIBUTED=1 in the environment). Trains the tiny config for one epoch
of the digits (25 steps of 60), then saves its final params and every example it was fed.
"""

import sys

import jax
import numpy as np

jax.config.update("jax_cpu_collectives_implementation", "gloo")

from test_train import tiny_config  # noqa: E402

from jaxar import train  # noqa: E402
from jaxar.runner import loop  # noqa: E402


def main(workdir, out):
    fed = []
    real = loop.train_batches

    def recording(*args, **kwargs):
        for batch in real(*args, **kwargs):
            fed.append(batch["x"].copy())
            yield batch

    loop.train_batches = recording
    config = tiny_config(num_steps=25, batch_size=60, eval_every=25, checkpoint_every=25)
    metrics = train.train_and_evaluate(config, workdir)
    params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), train.load_run(workdir)[2])
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}
    np.savez(out, fed=np.concatenate(fed[:25]), bpd=metrics["test/bits_per_dim"], **flat)


if __name__ == "__main__":
    main(*sys.argv[1:])
