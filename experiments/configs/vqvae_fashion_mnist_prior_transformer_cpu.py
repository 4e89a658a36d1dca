"""A causal Transformer prior over the codes of vqvae_fashion_mnist_cpu.py (the alternative to
the Gated PixelCNN of vqvae_fashion_mnist_prior_cpu.py): the 49 codes of a 7x7 grid as tokens
with learned embeddings, 4 blocks of width 64 with 4 heads, ``short_cpu_budget`` (1,000 steps of
32 code grids).

Run (after vqvae_fashion_mnist_cpu.py and its ``jaxar encode``):
    jaxar train  --config experiments/configs/vqvae_fashion_mnist_prior_transformer_cpu.py \
        --workdir runs/vqvae_fashion_mnist_prior_transformer_cpu
    jaxar sample --workdir runs/vqvae_fashion_mnist_prior_transformer_cpu
    jaxar eval   --workdir runs/vqvae_fashion_mnist_prior_transformer_cpu

Result (2026-11-30, 2-core CPU shared with other jobs, load 4-5), over all 10,000 test code
grids after 1,000 steps: prior 2.911 bits/dim over codes (98.9 nats per 7x7 grid, against 100.2
for the Gated PixelCNN prior with its code embedding); bound on the images 1998.4 + 98.9 =
2097.3 nats per image, 3.859 bits/dim; 161 s wall clock for ``jaxar train``; ``jaxar sample
--num=64`` 11 s. The decoded samples are recognisable garments (shirts, trousers, shoes, bags),
blurred by the decoder's mean image.
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("vqvae_fashion_mnist_prior_cpu.py", __file__)
    c.model_name = "transformer"
    c.model = ml_collections.ConfigDict(
        dict(num_layers=4, num_heads=4, embed_dim=64, mlp_ratio=4.0, dropout=0.0)
    )
    return c
