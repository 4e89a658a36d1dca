"""Causal Transformer on Fashion-MNIST under the short CPU budget of the README's results table.

Overrides transformer_fashion_mnist.py: 2 blocks of width 16 with one head, no dropout, and
``jaxar.config.short_cpu_budget`` (1,000 steps of 32 images). Full attention over all 784 tokens
(a 784 x 784 score matrix per head and image) dominates the cost at this size, so the CPU budget
buys one head and a narrow width.

Run:
    jaxar train --config experiments/configs/transformer_fashion_mnist_cpu.py \
        --workdir runs/transformer_fashion_mnist_cpu

Result (2026-11-30, 2-core CPU shared with two other training runs, load 2-8): test 3.587
bits/dim (1949.5 nats per image) over all 10,000 test images after 1,000 steps (train 3.568 at
the last step); 25.5 min wall clock, of which about 2.3 min the final evaluation; 0.7-1.2 train
steps/s after step 150, 0.3-0.5 before it under the heaviest load.
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
