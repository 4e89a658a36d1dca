"""Causal Transformer on Fashion-MNIST (28x28 grey, 256 levels) from the IDX files of Debian's
``dataset-fashion-mnist`` package: 784 tokens in raster order, 8 pre-norm blocks of width 256
with 8 heads, learned positional embeddings, a 256-way softmax per pixel.

Run:
    jaxar train --config experiments/configs/transformer_fashion_mnist.py \
        --workdir runs/transformer_fashion_mnist

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
    c.model_name = "transformer"
    c.model = ml_collections.ConfigDict(
        dict(num_layers=8, num_heads=8, embed_dim=256, mlp_ratio=4.0, dropout=0.1)
    )
    c.batch_size = 64
    c.num_steps = 20_000
    c.optim.learning_rate = 3e-4
    c.optim.warmup_steps = 1000
    c.optim.weight_decay = 0.01
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 2000
    c.num_samples = 16
    return c
