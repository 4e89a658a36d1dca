"""VQ-VAE on Fashion-MNIST under a short CPU budget (the first stage of the CPU two-stage run).

Overrides vqvae_fashion_mnist.py: K = 64 codes of 16 dimensions, 32 features (16 in the residual
branches), one residual block per side, and ``jaxar.config.short_cpu_budget`` (1,000 steps of
32 images).

Run (then the prior, vqvae_fashion_mnist_prior_cpu.py):
    jaxar train  --config experiments/configs/vqvae_fashion_mnist_cpu.py \
        --workdir runs/vqvae_fashion_mnist_cpu
    jaxar encode --workdir runs/vqvae_fashion_mnist_cpu

Result (2026-11-30, 2-core CPU shared with other jobs, load 4-7): after 1,000 steps, over all
10,000 test images: reconstruction -log p(x|z) 3.678 bits/dim (1998.4 nats per image), mean
squared error 0.0129 (pixels in [0, 1]), code perplexity 50.1 of 64, every code used; 10 min
13 s wall clock for ``jaxar train``; ``jaxar encode`` (70,000 images) 28 s at load 2-3. The
priors and the image bound: vqvae_fashion_mnist_prior_cpu.py (Gated PixelCNN) and
vqvae_fashion_mnist_prior_transformer_cpu.py (Transformer).
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("vqvae_fashion_mnist.py", __file__)
    c.model.num_codes = 64
    c.model.code_dim = 16
    c.model.features = 32
    c.model.res_features = 16
    c.model.num_res_blocks = 1
    c = jaxar_config.short_cpu_budget(c)
    c.num_samples = 32
    return c
