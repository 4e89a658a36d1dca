"""Diagonal BiLSTM on Fashion-MNIST under the short CPU budget of the README's results table.

Overrides diagonal_bilstm_fashion_mnist.py: 3 layers of 16 hidden units per direction, 64
output features, and ``jaxar.config.short_cpu_budget`` (1,000 steps of 32 images).

Run:
    jaxar train --config experiments/configs/diagonal_bilstm_fashion_mnist_cpu.py \
        --workdir runs/diagonal_bilstm_fashion_mnist_cpu

Result (2026-11-30, 2-core CPU shared with other jobs, load 3-10): test 3.400 bits/dim
(1847.9 nats per image) over all 10,000 test images after 1,000 steps; 36 min wall clock.
Again at d934835 (2026-12-02, 2-core AMD EPYC, ``taskset -c 0``, the other core running
another training for 14 of the minutes): test 3.4004 bits/dim (1847.89 nats per image),
19 min 43 s wall clock (the 1x1 layers as matrix products since 8b6c204).
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("diagonal_bilstm_fashion_mnist.py", __file__)
    c.model.hidden = 16
    c.model.num_layers = 3
    c.model.output_features = 64
    return jaxar_config.short_cpu_budget(c)
