"""Gated PixelCNN prior over the codes of vqvae_fashion_mnist_cpu.py, under a short CPU budget.

Overrides vqvae_fashion_mnist_prior.py: the codes of runs/vqvae_fashion_mnist_cpu (7x7, K = 64),
5 gated layers of 32 features, 64 output features, and ``jaxar.config.short_cpu_budget``
(1,000 steps of 32 code grids).

Run (after vqvae_fashion_mnist_cpu.py and its ``jaxar encode``):
    jaxar train  --config experiments/configs/vqvae_fashion_mnist_prior_cpu.py \
        --workdir runs/vqvae_fashion_mnist_prior_cpu
    jaxar sample --workdir runs/vqvae_fashion_mnist_prior_cpu
    jaxar eval   --workdir runs/vqvae_fashion_mnist_prior_cpu

Result (2026-11-30, 2-core CPU shared with other jobs, load 4-5), over all 10,000 test code
grids after 1,000 steps: prior 4.463 bits/dim over codes (151.6 nats per 7x7 grid; 6 bits would
be uniform over K = 64); bound on the images -log p(x|z) - log p(z) = 1998.4 + 151.6 = 2150.0
nats per image, 3.956 bits/dim; 63 s wall clock for ``jaxar train``; ``jaxar sample --num=64``
(cached sampler, decoded PNG) 8 s. The samples are blurry, blob-like garments: the Gated
PixelCNN reads each code as one scalar level, which suits codes (unordered symbols) poorly;
the Transformer prior (learned code embeddings) of vqvae_fashion_mnist_prior_transformer_cpu.py
reaches 2.911 bits/dim over the same codes and a 3.859 bits/dim image bound.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("vqvae_fashion_mnist_prior.py", __file__)
    c.data.name = "codes:runs/vqvae_fashion_mnist_cpu"
    c.model.features = 32
    c.model.num_layers = 5
    c.model.output_features = 64
    return jaxar_config.short_cpu_budget(c)
