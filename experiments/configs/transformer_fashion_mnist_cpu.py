"""Causal Transformer on Fashion-MNIST under the short CPU budget of the README's results table.

Overrides transformer_fashion_mnist.py: 2 blocks of width 16 with one head, no dropout, and
``jaxar.config.short_cpu_budget`` (1,000 steps of 32 images). Full attention over all 784 tokens
(a 784 x 784 score matrix per head and image) dominates the cost at this size, so the CPU budget
buys one head and a narrow width; on the shared 2-core CPU a train step took 2.0 s at load 6 and
1.35 s with one block of width 32 (timed with the runner's optimiser-free equivalent, batch 32).

Run:
    jaxar train --config experiments/configs/transformer_fashion_mnist_cpu.py \
        --workdir runs/transformer_fashion_mnist_cpu

Result: not yet measured.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("transformer_fashion_mnist.py", __file__)
    c.model.num_layers = 2
    c.model.num_heads = 1
    c.model.embed_dim = 16
    c.model.dropout = 0.0
    c.optim.learning_rate = 1e-3
    return jaxar_config.short_cpu_budget(c)
