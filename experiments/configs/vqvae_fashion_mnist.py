"""VQ-VAE on Fashion-MNIST (28x28 grey, 256 levels) from Debian's ``dataset-fashion-mnist``:
28x28 images to 7x7 grids of K = 256 codes of 64 dimensions (two stride-2 convolutions, two
residual blocks of 128 features), EMA codebook (decay 0.99), dead-code restarts, and a
256-way categorical decoder per pixel, so -log p(x|z) is exact.

Two-stage generation (see jaxar/two_stage.py):
    jaxar train  --config experiments/configs/vqvae_fashion_mnist.py \
        --workdir runs/vqvae_fashion_mnist
    jaxar encode --workdir runs/vqvae_fashion_mnist
    jaxar train  --config experiments/configs/vqvae_fashion_mnist_prior.py \
        --workdir runs/vqvae_fashion_mnist_prior
    jaxar sample --workdir runs/vqvae_fashion_mnist_prior   # writes samples_STEP_decoded.png
    jaxar eval   --workdir runs/vqvae_fashion_mnist_prior   # prior bits/dim and image bound

Result: not yet measured.
What is needed: an accelerator for its budget of 20,000 steps of 64 (the data, Debian's
dataset-fashion-mnist, is on the development machine); the short CPU budget of the same family
is measured in the README's table.
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.default()
    c.data.name = jaxar_config.FASHION_MNIST
    c.model_name = "vqvae"
    c.model = ml_collections.ConfigDict(
        dict(
            num_codes=256,
            code_dim=64,
            features=128,
            res_features=64,
            num_res_blocks=2,
            num_downsamples=2,
            beta=0.25,
            ema_decay=0.99,
            usage_decay=0.99,
            restart_threshold=0.03,
        )
    )
    c.batch_size = 64
    c.num_steps = 20_000
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 500
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 2000
    c.num_samples = 32  # test images beside their reconstructions
    return c
