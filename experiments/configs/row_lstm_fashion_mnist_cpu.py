"""Row LSTM on Fashion-MNIST under the short CPU budget of the README's results table.

Overrides row_lstm_fashion_mnist.py: 3 layers of 16 hidden units, 64 output features, and
``jaxar.config.short_cpu_budget`` (1,000 steps of 32 images).

Run:
    jaxar train --config experiments/configs/row_lstm_fashion_mnist_cpu.py \
        --workdir runs/row_lstm_fashion_mnist_cpu

Result (2026-11-30, 2-core CPU shared with other jobs, load 5-10): test 3.449 bits/dim
(1874.4 nats per image) over all 10,000 test images after 1,000 steps; 32 min wall clock.
Trained again at bcb29a5 (2026-12-02, 2-core AMD EPYC, ``taskset -c 0``, the other core
running another training and benchmarks): test 3.4474 bits/dim (1873.40 nats per image),
10 min 17 s wall clock (the 1x1 layers as matrix products since 8b6c204: the same sums in
another order).
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("row_lstm_fashion_mnist.py", __file__)
    c.model.hidden = 16
    c.model.num_layers = 3
    c.model.output_features = 64
    return jaxar_config.short_cpu_budget(c)
