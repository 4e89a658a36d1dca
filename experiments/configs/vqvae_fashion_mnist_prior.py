"""Gated PixelCNN prior over the 7x7 code grids of the VQ-VAE of vqvae_fashion_mnist.py
(events (7, 7, 1) with 256 levels, one per code): 10 gated layers of 64 features, reading each
code through a learned 32-dimensional embedding (codes are unordered symbols, not levels).

Needs the codes first: ``jaxar encode --workdir runs/vqvae_fashion_mnist``. Class-conditional
with ``--config.data.conditional=True``.

Run:
    jaxar train  --config experiments/configs/vqvae_fashion_mnist_prior.py \
        --workdir runs/vqvae_fashion_mnist_prior
    jaxar sample --workdir runs/vqvae_fashion_mnist_prior   # decoded: samples_STEP_decoded.png
    jaxar eval   --workdir runs/vqvae_fashion_mnist_prior   # bits/dim over codes; image bound

Result: not yet measured.
What is needed: a trained vqvae_fashion_mnist run encoded with `jaxar encode`, and an
accelerator for 20,000 steps; the CPU two-stage run is measured in the README.
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.default()
    c.data.name = "codes:runs/vqvae_fashion_mnist"
    c.model_name = "gated_pixelcnn"
    c.model = ml_collections.ConfigDict(
        dict(
            features=64,
            num_layers=10,
            first_kernel=7,
            kernel=3,
            output_features=256,
            input_embedding=32,
        )
    )
    c.batch_size = 64
    c.num_steps = 20_000
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 500
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 2000
    c.num_samples = 16
    return c
